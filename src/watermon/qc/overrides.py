"""Hydrologists' verdicts: recorded with who, when and why, never edited, newest wins."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import Connection, insert, select

from watermon.db.schema import QcOverride, Series, Station
from watermon.flags import Flag
from watermon.periods import Aggregation

OVERRIDE_LEVELS = (Flag.GOOD, Flag.SUSPECT, Flag.BAD, Flag.ESTIMATED, Flag.MISSING)


class OverrideError(ValueError):
    """An override that cannot be recorded (unknown series, empty reason, reversed period)."""


@dataclass(frozen=True)
class OverrideRow:
    id: int
    station: str
    variable: str
    aggregation: str
    time_from: datetime
    time_to: datetime
    level: str | None
    reason: str
    author: str
    created_at: datetime


def series_id(conn: Connection, station: str, variable: str, aggregation: Aggregation) -> int:
    sid = conn.execute(
        select(Series.id).join(Station, Station.id == Series.station_id)
        .where(Station.code == station, Series.variable == variable, Series.aggregation == aggregation.value)
    ).scalar_one_or_none()
    if sid is None:
        raise OverrideError(f"no stored series {station}/{variable}/{aggregation.value}")
    return int(sid)


def add_override(
    conn: Connection,
    *,
    station: str,
    variable: str,
    aggregation: Aggregation,
    time_from: datetime,
    time_to: datetime,
    level: Flag | None,
    reason: str,
    author: str,
    now: datetime | None = None,
) -> int:
    """Record a verdict on the period (``level`` None hands it back to the automatic checks)."""
    if not reason.strip():
        raise OverrideError("an override needs a reason")
    if not author.strip():
        raise OverrideError("an override needs an author")
    if time_to < time_from:
        raise OverrideError(f"the period ends ({time_to.isoformat()}) before it starts ({time_from.isoformat()})")
    if level is not None and level not in OVERRIDE_LEVELS:
        raise OverrideError(f"cannot set the level {level!r}; use one of {', '.join(OVERRIDE_LEVELS)}")
    sid = series_id(conn, station, variable, aggregation)
    return int(conn.execute(insert(QcOverride).values(
        series_id=sid, time_from=time_from, time_to=time_to, level=None if level is None else level.value,
        reason=reason.strip(), author=author.strip(), created_at=now or datetime.now(timezone.utc),
    ).returning(QcOverride.id)).scalar_one())


def overrides(conn: Connection, station: str | None = None) -> list[OverrideRow]:
    """Every override ever recorded, oldest first."""
    q = (
        select(QcOverride.id, Station.code, Series.variable, Series.aggregation, QcOverride.time_from,
               QcOverride.time_to, QcOverride.level, QcOverride.reason, QcOverride.author, QcOverride.created_at)
        .join(Series, Series.id == QcOverride.series_id).join(Station, Station.id == Series.station_id)
        .order_by(QcOverride.id)
    )
    if station:
        q = q.where(Station.code == station)
    return [OverrideRow(*r) for r in conn.execute(q)]
