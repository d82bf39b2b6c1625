"""The issue's targets on the real Chirchik archive (../shared/data/chirchik; skipped without it).

Decade means of 16279 (Chatkal), 16290 (Pskem) and 16294 (Charvak inflow): models fitted on
1935-1990, verified 1991-2015 by a rolling-origin hindcast refitted every 1 January, leads
1-3. The ARX configurations are what ``select_predictors`` chose, and the blends what
``select_blend`` chose, by inner hindcasts on the training years only (recorded in
``benchmarks/forecast_skill.py``; re-derived here for 16294). s/sigma_delta: S = RMS error
(n - 1), sigma_delta = standard deviation of Q(t0 + lead - 1) - Q(t0 - 1), the change since
the last period observed before the issue.
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
from watermon.forecast.hindcast import Hindcast, hindcast, issue_times, score, select_predictors
from watermon.forecast.metrics import s_over_sigma_delta
from watermon.forecast.models import ARX
from watermon.forecast.models.blend import select_blend

ROOT = Path(__file__).resolve().parents[2]


def _benchmark():
    spec = importlib.util.spec_from_file_location("forecast_skill", ROOT / "benchmarks" / "forecast_skill.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("forecast_skill", mod)  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


BENCH = _benchmark()
MODELS = BENCH.MODELS
STATIONS = ("16279", "16290", "16294")


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
    return {m: hindcast(m, data, dataclasses.replace(p, options=opts.get(m, {})), **kw) for m in MODELS}


@pytest.fixture(scope="module")
def decade_scores(decades):
    out = {}
    for station in STATIONS:
        hc = run(decades, station)
        out[station] = {m: score(h, hc["persistence"], hc["climatology"]) for m, h in hc.items()}
    return out


def _lead1(decade_scores, model: str, metric: str = "s_sigma_delta") -> list[float]:
    return [round(float(decade_scores[st][model][metric].sel(lead=1)), 3) for st in STATIONS]


@pytest.mark.parametrize("station", STATIONS)
@pytest.mark.parametrize("model", ["arx", "blend"])
def test_models_beat_the_references(decade_scores, station: str, model: str) -> None:
    s = decade_scores[station]
    ours = s[model]
    assert BENCH.SELECTED[("decade", station)]["model"] == "blend"  # the selection's choice on the training years
    assert int(ours.n.sel(lead=1)) > 850  # 25 years x 36 decades, a few missing
    for ref in ("persistence", "climatology"):
        assert (ours.rmse < s[ref].rmse).all(), (ref, ours.rmse.values, s[ref].rmse.values)
    assert float(ours.rmse.sel(lead=1)) < float(s["regression"].rmse.sel(lead=1))
    assert (ours.skill_persistence > 0.5).all() and (ours.skill_climatology > 0.4).all()
    cov = ours.coverage.values
    assert ((cov > 0.85) & (cov < 0.95)).all(), cov


def test_recorded_lead_1_figures(decade_scores) -> None:
    """The figures the README and the report quote (16279, 16290, 16294)."""
    assert _lead1(decade_scores, "regression") == [0.755, 0.688, 0.731]
    assert _lead1(decade_scores, "arx") == [0.660, 0.668, 0.657]
    assert _lead1(decade_scores, "blend") == [0.662, 0.644, 0.652]


@pytest.mark.parametrize("station", STATIONS)
@pytest.mark.xfail(strict=True, reason="not reached: the selected blend's s/sigma_delta at lead 1 on 1991-2015 is "
                   "0.662 (16279), 0.644 (16290), 0.652 (16294); ARX alone 0.660, 0.668, 0.657; the operational "
                   "regression's 0.755, 0.688, 0.731 (see test_the_target_is_beyond_an_in_sample_fit)")
def test_s_over_sigma_delta_target_at_lead_1(decade_scores, station: str) -> None:
    assert float(decade_scores[station]["blend"].s_sigma_delta.sel(lead=1)) <= 0.6


@pytest.mark.parametrize("station", STATIONS)
def test_s_over_sigma_delta_is_satisfactory(decade_scores, station: str) -> None:
    """What is reached: satisfactory by the Nastavlenie (<= 0.80) and well below the regression's."""
    s = decade_scores[station]
    ours, theirs = (float(s[m].s_sigma_delta.sel(lead=1)) for m in ("blend", "regression"))
    assert ours <= 0.665 and ours < theirs


def test_the_target_is_beyond_an_in_sample_fit(decades) -> None:
    """Why 0.6 is not reached: the ARX *fitted on the verification years themselves* (1935-2015, a
    look-ahead no forecast can have) still has a lead-1 S/sigma_delta above 0.6 on 1991-2015; the
    unknown weather of the forecast decade is what is left (with the target decade's temperature and
    precipitation given as predictors, an oracle, it would be 0.59 / 0.61 / 0.55)."""
    data = decades.sel(time=slice("1935-01-01", None))
    issues = issue_times(data, "1991-01-01", "2016-01-01")
    pos = np.searchsorted(data.time.values, issues)
    for station in STATIONS:
        p = Problem(station, "decade", 1, upstream=BENCH.DECADE[station], meteo=BENCH.METEO,
                    options=BENCH.SELECTED[("decade", station)]["arx"])
        fc = ARX().fit(data, p, np.datetime64("2016-01-01")).predict(data, p, issues).values[:, 0]
        q = data.discharge.sel(station=station).values
        assert 0.61 < float(s_over_sigma_delta(q[pos], fc, q[pos - 1])) < 0.63


def test_a_temperature_outlook_would_help_only_a_little(decades) -> None:
    """A decade temperature outlook as a predictor (``forecast_skill.py --outlook``): one with no
    skill changes nothing, one that is the observed temperature itself (perfect foresight, out of
    reach of any meteorological service) lowers the ARX's lead-1 S/sigma_delta on 1991-2015 by
    0.03-0.06, to about 0.60-0.63: the target is at the ceiling even with the weather known."""
    kw = {"refit": "yearly", "train_from": "1935-01-01", "quantiles": False}
    for station in STATIONS:
        p = Problem(station, "decade", 3, upstream=BENCH.DECADE[station], meteo=BENCH.METEO,
                    options=BENCH.SELECTED[("decade", station)]["arx"])
        with_outlook = dataclasses.replace(p, meteo=(*BENCH.METEO, "OUTLOOK"))
        s = {}
        runs = (("none", decades, p), ("no skill", BENCH.with_outlook(decades, 0.0, 0), with_outlook),
                ("perfect", BENCH.with_outlook(decades, 1.0, 0), with_outlook))
        for label, data, problem in runs:
            h = hindcast("arx", data, problem, "1991-01-01", "2016-01-01", **kw)
            s[label] = float(s_over_sigma_delta(h.observed.values[:, 0], h.forecast.values[:, 0],
                                                h.last_observed.values))
        assert abs(s["no skill"] - s["none"]) < 0.01, (station, s)
        assert 0.59 < s["perfect"] < s["none"] - 0.025, (station, s)


def test_the_flow_on_the_day_of_issue_knows_more_than_the_decade_mean(shared_data: Path) -> None:
    """What the archive lacks (``forecast_skill.py --outlook``, second table): on the daily file,
    the last day's flow is a better forecast of the next decade's mean than the last decade's mean."""
    got = BENCH.issue_day_persistence(shared_data)
    assert set(got) == {"16279", "Charvak"}
    for n, decade_mean, last_day in got.values():
        assert n == 96 and decade_mean >= 0.99 and last_day < 0.81


def test_the_day_before_the_issue_lowers_the_decade_arx_error(shared_data: Path) -> None:
    """``forecast_skill.py --outlook``, third table: the daily file's last day before each issue,
    as a pooled correction of the recorded ARX of the archive's 16279 (leave one year out)."""
    got = BENCH.issue_day_gain(shared_data)
    assert set(got) == {"16279", "Charvak"}
    for n, arx, corrected in got.values():
        assert n == 97 and 0.62 < arx < 0.65 and corrected < arx - 0.015
    assert got["16279"][2] < 0.6  # the file's own 16279; its "Charvak" is the archive's 16279 by decade means


@pytest.mark.parametrize("station", ["16279", "Charvak"])
def test_daily_series(days, station: str) -> None:
    hc = run(days, station, "daily")
    s = {m: score(h, hc["persistence"], hc["climatology"]) for m, h in hc.items()}
    for ref in ("persistence", "climatology"):
        assert (s["arx"].rmse < s[ref].rmse).all()
    assert float(s["arx"].rmse.sel(lead=1)) < float(s["regression"].rmse.sel(lead=1))
    assert np.isfinite(s["blend"].rmse).all()  # shown for comparison, not selected (one training year)


def test_blend_selection_is_reproduced_on_the_training_years(decades) -> None:
    p = Problem("16294", "decade", 3, upstream=BENCH.DECADE["16294"], meteo=BENCH.METEO)
    members = {label: BENCH._member(label, "16294") for label in ("arx", "arx_lead1", "regression", "climatology")}
    sel = select_blend(decades.sel(time=slice("1935-01-01", None)), p, "1991-01-01", BENCH.BLEND_INNER_START, members)
    assert sel.options == BENCH.SELECTED[("decade", "16294")]["blend"]
    assert sel.best.startswith("nnls 30") and sel.score < dict(sel.table)["arx"] < 1


@pytest.mark.slow
def test_predictor_selection_is_reproduced_on_the_training_years(decades) -> None:
    p = Problem("16294", "decade", 3, upstream=BENCH.DECADE["16294"], meteo=BENCH.METEO)
    sel = select_predictors(decades, p, "1991-01-01", "1961-01-01", train_from="1935-01-01")
    assert sel.options == BENCH.SELECTED[("decade", "16294")]["arx"]
    assert sel.score < 0.6  # inner-CV MSE relative to the operational regression
    lead1 = select_predictors(decades, p, "1991-01-01", "1961-01-01", train_from="1935-01-01", lead_weights=(1, 0, 0))
    assert lead1.options == BENCH.SELECTED[("decade", "16294")]["blend"]["members"][1]["options"]


def _snowpack_hindcast(decades, station: str) -> dict[str, float]:
    rec = BENCH.SNOWPACK[station]
    p = Problem(station, "decade", 3, upstream=BENCH.DECADE[station], meteo=BENCH.METEO,
                options={**rec["arx"], "snowmelt": rec["outer"]})
    kw = {"refit": "yearly", "calibration_years": 20, "train_from": "1935-01-01", "quantiles": False}
    h = hindcast("arx", decades, p, "1991-01-01", "2016-01-01", **kw)
    q = h.observed.values[:, 0]
    return float(s_over_sigma_delta(q, h.forecast.values[:, 0], h.last_observed.values))


def test_the_snow_models_states_do_not_lift_the_lead_1_skill(decades, decade_scores) -> None:
    """The inner selection takes the snowpack states for 16279 and 16294 (not 16290), yet on
    1991-2015 the lead-1 S/sigma_delta moves by under 0.01: the snow left is already in the
    precipitation and runoff since October; the coming decade's weather is not."""
    for station in ("16279", "16294"):
        assert "snowpack" in BENCH.SNOWPACK[station]["arx"]["predictors"]
        with_snow = _snowpack_hindcast(decades, station)
        without = float(decade_scores[station]["arx"].s_sigma_delta.sel(lead=1))
        assert abs(with_snow - without) < 0.01 and with_snow > 0.6, (station, with_snow, without)
    assert "snowpack" not in BENCH.SNOWPACK["16290"]["arx"]["predictors"]


@pytest.mark.slow
def test_snowpack_calibration_and_selection_are_reproduced_on_the_training_years(decades) -> None:
    p = Problem("16294", "decade", 3, upstream=BENCH.DECADE["16294"], meteo=BENCH.METEO)
    got = BENCH.select_snowpack(decades, p)
    want = BENCH.SNOWPACK["16294"]
    for key in ("inner", "outer"):
        assert got[key] == pytest.approx(want[key], rel=1e-5), key
    assert got["arx"] == want["arx"]
