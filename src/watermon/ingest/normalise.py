"""Turn what a parser read into canonical observations, or into quarantine entries.

The same rules apply to every format: the station must exist and belong to the
source's agency, the variable must be one the station reports, the unit must be in
the declared table, and the value must be physically possible.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime
from typing import Any, NamedTuple

from watermon.config.models import BasinConfig, Source
from watermon.flags import Flag
from watermon.ingest.records import Reading, Rejection
from watermon.units import UnknownUnit, conversion

# When a source gives several quality codes for one value, the most severe wins.
_SEVERITY = {Flag.BAD: 5, Flag.SUSPECT: 4, Flag.ESTIMATED: 3, Flag.MISSING: 2, Flag.GOOD: 1, Flag.UNCHECKED: 0}


SeriesKey = tuple[str, str, str]
"""(station code, variable id, aggregation)"""


class Observation(NamedTuple):
    """A reading ready to store in its series: canonical value and flag.

    A tuple, not a dataclass: millions are made per file and creation cost counts.
    """

    time: datetime
    value: float
    flag: str
    qualifier: str | None
    reading: Reading
    """What the parser read (record number and raw text, for the quarantine)."""


class Normaliser:
    """Applies one source's mappings and the basin's rules, with per-key caches.

    Caches matter: a 10-million-line file repeats the same few stations, codes and
    units, and the lookups would otherwise dominate the ingest time.
    """

    def __init__(self, config: BasinConfig, source: Source) -> None:
        self.source = source
        self._stations = {s.code: s for s in config.stations}
        self._variables = {v.id: v for v in config.variables}
        self._key_cache: dict[tuple[str, str, str, str], Any] = {}
        self._flag_cache: dict[str | None, str] = {}

    def __call__(self, r: Reading) -> tuple[SeriesKey, Observation] | Rejection | None:
        """One reading; ``None`` means the source reported it missing: nothing to store."""
        good, bad, _ = self.many([r])
        return next(((k, v[0]) for k, v in good.items()), bad[0] if bad else None)

    def many(
        self, readings: Iterable[Reading | Rejection]
    ) -> tuple[dict[SeriesKey, list[Observation]], list[Rejection], int]:
        """Normalise a chunk: (observations per series, rejections, number reported missing).

        A parser's rejections pass through to the rejections.

        One tight loop with every lookup cached per (station, variable, unit,
        aggregation): this is the hot path of ingestion.
        """
        good: dict[SeriesKey, list[Observation]] = {}
        bad: list[Rejection] = []
        missing = 0
        keys = self._key_cache
        flags = self._flag_cache
        new = tuple.__new__  # Observation(...) minus its Python-level __new__
        for r in readings:
            if r.__class__ is Rejection:
                bad.append(r)  # type: ignore[arg-type]
                continue
            k = keys.get((r.station, r.variable, r.unit, r.aggregation))
            if k is None:
                k = keys[(r.station, r.variable, r.unit, r.aggregation)] = self._resolve(r)
            if k.__class__ is Rejection:
                bad.append(Rejection(r.record_no, k.field, k.reason, r.raw))
                continue
            series, scale, offset, lo, hi, unit = k
            if r.value is None:
                missing += 1
                continue
            value = r.value * scale + offset
            if not lo <= value <= hi:  # also false for NaN
                bad.append(self._out_of_range(r, series[1], value, unit))
                continue
            flag = flags.get(r.qualifier)
            if flag is None:
                flag = flags[r.qualifier] = str(self._flag(r.qualifier))
            out = good.get(series)
            if out is None:
                out = good[series] = []
            out.append(new(Observation, (r.time, value, flag, r.qualifier, r)))
        return good, bad, missing

    def _resolve(self, r: Reading) -> tuple[tuple[str, str, str], float, float, float, float, str] | Rejection:
        code = self._resolve_station(r.station)
        if isinstance(code, Rejection):
            return code
        var = self._resolve_variable(code, r.variable)
        if isinstance(var, Rejection):
            return var
        v = self._variables[var]
        try:
            conv = conversion(v.dimension, r.unit)
        except UnknownUnit as exc:
            return Rejection(0, "unit", f"{exc} (variable {var})")
        lo = -math.inf if v.min is None else v.min
        hi = math.inf if v.max is None else v.max
        return (code, var, str(r.aggregation)), conv.scale, conv.offset, lo, hi, v.unit

    def _out_of_range(self, r: Reading, var: str, value: float, unit: str) -> Rejection:
        if not math.isfinite(value):
            return Rejection(r.record_no, "value", f"not a finite number: {r.value!r}", r.raw)
        v = self._variables[var]
        lo = "-inf" if v.min is None else f"{v.min:g}"
        hi = "inf" if v.max is None else f"{v.max:g}"
        return Rejection(r.record_no, "value", f"{var} {value:g} {unit} is outside the physical range [{lo}, {hi}] {unit}", r.raw)

    def _resolve_station(self, ident: str) -> str | Rejection:
        code = self.source.station_map.get(ident, ident)
        st = self._stations.get(code)
        if st is None:
            return Rejection(0, "station", f"unknown station {ident!r}")
        if st.agency != self.source.agency:
            return Rejection(
                0,
                "station",
                f"station {code} belongs to {st.agency}; source {self.source.id} "
                f"({self.source.agency}) may not write it",
            )
        return code

    def _resolve_variable(self, code: str, name: str) -> str | Rejection:
        var = self.source.variable_codes.get(name, name)
        if var not in self._variables:
            return Rejection(0, "variable", f"unknown variable {name!r}")
        if var not in self._stations[code].variables:
            return Rejection(0, "variable", f"station {code} does not report {var}")
        return var

    def _flag(self, qualifier: str | None) -> Flag:
        if not qualifier:
            return Flag.UNCHECKED
        flags = [Flag(self.source.qualifier_flags[q]) for q in qualifier.split(",") if q in self.source.qualifier_flags]
        return max(flags, key=_SEVERITY.__getitem__, default=Flag.UNCHECKED)
