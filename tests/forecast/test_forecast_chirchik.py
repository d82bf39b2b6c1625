"""The issue's targets on the real Chirchik archive (../shared/data/chirchik; skipped without it).

Decade means of 16279 (Chatkal), 16290 (Pskem) and 16294 (Charvak inflow): models fitted on
1935-1990, verified 1991-2015 by a rolling-origin hindcast refitted every 1 January, leads
1-3. The ARX configurations are what ``select_predictors`` chose by an inner hindcast on
the training years only (recorded in ``benchmarks/forecast_skill.py``; one is re-derived
here). s/sigma_delta: S = RMS error (n - 1), sigma_delta = standard deviation of
Q(t0 + lead - 1) - Q(t0 - 1), the change since the last period observed before the issue.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from watermon.forecast.base import Problem
from watermon.forecast.dataset import load_chirchik, load_chirchik_daily
from watermon.forecast.hindcast import Hindcast, hindcast, score, select_predictors

ROOT = Path(__file__).resolve().parents[2]
MODELS = ("persistence", "climatology", "regression", "arx")


def _benchmark():
    spec = importlib.util.spec_from_file_location("forecast_skill", ROOT / "benchmarks" / "forecast_skill.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("forecast_skill", mod)  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


BENCH = _benchmark()


@pytest.fixture(scope="module")
def decades(shared_data: Path):
    return load_chirchik(shared_data / "chirchik")


@pytest.fixture(scope="module")
def days(shared_data: Path):
    return load_chirchik_daily(shared_data / "chirchik")


def test_archive_is_labelled_by_the_decade_start(decades, days) -> None:
    q = decades.discharge.sel(station="16279")
    assert str(decades.time.values[0])[:10] == "1932-01-01" and str(decades.time.values[-1])[:10] == "2015-12-21"
    assert float(q.sel(time="1932-01-01")) == 48.8  # the row dated 1932-01-10
    assert float(q.sel(time="1932-01-21")) == 42.4  # the row dated 1932-01-31
    assert decades.sizes["time"] == 84 * 36
    assert set(decades.station.values) == {"16279", "16290", "16294", "16298", "38462", "38464", "38471"}
    assert np.isnan(decades.air_temperature.sel(station="38464")).all()  # 38464 reports precipitation only
    assert np.isfinite(decades.precipitation.sel(station="38471", time=slice("1980", "1990"))).all()
    assert days.attrs["step"] == "daily" and set(days.station.values) == {"16279", "Charvak"}
    assert str(days.time.values[-1])[:10] == "1967-09-15" and np.isfinite(days.discharge).all()


def run(data, station: str, step: str = "decade") -> dict[str, Hindcast]:
    if step == "decade":
        p = Problem(station, "decade", 3, upstream=BENCH.DECADE[station], meteo=BENCH.METEO)
        kw = {"start": "1991-01-01", "end": "2016-01-01", "train_from": "1935-01-01", "calibration_years": 20}
    else:
        p = Problem(station, "daily", 3, upstream=BENCH.DAILY[station])
        kw = {"start": "1967-01-01", "refit": "monthly", "calibration_years": 1}
    opts = BENCH.SELECTED[(step, station)]
    return {m: hindcast(m, data, dataclasses.replace(p, options=opts if m == "arx" else {}), **kw) for m in MODELS}


@pytest.fixture(scope="module")
def decade_scores(decades):
    out = {}
    for station in ("16279", "16290", "16294"):
        hc = run(decades, station)
        out[station] = {m: score(h, hc["persistence"], hc["climatology"]) for m, h in hc.items()}
    return out


@pytest.mark.parametrize("station", ["16279", "16290", "16294"])
def test_selected_model_beats_the_references(decade_scores, station: str) -> None:
    s = decade_scores[station]
    arx = s["arx"]
    assert int(arx.n.sel(lead=1)) > 850  # 25 years x 36 decades, a few missing
    for ref in ("persistence", "climatology"):
        assert (arx.rmse < s[ref].rmse).all(), (ref, arx.rmse.values, s[ref].rmse.values)
    assert float(arx.rmse.sel(lead=1)) < float(s["regression"].rmse.sel(lead=1))
    assert (arx.skill_persistence > 0.5).all() and (arx.skill_climatology > 0.4).all()
    cov = arx.coverage.values
    assert ((cov > 0.85) & (cov < 0.95)).all(), cov


@pytest.mark.parametrize("station", ["16279", "16290", "16294"])
@pytest.mark.xfail(strict=True, reason="not reached: ARX s/sigma_delta at lead 1 on 1991-2015 is 0.660 (16279), "
                   "0.668 (16290), 0.657 (16294); the operational regression's 0.755, 0.688, 0.731")
def test_s_over_sigma_delta_target_at_lead_1(decade_scores, station: str) -> None:
    assert float(decade_scores[station]["arx"].s_sigma_delta.sel(lead=1)) <= 0.6


@pytest.mark.parametrize("station", ["16279", "16290", "16294"])
def test_s_over_sigma_delta_is_satisfactory(decade_scores, station: str) -> None:
    """What is reached: satisfactory by the Nastavlenie (<= 0.80) and well below the regression's."""
    s = decade_scores[station]
    ours, theirs = (float(s[m].s_sigma_delta.sel(lead=1)) for m in ("arx", "regression"))
    assert ours <= 0.67 and ours < theirs


@pytest.mark.parametrize("station", ["16279", "Charvak"])
def test_daily_series(days, station: str) -> None:
    hc = run(days, station, "daily")
    s = {m: score(h, hc["persistence"], hc["climatology"]) for m, h in hc.items()}
    for ref in ("persistence", "climatology"):
        assert (s["arx"].rmse < s[ref].rmse).all()
    assert float(s["arx"].rmse.sel(lead=1)) < float(s["regression"].rmse.sel(lead=1))


@pytest.mark.slow
def test_predictor_selection_is_reproduced_on_the_training_years(decades) -> None:
    p = Problem("16294", "decade", 3, upstream=BENCH.DECADE["16294"], meteo=BENCH.METEO)
    sel = select_predictors(decades, p, "1991-01-01", "1961-01-01", train_from="1935-01-01")
    assert sel.options == BENCH.SELECTED[("decade", "16294")]
    assert sel.score < 0.6  # inner-CV MSE relative to the operational regression
