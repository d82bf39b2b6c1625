"""``watermon forecast calibrate-snow``: the snow model calibrated on what the database holds,
printed as the option to paste, and a run that uses it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import migrated_engine
from tests.forecast.test_forecast_chirchik import BENCH
from tests.forecast.test_forecast_snowmelt import TRUTH, meteo
from watermon.cli import main
from watermon.forecast.dataset import period_days
from watermon.forecast.models.snowmelt import SnowParams, simulate
from watermon.ingest.service import ingest_file

ROOT = Path(__file__).resolve().parents[2]
METEO = ["38462", "38471"]


def _config(tmp_path: Path, monkeypatch, entry: dict) -> Path:
    """The demo configuration with one more forecast entry, as WATERMON_CONFIG."""
    cfg = tmp_path / "cfg"
    shutil.copytree(ROOT / "config", cfg, dirs_exist_ok=True)
    doc = yaml.safe_load((ROOT / "config" / "forecast.yaml").read_text())
    doc["forecast"]["stations"].append({"step": "decade", "leads": 3, "model": "arx", "compare": [], **entry})
    (cfg / "forecast.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    monkeypatch.setenv("WATERMON_CONFIG", str(cfg))
    return cfg


@pytest.fixture
def cli(tmp_path: Path, db_url: str, engine, monkeypatch) -> Path:
    monkeypatch.setenv("WATERMON_DB_URL", db_url)
    monkeypatch.setenv("WATERMON_DATA_DIR", str(tmp_path))
    return tmp_path


def _archive(path: Path, years: int) -> Path:
    """A snow-fed 16279 simulated by the model with TRUTH from 38462's weather (38471 is
    3 degC warmer), in the Uzhydromet archive's long CSV, decades dated on their last day."""
    t, temp, precip = meteo(years)
    q = simulate(TRUTH, temp, precip, period_days(t, "decade").astype(float))[0]
    ends = (t[1:].astype("datetime64[D]") - 1).tolist() + [np.datetime64(f"{1960 + years - 1}-12-31").item()]
    lines = ["date,data,norm,units,type,code,station,river,basin,resolution"]
    for code, kind, unit, values in (("16279", "Q", "m3s", q), ("38462", "P", "mm", precip),
                                     ("38462", "T", "degC", temp), ("38471", "P", "mm", precip),
                                     ("38471", "T", "degC", temp + 3.0)):
        lines += [f"{d.isoformat()},{v:.3f},0,{unit},{kind},{code},x,Chatkal,Chirchik,dec"
                  for d, v in zip(ends, values, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_calibration_recovers_a_snow_basin_from_the_database(cli: Path, engine, config, monkeypatch,
                                                             capsys) -> None:
    _config(cli, monkeypatch, {"station": "16279", "meteo": METEO})
    assert ingest_file(engine, config, "uz-hydromet-archive", _archive(cli / "a.csv", 12)).status == "loaded"
    assert main(["forecast", "calibrate-snow", "16279", "--until", "1970-01-01"]) == 0
    out = capsys.readouterr().out
    params = SnowParams.from_dict(yaml.safe_load(out)["snowmelt"])  # what the operator pastes is valid
    assert "# calibrated on 1961-01-01 .. 1969-12-21 (324 periods)" in out
    assert "not used, after it: 1970-01-01 .. 1971-12-21 (72 periods)" in out
    assert params.scale == pytest.approx(TRUTH.scale, rel=0.15)
    assert main(["forecast", "calibrate-snow", "16279", "--until", "1970-01-01", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["snowmelt"] == params.as_dict()  # deterministic
    assert [f["window"] for f in doc["fit"]] == ["calibration", "validation"]
    assert all(f["nse"] > 0.98 and f["kge"] > 0.95 for f in doc["fit"]), doc["fit"]


def test_too_short_a_record_is_refused_with_the_count(cli: Path, engine, config, monkeypatch, capsys) -> None:
    _config(cli, monkeypatch, {"station": "16279", "meteo": METEO})
    ingest_file(engine, config, "uz-hydromet-archive", _archive(cli / "a.csv", 3))
    assert main(["forecast", "calibrate-snow", "16279", "--until", "1962-07-01"]) == 1
    err = capsys.readouterr().err
    assert "snowmelt (16279): 54 observed periods before 1962-07-01" in err and "need 90" in err


def test_missing_meteo_series_are_named(cli: Path, engine, monkeypatch, capsys) -> None:
    _config(cli, monkeypatch, {"station": "16279", "meteo": METEO})
    assert main(["forecast", "calibrate-snow", "16279"]) == 1
    assert "no observations before the issue time for any of 16279/discharge, 38462/precipitation" in \
        capsys.readouterr().err


@pytest.mark.parametrize(("station", "extra", "message"), [
    ("16290", [], "forecast.yaml has no discharge forecast of 16290"),
    ("16275", [], "the daily forecast of 16275 lists no meteo stations"),
    ("16275", ["--step", "decade"], "no discharge forecast of 16275 at the decade step"),
])
def test_a_forecast_without_meteo_is_a_usage_error(cli: Path, station: str, extra: list[str], message: str,
                                                    capsys) -> None:
    assert main(["forecast", "calibrate-snow", station, *extra]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_the_stored_archive_gives_the_recorded_parameters_and_a_run_uses_them(
        shared_data: Path, tmp_path: Path, config, monkeypatch, capsys) -> None:
    """Ingested into the database, the Chirchik archive calibrates 16294 exactly as the file
    does in benchmarks/forecast_skill.py (SNOWPACK, 1935-1990); pasted, the option drives a run.
    On SQLite only: the 20 s calibration is the same on both, the tests above run on both."""
    url = f"sqlite:///{tmp_path / 'watermon.db'}"
    engine = migrated_engine(url, config)
    monkeypatch.setenv("WATERMON_DB_URL", url)
    monkeypatch.setenv("WATERMON_DATA_DIR", str(tmp_path))
    cli = tmp_path
    entry = {"station": "16294", "upstream": list(BENCH.DECADE["16294"]), "meteo": list(BENCH.METEO)}
    _config(cli, monkeypatch, entry)
    ingest_file(engine, config, "uz-hydromet-archive", shared_data / "chirchik" / "chirchik_uzhydromet.csv")
    assert main(["forecast", "calibrate-snow", "16294", "--until", "1991-01-01", "--train-from", "1935-01-01"]) == 0
    out = capsys.readouterr().out
    option = yaml.safe_load(out)["snowmelt"]
    assert option == pytest.approx(BENCH.SNOWPACK["16294"]["outer"], rel=1e-6)
    fit = {line.split()[1]: line for line in out.splitlines() if "NSE" in line}
    assert "1935-01-01 .. 1990-12-21" in fit["calibrated"] and "after" in fit["not"]

    _config(cli, monkeypatch, {**entry, "options": {**BENCH.SNOWPACK["16294"]["arx"], "snowmelt": option}})
    assert main(["forecast", "run", "--issue-time", "2015-04-01", "--station", "16294"]) == 0
    capsys.readouterr()
    assert main(["forecast", "table", "16294", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["lead"] for r in rows] == [1, 2, 3]
    assert all(r["q05"] < r["median"] < r["q95"] for r in rows)
    assert rows[0]["median"] < rows[2]["median"]  # April: the snowmelt rise
