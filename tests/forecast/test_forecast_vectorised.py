"""The vectorised rolling-origin hindcast gives what the plain fit/predict loop gives.

``LinearPeriodModel.hindcast_many`` computes every refit of many stations at once from
pooled moments with a batched Cholesky solve, the features' sums shared by the leads; these
tests hold it to the per-station ``fit``/``predict`` path (group_stats, pool_within,
solve_stats) on small cases built to reach its special paths: gaps in the target (windows
with rows of one lead's own), missing predictors (sub-models), 29 February (a period with
few rows of its own), every ``pool_levels`` mode, ``train_from`` and the AR(1) correction.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import xarray as xr

from watermon.forecast.base import Problem
from watermon.forecast.dataset import build_dataset, period_of_year, period_starts
from watermon.forecast.hindcast import hindcast_many, issue_times
from watermon.forecast.models import ARX, Climatology, OperationalRegression
from watermon.forecast.models.normal_equations import (
    _window_sum_sparse,
    _window_sums,
    circular_sum,
    group_stats,
    pool,
    pool_within,
    pooled_moments,
    solve_moments,
    solve_stats,
)
from watermon.forecast.models.regression import LinearPeriodModel


def daily_basin(years: int = 6, seed: int = 5, first: int = 2000, step: str = "daily") -> xr.Dataset:
    """Daily (or pentad) snowmelt-like flow at A and B (B downstream of A), meteo at M; gaps
    in A and B's flow and in M's record."""
    rng = np.random.default_rng(seed)
    t = period_starts(f"{first}-01-01", f"{first + years - 1}-12-31", step)
    n = t.size
    day = period_of_year(t, step).astype(float) * 366 / {"daily": 366, "pentad": 72}[step]
    temp = -5 - 12 * np.cos(2 * np.pi * (day - 15) / 366) + rng.normal(0, 2, n)
    precip = np.where(rng.random(n) < 0.4, rng.gamma(0.8, 6.0, n), 0.0)
    melt = np.convolve(np.maximum(temp, 0) * 3, np.ones(20) / 20, mode="same")
    a = 5 + 40 * melt / melt.max() + 0.2 * precip + np.abs(rng.normal(0, 1, n)).cumsum() % 3
    b = 1.3 * np.concatenate([[a[0]], a[:-1]]) + rng.normal(0, 1, n) + 4
    a[400:430] = np.nan  # a month without flow at A (leads' targets differ around it)
    b[int(n * 0.7) : int(n * 0.7) + 9] = np.nan
    temp[rng.random(n) < 0.03] = np.nan  # missing predictors: sub-models
    precip[int(n * 0.8) : int(n * 0.8) + 40] = np.nan
    nan = np.full(n, np.nan)
    return build_dataset({"discharge": np.stack([a, b, nan]), "precipitation": np.stack([nan, nan, precip]),
                          "air_temperature": np.stack([nan, nan, temp])}, ["A", "B", "M"], t, step)


ARX_DAILY = {"predictors": ["flow:2", "upstream:1", "precipitation:1", "temperature:1", "degree_days_since:01-01"],
             "error_correction": True, "window": 5}


def problems(options: dict, leads: int = 4, step: str = "daily") -> list[Problem]:
    return [Problem("A", step, leads, meteo=("M",), options=options),
            Problem("B", step, leads, upstream=("A",), meteo=("M",), options=options)]


def loop(model: type[LinearPeriodModel], ds: xr.Dataset, probs: list[Problem], start: str,
         train_from: str | None = None) -> np.ndarray:
    """The hindcast through fit/predict, a refit every 1 January."""
    data = ds if train_from is None else ds.sel(time=slice(np.datetime64(train_from), None))
    issues = issue_times(data, start)
    until = issues.astype("datetime64[Y]").astype("datetime64[ns]")
    out = np.full((len(probs), issues.size, probs[0].leads), np.nan)
    for i, p in enumerate(probs):
        for u in np.unique(until):
            sel = until == u
            out[i, sel] = model().fit(data, p, u).predict(data, p, issues[sel]).values
    return out


def assert_same(fast: np.ndarray, slow: np.ndarray) -> None:
    assert np.array_equal(np.isnan(fast), np.isnan(slow))
    assert np.isfinite(fast).mean() > 0.9
    np.testing.assert_allclose(fast, slow, rtol=1e-8, atol=1e-7)


@pytest.mark.parametrize("options", [
    {},
    {"pool_levels": False},
    {"pool_levels": True},
    {"window": 0, "error_correction": False},
    {"ridge": 0.0, "min_samples": 40},
])
def test_arx_vectorised_equals_the_loop_on_days(options: dict) -> None:
    ds = daily_basin()
    probs = problems({**ARX_DAILY, **options})
    fast = hindcast_many("arx", ds, probs, "2004-01-01", quantiles=False).forecast.values
    assert_same(fast, loop(ARX, ds, probs, "2004-01-01"))


@pytest.mark.parametrize("min_own", [3, 4, 5])
def test_levels_pooled_where_a_period_has_few_rows(monkeypatch: pytest.MonkeyPatch, min_own: int) -> None:
    # "auto": a period with under MIN_OWN_LEVEL rows of its own pools its level: with 4-5
    # training years, some periods (gaps, 29 February) do and others do not
    monkeypatch.setattr(LinearPeriodModel, "MIN_OWN_LEVEL", min_own)
    ds = daily_basin(seed=min_own)
    probs = problems(ARX_DAILY, leads=5)
    fast = hindcast_many("arx", ds, probs, "2004-01-01", quantiles=False).forecast.values
    assert_same(fast, loop(ARX, ds, probs, "2004-01-01"))


def test_arx_on_pentads() -> None:
    ds = daily_basin(years=14, step="pentad")
    probs = problems({**ARX_DAILY, "window": 2}, leads=3, step="pentad")
    fast = hindcast_many("arx", ds, probs, "2008-01-01", quantiles=False).forecast.values
    assert_same(fast, loop(ARX, ds, probs, "2008-01-01"))


def test_leads_sharing_the_features_sums_change_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    ds = daily_basin(seed=8)
    probs = problems(ARX_DAILY, leads=6)
    shared = hindcast_many("arx", ds, probs, "2003-01-01", quantiles=False).forecast.values
    monkeypatch.setattr(LinearPeriodModel, "SHARE_LEADS", False)
    alone = hindcast_many("arx", ds, probs, "2003-01-01", quantiles=False).forecast.values
    assert_same(shared, alone)


def test_blocks_and_chunks_change_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    ds = daily_basin()
    probs = problems(ARX_DAILY)
    whole = ARX().hindcast_many(ds, probs, issue_times(ds, "2004-01-01"))
    monkeypatch.setattr(LinearPeriodModel, "HINDCAST_BLOCK", 1)  # a station at a time
    one = ARX().hindcast_many(ds, probs, issue_times(ds, "2004-01-01"), chunk=1)
    np.testing.assert_allclose(whole, one, rtol=1e-12, atol=1e-10)


def test_other_linear_models_and_train_from() -> None:
    ds = daily_basin(years=5)
    for model, options in ((OperationalRegression, {"last": 2}), (Climatology, {})):
        probs = [dataclasses.replace(p, options=options) for p in problems({})]
        fast = hindcast_many(model.name, ds, probs, "2003-01-01", quantiles=False, train_from="2000-03-01")
        assert_same(fast.forecast.values, loop(model, ds, probs, "2003-01-01", train_from="2000-03-01"))


def test_the_last_refit_is_kept_as_fit_many_keeps_it() -> None:
    ds = daily_basin()
    probs = problems(ARX_DAILY)
    issues = issue_times(ds, "2005-01-01")
    m = ARX()
    m.hindcast_many(ds, probs, issues)
    ref = ARX().fit_many(ds, probs, np.datetime64("2005-01-01"))
    # the sums agree to rounding; a coefficient need not (a predictor nearly constant in a
    # window, degree days in April, has an ill-determined slope), the forecasts do
    np.testing.assert_allclose(m._fit.stats, ref._fit.stats, rtol=1e-9, atol=1e-6)
    assert np.array_equal(m._fit.n_train, ref._fit.n_train)
    np.testing.assert_allclose(m._fit.phi, ref._fit.phi, rtol=1e-7, atol=1e-10)
    # a forecast after the hindcast (its sub-models from those sums) is the fitted model's
    later = issues[issues >= np.datetime64("2005-06-01")]
    np.testing.assert_allclose(m.predict_many(ds, probs, later).values, ref.predict_many(ds, probs, later).values,
                               rtol=1e-8, atol=1e-7)


# ------------------------------------------------------------------------------------
# The pieces
# ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode,window", [(False, 2), ("auto", 2), (True, 2), (False, 0), ("auto", 3), (True, 0)])
def test_pooled_moments_and_their_solve_equal_the_sums_path(mode, window) -> None:
    rng = np.random.default_rng(0)
    s_n, n, k, n_p = 3, 900, 4, 36
    z = rng.normal(size=(s_n, n, k)) * [1, 3, 1, 0.2] + [0, 0, 5, 0]
    y = z @ np.array([1.0, 2.0, 0.5, -1.0]) + rng.normal(size=(s_n, n)) + 10
    ok = rng.random((s_n, n)) > 0.2
    ok[0, :700] = False  # few rows: means only, empty groups (NaN), levels pooled
    ok[1, np.arange(n) % n_p == 7] = False
    stats = group_stats(z, y, ok, np.arange(n) % n_p, n_p)
    use = np.ones((s_n, 1, k), dtype=bool)
    use[2, 0, 1] = False
    if mode is True:
        pooled = pool(stats, window, 1)
    else:
        pooled = pool_within(stats, window, 1, 20 if mode == "auto" else 0)
    ref = solve_stats(pooled, 0.01, use, 5)
    coef = solve_moments(*pooled_moments(np.moveaxis(stats, -1, 0).copy(), window, mode, 20), 0.01,
                         np.moveaxis(use, -1, 0), 5)
    np.testing.assert_allclose(np.moveaxis(coef, 0, -1), ref, rtol=1e-9, atol=1e-9)
    assert np.array_equal(np.isnan(np.moveaxis(coef, 0, -1)), np.isnan(ref))


def test_window_sums() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 4, 5, 30))
    cells = rng.random((4, 5, 30)) < 0.1
    cells[1, 2] = True  # a whole row: pooled, not gathered
    ref = np.moveaxis(pool(np.moveaxis(x, 0, -1), 4, 2), -1, 0)
    np.testing.assert_allclose(circular_sum(x, 4), ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(_window_sums(x, cells, 4), ref[:, cells], rtol=1e-12, atol=1e-12)
    # sparse sources summed into destinations of the same row within the window
    src = rng.random((6, 30)) < 0.2
    dense = np.where(src, rng.normal(size=(2, 6, 30)), 0.0)
    rows, per = np.nonzero(src)
    dst_r, dst_p = np.nonzero(np.ones((6, 30), dtype=bool))
    got = _window_sum_sparse(dense[:, rows, per], rows, per, dst_r, dst_p, 30, 4)
    np.testing.assert_allclose(got, circular_sum(dense, 4).reshape(2, -1), rtol=1e-12, atol=1e-12)
