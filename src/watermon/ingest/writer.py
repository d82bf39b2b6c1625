"""Write a batch's observations: new keys, unchanged values and revisions.

The comparison with what is stored happens per chunk and per series over the chunk's
time range, so memory is bounded by the chunk size, not by the file or the table.
Rows go in through the DB-API ``executemany`` on SQLite and ``COPY`` (via a staging
table) on PostgreSQL (SQLAlchemy's per-row bind processing would cost more than the
insert itself), in the batch's transaction like everything else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from watermon.db.schema import Quarantine, Series, Station
from watermon.db.types import parse_sqlite_time, sqlite_time
from watermon.ingest.normalise import Observation, SeriesKey
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


class BatchWriter:
    """Stores one batch's chunks inside the batch's transaction (``conn``).

    ``units`` gives each variable's canonical unit, recorded on the series it creates.
    """

    def __init__(self, conn: Connection, batch_id: int, units: Mapping[str, str]) -> None:
        self.conn = conn
        self.batch_id = batch_id
        self.counts = Counts()
        self._series: dict[tuple[str, str, str], int] = {}
        self._station_ids: dict[str, int] = {}
        self._units = units
        sqlite = conn.dialect.name == "sqlite"
        self._db_time: Callable[[datetime], Any] = sqlite_time if sqlite else (lambda t: t)
        self._from_db: Callable[[Any], datetime] = parse_sqlite_time if sqlite else (lambda t: t)
        self._time_cache: dict[datetime, Any] = {}
        mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        cols = ("series_id", "obs_time", "revision", "value", "flag", "qualifier", "batch_id")
        self._insert_sql = (
            f"INSERT INTO observation ({', '.join(cols)}) VALUES ({', '.join([mark] * len(cols))})"
        )
        self._columns = ", ".join(cols)
        self._staging = False
        self._select_sql = (
            f"SELECT obs_time, revision, value, qualifier, batch_id FROM observation "
            f"WHERE series_id = {mark} AND obs_time >= {mark} AND obs_time <= {mark}"
        )

    def write(self, chunk: Mapping[SeriesKey, Sequence[Observation]]) -> list[Rejection]:
        """Store a chunk; returns the records refused as conflicting within this file."""
        c = self.counts
        batch = self.batch_id
        rows: list[tuple[Any, ...]] = []
        conflicts: list[Rejection] = []
        for key, observations in chunk.items():
            sid = self._series.get(key)
            if sid is None:
                sid = self._series_id(*key)
            times = self._db_times(observations)
            current = self._current(sid, min(times), max(times))
            first_row = len(rows)
            if not current and len(set(times)) == len(times):
                # The common case (fresh data, no repeated times): all new, no comparisons.
                rows.extend([(sid, t, 1, o.value, o.flag, o.qualifier, batch) for t, o in zip(times, observations)])
                new, revised = len(times), 0
            else:
                new, revised = self._compare(key, sid, times, observations, current, rows, conflicts)
            if new or revised:
                c.new += new
                c.revised += revised
                c.stations.add(key[0])
                stored = times if new + revised == len(times) else [r[1] for r in rows[first_row:]]
                lo, hi = self._from_db(min(stored)), self._from_db(max(stored))
                c.time_min = lo if c.time_min is None else min(lo, c.time_min)
                c.time_max = hi if c.time_max is None else max(hi, c.time_max)
        if rows:
            self._insert(rows)
        return conflicts

    def _insert(self, rows: list[tuple[Any, ...]]) -> None:
        """PostgreSQL: COPY into a staging table, then one INSERT under row-level security
        (which refuses COPY straight into the table); elsewhere ``executemany``."""
        if self.conn.dialect.driver != "psycopg":
            self.conn.exec_driver_sql(self._insert_sql, rows)
            return
        raw = self.conn.connection.driver_connection
        with raw.cursor() as cur:
            if not self._staging:
                cur.execute(
                    "CREATE TEMP TABLE watermon_staging (LIKE observation INCLUDING DEFAULTS) ON COMMIT DROP"
                )
                self._staging = True
            with cur.copy(f"COPY watermon_staging ({self._columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            cur.execute(
                f"INSERT INTO observation ({self._columns}) SELECT {self._columns} FROM watermon_staging"
            )
            cur.execute("TRUNCATE watermon_staging")

    def _db_times(self, observations: Sequence[Observation]) -> list[Any]:
        tc = self._time_cache
        try:
            return [tc[o.time] for o in observations]
        except KeyError:
            if len(tc) > 200_000:
                tc.clear()
            for o in observations:
                if o.time not in tc:
                    tc[o.time] = self._db_time(o.time)
            return [tc[o.time] for o in observations]

    def _compare(
        self,
        key: SeriesKey,
        sid: int,
        times: list[Any],
        observations: Sequence[Observation],
        current: dict[Any, tuple[int, float, str | None, int]],
        rows: list[tuple[Any, ...]],
        conflicts: list[Rejection],
    ) -> tuple[int, int]:
        """New, unchanged, revised or conflicting, record by record; returns (new, revised)."""
        batch = self.batch_id
        new = revised = 0
        for t, o in zip(times, observations, strict=True):
            cur = current.get(t)
            if cur is None:
                rev = 1
                new += 1
            elif cur[1] == o.value and cur[2] == o.qualifier:
                self.counts.unchanged += 1
                continue
            elif cur[3] == batch:
                conflicts.append(self._conflict(key, o, cur[1]))
                continue
            else:
                rev = cur[0] + 1
                revised += 1
            current[t] = (rev, o.value, o.qualifier, batch)
            rows.append((sid, t, rev, o.value, o.flag, o.qualifier, batch))
        return new, revised

    def _current(self, sid: int, lo: Any, hi: Any) -> dict[Any, tuple[int, float, str | None, int]]:
        """The stored current value of each time in ``[lo, hi]`` of one series."""
        current: dict[Any, tuple[int, float, str | None, int]] = {}
        for t, rev, value, qual, b in self.conn.exec_driver_sql(self._select_sql, (sid, lo, hi)):
            if t not in current or rev > current[t][0]:
                current[t] = (rev, value, qual, b)
        return current

    @staticmethod
    def _conflict(key: SeriesKey, o: Observation, stored: float) -> Rejection:
        station, variable, _ = key
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

