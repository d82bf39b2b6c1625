"""Uzhydromet's long CSV layout (as in the Chirchik basin archive).

Comma-separated with a header; the columns used are ``date`` (the period's last day
for decades and months), ``data`` (the value; ``NA`` is missing), ``units``, ``type``
(Q, P, T ... mapped by the source's ``variable_codes``), ``code`` (the station) and
``resolution`` (``dec``, ``mon``, ``pentad``, ``day``). Other columns (``norm``,
``station``, ``river``, ``basin``) are ignored: the archive's ``river`` is known to be
wrong. ``type`` defaults to ``Q`` and ``resolution`` to ``day`` when absent, which also
reads the daily extracts of the same archive (``date,data,code,units``).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import date
from pathlib import Path

from watermon.config.models import Source
from watermon.ingest.records import FileFormatError, ParsedItem, Reading, Rejection
from watermon.ingest.textio import utf8_lines
from watermon.periods import aggregation_for, label, period_start

REQUIRED = ("date", "data", "units", "code")
RESOLUTIONS = {"dec": "decade", "mon": "month", "pentad": "pentad", "pen": "pentad", "day": "daily", "daily": "daily"}


def parse(path: Path, source: Source) -> Iterator[ParsedItem]:
    reader = csv.reader(utf8_lines(path))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        return
    except csv.Error as exc:
        raise FileFormatError(f"{path}: line 1: cannot read the header: {exc}") from None
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise FileFormatError(
            f"{path}: line 1: header lacks column(s) {', '.join(missing)} (found {','.join(header)})"
        )
    try:
        yield from _rows(reader, header, source)
    except csv.Error as exc:
        raise FileFormatError(f"{path}: line {reader.line_num + 1}: {exc}") from None


def _rows(reader: "csv._reader", header: list[str], source: Source) -> Iterator[ParsedItem]:
    i_date, i_val, i_unit, i_code = (header.index(c) for c in REQUIRED)
    i_type = header.index("type") if "type" in header else None
    i_res = header.index("resolution") if "resolution" in header else None
    width = len(header)
    labels: dict[tuple[str, str], object] = {}
    for row in reader:
        line = reader.line_num
        raw = ",".join(row)
        if len(row) != width:
            if row:
                yield Rejection(line, "line", f"expected {width} fields, found {len(row)}", raw)
            continue
        code_type = row[i_type].strip() if i_type is not None else "Q"
        variable = source.variable_codes.get(code_type, code_type)
        res = row[i_res].strip() if i_res is not None else "day"
        period = RESOLUTIONS.get(res)
        if period is None:
            yield Rejection(line, "resolution", f"unknown resolution {res!r} (known: {', '.join(RESOLUTIONS)})", raw)
            continue
        key = (row[i_date], period)
        t = labels.get(key)
        if t is None:
            try:
                t = labels[key] = label(period_start(period, date.fromisoformat(row[i_date].strip())))
            except ValueError:
                yield Rejection(line, "date", f"unparseable date {row[i_date]!r}", raw)
                continue
        v = row[i_val].strip()
        if v in ("NA", ""):
            value = None
        else:
            try:
                value = float(v)
            except ValueError:
                yield Rejection(line, "data", f"unparseable value {v!r}", raw)
                continue
        yield Reading(line, row[i_code].strip(), code_type, aggregation_for(period, variable), t, value, row[i_unit], None, raw)  # type: ignore[arg-type]
