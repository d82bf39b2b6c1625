"""Run the DAGs for real (``dag.test()``) on the demo deliveries and check the results."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag
from sqlalchemy import func, select, text

from tests.dags.conftest import DAGS, ROOT
from tests.operator_endpoint import LEVEL_M, Endpoint, operator_endpoint
from watermon.config import load_config
from watermon.db.engine import make_engine
from watermon.db.schema import Observation, QcFlag, Series, Station
from watermon.demo.generator import generate
from watermon.orchestration.layout import FORECAST_DAG_ID, MAINTENANCE_DAG_ID, QC_DAG_ID, sources


def _run(dag_file: str, dag_id: str, **kwargs):
    """``dag.test()``; retries off, since dag.test() would sit out each retry delay."""
    dag = DagBag(dag_folder=str(DAGS / dag_file)).dags[dag_id]
    for t in dag.tasks:
        t.retries = 0
    return dag.test(**kwargs)


def _asset_events(home: Path, uri_prefix: str) -> list[dict]:
    with sqlite3.connect(home / "airflow.db") as c:
        rows = c.execute(
            "SELECT e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id WHERE a.uri LIKE ? ORDER BY e.id",
            (uri_prefix + "%",),
        ).fetchall()
    return [json.loads(r[0]) for r in rows]


def _task_states(dr) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dr.get_task_instances()}


def test_demo_season_end_to_end(airflow_db: Path, watermon_env: Path) -> None:
    """Drop the demo files into the inboxes, run every DAG in order, check the database."""
    config = load_config(ROOT / "config")
    written = generate(config, watermon_env)
    before = len(_asset_events(airflow_db, "watermon://observations/"))
    for src in sources():
        dr = _run("watermon_ingest.py", src.dag_id)
        assert str(dr.state) == "success", (src.dag_id, _task_states(dr))
    dr = _run("watermon_maintenance.py", MAINTENANCE_DAG_ID)
    assert _task_states(dr) == {"database_upkeep": "success", "airflow_db_clean": "success"}

    engine = make_engine(os.environ["WATERMON_DB_URL"])
    with engine.connect() as conn:
        batches = conn.execute(text("SELECT source_id, count(*) FROM ingest_batch GROUP BY source_id")).all()
        revised = conn.execute(text("SELECT count(*) FROM observation WHERE revision > 1")).scalar_one()
        quarantined = conn.execute(text("SELECT count(*) FROM quarantine")).scalar_one()
        per_station = dict(conn.execute(text("SELECT station_code, count(*) FROM readings GROUP BY 1")).all())
    engine.dispose()
    assert dict(batches) == {sid: len(paths) for sid, paths in written.items()}
    assert (revised, quarantined) == (4, 4)
    assert set(per_station) == {s.code for s in config.stations}
    for src in config.sources:
        inbox = watermon_env / src.inbox
        assert sorted(p.name for p in (inbox / "processed").iterdir()) == sorted(p.name for p in written[src.id])
        assert not [p for p in inbox.iterdir() if p.is_file()]

    events = _asset_events(airflow_db, "watermon://observations/")[before:]
    assert Counter(e["source"] for e in events) == {sid: len(paths) for sid, paths in written.items()}
    correction = next(e for e in events if e["file"].endswith("_correction.csv"))
    assert (correction["revised"], correction["new"], correction["stations"]) == (4, 0, ["11272"])
    assert correction["time_min"] == "2026-06-11T21:00:00+00:00"

    # A second round finds nothing new: no batch, no asset event.
    dr = _run("watermon_ingest.py", "watermon_ingest_kz_hydromet")
    assert str(dr.state) == "success"
    assert len(_asset_events(airflow_db, "watermon://observations/")) == before + len(events)


def test_qc_dag_checks_new_batches_and_emits_an_event(airflow_db: Path, watermon_env: Path) -> None:
    """QC after ingestion flags the demo's stuck sensor; a second run finds nothing and is skipped."""
    generate(load_config(ROOT / "config"), watermon_env)
    for src in sources():
        assert str(_run("watermon_ingest.py", src.dag_id).state) == "success"
    before = len(_asset_events(airflow_db, "watermon://qc/"))
    dr = _run("watermon_qc.py", QC_DAG_ID)
    assert _task_states(dr) == {"quality_control": "success"}
    (event,) = _asset_events(airflow_db, "watermon://qc/")[before:]
    assert event["series"] > 30 and "11250" in event["stations"] and event["flags"]["flatline"] >= 12

    engine = make_engine(os.environ["WATERMON_DB_URL"])
    with engine.connect() as conn:
        stuck = conn.execute(
            select(func.count()).select_from(QcFlag).join(Series, Series.id == QcFlag.series_id)
            .join(Station, Station.id == Series.station_id)
            .where(Station.code == "11250", Series.variable == "stage", QcFlag.check_id == "flatline",
                   QcFlag.obs_time.between(datetime(2026, 7, 19, 21, tzinfo=timezone.utc),
                                           datetime(2026, 7, 22, 15, tzinfo=timezone.utc)))
        ).scalar_one()
        unchecked = conn.execute(text("SELECT count(*) FROM observation_qc WHERE qc_flag = 'unchecked'")).scalar_one()
        runs = conn.execute(text("SELECT status, trigger FROM qc_run")).all()
    engine.dispose()
    assert stuck == 12  # the demo's frozen stage sensor, every reading after the last good one
    assert unchecked == 0
    assert [r.status for r in runs] == ["done"] and runs[0].trigger.startswith("airflow:")

    dr = _run("watermon_qc.py", QC_DAG_ID)
    assert _task_states(dr) == {"quality_control": "skipped"}
    assert len(_asset_events(airflow_db, "watermon://qc/")) == before + 1


def test_unreadable_file_fails_the_check_but_the_rest_lands(airflow_db: Path, watermon_env: Path, monkeypatch) -> None:
    # Tasks find the database through the Airflow connection `watermon_db`, not the env fallback.
    monkeypatch.setenv("WATERMON_DB_URL", "sqlite:////nonexistent/watermon.db")
    inbox = watermon_env / "inbox" / "kz-hydromet"
    inbox.mkdir(parents=True)
    (inbox / "a.csv").write_text("station;variable;time;value;unit\n11242;Q;01.04.2026 08:00;5;m3/s\n")
    (inbox / "b.csv").write_text("not;the;agreed;layout\n")
    dr = _run("watermon_ingest.py", "watermon_ingest_kz_hydromet")
    assert _task_states(dr) == {"ingest_inbox": "success", "check": "failed"}
    assert (inbox / "processed" / "a.csv").exists()
    assert "header lacks column(s)" in (inbox / "failed" / "b.csv.reason.txt").read_text()


def test_forecast_then_alerts_dags_issue_store_evaluate_and_deliver(airflow_db: Path, watermon_env: Path,
                                                                     tmp_path: Path, monkeypatch) -> None:
    """The morning forecast as of its logical date, then an alerts run delivering to two live receivers."""
    from watermon.alerts import signing
    from watermon.alerts.delivery import secret_env_var, sync_endpoints
    from watermon.alerts.receiver import ReceiverServer, ReceiverStore
    from watermon.db.schema import Alert, AlertEvent, Delivery, ForecastRun
    from watermon.ingest.inbox import process_inbox
    from watermon.qc.service import run_qc

    config = load_config(ROOT / "config")
    engine = make_engine(os.environ["WATERMON_DB_URL"])
    generate(config, watermon_env)
    for src in config.sources:
        assert all(r.status != "failed" for r in process_inbox(engine, config, src.id, watermon_env))
    run_qc(engine, config)

    before = len(_asset_events(airflow_db, "watermon://forecast/"))
    issue = datetime(2026, 8, 21, 4, 15, tzinfo=timezone.utc)
    dr = _run("watermon_forecast.py", FORECAST_DAG_ID, logical_date=issue)
    assert _task_states(dr) == {"forecast": "success"}
    (event,) = _asset_events(airflow_db, "watermon://forecast/")[before:]
    assert event["issue_time"] == issue.isoformat()
    assert sorted(event["stations"]) == sorted(e.station for e in config.forecast.stations)
    with engine.connect() as conn:
        run = conn.execute(select(ForecastRun)).one()
        latest = conn.execute(text("SELECT count(*) FROM forecast_latest")).scalar_one()
    assert run.id == event["run_id"] and run.status == "done" and run.trigger.startswith("airflow:")
    assert run.data_cutoff < issue and latest == sum(e.leads for e in config.forecast.stations)

    # Two ministries' receivers on loopback; the configuration points the endpoints at them.
    servers = {}
    for ep in config.webhooks.endpoints:
        secret = signing.new_secret()
        monkeypatch.setenv(secret_env_var(ep.id), secret)
        servers[ep.id] = ReceiverServer(ReceiverStore(tmp_path / f"{ep.id}.db"), [secret])
        servers[ep.id].start()
    cfg_dir = tmp_path / "config"
    shutil.copytree(ROOT / "config", cfg_dir)
    text_ = (cfg_dir / "webhooks.yaml").read_text()
    for ep in config.webhooks.endpoints:
        text_ = text_.replace(ep.url, servers[ep.id].url)
    (cfg_dir / "webhooks.yaml").write_text(text_)
    monkeypatch.setenv("WATERMON_CONFIG", str(cfg_dir))
    with engine.begin() as conn:
        sync_endpoints(conn, load_config(cfg_dir))
    try:
        dr = _run("watermon_alerts.py", "watermon_alerts", run_conf={"run_seconds": 3})
        assert _task_states(dr) == {"evaluate": "success", "deliver": "success"}
        with engine.connect() as conn:
            n_events = conn.execute(select(func.count()).select_from(AlertEvent)).scalar_one()
            kinds = set(conn.execute(select(Alert.kind)).scalars())
            states = Counter(conn.execute(select(Delivery.status)).scalars())
            per_endpoint = dict(conn.execute(select(Delivery.endpoint_id, func.count()).group_by(Delivery.endpoint_id)).all())
        held = {ep: s.store.counts() for ep, s in servers.items()}
    finally:
        for s in servers.values():
            s.stop()
            s.store.close()
        engine.dispose()
    # evaluated "now", months after the demo season: the stations have gone silent
    assert n_events > 0 and "outage" in kinds
    assert set(states) == {"delivered"} and per_endpoint.keys() == servers.keys()
    assert {ep: h["alerts"] for ep, h in held.items()} == per_endpoint


@pytest.fixture
def remote_config(tmp_path: Path, monkeypatch) -> Iterator[Endpoint]:
    with operator_endpoint() as endpoint:
        _write_remote_config(tmp_path / "remote-config", endpoint.url)
        monkeypatch.setenv("WATERMON_CONFIG", str(tmp_path / "remote-config"))
        yield endpoint


def _write_remote_config(cfg: Path, url: str) -> None:
    """The demo configuration with kz-reservoirs pulled over HTTP from ``url``."""
    cfg.mkdir()
    for f in (ROOT / "config").glob("*.yaml"):
        (cfg / f.name).write_text(f.read_text())
    sources_yaml = (cfg / "sources.yaml").read_text().replace(
        "    inbox: inbox/kz-reservoirs\n",
        "    inbox: inbox/kz-reservoirs\n"
        f"    http: {{url: '{url}'}}\n",
    )
    (cfg / "sources.yaml").write_text(sources_yaml)


def test_remote_source_pulls_its_data_interval(airflow_db: Path, watermon_env: Path, remote_config: Endpoint) -> None:
    logical = datetime(2026, 4, 1, 3, tzinfo=timezone.utc)
    dr = _run("watermon_ingest.py", "watermon_ingest_kz_reservoirs", logical_date=logical)
    assert _task_states(dr) == {"fetch_and_ingest": "success", "check": "success"}
    # The run's data interval (an hour, by the source's cron) is what was requested.
    start, end = dr.data_interval_start, dr.data_interval_end
    assert end - start == timedelta(hours=1) and start <= logical <= end
    assert remote_config.requests == [f"/records?start={start:%Y-%m-%dT%H:%M:%SZ}&end={end:%Y-%m-%dT%H:%M:%SZ}"]
    engine = make_engine(os.environ["WATERMON_DB_URL"])
    with engine.connect() as conn:
        rows = conn.execute(select(Observation.obs_time, Observation.value)).all()
    engine.dispose()
    assert rows == [(start, LEVEL_M)]
    events = [e for e in _asset_events(airflow_db, "watermon://observations/kz-reservoirs")]
    assert events[-1]["time_min"] == start.isoformat() and events[-1]["new"] == 1
    # Running the same interval again (a retry, a backfill) re-fetches it; nothing changes.
    dr = _run("watermon_ingest.py", "watermon_ingest_kz_reservoirs", logical_date=logical)
    assert len(remote_config.requests) == 2 and remote_config.requests[0] == remote_config.requests[1]
    assert len(_asset_events(airflow_db, "watermon://observations/kz-reservoirs")) == len(events)
