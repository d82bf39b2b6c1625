"""Hydrological routing along the river network: Muskingum (K, X) and pure lag.

A routing model forecasts a downstream station from its upstream stations::

    Q_down(t) = g * sum_i route_i(Q_up_i)(t) + c + e(t),    e(t) = phi * e(t-1) + noise

``route_i`` is a Muskingum reach (:class:`MuskingumRouting`, optionally lagged: "lag and
route") or a pure translation (:class:`LagRouting`); ``g`` (gain, off by default) takes up
losses or an ungauged area in proportion to the flow, ``c`` (on by default) a constant
local inflow, and the AR(1) error ``e`` the slowly varying rest (the seasonal inflow of an
ungauged tributary, a rating shift). Upstream flow is the observed one up to the issue
time, then the upstream station's forecast when one is passed to :meth:`predict` (the
network forecast does), else a reservoir's planned release (data variable
``reservoir_release_planned``), else persistence of the last observed value. The
upstream variable is ``discharge``, or ``reservoir_release`` for a reservoir.

Muskingum (McCarthy 1938; Chow, Maidment & Mays 1988, *Applied Hydrology*, sec. 8.4)
----------------------------------------------------------------------------------
Storage S = K [X I + (1 - X) O] and continuity dS/dt = I - O, discretised over dt::

    O[j+1] = C0 I[j+1] + C1 I[j] + C2 O[j]
    D  = 2K(1 - X) + dt
    C0 = (dt - 2KX) / D,   C1 = (dt + 2KX) / D,   C2 = (2K(1 - X) - dt) / D

C0 + C1 + C2 = 1, so volume is conserved and a steady flow passes unchanged; K is the
mean travel time, X in [0, 0.5] the weight of inflow in storage (0: linear reservoir,
0.5: pure translation). It is the linear IIR filter ``b = [C0, C1], a = [1, -C2]``, run
with :func:`scipy.signal.lfilter` from a steady initial state. The coefficients are
non-negative, so no spurious dips or oscillations, when ``2KX <= dt <= 2K(1 - X)``
(Chow et al. 1988; USACE 2000, *HEC-HMS Technical Reference Manual*, Muskingum). Period
means (a day, a pentad, a decade) are first spread over a fine grid of ``n`` sub-steps
per day (dt = 24/n h, the period mean held: piecewise-constant inflow) with ``n`` the
smallest whose dt fits under ``2K(1 - X)`` (small K), and the reach split into ``N``
sub-reaches of K/N each, as HEC-HMS does, when even dt = 24 h is below ``2KX`` (large K);
the outflow is averaged back over each period. The scheme (n, N) is chosen from K and
X, held fixed while the optimiser moves K and X (so that the objective is smooth); from
each optimum the scheme chosen for it, and one sub-reach more or fewer, are tried in turn,
and the best fit whose coefficients meet the bounds is kept, its scheme stored with K and X.

Lag
---
A translation by L hours of the piecewise-constant hydrograph: the cumulative volume is
interpolated linearly at the period boundaries shifted by L, so that fractional lags
are exact in volume: on a daily step a 12-hour lag gives (Q[t] + Q[t-1]) / 2, a 36-hour
lag (Q[t-1] + Q[t-2]) / 2.

Calibration
-----------
:meth:`Model.fit` fits the routing parameters (K, X per upstream station, and the lag
when asked; the lag for :class:`LagRouting`) with :func:`scipy.optimize.least_squares`
(bounds K in [0, ``k_max_hours``], X in [0, 0.5], lag in [0, ``lag_max_hours``], a few
starts around the reach's ``travel_time_hours``) on the open-loop simulation of the
training window (observed upstream flows, time < ``until``), the gain and local inflow
solved by linear least squares inside the objective (variable projection), then the
AR(1) coefficient of the residuals (lag-1 autocorrelation, clipped to [0, 0.99]).
The first periods (twice the longest travel time) are left out as warm-up.

Forecast
--------
For each issue time the upstream series (observed, gaps interpolated, then the future as
above) is routed over a window long enough for the reach to forget its start (lag + 12 K
and two steps, from a steady state), the AR(1) term adds ``phi**h`` times the last
error, ``h`` periods after the last observed downstream value, and flows are clipped at 0.
Only values before the issue time are read (a release plan is by nature known ahead).

Settings come from the constructor, else from ``problem.options`` (``config/forecast.yaml``),
else the defaults; per-upstream settings are a number for all or a mapping by station.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import xarray as xr
from scipy.optimize import least_squares
from scipy.signal import lfilter

from watermon.forecast.base import Model, Problem, register
from watermon.periods import period_end, period_start

STEP_HOURS = {"daily": 24.0, "pentad": 120.0, "decade": 240.0}
"""nominal length of a step (a pentad or decade may be 3-6 or 8-11 days)"""
PLANNED_RELEASE = "reservoir_release_planned"
"""optional data variable: a reservoir's release schedule (m3/s), known ahead of time"""
MAX_SUBSTEPS_PER_DAY = 96
MAX_SCHEMES_TRIED = 12
SCHEME_TOLERANCE = 0.05
"""a scheme is accepted when 2KX exceeds dt by at most this share of dt (C0 slightly below 0)"""
NS_PER_HOUR = 3_600_000_000_000


# --- the step calendar -----------------------------------------------------------------


def as_times(values: Any) -> np.ndarray:
    """Times as naive UTC ``datetime64[ns]``, whatever they came as (aware datetimes converted)."""
    arr = np.atleast_1d(np.asarray(values))
    if arr.dtype.kind == "M":
        return arr.astype("datetime64[ns]")
    return pd.to_datetime(arr, utc=True).tz_localize(None).values.astype("datetime64[ns]")


def _date(t: np.datetime64) -> date:
    return np.datetime64(t, "D").astype(object)


def next_period_start(t: np.datetime64, step: str) -> np.datetime64:
    """Start of the period after the one starting at ``t``."""
    if step == "daily":
        return np.datetime64(t, "D").astype("datetime64[ns]") + np.timedelta64(1, "D")
    return np.datetime64(period_end(step, _date(t)) + timedelta(days=1)).astype("datetime64[ns]")


def check_period_start(t: np.datetime64, step: str) -> None:
    d = _date(t)
    if np.datetime64(d).astype("datetime64[ns]") != np.datetime64(t, "ns") or (
        step != "daily" and period_start(step, d) != d
    ):
        raise ValueError(f"{t} is not the start of a {step} period")


def calendar(first: np.datetime64, until: np.datetime64, extra: int, step: str) -> np.ndarray:
    """Period starts from ``first`` up to (not including) ``until``, then ``extra`` more."""
    check_period_start(first, step)
    first, until = np.datetime64(first, "ns"), np.datetime64(until, "ns")
    if step == "daily":
        n = max(0, int(-(-(until - first) // np.timedelta64(1, "D"))))
        return first + np.arange(n + extra) * np.timedelta64(1, "D")
    out, t = [], first
    while t < until:
        out.append(t)
        t = next_period_start(t, step)
    for _ in range(extra):
        out.append(t)
        t = next_period_start(t, step)
    return np.array(out, dtype="datetime64[ns]")


def edges_hours(starts: np.ndarray, step: str) -> np.ndarray:
    """Boundaries of the periods (``len(starts) + 1``) in hours since the first start."""
    ends = np.append(starts, next_period_start(starts[-1], step))
    return (ends - ends[0]).astype("int64") / NS_PER_HOUR


def seconds(starts: np.ndarray, step: str) -> np.ndarray:
    return np.diff(edges_hours(starts, step)) * 3600.0


# --- data access -----------------------------------------------------------------------


def station_values(data: xr.Dataset, station: str, variable: str) -> np.ndarray:
    """One station's series along ``data.time``; all NaN when not there."""
    if variable not in data.data_vars or station not in data["station"].values:
        return np.full(data.sizes["time"], np.nan)
    return np.asarray(data[variable].sel(station=station).values, dtype=float)


def on_calendar(times: np.ndarray, values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """``values`` (along ``times``) at ``starts``; NaN where there is none."""
    out = np.full(starts.size, np.nan)
    if times.size == 0 or starts.size == 0:
        return out
    idx = np.clip(np.searchsorted(times, starts), 0, times.size - 1)
    hit = times[idx] == starts
    out[hit] = values[idx[hit]]
    return out


def fill_gaps(values: np.ndarray) -> np.ndarray:
    """Interior gaps interpolated linearly, the ends held (backwards and forwards)."""
    ok = np.isfinite(values)
    if ok.all() or not ok.any():
        return values.astype(float).copy()
    i = np.arange(values.size)
    return np.interp(i, i[ok], values[ok])


def hold_forward(values: np.ndarray) -> np.ndarray:
    """NaN replaced by the last finite value before it (causal); leading NaN stay."""
    ok = np.isfinite(values)
    idx = np.where(ok, np.arange(values.size), -1)
    np.maximum.accumulate(idx, out=idx)
    out = np.where(idx >= 0, values[np.maximum(idx, 0)], np.nan)
    return out


def outflow_variable(data: xr.Dataset, station: str) -> str:
    """What leaves a station downstream: ``discharge``, or a reservoir's ``reservoir_release``."""
    if np.isfinite(station_values(data, station, "discharge")).any():
        return "discharge"
    if np.isfinite(station_values(data, station, "reservoir_release")).any():
        return "reservoir_release"
    return "discharge"


def future_values(
    hist: np.ndarray, leads: int, forecast: np.ndarray | None = None, planned: np.ndarray | None = None
) -> np.ndarray:
    """A series past the issue time: the forecast, else the plan, else the last value held."""
    out = np.full(leads, np.nan)
    for source in (forecast, planned):
        if source is not None:
            src = np.asarray(source, dtype=float)[:leads]
            out[: src.size] = src
            break
    last = hist[np.isfinite(hist)][-1] if np.isfinite(hist).any() else np.nan
    return hold_forward(np.concatenate([[last], out]))[1:]


# --- routing kernels -------------------------------------------------------------------


def muskingum_coefficients(k: float, x: float, dt: float) -> tuple[float, float, float]:
    """C0, C1, C2 for K and dt in the same unit (they sum to 1)."""
    d = 2 * k * (1 - x) + dt
    return (dt - 2 * k * x) / d, (dt + 2 * k * x) / d, (2 * k * (1 - x) - dt) / d


@dataclass(frozen=True)
class MuskingumScheme:
    """How a reach is discretised: sub-steps per day and sub-reaches (each K/N)."""

    substeps_per_day: int = 1
    subreaches: int = 1

    @property
    def dt_hours(self) -> float:
        return 24.0 / self.substeps_per_day

    @classmethod
    def choose(cls, k_hours: float, x: float) -> MuskingumScheme:
        """The coarsest scheme with ``2(K/N)X <= dt <= 2(K/N)(1-X)``, N as small as possible.

        ``dt <= 2(K/N)(1-X)`` always holds (down to dt = 15 min); when no dt = 24/n h meets
        the lower bound within ``SCHEME_TOLERANCE`` the least violating scheme is taken
        (X near 0.5): its coefficients are barely negative and it stays stable, |C2| < 1.
        """
        if k_hours <= 0:
            return cls(1, 1)
        best: tuple[float, int, int] | None = None
        n_first = max(1, math.ceil(2 * k_hours * x / 24.0 - 1e-9))
        for subreaches in range(1, n_first + 4):
            k = k_hours / subreaches
            for n in range(1, MAX_SUBSTEPS_PER_DAY + 1):
                dt = 24.0 / n
                if dt > 2 * k * (1 - x) + 1e-9:
                    continue  # too coarse: C2 < 0
                violation = max(0.0, 2 * k * x - dt) / dt  # C0 < 0 when positive
                if best is None or violation < best[0]:
                    best = (violation, n, subreaches)
                break  # finer sub-steps only increase the violation
            if best is not None and best[0] <= SCHEME_TOLERANCE:
                break
        if best is None:  # K so small that even the finest sub-step is above 2K(1-X)
            return cls(MAX_SUBSTEPS_PER_DAY, 1)
        return cls(best[1], best[2])

    @staticmethod
    def substeps_for(k_hours: float, x: float) -> int:
        """Fewest sub-steps per day with dt <= 2K(1-X) (K of one sub-reach)."""
        if k_hours <= 0:
            return 1
        return int(min(MAX_SUBSTEPS_PER_DAY, max(1, math.ceil(24.0 / (2 * k_hours * (1 - x)) - 1e-9))))

    def violation(self, k_hours: float, x: float) -> float:
        """How far (share of dt) the bounds 2KX <= dt <= 2K(1-X) are missed; 0 when met."""
        if k_hours <= 0:
            return 0.0
        k, dt = k_hours / self.subreaches, self.dt_hours
        low = max(0.0, 2 * k * x - dt) / dt
        high = max(0.0, dt - 2 * k * (1 - x)) / dt if self.substeps_per_day < MAX_SUBSTEPS_PER_DAY else 0.0
        return max(low, high)


def muskingum(inflow: np.ndarray, k: float, x: float, dt: float, subreaches: int = 1) -> np.ndarray:
    """Route a regularly sampled hydrograph (K, dt in the same unit), steady at the start."""
    out = np.asarray(inflow, dtype=float)
    if k <= 0 or out.size == 0:
        return out.copy()
    c0, c1, c2 = muskingum_coefficients(k / subreaches, x, dt)
    b, a = np.array([c0, c1]), np.array([1.0, -c2])
    for _ in range(subreaches):
        # steady state: the filter's one state (transposed direct form II) is C1 I + C2 O = (1 - C0) I
        out, _ = lfilter(b, a, out, zi=[(1.0 - c0) * out[0]])
    return out


def interval_means(values: np.ndarray, edges: np.ndarray, out_edges: np.ndarray, lag: float = 0.0) -> np.ndarray:
    """Means over ``out_edges`` intervals of the piecewise-constant ``values`` delayed by ``lag``.

    The cumulative volume is interpolated linearly at the shifted boundaries (exact for a
    piecewise-constant series); before the start the first value is held, after the end the last.
    """
    cum = np.concatenate([[0.0], np.cumsum(values * np.diff(edges))])
    t = out_edges - lag
    c = np.interp(t, edges, cum)
    before, after = t < edges[0], t > edges[-1]
    c[before] = (t[before] - edges[0]) * values[0]
    c[after] = cum[-1] + (t[after] - edges[-1]) * values[-1]
    return np.diff(c) / np.diff(out_edges)


def route_lag(values: np.ndarray, edges: np.ndarray, lag_hours: float) -> np.ndarray:
    """Period means translated by ``lag_hours`` (fractional lags by linear interpolation)."""
    if lag_hours == 0:
        return np.asarray(values, dtype=float).copy()
    return interval_means(np.asarray(values, dtype=float), edges, edges, lag_hours)


def route_muskingum(
    values: np.ndarray,
    edges: np.ndarray,
    k_hours: float,
    x: float,
    lag_hours: float = 0.0,
    scheme: MuskingumScheme | None = None,
) -> np.ndarray:
    """Period means (periods of whole days, boundaries ``edges`` in hours) routed through a reach."""
    values = np.asarray(values, dtype=float)
    if k_hours <= 0:
        return route_lag(values, edges, lag_hours)
    scheme = scheme or MuskingumScheme.choose(k_hours, x)
    n = scheme.substeps_per_day
    counts = np.rint(np.diff(edges) / 24.0 * n).astype(int)
    fine = muskingum(np.repeat(values, counts), k_hours, x, scheme.dt_hours, scheme.subreaches)
    fine_edges = edges[0] + scheme.dt_hours * np.arange(fine.size + 1)
    return interval_means(fine, fine_edges, edges, lag_hours)


# --- the models ------------------------------------------------------------------------


Reaches = dict[str, dict[str, Any]]
"""upstream station -> its reach's parameters"""
Solve = Callable[[Reaches], tuple[float, Reaches]]
"""least squares from a reach template -> (cost, fitted reaches)"""
Bounds = dict[str, tuple[float, float]]
"""parameter -> (lower, upper)"""


def _per(value: Any, station: str) -> Any:
    """A per-upstream setting: one value for all, or a mapping by station (YAML may make codes ints)."""
    if isinstance(value, Mapping):
        return next((v for k, v in value.items() if str(k) == station), None)
    return value


@dataclass
class _Fit:
    upstream: Reaches
    """upstream station -> its reach's parameters (and the variable routed)"""
    gain: float
    local: float
    ar1: float
    calibrated: bool
    n_train: int = 0
    rmse: float | None = None
    train_from: str | None = None
    train_to: str | None = None
    step: str = "daily"


class RoutingModel(Model):
    """Downstream = gain * sum of routed upstream + local inflow, with AR(1) error correction.

    Subclasses say which parameters a reach has (``PARAMETERS``), their bounds and
    starting points, and how a reach routes a series (``_route``).
    """

    name: ClassVar[str] = "routing"
    PARAMETERS: ClassVar[tuple[str, ...]] = ()
    COMMON: ClassVar[dict[str, Any]] = {
        "local_inflow": "constant",
        "gain": False,
        "error_correction": True,
        "travel_time_hours": None,
        "upstream_variables": None,
    }
    OWN: ClassVar[dict[str, Any]] = {}

    def __init__(self, **settings: Any) -> None:
        unknown = set(settings) - set(self.COMMON) - set(self.OWN)
        if unknown:
            raise TypeError(f"{type(self).__name__}: unknown settings {sorted(unknown)}")
        self._given = {k: v for k, v in settings.items() if v is not None}
        self._fit: _Fit | None = None
        self._settings: dict[str, Any] = {}

    # -- settings --------------------------------------------------------------------
    def _resolve(self, problem: Problem) -> dict[str, Any]:
        known = {**self.COMMON, **self.OWN}
        unknown = set(problem.options) - set(known)
        if unknown:
            raise ValueError(f"{self.name} ({problem.station}): unknown options {sorted(unknown)}; "
                             f"known: {sorted(known)}")
        s = {**known, **problem.options, **self._given}
        if s["local_inflow"] not in ("none", "constant"):
            raise ValueError(f"local_inflow must be 'none' or 'constant', not {s['local_inflow']!r}")
        return s

    def _travel(self, s: dict[str, Any], u: str, step: str) -> float:
        tt = _per(s["travel_time_hours"], u)
        return float(tt) if tt is not None else STEP_HOURS[step]

    # -- what a subclass says --------------------------------------------------------
    def _bounds(self, s: dict[str, Any], travel: float, step: str) -> Bounds:
        raise NotImplementedError

    def _starts(self, s: dict[str, Any], travel: float, bounds: Bounds) -> list[dict[str, float]]:
        raise NotImplementedError

    def _fixed(self, s: dict[str, Any], u: str, step: str) -> dict[str, float]:
        """Parameters the user fixed for reach ``u`` (not calibrated)."""
        return {}

    def _complete(self, p: dict[str, Any]) -> dict[str, Any]:
        """Derived settings of a reach (the Muskingum scheme) from its parameters."""
        return p

    def _route(self, values: np.ndarray, edges: np.ndarray, p: dict[str, Any]) -> np.ndarray:
        raise NotImplementedError

    def _memory_hours(self, p: dict[str, Any]) -> float:
        raise NotImplementedError

    def _search(self, solve: Solve, starts: list[Reaches]) -> tuple[float, Reaches]:
        """The best of a least-squares solve from each start."""
        results = [solve({u: self._complete(q) for u, q in start.items()}) for start in starts]
        return min(results, key=lambda r: r[0])

    # -- fitting ---------------------------------------------------------------------
    def fit(self, data: xr.Dataset, problem: Problem, until: np.datetime64) -> RoutingModel:
        s = self._settings = self._resolve(problem)
        if not problem.upstream:
            raise ValueError(f"{self.name}: {problem.station} has no upstream stations to route")
        until = as_times(until)[0]
        times = as_times(data["time"].values)
        past = data.isel(time=np.flatnonzero(times < until))
        ptimes = times[times < until]
        variables = {u: _per(s["upstream_variables"], u) or outflow_variable(past, u) for u in problem.upstream}
        travel = {u: self._travel(s, u, problem.step) for u in problem.upstream}
        bounds = {u: self._bounds(s, travel[u], problem.step) for u in problem.upstream}
        fixed = {u: self._fixed(s, u, problem.step) for u in problem.upstream}
        free = [(u, name) for u in problem.upstream for name in self.PARAMETERS if name not in fixed[u]]
        per_up = {u: self._starts(s, travel[u], bounds[u]) for u in problem.upstream}
        starts = [{u: {**per_up[u][i % len(per_up[u])], **fixed[u]} for u in problem.upstream}
                  for i in range(max(len(v) for v in per_up.values()))]
        initial = {u: self._complete({**starts[0][u], "variable": variables[u]}) for u in problem.upstream}
        self._fit = _Fit(initial, 1.0, 0.0, 0.0, calibrated=False, step=problem.step)
        if ptimes.size < 3:
            return self
        cal = calendar(ptimes[0], until, 0, problem.step)
        edges = edges_hours(cal, problem.step)
        y = on_calendar(ptimes, station_values(past, problem.station, problem.variable), cal)
        ups = {u: fill_gaps(on_calendar(ptimes, station_values(past, u, variables[u]), cal)) for u in problem.upstream}
        if any(not np.isfinite(v).all() for v in ups.values()):
            missing = [u for u, v in ups.items() if not np.isfinite(v).all()]
            raise ValueError(f"{self.name} ({problem.station}): no {', '.join(missing)} data before {until}")
        warmup = edges[:-1] >= 2 * max(travel.values())
        valid = np.isfinite(y) & warmup
        if valid.sum() < len(free) + 2 + 3:
            valid = np.isfinite(y)
        if valid.sum() < len(free) + 2 + 3:
            return self
        gain, local = bool(s["gain"]), s["local_inflow"] == "constant"

        def unpack(theta: np.ndarray, template: Reaches) -> Reaches:
            p = {u: dict(template[u]) for u in problem.upstream}
            for (u, name), v in zip(free, theta, strict=True):
                p[u][name] = float(v)
            return p

        def simulate(p: Reaches) -> np.ndarray:
            return sum(self._route(ups[u], edges, p[u]) for u in problem.upstream)

        def linear(sim: np.ndarray) -> tuple[float, float]:
            return _linear_part(sim[valid], y[valid], gain, local)

        def residual(theta: np.ndarray, template: Reaches) -> np.ndarray:
            sim = simulate(unpack(theta, template))
            g, c = linear(sim)
            return (g * sim + c - y)[valid]

        lo = np.array([bounds[u][n][0] for u, n in free])
        hi = np.array([bounds[u][n][1] for u, n in free])
        scale = np.maximum(hi - lo, 1e-6) / 10

        def solve(template: Reaches) -> tuple[float, Reaches]:
            """Least squares from ``template``'s values, its discretisation held fixed."""
            theta = np.clip(np.array([template[u][n] for u, n in free], dtype=float), lo, hi)
            if free:
                theta = least_squares(residual, theta, bounds=(lo, hi), x_scale=scale, args=(template,),
                                      xtol=1e-9, ftol=1e-9, max_nfev=200).x
            return float(np.sum(residual(theta, template) ** 2)), unpack(theta, template)

        best = self._search(solve, [{u: {**start[u], "variable": variables[u]} for u in problem.upstream}
                                    for start in starts])
        p = best[1]
        sim = simulate(p)
        g, c = linear(sim)
        err = np.where(valid, y - (g * sim + c), np.nan)
        phi = _ar1(err) if s["error_correction"] else 0.0
        self._fit = _Fit(p, g, c, phi, calibrated=True, n_train=int(valid.sum()),
                         rmse=float(np.sqrt(np.nanmean(err**2))),
                         train_from=str(cal[0])[:19], train_to=str(cal[-1])[:19], step=problem.step)
        return self

    # -- forecasting -----------------------------------------------------------------
    def predict(
        self,
        data: xr.Dataset,
        problem: Problem,
        issue_times: np.ndarray,
        *,
        upstream: Mapping[str, xr.DataArray] | None = None,
    ) -> xr.DataArray:
        """Routed forecasts ``(issue_time, lead)``; ``upstream``: forecasts of upstream stations."""
        if self._fit is None:
            raise RuntimeError(f"{self.name}: fit before predict")
        f, issues, leads = self._fit, as_times(issue_times), problem.leads
        times = as_times(data["time"].values)
        y_all = station_values(data, problem.station, problem.variable)
        up_all = {u: station_values(data, u, q["variable"]) for u, q in f.upstream.items()}
        planned = {u: station_values(data, u, PLANNED_RELEASE) for u, q in f.upstream.items()
                   if q["variable"] == "reservoir_release" and PLANNED_RELEASE in data.data_vars}
        memory = max(self._memory_hours(q) for q in f.upstream.values()) + 2 * STEP_HOURS[problem.step]
        out = np.full((issues.size, leads), np.nan)
        for i, t0 in enumerate(issues):
            check_period_start(t0, problem.step)
            n_hist = int(np.searchsorted(times, t0))
            if n_hist == 0:
                continue
            first = min(int(np.searchsorted(times, t0 - np.timedelta64(int(memory * 3600), "s"))), n_hist - 1)
            cal = calendar(times[first], t0, leads, problem.step)
            i0 = cal.size - leads
            edges = edges_hours(cal, problem.step)
            hist_times = times[:n_hist]
            sim = np.zeros(cal.size)
            ok = True
            for u, q in f.upstream.items():
                hist = fill_gaps(on_calendar(hist_times, up_all[u][:n_hist], cal[:i0]))
                if not np.isfinite(hist).any():
                    ok = False
                    break
                fc = None
                if upstream is not None and u in upstream:
                    fc = np.asarray(upstream[u].sel(issue_time=t0).values, dtype=float)
                plan = on_calendar(times, planned[u], cal[i0:]) if u in planned else None
                series = np.concatenate([hist, future_values(hist, leads, fc, plan)])
                sim += self._route(series, edges, q)
            if not ok:
                continue
            yhat = f.gain * sim + f.local
            fc_y = yhat[i0:].copy()
            y_hist = on_calendar(hist_times, y_all[:n_hist], cal[:i0])
            seen = np.flatnonzero(np.isfinite(y_hist))
            if f.ar1 > 0 and seen.size:
                j = seen[-1]
                fc_y += f.ar1 ** (np.arange(i0, i0 + leads) - j) * (y_hist[j] - yhat[j])
            out[i] = np.maximum(fc_y, 0.0)
        return xr.DataArray(
            out,
            dims=("issue_time", "lead"),
            coords={"issue_time": issues, "lead": np.arange(1, leads + 1)},
            name=problem.variable,
            attrs={"station": problem.station, "model": self.name, "units": "m3/s"},
        )

    def params(self) -> dict[str, Any]:
        if self._fit is None:
            return {}
        f = self._fit
        ups = {u: dict(q) for u, q in f.upstream.items()}
        for q in ups.values():
            if "k_hours" in q:
                q["k_steps"] = q["k_hours"] / STEP_HOURS[f.step]
        return {
            "step": f.step,
            "upstream": ups,
            "gain": f.gain,
            "local_inflow_m3s": f.local,
            "ar1": f.ar1,
            "calibrated": f.calibrated,
            "n_train": f.n_train,
            "train_rmse": f.rmse,
            "train_from": f.train_from,
            "train_to": f.train_to,
        }

    def route(self, values: np.ndarray, edges: np.ndarray, station: str) -> np.ndarray:
        """Route a series of upstream ``station`` with the fitted parameters of its reach."""
        if self._fit is None:
            raise RuntimeError(f"{self.name}: fit before route")
        return self._route(values, edges, self._fit.upstream[station])


def _linear_part(sim: np.ndarray, y: np.ndarray, gain: bool, local: bool) -> tuple[float, float]:
    """Gain and local inflow by least squares (1 and 0 when not fitted)."""
    if gain and local:
        a = np.column_stack([sim, np.ones_like(sim)])
        (g, c), *_ = np.linalg.lstsq(a, y, rcond=None)
        return float(g), float(c)
    if gain:
        den = float(sim @ sim)
        return (float(sim @ y) / den if den > 0 else 1.0), 0.0
    if local:
        return 1.0, float(np.mean(y - sim))
    return 1.0, 0.0


def _ar1(err: np.ndarray) -> float:
    """Lag-1 regression coefficient of consecutive residuals, in [0, 0.99]."""
    a, b = err[:-1], err[1:]
    ok = np.isfinite(a) & np.isfinite(b)
    den = float(a[ok] @ a[ok])
    if ok.sum() < 3 or den <= 0:
        return 0.0
    return float(np.clip((a[ok] @ b[ok]) / den, 0.0, 0.99))


def _rescheme(p: dict[str, Any], subreaches: int | None = None) -> dict[str, Any]:
    """Reach parameters with the scheme chosen for its K and X (or for a given number of sub-reaches)."""
    if subreaches is None:
        scheme = MuskingumScheme.choose(p["k_hours"], p["x"])
    else:
        scheme = MuskingumScheme(MuskingumScheme.substeps_for(p["k_hours"] / subreaches, p["x"]), subreaches)
    return {**p, "substeps_per_day": scheme.substeps_per_day, "subreaches": scheme.subreaches}


def _scheme_ok(p: Reaches) -> bool:
    return all(MuskingumScheme(q["substeps_per_day"], q["subreaches"]).violation(q["k_hours"], q["x"])
               <= SCHEME_TOLERANCE for q in p.values())


@register
class MuskingumRouting(RoutingModel):
    """Muskingum routing of each upstream station (K, X calibrated; optionally lagged).

    Settings (constructor keywords or ``problem.options``):

    * ``k_hours`` / ``k_steps``: fix K (hours, or steps of the nominal step length);
    * ``x``: fix X (0 to 0.5); ``lag_hours``: a fixed lag before the reach (default 0);
      ``fit_lag``: calibrate the lag too ("lag and route");
    * ``k_max_hours`` (default max(4 travel time, 10 steps)), ``lag_max_hours``;
    * common: ``travel_time_hours`` (starting point, per upstream), ``local_inflow``
      ("constant" or "none"), ``gain`` (bool), ``error_correction`` (bool),
      ``upstream_variables``.
    """

    name: ClassVar[str] = "muskingum"
    PARAMETERS: ClassVar[tuple[str, ...]] = ("k_hours", "x", "lag_hours")
    OWN: ClassVar[dict[str, Any]] = {
        "k_hours": None, "k_steps": None, "x": None, "lag_hours": None, "fit_lag": False,
        "k_max_hours": None, "lag_max_hours": None,
    }

    def __init__(
        self,
        *,
        k_hours: float | Mapping[str, float] | None = None,
        k_steps: float | Mapping[str, float] | None = None,
        x: float | Mapping[str, float] | None = None,
        lag_hours: float | Mapping[str, float] | None = None,
        fit_lag: bool | None = None,
        k_max_hours: float | None = None,
        lag_max_hours: float | None = None,
        **common: Any,
    ) -> None:
        super().__init__(k_hours=k_hours, k_steps=k_steps, x=x, lag_hours=lag_hours, fit_lag=fit_lag,
                         k_max_hours=k_max_hours, lag_max_hours=lag_max_hours, **common)

    def _bounds(self, s: dict[str, Any], travel: float, step: str) -> Bounds:
        k_max = s["k_max_hours"] or max(4 * travel, 10 * STEP_HOURS[step])
        lag_max = s["lag_max_hours"] or max(2 * travel, STEP_HOURS[step])
        return {"k_hours": (0.0, float(k_max)), "x": (0.0, 0.5), "lag_hours": (0.0, float(lag_max))}

    def _starts(self, s: dict[str, Any], travel: float, bounds: Bounds) -> list[dict[str, float]]:
        k_hi = bounds["k_hours"][1]
        return [{"k_hours": min(m * travel, k_hi) or min(24.0, k_hi), "x": x, "lag_hours": 0.0}
                for x in (0.2, 0.45) for m in (1.0, 0.5, 2.0)]

    def _fixed(self, s: dict[str, Any], u: str, step: str) -> dict[str, float]:
        fixed: dict[str, float] = {}
        k, ks = _per(s["k_hours"], u), _per(s["k_steps"], u)
        if k is not None:
            fixed["k_hours"] = float(k)
        elif ks is not None:
            fixed["k_hours"] = float(ks) * STEP_HOURS[step]
        if _per(s["x"], u) is not None:
            fixed["x"] = float(_per(s["x"], u))
            if not 0 <= fixed["x"] <= 0.5:
                raise ValueError(f"muskingum: X must be in [0, 0.5], not {fixed['x']}")
        lag = _per(s["lag_hours"], u)
        if lag is not None or not s["fit_lag"]:
            fixed["lag_hours"] = float(lag or 0.0)
        return fixed

    def _complete(self, p: dict[str, Any]) -> dict[str, Any]:
        return p if "substeps_per_day" in p else _rescheme(p)

    def _search(self, solve: Solve,
                starts: list[Reaches]) -> tuple[float, Reaches]:
        """Least squares within a discretisation, and a local search over discretisations.

        The routed series jumps where the scheme changes, so each solve holds the schemes
        fixed; from each solution the scheme chosen for its K and X and, when the solution
        is the best so far, one sub-reach more or fewer on each reach are tried in turn.
        The best solution whose coefficients meet the bounds (within ``SCHEME_TOLERANCE``) wins.
        """
        tried: set[tuple[tuple[int, int], ...]] = set()
        best: tuple[float, Reaches] | None = None
        fallback: tuple[float, Reaches] | None = None
        frontier = [{u: _rescheme(q) for u, q in start.items()} for start in starts]
        while frontier and len(tried) < MAX_SCHEMES_TRIED:
            template = frontier.pop(0)
            key = tuple((q["substeps_per_day"], q["subreaches"]) for q in template.values())
            if key in tried:
                continue
            tried.add(key)
            cost, p = solve(template)
            if fallback is None or cost < fallback[0]:
                fallback = (cost, p)
            frontier.insert(0, {u: _rescheme(q) for u, q in p.items()})
            if _scheme_ok(p) and (best is None or cost < best[0]):
                best = (cost, p)
                for u, q in p.items():
                    for n in (q["subreaches"] - 1, q["subreaches"] + 1):
                        if n >= 1:
                            frontier.insert(1, {**p, u: _rescheme(q, n)})
        assert fallback is not None
        return best or fallback

    def _route(self, values: np.ndarray, edges: np.ndarray, p: dict[str, Any]) -> np.ndarray:
        scheme = MuskingumScheme(p["substeps_per_day"], p["subreaches"])
        return route_muskingum(values, edges, p["k_hours"], p["x"], p["lag_hours"], scheme)

    def _memory_hours(self, p: dict[str, Any]) -> float:
        return p["lag_hours"] + 12 * p["k_hours"]


@register
class LagRouting(RoutingModel):
    """Pure translation of each upstream station by a lag (calibrated unless ``lag_hours`` is given).

    Settings: ``lag_hours`` (fix the lag, per upstream), ``lag_max_hours`` (default
    max(3 travel time, 2 steps)), and the common ones (see :class:`RoutingModel`).
    """

    name: ClassVar[str] = "lag"
    PARAMETERS: ClassVar[tuple[str, ...]] = ("lag_hours",)
    OWN: ClassVar[dict[str, Any]] = {"lag_hours": None, "lag_max_hours": None}

    def __init__(
        self,
        *,
        lag_hours: float | Mapping[str, float] | None = None,
        lag_max_hours: float | None = None,
        **common: Any,
    ) -> None:
        super().__init__(lag_hours=lag_hours, lag_max_hours=lag_max_hours, **common)

    def _bounds(self, s: dict[str, Any], travel: float, step: str) -> Bounds:
        return {"lag_hours": (0.0, float(s["lag_max_hours"] or max(3 * travel, 2 * STEP_HOURS[step])))}

    def _starts(self, s: dict[str, Any], travel: float, bounds: Bounds) -> list[dict[str, float]]:
        # a grid over the range, then least squares from each: the objective is piecewise smooth in the lag
        hi = bounds["lag_hours"][1]
        grid = sorted({min(travel, hi), *np.linspace(0.0, hi, 7)[1:-1].tolist()})
        return [{"lag_hours": float(v)} for v in grid]

    def _fixed(self, s: dict[str, Any], u: str, step: str) -> dict[str, float]:
        lag = _per(s["lag_hours"], u)
        return {} if lag is None else {"lag_hours": float(lag)}

    def _route(self, values: np.ndarray, edges: np.ndarray, p: dict[str, Any]) -> np.ndarray:
        return route_lag(values, edges, p["lag_hours"])

    def _memory_hours(self, p: dict[str, Any]) -> float:
        return p["lag_hours"]
