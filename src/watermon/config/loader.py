"""Load the configuration directory; every error names the file and the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from watermon.config.models import (
    Agency,
    BasinConfig,
    Reach,
    Reservoir,
    Source,
    Station,
    StationKind,
    Threshold,
    Variable,
)
from watermon.config.alerts import AlertsConfig, alerts_problems
from watermon.config.forecast import ForecastConfig
from watermon.config.qc import QcConfig
from watermon.config.webhooks import WebhooksConfig

# file name -> (top-level key, item model, required)
FILES: dict[str, tuple[str, type[BaseModel], bool]] = {
    "agencies.yaml": ("agencies", Agency, True),
    "variables.yaml": ("variables", Variable, True),
    "stations.yaml": ("stations", Station, True),
    "network.yaml": ("reaches", Reach, False),
    "reservoirs.yaml": ("reservoirs", Reservoir, False),
    "sources.yaml": ("sources", Source, False),
    "thresholds.yaml": ("thresholds", Threshold, False),
    "qc.yaml": ("qc", QcConfig, False),
    "forecast.yaml": ("forecast", ForecastConfig, False),
    "webhooks.yaml": ("webhooks", WebhooksConfig, False),
    "alerts.yaml": ("alerts", AlertsConfig, False),
}
# documents whose top-level key holds one mapping rather than a list of items
SINGLE = {"qc", "forecast", "webhooks", "alerts"}


class ConfigError(ValueError):
    """A configuration problem, with the file and the key it was found at."""

    def __init__(self, file: Path | str, key: str, message: str) -> None:
        self.file, self.key, self.message = str(file), key, message
        super().__init__(f"{file}: {key}: {message}")


def _key(top: str, loc: tuple[Any, ...], items: list[Any]) -> str:
    out = top
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
            if i == 0 and part < len(items) and isinstance(items[part], dict):
                ident = items[part].get("id") or items[part].get("code") or items[part].get("station")
                if ident is not None:
                    out += f"({ident})"
        else:
            out += f".{part}"
    return out


def _read(path: Path, top: str, model: type[BaseModel]) -> tuple[Any, ...]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "document"
        raise ConfigError(path, where, f"not valid YAML: {exc}") from None
    if not isinstance(doc, dict) or top not in doc:
        raise ConfigError(path, top, f"expected a mapping with the key {top!r}")
    unknown = set(doc) - {top}
    if unknown:
        raise ConfigError(path, sorted(unknown)[0], "unknown top-level key")
    if top in SINGLE:
        body = doc[top] or {}
        if not isinstance(body, dict):
            raise ConfigError(path, top, "expected a mapping")
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            err = exc.errors()[0]
            more = f" (and {exc.error_count() - 1} more errors)" if exc.error_count() > 1 else ""
            raise ConfigError(path, _key(top, err["loc"], []), err["msg"] + more) from None
    items = doc[top] or []
    if not isinstance(items, list):
        raise ConfigError(path, top, "expected a list")
    try:
        return tuple(TypeAdapter(list[model]).validate_python(items))  # type: ignore[valid-type]
    except ValidationError as exc:
        err = exc.errors()[0]
        more = f" (and {exc.error_count() - 1} more errors)" if exc.error_count() > 1 else ""
        raise ConfigError(path, _key(top, err["loc"], items), err["msg"] + more) from None


def _unique(path: Path, top: str, values: list[str], what: str) -> None:
    seen: set[str] = set()
    for i, v in enumerate(values):
        if v in seen:
            raise ConfigError(path, f"{top}[{i}]", f"duplicate {what} {v!r}")
        seen.add(v)


def load_config(directory: Path | str) -> BasinConfig:
    """Read and cross-check every YAML document of a configuration directory."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError(directory, "-", "configuration directory not found")
    parts: dict[str, tuple[Any, ...]] = {}
    for name, (top, model, required) in FILES.items():
        path = directory / name
        if not path.exists():
            if required:
                raise ConfigError(path, top, "required file is missing")
            parts[top] = model() if top in SINGLE else ()
            continue
        parts[top] = _read(path, top, model)
    _check_references(directory, parts)
    return BasinConfig(**parts)


def _check_references(d: Path, p: dict[str, tuple[Any, ...]]) -> None:
    agencies = {a.id for a in p["agencies"]}
    variables = {v.id for v in p["variables"]}
    stations: dict[str, Station] = {s.code: s for s in p["stations"]}
    _unique(d / "agencies.yaml", "agencies", [a.id for a in p["agencies"]], "agency id")
    _unique(d / "variables.yaml", "variables", [v.id for v in p["variables"]], "variable id")
    _unique(d / "stations.yaml", "stations", [s.code for s in p["stations"]], "station code")
    _unique(d / "sources.yaml", "sources", [s.id for s in p["sources"]], "source id")

    f = d / "stations.yaml"
    for i, s in enumerate(p["stations"]):
        key = f"stations[{i}]({s.code})"
        if s.agency not in agencies:
            raise ConfigError(f, f"{key}.agency", f"unknown agency {s.agency!r}")
        for v in s.variables:
            if v not in variables:
                raise ConfigError(f, f"{key}.variables", f"unknown variable {v!r}")
        for part in s.derived_from:
            if part not in stations:
                raise ConfigError(f, f"{key}.derived_from", f"unknown station {part!r}")

    f = d / "network.yaml"
    for i, r in enumerate(p["reaches"]):
        for end in ("upstream", "downstream"):
            code = getattr(r, end)
            if code not in stations:
                raise ConfigError(f, f"reaches[{i}].{end}", f"unknown station {code!r}")
    _check_acyclic(f, p["reaches"])
    f = d / "thresholds.yaml"
    seen: set[tuple[str, str]] = set()
    for i, t in enumerate(p["thresholds"]):
        key = f"thresholds[{i}]({t.station})"
        if t.station not in stations:
            raise ConfigError(f, f"{key}.station", f"unknown station {t.station!r}")
        if t.variable not in stations[t.station].variables:
            raise ConfigError(f, f"{key}.variable", f"station {t.station!r} does not measure {t.variable!r}")
        if (t.station, t.variable) in seen:
            raise ConfigError(f, key, f"duplicate thresholds for {t.station}/{t.variable}")
        seen.add((t.station, t.variable))
    _check_qc(d / "qc.yaml", p["qc"], stations, variables)
    _check_forecast(d / "forecast.yaml", p["forecast"], stations)
    for i, e in enumerate(p["webhooks"].endpoints):
        if e.agency not in agencies:
            raise ConfigError(d / "webhooks.yaml", f"webhooks.endpoints[{i}]({e.id}).agency",
                              f"unknown agency {e.agency!r}")

    f = d / "reservoirs.yaml"
    for i, r in enumerate(p["reservoirs"]):
        st = stations.get(r.station)
        if st is None:
            raise ConfigError(f, f"reservoirs[{i}].station", f"unknown station {r.station!r}")
        if st.kind is not StationKind.RESERVOIR:
            raise ConfigError(f, f"reservoirs[{i}].station", f"station {r.station!r} is a {st.kind}, not a reservoir")

    f = d / "sources.yaml"
    for i, s in enumerate(p["sources"]):
        key = f"sources[{i}]({s.id})"
        if s.agency not in agencies:
            raise ConfigError(f, f"{key}.agency", f"unknown agency {s.agency!r}")
        for alias, code in s.station_map.items():
            if code not in stations:
                raise ConfigError(f, f"{key}.station_map.{alias}", f"unknown station {code!r}")
        for code, var in s.variable_codes.items():
            if var not in variables:
                raise ConfigError(f, f"{key}.variable_codes.{code}", f"unknown variable {var!r}")
        for j, rule in enumerate(s.series_rules):
            if rule.variable not in variables:
                raise ConfigError(f, f"{key}.series_rules[{j}].variable", f"unknown variable {rule.variable!r}")
    for key, message in alerts_problems(
        p["alerts"], stations=stations, thresholds={(t.station, t.variable): t for t in p["thresholds"]},
        reservoirs={r.station: r for r in p["reservoirs"]}, agencies=agencies,
    ):
        raise ConfigError(d / "alerts.yaml", key, message)  # the first problem, as everywhere else


def _check_qc(f: Path, qc: QcConfig, stations: dict[str, Station], variables: set[str]) -> None:
    for var in qc.variables:
        if var not in variables:
            raise ConfigError(f, f"qc.variables.{var}", f"unknown variable {var!r}")
    for code, per_var in qc.stations.items():
        if code not in stations:
            raise ConfigError(f, f"qc.stations.{code}", f"unknown station {code!r}")
        for var in per_var:
            key = f"qc.stations.{code}.{var}"
            if var not in stations[code].variables:
                raise ConfigError(f, key, f"station {code!r} does not measure {var!r}")
            try:
                qc.checks(code, var)
            except ValidationError as exc:
                err = exc.errors()[0]
                raise ConfigError(f, _key(key, err["loc"], []), err["msg"]) from None
    for i, c in enumerate(qc.consistency):
        key = f"qc.consistency[{i}]({c.station})"
        for code, var, where in [(c.station, c.variable, key), *((u.station, u.variable, f"{key}.upstream") for u in c.upstream)]:
            if code not in stations:
                raise ConfigError(f, where, f"unknown station {code!r}")
            if var not in stations[code].variables:
                raise ConfigError(f, where, f"station {code!r} does not measure {var!r}")


def _check_forecast(f: Path, fc: ForecastConfig, stations: dict[str, Station]) -> None:
    if not fc.stations:
        return
    from watermon.forecast.models import MODELS  # registers every model; numpy and xarray, so only when needed

    seen: set[tuple[str, str, str]] = set()
    for i, e in enumerate(fc.stations):
        key = f"forecast.stations[{i}]({e.station})"
        if e.station not in stations:
            raise ConfigError(f, f"{key}.station", f"unknown station {e.station!r}")
        if e.variable not in stations[e.station].variables:
            raise ConfigError(f, f"{key}.variable", f"station {e.station!r} does not measure {e.variable!r}")
        for name in (e.model, *e.compare):
            if name not in MODELS:
                raise ConfigError(f, f"{key}.model", f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}")
        for code in (*e.upstream, *e.meteo):
            if code not in stations:
                raise ConfigError(f, f"{key}.upstream", f"unknown station {code!r}")
        if (e.station, e.variable, e.step) in seen:
            raise ConfigError(f, key, f"duplicate forecast for {e.station}/{e.variable}/{e.step}")
        seen.add((e.station, e.variable, e.step))


def _check_acyclic(f: Path, reaches: tuple[Reach, ...]) -> None:
    down: dict[str, list[str]] = {}
    for r in reaches:
        down.setdefault(r.upstream, []).append(r.downstream)
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        if state.get(node) == 1:
            cycle = " -> ".join([*path[path.index(node):], node])
            raise ConfigError(f, "reaches", f"the river network has a cycle: {cycle}")
        if state.get(node) == 2:
            return
        state[node] = 1
        for nxt in down.get(node, ()):
            visit(nxt, [*path, node])
        state[node] = 2

    for node in list(down):
        visit(node, [])
