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
    Variable,
)

# file name -> (top-level key, item model, required)
FILES: dict[str, tuple[str, type[BaseModel], bool]] = {
    "agencies.yaml": ("agencies", Agency, True),
    "variables.yaml": ("variables", Variable, True),
    "stations.yaml": ("stations", Station, True),
    "network.yaml": ("reaches", Reach, False),
    "reservoirs.yaml": ("reservoirs", Reservoir, False),
    "sources.yaml": ("sources", Source, False),
}


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
            parts[top] = ()
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
