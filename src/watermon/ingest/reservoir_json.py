"""Reservoir operators' JSON records: level, volume, inflow and release.

A document ``{"records": [...]}``, a bare list of records, or JSON Lines (``.jsonl`` /
``.ndjson``, one record per line). Each record::

    {"station": "CHARDARA", "time": "2026-04-01T08:00:00+05:00",
     "level":   {"value": 251.32, "unit": "m"},
     "volume":  {"value": 4.95,   "unit": "km3"},
     "inflow":  {"value": 612,    "unit": "m3/s", "aggregation": "daily_mean"},
     "release": {"value": 450,    "unit": "m3/s", "aggregation": "daily_mean"}}

A time without an offset is local time in the source's zone. Quantities may be
missing from a record or ``null`` (reported missing). The document is streamed
(ijson), so its size does not matter.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import ijson

from watermon.config.models import Source
from watermon.ingest.records import FileFormatError, ParsedItem, Reading, Rejection
from watermon.ingest.timeparse import LocalTimes
from watermon.periods import Aggregation, label, period_start

QUANTITIES = {
    "level": "reservoir_level",
    "volume": "reservoir_volume",
    "inflow": "reservoir_inflow",
    "release": "reservoir_release",
}
_AGGREGATIONS = {a.value: a for a in Aggregation}


def parse(path: Path, source: Source) -> Iterator[ParsedItem]:
    times = LocalTimes(source.timezone)
    for no, rec in _records(path):
        yield from _readings(no, rec, times)


def _records(path: Path) -> Iterator[tuple[int, Any]]:
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        with path.open(encoding="utf-8") as f:
            for no, line in enumerate(f, 1):
                if line.strip():
                    try:
                        yield no, json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise FileFormatError(f"{path}: line {no}: not JSON: {exc}") from None
        return
    with path.open("rb") as f:
        head = f.read(64).lstrip()
        f.seek(0)
        prefix = "item" if head.startswith(b"[") else "records.item"
        no = 0
        try:
            for no, rec in enumerate(ijson.items(f, prefix, use_float=True), 1):
                yield no, rec
        except ijson.JSONError as exc:
            raise FileFormatError(f"{path}: after record {no}: not valid JSON: {exc}") from None
        if no == 0 and prefix == "records.item" and not _has_records_key(path):
            raise FileFormatError(f'{path}: expected {{"records": [...]}}, a list of records, or JSON Lines')


def _has_records_key(path: Path) -> bool:
    with path.open("rb") as f:
        return any(p == "" and e == "map_key" and v == "records" for p, e, v in ijson.parse(f))


def _readings(no: int, rec: Any, times: LocalTimes) -> Iterable[ParsedItem]:
    raw = json.dumps(rec, ensure_ascii=False, default=str)[:2000]
    where = f"records[{no - 1}]"
    if not isinstance(rec, dict):
        return [Rejection(no, where, "a record must be a JSON object", raw)]
    station, when = rec.get("station"), rec.get("time")
    if not isinstance(station, str) or not station:
        return [Rejection(no, f"{where}.station", "missing or not a string", raw)]
    if not isinstance(when, str):
        return [Rejection(no, f"{where}.time", "missing or not a string", raw)]
    try:
        instant = times(when)
    except ValueError:
        return [Rejection(no, f"{where}.time", f"unparseable time {when!r}", raw)]
    out: list[ParsedItem] = []
    for key, q in rec.items():
        if key in ("station", "time", "comment", "operator"):
            continue
        variable = QUANTITIES.get(key, key)
        field = f"{where}.{key}"
        if q is None:
            continue
        if not isinstance(q, dict) or "value" not in q or "unit" not in q:
            out.append(Rejection(no, field, 'expected {"value": ..., "unit": ...}', raw))
            continue
        agg = _AGGREGATIONS.get(q.get("aggregation", "instantaneous"))
        if agg is None:
            out.append(Rejection(no, f"{field}.aggregation", f"unknown aggregation {q.get('aggregation')!r}", raw))
            continue
        t = instant if agg is Aggregation.INSTANTANEOUS else label(period_start(agg.period, times.local_date(when)))
        value = q["value"]
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float, Decimal))):
            out.append(Rejection(no, f"{field}.value", f"not a number: {value!r}", raw))
            continue
        unit = q["unit"]
        if not isinstance(unit, str):
            out.append(Rejection(no, f"{field}.unit", f"not a string: {unit!r}", raw))
            continue
        out.append(
            Reading(no, station, variable, agg, t, None if value is None else float(value), unit, q.get("quality"), raw)
        )
    return out
