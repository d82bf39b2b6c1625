"""Reading series for QC and the flags, overrides and coverage QC keeps beside them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
from sqlalchemy import Connection, and_, select

from watermon.db.schema import IngestBatch, Observation, QcBatch, QcFlag, QcOverride, QcRun, Series, Station
from watermon.periods import Aggregation

NO_TIME = np.zeros(0, dtype="datetime64[s]")

# How bad each level is; the worst of a value's levels is its level.
SEVERITY = {"unchecked": 0, "good": 0, "estimated": 1, "suspect": 2, "missing": 3, "bad": 4}


def to_numpy_times(times: list[datetime]) -> np.ndarray:
    return np.array([t.astimezone(timezone.utc).replace(tzinfo=None) for t in times], dtype="datetime64[s]")


def to_datetime(t: np.datetime64) -> datetime:
    return t.astype("datetime64[s]").item().replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class SeriesRef:
    id: int
    station: str
    variable: str
    aggregation: Aggregation


@dataclass
class SeriesData:
    """The current value of each time of one series, sorted by time."""

    ref: SeriesRef
    times: np.ndarray
    values: np.ndarray
    revisions: np.ndarray
    provider_flags: np.ndarray
    batch_ids: np.ndarray
    sources: np.ndarray


def series_refs(conn: Connection, stations: list[str] | None = None) -> dict[int, SeriesRef]:
    q = select(Series.id, Station.code, Series.variable, Series.aggregation).join(Station, Station.id == Series.station_id)
    if stations:
        q = q.where(Station.code.in_(stations))
    return {r.id: SeriesRef(r.id, r.code, r.variable, Aggregation(r.aggregation)) for r in conn.execute(q)}


def load_series(
    conn: Connection, ref: SeriesRef, start: datetime | None = None, context: int = 0, end: datetime | None = None
) -> SeriesData:
    """Current values from ``start`` to ``end``, plus ``context`` values before ``start`` for the windows."""
    begin = start
    if start is not None and context:
        before = conn.execute(
            select(Observation.obs_time).where(Observation.series_id == ref.id, Observation.obs_time < start)
            .distinct().order_by(Observation.obs_time.desc()).limit(context)
        ).scalars().all()
        if before:
            begin = before[-1]
    q = (
        select(Observation.obs_time, Observation.revision, Observation.value, Observation.flag,
               Observation.batch_id, IngestBatch.source_id)
        .join(IngestBatch, IngestBatch.id == Observation.batch_id)
        .where(Observation.series_id == ref.id)
        .order_by(Observation.obs_time, Observation.revision)
    )
    if begin is not None:
        q = q.where(Observation.obs_time >= begin)
    if end is not None:
        q = q.where(Observation.obs_time <= end)
    rows = conn.execute(q).all()
    if not rows:
        empty = np.zeros(0)
        return SeriesData(ref, NO_TIME, empty, empty.astype(np.int64), empty.astype(object),
                          empty.astype(np.int64), empty.astype(object))
    times = to_numpy_times([r[0] for r in rows])
    last = np.concatenate([times[1:] != times[:-1], [True]])  # the highest revision of each time
    pick = np.flatnonzero(last)
    col = list(zip(*rows, strict=True))
    return SeriesData(
        ref,
        times[pick],
        np.asarray(col[2], dtype=float)[pick],
        np.asarray(col[1], dtype=np.int64)[pick],
        np.asarray(col[3], dtype=object)[pick],
        np.asarray(col[4], dtype=np.int64)[pick],
        np.asarray(col[5], dtype=object)[pick],
    )


def revision_conflicts(conn: Connection, series_id: int, start: datetime | None) -> list[tuple]:
    """(time, earlier value, its source) of values another source had given differently."""
    older = Observation.__table__.alias("older")
    older_batch = IngestBatch.__table__.alias("older_batch")
    q = (
        select(Observation.obs_time, Observation.revision, IngestBatch.source_id, older.c.value, older_batch.c.source_id)
        .join(IngestBatch, IngestBatch.id == Observation.batch_id)
        .join(older, and_(older.c.series_id == Observation.series_id, older.c.obs_time == Observation.obs_time,
                          older.c.revision < Observation.revision))
        .join(older_batch, older_batch.c.id == older.c.batch_id)
        .where(Observation.series_id == series_id, older_batch.c.source_id != IngestBatch.source_id)
    )
    if start is not None:
        q = q.where(Observation.obs_time >= start)
    return [tuple(r) for r in conn.execute(q)]


def effective_levels(conn: Connection, data: SeriesData) -> np.ndarray:
    """Each current value's level, as the ``observation_qc`` view defines it.

    The newest override covering a value wins (an override with no level hands it
    back); otherwise the worst of the automatic flags on this revision and the
    provider's own flag; otherwise good where QC has covered the value, else unchecked.
    """
    n = data.times.size
    if n == 0:
        return np.zeros(0, dtype=object)
    lo, hi = to_datetime(data.times[0]), to_datetime(data.times[-1])
    rank = np.array([SEVERITY.get(f, 0) for f in data.provider_flags], dtype=np.int64)
    rows = conn.execute(
        select(QcFlag.obs_time, QcFlag.revision, QcFlag.level)
        .where(QcFlag.series_id == data.ref.id, QcFlag.obs_time >= lo, QcFlag.obs_time <= hi, QcFlag.revision > 0)
    ).all()
    if rows:
        idx = np.searchsorted(data.times, to_numpy_times([r[0] for r in rows]))
        for i, (_, rev, level) in zip(idx, rows, strict=True):
            if i < n and rev == data.revisions[i]:
                rank[i] = max(rank[i], SEVERITY[level])
    batches = [int(b) for b in np.unique(data.batch_ids)]
    done = conn.execute(
        select(QcBatch.batch_id).join(QcRun, QcRun.id == QcBatch.run_id)
        .where(QcRun.status == "done", QcBatch.batch_id.in_(batches))
    ).scalars().all()
    checked = np.isin(data.batch_ids, np.asarray(done, dtype=np.int64))
    levels = np.where(checked, "good", data.provider_flags).astype(object)
    for name in ("estimated", "suspect", "missing", "bad"):
        levels[rank == SEVERITY[name]] = name
    override = np.full(n, None, dtype=object)
    covered = np.zeros(n, dtype=bool)
    for t0, t1, level in conn.execute(
        select(QcOverride.time_from, QcOverride.time_to, QcOverride.level)
        .where(QcOverride.series_id == data.ref.id, QcOverride.time_to >= lo, QcOverride.time_from <= hi)
        .order_by(QcOverride.id)
    ):
        a, b = to_numpy_times([t0, t1])
        sel = (data.times >= a) & (data.times <= b)
        override[sel], covered[sel] = level, True
    use = covered & (override != None)  # noqa: E711 (elementwise)
    levels[use] = override[use]
    return levels


def flags(
    conn: Connection,
    station: str,
    *,
    variable: str | None = None,
    check: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[dict[str, object]]:
    """The automatic flags of a station, oldest first, with the run that set them."""
    q = (
        select(QcFlag.obs_time, Station.code, Series.variable, Series.aggregation, QcFlag.check_id, QcFlag.level,
               QcFlag.revision, QcFlag.detail, QcFlag.run_id)
        .join(Series, Series.id == QcFlag.series_id).join(Station, Station.id == Series.station_id)
        .where(Station.code == station).order_by(Series.variable, Series.aggregation, QcFlag.obs_time)
    )
    if variable:
        q = q.where(Series.variable == variable)
    if check:
        q = q.where(QcFlag.check_id == check)
    if since:
        q = q.where(QcFlag.obs_time >= since)
    if until:
        q = q.where(QcFlag.obs_time <= until)
    keys = ("time", "station", "variable", "aggregation", "check", "level", "revision", "detail", "run_id")
    return [dict(zip(keys, r, strict=True)) for r in conn.execute(q)]
