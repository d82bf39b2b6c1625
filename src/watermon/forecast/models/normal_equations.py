"""Normal equations of many small regressions at once: sufficient statistics, pooling, batched solves.

The numerical core of :class:`~watermon.forecast.models.regression.LinearPeriodModel`
(whose docstring says what the regressions are). Two layouts of the same sums:

* per (station, lead, period of the year) packed sums of ``[1, x, y] [1, x, y]^T``
  (:func:`group_stats`, pooled over neighbouring periods by :func:`pool_within`, solved by
  :func:`solve_stats`): what ``fit`` uses;
* pooled *moments* with the variables' axis first and the periods last (counts, levels,
  centred sums; :func:`pooled_moments`), solved by a Cholesky factorisation vectorised
  over the groups (:func:`solve_moments`): what the rolling-origin ``hindcast_many`` uses,
  where one refit's sums are the previous refit's plus one row a period.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import bottleneck as bn
import numpy as np

JITTER = 1e-9
"""added to the standardised normal equations so that a singular group still solves"""


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
# Pooled moments and their solve, the variables' axis first (the hindcast engine)
# --------------------------------------------------------------------------------------
# The same regressions as group_stats / pool_within / solve_stats, laid out for many groups
# at once: an array's first axis is the variable (packed sum, feature), the groups follow
# with the periods of the year last, so every operation runs along contiguous memory and
# the pooling of neighbouring periods is a moving sum along the last axis.


@lru_cache(maxsize=64)
def _tri(e: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Packed upper triangle of an ``e x e`` matrix: its row and column indices and the ``(e, e)`` positions."""
    iu, iv = np.triu_indices(e)
    at = np.empty((e, e), dtype=np.intp)
    at[iu, iv] = np.arange(iu.size)
    at[iv, iu] = np.arange(iu.size)
    return iu, iv, at


def circular_sum(x: np.ndarray, window: int, out: np.ndarray | None = None) -> np.ndarray:
    """Circular sum over ``window`` neighbours on each side along the last axis (as :func:`pool`).

    Row by row of the leading axis: each step's arrays stay small (a large temporary is a
    fresh mapping of pages, which costs more than the sum)."""
    if window <= 0:
        if out is None:
            return x
        out[...] = x
        return out
    n = x.shape[-1]
    if 2 * window + 1 > n:
        raise ValueError(f"a window of {window} periods on each side is wider than the year ({n})")
    if out is None:
        out = np.empty(x.shape)
    if x.ndim == 1:
        x, o = x[None], out[None]
    else:
        o = out
    wide = np.empty((*x.shape[1:-1], n + 2 * window))
    for m in range(x.shape[0]):
        wide[..., window : n + window] = x[m]
        wide[..., :window] = x[m, ..., n - window :]
        wide[..., n + window :] = x[m, ..., :window]
        o[m] = bn.move_sum(wide, 2 * window + 1, axis=-1)[..., 2 * window :]
    return out


def _window_at(x: np.ndarray, cells: np.ndarray, window: int) -> np.ndarray:
    """``x (W, ..., P)`` on the ``2 window + 1`` periods around each cell of the boolean mask
    ``cells (..., P)`` (circular): ``(W, n_cells, 2 window + 1)``."""
    n = x.shape[-1]
    rows = cells.reshape(-1, n)
    r, p = np.nonzero(rows)
    have = np.flatnonzero(rows.any(axis=1))  # pad only the rows with such cells
    where = np.zeros(rows.shape[0], dtype=np.intp)
    where[have] = np.arange(have.size)
    xr = x.reshape(x.shape[0], -1, n)[:, have]
    wide = np.empty((x.shape[0], have.size, n + 2 * window))
    wide[..., window : n + window] = xr
    wide[..., :window] = xr[..., n - window :]
    wide[..., n + window :] = xr[..., :window]
    return np.lib.stride_tricks.sliding_window_view(wide, 2 * window + 1, axis=-1)[:, where[r], p]


def pooled_moments(raw: np.ndarray, window: int, mode: Any, min_own: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, levels and centred sums of each group from packed sums, pooled as :meth:`LinearPeriodModel._pool`.

    ``raw (M, ..., P)``: the sums of ``a a^T``, ``a = [1, v_1..v_E]`` (features, then the
    target), packed like :func:`group_stats`, the periods of the year last (overwritten).
    Returns ``n (..., P)``, ``mean (E, ..., P)`` and ``c (E(E+1)/2, ..., P)``: the sums of
    the products of ``v - mean``, packed (upper triangle, :func:`numpy.triu_indices`
    order). ``mode`` ``True``: every sum pooled over ``window`` periods on each side;
    ``False``: each period keeps its own means, the centred sums are pooled
    (:func:`pool_within`); ``"auto"``: so where a period has ``min_own`` rows of its own,
    pooled plainly elsewhere.
    """
    if not (mode is True or mode is False or mode == "auto"):
        raise ValueError(f"pool_levels must be true, false or 'auto', not {mode!r}")
    e = n_features(raw.shape[0]) + 1
    iu, iv, _ = _tri(e)
    n, s1, s2 = raw[0], raw[1 : e + 1], raw[e + 1 :]
    if mode is True and window > 0:
        big_n = circular_sum(n, window)
        big_s1 = circular_sum(s1, window)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = big_s1 / big_n
        c = circular_sum(s2, window)
        for m in range(iu.size):
            c[m] -= big_s1[iu[m]] * mean[iv[m]]
        return big_n, mean, c
    own = np.zeros(s1.shape)
    np.divide(s1, n, out=own, where=n > 0)
    tmp = np.empty(n.shape)
    for m in range(iu.size):  # centred on the period's own means, in place
        np.multiply(s1[iu[m]], own[iv[m]], out=tmp)
        s2[m] -= tmp
    if window <= 0:
        return n.copy(), own, s2.copy()
    big_n = circular_sum(n, window)
    c = circular_sum(s2, window)
    few = n < min_own if mode == "auto" else n <= 0  # whose level (auto: everything) is pooled plainly
    if few.any():
        s1w = _window_at(s1, few, window)
        s1f = s1w.sum(axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mf = s1f / big_n[few]
        if mode == "auto":  # the plain sums: the pooled n mean mean^T of each period back in
            ow = _window_at(own, few, window)
            plain = np.empty((iu.size, mf.shape[1]))
            for m in range(iu.size):
                np.einsum("nq,nq->n", s1w[iu[m]], ow[iv[m]], out=plain[m])
            plain -= s1f[iu] * mf[iv]
            c[:, few] += plain
        else:
            mf = np.where(np.isfinite(mf), mf, 0.0)
        own[:, few] = mf
    return big_n, own, c


def _cholesky(a: np.ndarray) -> np.ndarray:
    """Factor a batch of symmetric positive definite ``a (k, k, B)`` in place (lower triangle
    read, overwritten by ``L``, ``a = L L^T``); returns where a pivot was not positive."""
    k, _, b = a.shape
    bad = np.zeros(b, dtype=bool)
    tmp = np.empty((k, b))
    for j in range(k):
        if j:
            a[j:, j] -= np.einsum("itb,tb->ib", a[j:, :j], a[j, :j], out=tmp[: k - j])
        p = a[j, j]
        fail = ~(p > 0)
        if fail.any():
            bad |= fail
            p[fail] = 1.0
        np.sqrt(p, out=p)
        if j + 1 < k:
            a[j + 1 :, j] /= p
    return bad


def _cholesky_apply(a: np.ndarray, inv: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """``x`` with ``L L^T x = rhs`` for the factors ``a (k, k, B)`` of :func:`_cholesky` (``inv``:
    the reciprocals of their diagonals), ``rhs (k, B)``."""
    k = a.shape[0]
    x = rhs.copy()
    tmp = np.empty(rhs.shape[1:])
    for i in range(k):
        if i:
            x[i] -= np.einsum("tb,tb->b", a[i, :i], x[:i], out=tmp)
        x[i] *= inv[i]
    for i in range(k - 1, -1, -1):
        if i + 1 < k:
            x[i] -= np.einsum("tb,tb->b", a[i + 1 :, i], x[i + 1 :], out=tmp)
        x[i] *= inv[i]
    return x


@dataclass
class _Factor:
    """The standardised ridge normal equations of a batch of groups, factored (:func:`_factorise`)."""

    on: np.ndarray  # (K, B) features in the model
    scale: np.ndarray  # (K, B) 1 / (n sd) of those features, 0 off: the covariance with the target over sd
    unscale: np.ndarray  # (K, B) 1 / sd, 0 off
    mx: np.ndarray  # (K, B) the features' levels, 0 off
    low: np.ndarray  # (K, K, B) Cholesky factor
    inv: np.ndarray  # (K, B) the reciprocals of its diagonal
    bad: np.ndarray  # (B,) not positive definite: solved by LAPACK from ``r``
    r: np.ndarray  # (n_bad, K, K)


def _factorise(n: np.ndarray, mx: np.ndarray, c: np.ndarray, at: np.ndarray, ridge: float,
               use: np.ndarray | None, min_samples: int) -> _Factor:
    """The matrices of :func:`solve_stats` for ``B`` groups: ``n (B,)``, ``mx (K, B)`` the
    features' levels, ``c[at[i, j]] (B,)`` their centred sums; ``use (K, B)``."""
    k = mx.shape[0]
    dg = np.arange(k)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = c[at[dg, dg]] / n
    on = np.isfinite(var) & (var > 1e-12 * np.maximum(1.0, mx**2)) & (n >= max(min_samples, 2))
    if use is not None:
        on &= use
    d = np.sqrt(np.where(on, var, 1.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        g = np.where(on, 1.0 / (np.sqrt(n) * d), 0.0)  # r = c_ij g_i g_j: the correlations, 0 off the model
        scale = np.where(on, 1.0 / (n * d), 0.0)
    a = np.empty((k, k, n.size))
    if n.size < 20_000:  # a few groups: whole-array steps
        li, lj = np.tril_indices(k)
        a[li, lj] = c[at[li, lj]] * g[li] * g[lj]
        a[dg, dg] = np.where(on, a[dg, dg] + (ridge + JITTER), 1.0)
    else:  # many: entry by entry into the result, no large temporaries
        for i in range(k):
            for j in range(i + 1):
                np.multiply(c[at[i, j]], g[i], out=a[i, j])
                a[i, j] *= g[j]
            a[i, i] = np.where(on[i], a[i, i] + (ridge + JITTER), 1.0)
    r = np.zeros((0, k, k))
    bad = _cholesky(a)
    if bad.any():
        r = np.zeros((int(bad.sum()), k, k))
        for i in range(k):
            for j in range(i + 1):
                v = c[at[i, j]][bad] * g[i, bad] * g[j, bad]
                if i == j:
                    v = np.where(on[i, bad], v + (ridge + JITTER), 1.0)
                r[:, i, j] = r[:, j, i] = v
    return _Factor(on, scale, np.where(on, 1.0 / d, 0.0), np.where(on, mx, 0.0), a, 1.0 / a[dg, dg], bad, r)


def _coefficients(f: _Factor, n: np.ndarray, my: np.ndarray, cxy: np.ndarray) -> np.ndarray:
    """``(K + 1, B)`` ``[intercept, beta]`` from the factored groups, the target's level and its
    centred sums with the features ``cxy (K, B)``."""
    rhs = cxy * f.scale
    unknown = ~np.isfinite(rhs)  # off the model (scale 0) in a group without rows
    if unknown.any():
        rhs[unknown] = 0.0
    beta = _cholesky_apply(f.low, f.inv, rhs)
    if f.bad.any():
        beta[:, f.bad] = np.linalg.solve(f.r, rhs[:, f.bad].T[..., None])[..., 0].T
    coef = np.empty((beta.shape[0] + 1, n.size))
    np.multiply(beta, f.unscale, out=coef[1:])  # 0 off the model
    with np.errstate(invalid="ignore"):
        coef[0] = np.where(n > 0, my, np.nan) - np.einsum("kb,kb->b", coef[1:], f.mx)
    return coef


def solve_moments(n: np.ndarray, mean: np.ndarray, c: np.ndarray, ridge: float, use: np.ndarray | None = None,
                  min_samples: int = 3) -> np.ndarray:
    """Ridge coefficients ``(K + 1, ...)`` ``[intercept, beta_1..K]`` from :func:`pooled_moments`.

    The solution of :func:`solve_stats` (features standardised within each group, penalty
    ``ridge`` on the standardised coefficients, features without variance or not in ``use
    (K, ...)`` left out, only the mean under ``min_samples`` rows, NaN when empty) for every
    group at once: a Cholesky factorisation vectorised over the groups (LAPACK one small
    system at a time costs more than the factorisation itself); a system that is not
    positive definite (not seen: the penalty includes a jitter) goes to :func:`numpy.linalg.solve`.
    """
    e = mean.shape[0]
    k = e - 1
    shape = n.shape
    if k == 0:
        with np.errstate(invalid="ignore"):
            return np.where(n > 0, mean[0], np.nan)[None].copy()
    _, _, at = _tri(e)
    b = int(np.prod(shape))
    n, c, mean = n.reshape(b), c.reshape(c.shape[0], b), mean.reshape(e, b)
    if use is not None:
        use = np.broadcast_to(use, (k, *shape)).reshape(k, b)
    f = _factorise(n, mean[:k], c, at, ridge, use, min_samples)
    return _coefficients(f, n, mean[k], c[at[:k, k]]).reshape(e, *shape)


def _row_sums(a: np.ndarray, pairs: Sequence[tuple[int, int]], ylim: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Sums ``(len(pairs), Sb, J, P)`` of ``a[u] a[v]`` over the training rows of every refit.

    ``a (V, Sb, Yc, P)``: row values on the (year, period) grid, 0 off the training rows,
    ``a[0]`` the 0/1 mask of those rows; refit ``j`` trains on the years ``y < ylim[j, p]``
    of period ``p``; ``base (Y0, P)``: ``y < ylim[0, p]``. The first refit's rows are summed
    at once, then each refit adds the rows of its new year(s). Pairs with one ``u`` and
    consecutive ``v`` are done together.
    """
    nv, s_n, yc, n_p = a.shape
    n_j = ylim.shape[0]
    out = np.empty((len(pairs), s_n, n_j, n_p))
    runs: list[tuple[int, int, int, int]] = []  # (u, first v, last v + 1, first pair)
    for m, (u, v) in enumerate(pairs):
        if runs and runs[-1][0] == u and runs[-1][2] == v and runs[-1][3] + runs[-1][2] - runs[-1][1] == m:
            runs[-1] = (u, runs[-1][1], v + 1, runs[-1][3])
        else:
            runs.append((u, v, v + 1, m))
    full = int(base.all(axis=1).argmin()) if not base.all() else base.shape[0]  # years in every period's base
    a0 = a[:, :, :full]
    part = a[:, :, full : base.shape[0]] * base[full:]  # the years in some periods' only (29 February, ...)
    for u, v0, v1, m0 in runs:
        m1 = m0 + v1 - v0
        if u == 0:  # a[0] a[v] = a[v]: a[v] is 0 off the mask
            np.sum(a0[v0:v1], axis=2, out=out[m0:m1, :, 0])
            out[m0:m1, :, 0] += part[v0:v1].sum(axis=2)
        else:
            np.einsum("vsyp,syp->vsp", a0[v0:v1], a0[u], out=out[m0:m1, :, 0])
            out[m0:m1, :, 0] += np.einsum("vsyp,syp->vsp", part[v0:v1], part[u])
    if n_j > 1:
        lo, hi = ylim[:-1], ylim[1:]
        g = np.take(a.reshape(nv, s_n, yc * n_p), np.minimum(lo, yc - 1) * n_p + np.arange(n_p), axis=2)
        g *= lo < hi
        for u, v0, v1, m0 in runs:
            m1 = m0 + v1 - v0
            if u == 0:
                out[m0:m1, :, 1:] = g[v0:v1]
            else:
                np.multiply(g[v0:v1], g[u], out=out[m0:m1, :, 1:])
        pu, pv = np.array(pairs).T
        for step in range(1, int((hi - lo).max())):  # several new years of a period (29 February: leap years)
            jj, pp = np.nonzero(lo + step < hi)
            gs = a[:, :, lo[jj, pp] + step, pp]
            out[:, :, jj + 1, pp] += gs[pu] * gs[pv]
        for j in range(1, n_j):
            out[:, :, j] += out[:, :, j - 1]
    return out


def _centre(n: np.ndarray, s1: np.ndarray, c: np.ndarray, iu: np.ndarray, iv: np.ndarray) -> np.ndarray:
    """The groups' own means ``s1 / n`` (0 where empty); the sums ``c[m]`` of ``v_iu[m] v_iv[m]``
    centred on them, in place."""
    own = np.zeros(s1.shape)
    np.divide(s1, n, out=own, where=n > 0)
    tmp = np.empty(n.shape)
    for m in range(len(iu)):
        np.multiply(s1[iu[m]], own[iv[m]], out=tmp)
        c[m] -= tmp
    return own


def _window_sums(x: np.ndarray, cells: np.ndarray, window: int) -> np.ndarray:
    """``circular_sum(x, window)[:, cells]`` ``(W, n_cells)`` for a boolean mask ``cells`` of
    ``x.shape[1:]``: rows (along the last axis) with many such cells pooled whole, the other
    cells' windows gathered."""
    n = x.shape[-1]
    xr, cr = x.reshape(x.shape[0], -1, n), cells.reshape(-1, n)
    r, p = np.nonzero(cr)
    out = np.empty((x.shape[0], r.size))
    dense = cr.sum(axis=1) * (2 * window + 1) > 3 * n
    on = dense[r]
    if on.any():
        rows = np.flatnonzero(dense)
        where = np.zeros(cr.shape[0], dtype=np.intp)
        where[rows] = np.arange(rows.size)
        out[:, on] = circular_sum(xr[:, rows], window)[:, where[r[on]], p[on]]
    if not on.all():
        rs, ps = r[~on], p[~on]
        out[:, ~on] = xr[:, rs[:, None], (ps[:, None] + np.arange(-window, window + 1)) % n].sum(axis=-1)
    return out


def _plain(cells: np.ndarray, s1: np.ndarray, s2: np.ndarray, big_n: np.ndarray, window: int, auto: bool,
           iu: np.ndarray, iv: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """For the groups ``cells`` whose level is pooled (:func:`pooled_moments`): the pooled means
    ``(V, n_cells)`` and, with ``auto``, the plainly pooled centred sums of ``(iu, iv)`` from the
    raw sums ``s2`` of those products."""
    total = _window_sums(s1, cells, window)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / big_n[cells]
    if not auto:
        return np.where(np.isfinite(mean), mean, 0.0), None
    return mean, _window_sums(s2, cells, window) - total[iu] * mean[iv]


def _plain_own(cells: np.ndarray, s1: np.ndarray, own: np.ndarray, big_n: np.ndarray, window: int, auto: bool,
               iu: np.ndarray, iv: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """As :func:`_plain` without the raw sums: the pooled means and, with ``auto``, what turns
    the within-period centred sums of ``(iu, iv)`` into plain ones (from the own means)."""
    s1w = _window_at(s1, cells, window)
    total = s1w.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / big_n[cells]
    if not auto:
        return np.where(np.isfinite(mean), mean, 0.0), None
    ow = _window_at(own, cells, window)
    return mean, np.einsum("unq,vnq->uvn", s1w, ow)[iu, iv] - total[iu] * mean[iv]


def _window_sum_sparse(values: np.ndarray, src_row: np.ndarray, src_p: np.ndarray, dst_row: np.ndarray,
                       dst_p: np.ndarray, n_p: int, window: int) -> np.ndarray:
    """``(W, n_dst)``: for each destination (row, period), the sum of ``values (W, n_src)`` over the
    sources of its row within ``window`` periods (circularly): differences of prefix sums over
    the sources in (row, period) order."""
    key = (src_row * 3 * n_p + src_p)[:, None] + np.array([0, n_p, 2 * n_p])  # a copy a year before and after
    order = np.argsort(key.ravel(), kind="stable")
    keys = key.ravel()[order]
    total = np.zeros((values.shape[0], keys.size + 1))
    np.cumsum(values[:, order // 3], axis=1, out=total[:, 1:])
    mid = dst_row * 3 * n_p + n_p + dst_p
    return total[:, np.searchsorted(keys, mid + window, side="right")] - total[
        :, np.searchsorted(keys, mid - window, side="left")]
