"""File-drop inboxes and HTTP pulls, with a real HTTP server on loopback."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.operator_endpoint import LEVEL_M, operator_endpoint
from watermon.config.models import HttpEndpoint
from watermon.db.queries import readings
from watermon.ingest.fetch import FetchError, fetch_window
from watermon.ingest.inbox import process_inbox
from watermon.ingest.service import ingest_file


def test_inbox_files_go_to_processed_or_failed_with_a_reason(tmp_path, engine, config) -> None:
    inbox = tmp_path / "inbox" / "kz-hydromet"
    inbox.mkdir(parents=True)
    good = inbox / "day1.csv"
    good.write_text("station;variable;time;value;unit\n11242;Q;01.04.2026 08:00;5;m3/s\n")
    bad = inbox / "day2.csv"
    bad.write_text("this is not the agreed layout\n1;2\n")
    (inbox / "upload.csv.part").write_text("half a file")
    os.utime(good, (1, 1))
    os.utime(bad, (2, 2))
    reports = list(process_inbox(engine, config, "kz-hydromet", tmp_path))
    assert [r.status for r in reports] == ["loaded", "failed"]
    assert (inbox / "processed" / "day1.csv").exists()
    assert (inbox / "failed" / "day2.csv").exists()
    reason = (inbox / "failed" / "day2.csv.reason.txt").read_text()
    assert "header lacks column(s)" in reason
    assert (inbox / "upload.csv.part").exists(), "partial uploads are left alone"
    # The same payload dropped again is recognised and filed without a second batch.
    good2 = inbox / "day1.csv"
    good2.write_text("station;variable;time;value;unit\n11242;Q;01.04.2026 08:00;5;m3/s\n")
    (again,) = process_inbox(engine, config, "kz-hydromet", tmp_path)
    assert again.status == "duplicate" and (inbox / "processed" / "day1.1.csv").exists()


@pytest.fixture
def operator_url():
    with operator_endpoint(token="s3cret") as endpoint:
        yield endpoint.url


def test_http_window_is_saved_then_ingested(tmp_path, engine, config, operator_url, monkeypatch) -> None:
    source = config.source("kz-reservoirs").model_copy(
        update={"http": HttpEndpoint(url=operator_url, token_env="KZ_RESERVOIRS_TOKEN", timeout_s=5)}
    )
    start, end = datetime(2026, 4, 1, 3, tzinfo=timezone.utc), datetime(2026, 4, 2, 3, tzinfo=timezone.utc)
    monkeypatch.delenv("KZ_RESERVOIRS_TOKEN", raising=False)
    with pytest.raises(FetchError, match="KZ_RESERVOIRS_TOKEN is not set"):
        fetch_window(source, start, end, tmp_path)
    monkeypatch.setenv("KZ_RESERVOIRS_TOKEN", "wrong")
    with pytest.raises(FetchError, match="HTTP 401"):
        fetch_window(source, start, end, tmp_path)
    monkeypatch.setenv("KZ_RESERVOIRS_TOKEN", "s3cret")
    path = fetch_window(source, start, end, tmp_path / "inbox")
    assert path.parent == tmp_path / "inbox" and path.name.startswith("kz-reservoirs_20260401T0300_20260402T0300")
    r = ingest_file(engine, config, "kz-reservoirs", path)
    assert (r.status, r.new) == ("loaded", 1)
    with engine.connect() as conn:
        (level,) = readings(conn, "CHARDARA", variable="reservoir_level")
    assert level.time == start and level.value == LEVEL_M


def test_unreachable_endpoint_is_a_clear_error(tmp_path, config) -> None:
    source = config.source("kz-reservoirs").model_copy(
        update={"http": HttpEndpoint(url="http://127.0.0.1:9/x?s={start}&e={end}", timeout_s=2)}
    )
    now = datetime(2026, 4, 1, tzinfo=timezone.utc)
    with pytest.raises(FetchError, match=r"kz-reservoirs: GET http://127.0.0.1:9/x\?s=2026-04-01T00:00:00Z"):
        fetch_window(source, now, now, tmp_path)
