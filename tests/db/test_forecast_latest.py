"""forecast_latest: each station, variable and step's newest finished run (migration 0006)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from alembic import command
from sqlalchemy import insert, select, text

from watermon.db.migrate import alembic_config, upgrade
from watermon.db.schema import ForecastModel, ForecastRun, ForecastValue, Station

T0 = datetime(2026, 5, 1, 6, tzinfo=timezone.utc)


def _run(conn, run_id: int, status: str, models: list[tuple[int, str]], level: float) -> None:
    """A run of ``status`` with a model per (station id, step): 2 or 1 leads, 3 quantiles each."""
    issue = T0 + timedelta(days=run_id)
    conn.execute(insert(ForecastRun).values(
        id=run_id, issue_time=issue, created_at=issue, status=status, trigger="test", config_sha256="0" * 64,
        code_version="test"))
    for station_id, step in models:
        model_id = conn.execute(insert(ForecastModel).values(
            run_id=run_id, station_id=station_id, variable="discharge", step=step, model=f"m{run_id}", params="{}",
            last_observed=level, last_observed_time=issue - timedelta(hours=6)).returning(ForecastModel.id)
        ).scalar_one()
        leads = 2 if step == "daily" else 1
        conn.execute(insert(ForecastValue), [
            {"model_id": model_id, "lead": lead, "quantile": q, "valid_time": issue + timedelta(days=lead),
             "value": level + lead + spread, "norm": 100.0}
            for lead in range(1, leads + 1) for q, spread in ((0.05, -0.5), (0.5, 0.0), (0.95, 0.5))])


@pytest.fixture
def runs(engine):
    """Station a: daily in runs 1, 2 (and 3, failed), decade in run 1 only; station b: run 3 (failed) only."""
    with engine.begin() as conn:
        (a, code_a), (b, code_b) = conn.execute(select(Station.id, Station.code).order_by(Station.id).limit(2)).all()
        _run(conn, 1, "done", [(a, "daily"), (a, "decade")], 10.0)
        _run(conn, 2, "done", [(a, "daily")], 20.0)
        _run(conn, 3, "failed", [(a, "daily"), (b, "daily")], 30.0)
        _run(conn, 4, "running", [(b, "decade")], 40.0)
    return engine, code_a, code_b


def test_each_key_shows_its_newest_finished_run(runs) -> None:
    engine, code_a, code_b = runs
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT station_code, step, run_id, model, lead, q05, median, q95, norm, last_observed "
            "FROM forecast_latest ORDER BY station_code, step, lead")).all()
        one = conn.execute(text("SELECT count(*) FROM forecast_latest WHERE station_code = :c"),
                           {"c": code_a}).scalar_one()
    assert [tuple(r) for r in rows] == [
        (code_a, "daily", 2, "m2", 1, 20.5, 21.0, 21.5, 100.0, 20.0),
        (code_a, "daily", 2, "m2", 2, 21.5, 22.0, 22.5, 100.0, 20.0),
        (code_a, "decade", 1, "m1", 1, 10.5, 11.0, 11.5, 100.0, 10.0),
    ]
    assert one == 3  # station b has no finished run: nothing


def test_downgrade_and_upgrade_keep_the_view_and_its_grants(runs) -> None:
    engine, _, _ = runs
    before = _latest(engine)
    command.downgrade(alembic_config(engine), "0005")
    assert _latest(engine) == before  # 0004's definition, same answer
    upgrade(engine, "head")
    assert _latest(engine) == before
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            grants = conn.execute(text(
                "SELECT grantee FROM information_schema.role_table_grants WHERE table_name = 'forecast_latest' "
                "AND privilege_type = 'SELECT' ORDER BY grantee")).scalars().all()
            options = conn.execute(text(
                "SELECT attoptions FROM pg_attribute WHERE attrelid = 'forecast_value'::regclass "
                "AND attname = 'model_id'")).scalar_one()
        assert {"watermon_read", "watermon_ingest"} <= set(grants)
        assert options == ["n_distinct=-0.03"]


def _latest(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT * FROM forecast_latest ORDER BY station_code, step, lead"))]
