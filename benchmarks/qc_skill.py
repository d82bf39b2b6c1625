"""Detection skill of the discharge QC on real Chirchik series, with seeded injected faults.

Issue 4 item 6: on the shared Chirchik series (``../shared/data/chirchik``), faults of
known kind and place are written into copies of the real series, the checks the
pipeline really runs on discharge (``config/qc.yaml`` through
:func:`watermon.qc.series.check_series`, with the series' aggregation and the physical
range of ``config/variables.yaml``) are run over each copy, and their flags are compared
with the injected positions (:mod:`watermon.qc.skill` defines the faults and the
scores). Targets: recall >= 0.95 for spikes and flatlines, false positives <= 1 % of
the untouched real values. Drifts and gaps have no target.

Per series and seed, one copy per fault kind (several dozen events each: 30 per decade
series, 20 spikes, 10 flatlines, 10 drifts and 15 gaps per 988-value daily series, at
least 30 untouched values apart). ``recall`` counts faulty values, ``events`` counts an
event as found when any of its values is flagged. ``FP`` is the share of untouched real
values flagged in the copies; the clean series is checked too, and the real values it
flags are listed with their neighbours: they may be real errors in the archive, or
real floods.

Run: ``.venv/bin/python benchmarks/qc_skill.py [--seeds 20] [--data ../shared/data]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from watermon.config import load_config  # noqa: E402
from watermon.qc.skill import CHIRCHIK, Dataset, FaultKind, Series, SeriesSkill, evaluate  # noqa: E402

TARGET_RECALL = {FaultKind.SPIKE: 0.95, FaultKind.FLATLINE: 0.95}
TARGET_FP = 0.01


def neighbours(series: Series, i: int, k: int = 2) -> str:
    """The value at ``i`` in brackets between its ``k`` neighbours on each side."""
    lo, hi = max(i - k, 0), min(i + k + 1, series.values.size)
    return " ".join(f"[{v:g}]" if j == i else f"{v:g}" for j, v in zip(range(lo, hi), series.values[lo:hi], strict=True))


def print_series(ds: Dataset, series: Series, skill: SeriesSkill) -> None:
    first, last = (str(t)[:10] for t in (series.times[0], series.times[-1]))
    print(f"\n{ds.name}: {ds.note}; {series.values.size:,} values {first} .. {last}; "
          f"checks of {ds.station} discharge")
    print(f"  {'fault':<9} {'events':>6} {'values':>7} {'recall':>7} {'events found':>13} {'FP in copies':>13}")
    for kind, t in skill.tallies.items():
        target = TARGET_RECALL.get(kind)
        mark = "" if target is None or not ds.target else ("  ok" if t.recall >= target else f"  < {target}")
        print(f"  {kind.value:<9} {t.events:>6,} {t.faulty:>7,} {t.recall:>7.3f} {t.event_recall:>13.3f} "
              f"{t.fp_rate:>12.2%}{mark}")
    fp = skill.pooled_fp()
    mark = "" if not ds.target else ("  ok" if fp.fp_rate <= TARGET_FP else f"  > {TARGET_FP:.0%}")
    print(f"  false positives, all copies: {fp.untouched_flagged:,} of {fp.untouched:,} untouched values "
          f"({fp.fp_rate:.2%}){mark}")
    print(f"  clean series: {len(skill.clean_flags)} of {skill.n_values:,} real values flagged "
          f"({skill.clean_flag_rate:.2%})")
    for f in skill.clean_flags:
        print(f"    {str(f.time)[:10]}  {f.value:>8g}  {'+'.join(f.checks):<9} {neighbours(series, f.index)}")


def markdown(rows: list[tuple[Dataset, SeriesSkill]]) -> str:
    """The summary table, as it stands in the README."""
    kinds = list(rows[0][1].tallies)
    head = ["series", "values"] + [f"{k.value} recall (events)" for k in kinds] + ["FP (copies)", "flagged, clean"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["--:"] * (len(head) - 1)) + "|"]
    for ds, sk in rows:
        cells = [ds.name + ("" if ds.target else " (no target)"), f"{sk.n_values:,}"]
        cells += [f"{t.recall:.3f} ({t.events:,})" for t in sk.tallies.values()]
        cells += [f"{sk.pooled_fp().fp_rate:.2%}", f"{len(sk.clean_flags)} ({sk.clean_flag_rate:.2%})"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=20, help="injected copies per series and fault kind")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="the shared data folder")
    args = ap.parse_args()
    if not (args.data / "chirchik").is_dir():
        print(f"skipped: the shared Chirchik data is not at {args.data / 'chirchik'} "
              "(../shared/data beside the project root)")
        return 0
    config = load_config(ROOT / "config")
    discharge = config.variable("discharge")
    physical = (discharge.min, discharge.max)
    print(f"discharge checks (config/qc.yaml), seeds 0..{args.seeds - 1}:")
    for ds_station in sorted({ds.station for ds in CHIRCHIK}):
        print(f"  {ds_station}: {config.qc.checks(ds_station, 'discharge')!r}")
    rows = []
    failed = []
    t0 = time.perf_counter()
    for ds in CHIRCHIK:
        series = ds.load(args.data)
        skill = evaluate(series, config.qc.checks(ds.station, "discharge"), ds.faults, range(args.seeds),
                         physical=physical)
        print_series(ds, series, skill)
        rows.append((ds, skill))
        if ds.target:
            failed += [f"{ds.name} {k.value} recall {skill.tallies[k].recall:.3f}"
                       for k, r in TARGET_RECALL.items() if skill.tallies[k].recall < r]
            if skill.pooled_fp().fp_rate > TARGET_FP:
                failed.append(f"{ds.name} FP {skill.pooled_fp().fp_rate:.2%}")
    print(f"\n{markdown(rows)}\n")
    print(f"{time.perf_counter() - t0:.1f} s; targets (recall >= 0.95 for spikes and flatlines, FP <= 1 %): "
          + ("met" if not failed else "NOT met: " + "; ".join(failed)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
