"""The flow on the day before the issue as a decade predictor (``flow_last_day``): what the
hydromets' own decade forecasts start from, and what a decade mean smooths away."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from sqlalchemy import select

from watermon.cli import main
from watermon.config.forecast import StationForecast as Entry
from watermon.db.schema import ForecastModel
from watermon.forecast.base import Problem
from watermon.forecast.dataset import from_series, last_day
from watermon.forecast.hindcast import hindcast, make_model
from watermon.forecast.metrics import s_over_sigma_delta
from watermon.forecast.service import _needed, load_inputs
from watermon.ingest.service import ingest_file
from watermon.qc.service import run_qc

ROOT = Path(__file__).resolve().parents[2]
LAST_DAY = ["flow:1", "flow_last_day"]


def daily_flow(first: str, years: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """A snowmelt hydrograph times a log-AR(1) anomaly that persists for weeks (phi 0.93 a day):
    the last day of a decade says more about the next decade than the decade's mean."""
    rng = np.random.default_rng(seed)
    start = np.datetime64(first, "D")
    days = np.arange(start, start.astype("datetime64[Y]") + np.timedelta64(years, "Y"))
    doy = (days - days.astype("datetime64[Y]")).astype(int)
    base = 50 + 150 * np.exp(-0.5 * ((doy - 170) / 35.0) ** 2)
    a = np.zeros(days.size)
    for i in range(1, days.size):
        a[i] = 0.93 * a[i - 1] + rng.normal(0, 0.08)
    return days, base * np.exp(a)


def test_last_day_is_each_periods_last_accepted_day() -> None:
    days = np.arange(np.datetime64("2024-01-01"), np.datetime64("2024-03-01"))
    readings = np.repeat(days, 2) + np.tile([6, 18], days.size).astype("timedelta64[h]")  # 06 and 18 UTC
    values = np.arange(readings.size, dtype=float)
    starts, last = last_day(readings, values, "decade")
    assert starts.size == 6 and str(starts[-1])[:10] == "2024-02-21"
    # 10 Jan, 20 Jan, 31 Jan (11-day decade), 10 and 20 Feb, 29 Feb (leap year, 9 days)
    day_index = np.array([9, 19, 30, 40, 50, 59])
    np.testing.assert_array_equal(last, 2 * day_index + 0.5)  # the mean of the day's two readings
    accepted = np.ones(readings.size, bool)
    accepted[2 * 30] = False  # 31 Jan 06:00 rejected: the day is its 18:00 reading
    accepted[2 * 59 : 2 * 59 + 2] = False  # 29 Feb: nothing accepted, so no value
    _, last = last_day(readings, values, "decade", accepted=accepted)
    assert last[2] == 2 * 30 + 1 and np.isnan(last[5]) and last[4] == 2 * 50 + 0.5
    starts, last = last_day(readings, values, "pentad", first="2024-02-01", last="2024-02-29")
    assert [str(s)[8:10] for s in starts] == ["01", "06", "11", "16", "21", "26"]
    assert last[-1] == 2 * 59 + 0.5
    data = from_series({("A", "discharge"): (readings, values), ("A", "discharge_last_day"): (readings, values)},
                       "decade")
    np.testing.assert_array_equal(data["discharge_last_day"].sel(station="A").values, 2 * day_index + 0.5)
    assert data["discharge"].sel(station="A").values[0] == pytest.approx(2 * 4.5 + 0.5)  # the mean of 10 days


def test_the_day_before_the_issue_lifts_a_decade_arx() -> None:
    days, q = daily_flow("1990-01-01", 20)
    data = from_series({("A", "discharge"): (days, q), ("A", "discharge_last_day"): (days, q)}, "decade")
    scores = {}
    for label, predictors in (("mean", ["flow:1"]), ("last day", LAST_DAY)):
        p = Problem("A", "decade", 3, options={"predictors": predictors})
        fast = hindcast("arx", data, p, "2000-01-01", quantiles=False)
        slow = hindcast("arx", data, p, "2000-01-01", quantiles=False, fast=False)
        np.testing.assert_allclose(fast.forecast.values, slow.forecast.values, rtol=1e-6)
        scores[label] = [s_over_sigma_delta(fast.observed.sel(lead=k).values, fast.forecast.sel(lead=k).values,
                                            fast.last_observed.values) for k in (1, 2, 3)]
    assert "discharge_last_day[t-1]" in fast.params["features"]
    assert scores["last day"][0] < 0.92 * scores["mean"][0], scores
    # a 10-day-old anomaly is mostly gone: later leads neither gain nor lose much
    assert all(abs(scores["last day"][k] - scores["mean"][k]) < 0.01 for k in (1, 2)), scores


def test_a_hindcast_from_the_records_first_year_learns_from_the_years_before_each_forecast() -> None:
    """Its first year has nothing to learn from: it is not forecast, and the later years,
    vectorised, are what the plain fit/predict gives (they used to lose every predictor)."""
    days, q = daily_flow("1990-01-01", 6)
    data = from_series({("A", "discharge"): (days, q), ("A", "discharge_last_day"): (days, q)}, "decade")
    p = Problem("A", "decade", 3, options={"predictors": LAST_DAY})
    fast = hindcast("arx", data, p, "1990-01-01", quantiles=False)
    slow = hindcast("arx", data, p, "1991-01-01", quantiles=False, fast=False)
    first_year = fast.forecast.sel(issue_time=slice("1990-01-01", "1990-12-31"))
    assert first_year.sizes["issue_time"] == 36 and np.isnan(first_year.values).all()
    np.testing.assert_allclose(fast.forecast.sel(issue_time=slice("1991-01-01", None)).values,
                               slow.forecast.values, rtol=1e-6)
    assert fast.params["coefficients"]["lead_1"][20][2] > 0.3  # the last day's slope, in m3/s per m3/s


def test_a_last_day_known_on_few_training_years_is_left_out_and_said_so() -> None:
    """Decade means for 10 years, daily values for the last 3 only (the archive, then daily
    readings): the fit cannot learn the predictor yet, and its parameters say so."""
    days, q = daily_flow("2000-01-01", 10)
    recent = days >= np.datetime64("2007-01-01")
    data = from_series({("A", "discharge"): (days, q), ("A", "discharge_last_day"): (days[recent], q[recent])},
                       "decade")
    p = Problem("A", "decade", 3, options={"predictors": LAST_DAY})
    params = make_model("arx").fit(data, p, np.datetime64("2010-01-01")).params()
    assert params["features"] == ["discharge[t-1]", "discharge_last_day[t-1]"]
    assert params["left_out"] == ["discharge_last_day[t-1]"]
    assert all(row[2] == 0 for row in params["coefficients"]["lead_1"])
    full = from_series({("A", "discharge"): (days, q), ("A", "discharge_last_day"): (days, q)}, "decade")
    assert make_model("arx").fit(full, p, np.datetime64("2010-01-01")).params()["left_out"] == []


def test_flow_last_day_is_refused_where_it_cannot_mean_anything() -> None:
    days, q = daily_flow("2000-01-01", 3)
    daily = from_series({("A", "discharge"): (days, q)}, "daily")
    with pytest.raises(ValueError, match="at a daily step it is 'flow:1'"):
        hindcast("arx", daily, Problem("A", "daily", 2, options={"predictors": LAST_DAY}), "2002-01-01")
    decade = from_series({("A", "discharge"): (days, q)}, "decade")
    with pytest.raises(ValueError, match="needs the data variable 'discharge_last_day'"):
        hindcast("arx", decade, Problem("A", "decade", 2, options={"predictors": LAST_DAY}), "2002-01-01")


# --------------------------------------------------------------------------------------
# From the database
# --------------------------------------------------------------------------------------


def _daily_csv(path: Path, days: np.ndarray, q: np.ndarray) -> Path:
    """Daily means of 16279 in the Uzhydromet archive's long CSV (resolution ``day``)."""
    lines = ["date,data,norm,units,type,code,station,river,basin,resolution"]
    lines += [f"{d},{v:.3f},0,m3s,Q,16279,Khudaydod,Chatkal,Chirchik,day" for d, v in zip(days, q, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _decade_arx_config(tmp_path: Path, monkeypatch, options: dict) -> None:
    cfg = tmp_path / "cfg"
    shutil.copytree(ROOT / "config", cfg, dirs_exist_ok=True)
    doc = yaml.safe_load((ROOT / "config" / "forecast.yaml").read_text())
    doc["forecast"]["stations"] = [{"station": "16279", "step": "decade", "leads": 3, "model": "arx",
                                    "options": options, "compare": []}]
    (cfg / "forecast.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    monkeypatch.setenv("WATERMON_CONFIG", str(cfg))


def test_stored_daily_means_give_the_last_day_and_a_run_uses_it(tmp_path: Path, db_url: str, engine, config,
                                                                 monkeypatch, capsys) -> None:
    days, q = daily_flow("2016-01-01", 6)
    bad = int(np.flatnonzero(days == np.datetime64("2021-06-10"))[0])
    q[bad] = -5.0  # a negative flow on a decade's last day: QC rejects it, the predictor is unknown there
    assert ingest_file(engine, config, "uz-hydromet-archive", _daily_csv(tmp_path / "q.csv", days, q)).status \
        == "loaded"
    run_qc(engine, config)
    entry = Entry(station="16279", model="arx", options={"predictors": LAST_DAY})
    wanted = _needed(config, entry)
    assert wanted == [("16279", "discharge"), ("16279", "discharge_last_day")]
    blend = entry.model_copy(update={"model": "blend", "options": {"members": [
        "climatology", {"model": "arx", "options": {"predictors": LAST_DAY}}]}})
    assert ("16279", "discharge_last_day") in _needed(config, blend)
    with engine.connect() as conn:
        data = load_inputs(conn, config, wanted, "decade", np.datetime64("2021-07-01", "ns"))
    last = data["discharge_last_day"].sel(station="16279")
    assert str(last["time"].values[-1])[:10] == "2021-06-21"  # nothing of the issue's own decade
    for start, day in (("2016-01-01", "2016-01-10"), ("2020-02-21", "2020-02-29"), ("2021-05-21", "2021-05-31")):
        assert float(last.sel(time=start)) == pytest.approx(float(q[days == np.datetime64(day)][0]), abs=1e-3)
    assert np.isnan(float(last.sel(time="2021-06-01")))

    monkeypatch.setenv("WATERMON_DB_URL", db_url)
    monkeypatch.setenv("WATERMON_DATA_DIR", str(tmp_path))
    _decade_arx_config(tmp_path, monkeypatch, {"predictors": LAST_DAY})
    assert main(["forecast", "run", "--issue-time", "2021-07-01", "--station", "16279"]) == 0
    with engine.connect() as conn:
        params = json.loads(conn.execute(select(ForecastModel.params)).scalar_one())
    assert params["fitted"]["features"] == ["discharge[t-1]", "discharge_last_day[t-1]"]
    assert params["fitted"]["left_out"] == []
    capsys.readouterr()
    assert main(["forecast", "table", "16279", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["lead"] for r in rows] == [1, 2, 3] and all(r["q05"] < r["median"] < r["q95"] for r in rows)
