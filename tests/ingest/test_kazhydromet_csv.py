"""Kazhydromet CSV: decimal comma, local Almaty time, codes mapped; bad lines rejected."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from watermon.ingest.kazhydromet_csv import parse
from watermon.ingest.records import FileFormatError, Reading, Rejection
from watermon.periods import Aggregation


def _write(tmp_path: Path, text: str, name: str = "kz.csv") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_good_lines_become_readings_in_utc(tmp_path: Path, config) -> None:
    p = _write(
        tmp_path,
        "\ufeffstation;variable;time;value;unit;quality\n"
        "11242;Q;01.04.2026 08:00;512,3;m3/s;\n"
        "11242;H;2026-04-01 08:00;245;cm;2\n"
        "11272;Q;01.04.2026 20:00;1 204,5;m3/s;\n",
    )
    items = list(parse(p, config.source("kz-hydromet")))
    assert all(isinstance(i, Reading) for i in items)
    a, b, c = items
    assert (a.record_no, a.station, a.variable, a.value, a.unit) == (2, "11242", "Q", 512.3, "m3/s")
    # Asia/Almaty is UTC+5 since March 2024.
    assert a.time == datetime(2026, 4, 1, 3, 0, tzinfo=timezone.utc)
    assert b.time == a.time and b.qualifier == "2" and b.value == 245.0
    assert c.value == 1204.5 and c.time == datetime(2026, 4, 1, 15, 0, tzinfo=timezone.utc)
    assert a.aggregation is Aggregation.INSTANTANEOUS
    assert a.raw == "11242;Q;01.04.2026 08:00;512,3;m3/s;"


def test_columns_in_any_order_and_daily_means_get_the_day_label(tmp_path: Path, config) -> None:
    p = _write(tmp_path, "time;unit;value;station;variable;aggregation\n02.04.2026 00:00;m3/s;7,5;11219;Q;daily_mean\n")
    (r,) = parse(p, config.source("kz-hydromet"))
    assert r.aggregation is Aggregation.DAILY_MEAN
    assert r.time == datetime(2026, 4, 2, tzinfo=timezone.utc)


def test_bad_lines_are_rejected_with_line_and_field(tmp_path: Path, config) -> None:
    p = _write(
        tmp_path,
        "station;variable;time;value;unit\n"
        "11242;Q;31.04.2026 08:00;1,0;m3/s\n"
        "11242;Q;01.04.2026 08:00;abc;m3/s\n"
        "11242;Q;01.04.2026 08:00\n"
        "11242;Q;01.04.2026 14:00;;m3/s\n"
        "11242;Q;01.04.2026 20:00;3,5;m3/s\n",
    )
    items = list(parse(p, config.source("kz-hydromet")))
    rejections = [(i.record_no, i.field) for i in items if isinstance(i, Rejection)]
    assert rejections == [(2, "time"), (3, "value"), (4, "line")]
    readings = [i for i in items if isinstance(i, Reading)]
    assert [(r.record_no, r.value) for r in readings] == [(5, None), (6, 3.5)]
    assert "31.04.2026" in items[0].reason


def test_missing_header_column_fails_the_file(tmp_path: Path, config) -> None:
    p = _write(tmp_path, "station;time;value;unit\n11242;01.04.2026 08:00;1;m3/s\n")
    with pytest.raises(FileFormatError, match=r"kz.csv: line 1: header lacks column\(s\) variable"):
        list(parse(p, config.source("kz-hydromet")))


def test_wrong_encoding_fails_the_file(tmp_path: Path, config) -> None:
    p = tmp_path / "cp1251.csv"
    p.write_bytes("station;variable;time;value;unit\n11242;Q;01.04.2026 08:00;1;м3/с\n".encode("cp1251"))
    with pytest.raises(FileFormatError, match="cp1251.csv: line 2"):
        list(parse(p, config.source("kz-hydromet")))
