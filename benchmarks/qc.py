"""QC throughput of watermon's single-series checks against UFZ's SaQC, on the same data in one run.

Issue 4 asks for watermon's range, spike, flatline and gap checks to run at least twice
as fast as the same checks in SaQC, the quality-control framework hydrologists would
otherwise use. Both are timed here on the same synthetic hourly discharge (``--stations``
x ``--years``, seeded): a snowmelt season, rain floods, a melt-driven diurnal cycle and
red noise, rounded to 0.01 m3/s, with spikes, stuck-sensor runs, out-of-range values,
NaN values and outages (removed times) injected.

* watermon: :func:`watermon.qc.series.check_series` per station with the discharge checks
  the pipeline runs (``config/qc.yaml``: spike, flatline, gaps; the station limits are left
  out, as SaQC's side has only the range) and the physical range of discharge in
  ``config/variables.yaml``.
* SaQC: per station (faster than one object holding all stations), a ``pandas.Series``
  and an ``SaQC`` object are built from the same arrays (a SaQC user must do both to check
  anything, so this counts in SaQC's time; the figure without it is printed too), then
  ``flagRange``; ``processGeneric`` to the log of the flow and ``flagZScore(method="modified")``
  on it, as watermon scores discharge spikes as log ratios to the centred median, with the
  same window, the same threshold in MAD units (z sigma = z x 1.4826 MAD) and the relative
  floor as ``min_residuals`` (threshold x floor: the same condition); ``flagConstants`` over
  ``min_run`` values; and, for gaps, ``align`` to the hourly grid and ``flagNAN``. Every test sees
  all values (``dfilter=FILTER_NONE``), as watermon's do.

Data generation is not timed; each side's time is the best of ``--repeat`` runs. The
agreement table shows the two did comparable work, per check: values (for gaps, times)
flagged by each, by both, by either. Known differences: watermon's spike scale is the MAD
over three windows, SaQC's over the same window as the median, and watermon also floors it at
``min_scale`` / median (low flows); watermon's flatlines spare the first value of a run,
and runs that local repeats and the step out of them make likely; SaQC also flags NaN
values as missing (watermon's ingest never stores one).

Run: ``.venv/bin/python benchmarks/qc.py [--stations 100] [--years 10] [--seed 1] [--repeat 3]``
(needs ``pip install -e '.[bench]'``)
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.signal import lfilter

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from watermon.config import load_config  # noqa: E402
from watermon.qc.checks import MAD_TO_SIGMA  # noqa: E402
from watermon.qc.series import Findings, check_series  # noqa: E402

try:
    import pandas as pd
    import saqc
    from saqc import FILTER_NONE, SaQC
except ImportError:  # the comparison needs the bench extra; main() says so
    saqc = None

HOUR = np.timedelta64(3600, "s")
START = np.datetime64("2015-01-01T00:00:00", "s")
HOURS_PER_YEAR = 8760
PHYSICAL = (0.0, 100_000.0)  # discharge, m3/s (config/variables.yaml)
# what the pipeline runs on discharge (a station without per-station limits)
CHECKS = load_config(ROOT / "config").qc.checks("11242", "discharge")
CHECK_NAMES = ("range", "spike", "flatline", "gap")


@dataclass
class Station:
    times: np.ndarray  # datetime64[s], sorted, outages removed
    values: np.ndarray  # float64, m3/s, NaN where the sensor sent no value


@dataclass
class Injected:
    spikes: int = 0
    stuck_values: int = 0
    out_of_range: int = 0
    nan_values: int = 0
    removed_times: int = 0


def hydrograph(rng: np.random.Generator, stations: int, hours: int) -> np.ndarray:
    """Clean hourly discharge (stations x hours) of snow-fed rivers, m3/s."""
    years = -(-hours // HOURS_PER_YEAR)
    t = np.arange(hours)
    year, doy = t // HOURS_PER_YEAR, (t % HOURS_PER_YEAR) / 24.0
    base = np.exp(rng.uniform(np.log(2), np.log(200), (stations, 1)))
    melt_size = base * rng.uniform(3, 12, (stations, 1)) * rng.lognormal(0, 0.3, (stations, years))
    peak_day = rng.uniform(140, 190, (stations, 1)) + rng.normal(0, 10, (stations, years))
    width = rng.uniform(25, 50, (stations, 1))
    melt = melt_size[:, year] * np.exp(-0.5 * ((doy - peak_day[:, year]) / width) ** 2)
    phase = rng.uniform(14, 22, (stations, 1))  # hour of the melt-driven daily maximum
    diurnal = rng.uniform(0.03, 0.15, (stations, 1)) * np.sin(2 * np.pi * ((t % 24) - phase + 6) / 24)
    # rain floods: impulses in the warm season, a few hours' rise and a two-day recession
    impulses = np.zeros((stations, hours))
    warm = np.flatnonzero((doy > 60) & (doy < 300))
    for i, n in enumerate(rng.poisson(6 * years, stations)):
        at = rng.choice(warm, n)
        impulses[i, at] = base[i, 0] * rng.lognormal(0.5, 0.7, n)
    recession = lfilter([1.0], [1.0, -np.exp(-1 / 48)], impulses, axis=1)
    floods = lfilter([1 - np.exp(-1 / 3)], [1.0, -np.exp(-1 / 3)], recession, axis=1)
    red = lfilter([1.0], [1.0, -0.995], rng.normal(0, 0.004, (stations, hours)), axis=1)  # sd ~4 %
    white = rng.normal(0, 0.003, (stations, hours))
    q = (base + melt * (1 + diurnal) + floods) * np.exp(red + white)
    return np.round(q, 2)


def inject(rng: np.random.Generator, q: np.ndarray, years: float, tally: Injected) -> Station:
    """One station's series with faults put in, and its outages taken out."""
    n = q.size
    q = q.copy()
    spikes = rng.choice(n, rng.poisson(20 * years))
    up = rng.random(spikes.size) < 0.7
    q[spikes] *= np.where(up, rng.uniform(1.5, 4, spikes.size), rng.uniform(0.1, 0.6, spikes.size))
    tally.spikes += np.unique(spikes).size
    for s in rng.choice(n, rng.poisson(4 * years)):  # a stuck sensor repeats its last reading
        stuck = q[s + 1 : s + 3 + rng.geometric(1 / 24)]
        stuck[:] = q[s]
        tally.stuck_values += stuck.size
    bad = rng.choice(n, rng.poisson(2 * years))
    q[bad] = rng.choice([-999.0, 999_999.0], bad.size)
    tally.out_of_range += np.unique(bad).size
    nan = rng.choice(n, rng.poisson(10 * years))
    q[nan] = np.nan
    tally.nan_values += np.unique(nan).size
    keep = np.ones(n, dtype=bool)
    for s in rng.choice(n, rng.poisson(4 * years)):
        keep[s : s + rng.geometric(1 / 12)] = False
    tally.removed_times += int((~keep).sum())
    times = START + np.arange(n) * HOUR
    return Station(times[keep], q[keep])


def synthesise(stations: int, years: float, seed: int) -> tuple[list[Station], Injected]:
    rng = np.random.default_rng(seed)
    q = hydrograph(rng, stations, int(round(years * HOURS_PER_YEAR)))
    tally = Injected()
    return [inject(rng, row, years, tally) for row in q], tally


def run_watermon(data: list[Station]) -> tuple[float, list[Findings]]:
    t0 = time.perf_counter()
    found = [check_series(s.times, s.values, CHECKS, physical=PHYSICAL) for s in data]
    return time.perf_counter() - t0, found


def log_flow(q: pd.Series) -> pd.Series:
    """What watermon scores discharge spikes on: the log, flows below ``min_scale`` raised to it."""
    return np.log(np.maximum(q, CHECKS.spike.min_scale))


def run_saqc(data: list[Station]) -> tuple[float, float, list[SaQC]]:
    """Seconds in all, seconds building the pandas/SaQC objects, and each station's SaQC."""
    sp, fl = CHECKS.spike, CHECKS.flatline
    build = 0.0
    out = []
    t0 = time.perf_counter()
    for s in data:
        b0 = time.perf_counter()
        qc = SaQC(pd.Series(s.values, index=pd.DatetimeIndex(s.times), name="q"))
        build += time.perf_counter() - b0
        qc = qc.flagRange("q", min=PHYSICAL[0], max=PHYSICAL[1], dfilter=FILTER_NONE)
        qc = qc.processGeneric("q", target="log", func=log_flow, dfilter=FILTER_NONE)
        qc = qc.flagZScore("log", method="modified", window=sp.window, center=True, min_periods=sp.window // 2 + 1,
                           thresh=sp.threshold * MAD_TO_SIGMA, min_residuals=sp.threshold * sp.relative_floor,
                           dfilter=FILTER_NONE)
        qc = qc.flagConstants("q", window=fl.min_run, thresh=fl.tolerance, min_periods=fl.min_run,
                              dfilter=FILTER_NONE)
        qc = qc.align("q", target="grid", freq="1h", method="nshift", dfilter=FILTER_NONE)
        qc = qc.flagNAN("grid", dfilter=FILTER_NONE)
        out.append(qc)
    return time.perf_counter() - t0, build, out


def saqc_sets(qc: SaQC) -> dict[str, np.ndarray]:
    """Per check, the times one station's SaQC run flagged.

    SaQC's public ``flags`` keep one flag per value, the last set; its flags history keeps a
    column per test, so that is read here.
    """
    sets: dict[str, np.ndarray] = {}
    for field, funcs in (("q", {"flagRange": "range", "flagConstants": "flatline"}),
                         ("log", {"flagZScore": "spike"}), ("grid", {"flagNAN": "gap"})):
        hist = qc._flags.history[field]
        index = hist.index.to_numpy().astype("datetime64[s]")
        for column, meta in zip(hist.hist.columns, hist.meta, strict=True):
            if meta["func"] in funcs:
                sets[funcs[meta["func"]]] = index[hist.hist[column].notna().to_numpy()]
    return sets


def watermon_sets(station: Station, f: Findings) -> dict[str, np.ndarray]:
    sets = {c: station.times[f.masks[c]] for c in CHECK_NAMES if c in f.masks}
    sets["gap"] = f.missing
    return sets


def agreement(data: list[Station], found: list[Findings], qcs: list[SaQC]) -> dict[str, tuple[int, int, int, int]]:
    """Per check: times flagged by watermon, by SaQC, by both, by either."""
    totals = {c: np.zeros(4, dtype=np.int64) for c in CHECK_NAMES}
    empty = np.zeros(0, dtype="datetime64[s]")
    for station, f, qc in zip(data, found, qcs, strict=True):
        wm, sq = watermon_sets(station, f), saqc_sets(qc)
        for c in CHECK_NAMES:
            a, b = wm.get(c, empty), sq.get(c, empty)
            totals[c] += (a.size, b.size, np.intersect1d(a, b).size, np.union1d(a, b).size)
    return {c: tuple(int(x) for x in v) for c, v in totals.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stations", type=int, default=100)
    ap.add_argument("--years", type=float, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3, help="time each side this many times, keep the best")
    args = ap.parse_args()
    if saqc is None:
        print("benchmarks/qc.py compares with SaQC, which is not installed: "
              "run `.venv/bin/pip install -e '.[bench]'`", file=sys.stderr)
        return 2

    data, injected = synthesise(args.stations, args.years, args.seed)
    n = sum(s.values.size for s in data)
    wm_s, found = min((run_watermon(data) for _ in range(args.repeat)), key=lambda r: r[0])
    sq_s, build_s, qcs = min((run_saqc(data) for _ in range(args.repeat)), key=lambda r: r[0])

    print(f"values checked: {n:,} ({args.stations} stations x {args.years:g} years hourly discharge), "
          f"best of {args.repeat}; SaQC {saqc.__version__}")
    print(f"injected: {injected.spikes:,} spikes, {injected.stuck_values:,} stuck values, "
          f"{injected.out_of_range:,} out of range, {injected.nan_values:,} NaN values, "
          f"{injected.removed_times:,} removed times")
    print(f"{'path':<52}{'seconds':>9}{'values/s':>14}")
    for name, secs in (("watermon: check_series", wm_s),
                       ("SaQC: build Series + SaQC, flag", sq_s),
                       ("SaQC: flag only (building excluded)", sq_s - build_s)):
        print(f"{name:<52}{secs:>9.2f}{n / secs:>14,.0f}")
    ratio = sq_s / wm_s
    print(f"throughput ratio watermon / SaQC: {ratio:.1f} x (building excluded: {(sq_s - build_s) / wm_s:.1f} x); "
          f"target >= 2 x: {'met' if ratio >= 2 else 'NOT met'}")
    print(f"{'agreement':<20}{'watermon':>10}{'SaQC':>10}{'both':>10}{'either':>10}{'both/either':>13}")
    for check, (a, b, both, either) in agreement(data, found, qcs).items():
        share = f"{both / either:.1%}" if either else "-"
        print(f"{check:<20}{a:>10,}{b:>10,}{both:>10,}{either:>10,}{share:>13}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
