"""The demo season: deterministic, complete, readable by the project's own parsers,
physically consistent, and carrying exactly the faults its docstring lists."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from watermon.config import load_config
from watermon.config.models import BasinConfig
from watermon.demo.generator import generate
from watermon.ingest.formats import parser_for
from watermon.ingest.normalise import Normaliser
from watermon.ingest.records import Reading, Rejection

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
SeriesKey = tuple[str, str, str]


@dataclass
class Ingested:
    """What ingestion would store, in ingestion order (a later file overwrites)."""

    series: dict[SeriesKey, dict[datetime, float]] = field(default_factory=lambda: defaultdict(dict))
    rejected: list[tuple[str, Rejection]] = field(default_factory=list)
    missing: list[tuple[str, Reading]] = field(default_factory=list)
    by_file: dict[str, dict[tuple[SeriesKey, datetime], float]] = field(default_factory=dict)


@pytest.fixture(scope="module")
def config() -> BasinConfig:
    return load_config(CONFIG_DIR)


@pytest.fixture(scope="module")
def season(config: BasinConfig, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[Path]]]:
    root = tmp_path_factory.mktemp("season")
    return root, generate(config, root)


@pytest.fixture(scope="module")
def ingested(config: BasinConfig, season: tuple[Path, dict[str, list[Path]]]) -> Ingested:
    out = Ingested()
    for source_id, paths in season[1].items():
        source = config.source(source_id)
        parse, norm = parser_for(source.format), Normaliser(config, source)
        for path in paths:
            here: dict[tuple[SeriesKey, datetime], float] = {}
            for item in parse(path, source):
                result = item if isinstance(item, Rejection) else norm(item)
                if isinstance(result, Rejection):
                    out.rejected.append((path.name, result))
                elif result is None:
                    out.missing.append((path.name, item))
                else:
                    key, obs = result
                    out.series[key][obs.time] = obs.value
                    here[(key, obs.time)] = obs.value
            out.by_file[path.name] = here
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _utc(zone: str, *args: int) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(zone)).astimezone(timezone.utc)


def _instant(ingested: Ingested, station: str, variable: str = "discharge") -> dict[datetime, float]:
    return ingested.series[(station, variable, "instantaneous")]


# --- determinism and completeness -------------------------------------------------------


def test_same_seed_gives_identical_bytes(config, season, tmp_path):
    root, written = season
    again = generate(config, tmp_path)
    assert _files(tmp_path) == _files(root)
    assert {k: [p.relative_to(tmp_path) for p in v] for k, v in again.items()} == {
        k: [p.relative_to(root) for p in v] for k, v in written.items()
    }


def test_other_seed_changes_every_file(config, season, tmp_path):
    generate(config, tmp_path, seed=7)
    first, other = _files(season[0]), _files(tmp_path)
    assert first.keys() == other.keys()
    assert [name for name in first if first[name] == other[name]] == []


def test_every_source_gets_files_in_its_inbox_in_ingest_order(config, season):
    root, written = season
    assert set(written) == {s.id for s in config.sources}
    for source_id, paths in written.items():
        inbox = root / config.source(source_id).inbox
        assert paths and all(p.parent == inbox and p.is_file() for p in paths)
    kz = [p.name for p in written["kz-hydromet"]]
    assert len(kz) == 214 + 1
    assert kz[:-1] == sorted(kz[:-1]) and kz[-1] == "kz-hydromet_2026-06-15_correction.csv"
    assert len(written["uz-hydromet"]) == 21  # decades March - September
    assert len(written["kz-reservoirs"]) == len(written["uz-reservoirs"]) == 31  # weeks
    assert len(written["uz-hydromet-archive"]) == 1


def test_every_station_and_variable_of_the_config_gets_data(config, ingested):
    have = {(station, variable) for (station, variable, _), values in ingested.series.items() if values}
    want = {(s.code, v) for s in config.stations for v in s.variables}
    assert want - have == set()


# --- validity: only the deliberate invalid records are refused ----------------------------


def test_only_the_deliberate_invalid_records_are_quarantined(ingested):
    found = {(name, r.field, ";".join(r.raw.split(";")[:3])): r.reason for name, r in ingested.rejected}
    assert len(ingested.rejected) == 4
    day = "kz-hydromet_2026-04-07.csv"
    expected = {
        (day, "value", "11272;Q;07.04.2026 14:00"): "outside the physical range",  # negative discharge
        (day, "unit", "11250;Q;07.04.2026 08:00"): "unknown unit 'm3/sec'",
        (day, "station", "11227;Q;07.04.2026 08:00"): "unknown station '11227'",
        (day, "value", "11219;H;07.04.2026 20:00"): "unparseable value '~",
    }
    assert found.keys() == expected.keys()
    for key, reason in expected.items():
        assert reason in found[key]
    assert ingested.by_file[day]  # the rest of that file normalises


def test_reported_missing_values_are_only_the_archive_gaps(ingested):
    assert ingested.missing
    assert {name for name, _ in ingested.missing} == {"uz-hydromet-archive_1991-2026.csv"}
    assert all("NA" in r.raw for _, r in ingested.missing)


# --- physics --------------------------------------------------------------------------


def test_virtual_gauge_16294_is_chatkal_plus_pskem_at_every_time(ingested):
    for agg in ("instantaneous", "decade_mean"):
        total = ingested.series[("16294", "discharge", agg)]
        chatkal, pskem = ingested.series[("16279", "discharge", agg)], ingested.series[("16290", "discharge", agg)]
        assert total and set(total) <= set(chatkal) & set(pskem)
        for t, v in total.items():
            assert v == pytest.approx(chatkal[t] + pskem[t], abs=1e-6), t
    assert len(ingested.series[("16294", "discharge", "instantaneous")]) == len(_instant(ingested, "16279"))


@pytest.mark.parametrize("station", ["CHARVAK", "CHARDARA"])
def test_reservoir_volume_matches_level_through_the_curve(config, ingested, station):
    curve = np.array(next(r for r in config.reservoirs if r.station == station).level_volume_curve)
    levels = ingested.series[(station, "reservoir_level", "instantaneous")]
    volumes = ingested.series[(station, "reservoir_volume", "instantaneous")]
    assert len(levels) == len(volumes) == 214
    times = sorted(levels)
    lv = np.array([levels[t] for t in times])
    vol = np.array([volumes[t] for t in times])
    # level written to the cm, volume to 0.1 million m3: the true level is within half a cm
    low = np.interp(lv - 0.005, curve[:, 0], curve[:, 1]) - 0.05 - 1e-6
    high = np.interp(lv + 0.005, curve[:, 0], curve[:, 1]) + 0.05 + 1e-6
    assert np.all((low <= vol) & (vol <= high))


@pytest.mark.parametrize("station", ["CHARVAK", "CHARDARA"])
def test_reservoir_volume_follows_the_mass_balance(ingested, station):
    """Volume change between 08:00 readings ~ (inflow - release) of the days it spans.

    Day by day only roughly (daily means cannot say when in the day a flood came), but
    those errors cancel the next day: the running balance never drifts.
    """
    volumes = ingested.series[(station, "reservoir_volume", "instantaneous")]
    inflow = ingested.series[(station, "reservoir_inflow", "daily_mean")]
    release = ingested.series[(station, "reservoir_release", "daily_mean")]
    days = sorted(inflow)
    net = np.array([inflow[d] - release[d] for d in days]) * 86400 / 1e6  # million m3 per day
    vol = np.array([volumes[t] for t in sorted(volumes)])
    expected = net[:-1] * 16 / 24 + net[1:] * 8 / 24  # 08:00 to 08:00 next day
    throughput = np.array([inflow[d] + release[d] for d in days])[1:] * 86400 / 1e6 / 2
    drift = np.cumsum(np.diff(vol) - expected)
    assert np.max(np.abs(drift)) < 1.0 + 0.1 * throughput.max()
    assert abs(drift[-1]) < 0.001 * throughput.sum()


def test_kyzylorda_peaks_after_kokbulak(ingested):
    kokbulak, kyzylorda = _instant(ingested, "11242"), _instant(ingested, "11250")
    lag = max(kyzylorda, key=kyzylorda.__getitem__) - max(kokbulak, key=kokbulak.__getitem__)
    assert 0 < lag.total_seconds() / 86400 < 16  # 8 days of travel, give or take attenuation


def test_magnitudes_are_those_of_the_real_rivers(ingested):
    chatkal = np.array(list(_instant(ingested, "16279").values()))
    pskem = np.array(list(_instant(ingested, "16290").values()))
    nauvalisoy = np.array(list(_instant(ingested, "16298").values()))
    assert 25 < np.percentile(chatkal, 1) < 65 and 230 < np.percentile(chatkal, 99.5) < 420
    assert 15 < np.percentile(pskem, 1) < 45 and 230 < np.percentile(pskem, 99.5) < 380
    assert 1 <= nauvalisoy.min() and nauvalisoy.max() <= 20


# --- the deliberate faults ----------------------------------------------------------------


def test_late_correction_revises_an_earlier_files_readings(season, ingested):
    correction = ingested.by_file["kz-hydromet_2026-06-15_correction.csv"]
    earlier = ingested.by_file["kz-hydromet_2026-06-12.csv"]
    assert len(correction) == 4 and correction.keys() <= earlier.keys()
    assert all(correction[k] != earlier[k] for k in correction)
    assert all(ingested.series[key][t] == v for (key, t), v in correction.items())  # last one wins


def test_spikes_gap_and_stuck_sensor_are_there(ingested):
    keles = _instant(ingested, "11272")
    spike = _utc("Asia/Almaty", 2026, 4, 18, 14)
    neighbours = [v for t, v in keles.items() if abs((t - spike).total_seconds()) <= 2 * 86400 and t != spike]
    assert keles[spike] > 3 * np.median(neighbours)

    chatkal = _instant(ingested, "16279")
    spike = _utc("Asia/Tashkent", 2026, 6, 23, 12)
    neighbours = [v for t, v in chatkal.items() if abs((t - spike).total_seconds()) <= 2 * 86400 and t != spike]
    assert chatkal[spike] > 2.5 * np.median(neighbours)

    silent_from, silent_to = _utc("Asia/Almaty", 2026, 5, 12, 0), _utc("Asia/Almaty", 2026, 5, 14, 0)
    for variable in ("discharge", "stage"):
        arys = _instant(ingested, "11219", variable)
        assert not [t for t in arys if silent_from <= t < silent_to]
        assert len([t for t in arys if silent_to <= t < silent_to + timedelta(days=1)]) == 4

    stage = _instant(ingested, "11250", "stage")
    first, last = _utc("Asia/Almaty", 2026, 7, 20, 2), _utc("Asia/Almaty", 2026, 7, 22, 20)
    stuck = [v for t, v in sorted(stage.items()) if first <= t <= last]
    assert len(stuck) == 12 and len(set(stuck)) == 1


def test_season_bounds_are_respected(config, tmp_path):
    written = generate(config, tmp_path, start=date(2026, 5, 1), end=date(2026, 5, 31))
    assert len(written["kz-hydromet"]) == 31  # no correction: its day is outside the season
    assert [p.name for p in written["uz-hydromet"]][0] == "uz-hydromet_2026-05-01.xml"
    assert len(written["uz-hydromet"]) == 3
