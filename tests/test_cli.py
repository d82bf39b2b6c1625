"""The command line: exit codes, listings and machine-readable readings."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from watermon.cli import main


@pytest.fixture
def env(tmp_path: Path, db_url: str, monkeypatch) -> Path:
    monkeypatch.setenv("WATERMON_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("WATERMON_DB_URL", db_url)
    monkeypatch.delenv("WATERMON_CONFIG", raising=False)
    assert main(["init"]) == 0
    return tmp_path


def _csv(path: Path, body: str) -> Path:
    path.write_text("station;variable;time;value;unit\n" + body)
    return path


def test_ingest_exit_codes(env: Path, capsys) -> None:
    ok = _csv(env / "ok.csv", "11242;Q;01.04.2026 08:00;5;m3/s\n11242;Q;01.04.2026 09:00;-5;m3/s\n")
    assert main(["ingest", "--source", "kz-hydromet", str(ok)]) == 0  # quarantined records still exit 0
    assert "1 new" in capsys.readouterr().out
    bad = env / "bad.csv"
    bad.write_text("garbage\n")
    assert main(["ingest", "--source", "kz-hydromet", str(bad)]) == 1
    assert "FAILED" in capsys.readouterr().out
    assert main(["ingest", "--source", "no-such-source", str(ok)]) == 2
    assert "unknown source 'no-such-source'" in capsys.readouterr().err
    assert main(["ingest", "--source", "kz-hydromet", str(env / "absent.csv")]) == 2
    with pytest.raises(SystemExit) as e:
        main(["ingest", str(ok)])
    assert e.value.code == 2


def test_readings_csv_has_time_value_flag(env: Path, capsys) -> None:
    _ = _csv(env / "a.csv", "11242;Q;01.04.2026 08:00;5,25;m3/s\n11242;H;01.04.2026 08:00;250;cm\n")
    main(["ingest", "--source", "kz-hydromet", str(env / "a.csv")])
    capsys.readouterr()
    assert main(["readings", "11242", "--variable", "discharge", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 1
    assert {"time", "value", "flag"} <= set(rows[0])
    assert (rows[0]["time"], float(rows[0]["value"]), rows[0]["flag"]) == ("2026-04-01T03:00:00Z", 5.25, "unchecked")
    assert main(["readings", "11242", "--format", "json", "--start", "2026-04-01T03:00Z", "--end", "2026-04-01T03:00Z"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert {(g["variable"], g["value"], g["unit"]) for g in got} == {("discharge", 5.25, "m3/s"), ("stage", 2.5, "m")}
    assert main(["readings", "NOPE"]) == 2


def test_listings(env: Path, capsys) -> None:
    assert main(["sources", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {r["id"]: r["format"] for r in rows}["uz-hydromet"] == "waterml2"
    assert all(r["inbox"].startswith(str(env)) for r in rows)
    assert main(["stations", "--format", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 14
    _csv(env / "q.csv", "11242;Q;01.04.2026 08:00;5;gal\n")
    main(["ingest", "--source", "kz-hydromet", str(env / "q.csv")])
    capsys.readouterr()
    assert main(["batches", "--format", "json"]) == 0
    (b,) = json.loads(capsys.readouterr().out)
    assert (b["file_name"], b["n_rejected"], b["status"]) == ("q.csv", 1, "loaded")
    assert main(["quarantine", "--format", "json"]) == 0
    (q,) = json.loads(capsys.readouterr().out)
    assert (q["file_name"], q["record_no"], q["field"]) == ("q.csv", 2, "unit")


def test_broken_config_exits_1_naming_the_file(env: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "agencies.yaml").write_text("agencies: [{id: X}]\n")
    monkeypatch.setenv("WATERMON_CONFIG", str(cfg))
    assert main(["stations"]) == 1
    assert f"{cfg / 'agencies.yaml'}: agencies[0](X).id" in capsys.readouterr().err


def test_unreachable_database_is_a_clear_error(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("WATERMON_DB_URL", "postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=2")
    monkeypatch.setenv("WATERMON_DATA_DIR", str(tmp_path))
    ok = _csv(tmp_path / "ok.csv", "11242;Q;01.04.2026 08:00;5;m3/s\n")
    assert main(["ingest", "--source", "kz-hydromet", str(ok)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("watermon: database error:") and "127.0.0.1" in err and "Traceback" not in err
