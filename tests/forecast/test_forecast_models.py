"""Forecast models, hindcasts and quantiles on synthetic data with known answers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import xarray as xr

from watermon.forecast.base import MODELS, QUANTILES, Problem
from watermon.forecast.dataset import (
    build_dataset,
    from_series,
    period_days,
    period_of_year,
    period_start,
    period_starts,
    resample,
)
from watermon.forecast.hindcast import hindcast, hindcast_many, issue_times, score, select_predictors
from watermon.forecast.models import ARX, Climatology, OperationalRegression, Persistence
from watermon.forecast.models.arx import since
from watermon.forecast.models.normal_equations import pool
from watermon.forecast.uncertainty import ResidualQuantiles, coverage

# ------------------------------------------------------------------------------------
# Synthetic basins
# ------------------------------------------------------------------------------------


def decade_basin(years: int = 40, seed: int = 1, first: str = "1970-01-01") -> xr.Dataset:
    """Snowmelt-like decade flows at A (headwater), B (its neighbour) and D (downstream),
    with precipitation and temperature at meteo station M."""
    rng = np.random.default_rng(seed)
    t = period_starts(first, f"{int(first[:4]) + years - 1}-12-31", "decade")
    n, p = t.size, period_of_year(t, "decade")
    season = np.exp(-0.5 * ((p - 17) / 4.0) ** 2)
    temp = -8 + 24 * np.sin(np.pi * (p - 6) / 36).clip(0) + rng.normal(0, 2, n)
    precip = rng.gamma(2.0, 10.0, n)
    a = np.empty(n)
    e = 0.0
    for i in range(n):
        e = 0.85 * e + rng.normal(0, 6)
        a[i] = 40 + 250 * season[i] + 2.0 * max(temp[i - 1], 0) * season[i] + e
    b = 0.6 * a + rng.normal(0, 5, n) + 10
    d = a + b + rng.normal(0, 3, n)
    q = np.full((4, n), np.nan)
    q[0], q[1], q[2] = a, b, d
    pr = np.full((4, n), np.nan)
    pr[3] = precip
    ta = np.full((4, n), np.nan)
    ta[3] = temp
    return build_dataset({"discharge": q, "precipitation": pr, "air_temperature": ta}, ["A", "B", "D", "M"], t,
                         "decade")


def linear_basin(years: int = 60, seed: int = 3) -> tuple[xr.Dataset, dict[str, float]]:
    """Decade flow following a known ARX law: Q = c + a Q[t-1] + b U[t-1] + g P[t-1] + noise."""
    rng = np.random.default_rng(seed)
    t = period_starts("1950-01-01", f"{1950 + years - 1}-12-31", "decade")
    n = t.size
    truth = {"c": 5.0, "a": 0.5, "b": 0.3, "g": 0.8}
    u = 50 + rng.normal(0, 10, n)
    pr = rng.gamma(2.0, 5.0, n)
    q = np.empty(n)
    q[0] = 30.0
    for i in range(1, n):
        q[i] = truth["c"] + truth["a"] * q[i - 1] + truth["b"] * u[i - 1] + truth["g"] * pr[i - 1] + rng.normal(0, 0.5)
    nan = np.full(n, np.nan)
    ds = build_dataset({"discharge": np.stack([q, u, nan]), "precipitation": np.stack([nan, nan, pr]),
                        "air_temperature": np.stack([nan, nan, nan])}, ["Q", "U", "M"], t, "decade")
    return ds, truth


def problem(station: str = "A", **kw) -> Problem:
    return Problem(station, kw.pop("step", "decade"), kw.pop("leads", 3), **kw)


ARX_FULL = {"predictors": ["flow:2", "upstream:1", "precipitation:1", "temperature:1", "temperature_mean:3",
                           "precipitation_since:10-01", "degree_days_since:01-01", "volume_since:10-01"],
            "error_correction": True}


# ------------------------------------------------------------------------------------
# Calendar and resampling
# ------------------------------------------------------------------------------------


def test_step_calendar() -> None:
    t = period_starts("2024-02-15", "2024-03-12", "pentad")
    assert [str(x)[:10] for x in t] == ["2024-02-11", "2024-02-16", "2024-02-21", "2024-02-26", "2024-03-01",
                                        "2024-03-06", "2024-03-11"]
    assert period_days(t, "pentad").tolist() == [5, 5, 5, 4, 5, 5, 5]  # 26-29 Feb 2024
    assert period_of_year(t, "pentad").tolist() == [9, 10, 11, 12, 13, 14, 15]
    d = period_starts("2023-01-01", "2023-12-31", "decade")
    assert d.size == 36 and period_of_year(d, "decade").tolist() == list(range(1, 37))
    assert period_days(d, "decade").sum() == 365
    assert period_days(np.array(["2023-02-21"], "datetime64[ns]"), "decade")[0] == 8
    # 1 March is day 61 in every year; 31 December is 366
    days = np.array(["2023-03-01", "2024-03-01", "2023-12-31", "2024-02-29"], "datetime64[ns]")
    assert period_of_year(days, "daily").tolist() == [61, 61, 366, 60]
    assert str(period_start(np.array(["2024-01-31"], "datetime64[ns]"), "decade")[0])[:10] == "2024-01-21"


def test_resample_respects_qc_and_coverage() -> None:
    days = np.arange(np.datetime64("2025-01-01"), np.datetime64("2025-02-01"))
    values = np.arange(31.0)
    levels = np.array(["good"] * 31, dtype=object)
    levels[0:3] = "bad"  # decade 1: 7 of 10 days left
    levels[12:17] = "suspect"  # decade 2: 5 of 10
    levels[25] = "missing"
    levels[26] = "estimated"  # filled by QC: accepted
    starts, out, cov = resample(days, values, "decade", levels=levels, min_coverage=0.7)
    assert cov.tolist() == pytest.approx([0.7, 0.5, 10 / 11])
    assert out[0] == pytest.approx(np.mean(values[3:10]))
    assert np.isnan(out[1])
    assert out[2] == pytest.approx(np.mean(np.delete(values[20:31], 5)))
    # a boolean mask does the same; several readings a day are averaged first
    _, out2, _ = resample(days, values, "decade", accepted=levels != "bad", min_coverage=1.0)
    assert np.isnan(out2[0]) and out2[1] == pytest.approx(np.mean(values[10:20]))
    t2 = np.concatenate([days, days + np.timedelta64(12, "h")]).astype("datetime64[ns]")
    _, out3, _ = resample(t2, np.concatenate([values, values + 1]), "pentad")
    assert out3[0] == pytest.approx(np.mean(values[:5]) + 0.5)
    # totals: missing days count at the mean of the known ones
    rain = np.ones(31)
    rain[5] = np.nan
    _, tot, _ = resample(days, rain, "decade", how="sum")
    assert tot.tolist() == pytest.approx([10.0, 10.0, 11.0])


def test_from_series_builds_the_dataset() -> None:
    days = np.arange(np.datetime64("2025-01-01"), np.datetime64("2025-01-31")).astype("datetime64[ns]")
    flags = np.array(["good"] * days.size)
    flags[:9] = "bad"
    ds = from_series({("S1", "discharge"): (days, np.full(days.size, 7.0), flags),
                      ("M", "precipitation"): (days, np.ones(days.size))}, "decade")
    assert ds.attrs["step"] == "decade" and ds["period"].values.tolist() == [1, 2, 3]
    assert np.isnan(ds.discharge.sel(station="S1").values[0])
    assert ds.discharge.sel(station="S1").values[1] == 7.0
    assert ds.precipitation.sel(station="M").values.tolist() == [10.0, 10.0, 11.0]
    assert np.isnan(ds.discharge.sel(station="M").values).all()


def test_accumulation_since_a_date_is_causal() -> None:
    t = period_starts("2020-09-01", "2021-02-28", "decade")
    v = np.ones(t.size)
    acc = since(v, t, 10, 1)
    # Sept 2020 belongs to the season that began 1 Oct 2019: 0, 1, 2 (rows before it in the season)
    assert acc[:3].tolist() == [0.0, 1.0, 2.0]
    assert acc[3] == 0.0  # 1 Oct 2020: nothing since the date yet
    assert acc[4:7].tolist() == [1.0, 2.0, 3.0]
    v2 = v.copy()
    v2[4] = np.nan  # one of five known: scaled; two of five missing -> below 80 %: unknown
    a2 = since(v2, t, 10, 1)
    assert a2[8] == pytest.approx(5.0)
    v2[5] = np.nan
    assert np.isnan(since(v2, t, 10, 1)[8])


def test_pool_is_a_circular_window_sum() -> None:
    a = np.random.default_rng(0).random((2, 36, 3))
    for w in (0, 1, 4):
        ref = sum(np.roll(a, d, axis=1) for d in range(-w, w + 1))
        assert np.allclose(pool(a, w, 1), ref)


# ------------------------------------------------------------------------------------
# The models recover what generated the data
# ------------------------------------------------------------------------------------


def test_registry_and_options() -> None:
    for name in ("persistence", "climatology", "regression", "arx"):
        assert name in MODELS
    with pytest.raises(TypeError):
        ARX(unknown=1)
    with pytest.raises(ValueError, match="unknown options"):
        OperationalRegression().fit(decade_basin(3), problem(options={"predictors": []}), np.datetime64("1972-01-01"))
    with pytest.raises(ValueError, match="unknown ARX predictor"):
        ARX(predictors=["snow"]).fit(decade_basin(3), problem(), np.datetime64("1972-01-01"))


def test_persistence_holds_the_last_value() -> None:
    ds = decade_basin(3)
    q = ds.discharge.sel(station="A").values.copy()
    q[10] = np.nan
    ds["discharge"].loc[{"station": "A"}] = q
    t = ds.time.values
    fc = Persistence().fit(ds, problem(), t[5]).predict(ds, problem(), t[[5, 11, 12]])
    assert fc.dims == ("issue_time", "lead") and fc.shape == (3, 3)
    assert fc.values[:, 0].tolist() == [q[4], q[9], q[11]]  # before t[11] the last value is t[9]'s
    assert (fc.values == fc.values[:, :1]).all()
    fc = Persistence(max_age=1).predict(ds, problem(), t[[11]])
    assert np.isnan(fc.values).all()


def test_climatology_is_the_training_mean_of_the_period() -> None:
    ds = decade_basin(10)
    until = np.datetime64("1978-01-01")
    m = Climatology().fit(ds, problem(), until)
    past = ds.sel(time=ds.time < until)
    q = past.discharge.sel(station="A")
    means = q.groupby(past.period).mean().values
    issue = np.datetime64("1979-05-11")  # period 14
    fc = m.predict(ds, problem(), [issue]).values[0]
    assert fc == pytest.approx(means[13:16], rel=1e-9)
    m3 = Climatology(window=1).fit(ds, problem(), until)
    assert m3.predict(ds, problem(), [issue]).values[0, 0] == pytest.approx(np.mean(means[12:15]), rel=1e-9)


def test_operational_regression_is_ols_per_period() -> None:
    ds = decade_basin(30)
    until = np.datetime64("1995-01-01")
    m = OperationalRegression().fit(ds, problem("D"), until)
    q = ds.discharge.sel(station="D").values
    t = ds.time.values
    p = ds.period.values
    coef = m.params()["coefficients"]
    for lead in (1, 3):
        for period in (5, 17):
            rows = [i for i in range(1, t.size - lead + 1) if p[i] == period and t[i + lead - 1] < until]
            x = q[np.array(rows) - 1]
            y = q[np.array(rows) + lead - 1]
            b, a = np.polyfit(x, y, 1)
            assert coef[f"lead_{lead}"][period - 1] == pytest.approx([a, b], rel=1e-7, abs=1e-7)


def test_regression_recovers_a_known_seasonal_law() -> None:
    rng = np.random.default_rng(5)
    t = period_starts("1700-01-01", "2199-12-31", "decade")  # 500 years: ~500 cases per period
    p = period_of_year(t, "decade")
    a_true, b_true = 10 + p, 0.2 + 0.02 * p
    q = np.empty(t.size)
    q[0] = 20
    for i in range(1, t.size):
        q[i] = a_true[i] + b_true[i] * q[i - 1] + rng.normal(0, 3)
    ds = build_dataset({"discharge": q[None]}, ["Q"], t, "decade")
    c = np.array(OperationalRegression().fit(ds, problem("Q", leads=1), t[-1]).params()["coefficients"]["lead_1"])
    assert np.abs(c[:, 1] - b_true[:36]).max() < 0.15  # about 3 standard errors
    assert np.abs(c[:, 1] - b_true[:36]).mean() < 0.05
    assert np.abs(c[:, 0] - a_true[:36]).mean() < 3.5  # the intercept sits far from the data (x ~ 30)


def test_arx_recovers_its_coefficients() -> None:
    ds, truth = linear_basin()
    pr = problem("Q", leads=1, upstream=("U",), meteo=("M",),
                 options={"predictors": ["flow:1", "upstream:1", "precipitation:1"], "ridge": 0.0,
                          "error_correction": False, "window": 6})
    m = ARX().fit(ds, pr, ds.time.values[-1])
    par = m.params()
    assert par["features"] == ["discharge[t-1]", "U.discharge[t-1]", "M.precipitation[t-1]"]
    c = np.array(par["coefficients"]["lead_1"])
    assert np.allclose(c[:, 1], truth["a"], atol=0.05)
    assert np.allclose(c[:, 2], truth["b"], atol=0.05)
    assert np.allclose(c[:, 3], truth["g"], atol=0.05)
    assert np.allclose(c[:, 0], truth["c"], atol=3.0)


def test_arx_error_correction_recovers_ar1() -> None:
    rng = np.random.default_rng(7)
    t = period_starts("1900-01-01", "1999-12-31", "decade")
    p = period_of_year(t, "decade")
    e = np.zeros(t.size)
    for i in range(1, t.size):
        e[i] = 0.7 * e[i - 1] + rng.normal()
    ds = build_dataset({"discharge": (100 + 10 * np.sin(p / 6) + e)[None]}, ["Q"], t, "decade")
    m = ARX(predictors=[], error_correction=True, window=3).fit(ds, problem("Q"), t[-1])
    assert m.params()["ar1"] == pytest.approx([0.7, 0.49, 0.343], abs=0.05)
    # the correction is applied: the forecast moves by phi^h times the last error
    fc = m.predict(ds, problem("Q"), t[-10:]).values
    own_means = Climatology(window=0).fit(ds, problem("Q"), t[-1])  # with no features, each period's own mean
    clim = own_means.predict(ds, problem("Q"), t[-11:]).values
    err = ds.discharge.values[0, -11:-1] - clim[:-1, 0]  # lead-1 error for the period before each issue
    assert np.allclose(fc - clim[1:], np.array(m.params()["ar1"])[None, :] * err[:, None], atol=1e-5)


def test_missing_predictor_uses_the_sub_model() -> None:
    ds, _ = linear_basin(40)
    t = ds.time.values
    full = {"predictors": ["flow:1", "upstream:1"], "ridge": 0.0, "error_correction": False, "window": 3}
    m = ARX(**full).fit(ds, problem("Q", upstream=("U",)), t[-36])
    gap = ds.copy(deep=True)
    gap["discharge"].loc[{"station": "U", "time": t[-20]}] = np.nan  # upstream unknown before t[-19]
    fc = m.predict(gap, problem("Q", upstream=("U",)), t[[-19]]).values
    own = ARX(**{**full, "predictors": ["flow:1"]}).fit(ds, problem("Q"), t[-36])
    assert fc == pytest.approx(own.predict(gap, problem("Q"), t[[-19]]).values, rel=1e-9)


def test_batch_fit_equals_one_station_at_a_time() -> None:
    ds = decade_basin(20)
    probs = [problem("A", upstream=("B",), meteo=("M",)), problem("D", upstream=("A", "B"), meteo=("M",)),
             problem("B", meteo=("M",))]
    until, issues = np.datetime64("1985-01-01"), ds.time.values[600:640]
    batch = ARX(**ARX_FULL).fit_many(ds, probs, until).predict_many(ds, probs, issues)
    for i, pr in enumerate(probs):
        one = ARX(**ARX_FULL).fit(ds, pr, until).predict(ds, pr, issues)
        assert np.allclose(batch.values[i], one.values, rtol=1e-9, atol=1e-8)


# ------------------------------------------------------------------------------------
# No look-ahead
# ------------------------------------------------------------------------------------


def scramble_from(ds: xr.Dataset, t0: np.datetime64, seed: int = 9) -> xr.Dataset:
    """Every value at or after t0 replaced by noise (or NaN)."""
    rng = np.random.default_rng(seed)
    out = ds.copy(deep=True)
    late = ds.time.values >= t0
    for v in out.data_vars:
        a = out[v].values
        noise = rng.normal(100, 50, a[:, late].shape)
        noise[rng.random(noise.shape) < 0.2] = np.nan
        a[:, late] = np.where(np.isfinite(a[:, late]), noise, np.nan)
        out[v].values = a
    return out


@pytest.mark.parametrize("name,options", [("persistence", {}), ("climatology", {}), ("regression", {}),
                                          ("arx", ARX_FULL)])
def test_no_look_ahead_in_fit_and_predict(name: str, options: dict) -> None:
    ds = decade_basin(15)
    pr = problem("D", upstream=("A", "B"), meteo=("M",), options=options)
    t0 = ds.time.values[400]
    issues = ds.time.values[[400]]
    base = MODELS[name]().fit(ds, pr, t0).predict(ds, pr, issues).values
    assert np.isfinite(base).all()
    changed = MODELS[name]().fit(scramble_from(ds, t0), pr, t0).predict(scramble_from(ds, t0), pr, issues).values
    assert np.array_equal(base, changed)
    # earlier issue times are not affected by data after them either (with a fit before them)
    early = ds.time.values[300:400]
    m = MODELS[name]().fit(ds, pr, early[0])
    a = m.predict(ds, pr, early).values
    b = m.predict(scramble_from(ds, t0), pr, early).values
    assert np.array_equal(a, b, equal_nan=True)


def test_no_look_ahead_in_the_hindcast_and_its_quantiles() -> None:
    ds = decade_basin(30)
    pr = problem("D", upstream=("A", "B"), meteo=("M",), options=ARX_FULL)
    cut = np.datetime64("1994-05-11")
    h1 = hindcast("arx", ds, pr, "1990-01-01", calibration_years=10)
    h2 = hindcast("arx", scramble_from(ds, cut), pr, "1990-01-01", calibration_years=10)
    before = h1.forecast.issue_time.values < cut
    assert before.sum() > 100
    assert np.array_equal(h1.forecast.values[before], h2.forecast.values[before])
    assert np.array_equal(h1.quantiles.values[before], h2.quantiles.values[before])
    assert not np.allclose(h1.forecast.values[~before], h2.forecast.values[~before])


def test_selection_reads_nothing_after_until() -> None:
    ds, _ = linear_basin(50)
    pr = problem("Q", upstream=("U",), meteo=("M",))
    kw = {"candidates": ["upstream:1", "precipitation:1", "temperature:1"], "grid": {}}
    a = select_predictors(ds, pr, "1990-01-01", "1980-01-01", **kw)
    b = select_predictors(scramble_from(ds, np.datetime64("1990-01-01")), pr, "1990-01-01", "1980-01-01", **kw)
    assert a.options == b.options
    assert set(a.options["predictors"]) == {"flow:1", "upstream:1", "precipitation:1"}  # the law's predictors


# ------------------------------------------------------------------------------------
# The hindcast engine
# ------------------------------------------------------------------------------------


def test_vectorised_hindcast_equals_the_refit_loop() -> None:
    ds = decade_basin(25)
    q = ds.discharge.values.copy()
    q[0, 500:530] = np.nan  # a gap in A
    ds["discharge"].values = q
    probs = [problem("A", upstream=("B",), meteo=("M",), options=ARX_FULL),
             problem("D", upstream=("A", "B"), meteo=("M",), options=ARX_FULL)]
    for name, opts in (("arx", None), ("regression", {}), ("climatology", {})):
        ps = probs if opts is None else [dataclasses.replace(p, options=opts) for p in probs]
        fast = hindcast_many(name, ds, ps, "1985-01-01", quantiles=False)
        slow = hindcast_many(name, ds, ps, "1985-01-01", quantiles=False, fast=False)
        assert fast.forecast.dims == ("station", "issue_time", "lead")
        assert np.allclose(fast.forecast.values, slow.forecast.values, rtol=1e-8, atol=1e-7, equal_nan=True)
        assert np.isfinite(fast.forecast.values).mean() > 0.95


def test_hindcast_alignment_and_refits() -> None:
    ds = decade_basin(12)
    h = hindcast("persistence", ds, problem("A"), "1978-01-01", "1980-01-01", quantiles=False)
    q = ds.discharge.sel(station="A")
    assert h.forecast.sizes == {"issue_time": 72, "lead": 3}
    t = h.forecast.issue_time.values
    assert np.array_equal(t, issue_times(ds, "1978-01-01", "1980-01-01"))
    i = int(np.searchsorted(ds.time.values, t[10]))
    assert h.observed.values[10].tolist() == q.values[i : i + 3].tolist()
    assert h.last_observed.values[10] == q.values[i - 1] == h.forecast.values[10, 0]
    monthly = hindcast("arx", ds, problem("A", meteo=("M",), options=ARX_FULL), "1978-01-01", "1979-01-01",
                       refit="monthly", quantiles=False)
    assert np.isfinite(monthly.forecast.values).all()
    with pytest.raises(ValueError, match="refit"):
        hindcast("arx", ds, problem("A"), "1978-01-01", refit="weekly", quantiles=False)


def test_quantiles_are_ordered_and_cover_nominally() -> None:
    ds = decade_basin(45, seed=11)
    pr = problem("A", upstream=("B",), meteo=("M",), options=ARX_FULL)
    h = hindcast("arx", ds, pr, "1995-01-01", calibration_years=20)
    q = h.quantiles
    assert q.dims == ("issue_time", "lead", "quantile") and q["quantile"].values.tolist() == list(QUANTILES)
    assert (q.diff("quantile") >= 0).all()
    assert np.allclose(q.sel(quantile=0.5).values, h.forecast.values)
    for lead in (1, 2, 3):
        cov = coverage(h.observed.sel(lead=lead), q.sel(lead=lead, quantile=0.05), q.sel(lead=lead, quantile=0.95))
        assert 0.84 <= cov <= 0.96, (lead, cov)
    base = {m: hindcast(m, ds, dataclasses.replace(pr, options={}), "1995-01-01") for m in ("persistence",
                                                                                           "climatology")}
    table = score(h, base["persistence"], base["climatology"])
    assert (table.skill_persistence > 0).all() and (table.skill_climatology > 0).all()
    assert set(table.data_vars) >= {"rmse", "nse", "kge", "s_sigma_delta", "p_within", "coverage", "crps"}


def test_residual_quantiles_on_known_noise() -> None:
    rng = np.random.default_rng(2)
    t = period_starts("1950-01-01", "2009-12-31", "decade")
    point = np.full((t.size, 2), 100.0)
    obs = point * np.exp(rng.normal(0, [0.1, 0.3], (t.size, 2)))
    rq = ResidualQuantiles("decade").fit(point[:1440], obs[:1440], t[:1440])
    q = rq.apply(point[1440:], t[1440:])
    for lead in (0, 1):
        assert coverage(obs[1440:, lead], q[:, lead, 0], q[:, lead, -1]) == pytest.approx(0.9, abs=0.04)
    z = np.log(q[0, :, [0, 4]] / 100.0)  # (level, lead)
    assert z[:, 0] == pytest.approx([-1.645 * 0.1, 1.645 * 0.1], abs=0.03)
    assert z[:, 1] == pytest.approx([-1.645 * 0.3, 1.645 * 0.3], abs=0.06)
