"""Ingestion rules: one batch one transaction, idempotent replay, revisions, ownership."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from watermon.db.queries import quarantine, readings
from watermon.db.schema import IngestBatch, Observation, Quarantine
from watermon.ingest import service
from watermon.ingest.service import ingest_file

HEADER = "station;variable;time;value;unit\n"


def _csv(path: Path, lines: list[str]) -> Path:
    path.write_text(HEADER + "".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def _count(engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def _day(n: int, values: list[float], station: str = "11242") -> list[str]:
    return [f"{station};Q;{n:02d}.04.2026 {h:02d}:00;{str(v).replace('.', ',')};m3/s" for h, v in zip((2, 8, 14, 20), values, strict=False)]


def test_replaying_the_same_payload_is_a_reported_no_op(tmp_path, engine, config) -> None:
    p = _csv(tmp_path / "a.csv", _day(1, [500.0, 510.5, 520.0, 515.0]))
    first = ingest_file(engine, config, "kz-hydromet", p)
    assert (first.status, first.new, first.records) == ("loaded", 4, 4)
    before = _count(engine, Observation), _count(engine, IngestBatch)
    again = ingest_file(engine, config, "kz-hydromet", p)
    assert again.status == "duplicate" and again.duplicate_of == first.batch_id
    assert "already loaded" in again.summary()
    assert (_count(engine, Observation), _count(engine, IngestBatch)) == before


def test_overlap_keeps_unchanged_values_and_revises_changed_ones(tmp_path, engine, config) -> None:
    a = ingest_file(engine, config, "kz-hydromet", _csv(tmp_path / "a.csv", _day(1, [500.0, 510.5, 520.0, 515.0])))
    b = ingest_file(
        engine, config, "kz-hydromet",
        _csv(tmp_path / "b.csv", _day(1, [500.0, 511.0, 520.0, 515.0]) + _day(2, [530.0])),
    )
    assert (b.new, b.unchanged, b.revised, b.rejected) == (1, 3, 1, 0)
    with engine.connect() as conn:
        current = readings(conn, "11242", variable="discharge")
        history = readings(conn, "11242", variable="discharge", history=True)
    assert [r.value for r in current] == [500.0, 511.0, 520.0, 515.0, 530.0]
    revised = [r for r in history if r.time == current[1].time]
    # The original stays queryable, with the batch and time it was received.
    assert [(r.revision, r.value, r.batch_id) for r in revised] == [(1, 510.5, a.batch_id), (2, 511.0, b.batch_id)]
    assert revised[0].received_at <= revised[1].received_at
    # A third delivery back to the first value is a revision too (the history says what was said when).
    c = ingest_file(engine, config, "kz-hydromet", _csv(tmp_path / "c.csv", _day(1, [500.0, 510.5])))
    assert (c.revised, c.unchanged) == (1, 1)
    with engine.connect() as conn:
        assert readings(conn, "11242", variable="discharge")[1].value == 510.5
        assert conn.execute(text("SELECT count(*) FROM observation_current")).scalar_one() == 5


def test_source_writes_only_its_agencys_stations(tmp_path, engine, config) -> None:
    p = _csv(tmp_path / "a.csv", ["16279;Q;01.04.2026 08:00;100;m3/s", "11242;Q;01.04.2026 08:00;100;m3/s"])
    r = ingest_file(engine, config, "kz-hydromet", p)
    assert (r.new, r.rejected) == (1, 1)
    with engine.connect() as conn:
        (q,) = quarantine(conn, batch_id=r.batch_id)
        assert readings(conn, "16279") == []
    assert (q["record_no"], q["field"]) == (2, "station")
    assert "belongs to uzhydromet" in q["reason"] and "kz-hydromet" in q["reason"]
    assert q["raw"] == "16279;Q;01.04.2026 08:00;100;m3/s"


def test_invalid_records_are_quarantined_and_the_rest_lands(tmp_path, engine, config) -> None:
    lines = [
        "11242;Q;01.04.2026 08:00;-5;m3/s",      # non-physical
        "11242;Q;01.04.2026 09:00;5;gal/min",    # unknown unit
        "99999;Q;01.04.2026 08:00;5;m3/s",       # unknown station
        "11242;T;01.04.2026 08:00;5;degC",       # a variable this gauge does not report
        "11242;Q;01.04.2026 25:00;5;m3/s",       # bad time
        "11242;Q;01.04.2026 10:00;5,5;m3/s",
        "11242;H;01.04.2026 10:00;250;cm",
    ]
    r = ingest_file(engine, config, "kz-hydromet", _csv(tmp_path / "a.csv", lines))
    assert (r.status, r.records, r.new, r.rejected) == ("loaded", 7, 2, 5)
    with engine.connect() as conn:
        q = {(x["record_no"], x["field"]): x["reason"] for x in quarantine(conn, batch_id=r.batch_id)}
        stage = readings(conn, "11242", variable="stage")
    assert set(q) == {(2, "value"), (3, "unit"), (4, "station"), (5, "variable"), (6, "time")}
    assert "outside the physical range" in q[(2, "value")]
    assert "unknown unit 'gal/min'" in q[(3, "unit")]
    assert "unknown station '99999'" in q[(4, "station")]
    assert [(s.value, s.unit) for s in stage] == [(2.5, "m")]  # 250 cm stored as metres


def test_conflicting_values_within_one_file_are_quarantined(tmp_path, engine, config) -> None:
    lines = ["11242;Q;01.04.2026 08:00;5;m3/s", "11242;Q;01.04.2026 08:00;6;m3/s", "11242;Q;01.04.2026 08:00;5;m3/s"]
    r = ingest_file(engine, config, "kz-hydromet", _csv(tmp_path / "a.csv", lines))
    assert (r.new, r.unchanged, r.rejected) == (1, 1, 1)
    with engine.connect() as conn:
        (q,) = quarantine(conn, batch_id=r.batch_id)
    assert q["record_no"] == 3 and "conflicts with an earlier record of this file" in q["reason"]


def test_unreadable_file_is_a_failed_batch_and_stores_nothing(tmp_path, engine, config) -> None:
    good = ingest_file(engine, config, "kz-hydromet", _csv(tmp_path / "a.csv", _day(1, [1.0, 2.0])))
    p = tmp_path / "broken.csv"
    p.write_bytes(HEADER.encode() + b"11242;Q;01.04.2026 08:00;9;m3/s\n11242;Q;01.04.2026 09:00;\xff;m3/s\n")
    r = ingest_file(engine, config, "kz-hydromet", p)
    assert r.status == "failed" and "broken.csv: line 3" in r.error
    assert _count(engine, Observation) == good.new
    with engine.connect() as conn:
        row = conn.execute(select(IngestBatch.__table__).where(IngestBatch.id == r.batch_id)).one()
    assert row.status == "failed" and row.n_new == 0 and "line 3" in row.error
    # A failed payload may be delivered again (fixed or not): it is not a duplicate.
    assert ingest_file(engine, config, "kz-hydromet", p).status == "failed"


def test_exception_mid_batch_leaves_the_database_as_before(tmp_path, engine, config, monkeypatch) -> None:
    ingest_file(engine, config, "kz-hydromet", _csv(tmp_path / "a.csv", _day(1, [1.0, 2.0])))
    before = [_count(engine, t) for t in (Observation, IngestBatch, Quarantine)]
    lines = [f"11242;Q;02.04.2026 {h:02d}:{m:02d};{h + m};m3/s" for h in range(24) for m in range(60)]
    lines.insert(500, "11242;Q;02.04.2026 08:00;-1;m3/s")
    p = _csv(tmp_path / "b.csv", lines)
    real_write = service.BatchWriter.write
    calls = {"n": 0}

    def crash_on_third_chunk(self, observations):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("simulated crash")
        return real_write(self, observations)

    monkeypatch.setattr(service.BatchWriter, "write", crash_on_third_chunk)
    with pytest.raises(RuntimeError, match="simulated crash"):
        ingest_file(engine, config, "kz-hydromet", p, chunk_size=200)
    assert [_count(engine, t) for t in (Observation, IngestBatch, Quarantine)] == before
    monkeypatch.undo()
    r = ingest_file(engine, config, "kz-hydromet", p, chunk_size=200)
    assert (r.new, r.rejected) == (1440, 1)


def _mid_batch(engine, proc: subprocess.Popen) -> bool:
    """True once the ingest process is inside its batch transaction, writing rows."""
    if engine.dialect.name == "sqlite":
        wal = Path(f"{engine.url.database}-wal")
        return wal.exists() and wal.stat().st_size > 2_000_000
    with engine.connect() as conn:
        return bool(conn.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND (query LIKE 'COPY observation%' OR query LIKE 'INSERT INTO observation%')")).scalar_one())


def test_killed_process_leaves_no_partial_batch(tmp_path, engine, config) -> None:
    """SIGKILL the real CLI in the middle of a large batch: nothing of it remains."""
    lines = [f"11242;Q;{d:02d}.0{m}.2026 {h:02d}:{mi:02d};{d + h + mi / 100:.2f};m3/s"
             for m in (4, 5, 6) for d in range(1, 29) for h in range(24) for mi in range(0, 60, 2)]
    p = _csv(tmp_path / "big.csv", lines)
    url = engine.url.render_as_string(hide_password=False)
    env = {**os.environ, "WATERMON_DB_URL": url, "WATERMON_DATA_DIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "watermon.cli", "ingest", "--source", "kz-hydromet", str(p)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None and not _mid_batch(engine, proc):
        time.sleep(0.005)
    assert proc.poll() is None, "the ingest finished before it could be killed; make the file larger"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _count(engine, Observation) == 0
    assert _count(engine, IngestBatch) == 0
    r = ingest_file(engine, config, "kz-hydromet", p)
    assert (r.status, r.new) == ("loaded", len(lines))
    assert _count(engine, Observation) == len(lines)


def test_real_archive_exact_counts_in_the_database(shared_data, engine, config) -> None:
    archive = shared_data / "chirchik"
    a = ingest_file(engine, config, "uz-hydromet-archive", archive / "chirchik_uzhydromet.csv")
    b = ingest_file(engine, config, "uz-hydromet-archive", archive / "charvak_chatkal_daily_1965_1967.csv")
    assert (a.records, a.new, a.missing, a.rejected) == (26940, 26156, 784, 0)
    assert (b.records, b.new) == (1976, 1976)
    assert _count(engine, Observation) == 26156 + 1976
    with (archive / "chirchik_uzhydromet.csv").open() as f:
        expected = sum(1 for row in csv.DictReader(f) if row["code"] == "16294" and row["data"] != "NA")
    with engine.connect() as conn:
        rows = readings(conn, "16294", aggregation="decade_mean")
    assert len(rows) == expected
    assert rows[0].unit == "m3/s" and rows[0].time.isoformat() == "1932-01-01T00:00:00+00:00"


def test_a_variable_without_lower_limit_reports_its_range(tmp_path, engine, config) -> None:
    variables = tuple(v.model_copy(update={"min": None}) if v.id == "stage" else v for v in config.variables)
    cfg = config.model_copy(update={"variables": variables})
    r = ingest_file(engine, cfg, "kz-hydromet", _csv(tmp_path / "a.csv", ["11242;H;01.04.2026 08:00;99000;cm"]))
    with engine.connect() as conn:
        (q,) = quarantine(conn, batch_id=r.batch_id)
    assert q["reason"] == "stage 990 m is outside the physical range [-inf, 50] m"
