"""Reservoir operators' JSON: document, list or JSON Lines; bad records rejected."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from watermon.ingest.records import FileFormatError, Reading, Rejection
from watermon.ingest.reservoir_json import parse
from watermon.periods import Aggregation

RECORD = {
    "station": "CHARDARA",
    "time": "2026-04-01T08:00:00",
    "level": {"value": 251.32, "unit": "m"},
    "volume": {"value": 4.95, "unit": "km3"},
    "inflow": {"value": 612, "unit": "m3/s", "aggregation": "daily_mean"},
    "release": {"value": None, "unit": "m3/s"},
}


def test_document_with_records(tmp_path: Path, config) -> None:
    p = tmp_path / "chardara.json"
    p.write_text(json.dumps({"operator": "Shardara HPP", "records": [RECORD]}))
    items = list(parse(p, config.source("kz-reservoirs")))
    assert all(isinstance(i, Reading) for i in items)
    got = {i.variable: i for i in items}
    assert set(got) == {"reservoir_level", "reservoir_volume", "reservoir_inflow", "reservoir_release"}
    assert got["reservoir_level"].time == datetime(2026, 4, 1, 3, tzinfo=timezone.utc)
    assert got["reservoir_inflow"].aggregation is Aggregation.DAILY_MEAN
    assert got["reservoir_inflow"].time == datetime(2026, 4, 1, tzinfo=timezone.utc)
    assert got["reservoir_release"].value is None
    assert got["reservoir_volume"].unit == "km3"


def test_list_and_json_lines(tmp_path: Path, config) -> None:
    src = config.source("kz-reservoirs")
    a = tmp_path / "a.json"
    a.write_text(json.dumps([RECORD, RECORD]))
    b = tmp_path / "b.jsonl"
    b.write_text(json.dumps(RECORD) + "\n\n" + json.dumps(RECORD) + "\n")
    assert len(list(parse(a, src))) == 8
    items = list(parse(b, src))
    assert len(items) == 8 and {i.record_no for i in items} == {1, 3}


def test_bad_records_are_rejected_with_their_field(tmp_path: Path, config) -> None:
    bad = [
        {"station": "CHARDARA", "time": "yesterday", "level": {"value": 1, "unit": "m"}},
        {"time": "2026-04-01T08:00:00", "level": {"value": 1, "unit": "m"}},
        {"station": "CHARDARA", "time": "2026-04-01T08:00:00", "level": {"value": "high", "unit": "m"},
         "volume": 4.9},
        "not an object",
    ]
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"records": bad}))
    items = list(parse(p, config.source("kz-reservoirs")))
    assert all(isinstance(i, Rejection) for i in items)
    assert [(i.record_no, i.field) for i in items] == [
        (1, "records[0].time"),
        (2, "records[1].station"),
        (3, "records[2].level.value"),
        (3, "records[2].volume"),
        (4, "records[3]"),
    ]


def test_truncated_json_fails_the_file(tmp_path: Path, config) -> None:
    p = tmp_path / "cut.json"
    p.write_text(json.dumps({"records": [RECORD, RECORD]})[:-40])
    with pytest.raises(FileFormatError, match="cut.json: after record 1: not valid JSON"):
        list(parse(p, config.source("kz-reservoirs")))


def test_not_a_records_document(tmp_path: Path, config) -> None:
    p = tmp_path / "other.json"
    p.write_text(json.dumps({"data": [RECORD]}))
    with pytest.raises(FileFormatError, match='expected {"records"'):
        list(parse(p, config.source("kz-reservoirs")))
