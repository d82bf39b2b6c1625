"""A degree-day snowpack and two linear reservoirs: the state of a snowmelt basin from its meteo.

The Chatkal and Pskem run on the snow of the winter before, melting from April to July.
How much snow is left, and how warm the basin has been, is what a regression on last
period's flow cannot see, and what this small conceptual model (in the family of
HBV-light's snow routine) keeps as state:

* the basin is ``BANDS`` equal-area elevation bands; band ``b`` is ``t_offset +
  band_spread * (b - 3)`` degrees warmer than the reference meteo station;
* precipitation falls as snow below ``t_snow - 1`` and as rain above ``t_snow + 1``
  (linear in between); snow melts at ``ddf * max(T - t_melt, 0)`` mm per day, at most
  what the band holds;
* rain and melt, averaged over the bands, feed a fast reservoir (share ``fast_share``)
  and a slow one; each releases ``k_fast`` / ``k_slow`` of its storage per period; flow
  in m3/s is ``scale`` times the release in mm per day (``scale`` = basin area / 86.4,
  absorbing the gauge's precipitation under-catch and evaporation).

Parameters are calibrated with scipy's differential evolution on the training years
(:func:`calibrate`; all candidates of a generation simulated at once), then held fixed:
:func:`snowpack_features` gives, at each period start, the states and the model's
flow for the coming period under the period's climatological weather, which the ARX
(token ``snowpack``) weighs against the station's own flow.

Forcing (:func:`forcing`): the reference temperature is the coldest meteo station's
(the highest, nearest the snow), gaps filled from the other stations through their
mean difference for the period of the year, then from the period's mean; precipitation
is the mean of the meteo stations, gaps filled with the period's mean. Every such mean
is over *earlier* years only, so the forcing at a period never reads a later one (except
before the record's first reading, in the warm-up year that calibration does not score).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import xarray as xr
from scipy.optimize import differential_evolution

from watermon.forecast.base import Problem
from watermon.forecast.dataset import as_times, period_days, period_of_year
from watermon.forecast.models.regression import series

BANDS = 7


@dataclasses.dataclass(frozen=True)
class SnowParams:
    """Calibrated parameters (units in the module docstring)."""

    t_offset: float
    band_spread: float
    t_snow: float
    t_melt: float
    ddf: float
    fast_share: float
    k_fast: float
    k_slow: float
    scale: float

    def as_dict(self) -> dict[str, float]:
        return {k: round(float(v), 6) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "snowmelt") -> SnowParams:
        names = [f.name for f in dataclasses.fields(cls)]
        missing, unknown = set(names) - set(values), set(values) - set(names)
        if missing or unknown:
            raise ValueError(f"{where}: expected the parameters {names}"
                             + (f"; missing {sorted(missing)}" if missing else "")
                             + (f"; unknown {sorted(unknown)}" if unknown else ""))
        out = cls(**{k: float(values[k]) for k in names})
        for name, (lo, hi) in zip(names, BOUNDS, strict=True):
            v = getattr(out, name)
            if not lo <= v <= hi:
                raise ValueError(f"{where}: {name} = {v} outside [{lo}, {hi}]")
        return out


BOUNDS = [(-12.0, 8.0), (0.5, 5.0), (-2.0, 5.0), (-6.0, 4.0), (0.2, 8.0), (0.0, 1.0), (0.05, 1.0),
          (0.001, 0.3), (1.0, 500.0)]
"""calibration bounds, in the order of :class:`SnowParams`' fields (``scale`` up to 500: a
basin of up to about 43,000 km2)"""


def _simulate(x: np.ndarray, temperature: np.ndarray, precipitation: np.ndarray,
              days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flow ``(n, T)`` of ``n`` parameter sets ``x (n, 9)``, and the states *before* each period:
    snow water equivalent per band ``(n, T, BANDS)`` and the reservoirs ``(n, T, 2)`` (mm)."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    n, t = x.shape[0], temperature.size
    t_off, spread, t_snow, t_melt, ddf, share, k1, k2, scale = (x[:, i] for i in range(9))
    offset = t_off[:, None] + spread[:, None] * (np.arange(BANDS) - BANDS // 2)
    swe = np.zeros((n, BANDS))
    store = np.zeros((n, 2))
    q = np.empty((n, t))
    swe_out = np.empty((n, t, BANDS))
    store_out = np.empty((n, t, 2))
    for i in range(t):
        swe_out[:, i] = swe
        store_out[:, i] = store
        swe, store, q[:, i] = _step(swe, store, temperature[i], precipitation[i], days[i], offset,
                                    t_snow, t_melt, ddf, share, k1, k2, scale)
    return q, swe_out, store_out


def _step(swe: np.ndarray, store: np.ndarray, temperature: Any, precipitation: Any, days: Any,
          offset: np.ndarray, t_snow: np.ndarray, t_melt: np.ndarray, ddf: np.ndarray, share: np.ndarray,
          k1: np.ndarray, k2: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One period for every row (parameter set or time): new snow, new reservoirs, flow."""
    tb = np.asarray(temperature)[..., None] + offset
    p = np.asarray(precipitation)[..., None]
    d = np.asarray(days, dtype=np.float64)
    snow_share = np.clip((t_snow[..., None] + 1.0 - tb) / 2.0, 0.0, 1.0)
    swe = swe + p * snow_share
    melt = np.minimum(swe, ddf[..., None] * np.maximum(tb - t_melt[..., None], 0.0) * d[..., None])
    swe = swe - melt
    liquid = (p * (1.0 - snow_share) + melt).mean(axis=-1)
    fast = store[..., 0] + share * liquid
    slow = store[..., 1] + (1.0 - share) * liquid
    out = k1 * fast + k2 * slow
    store = np.stack([fast * (1.0 - k1), slow * (1.0 - k2)], axis=-1)
    return swe, store, scale * out / d


def earlier_mean(values: np.ndarray, period: np.ndarray) -> np.ndarray:
    """At each row, the mean of the same period of the year over earlier rows (NaN if none)."""
    out = np.full(values.shape, np.nan)
    for p in np.unique(period):
        rows = np.flatnonzero(period == p)
        v = values[rows]
        ok = np.isfinite(v)
        cs = np.concatenate([[0.0], np.cumsum(np.where(ok, v, 0.0))])[:-1]
        cn = np.concatenate([[0], np.cumsum(ok)])[:-1]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[rows] = np.where(cn > 0, cs / np.maximum(cn, 1), np.nan)
    return out


def _filled(values: np.ndarray, period: np.ndarray) -> np.ndarray:
    """Gaps filled with the period's mean over earlier years, else the last value before
    (else, only in the warm-up before the first reading, the first reading)."""
    v = np.where(np.isfinite(values), values, earlier_mean(values, period))
    ok = np.isfinite(v)
    if not ok.any():
        return v
    idx = np.maximum.accumulate(np.where(ok, np.arange(v.size), 0))
    idx[: np.argmax(ok)] = np.argmax(ok)
    return v[idx]


def forcing(data: xr.Dataset, problem: Problem, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reference temperature and basin precipitation on ``times`` (see the module docstring)."""
    have = set(str(s) for s in data["station"].values)
    n = times.size
    period = period_of_year(times, problem.step)

    def known(variable: str) -> list[np.ndarray]:
        if variable not in data.data_vars:
            return []
        out = [series(data, m, variable, n) for m in problem.meteo if m in have]
        return [v for v in out if np.isfinite(v).any()]

    temps, precs = known("air_temperature"), known("precipitation")
    if not temps or not precs:
        raise ValueError(f"snowmelt ({problem.station}): needs air temperature and precipitation from the "
                         f"meteo stations {list(problem.meteo)}; "
                         f"{'no temperature' if not temps else 'no precipitation'} among them")
    temps.sort(key=lambda v: float(np.nanmean(v)))
    t = temps[0].copy()
    for other in temps[1:]:
        gap = ~np.isfinite(t)
        if gap.any():
            t = np.where(gap, other + earlier_mean(t - other, period), t)
    t = _filled(t, period)
    p = np.mean([_filled(v, period) for v in precs], axis=0)
    return t, p


def calibration_start(times: np.ndarray, train_from: Any = None) -> np.datetime64:
    """The first period :func:`calibrate` scores: a year after the data's start (the states'
    warm-up), or ``train_from`` if later."""
    start = as_times(times[:1])[0] + np.timedelta64(365, "D")
    return start if train_from is None else max(start, as_times(train_from)[0])


def calibrate(data: xr.Dataset, problem: Problem, until: Any, train_from: Any = None, *, seed: int = 0,
              maxiter: int = 100, popsize: int = 15) -> SnowParams:
    """Parameters minimising the squared error of the simulated flow on ``[train_from, until)``.

    The simulation runs from the data's start (the first year warms the states up and
    is not scored). Differential evolution with a fixed ``seed``: the same data give the
    same parameters.
    """
    times = as_times(data["time"].values)
    stop = int(np.searchsorted(times, as_times(until)[0]))
    data, times = data.isel(time=slice(0, stop)), times[:stop]
    t, p = forcing(data, problem, times)
    days = period_days(times, problem.step).astype(np.float64)
    q = series(data, problem.station, problem.variable, stop)
    scored = np.isfinite(q) & (times >= calibration_start(times, train_from))
    if scored.sum() < 10 * len(BOUNDS):
        raise ValueError(f"snowmelt ({problem.station}): {int(scored.sum())} observed periods before {until} "
                         f"to calibrate on; need {10 * len(BOUNDS)}")
    target = q[scored]

    def cost(x: np.ndarray) -> np.ndarray:
        sim = _simulate(x.T, t, p, days)[0]
        return np.mean((sim[:, scored] - target) ** 2, axis=1)

    r = differential_evolution(cost, BOUNDS, vectorized=True, updating="deferred", seed=seed, maxiter=maxiter,
                               popsize=popsize, tol=1e-6, polish=False)
    return SnowParams(*(float(v) for v in r.x))


def simulate(params: SnowParams, temperature: np.ndarray, precipitation: np.ndarray,
             days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flow, snow per band and reservoirs of one parameter set (see :func:`_simulate`)."""
    q, swe, store = _simulate(np.array([dataclasses.astuple(params)]), temperature, precipitation, days)
    return q[0], swe[0], store[0]


def snowpack_features(data: xr.Dataset, problem: Problem, times: np.ndarray,
                      params: SnowParams) -> dict[str, np.ndarray]:
    """At each period start ``t0``, from forcing before ``t0``: the model's flow for the period
    ``t0`` under its climatological weather (``flow_ahead``), the basin's mean snow water
    equivalent and reservoirs (mm), and the simulated flow of the period before
    (``simulated_last``; its gap to the observed one is the model's current error)."""
    t, p = forcing(data, problem, times)
    days = period_days(times, problem.step).astype(np.float64)
    q, swe, store = simulate(params, t, p, days)
    period = period_of_year(times, problem.step)
    x = np.array(dataclasses.astuple(params))
    offset = x[0] + x[1] * (np.arange(BANDS) - BANDS // 2)
    ahead = _step(swe, store, _climate(t, period), _climate(p, period), days, offset, *x[2:])[2]
    last = np.concatenate([[np.nan], q[:-1]])
    return {"flow_ahead": ahead, "snow": swe.mean(axis=1), "fast_store": store[:, 0], "slow_store": store[:, 1],
            "simulated_last": last}


def _climate(values: np.ndarray, period: np.ndarray) -> np.ndarray:
    """The period's mean over earlier years; in the first year, the period before's value."""
    m = earlier_mean(values, period)
    return np.where(np.isfinite(m), m, np.concatenate([[np.nan], values[:-1]]))
