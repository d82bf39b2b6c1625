"""Write a batch's observations: new keys, unchanged values and revisions.

The comparison with what is stored happens per chunk and per series over the chunk's
time range, so memory is bounded by the chunk size, not by the file or the table.
Rows go in through the DB-API ``executemany`` (SQLAlchemy's per-row bind processing
would cost more than the insert itself).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from watermon.db.schema import Quarantine, Series, Station
from watermon.db.types import sqlite_time
from watermon.ingest.normalise import Observation
from watermon.ingest.records import Rejection

_MAX_RAW = 2000


@dataclass
class Counts:
    new: int = 0
    unchanged: int = 0
    revised: int = 0
    rejected: int = 0
    missing: int = 0
    time_min: datetime | None = None
    time_max: datetime | None = None
    stations: set[str] = field(default_factory=set)

    @property
    def stored(self) -> int:
        return self.new + self.revised


class BatchWriter:
    def __init__(self, conn: Connection, batch_id: int) -> None:
        self.conn = conn
        self.batch_id = batch_id
        self.counts = Counts()
        self._series: dict[tuple[str, str, str], int] = {}
        self._station_ids: dict[str, int] = {}
        self._units: dict[str, str] = {}
        sqlite = conn.dialect.name == "sqlite"
        self._db_time: Callable[[datetime], Any] = sqlite_time if sqlite else (lambda t: t)
        self._time_cache: dict[datetime, Any] = {}
        mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        cols = ("series_id", "obs_time", "revision", "value", "flag", "qualifier", "batch_id")
        self._insert_sql = (
            f"INSERT INTO observation ({', '.join(cols)}) VALUES ({', '.join([mark] * len(cols))})"
        )
        self._select_sql = (
            f"SELECT obs_time, revision, value, qualifier, batch_id FROM observation "
            f"WHERE series_id = {mark} AND obs_time >= {mark} AND obs_time <= {mark}"
        )

    def set_units(self, units: dict[str, str]) -> None:
        """Canonical unit per variable, recorded on each series."""
        self._units = units

    def write(self, observations: Sequence[Observation]) -> list[Rejection]:
        """Store a chunk; returns the records refused as conflicting within this file."""
        by_series: dict[int, list[tuple[Any, Observation]]] = defaultdict(list)
        series_ids = self._series
        tc = self._time_cache
        db_time = self._db_time
        for o in observations:
            sid = series_ids.get(o.series)
            if sid is None:
                sid = self._series_id(*o.series)
            t = tc.get(o.time)
            if t is None:
                if len(tc) > 200_000:
                    tc.clear()
                t = tc[o.time] = db_time(o.time)
            by_series[sid].append((t, o))

        c = self.counts
        rows: list[tuple[Any, ...]] = []
        conflicts: list[Rejection] = []
        batch = self.batch_id
        for sid, items in by_series.items():
            current = self._current(sid, items)
            new = revised = 0
            changed = []
            for t, o in items:
                cur = current.get(t)
                if cur is None:
                    rev = 1
                    new += 1
                elif cur[1] == o.value and cur[2] == o.qualifier:
                    c.unchanged += 1
                    continue
                elif cur[3] == batch:
                    conflicts.append(self._conflict(o, cur[1]))
                    continue
                else:
                    rev = cur[0] + 1
                    revised += 1
                current[t] = (rev, o.value, o.qualifier, batch)
                rows.append((sid, t, rev, o.value, o.flag, o.qualifier, batch))
                changed.append(o.time)
            if changed:
                c.new += new
                c.revised += revised
                c.stations.add(items[0][1].series[0])
                lo, hi = min(changed), max(changed)
                c.time_min = lo if c.time_min is None else min(lo, c.time_min)
                c.time_max = hi if c.time_max is None else max(hi, c.time_max)
        if rows:
            self.conn.exec_driver_sql(self._insert_sql, rows)
        return conflicts

    def _current(self, sid: int, items: list[tuple[Any, Observation]]) -> dict[Any, tuple[int, float, str | None, int]]:
        """The stored current value of each time of the chunk's range for one series."""
        times = [t for t, _ in items]
        current: dict[Any, tuple[int, float, str | None, int]] = {}
        for t, rev, value, qual, b in self.conn.exec_driver_sql(self._select_sql, (sid, min(times), max(times))):
            if t not in current or rev > current[t][0]:
                current[t] = (rev, value, qual, b)
        return current

    @staticmethod
    def _conflict(o: Observation, stored: float) -> Rejection:
        station, variable, _ = o.series
        return Rejection(
            o.reading.record_no,
            "value",
            f"conflicts with an earlier record of this file for {station} {variable} at "
            f"{o.time.isoformat()} (value {stored:g})",
            o.reading.raw,
        )

    def quarantine(self, rejections: Sequence[Rejection]) -> None:
        if not rejections:
            return
        self.counts.rejected += len(rejections)
        self.conn.execute(
            Quarantine.__table__.insert(),
            [
                {
                    "batch_id": self.batch_id,
                    "record_no": r.record_no,
                    "field": r.field,
                    "reason": r.reason,
                    "raw": r.raw[:_MAX_RAW],
                }
                for r in rejections
            ],
        )

    def _series_id(self, station: str, variable: str, aggregation: str) -> int:
        key = (station, variable, aggregation)
        st_id = self._station_ids.get(station)
        if st_id is None:
            st_id = self.conn.execute(select(Station.id).where(Station.code == station)).scalar_one_or_none()
            if st_id is None:
                raise LookupError(f"station {station} is configured but not in the database: run `watermon init`")
            self._station_ids[station] = st_id
        t = Series.__table__
        sid = self.conn.execute(
            select(t.c.id).where(t.c.station_id == st_id, t.c.variable == variable, t.c.aggregation == aggregation)
        ).scalar_one_or_none()
        if sid is None:
            sid = self.conn.execute(
                t.insert().values(
                    station_id=st_id, variable=variable, aggregation=aggregation, unit=self._units[variable]
                )
            ).inserted_primary_key[0]
        self._series[key] = sid
        return sid

