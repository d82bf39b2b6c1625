"""The forecast models' input: observations as an xarray Dataset on a step's grid.

* :func:`period_starts` / :func:`period_of_year` / :func:`period_days`: the calendar of the
  three steps, vectorised over ``datetime64`` arrays: ``daily``, ``pentad`` (days 1-5, 6-10,
  ..., 26-end of month) and ``decade`` (1-10, 11-20, 21-end), labelled by the period's first
  day at 00:00 UTC (naive ``datetime64[ns]``) as :mod:`watermon.periods` stores them.
  The period of the year is 1-366 for days (the day's place in a leap year: 1 March is
  always 61, so the same date is the same period every year), 1-72 for pentads and 1-36
  for decades.
* :func:`resample`: period means (or totals) from stored values, respecting their quality
  control: a value counts only when ``accepted`` (or its QC level is one of
  :data:`ACCEPTED`: ``good``, ``estimated``, ``unchecked``; ``suspect``, ``bad`` and
  ``missing`` are left out), and a period gets a value only when its accepted days cover
  at least ``min_coverage`` of it.
* :func:`build_dataset` / :func:`from_series`: the ``(station, time)`` Dataset with its
  ``period`` coordinate and ``attrs["step"]``.
* :func:`load_chirchik` / :func:`load_chirchik_daily`: the real Chirchik archive of
  ``../shared/data/chirchik`` (never copied into the repository) for the evaluation.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from watermon.forecast.base import Step

STEPS: tuple[str, ...] = ("daily", "pentad", "decade")
CALENDAR = (*STEPS, "month")
"""periods the calendar functions and :func:`resample` know (forecasts use ``STEPS``; QC
compares stored month means too)"""
N_PERIODS = {"daily": 366, "pentad": 72, "decade": 36}
"""periods in a year per step"""
PER_MONTH = {"pentad": 6, "decade": 3}
ACCEPTED = ("good", "estimated", "unchecked")
"""QC levels whose values models read (as :mod:`watermon.qc.model_input`); suspect, bad, missing are not"""
VARIABLES = ("discharge", "precipitation", "air_temperature")
TOTALLED = frozenset({"precipitation"})
"""variables whose period value is a total over the period (mm), not a mean"""

_DAY = np.timedelta64(1, "D")
# first day of each month in a leap year, 0-based: the daily period of year is a leap-year day number
_LEAP_MONTH_START = np.cumsum([0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30])


def _check_step(step: str, known: tuple[str, ...] = STEPS) -> None:
    if step not in known:
        raise ValueError(f"unknown step {step!r}; one of {', '.join(known)}")


def as_times(values: Any) -> np.ndarray:
    """Times as naive UTC ``datetime64[ns]`` (timezone-aware inputs are converted to UTC)."""
    arr = np.atleast_1d(np.asarray(values))
    if arr.dtype.kind == "M":
        return arr.astype("datetime64[ns]")
    import pandas as pd  # xarray's own dependency

    return pd.to_datetime(arr, utc=True).tz_localize(None).values.astype("datetime64[ns]")


def _ymd(times: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    days = as_times(times).astype("datetime64[D]")
    years = days.astype("datetime64[Y]")
    months = days.astype("datetime64[M]")
    return (years.astype(np.int64) + 1970, (months - years).astype(np.int64) + 1,
            (days - months).astype(np.int64) + 1)


def _month_days(times: np.ndarray) -> np.ndarray:
    months = as_times(times).astype("datetime64[M]")
    return ((months + 1).astype("datetime64[D]") - months.astype("datetime64[D]")).astype(np.int64)


def period_start(times: Any, step: str) -> np.ndarray:
    """Start (label) of the period of ``step`` that contains each time."""
    _check_step(step, CALENDAR)
    days = as_times(times).astype("datetime64[D]")
    if step == "daily":
        return days.astype("datetime64[ns]")
    if step == "month":
        return days.astype("datetime64[M]").astype("datetime64[ns]")
    _, _, d = _ymd(days)
    size = 10 if step == "decade" else 5
    first = np.minimum((d - 1) // size, PER_MONTH[step] - 1) * size + 1
    return (days.astype("datetime64[M]").astype("datetime64[D]") + (first - 1)).astype("datetime64[ns]")


def period_of_year(times: Any, step: str) -> np.ndarray:
    """Period of the year (1-based) of each time: 1-366 (leap-year day number), 1-72 or 1-36."""
    _check_step(step)
    _, m, d = _ymd(times)
    if step == "daily":
        return _LEAP_MONTH_START[m - 1] + d
    size = 10 if step == "decade" else 5
    k = PER_MONTH[step]
    return (m - 1) * k + np.minimum((d - 1) // size, k - 1) + 1


def period_days(starts: Any, step: str) -> np.ndarray:
    """Length in days of the periods that start at ``starts``."""
    _check_step(step, CALENDAR)
    starts = as_times(starts)
    if step == "daily":
        return np.ones(starts.shape, dtype=np.int64)
    if step == "month":
        return _month_days(starts)
    _, _, d = _ymd(starts)
    size = 10 if step == "decade" else 5
    last_start = (PER_MONTH[step] - 1) * size + 1
    return np.where(d >= last_start, _month_days(starts) - last_start + 1, size)


def next_start(starts: Any, step: str) -> np.ndarray:
    """Start of the period after each period start."""
    starts = as_times(starts)
    return (starts.astype("datetime64[D]") + period_days(starts, step)).astype("datetime64[ns]")


def period_starts(first: Any, last: Any, step: str) -> np.ndarray:
    """Starts of every period that begins between ``first`` (snapped back to its period's
    start) and ``last`` inclusive: the step's regular grid."""
    _check_step(step, CALENDAR)
    a = period_start(first, step)[0]
    b = as_times(last)[0]
    if b < a:
        return np.zeros(0, dtype="datetime64[ns]")
    days = np.arange(a.astype("datetime64[D]"), b.astype("datetime64[D]") + _DAY, _DAY)
    if step == "daily":
        return days.astype("datetime64[ns]")
    _, _, d = _ymd(days)
    if step == "month":
        return days[d == 1].astype("datetime64[ns]")
    size = 10 if step == "decade" else 5
    keep = ((d - 1) % size == 0) & (d <= (PER_MONTH[step] - 1) * size + 1)
    return days[keep].astype("datetime64[ns]")


def extend_grid(times: np.ndarray, step: str, n: int) -> np.ndarray:
    """``times`` (a step grid) followed by the next ``n`` period starts."""
    out = [as_times(times)]
    t = out[0][-1:]
    for _ in range(n):
        t = next_start(t, step)
        out.append(t)
    return np.concatenate(out)


# --------------------------------------------------------------------------------------
# Resampling
# --------------------------------------------------------------------------------------


def accepted_mask(levels: Sequence[str] | np.ndarray, accepted: Iterable[str] = ACCEPTED) -> np.ndarray:
    """True where a QC level lets a value into the models (see :data:`ACCEPTED`)."""
    return np.isin(np.asarray(levels, dtype=object).astype(str), list(accepted))


def resample(
    times: Any,
    values: Any,
    step: str,
    *,
    accepted: Any = None,
    levels: Any = None,
    min_coverage: float = 0.8,
    how: str = "mean",
    first: Any = None,
    last: Any = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Period means (``how="mean"``) or totals (``"sum"``) of ``step`` (one of ``CALENDAR``) from stored values.

    ``values`` are readings at ``times`` (daily means, or several readings a day:
    those are averaged per UTC day first), shape ``(..., n)`` for several series on the
    same times. Only accepted values count: ``accepted`` (bool, same shape) or ``levels``
    (QC levels, see :func:`accepted_mask`); NaN values never count. A day with at least
    one accepted value is covered; a period gets a value when covered days / days in the
    period >= ``min_coverage`` (1.0: every day needed), else NaN. A total is the mean of
    the covered days times the period's length (missing days assumed average).

    Returns ``(starts, period_values, coverage)``: the grid from ``first`` (default the
    first time) to ``last`` (default the last time), the values ``(..., periods)`` and the
    covered share of each period.
    """
    if how not in ("mean", "sum"):
        raise ValueError(f"how must be 'mean' or 'sum', not {how!r}")
    if not 0.0 < min_coverage <= 1.0:
        raise ValueError("min_coverage must be in (0, 1]")
    t = as_times(times)
    v = np.asarray(values, dtype=np.float64)
    if v.shape[-1] != t.size:
        raise ValueError(f"values end in {v.shape[-1]} readings, times are {t.size}")
    ok = np.isfinite(v)
    if accepted is not None and levels is not None:
        raise ValueError("give accepted or levels, not both")
    if accepted is not None:
        ok &= np.broadcast_to(np.asarray(accepted, dtype=bool), v.shape)
    elif levels is not None:
        lv = np.asarray(levels, dtype=object)
        ok &= np.broadcast_to(accepted_mask(lv.ravel()).reshape(lv.shape), v.shape)
    lead_shape = v.shape[:-1]
    v2, ok2 = v.reshape(-1, t.size), ok.reshape(-1, t.size)
    day = t.astype("datetime64[D]")
    if t.size == 0 and (first is None or last is None):
        return np.zeros(0, "datetime64[ns]"), np.zeros((*lead_shape, 0)), np.zeros((*lead_shape, 0))
    lo = period_start(day.min() if first is None else as_times(first)[0], step)[0]
    hi = day.max() if last is None else as_times(last)[0].astype("datetime64[D]")
    starts = period_starts(lo, hi, step)
    n_days = int((next_start(starts[-1:], step)[0].astype("datetime64[D]") - lo.astype("datetime64[D]")) // _DAY)
    day_idx = ((day - lo.astype("datetime64[D]")) // _DAY).astype(np.int64)
    inside = (day_idx >= 0) & (day_idx < n_days)
    # daily means of the accepted readings (per series)
    rows = v2.shape[0]
    sums = np.zeros((rows, n_days))
    counts = np.zeros((rows, n_days))
    for r in range(rows):
        sel = inside & ok2[r]
        sums[r] = np.bincount(day_idx[sel], weights=v2[r, sel], minlength=n_days)
        counts[r] = np.bincount(day_idx[sel], minlength=n_days)
    covered = counts > 0
    daily = np.divide(sums, counts, out=np.zeros_like(sums), where=covered)
    # days -> periods
    day_starts = period_start(lo.astype("datetime64[D]") + np.arange(n_days) * _DAY, step)
    pidx = np.searchsorted(starts, day_starts)
    lengths = period_days(starts, step)
    psum = np.stack([np.bincount(pidx, weights=daily[r], minlength=starts.size) for r in range(rows)])
    pcnt = np.stack([np.bincount(pidx, weights=covered[r].astype(float), minlength=starts.size) for r in range(rows)])
    cov = pcnt / lengths
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = psum / pcnt
    out = mean * lengths if how == "sum" else mean
    out = np.where((cov >= min_coverage - 1e-12) & (pcnt > 0), out, np.nan)
    return starts, out.reshape(*lead_shape, starts.size), cov.reshape(*lead_shape, starts.size)


LAST_DAY = "_last_day"
"""suffix of a variable that holds, per period, the daily mean of the period's *last day*
(``discharge_last_day``): what a decade forecast issued the next morning starts from"""


def last_day(
    times: Any,
    values: Any,
    step: str,
    *,
    accepted: Any = None,
    levels: Any = None,
    first: Any = None,
    last: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The daily mean of the last day of each ``step`` period, from readings or daily values.

    Hydromets issue pentad and decade forecasts from the flow of the day before the issue,
    which a period mean smooths away. Accepted values only (as :func:`resample`); NaN where
    the period's last day has none. Returns ``(starts, values (..., periods))`` on the grid
    ``first``..``last`` (default the values' own span).
    """
    _check_step(step, CALENDAR)
    t = as_times(times)
    v = np.asarray(values, dtype=np.float64)
    if t.size == 0 and (first is None or last is None):
        return np.zeros(0, "datetime64[ns]"), np.zeros((*v.shape[:-1], 0))
    lo = period_start(t.min() if first is None else as_times(first)[0], step)[0]
    hi = t.max() if last is None else as_times(last)[0]
    starts = period_starts(lo, hi, step)
    ends = next_start(starts, step) - _DAY
    days, daily, _ = resample(t, v, "daily", accepted=accepted, levels=levels, first=lo, last=ends[-1])
    return starts, daily[..., np.searchsorted(days, ends)]


# --------------------------------------------------------------------------------------
# The Dataset
# --------------------------------------------------------------------------------------


def with_period(data: xr.Dataset, step: str | None = None) -> xr.Dataset:
    """``data`` with its ``period`` coordinate and ``attrs["step"]`` set."""
    step = step or data.attrs.get("step")
    if step is None:
        raise ValueError("the step is neither given nor in data.attrs['step']")
    out = data.assign_coords(period=("time", period_of_year(data["time"].values, step)))
    out.attrs = {**data.attrs, "step": step}
    return out


def build_dataset(
    arrays: Mapping[str, Any],
    stations: Sequence[str],
    times: Any,
    step: Step,
    *,
    attrs: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """``(station, time)`` Dataset from ``{variable: array (station, time)}`` on a step grid.

    ``times`` must be the step's period starts, increasing, without gaps (use
    :func:`period_starts`); the ``period`` coordinate and ``attrs["step"]`` are added.
    """
    t = as_times(times)
    if t.size and not np.array_equal(t, period_starts(t[0], t[-1], step)):
        raise ValueError(f"times are not the complete {step} grid from {t[0]} to {t[-1]}")
    variables = {}
    for name, a in arrays.items():
        a = np.asarray(a, dtype=np.float64)
        if a.shape != (len(stations), t.size):
            raise ValueError(f"{name}: shape {a.shape}, expected {(len(stations), t.size)}")
        variables[name] = (("station", "time"), a)
    ds = xr.Dataset(variables, coords={"station": [str(s) for s in stations], "time": t})
    ds.attrs = dict(attrs or {})
    return with_period(ds, step)


def from_series(
    series: Mapping[tuple[str, str], tuple[Any, Any] | tuple[Any, Any, Any]],
    step: Step,
    *,
    min_coverage: float = 0.8,
    first: Any = None,
    last: Any = None,
) -> xr.Dataset:
    """Dataset from stored series ``{(station, variable): (times, values[, levels or accepted])}``.

    Each series is resampled to ``step`` with :func:`resample` (precipitation totalled,
    everything else averaged); the third element, when given, is the QC levels (strings)
    or a boolean ``accepted`` mask. The grid spans all series (or ``first``..``last``).
    A variable named ``<variable>_last_day`` (:data:`LAST_DAY`) takes each period's last day
    (:func:`last_day`) of the daily values given for it.
    """
    if not series:
        raise ValueError("no series")
    all_t = [as_times(s[0]) for s in series.values() if len(s[0])]
    lo = as_times(first)[0] if first is not None else min(t.min() for t in all_t)
    hi = as_times(last)[0] if last is not None else max(t.max() for t in all_t)
    grid = period_starts(lo, hi, step)
    stations = list(dict.fromkeys(s for s, _ in series))
    variables = list(dict.fromkeys(v for _, v in series))
    arrays = {v: np.full((len(stations), grid.size), np.nan) for v in variables}
    for (station, variable), item in series.items():
        times, values = item[0], item[1]
        qc = item[2] if len(item) > 2 else None
        kw: dict[str, Any] = {}
        if qc is not None:
            qc_arr = np.asarray(qc)
            kw["accepted" if qc_arr.dtype == bool else "levels"] = qc_arr
        if variable.endswith(LAST_DAY):
            _, vals = last_day(times, values, step, first=grid[0], last=grid[-1], **kw)
        else:
            _, vals, _ = resample(times, values, step, min_coverage=min_coverage, first=grid[0], last=grid[-1],
                                  how="sum" if variable in TOTALLED else "mean", **kw)
        arrays[variable][stations.index(station)] = vals
    return build_dataset(arrays, stations, grid, step)


# --------------------------------------------------------------------------------------
# The real Chirchik archive (../shared/data/chirchik, for the evaluation only)
# --------------------------------------------------------------------------------------

CHIRCHIK_TYPES = {"Q": "discharge", "P": "precipitation", "T": "air_temperature"}
CHIRCHIK_FLOW = ("16279", "16290", "16294", "16298")
"""Chatkal at Khudaydod, Pskem at Mullala, Charvak inflow ("virtual gauge" 16279 + 16290), Sidzhak"""
CHIRCHIK_METEO = ("38462", "38464", "38471")
"""Pskem, Charvak Reservoir and Chatkal meteo stations (38464 reports precipitation only)"""


def load_chirchik(path: str | Path, stations: Sequence[str] | None = None) -> xr.Dataset:
    """Decade series of ``chirchik_uzhydromet.csv`` (a file or its folder) as a Dataset.

    The file is long format (``date,data,norm,units,type,code,...,resolution``); decade
    rows (``resolution == "dec"``) are dated on the decade's *last* day and are labelled
    here by its *first* day, as watermon stores decades. ``type`` Q, P, T become
    ``discharge`` (m3/s), ``precipitation`` (mm per decade) and ``air_temperature``
    (degC); ``NA`` is NaN. Stations (default): discharge of 16279, 16290, 16294, 16298,
    precipitation and temperature of 38462, 38464, 38471. The ``norm`` column (a
    multi-year mean over the whole record, verification years included) is not read:
    a model using it would look ahead.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "chirchik_uzhydromet.csv"
    wanted = set(stations or (*CHIRCHIK_FLOW, *CHIRCHIK_METEO))
    rows: list[tuple[np.datetime64, str, str, float]] = []
    with path.open(newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            if r["resolution"] != "dec" or r["code"] not in wanted or r["type"] not in CHIRCHIK_TYPES:
                continue
            value = float("nan") if r["data"] in ("NA", "") else float(r["data"])
            rows.append((np.datetime64(r["date"], "D"), r["code"], CHIRCHIK_TYPES[r["type"]], value))
    if not rows:
        raise ValueError(f"{path}: no decade rows for {sorted(wanted)}")
    dates = np.array([r[0] for r in rows])
    starts = period_start(dates, "decade")
    if not np.array_equal(next_start(starts, "decade").astype("datetime64[D]") - _DAY, dates):
        bad = dates[next_start(starts, "decade").astype("datetime64[D]") - _DAY != dates][:3]
        raise ValueError(f"{path}: decade rows not dated on the decade's last day, e.g. {bad}")
    grid = period_starts(starts.min(), starts.max(), "decade")
    codes = [c for c in (stations or (*CHIRCHIK_FLOW, *CHIRCHIK_METEO)) if c in {r[1] for r in rows}]
    arrays = {v: np.full((len(codes), grid.size), np.nan) for v in CHIRCHIK_TYPES.values()}
    pos = np.searchsorted(grid, starts)
    for (_, code, var, value), i in zip(rows, pos, strict=True):
        arrays[var][codes.index(code), i] = value
    return build_dataset(arrays, codes, grid, "decade",
                         attrs={"source": f"{path.name} (riversCentralAsia, Uzbek HydroMet 2021)"})


def load_chirchik_daily(path: str | Path) -> xr.Dataset:
    """Daily discharge of ``charvak_chatkal_daily_1965_1967.csv`` (file or folder) as a Dataset.

    Stations ``16279`` and ``Charvak`` as the file names them (1965-01-01 to 1967-09-15).
    """
    path = Path(path)
    if path.is_dir():
        path = path / "charvak_chatkal_daily_1965_1967.csv"
    series: dict[str, dict[np.datetime64, float]] = {}
    with path.open(newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            value = float("nan") if r["data"] in ("NA", "") else float(r["data"])
            series.setdefault(r["code"], {})[np.datetime64(r["date"], "D")] = value
    first = min(min(s) for s in series.values())
    last = max(max(s) for s in series.values())
    grid = period_starts(first, last, "daily")
    codes = list(series)
    q = np.full((len(codes), grid.size), np.nan)
    gd = grid.astype("datetime64[D]")
    for i, code in enumerate(codes):
        d = np.array(sorted(series[code]))
        q[i, np.searchsorted(gd, d)] = [series[code][x] for x in d]
    return build_dataset({"discharge": q}, codes, grid, "daily",
                         attrs={"source": f"{path.name} (riversCentralAsia KoksuDischarge)"})
