"""The watermon schema (SQLAlchemy 2 declarative models).

Observations are append-only: a changed value for an existing (series, time) is a new
row with the next revision number, so every value ever received stays queryable, with
the batch (and so the file and the time) it came in. The current value is the highest
revision; the ``observation_current`` view gives it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from watermon.db.types import UTCDateTime

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

AGGREGATIONS = (
    "instantaneous", "daily_mean", "daily_min", "daily_max", "daily_sum",
    "pentad_mean", "pentad_sum", "decade_mean", "decade_sum", "month_mean", "month_sum",
)
FLAGS = ("unchecked", "good", "suspect", "bad", "missing", "estimated")
BATCH_STATUSES = ("loaded", "failed")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Agency(Base):
    __tablename__ = "agency"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    country: Mapped[str] = mapped_column(String(2))
    ministry: Mapped[str] = mapped_column(String(300))


class Station(Base):
    __tablename__ = "station"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    name_ru: Mapped[str | None] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))
    agency_id: Mapped[str] = mapped_column(ForeignKey("agency.id"), index=True)
    river: Mapped[str | None] = mapped_column(String(100))
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    elevation_m: Mapped[float | None] = mapped_column(Float)


class Series(Base):
    """One time series: station x variable x aggregation, in the variable's canonical unit."""

    __tablename__ = "series"
    __table_args__ = (
        UniqueConstraint("station_id", "variable", "aggregation"),
        CheckConstraint(_in("aggregation", AGGREGATIONS), name="aggregation"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    station_id: Mapped[int] = mapped_column(ForeignKey("station.id"))
    variable: Mapped[str] = mapped_column(String(40))
    aggregation: Mapped[str] = mapped_column(String(20))
    unit: Mapped[str] = mapped_column(String(20))


class IngestBatch(Base):
    """One delivered payload; a loaded payload's sha256 is unique per source."""

    __tablename__ = "ingest_batch"
    __table_args__ = (
        CheckConstraint(_in("status", BATCH_STATUSES), name="status"),
        Index(
            "uq_ingest_batch_loaded_payload",
            "source_id",
            "sha256",
            unique=True,
            sqlite_where=text("status = 'loaded'"),
            postgresql_where=text("status = 'loaded'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[str] = mapped_column(String(64), index=True)
    file_name: Mapped[str] = mapped_column(String(500))
    sha256: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(10))
    n_records: Mapped[int] = mapped_column(Integer, default=0)
    n_new: Mapped[int] = mapped_column(Integer, default=0)
    n_unchanged: Mapped[int] = mapped_column(Integer, default=0)
    n_revised: Mapped[int] = mapped_column(Integer, default=0)
    n_rejected: Mapped[int] = mapped_column(Integer, default=0)
    n_missing: Mapped[int] = mapped_column(Integer, default=0)
    time_min: Mapped[datetime | None] = mapped_column(UTCDateTime())
    time_max: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error: Mapped[str | None] = mapped_column(Text)


class Observation(Base):
    """Every value ever received; rows are inserted, never updated or deleted."""

    __tablename__ = "observation"
    __table_args__ = (
        CheckConstraint("revision >= 1", name="revision"),
        CheckConstraint(_in("flag", FLAGS), name="flag"),
        {"sqlite_with_rowid": False},
    )

    series_id: Mapped[int] = mapped_column(ForeignKey("series.id"), primary_key=True)
    obs_time: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    revision: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    value: Mapped[float] = mapped_column(Float)
    flag: Mapped[str] = mapped_column(String(10))
    qualifier: Mapped[str | None] = mapped_column(String(40))
    batch_id: Mapped[int] = mapped_column(ForeignKey("ingest_batch.id"), index=True)


class Quarantine(Base):
    """Records a batch could not store, verbatim, with where and why."""

    __tablename__ = "quarantine"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("ingest_batch.id"), index=True)
    record_no: Mapped[int] = mapped_column(Integer)
    field: Mapped[str] = mapped_column(String(60))
    reason: Mapped[str] = mapped_column(Text)
    raw: Mapped[str] = mapped_column(Text)


# The current value of every (series, time): its highest revision.
OBSERVATION_CURRENT_VIEW = """\
CREATE VIEW observation_current AS
SELECT o.series_id, o.obs_time, o.revision, o.value, o.flag, o.qualifier, o.batch_id
FROM observation o
WHERE NOT EXISTS (
    SELECT 1 FROM observation n
    WHERE n.series_id = o.series_id AND n.obs_time = o.obs_time AND n.revision > o.revision
)"""

# What a hydrologist queries: current readings with station, variable and source.
READINGS_VIEW = """\
CREATE VIEW readings AS
SELECT st.code AS station_code, st.name AS station_name, st.agency_id, s.variable, s.aggregation,
       s.unit, c.obs_time, c.value, c.flag, c.qualifier, c.revision, b.source_id, b.file_name,
       b.received_at
FROM observation_current c
JOIN series s ON s.id = c.series_id
JOIN station st ON st.id = s.station_id
JOIN ingest_batch b ON b.id = c.batch_id"""

VIEWS = {"observation_current": OBSERVATION_CURRENT_VIEW, "readings": READINGS_VIEW}
