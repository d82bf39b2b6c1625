"""The watermon schema (SQLAlchemy 2 declarative models).

Observations are append-only: a changed value for an existing (series, time) is a new
row with the next revision number, so every value ever received stays queryable, with
the batch (and so the file and the time) it came in. The current value is the highest
revision; the ``observation_current`` view gives it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
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
QC_LEVELS = ("good", "suspect", "bad", "missing", "estimated")
QC_RUN_STATUSES = ("running", "done", "failed")
FORECAST_STEPS = ("daily", "pentad", "decade")
ALERT_STATUSES = ("open", "resolved")
ALERT_EVENTS = ("opened", "escalated", "updated", "deescalated", "resolved")
DELIVERY_STATUSES = ("pending", "delivered", "dead", "disabled")


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


class QcRun(Base):
    """One run of quality control: what it covered, with which configuration and code."""

    __tablename__ = "qc_run"
    __table_args__ = (CheckConstraint(_in("status", QC_RUN_STATUSES), name="status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(10))
    trigger: Mapped[str] = mapped_column(String(200))
    since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    n_batches: Mapped[int] = mapped_column(Integer, default=0)
    config_sha256: Mapped[str] = mapped_column(String(64))
    code_version: Mapped[str] = mapped_column(String(40))
    n_series: Mapped[int] = mapped_column(Integer, default=0)
    n_flags: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)


class QcFlag(Base):
    """A check's doubt about one value, beside the observation it judges.

    ``revision`` is the revision judged (0 for a value that should exist and does not);
    a flag on an older revision no longer applies. A QC run replaces the automatic
    flags of the period it covers, so re-running is idempotent.
    """

    __tablename__ = "qc_flag"
    __table_args__ = (
        CheckConstraint(_in("level", QC_LEVELS), name="level"),
        {"sqlite_with_rowid": False},
    )

    series_id: Mapped[int] = mapped_column(ForeignKey("series.id"), primary_key=True)
    obs_time: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    check_id: Mapped[str] = mapped_column(String(30), primary_key=True)
    revision: Mapped[int] = mapped_column(SmallInteger)
    level: Mapped[str] = mapped_column(String(10))
    detail: Mapped[str] = mapped_column(Text)
    run_id: Mapped[int] = mapped_column(ForeignKey("qc_run.id"), index=True)


class QcOverride(Base):
    """A hydrologist's verdict on a period of a series; the newest covering a value wins.

    Rows are only ever added: ``level`` NULL hands the period back to the automatic checks.
    """

    __tablename__ = "qc_override"
    __table_args__ = (
        CheckConstraint(f"level IS NULL OR {_in('level', QC_LEVELS)}", name="level"),
        CheckConstraint("time_from <= time_to", name="period"),
        Index("ix_qc_override_series_period", "series_id", "time_from", "time_to"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id"))
    time_from: Mapped[datetime] = mapped_column(UTCDateTime())
    time_to: Mapped[datetime] = mapped_column(UTCDateTime())
    level: Mapped[str | None] = mapped_column(String(10))
    reason: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class QcBatch(Base):
    """The ingest batches a QC run took on; their values count as checked once it is done.

    A run claims every loaded batch no run has claimed (or whose run failed) before it
    reads anything, so a batch that commits while QC runs is left for the next run.
    """

    __tablename__ = "qc_batch"

    batch_id: Mapped[int] = mapped_column(ForeignKey("ingest_batch.id"), primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("qc_run.id"), index=True)


class ForecastRun(Base):
    """One forecast issue: everything needed to reproduce its numbers."""

    __tablename__ = "forecast_run"
    __table_args__ = (CheckConstraint(_in("status", QC_RUN_STATUSES), name="status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    issue_time: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(10))
    trigger: Mapped[str] = mapped_column(String(200))
    data_cutoff: Mapped[datetime | None] = mapped_column(UTCDateTime())
    """the last observation time the run could see (all inputs are from before the issue time)"""
    last_batch_id: Mapped[int | None] = mapped_column(Integer)
    qc_run_id: Mapped[int | None] = mapped_column(Integer)
    config_sha256: Mapped[str] = mapped_column(String(64))
    code_version: Mapped[str] = mapped_column(String(40))
    error: Mapped[str | None] = mapped_column(Text)


class ForecastModel(Base):
    """The model of one station's forecast in a run, with its fitted parameters."""

    __tablename__ = "forecast_model"
    __table_args__ = (
        CheckConstraint(_in("step", FORECAST_STEPS), name="step"),
        UniqueConstraint("run_id", "station_id", "variable", "step"),
        Index("ix_forecast_model_latest", "station_id", "variable", "step", "run_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("forecast_run.id"))
    station_id: Mapped[int] = mapped_column(ForeignKey("station.id"))
    variable: Mapped[str] = mapped_column(String(40))
    step: Mapped[str] = mapped_column(String(10))
    model: Mapped[str] = mapped_column(String(40))
    params: Mapped[str] = mapped_column(Text)
    """JSON: the configured options and the fitted parameters"""
    train_from: Mapped[datetime | None] = mapped_column(UTCDateTime())
    train_to: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_observed: Mapped[float | None] = mapped_column(Float)
    last_observed_time: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ForecastValue(Base):
    """One quantile of one lead of a station's forecast in a run."""

    __tablename__ = "forecast_value"
    __table_args__ = (
        CheckConstraint("quantile > 0 AND quantile < 1", name="quantile"),
        CheckConstraint("lead >= 1", name="lead"),
        {"sqlite_with_rowid": False},
    )

    model_id: Mapped[int] = mapped_column(ForeignKey("forecast_model.id"), primary_key=True)
    lead: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    quantile: Mapped[float] = mapped_column(Float, primary_key=True)
    valid_time: Mapped[datetime] = mapped_column(UTCDateTime())
    value: Mapped[float] = mapped_column(Float)
    norm: Mapped[float | None] = mapped_column(Float)
    """the period-of-year mean of the valid period (for "percent of norm")"""


class ForecastSkill(Base):
    """Verified skill of a model at a station and lead, from a rolling-origin hindcast."""

    __tablename__ = "forecast_skill"
    __table_args__ = (
        CheckConstraint(_in("step", FORECAST_STEPS), name="step"),
        Index("ix_forecast_skill_lookup", "station_id", "variable", "step", "model", "lead"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    station_id: Mapped[int] = mapped_column(ForeignKey("station.id"))
    variable: Mapped[str] = mapped_column(String(40))
    step: Mapped[str] = mapped_column(String(10))
    model: Mapped[str] = mapped_column(String(40))
    selected: Mapped[bool] = mapped_column(Boolean, default=False)
    lead: Mapped[int] = mapped_column(SmallInteger)
    verify_from: Mapped[datetime] = mapped_column(UTCDateTime())
    verify_to: Mapped[datetime] = mapped_column(UTCDateTime())
    n: Mapped[int] = mapped_column(Integer)
    nse: Mapped[float | None] = mapped_column(Float)
    kge: Mapped[float | None] = mapped_column(Float)
    kge_prime: Mapped[float | None] = mapped_column(Float)
    pbias: Mapped[float | None] = mapped_column(Float)
    rmse: Mapped[float | None] = mapped_column(Float)
    skill_persistence: Mapped[float | None] = mapped_column(Float)
    skill_climatology: Mapped[float | None] = mapped_column(Float)
    crps: Mapped[float | None] = mapped_column(Float)
    coverage_90: Mapped[float | None] = mapped_column(Float)
    s_sigma: Mapped[float | None] = mapped_column(Float)
    p_within: Mapped[float | None] = mapped_column(Float)
    rating: Mapped[str | None] = mapped_column(String(20))
    code_version: Mapped[str] = mapped_column(String(40))
    config_sha256: Mapped[str] = mapped_column(String(64))


class Alert(Base):
    """One episode of one rule at one station: opened, updated or escalated, resolved.

    At most one open alert per (rule, station): a partial unique index, so evaluating
    twice can never open a second one.
    """

    __tablename__ = "alert"
    __table_args__ = (
        CheckConstraint(_in("status", ALERT_STATUSES), name="status"),
        Index("uq_alert_open_episode", "rule_id", "station_id", unique=True,
              sqlite_where=text("status = 'open'"), postgresql_where=text("status = 'open'")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rule_id: Mapped[str] = mapped_column(String(80))
    kind: Mapped[str] = mapped_column(String(30))
    station_id: Mapped[int] = mapped_column(ForeignKey("station.id"), index=True)
    variable: Mapped[str | None] = mapped_column(String(40))
    level: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(10))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    value: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    observed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    """time of the reading (or valid time of the forecast) that decided the latest state"""
    details: Mapped[str] = mapped_column(Text)
    """JSON: the evidence (values, thresholds, forecast excerpt) and the messages per language"""
    acked_by: Mapped[str | None] = mapped_column(String(100))
    acked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ack_note: Mapped[str | None] = mapped_column(Text)


class AlertEvent(Base):
    """A change of an alert's state: what the ministries are told, once each."""

    __tablename__ = "alert_event"
    __table_args__ = (CheckConstraint(_in("event", ALERT_EVENTS), name="event"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alert.id"), index=True)
    event: Mapped[str] = mapped_column(String(20))
    level: Mapped[str] = mapped_column(String(20))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    payload: Mapped[str] = mapped_column(Text)
    """JSON: the webhook body, fixed when the event is written"""


class WebhookEndpoint(Base):
    """A ministry's receiving endpoint (from config) and its state (410 Gone disables it)."""

    __tablename__ = "webhook_endpoint"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    agency_id: Mapped[str] = mapped_column(ForeignKey("agency.id"))
    url: Mapped[str] = mapped_column(String(500))
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    disabled_reason: Mapped[str | None] = mapped_column(Text)


class Delivery(Base):
    """The outbox: one row per event and endpoint, written with the event, sent by the relay."""

    __tablename__ = "delivery"
    __table_args__ = (
        CheckConstraint(_in("status", DELIVERY_STATUSES), name="status"),
        UniqueConstraint("event_id", "endpoint_id"),
        Index("ix_delivery_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("alert_event.id"))
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoint.id"))
    webhook_id: Mapped[str] = mapped_column(String(64), unique=True)
    """the ``webhook-id`` header: the same on every retry, so receivers de-duplicate"""
    status: Mapped[str] = mapped_column(String(10))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


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

# Each current value with its quality: a hydrologist's override, else the worst of the
# automatic flags on this revision and the provider's own flag, else good once a finished
# QC run has covered its batch, else the provider's flag (unchecked).
OBSERVATION_QC_VIEW = """\
CREATE VIEW observation_qc AS
SELECT q.series_id, q.obs_time, q.revision, q.value, q.provider_flag,
       COALESCE(q.override_level,
                CASE WHEN q.auto_rank = 4 OR q.provider_flag = 'bad' THEN 'bad'
                     WHEN q.auto_rank = 3 OR q.provider_flag = 'missing' THEN 'missing'
                     WHEN q.auto_rank = 2 OR q.provider_flag = 'suspect' THEN 'suspect'
                     WHEN q.auto_rank = 1 OR q.provider_flag = 'estimated' THEN 'estimated'
                     WHEN q.checked THEN 'good'
                     ELSE q.provider_flag END) AS qc_flag,
       q.override_level IS NOT NULL AS overridden
FROM (
    SELECT c.series_id, c.obs_time, c.revision, c.value, c.flag AS provider_flag,
           (SELECT o.level FROM qc_override o
            WHERE o.series_id = c.series_id AND o.time_from <= c.obs_time AND c.obs_time <= o.time_to
            ORDER BY o.id DESC LIMIT 1) AS override_level,
           (SELECT MAX(CASE f.level WHEN 'bad' THEN 4 WHEN 'missing' THEN 3 WHEN 'suspect' THEN 2
                                    WHEN 'estimated' THEN 1 ELSE 0 END)
            FROM qc_flag f
            WHERE f.series_id = c.series_id AND f.obs_time = c.obs_time AND f.revision = c.revision
           ) AS auto_rank,
           EXISTS (SELECT 1 FROM qc_batch qb JOIN qc_run r ON r.id = qb.run_id
                   WHERE qb.batch_id = c.batch_id AND r.status = 'done') AS checked
    FROM observation_current c
) q"""

# The latest finished forecast of every station, variable and step: one row per lead. Each
# key's newest finished run is looked up once, down ix_forecast_model_latest (migration 0006).
FORECAST_LATEST_VIEW = """\
CREATE VIEW forecast_latest AS
SELECT f.station_code, f.station_name, m.variable, m.step, m.model, r.id AS run_id,
       r.issue_time, v.lead, v.valid_time,
       MAX(CASE WHEN v.quantile = 0.5 THEN v.value END) AS median,
       MAX(CASE WHEN v.quantile = 0.05 THEN v.value END) AS q05,
       MAX(CASE WHEN v.quantile = 0.25 THEN v.value END) AS q25,
       MAX(CASE WHEN v.quantile = 0.75 THEN v.value END) AS q75,
       MAX(CASE WHEN v.quantile = 0.95 THEN v.value END) AS q95,
       MAX(v.norm) AS norm, m.last_observed, m.last_observed_time
FROM (SELECT DISTINCT st.code AS station_code, st.name AS station_name, k.station_id, k.variable, k.step
      FROM forecast_model k JOIN station st ON st.id = k.station_id) f
JOIN forecast_model m ON m.id = (
    SELECT m2.id FROM forecast_model m2 JOIN forecast_run r2 ON r2.id = m2.run_id
    WHERE m2.station_id = f.station_id AND m2.variable = f.variable AND m2.step = f.step
      AND r2.status = 'done'
    ORDER BY m2.run_id DESC LIMIT 1)
JOIN forecast_run r ON r.id = m.run_id
JOIN forecast_value v ON v.model_id = m.id
GROUP BY f.station_code, f.station_name, m.variable, m.step, m.model, r.id, r.issue_time, v.lead, v.valid_time,
         m.last_observed, m.last_observed_time"""

# The latest verified skill of every model at every station, step and lead.
FORECAST_SKILL_LATEST_VIEW = """\
CREATE VIEW forecast_skill_latest AS
SELECT st.code AS station_code, k.variable, k.step, k.model, k.selected, k.lead, k.n, k.nse, k.kge,
       k.kge_prime, k.pbias, k.rmse, k.skill_persistence, k.skill_climatology, k.crps, k.coverage_90,
       k.s_sigma, k.p_within, k.rating, k.verify_from, k.verify_to, k.computed_at
FROM forecast_skill k
JOIN station st ON st.id = k.station_id
WHERE k.id = (SELECT MAX(k2.id) FROM forecast_skill k2
              WHERE k2.station_id = k.station_id AND k2.variable = k.variable AND k2.step = k.step
                AND k2.model = k.model AND k2.lead = k.lead)"""

VIEWS = {
    "observation_current": OBSERVATION_CURRENT_VIEW,
    "readings": READINGS_VIEW,
    "observation_qc": OBSERVATION_QC_VIEW,
    "forecast_latest": FORECAST_LATEST_VIEW,
    "forecast_skill_latest": FORECAST_SKILL_LATEST_VIEW,
}
