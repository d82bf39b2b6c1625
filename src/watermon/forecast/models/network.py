"""The network forecast: from the headwaters down to the border gauges, one small part per station.

The river network (``config/network.yaml`` reaches, and the ``derived_from`` of virtual
gauges) is walked in topological order, every station forecast from the forecasts of
the stations above it:

* **headwater** (nothing upstream): its own model, by default :class:`LastValue`
  (the last observed value held) or whatever is configured per station;
* **routed** gauge: its upstream stations' forecasts routed down the reaches
  (:class:`~watermon.forecast.models.routing.MuskingumRouting` by default, the reach
  travel times as starting points), plus local inflow and AR(1) error correction;
* **reservoir**: inflow = routed upstream forecasts (or the last reported inflow held
  when nothing is upstream), then the mass balance with the planned or held release
  (:class:`~watermon.forecast.models.reservoir.ReservoirBalance`): volume, level and
  total outflow; the outflow is what is routed further down;
* **virtual** gauge: the sum of its parts' forecasts.

Every part is fitted on observations only (routing on observed upstream and downstream
flows), before ``until``; forecasts then chain: lead ``l`` downstream uses the upstream
forecasts for leads up to ``l``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import xarray as xr

from watermon.config.models import BasinConfig, Reach, Reservoir, StationKind
from watermon.forecast.base import MODELS, Model, Problem, Step, register
from watermon.forecast.models.reservoir import ReservoirBalance
from watermon.forecast.models.routing import (
    MuskingumRouting,
    RoutingModel,
    as_times,
    station_values,
)

Kind = Literal["headwater", "routed", "reservoir", "virtual"]
OUTPUTS = ("discharge", "reservoir_inflow", "reservoir_release", "reservoir_volume", "reservoir_level")


def topological_order(edges: Iterable[tuple[str, str]], nodes: Iterable[str] = ()) -> list[str]:
    """Every node after all nodes upstream of it (Kahn); ties in order of first appearance.

    Raises :class:`ValueError` naming the stations on or below a cycle.
    """
    edges = list(edges)
    seen: dict[str, None] = dict.fromkeys(nodes)
    for up, down in edges:
        seen.setdefault(up)
        seen.setdefault(down)
    below: dict[str, list[str]] = {n: [] for n in seen}
    indegree = dict.fromkeys(seen, 0)
    for up, down in edges:
        below[up].append(down)
        indegree[down] += 1
    ready = [n for n in seen if indegree[n] == 0]
    order: list[str] = []
    while ready:
        node = ready.pop(0)
        order.append(node)
        for down in below[node]:
            indegree[down] -= 1
            if indegree[down] == 0:
                ready.append(down)
    if len(order) < len(seen):
        stuck = [n for n in seen if n not in order]
        raise ValueError(f"the river network has a cycle through {', '.join(stuck)}")
    return order


@dataclass(frozen=True)
class Node:
    """One station of the network and how it is forecast."""

    station: str
    kind: Kind
    upstream: tuple[str, ...] = ()
    """stations routed into it (reaches), or the parts of a virtual gauge"""
    travel_time_hours: Mapping[str, float] = field(default_factory=dict)


class LastValue(Model):
    """The last observed value before the issue time, held for every lead (default headwater model)."""

    name: ClassVar[str] = "last_value"

    def fit(self, data: xr.Dataset, problem: Problem, until: np.datetime64) -> LastValue:
        return self

    def predict(self, data: xr.Dataset, problem: Problem, issue_times: np.ndarray) -> xr.DataArray:
        issues = as_times(issue_times)
        times = as_times(data["time"].values)
        values = station_values(data, problem.station, problem.variable)
        out = np.full((issues.size, problem.leads), np.nan)
        for i, t0 in enumerate(issues):
            past = values[: np.searchsorted(times, t0)]
            past = past[np.isfinite(past)]
            if past.size:
                out[i] = past[-1]
        return xr.DataArray(out, dims=("issue_time", "lead"),
                            coords={"issue_time": issues, "lead": np.arange(1, problem.leads + 1)},
                            name=problem.variable, attrs={"station": problem.station, "model": self.name})

    def params(self) -> dict[str, Any]:
        return {}


def upstream_closure(config: BasinConfig, station: str) -> set[str]:
    """``station`` and every station whose water reaches it (reaches and virtual gauges' parts)."""
    above: dict[str, set[str]] = {}
    for r in config.reaches:
        above.setdefault(r.downstream, set()).add(r.upstream)
    for s in config.stations:
        above.setdefault(s.code, set()).update(s.derived_from)
    out, todo = set(), [station]
    while todo:
        code = todo.pop()
        if code not in out:
            out.add(code)
            todo.extend(above.get(code, ()))
    return out


class NetworkForecast:
    """Forecasts for every station of a river network, composed from headwaters down.

    ``reaches``: the network; ``reservoirs``: their configuration (or bare station codes,
    for a curve fitted to reported level-volume pairs); ``virtual``: virtual gauge ->
    its parts. ``headwater_model`` / ``routing_model``: factories of the default models;
    ``models``: per-station models instead (for a reservoir: the model of its inflow);
    ``options``: per-station ``Problem.options`` (for a reservoir, its balance settings,
    with ``inflow_options`` for the inflow model).
    """

    def __init__(
        self,
        reaches: Sequence[Reach],
        *,
        step: Step = "daily",
        leads: int = 5,
        reservoirs: Sequence[Reservoir | str] = (),
        virtual: Mapping[str, Sequence[str]] | None = None,
        headwater_model: Callable[[], Model] = LastValue,
        routing_model: Callable[[], Model] = MuskingumRouting,
        models: Mapping[str, Model] | None = None,
        options: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.step, self.leads = step, leads
        self.reservoirs = {r if isinstance(r, str) else r.station: r for r in reservoirs}
        virtual = {k: tuple(v) for k, v in (virtual or {}).items()}
        upstream: dict[str, dict[str, float]] = {}
        for r in reaches:
            upstream.setdefault(r.downstream, {})[r.upstream] = r.travel_time_hours
        edges = [(r.upstream, r.downstream) for r in reaches]
        edges += [(part, v) for v, parts in virtual.items() for part in parts]
        self.nodes: dict[str, Node] = {}
        for code in topological_order(edges, [*self.reservoirs, *virtual]):
            if code in virtual:
                self.nodes[code] = Node(code, "virtual", virtual[code])
            elif code in self.reservoirs:
                ups = upstream.get(code, {})
                self.nodes[code] = Node(code, "reservoir", tuple(ups), ups)
            elif code in upstream:
                self.nodes[code] = Node(code, "routed", tuple(upstream[code]), upstream[code])
            else:
                self.nodes[code] = Node(code, "headwater")
        self._headwater, self._routing = headwater_model, routing_model
        self._given = dict(models or {})
        self._options = {k: dict(v) for k, v in (options or {}).items()}
        self.models: dict[str, Model] = {}
        self.problems: dict[str, Problem] = {}

    @classmethod
    def from_config(cls, config: BasinConfig, above: str | None = None, **kwargs: Any) -> NetworkForecast:
        """The network of ``config``: its reaches, reservoirs (curves) and virtual gauges.

        ``above``: only that station and the stations upstream of it (what its forecast needs).
        """
        reaches: Sequence[Reach] = config.reaches
        virtual = {s.code: s.derived_from for s in config.stations if s.kind is StationKind.VIRTUAL_GAUGE}
        keep = None if above is None else upstream_closure(config, above)
        if keep is not None:
            reaches = [r for r in reaches if r.downstream in keep]
            virtual = {v: parts for v, parts in virtual.items() if v in keep}
        configured = {r.station: r for r in config.reservoirs}
        reservoirs = [configured.get(s.code, s.code) for s in config.stations if s.kind is StationKind.RESERVOIR
                      and any(s.code in (r.upstream, r.downstream) for r in reaches)]
        return cls(reaches, reservoirs=reservoirs, virtual=virtual, **kwargs)

    def order(self) -> list[str]:
        """Stations in the order they are forecast (every one after those upstream of it)."""
        return list(self.nodes)

    # -- the parts -----------------------------------------------------------------------
    def _part(self, node: Node) -> tuple[Model | None, Problem]:
        opts = dict(self._options.get(node.station, {}))
        if node.kind == "virtual":
            return None, Problem(node.station, self.step, self.leads, upstream=node.upstream)
        if node.kind == "headwater":
            model = self._given.get(node.station) or self._headwater()
            return model, Problem(node.station, self.step, self.leads, options=opts)
        if node.kind == "routed":
            model = self._given.get(node.station) or self._routing()
            opts.setdefault("travel_time_hours", dict(node.travel_time_hours))
            return model, Problem(node.station, self.step, self.leads, upstream=node.upstream, options=opts)
        inflow = self._given.get(node.station) or (self._routing() if node.upstream else None)
        inflow_opts = dict(opts.pop("inflow_options", None) or {})
        if node.upstream:
            inflow_opts.setdefault("travel_time_hours", dict(node.travel_time_hours))
        res = self.reservoirs[node.station]
        balance = ReservoirBalance(None if isinstance(res, str) else res, inflow_model=inflow)
        opts["inflow_options"] = inflow_opts
        return balance, Problem(node.station, self.step, self.leads, "reservoir_volume", node.upstream, options=opts)

    def fit(self, data: xr.Dataset, until: np.datetime64) -> NetworkForecast:
        """Fit every part on observations before ``until``."""
        self.models, self.problems = {}, {}
        for node in self.nodes.values():
            model, problem = self._part(node)
            self.problems[node.station] = problem
            if model is None:
                continue
            try:
                self.models[node.station] = model.fit(data, problem, until)
            except Exception as exc:
                exc.add_note(f"network forecast: fitting {node.kind} station {node.station}")
                raise
        return self

    def predict(self, data: xr.Dataset, issue_times: np.ndarray) -> xr.Dataset:
        """Forecasts ``(station, issue_time, lead)`` of every station, in network order.

        ``discharge`` for gauges (virtual ones included), ``reservoir_inflow``,
        ``reservoir_release`` (total outflow), ``reservoir_volume`` (million m3) and
        ``reservoir_level`` (m) for reservoirs; NaN where a variable does not apply.
        """
        if not self.problems:
            raise RuntimeError("network forecast: fit before predict")
        issues = as_times(issue_times)
        outflow: dict[str, xr.DataArray] = {}
        results: dict[str, dict[str, xr.DataArray]] = {}
        for node in self.nodes.values():
            problem, model = self.problems[node.station], self.models.get(node.station)
            try:
                if node.kind == "virtual":
                    fc = sum((outflow[p] for p in node.upstream[1:]), outflow[node.upstream[0]])
                    results[node.station] = {"discharge": fc}
                elif node.kind == "reservoir":
                    assert isinstance(model, ReservoirBalance)
                    ds = model.forecast(data, problem, issues, upstream={u: outflow[u] for u in node.upstream})
                    fc = ds["reservoir_release"]
                    results[node.station] = {v: ds[v] for v in OUTPUTS if v in ds}
                elif isinstance(model, RoutingModel):
                    fc = model.predict(data, problem, issues, upstream={u: outflow[u] for u in node.upstream})
                    results[node.station] = {"discharge": fc}
                else:
                    assert model is not None
                    fc = model.predict(data, problem, issues)
                    results[node.station] = {"discharge": fc}
            except Exception as exc:
                exc.add_note(f"network forecast: predicting {node.kind} station {node.station}")
                raise
            outflow[node.station] = fc
        return _stack(results, list(self.nodes), issues, self.leads)

    def params(self) -> dict[str, Any]:
        """Per station: its kind, model and fitted parameters (JSON-able)."""
        out: dict[str, Any] = {}
        for code, node in self.nodes.items():
            model = self.models.get(code)
            out[code] = {"kind": node.kind, "upstream": list(node.upstream),
                         "model": getattr(model, "name", "sum"), "params": model.params() if model else {}}
        return out


def _stack(results: Mapping[str, Mapping[str, xr.DataArray]], stations: list[str], issues: np.ndarray,
           leads: int) -> xr.Dataset:
    arrays = {v: np.full((len(stations), issues.size, leads), np.nan) for v in OUTPUTS}
    for s, code in enumerate(stations):
        for v, da in results[code].items():
            arrays[v][s] = np.asarray(da.transpose("issue_time", "lead").values, dtype=float)[:, :leads]
    coords = {"station": stations, "issue_time": issues, "lead": np.arange(1, leads + 1)}
    return xr.Dataset({v: (("station", "issue_time", "lead"), a) for v, a in arrays.items()}, coords=coords)


@register
class Network(Model):
    """``network``: one station's forecast composed through the network above it.

    The station and everything upstream of it are forecast from the headwaters down
    (:class:`NetworkForecast`), and the station's own series is returned: discharge for a
    gauge, the reservoir variable asked for (level, volume, inflow, release) for a
    reservoir. Options: ``basin`` (the :class:`~watermon.config.models.BasinConfig`; the
    forecast service sets it), ``headwater_model`` and ``routing_model`` (registry names,
    default ``last_value`` and ``muskingum``), ``parts`` (station -> options of its part,
    e.g. ``{"11250": {"gain": true}}``).
    """

    name: ClassVar[str] = "network"

    def __init__(self) -> None:
        self.net: NetworkForecast | None = None

    @staticmethod
    def _factory(name: str | None, default: Callable[[], Model]) -> Callable[[], Model]:
        if name is None:
            return default
        if name == LastValue.name:
            return LastValue
        if name not in MODELS:
            raise ValueError(f"network model: unknown part model {name!r}; known: {', '.join(sorted(MODELS))}")
        return MODELS[name]

    def fit(self, data: xr.Dataset, problem: Problem, until: np.datetime64) -> Network:
        basin = problem.options.get("basin")
        if not isinstance(basin, BasinConfig):
            raise ValueError(f"network model for {problem.station}: option `basin` (the basin configuration) "
                             "is missing; the forecast service sets it")
        unknown = set(problem.options) - {"basin", "headwater_model", "routing_model", "parts"}
        if unknown:
            raise ValueError(f"network model for {problem.station}: unknown options {sorted(unknown)}; "
                             "known: headwater_model, routing_model, parts")
        self.net = NetworkForecast.from_config(
            basin, above=problem.station, step=problem.step, leads=problem.leads,
            headwater_model=self._factory(problem.options.get("headwater_model"), LastValue),
            routing_model=self._factory(problem.options.get("routing_model"), MuskingumRouting),
            options=problem.options.get("parts") or {})
        if problem.station not in self.net.nodes:
            raise ValueError(f"network model: {problem.station} is on no reach of config/network.yaml")
        self.net.fit(data, until)
        return self

    def predict(self, data: xr.Dataset, problem: Problem, issue_times: np.ndarray) -> xr.DataArray:
        if self.net is None:
            raise RuntimeError("network model: fit before predict")
        if problem.variable not in OUTPUTS:
            raise ValueError(f"network model: cannot forecast {problem.variable}; it gives {', '.join(OUTPUTS)}")
        fc = self.net.predict(data, issue_times)[problem.variable].sel(station=problem.station, drop=True)
        return fc.rename(problem.variable).assign_attrs(station=problem.station, model=self.name)

    def params(self) -> dict[str, Any]:
        return {} if self.net is None else self.net.params()
