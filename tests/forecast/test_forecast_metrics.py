"""Verification metrics: agreement with hydroeval, HydroErr and properscoring, hand cases."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import HydroErr
import hydroeval
import numpy as np
import properscoring
import pytest
import xarray as xr
from pydantic import ValidationError
from scipy.stats import norm

from watermon.forecast import metrics as M
from watermon.forecast.base import QUANTILES

TOL = 1e-9


def agree(ours: float, ref: float) -> None:
    """Equal to 1e-9 (absolute, or relative for values above 1)."""
    ref = float(np.asarray(ref).squeeze())
    assert np.isfinite(ours) and np.isfinite(ref)
    assert abs(ours - ref) <= TOL * max(1.0, abs(ref)), (ours, ref)


def quiet(fn: Callable[..., object], *args: object, **kwargs: object) -> object:
    """HydroErr warns about every row it drops; that is expected here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


# ------------------------------------------------------------------------------------
# Test data: random and real-like (skewed snowmelt hydrographs), with NaNs
# ------------------------------------------------------------------------------------


def snowmelt_flows(years: int, seed: int) -> np.ndarray:
    """Decade means of a snow-fed river: low winter base flow, a skewed June peak."""
    rng = np.random.default_rng(seed)
    decade = np.arange(36 * years) % 36
    base = 120 + 1400 * np.exp(-0.5 * ((decade - 17) / 4.0) ** 2)
    year = np.repeat(np.exp(rng.normal(0, 0.35, years)), 36)  # wet and dry years
    return base * year * np.exp(rng.normal(0, 0.15, decade.size))


def case(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Observed and simulated series; NaNs where the name says."""
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    if name == "gaussian":
        obs = rng.normal(50, 10, 200)
        sim = obs + rng.normal(1, 5, 200)
    elif name == "uniform-small":
        obs = rng.uniform(1, 10, 7)
        sim = rng.uniform(1, 10, 7)
    elif name.startswith("snowmelt"):
        obs = snowmelt_flows(12, seed=7)
        sim = 0.9 * obs * np.exp(rng.normal(0, 0.25, obs.size)) + 15
    elif name == "lognormal":
        obs = np.exp(rng.normal(4, 1.2, 365))
        sim = obs * np.exp(rng.normal(0.1, 0.5, 365))
    else:
        raise KeyError(name)
    if "nan-obs" in name:
        obs[rng.choice(obs.size, obs.size // 8, replace=False)] = np.nan
    if "nan-both" in name:
        obs[rng.choice(obs.size, obs.size // 8, replace=False)] = np.nan
        sim[rng.choice(sim.size, sim.size // 8, replace=False)] = np.nan
    return obs, sim


CASES = ["gaussian", "uniform-small", "lognormal", "snowmelt", "snowmelt nan-obs", "snowmelt nan-both"]


def for_hydroeval(obs: np.ndarray, sim: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """hydroeval drops cases with a NaN observation only; drop the NaN forecasts first.

    The observed NaNs are left in place, so that hydroeval's own deletion is exercised.
    """
    keep = ~np.isnan(sim)
    return obs[keep], sim[keep]


def he(fn: Callable[..., np.ndarray], obs: np.ndarray, sim: np.ndarray) -> np.ndarray:
    o, s = for_hydroeval(obs, sim)
    return np.asarray(hydroeval.evaluator(fn, s, o)).ravel()


# ------------------------------------------------------------------------------------
# Agreement with the reference libraries
# ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CASES)
def test_nse_agrees_with_hydroeval_and_hydroerr(name: str) -> None:
    obs, sim = case(name)
    ours = M.nse(obs, sim)
    agree(ours, he(hydroeval.nse, obs, sim)[0])
    agree(ours, quiet(HydroErr.nse, sim, obs))


@pytest.mark.parametrize("name", CASES)
def test_kge_2009_and_its_components_agree(name: str) -> None:
    obs, sim = case(name)
    ours = M.kge(obs, sim)
    kge_, r, alpha, beta = he(hydroeval.kge, obs, sim)  # hydroeval: [kge, r, alpha, beta]
    for a, b in zip(ours, (kge_, r, alpha, beta), strict=True):
        agree(a, b)
    r, alpha, beta, kge_ = quiet(HydroErr.kge_2009, sim, obs, return_all=True)  # (r, alpha, beta, kge)
    for a, b in zip(ours, (kge_, r, alpha, beta), strict=True):
        agree(a, b)
    agree(ours.kge, quiet(HydroErr.kge_2009, sim, obs))


@pytest.mark.parametrize("name", CASES)
def test_kge_2012_and_its_components_agree(name: str) -> None:
    obs, sim = case(name)
    ours = M.kge_prime(obs, sim)
    kge_, r, gamma, beta = he(hydroeval.kgeprime, obs, sim)
    for a, b in zip(ours, (kge_, r, gamma, beta), strict=True):
        agree(a, b)
    r, gamma, beta, kge_ = quiet(HydroErr.kge_2012, sim, obs, return_all=True)
    for a, b in zip(ours, (kge_, r, gamma, beta), strict=True):
        agree(a, b)
    # gamma is alpha / beta: the CV ratio
    k = M.kge(obs, sim)
    agree(ours.gamma, k.alpha / k.beta)


@pytest.mark.parametrize("name", CASES)
def test_pbias_follows_hydroeval_sign_and_relates_to_hydroerr_me(name: str) -> None:
    obs, sim = case(name)
    ours = M.pbias(obs, sim)
    agree(ours, he(hydroeval.pbias, obs, sim)[0])
    # HydroErr has no PBIAS; its mean error me = mean(sim - obs) gives it with the sign flipped
    ok = ~np.isnan(obs) & ~np.isnan(sim)
    agree(ours, -100.0 * quiet(HydroErr.me, sim, obs) / np.mean(obs[ok]))
    agree(ours, 100.0 * (1.0 - M.kge(obs, sim).beta))


def test_pbias_is_positive_when_the_forecast_is_too_low() -> None:
    obs = np.array([10.0, 20.0, 30.0])
    assert M.pbias(obs, obs * 0.9) == pytest.approx(10.0)
    assert M.pbias(obs, obs * 1.1) == pytest.approx(-10.0)
    # hydroGOF's pbias, 100 sum(sim - obs) / sum(obs), is the negative
    assert M.pbias(obs, obs * 0.9) == pytest.approx(-100 * np.sum(obs * 0.9 - obs) / np.sum(obs))


@pytest.mark.parametrize("name", CASES)
def test_rmse_agrees(name: str) -> None:
    obs, sim = case(name)
    ours = M.rmse(obs, sim)
    agree(ours, he(hydroeval.rmse, obs, sim)[0])
    agree(ours, quiet(HydroErr.rmse, sim, obs))


@pytest.mark.parametrize("name", CASES)
def test_mse_skill_agrees_with_hydroerr_mse_and_is_nse_against_the_mean(name: str) -> None:
    obs, sim = case(name)
    rng = np.random.default_rng(3)
    ref = np.where(np.isnan(obs), np.nan, np.nanmean(obs)) + rng.normal(0, 1, obs.size)
    ok = ~np.isnan(obs) & ~np.isnan(sim) & ~np.isnan(ref)
    expected = 1.0 - HydroErr.mse(sim[ok], obs[ok]) / HydroErr.mse(ref[ok], obs[ok])
    agree(M.mse_skill(obs, sim, ref), expected)
    # against the observed mean of the same cases, the MSE skill is the NSE
    o, s = obs[ok], sim[ok]
    agree(M.mse_skill(o, s, np.full(o.size, o.mean())), HydroErr.nse(s, o))
    assert M.skill_score(2.0, 8.0) == pytest.approx(0.75)


@pytest.mark.parametrize("name", ["snowmelt", "snowmelt nan-both", "gaussian"])
def test_s_over_sigma_delta_squared_is_one_minus_nse_of_the_change(name: str) -> None:
    """(S/sigma_delta)^2 = 1 - NSE(forecast change, observed change), whatever n or n-1."""
    obs, sim = case(name)
    now = np.concatenate(([np.nan], obs[:-1]))  # the last observed value before each case
    ok = ~np.isnan(obs) & ~np.isnan(sim) & ~np.isnan(now)
    ratio = M.s_over_sigma_delta(obs, sim, now)
    d_obs, d_sim = obs[ok] - now[ok], sim[ok] - now[ok]
    agree(ratio**2, 1.0 - float(hydroeval.evaluator(hydroeval.nse, d_sim, d_obs)[0]))
    agree(ratio**2, 1.0 - HydroErr.nse(d_sim, d_obs))
    # sigma_delta of the same cases (those with a forecast too), with n - 1
    agree(M.sigma_delta(now[ok], obs[ok]), np.std(d_obs, ddof=1))


def test_hydroeval_and_hydroerr_agree_with_each_other_on_these_inputs() -> None:
    """The two references disagree only in what they drop (NaN forecasts) and how they fail."""
    for name in CASES:
        obs, sim = case(name)
        o, s = for_hydroeval(obs, sim)
        for he_fn, hr_fn in ((hydroeval.nse, HydroErr.nse), (hydroeval.rmse, HydroErr.rmse)):
            agree(float(hydroeval.evaluator(he_fn, s, o)[0]), quiet(hr_fn, sim, obs))
    obs, sim = case("snowmelt nan-both")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # hydroeval keeps the NaN forecasts and returns NaN; HydroErr drops those pairs
        assert np.isnan(hydroeval.evaluator(hydroeval.nse, sim, obs)[0])
        assert np.isfinite(HydroErr.nse(sim, obs))


# ------------------------------------------------------------------------------------
# NaN handling and vectorisation
# ------------------------------------------------------------------------------------


def test_pairs_with_a_nan_on_either_side_are_dropped() -> None:
    obs = np.array([1.0, 2.0, np.nan, 4.0, 5.0, 3.0])
    sim = np.array([1.5, np.nan, 3.0, 3.5, 5.5, np.inf])
    keep = np.array([True, False, False, True, True, False])
    for fn in (M.nse, M.rmse, M.pbias):
        assert fn(obs, sim) == pytest.approx(fn(obs[keep], sim[keep]), abs=1e-12)
    assert M.kge(obs, sim) == pytest.approx(M.kge(obs[keep], sim[keep]))


def test_metrics_along_an_axis_equal_the_per_column_values() -> None:
    rng = np.random.default_rng(11)
    obs = np.exp(rng.normal(4, 0.8, (60, 4)))
    sim = obs * np.exp(rng.normal(0, 0.3, (60, 4)))
    ref = np.roll(obs, 1, axis=0)
    obs[rng.random(obs.shape) < 0.1] = np.nan
    sim[rng.random(sim.shape) < 0.1] = np.nan
    for j in range(4):
        o, s, r = obs[:, j], sim[:, j], ref[:, j]
        assert M.nse(obs, sim, axis=0)[j] == pytest.approx(M.nse(o, s), rel=1e-12)
        assert M.nse(obs.T, sim.T, axis=1)[j] == pytest.approx(M.nse(o, s), rel=1e-12)
        assert M.kge(obs, sim, axis=0).kge[j] == pytest.approx(M.kge(o, s).kge, rel=1e-12)
        assert M.kge_prime(obs, sim, axis=0).gamma[j] == pytest.approx(M.kge_prime(o, s).gamma)
        assert M.pbias(obs, sim, axis=0)[j] == pytest.approx(M.pbias(o, s))
        assert M.rmse(obs, sim, axis=-2)[j] == pytest.approx(M.rmse(o, s))
        assert M.mse_skill(obs, sim, ref, axis=0)[j] == pytest.approx(M.mse_skill(o, s, r))
        assert M.s_over_sigma_delta(obs, sim, ref, axis=0)[j] == pytest.approx(
            M.s_over_sigma_delta(o, s, r)
        )
        assert M.p_within(obs, sim, ref, axis=0)[j] == pytest.approx(M.p_within(o, s, r))
    assert isinstance(M.nse(obs, sim), float)
    with pytest.raises(np.exceptions.AxisError):
        M.nse(obs, sim, axis=2)


def test_undefined_values_are_nan_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(M.nse([3.0, 3.0, 3.0], [1.0, 2.0, 3.0]))  # constant observations
        assert np.isnan(M.kge([3.0, 3.0], [1.0, 2.0]).kge)
        assert np.isnan(M.kge([1.0], [1.0]).r)
        assert np.isnan(M.rmse([np.nan], [1.0]))
        assert np.isnan(M.sigma_delta([1.0], [2.0]))
        assert np.isnan(M.p_within([1.0], [1.0], [0.5]))
        assert np.isnan(M.crps_quantiles([np.nan], [[1.0, 2.0, 3.0]], [0.1, 0.5, 0.9]))


# ------------------------------------------------------------------------------------
# Quantile score, CRPS, coverage
# ------------------------------------------------------------------------------------


def test_quantile_score_on_three_numbers() -> None:
    # QS_tau(q, y) = tau (y - q) above the quantile, (1 - tau) (q - y) below
    y = np.array([1.0, 2.0, 4.0])
    q = np.full((3, 2), 2.0)
    qs = M.quantile_score(y, q, [0.1, 0.9])
    assert qs[0] == pytest.approx((0.9 * 1 + 0 + 0.1 * 2) / 3)
    assert qs[1] == pytest.approx((0.1 * 1 + 0 + 0.9 * 2) / 3)


def test_crps_of_point_forecasts() -> None:
    levels = list(QUANTILES)
    assert M.crps_quantiles(7.0, [7.0] * 5, levels) == 0.0
    # a point mass at q: the exact CRPS is |q - y|, and the symmetric levels give it too
    assert M.crps_quantiles(7.0, [10.0] * 5, levels) == pytest.approx(3.0)
    assert M.crps_quantiles(12.0, [10.0] * 5, levels) == pytest.approx(2.0)
    assert M.crps_ensemble(7.0, [10.0, 10.0]) == pytest.approx(3.0)


def test_crps_quantiles_by_hand() -> None:
    # levels 0.25, 0.5, 0.75: cells (0, .375], (.375, .625], (.625, 1], weights .375 .25 .375
    w, mid = M.quantile_weights([0.25, 0.5, 0.75])
    assert w.tolist() == pytest.approx([0.375, 0.25, 0.375])
    assert mid.tolist() == pytest.approx([0.1875, 0.5, 0.8125])
    q, y = [1.0, 2.0, 4.0], 3.0
    by_hand = 2 * (0.375 * 0.25 * 2 + 0.25 * 0.5 * 1 + 0.375 * 0.25 * 1)
    assert M.crps_quantiles(y, q, [0.25, 0.5, 0.75]) == pytest.approx(by_hand)
    assert M.quantile_weights(QUANTILES)[0].tolist() == pytest.approx([0.15, 0.225, 0.25, 0.225, 0.15])
    with pytest.raises(ValueError):
        M.quantile_weights([0.5, 0.25])


@pytest.mark.parametrize("levels", [QUANTILES, (0.1, 0.3, 0.5, 0.9)])
def test_crps_quantiles_is_the_step_distribution_crps_plus_the_midpoint_term(
    levels: tuple[float, ...],
) -> None:
    """CRPS_Q = properscoring.crps_ensemble(y, q, weights=w) + 2 sum w (mid - tau)(q - y)."""
    lv = np.asarray(levels)
    rng = np.random.default_rng(5)
    n = 400
    centre = np.exp(rng.normal(5, 0.7, n))
    q = np.sort(centre[:, None] * np.exp(rng.normal(0, 0.3, (n, lv.size))), axis=1)
    y = centre * np.exp(rng.normal(0, 0.35, n))
    w, mid = M.quantile_weights(lv)
    exact_step = properscoring.crps_ensemble(y, q, weights=np.broadcast_to(w, q.shape))
    expected = exact_step + 2 * np.sum(w * (mid - lv) * (q - y[:, None]), axis=1)
    per_case = M.crps_quantiles(y[:, None], q[:, None, :], lv, axis=1)
    np.testing.assert_allclose(per_case, expected, rtol=TOL, atol=TOL)
    agree(M.crps_quantiles(y, q, lv), float(np.mean(expected)))


def test_crps_quantiles_approaches_the_exact_gaussian_crps() -> None:
    rng = np.random.default_rng(2)
    mu, sigma = rng.normal(100, 20, 2000), rng.uniform(5, 15, 2000)
    y = rng.normal(mu, sigma)
    exact = float(np.mean(properscoring.crps_gaussian(y, mu, sigma)))
    dense = np.arange(1, 200) / 200
    q_dense = norm.ppf(dense, mu[:, None], sigma[:, None])
    assert M.crps_quantiles(y, q_dense, dense) == pytest.approx(exact, rel=0.005)
    five = np.asarray(QUANTILES)
    q_five = norm.ppf(five, mu[:, None], sigma[:, None])
    low = M.crps_quantiles(y, q_five, five) / exact - 1
    assert -0.05 < low < -0.01  # about 3 % low: the tails beyond 0.05 and 0.95 are missing


def test_crps_ensemble_agrees_with_properscoring() -> None:
    rng = np.random.default_rng(9)
    y = rng.normal(0, 1, 300)
    x = rng.normal(0.2, 1.3, (300, 11))
    w = rng.uniform(0.1, 1, 11)
    agree(M.crps_ensemble(y, x), float(np.mean(properscoring.crps_ensemble(y, x))))
    weighted = properscoring.crps_ensemble(y, x, weights=np.broadcast_to(w, x.shape))
    agree(M.crps_ensemble(y, x, w), float(np.mean(weighted)))
    y[:10] = np.nan
    x[10:20, 3] = np.nan
    keep = slice(20, None)
    agree(M.crps_ensemble(y, x), float(np.mean(properscoring.crps_ensemble(y[keep], x[keep]))))


def test_coverage_counts_the_bounds_as_inside() -> None:
    obs = [1.0, 2.0, 3.0, 4.0, np.nan]
    lower = [0.0, 2.5, 3.0, 0.0, 0.0]
    upper = [2.0, 3.0, 3.0, 3.9, 1.0]
    assert M.coverage(obs, lower, upper) == pytest.approx(0.5)
    assert M.coverage([1.0, 2.0], [np.nan, 0.0], [3.0, 1.0]) == 0.0


# ------------------------------------------------------------------------------------
# Central Asian criteria
# ------------------------------------------------------------------------------------


def test_sigma_delta_s_and_p_by_hand() -> None:
    now = np.array([10.0, 10.0, 10.0, 10.0])
    obs = np.array([12.0, 8.0, 14.0, 6.0])  # changes 2, -2, 4, -4: mean 0
    sd = np.sqrt((4 + 4 + 16 + 16) / 3)  # n - 1
    assert M.sigma_delta(now, obs) == pytest.approx(sd)
    forecast = np.array([11.0, 9.0, 13.0, 7.0])  # errors +-1: S = sqrt(4 / 3)
    assert M.s_over_sigma_delta(obs, forecast, now) == pytest.approx(np.sqrt(4 / 3) / sd)
    assert M.p_within(obs, forecast, now) == 1.0  # all |1| <= 0.674 * 3.65 = 2.46
    misses = np.array([15.0, 8.0, 14.0, 6.0])  # one error of 3 > 2.46
    assert M.p_within(obs, misses, now) == pytest.approx(0.75)
    assert M.p_within(obs, misses, now, factor=1.0) == 1.0  # 3 <= 3.65
    # persistence forecasts (no change): S / sigma_delta = sqrt(sum d^2 / sum (d - mean d)^2)
    assert M.s_over_sigma_delta(obs, now, now) == pytest.approx(np.sqrt(40 / 40))
    # a missing value at issue time drops the case from all three
    now2 = np.array([10.0, 10.0, 10.0, np.nan])
    assert M.sigma_delta(now2, obs) == pytest.approx(np.std([2.0, -2.0, 4.0], ddof=1))
    assert M.p_within(obs, misses, now2) == pytest.approx(2 / 3)


def test_p_and_s_over_sigma_delta_draw_the_same_lines_for_normal_errors() -> None:
    # P = 2 Phi(0.674 / (S / sigma_delta)) - 1 for unbiased normal errors
    assert 2 * norm.cdf(0.674 / 0.5) - 1 == pytest.approx(0.82, abs=0.005)
    assert 2 * norm.cdf(0.674 / 0.8) - 1 == pytest.approx(0.60, abs=0.005)
    rng = np.random.default_rng(4)
    n = 200_000
    now = rng.normal(100, 5, n)
    obs = now + rng.normal(0, 10, n)
    forecast = obs + rng.normal(0, 5, n)  # S / sigma_delta = 0.5
    assert M.s_over_sigma_delta(obs, forecast, now) == pytest.approx(0.5, abs=0.005)
    assert M.p_within(obs, forecast, now) == pytest.approx(0.822, abs=0.005)


def test_rating_boundaries_and_the_worse_of_the_two() -> None:
    assert M.rating(0.50, 0.82) == "good"
    assert M.rating(0.5000001, 0.99) == "satisfactory"
    assert M.rating(0.30, 0.8199) == "satisfactory"
    assert M.rating(0.80, 0.60) == "satisfactory"
    assert M.rating(0.8000001, 0.99) == "unsatisfactory"
    assert M.rating(0.10, 0.5999) == "unsatisfactory"
    assert M.rating(0.9, 0.9) == "unsatisfactory"
    assert M.rating(float("nan"), 0.9) == "unrated"
    strict = M.RatingThresholds(s_good=0.4, s_satisfactory=0.6, p_good=0.9, p_satisfactory=0.7)
    assert M.rating(0.45, 0.95, strict) == "satisfactory"
    assert M.rating(0.45, 0.95) == "good"
    with pytest.raises(ValidationError):
        M.RatingThresholds(s_good=0.9, s_satisfactory=0.8)
    with pytest.raises(ValidationError):
        M.RatingThresholds(p_good=0.5)
    with pytest.raises(ValidationError):
        M.RatingThresholds(s_bad=1.0)  # type: ignore[call-arg]


# ------------------------------------------------------------------------------------
# score_table
# ------------------------------------------------------------------------------------


def hindcast(
    seed: int = 1, n_issue: int = 120, leads: int = 3, perfect: bool = False
) -> dict[str, xr.DataArray]:
    """Decade hindcast of a snowmelt river: observed, last observed, quantiles, references."""
    rng = np.random.default_rng(seed)
    flow = snowmelt_flows(years=n_issue // 36 + 2, seed=seed)
    issue = np.datetime64("2010-01-01") + np.arange(n_issue) * np.timedelta64(10, "D")
    lead = np.arange(1, leads + 1)
    start = 5
    observed = np.stack([flow[start + k : start + k + n_issue] for k in range(leads)], axis=1)
    last = flow[start - 1 : start - 1 + n_issue]
    clim_by_decade = np.array([flow[d::36].mean() for d in range(36)])
    clim = clim_by_decade[(start + np.arange(n_issue)[:, None] + lead[None, :] - 1) % 36]
    if perfect:
        median = observed
        spread = np.zeros((n_issue, leads, 1))
    else:
        median = observed * np.exp(rng.normal(0, 0.1 * lead, (n_issue, leads)))
        spread = 0.15 * np.sqrt(lead)[None, :, None] * median[..., None]
    z = norm.ppf(np.asarray(QUANTILES))
    q = median[..., None] + spread * z
    coords = {"issue_time": issue, "lead": lead}
    da = lambda a: xr.DataArray(a, dims=("issue_time", "lead"), coords=coords, attrs={"units": "m3/s"})  # noqa: E731
    return {
        "observed": da(observed),
        "last_observed": xr.DataArray(last, dims=("issue_time",), coords={"issue_time": issue}),
        "quantiles": xr.DataArray(
            q, dims=("issue_time", "lead", "quantile"), coords={**coords, "quantile": list(QUANTILES)}
        ),
        "persistence": da(np.repeat(last[:, None], leads, axis=1)),
        "climatology": da(clim),
    }


def test_score_table_shape_and_variables() -> None:
    h = hindcast()
    table = M.score_table(**h)
    assert set(table.dims) == {"lead"}
    assert table.sizes["lead"] == 3
    expected = {
        "n", "nse", "kge", "kge_r", "kge_alpha", "kge_beta", "kge_prime", "kge_prime_gamma",
        "pbias", "rmse", "skill_persistence", "skill_climatology", "crps", "coverage",
        "sigma_delta", "s_sigma_delta", "p_within", "rating",
    }
    assert set(table.data_vars) == expected
    assert table["n"].values.tolist() == [120, 120, 120]
    assert set(table["rating"].values.tolist()) <= {"good", "satisfactory", "unsatisfactory"}
    assert table["rmse"].attrs["units"] == "m3/s"
    assert table.attrs["threshold_p_good"] == 0.82
    # errors grow with the lead
    assert table["rmse"].values[0] < table["rmse"].values[-1]


def test_score_table_equals_the_functions_lead_by_lead() -> None:
    h = hindcast(seed=4)
    h["observed"][::7, 1] = np.nan
    h["quantiles"][3::11, 2, 4] = np.nan
    h["last_observed"][5] = np.nan
    table = M.score_table(**h)
    for j, lead in enumerate(table["lead"].values):
        o = h["observed"].sel(lead=lead).values
        q = h["quantiles"].sel(lead=lead).values
        med, lo, hi = q[:, 2], q[:, 0], q[:, 4]
        now = h["last_observed"].values
        row = table.sel(lead=lead)
        assert int(row["n"]) == int(np.sum(~np.isnan(o) & ~np.isnan(med)))
        assert float(row["nse"]) == pytest.approx(M.nse(o, med), rel=1e-12)
        assert float(row["kge"]) == pytest.approx(M.kge(o, med).kge, rel=1e-12)
        assert float(row["kge_prime_gamma"]) == pytest.approx(M.kge_prime(o, med).gamma)
        assert float(row["pbias"]) == pytest.approx(M.pbias(o, med))
        assert float(row["skill_persistence"]) == pytest.approx(
            M.mse_skill(o, med, h["persistence"].sel(lead=lead).values)
        )
        assert float(row["skill_climatology"]) == pytest.approx(
            M.mse_skill(o, med, h["climatology"].sel(lead=lead).values)
        )
        assert float(row["crps"]) == pytest.approx(M.crps_quantiles(o, q, QUANTILES))
        assert float(row["coverage"]) == pytest.approx(M.coverage(o, lo, hi))
        keep = ~np.isnan(o) & ~np.isnan(med) & ~np.isnan(now)
        assert float(row["sigma_delta"]) == pytest.approx(M.sigma_delta(now[keep], o[keep]))
        assert float(row["s_sigma_delta"]) == pytest.approx(M.s_over_sigma_delta(o, med, now))
        assert float(row["p_within"]) == pytest.approx(M.p_within(o, med, now))
        assert row["rating"].item() == M.rating(M.s_over_sigma_delta(o, med, now), M.p_within(o, med, now))
        assert j < 3


def test_score_table_of_a_perfect_forecast() -> None:
    table = M.score_table(**hindcast(perfect=True))
    for name, value in {
        "nse": 1.0, "kge": 1.0, "kge_prime": 1.0, "rmse": 0.0, "pbias": 0.0,
        "skill_persistence": 1.0, "skill_climatology": 1.0, "crps": 0.0, "coverage": 1.0,
        "s_sigma_delta": 0.0, "p_within": 1.0,
    }.items():
        np.testing.assert_allclose(table[name].values, value, atol=1e-12, err_msg=name)
    assert table["rating"].values.tolist() == ["good"] * 3


def test_score_table_carries_stations_and_aligns_on_labels() -> None:
    a, b = hindcast(seed=1), hindcast(seed=2)
    stacked = {k: xr.concat([a[k], b[k]], dim=xr.DataArray(["A", "B"], dims="station")) for k in a}
    # observations known for more issue times than forecast: the inner join drops them
    stacked["observed"] = xr.concat(
        [stacked["observed"], stacked["observed"].isel(issue_time=[-1]).assign_coords(
            issue_time=[np.datetime64("2030-01-01", "ns")])],
        dim="issue_time",
    )
    stacked["quantiles"] = stacked["quantiles"].transpose("quantile", "lead", "station", "issue_time")
    table = M.score_table(**stacked)
    assert dict(table.sizes) == {"station": 2, "lead": 3}
    single = M.score_table(**b)
    for name in ("nse", "kge", "crps", "s_sigma_delta", "p_within", "n"):
        np.testing.assert_allclose(table[name].sel(station="B").values, single[name].values, rtol=1e-12)
    assert table["rating"].sel(station="B").values.tolist() == single["rating"].values.tolist()


def test_score_table_needs_the_median_and_band_levels() -> None:
    h = hindcast()
    h["quantiles"] = h["quantiles"].isel(quantile=[0, 1, 3, 4])
    with pytest.raises(ValueError, match="0.5"):
        M.score_table(**h)
