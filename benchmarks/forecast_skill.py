"""Forecast skill on the real Chirchik archive: every model side by side, per lead.

    .venv/bin/python benchmarks/forecast_skill.py [--data ../shared/data] [--no-select] [--markdown] [--readme]

Datasets (``../shared/data/chirchik``, never copied into the repository):

* decade means of 16279 (Chatkal, Khudaydod), 16290 (Pskem, Mullala) and 16294 (Charvak
  inflow), leads 1-3 decades: training years 1935-1990 (the meteo record starts in
  1933/34), verification 1991-2015 by a rolling-origin hindcast refitted every 1 January
  (forecasts issued in year Y come from models fitted on periods before Y);
* daily 16279 and "Charvak" 1965-01-01 .. 1967-09-15, leads 1-3 days: training 1965-1966,
  verification 1967 by a rolling origin refitted on the first of every month.

Models: ``persistence``, ``climatology``, ``regression`` (the hydromets' per period-of-year
regression on the last period's flow) and ``arx``, whose predictors, window, ridge and
error correction are chosen by forward selection on an inner rolling-origin hindcast
*inside the training years* (decades: issued 1961-1990, each fitted on the years before
it from 1935; days: issued in 1966, monthly refits) scored by the mean over leads of the
MSE relative to the regression's. The verification years are not looked at to choose
anything. ``--no-select`` uses the selection's recorded result (``SELECTED``) instead of
re-running it (about a minute).

Quantiles (0.05 ... 0.95) come from the empirical residual quantiles of the same hindcast
run from 20 years (decades) / 1 year (days) before the verification, each refit using only
errors of forecasts whose target period was over before it.

s/sigma_delta (the Nastavlenie's criterion, ``metrics.s_over_sigma_delta``):
S = sqrt(sum (Q_obs - Q_fc)^2 / (n - 1)), sigma_delta = the standard deviation (n - 1) of
Q(t0 + lead - 1) - Q(t0 - 1), the change from the last period observed before the issue
time t0 to the forecast period; P = share of |error| <= 0.674 sigma_delta.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import xarray as xr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from watermon.forecast.base import Problem  # noqa: E402
from watermon.forecast.dataset import load_chirchik, load_chirchik_daily  # noqa: E402
from watermon.forecast.hindcast import Hindcast, hindcast, score, select_predictors  # noqa: E402

MODELS = ("persistence", "climatology", "regression", "arx")
METEO = ("38462", "38464", "38471")
DECADE = {
    # station: upstream / neighbouring gauges offered to the selection
    "16279": ("16290",),
    "16290": ("16279",),
    "16294": ("16279", "16290"),
}
DAILY = {"16279": ("Charvak",), "Charvak": ("16279",)}
DAILY_CANDIDATES = ["flow:2", "flow:3", "flow:5", "upstream:1", "upstream:2", "volume_since:10-01"]
DAILY_GRID = {"window": [7, 15, 30], "ridge": [0.003, 0.01, 0.03, 0.1], "error_correction": [True, False]}

SELECTED: dict[tuple[str, str], dict[str, Any]] = {
    # what select_predictors chose inside the training years (re-run without --no-select)
    ("decade", "16279"): {"predictors": ["flow:1", "precipitation_since:10-01", "temperature_mean:3",
                                         "volume_since:10-01", "temperature:1", "upstream:1"], "ridge": 0.03},
    ("decade", "16290"): {"predictors": ["flow:1", "precipitation_since:10-01", "temperature_mean:3",
                                         "temperature:1", "precipitation:1"], "ridge": 0.1, "error_correction": False},
    ("decade", "16294"): {"predictors": ["flow:1", "precipitation_since:10-01", "temperature_mean:3",
                                         "temperature:1"], "ridge": 0.1, "error_correction": False},
    ("daily", "16279"): {"predictors": ["flow:1"], "ridge": 0.003},
    ("daily", "Charvak"): {"predictors": ["flow:1"], "ridge": 0.003},
}
COLUMNS = [("rmse", "RMSE", "{:.1f}"), ("nse", "NSE", "{:.3f}"), ("kge", "KGE", "{:.3f}"),
           ("skill_persistence", "SS_pers", "{:+.3f}"), ("skill_climatology", "SS_clim", "{:+.3f}"),
           ("s_sigma_delta", "S/sd", "{:.3f}"), ("p_within", "P", "{:.2f}"), ("coverage", "cov90", "{:.2f}"),
           ("crps", "CRPS", "{:.1f}")]


@dataclasses.dataclass
class Case:
    label: str
    data: xr.Dataset
    problem: Problem
    verify_from: str
    verify_to: str | None
    train_from: str | None
    refit: str
    calibration_years: int
    inner_start: str
    selection: dict[str, Any]
    inner_score: float | None = None
    """inner-CV MSE of arx relative to the regression (mean over leads; < 1: arx selected)"""


def cases(shared: Path, select: bool) -> list[Case]:
    out: list[Case] = []
    dec = load_chirchik(shared / "chirchik")
    for station, upstream in DECADE.items():
        p = Problem(station, "decade", 3, upstream=upstream, meteo=METEO)
        if select:
            t = time.perf_counter()
            sel = select_predictors(dec, p, "1991-01-01", "1961-01-01", train_from="1935-01-01")
            print(f"# selection decade {station} ({time.perf_counter() - t:.0f} s): "
                  + " ".join(f"{s} {v:.3f}" for s, v in sel.history), flush=True)
            options, inner = sel.options, sel.score
        else:
            options, inner = SELECTED[("decade", station)], None
        out.append(Case(f"decade {station}", dec, p, "1991-01-01", "2016-01-01", "1935-01-01", "yearly", 20,
                        "1961-01-01", options, inner))
    day = load_chirchik_daily(shared / "chirchik")
    for station, upstream in DAILY.items():
        p = Problem(station, "daily", 3, upstream=upstream)
        if select:
            sel = select_predictors(day, p, "1967-01-01", "1966-01-01", refit="monthly",
                                    candidates=DAILY_CANDIDATES, grid=DAILY_GRID)
            print(f"# selection daily {station}: " + " ".join(f"{s} {v:.3f}" for s, v in sel.history), flush=True)
            options, inner = sel.options, sel.score
        else:
            options, inner = SELECTED[("daily", station)], None
        out.append(Case(f"daily {station}", day, p, "1967-01-01", None, None, "monthly", 1, "1966-01-01",
                        options, inner))
    return out


def run(case: Case) -> tuple[dict[str, Hindcast], dict[str, xr.Dataset]]:
    hc: dict[str, Hindcast] = {}
    for m in MODELS:
        problem = dataclasses.replace(case.problem, options=case.selection if m == "arx" else {})
        hc[m] = hindcast(m, case.data, problem, case.verify_from, case.verify_to, refit=case.refit,
                         calibration_years=case.calibration_years, train_from=case.train_from)
    scores = {m: score(h, hc["persistence"], hc["climatology"]) for m, h in hc.items()}
    return hc, scores


def checks(scores: dict[str, xr.Dataset], selected: str, target: bool) -> list[str]:
    s = scores[selected]
    lines = []
    beat_pc = all(float(s.rmse.sel(lead=k)) < float(scores[r].rmse.sel(lead=k))
                  for r in ("persistence", "climatology") for k in s.lead.values)
    beat_reg = float(s.rmse.sel(lead=1)) < float(scores["regression"].rmse.sel(lead=1))
    ssd = float(s.s_sigma_delta.sel(lead=1))
    lines.append(f"beats persistence and climatology at every lead: {'yes' if beat_pc else 'NO'}")
    lines.append(f"beats the operational regression at lead 1: {'yes' if beat_reg else 'NO'} "
                 f"(RMSE {float(s.rmse.sel(lead=1)):.2f} vs {float(scores['regression'].rmse.sel(lead=1)):.2f})")
    verdict = ("target <= 0.6: " + ("met" if ssd <= 0.6 else "NOT met")) if target else "no target for days"
    lines.append(f"s/sigma_delta at lead 1 = {ssd:.3f} ({verdict})")
    return lines


def table(case: Case, scores: dict[str, xr.Dataset], markdown: bool) -> str:
    head = ["model", "lead", *[c[1] for c in COLUMNS]]
    rows = []
    for m in MODELS:
        for k in scores[m].lead.values:
            r = scores[m].sel(lead=k)
            rows.append([m + (" *" if m == "arx" else ""), str(int(k)),
                         *[fmt.format(float(r[v])) for v, _, fmt in COLUMNS]])
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:<{w}}}" if i < 2 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return "\n".join([fmt.format(*head), *(fmt.format(*r) for r in rows)])


def readme_rows(case: Case, scores: dict[str, xr.Dataset]) -> list[str]:
    """One Markdown row per lead: every model's RMSE and S/sigma_delta, and the ARX's other scores."""
    out = []
    for k in scores["arx"].lead.values:
        g = {m: scores[m].sel(lead=k) for m in MODELS}
        a = g["arx"]
        cells = [case.label, str(int(k)),
                 *[f"{float(g[m].rmse):.1f}" for m in MODELS],
                 *[f"{float(g[m].s_sigma_delta):.2f}" for m in ("regression", "arx")],
                 f"{float(a.nse):.3f}", f"{float(a.kge):.3f}", f"{float(a.skill_persistence):+.2f}",
                 f"{float(a.skill_climatology):+.2f}", f"{float(a.p_within):.2f}", f"{float(a.coverage):.2f}"]
        out.append("| " + " | ".join(cells) + " |")
    return out


README_HEAD = ("| series | lead | RMSE pers. | RMSE clim. | RMSE regr. | RMSE ARX | S/σΔ regr. | S/σΔ ARX | NSE ARX "
               "| KGE ARX | skill vs pers. | skill vs clim. | P ARX | 90 % cov. ARX |\n"
               "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--no-select", action="store_true", help="use the recorded selection (SELECTED)")
    ap.add_argument("--markdown", action="store_true", help="Markdown tables")
    ap.add_argument("--readme", action="store_true", help="also the README's one-table summary (Markdown)")
    args = ap.parse_args()
    if not (args.data / "chirchik").is_dir():
        print(f"no shared data at {args.data / 'chirchik'}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    summary: list[str] = []
    for case in cases(args.data, not args.no_select):
        hc, scores = run(case)
        summary += readme_rows(case, scores)
        p = case.problem
        n = int(scores["arx"].n.sel(lead=1))
        unit = "decades" if p.step == "decade" else "days"
        print(f"\n## {case.label}: leads 1-{p.leads} {unit}, verified {case.verify_from[:4]}"
              f"{'-' + str(int(case.verify_to[:4]) - 1) if case.verify_to else ''} ({n} issue times, refit "
              f"{case.refit}), trained from {case.train_from[:4] if case.train_from else 'the start'}\n")
        print(f"arx options: {case.selection}\n")
        print(table(case, scores, args.markdown))
        selected = "arx" if case.inner_score is None or case.inner_score < 1 else "regression"
        why = ("recorded selection" if case.inner_score is None else
               f"inner-CV MSE on the training years {case.inner_score:.3f} x the regression's")
        print(f"\nselected: {selected} ({why})")
        for line in checks(scores, selected, p.step == "decade"):
            print(f"- {line}")
    if args.readme:
        print("\n## summary (README)\n")
        print(README_HEAD)
        print("\n".join(summary))
    print(f"\n(total {time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
