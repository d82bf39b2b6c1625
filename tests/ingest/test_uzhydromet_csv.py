"""Uzhydromet's long CSV layout, on the real Chirchik archive and on bad input."""

from __future__ import annotations

import collections
from datetime import datetime, timezone
from pathlib import Path

import pytest

from watermon.ingest.normalise import Normaliser
from watermon.ingest.records import Reading, Rejection
from watermon.ingest.uzhydromet_csv import parse
from watermon.periods import Aggregation


def test_real_archive_parses_completely(shared_data: Path, config) -> None:
    source = config.source("uz-hydromet-archive")
    items = list(parse(shared_data / "chirchik" / "chirchik_uzhydromet.csv", source))
    assert len(items) == 26940
    assert not [i for i in items if isinstance(i, Rejection)]
    assert sum(i.value is None for i in items) == 784
    by_series = collections.Counter((i.station, i.variable, i.aggregation) for i in items)
    assert by_series[("16279", "Q", Aggregation.DECADE_MEAN)] == 3024
    assert by_series[("16275", "Q", Aggregation.MONTH_MEAN)] == 1056
    assert by_series[("38464", "P", Aggregation.DECADE_SUM)] == 2952
    assert by_series[("38471", "T", Aggregation.DECADE_MEAN)] == 2988
    first = items[0]
    # 1932-01-10 closes the first decade of January: labelled by its first day.
    assert (first.time, first.value, first.unit) == (datetime(1932, 1, 1, tzinfo=timezone.utc), 48.8, "m3s")
    good, rejected, missing = Normaliser(config, source).many(items)
    assert (sum(map(len, good.values())), len(rejected), missing) == (26940 - 784, 0, 784)


def test_daily_extract_maps_charvak_to_the_virtual_gauge(shared_data: Path, config) -> None:
    source = config.source("uz-hydromet-archive")
    items = list(parse(shared_data / "chirchik" / "charvak_chatkal_daily_1965_1967.csv", source))
    assert len(items) == 1976
    obs, rejected, missing = Normaliser(config, source).many(items)
    assert (len(rejected), missing) == (0, 0)
    assert {k: len(v) for k, v in obs.items()} == {
        ("16279", "discharge", "daily_mean"): 988, ("16294", "discharge", "daily_mean"): 988}
    first = obs[("16294", "discharge", "daily_mean")][0]
    assert first.time == datetime(1965, 1, 1, tzinfo=timezone.utc) and first.value == 35.6


def test_bad_rows(tmp_path: Path, config) -> None:
    p = tmp_path / "bad.csv"
    p.write_text(
        "date,data,norm,units,type,code,station,river,basin,resolution\n"
        "2020-01-10,12.5,10,m3s,Q,16279,Khudaydod,Chatkal,Chirchik,dec\n"
        "2020-13-10,12.5,10,m3s,Q,16279,Khudaydod,Chatkal,Chirchik,dec\n"
        "2020-01-20,twelve,10,m3s,Q,16279,Khudaydod,Chatkal,Chirchik,dec\n"
        "2020-01-31,12.5,10,m3s,Q,16279,Khudaydod,Chatkal,Chirchik,week\n"
        "2020-01-31,12.5,10,m3s\n"
    )
    items = list(parse(p, config.source("uz-hydromet-archive")))
    assert isinstance(items[0], Reading)
    assert [(i.record_no, i.field) for i in items[1:]] == [(3, "date"), (4, "data"), (5, "resolution"), (6, "line")]


def test_wrong_encoding_fails_the_file_naming_the_line(tmp_path: Path, config) -> None:
    from watermon.ingest.records import FileFormatError

    p = tmp_path / "cp1251.csv"
    p.write_bytes("date,data,units,code\n2020-01-01,1.5,m3s,16279\n2020-01-02,1.5,м3/с,16279\n".encode("cp1251"))
    with pytest.raises(FileFormatError, match="cp1251.csv: line 3: not UTF-8 text"):
        list(parse(p, config.source("uz-hydromet-archive")))
