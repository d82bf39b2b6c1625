"""Per period-of-year linear regressions: the operational method, and the machinery they share.

The operational regression (:class:`OperationalRegression`, registry name ``regression``)
-------------------------------------------------------------------------------------
What the Central Asian hydromets run for short-range forecasts of decade (and pentad)
means: for each period of the year ``p`` and lead ``h`` a straight line ::

    Q(t0 + h - 1) = a[p, h] + b[p, h] * Qlast(t0)

where ``t0`` is the issue time (the start of the first forecast period, period of year
``p``) and ``Qlast`` the flow before it: the mean of the last ``last`` periods (default 1:
the last decade; on the daily step, the mean of the last days). Fitted by ordinary least
squares on the training years of that period of the year (``window`` neighbouring periods
on each side pooled in: 0 for decades, as the hydromets do; the daily step needs some, as
one day of the year has one value a year).

Options: ``last``, ``window``, ``pool_levels``, ``min_samples`` (a period with fewer
training rows forecasts its mean), ``clip_min`` (0: no negative flows).

The machinery (:class:`LinearPeriodModel`)
-----------------------------------------
Every linear model here (climatology, this regression, ARX) is, for each lead and period
of the year, a (ridge) regression of the target on features known at the issue time,
fitted from sufficient statistics:

* ``design``: features ``x (station, time, K)`` on the step grid, each row ``i`` built from
  values of rows ``< i`` only (so the row of an issue time is known at the issue time),
  and the target ``y (station, time)``. Stations of one batch share the feature layout;
  a station lacking a column (fewer upstream gauges) has it marked absent.
* ``group_stats``: for each station, lead and period of the year, the sums of the outer
  products of ``[1, x, y]`` over the training rows (target period before ``until``, all
  present features finite), with :func:`numpy.bincount`: one pass over the data for any
  number of stations. Pooling ``window`` neighbouring periods on each side is a circular
  sum of the period-centred (co)variances (``pool_within``): the slopes are pooled, each
  period keeps its own mean level, so pooling does not flatten the steep snowmelt rise;
  a period with under 10 rows of its own (a record of a few years) pools its level too
  (``pool_levels``: ``"auto"``, ``true``, ``false``).
* ``solve_stats``: the ridge solution from those sums: features standardised within each
  group, penalty ``ridge * I`` on the standardised coefficients (0 = ordinary least
  squares), intercept free. A batch of (station, lead, period) systems is solved at once
  with :func:`numpy.linalg.solve` (``scipy.linalg.solve(assume_a="pos")`` gives the same
  to 1e-15 but its batched path is about 4 times slower here).
* Missing predictors at an issue time (a meteo station that stopped reporting): the
  forecast uses the sub-model without them, solved from the same sums (the rows and
  columns of the missing features dropped), so no value is invented.
* Optional AR(1) error correction (``error_correction``): ``phi[h] * e(t0 - 1)`` is
  added at lead ``h``, ``e(t0 - 1)`` the model's error for the last observed period (its
  lead-1 forecast for it, issued one period earlier, against the observation), ``phi[h]``
  the least-squares coefficient of the training residuals at lead ``h`` on it.
* ``hindcast_many``: the rolling-origin hindcast with yearly refits of many stations at
  once: the sums are accumulated per target year once and summed cumulatively, so a refit
  costs one batched solve, not a pass over the data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, ClassVar

import numpy as np
import xarray as xr

from watermon.forecast.base import Model, Problem, register
from watermon.forecast.dataset import N_PERIODS, as_times, extend_grid, period_of_year

JITTER = 1e-9
"""added to the standardised normal equations so that a singular group still solves"""


# --------------------------------------------------------------------------------------
# Data access
# --------------------------------------------------------------------------------------


def series(data: xr.Dataset, station: str, variable: str, n: int | None = None) -> np.ndarray:
    """One station's values along ``data.time`` (NaN if absent), NaN-padded to ``n``."""
    size = data.sizes["time"]
    out = np.full(size if n is None else n, np.nan)
    if variable in data.data_vars and station in data["station"].values:
        out[:size] = np.asarray(data[variable].sel(station=station).values, dtype=np.float64)
    return out


def issue_positions(times: np.ndarray, issue_times: np.ndarray) -> np.ndarray:
    """Row of each issue time on the grid ``times``; every issue time must be a period start on it."""
    pos = np.searchsorted(times, issue_times)
    bad = (pos >= times.size) | (times[np.minimum(pos, times.size - 1)] != issue_times)
    if bad.any():
        raise ValueError(f"issue times not on the step grid (period starts): {issue_times[bad][:3]}")
    return pos


def grid_periods_needed(data: xr.Dataset, issue_times: np.ndarray, leads: int, step: str) -> int:
    """How many periods the grid must be extended past the data for these issue times."""
    times = as_times(data["time"].values)
    if issue_times.size == 0:
        return leads
    last = issue_times.max()
    if last <= times[-1]:
        return leads
    ext = extend_grid(times[-1:], step, 4 * 366 + leads)
    return int(np.searchsorted(ext, last)) + leads


def forecast_array(values: np.ndarray, issue_times: np.ndarray, problem: Problem, model: str,
                   units: str = "") -> xr.DataArray:
    """Point forecasts ``(issue_time, lead)`` as the models return them."""
    return xr.DataArray(
        values, dims=("issue_time", "lead"),
        coords={"issue_time": issue_times, "lead": np.arange(1, problem.leads + 1)},
        name=problem.variable,
        attrs={"station": problem.station, "model": model, "units": units or _units(problem.variable)},
    )


def _units(variable: str) -> str:
    return {"discharge": "m3/s", "reservoir_inflow": "m3/s", "reservoir_release": "m3/s",
            "precipitation": "mm", "air_temperature": "degC", "reservoir_volume": "million m3",
            "reservoir_level": "m"}.get(variable, "")


# --------------------------------------------------------------------------------------
# Sufficient statistics and the batched ridge solve
# --------------------------------------------------------------------------------------


def n_features(m: int) -> int:
    """K from the length ``(K + 2)(K + 3) / 2`` of packed sums."""
    k = int(round((-5 + np.sqrt(1 + 8 * m)) / 2))
    if (k + 2) * (k + 3) // 2 != m:
        raise ValueError(f"{m} is not the length of packed sums")
    return k


def unpack(packed: np.ndarray) -> np.ndarray:
    """``(..., M)`` packed upper triangle -> the symmetric ``(..., K + 2, K + 2)`` sums."""
    k = n_features(packed.shape[-1])
    iu = np.triu_indices(k + 2)
    out = np.zeros((*packed.shape[:-1], k + 2, k + 2))
    out[..., iu[0], iu[1]] = packed
    out[..., iu[1], iu[0]] = packed
    return out


def group_stats(z: np.ndarray, y: np.ndarray, ok: np.ndarray, group: np.ndarray, n_groups: int) -> np.ndarray:
    """Sums of ``a a^T``, ``a = [1, z, y]``, over the rows ``ok`` of each (station, group).

    ``z (S, N, K)`` (NaN allowed where not ``ok``), ``y (S, N)``, ``ok (S, N)``,
    ``group (N,)`` or ``(S, N)`` in ``[0, n_groups)``. Returns the upper triangles packed,
    ``(S, n_groups, (K + 2)(K + 3) / 2)`` (see :func:`unpack`).
    """
    s_n, n, k = z.shape
    sel = ok.ravel()
    g = np.broadcast_to(group, (s_n, n))
    bins = (np.arange(s_n)[:, None] * n_groups + g).ravel()[sel]
    flat = np.concatenate([np.ones((s_n, n, 1)), z, y[..., None]], axis=2).reshape(-1, k + 2)[sel]
    iu = np.triu_indices(k + 2)
    out = np.empty((s_n * n_groups, iu[0].size))
    for j, (u, v) in enumerate(zip(*iu, strict=True)):
        out[:, j] = np.bincount(bins, weights=flat[:, u] * flat[:, v], minlength=s_n * n_groups)
    return out.reshape(s_n, n_groups, iu[0].size)


def pool(stats: np.ndarray, window: int, axis: int) -> np.ndarray:
    """Circular sum over ``window`` neighbouring periods on each side along ``axis``."""
    if window <= 0:
        return stats
    n = stats.shape[axis]
    if 2 * window + 1 > n:
        raise ValueError(f"a window of {window} periods on each side is wider than the year ({n})")
    wide = np.take(stats, np.arange(-window, n + window) % n, axis=axis)
    cs = np.cumsum(wide, axis=axis)
    upper = np.take(cs, np.arange(2 * window, n + 2 * window), axis=axis)
    lower = np.take(cs, np.arange(-1, n - 1), axis=axis)
    lower = np.where(_first_mask(n, axis, lower.ndim), 0.0, lower)
    return upper - lower


def _first_mask(n: int, axis: int, ndim: int) -> np.ndarray:
    shape = [1] * ndim
    shape[axis] = n
    m = np.zeros(n, dtype=bool)
    m[0] = True
    return m.reshape(shape)


def pack(full: np.ndarray) -> np.ndarray:
    """The upper triangle of symmetric ``(..., K + 2, K + 2)`` sums, packed (inverse of :func:`unpack`)."""
    iu = np.triu_indices(full.shape[-1])
    return full[..., iu[0], iu[1]]


def pool_within(stats: np.ndarray, window: int, axis: int, min_own: int = 0) -> np.ndarray:
    """Pool the slopes, not the levels: each period keeps its own means.

    The sums of each period are centred on that period's own means of ``x`` and ``y``,
    the centred (co)variances of ``window`` neighbouring periods on each side are summed,
    and the result is re-expressed as packed sums around the period's own means (the
    pooled means where a period has no rows). A regression on them has the slopes of the
    pooled window and goes through the period's own mean point: pooling then no longer
    flattens a steep seasonal cycle (the snowmelt rise) the way pooling raw sums does.
    A period with fewer than ``min_own`` rows of its own (a short record) is pooled
    plainly (:func:`pool`) instead. ``axis``: the period axis of ``stats`` counted from the front.
    """
    if window <= 0:
        return stats
    full = unpack(stats)
    n = full[..., 0, 0]
    sums = full[..., 0, 1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        own = np.where(n[..., None] > 0, sums / n[..., None], 0.0)
    centred = full[..., 1:, 1:] - n[..., None, None] * own[..., :, None] * own[..., None, :]
    n_pool = pool(n, window, axis)
    c_pool = pool(centred, window, axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n[..., None] > 0, own, pool(sums, window, axis) / n_pool[..., None])
    mean = np.where(np.isfinite(mean), mean, 0.0)
    out = np.empty_like(full)
    out[..., 0, 0] = n_pool
    out[..., 0, 1:] = n_pool[..., None] * mean
    out[..., 1:, 0] = out[..., 0, 1:]
    out[..., 1:, 1:] = c_pool + n_pool[..., None, None] * mean[..., :, None] * mean[..., None, :]
    within = pack(out)
    if min_own > 0:
        few = (n < min_own)[..., None]
        if few.any():
            return np.where(few, pool(stats, window, axis), within)
    return within


def solve_stats(stats: np.ndarray, ridge: float, use: np.ndarray | None = None, min_samples: int = 3) -> np.ndarray:
    """Ridge coefficients ``[intercept, beta_1..K]`` of ``y`` on ``z`` from :func:`group_stats` sums.

    ``stats (..., M)`` packed; ``use (..., K)`` (broadcast): the features allowed in
    the model (others get 0). Features are standardised within each group and the penalty
    ``ridge`` applies to the standardised coefficients (so ``ridge`` is a share of the
    features' variance); features without variance in a group are left out. A group
    with fewer than ``min_samples`` rows gets only its mean (NaN when empty).
    """
    stats = unpack(stats)
    k = stats.shape[-1] - 2
    n = stats[..., 0, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = stats[..., 0, :] / n[..., None]
    mx, my = mean[..., 1 : k + 1], mean[..., k + 1]
    coef = np.zeros((*stats.shape[:-2], k + 1))
    coef[..., 0] = my
    if k == 0:
        return coef
    with np.errstate(invalid="ignore", divide="ignore"):
        cxx = stats[..., 1 : k + 1, 1 : k + 1] / n[..., None, None] - mx[..., :, None] * mx[..., None, :]
        cxy = stats[..., 1 : k + 1, k + 1] / n[..., None] - mx * my[..., None]
    var = np.diagonal(cxx, axis1=-2, axis2=-1)
    ok_group = n >= max(min_samples, 2)
    on = np.isfinite(var) & (var > 1e-12 * np.maximum(1.0, np.abs(mx) ** 2)) & ok_group[..., None]
    if use is not None:
        on &= np.broadcast_to(use, on.shape)
    d = np.sqrt(np.where(on, var, 1.0))
    r = np.where(on[..., :, None] & on[..., None, :], cxx / (d[..., :, None] * d[..., None, :]), 0.0)
    eye = np.eye(k)
    r = r + eye * np.where(on, ridge + JITTER, 1.0)[..., None, :]
    rhs = np.where(on, cxy / d, 0.0)
    beta = np.linalg.solve(r, rhs[..., None])[..., 0] / d
    beta = np.where(on, beta, 0.0)
    coef[..., 1:] = beta
    coef[..., 0] = my - np.sum(beta * np.where(on, mx, 0.0), axis=-1)
    return coef


def period_pairs(period: np.ndarray, n_periods: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct (period of row i, period of row i - 1) pairs: their periods and each row's pair."""
    prev = np.empty_like(period)
    prev[1:] = period[:-1]
    prev[:1] = (period[:1] - 1) % n_periods
    uniq, inv = np.unique(period * n_periods + prev, return_inverse=True)
    return uniq // n_periods, uniq % n_periods, inv.ravel()


def ec_stats(z: np.ndarray, y: np.ndarray, yh: np.ndarray, ok: np.ndarray, pair: np.ndarray,
             n_pairs: int) -> tuple[np.ndarray, np.ndarray]:
    """Sums for the AR(1) error correction over the rows ``ok`` per (station, period pair).

    With ``a_i = [1, z_i, yh_i]`` (the lead's target) and ``b_i = [1, z_i, y_i]`` (lead 1),
    ``C = sum a_i b_(i-1)^T`` ``(S, J, K + 2, K + 2)`` and ``D = sum b_(i-1) b_(i-1)^T``
    (packed): a residual is ``w . a`` with ``w = [-intercept, -beta, 1]``, so the sums of
    the products of the residuals with the previous period's lead-1 residual follow from
    them for any coefficients.
    """
    s_n, t, k = z.shape
    a = np.concatenate([np.ones((s_n, t, 1)), z, yh[..., None]], axis=2)
    b = np.zeros_like(a)
    b[:, 1:, 0] = 1.0
    b[:, 1:, 1:-1] = z[:, :-1]
    b[:, 1:, -1] = y[:, :-1]
    sel = ok.ravel()
    bins = (np.arange(s_n)[:, None] * n_pairs + np.broadcast_to(pair, (s_n, t))).ravel()[sel]
    fa, fb = a.reshape(-1, k + 2)[sel], b.reshape(-1, k + 2)[sel]
    c = np.empty((s_n * n_pairs, k + 2, k + 2))
    for u in range(k + 2):
        for v in range(k + 2):
            c[:, u, v] = np.bincount(bins, weights=fa[:, u] * fb[:, v], minlength=s_n * n_pairs)
    iu = np.triu_indices(k + 2)
    dd = np.empty((s_n * n_pairs, iu[0].size))
    for j, (u, v) in enumerate(zip(*iu, strict=True)):
        dd[:, j] = np.bincount(bins, weights=fb[:, u] * fb[:, v], minlength=s_n * n_pairs)
    return c.reshape(s_n, n_pairs, k + 2, k + 2), dd.reshape(s_n, n_pairs, iu[0].size)


def ec_phi(coef: np.ndarray, cross: Sequence[np.ndarray], prev: Sequence[np.ndarray],
           p_of: np.ndarray, q_of: np.ndarray) -> np.ndarray:
    """AR(1) coefficients ``(S, L)``: least squares of each lead's residual on the last period's lead-1 residual."""
    s_n, leads = coef.shape[:2]
    w = np.concatenate([-np.nan_to_num(coef), np.ones((*coef.shape[:-1], 1))], axis=-1)  # (S, L, P, K+2)
    w1 = w[:, 0][:, q_of]
    phi = np.zeros((s_n, leads))
    for h in range(leads):
        wh = w[:, h][:, p_of]
        num = np.einsum("sju,sjuv,sjv->s", wh, cross[h], w1)
        den = np.einsum("sju,sjuv,sjv->s", w1, unpack(prev[h]), w1)
        with np.errstate(invalid="ignore", divide="ignore"):
            phi[:, h] = np.clip(np.where(den > 1e-12, num / den, 0.0), -0.99, 0.99)
    return phi


# --------------------------------------------------------------------------------------
# The design
# --------------------------------------------------------------------------------------


@dataclass
class Design:
    """Features and target of a batch of stations on an extended step grid."""

    times: np.ndarray
    """``(T,)`` the data's grid, then ``extra`` periods past it"""
    x: np.ndarray
    """``(S, T, K)`` features of each row from rows before it; NaN where unknown"""
    y: np.ndarray
    """``(S, T)`` the target variable (NaN past the data)"""
    present: np.ndarray
    """``(S, K)`` whether column k exists for the station"""
    names: list[list[str]]
    period: np.ndarray
    """``(T,)`` period of the year, 0-based"""
    stations: list[str]

    @cached_property
    def xok(self) -> np.ndarray:
        """``(S, T)``: every present feature of the row is known (a design is not changed in place)."""
        return (np.isfinite(self.x) | ~self.present[:, None, :]).all(axis=2)


@dataclass
class _Fitted:
    present: np.ndarray  # (S, K) the columns the model uses
    center: np.ndarray  # (S, K)
    scale: np.ndarray  # (S, K)
    stats: np.ndarray  # (S, L, P, M) pooled packed sums
    coef: np.ndarray  # (S, L, P, K+1) full model
    phi: np.ndarray  # (S, L) AR(1) error correction
    n_train: np.ndarray  # (S, L)
    until: np.datetime64
    first: np.datetime64 | None


class LinearPeriodModel(Model):
    """Base of the per period-of-year linear models: subclasses say which features.

    Settings: constructor keywords, else ``problem.options``, else ``OPTIONS`` (the
    window's default depends on the step: ``WINDOW``).
    """

    name: ClassVar[str] = "linear"
    OPTIONS: ClassVar[dict[str, Any]] = {
        "window": None, "ridge": 0.0, "error_correction": False, "min_samples": 5, "clip_min": 0.0,
        "pool_levels": "auto",
    }
    MIN_OWN_LEVEL: ClassVar[int] = 10
    """``pool_levels: auto``: a period keeps its own level with at least this many rows of its own"""
    WINDOW: ClassVar[dict[str, int]] = {"daily": 10, "pentad": 1, "decade": 0}

    def __init__(self, **options: Any) -> None:
        unknown = set(options) - set(self.OPTIONS)
        if unknown:
            raise TypeError(f"{type(self).__name__}: unknown options {sorted(unknown)}; known: {sorted(self.OPTIONS)}")
        self._given = dict(options)
        self._fit: _Fitted | None = None
        self._settings: dict[str, Any] = {}
        self._problems: list[Problem] = []
        self._names: list[list[str]] = []
        self._cache: dict[tuple[int, bytes], np.ndarray] = {}

    # -- settings ------------------------------------------------------------------------
    def settings(self, problem: Problem) -> dict[str, Any]:
        unknown = set(problem.options) - set(self.OPTIONS)
        if unknown:
            raise ValueError(f"{self.name} ({problem.station}): unknown options {sorted(unknown)}; "
                             f"known: {sorted(self.OPTIONS)}")
        s = {**self.OPTIONS, **problem.options, **self._given}
        if s["window"] is None:
            s["window"] = self.WINDOW[problem.step]
        s["window"] = int(s["window"])
        s["ridge"] = float(s["ridge"])
        if s["window"] < 0 or s["ridge"] < 0:
            raise ValueError(f"{self.name}: window and ridge must be >= 0")
        return s

    def _pool(self, stats: np.ndarray, settings: dict[str, Any], axis: int) -> np.ndarray:
        """Pool neighbouring periods (``window``): the slopes only, each period keeping its own level
        (``pool_levels: false``), everything (``true``), or own levels where a period has at least
        ``MIN_OWN_LEVEL`` rows of its own (``"auto"``, the default: decades of a long record keep
        their own levels, the days of a two-year record share them)."""
        mode = settings["pool_levels"]
        if mode is True:
            return pool(stats, settings["window"], axis)
        if mode is False:
            return pool_within(stats, settings["window"], axis)
        if mode == "auto":
            return pool_within(stats, settings["window"], axis, self.MIN_OWN_LEVEL)
        raise ValueError(f"pool_levels must be true, false or 'auto', not {mode!r}")

    def _batch_settings(self, problems: Sequence[Problem]) -> dict[str, Any]:
        if not problems:
            raise ValueError("no problems")
        first = problems[0]
        s = self.settings(first)
        for p in problems[1:]:
            if (p.step, p.leads, p.variable) != (first.step, first.leads, first.variable) or self.settings(p) != s:
                raise ValueError(f"{self.name}: a batch needs the same step, leads, variable and options "
                                 f"({p.station} differs from {first.station})")
        return s

    # -- what a subclass says ------------------------------------------------------------
    def features(self, data: xr.Dataset, problem: Problem, times: np.ndarray,
                 settings: dict[str, Any]) -> tuple[np.ndarray, list[str]]:
        """``(T, K)`` features on ``times`` (the data's grid extended), row i from rows < i."""
        raise NotImplementedError

    # -- design --------------------------------------------------------------------------
    def design(self, data: xr.Dataset, problems: Sequence[Problem], extra: int = 0) -> Design:
        """Features and target of ``problems`` (one batch) on the data's grid plus ``extra`` periods."""
        s = self._batch_settings(problems)
        step = problems[0].step
        if data.attrs.get("step", step) != step:
            raise ValueError(f"data are {data.attrs.get('step')}, the problem is {step}")
        base = as_times(data["time"].values)
        times = extend_grid(base, step, extra) if extra else base
        cols, names = [], []
        for p in problems:
            x, nm = self.features(data, p, times, s)
            cols.append(x)
            names.append(nm)
        k = max(c.shape[1] for c in cols)
        x = np.zeros((len(problems), times.size, k))
        present = np.zeros((len(problems), k), dtype=bool)
        for i, c in enumerate(cols):
            x[i, :, : c.shape[1]] = c
            present[i, : c.shape[1]] = True
        y = np.stack([series(data, p.station, p.variable, times.size) for p in problems])
        return Design(times, x, y, present, names, period_of_year(times, step) - 1,
                      [p.station for p in problems])

    # -- fitting -------------------------------------------------------------------------
    def _training(self, d: Design, n_until: int, lead: int, first: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Rows usable for lead ``lead`` (target row before ``n_until``): (ok, target)."""
        t = d.times.size
        yh = np.full(d.y.shape, np.nan)
        yh[:, : t - lead + 1] = d.y[:, lead - 1 :]
        ok = np.isfinite(yh) & d.xok
        rows = np.arange(t)
        ok &= ((rows + lead - 1) < n_until)[None, :] & (rows >= first)[None, :]
        return ok, yh

    def _usable(self, d: Design, n_until: int, first: int = 0) -> Design:
        """``d`` without the columns known on less than half of the training rows with a target."""
        if d.x.shape[2] == 0:
            return d
        has_y = np.isfinite(d.y[:, first:n_until])
        known = np.isfinite(d.x[:, first:n_until]) & has_y[..., None]
        with np.errstate(invalid="ignore", divide="ignore"):
            share = known.sum(axis=1) / has_y.sum(axis=1)[:, None]
        usable = d.present & (share >= 0.5)
        if np.array_equal(usable, d.present):
            return d
        return replace(d, present=usable, x=np.where(usable[:, None, :], d.x, 0.0))

    def _normalise(self, d: Design, n_until: int, first: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Centre and scale of each feature from the training rows (numerical conditioning only)."""
        sl = d.x[:, first:n_until]
        with np.errstate(invalid="ignore"):
            c = np.nanmean(np.where(np.isfinite(sl), sl, np.nan), axis=1) if sl.shape[1] else np.zeros(d.present.shape)
            sd = np.nanstd(np.where(np.isfinite(sl), sl, np.nan), axis=1) if sl.shape[1] else np.ones(d.present.shape)
        c = np.where(np.isfinite(c) & d.present, c, 0.0)
        sd = np.where(np.isfinite(sd) & (sd > 0) & d.present, sd, 1.0)
        return c, sd

    def _z(self, d: Design, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
        z = (d.x - center[:, None, :]) / scale[:, None, :]
        return np.where(d.present[:, None, :], z, 0.0)

    def fit_many(self, data: xr.Dataset, problems: Sequence[Problem], until: Any,
                 design: Design | None = None, train_from: Any = None) -> LinearPeriodModel:
        """Fit every station of ``problems`` on values before ``until`` (and from ``train_from``)."""
        s = self._batch_settings(problems)
        until = as_times(until)[0]
        d = design if design is not None else self.design(data, problems)
        n_until = int(np.searchsorted(d.times, until))
        first = 0 if train_from is None else int(np.searchsorted(d.times, as_times(train_from)[0]))
        d = self._usable(d, n_until, first)
        n_p = N_PERIODS[problems[0].step]
        leads = problems[0].leads
        center, scale = self._normalise(d, n_until, first)
        z = self._z(d, center, scale)
        stats, n_train, cross, prev = [], [], [], []
        p_of, q_of, pair = period_pairs(d.period, n_p)
        ok1 = self._training(d, n_until, 1, first)[0]
        for h in range(1, leads + 1):
            ok, yh = self._training(d, n_until, h, first)
            st = self._pool(group_stats(z, yh, ok, d.period, n_p), s, axis=1)
            stats.append(st)
            n_train.append(ok.sum(axis=1))
            if s["error_correction"]:
                c, dd = ec_stats(z, d.y, yh, ok & _shift(ok1), pair, p_of.size)
                cross.append(c)
                prev.append(dd)
        st = np.stack(stats, axis=1)
        coef = solve_stats(st, s["ridge"], d.present[:, None, None, :], s["min_samples"])
        self._settings, self._problems, self._names = s, list(problems), d.names
        self._cache = {}
        phi = ec_phi(coef, cross, prev, p_of, q_of) if s["error_correction"] else np.zeros((len(problems), leads))
        self._fit = _Fitted(d.present, center, scale, st, coef, phi, np.stack(n_train, axis=1), until,
                            None if train_from is None else as_times(train_from)[0])
        return self

    def fit(self, data: xr.Dataset, problem: Problem, until: np.datetime64) -> LinearPeriodModel:
        return self.fit_many(data, [problem], until)

    # -- applying ------------------------------------------------------------------------
    def _coef_for(self, lead_idx: int, missing: np.ndarray) -> np.ndarray:
        """``(S, P, K+1)`` coefficients of the sub-model without the ``missing (S, K)`` features."""
        f = self._fit
        assert f is not None
        if not missing.any():
            return f.coef[:, lead_idx]
        key = (lead_idx, np.packbits(missing).tobytes())
        if key not in self._cache:
            use = ~missing[:, None, :]
            self._cache[key] = solve_stats(f.stats[:, lead_idx], self._settings["ridge"], use,
                                           self._settings["min_samples"])
        return self._cache[key]

    def _apply(self, lead_idx: int, z: np.ndarray, present: np.ndarray, pidx: np.ndarray) -> np.ndarray:
        """Predictions ``(S, N)`` of lead ``lead_idx`` for feature rows ``z (S, N, K)`` at periods ``pidx (N,)``."""
        s_n, n, k = z.shape
        out = np.full((s_n, n), np.nan)
        if n == 0:
            return out
        miss = ~np.isfinite(z) & present[:, None, :]
        zz = np.where(np.isfinite(z), z, 0.0)
        aug = np.concatenate([np.ones((s_n, n, 1)), zz], axis=2)
        if k == 0 or not miss.any():
            c = self._coef_for(lead_idx, np.zeros((s_n, k), bool))
            return np.einsum("snk,snk->sn", aug, c[:, pidx])
        # one sub-model per pattern of missing features (usually one or two)
        codes = np.packbits(miss, axis=2).reshape(s_n, n, -1)
        flat = codes.reshape(s_n * n, -1)
        uniq, inv = np.unique(flat, axis=0, return_inverse=True)
        inv = inv.reshape(s_n, n)
        for u in range(uniq.shape[0]):
            rows = inv == u
            si, ni = np.nonzero(rows)
            m = np.unpackbits(uniq[u], count=k).astype(bool)
            missing = np.broadcast_to(m, (s_n, k)) & present
            c = self._coef_for(lead_idx, missing)
            out[si, ni] = np.einsum("nk,nk->n", aug[si, ni], c[si, pidx[ni]])
        return out

    def _predict_rows(self, d: Design, pos: np.ndarray, z: np.ndarray | None = None) -> np.ndarray:
        """``(S, N, L)`` forecasts for issue rows ``pos`` of the design (``z``: its normalised features)."""
        f = self._fit
        assert f is not None
        if not np.array_equal(d.present, f.present):
            d = replace(d, present=f.present, x=np.where(f.present[:, None, :], d.x, 0.0))
            z = None
        if z is None:
            z = self._z(d, f.center, f.scale)
        leads = f.coef.shape[1]
        out = np.stack([self._apply(h, z[:, pos], d.present, d.period[pos]) for h in range(leads)], axis=2)
        if self._settings.get("error_correction") and np.any(f.phi):
            prev = pos - 1
            okp = prev >= 0
            e = np.full((d.y.shape[0], pos.size), np.nan)
            if okp.any():
                pp = prev[okp]
                e[:, okp] = d.y[:, pp] - self._apply(0, z[:, pp], d.present, d.period[pp])
            corr = f.phi[:, None, :] * np.where(np.isfinite(e), e, 0.0)[:, :, None]
            out = out + corr
        clip = self._settings.get("clip_min")
        if clip is not None:
            out = np.maximum(out, clip)
        return out

    def predict_many(self, data: xr.Dataset, problems: Sequence[Problem], issue_times: Any,
                     design: Design | None = None) -> xr.DataArray:
        """Forecasts ``(station, issue_time, lead)``; a station reads only values before each issue time."""
        if self._fit is None:
            raise RuntimeError(f"{self.name}: fit before predict")
        if [p.station for p in problems] != [p.station for p in self._problems]:
            raise ValueError("predict_many needs the problems it was fitted on")
        issues = as_times(issue_times)
        if design is None:
            design = self.design(data, problems, grid_periods_needed(data, issues, problems[0].leads, problems[0].step))
        pos = issue_positions(design.times, issues)
        out = self._predict_rows(design, pos)
        return xr.DataArray(
            out, dims=("station", "issue_time", "lead"),
            coords={"station": [p.station for p in problems], "issue_time": issues,
                    "lead": np.arange(1, problems[0].leads + 1)},
            name=problems[0].variable, attrs={"model": self.name, "units": _units(problems[0].variable)},
        )

    def predict(self, data: xr.Dataset, problem: Problem, issue_times: np.ndarray) -> xr.DataArray:
        out = self.predict_many(data, [problem], issue_times)
        return forecast_array(out.values[0], out["issue_time"].values, problem, self.name)

    # -- the fast rolling-origin hindcast ------------------------------------------------
    def hindcast_many(self, data: xr.Dataset, problems: Sequence[Problem], issue_times: Any,
                      train_from: Any = None, chunk: int | None = None) -> np.ndarray:
        """Rolling-origin hindcast ``(S, N, L)`` with a refit on 1 January of every year.

        Issued in year Y, a forecast comes from the model fitted on the rows whose target
        period is before 1 January of Y (and features before the issue time): exactly
        what :meth:`fit_many` with ``until`` = 1 January Y then :meth:`predict_many` give
        (tested), but the sums are accumulated per target year once and summed
        cumulatively: a refit adds the previous year's rows and solves. Stations are
        processed ``chunk`` at a time (memory).
        """
        issues = as_times(issue_times)
        s = self._batch_settings(problems)
        if chunk is None:
            chunk = 50
        if len(problems) > chunk:
            return np.concatenate([self.hindcast_many(data, problems[i : i + chunk], issues, train_from, chunk)
                                   for i in range(0, len(problems), chunk)], axis=0)
        step, leads = problems[0].step, problems[0].leads
        n_p = N_PERIODS[step]
        d = self.design(data, problems, grid_periods_needed(data, issues, leads, step))
        pos = issue_positions(d.times, issues)
        year_of = d.times.astype("datetime64[Y]").astype(np.int64) + 1970
        issue_year = year_of[pos]
        years = np.unique(issue_year)
        first = 0 if train_from is None else int(np.searchsorted(d.times, as_times(train_from)[0]))
        # centre/scale from the rows before the first refit: valid for every later refit
        y0 = np.datetime64(f"{years[0]:04d}-01-01", "ns")
        n0 = int(np.searchsorted(d.times, y0))
        d = self._usable(d, n0, first)
        center, scale = self._normalise(d, n0, first)
        z = self._z(d, center, scale)
        # the sums grow year by year: rows whose target period falls in the year before each refit
        t = d.times.size
        targets = []
        p_of, q_of, pair = period_pairs(d.period, n_p)
        ok1 = self._training(d, t, 1, first)[0]
        for h in range(1, leads + 1):
            ok, yh = self._training(d, t, h, first)
            tgt_year = np.full(t, years[-1] + 1)
            tgt_year[: t - h + 1] = year_of[h - 1 :]
            targets.append((ok, yh, np.searchsorted(years, tgt_year, side="right")))  # bin 0: before years[0]
        running = None
        ec_run: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        out = np.full((len(problems), issues.size, leads), np.nan)
        self._settings, self._problems, self._names = s, list(problems), d.names
        for j, yr in enumerate(years):
            new = []
            for h, (ok, yh, b) in enumerate(targets):
                rows = np.flatnonzero(b == j)
                new.append(group_stats(z[:, rows], yh[:, rows], ok[:, rows], d.period[rows], n_p))
                if s["error_correction"] and rows.size:
                    lo, hi = max(rows[0] - 1, 0), rows[-1] + 1  # a year's rows are contiguous
                    m = (ok & _shift(ok1))[:, lo:hi] & (b[lo:hi] == j)[None, :]
                    c, dd = ec_stats(z[:, lo:hi], d.y[:, lo:hi], yh[:, lo:hi], m, pair[lo:hi], p_of.size)
                    ec_run[h] = (c, dd) if h not in ec_run else (ec_run[h][0] + c, ec_run[h][1] + dd)
            add = np.stack(new, axis=1)  # (S, L, P, M), not pooled
            running = add if running is None else running + add
            st = self._pool(running, s, axis=2)
            coef = solve_stats(st, s["ridge"], d.present[:, None, None, :], s["min_samples"])
            until = np.datetime64(f"{yr:04d}-01-01", "ns")
            self._cache = {}
            n_train = np.stack([(ok & (b <= j)).sum(axis=1) for ok, _, b in targets], axis=1)
            self._fit = _Fitted(d.present, center, scale, st, coef, np.zeros((len(problems), leads)),
                                n_train, until, None if train_from is None else as_times(train_from)[0])
            if s["error_correction"] and len(ec_run) == leads:
                self._fit.phi = ec_phi(coef, [ec_run[h][0] for h in range(leads)], [ec_run[h][1] for h in range(leads)],
                                       p_of, q_of)
            sel = issue_year == yr
            out[:, sel] = self._predict_rows(d, pos[sel], z)
        return out

    # -- parameters ----------------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        """Settings, features and coefficients in the features' own units, per lead and period."""
        f = self._fit
        if f is None:
            return {}
        out: dict[str, Any] = {"model": self.name, **{k: v for k, v in self._settings.items()},
                               "until": str(f.until)[:19],
                               "train_from": None if f.first is None else str(f.first)[:19]}
        stations = {}
        for i, p in enumerate(self._problems):
            k = len(self._names[i])
            beta = f.coef[i, :, :, 1 : k + 1] / f.scale[i, :k]
            icpt = f.coef[i, :, :, 0] - np.sum(beta * f.center[i, :k], axis=-1)
            table = np.round(np.concatenate([icpt[..., None], beta], axis=-1), 8)
            stations[p.station] = {
                "features": self._names[i],
                "n_train": f.n_train[i].tolist(),
                "ar1": np.round(f.phi[i], 6).tolist(),
                "coefficients": {f"lead_{h + 1}": _json(table[h]) for h in range(table.shape[0])},
            }
        if len(stations) == 1:
            out.update(next(iter(stations.values())))
        else:
            out["stations"] = stations
        return out


def _json(a: np.ndarray) -> list[Any]:
    """Nested lists with None for NaN."""
    return np.where(np.isfinite(a), a, None).tolist()


# --------------------------------------------------------------------------------------
# Causal feature helpers
# --------------------------------------------------------------------------------------


def _shift(ok: np.ndarray) -> np.ndarray:
    """``ok[..., i - 1]`` at i (False at 0)."""
    out = np.zeros_like(ok)
    out[..., 1:] = ok[..., :-1]
    return out


def lagged(values: np.ndarray, lag: int) -> np.ndarray:
    """``values[i - lag]`` at row i (NaN before the start)."""
    out = np.full(values.shape, np.nan)
    if lag < values.shape[-1]:
        out[..., lag:] = values[..., : values.shape[-1] - lag]
    return out


def last_mean(values: np.ndarray, k: int) -> np.ndarray:
    """Mean of rows ``i - k .. i - 1`` at row i (all k must be known)."""
    return np.mean(np.stack([lagged(values, j) for j in range(1, k + 1)]), axis=0)


@register
class OperationalRegression(LinearPeriodModel):
    """The hydromets' regression of a period's mean on the last period's (or last days') flow.

    Options: ``last`` (periods averaged into the predictor, default 1; on the daily step
    the last days), ``window`` (neighbouring periods of the year pooled on each side;
    default 0 for decades, 1 for pentads, 10 for days), ``min_samples`` (5).
    """

    name: ClassVar[str] = "regression"
    OPTIONS: ClassVar[dict[str, Any]] = {**LinearPeriodModel.OPTIONS, "last": 1}

    def features(self, data: xr.Dataset, problem: Problem, times: np.ndarray,
                 settings: dict[str, Any]) -> tuple[np.ndarray, list[str]]:
        k = int(settings["last"])
        if k < 1:
            raise ValueError("last must be >= 1")
        q = series(data, problem.station, problem.variable, times.size)
        return last_mean(q, k)[:, None], [f"{problem.variable}[last {k}]"]
