"""Physically based models: Muskingum and lag routing, reservoir mass balance, the network forecast."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone

import numpy as np
import pytest
import xarray as xr

from watermon.config.models import BasinConfig, Reach, Reservoir, StationKind
from watermon.demo import generator as G
from watermon.forecast.base import MODELS, Problem
from watermon.forecast.models.network import LastValue, NetworkForecast, topological_order
from watermon.forecast.models.reservoir import LevelVolumeCurve, ReservoirBalance, mass_balance
from watermon.forecast.models.routing import (
    PLANNED_RELEASE,
    LagRouting,
    MuskingumRouting,
    MuskingumScheme,
    calendar,
    edges_hours,
    muskingum_coefficients,
    route_lag,
    route_muskingum,
)

DAY = np.timedelta64(1, "D")
VARIABLES = ("discharge", "reservoir_inflow", "reservoir_release", "reservoir_volume", "reservoir_level")


# ------------------------------------------------------------------------------------
# Test data
# ------------------------------------------------------------------------------------


def dataset(series: dict[tuple[str, str], np.ndarray], first: str, step: str = "daily") -> xr.Dataset:
    """(station, time) dataset on the step's calendar from {(station, variable): values}."""
    n = max(len(v) for v in series.values())
    times = calendar(np.datetime64(first), np.datetime64(first), n, step)
    stations = list(dict.fromkeys(s for s, _ in series))
    variables = list(dict.fromkeys([*VARIABLES, *(v for _, v in series)]))
    arrays = {v: np.full((len(stations), n), np.nan) for v in variables}
    for (s, v), vals in series.items():
        arrays[v][stations.index(s), : len(vals)] = vals
    return xr.Dataset({v: (("station", "time"), a) for v, a in arrays.items()},
                      coords={"station": stations, "time": times}, attrs={"step": step})


def hydrograph(n: int, seed: int = 1, base: float = 20.0) -> np.ndarray:
    """Snowmelt pulse plus rain floods: daily means that rise and fall at several speeds."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    melt = 300 * np.exp(-0.5 * ((t % 365 - 160) / 25) ** 2)
    rain = np.convolve(rng.gamma(0.3, 60, n), np.exp(-np.arange(12) / 2))[:n]
    return base + melt + rain


def edges(n: int, first: str = "2025-01-01", step: str = "daily") -> np.ndarray:
    return edges_hours(calendar(np.datetime64(first), np.datetime64(first), n, step), step)


def pulse(n: int) -> np.ndarray:
    """A flood from and back to base flow, well inside the window."""
    t = np.arange(n)
    return 10 + 500 * np.exp(-0.5 * ((t - n / 3) / 4) ** 2)


# ------------------------------------------------------------------------------------
# Muskingum and lag kernels
# ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("k", "x"), [(1.0, 0.0), (6.0, 0.1), (12.0, 0.2), (36.0, 0.45), (192.0, 0.2),
                                      (192.0, 0.5), (500.0, 0.3), (0.2, 0.3)])
def test_scheme_coefficients_sum_to_one_and_are_stable(k: float, x: float) -> None:
    scheme = MuskingumScheme.choose(k, x)
    c0, c1, c2 = muskingum_coefficients(k / scheme.subreaches, x, scheme.dt_hours)
    assert c0 + c1 + c2 == pytest.approx(1.0)
    assert abs(c2) < 1  # stable
    assert c1 >= 0
    assert c0 >= -0.05 * c1  # non-negative up to the documented tolerance (X near 0.5)
    if k >= 1:  # no sub-step finer than needed: dt fits under 2K(1-X) per sub-reach
        assert scheme.dt_hours <= 2 * k / scheme.subreaches * (1 - x) + 1e-9


def test_muskingum_is_the_textbook_recursion() -> None:
    """K = 24 h, X = 0.2, dt = 1 day: O[j+1] = C0 I[j+1] + C1 I[j] + C2 O[j] (Chow et al. 1988, 8.4)."""
    q = hydrograph(120)
    assert MuskingumScheme.choose(24.0, 0.2) == MuskingumScheme(1, 1)
    c0, c1, c2 = muskingum_coefficients(24.0, 0.2, 24.0)
    assert (c0, c1, c2) == pytest.approx((14.4 / 62.4, 33.6 / 62.4, 14.4 / 62.4))  # D = 2*24*0.8 + 24
    expected = np.empty_like(q)
    expected[0] = q[0]
    for j in range(1, q.size):
        expected[j] = c0 * q[j] + c1 * q[j - 1] + c2 * expected[j - 1]
    got = route_muskingum(q, edges(q.size), 24.0, 0.2)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_zero_k_and_x_is_identity() -> None:
    q = hydrograph(200)
    np.testing.assert_array_equal(route_muskingum(q, edges(q.size), 0.0, 0.0), q)
    np.testing.assert_array_equal(route_lag(q, edges(q.size), 0.0), q)


@pytest.mark.parametrize("step", ["daily", "pentad", "decade"])
@pytest.mark.parametrize(("k", "x", "lag"), [(6.0, 0.1, 0.0), (30.0, 0.25, 0.0), (192.0, 0.3, 0.0),
                                             (48.0, 0.45, 36.0), (0.0, 0.0, 100.0)])
def test_mass_is_conserved(step: str, k: float, x: float, lag: float) -> None:
    """A flood from base flow back to it: routed volume = inflow volume (periods of unequal length too)."""
    n = {"daily": 200, "pentad": 120, "decade": 60}[step]
    q = pulse(n)
    e = edges(n, step=step)
    out = route_muskingum(q, e, k, x, lag)
    dur = np.diff(e)
    assert float(out @ dur) == pytest.approx(float(q @ dur), rel=1e-6)
    assert out.max() <= q.max() + 1e-9  # attenuated, never amplified
    assert out[0] == pytest.approx(q[0]) and out[-1] == pytest.approx(q[-1], rel=1e-4)


def test_lag_is_exact() -> None:
    q = hydrograph(100)
    e = edges(q.size)
    np.testing.assert_allclose(route_lag(q, e, 48.0)[2:], q[:-2], rtol=1e-12)  # whole days: a shift
    np.testing.assert_allclose(route_lag(q, e, 12.0)[1:], (q[1:] + q[:-1]) / 2, rtol=1e-12)  # half a day
    np.testing.assert_allclose(route_lag(q, e, 30.0)[2:], 0.75 * q[1:-1] + 0.25 * q[:-2], rtol=1e-12)
    assert route_lag(q, e, 48.0)[:2] == pytest.approx([q[0], q[0]])  # steady before the start
    # decades of 10, 10, 11 days: a 10-day lag moves the 11-day decade's water partly into the next
    d = edges(3, "2026-01-01", "decade")
    np.testing.assert_allclose(np.diff(d) / 24, [10, 10, 11])
    v = np.array([0.0, 100.0, 0.0])
    out = route_lag(v, d, 240.0)
    np.testing.assert_allclose(out, [0.0, 0.0, 100 * 10 / 11], rtol=1e-12)


# ------------------------------------------------------------------------------------
# Routing models: calibration and forecasts
# ------------------------------------------------------------------------------------


def routed_pair(k: float, x: float, n: int = 730, step: str = "daily", lag: float = 0.0) -> xr.Dataset:
    up = hydrograph(n)
    down = route_muskingum(up, edges(n, step=step), k, x, lag)
    return dataset({("UP", "discharge"): up, ("DOWN", "discharge"): down}, "2025-01-01", step)


@pytest.mark.parametrize(("k", "x"), [(6.0, 0.1), (30.0, 0.25), (100.0, 0.4), (200.0, 0.2)])
def test_muskingum_recovers_k_and_x(k: float, x: float) -> None:
    data = routed_pair(k, x)
    problem = Problem("DOWN", "daily", 5, upstream=("UP",), options={"travel_time_hours": {"UP": 24}})
    model = MuskingumRouting(error_correction=False).fit(data, problem, data.time.values[-1] + DAY)
    p = model.params()
    assert p["calibrated"] and p["n_train"] > 600
    assert p["upstream"]["UP"]["k_hours"] == pytest.approx(k, rel=1e-3)
    assert p["upstream"]["UP"]["x"] == pytest.approx(x, abs=1e-3)
    assert p["upstream"]["UP"]["k_steps"] == pytest.approx(k / 24, rel=1e-3)
    assert p["local_inflow_m3s"] == pytest.approx(0.0, abs=1e-3)
    json.dumps(p)


def test_muskingum_recovers_two_reaches_on_decades() -> None:
    """Like Charvak's inflow: two rivers, different reaches, on decade means (unequal periods)."""
    n = 36 * 8
    a, b = hydrograph(n, seed=2), 0.6 * hydrograph(n, seed=3)
    e = edges(n, step="decade")
    down = route_muskingum(a, e, 60.0, 0.3) + route_muskingum(b, e, 300.0, 0.1) + 15.0
    data = dataset({("A", "discharge"): a, ("B", "discharge"): b, ("D", "discharge"): down}, "2018-01-01", "decade")
    problem = Problem("D", "decade", 3, upstream=("A", "B"))
    p = MuskingumRouting().fit(data, problem, data.time.values[-1] + DAY).params()
    assert p["upstream"]["A"]["k_hours"] == pytest.approx(60.0, rel=0.02)
    assert p["upstream"]["B"]["k_hours"] == pytest.approx(300.0, rel=0.02)
    assert p["local_inflow_m3s"] == pytest.approx(15.0, abs=0.1)
    assert p["train_rmse"] < 0.2  # X of the short reach hardly shows in decade means


def test_lag_routing_recovers_the_lag_and_the_gain() -> None:
    up = hydrograph(400)
    down = 0.7 * route_lag(up, edges(400), 30.0)
    data = dataset({("UP", "discharge"): up, ("DOWN", "discharge"): down}, "2025-01-01")
    problem = Problem("DOWN", "daily", 3, upstream=("UP",), options={"gain": True, "local_inflow": "none"})
    p = LagRouting().fit(data, problem, data.time.values[-1] + DAY).params()
    assert p["upstream"]["UP"]["lag_hours"] == pytest.approx(30.0, abs=1e-3)
    assert p["gain"] == pytest.approx(0.7, rel=1e-6)


def test_fixed_parameters_k_in_steps() -> None:
    data = routed_pair(36.0, 0.2, n=100)
    problem = Problem("DOWN", "daily", 3, upstream=("UP",))
    p = MuskingumRouting(k_steps=1.5, x=0.2).fit(data, problem, data.time.values[60]).params()
    assert p["upstream"]["UP"]["k_hours"] == 36.0 and p["upstream"]["UP"]["x"] == 0.2
    with pytest.raises(ValueError, match="unknown options"):
        MuskingumRouting().fit(data, Problem("DOWN", "daily", 3, upstream=("UP",), options={"K": 3}),
                               data.time.values[60])


def test_forecast_routes_observed_then_persisted_upstream() -> None:
    """Lead l of a 48-hour lag is upstream observed l - 2 days before, then the last value held."""
    up = hydrograph(60)
    data = dataset({("UP", "discharge"): up, ("DOWN", "discharge"): route_lag(up, edges(60), 48.0)}, "2025-01-01")
    problem = Problem("DOWN", "daily", 4, upstream=("UP",))
    model = LagRouting(lag_hours=48.0, local_inflow="none", error_correction=False)
    t0 = data.time.values[40]
    fc = model.fit(data, problem, t0).predict(data, problem, [t0]).sel(issue_time=t0).values
    np.testing.assert_allclose(fc, [up[38], up[39], up[39], up[39]])
    # an upstream forecast replaces persistence
    upfc = xr.DataArray([[1.0, 2.0, 3.0, 4.0]], dims=("issue_time", "lead"),
                        coords={"issue_time": [t0], "lead": [1, 2, 3, 4]})
    fc = model.predict(data, problem, [t0], upstream={"UP": upfc}).sel(issue_time=t0).values
    np.testing.assert_allclose(fc, [up[38], up[39], 1.0, 2.0])


def test_reservoir_upstream_routes_its_release_and_plan() -> None:
    """Below a dam: the reservoir's reported release is routed, then its planned release if there is one."""
    rel = np.array([100.0, 100.0, 200.0, 200.0, 300.0, np.nan, np.nan])
    below = route_lag(np.nan_to_num(rel), edges(7), 24.0)
    data = dataset({("DAM", "reservoir_release"): rel, ("BELOW", "discharge"): below}, "2026-05-01")
    problem = Problem("BELOW", "daily", 2, upstream=("DAM",))
    t0 = data.time.values[5]
    model = LagRouting(lag_hours=24.0, local_inflow="none", error_correction=False).fit(data, problem, t0)
    assert model.params()["upstream"]["DAM"]["variable"] == "reservoir_release"
    np.testing.assert_allclose(model.predict(data, problem, [t0]).values, [[300.0, 300.0]])
    data[PLANNED_RELEASE] = xr.full_like(data.reservoir_release, np.nan)
    data[PLANNED_RELEASE].loc[{"station": "DAM", "time": t0}] = 50.0
    np.testing.assert_allclose(model.predict(data, problem, [t0]).values, [[300.0, 50.0]])


def test_error_correction_decays_the_last_error() -> None:
    """With an unmodelled local inflow, the AR(1) term carries the last error forward, decaying."""
    n = 300
    up = hydrograph(n)
    local = 50 + 30 * np.sin(np.arange(n) / 20)  # slow, not a constant
    data = dataset({("UP", "discharge"): up, ("DOWN", "discharge"): route_muskingum(up, edges(n), 20, 0.2) + local},
                   "2025-01-01")
    problem = Problem("DOWN", "daily", 10, upstream=("UP",))
    t0 = data.time.values[250]
    model = MuskingumRouting().fit(data, problem, t0)
    phi = model.params()["ar1"]
    assert 0.8 < phi < 1
    plain = MuskingumRouting(error_correction=False).fit(data, problem, t0)
    truth = data.discharge.sel(station="DOWN").values[250:260]
    err_ar = abs(model.predict(data, problem, [t0]).values[0] - truth)
    err_plain = abs(plain.predict(data, problem, [t0]).values[0] - truth)
    assert err_ar[0] < err_plain[0] / 2


@pytest.mark.parametrize("model", [MuskingumRouting(), LagRouting()])
def test_routing_has_no_look_ahead(model: MuskingumRouting | LagRouting) -> None:
    data = routed_pair(30.0, 0.3, n=200)
    problem = Problem("DOWN", "daily", 5, upstream=("UP",))
    t0, until = data.time.values[150], data.time.values[120]
    model.fit(data, problem, until)
    params = model.params()
    before = model.predict(data, problem, [t0])
    changed = data.copy(deep=True)
    rng = np.random.default_rng(0)
    changed["discharge"][:, 150:] = rng.uniform(0, 1000, changed["discharge"][:, 150:].shape)
    changed["discharge"][0, 170:] = np.nan
    xr.testing.assert_identical(model.predict(changed, problem, [t0]), before)
    refit = type(model)().fit(changed, problem, until)  # fitting sees only time < until
    assert refit.params() == params
    changed["discharge"][0, 149] += 100.0  # the day before the issue time does count
    assert not np.allclose(model.predict(changed, problem, [t0]).values, before.values)


# ------------------------------------------------------------------------------------
# Reservoir mass balance
# ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def charvak(config: BasinConfig) -> Reservoir:
    return next(r for r in config.reservoirs if r.station == "CHARVAK")


def test_mass_balance_constant_flows() -> None:
    b = mass_balance(1000.0, 500.0, [300.0] * 4, 86400.0, at=0.5)
    per_day = 200 * 86400 / 1e6  # 17.28 million m3
    np.testing.assert_allclose(b.volume_end, 1000 + per_day * np.arange(1, 5))
    np.testing.assert_allclose(b.volume, 1000 + per_day * (np.arange(4) + 0.5))
    np.testing.assert_array_equal(b.release, 300.0)
    np.testing.assert_array_equal(b.spill, 0.0)
    # batches of issue times broadcast
    b2 = mass_balance(np.array([10.0, 20.0]), np.array([[1.0, 1.0], [2.0, 2.0]]), 0.0, 1e6)
    np.testing.assert_allclose(b2.volume_end, [[11, 12], [22, 24]])


def test_mass_balance_spills_at_the_top_and_curtails_at_dead_storage() -> None:
    secs = 86400.0
    b = mass_balance(1030.0, 500.0, [300.0] * 3, secs, v_max=1040.0)
    np.testing.assert_allclose(b.volume_end, [1040, 1040, 1040])
    # day 1 fills the last 10 million m3 then spills; later days spill all of inflow - release
    np.testing.assert_allclose(b.spill, [200 - 10e6 / secs, 200, 200])
    stored = b.volume_end[-1] - 1030.0
    assert stored == pytest.approx(float(np.sum(500 - b.outflow) * secs / 1e6))
    b = mass_balance(100.0, 10.0, [300.0, 300.0], secs, v_min=90.0)
    np.testing.assert_allclose(b.volume_end, [90, 90])
    t_hit = 10e6 / (290 * secs)  # share of day 1 before dead storage is reached
    np.testing.assert_allclose(b.release, [300 * t_hit + 10 * (1 - t_hit), 10.0])


def test_level_volume_curve_is_inverted(charvak: Reservoir) -> None:
    curve = LevelVolumeCurve.from_pairs(charvak.level_volume_curve)
    assert curve.level(1380.0) == pytest.approx(875.0)  # halfway between (870, 1200) and (880, 1560)
    assert curve.volume(875.0) == pytest.approx(1380.0)
    levels = np.linspace(801, 891, 50)
    np.testing.assert_allclose(curve.level(curve.volume(levels)), levels)
    assert curve.volume(charvak.flood_level_m) == pytest.approx(2006 + 0.75 * 94)


def reservoir_data(n: int, volume: np.ndarray | float, inflow: np.ndarray | float,
                   release: np.ndarray | float, code: str = "CHARVAK") -> xr.Dataset:
    full = lambda v: np.broadcast_to(np.asarray(v, dtype=float), (n,)).copy()  # noqa: E731
    return dataset({(code, "reservoir_volume"): full(volume), (code, "reservoir_inflow"): full(inflow),
                    (code, "reservoir_release"): full(release)}, "2026-05-01")


def test_reservoir_balance_exact_for_constant_inflow_and_release(charvak: Reservoir) -> None:
    n, v_last = 10, 1380.0
    data = reservoir_data(n, np.where(np.arange(n) == n - 1, v_last, np.nan), 400.0, 250.0)
    problem = Problem("CHARVAK", "daily", 5, variable="reservoir_level")
    model = ReservoirBalance(charvak, observed_at=0.5, loss_m3s=0.0).fit(data, problem, data.time.values[-1])
    t0 = data.time.values[-1] + DAY
    ds = model.forecast(data, problem, [t0]).sel(issue_time=t0)
    per_day = 150 * 86400 / 1e6
    expected = v_last + per_day * np.arange(1, 6)  # reported mid-day, forecast mid-day
    np.testing.assert_allclose(ds.reservoir_volume.values, expected)
    levels, volumes = np.array(charvak.level_volume_curve).T
    np.testing.assert_allclose(ds.reservoir_level.values, np.interp(expected, volumes, levels))
    np.testing.assert_allclose(ds.reservoir_release.values, 250.0)
    np.testing.assert_allclose(ds.reservoir_inflow.values, 400.0)
    level = model.predict(data, problem, [t0])
    assert level.name == "reservoir_level"
    np.testing.assert_allclose(level.values[0], ds.reservoir_level.values)


def test_reservoir_clips_at_the_flood_level(charvak: Reservoir) -> None:
    curve = LevelVolumeCurve.from_pairs(charvak.level_volume_curve)
    v_flood = float(curve.volume(charvak.flood_level_m))
    data = reservoir_data(5, v_flood - 30.0, 1200.0, 300.0)  # 900 m3/s net: 77.76 million m3 a day
    problem = Problem("CHARVAK", "daily", 4, variable="reservoir_volume")
    model = ReservoirBalance(charvak, observed_at=1.0, loss_m3s=0.0).fit(data, problem, data.time.values[-1])
    ds = model.forecast(data, problem, [data.time.values[-1] + DAY]).isel(issue_time=0)
    np.testing.assert_allclose(ds.reservoir_volume.values, v_flood)
    np.testing.assert_allclose(ds.reservoir_level.values, charvak.flood_level_m)
    np.testing.assert_allclose(ds.spill.values[1:], 900.0)  # full: everything above the release spills
    assert ds.spill.values[0] == pytest.approx(900 - 30e6 / 86400)
    np.testing.assert_allclose(ds.reservoir_release.values, 300 + ds.spill.values)
    # with spill at the normal maximum level instead, from below it
    data = reservoir_data(5, curve.volume(charvak.normal_max_level_m) - 100.0, 1200.0, 300.0)
    low = ReservoirBalance(charvak, observed_at=1.0, loss_m3s=0.0, spill_level="normal_max")
    low.fit(data, problem, data.time.values[-1])
    ds = low.forecast(data, problem, [data.time.values[-1] + DAY]).isel(issue_time=0)
    first = 880 + (2006 - 100 + 900 * 0.0864 - 1560) / (2006 - 1560) * 10  # on the (880, 1560)-(890, 2006) segment
    np.testing.assert_allclose(ds.reservoir_level.values, [first, 890.0, 890.0, 890.0])
    # a reservoir reported above the spill level stays there while the inflow exceeds the release
    ds = low.forecast(reservoir_data(5, v_flood - 30.0, 1200.0, 300.0), problem,
                      [data.time.values[-1] + DAY]).isel(issue_time=0)
    np.testing.assert_allclose(ds.reservoir_volume.values, v_flood - 30.0)


def test_reservoir_release_plan_and_inflow_forecast(charvak: Reservoir) -> None:
    n = 8
    data = reservoir_data(n, 1000.0, 400.0, 250.0)
    plan = np.full(n + 3, np.nan)
    plan[n:] = [100.0, 500.0, np.nan]  # planned releases for the next two days, then held
    data = data.reindex(time=calendar(data.time.values[0], data.time.values[0], n + 3, "daily"))
    data[PLANNED_RELEASE] = (("station", "time"), plan[None, :])
    problem = Problem("CHARVAK", "daily", 3)
    t0 = data.time.values[n]
    model = ReservoirBalance(charvak, observed_at=1.0, loss_m3s=0.0).fit(data, problem, t0)
    ds = model.forecast(data, problem, [t0]).isel(issue_time=0)
    np.testing.assert_allclose(ds.reservoir_release.values, [100, 500, 500])
    inflow = xr.DataArray([[600.0, 600.0, 600.0]], dims=("issue_time", "lead"),
                          coords={"issue_time": [t0], "lead": [1, 2, 3]})
    ds = model.forecast(data, problem, [t0], inflow=inflow).isel(issue_time=0)
    np.testing.assert_allclose(ds.reservoir_volume.values, 1000 + np.cumsum([500, 100, 100]) * 0.0864)


def test_reservoir_calibrates_reporting_moment_and_loss() -> None:
    """Volumes read 3 h into each day, 12 m3/s lost: both are recovered from the reports."""
    rng = np.random.default_rng(5)
    n = 120
    inflow = 300 + 200 * np.sin(np.arange(n) / 9) + rng.normal(0, 20, n)
    release = 250 + rng.normal(0, 30, n)
    net = (inflow - release - 12.0) * 0.0864
    end = 900 + np.cumsum(net)
    volume = end - net + 0.125 * net  # volume at 03:00 of each day
    data = reservoir_data(n, volume, inflow, release, code="R")
    res = Reservoir(station="R", dead_storage_level_m=1, normal_max_level_m=9, flood_level_m=10,
                    level_volume_curve=((0, 0), (10, 5000)))
    model = ReservoirBalance(res).fit(data, Problem("R", "daily", 3), data.time.values[-1] + DAY)
    p = model.params()
    assert p["observed_at"] == pytest.approx(0.125, abs=1e-6)
    assert p["loss_m3s"] == pytest.approx(12.0, abs=1e-6)
    json.dumps(p)


def test_reservoir_curve_from_reported_pairs_when_none_is_configured(charvak: Reservoir) -> None:
    curve = LevelVolumeCurve.from_pairs(charvak.level_volume_curve)
    volume = np.linspace(900, 1900, 20)
    data = reservoir_data(20, volume, 300.0, 300.0)
    data["reservoir_level"].loc[{"station": "CHARVAK"}] = curve.level(volume)
    problem = Problem("CHARVAK", "daily", 2, variable="reservoir_level", options={"flood_level_m": 891.5})
    model = ReservoirBalance(observed_at=0.5, loss_m3s=0.0).fit(data, problem, data.time.values[-1] + DAY)
    assert model.params()["curve_source"] == "empirical"
    level = model.predict(data, problem, [data.time.values[-1] + DAY]).values[0]
    np.testing.assert_allclose(level, curve.level(1900.0), atol=0.05)  # net 0: the level stays


def test_reservoir_has_no_look_ahead(charvak: Reservoir) -> None:
    n = 30
    rng = np.random.default_rng(3)
    data = reservoir_data(n, 1200 + np.cumsum(rng.normal(0, 5, n)), rng.uniform(300, 500, n), rng.uniform(200, 400, n))
    problem = Problem("CHARVAK", "daily", 5, variable="reservoir_level")
    t0 = data.time.values[20]
    model = ReservoirBalance(charvak).fit(data, problem, t0)
    before = model.forecast(data, problem, [t0])
    changed = data.copy(deep=True)
    for v in ("reservoir_volume", "reservoir_inflow", "reservoir_release"):
        changed[v][:, 20:] = rng.uniform(0, 3000, changed[v][:, 20:].shape)
    xr.testing.assert_identical(model.forecast(changed, problem, [t0]), before)


# ------------------------------------------------------------------------------------
# The network
# ------------------------------------------------------------------------------------


def test_network_order_is_topological(config: BasinConfig) -> None:
    net = NetworkForecast.from_config(config)
    order = net.order()
    assert len(order) == len(set(order))
    for r in config.reaches:
        assert order.index(r.upstream) < order.index(r.downstream), r
    for s in config.stations:
        for part in s.derived_from:
            assert order.index(part) < order.index(s.code)
    kinds = {code: node.kind for code, node in net.nodes.items()}
    assert kinds["CHARVAK"] == kinds["CHARDARA"] == "reservoir"
    assert kinds["16294"] == "virtual" and kinds["16279"] == "headwater" and kinds["11250"] == "routed"
    assert order[-1] == "11250"
    with pytest.raises(ValueError, match="cycle through"):
        topological_order([("A", "B"), ("B", "C"), ("C", "A"), ("X", "A")])


def tiny_network() -> tuple[NetworkForecast, xr.Dataset]:
    """A (river) -> R (reservoir) -> C (river), 36-hour lags, fixed parameters."""
    reaches = [Reach(upstream="A", downstream="R", travel_time_hours=36),
               Reach(upstream="R", downstream="C", travel_time_hours=36)]
    res = Reservoir(station="R", dead_storage_level_m=102, normal_max_level_m=118, flood_level_m=119,
                    level_volume_curve=((100, 0), (110, 100), (120, 300)))
    data = dataset({
        ("A", "discharge"): [10.0, 10.0, 20.0, 30.0, 40.0],
        ("R", "reservoir_volume"): [np.nan] * 4 + [200.0],
        ("R", "reservoir_inflow"): [10.0, 10.0, 10.0, 20.0, 30.0],
        ("R", "reservoir_release"): [30.0, 30.0, 30.0, 30.0, 60.0],
        ("C", "discharge"): [30.0, 30.0, 30.0, 30.0, 45.0],
    }, "2026-04-01")
    net = NetworkForecast(
        reaches, step="daily", leads=3, reservoirs=[res],
        routing_model=lambda: LagRouting(lag_hours=36.0, local_inflow="none", error_correction=False),
        options={"R": {"observed_at": 1.0, "loss_m3s": 0.0}},
    )
    return net, data


def test_tiny_network_by_hand() -> None:
    net, data = tiny_network()
    assert net.order() == ["A", "R", "C"]
    t0 = np.datetime64("2026-04-06", "ns")
    fc = net.fit(data, t0).predict(data, [t0]).sel(issue_time=t0)
    # A: persistence of 40; R inflow: A lagged 1.5 days: (30 + 40) / 2, then 40
    np.testing.assert_allclose(fc.discharge.sel(station="A"), [40, 40, 40])
    np.testing.assert_allclose(fc.reservoir_inflow.sel(station="R"), [35, 40, 40])
    # R release held at 60: the volume falls by 25, 20, 20 m3/s x 86400 s from 200 (reported at day's end)
    volume = 200 - np.cumsum([25, 20, 20]) * 0.0864
    np.testing.assert_allclose(fc.reservoir_volume.sel(station="R"), volume)
    np.testing.assert_allclose(fc.reservoir_level.sel(station="R"), 110 + (volume - 100) / 20)
    np.testing.assert_allclose(fc.reservoir_release.sel(station="R"), [60, 60, 60])
    # C: R's release lagged 1.5 days: (30 + 60) / 2, then 60
    np.testing.assert_allclose(fc.discharge.sel(station="C"), [45, 60, 60])
    assert np.isnan(fc.discharge.sel(station="R")).all() and np.isnan(fc.reservoir_volume.sel(station="C")).all()
    json.dumps(net.params())


def test_virtual_gauge_is_the_sum_of_its_parts() -> None:
    data = dataset({("P1", "discharge"): [1.0, 2.0, 3.0], ("P2", "discharge"): [10.0, 20.0, 30.0],
                    ("V", "discharge"): [11.0, 22.0, 33.0]}, "2026-04-01")
    net = NetworkForecast([], leads=2, virtual={"V": ["P1", "P2"]})
    assert net.order() == ["P1", "P2", "V"]
    t0 = np.datetime64("2026-04-04")
    fc = net.fit(data, t0).predict(data, [t0])
    np.testing.assert_allclose(fc.discharge.sel(station="V").values, [[33.0, 33.0]])


def test_network_has_no_look_ahead() -> None:
    net, data = tiny_network()
    data = data.reindex(time=calendar(data.time.values[0], data.time.values[0], 9, "daily"))
    t0 = data.time.values[5]
    before = net.fit(data, t0).predict(data, [t0])
    changed = data.copy(deep=True)
    for v in VARIABLES:
        changed[v][:, 5:] = 1234.0
    xr.testing.assert_identical(net.predict(changed, [t0]), before)


# ------------------------------------------------------------------------------------
# The demo basin: a simulated season, daily means, the whole network
# ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_season(config: BasinConfig) -> xr.Dataset:
    """Daily means of the demo generator's hourly basin (reservoir volumes read at 03:00 UTC)."""
    start, end = date(2026, 3, 1), date(2026, 9, 30)
    clock = G.Clock.for_season(start, end)
    basin = G.simulate(config, clock, np.random.default_rng(2026))
    days = np.arange(np.datetime64(start), np.datetime64(end) + 1)
    first = np.array([clock.index(datetime.combine(d.astype(object), datetime.min.time(), timezone.utc))
                      for d in days])
    def daily(hourly: np.ndarray) -> np.ndarray:
        return hourly[first[:, None] + np.arange(24)].mean(axis=1)

    series: dict[tuple[str, str], np.ndarray] = {}
    curves = {r.station: r for r in config.reservoirs}
    for st in config.stations:
        if st.kind is StationKind.RESERVOIR:
            run = basin.reservoirs[st.code]
            series[(st.code, "reservoir_inflow")] = daily(run.inflow)
            series[(st.code, "reservoir_release")] = daily(run.release)
            series[(st.code, "reservoir_volume")] = run.volume[first + 3]
            series[(st.code, "reservoir_level")] = G.level_of(curves[st.code], run.volume[first + 3])
        elif st.kind is StationKind.VIRTUAL_GAUGE:
            series[(st.code, "discharge")] = sum(daily(basin.flow[p]) for p in st.derived_from)
        elif st.kind is StationKind.RIVER_GAUGE:
            series[(st.code, "discharge")] = daily(basin.flow[st.code])
    return dataset(series, str(start))


def test_network_on_the_demo_basin(config: BasinConfig, demo_season: xr.Dataset) -> None:
    data = demo_season
    net = NetworkForecast.from_config(config, step="daily", leads=5, options={"11250": {"gain": True}})
    until = np.datetime64("2026-06-15", "ns")
    net.fit(data, until)
    params = net.params()
    json.dumps(params)
    # Charvak's inflow is the sum of its three rivers, routed: gain 1, no local inflow to speak of
    inflow = params["CHARVAK"]["params"]["inflow_params"]
    assert inflow["train_rmse"] < 0.02 * float(data.reservoir_inflow.sel(station="CHARVAK").mean())
    assert abs(inflow["local_inflow_m3s"]) < 5
    assert params["CHARVAK"]["params"]["observed_at"] < 0.3  # read at 08:00 +05, early in the UTC day
    assert 0.65 < params["11250"]["params"]["gain"] < 0.8  # Kyzylorda: 25-30 % losses

    issues = data.time.values[(data.time.values >= until) & (data.time.values <= np.datetime64("2026-09-20"))]
    fc = net.predict(data, issues)
    assert list(fc.station.values) == net.order()

    def mae(var: str, station: str, lead: int, persistence: bool = False) -> float:
        obs = data[var].sel(station=station)
        valid = issues + (lead - 1) * DAY
        pred = obs.sel(time=issues - DAY).values if persistence else fc[var].sel(station=station, lead=lead).values
        return float(np.nanmean(np.abs(pred - obs.sel(time=valid).values)))

    for station in net.order():
        node = net.nodes[station]
        var = "reservoir_volume" if node.kind == "reservoir" else "discharge"
        assert np.isfinite(fc[var].sel(station=station)).all(), station
        if node.kind == "reservoir":
            assert np.isfinite(fc.reservoir_level.sel(station=station)).all()
            for lead in (1, 5):  # the balance beats "the volume stays" by far
                assert mae(var, station, lead) < 0.4 * mae(var, station, lead, persistence=True)
        elif node.kind == "routed":
            assert mae(var, station, 1) < mae(var, station, 1, persistence=True), station


def test_models_are_registered() -> None:
    assert MODELS["muskingum"] is MuskingumRouting
    assert MODELS["lag"] is LagRouting
    assert MODELS["reservoir"] is ReservoirBalance
    assert "last_value" not in MODELS and LastValue.name == "last_value"


def test_network_is_selectable_per_station_and_reads_only_what_is_above(config: BasinConfig,
                                                                       demo_season: xr.Dataset) -> None:
    data, until = demo_season, np.datetime64("2026-06-15", "ns")
    issues = data.time.values[(data.time.values >= until)][:40]
    parts = {"11250": {"gain": True}}
    model = MODELS["network"]()
    problem = Problem("11250", "daily", 5, options={"basin": config, "parts": parts})
    got = model.fit(data, problem, until).predict(data, problem, issues)
    whole = NetworkForecast.from_config(config, step="daily", leads=5, options=parts).fit(data, until)
    expected = whole.predict(data, issues)["discharge"].sel(station="11250")
    assert got.dims == ("issue_time", "lead") and np.isfinite(got.values).all()
    np.testing.assert_allclose(got.values, expected.values, rtol=1e-12)

    # Chinaz (16275) needs the Chirchik above it only: neither Chardara nor the Keles
    level = Problem("CHARVAK", "daily", 3, variable="reservoir_level", options={"basin": config})
    charvak = MODELS["network"]().fit(data, level, until)
    assert set(charvak.net.nodes) == {"16279", "16290", "16298", "CHARVAK"}
    assert np.isfinite(charvak.predict(data, level, issues).values).all()
    sub = MODELS["network"]().fit(data, Problem("16275", "daily", 3, options={"basin": config}), until)
    assert set(sub.net.nodes) == {"16279", "16290", "16298", "CHARVAK", "16275"}

    with pytest.raises(ValueError, match="option `basin`"):
        MODELS["network"]().fit(data, Problem("11250", "daily", 5), until)
    with pytest.raises(ValueError, match="unknown options"):
        MODELS["network"]().fit(data, Problem("11250", "daily", 5, options={"basin": config, "gain": 1}), until)
