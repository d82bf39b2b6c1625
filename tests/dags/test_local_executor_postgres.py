"""Airflow as operators run it: LocalExecutor, metadata on PostgreSQL, apart from watermon's.

Starts the API server, scheduler and DAG processor as real processes, triggers the
Kazhydromet ingest DAG on the demo deliveries and waits for the run, then checks the
watermon database (another PostgreSQL database on the same test cluster).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.conftest import PG_URL, migrated_engine
from tests.dags.conftest import DAGS, ROOT
from watermon.config import load_config
from watermon.demo.generator import generate

pytestmark = pytest.mark.skipif(not PG_URL, reason="no PostgreSQL test cluster (./scripts/test starts one)")
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def _database(admin, name: str) -> str:
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    return make_url(PG_URL).set(database=name).render_as_string(hide_password=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ingest_dag_under_local_executor_with_postgres_metadata(tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    meta_url = _database(admin, f"airflow_meta_{suffix}")
    wm_url = _database(admin, f"watermon_{suffix}")
    config = load_config(ROOT / "config")
    migrated_engine(wm_url, config).dispose()
    data = tmp_path / "data"
    written = generate(config, data)
    port = _free_port()
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "WATERMON_DB_URL"))
    } | {
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": meta_url,
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex,
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW_CONN_WATERMON_DB": f'{{"conn_type": "generic", "extra": {{"url": "{wm_url}"}}}}',
        "WATERMON_DATA_DIR": str(data),
    }
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True)
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = [
        subprocess.Popen([AIRFLOW, *cmd], env=env, stdout=(logs / f"{cmd[0]}.log").open("w"), stderr=subprocess.STDOUT)
        for cmd in (["api-server", "--port", str(port)], ["scheduler"], ["dag-processor"])
    ]
    meta = create_engine(meta_url)
    dag_id = "watermon_ingest_kz_hydromet"
    try:
        state = None
        deadline = time.monotonic() + 240
        triggered = False
        while time.monotonic() < deadline:
            assert all(p.poll() is None for p in procs), (logs / "scheduler.log").read_text()[-3000:]
            with meta.connect() as conn:
                if not triggered and conn.execute(text("SELECT count(*) FROM dag WHERE dag_id = :d"), {"d": dag_id}).scalar():
                    subprocess.run([AIRFLOW, "dags", "unpause", dag_id], env=env, check=True, capture_output=True)
                    subprocess.run([AIRFLOW, "dags", "trigger", dag_id], env=env, check=True, capture_output=True)
                    triggered = True
                state = conn.execute(text(
                    "SELECT state FROM dag_run WHERE dag_id = :d AND run_type = 'manual'"), {"d": dag_id}).scalar()
            if state in ("success", "failed"):
                break
            time.sleep(1)
        tail = "\n".join((logs / f).read_text()[-1500:] for f in ("scheduler.log", "api-server.log"))
        assert state == "success", tail
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        meta.dispose()

    wm = create_engine(wm_url)
    with wm.connect() as conn:
        batches = conn.execute(text("SELECT count(*) FROM ingest_batch WHERE source_id = 'kz-hydromet'")).scalar()
        revised = conn.execute(text("SELECT count(*) FROM observation WHERE revision > 1")).scalar()
    wm.dispose()
    assert (batches, revised) == (len(written["kz-hydromet"]), 4)
    with admin.connect() as conn:
        for name in (f"airflow_meta_{suffix}", f"watermon_{suffix}"):
            conn.exec_driver_sql(f"DROP DATABASE {name} WITH (FORCE)")
    admin.dispose()
