"""Rule evaluation: pure functions from data to the condition of one rule at one station.

No database here: :mod:`watermon.alerts.service` reads the data, these functions judge
it, :mod:`watermon.alerts.lifecycle` turns conditions into alert episodes. Keeping the
judgement pure is what makes it testable reading by reading.

A :class:`Condition` is the same for every kind: per level a threshold and the value
judged against it (one value for most kinds; for forecasts each level may use its own
statistic, e.g. q95 for watch), a direction, the level reached without hysteresis, and
a ``key`` naming the evidence (the reading, the forecast run...). ``None`` instead of a
condition means *unknown*: no usable data, which neither opens nor resolves anything
(silence is the outage rules' business).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from watermon.config.alerts import (
    LEVELS,
    ForecastRule,
    ObservedRule,
    OutageRule,
    QcBurstRule,
    ReservoirRule,
    TransboundaryRule,
    band_thresholds,
)
from watermon.periods import decade_start, period_end

UNUSABLE = frozenset({"bad", "suspect", "missing"})
"""QC levels a value must not have to be alerted on (unchecked values are: alerts must not wait for QC)"""
QUANTILES = {"q05": 0.05, "q25": 0.25, "median": 0.5, "q75": 0.75, "q95": 0.95}


def iso(t: datetime) -> str:
    """ISO 8601 UTC with a Z, to the second: how alert times are written."""
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def rank(level: str | None) -> int:
    """-1 for no level, then watch 0 < warning 1 < danger 2."""
    return -1 if level is None else LEVELS.index(level)


@dataclass(frozen=True)
class Reading:
    time: datetime
    value: float
    qc: str
    """effective QC level (``observation_qc``): good, unchecked, estimated, suspect, bad, missing"""


@dataclass(frozen=True)
class ForecastRow:
    """One lead of one station's forecast in one run, its quantiles by name."""

    run_id: int
    issue_time: datetime
    model: str
    step: str
    lead: int
    valid_time: datetime
    stats: dict[str, float | None]


@dataclass(frozen=True)
class FlagRow:
    variable: str
    aggregation: str
    time: datetime
    check: str
    level: str


@dataclass(frozen=True)
class Condition:
    """What a rule sees at a station now."""

    rule_id: str
    kind: str
    station: str
    variable: str | None
    unit: str | None
    direction: str
    thresholds: dict[str, float]
    """per level, least severe first; empty when nothing is to be judged (a decade without a schedule)"""
    values: dict[str, float]
    """per level: the value judged against that level's threshold"""
    level: str | None
    """the highest level reached, without hysteresis"""
    value: float
    """the value of ``level`` (of the least severe level when none is reached)"""
    observed_at: datetime | None
    key: str
    """names the evidence: a new key is a new reading (run, decade...), counted towards ``resolve_after``"""
    evidence: dict[str, Any] = field(default_factory=dict)

    def value_at(self, level: str | None) -> float:
        return self.values.get(level, self.value) if level else self.value

    def reaches(self, level: str) -> bool:
        t, v = self.thresholds.get(level), self.values.get(level)
        if t is None or v is None:
            return False
        return v >= t if self.direction == "above" else v <= t

    def holds(self, level: str, margin: float) -> bool:
        """Still at ``level`` when leaving it needs going ``margin`` beyond its threshold (hysteresis)."""
        t, v = self.thresholds.get(level), self.values.get(level)
        if t is None or v is None:
            return False
        return v >= t - margin if self.direction == "above" else v <= t + margin


def condition(rule: Any, station: str, thresholds: Sequence[tuple[str, float]], values: dict[str, float], *,
              unit: str | None, observed_at: datetime | None, key: str, evidence: dict[str, Any]) -> Condition:
    """A condition with its level: the most severe level whose threshold the value reaches."""
    th = dict(thresholds)
    probe = Condition(rule.id, rule.kind, station, getattr(rule, "variable", None), unit, rule.direction, th, values,
                      None, 0.0, observed_at, key, evidence)
    level = next((lv for lv in reversed(LEVELS) if probe.reaches(lv)), None)
    lowest = next((lv for lv in LEVELS if lv in values), None)
    value = values.get(level or lowest or "", next(iter(values.values()), 0.0))
    return replace(probe, level=level, value=float(value))


def usable(readings: Sequence[Reading], start: datetime, end: datetime) -> list[Reading]:
    """Readings in [start, end] not flagged bad, suspect or missing, oldest first."""
    return sorted((r for r in readings if start <= r.time <= end and r.qc not in UNUSABLE), key=lambda r: r.time)


def _reading(r: Reading) -> dict[str, Any]:
    return {"time": iso(r.time), "value": r.value, "qc": r.qc}


def _reading_key(r: Reading) -> str:
    return f"{iso(r.time)}={r.value!r}"


def observed(rule: ObservedRule, station: str, thresholds: Sequence[tuple[str, float]],
             readings: Sequence[Reading], now: datetime, unit: str | None) -> Condition | None:
    """The latest usable reading no older than ``max_age_hours`` against the thresholds."""
    ok = usable(readings, now - timedelta(hours=rule.max_age_hours), now)
    if not ok:
        return None
    last = ok[-1]
    return condition(rule, station, thresholds, {lv: last.value for lv, _ in thresholds}, unit=unit,
                     observed_at=last.time, key=_reading_key(last), evidence={"reading": _reading(last)})


def reservoir(rule: ReservoirRule, station: str, res: Any, readings: Sequence[Reading],
              now: datetime) -> Condition | None:
    """The latest usable reservoir level against the bands of ``reservoirs.yaml`` (plus offsets)."""
    ok = usable(readings, now - timedelta(hours=rule.max_age_hours), now)
    if not ok:
        return None
    last = ok[-1]
    th = band_thresholds(rule, res)
    bands = {lv: {"band": b.band, "offset_m": b.offset_m} for lv, b in rule.bands.items()}
    return condition(rule, station, th, {lv: last.value for lv, _ in th}, unit="m", observed_at=last.time,
                     key=_reading_key(last), evidence={"reading": _reading(last), "bands": bands})


def forecast(rule: ForecastRule, station: str, thresholds: Sequence[tuple[str, float]], rows: Sequence[ForecastRow],
             now: datetime, unit: str | None) -> Condition | None:
    """The leads of one run (the latest before ``now``): per level its statistic's extreme over the leads."""
    rows = sorted((r for r in rows if rule.max_lead is None or r.lead <= rule.max_lead), key=lambda r: r.lead)
    if not rows or rows[0].issue_time < now - timedelta(hours=rule.max_age_hours):
        return None
    values: dict[str, float] = {}
    at: dict[str, ForecastRow] = {}
    for lv, _ in thresholds:
        stat = rule.statistic_of(lv)
        have = [(r.stats[stat], r) for r in rows if r.stats.get(stat) is not None]
        if not have:
            continue
        if rule.direction == "above":  # the most extreme value; of equal ones the earliest lead
            v, row = max(have, key=lambda p: (p[0], -p[1].lead))
        else:
            v, row = min(have, key=lambda p: (p[0], p[1].lead))
        values[lv], at[lv] = float(v), row  # type: ignore[arg-type]
    if not values:
        return None
    run = rows[0]
    excerpt = {
        "run_id": run.run_id, "issue_time": iso(run.issue_time), "model": run.model, "step": run.step,
        "statistics": {lv: rule.statistic_of(lv) for lv, _ in thresholds},
        "leads": [{"lead": r.lead, "valid_time": iso(r.valid_time),
                   **{k: (None if r.stats.get(k) is None else round(float(r.stats[k]), 4))  # type: ignore[arg-type]
                      for k in ("median", "q05", "q25", "q75", "q95")}} for r in rows],
    }
    cond = condition(rule, station, thresholds, values, unit=unit, observed_at=None, key=f"run {run.run_id}",
                     evidence={})
    shown = cond.level or next(iter(values))
    row = at[shown]
    first = next((r for r in rows if _reaches(rule.direction, r.stats.get(rule.statistic_of(shown)),
                                              cond.thresholds[shown])), None)
    evidence = {"forecast": excerpt, "lead": row.lead, "valid_time": iso(row.valid_time),
                "statistic": rule.statistic_of(shown), "first_time": iso(first.valid_time) if first else None}
    return replace(cond, observed_at=row.valid_time, evidence=evidence)


def _reaches(direction: str, v: float | None, t: float) -> bool:
    return v is not None and (v >= t if direction == "above" else v <= t)


def outage(rule: OutageRule, station: str, last: datetime | None, now: datetime) -> Condition | None:
    """Hours since the station's last reading; a station that never reported is unknown, not silent."""
    if last is None:
        return None
    hours = max((now - last).total_seconds() / 3600.0, 0.0)
    th = rule.after_hours.items()
    return condition(rule, station, th, {lv: hours for lv, _ in th}, unit="h", observed_at=last, key=iso(last),
                     evidence={"last_reading": iso(last), "hours": round(hours, 2)})


def qc_burst(rule: QcBurstRule, station: str, flags: Sequence[FlagRow], now: datetime) -> Condition:
    """Values (not flags: a value several checks doubt counts once) flagged suspect or bad in the window."""
    start = now - timedelta(hours=rule.window_hours)
    inside = [f for f in flags if start < f.time <= now and f.level in ("suspect", "bad")
              and (not rule.variables or f.variable in rule.variables)]
    values = {(f.variable, f.aggregation, f.time) for f in inside}
    checks: dict[str, int] = {}
    for f in inside:
        checks[f.check] = checks.get(f.check, 0) + 1
    last = max((f.time for f in inside), default=None)
    th = rule.min_flags.items()
    n = float(len(values))
    evidence = {"count": len(values), "window_hours": rule.window_hours, "checks": dict(sorted(checks.items())),
                "window": {"from": iso(start), "to": iso(now)},
                "variables": sorted({f.variable for f in inside}), "last_flagged": iso(last) if last else None}
    return condition(rule, station, th, {lv: n for lv, _ in th}, unit=None, observed_at=last,
                     key=f"{len(values)}@{iso(last) if last else '-'}", evidence=evidence)


def decade_of(now: datetime, zone: str) -> tuple[str, datetime, datetime]:
    """("MM-D", first instant, last day's end) of the decade ``now`` is in, in the zone's calendar."""
    tz = ZoneInfo(zone)
    d0 = decade_start(now.astimezone(tz).date())
    d1 = period_end("decade", d0)
    start = datetime.combine(d0, time(0), tz).astimezone(timezone.utc)
    end = datetime.combine(d1 + timedelta(days=1), time(0), tz).astimezone(timezone.utc)
    return f"{d0.month:02d}-{(d0.day - 1) // 10 + 1}", start, end


def transboundary(rule: TransboundaryRule, station: str, readings: Sequence[Reading],
                  now: datetime) -> Condition | None:
    """The decade's mean flow so far at the border gauge against the decade's agreed schedule."""
    decade, start, end = decade_of(now, rule.timezone)
    ok = usable(readings, start, now)
    if len(ok) < rule.min_readings:
        return None
    mean = sum(r.value for r in ok) / len(ok)
    scheduled = rule.schedule.decades.get(decade)
    th = [(lv, scheduled * (1 - f)) for lv, f in rule.deficit.items()] if scheduled else []
    local = ZoneInfo(rule.timezone)
    first_day, last_day = start.astimezone(local), (end - timedelta(days=1)).astimezone(local)
    evidence = {
        "decade": decade, "label": f"{first_day:%d.%m}–{last_day:%d.%m.%Y}",
        "period": {"from": iso(start), "to": iso(end)}, "timezone": rule.timezone,
        "schedule": scheduled, "mean": round(mean, 3), "readings": len(ok),
        "deficit": None if not scheduled else round(1 - mean / scheduled, 4),
        "first_reading": iso(ok[0].time), "last_reading": iso(ok[-1].time),
    }
    values = {lv: mean for lv, _ in th} if th else {lv: mean for lv, _ in rule.deficit.items()}
    return condition(rule, station, th, values, unit=rule.schedule.unit, observed_at=ok[-1].time,
                     key=f"{decade}:{len(ok)}@{iso(ok[-1].time)}", evidence=evidence)


def thresholds_for(rule: ObservedRule | ForecastRule, station: str, config: Any) -> list[tuple[str, float]]:
    """The rule's own thresholds of the station, else ``thresholds.yaml``'s."""
    own = rule.thresholds.get(station)
    if own is not None:
        return own.items()
    t = config.threshold(station, rule.variable)
    return [] if t is None else [(lv, v) for lv in LEVELS if (v := getattr(t, lv)) is not None]
