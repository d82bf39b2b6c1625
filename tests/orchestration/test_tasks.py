"""Task functions without Airflow: connection URLs and the ingest summary."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from watermon.orchestration.layout import sources
from watermon.orchestration.tasks import ingest_inbox, url_from_connection


def test_database_url_from_airflow_connection_fields() -> None:
    url = make_url(url_from_connection("postgres", "db.internal", "wm", "p@ss word", 5432, "watermon", {}))
    assert (url.drivername, url.username, url.password, url.host, url.port, url.database) == (
        "postgresql+psycopg", "wm", "p@ss word", "db.internal", 5432, "watermon")
    assert url_from_connection("sqlite", "/srv/wm.db", None, None, None, None, {}) == "sqlite:////srv/wm.db"
    assert url_from_connection("generic", None, None, None, None, None, {"url": "sqlite:///x.db"}) == "sqlite:///x.db"
    with pytest.raises(ValueError, match="type 'mysql' is not supported"):
        url_from_connection("mysql", "h", None, None, None, None, {})


def test_layout_reads_sources_without_validation_cost() -> None:
    layout = {s.id: s for s in sources()}
    assert layout["kz-hydromet"].dag_id == "watermon_ingest_kz_hydromet"
    assert layout["kz-hydromet"].schedule == "*/5 * * * *" and not layout["kz-hydromet"].remote
    assert layout["uz-hydromet"].asset_uri == "watermon://observations/uz-hydromet"


def test_ingest_inbox_summary_gives_one_event_per_changed_batch(tmp_path, engine, monkeypatch) -> None:
    monkeypatch.setenv("WATERMON_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("WATERMON_DB_URL", str(engine.url))
    inbox = tmp_path / "inbox" / "kz-hydromet"
    inbox.mkdir(parents=True)
    (inbox / "a.csv").write_text("station;variable;time;value;unit\n11242;Q;01.04.2026 08:00;5;m3/s\n")
    summary = ingest_inbox("kz-hydromet")
    assert (summary["files"], summary["loaded"], summary["new"], summary["failed"]) == (1, 1, 1, [])
    (event,) = summary["events"]
    assert (event["stations"], event["time_min"], event["file"]) == (["11242"], "2026-04-01T03:00:00+00:00", "a.csv")
    (inbox / "a.csv").write_text("station;variable;time;value;unit\n11242;Q;01.04.2026 08:00;5;m3/s\n")
    again = ingest_inbox("kz-hydromet")
    assert (again["duplicates"], again["events"]) == (1, [])
