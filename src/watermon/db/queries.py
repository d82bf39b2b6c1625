"""Read-side queries used by the CLI and by later stages (QC, forecasts)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, and_, exists, func, select
from sqlalchemy.orm import aliased

from watermon.db.schema import IngestBatch, Observation, Quarantine, Series, Station


@dataclass(frozen=True)
class ReadingRow:
    time: datetime
    station: str
    variable: str
    aggregation: str
    value: float
    unit: str
    flag: str
    qualifier: str | None
    revision: int
    batch_id: int
    received_at: datetime


def readings(
    conn: Connection,
    station: str,
    *,
    variable: str | None = None,
    aggregation: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    history: bool = False,
) -> list[ReadingRow]:
    """Current values of a station's series, or with ``history`` every revision."""
    o, s, st, b = Observation, Series, Station, IngestBatch
    q = (
        select(
            o.obs_time, st.code, s.variable, s.aggregation, o.value, s.unit, o.flag,
            o.qualifier, o.revision, o.batch_id, b.received_at,
        )
        .join(s, s.id == o.series_id)
        .join(st, st.id == s.station_id)
        .join(b, b.id == o.batch_id)
        .where(st.code == station)
        .order_by(s.variable, s.aggregation, o.obs_time, o.revision)
    )
    if not history:
        newer = aliased(Observation)
        q = q.where(
            ~exists().where(
                and_(newer.series_id == o.series_id, newer.obs_time == o.obs_time, newer.revision > o.revision)
            )
        )
    if variable:
        q = q.where(s.variable == variable)
    if aggregation:
        q = q.where(s.aggregation == aggregation)
    if start:
        q = q.where(o.obs_time >= start)
    if end:
        q = q.where(o.obs_time <= end)
    return [ReadingRow(*r) for r in conn.execute(q)]


def station_summary(conn: Connection) -> list[dict[str, object]]:
    """Every station with its number of series and observations and its latest time."""
    o, s, st = Observation, Series, Station
    counts = (
        select(s.station_id, func.count(func.distinct(s.id)).label("series"), func.count(o.series_id).label("n"),
               func.max(o.obs_time).label("last"))
        .select_from(s)
        .outerjoin(o, o.series_id == s.id)
        .group_by(s.station_id)
        .subquery()
    )
    q = (
        select(st.code, st.name, st.kind, st.agency_id, st.river, st.lat, st.lon,
               func.coalesce(counts.c.series, 0), func.coalesce(counts.c.n, 0), counts.c.last)
        .outerjoin(counts, counts.c.station_id == st.id)
        .order_by(st.agency_id, st.code)
    )
    keys = ("code", "name", "kind", "agency", "river", "lat", "lon", "series", "observations", "last_time")
    out = []
    for r in conn.execute(q):
        d = dict(zip(keys, r, strict=True))
        if isinstance(d["last_time"], str):  # aggregate loses the column type on SQLite
            d["last_time"] = datetime.fromisoformat(d["last_time"] + "+00:00")
        out.append(d)
    return out


def batches(conn: Connection, *, source: str | None = None, limit: int = 50) -> list[dict[str, object]]:
    b = IngestBatch
    q = select(b.__table__).order_by(b.id.desc()).limit(limit)
    if source:
        q = q.where(b.source_id == source)
    return [dict(r._mapping) for r in conn.execute(q)]


def quarantine(
    conn: Connection, *, batch_id: int | None = None, source: str | None = None, limit: int = 100
) -> list[dict[str, object]]:
    qt, b = Quarantine, IngestBatch
    q = (
        select(qt.batch_id, b.source_id, b.file_name, qt.record_no, qt.field, qt.reason, qt.raw)
        .join(b, b.id == qt.batch_id)
        .order_by(qt.batch_id.desc(), qt.record_no)
        .limit(limit)
    )
    if batch_id is not None:
        q = q.where(qt.batch_id == batch_id)
    if source:
        q = q.where(b.source_id == source)
    return [dict(r._mapping) for r in conn.execute(q)]
