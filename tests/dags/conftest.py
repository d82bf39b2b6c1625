"""Airflow for the DAG tests: a temporary AIRFLOW_HOME with its own SQLite metadata DB.

The environment is set when this file is imported, before anything imports Airflow
(which reads its configuration once, at import).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "dags"
# Set once per process, even if this module is imported a second time by name.
_HOME = Path(os.environ.setdefault("WATERMON_TEST_AIRFLOW_HOME", tempfile.mkdtemp(prefix="watermon-airflow-")))
os.environ.update(
    AIRFLOW_HOME=str(_HOME),
    AIRFLOW__CORE__DAGS_FOLDER=str(DAGS),
    AIRFLOW__CORE__LOAD_EXAMPLES="False",
    AIRFLOW__CORE__UNIT_TEST_MODE="False",
    AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
)

pytest.importorskip("airflow", reason="Airflow is not installed (pip install -e '.[airflow]')")


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Airflow's metadata database, migrated once per session."""
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, env=os.environ.copy())
    return _HOME


@pytest.fixture
def watermon_env(tmp_path: Path, db_url: str, monkeypatch) -> Path:
    """A watermon database (SQLite or PostgreSQL) and data directory, given to tasks.

    The database URL is in ``WATERMON_DB_URL`` and in the ``watermon_db`` connection.
    """
    from tests.conftest import migrated_engine
    from watermon.config import load_config

    db = db_url
    monkeypatch.setenv("WATERMON_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("WATERMON_DB_URL", db)
    monkeypatch.setenv("AIRFLOW_CONN_WATERMON_DB", f'{{"conn_type": "generic", "extra": {{"url": "{db}"}}}}')
    monkeypatch.delenv("WATERMON_CONFIG", raising=False)
    migrated_engine(db, load_config(ROOT / "config")).dispose()
    return tmp_path
