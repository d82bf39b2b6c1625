"""Forecast runs over the database: the demo season in, stored runs, tables, products and skill out."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from sqlalchemy import func, select, text

from watermon.cli import main
from watermon.db.schema import ForecastModel, ForecastRun, ForecastValue
from watermon.demo.generator import generate
from watermon.forecast.service import issue_label, load_inputs, run_forecast, verify
from watermon.forecast.tables import forecast_table, product
from watermon.ingest.inbox import process_inbox
from watermon.qc.service import run_qc

ISSUE = datetime(2026, 8, 21, tzinfo=timezone.utc)


@pytest.fixture
def season(tmp_path: Path, engine, config):
    generate(config, tmp_path)
    for src in config.sources:
        for report in process_inbox(engine, config, src.id, tmp_path):
            assert report.status != "failed", report
    run_qc(engine, config)
    return engine


def test_inputs_are_period_means_before_the_issue_only(season, config) -> None:
    issue = issue_label(ISSUE, "daily")
    with season.connect() as conn:
        data = load_inputs(conn, config, [("16275", "discharge"), ("CHARVAK", "reservoir_release")], "daily", issue)
        later = load_inputs(conn, config, [("16275", "discharge")], "daily", issue + np.timedelta64(10, "D"))
    assert data["time"].values[-1] == issue - np.timedelta64(1, "D")
    assert data.attrs["step"] == "daily" and "period" in data.coords
    same = later["discharge"].sel(station="16275", time=data["time"]).values
    np.testing.assert_array_equal(same, data["discharge"].sel(station="16275").values)


def test_a_run_issued_mid_day_sees_only_the_readings_before_it(season, config) -> None:
    issue_time = ISSUE - timedelta(hours=13)  # 11:00 on the last observed day
    wanted = [("16275", "discharge")]
    issue = issue_label(issue_time, "daily")
    with season.connect() as conn:
        seen = load_inputs(conn, config, wanted, "daily", issue, observed_before=issue_time)
        whole = load_inputs(conn, config, wanted, "daily", issue)
    assert issue == np.datetime64("2026-08-21") and seen["time"].values[-1] == whole["time"].values[-1]
    assert seen.attrs["data_cutoff"] < issue_time <= whole.attrs["data_cutoff"]
    # the day of issue is a mean of its morning only, the days before it are whole
    today = lambda ds: float(ds["discharge"].sel(station="16275").values[-1])  # noqa: E731
    assert today(seen) != today(whole)
    np.testing.assert_array_equal(seen["discharge"].values[:, :-1], whole["discharge"].values[:, :-1])
    run = run_forecast(season, config, issue_time=issue_time, stations=["16275"])
    with season.connect() as conn:
        stored = conn.execute(select(ForecastRun.data_cutoff).where(ForecastRun.id == run.run_id)).scalar_one()
    assert stored.replace(tzinfo=timezone.utc) == seen.attrs["data_cutoff"]


def test_run_stores_every_station_with_ordered_quantiles(season, config) -> None:
    run = run_forecast(season, config, issue_time=ISSUE)
    assert sorted(run.stations) == sorted(e.station for e in config.forecast.stations)
    with season.connect() as conn:
        status = conn.execute(select(ForecastRun.status, ForecastRun.qc_run_id, ForecastRun.data_cutoff)).one()
        params = json.loads(conn.execute(select(ForecastModel.params).limit(1)).scalar_one())
        n_values = conn.execute(select(func.count()).select_from(ForecastValue)).scalar_one()
        rows = forecast_table(conn, config)
        latest = conn.execute(text("SELECT count(*) FROM forecast_latest")).scalar_one()
    assert status.status == "done" and status.qc_run_id == 1 and status.data_cutoff < ISSUE
    assert "fitted" in params and "options" in params
    assert n_values == 5 * sum(e.leads for e in config.forecast.stations) and latest == len(rows)
    for r in rows:
        assert r["q05"] <= r["q25"] <= r["median"] <= r["q75"] <= r["q95"]
    charvak = [r for r in rows if r["station"] == "CHARVAK"]
    assert [r["lead"] for r in charvak] == list(range(1, 11))
    assert charvak[0]["valid_time"] == ISSUE and abs(charvak[0]["median"] - charvak[0]["last_observed"]) < 1.0
    ds = product(rows, config, step="daily", variable="discharge")
    assert ds["forecast"].dims == ("station", "issue_time", "lead", "quantile")
    assert set(ds["station"].values) == {"16275", "11242", "11250"} and float(ds["danger"].sel(station="16275")) == 1100


def test_a_failed_run_is_recorded_and_shows_nowhere(season, config) -> None:
    with pytest.raises(ValueError, match="no observations before the issue time"):
        run_forecast(season, config, issue_time=datetime(2000, 1, 1, tzinfo=timezone.utc))
    with season.connect() as conn:
        run = conn.execute(select(ForecastRun.status, ForecastRun.error)).one()
        assert conn.execute(text("SELECT count(*) FROM forecast_latest")).scalar_one() == 0
    assert run.status == "failed" and "no observations" in run.error


def test_verify_scores_a_rolling_hindcast_and_the_table_shows_it(season, config, db_url, monkeypatch, capsys,
                                                                tmp_path) -> None:
    rows = verify(season, config, stations=["16275"])
    assert [r["lead"] for r in rows] == [1, 2, 3, 4, 5] and all(r["selected"] for r in rows)
    first = rows[0]
    assert first["n"] > 60 and first["nse"] > 0.5 and 0.75 <= first["coverage_90"] <= 1.0
    assert first["rating"] in ("good", "satisfactory", "unsatisfactory")
    rmse = [r["rmse"] for r in rows]
    assert rmse == sorted(rmse)  # errors grow with the lead
    run_forecast(season, config, issue_time=ISSUE, stations=["16275"])
    monkeypatch.setenv("WATERMON_DB_URL", db_url)
    monkeypatch.setenv("WATERMON_DATA_DIR", str(tmp_path))
    assert main(["forecast", "table", "16275", "--format", "json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table[0]["skill_nse"] == pytest.approx(first["nse"]) and table[0]["skill_rating"] == first["rating"]
    assert main(["forecast", "table", "--format", "netcdf", "--output", str(tmp_path / "out")]) == 0
    (nc,) = (tmp_path / "out").glob("*.nc")
    with xr.open_dataset(nc) as ds:
        assert ds.attrs["Conventions"] == "CF-1.8"
    assert main(["forecast", "table", "--format", "html", "--output", str(tmp_path / "out")]) == 0
    html = next((tmp_path / "out").glob("*.html")).read_text()
    assert "Chinaz" in html and "<svg" in html
