"""Checked series on a regular grid for the models: doubtful values out, short gaps filled.

Filling happens here only, in what models read; the database keeps the gap. A gap of
at most ``gap_fill.max_gap`` steps (per period in ``config/qc.yaml``) between two
accepted values is interpolated linearly in time and marked ``estimated``; a longer
one stays NaN and ``missing``, because inventing a week of river flow would hide
exactly what a forecaster needs to know.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import xarray as xr
from sqlalchemy import Connection

from watermon.config import BasinConfig
from watermon.periods import Aggregation, label, period_starts
from watermon.qc.checks import infer_step
from watermon.qc.store import SeriesRef, effective_levels, load_series, series_refs

ACCEPTED = ("good", "estimated", "unchecked")


def fill_gaps(values: np.ndarray, max_gap: int, times: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Interpolate runs of at most ``max_gap`` NaNs between finite values.

    Returns the filled values and a mask of the filled positions. ``times`` (any
    numeric or datetime64 axis) weights the interpolation; by default steps are equal.
    """
    filled = np.zeros(values.shape, dtype=bool)
    ok = np.isfinite(values)
    if max_gap < 1 or ok.sum() < 2 or ok.all():
        return values.copy(), filled
    x = np.arange(values.size, dtype=float) if times is None else times.astype("datetime64[s]").astype(np.int64).astype(float)
    edges = np.diff(np.concatenate([[0], (~ok).astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    inner = (starts > 0) & (ends < values.size) & (ends - starts <= max_gap)
    for s, e in zip(starts[inner], ends[inner], strict=True):
        filled[s:e] = True
    out = values.copy()
    out[filled] = np.interp(x[filled], x[ok], values[ok])
    return out, filled


def grid(aggregation: Aggregation, times: np.ndarray, cadence: np.timedelta64 | None) -> np.ndarray:
    """The regular times a series of this aggregation should have between its first and last value."""
    if aggregation.period in ("pentad", "decade", "month"):
        first, last = (t.astype("datetime64[D]").item() for t in (times[0], times[-1]))
        return np.array([np.datetime64(label(d).replace(tzinfo=None), "s")
                         for d in period_starts(aggregation.period, first, last)], dtype="datetime64[s]")
    step = np.timedelta64(86400, "s") if aggregation.period == "daily" else cadence or infer_step(times)
    if step is None:
        return times
    return np.arange(times[0], times[-1] + step, step).astype("datetime64[s]")


def model_input(
    conn: Connection,
    config: BasinConfig,
    station: str,
    variable: str,
    aggregation: Aggregation,
    start: datetime | None = None,
    end: datetime | None = None,
    accepted: tuple[str, ...] = ACCEPTED,
) -> xr.Dataset:
    """The series as models should read it: ``value`` and ``flag`` over ``time``."""
    ref = next((r for r in series_refs(conn, [station]).values()
                if r.variable == variable and r.aggregation is aggregation), None)
    if ref is None:
        raise KeyError(f"no stored series {station}/{variable}/{aggregation.value}")
    return _dataset(conn, config, ref, start, end, accepted)


def _dataset(conn: Connection, config: BasinConfig, ref: SeriesRef, start: datetime | None, end: datetime | None,
             accepted: tuple[str, ...]) -> xr.Dataset:
    data = load_series(conn, ref, start, end=end)
    levels = effective_levels(conn, data)
    attrs = {"station": ref.station, "variable": ref.variable, "aggregation": ref.aggregation.value,
             "units": config.variable(ref.variable).unit}
    if data.times.size == 0:
        empty = np.zeros(0)
        return xr.Dataset({"value": ("time", empty), "flag": ("time", empty.astype(object))},
                          coords={"time": np.zeros(0, dtype="datetime64[ns]")}, attrs=attrs)
    gaps = config.qc.checks(ref.station, ref.variable).gaps
    cadence = None if gaps is None or gaps.cadence is None else np.timedelta64(int(gaps.cadence.total_seconds()), "s")
    times = grid(ref.aggregation, data.times, cadence)
    pos = np.searchsorted(data.times, times)
    on_grid = (pos < data.times.size) & (data.times[np.minimum(pos, data.times.size - 1)] == times)
    values = np.full(times.size, np.nan)
    flags = np.full(times.size, "missing", dtype=object)
    src = pos[on_grid]
    values[on_grid] = data.values[src]
    flags[on_grid] = levels[src]
    values[on_grid & ~np.isin(flags, accepted)] = np.nan
    period = "instantaneous" if ref.aggregation is Aggregation.INSTANTANEOUS else ref.aggregation.period
    max_gap = config.qc.gap_fill.max_gap.get(period, 0)
    values, filled = fill_gaps(values, max_gap, times)
    flags[filled] = "estimated"  # refused values keep their level (suspect, bad) and stay NaN
    attrs["max_gap_filled"] = max_gap
    return xr.Dataset({"value": ("time", values), "flag": ("time", flags.astype(str))},
                      coords={"time": times.astype("datetime64[ns]")}, attrs=attrs)
