"""The migrations build exactly the models' schema, and sql/ holds its current DDL."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from watermon.db.ddl import DIALECTS, ddl, path_for
from watermon.db.schema import Base, IngestBatch


def test_migrations_match_the_models(engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    assert {"observation_current", "readings"} <= set(inspect(engine).get_view_names())


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
def test_sql_files_are_current(dialect: str) -> None:
    assert path_for(dialect).read_text(encoding="utf-8") == ddl(dialect), (
        f"{path_for(dialect)} is stale: run `python -m watermon.db.ddl`"
    )


def test_naive_times_are_refused(engine) -> None:
    with engine.begin() as conn, pytest.raises(Exception, match="naive datetime"):
        conn.execute(IngestBatch.__table__.insert().values(
            source_id="x", file_name="f", sha256="0" * 64, received_at=datetime(2026, 1, 1), status="loaded",
            n_records=0, n_new=0, n_unchanged=0, n_revised=0, n_rejected=0, n_missing=0))


def test_times_are_stored_in_utc(engine) -> None:
    """SQLite: sortable UTC text as its date functions write it; PostgreSQL: timestamptz."""
    with engine.begin() as conn:
        conn.execute(IngestBatch.__table__.insert().values(
            source_id="x", file_name="f", sha256="0" * 64, status="loaded",
            received_at=datetime(2026, 1, 1, 10, tzinfo=timezone.utc).astimezone(),
            n_records=0, n_new=0, n_unchanged=0, n_revised=0, n_rejected=0, n_missing=0))
        stored = conn.execute(text("SELECT received_at FROM ingest_batch")).scalar_one()
    expected = datetime(2026, 1, 1, 10, tzinfo=timezone.utc)
    assert stored == ("2026-01-01 10:00:00" if engine.dialect.name == "sqlite" else expected)


def test_only_one_loaded_batch_per_payload(engine) -> None:
    row = dict(source_id="x", file_name="f", sha256="a" * 64, received_at=datetime.now(timezone.utc),
               n_records=0, n_new=0, n_unchanged=0, n_revised=0, n_rejected=0, n_missing=0)
    with engine.begin() as conn:
        conn.execute(IngestBatch.__table__.insert().values(**row, status="failed"))
        conn.execute(IngestBatch.__table__.insert().values(**row, status="failed"))
        conn.execute(IngestBatch.__table__.insert().values(**row, status="loaded"))
    with engine.begin() as conn, pytest.raises(IntegrityError, match="(?i)unique"):
        conn.execute(IngestBatch.__table__.insert().values(**row, status="loaded"))
