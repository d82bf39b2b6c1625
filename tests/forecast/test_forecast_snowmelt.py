"""The degree-day snow model: its water balance, its physics, calibration, causality, and the ARX token."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
import xarray as xr

from watermon.forecast.base import Problem
from watermon.forecast.dataset import build_dataset, period_days, period_of_year, period_starts
from watermon.forecast.hindcast import hindcast
from watermon.forecast.models import ARX
from watermon.forecast.models.snowmelt import (
    BANDS,
    SnowParams,
    calibrate,
    forcing,
    simulate,
    snowpack_features,
)

TRUTH = SnowParams(t_offset=-4.0, band_spread=2.5, t_snow=1.0, t_melt=-1.0, ddf=3.0, fast_share=0.4,
                   k_fast=0.5, k_slow=0.05, scale=40.0)


def meteo(years: int, seed: int = 5, noise: float = 2.0, dry_summer: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = period_starts("1960-01-01", f"{1960 + years - 1}-12-31", "decade")
    p = period_of_year(t, "decade")
    rng = np.random.default_rng(seed)
    temp = -10 + 24 * np.sin(np.pi * (p - 6) / 36).clip(0) + rng.normal(0, noise, t.size)
    precip = rng.gamma(1.5, 15.0, t.size) * (1.3 - np.sin(np.pi * (p - 6) / 36).clip(0))
    if dry_summer:
        precip[p >= 9] = 0.0  # snow only: what melts later is all in the snowpack
    return t, temp, precip


def snow_basin(years: int = 20, gaps: bool = False, **weather: Any) -> xr.Dataset:
    """Flow at S simulated by the model itself from the cold station H; L is H + 6 degC."""
    t, temp, precip = meteo(years, **weather)
    q = simulate(TRUTH, temp, precip, period_days(t, "decade").astype(float))[0]
    nan = np.full(t.size, np.nan)
    low = temp + 6.0
    high = temp.copy()
    if gaps:
        high[100:110] = np.nan
    return build_dataset({"discharge": np.stack([q, nan, nan]), "precipitation": np.stack([nan, precip, precip]),
                          "air_temperature": np.stack([nan, high, low])}, ["S", "H", "L"], t, "decade")


def problem(**options) -> Problem:
    return Problem("S", "decade", 3, meteo=("L", "H"), options=options)


def test_water_balance_closes() -> None:
    """Every mm of precipitation is released, or held as snow or in a reservoir."""
    t, temp, precip = meteo(5)
    days = period_days(t, "decade").astype(float)
    q, swe, store = simulate(TRUTH, temp, precip, days)
    released = q * days / TRUTH.scale
    # the states are those before each period: the end state is the next period's
    end = swe[-1].mean() + store[-1].sum()
    assert np.isclose(precip[:-1].sum(), released[:-1].sum() + end, rtol=0, atol=1e-9)
    assert (swe >= 0).all() and (store >= 0).all()


def test_snow_builds_in_the_cold_and_melts_in_the_warm() -> None:
    t = period_starts("2000-01-01", "2000-12-31", "decade")
    days = period_days(t, "decade").astype(float)
    cold, warm = np.full(18, -30.0), np.full(18, 30.0)
    temp = np.concatenate([cold, warm])
    precip = np.concatenate([np.full(18, 10.0), np.zeros(18)])
    q, swe, store = simulate(TRUTH, temp, precip, days)
    assert np.allclose(swe[18].mean(axis=-1), 180.0)  # all of it fell as snow, none melted
    assert np.allclose(q[:18], 0.0)  # nothing to release yet
    assert swe[20].sum() == 0.0 and q[18] > 0  # 30 degC melts every band within a decade
    assert swe.shape == (36, BANDS) and store.shape == (36, 2)


def test_calibration_recovers_the_flow_of_a_known_basin() -> None:
    ds = snow_basin(15)
    got = calibrate(ds, problem(), "1975-01-01", maxiter=80)
    t, p = forcing(ds, problem(), ds.time.values)
    days = period_days(ds.time.values, "decade").astype(float)
    sim = simulate(got, t, p, days)[0]
    obs = ds.discharge.sel(station="S").values
    nse = 1 - np.mean((sim - obs) ** 2) / np.var(obs)
    assert nse > 0.98, (nse, got)
    assert got == calibrate(ds, problem(), "1975-01-01", maxiter=80)  # the seed fixes the result


def test_forcing_uses_the_coldest_station_and_fills_its_gaps_from_the_others() -> None:
    ds = snow_basin(20, gaps=True)
    t, p = forcing(ds, problem(), ds.time.values)
    high = ds.air_temperature.sel(station="H").values
    ok = np.isfinite(high)
    assert np.array_equal(t[ok], high[ok])  # H is colder than L: the reference
    # the gap is L minus the mean difference L - H of the period over the earlier years (6 degC)
    low = ds.air_temperature.sel(station="L").values
    assert np.allclose(t[100:110], low[100:110] - 6.0)
    assert np.isfinite(t).all() and np.isfinite(p).all()


def test_features_never_read_a_later_period() -> None:
    ds = snow_basin(10)
    params = TRUTH
    before = snowpack_features(ds, problem(), ds.time.values, params)
    cut = 200
    later = ds.copy(deep=True)
    rng = np.random.default_rng(0)
    for var in ("air_temperature", "precipitation"):
        later[var][:, cut:] = rng.normal(0, 50, later[var][:, cut:].shape)
    after = snowpack_features(later, problem(), ds.time.values, params)
    for name in before:
        assert np.array_equal(before[name][: cut + 1], after[name][: cut + 1], equal_nan=True), name
        assert not np.allclose(before[name][cut + 2 :], after[name][cut + 2 :]), name


def test_parameters_are_checked_by_name() -> None:
    good = TRUTH.as_dict()
    assert SnowParams.from_dict(good) == TRUTH
    with pytest.raises(ValueError, match=r"missing \['ddf'\]"):
        SnowParams.from_dict({k: v for k, v in good.items() if k != "ddf"})
    with pytest.raises(ValueError, match=r"unknown \['area'\]"):
        SnowParams.from_dict({**good, "area": 1.0})
    with pytest.raises(ValueError, match=r"k_fast = 2.0 outside \[0.05, 1.0\]"):
        SnowParams.from_dict({**good, "k_fast": 2.0})


def test_forcing_names_what_is_missing() -> None:
    ds = snow_basin(3)
    with pytest.raises(ValueError, match="no temperature"):
        forcing(ds.drop_vars("air_temperature"), problem(), ds.time.values)
    with pytest.raises(ValueError, match="observed periods"):
        calibrate(ds, problem(), "1961-01-01")


def test_arx_snowpack_token_needs_the_parameters() -> None:
    ds = snow_basin(20)
    with pytest.raises(ValueError, match="needs the option 'snowmelt'"):
        ARX().fit(ds, problem(predictors=["flow:1", "snowpack"]), np.datetime64("1975-01-01"))
    with pytest.raises(ValueError, match="takes no argument"):
        ARX().fit(ds, problem(predictors=["snowpack:2"]), np.datetime64("1975-01-01"))
    with pytest.raises(ValueError, match="ddf"):
        ARX().fit(ds, problem(predictors=["snowpack"], snowmelt={**TRUTH.as_dict(), "ddf": 99}),
                  np.datetime64("1975-01-01"))


def test_arx_with_the_snowpack_beats_the_arx_without_on_a_snow_basin() -> None:
    """The flow is the snow model's, snow falls only in winter and the weather stays close to its
    climate: with the model's states the ARX foresees the melt that the flow alone cannot."""
    ds = snow_basin(30, noise=0.2, dry_summer=True)
    plain = problem(predictors=["flow:2"], error_correction=False)
    snow = dataclasses.replace(plain, options={**plain.options, "predictors": ["flow:2", "snowpack"],
                                               "snowmelt": TRUTH.as_dict()})
    rmse = {}
    for label, p in (("plain", plain), ("snow", snow)):
        h = hindcast("arx", ds, p, "1980-01-01", quantiles=False)
        rmse[label] = float(np.sqrt(np.nanmean((h.forecast - h.observed).sel(lead=1) ** 2)))
    assert rmse["snow"] < 0.5 * rmse["plain"], rmse  # about 0.4
    names = ARX().fit(ds, snow, np.datetime64("1980-01-01"))._names[0]
    assert [n for n in names if n.startswith("snowmelt.")] == [
        "snowmelt.flow_ahead", "snowmelt.snow", "snowmelt.fast_store", "snowmelt.slow_store",
        "snowmelt.simulated_last"]
