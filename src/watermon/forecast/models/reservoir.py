"""Reservoir mass balance: volume and level from an inflow forecast and the planned release.

Water balance (e.g. Chow, Maidment & Mays 1988, *Applied Hydrology*, sec. 8.2; the
"level pool" storage equation without the outflow-storage relation, because the release
is the operator's decision)::

    dV/dt = I(t) - R(t) - L          V in million m3, I, R, L in m3/s (x 86400 / 1e6 per day)

integrated period by period with the period-mean inflow ``I`` (a forecast: another
model's, e.g. routed upstream gauges, else persistence of the last reported inflow) and
release ``R`` (the operator's plan, data variable ``reservoir_release_planned``, else the
last reported release held), and a constant loss ``L`` (evaporation, seepage, and the
bias of the reported inflow; calibrated). Within a period the flows are constant, so
the volume is linear in time and every quantity below is exact for it.

Limits (documented behaviour)
-----------------------------
* Spill: the volume never rises above ``V(spill level)`` (the flood level by default,
  ``spill_level="normal_max"`` for the normal maximum level); inflow in excess of the
  release once it is reached leaves as spill, which is added to the forecast release
  (``reservoir_release`` is the total outflow, turbines and spillway, as operators report).
* Dead storage: the release is curtailed so that the volume does not fall below
  ``V(dead storage level)`` (it cannot be released from below the outlets); the volume
  then follows the inflow less the loss (flat, or falling by the loss if that is larger).
* A volume already beyond a limit is not moved back to it: only further rise (above the
  spill volume) or release-driven fall (below dead storage) is prevented.

Level from volume: linear interpolation in the level-volume curve (``config/reservoirs.yaml``),
inverted (levels outside the curve are held at its ends).

Reported volume: a reservoir reports one volume per period, at a fixed moment in it
(Charvak and Chardara at 08:00 local time for daily values) or a period mean (decades).
``observed_at`` (0 = period start, 1 = end) is where in its period a reported volume
lies; the forecast volume for each lead is the volume at that same moment, so that it is
comparable with what will be reported. It is calibrated with the loss from consecutive
reported volumes on the training window, by bounded linear least squares
(:func:`scipy.optimize.lsq_linear`)::

    V[t+1] - V[t] = (1 - a) N[t] + a N[t+1] - L (d[t] + d[t+1]) / 2,   N = (I - R) d,  a in [0, 1]

(d: period length in seconds); for period means ``a`` comes out near 0.5.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import xarray as xr
from scipy.optimize import lsq_linear

from watermon.config.models import Reservoir
from watermon.forecast.base import MODELS, Model, Problem, register
from watermon.forecast.models.routing import (
    PLANNED_RELEASE,
    MuskingumRouting,
    RoutingModel,
    as_times,
    calendar,
    check_period_start,
    future_values,
    hold_forward,
    on_calendar,
    seconds,
    station_values,
)

MILLION = 1e6
VARIABLES = ("reservoir_volume", "reservoir_level", "reservoir_inflow", "reservoir_release", "spill")


# --- the level-volume curve ------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class LevelVolumeCurve:
    """Level (m a.s.l.) <-> volume (million m3) by linear interpolation between points."""

    levels: np.ndarray
    volumes: np.ndarray

    @classmethod
    def from_pairs(cls, pairs: Sequence[Sequence[float]]) -> LevelVolumeCurve:
        arr = np.asarray(pairs, dtype=float)
        order = np.argsort(arr[:, 0])
        levels, volumes = arr[order, 0], arr[order, 1]
        if np.any(np.diff(levels) <= 0) or np.any(np.diff(volumes) < 0):
            raise ValueError("a level-volume curve needs increasing levels and non-decreasing volumes")
        return cls(levels, volumes)

    @classmethod
    def empirical(cls, levels: np.ndarray, volumes: np.ndarray) -> LevelVolumeCurve:
        """From reported (level, volume) pairs: sorted by level, made monotone, one point per level."""
        ok = np.isfinite(levels) & np.isfinite(volumes)
        if ok.sum() < 2:
            raise ValueError("no level-volume curve configured and fewer than 2 reported (level, volume) pairs")
        lv, vol = levels[ok], volumes[ok]
        uniq, inv = np.unique(lv, return_inverse=True)
        mean_vol = np.bincount(inv, weights=vol) / np.bincount(inv)
        if uniq.size < 2:
            raise ValueError("reported levels do not vary: cannot build a level-volume curve")
        return cls(uniq, np.maximum.accumulate(mean_vol))

    def volume(self, level: Any) -> np.ndarray:
        return np.interp(level, self.levels, self.volumes)

    def level(self, volume: Any) -> np.ndarray:
        """Inverse interpolation: the level of a volume (held at the curve's ends)."""
        return np.interp(volume, self.volumes, self.levels)

    def pairs(self) -> list[list[float]]:
        return [[float(a), float(b)] for a, b in zip(self.levels, self.volumes, strict=True)]


# --- the balance on its own ------------------------------------------------------------


@dataclass(frozen=True)
class Balance:
    """Result of :func:`mass_balance`, one value per period (last axis)."""

    volume: np.ndarray
    """million m3 at the moment ``at`` of each period"""
    volume_end: np.ndarray
    """million m3 at the end of each period"""
    release: np.ndarray
    """m3/s, period mean: the planned release, less what dead storage curtailed"""
    spill: np.ndarray
    """m3/s, period mean: what left above the spill volume"""

    @property
    def outflow(self) -> np.ndarray:
        return self.release + self.spill


def mass_balance(
    volume0: Any,
    inflow: Any,
    release: Any,
    period_seconds: Any,
    *,
    v_min: float = -np.inf,
    v_max: float = np.inf,
    loss: float = 0.0,
    at: float = 1.0,
) -> Balance:
    """Integrate dV/dt = I - R - loss period by period from ``volume0`` (million m3 at the start).

    ``inflow``, ``release`` (m3/s, period means) and ``period_seconds`` broadcast together,
    periods along the last axis; ``volume0`` broadcasts against the other axes. The volume
    stops rising at ``v_max`` (the excess is spill) and stops falling at ``v_min`` (the
    release is curtailed, down to zero), exactly for flows constant within a period.
    ``at`` in [0, 1] says where in each period ``volume`` is taken.
    """
    inflow, release, secs = np.broadcast_arrays(
        *(np.asarray(a, dtype=float) for a in (inflow, release, period_seconds))
    )
    v = np.asarray(volume0, dtype=float) * np.ones(inflow.shape[:-1])
    vol, vol_end, rel, spill = (np.empty(inflow.shape) for _ in range(4))
    with np.errstate(divide="ignore", invalid="ignore"):
        for k in range(inflow.shape[-1]):
            q_in = inflow[..., k] - loss
            r, d = release[..., k], secs[..., k]
            net = (q_in - r) / MILLION  # million m3 per second
            hi, lo = np.maximum(v, v_max), np.minimum(v, v_min)
            t_hi = np.where(net > 0, (hi - v) / net, np.inf)  # when the spill volume is reached
            t_lo = np.where(net < 0, (lo - v) / net, np.inf)  # when dead storage is reached
            drain = np.minimum(q_in, 0.0) / MILLION  # at dead storage only a negative net inflow still drains

            def path(t: np.ndarray, v=v, net=net, hi=hi, lo=lo, t_lo=t_lo, drain=drain) -> np.ndarray:
                linear = v + net * t
                falling = np.where(t <= t_lo, linear, lo + drain * (t - t_lo))
                return np.where(net > 0, np.minimum(linear, hi), np.where(net < 0, falling, v))

            vol[..., k], vol_end[..., k] = path(at * d), path(d)
            share_over = np.where((net > 0) & (d > 0), np.clip(d - t_hi, 0.0, None) / d, 0.0)
            share_under = np.where((net < 0) & (d > 0), np.clip(d - t_lo, 0.0, None) / d, 0.0)
            spill[..., k] = np.where(share_over > 0, (q_in - r) * share_over, 0.0)
            rel[..., k] = r - (r - np.maximum(q_in, 0.0)) * share_under
            v = vol_end[..., k]
    return Balance(vol, vol_end, rel, spill)


# --- the model -------------------------------------------------------------------------


@register
class ReservoirBalance(Model):
    """Volume, level and outflow of a reservoir by mass balance, per lead.

    Settings (constructor keywords, else ``problem.options``):

    * ``reservoir``: the :class:`~watermon.config.models.Reservoir` (curve and characteristic
      levels; from ``config/reservoirs.yaml``), or a mapping with its fields; else
      ``level_volume_curve`` (pairs) with ``dead_storage_level_m``, ``flood_level_m``,
      ``normal_max_level_m``; else a curve fitted to the reported (level, volume) pairs
      and no limits unless the levels are given;
    * ``spill_level``: "flood" (default) or "normal_max";
    * ``observed_at``, ``loss_m3s``: fix them instead of calibrating;
    * ``inflow_model``: a registered model name or a :class:`Model` forecasting
      ``reservoir_inflow``, with ``inflow_options``; default: Muskingum routing of
      ``problem.upstream`` if there are upstream stations, else the last reported inflow
      held. An inflow forecast passed to :meth:`predict` takes precedence.

    :meth:`predict` returns ``problem.variable``: ``reservoir_volume`` (million m3),
    ``reservoir_level`` (m), ``reservoir_release`` (total outflow, m3/s; also for
    ``discharge``) or ``reservoir_inflow``; :meth:`forecast` returns them all and the spill.
    """

    name: ClassVar[str] = "reservoir"
    SETTINGS: ClassVar[dict[str, Any]] = {
        "reservoir": None, "level_volume_curve": None, "dead_storage_level_m": None, "flood_level_m": None,
        "normal_max_level_m": None, "spill_level": "flood", "observed_at": None, "loss_m3s": None,
        "inflow_model": None, "inflow_options": None,
    }
    OUTPUT: ClassVar[dict[str, str]] = {
        "reservoir_volume": "reservoir_volume", "reservoir_level": "reservoir_level",
        "reservoir_release": "reservoir_release", "discharge": "reservoir_release",
        "reservoir_inflow": "reservoir_inflow",
    }

    def __init__(self, reservoir: Reservoir | Mapping[str, Any] | None = None, **settings: Any) -> None:
        unknown = set(settings) - set(self.SETTINGS)
        if unknown:
            raise TypeError(f"ReservoirBalance: unknown settings {sorted(unknown)}")
        self._given = {k: v for k, v in {"reservoir": reservoir, **settings}.items() if v is not None}
        self.curve: LevelVolumeCurve | None = None
        self.curve_source = ""
        self.v_min, self.v_max = -np.inf, np.inf
        self.observed_at, self.loss = 0.5, 0.0
        self.n_train = 0
        self.inflow_model: Model | None = None
        self._inflow_problem: Problem | None = None
        self._fitted = False

    def _resolve(self, problem: Problem) -> dict[str, Any]:
        unknown = set(problem.options) - set(self.SETTINGS)
        if unknown:
            raise ValueError(f"reservoir ({problem.station}): unknown options {sorted(unknown)}; "
                             f"known: {sorted(self.SETTINGS)}")
        s = {**self.SETTINGS, **problem.options, **self._given}
        if s["spill_level"] not in ("flood", "normal_max"):
            raise ValueError(f"spill_level must be 'flood' or 'normal_max', not {s['spill_level']!r}")
        return s

    def _set_curve(self, s: dict[str, Any], past: xr.Dataset, station: str) -> None:
        res = s["reservoir"]
        if isinstance(res, Mapping):
            res = Reservoir(**{"station": station, **res})
        levels = {k: s[k] for k in ("dead_storage_level_m", "flood_level_m", "normal_max_level_m")}
        if res is not None:
            self.curve, self.curve_source = LevelVolumeCurve.from_pairs(res.level_volume_curve), "reservoir"
            levels = {k: getattr(res, k) for k in levels}
        elif s["level_volume_curve"] is not None:
            self.curve, self.curve_source = LevelVolumeCurve.from_pairs(s["level_volume_curve"]), "options"
        else:
            self.curve = LevelVolumeCurve.empirical(station_values(past, station, "reservoir_level"),
                                                    station_values(past, station, "reservoir_volume"))
            self.curve_source = "empirical"
        top = levels["flood_level_m"] if s["spill_level"] == "flood" else levels["normal_max_level_m"]
        self.v_max = float(self.curve.volume(top)) if top is not None else np.inf
        dead = levels["dead_storage_level_m"]
        self.v_min = float(self.curve.volume(dead)) if dead is not None else -np.inf

    def fit(self, data: xr.Dataset, problem: Problem, until: np.datetime64) -> ReservoirBalance:
        s = self._resolve(problem)
        until = as_times(until)[0]
        times = as_times(data["time"].values)
        past = data.isel(time=np.flatnonzero(times < until))
        ptimes = times[times < until]
        self._set_curve(s, past, problem.station)
        self._calibrate(s, past, ptimes, problem)
        model = s["inflow_model"]
        if model is None and problem.upstream:
            model = MuskingumRouting()
        if isinstance(model, str):
            model = MODELS[model]()
        self.inflow_model = model
        if model is not None:
            self._inflow_problem = Problem(problem.station, problem.step, problem.leads, "reservoir_inflow",
                                           problem.upstream, problem.meteo, dict(s["inflow_options"] or {}))
            model.fit(data, self._inflow_problem, until)
        self._fitted = True
        return self

    def _calibrate(self, s: dict[str, Any], past: xr.Dataset, ptimes: np.ndarray, problem: Problem) -> None:
        self.observed_at = 0.5 if s["observed_at"] is None else float(s["observed_at"])
        self.loss = 0.0 if s["loss_m3s"] is None else float(s["loss_m3s"])
        self.n_train = 0
        if (s["observed_at"] is not None and s["loss_m3s"] is not None) or ptimes.size < 3:
            return
        cal = calendar(ptimes[0], ptimes[-1] + np.timedelta64(1, "ns"), 0, problem.step)
        vol, inflow, release = (on_calendar(ptimes, station_values(past, problem.station, v), cal)
                                for v in ("reservoir_volume", "reservoir_inflow", "reservoir_release"))
        d = seconds(cal, problem.step)
        n = (inflow - release) * d / MILLION
        dv = np.diff(vol)
        a, b, dd = n[:-1], n[1:], (d[:-1] + d[1:]) / 2 / MILLION
        ok = np.isfinite(dv) & np.isfinite(a) & np.isfinite(b)
        if ok.sum() < 5:
            return
        cols, lo, hi = [], [], []
        rhs = dv[ok] - a[ok]
        if s["observed_at"] is None:
            cols.append((b - a)[ok])
            lo.append(0.0)
            hi.append(1.0)
        else:
            rhs = rhs - self.observed_at * (b - a)[ok]
        if s["loss_m3s"] is None:
            cols.append(-dd[ok])
            lo.append(-np.inf)
            hi.append(np.inf)
        else:
            rhs = rhs + self.loss * dd[ok]
        sol = lsq_linear(np.column_stack(cols), rhs, bounds=(lo, hi)).x
        if s["observed_at"] is None:
            self.observed_at, sol = float(sol[0]), sol[1:]
        if s["loss_m3s"] is None:
            self.loss = float(sol[0])
        self.n_train = int(ok.sum())

    def forecast(
        self,
        data: xr.Dataset,
        problem: Problem,
        issue_times: np.ndarray,
        *,
        inflow: xr.DataArray | None = None,
        release: xr.DataArray | None = None,
        upstream: Mapping[str, xr.DataArray] | None = None,
    ) -> xr.Dataset:
        """Volume, level, inflow, release (total outflow) and spill ``(issue_time, lead)``.

        ``inflow``/``release``: forecasts ``(issue_time, lead)`` to use instead of the inflow
        model and the planned or held release; ``upstream``: forecasts for the inflow model.
        """
        if not self._fitted or self.curve is None:
            raise RuntimeError("reservoir: fit before predict")
        issues, leads, code = as_times(issue_times), problem.leads, problem.station
        times = as_times(data["time"].values)
        if inflow is None and self.inflow_model is not None and self._inflow_problem is not None:
            inflow = _predict(self.inflow_model, data, self._inflow_problem, issues, upstream)
        vol_all = station_values(data, code, "reservoir_volume")
        in_all = hold_forward(station_values(data, code, "reservoir_inflow"))
        rel_all = hold_forward(station_values(data, code, "reservoir_release"))
        plan_all = station_values(data, code, PLANNED_RELEASE) if PLANNED_RELEASE in data.data_vars else None
        out = {v: np.full((issues.size, leads), np.nan) for v in VARIABLES}
        for i, t0 in enumerate(issues):
            check_period_start(t0, problem.step)
            n_hist = int(np.searchsorted(times, t0))
            seen = np.flatnonzero(np.isfinite(vol_all[:n_hist]))
            if seen.size == 0:
                continue
            j = seen[-1]
            cal = calendar(times[j], t0, leads, problem.step)
            i0 = cal.size - leads
            secs = seconds(cal, problem.step)
            # reported inflow and release from period j to the issue time, the last value held over gaps
            q_in, q_out = (hold_forward(np.concatenate([[a[j]], on_calendar(times[:n_hist], a[:n_hist], cal[1:i0])]))
                           for a in (in_all, rel_all))
            fc_in = None if inflow is None else np.asarray(inflow.sel(issue_time=t0).values, dtype=float)
            fc_rel = None if release is None else np.asarray(release.sel(issue_time=t0).values, dtype=float)
            plan = on_calendar(times, plan_all, cal[i0:]) if plan_all is not None else None
            i_lead = future_values(q_in, leads, fc_in)
            r_lead = future_values(q_out, leads, fc_rel if fc_rel is not None else plan)
            # from the reported volume (at observed_at in period j) to the issue time
            first = np.array([(1 - self.observed_at) * secs[0], *secs[1:i0]])
            start = mass_balance(vol_all[j], q_in, q_out, first, v_min=self.v_min, v_max=self.v_max,
                                 loss=self.loss).volume_end[-1]
            b = mass_balance(start, i_lead, r_lead, secs[i0:], v_min=self.v_min, v_max=self.v_max,
                             loss=self.loss, at=self.observed_at)
            out["reservoir_volume"][i] = b.volume
            out["reservoir_level"][i] = self.curve.level(b.volume)
            out["reservoir_inflow"][i] = i_lead
            out["reservoir_release"][i] = b.outflow
            out["spill"][i] = b.spill
        coords = {"issue_time": issues, "lead": np.arange(1, leads + 1)}
        units = {"reservoir_volume": "million m3", "reservoir_level": "m"}
        return xr.Dataset(
            {v: xr.DataArray(a, dims=("issue_time", "lead"), attrs={"units": units.get(v, "m3/s")})
             for v, a in out.items()},
            coords=coords,
            attrs={"station": code, "model": self.name},
        )

    def predict(
        self,
        data: xr.Dataset,
        problem: Problem,
        issue_times: np.ndarray,
        *,
        inflow: xr.DataArray | None = None,
        release: xr.DataArray | None = None,
        upstream: Mapping[str, xr.DataArray] | None = None,
    ) -> xr.DataArray:
        if problem.variable not in self.OUTPUT:
            raise ValueError(f"reservoir: cannot forecast {problem.variable!r}; one of {sorted(self.OUTPUT)}")
        ds = self.forecast(data, problem, issue_times, inflow=inflow, release=release, upstream=upstream)
        da = ds[self.OUTPUT[problem.variable]].rename(problem.variable)
        da.attrs.update(station=problem.station, model=self.name)
        return da

    def params(self) -> dict[str, Any]:
        if not self._fitted or self.curve is None:
            return {}
        finite = lambda v: float(v) if np.isfinite(v) else None  # noqa: E731
        return {
            "curve_source": self.curve_source,
            "level_volume_curve": self.curve.pairs(),
            "v_min_million_m3": finite(self.v_min),
            "v_max_million_m3": finite(self.v_max),
            "observed_at": self.observed_at,
            "loss_m3s": self.loss,
            "n_train": self.n_train,
            "inflow_model": getattr(self.inflow_model, "name", "last reported inflow held"),
            "inflow_params": self.inflow_model.params() if self.inflow_model is not None else {},
        }


def _predict(model: Model, data: xr.Dataset, problem: Problem, issues: np.ndarray,
             upstream: Mapping[str, xr.DataArray] | None) -> xr.DataArray:
    """A model's forecast, handing upstream forecasts to the models that route them."""
    if isinstance(model, RoutingModel):
        return model.predict(data, problem, issues, upstream=upstream)
    return model.predict(data, problem, issues)
