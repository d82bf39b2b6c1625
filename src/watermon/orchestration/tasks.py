"""The functions Airflow tasks call: each one a unit of work with a JSON-able result.

Everything here is plain Python over the watermon package, testable without Airflow;
only :func:`database_url` looks at Airflow, for the ``watermon_db`` connection.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from watermon.config import BasinConfig, load_config
from watermon.db.engine import make_engine
from watermon.ingest.service import BatchReport
from watermon.settings import Settings

log = logging.getLogger(__name__)

DB_CONNECTION_ID = "watermon_db"


def database_url() -> str:
    """The ``watermon_db`` Airflow connection, else ``WATERMON_DB_URL``, else the default.

    The connection may carry the full SQLAlchemy URL in its extra (``{"url": ...}``),
    or be an ordinary Airflow connection of type ``postgres`` or ``sqlite``.
    """
    try:
        from airflow.sdk import Connection
        from airflow.sdk.exceptions import AirflowNotFoundException

        try:
            conn = Connection.get(DB_CONNECTION_ID)
        except AirflowNotFoundException:
            conn = None
    except ImportError:  # outside Airflow
        conn = None
    if conn is not None:
        return url_from_connection(conn.conn_type, conn.host, conn.login, conn.password, conn.port,
                                   conn.schema, conn.extra_dejson)
    return Settings.from_env().db_url


def url_from_connection(
    conn_type: str | None,
    host: str | None,
    login: str | None,
    password: str | None,
    port: int | None,
    schema: str | None,
    extra: dict[str, Any],
) -> str:
    from sqlalchemy.engine import URL

    if extra.get("url"):
        return str(extra["url"])
    if conn_type in ("postgres", "postgresql"):
        return URL.create(
            "postgresql+psycopg", username=login, password=password, host=host, port=port, database=schema
        ).render_as_string(hide_password=False)
    if conn_type == "sqlite":
        return f"sqlite:///{host}"
    raise ValueError(
        f"connection {DB_CONNECTION_ID}: type {conn_type!r} is not supported; use postgres or sqlite, "
        'or put the SQLAlchemy URL in the extra as {"url": "..."}'
    )


def _context() -> tuple[Settings, BasinConfig, Engine]:
    settings = Settings.from_env()
    return settings, load_config(settings.config_dir), make_engine(database_url())


def _batch_extra(r: BatchReport) -> dict[str, Any]:
    """What an asset event says about a stored batch (and so what QC will look at)."""
    return {
        "source": r.source,
        "batch_id": r.batch_id,
        "file": Path(r.file).name,
        "stations": r.stations,
        "time_min": r.time_min.isoformat() if r.time_min else None,
        "time_max": r.time_max.isoformat() if r.time_max else None,
        "records": r.records,
        "new": r.new,
        "unchanged": r.unchanged,
        "revised": r.revised,
        "rejected": r.rejected,
        "missing": r.missing,
    }


def ingest_inbox(source_id: str) -> dict[str, Any]:
    """Ingest a source's waiting files in arrival order (one batch each).

    Returns the counts and, per batch that changed something, the extra of the asset
    event to emit. A file that cannot be read is filed under ``failed/`` and reported;
    it does not fail the task (retrying would not fix it), but a database error does.
    """
    from watermon.ingest.inbox import process_inbox

    settings, config, engine = _context()
    try:
        reports = list(process_inbox(engine, config, source_id, settings.data_dir))
    finally:
        engine.dispose()
    for r in reports:
        (log.error if r.status == "failed" else log.info)("%s", r.summary())
    return _summary(source_id, reports)


def _summary(source_id: str, reports: list[BatchReport]) -> dict[str, Any]:
    loaded = [r for r in reports if r.status == "loaded"]
    summary = {
        "source": source_id,
        "files": len(reports),
        "loaded": len(loaded),
        "duplicates": sum(r.status == "duplicate" for r in reports),
        "failed": [{"file": Path(r.file).name, "error": r.error} for r in reports if r.status == "failed"],
        "new": sum(r.new for r in loaded),
        "revised": sum(r.revised for r in loaded),
        "rejected": sum(r.rejected for r in loaded),
        "events": [_batch_extra(r) for r in loaded if r.new or r.revised],
    }
    log.info(
        "%s: %d files, %d loaded, %d already stored, %d failed; %d new values, %d revised, %d quarantined",
        source_id, summary["files"], summary["loaded"], summary["duplicates"], len(summary["failed"]),
        summary["new"], summary["revised"], summary["rejected"],
    )
    return summary


def fetch_and_ingest(source_id: str, start: datetime, end: datetime) -> dict[str, Any]:
    """Pull ``[start, end)`` from a remote source into its inbox and ingest it.

    Re-running the same interval (a retry or ``airflow backfill create``) fetches it
    again; an unchanged answer is recognised by its sha256 and stores nothing.
    """
    from watermon.ingest.fetch import fetch_window
    from watermon.ingest.inbox import inbox_dir, process_inbox

    settings, config, engine = _context()
    source = config.source(source_id)
    try:
        path = fetch_window(source, start, end, inbox_dir(source, settings.data_dir))
        log.info("%s: fetched %s (%d bytes)", source_id, path.name, path.stat().st_size)
        reports = list(process_inbox(engine, config, source_id, settings.data_dir))
    finally:
        engine.dispose()
    return _summary(source_id, reports)


def quality_control(trigger: str) -> dict[str, Any]:
    """One QC run over what new batches brought; the summary becomes the QC asset event."""
    from watermon.qc.service import run_qc

    _, config, engine = _context()
    try:
        summary = run_qc(engine, config, trigger=trigger)
    finally:
        engine.dispose()
    log.info("qc run %d: %d batches, %d series, flags %s, %d missing", summary.run_id, summary.batches,
             summary.series, summary.flags, summary.missing)
    return summary.as_dict()


def forecast(trigger: str, issue_time: datetime | None = None) -> dict[str, Any]:
    """One forecast run of every configured station; the summary becomes the forecast asset event."""
    from watermon.forecast.service import run_forecast

    _, config, engine = _context()
    try:
        run = run_forecast(engine, config, issue_time=issue_time, trigger=trigger)
    finally:
        engine.dispose()
    log.info("forecast run %d issued %s: %d stations", run.run_id, run.issue_time.isoformat(), len(run.stations))
    return {"run_id": run.run_id, "issue_time": run.issue_time.isoformat(), "stations": run.stations}


def evaluate_alerts() -> dict[str, Any]:
    """Judge every alert rule now; state changes and their outbox rows commit together."""
    from watermon.alerts.service import evaluate

    _, config, engine = _context()
    try:
        summary = evaluate(engine, config)
    finally:
        engine.dispose()
    log.info("alerts: %s", summary)
    return json.loads(json.dumps(summary.__dict__, default=str))


def database_upkeep() -> dict[str, Any]:
    """Keep the store fast and check it: statistics, WAL checkpoint, integrity."""
    engine = make_engine(database_url())
    out: dict[str, Any] = {"dialect": engine.dialect.name}
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                conn.exec_driver_sql("PRAGMA optimize")
                out["quick_check"] = conn.exec_driver_sql("PRAGMA quick_check").scalar_one()
                busy, wal_pages, moved = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
                out["wal_checkpoint"] = {"busy": busy, "wal_pages": wal_pages, "checkpointed": moved}
            else:
                conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
                out["analyzed"] = True
            out["observations"] = conn.execute(text("SELECT count(*) FROM observation")).scalar_one()
            out["batches_failed_last_day"] = conn.execute(
                text("SELECT count(*) FROM ingest_batch WHERE status = 'failed' AND received_at >= :t"),
                {"t": datetime.now(timezone.utc) - timedelta(days=1)},
            ).scalar_one()
    finally:
        engine.dispose()
    if out.get("quick_check", "ok") != "ok":
        raise RuntimeError(f"watermon database integrity check failed: {out['quick_check']}")
    log.info("database upkeep: %s", out)
    return out


def airflow_db_clean(keep_days: int = 90) -> dict[str, Any]:
    """Purge Airflow's own metadata (task instances, logs, XComs ...) older than ``keep_days``.

    Runs the ``airflow db clean`` command of the worker's Airflow installation, which
    needs the metadata database configured where it runs (true for LocalExecutor; for
    Celery/Kubernetes workers, run this DAG on a queue that has it).
    """
    before = (datetime.now(timezone.utc) - timedelta(days=keep_days)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    cmd = [sys.executable, "-m", "airflow", "db", "clean", "--clean-before-timestamp", before, "--yes", "--skip-archive"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy(), timeout=3600)
    log.info("%s\n%s", " ".join(cmd[1:]), proc.stdout[-4000:])
    if proc.returncode != 0:
        raise RuntimeError(f"airflow db clean failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return {"clean_before": before, "returncode": proc.returncode}
