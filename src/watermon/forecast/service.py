"""Issue a forecast run from the database: checked inputs, each station's model, stored quantiles.

Inputs are the stored observations with their QC levels (suspect, bad and missing
values are left out) as period means of each station's step: a stored period mean
(the archive's decade means) is taken as it is; readings and daily means are
resampled. Only values before the issue time are read. Quantiles come from the
model's own errors: an inner hindcast over the last training years gives, per lead,
the empirical quantiles of log(observed / forecast), applied to the forecast median.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import xarray as xr
from sqlalchemy import Connection, Engine, func, select

import watermon
from watermon.config import BasinConfig
from watermon.config.forecast import StationForecast as Entry
from watermon.db.schema import Observation
from watermon.forecast import dataset as D
from watermon.forecast.base import QUANTILES, Problem
from watermon.forecast.store import RunInfo, StationForecast, fail_run, finish_run, start_run
from watermon.periods import Aggregation
from watermon.qc.store import effective_levels, load_series, series_refs, to_datetime

log = logging.getLogger(__name__)

INNER_ISSUES = {"daily": 120, "pentad": 72, "decade": 72}
"""issue times of the inner hindcast that sizes the quantiles"""


def config_digest(config: BasinConfig) -> str:
    doc = {"forecast": config.forecast.model_dump(mode="json"), "qc": config.qc.model_dump(mode="json"),
           "reaches": [r.model_dump(mode="json") for r in config.reaches],
           "reservoirs": [r.model_dump(mode="json") for r in config.reservoirs]}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def issue_label(issue_time: datetime, step: str) -> np.datetime64:
    """The first period start at or after the issue time: lead 1 is that period."""
    t = np.datetime64(issue_time.astimezone(timezone.utc).replace(tzinfo=None), "ns")
    start = D.period_start(t, step)[0]
    return start if start == t else D.next_start(np.array([start]), step)[0]


def _needed(config: BasinConfig, entry: Entry) -> list[tuple[str, str]]:
    """The series a station's model may read: its own, its upstream flows (a reservoir's release), meteo."""
    out = [(entry.station, entry.variable)]
    for code in entry.upstream:
        out.append((code, "reservoir_release" if config.station(code).kind == "reservoir" else "discharge"))
    for code in entry.meteo:
        out += [(code, "precipitation"), (code, "air_temperature")]
    if entry.model == "reservoir":
        out += [(entry.station, v) for v in ("reservoir_inflow", "reservoir_release", "reservoir_volume",
                                            "reservoir_level") if v != entry.variable]
    return list(dict.fromkeys(out))


def load_inputs(conn: Connection, config: BasinConfig, wanted: Iterable[tuple[str, str]], step: str,
                before: np.datetime64) -> xr.Dataset:
    """Period means of the wanted (station, variable) series from the database, before ``before``."""
    end = to_datetime(np.datetime64(before, "s")) - timedelta(seconds=1)
    refs = series_refs(conn)
    by_key: dict[tuple[str, str], list[Any]] = {}
    for r in refs.values():
        by_key.setdefault((r.station, r.variable), []).append(r)
    means: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    for key in wanted:
        station = config.station(key[0])
        if key[1] not in station.variables:
            continue
        stored, finer = None, []
        for ref in by_key.get(key, []):
            data = load_series(conn, ref, end=end)
            if data.times.size == 0:
                continue
            levels = effective_levels(conn, data)
            ok = D.accepted_mask(levels)
            if ref.aggregation.period == step:  # a stored period mean: as it is
                stored = (data.times.astype("datetime64[ns]")[ok], data.values[ok])
            elif ref.aggregation in (Aggregation.INSTANTANEOUS, Aggregation.DAILY_MEAN, Aggregation.DAILY_SUM):
                finer.append((data.times, data.values, ok))
        series_t, series_v = [], []
        for times, values, ok in finer:
            starts, vals, _ = D.resample(times, values, step, accepted=ok,
                                         how="sum" if key[1] in D.TOTALLED else "mean")
            series_t.append(starts)
            series_v.append(vals)
        if stored is not None:
            series_t.append(stored[0])
            series_v.append(stored[1])
        if series_t:
            t = np.concatenate(series_t)
            v = np.concatenate(series_v)
            keep = np.isfinite(v)
            # the stored period mean is last, so it wins where both exist
            order = np.argsort(t[keep], kind="stable")
            tt, vv = t[keep][order], v[keep][order]
            last = np.concatenate([tt[1:] != tt[:-1], [True]]) if tt.size else np.zeros(0, bool)
            means[key] = (tt[last], vv[last])
    present = [k for k, (t, _) in means.items() if t.size]
    if not present:
        raise ValueError("no observations before the issue time for any of " + ", ".join(f"{s}/{v}" for s, v in wanted))
    first = min(means[k][0][0] for k in present)
    grid = D.period_starts(first, np.datetime64(before, "ns") - np.timedelta64(1, "D"), step)
    stations = list(dict.fromkeys(s for s, _ in wanted))
    variables = list(dict.fromkeys(v for _, v in wanted))
    arrays = {v: np.full((len(stations), grid.size), np.nan) for v in variables}
    for (s, v), (t, vals) in means.items():
        idx = np.searchsorted(grid, t)
        ok = (idx < grid.size) & (grid[np.minimum(idx, grid.size - 1)] == t)
        arrays[v][stations.index(s), idx[ok]] = vals[ok]
    return D.build_dataset(arrays, stations, grid, step)  # type: ignore[arg-type]


def problem_for(config: BasinConfig, entry: Entry, model_name: str | None = None) -> Problem:
    """The station's problem for its model (a comparison model gets no options: they are the model's)."""
    model_name = model_name or entry.model
    options = dict(entry.options) if model_name == entry.model else {}
    if model_name == "reservoir":
        res = next((r for r in config.reservoirs if r.station == entry.station), None)
        if res is not None:
            options.setdefault("reservoir", res)
    return Problem(station=entry.station, step=entry.step, leads=entry.leads, variable=entry.variable,
                   upstream=entry.upstream, meteo=entry.meteo, options=options)


def make_model(name: str) -> Any:
    from watermon.forecast.models import MODELS

    return MODELS[name]()


RATIO_VARIABLES = ("discharge", "reservoir_inflow", "reservoir_release", "reservoir_volume", "precipitation")
"""variables whose errors scale with their size: quantiles of log ratios; others of differences"""


def residual_quantiles(model_name: str, data: xr.Dataset, problem: Problem, issue: np.datetime64,
                       quantiles: tuple[float, ...] = QUANTILES) -> tuple[np.ndarray, dict[str, Any]]:
    """Per lead, quantiles of the errors of an inner hindcast before ``issue``, median-centred.

    Errors are log(observed / forecast) for flows and volumes, observed - forecast for
    levels.
    The inner hindcast fits once on the data before its first issue time and forecasts
    every later period before ``issue``: no value at or after ``issue`` is touched.
    """
    all_times = data["time"].values
    times = all_times[all_times < issue]  # the inner hindcast ends before the issue: no look-ahead
    n = min(INNER_ISSUES[problem.step], max(0, times.size - problem.leads - 8))
    if n < 10:
        return np.zeros((problem.leads, len(quantiles))), {"inner_issues": 0}
    issues = times[times.size - n - problem.leads + 1: times.size - problem.leads + 1]
    model = make_model(model_name).fit(data, problem, issues[0])
    pred = np.asarray(model.predict(data, problem, issues).values, dtype=float)
    obs_all = data[problem.variable].sel(station=problem.station).values
    pos = np.searchsorted(all_times, issues)
    obs = np.stack([obs_all[pos + k] for k in range(problem.leads)], axis=1)
    if problem.variable in RATIO_VARIABLES:
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where((obs > 0) & (pred > 0), np.log(obs / pred), np.nan)
    else:
        r = obs - pred
    out = np.zeros((problem.leads, len(quantiles)))
    for k in range(problem.leads):
        rk = r[:, k][np.isfinite(r[:, k])]
        if rk.size >= 8:
            out[k] = np.quantile(rk, quantiles)
            out[k] -= out[k][list(quantiles).index(0.5)] if 0.5 in quantiles else 0.0
    return out, {"inner_issues": int(n), "inner_from": str(issues[0])}


def forecast_station(config: BasinConfig, entry: Entry, data: xr.Dataset, issue: np.datetime64) -> StationForecast:
    problem = problem_for(config, entry)
    model = make_model(entry.model).fit(data, problem, issue)
    median = np.asarray(model.predict(data, problem, np.array([issue])).values, dtype=float)[0]
    spread, meta = residual_quantiles(entry.model, data, problem, issue)
    ratio = entry.variable in RATIO_VARIABLES
    values = np.sort(median[:, None] * np.exp(spread) if ratio else median[:, None] + spread, axis=1)
    obs = data[entry.variable].sel(station=entry.station)
    valid = np.concatenate([[issue], D.period_starts(issue, issue + np.timedelta64(400 * entry.leads, "D"),
                                                      entry.step)[1:entry.leads]])
    period = D.period_of_year(valid, entry.step)
    clim = obs.groupby("period").mean().to_series()
    norm = np.array([clim.get(int(p), np.nan) for p in period])
    last_ok = np.flatnonzero(np.isfinite(obs.values))
    last_i = last_ok[-1] if last_ok.size else None
    params = {"options": {k: v for k, v in problem.options.items() if k != "reservoir"}, "fitted": model.params(),
              "quantiles": meta, "upstream": list(entry.upstream), "meteo": list(entry.meteo)}
    return StationForecast(
        station=entry.station, variable=entry.variable, step=entry.step, model=entry.model, params=params,
        valid_times=[to_datetime(np.datetime64(v, "s")) for v in valid], quantiles=QUANTILES, values=values,
        norm=norm, train_from=to_datetime(np.datetime64(data["time"].values[0], "s")),
        train_to=to_datetime(np.datetime64(issue, "s")) - timedelta(seconds=1),
        last_observed=None if last_i is None else float(obs.values[last_i]),
        last_observed_time=None if last_i is None else to_datetime(np.datetime64(obs["time"].values[last_i], "s")),
    )


def run_forecast(engine: Engine, config: BasinConfig, *, issue_time: datetime | None = None,
                 stations: list[str] | None = None, trigger: str = "cli") -> RunInfo:
    """One run over the configured stations; stored whole (or marked failed with the reason)."""
    issue_time = issue_time or datetime.now(timezone.utc)
    entries = [e for e in config.forecast.stations if not stations or e.station in stations]
    run_id = start_run(engine, issue_time=issue_time, trigger=trigger, config_sha256=config_digest(config),
                       code_version=watermon.__version__)
    try:
        results = []
        with engine.connect() as conn:
            for entry in entries:
                issue = issue_label(issue_time, entry.step)
                data = load_inputs(conn, config, _needed(config, entry), entry.step, issue)
                results.append(forecast_station(config, entry, data, issue))
                log.info("forecast %s/%s %s: %s", entry.station, entry.variable, entry.step, entry.model)
            cutoff = conn.execute(select(func.max(Observation.obs_time))
                                  .where(Observation.obs_time < issue_time)).scalar()
        finish_run(engine, run_id, results, cutoff)
    except Exception as exc:
        fail_run(engine, run_id, f"{type(exc).__name__}: {exc}")
        raise
    return RunInfo(run_id=run_id, issue_time=issue_time, stations=[r.station for r in results])


def observed_history(conn: Connection, config: BasinConfig, stations: list[str], step: str, variable: str,
                     issue_time: datetime, periods: int = 36) -> xr.Dataset:
    """The last ``periods`` observed period means before the issue, for the bulletin's hydrographs."""
    issue = issue_label(issue_time, step)
    data = load_inputs(conn, config, [(s, variable) for s in stations], step, issue)
    value = data[variable].isel(time=slice(-periods, None))
    return xr.Dataset({"value": value})


def hindcast(config: BasinConfig, entry: Entry, model_name: str, data: xr.Dataset, issues: np.ndarray) -> xr.DataArray:
    """Rolling-origin hindcast: refit at the first issue of each month on data before it.

    Returns quantile forecasts ``(issue_time, lead, quantile)``; nothing at or after an
    issue time is read for its forecast (models and quantiles alike).
    """
    problem = problem_for(config, entry, model_name)
    months = issues.astype("datetime64[M]")
    out = np.full((issues.size, entry.leads, len(QUANTILES)), np.nan)
    for month in np.unique(months):
        sel = np.flatnonzero(months == month)
        first = issues[sel[0]]
        model = make_model(model_name).fit(data, problem, first)
        median = np.asarray(model.predict(data, problem, issues[sel]).values, dtype=float)
        spread, _ = residual_quantiles(model_name, data, problem, first)
        ratio = entry.variable in RATIO_VARIABLES
        out[sel] = np.sort(median[..., None] * np.exp(spread) if ratio else median[..., None] + spread, axis=-1)
    return xr.DataArray(out, dims=("issue_time", "lead", "quantile"),
                        coords={"issue_time": issues, "lead": np.arange(1, entry.leads + 1),
                                "quantile": list(QUANTILES)})


def verify(engine: Engine, config: BasinConfig, *, stations: list[str] | None = None,
           store: bool = True, now: datetime | None = None) -> list[dict[str, Any]]:
    """Hindcast every configured station's model and its comparison models; score and store them."""
    from watermon.forecast.metrics import RatingThresholds, score_table
    from watermon.forecast.models import MODELS
    from watermon.forecast.store import store_skill

    window = config.forecast.hindcast
    if window is None:
        raise ValueError("forecast.yaml has no hindcast window")
    now = now or datetime.now(timezone.utc)
    r = config.forecast.rating
    thresholds = RatingThresholds(s_good=r.s_sigma_good, s_satisfactory=r.s_sigma_satisfactory,
                                  p_good=r.p_good, p_satisfactory=r.p_satisfactory)
    rows: list[dict[str, Any]] = []
    with engine.connect() as conn:
        for entry in config.forecast.stations:
            if stations and entry.station not in stations:
                continue
            end = window.verify_to or now.date()
            until = issue_label(datetime(end.year, end.month, end.day, tzinfo=timezone.utc), entry.step)
            data = load_inputs(conn, config, _needed(config, entry), entry.step, until + np.timedelta64(400, "D"))
            times = data["time"].values
            start = np.datetime64(window.verify_from, "ns")
            issues = times[(times >= start) & (times < until)]
            issues = issues[: max(0, issues.size - entry.leads + 1)] if issues.size else issues
            if issues.size == 0:
                continue
            obs = data[entry.variable].sel(station=entry.station)
            pos = np.searchsorted(times, issues)
            leads = np.arange(entry.leads)
            observed = xr.DataArray(obs.values[np.minimum(pos[:, None] + leads, times.size - 1)],
                                    dims=("issue_time", "lead"), coords={"issue_time": issues, "lead": leads + 1})
            prev = obs.values[pos - 1]
            last = xr.DataArray(prev, dims="issue_time", coords={"issue_time": issues})
            persistence = xr.DataArray(np.repeat(prev[:, None], entry.leads, axis=1), dims=("issue_time", "lead"),
                                       coords=observed.coords)
            train = obs.where(obs["time"] < issues[0])
            clim = train.groupby("period").mean().to_series()
            periods = D.period_of_year(np.concatenate([times, D.period_starts(times[-1], times[-1] + np.timedelta64(
                400, "D"), entry.step)[1:]]), entry.step)
            clim_fc = np.array([[clim.get(int(periods[p + k]), np.nan) for k in leads] for p in pos])
            climatology = xr.DataArray(clim_fc, dims=("issue_time", "lead"), coords=observed.coords)
            for name in dict.fromkeys((entry.model, *entry.compare)):
                if name not in MODELS:
                    continue
                qf = hindcast(config, entry, name, data, issues)
                table = score_table(observed, last, qf, persistence, climatology, thresholds=thresholds)
                for lead in table["lead"].values:
                    t = table.sel(lead=lead)
                    val = lambda k: float(t[k]) if k in t and np.isfinite(float(t[k])) else None  # noqa: E731
                    rows.append({
                        "station": entry.station, "variable": entry.variable, "step": entry.step, "model": name,
                        "selected": name == entry.model, "lead": int(lead), "n": int(t["n"]),
                        "nse": val("nse"), "kge": val("kge"), "kge_prime": val("kge_prime"), "pbias": val("pbias"),
                        "rmse": val("rmse"), "skill_persistence": val("skill_persistence"),
                        "skill_climatology": val("skill_climatology"), "crps": val("crps"),
                        "coverage_90": val("coverage"), "s_sigma": val("s_sigma_delta"),
                        "p_within": val("p_within"), "rating": str(t["rating"].values),
                        "verify_from": to_datetime(np.datetime64(issues[0], "s")),
                        "verify_to": to_datetime(np.datetime64(issues[-1], "s")),
                    })
    if store and rows:
        with engine.begin() as conn:
            store_skill(conn, [{**row, "computed_at": now, "code_version": watermon.__version__,
                                "config_sha256": config_digest(config)} for row in rows])
    return rows
