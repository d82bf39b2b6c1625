"""Row-level security on PostgreSQL: an agency's role cannot touch another agency's data.

The statements are crafted by hand, as a careless or malicious client would send them;
the ingestion code's own checks are not involved.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from watermon.ingest.service import ingest_file

KZ, UZ = "watermon_ingest_kazhydromet", "watermon_ingest_uzhydromet"

# Roles and row-level security are PostgreSQL's: these tests run there only.
pytestmark = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


@pytest.fixture
def pg(engine, config, tmp_path: Path):
    kz = tmp_path / "kz.csv"
    kz.write_text("station;variable;time;value;unit\n11242;Q;01.04.2026 08:00;500;m3/s\n")
    uz = tmp_path / "uz.csv"
    uz.write_text("date,data,norm,units,type,code,station,river,basin,resolution\n"
                  "2020-01-10,40.5,40,m3s,Q,16279,Khudaydod,Chatkal,Chirchik,dec\n")
    assert ingest_file(engine, config, "kz-hydromet", kz).new == 1
    assert ingest_file(engine, config, "uz-hydromet-archive", uz).new == 1
    with engine.connect() as conn:
        ids = dict(conn.execute(text(
            "SELECT st.agency_id, s.id FROM series s JOIN station st ON st.id = s.station_id")).all())
        batch = conn.execute(text("SELECT max(id) FROM ingest_batch")).scalar_one()
    return engine, ids, batch


def _as(engine, role: str, sql: str, **params) -> int:
    """Run one statement as ``role`` in its own transaction; returns the row count."""
    with engine.begin() as conn:
        conn.exec_driver_sql(f'SET LOCAL ROLE "{role}"')
        return conn.execute(text(sql), params).rowcount


INSERT = ("INSERT INTO observation (series_id, obs_time, revision, value, flag, batch_id) "
          "VALUES (:sid, '2026-05-01T00:00Z', 1, 1.0, 'good', :batch)")


def test_agency_inserts_its_own_observations(pg) -> None:
    engine, ids, batch = pg
    assert _as(engine, KZ, INSERT, sid=ids["kazhydromet"], batch=batch) == 1
    assert _as(engine, UZ, INSERT, sid=ids["uzhydromet"], batch=batch) == 1


@pytest.mark.parametrize(("role", "victim"), [(KZ, "uzhydromet"), (UZ, "kazhydromet")])
def test_agency_cannot_insert_for_the_other_agency(pg, role: str, victim: str) -> None:
    engine, ids, batch = pg
    with pytest.raises(DBAPIError, match="row-level security"):
        _as(engine, role, INSERT, sid=ids[victim], batch=batch)
    with pytest.raises(DBAPIError, match="row-level security"):
        _as(engine, role, "INSERT INTO observation SELECT series_id, obs_time, revision + 1, value * 2, flag, "
                          "qualifier, batch_id FROM observation WHERE series_id = :sid", sid=ids[victim])


@pytest.mark.parametrize("sql", [
    "UPDATE observation SET value = 0",
    "UPDATE observation SET value = 0 WHERE series_id = :sid",
    "DELETE FROM observation",
    "DELETE FROM observation WHERE series_id = :sid",
    "TRUNCATE observation",
    "ALTER TABLE observation DISABLE ROW LEVEL SECURITY",
    "DROP POLICY observation_insert_own ON observation",
    "UPDATE series SET station_id = station_id",
])
def test_no_agency_can_change_or_remove_stored_observations(pg, sql: str) -> None:
    engine, ids, _ = pg
    with pytest.raises(DBAPIError, match="permission denied|must be owner"):
        _as(engine, KZ, sql, sid=ids["uzhydromet"])


def test_an_agency_login_cannot_borrow_the_other_agencys_role(pg) -> None:
    """A login granted only Kazhydromet's role: its own stations, nothing else."""
    engine, ids, batch = pg
    login = f"kz_operator_{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE ROLE "{login}" LOGIN IN ROLE "{KZ}"')
    operator = create_engine(engine.url.set(username=login))
    try:
        with operator.begin() as conn:
            assert conn.execute(text(INSERT), {"sid": ids["kazhydromet"], "batch": batch}).rowcount == 1
        with pytest.raises(DBAPIError, match="row-level security"), operator.begin() as conn:
            conn.execute(text(INSERT), {"sid": ids["uzhydromet"], "batch": batch})
        with pytest.raises(DBAPIError, match="permission denied"), operator.begin() as conn:
            conn.exec_driver_sql(f'SET ROLE "{UZ}"')
        with pytest.raises(DBAPIError, match="row-level security"), operator.begin() as conn:
            conn.execute(text("INSERT INTO series (station_id, variable, aggregation, unit) "
                              "SELECT id, 'stage', 'instantaneous', 'm' FROM station WHERE code = '16279'"))
    finally:
        operator.dispose()
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP OWNED BY "{login}"')
            conn.exec_driver_sql(f'DROP ROLE "{login}"')


@pytest.mark.parametrize("role", ["watermon_ministry_kz", "watermon_ministry_uz", "watermon_hydrologist"])
def test_ministries_and_hydrologists_only_read(pg, role: str) -> None:
    engine, ids, batch = pg
    with engine.begin() as conn:
        conn.exec_driver_sql(f'SET LOCAL ROLE "{role}"')
        assert conn.execute(text("SELECT count(*) FROM readings")).scalar_one() == 2
    with pytest.raises(DBAPIError, match="permission denied"):
        _as(engine, role, INSERT, sid=ids["kazhydromet"], batch=batch)


def test_hydrologists_record_overrides_but_cannot_touch_automatic_flags(pg) -> None:
    engine, ids, _ = pg
    override = ("INSERT INTO qc_override (series_id, time_from, time_to, level, reason, author, created_at) "
                "VALUES (:sid, '2026-04-01T00:00Z', '2026-04-02T00:00Z', 'bad', 'seen on site', 'me', now())")
    assert _as(engine, "watermon_hydrologist", override, sid=ids["kazhydromet"]) == 1
    with engine.begin() as conn:
        conn.exec_driver_sql('SET LOCAL ROLE "watermon_hydrologist"')
        assert conn.execute(text("SELECT count(*) FROM observation_qc WHERE qc_flag = 'bad'")).scalar_one() == 1
    for role in ("watermon_hydrologist", KZ, "watermon_ministry_kz"):
        with pytest.raises(DBAPIError, match="permission denied"):
            _as(engine, role, "DELETE FROM qc_override")
        with pytest.raises(DBAPIError, match="permission denied"):
            _as(engine, role, "DELETE FROM qc_flag")
    with pytest.raises(DBAPIError, match="permission denied"):
        _as(engine, "watermon_ministry_uz", override, sid=ids["uzhydromet"])
