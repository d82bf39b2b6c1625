"""Blend: a weighted average of member models, weighted by their own out-of-sample errors.

For each lead ``h`` ::

    Q(t0 + h - 1) = sum_m w[h, m] * Q_m(t0 + h - 1),   w[h, m] >= 0,   sum_m w[h, m] = 1

* **Members** (option ``members``): registry models with their own options, e.g. ::

      members:
        - {model: arx, options: {predictors: [flow:1, precipitation_since:10-01], ridge: 0.1}}
        - {model: arx, options: {predictors: [flow:2, temperature_mean:3]}}
        - regression

  Every member forecasts the same problem (station, step, leads, upstream, meteo).
* **Weights from out-of-sample errors**: at a refit time ``until``, every member is run
  as a rolling-origin hindcast over the ``years`` calendar years before it (refitted every
  1 January on the years before, as a verification hindcast is), and only forecasts whose
  target period was over by ``until`` are counted. The weights thus see what each member
  did on data it had not been fitted to (stacking), not its fit to its own training rows,
  which flatters the member with more coefficients. Nothing at or after ``until`` is read.
* ``weights``:

  - ``nnls`` (default): least squares of the observations on the members' forecasts,
    weights non-negative and summing to one (:func:`simplex_lstsq`);
  - ``inverse_variance``: ``w_m`` proportional to 1 / (mean square error of member m);
  - ``equal``.

  A lead with fewer than ``min_cases`` complete cases (every member and the observation
  known) gets equal weights. Where a member has no forecast at an issue time, the others'
  weights are rescaled to sum to one.
* ``hindcast_many`` (the rolling-origin hindcast with yearly refits): the members' own
  (vectorised) rolling hindcasts over the issue times and the ``years`` before them, the
  weights refitted every 1 January from the forecasts issued before: the same numbers as
  :meth:`Blend.fit` on 1 January followed by :meth:`Blend.predict` (tested).
* :func:`select_blend`: the members' set, the weighting and ``years`` chosen by the
  blend's own rolling-origin hindcast inside the training years.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import xarray as xr
from scipy.optimize import nnls

from watermon.forecast.base import MODELS, Model, Problem, register
from watermon.forecast.dataset import as_times, extend_grid
from watermon.forecast.models.regression import forecast_array, grid_periods_needed, issue_positions, series

WEIGHTS = ("nnls", "inverse_variance", "equal")
Member = tuple[str, dict[str, Any]]


def parse_members(members: Any) -> tuple[Member, ...]:
    """Members as ``(model name, options)``: from names, ``{model, options}`` mappings or pairs."""
    if isinstance(members, (str, Mapping)) or not isinstance(members, Sequence):
        raise ValueError("blend: members must be a list of models")
    out: list[Member] = []
    for m in members:
        if isinstance(m, str):
            name, opts = m, {}
        elif isinstance(m, Mapping):
            unknown = set(m) - {"model", "options"}
            if "model" not in m or unknown:
                raise ValueError(f"blend: a member is {{model: NAME, options: {{...}}}}, not {dict(m)!r}")
            name, opts = str(m["model"]), dict(m.get("options") or {})
        elif isinstance(m, Sequence) and len(m) == 2 and isinstance(m[0], str):
            name, opts = m[0], dict(m[1] or {})
        else:
            raise ValueError(f"blend: cannot read the member {m!r}")
        if name == Blend.name:
            raise ValueError("blend: a member cannot be a blend")
        if name not in MODELS:
            raise ValueError(f"blend: unknown member model {name!r}; known: {', '.join(sorted(MODELS))}")
        out.append((name, opts))
    if not out:
        raise ValueError("blend: no members")
    return tuple(out)


def simplex_lstsq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``w >= 0``, ``sum w = 1`` minimising ``|a w - b|``, for ``a (n, M)``, ``b (n,)``.

    Non-negative least squares (:func:`scipy.optimize.nnls`) on the system with the row
    ``lam * (1 ... 1) = lam`` appended, ``lam`` large against the data, then rescaled to
    sum exactly to one.
    """
    m = a.shape[1]
    if m == 1:
        return np.ones(1)
    lam = 1e4 * max(float(np.sqrt(np.mean(a**2))), 1e-12) * np.sqrt(a.shape[0])
    aa = np.vstack([a, np.full((1, m), lam)])
    bb = np.concatenate([b, [lam]])
    w, _ = nnls(aa, bb, maxiter=50 * m)
    total = w.sum()
    return w / total if total > 0 else np.full(m, 1.0 / m)


def fit_weights(f: np.ndarray, obs: np.ndarray, method: str, min_cases: int) -> tuple[np.ndarray, int]:
    """Weights ``(M,)`` of members' forecasts ``f (M, n)`` against ``obs (n,)``, and the cases used."""
    m = f.shape[0]
    ok = np.isfinite(obs) & np.isfinite(f).all(axis=0)
    n = int(ok.sum())
    if method == "equal" or n < max(min_cases, 1):
        return np.full(m, 1.0 / m), n
    a, b = f[:, ok].T, obs[ok]
    if method == "nnls":
        return simplex_lstsq(a, b), n
    if method == "inverse_variance":
        mse = np.mean((a - b[:, None]) ** 2, axis=0)
        inv = 1.0 / np.maximum(mse, 1e-12 * max(float(np.mean(b**2)), 1e-300))
        return inv / inv.sum(), n
    raise ValueError(f"blend: weights must be one of {', '.join(WEIGHTS)}, not {method!r}")


def combine(f: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``sum_m w_m f_m`` over axis 0 of ``f (M, ...)`` with ``w`` broadcast to it.

    Members without a forecast (NaN) are left out and the other weights rescaled; where
    only members of weight 0 have one, their plain mean; NaN where none has one.
    """
    ok = np.isfinite(f)
    ww = np.where(ok, w, 0.0)
    ww = np.where((ww.sum(axis=0) > 0) | ~ok, ww, 1.0)
    total = ww.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, np.sum(ww * np.where(ok, f, 0.0), axis=0) / total, np.nan)


def _make(name: str) -> Model:
    return MODELS[name]()


def _member_problem(problem: Problem, options: Mapping[str, Any]) -> Problem:
    return dataclasses.replace(problem, options=dict(options))


def rolling_forecasts(name: str, options: Mapping[str, Any], data: xr.Dataset, problem: Problem,
                      issues: np.ndarray) -> np.ndarray:
    """``(N, L)`` forecasts of one member issued at ``issues``, refitted every 1 January on the
    data before it (the member's vectorised ``hindcast_many`` when it has one)."""
    p = _member_problem(problem, options)
    model = _make(name)
    if issues.size == 0:
        return np.zeros((0, problem.leads))
    if hasattr(model, "hindcast_many"):
        return np.asarray(model.hindcast_many(data, [p], issues))[0]
    out = np.full((issues.size, problem.leads), np.nan)
    until = issues.astype("datetime64[Y]").astype("datetime64[ns]")
    for u in np.unique(until):
        sel = until == u
        m = _make(name).fit(data, p, u)
        out[sel] = np.asarray(m.predict(data, p, issues[sel]).values)
    return out


def observed(data: xr.Dataset, problem: Problem, issues: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(N, L)`` observed values of each issue time's lead periods (NaN past the data) and
    ``(N, L)`` the start of each lead's target period."""
    times = extend_grid(as_times(data["time"].values), problem.step,
                        grid_periods_needed(data, issues, problem.leads, problem.step))
    pos = issue_positions(times, issues)
    y = series(data, problem.station, problem.variable, times.size)
    obs = np.stack([y[pos + h] for h in range(problem.leads)], axis=1)
    starts = np.stack([times[pos + h] for h in range(problem.leads)], axis=1)
    return obs, starts


def _grid_before(data: xr.Dataset, lo: np.datetime64, hi: np.datetime64) -> np.ndarray:
    """Period starts of the data in ``[lo, hi)``, from the data's second calendar year on (a
    member refitted on 1 January of its first year would have nothing to be fitted on)."""
    t = as_times(data["time"].values)
    if t.size == 0:
        return t
    lo = max(lo, _year_start(_year(t[0]) + 1))
    return t[(t >= lo) & (t < hi)]


def _year_start(year: int) -> np.datetime64:
    return np.datetime64(f"{year:04d}-01-01", "ns")


def _year(t: np.datetime64) -> int:
    return int(np.datetime64(t, "Y").astype(np.int64)) + 1970


@register
class Blend(Model):
    """Weighted average of member models, weights from their rolling out-of-sample errors.

    Options: ``members`` (required: a list of ``{model, options}`` or names), ``weights``
    (``nnls``, ``inverse_variance``, ``equal``; default ``nnls``), ``years`` (calendar
    years of out-of-sample forecasts before the refit time that size the weights; 30),
    ``min_cases`` (30: fewer complete cases for a lead, equal weights).
    """

    name: ClassVar[str] = "blend"
    OPTIONS: ClassVar[dict[str, Any]] = {"members": (), "weights": "nnls", "years": 30, "min_cases": 30}

    def __init__(self, **options: Any) -> None:
        unknown = set(options) - set(self.OPTIONS)
        if unknown:
            raise TypeError(f"Blend: unknown options {sorted(unknown)}; known: {sorted(self.OPTIONS)}")
        self._given = dict(options)
        self._settings: dict[str, Any] = {}
        self._members: list[Model] = []
        self._weights: np.ndarray | None = None  # (L, M)
        self._cases: list[int] = []
        self._until: np.datetime64 | None = None

    def settings(self, problem: Problem) -> dict[str, Any]:
        unknown = set(problem.options) - set(self.OPTIONS)
        if unknown:
            raise ValueError(f"blend ({problem.station}): unknown options {sorted(unknown)}; "
                             f"known: {sorted(self.OPTIONS)}")
        s = {**self.OPTIONS, **problem.options, **self._given}
        s["members"] = parse_members(s["members"])
        if s["weights"] not in WEIGHTS:
            raise ValueError(f"blend: weights must be one of {', '.join(WEIGHTS)}, not {s['weights']!r}")
        s["years"] = int(s["years"])
        s["min_cases"] = int(s["min_cases"])
        if s["years"] < 1:
            raise ValueError("blend: years must be >= 1")
        return s

    # -- weights -------------------------------------------------------------------------
    @staticmethod
    def weights_at(f: np.ndarray, obs: np.ndarray, issues: np.ndarray, starts: np.ndarray,
                   until: np.datetime64, s: Mapping[str, Any]) -> tuple[np.ndarray, list[int]]:
        """``(L, M)`` weights at the refit time ``until`` from member forecasts ``f (M, N, L)``
        issued at ``issues`` (observations ``obs (N, L)``, target starts ``starts (N, L)``):
        the forecasts issued in the ``years`` calendar years before ``until`` whose target
        period was over by then."""
        lo = _year_start(_year(until) - s["years"])
        rows = (issues >= lo) & (issues < until)
        leads = obs.shape[1]
        w = np.empty((leads, f.shape[0]))
        cases = []
        for h in range(leads):
            done = rows & (starts[:, h] < until)
            w[h], n = fit_weights(f[:, done, h], obs[done, h], s["weights"], s["min_cases"])
            cases.append(n)
        return w, cases

    # -- fit and predict -----------------------------------------------------------------
    def fit(self, data: xr.Dataset, problem: Problem, until: Any) -> Blend:
        """Weights from the members' rolling hindcast over the ``years`` before ``until``
        (on the data before ``until`` only), then every member fitted on the data before ``until``."""
        s = self.settings(problem)
        until = as_times(until)[0]
        past = data.sel(time=slice(None, until - np.timedelta64(1, "ns")))
        issues = _grid_before(past, _year_start(_year(until) - s["years"]), until)
        f = np.stack([rolling_forecasts(n, o, past, problem, issues) for n, o in s["members"]])
        obs, starts = observed(past, problem, issues)
        self._weights, self._cases = self.weights_at(f, obs, issues, starts, until, s)
        self._members = [_make(n).fit(data, _member_problem(problem, o), until) for n, o in s["members"]]
        self._settings, self._until = s, until
        return self

    def predict(self, data: xr.Dataset, problem: Problem, issue_times: np.ndarray) -> xr.DataArray:
        if self._weights is None:
            raise RuntimeError("blend: fit before predict")
        issues = as_times(issue_times)
        f = np.stack([np.asarray(m.predict(data, _member_problem(problem, o), issues).values)
                      for m, (_, o) in zip(self._members, self._settings["members"], strict=True)])
        return forecast_array(combine(f, self._weights.T[:, None, :]), issues, problem, self.name)

    def hindcast_many(self, data: xr.Dataset, problems: Sequence[Problem], issue_times: Any,
                      train_from: Any = None, chunk: int | None = None) -> np.ndarray:
        """Rolling-origin hindcast ``(S, N, L)`` with the weights and members refitted every 1 January."""
        issues = as_times(issue_times)
        out = np.full((len(problems), issues.size, problems[0].leads), np.nan)
        if issues.size == 0:
            return out
        if train_from is not None:
            data = data.sel(time=slice(as_times(train_from)[0], None))
        for i, problem in enumerate(problems):
            s = self.settings(problem)
            years = np.unique(issues.astype("datetime64[Y]").astype(np.int64) + 1970)
            # every period start a refit's weights read (before its 1 January), and the issue times
            inner = _grid_before(data, _year_start(int(years[0]) - s["years"]), _year_start(int(years[-1])))
            every = np.union1d(inner, issues)
            f = np.stack([rolling_forecasts(n, o, data, problem, every) for n, o in s["members"]])
            obs, starts = observed(data, problem, every)
            at = np.searchsorted(every, issues)
            year_of = issues.astype("datetime64[Y]").astype(np.int64) + 1970
            for yr in years:
                until = _year_start(int(yr))
                w, cases = self.weights_at(f, obs, every, starts, until, s)
                sel = year_of == yr
                out[i, sel] = combine(f[:, at[sel]], w.T[:, None, :])
            self._settings, self._weights, self._cases, self._until = s, w, cases, until
        return out

    def params(self) -> dict[str, Any]:
        if self._weights is None:
            return {}
        s = self._settings
        members = []
        for j, (name, opts) in enumerate(s["members"]):
            entry: dict[str, Any] = {"model": name, "options": opts,
                                     "weight": np.round(self._weights[:, j], 6).tolist()}
            if j < len(self._members):
                entry["params"] = self._members[j].params()
            members.append(entry)
        return {"model": self.name, "weights": s["weights"], "years": s["years"], "min_cases": s["min_cases"],
                "until": str(self._until)[:19], "cases": list(self._cases), "members": members}


# --------------------------------------------------------------------------------------
# Choosing the blend inside the training years
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class BlendSelection:
    options: dict[str, Any]
    """the best blend's options"""
    score: float
    """its inner score: mean over leads of the MSE relative to the regression's"""
    table: list[tuple[str, float]]
    """every candidate's label and score, best first (a single label: that member alone)"""
    best: str
    """the label of the best candidate: a blend's, or a single member's when none beats it"""


def select_blend(
    data: xr.Dataset,
    problem: Problem,
    until: Any,
    inner_start: Any,
    members: Mapping[str, Any],
    *,
    member_sets: Sequence[Sequence[str]] | None = None,
    weights: Sequence[str] = WEIGHTS,
    years: Sequence[int] = (10, 20, 30),
    min_cases: int = 30,
    lead_weights: Sequence[float] | None = None,
) -> BlendSelection:
    """The blend (members' set, weighting, ``years``) with the lowest inner-hindcast error.

    ``members``: label -> member (``{model, options}`` or a name). The blend of each
    candidate is run as a rolling-origin hindcast issued from ``inner_start`` to ``until``
    on the data before ``until`` (targets at or after ``until`` not scored), its weights
    refitted every 1 January from the members' out-of-sample forecasts of the ``years``
    before (so the members are hindcast from ``inner_start - max(years)``). Score: the
    mean over leads (``lead_weights``) of the MSE relative to the operational regression's
    on the same issue times. ``member_sets``: the label sets tried (default: every set of
    two or more); a single label is its member alone (no blend) for comparison. Nothing
    at or after ``until`` is read.
    """
    until = as_times(until)[0]
    start = as_times(inner_start)[0]
    past = data.sel(time=slice(None, until - np.timedelta64(1, "ns")))
    labels = list(members)
    specs = dict(zip(labels, parse_members([members[k] for k in labels]), strict=True))
    first = _year_start(_year(start) - max(years))
    every = _grid_before(past, first, until)
    f = {k: rolling_forecasts(n, o, past, problem, every) for k, (n, o) in specs.items()}
    ref = rolling_forecasts("regression", {}, past, problem, every)
    obs, starts = observed(past, problem, every)
    scored = (every >= start)[:, None] & (starts < until)
    lw = np.ones(problem.leads) if lead_weights is None else np.asarray(lead_weights, dtype=float)
    year_of = every.astype("datetime64[Y]").astype(np.int64) + 1970

    def score(fc: np.ndarray) -> float:
        ok = scored & np.isfinite(fc) & np.isfinite(ref) & np.isfinite(obs)
        e = np.where(ok, fc - obs, 0.0) ** 2
        r = np.where(ok, ref - obs, 0.0) ** 2
        rel = e.sum(axis=0) / r.sum(axis=0)
        return float(np.sum(lw * rel) / lw.sum())

    sets = [tuple(x) for x in member_sets] if member_sets is not None else [
        c for k in range(2, len(labels) + 1) for c in itertools.combinations(labels, k)]
    if not any(len(c) >= 2 for c in sets):
        raise ValueError("select_blend: no set of two or more members to try")
    table: list[tuple[str, float, dict[str, Any]]] = []
    for single in labels:
        table.append((single, score(f[single]), {}))
    for combo in sets:
        if len(combo) < 2:
            continue
        fs = np.stack([f[k] for k in combo])
        for method, ny in itertools.product(weights, years):
            if method == "equal" and ny != years[0]:
                continue  # equal weights do not depend on the years
            s = {"weights": method, "years": int(ny), "min_cases": min_cases}
            fc = np.full(obs.shape, np.nan)
            for yr in np.unique(year_of[every >= start]):
                w, _ = Blend.weights_at(fs, obs, every, starts, _year_start(int(yr)), s)
                sel = (year_of == yr) & (every >= start)
                fc[sel] = combine(fs[:, sel], w.T[:, None, :])
            opts = {"members": [{"model": specs[k][0], "options": specs[k][1]} for k in combo], **s}
            label = f"{method}{'' if method == 'equal' else ' ' + str(ny)}: " + " + ".join(combo)
            table.append((label, score(fc), opts))
    table.sort(key=lambda t: t[1])
    best = next(t for t in table if t[2])
    return BlendSelection(best[2], best[1], [(t[0], t[1]) for t in table], table[0][0])
