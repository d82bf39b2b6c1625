"""``evaluate``: read what every enabled rule needs, judge it, and write the alerts' changes.

Reading and writing are apart on purpose. All conditions are computed from one read
snapshot (one connection) first; each rule and station is then written in its own
short transaction (:func:`watermon.alerts.lifecycle.process`), so one station's failure
leaves the others' alerts (and their outbox rows) committed or untouched, never half.
A failure is reported in the summary (and the command exits 1), not raised, so the
other ministries' alerts still go out.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from watermon.alerts import rules as R
from watermon.alerts.lifecycle import process
from watermon.config.models import BasinConfig
from watermon.db.schema import (
    Alert,
    ForecastModel,
    ForecastRun,
    ForecastValue,
    Observation,
    QcFlag,
    Series,
    Station,
)
from watermon.periods import Aggregation
from watermon.qc.store import SeriesRef, effective_levels, load_series, to_datetime

log = logging.getLogger(__name__)


@dataclass
class Summary:
    evaluated_at: datetime
    rules: int = 0
    judged: int = 0
    """(rule, station) pairs evaluated"""
    unknown: int = 0
    """pairs without usable data: nothing changes for them"""
    events: Counter[str] = field(default_factory=Counter)
    counted: int = 0
    """pairs whose hysteresis count moved (no event)"""
    deliveries: int = 0
    open_alerts: int = 0
    orphaned: list[str] = field(default_factory=list)
    """open alerts (``rule@station #id``) whose rule no longer covers their station: nothing
    evaluates them any more, so they stay open (and are reported) until the rule covers them again"""
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"evaluated_at": R.iso(self.evaluated_at), "rules": self.rules, "judged": self.judged,
                "unknown": self.unknown, "events": dict(self.events), "counted": self.counted,
                "deliveries": self.deliveries, "open_alerts": self.open_alerts, "orphaned": self.orphaned,
                "errors": self.errors}

    def summary(self) -> str:
        ev = ", ".join(f"{n} {e}" for e, n in sorted(self.events.items())) or "no events"
        text = (f"{self.rules} rules, {self.judged} rule-stations judged at {R.iso(self.evaluated_at)} "
                f"({self.unknown} without usable data): {ev}; {self.deliveries} deliveries queued; "
                f"{self.open_alerts} alerts open")
        if self.orphaned:
            text += f"; {len(self.orphaned)} open alerts no rule evaluates any more: {', '.join(self.orphaned)}"
        return text + (f"; {len(self.errors)} errors" if self.errors else "")


# --- reading -------------------------------------------------------------------------------------

def _ref(conn: Connection, station_id: int, code: str, variable: str, aggregation: Aggregation) -> SeriesRef | None:
    sid = conn.execute(select(Series.id).where(Series.station_id == station_id, Series.variable == variable,
                                               Series.aggregation == str(aggregation))).scalar()
    return None if sid is None else SeriesRef(sid, code, variable, aggregation)


def readings(conn: Connection, station_id: int, code: str, variable: str, aggregation: Aggregation,
             start: datetime, end: datetime) -> list[R.Reading]:
    """Current values of a series in [start, end] with their effective QC level (as ``observation_qc``)."""
    ref = _ref(conn, station_id, code, variable, aggregation)
    if ref is None:
        return []
    data = load_series(conn, ref, start=start, end=end)
    levels = effective_levels(conn, data)
    return [R.Reading(to_datetime(t), float(v), str(lv))
            for t, v, lv in zip(data.times, data.values, levels, strict=True) if math.isfinite(v)]


def last_reading(conn: Connection, station_id: int, variables: tuple[str, ...], now: datetime) -> datetime | None:
    """The latest time any series of the station has a value for (reported-missing values are no reading)."""
    q = select(Series.id).where(Series.station_id == station_id)
    if variables:
        q = q.where(Series.variable.in_(variables))
    times = [conn.execute(select(func.max(Observation.obs_time)).where(
        Observation.series_id == sid, Observation.obs_time <= now, Observation.flag != "missing")).scalar()
        for sid in conn.execute(q).scalars()]
    return max((t for t in times if t is not None), default=None)


def qc_flags(conn: Connection, station_id: int, start: datetime, end: datetime) -> list[R.FlagRow]:
    """Suspect and bad automatic flags in (start, end] on values' current revisions."""
    current = (select(func.max(Observation.revision)).where(Observation.series_id == QcFlag.series_id,
                                                             Observation.obs_time == QcFlag.obs_time)
               .scalar_subquery())
    q = (select(Series.variable, Series.aggregation, QcFlag.obs_time, QcFlag.check_id, QcFlag.level)
         .join(Series, Series.id == QcFlag.series_id)
         .where(Series.station_id == station_id, QcFlag.obs_time > start, QcFlag.obs_time <= end,
                QcFlag.level.in_(("suspect", "bad")), QcFlag.revision > 0, QcFlag.revision == current))
    return [R.FlagRow(*r) for r in conn.execute(q)]


def forecast_rows(conn: Connection, station_id: int, variable: str, step: str, now: datetime) -> list[R.ForecastRow]:
    """The leads of the station's latest finished forecast issued by ``now`` (``forecast_latest`` as of then)."""
    m = conn.execute(
        select(ForecastModel.id, ForecastModel.model, ForecastRun.id.label("run_id"), ForecastRun.issue_time)
        .join(ForecastRun, ForecastRun.id == ForecastModel.run_id)
        .where(ForecastModel.station_id == station_id, ForecastModel.variable == variable, ForecastModel.step == step,
               ForecastRun.status == "done", ForecastRun.issue_time <= now)
        .order_by(ForecastRun.issue_time.desc(), ForecastRun.id.desc()).limit(1)).first()
    if m is None:
        return []
    names = {q: name for name, q in R.QUANTILES.items()}
    by_lead: dict[int, tuple[datetime, dict[str, float | None]]] = {}
    for lead, q, valid, value in conn.execute(
            select(ForecastValue.lead, ForecastValue.quantile, ForecastValue.valid_time, ForecastValue.value)
            .where(ForecastValue.model_id == m.id)):
        name = next((n for qq, n in names.items() if abs(qq - q) < 1e-9), None)
        entry = by_lead.setdefault(lead, (valid, {}))
        if name is not None and value is not None and math.isfinite(value):
            entry[1][name] = value
    return [R.ForecastRow(m.run_id, m.issue_time, m.model, step, lead, valid, stats)
            for lead, (valid, stats) in sorted(by_lead.items())]


def judge(conn: Connection, config: BasinConfig, rule: Any, code: str, station_id: int,
          now: datetime) -> R.Condition | None:
    """The condition of one rule at one station now, from the database."""
    kind = rule.kind
    if kind in ("observed", "reservoir_level"):
        data = readings(conn, station_id, code, rule.variable, rule.aggregation,
                        now - timedelta(hours=rule.max_age_hours), now)
        if kind == "reservoir_level":
            res = next(r for r in config.reservoirs if r.station == code)
            return R.reservoir(rule, code, res, data, now)
        return R.observed(rule, code, R.thresholds_for(rule, code, config), data, now,
                          config.variable(rule.variable).unit)
    if kind == "forecast":
        rows = forecast_rows(conn, station_id, rule.variable, rule.step, now)
        return R.forecast(rule, code, R.thresholds_for(rule, code, config), rows, now,
                          config.variable(rule.variable).unit)
    if kind == "outage":
        return R.outage(rule, code, last_reading(conn, station_id, rule.variables, now), now)
    if kind == "qc_burst":
        return R.qc_burst(rule, code, qc_flags(conn, station_id, now - timedelta(hours=rule.window_hours), now), now)
    if kind == "transboundary":
        _, start, _ = R.decade_of(now, rule.timezone)
        return R.transboundary(rule, code, readings(conn, station_id, code, rule.variable, rule.aggregation,
                                                    start, now), now)
    raise ValueError(f"unknown rule kind {kind!r}")


# --- evaluating ----------------------------------------------------------------------------------

def evaluate(engine: Engine, config: BasinConfig, now: datetime | None = None,
             rule_ids: list[str] | None = None) -> Summary:
    """Judge every enabled rule (or ``rule_ids``) at each of its stations and write what changed."""
    now = now or datetime.now(timezone.utc)
    if now.tzinfo is None:
        raise ValueError("evaluate: `now` must be timezone-aware")
    chosen = [r for r in config.alerts.rules if (r.enabled if rule_ids is None else r.id in rule_ids)]
    summary = Summary(now, rules=len(chosen))
    judged: list[tuple[Any, str, int, R.Condition | None]] = []
    with engine.connect() as conn:  # one snapshot for every judgement
        ids = dict(conn.execute(select(Station.code, Station.id)).all())
        for rule in chosen:
            for code in rule.stations:
                if code not in ids:
                    summary.errors.append(f"{rule.id}@{code}: station not in the database (watermon init)")
                    continue
                try:
                    judged.append((rule, code, ids[code], judge(conn, config, rule, code, ids[code], now)))
                except Exception as exc:  # one broken judgement must not silence every other alert
                    log.exception("alert rule %s at %s", rule.id, code)
                    summary.errors.append(f"{rule.id}@{code}: {type(exc).__name__}: {exc}")
    for rule, code, station_id, cond in judged:
        summary.judged += 1
        summary.unknown += cond is None
        try:
            out = process(engine, config, rule, cond, station_id, now)
        except Exception as exc:  # rolled back: nothing of this alert's change was written
            log.exception("alert rule %s at %s", rule.id, code)
            summary.errors.append(f"{rule.id}@{code}: {type(exc).__name__}: {exc}")
            continue
        if out.event:
            summary.events[out.event] += 1
            summary.deliveries += out.deliveries
            log.info("%s %s at %s: alert %s", out.event, rule.id, code, out.alert_id)
        summary.counted += out.counted
    with engine.connect() as conn:
        summary.open_alerts = conn.execute(
            select(func.count()).select_from(Alert).where(Alert.status == "open")).scalar_one()
        covered = {(r.id, c) for r in config.alerts.rules if r.enabled for c in r.stations}
        for alert_id, rule_id, code in conn.execute(
                select(Alert.id, Alert.rule_id, Station.code).join(Station, Station.id == Alert.station_id)
                .where(Alert.status == "open").order_by(Alert.id)):
            if (rule_id, code) not in covered:
                summary.orphaned.append(f"{rule_id}@{code} #{alert_id}")
    if summary.orphaned:
        log.warning("open alerts that no enabled rule evaluates any more (they stay open): %s",
                    ", ".join(summary.orphaned))
    return summary
