"""Checks across series: a reservoir's water balance, flows along the river network, and a
station's period values against its own readings or daily values.

Each returns, for the series it judges, a mask over that series' values plus a score
per value (the measured imbalance or ratio; for period values, the other series' value)
to keep in the flag's detail.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from watermon.config import BasinConfig
from watermon.config.qc import Consistency, PeriodAgreement, WaterBalance
from watermon.config.models import Reservoir
from watermon.forecast import dataset as D
from watermon.periods import Aggregation
from watermon.qc import checks as C
from watermon.qc.store import SeriesData

DAY = np.timedelta64(1, "D")


@dataclass(frozen=True)
class Verdict:
    check: str
    mask: np.ndarray
    score: np.ndarray
    params: dict[str, object]


def daily_grid(data: SeriesData) -> tuple[np.datetime64, np.ndarray]:
    """Daily-mean series as (first day, value per consecutive day, NaN where absent)."""
    days = data.times.astype("datetime64[D]")
    day0 = days[0]
    out = np.full(int((days[-1] - day0) / DAY) + 1, np.nan)
    out[((days - day0) / DAY).astype(np.int64)] = data.values
    return day0.astype("datetime64[s]"), out


def water_balance(volume: SeriesData, inflow: SeriesData, release: SeriesData, p: WaterBalance) -> Verdict | None:
    """Reported volume changes against (inflow - release) x dt from the daily means."""
    if min(volume.times.size, inflow.times.size, release.times.size) < 2:
        return None
    day_in, q_in = daily_grid(inflow)
    day_out, q_out = daily_grid(release)
    day0 = min(day_in, day_out)
    n = int((max(day_in + q_in.size * DAY, day_out + q_out.size * DAY) - day0) / DAY)
    grid_in, grid_out = np.full(n, np.nan), np.full(n, np.nan)
    grid_in[int((day_in - day0) / DAY):][: q_in.size] = q_in
    grid_out[int((day_out - day0) / DAY):][: q_out.size] = q_out
    err = C.water_balance_errors(volume.times, volume.values, day0, grid_in, grid_out)
    mask = C.unbalanced(err, volume.values, tolerance_mcm=p.tolerance_mcm, tolerance_relative=p.tolerance_relative)
    return Verdict("water_balance", mask, err,
                   {"tolerance_mcm": p.tolerance_mcm, "tolerance_relative": p.tolerance_relative})


def level_volume(level: SeriesData, volume: SeriesData, reservoir: Reservoir, p: WaterBalance) -> Verdict | None:
    """Reported volume against the level-volume curve at the level reported at the same time."""
    common, iv, il = np.intersect1d(volume.times, level.times, return_indices=True)
    if common.size == 0:
        return None
    expected = C.volume_from_level(level.values[il], reservoir.level_volume_curve)
    rel = np.full(volume.times.size, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel[iv] = (volume.values[iv] - expected) / expected
    mask = np.abs(rel) > p.level_volume_relative
    mask &= np.isfinite(rel)
    return Verdict("level_volume", mask, rel, {"tolerance_relative": p.level_volume_relative})


def upstream_of(config: BasinConfig, rule: Consistency) -> list[tuple[str, str, float]]:
    """(station, variable, lag hours) contributing to the rule's station."""
    reach_lag = {(r.upstream, r.downstream): r.travel_time_hours for r in config.reaches}
    if rule.upstream:
        return [(u.station, u.variable,
                 u.lag_hours if u.lag_hours is not None else reach_lag.get((u.station, rule.station), 0.0))
                for u in rule.upstream]
    station = config.station(rule.station)
    if station.derived_from:
        return [(code, rule.variable, 0.0) for code in station.derived_from]
    return [(r.upstream, "discharge", r.travel_time_hours) for r in config.reaches if r.downstream == rule.station]


def daily_means(data: SeriesData, lag_hours: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(days, mean per day, day index of each value): readings shifted by ``lag_hours``."""
    shifted = data.times + np.timedelta64(int(round(lag_hours * 3600)), "s")
    days, inv = np.unique(shifted.astype("datetime64[D]"), return_inverse=True)
    return days, np.bincount(inv, weights=data.values) / np.bincount(inv), inv


def _lookup(keys: np.ndarray, values: np.ndarray, at: np.ndarray) -> np.ndarray:
    pos = np.minimum(np.searchsorted(keys, at), keys.size - 1)
    return np.where(keys[pos] == at, values[pos], np.nan)


def consistency(target: SeriesData, parts: list[tuple[SeriesData, float]], rule: Consistency) -> Verdict | None:
    """Downstream values on days (or periods) when they disagree with the lagged upstream sum.

    Readings and daily means are compared as daily means, the upstream ones shifted by
    their travel time; pentad, decade and month means are compared label by label.
    """
    if target.times.size == 0 or any(p.times.size == 0 for p, _ in parts):
        return None
    if target.ref.aggregation.period in ("instant", "daily"):
        days, observed, inv = daily_means(target)
        expected = np.zeros(days.size)
        for part, lag_hours in parts:
            pdays, pmeans, _ = daily_means(part, lag_hours)
            expected += _lookup(pdays, pmeans, days)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = observed / expected
        bad = C.out_of_ratio(observed, expected, *rule.ratio, rule.min_flow)
        return Verdict("consistency", bad[inv], ratio[inv], _params(rule, parts))
    expected = np.zeros(target.times.size)
    for part, _ in parts:
        expected += _lookup(part.times, part.values, target.times)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = target.values / expected
    return Verdict("consistency", C.out_of_ratio(target.values, expected, *rule.ratio, rule.min_flow), ratio,
                   _params(rule, parts))


def _params(rule: Consistency, parts: list[tuple[SeriesData, float]]) -> dict[str, object]:
    return {"upstream": [f"{p.ref.station}/{p.ref.variable}" for p, _ in parts],
            "lag_hours": [lag for _, lag in parts], "ratio": list(rule.ratio), "min_flow": rule.min_flow}


FINER = {
    "mean": (Aggregation.DAILY_MEAN, Aggregation.INSTANTANEOUS),
    "sum": (Aggregation.DAILY_SUM,),
}
"""what a stored period mean (total) is compared with: the same station's daily means or
readings (daily totals)"""
STORED = {
    Aggregation.PENTAD_MEAN: "mean", Aggregation.DECADE_MEAN: "mean", Aggregation.MONTH_MEAN: "mean",
    Aggregation.PENTAD_SUM: "sum", Aggregation.DECADE_SUM: "sum", Aggregation.MONTH_SUM: "sum",
}


def period_disagreement(stored: SeriesData, finer: SeriesData, p: PeriodAgreement) -> tuple[np.ndarray, np.ndarray]:
    """Per stored period value: what the finer values give for its period (NaN where they do
    not cover it), and whether the two differ by more than the tolerance."""
    agg = stored.ref.aggregation
    # readings are averaged per UTC day first; a total counts missing days at the others' mean
    starts, values, _ = D.resample(finer.times, finer.values, agg.period, min_coverage=p.min_coverage,
                                   how=STORED[agg])
    if starts.size == 0:
        return np.full(stored.times.size, np.nan), np.zeros(stored.times.size, dtype=bool)
    other = _lookup(starts.astype("datetime64[D]"), values, stored.times.astype("datetime64[D]"))
    a = stored.values
    with np.errstate(invalid="ignore"):
        bad = np.abs(a - other) > p.tolerance_absolute + p.tolerance_relative * np.maximum(np.abs(a), np.abs(other))
    return other, bad & np.isfinite(other) & np.isfinite(a)


def stored_period_check(stored: SeriesData, finer: SeriesData, p: PeriodAgreement) -> Verdict | None:
    """The stored period values that the finer series contradicts; score: the finer series' value."""
    if stored.times.size == 0 or finer.times.size == 0:
        return None
    other, bad = period_disagreement(stored, finer, p)
    return Verdict("aggregation", bad, other, _agreement_params(finer, p))


def finer_check(target: SeriesData, stored: SeriesData, p: PeriodAgreement,
                whole: SeriesData | None = None) -> Verdict | None:
    """``target``'s values in the periods where the stored period value contradicts them (the
    periods judged on ``whole``, the same series loaded with its first period complete);
    score: the stored period value."""
    whole = whole if whole is not None else target
    if target.times.size == 0 or stored.times.size == 0 or whole.times.size == 0:
        return None
    _, bad = period_disagreement(stored, whole, p)
    label = stored.times.astype("datetime64[D]")
    starts = D.period_start(target.times, stored.ref.aggregation.period).astype("datetime64[D]")
    stored_value = _lookup(label, stored.values, starts)
    mask = _lookup(label, bad.astype(np.float64), starts) == 1.0
    return Verdict("aggregation", mask, stored_value, _agreement_params(stored, p))


def _agreement_params(other: SeriesData, p: PeriodAgreement) -> dict[str, object]:
    return {"compared_with": str(other.ref.aggregation), **p.model_dump()}
