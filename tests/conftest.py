"""Shared fixtures: the demo configuration, a fresh migrated database, the shared data."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url

from watermon.config import BasinConfig, load_config
from watermon.db.engine import make_engine
from watermon.db.migrate import upgrade
from watermon.db.reference import sync_reference

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def config() -> BasinConfig:
    return load_config(ROOT / "config")


def migrated_engine(url: str, config: BasinConfig) -> Engine:
    engine = make_engine(url)
    upgrade(engine)
    with engine.begin() as conn:
        sync_reference(conn, config)
    return engine


PG_URL = os.environ.get("WATERMON_TEST_PG_URL")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: a SQLite file, or a new database on the test cluster."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'watermon.db'}"
        return
    if not PG_URL:
        pytest.skip("no PostgreSQL test cluster (WATERMON_TEST_PG_URL unset; ./scripts/test starts one)")
    name = f"wm_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE {name} WITH (FORCE)")
    admin.dispose()


@pytest.fixture
def engine(db_url: str, config: BasinConfig) -> Iterator[Engine]:
    e = migrated_engine(db_url, config)
    yield e
    e.dispose()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared real data not present at {SHARED_DATA} (../shared beside the project root)")
    return SHARED_DATA
