"""Issue a forecast run from the database: checked inputs, each station's model, stored quantiles.

Inputs are the stored observations with their QC levels (suspect, bad and missing
values are left out) as period means of each station's step: a stored period mean
(the archive's decade means) is taken as it is; readings and daily means are
resampled. Only values before the issue time are read. Quantiles come from the
model's own errors: a rolling-origin hindcast over the last ``calibration_years``
before the issue time gives, per lead and period of the year, the empirical quantiles
of its errors (log ratios for flows and volumes, differences for levels), applied to
the forecast median (:class:`~watermon.forecast.uncertainty.ResidualQuantiles`).
``verify`` scores the same hindcast, with the same quantiles, over the configured
window (:mod:`watermon.forecast.hindcast`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr
from sqlalchemy import Connection, Engine

import watermon
from watermon.config import BasinConfig
from watermon.config.forecast import StationForecast as Entry
from watermon.forecast import dataset as D
from watermon.forecast import hindcast as H
from watermon.forecast.base import QUANTILES, Problem
from watermon.forecast.store import RunInfo, StationForecast, fail_run, finish_run, start_run
from watermon.forecast.uncertainty import ResidualQuantiles
from watermon.periods import Aggregation
from watermon.qc.store import effective_levels, load_series, series_refs, to_datetime

if TYPE_CHECKING:
    from watermon.forecast.models.snowmelt import SnowParams

log = logging.getLogger(__name__)

RESERVOIR_VARIABLES = ("reservoir_level", "reservoir_volume", "reservoir_inflow", "reservoir_release")


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
    """The series a station's models may read: its own, its upstream flows (a reservoir's release), meteo;
    for the network model every station above it."""
    out = [(entry.station, entry.variable)]
    if "network" in (entry.model, *entry.compare):
        from watermon.forecast.models.network import upstream_closure

        for code in sorted(upstream_closure(config, entry.station)):
            if config.station(code).kind == "reservoir":
                out += [(code, v) for v in RESERVOIR_VARIABLES]
            elif not config.station(code).derived_from:
                out.append((code, "discharge"))
    for code in entry.upstream:
        out.append((code, "reservoir_release" if config.station(code).kind == "reservoir" else "discharge"))
    for code in entry.meteo:
        out += [(code, "precipitation"), (code, "air_temperature")]
    if entry.model == "reservoir":
        out += [(entry.station, v) for v in RESERVOIR_VARIABLES]
    if _uses_last_day(entry.options):
        out.append((entry.station, entry.variable + D.LAST_DAY))
    return list(dict.fromkeys(out))


def _uses_last_day(options: Any) -> bool:
    """Whether the options (a blend's members' included) name the ARX predictor ``flow_last_day``."""
    if isinstance(options, dict):
        if "flow_last_day" in [str(t) for t in options.get("predictors") or ()]:
            return True
        options = list(options.values())
    return isinstance(options, list) and any(_uses_last_day(o) for o in options)


def load_inputs(conn: Connection, config: BasinConfig, wanted: Iterable[tuple[str, str]], step: str,
                before: np.datetime64, *, observed_before: datetime | None = None) -> xr.Dataset:
    """Period means of the wanted (station, variable) series from the database, before ``before``.

    A wanted ``<variable>_last_day`` (:data:`~watermon.forecast.dataset.LAST_DAY`) is each
    period's last day, from the stored readings and daily means of ``variable``.

    ``observed_before`` (the issue time) bounds the readings themselves, so a run issued
    mid-period sees that period only as far as it had been observed, and a re-run of a past
    issue time sees what the original saw. ``attrs["data_cutoff"]`` is the newest reading read.
    """
    end = to_datetime(np.datetime64(before, "s"))
    if observed_before is not None:
        end = min(end, observed_before)
    end -= timedelta(microseconds=1)
    cutoff: datetime | None = None
    refs = series_refs(conn)
    by_key: dict[tuple[str, str], list[Any]] = {}
    for r in refs.values():
        by_key.setdefault((r.station, r.variable), []).append(r)
    means: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    read: dict[int, tuple[Any, np.ndarray]] = {}  # a series and its last day are read once
    for key in wanted:
        station = config.station(key[0])
        base = key[1].removesuffix(D.LAST_DAY)
        if base not in station.variables:
            continue
        stored, finer = None, []
        for ref in by_key.get((key[0], base), []):
            if id(ref) not in read:
                data = load_series(conn, ref, end=end)
                read[id(ref)] = (data, D.accepted_mask(effective_levels(conn, data)))
            data, ok = read[id(ref)]
            if data.times.size == 0:
                continue
            newest = to_datetime(data.times[-1])
            cutoff = newest if cutoff is None else max(cutoff, newest)
            if ref.aggregation.period == step:  # a stored period mean: as it is
                stored = (data.times.astype("datetime64[ns]")[ok], data.values[ok])
            elif ref.aggregation in (Aggregation.INSTANTANEOUS, Aggregation.DAILY_MEAN, Aggregation.DAILY_SUM):
                finer.append((data.times, data.values, ok))
        series_t, series_v = [], []
        for times, values, ok in finer:
            if base != key[1]:
                starts, vals = D.last_day(times, values, step, accepted=ok)
            else:
                starts, vals, _ = D.resample(times, values, step, accepted=ok,
                                             how="sum" if key[1] in D.TOTALLED else "mean")
            series_t.append(starts)
            series_v.append(vals)
        if stored is not None and base == key[1]:
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
    ds = D.build_dataset(arrays, stations, grid, step)  # type: ignore[arg-type]
    ds.attrs["data_cutoff"] = cutoff
    return ds


def problem_for(config: BasinConfig, entry: Entry, model_name: str | None = None) -> Problem:
    """The station's problem for its model (a comparison model gets no options: they are the model's)."""
    model_name = model_name or entry.model
    options = dict(entry.options) if model_name == entry.model else {}
    if model_name == "network":
        options["basin"] = config
    if model_name == "reservoir":
        res = next((r for r in config.reservoirs if r.station == entry.station), None)
        if res is not None:
            options.setdefault("reservoir", res)
    return Problem(station=entry.station, step=entry.step, leads=entry.leads, variable=entry.variable,
                   upstream=entry.upstream, meteo=entry.meteo, options=options)


RATIO_VARIABLES = ("discharge", "reservoir_inflow", "reservoir_release", "reservoir_volume", "precipitation")
"""variables whose errors scale with their size: quantiles of log ratios; others of differences"""

MIN_TRAIN = {"daily": 60, "pentad": 24, "decade": 12}
"""periods of data a model is given before the first forecast of a hindcast"""


def quantile_options(variable: str) -> dict[str, Any]:
    if variable in RATIO_VARIABLES:
        return {"space": "log"}
    return {"space": "additive", "clip_min": None}


def hindcast_start(data: xr.Dataset, step: str, earliest: np.datetime64) -> np.datetime64:
    """The first issue time of a hindcast: not before ``earliest``, nor before a model has data to fit."""
    times = data["time"].values
    return max(np.datetime64(earliest, "ns"), times[min(MIN_TRAIN[step], times.size - 1)])


def forecast_quantiles(config: BasinConfig, entry: Entry, problem: Problem, data: xr.Dataset, issue: np.datetime64,
                       median: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """Quantiles around the forecast ``median`` from the model's own errors before ``issue``.

    An inner rolling-origin hindcast over the last ``calibration_years`` before the issue
    (refitted as the configuration says) gives the out-of-sample errors; their empirical
    quantiles per lead and period of the year (:class:`ResidualQuantiles`) are applied to
    the median. The data end before ``issue``: no error of a period after it is known.
    """
    years = config.forecast.calibration_years
    start = hindcast_start(data, entry.step, issue - np.timedelta64(366 * years, "D"))
    rq = ResidualQuantiles(entry.step, **quantile_options(entry.variable))
    if start >= issue:
        raise ValueError(f"{entry.station}: too few observations before {np.datetime_as_string(issue, 'D')} "
                         f"to size the forecast's quantiles (need {MIN_TRAIN[entry.step]} {entry.step} periods)")
    h = H.hindcast(entry.model, data, problem, start, issue, refit=config.forecast.refit, quantiles=False)
    rq.fit(h.forecast.values, h.observed.values, h.forecast["issue_time"].values)
    assert rq.n is not None
    if (rq.n.max(axis=1) == 0).any():
        raise ValueError(f"{entry.station}: the {entry.model} model made no verifiable forecast between "
                         f"{np.datetime_as_string(start, 'D')} and the issue time, so its quantiles cannot be "
                         "sized; with a short record set forecast.refit: monthly")
    values = rq.apply(median[None, :], np.array([issue]))[0]
    meta = {**rq.params(), "refit": config.forecast.refit,
            "hindcast_from": str(np.datetime_as_string(start, "D")), "issues": int(h.forecast.sizes["issue_time"])}
    return values, meta


def forecast_station(config: BasinConfig, entry: Entry, data: xr.Dataset, issue: np.datetime64) -> StationForecast:
    problem = problem_for(config, entry)
    model = H.make_model(entry.model).fit(data, problem, issue)
    median = np.asarray(model.predict(data, problem, np.array([issue])).values, dtype=float)[0]
    values, meta = forecast_quantiles(config, entry, problem, data, issue, median)
    obs = data[entry.variable].sel(station=entry.station)
    valid = np.concatenate([[issue], D.period_starts(issue, issue + np.timedelta64(400 * entry.leads, "D"),
                                                      entry.step)[1:entry.leads]])
    period = D.period_of_year(valid, entry.step)
    clim = obs.groupby("period").mean().to_series()
    norm = np.array([clim.get(int(p), np.nan) for p in period])
    last_ok = np.flatnonzero(np.isfinite(obs.values))
    last_i = last_ok[-1] if last_ok.size else None
    params = {"options": {k: v for k, v in problem.options.items() if k not in ("reservoir", "basin")}, "fitted": model.params(),
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
        results, cutoffs = [], []
        with engine.connect() as conn:
            for entry in entries:
                issue = issue_label(issue_time, entry.step)
                data = load_inputs(conn, config, _needed(config, entry), entry.step, issue,
                                   observed_before=issue_time)
                results.append(forecast_station(config, entry, data, issue))
                cutoffs.append(data.attrs["data_cutoff"])
                log.info("forecast %s/%s %s: %s", entry.station, entry.variable, entry.step, entry.model)
        finish_run(engine, run_id, results, max(cutoffs, default=None))
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
            if window.train_from is not None:
                data = data.sel(time=slice(np.datetime64(window.train_from, "ns"), None))
            start = hindcast_start(data, entry.step, np.datetime64(window.verify_from, "ns"))
            times = data["time"].values
            issues = times[(times >= start) & (times < until)]
            if issues.size <= entry.leads:
                continue
            end_issue = issues[issues.size - entry.leads + 1]  # every lead of every issue observed by `end`
            kw = {"refit": config.forecast.refit}
            refs = [H.hindcast(name, data, problem_for(config, entry, name), start, end_issue, quantiles=False, **kw)
                    for name in ("persistence", "climatology")]
            for name in dict.fromkeys((entry.model, *entry.compare)):
                if name not in MODELS:
                    continue
                h = H.hindcast(name, data, problem_for(config, entry, name), start, end_issue,
                               calibration_years=config.forecast.calibration_years,
                               quantile_options=quantile_options(entry.variable), **kw)
                table = H.score(h, *refs, thresholds=thresholds)
                issued = h.forecast["issue_time"].values
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
                        "verify_from": to_datetime(np.datetime64(issued[0], "s")),
                        "verify_to": to_datetime(np.datetime64(issued[-1], "s")),
                    })
    if store and rows:
        with engine.begin() as conn:
            store_skill(conn, [{**row, "computed_at": now, "code_version": watermon.__version__,
                                "config_sha256": config_digest(config)} for row in rows])
    return rows


@dataclass(frozen=True)
class SnowCalibration:
    """The snow model's parameters for one station's forecast, and how well it simulates the flow."""

    station: str
    step: str
    meteo: tuple[str, ...]
    params: SnowParams
    fit: list[dict[str, Any]]
    """per window (``calibration``; ``validation``: after ``until``, not used): first and last
    period, number of periods, NSE and KGE (2009) of the simulated flow"""


def calibrate_snow(engine: Engine, config: BasinConfig, station: str, *, step: str | None = None,
                   until: date | None = None, train_from: date | None = None,
                   now: datetime | None = None) -> SnowCalibration:
    """Calibrate the degree-day snow model (ARX option ``snowmelt``) on the stored observations.

    ``until`` defaults to the hindcast's ``verify_from``: parameters fitted on the verified
    years would let ``forecast verify`` see them. ``train_from`` defaults to the hindcast's.
    """
    from watermon.forecast.metrics import kge, nse
    from watermon.forecast.models.snowmelt import calibrate, calibration_start, forcing, simulate

    entries = [e for e in config.forecast.stations
               if e.station == station and e.variable == "discharge" and step in (None, e.step)]
    if not entries:
        raise LookupError(f"forecast.yaml has no discharge forecast of {station}"
                          + (f" at the {step} step" if step else ""))
    if len(entries) > 1:
        raise LookupError(f"forecast.yaml forecasts {station} at steps {[e.step for e in entries]}: give the step")
    entry = entries[0]
    if not entry.meteo:
        raise LookupError(f"forecast.yaml: the {entry.step} forecast of {station} lists no meteo stations; the "
                          "snow model runs on their precipitation and air temperature")
    window = config.forecast.hindcast
    now = now or datetime.now(timezone.utc)
    until = until or (window.verify_from if window else now.date())
    train_from = train_from or (window.train_from if window else None)
    wanted = [(station, "discharge"), *((m, v) for m in entry.meteo for v in ("precipitation", "air_temperature"))]
    with engine.connect() as conn:
        data = load_inputs(conn, config, wanted, entry.step, issue_label(now, entry.step))
    problem = problem_for(config, entry)
    params = calibrate(data, problem, until, train_from)
    times = data["time"].values
    t, p = forcing(data, problem, times)
    simulated = simulate(params, t, p, D.period_days(times, entry.step).astype(np.float64))[0]
    observed = data["discharge"].sel(station=station).values
    start, cut = calibration_start(times, train_from), np.datetime64(until, "ns")
    fit = []
    for name, rows in (("calibration", (times >= start) & (times < cut)), ("validation", times >= cut)):
        rows &= np.isfinite(observed)
        if rows.sum() >= 2:
            fit.append({"window": name, "first": to_datetime(np.datetime64(times[rows][0], "s")).date(),
                        "last": to_datetime(np.datetime64(times[rows][-1], "s")).date(), "n": int(rows.sum()),
                        "nse": float(nse(observed[rows], simulated[rows])),
                        "kge": float(kge(observed[rows], simulated[rows]).kge)})
    return SnowCalibration(station=station, step=entry.step, meteo=entry.meteo, params=params, fit=fit)
