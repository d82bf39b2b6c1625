"""Quality-control checks: small vectorised functions over one series' arrays.

Each check takes plain numpy arrays (times as ``datetime64[s]``, values as float64,
sorted by time, NaN where no value) and returns a boolean mask of the values it
doubts, or for gaps the times that should exist and do not. They know nothing of
the database or the configuration, so they are tested, benchmarked and compared
with other QC systems on arrays alone; :mod:`watermon.qc.service` feeds them.

Windows are counted in values, not in hours, so the same parameters fit hourly
readings and decade means: a spike is "far from its neighbours", whatever their spacing.
"""

from __future__ import annotations

import warnings

import bottleneck as bn
import numpy as np

SECONDS = np.timedelta64(1, "s")
MAD_TO_SIGMA = 1.4826  # MAD x this = standard deviation for Gaussian noise
EXIT_VALUES = 3  # values after a run of equal values that tell where the series went


def centred_median(values: np.ndarray, window: int, min_count: int | None = None) -> np.ndarray:
    """Moving median over ``window`` values centred on each one, NaNs skipped."""
    window = min(window | 1, max(1, values.size | 1))  # odd, and not longer than the series
    half = window // 2
    padded = np.concatenate([values, np.full(half, np.nan)])
    med = bn.move_median(padded, window, min_count=min_count or half + 1)
    return med[half:]


def outside_range(values: np.ndarray, low: float | None, high: float | None) -> np.ndarray:
    """Values below ``low`` or above ``high`` (either bound may be absent)."""
    out = np.zeros(values.shape, dtype=bool)
    if low is not None:
        out |= values < low
    if high is not None:
        out |= values > high
    return out


def spike_scores(
    values: np.ndarray, window: int, *, min_scale: float = 0.0, relative_floor: float = 0.0
) -> np.ndarray:
    """Robust z-score of each value against its neighbourhood.

    The residual from the centred moving median is divided by the moving MAD of the
    residuals (scaled to a standard deviation) over three windows, floored so that a
    quiet stretch does not turn rounding into spikes.

    With ``relative_floor`` > 0 the variable is taken to be positive with errors that
    scale with its size (discharge): residuals are then log ratios to the median, so a
    value 3 x too high and one 3 x too low score alike, and a flood peak of 500 m3/s is
    not judged by the noise of the 30 m3/s base flow around it in the window. The scale
    is floored at ``relative_floor`` (a log ratio of 0.1 is about 10 % of the median)
    and at ``min_scale`` / median (the same absolute floor as below, as a ratio), and
    values below ``min_scale`` count as ``min_scale``, so a river at 0.02 m3/s next to
    one at 0.05 is not a spike (give a river that can run dry a positive ``min_scale``:
    without one, a zero is infinitely far from any flow). On the Chirchik decade and
    daily series this finds x2-x5 errors where the absolute residual, against a MAD that
    mixes the melt season with the winter, flagged one real value in eight (see
    :mod:`watermon.qc.skill`).

    With ``relative_floor`` = 0 (stage, levels, temperatures, which may be negative)
    residuals are differences and the scale is floored at ``min_scale``.
    """
    if relative_floor > 0:
        x = np.log(np.maximum(values, max(min_scale, np.finfo(np.float64).tiny)))  # NaN stays NaN
        med = centred_median(x, window)
        resid = x - med
        floor = relative_floor if min_scale <= 0 else np.maximum(relative_floor, min_scale * np.exp(-med))
    else:
        med = centred_median(values, window)
        resid = values - med
        floor = min_scale
    scale = np.fmax(MAD_TO_SIGMA * centred_median(np.abs(resid), 3 * window), floor)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.abs(resid) / scale
    z[~np.isfinite(z)] = 0.0
    return z


def spikes(
    values: np.ndarray,
    window: int,
    threshold: float,
    *,
    min_scale: float = 0.0,
    relative_floor: float = 0.0,
) -> np.ndarray:
    """Values whose robust z-score (see :func:`spike_scores`) exceeds ``threshold``."""
    return spike_scores(values, window, min_scale=min_scale, relative_floor=relative_floor) > threshold


def fast_changes(times: np.ndarray, values: np.ndarray, max_change_per_hour: float) -> np.ndarray:
    """Values reached from the previous value faster than ``max_change_per_hour``."""
    out = np.zeros(values.shape, dtype=bool)
    if values.size < 2:
        return out
    hours = np.diff(times) / SECONDS / 3600.0
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.abs(np.diff(values)) / hours
    out[1:] = rate > max_change_per_hour
    return out


def runs(values: np.ndarray, tolerance: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Start index and length of each run of equal values (NaN ends a run)."""
    if values.size == 0:
        return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp)
    same = np.abs(np.diff(values)) <= tolerance  # NaN compares False
    starts = np.flatnonzero(np.concatenate([[True], ~same]))
    lengths = np.diff(np.concatenate([starts, [values.size]]))
    return starts, lengths


def flatlines(
    values: np.ndarray,
    min_run: int,
    *,
    tolerance: float = 0.0,
    alpha: float | None = 7e-5,
    context: int = 30,
) -> np.ndarray:
    """Values repeating the one before them in a run too long to be chance.

    A run of ``n`` equal values is suspect when ``n >= min_run`` and, if ``alpha`` is
    given, when the chance of the run and of the step that ends it is below ``alpha``:
    ``p ** (n - 1) * q``, with ``p`` the share of repeats among the ``context`` values on
    each side of the run and ``q`` the share (plus one, of the steps plus one) of the
    steps there at least as large as the way out of the run, measured to the median of
    the next ``EXIT_VALUES`` values so that a spike after a run is not taken for it.
    Winter base flow read to 0.1 m3/s, or daily values read off a rating table, repeat
    themselves for a week and leave the run by one step of the table; the same run in
    the melt season cannot be chance. A stuck recorder, once freed or repaired, jumps
    back to a river that has moved on meanwhile: ``q`` weighs that jump (a run at the
    end of the data has none yet, ``q`` = 1). On the real Chirchik daily series, whose
    natural runs last up to 9 days, the repeats alone found 5-20-day stuck recorders
    with recall 0.95 only at 1.5-2 % false positives; with the way out, at under 1 %
    (:mod:`watermon.qc.skill`). The first value of a run is the last one the sensor really measured and is not flagged.
    """
    out = np.zeros(values.shape, dtype=bool)
    starts, lengths = runs(values, tolerance)
    long = (lengths >= min_run) & np.isfinite(values[starts] if starts.size else np.zeros(0))
    if not long.any():
        return out
    starts, lengths = starts[long], lengths[long]
    if alpha is not None:
        with np.errstate(invalid="ignore"):
            step = np.abs(np.diff(values))  # step[i]: from value i to value i + 1
            repeat = np.concatenate([[0], (step <= tolerance).astype(np.int64)])
        csum = np.concatenate([[0], np.cumsum(repeat)])
        ends = starts + lengths  # exclusive
        lo = np.maximum(starts - context, 0)
        hi = np.minimum(ends + context, values.size)
        inside = lengths - 1  # repeats within the run itself
        n_repeats = csum[hi] - csum[lo + 1] - inside
        n_pairs = (hi - lo - 1) - inside
        with np.errstate(divide="ignore", invalid="ignore"):
            p = np.where(n_pairs > 0, n_repeats / np.maximum(n_pairs, 1), 1.0)
        # the way out of the run (to the median of the next EXIT_VALUES values, so that a
        # spike after a run is not taken for it) against the context steps, before the
        # run and after its last value
        after = ends[:, None] + np.arange(EXIT_VALUES)
        following = np.where(after < values.size, values[np.minimum(after, values.size - 1)], np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all NaN: the run ends the data
            exit_step = np.abs(bn.nanmedian(following, axis=1) - values[starts])
        idx = np.concatenate(
            [starts[:, None] - np.arange(context, 0, -1), ends[:, None] + np.arange(context)], axis=1
        )
        inside_series = (idx >= 0) & (idx < step.size)
        ctx = np.where(inside_series, step[np.clip(idx, 0, max(step.size - 1, 0))], np.nan)
        with np.errstate(invalid="ignore"):
            n_larger = np.sum(ctx >= exit_step[:, None], axis=1)
        n_steps = np.sum(np.isfinite(ctx), axis=1)
        q = np.where(np.isfinite(exit_step), (n_larger + 1) / (n_steps + 1), 1.0)
        keep = p ** (lengths - 1) * q < alpha
        starts, lengths = starts[keep], lengths[keep]
    # flag every value of a kept run but its first, without a loop over runs
    edges = np.zeros(values.size + 1, dtype=np.int64)
    np.add.at(edges, starts + 1, 1)
    np.add.at(edges, starts + lengths, -1)
    out[:] = np.cumsum(edges[:-1]) > 0
    return out


def missing_times(
    times: np.ndarray, step: np.timedelta64, *, tolerance: float = 1.5, end: np.datetime64 | None = None
) -> np.ndarray:
    """The times a regular series of cadence ``step`` should have and lacks.

    A gap is an interval longer than ``tolerance`` x ``step``; its missing times are
    the steps after the value before it. ``end`` extends the check to a series that
    has gone silent.
    """
    if times.size == 0:
        return np.zeros(0, dtype="datetime64[s]")
    edges = times if end is None or end <= times[-1] else np.concatenate([times, [end + step]])
    gaps = np.diff(edges)
    big = np.flatnonzero(gaps > step * tolerance)
    if big.size == 0:
        return np.zeros(0, dtype="datetime64[s]")
    counts = (gaps[big] / step).astype(np.int64) - 1
    counts = np.maximum(counts, 1)
    first = edges[big] + step
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return (np.repeat(first, counts) + offsets * step).astype("datetime64[s]")


def infer_step(times: np.ndarray) -> np.timedelta64 | None:
    """The series' usual spacing: the median interval, or None for fewer than 3 values."""
    if times.size < 3:
        return None
    return np.median(np.diff(times).astype(np.int64)).astype(np.int64) * SECONDS


def in_future(times: np.ndarray, now: np.datetime64, tolerance: np.timedelta64) -> np.ndarray:
    """Times later than ``now`` + ``tolerance`` (a clock or time-zone error upstream)."""
    return times > now + tolerance


def cumulative_volume(
    day0: np.datetime64, daily_m3s: np.ndarray, times: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Volume (million m3) passed from ``day0`` to each time by a flow of daily means.

    Each daily mean is held over its day. Also returns, per time, how many days up to
    and including its own lack a value, so callers can leave intervals across a missing
    day unjudged; times outside the days given get NaN.
    """
    per_day = np.nan_to_num(daily_m3s) * 86400.0 / 1e6
    cum = np.concatenate([[0.0], np.cumsum(per_day)])
    holes = np.concatenate([[0], np.cumsum(~np.isfinite(daily_m3s))])
    offset = (times - day0) / SECONDS / 86400.0
    k = np.floor(offset).astype(np.int64)
    ok = (k >= 0) & (k < daily_m3s.size)
    kk = np.clip(k, 0, daily_m3s.size - 1)
    out = cum[kk] + per_day[kk] * (offset - k)
    out[~ok] = np.nan
    out_holes = holes[kk + 1]
    return out, out_holes


def water_balance_errors(
    times: np.ndarray, volume_mcm: np.ndarray, day0: np.datetime64, inflow_m3s: np.ndarray, release_m3s: np.ndarray
) -> np.ndarray:
    """Reported change of volume minus the volume (inflow - release) brought, million m3.

    ``inflow_m3s`` and ``release_m3s`` are daily means on consecutive days from ``day0``.
    Element ``i`` belongs to the volume at ``times[i]`` (the interval from the reading
    before it); element 0, and intervals spanning a day without flows, are NaN.
    """
    out = np.full(volume_mcm.shape, np.nan)
    if volume_mcm.size < 2:
        return out
    vin, hin = cumulative_volume(day0, inflow_m3s, times)
    vout, hout = cumulative_volume(day0, release_m3s, times)
    net = np.diff(vin - vout)
    holes = (np.diff(hin) + np.diff(hout)) > 0
    # the day a reading falls on must have its flows too
    first_day = np.floor((times[:-1] - day0) / SECONDS / 86400.0).astype(np.int64)
    inside = (first_day >= 0) & (first_day < inflow_m3s.size)
    fd = np.clip(first_day, 0, inflow_m3s.size - 1)
    holes |= ~inside | ~np.isfinite(inflow_m3s[fd]) | ~np.isfinite(release_m3s[fd])
    err = np.diff(volume_mcm) - net
    err[holes] = np.nan
    out[1:] = err
    return out


def unbalanced(
    errors_mcm: np.ndarray, volume_mcm: np.ndarray, *, tolerance_mcm: float, tolerance_relative: float
) -> np.ndarray:
    """Intervals whose water-balance error exceeds the absolute plus relative tolerance."""
    allowed = tolerance_mcm + tolerance_relative * np.abs(volume_mcm)
    with np.errstate(invalid="ignore"):
        return np.abs(errors_mcm) > allowed


def volume_from_level(levels: np.ndarray, curve: tuple[tuple[float, float], ...]) -> np.ndarray:
    """Volume (million m3) of each level by the reservoir's level-volume curve."""
    lv = np.asarray(curve, dtype=float)
    return np.interp(levels, lv[:, 0], lv[:, 1], left=np.nan, right=np.nan)


def lagged_sum(
    target_times: np.ndarray, upstream: list[tuple[np.ndarray, np.ndarray, float]]
) -> np.ndarray:
    """Sum of upstream flows, each read ``lag_hours`` before the target times.

    ``upstream`` holds (times, values, lag_hours) per contributing station; values are
    interpolated linearly between readings, and a target time outside any station's
    record gets NaN.
    """
    total = np.zeros(target_times.shape)
    t = target_times.astype("datetime64[s]").astype(np.int64)
    for times, values, lag_hours in upstream:
        ok = np.isfinite(values)
        ts, vs = times[ok].astype("datetime64[s]").astype(np.int64), values[ok]
        if ts.size == 0:
            return np.full(target_times.shape, np.nan)
        shifted = t - int(round(lag_hours * 3600))
        total += np.interp(shifted, ts, vs, left=np.nan, right=np.nan)
    return total


def out_of_ratio(observed: np.ndarray, expected: np.ndarray, low: float, high: float, min_flow: float) -> np.ndarray:
    """Values whose ratio to the expected flow lies outside [low, high].

    Ignored where both are below ``min_flow``: ratios of trickles mean nothing.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = observed / expected
        relevant = np.fmax(observed, expected) >= min_flow
        return relevant & ~np.isnan(ratio) & ((ratio < low) | (ratio > high))
