"""Verification metrics of flow forecasts: per station and lead, from rolling-origin hindcasts.

Every metric is a pure numpy function over a *sample of cases* (the issue times of one
lead, say). Conventions shared by all of them:

* Arguments are array-likes of the same shape (or broadcastable to it). ``axis=None``
  scores all elements as one sample and returns a ``float``; an integer ``axis`` scores
  along that axis and returns an array of the remaining shape (this is how
  :func:`score_table` scores every lead, and every station, at once).
* Missing data: a case is dropped when any of its values is NaN or infinite (pairwise,
  or triple-wise for the metrics that take three arrays), as HydroErr does by default.
  hydroeval only drops cases whose *observation* is NaN; on data without NaN forecasts
  both libraries and this module agree to 1e-9 (``tests/forecast/test_forecast_metrics.py``).
* Undefined values are NaN, silently: an empty sample, a constant observed series for the
  efficiencies (NSE, KGE: the references give -inf, inf or NaN with a warning there),
  fewer than two cases for standard deviations.
* "obs" is the observed value, "sim"/"forecast" the point forecast (the median of a
  quantile forecast), in the argument order ``(obs, sim)``. **hydroeval and HydroErr
  take ``(simulations, evaluation)``, i.e. the other way round.**

Groups:

* Efficiencies and errors: :func:`nse`, :func:`kge` (Gupta et al. 2009),
  :func:`kge_prime` (Kling et al. 2012), :func:`pbias`, :func:`rmse`, :func:`mse_skill`
  (skill against persistence or climatology), :func:`skill_score`.
* Probabilistic: :func:`quantile_score`, :func:`crps_quantiles` (the CRPS of the
  quantile forecast, by the quantile-score integral), :func:`crps_ensemble` (exact CRPS
  of an ensemble / discrete distribution), :func:`coverage`.
* The Central Asian hydromet criteria (the Soviet *Наставление по службе прогнозов*,
  section 3, part I, "Служба гидрологических прогнозов", whose rules the Uzbek and
  Kazakh services inherited): :func:`sigma_delta`, :func:`s_over_sigma_delta`,
  :func:`p_within`, :func:`rating` with :class:`RatingThresholds`.
* :func:`score_table`: all of them per lead from xarray hindcasts.

Provenance of the Central Asian definitions: the Nastavlenie (Gidrometeoizdat, 1962;
RD 52.27 series since) and the textbook it rests on (Popov, *Гидрологические прогнозы*,
1979) were not available in machine-readable form when this was written; the formulas
follow them as they are taught and applied (S and sigma_delta both with n - 1, permissible
error 0.674 sigma_delta, S/sigma_delta <= 0.50 / 0.80, P >= 82 % / 60 %). Two independent
checks support them: the P thresholds are exactly what the S/sigma_delta thresholds
imply for normal errors (see :func:`p_within`), and hydrosolutions' SAPPHIRE Forecast
Tools, written for the Kyrgyz hydromet service, compute S and sigma with n - 1 and the
accuracy as the share of errors within 0.674 sigma in the same way (they use sigma of the
flow, the long-range variant, where watermon uses sigma_delta, the short-range one).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "DEFAULT_FACTOR",
    "KGE",
    "KGEPrime",
    "Rating",
    "RatingThresholds",
    "coverage",
    "crps_ensemble",
    "crps_quantiles",
    "kge",
    "kge_prime",
    "mse_skill",
    "nse",
    "p_within",
    "pbias",
    "quantile_score",
    "quantile_weights",
    "rating",
    "rmse",
    "s_over_sigma_delta",
    "score_table",
    "sigma_delta",
    "skill_score",
]

FloatOrArray = float | npt.NDArray[np.float64]
"""A ``float`` when the whole input is one sample (``axis=None``), else an array."""

Rating = Literal["good", "satisfactory", "unsatisfactory", "unrated"]

DEFAULT_FACTOR = 0.674
"""The Nastavlenie's permissible error is 0.674 sigma_delta: 0.674 ~ Phi^-1(0.75), the
"probable deviation", so half of normally distributed changes lie within it."""


# --------------------------------------------------------------------------------------
# Sample handling
# --------------------------------------------------------------------------------------


def _cases(
    *arrays: npt.ArrayLike, axis: int | None, trailing: int = 0
) -> tuple[list[npt.NDArray[np.float64]], npt.NDArray[np.bool_]]:
    """Broadcast, move the sample axis last, and mask the incomplete cases.

    ``trailing`` counts extra dimensions at the end of the *last* array (the quantile
    or member axis) that are not part of the case index: a case is complete when all
    of those values are finite too. Masked values are replaced by 0 so that sums over
    the sample axis need no NaN handling.
    """
    arrs = [np.asarray(a, dtype=np.float64) for a in arrays]
    last = arrs[-1]
    extra = last.shape[last.ndim - trailing :]
    case_shape = np.broadcast_shapes(
        *(a.shape for a in arrs[:-1]), last.shape[: last.ndim - trailing]
    )
    arrs = [np.broadcast_to(a, case_shape) for a in arrs[:-1]]
    arrs.append(np.broadcast_to(last, case_shape + extra))
    ndim = len(case_shape)
    if axis is None or ndim == 0:  # one sample of all the cases
        arrs = [a.reshape((-1,) + a.shape[ndim:]) for a in arrs]
        ndim, ax = 1, 0
    else:
        if not -ndim <= axis < ndim:
            raise np.exceptions.AxisError(axis, ndim)
        ax = axis % ndim
    arrs = [np.moveaxis(a, ax, ndim - 1) for a in arrs]
    ok = np.ones(arrs[0].shape[:ndim], dtype=bool)
    for a in arrs:
        finite = np.asarray(np.isfinite(a), dtype=bool)
        if a.ndim > ndim:
            finite = np.asarray(finite.all(axis=tuple(range(ndim, a.ndim))), dtype=bool)
        ok &= finite
    out = []
    for a in arrs:
        m = ok.reshape(ok.shape + (1,) * (a.ndim - ndim))
        out.append(np.where(m, a, 0.0))
    return out, ok


def _sum(x: npt.NDArray[np.float64], ok: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
    """Sum over the (last) sample axis of the complete cases, keeping the axis."""
    m = ok.reshape(ok.shape + (1,) * (x.ndim - ok.ndim))
    return np.sum(np.where(m, x, 0.0), axis=ok.ndim - 1, keepdims=True)


def _count(ok: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
    return np.sum(ok, axis=-1, keepdims=True).astype(np.float64)


def _mean(x: npt.NDArray[np.float64], ok: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
    n = _count(ok)
    n = n.reshape(n.shape + (1,) * (x.ndim - ok.ndim))
    with np.errstate(invalid="ignore", divide="ignore"):
        return _sum(x, ok) / n


def _div(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """a / b, NaN where b is 0 or where a or b is NaN (an undefined metric, no warning)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(b != 0, a / np.where(b != 0, b, 1.0), np.nan)


def _out(x: npt.NDArray[np.float64]) -> FloatOrArray:
    x = np.squeeze(x, axis=-1) if x.ndim else x
    return float(x) if x.ndim == 0 else x


def _nan_if(x: npt.NDArray[np.float64], cond: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
    return np.where(cond, np.nan, x)


# --------------------------------------------------------------------------------------
# Efficiencies and errors
# --------------------------------------------------------------------------------------


def nse(obs: npt.ArrayLike, sim: npt.ArrayLike, *, axis: int | None = None) -> FloatOrArray:
    """Nash-Sutcliffe efficiency.

    ``NSE = 1 - sum (s_i - o_i)^2 / sum (o_i - mean(o))^2`` (Nash and Sutcliffe 1970,
    J. Hydrol. 10(3), 282-290). 1 is perfect, 0 is as good as the observed mean of the
    sample. Equals hydroeval's ``nse`` and HydroErr's ``nse``. NaN when the observations
    are constant (the references give -inf) or the sample is empty.
    """
    (o, s), ok = _cases(obs, sim, axis=axis)
    dev = o - _mean(o, ok)
    return _out(1.0 - _div(_sum((s - o) ** 2, ok), _sum(dev**2, ok)))


class KGE(NamedTuple):
    """Kling-Gupta efficiency (2009) and its components."""

    kge: FloatOrArray
    r: FloatOrArray
    """Pearson correlation of forecast and observation."""
    alpha: FloatOrArray
    """Variability ratio sigma_sim / sigma_obs."""
    beta: FloatOrArray
    """Bias ratio mean_sim / mean_obs."""


class KGEPrime(NamedTuple):
    """Modified Kling-Gupta efficiency (2012) and its components."""

    kge: FloatOrArray
    r: FloatOrArray
    gamma: FloatOrArray
    """Ratio of the coefficients of variation (sigma_s / mu_s) / (sigma_o / mu_o)."""
    beta: FloatOrArray


_F = npt.NDArray[np.float64]


def _kge_parts(
    obs: npt.ArrayLike, sim: npt.ArrayLike, axis: int | None
) -> tuple[_F, _F, _F, _F, _F, npt.NDArray[np.bool_]]:
    """r, alpha, beta, the two means and the case mask, with the sample axis kept."""
    (o, s), ok = _cases(obs, sim, axis=axis)
    mo, ms = _mean(o, ok), _mean(s, ok)
    do, ds = o - mo, s - ms
    sxy, sxx, syy = _sum(ds * do, ok), _sum(do**2, ok), _sum(ds**2, ok)
    r = _div(sxy, np.sqrt(syy * sxx))
    alpha = np.sqrt(_div(syy, sxx))  # sigma ratio: independent of n or n - 1
    beta = _div(ms, mo)
    return r, alpha, beta, mo, ms, ok


def kge(obs: npt.ArrayLike, sim: npt.ArrayLike, *, axis: int | None = None) -> KGE:
    """Kling-Gupta efficiency of Gupta et al. (2009), with its components.

    ``KGE = 1 - sqrt((r - 1)^2 + (alpha - 1)^2 + (beta - 1)^2)`` with ``r`` the Pearson
    correlation, ``alpha = sigma_s / sigma_o`` and ``beta = mu_s / mu_o``
    (Gupta, Kling, Yilmaz and Martinez 2009, J. Hydrol. 377(1-2), 80-91, eq. 9).
    Returns ``KGE(kge, r, alpha, beta)``. hydroeval's ``kge`` returns the same four as a
    ``(4, k)`` array ``[kge, r, alpha, beta]``; HydroErr's ``kge_2009(...,
    return_all=True)`` returns ``(r, alpha, beta, kge)``. All NaN when the observations
    are constant or fewer than two cases remain.
    """
    r, alpha, beta, _, _, ok = _kge_parts(obs, sim, axis)
    value = 1.0 - np.sqrt((r - 1.0) ** 2 + (alpha - 1.0) ** 2 + (beta - 1.0) ** 2)
    few = _count(ok) < 2
    r, alpha, beta, value = (_nan_if(x, few) for x in (r, alpha, beta, value))
    return KGE(_out(value), _out(r), _out(alpha), _out(beta))


def kge_prime(obs: npt.ArrayLike, sim: npt.ArrayLike, *, axis: int | None = None) -> KGEPrime:
    """Modified Kling-Gupta efficiency KGE' of Kling et al. (2012), with its components.

    ``KGE' = 1 - sqrt((r - 1)^2 + (gamma - 1)^2 + (beta - 1)^2)`` with
    ``gamma = (sigma_s / mu_s) / (sigma_o / mu_o)`` the ratio of the coefficients of
    variation (so that bias and variability are not cross-correlated) and
    ``beta = mu_s / mu_o`` (Kling, Fuchs and Paulin 2012, J. Hydrol. 424-425, 264-277,
    eq. 4). Returns ``KGEPrime(kge, r, gamma, beta)``; hydroeval's ``kgeprime`` gives
    ``[kge', r, gamma, beta]`` and HydroErr's ``kge_2012(..., return_all=True)``
    ``(r, gamma, beta, kge')``.
    """
    r, alpha, _, mo, ms, ok = _kge_parts(obs, sim, axis)
    # gamma = (sigma_s/mu_s)/(sigma_o/mu_o), written as alpha * mu_o / mu_s
    gamma = _div(alpha * mo, ms)
    beta = _div(ms, mo)
    value = 1.0 - np.sqrt((r - 1.0) ** 2 + (gamma - 1.0) ** 2 + (beta - 1.0) ** 2)
    few = _count(ok) < 2
    r, gamma, beta, value = (_nan_if(x, few) for x in (r, gamma, beta, value))
    return KGEPrime(_out(value), _out(r), _out(gamma), _out(beta))


def pbias(obs: npt.ArrayLike, sim: npt.ArrayLike, *, axis: int | None = None) -> FloatOrArray:
    """Percent bias, in %, **positive when the forecast is too low** (hydroeval's sign).

    ``PBIAS = 100 * sum (o_i - s_i) / sum o_i`` as in hydroeval's ``pbias`` and in
    Moriasi et al. (2007, Trans. ASABE 50(3), 885-900, eq. 2), where positive values mean
    underestimation. Other conventions, to convert:

    * hydroGOF (R) ``pbias = 100 * sum (s - o) / sum o = -PBIAS`` (positive means
      overestimation);
    * HydroErr has no percent bias; with its mean error ``me = mean(s - o)``:
      ``PBIAS = -100 * me / mean(o)``.

    ``pbias(obs, sim) = 100 * (1 - beta)`` with ``beta`` of :func:`kge`.
    """
    (o, s), ok = _cases(obs, sim, axis=axis)
    return _out(_div(100.0 * _sum(o - s, ok), _sum(o, ok)))


def rmse(obs: npt.ArrayLike, sim: npt.ArrayLike, *, axis: int | None = None) -> FloatOrArray:
    """Root mean square error ``sqrt(mean (s_i - o_i)^2)``, divided by n (not n - 1).

    As hydroeval's and HydroErr's ``rmse``. Compare :func:`s_over_sigma_delta`, whose S
    divides by n - 1 as the Nastavlenie does.
    """
    (o, s), ok = _cases(obs, sim, axis=axis)
    return _out(np.sqrt(_mean((s - o) ** 2, ok)))


def mse_skill(
    obs: npt.ArrayLike,
    forecast: npt.ArrayLike,
    reference: npt.ArrayLike,
    *,
    axis: int | None = None,
) -> FloatOrArray:
    """Mean-square-error skill score of ``forecast`` against a ``reference`` forecast.

    ``SS = 1 - MSE(forecast) / MSE(reference)`` (Murphy 1988, Mon. Wea. Rev. 116,
    2417-2424; Wilks 2011, *Statistical Methods in the Atmospheric Sciences*, sec. 8.1.5),
    both MSEs over the *same* cases: those where observation, forecast and reference are
    all present (a skill score over different samples would be biased). 1 is perfect, 0
    no better than the reference. With persistence (the last observed value) as the
    reference this is the persistence index, with the observed mean of the sample it is
    the NSE. NaN when the reference is perfect.
    """
    (o, f, ref), ok = _cases(obs, forecast, reference, axis=axis)
    return _out(1.0 - _div(_sum((f - o) ** 2, ok), _sum((ref - o) ** 2, ok)))


def skill_score(
    score: npt.ArrayLike, reference: npt.ArrayLike, perfect: float = 0.0
) -> FloatOrArray:
    """Generic skill score ``(score - reference) / (perfect - reference)``, elementwise.

    For a negatively oriented score with perfect value 0 (MSE, CRPS) this is
    ``1 - score / reference``. Use :func:`mse_skill` for MSE skill from the data, which
    makes sure both scores come from the same cases.
    """
    s = np.asarray(score, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    out = _div(s - r, perfect - r)
    return float(out) if out.ndim == 0 else out


# --------------------------------------------------------------------------------------
# Probabilistic
# --------------------------------------------------------------------------------------


def _levels(q_levels: Sequence[float] | npt.ArrayLike) -> npt.NDArray[np.float64]:
    lv = np.asarray(q_levels, dtype=np.float64).reshape(-1)
    if lv.size == 0 or not np.all((lv > 0) & (lv < 1)) or np.any(np.diff(lv) <= 0):
        raise ValueError(f"quantile levels must increase strictly within (0, 1): {lv.tolist()}")
    return lv


def quantile_weights(
    q_levels: Sequence[float] | npt.ArrayLike,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Weights of the levels in the quantile-score integral, and their cells' midpoints.

    The unit interval is cut halfway between neighbouring levels (0 and 1 at the ends);
    level ``tau_k`` gets the width ``w_k`` of its cell ``(c_{k-1}, c_k]`` as its weight.
    Also returns the cell midpoints ``(c_{k-1} + c_k) / 2``. For the watermon levels
    0.05, 0.25, 0.5, 0.75, 0.95 the weights are 0.15, 0.225, 0.25, 0.225, 0.15.
    """
    lv = _levels(q_levels)
    cuts = np.concatenate(([0.0], (lv[1:] + lv[:-1]) / 2.0, [1.0]))
    return np.diff(cuts), (cuts[1:] + cuts[:-1]) / 2.0


def _pinball(
    y: npt.NDArray[np.float64], q: npt.NDArray[np.float64], tau: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Quantile (pinball) loss ``(1{y < q} - tau) (q - y)``, y broadcast against q."""
    return ((y < q).astype(np.float64) - tau) * (q - y)


def quantile_score(
    obs: npt.ArrayLike,
    q_values: npt.ArrayLike,
    q_levels: Sequence[float] | npt.ArrayLike,
    *,
    axis: int | None = None,
) -> npt.NDArray[np.float64]:
    """Mean quantile (pinball) score of each level, shape ``(..., n_levels)``.

    ``QS_tau(q, y) = (1{y < q} - tau) (q - y)``: ``tau (y - q)`` when the observation is
    at or above the quantile, ``(1 - tau) (q - y)`` when below (Koenker and Bassett 1978;
    Gneiting and Raftery 2007, JASA 102, 359-378, eq. 26). ``q_values`` has the shape of
    ``obs`` plus a last axis of the levels; a case is dropped when its observation or any
    of its quantiles is missing.
    """
    lv = _levels(q_levels)
    (o, q), ok = _cases(obs, q_values, axis=axis, trailing=1)
    if q.shape[-1] != lv.size:
        raise ValueError(f"{q.shape[-1]} quantile values for {lv.size} levels")
    loss = _pinball(o[..., None], q, lv)
    return np.squeeze(_mean(loss, ok), axis=-2)


def crps_quantiles(
    obs: npt.ArrayLike,
    q_values: npt.ArrayLike,
    q_levels: Sequence[float] | npt.ArrayLike,
    *,
    axis: int | None = None,
) -> FloatOrArray:
    """CRPS of a quantile forecast, **approximated** by the quantile-score integral.

    The exact identity ``CRPS(F, y) = 2 * integral_0^1 QS_tau(F^-1(tau), y) d tau``
    (Laio and Tamea 2007, HESS 11, 1267-1277; Gneiting and Ranjan 2011, JBES 29,
    411-422) is evaluated with the few given levels by the midpoint rule::

        CRPS_Q = 2 * sum_k w_k * QS_tau_k(q_k, y)

    with ``w_k`` the cell widths of :func:`quantile_weights` (0.15, 0.225, 0.25, 0.225,
    0.15 for the watermon levels), averaged over the cases. It has the units of the
    variable (m3/s), is 0 for a perfect point forecast, and equals the absolute error
    ``|q - y|`` for a point forecast (all quantiles equal ``q``) whenever the levels are
    symmetric about 0.5 (``sum w_k tau_k = 1/2``), as the exact CRPS of a point mass does.

    How it relates to the exact CRPS:

    * It converges to the CRPS of ``F`` as the levels fill (0, 1); with five levels the
      tails beyond 0.05 and 0.95 are missing, so it reads low: for calibrated Gaussian
      forecasts about 3 % below the exact value (``properscoring.crps_gaussian``; equal
      weights 0.2 would read 12 % low).
    * Exactly, it is the CRPS of the step-quantile distribution that puts mass ``w_k`` on
      ``q_k`` (``properscoring.crps_ensemble(y, q, weights=w)`` for sorted quantiles),
      plus ``2 * sum_k w_k (m_k - tau_k)(q_k - y)`` with ``m_k`` the cell midpoints; for
      symmetric levels the ``y`` term cancels and the correction is a constant of the
      forecast's spread, ``-2 * sum_k w_k (tau_k - m_k) q_k <= 0``. The test suite checks
      this identity against properscoring.

    Quantiles are scored as given (crossing quantiles are not sorted first).
    """
    lv = _levels(q_levels)
    w, _ = quantile_weights(lv)
    (o, q), ok = _cases(obs, q_values, axis=axis, trailing=1)
    if q.shape[-1] != lv.size:
        raise ValueError(f"{q.shape[-1]} quantile values for {lv.size} levels")
    per_case = 2.0 * np.sum(w * _pinball(o[..., None], q, lv), axis=-1)
    return _out(_mean(per_case, ok))


def crps_ensemble(
    obs: npt.ArrayLike,
    members: npt.ArrayLike,
    weights: npt.ArrayLike | None = None,
    *,
    axis: int | None = None,
) -> FloatOrArray:
    """Exact mean CRPS of an ensemble (a discrete distribution), members on the last axis.

    ``CRPS(F, y) = E|X - y| - 1/2 E|X - X'|`` with ``X, X'`` independent draws from the
    members with probabilities ``weights`` (equal when omitted) (Gneiting and Raftery
    2007, eq. 21; Hersbach 2000, Wea. Forecasting 15, 559-570). Computed from the sorted
    members in O(m log m); the same as ``properscoring.crps_ensemble`` case by case, then
    averaged over the cases. A case is dropped when its observation or any member is
    missing.
    """
    (o, x), ok = _cases(obs, members, axis=axis, trailing=1)
    m = x.shape[-1]
    if weights is None:
        p = np.full(x.shape, 1.0 / m)
    else:
        p = np.broadcast_to(np.asarray(weights, dtype=np.float64), x.shape)
        p = p / np.sum(p, axis=-1, keepdims=True)
    order = np.argsort(x, axis=-1)
    xs = np.take_along_axis(x, order, axis=-1)
    ps = np.take_along_axis(p, order, axis=-1)
    first = np.sum(ps * np.abs(xs - o[..., None]), axis=-1)
    # E|X - X'| = 2 sum_i p_i x_i (2 P_{<i} + p_i - 1), P_{<i} the mass below x_i
    below = np.cumsum(ps, axis=-1) - ps
    spread = 2.0 * np.sum(ps * xs * (2.0 * below + ps - 1.0), axis=-1)
    return _out(_mean(first - 0.5 * spread, ok))


def coverage(
    obs: npt.ArrayLike,
    lower: npt.ArrayLike,
    upper: npt.ArrayLike,
    *,
    axis: int | None = None,
) -> FloatOrArray:
    """Share of observations inside the band ``lower <= obs <= upper`` (in 0..1).

    The empirical coverage of a central interval (Gneiting, Balabdaoui and Raftery 2007,
    JRSS-B 69, 243-268): 0.90 is ideal for the 0.05-0.95 band. Cases with a missing
    observation or bound are dropped.
    """
    (o, lo, hi), ok = _cases(obs, lower, upper, axis=axis)
    inside = ((lo <= o) & (o <= hi)).astype(np.float64)
    return _out(_mean(inside, ok))


# --------------------------------------------------------------------------------------
# Central Asian hydromet criteria (Nastavlenie po sluzhbe prognozov, section 3)
# --------------------------------------------------------------------------------------


def _triples(
    obs: npt.ArrayLike, forecast: npt.ArrayLike, obs_now: npt.ArrayLike, axis: int | None
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    (o, f, now), ok = _cases(obs, forecast, obs_now, axis=axis)
    return o - f, o - now, ok


def _sd(x: npt.NDArray[np.float64], ok: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
    """Sample standard deviation with n - 1, NaN below two cases."""
    n = _count(ok)
    dev = x - _mean(x, ok)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n >= 2, np.sqrt(_sum(dev**2, ok) / np.maximum(n - 1.0, 1.0)), np.nan)


def sigma_delta(
    obs_now: npt.ArrayLike, obs_future: npt.ArrayLike, *, axis: int | None = None
) -> FloatOrArray:
    """sigma_delta: standard deviation of the observed change over the lead time.

    ``Delta_i = y_i(t + lead) - y_i(t)``, the change between the value observed in the
    last period before the issue time ``t`` (what the forecaster knew) and the value
    observed in the forecast period, and::

        sigma_delta = sqrt( sum (Delta_i - mean(Delta))^2 / (n - 1) )

    the sample standard deviation (n - 1) of the changes about their mean, as the
    Nastavlenie defines it (section 3, "среднее квадратическое отклонение изменения
    прогнозируемой величины за период заблаговременности"). It measures how much the
    river moves over the lead: the yardstick of a short-range forecast, whose errors are
    compared with it rather than with the spread of the flow itself. NaN below two cases.
    """
    (now, fut), ok = _cases(obs_now, obs_future, axis=axis)
    return _out(_sd(fut - now, ok))


def s_over_sigma_delta(
    obs: npt.ArrayLike,
    forecast: npt.ArrayLike,
    obs_now: npt.ArrayLike,
    *,
    axis: int | None = None,
) -> FloatOrArray:
    """The Nastavlenie's efficiency criterion S / sigma_delta of a short-range method.

    ``S = sqrt( sum (y_i - y'_i)^2 / (n - 1) )`` is the mean square error of the
    (verification) forecasts ``y'`` with ``n - 1``, the Nastavlenie's formula for
    verification forecasts made on independent data such as these rolling-origin
    hindcasts (the textbooks' ``n - m``, m the fitted coefficients, is for a method
    scored on its own training sample, which a hindcast never is); ``sigma_delta`` is
    :func:`sigma_delta` over the same cases, also with ``n - 1``. The two ``n - 1``
    cancel (so the ratio does not depend on the convention, as long as both share it:
    only P's permissible error does), so ``S / sigma_delta = sqrt( sum e_i^2 / sum (Delta_i - mean Delta)^2 )``,
    i.e. ``(S / sigma_delta)^2 = 1 - NSE`` of the *forecast change* ``y' - y(t)``
    against the observed change. A case needs the observation, the forecast and the
    value at issue time. Ratings (:class:`RatingThresholds`): <= 0.50 good, <= 0.80
    satisfactory (the method is applicable), above unsatisfactory.
    """
    err, delta, ok = _triples(obs, forecast, obs_now, axis)
    n = _count(ok)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(n >= 2, np.sqrt(_sum(err**2, ok) / np.maximum(n - 1.0, 1.0)), np.nan)
    return _out(_div(s, _sd(delta, ok)))


def p_within(
    obs: npt.ArrayLike,
    forecast: npt.ArrayLike,
    obs_now: npt.ArrayLike,
    factor: float = DEFAULT_FACTOR,
    *,
    axis: int | None = None,
) -> FloatOrArray:
    """P, the share (0..1) of forecasts whose error is within the permissible error.

    The permissible error is ``delta_perm = factor * sigma_delta`` ("допустимая
    погрешность", factor 0.674 in the Nastavlenie for short-range forecasts), with
    sigma_delta of :func:`sigma_delta` over the same cases; a forecast "comes true"
    (оправдался) when ``|y - y'| <= delta_perm``, and P, the "обеспеченность метода", is
    the share of those among the cases that have observation, forecast and value at
    issue time. Ratings: P >= 82 % good, >= 60 % satisfactory. (For unbiased normal
    errors, ``P = 2 Phi(factor / (S / sigma_delta)) - 1``: S / sigma_delta = 0.50 gives
    82.2 %, 0.80 gives 60.0 %, so both criteria draw the same lines there.)
    """
    err, delta, ok = _triples(obs, forecast, obs_now, axis)
    allowed = factor * _sd(delta, ok)
    hit = (np.abs(err) <= allowed).astype(np.float64)
    return _out(_nan_if(_mean(hit, ok), ~np.isfinite(allowed)))


class RatingThresholds(BaseModel):
    """Where the Nastavlenie draws the lines between good, satisfactory and unsatisfactory.

    Defaults (Nastavlenie po sluzhbe prognozov, section 3, part I, for short-range
    forecasts of the water regime; see the module's note on provenance): the method is *good* when ``S / sigma_delta <= 0.50`` and ``P >= 82 %``,
    *satisfactory* when ``S / sigma_delta <= 0.80`` and ``P >= 60 %`` (the limit of
    applicability), *unsatisfactory* otherwise. The bounds are inclusive. P is a share
    in 0..1 here (0.82 for 82 %).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    s_good: float = Field(default=0.50, gt=0)
    s_satisfactory: float = Field(default=0.80, gt=0)
    p_good: float = Field(default=0.82, ge=0, le=1)
    p_satisfactory: float = Field(default=0.60, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> RatingThresholds:
        if self.s_good > self.s_satisfactory:
            raise ValueError("s_good must not exceed s_satisfactory")
        if self.p_good < self.p_satisfactory:
            raise ValueError("p_good must not be below p_satisfactory")
        return self


_GRADES: tuple[Rating, ...] = ("good", "satisfactory", "unsatisfactory")


def rating(
    s_sigma: float, p: float, thresholds: RatingThresholds | None = None
) -> Rating:
    """Rate a method from its S / sigma_delta and P: **the worse of the two criteria**.

    Each criterion gives good / satisfactory / unsatisfactory by the thresholds
    (:class:`RatingThresholds`, inclusive bounds); the method gets the lower grade, so a
    "good" method must be good by both, as the Nastavlenie lists them side by side. For
    normal unbiased errors the two agree (see :func:`p_within`); they part when errors
    are heavy-tailed or biased, and then the worse one is the safer statement. Returns
    ``"unrated"`` when either is NaN (too few cases).
    """
    t = thresholds or RatingThresholds()
    if not (np.isfinite(s_sigma) and np.isfinite(p)):
        return "unrated"
    by_s = 0 if s_sigma <= t.s_good else 1 if s_sigma <= t.s_satisfactory else 2
    by_p = 0 if p >= t.p_good else 1 if p >= t.p_satisfactory else 2
    return _GRADES[max(by_s, by_p)]


# --------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------


def _level(quantiles: xr.DataArray, level: float) -> xr.DataArray:
    levels = np.asarray(quantiles["quantile"].values, dtype=np.float64)
    hit = np.flatnonzero(np.isclose(levels, level, rtol=0, atol=1e-9))
    if hit.size != 1:
        raise ValueError(f"quantile level {level} not in the forecast's levels {levels.tolist()}")
    return quantiles.isel(quantile=int(hit[0]), drop=True)


def score_table(
    observed: xr.DataArray,
    last_observed: xr.DataArray,
    quantiles: xr.DataArray,
    persistence: xr.DataArray,
    climatology: xr.DataArray,
    *,
    thresholds: RatingThresholds | None = None,
    factor: float = DEFAULT_FACTOR,
    band: tuple[float, float] = (0.05, 0.95),
    point: float = 0.5,
) -> xr.Dataset:
    """Every verification metric per lead of a hindcast: a Dataset indexed by ``lead``.

    Inputs (xarray, aligned by label with an inner join, so only issue times and leads
    present in all take part):

    * ``observed`` ``(issue_time, lead)``: the value observed in the forecast period;
    * ``last_observed`` ``(issue_time,)``: the value observed in the last period before
      each issue time (the persistence value, the base of the observed change);
    * ``quantiles`` ``(issue_time, lead, quantile)``: the quantile forecast;
    * ``persistence``, ``climatology`` ``(issue_time, lead)``: reference forecasts.

    Further dimensions (``station``) are carried through: the metrics reduce over
    ``issue_time`` only, vectorised over everything else. The point forecast is the
    quantile ``point`` (the median), the band for ``coverage`` the quantiles ``band``.

    Variables: ``n`` (cases with observation and median), ``nse``, ``kge`` with
    ``kge_r``, ``kge_alpha``, ``kge_beta``, ``kge_prime`` with ``kge_prime_gamma``,
    ``pbias`` (%, positive = too low), ``rmse``, ``skill_persistence`` and
    ``skill_climatology`` (:func:`mse_skill`), ``crps`` (:func:`crps_quantiles`),
    ``coverage`` (share inside the band), ``sigma_delta``, ``s_sigma_delta``, ``p_within``
    and ``rating`` (:func:`rating`). Each metric uses the cases complete for it (see the
    function): the skills need the reference too, and ``sigma_delta``, ``s_sigma_delta``
    and ``p_within`` share the cases with observation, median and last observed value;
    ``n`` counts the point-forecast pairs.
    """
    t = thresholds or RatingThresholds()
    obs, now, q, pers, clim = xr.align(
        observed, last_observed, quantiles, persistence, climatology,
        join="inner", exclude={"quantile"},
    )
    q = q.transpose(..., "quantile")
    levels = np.asarray(q["quantile"].values, dtype=np.float64)
    order = np.argsort(levels)
    q = q.isel(quantile=order)
    levels = levels[order]
    med = _level(q, point)
    lo, hi = _level(q, band[0]), _level(q, band[1])

    core = ["issue_time"]

    def reduce(func, *arrays: xr.DataArray, **kwargs) -> xr.DataArray:  # type: ignore[no-untyped-def]
        return xr.apply_ufunc(
            func, *arrays, input_core_dims=[core] * len(arrays),
            kwargs={"axis": -1, **kwargs},
        )

    def count(o: npt.NDArray[np.float64], s: npt.NDArray[np.float64], axis: int) -> npt.NDArray[np.int64]:
        _, ok = _cases(o, s, axis=axis)
        return np.sum(ok, axis=-1)

    def parts(func, attr: str):  # type: ignore[no-untyped-def]
        return lambda o, s, axis: np.asarray(getattr(func(o, s, axis=axis), attr), dtype=np.float64)

    out = xr.Dataset()
    out["n"] = reduce(count, obs, med)
    out["nse"] = reduce(nse, obs, med)
    for name, attr in (("kge", "kge"), ("kge_r", "r"), ("kge_alpha", "alpha"), ("kge_beta", "beta")):
        out[name] = reduce(parts(kge, attr), obs, med)
    for name, attr in (("kge_prime", "kge"), ("kge_prime_gamma", "gamma")):
        out[name] = reduce(parts(kge_prime, attr), obs, med)
    out["pbias"] = reduce(pbias, obs, med)
    out["rmse"] = reduce(rmse, obs, med)
    out["skill_persistence"] = reduce(mse_skill, obs, med, pers)
    out["skill_climatology"] = reduce(mse_skill, obs, med, clim)
    out["crps"] = xr.apply_ufunc(
        crps_quantiles, obs, q,
        input_core_dims=[core, core + ["quantile"]],
        kwargs={"q_levels": levels, "axis": -1},
    )
    out["coverage"] = reduce(coverage, obs, lo, hi)
    out["sigma_delta"] = reduce(
        lambda o, f, n, axis: sigma_delta(
            np.where(np.isfinite(f), n, np.nan), o, axis=axis
        ),
        obs, med, now,
    )
    out["s_sigma_delta"] = reduce(s_over_sigma_delta, obs, med, now)
    out["p_within"] = reduce(p_within, obs, med, now, factor=factor)
    grade = np.vectorize(lambda s, p: rating(float(s), float(p), t), otypes=[object])
    out["rating"] = xr.apply_ufunc(grade, out["s_sigma_delta"], out["p_within"]).astype(str)

    attrs = {
        "n": ("cases with observation and point forecast", "1"),
        "nse": ("Nash-Sutcliffe efficiency of the median", "1"),
        "kge": ("Kling-Gupta efficiency (Gupta et al. 2009)", "1"),
        "kge_r": ("KGE correlation r", "1"),
        "kge_alpha": ("KGE variability ratio alpha = sigma_sim / sigma_obs", "1"),
        "kge_beta": ("KGE bias ratio beta = mean_sim / mean_obs", "1"),
        "kge_prime": ("modified Kling-Gupta efficiency KGE' (Kling et al. 2012)", "1"),
        "kge_prime_gamma": ("KGE' variability ratio gamma = CV_sim / CV_obs", "1"),
        "pbias": ("percent bias 100 sum(obs - sim) / sum(obs), positive = too low", "%"),
        "rmse": ("root mean square error of the median", str(observed.attrs.get("units", ""))),
        "skill_persistence": ("MSE skill score against persistence", "1"),
        "skill_climatology": ("MSE skill score against climatology", "1"),
        "crps": ("CRPS by the quantile-score integral over the forecast's levels",
                 str(observed.attrs.get("units", ""))),
        "coverage": (f"share of observations within the {band[0]}-{band[1]} quantile band", "1"),
        "sigma_delta": ("standard deviation (n - 1) of the observed change over the lead",
                        str(observed.attrs.get("units", ""))),
        "s_sigma_delta": ("S / sigma_delta, S the RMS error with n - 1 (Nastavlenie)", "1"),
        "p_within": (f"share of forecasts with |error| <= {factor} sigma_delta (P)", "1"),
        "rating": ("worse of the S/sigma_delta and P grades", ""),
    }
    for name, (long_name, units) in attrs.items():
        out[name].attrs = {"long_name": long_name, "units": units}
    out.attrs = {
        "point_quantile": point,
        "band": list(band),
        "factor": factor,
        **{f"threshold_{k}": v for k, v in t.model_dump().items()},
    }
    return out
