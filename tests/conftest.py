"""Shared fixtures: the demo configuration, a fresh migrated database, the shared data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

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


@pytest.fixture
def engine(tmp_path: Path, config: BasinConfig) -> Iterator[Engine]:
    e = migrated_engine(f"sqlite:///{tmp_path / 'watermon.db'}", config)
    yield e
    e.dispose()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared real data not present at {SHARED_DATA} (../shared beside the project root)")
    return SHARED_DATA
