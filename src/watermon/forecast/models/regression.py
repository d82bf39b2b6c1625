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
  once, every refit computed together (over 20 times the throughput of a ``fit`` and
  ``predict`` a station-year: ``benchmarks/forecast.py``). The rows sit on a (year, period
  of the year) grid, so a refit's sums are the previous refit's plus one row a period;
  the same regressions are solved from pooled *moments* (:func:`pooled_moments`: counts,
  levels, centred sums; the variables' axis first, the periods last, pooled by a moving
  sum) by a Cholesky factorisation vectorised over the groups (:func:`solve_moments`;
  LAPACK one 10 x 10 system at a time costs more than the arithmetic). The leads share
  their features' sums: those of the rows every lead trains on are pooled and factored
  once, each lead adds its target's sums, and redoes its features' only in the windows
  holding rows of its own (near a gap in the target, the last days before a refit). A
  forecast with a missing predictor solves the sub-model of its own group only; the
  AR(1) coefficients come from each refit's training residuals. The forecasts are
  :meth:`fit_many` then :meth:`predict_many`'s to rounding (tested); a coefficient of a
  predictor nearly constant within a window (ill-determined) can differ in its 5th digit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, ClassVar

import numpy as np
import xarray as xr

from watermon.forecast.base import Model, Problem, register
from watermon.forecast.dataset import N_PERIODS, as_times, extend_grid, period_of_year
from watermon.forecast.models.normal_equations import (
    circular_sum, ec_phi, ec_stats, group_stats, period_pairs, pool, pool_within, pooled_moments, solve_moments,
    solve_stats, _centre, _coefficients, _Factor, _factorise, _plain, _plain_own, _row_sums, _tri,
    _window_sum_sparse,
)

# --------------------------------------------------------------------------------------
# Data access
# --------------------------------------------------------------------------------------


def series(data: xr.Dataset, station: str, variable: str, n: int | None = None) -> np.ndarray:
    """One station's values along ``data.time`` (NaN if absent), NaN-padded to ``n``."""
    size = data.sizes["time"]
    out = np.full(size if n is None else n, np.nan)
    if variable not in data.data_vars:
        return out
    # the station's row through the index's hash table: ``.sel`` costs ~0.3 ms a call, and a
    # design reads a dozen series per station
    index = data.indexes.get("station")
    try:
        k = index.get_loc(station) if index is not None else None
    except KeyError:
        return out
    except (TypeError, ValueError):
        k = None
    row = data.variables[variable].isel(station=k) if isinstance(k, (int, np.integer)) else None
    if row is not None and row.dims == ("time",):
        out[:size] = np.asarray(row.values, dtype=np.float64)
    elif station in data["station"].values:
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
    sums: np.ndarray | Callable[[], np.ndarray]  # (S, L, P, M) pooled packed sums, or what makes them
    coef: np.ndarray  # (S, L, P, K+1) full model
    phi: np.ndarray  # (S, L) AR(1) error correction
    n_train: np.ndarray  # (S, L)
    until: np.datetime64
    first: np.datetime64 | None

    @property
    def stats(self) -> np.ndarray:
        """The pooled packed sums (for the sub-models of missing features), made when first needed."""
        if callable(self.sums):
            self.sums = self.sums()
        return self.sums


class _RollingGrid:
    """The rows of a design on a dense (year, period of the year) grid, and which rows each yearly refit trains on."""

    def __init__(self, t: int, year_of: np.ndarray, period: np.ndarray, n_p: int, years: np.ndarray,
                 leads: int) -> None:
        self.n_p, self.years = n_p, years
        ycal = year_of - year_of[0]
        self.yc = yc = int(ycal[-1]) + 1
        self.slot = ycal * n_p + period
        """each row's place on the (year, period) grid"""
        if np.unique(self.slot).size != t:
            raise ValueError("two rows in one period of a year")
        self.flat_t = period * yc + ycal
        """each row's place on the (period, year) grid"""
        self.prev_t = np.zeros(n_p * yc, dtype=np.intp)
        self.prev_t[self.flat_t[1:]] = self.flat_t[:-1]
        """the place of the row before (0 for none)"""
        there = np.zeros(yc * n_p, dtype=bool)
        there[self.slot] = True
        there = there.reshape(yc, n_p)
        n_j = years.size
        ys = np.arange(yc)
        self.bins: list[np.ndarray] = []  # per lead (T,): 0 before the first refit year, j + 1 in years[j]
        self.ylim: list[np.ndarray] = []  # per lead (J, P): refit j trains on the years y < ylim[j, p] of period p
        self.base: list[np.ndarray] = []  # per lead (Y0, P): the rows of the first refit
        self.train_t: list[np.ndarray] = []  # per lead (P, Yc, J): the rows of each refit
        ec_ok = np.ones(n_j, dtype=bool)
        for h in range(1, leads + 1):
            tgt = np.full(t, years[-1] + 1)
            tgt[: t - h + 1] = year_of[h - 1 :]
            b = np.searchsorted(years, tgt, side="right")  # of the target period: refit j trains on b <= j
            self.bins.append(b)
            ec_ok &= np.array([bool((b <= j).any()) for j in range(n_j)])
            grid_b = np.full(yc * n_p, np.iinfo(np.int64).max)
            grid_b[self.slot] = b
            inside = there[None] & (grid_b.reshape(yc, n_p)[None] <= np.arange(n_j)[:, None, None])  # (J, Yc, P)
            ylim = np.where(inside.any(axis=1), yc - np.argmax(inside[:, ::-1], axis=1), 0)
            if (there[None] & ~inside & (ys[None, :, None] < ylim[:, None, :])).any():
                raise ValueError("the training rows of a period of the year are not its first years")
            self.ylim.append(ylim)
            self.base.append(ys[: int(ylim[0].max()), None] < ylim[0][None, :])
            self.train_t.append((ys[None, :, None] < ylim.T[:, None, :]).astype(np.float64))
        self.ec_ok = ec_ok.astype(np.float64)
        """1 for the refits whose every lead has rows (the AR(1) correction is fitted), else 0"""


class _Last:
    """The last refit of a hindcast, as :class:`_Fitted` keeps it."""

    def __init__(self, s_n: int, leads: int, n_p: int, k: int) -> None:
        self.shape = (s_n, leads, n_p, (k + 2) * (k + 3) // 2)
        self.coef = np.zeros((s_n, leads, n_p, k + 1))
        self.phi = np.zeros((s_n, leads))
        self.n_train = np.zeros((s_n, leads), dtype=np.int64)
        self.moments: list[tuple[slice, int, _Moments]] = []

    def keep(self, sb: slice, lead: int, coef: np.ndarray, moments: _Moments, n_train: np.ndarray) -> None:
        """Lead ``lead`` of the stations ``sb``: coefficients ``(K+1, Sb, J, P)``, the last refit's moments."""
        self.moments.append((sb, lead, moments))
        self.coef[sb, lead] = np.moveaxis(coef[:, :, -1], 0, -1)
        self.n_train[sb, lead] = n_train

    def stats(self) -> np.ndarray:
        """The last refit's pooled packed sums ``(S, L, P, M)`` (as :func:`group_stats` then
        :func:`pool_within` give them)."""
        out = np.zeros(self.shape)
        for sb, lead, moments in self.moments:
            n, mean, c = moments.last()
            iu, iv, _ = _tri(mean.shape[0])
            with np.errstate(invalid="ignore"):
                raw = np.concatenate([n[None], n * mean, c + n * mean[iu] * mean[iv]])
            out[sb, lead] = np.nan_to_num(np.moveaxis(raw, 0, -1))
        return out


class _Moments:
    """A lead's pooled moments (:func:`pooled_moments`) of every (station, refit, period)."""

    def __init__(self, n: np.ndarray, mean: np.ndarray, c: np.ndarray) -> None:
        self.n, self.mean, self.c = n, mean, c

    def at(self, s: Any, j: Any, p: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.n[s, j, p], self.mean[:, s, j, p], self.c[:, s, j, p]

    def last(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.n[:, -1], self.mean[:, :, -1], self.c[:, :, -1]

    def tail(self) -> _Moments:
        """The last refit's moments alone (copies: the rest can go)."""
        return _Moments(self.n[:, -1:].copy(), self.mean[:, :, -1:].copy(), self.c[:, :, -1:].copy())


@dataclass
class _Core:
    """The features' sums of the rows every lead of a block trains on (``LinearPeriodModel._core``)."""

    n: np.ndarray  # (Sb, J, P) rows of the period itself
    c: np.ndarray  # (K(K+1)/2, Sb, J, P) their centred sums, not pooled
    few: np.ndarray | None  # (Sb, J, P) where pooled plainly ("auto": the period has few rows of its own)
    few_within: np.ndarray | None  # (K(K+1)/2, n_few) there: pooled centred on each period's own means
    big_n: np.ndarray  # (Sb, J, P) pooled rows
    mean: np.ndarray  # (K, Sb, J, P) the levels the regressions use
    pooled: np.ndarray  # the centred sums they use: on each period's own means, plain where ``few``
    f: _Factor

    def within(self, s: np.ndarray, j: np.ndarray, p: np.ndarray) -> np.ndarray:
        """The centred sums of the groups (s, j, p) pooled on each period's own means."""
        out = self.pooled[:, s, j, p]
        if self.few is not None:
            hit = self.few[s, j, p]
            if hit.any():
                index = np.full(self.few.shape, -1, dtype=np.intp)
                index[self.few] = np.arange(self.few_within.shape[1])
                out[:, hit] = self.few_within[:, index[s[hit], j[hit], p[hit]]]
        return out


class _SharedMoments(_Moments):
    """A lead's moments on top of the core: the core's features' sums and levels, the lead's
    target sums; the lead's own features' in the windows with rows of its own (``own``: their
    station, refit, period, feature levels and centred sums)."""

    def __init__(self, k: int, big_n: np.ndarray, mean_x: np.ndarray, cxx: np.ndarray, mean_y: np.ndarray,
                 cy: np.ndarray, own: tuple[np.ndarray, ...] | None) -> None:
        self.k, self.n, self.mean_x, self.cxx, self.mean_y, self.cy = k, big_n, mean_x, cxx, mean_y, cy
        self.index = None
        if own is not None:
            self.index = np.full(big_n.shape, -1, dtype=np.intp)
            self.index[own[0], own[1], own[2]] = np.arange(own[0].size)
            self.own_mean, self.own_cxx = own[3], own[4]

    def features(self, s: Any, j: Any, p: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows, feature levels and the features' centred sums (packed) of the groups (s, j, p)."""
        n = self.n[s, j, p]
        mean = self.mean_x[:, s, j, p]
        cxx = self.cxx[:, s, j, p]
        if self.index is not None:
            i = self.index[s, j, p]
            hit = i >= 0
            if hit.any():
                mean[:, hit] = self.own_mean[:, i[hit]]
                cxx[:, hit] = self.own_cxx[:, i[hit]]
        return n, mean, cxx

    def at(self, s: Any, j: Any, p: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        k = self.k
        iu, iv, _ = _tri(k + 1)
        n, mean_x, cxx = self.features(s, j, p)
        mean = np.concatenate([mean_x, self.mean_y[s, j, p][None]])
        c = np.empty((iu.size, *n.shape))
        inner = iv < k
        c[inner] = cxx[_tri(k)[2][iu[inner], iv[inner]]]
        c[~inner] = self.cy[:, s, j, p][iu[~inner]]
        return n, mean, c

    def last(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s_n, n_j, n_p = self.n.shape
        return self.at(np.arange(s_n)[:, None], n_j - 1, np.arange(n_p)[None, :])

    def tail(self) -> _SharedMoments:
        """The last refit's moments alone (copies: the rest can go)."""
        own = None
        if self.index is not None:
            at = np.nonzero(self.index[:, -1] >= 0)
            i = self.index[:, -1][at]
            own = (at[0], np.zeros(i.size, dtype=np.intp), at[1], self.own_mean[:, i], self.own_cxx[:, i])
        return _SharedMoments(self.k, self.n[:, -1:].copy(), self.mean_x[:, :, -1:].copy(),
                              self.cxx[:, :, -1:].copy(), self.mean_y[:, -1:].copy(), self.cy[:, :, -1:].copy(), own)

    def own(self, cells: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
        """Which of the groups ``cells`` have features' sums of the lead's own (not the core's)."""
        if self.index is None:
            return np.zeros(cells[0].shape, dtype=bool)
        return self.index[cells] >= 0


@dataclass
class _Rows:
    """Design rows to forecast (``LinearPeriodModel._rows``)."""

    z: np.ndarray  # (Sb, n, K) features, 0 where unknown
    refit: np.ndarray  # (n,) refit of each row
    period: np.ndarray  # (n,) period of the year
    si: np.ndarray  # the (station, row) with features missing
    ni: np.ndarray
    cells: tuple[np.ndarray, np.ndarray, np.ndarray]  # their (station, refit, period)
    use: np.ndarray  # (K, n_missing) the features their sub-models use
    f: _Factor | None  # those sub-models' features, from the core



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
        z = d.x - center[:, None, :]
        z /= scale[:, None, :]
        if not d.present.all():
            z[np.broadcast_to(~d.present[:, None, :], z.shape)] = 0.0
        return z

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
    HINDCAST_BLOCK: ClassVar[int] = 3_000_000
    """packed sums (stations x refits x periods x sums) :meth:`hindcast_many` works on at once:
    arrays of a few MB stay in the cache (larger ones are new pages on every allocation)"""
    HINDCAST_CHUNK: ClassVar[int] = 10
    """stations whose design :meth:`hindcast_many` builds at once (~7 MB a station of 20 years
    daily with 10 predictors)"""
    SHARE_LEADS: ClassVar[bool] = True
    """:meth:`hindcast_many` sums the features once for all leads (False: every lead on its own;
    the same forecasts, slower)"""

    def hindcast_many(self, data: xr.Dataset, problems: Sequence[Problem], issue_times: Any,
                      train_from: Any = None, chunk: int | None = None) -> np.ndarray:
        """Rolling-origin hindcast ``(S, N, L)`` with a refit on 1 January of every year.

        Issued in year Y, a forecast comes from the model fitted on the rows whose target
        period is before 1 January of Y (and features before the issue time): what
        :meth:`fit_many` with ``until`` = 1 January Y then :meth:`predict_many` give (to
        rounding; tested), computed for every refit at once. The rows are laid out on a
        (year, period of the year) grid; the sums of each period are those of the years
        before a refit, accumulated year by year (the rows of the years before the first
        refit summed at once); pooled, solved (:func:`pooled_moments`, :func:`solve_moments`)
        and applied for all refits together; a forecast whose features are not all known
        solves the sub-model of its own group only; the AR(1) coefficients come from the
        training residuals of each refit. The design is built ``chunk`` stations at a time
        (:attr:`HINDCAST_CHUNK`), the sums for a few stations at a time (:attr:`HINDCAST_BLOCK`).
        Issues of a year before which no target is known (the record's first year) stay NaN.
        """
        issues = as_times(issue_times)
        s = self._batch_settings(problems)
        if chunk is None:
            chunk = self.HINDCAST_CHUNK
        if len(problems) > chunk:
            return np.concatenate([self.hindcast_many(data, problems[i : i + chunk], issues, train_from, chunk)
                                   for i in range(0, len(problems), chunk)], axis=0)
        step, leads = problems[0].step, problems[0].leads
        n_p = N_PERIODS[step]
        out = np.full((len(problems), issues.size, leads), np.nan)
        if issues.size == 0:
            return out
        d = self.design(data, problems, grid_periods_needed(data, issues, leads, step))
        pos = issue_positions(d.times, issues)
        year_of = d.times.astype("datetime64[Y]").astype(np.int64) + 1970
        issue_year = year_of[pos]
        first = 0 if train_from is None else int(np.searchsorted(d.times, as_times(train_from)[0]))
        # a year whose refit has no row to learn from is not forecast: its model would be empty,
        # and the columns and scales below, taken before the first refit, would be empty for all
        known = np.flatnonzero(np.isfinite(d.y[:, first:]).any(axis=0))
        if known.size == 0:
            return out
        fittable = issue_year > year_of[first + known[0]]
        if not fittable.all():
            if fittable.any():
                out[:, fittable] = self.hindcast_many(data, problems, issues[fittable], train_from, chunk)
            return out
        years = np.unique(issue_year)
        # centre/scale from the rows before the first refit: valid for every later refit
        n0 = int(np.searchsorted(d.times, np.datetime64(f"{years[0]:04d}-01-01", "ns")))
        d = self._usable(d, n0, first)
        center, scale = self._normalise(d, n0, first)
        z = self._z(d, center, scale)
        self._settings, self._problems, self._names = s, list(problems), d.names
        grid = _RollingGrid(d.times.size, year_of, d.period, n_p, years, leads)
        s_n, k = d.x.shape[0], d.x.shape[2]
        last = _Last(s_n, leads, n_p, k)
        refit = np.searchsorted(years, issue_year)
        xok = d.xok & (np.arange(d.times.size) >= first)[None, :]
        block = max(1, self.HINDCAST_BLOCK // ((k + 2) * (k + 3) // 2 * years.size * n_p))
        for lo in range(0, s_n, block):
            sb = slice(lo, min(lo + block, s_n))
            self._hindcast_block(grid, z[sb], d.y[sb], xok[sb], d.present[sb], d.period, pos, refit, s,
                                 out[sb], last, sb)
        clip = s.get("clip_min")
        if clip is not None:
            np.maximum(out, clip, out=out)
        self._cache = {}
        self._fit = _Fitted(d.present, center, scale, last.stats, last.coef, last.phi, last.n_train,
                            np.datetime64(f"{years[-1]:04d}-01-01", "ns"),
                            None if train_from is None else as_times(train_from)[0])
        return out

    def _hindcast_block(self, grid: _RollingGrid, z: np.ndarray, y: np.ndarray, xok: np.ndarray,
                        present: np.ndarray, period: np.ndarray, pos: np.ndarray, refit: np.ndarray,
                        s: dict[str, Any], out: np.ndarray, last: _Last, sb: slice) -> None:
        """The hindcast of a few stations (``out (Sb, N, L)``, filled) for every lead and refit.

        The leads share their features' sums: the rows every lead trains on (the core) are
        summed, pooled and factored once; a lead adds its target's sums, and redoes the
        features' only in the windows that hold rows of its own (a target known for this lead
        but not for a longer one; the last days before a refit, whose longer leads' targets
        are after it). Plain pooling (``pool_levels: true``) sums everything per lead.
        """
        s_n, t, k = z.shape
        leads = out.shape[2]
        n_p, yc = grid.n_p, grid.yc
        ec = bool(s["error_correction"])
        zd = np.zeros((k, s_n, yc * n_p))
        zd[:, :, grid.slot] = np.where(np.isfinite(z), z, 0.0).transpose(2, 0, 1)
        zd = zd.reshape(k, s_n, yc, n_p)
        targets = []
        for h in range(1, leads + 1):
            yh = np.full(y.shape, np.nan)
            yh[:, : t - h + 1] = y[:, h - 1 :]
            targets.append(yh)
        core = None
        if k > 0 and s["pool_levels"] is not True and self.SHARE_LEADS:
            every = xok.copy()
            for yh in targets:
                every &= np.isfinite(yh)
            core = self._core(grid, zd, self._dense(grid, every), present, s)
        issue_rows = self._rows(core, z, present, pos, refit, period, s)
        if ec:  # [1, z] on the (station, period, year) grid, for the training residuals
            xt = np.ones((s_n, n_p, yc, k + 1))
            xt[..., 1:] = zd.transpose(1, 3, 2, 0)
            prev = np.zeros((s_n, n_p * yc), dtype=bool)
            e = np.full((s_n, pos.size), np.nan)
            res = np.empty((s_n, n_p, yc, grid.years.size))
            m = np.empty(res.shape)
        for h in range(1, leads + 1):
            yh = targets[h - 1]
            ok = np.isfinite(yh) & xok
            okd = self._dense(grid, ok)
            yd = self._dense(grid, np.where(ok, yh, 0.0))
            if core is not None:
                coef, moments = self._lead_shared(core, grid, h, zd, okd, yd, present, s)
            else:
                coef, moments = self._lead_full(grid, h, zd, okd, yd, present, s)
            fc = self._apply_cells(coef, moments, issue_rows, s)
            if ec:  # the AR(1) coefficient of each refit from its training residuals
                c0 = coef.transpose(1, 3, 0, 2).copy()  # (Sb, P, K+1, J)
                c0[:, :, 0] = np.where(np.isnan(c0[:, :, 0]), 0.0, c0[:, :, 0])  # an empty group: NaN intercept
                np.matmul(xt, c0, out=res)  # (Sb, P, Yc, J) fitted
                np.subtract(yd.transpose(0, 2, 1)[..., None], res, out=res)
                if h == 1:  # the lead-1 residual of the row before
                    r1 = res.reshape(s_n, n_p * yc, -1)[:, grid.prev_t].reshape(res.shape)
                    r1sq = r1 * r1
                    prev[:, grid.flat_t[1:]] = ok[:, :-1]
                    prev = prev.reshape(s_n, n_p, yc)
                    p1 = pos - 1
                    have = p1 >= 0
                    e[:, have] = y[:, p1[have]] - self._apply_cells(
                        coef, moments, self._rows(core, z, present, p1[have], refit[have], period, s), s)
                    e = np.where(np.isfinite(e), e, 0.0)
                np.multiply((okd.transpose(0, 2, 1) * prev)[..., None], grid.train_t[h - 1], out=m)  # the lead's rows
                res *= m
                num = np.einsum("spyj,spyj->sj", res, r1)
                den = np.einsum("spyj,spyj->sj", m, r1sq)
                with np.errstate(invalid="ignore", divide="ignore"):
                    phi = np.clip(np.where(den > 1e-12, num / den, 0.0), -0.99, 0.99) * grid.ec_ok
                fc = fc + phi[:, refit] * e
                last.phi[sb, h - 1] = phi[:, -1]
            out[:, :, h - 1] = fc
            last.keep(sb, h - 1, coef, moments.tail(), (ok & (grid.bins[h - 1] <= grid.years.size - 1)).sum(axis=1))

    @staticmethod
    def _dense(grid: _RollingGrid, values: np.ndarray) -> np.ndarray:
        """``(Sb, T)`` row values on the ``(Sb, Yc, P)`` grid (0 where no row)."""
        out = np.zeros((values.shape[0], grid.yc * grid.n_p))
        out[:, grid.slot] = values
        return out.reshape(values.shape[0], grid.yc, grid.n_p)

    def _lead_full(self, grid: _RollingGrid, h: int, zd: np.ndarray, okd: np.ndarray, yd: np.ndarray,
                   present: np.ndarray, s: dict[str, Any]) -> tuple[np.ndarray, _Moments]:
        """Coefficients ``(K+1, Sb, J, P)`` of lead ``h`` and its moments, every sum of its own."""
        k = zd.shape[0]
        a = np.empty((k + 2, *okd.shape))
        a[0] = okd
        np.multiply(zd, okd, out=a[1 : k + 1])
        a[k + 1] = yd
        raw = _row_sums(a, list(zip(*np.triu_indices(k + 2), strict=True)), grid.ylim[h - 1], grid.base[h - 1])
        moments = _Moments(*pooled_moments(raw, s["window"], s["pool_levels"], self.MIN_OWN_LEVEL))
        coef = solve_moments(moments.n, moments.mean, moments.c, s["ridge"], present.T[:, :, None, None],
                             s["min_samples"])
        return coef, moments

    def _core(self, grid: _RollingGrid, zd: np.ndarray, okd: np.ndarray, present: np.ndarray,
              s: dict[str, Any]) -> _Core:
        """The features' sums of the rows every lead trains on, pooled and factored."""
        k, s_n, _, n_p = zd.shape
        a = np.empty((k + 1, *okd.shape))
        a[0] = okd
        np.multiply(zd, okd, out=a[1:])
        raw = _row_sums(a, list(zip(*np.triu_indices(k + 1), strict=True)), grid.ylim[-1], grid.base[-1])
        n, s1, c = raw[0], raw[1 : k + 1], raw[k + 1 :]
        w, auto = s["window"], s["pool_levels"] == "auto"
        few = (n < self.MIN_OWN_LEVEL if auto else n <= 0) if w > 0 else np.zeros(n.shape, dtype=bool)
        big_n = circular_sum(n, w, np.empty(n.shape))
        if few.any():  # the periods whose level is pooled: from the sums before centring
            level, plain = _plain(few, s1, c, big_n, w, auto, *_tri(k)[:2])
        own = _centre(n, s1, c, *_tri(k)[:2])
        pooled = circular_sum(c, w, np.empty(c.shape))
        mean = own.copy()
        within = None
        if few.any():
            mean[:, few] = level
            if plain is not None:
                within = pooled[:, few]  # the lead's own windows start from these
                pooled[:, few] = plain
        b = big_n.size
        use = np.broadcast_to(present.T[:, :, None, None], (k, *n.shape)).reshape(k, b)
        f = _factorise(big_n.reshape(b), mean.reshape(k, b), pooled.reshape(pooled.shape[0], b), _tri(k)[2],
                       s["ridge"], use, s["min_samples"])
        return _Core(n, c, few if within is not None else None, within, big_n, mean, pooled, f)

    def _lead_shared(self, core: _Core, grid: _RollingGrid, h: int, zd: np.ndarray, okd: np.ndarray,
                     yd: np.ndarray, present: np.ndarray, s: dict[str, Any]) -> tuple[np.ndarray, _SharedMoments]:
        """Coefficients ``(K+1, Sb, J, P)`` of lead ``h`` and its moments on top of the core."""
        k, s_n, yc, n_p = zd.shape
        e = k + 1
        w, auto = s["window"], s["pool_levels"] == "auto"
        ylim = grid.ylim[h - 1]
        a = np.empty((e + 1, *okd.shape))
        a[0] = okd
        np.multiply(zd, okd, out=a[1:e])
        a[e] = yd
        pairs = [(0, u) for u in range(e + 1)] + [(e, u) for u in range(1, e + 1)]
        raw = _row_sums(a, pairs, ylim, grid.base[h - 1])
        n, s1, cy = raw[0], raw[1 : e + 1], raw[e + 1 :]  # cy[u]: the sums of v_u y, u = features, target
        few = (n < self.MIN_OWN_LEVEL if auto else n <= 0) if w > 0 else np.zeros(n.shape, dtype=bool)
        s2 = cy.copy() if few.any() and auto else None
        own = _centre(n, s1, cy, np.arange(e), np.full(e, k))
        big_n = circular_sum(n, w, np.empty(n.shape))
        cy = circular_sum(cy, w, np.empty(cy.shape))
        mean_y = own[k].copy()
        if few.any():
            level, plain = _plain(few, s1, s2, big_n, w, auto, np.arange(e), np.full(e, k))
            mean_y[few] = level[k]
            if plain is not None:
                cy[:, few] = plain
        # the windows holding rows of this lead's own: its features' sums afresh
        iu, iv, at_x = _tri(k)
        dirty = n > core.n
        aff_index = None
        if dirty.any():
            ds, dj, dq = np.nonzero(dirty)
            zg = zd.transpose(1, 3, 0, 2)[ds, dq]  # (nd, K, Yc)
            rows = okd.transpose(0, 2, 1)[ds, dq] * (np.arange(yc)[None, :] < ylim[dj, dq][:, None])
            cd = np.einsum("nuy,nvy,ny->uvn", zg, zg, rows)[iu, iv]
            s1d, ownd = s1[:k, ds, dj, dq], own[:k, ds, dj, dq]
            cd -= s1d[iu] * ownd[iv]
            cd -= core.c[:, ds, dj, dq]
            aff = circular_sum(dirty.astype(np.float64), w) > 0.5
            as_, aj, ap = np.nonzero(aff)
            cxx = core.within(as_, aj, ap) + _window_sum_sparse(cd, ds * grid.years.size + dj, dq,
                                                                    as_ * grid.years.size + aj, ap, n_p, w)
            mean_a = own[:, as_, aj, ap]
            fa = few[as_, aj, ap]
            if fa.any():
                cells = np.zeros(n.shape, dtype=bool)
                cells[as_[fa], aj[fa], ap[fa]] = True
                level, corr = _plain_own(cells, s1[:k], own[:k], big_n, w, auto, iu, iv)
                mean_a[:k, fa] = level
                if corr is not None:
                    cxx[:, fa] += corr
            aff_index = (as_, aj, ap, mean_a[:k], cxx)
        b = n.size
        coef = _coefficients(core.f, big_n.reshape(b), mean_y.reshape(b), cy[:k].reshape(k, b)).reshape(e, *n.shape)
        moments = _SharedMoments(k, big_n, core.mean, core.pooled, mean_y, cy, aff_index)
        if aff_index is not None:
            cells = aff_index[:3]
            f = _factorise(big_n[cells], aff_index[3], aff_index[4], at_x, s["ridge"], present[cells[0]].T,
                           s["min_samples"])
            coef[:, cells[0], cells[1], cells[2]] = _coefficients(f, big_n[cells], mean_y[cells],
                                                                  cy[:k, cells[0], cells[1], cells[2]])
        return coef, moments

    def _rows(self, core: _Core | None, z: np.ndarray, present: np.ndarray, rows: np.ndarray, refit: np.ndarray,
              period: np.ndarray, s: dict[str, Any]) -> _Rows:
        """The design rows ``rows`` forecast from the refits ``refit``: their features, and the
        groups of the rows whose features are not all known (their sub-models' features
        factored once from the core for every lead)."""
        zr = z[:, rows]
        known = np.isfinite(zr)
        miss = ~known & present[:, None, :]
        si, ni = np.nonzero(miss.any(axis=2))
        cells = (si, refit[ni], period[rows][ni])
        use = (present[si] & ~miss[si, ni]).T
        f = None
        if core is not None and si.size:
            f = _factorise(core.big_n[cells], core.mean[:, cells[0], cells[1], cells[2]],
                           core.pooled[:, cells[0], cells[1], cells[2]], _tri(z.shape[2])[2], s["ridge"], use,
                           s["min_samples"])
        return _Rows(np.where(known, zr, 0.0), refit, period[rows], si, ni, cells, use, f)

    def _apply_cells(self, coef: np.ndarray, moments: _Moments | _SharedMoments, r: _Rows,
                     s: dict[str, Any]) -> np.ndarray:
        """Forecasts ``(Sb, n)`` of one lead at the rows ``r``: the full model where every feature
        is known, else the sub-model without the missing ones, solved for that group only."""
        c = coef[:, :, r.refit, r.period]  # (K+1, Sb, n)
        if r.z.shape[2] == 0:
            return c[0].copy()
        val = c[0] + np.einsum("ksn,snk->sn", c[1:], r.z)
        if r.si.size:
            si, ni, cells = r.si, r.ni, r.cells
            if r.f is not None and isinstance(moments, _SharedMoments):  # the core's factors, the lead's target
                k = r.z.shape[2]
                sub = _coefficients(r.f, moments.n[cells], moments.mean_y[cells],
                                    moments.cy[:k, cells[0], cells[1], cells[2]])
                own = moments.own(cells)
                if own.any():
                    sel = (cells[0][own], cells[1][own], cells[2][own])
                    n_, mx, cxx = moments.features(*sel)
                    f = _factorise(n_, mx, cxx, _tri(k)[2], s["ridge"], r.use[:, own], s["min_samples"])
                    sub[:, own] = _coefficients(f, n_, moments.mean_y[sel], moments.cy[:k, sel[0], sel[1], sel[2]])
            else:
                sub = solve_moments(*moments.at(*cells), s["ridge"], r.use, s["min_samples"])
            val[si, ni] = sub[0] + np.einsum("kn,nk->n", sub[1:], r.z[si, ni])
        return val

    # -- parameters ----------------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        """Settings, features and coefficients in the features' own units, per lead and period;
        ``left_out``: the features known on too few training rows to be used (coefficients 0)."""
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
                "left_out": [n for n, used in zip(self._names[i], f.present[i, :k], strict=True) if not used],
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
