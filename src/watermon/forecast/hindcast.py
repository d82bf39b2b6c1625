"""Rolling-origin hindcasts: verification with no look-ahead.

For every issue time ``t0`` of the verification window (every period start), a model is
fitted on data before its refit time (``until <= t0``) and predicts leads 1..L reading
only data before ``t0``; the forecasts are compared with what was then observed.

* Refits (``refit``): ``"yearly"`` (default: on 1 January, the forecasts issued during a
  year come from the model fitted on every period before that year: the hydromets
  recalibrate once a year as well), ``"monthly"``, ``"every"`` (at each issue time) or an
  integer (every n issue times). Yearly hindcasts of the linear models run in one
  vectorised pass over all issue times and stations (``hindcast_many`` of
  :class:`~watermon.forecast.models.regression.LinearPeriodModel`); any other model or
  schedule is fitted block by block through the plain ``fit``/``predict``.
* Quantiles (``quantiles=True``): :class:`~watermon.forecast.uncertainty.ResidualQuantiles`
  refitted every 1 January (every month with monthly refits) on the residuals of the same rolling-origin hindcast whose
  *target periods* lie before the refit time, starting ``calibration_years`` before the
  verification window (a warm-up hindcast on the training window), so the spread of a
  forecast is learnt only from errors that were known when it was issued.
* :func:`score`: every metric of :func:`watermon.forecast.metrics.score_table` per lead,
  with persistence and climatology hindcasts as references.
* :func:`select_predictors`: forward selection of ARX predictors (and of the window,
  ridge and error correction) by an inner rolling-origin hindcast *inside the training
  years only*.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from watermon.forecast.base import MODELS, QUANTILES, Model, Problem
from watermon.forecast.dataset import as_times, extend_grid, next_start
from watermon.forecast.models.regression import grid_periods_needed, issue_positions, series
from watermon.forecast.uncertainty import ResidualQuantiles


def make_model(spec: str | Model | type[Model] | Callable[[], Model], **options: Any) -> Model:
    """A fresh model from a registry name, a class, a factory or a template instance (copied)."""
    if isinstance(spec, str):
        import watermon.forecast.models  # noqa: F401  (registers every model)

        if spec not in MODELS:
            raise KeyError(f"unknown model {spec!r}; known: {', '.join(sorted(MODELS))}")
        return MODELS[spec](**options)
    if isinstance(spec, Model):
        if options:
            raise TypeError("options go with a model name or class, not an instance")
        return copy.deepcopy(spec)
    return spec(**options)


def issue_times(data: xr.Dataset, start: Any, end: Any = None) -> np.ndarray:
    """Period starts of the data's grid in ``[start, end)`` (``end`` default: after the last)."""
    times = as_times(data["time"].values)
    lo = as_times(start)[0]
    hi = times[-1] + np.timedelta64(1, "ns") if end is None else as_times(end)[0]
    return times[(times >= lo) & (times < hi)]


def refit_times(issues: np.ndarray, refit: str | int) -> np.ndarray:
    """The refit time (fit ``until``) of each issue time."""
    if refit == "yearly":
        return issues.astype("datetime64[Y]").astype("datetime64[ns]")
    if refit == "monthly":
        return issues.astype("datetime64[M]").astype("datetime64[ns]")
    if refit == "every":
        return issues.copy()
    if isinstance(refit, int) and refit >= 1:
        return issues[(np.arange(issues.size) // refit) * refit]
    raise ValueError(f"refit must be 'yearly', 'monthly', 'every' or a positive integer, not {refit!r}")


@dataclass
class Hindcast:
    """A rolling-origin hindcast of one model: forecasts beside what was observed.

    Without a ``station`` dimension for one problem, with it for :func:`hindcast_many`.
    """

    model: str
    forecast: xr.DataArray
    """point forecasts ``([station,] issue_time, lead)``"""
    observed: xr.DataArray
    """observed period values ``([station,] issue_time, lead)``"""
    last_observed: xr.DataArray
    """the value of the period before each issue time ``([station,] issue_time)``"""
    quantiles: xr.DataArray | None = None
    """``([station,] issue_time, lead, quantile)``"""
    refit: str | int = "yearly"
    params: dict[str, Any] = field(default_factory=dict)
    """the last refit's parameters (per station for several)"""


def _observed(data: xr.Dataset, problems: Sequence[Problem], issues: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p0 = problems[0]
    extra = grid_periods_needed(data, issues, p0.leads, p0.step)
    times = extend_grid(as_times(data["time"].values), p0.step, extra)
    pos = issue_positions(times, issues)
    y = np.stack([series(data, p.station, p.variable, times.size) for p in problems])
    obs = np.stack([y[:, pos + h] for h in range(p0.leads)], axis=2)
    last = np.where(pos > 0, y[:, np.maximum(pos - 1, 0)], np.nan)
    return obs, last


def _point_many(spec: Any, data: xr.Dataset, problems: Sequence[Problem], issues: np.ndarray,
                refit: str | int, fast: bool) -> tuple[np.ndarray, dict[str, Any]]:
    """``(S, N, L)`` point forecasts of a rolling-origin hindcast, and the last refit's parameters."""
    model = make_model(spec)
    if fast and refit == "yearly" and hasattr(model, "hindcast_many"):
        out = model.hindcast_many(data, problems, issues)
        return out, _params(model)
    until = refit_times(issues, refit)
    out = np.full((len(problems), issues.size, problems[0].leads), np.nan)
    params: dict[str, Any] = {}
    for s, problem in enumerate(problems):
        for u in np.unique(until):
            sel = until == u
            m = make_model(spec).fit(data, problem, u)
            out[s, sel] = m.predict(data, problem, issues[sel]).values
        params[problem.station] = m.params()
    return out, params if len(problems) > 1 else next(iter(params.values()))


def _params(model: Model) -> dict[str, Any]:
    try:
        return model.params()
    except Exception:  # noqa: BLE001  (parameters are informative only)
        return {}


def hindcast_many(
    model: str | Model | type[Model] | Callable[[], Model],
    data: xr.Dataset,
    problems: Sequence[Problem],
    start: Any,
    end: Any = None,
    *,
    refit: str | int = "yearly",
    quantiles: bool = True,
    calibration_years: int = 20,
    train_from: Any = None,
    fast: bool = True,
    quantile_options: dict[str, Any] | None = None,
) -> Hindcast:
    """Rolling-origin hindcast of several stations ``(station, issue_time, lead[, quantile])``.

    ``model``: a registry name, class, factory or template instance (fresh copies are
    fitted). Issue times: every period start of the data in ``[start, end)``. Data before
    ``train_from`` are not used at all. With ``quantiles``, forecasts are also made from
    ``calibration_years`` before ``start`` (the warm-up whose errors calibrate the first
    year's quantiles); only ``[start, end)`` is returned. ``fast=False`` forces the plain
    per-station fit/predict loop (the reference the vectorised path is tested against).
    """
    if not problems:
        raise ValueError("no problems")
    p0 = problems[0]
    if any((p.step, p.leads) != (p0.step, p0.leads) for p in problems):
        raise ValueError("problems of one hindcast share step and leads")
    if train_from is not None:
        data = data.sel(time=slice(as_times(train_from)[0], None))
    start = as_times(start)[0]
    first = start
    if quantiles:
        year = int(str(start)[:4]) - calibration_years
        first = max(np.datetime64(f"{year:04d}-01-01", "ns"), as_times(data["time"].values[0])[0])
    issues = issue_times(data, first, end)
    point, params = _point_many(model, data, problems, issues, refit, fast)
    obs, last = _observed(data, problems, issues)
    keep = issues >= start
    kept = slice(None) if keep.all() else keep  # all: the arrays themselves, not copies
    stations = [p.station for p in problems]
    coords = {"station": stations, "issue_time": issues[keep], "lead": np.arange(1, p0.leads + 1)}
    name = model if isinstance(model, str) else getattr(model, "name", type(model).__name__)
    units = "m3/s" if p0.variable in ("discharge", "reservoir_inflow", "reservoir_release") else ""
    attrs = {"model": name, "step": p0.step, "units": units}
    q_da = None
    if quantiles:
        q = np.full((*point.shape, len(QUANTILES)), np.nan)
        until = refit_times(issues, "monthly" if refit == "monthly" else "yearly")
        target = np.stack([_target_start(issues, h, p0.step) for h in range(p0.leads)], axis=1)
        for u in np.unique(until[keep]):
            rows = np.flatnonzero(issues < u)
            late = target[rows] >= u  # known only once the target period is over: it started before u
            sel = (until == u) & keep
            for s in range(len(problems)):
                rq = ResidualQuantiles(p0.step, **(quantile_options or {}))
                rq.fit(np.where(late, np.nan, point[s, rows]), np.where(late, np.nan, obs[s, rows]), issues[rows])
                q[s, sel] = rq.apply(point[s, sel], issues[sel])
        q_da = xr.DataArray(q[:, keep], dims=("station", "issue_time", "lead", "quantile"),
                            coords={**coords, "quantile": list(QUANTILES)}, attrs=attrs)
    da = lambda a: xr.DataArray(a[:, kept], dims=("station", "issue_time", "lead"),  # noqa: E731
                                coords=coords, attrs=attrs)
    return Hindcast(
        model=name, forecast=da(point), observed=da(obs),
        last_observed=xr.DataArray(last[:, kept], dims=("station", "issue_time"),
                                   coords={k: coords[k] for k in ("station", "issue_time")}, attrs=attrs),
        quantiles=q_da, refit=refit, params=params,
    )


def _target_start(issues: np.ndarray, lead_idx: int, step: str) -> np.ndarray:
    """Start of the period ``lead_idx`` periods after each issue time."""
    out = issues.copy()
    for _ in range(lead_idx):
        out = next_start(out, step)
    return out


def hindcast(
    model: str | Model | type[Model] | Callable[[], Model],
    data: xr.Dataset,
    problem: Problem,
    start: Any,
    end: Any = None,
    **kwargs: Any,
) -> Hindcast:
    """Rolling-origin hindcast of one station: ``(issue_time, lead[, quantile])`` (see :func:`hindcast_many`)."""
    h = hindcast_many(model, data, [problem], start, end, **kwargs)
    return Hindcast(
        model=h.model,
        forecast=h.forecast.isel(station=0, drop=True),
        observed=h.observed.isel(station=0, drop=True),
        last_observed=h.last_observed.isel(station=0, drop=True),
        quantiles=None if h.quantiles is None else h.quantiles.isel(station=0, drop=True),
        refit=h.refit, params=h.params,
    )


def score(h: Hindcast, persistence: Hindcast, climatology: Hindcast, **kwargs: Any) -> xr.Dataset:
    """All verification metrics per lead (``metrics.score_table``) of a hindcast with quantiles."""
    from watermon.forecast.metrics import score_table

    q = h.quantiles
    if q is None:
        q = h.forecast.expand_dims(quantile=list(QUANTILES)).transpose(..., "quantile")
    return score_table(h.observed, h.last_observed, q, persistence.forecast, climatology.forecast, **kwargs)


def rmse_per_lead(h: Hindcast) -> np.ndarray:
    """RMSE of the point forecast per lead (cases with both values)."""
    e = (h.forecast - h.observed).values
    with np.errstate(invalid="ignore"):
        return np.sqrt(np.nanmean(e**2, axis=-2))


# --------------------------------------------------------------------------------------
# Predictor selection inside the training years
# --------------------------------------------------------------------------------------


@dataclass
class Selection:
    options: dict[str, Any]
    score: float
    history: list[tuple[str, float]]


def _inner_mse(model_name: str, data: xr.Dataset, problem: Problem, options: dict[str, Any],
               inner_start: Any, until: Any, train_from: Any, refit: str | int = "yearly") -> np.ndarray:
    p = Problem(problem.station, problem.step, problem.leads, problem.variable, problem.upstream,
                problem.meteo, options)
    h = hindcast(model_name, data, p, inner_start, until, quantiles=False, train_from=train_from, refit=refit)
    obs = h.observed.values.copy()
    # targets at or after `until` are not training data
    late = np.stack([_target_start(h.forecast["issue_time"].values, k, problem.step) >= as_times(until)[0]
                     for k in range(problem.leads)], axis=1)
    obs[late] = np.nan
    e = h.forecast.values - obs
    with np.errstate(invalid="ignore"):
        return np.nanmean(e**2, axis=0)


def select_predictors(
    data: xr.Dataset,
    problem: Problem,
    until: Any,
    inner_start: Any,
    *,
    candidates: Sequence[str] | None = None,
    base: Sequence[str] = ("flow:1",),
    train_from: Any = None,
    tolerance: float = 0.005,
    grid: dict[str, Sequence[Any]] | None = None,
    model: str = "arx",
    lead_weights: Sequence[float] | None = None,
    refit: str | int = "yearly",
    options: dict[str, Any] | None = None,
) -> Selection:
    """Forward selection of ARX predictors by an inner rolling-origin hindcast before ``until``.

    The inner hindcast issues forecasts from ``inner_start`` to ``until`` (``refit``
    schedule, yearly by default; only targets before ``until`` are scored); the score is
    the mean over leads of the MSE relative to the operational regression's on the same
    inner hindcast (``lead_weights`` weight the leads). Starting from ``base``, the
    candidate token that lowers the score most is added while it lowers it by more than
    ``tolerance`` (relative); a token replaces a shorter token of the same kind (``flow:2``
    replaces ``flow:1``). Then ``grid`` (default window 1..3, ridge 0.003..0.1, error
    correction on/off) is searched one option at a time. Nothing at or after ``until`` is
    read. ``options`` are fixed options of every trial (the snow model's parameters for the
    candidate ``snowpack``: calibrate them before ``inner_start`` to keep the inner
    hindcast out of sample).
    """
    from watermon.forecast.models.arx import candidate_predictors, parse_token

    until = as_times(until)[0]
    past = data.sel(time=slice(None, until - np.timedelta64(1, "ns")))
    cands = list(candidates or candidate_predictors(problem.step))
    ref = _inner_mse("regression", past, problem, {}, inner_start, until, train_from, refit)
    w = np.ones(problem.leads) if lead_weights is None else np.asarray(lead_weights, dtype=float)

    def crit(options: dict[str, Any]) -> float:
        mse = _inner_mse(model, past, problem, options, inner_start, until, train_from, refit)
        return float(np.sum(w * mse / ref) / np.sum(w))

    def with_token(tokens: list[str], tok: str) -> list[str] | None:
        kind = parse_token(tok)[0]
        same = [t for t in tokens if parse_token(t)[0] == kind]
        if tok in tokens:
            return None
        if same and kind in ("flow", "upstream", "precipitation", "temperature"):
            if parse_token(same[0])[1] >= parse_token(tok)[1]:
                return None
            return [tok if t == same[0] else t for t in tokens]
        if same:
            return None
        return [*tokens, tok]

    opts: dict[str, Any] = {**(options or {}), "predictors": list(base)}
    best = crit(opts)
    history = [("+".join(base), best)]
    while True:
        trials = []
        for tok in cands:
            new = with_token(opts["predictors"], tok)
            if new is not None:
                trials.append((crit({**opts, "predictors": new}), tok, new))
        if not trials:
            break
        score, tok, new = min(trials, key=lambda t: t[0])
        if score >= best * (1 - tolerance):
            break
        best, opts = score, {**opts, "predictors": new}
        history.append((f"+{tok}", score))
    grid = grid if grid is not None else {"window": [1, 2, 3], "ridge": [0.003, 0.01, 0.03, 0.1],
                                          "error_correction": [True, False]}
    for key, values in grid.items():
        trials = [(crit({**opts, key: v}), v) for v in values]
        score, v = min(trials, key=lambda t: t[0])
        if score < best:
            best, opts = score, {**opts, key: v}
            history.append((f"{key}={v}", score))
    return Selection(opts, best, history)
