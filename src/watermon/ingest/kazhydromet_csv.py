"""Kazhydromet CSV: ``;``-separated, decimal comma, local times in the source's zone.

A header row names the columns (any order)::

    station;variable;time;value;unit[;quality][;aggregation]
    11468;Q;01.04.2026 08:00;512,3;m3/s;

``variable`` is Kazhydromet's code (``Q``, ``H``, ... mapped by the source's
``variable_codes``) or a watermon variable id; ``time`` is ``DD.MM.YYYY HH:MM`` or ISO
8601 local time; an empty value or ``NA`` means the station reported no value.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from watermon.config.models import Source
from watermon.ingest.records import FileFormatError, ParsedItem, Reading, Rejection
from watermon.ingest.textio import utf8_lines
from watermon.ingest.timeparse import LocalTimes
from watermon.periods import Aggregation, label, period_start

REQUIRED = ("station", "variable", "time", "value", "unit")
OPTIONAL = ("quality", "aggregation")
MISSING = {"", "NA", "-", "—"}
_AGGREGATIONS = {a.value: a for a in Aggregation}


def parse(path: Path, source: Source) -> Iterator[ParsedItem]:
    lines = utf8_lines(path)
    try:
        first = next(lines)
    except StopIteration:
        return
    header = [h.strip().lower() for h in _split(first)]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise FileFormatError(
            f"{path}: line 1: header lacks column(s) {', '.join(missing)} "
            f"(expected {';'.join(REQUIRED)}[;quality][;aggregation], found {';'.join(header)})"
        )
    yield from _rows(lines, header, source)


def _split(line: str) -> list[str]:
    """Split on ``;``; the csv module only for the rare line with quotes (it is slower)."""
    line = line.rstrip("\r\n")
    if '"' in line:
        return next(csv.reader([line], delimiter=";"))
    return line.split(";")


_BAD = object()


def _value(text: str) -> float | None | object:
    """The slow path: blanks and thousands separators, or a missing-value mark."""
    v = text.strip()
    if v in MISSING:
        return None
    try:
        return float(v.replace(",", ".").replace(" ", "").replace("\u00a0", ""))
    except ValueError:
        return _BAD


def _rows(lines: Iterator[str], header: list[str], source: Source) -> Iterator[ParsedItem]:
    i_st, i_var, i_time, i_val, i_unit = (header.index(c) for c in REQUIRED)
    i_q = header.index("quality") if "quality" in header else None
    i_agg = header.index("aggregation") if "aggregation" in header else None
    width = len(header)
    times = LocalTimes(source.timezone)
    cache = times.cache
    instant = Aggregation.INSTANTANEOUS
    new = tuple.__new__  # Reading(...) minus its Python-level __new__: a third of the cost
    for line_no, line in enumerate(lines, 2):
        raw = line.rstrip("\r\n")
        row = raw.split(";") if '"' not in raw else _split(raw)
        if len(row) != width:
            if raw.strip():
                yield Rejection(line_no, "line", f"expected {width} fields, found {len(row)}", raw)
            continue
        agg = instant
        if i_agg is not None and row[i_agg]:
            agg = _AGGREGATIONS.get(row[i_agg].strip())
            if agg is None:
                yield Rejection(line_no, "aggregation", f"unknown aggregation {row[i_agg]!r}", raw)
                continue
        text = row[i_time]
        t = cache.get(text)
        try:
            if t is None:
                t = times(text)
            if agg is not instant:
                t = label(period_start(agg.period, times.local_date(text)))
        except ValueError:
            yield Rejection(line_no, "time", f"unparseable time {text!r}", raw)
            continue
        v = row[i_val]
        try:
            value = float(v.replace(",", "."))
        except ValueError:
            value = _value(v)
            if value is _BAD:
                yield Rejection(line_no, "value", f"unparseable value {v!r}", raw)
                continue
        q = (row[i_q].strip() or None) if i_q is not None else None
        yield new(Reading, (line_no, row[i_st].strip(), row[i_var].strip(), agg, t, value, row[i_unit], q, raw))
