"""Hindcast throughput of the ARX model: the vectorised engine against a per-station fit/predict loop.

Issue 5 asks for the rolling-origin hindcast of the linear models to run at least 20 times
faster vectorised across stations and issue times than the straightforward way of getting
the same forecasts: a loop over stations and refit times through the public model API.
Both are timed here in one run, on the same synthetic data, and must give the same
forecasts.

Data (seeded, generated in the run, not timed): ``--basins`` river basins of 5 gauges
(two headwaters joining at a middle gauge, a third headwater joining it at the outlet:
``--basins 40`` = 200 gauges) and 1 or 2 meteo stations each, ``--years`` years daily
(default 20). Each gauge's catchment has its own elevation: precipitation falls as snow
below 0 degC and melts by a degree-day factor, rain and melt drain through a fast and a
slow linear reservoir, a middle gauge / outlet adds its upstream gauges' flow of the day
before, multiplicative noise on top: a snowmelt flood in late spring, winter baseflow. Gaps:
one gauge in 10 loses 20-120 days, meteo stations miss 1 % of their days at random and a
quarter of them a 2-6 month outage (so some forecasts use the ARX sub-model without the
missing predictor).

Model: ``arx`` on the daily step, ``--leads`` leads (default 10), predictors ``flow:2``,
``upstream:1``, ``precipitation:1``, ``temperature:1``, ``degree_days_since:01-01`` (5 to 10
columns per gauge), window, ridge and AR(1) error correction at their defaults. Hindcast:
every day of the last ``--verify`` years (default 10) is an issue time, with yearly refits
(the forecasts issued in year Y come from the model fitted on the periods before 1 January
Y, and read nothing on or after their issue day).

* vectorised: :func:`watermon.forecast.hindcast.hindcast_many` (``quantiles=False``: the
  point forecasts; the residual quantiles are another step) over all gauges, which runs
  ``ARX.hindcast_many``: every refit of every gauge at once from sums accumulated year by
  year, the leads sharing their predictors' sums, batched Cholesky solves
  (``watermon.forecast.models.regression``).
* loop: for each gauge of a subset (``--subset``, default 10: the first two basins, every
  kind of gauge) and each refit year, ``ARX().fit(data, problem, 1 January Y)`` then one
  ``.predict(data, problem, <the issue times of Y>)``, the public ``Model`` API as a user
  writes it (and as ``hindcast_many(..., fast=False)`` runs it); its time is scaled to all
  gauges by the gauge count (the subset has every kind of gauge, 5 to 10 columns).

The two must give the same forecasts on the subset (asserted: the same missing ones, and
a largest difference under 1e-6 of the largest flow; printed). Times: wall-clock and CPU
(``time.process_time``: less disturbed by other processes on the machine), the best of
``--repeat`` runs each; the ratio is per station, loop over vectorised. Memory: the peak of
Python/numpy allocations of each path (tracemalloc, in a separate untimed pass, as tracing
slows allocation; the loop's for one station; ``--no-trace`` skips them) and the process's
peak resident set size after the data, the vectorised runs and the loop runs
(``ru_maxrss``: a high-water mark, each figure includes what came before).

Run: ``.venv/bin/python benchmarks/forecast.py [--basins 40] [--years 20] [--verify 10]
[--leads 10] [--subset 10] [--seed 1] [--repeat 2] [--no-trace]`` (about 2 minutes at the defaults).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from scipy.signal import lfilter

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from watermon.forecast.base import Problem  # noqa: E402
from watermon.forecast.dataset import period_starts  # noqa: E402
from watermon.forecast.hindcast import hindcast_many, issue_times  # noqa: E402
from watermon.forecast.models import ARX  # noqa: E402

PREDICTORS = ["flow:2", "upstream:1", "precipitation:1", "temperature:1", "degree_days_since:01-01"]
GAUGES = ("h1", "h2", "m", "h3", "d")
"""one basin: headwaters h1, h2 join at m; m and headwater h3 join at the outlet d"""
UPSTREAM = {"h1": (), "h2": (), "m": ("h1", "h2"), "h3": (), "d": ("m", "h3")}
FIRST_YEAR = 1996


# --------------------------------------------------------------------------------------
# Synthetic basins
# --------------------------------------------------------------------------------------


def synthesise(basins: int, years: int, leads: int, seed: int) -> tuple[xr.Dataset, list[Problem]]:
    """Daily discharge of ``5 basins`` gauges and meteo of 1-2 stations per basin; their problems."""
    from watermon.forecast.dataset import build_dataset, period_of_year

    rng = np.random.default_rng(seed)
    t = period_starts(f"{FIRST_YEAR}-01-01", f"{FIRST_YEAR + years - 1}-12-31", "daily")
    n = t.size
    doy = period_of_year(t, "daily").astype(np.float64)
    n_met = rng.integers(1, 3, basins)  # meteo stations per basin
    m_total = int(n_met.sum())
    # meteo: seasonal temperature with red noise; precipitation wetter in winter-spring
    season_t = -6.0 - 12.0 * np.cos(2 * np.pi * (doy - 15) / 366)
    temp = season_t + rng.normal(0, 1.5, (m_total, 1)) + lfilter([1.0], [1.0, -0.8], rng.normal(0, 2.0, (m_total, n)))
    wet = 0.45 + 0.25 * np.cos(2 * np.pi * (doy - 80) / 366)
    precip = np.where(rng.random((m_total, n)) < wet, rng.gamma(0.8, 6.0, (m_total, n)), 0.0)
    met_of_basin = np.split(np.arange(m_total), np.cumsum(n_met)[:-1])
    # gauges: local catchment forcing = its basin's first meteo station, lapsed to its elevation
    n_g = 5 * basins
    basin = np.repeat(np.arange(basins), 5)
    first_met = np.array([m[0] for m in met_of_basin])[basin]
    lapse = rng.uniform(-4.0, 2.0, n_g)  # colder (higher) catchments melt later
    ta = temp[first_met] + lapse[:, None] + rng.normal(0, 0.7, (n_g, n))
    pr = precip[first_met] * rng.uniform(0.8, 1.6, (n_g, 1)) * rng.lognormal(0, 0.3, (n_g, n))
    ddf = rng.uniform(3.0, 6.0, n_g)  # mm / degC / day
    snow = np.zeros(n_g)
    water = np.empty((n_g, n))
    for i in range(n):  # snowpack: accumulate below 0 degC, melt by degree days
        warm = ta[:, i] > 0
        snow += np.where(warm, 0.0, pr[:, i])
        melt = np.minimum(snow, ddf * np.maximum(ta[:, i], 0.0))
        snow -= melt
        water[:, i] = melt + np.where(warm, pr[:, i], 0.0)
    k_fast, k_slow = rng.uniform(0.3, 0.6, (n_g, 1)), rng.uniform(0.93, 0.98, (n_g, 1))
    runoff = np.empty((n_g, n))
    for g in range(n_g):
        w = water[g] - water[g].mean()
        runoff[g] = (water[g].mean() + 0.5 * lfilter([1 - k_fast[g, 0]], [1, -k_fast[g, 0]], w)
                     + 0.5 * lfilter([1 - k_slow[g, 0]], [1, -k_slow[g, 0]], w))
    area = rng.uniform(200.0, 3000.0, n_g)  # km2
    local = np.maximum(runoff, 0.05) * area[:, None] / 86.4 * rng.lognormal(0, 0.08, (n_g, n))
    q = local.copy()
    for b in range(basins):
        i = {g: 5 * b + j for j, g in enumerate(GAUGES)}
        for g in ("m", "d"):  # upstream flow of the day before, a little lost on the way
            for u in UPSTREAM[g]:
                q[i[g], 1:] += 0.95 * q[i[u], :-1]
                q[i[g], 0] += 0.95 * q[i[u], 0]
    # gaps
    for g in np.flatnonzero(rng.random(n_g) < 0.1):
        a = rng.integers(0, n - 150)
        q[g, a : a + rng.integers(20, 121)] = np.nan
    ta_m, pr_m = temp.copy(), precip.copy()
    for a in (ta_m, pr_m):
        a[rng.random(a.shape) < 0.01] = np.nan
    for m in np.flatnonzero(rng.random(m_total) < 0.25):
        a = rng.integers(0, n - 200)
        ln = rng.integers(60, 181)
        ta_m[m, a : a + ln] = np.nan
        pr_m[m, a : a + ln] = np.nan
    gauges = [f"b{b:03d}{g}" for b in range(basins) for g in GAUGES]
    meteo = [f"met{m:03d}" for m in range(m_total)]
    nan_g, nan_m = np.full((n_g, n), np.nan), np.full((m_total, n), np.nan)
    ds = build_dataset({"discharge": np.concatenate([np.round(q, 2), nan_m]),
                        "precipitation": np.concatenate([nan_g, np.round(pr_m, 1)]),
                        "air_temperature": np.concatenate([nan_g, np.round(ta_m, 1)])},
                       gauges + meteo, t, "daily")
    probs = [Problem(f"b{b:03d}{g}", "daily", leads, upstream=tuple(f"b{b:03d}{u}" for u in UPSTREAM[g]),
                     meteo=tuple(meteo[m] for m in met_of_basin[b]), options={"predictors": PREDICTORS})
             for b in range(basins) for g in GAUGES]
    return ds, probs


# --------------------------------------------------------------------------------------
# The two paths
# --------------------------------------------------------------------------------------


def vectorised(ds: xr.Dataset, probs: list[Problem], start: str) -> np.ndarray:
    """``(S, N, L)`` forecasts of the project's hindcast (yearly refits, every station at once)."""
    return hindcast_many("arx", ds, probs, start, quantiles=False).forecast.values


def loop(ds: xr.Dataset, probs: list[Problem], start: str) -> np.ndarray:
    """``(S, N, L)`` forecasts of the same hindcast through the public model API, station by station."""
    issues = issue_times(ds, start)
    until = issues.astype("datetime64[Y]").astype("datetime64[ns]")  # the refit (1 January) of each issue time
    out = np.full((len(probs), issues.size, probs[0].leads), np.nan)
    for i, problem in enumerate(probs):
        for refit in np.unique(until):
            sel = until == refit
            model = ARX().fit(ds, problem, refit)
            out[i, sel] = model.predict(ds, problem, issues[sel]).values
    return out


def timed(run: Callable[[], np.ndarray], repeat: int) -> tuple[float, float, np.ndarray]:
    """Best wall-clock and CPU seconds of ``repeat`` runs, and the result."""
    best_wall, best_cpu, result = np.inf, np.inf, None
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        result = run()
        best_wall = min(best_wall, time.perf_counter() - w0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    assert result is not None
    return best_wall, best_cpu, result


def traced_peak(run: Callable[[], Any]) -> float:
    """Peak of Python/numpy allocations (MB) during ``run``."""
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def rss_mb() -> float:
    """The process's peak resident set size so far (MB; Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--basins", type=int, default=40, help="river basins of 5 gauges (40: 200 stations)")
    ap.add_argument("--years", type=int, default=20)
    ap.add_argument("--verify", type=int, default=10, help="the last years, every day an issue time")
    ap.add_argument("--leads", type=int, default=10)
    ap.add_argument("--subset", type=int, default=10, help="stations of the per-station loop (the first ones)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=2, help="time each path this many times, keep the best")
    ap.add_argument("--no-trace", action="store_true", help="skip the tracemalloc passes")
    args = ap.parse_args()
    if args.verify >= args.years:
        ap.error("--verify must leave training years before it")

    ds, probs = synthesise(args.basins, args.years, args.leads, args.seed)
    rss_data = rss_mb()
    start = f"{FIRST_YEAR + args.years - args.verify}-01-01"
    subset = probs[: args.subset]
    n_all, n_sub = len(probs), len(subset)
    vec_wall, vec_cpu, fc = timed(lambda: vectorised(ds, probs, start), args.repeat)
    rss_vec = rss_mb()
    loop_wall, loop_cpu, fc_loop = timed(lambda: loop(ds, subset, start), args.repeat)
    rss_loop = rss_mb()

    # the comparison is only fair if both give the same forecasts
    mine = fc[:n_sub]
    same_missing = bool(np.array_equal(np.isnan(mine), np.isnan(fc_loop)))
    diff = float(np.nanmax(np.abs(mine - fc_loop)))
    largest = float(np.nanmax(ds["discharge"].values))
    assert same_missing, "the two paths miss different forecasts"
    assert diff <= 1e-6 * largest, f"the two paths differ by {diff:g} m3/s"

    peaks = (None, None)
    if not args.no_trace:
        peaks = (traced_peak(lambda: vectorised(ds, probs, start)), traced_peak(lambda: loop(ds, subset[:1], start)))

    issues = issue_times(ds, start)
    columns = [2 + len(p.upstream) + 3 * len(p.meteo) for p in probs]  # flow lags, upstream, 3 a meteo station
    print(f"hindcast of arx: {n_all} stations x {args.years} years daily ({FIRST_YEAR}-{FIRST_YEAR + args.years - 1}), "
          f"{args.leads} leads, issued every day of the last {args.verify} years ({issues.size:,} issue times), "
          f"refitted every 1 January ({args.verify} refits); {min(columns)}-{max(columns)} predictor columns a "
          f"station ({', '.join(PREDICTORS)}); {int(np.isnan(ds['discharge'].values[:n_all]).sum()):,} missing "
          f"discharge days; best of {args.repeat}")
    print(f"{'path':<44}{'stations':>9}{'wall s':>9}{'CPU s':>9}{'s/station':>11}{'peak MB':>9}")
    rows = [("vectorised: hindcast_many", n_all, vec_wall, vec_cpu, peaks[0]),
            ("loop: ARX().fit + .predict a station-year", n_sub, loop_wall, loop_cpu, peaks[1]),
            (f"loop scaled to {n_all} stations", n_all, loop_wall * n_all / n_sub, loop_cpu * n_all / n_sub, None)]
    for name, n, wall, cpu, peak in rows:
        mb = "-" if peak is None else f"{peak:,.0f}"
        print(f"{name:<44}{n:>9}{wall:>9.1f}{cpu:>9.1f}{wall / n:>11.3f}{mb:>9}")
    ratio = (loop_wall / n_sub) / (vec_wall / n_all)
    ratio_cpu = (loop_cpu / n_sub) / (vec_cpu / n_all)
    print(f"ratio loop / vectorised per station: {ratio:.1f} x wall-clock, {ratio_cpu:.1f} x CPU; "
          f"target >= 20 x: {'met' if ratio >= 20 else 'NOT met'}")
    print(f"same forecasts on the {n_sub} looped stations: max |difference| {diff:.1e} m3/s "
          f"(largest flow {largest:,.0f} m3/s), same missing forecasts")
    print(f"process peak RSS (ru_maxrss, cumulative): {rss_data:,.0f} MB after the data, {rss_vec:,.0f} MB after "
          f"the vectorised run, {rss_loop:,.0f} MB after the loop; peak MB above: tracemalloc, one untimed pass "
          f"(the loop: one station)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
