"""The QC check functions on arrays, and the QC configuration."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from watermon.config import ConfigError, load_config
from watermon.config.qc import Checks, Consistency, PeriodAgreement
from watermon.forecast import dataset as D
from watermon.periods import Aggregation
from watermon.qc import checks as C
from watermon.qc import relations as R
from watermon.qc.model_input import fill_gaps
from watermon.qc.series import check_series
from watermon.qc.store import SeriesData, SeriesRef

ROOT = Path(__file__).resolve().parents[2]
H = np.timedelta64(3600, "s")


def hourly(n: int, start: str = "2026-04-01T00:00") -> np.ndarray:
    return np.datetime64(start, "s") + np.arange(n) * H


def river(n: int, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 80 + 40 * np.sin(2 * np.pi * t / 24 / 30) + 5 * np.sin(2 * np.pi * t / 24) + rng.normal(0, 0.5, n)


def test_range_and_rate_of_change() -> None:
    v = np.array([1.0, 5.0, -1.0, 10.0, np.nan])
    assert C.outside_range(v, 0, 8).tolist() == [False, False, True, True, False]
    assert C.outside_range(v, None, None).sum() == 0
    t = hourly(5)
    assert C.fast_changes(t, np.array([1.0, 1.2, 3.0, 2.9, 2.8]), 1.0).tolist() == [False, False, True, False, False]


def test_spike_found_and_smooth_peaks_left_alone() -> None:
    v = river(24 * 60)
    v[500] *= 3
    v[900] /= 4
    assert np.flatnonzero(C.spikes(v, 9, 6.0, relative_floor=0.02)).tolist() == [500, 900]
    assert not C.spikes(river(24 * 60), 9, 6.0, relative_floor=0.02).any()


def test_flatline_judged_against_the_local_repeat_rate() -> None:
    v = np.round(river(400), 2)
    assert v[248] != v[249]
    v[250:262] = v[249]  # frozen for 12 hours in a changing river
    assert np.flatnonzero(C.flatlines(v, 4)).tolist() == list(range(250, 262))
    winter = np.repeat(np.array([20.0, 20.1, 20.0, 19.9]), 6)  # read to 0.1, repeats are the rule
    assert not C.flatlines(winter, 4).any()
    assert C.flatlines(winter, 4, alpha=None).sum() == 4 * 5  # a plain run-length test would cry wolf
    starts, lengths = C.runs(np.array([1.0, 1.0, np.nan, np.nan, 2.0]))
    assert starts.tolist() == [0, 2, 3, 4] and lengths.tolist() == [2, 1, 1, 1]  # NaN never repeats


def test_missing_times_between_and_after_values() -> None:
    t = np.delete(hourly(10), [3, 4, 7])
    assert (C.missing_times(t, H) == hourly(10)[[3, 4, 7]]).all()
    end = np.datetime64("2026-04-01T12:00", "s")
    assert C.missing_times(t, H, end=end).tolist()[-3:] == hourly(13)[10:13].tolist()
    assert C.infer_step(t) == H
    assert C.missing_times(t[:0], H).size == 0


def test_calendar_series_gaps_are_missing_period_labels() -> None:
    labels = np.array(["2026-01-01", "2026-01-11", "2026-02-01", "2026-02-11"], dtype="datetime64[s]")
    found = check_series(labels, np.ones(4), Checks(spike=None, flatline=None), aggregation=Aggregation.DECADE_MEAN)
    assert found.missing.tolist() == [np.datetime64("2026-01-21", "s").item()]


def test_water_balance_counts_the_daily_flows_between_readings() -> None:
    day0 = np.datetime64("2026-05-01", "s")
    times = day0 + np.array([8, 32, 56, 80]) * H  # 08:00 each day
    inflow = np.array([500.0, 500.0, 500.0, 500.0])
    release = np.array([300.0, 300.0, np.nan, 300.0])
    per_day = 200 * 86400 / 1e6  # 17.28 million m3
    volume = np.array([1000.0, 1000 + per_day, 1000 + 2 * per_day + 9.0, 1000 + 3 * per_day + 9.0])
    err = C.water_balance_errors(times, volume, day0, inflow, release)
    assert np.isnan(err[0]) and abs(err[1]) < 1e-9
    assert np.isnan(err[2]) and np.isnan(err[3])  # intervals across the day without a release are not judged
    release[2] = 300.0
    err = C.water_balance_errors(times, volume, day0, inflow, release)
    assert abs(err[2] - 9.0) < 1e-9 and abs(err[3]) < 1e-9
    assert C.unbalanced(err, volume, tolerance_mcm=2.0, tolerance_relative=0.005).tolist() == [False, False, True, False]


def test_volume_from_level_curve() -> None:
    curve = ((800.0, 0.0), (820.0, 120.0), (840.0, 420.0))
    assert C.volume_from_level(np.array([810.0, 830.0, 850.0]), curve)[:2].tolist() == [60.0, 270.0]
    assert np.isnan(C.volume_from_level(np.array([850.0]), curve)[0])


def _data(station: str, times: np.ndarray, values: np.ndarray, agg=Aggregation.INSTANTANEOUS) -> SeriesData:
    n = values.size
    return SeriesData(SeriesRef(0, station, "discharge", agg), times, values, np.ones(n, dtype=np.int64),
                      np.array(["unchecked"] * n, dtype=object), np.ones(n, dtype=np.int64), np.array(["s"] * n))


def test_consistency_compares_daily_means_with_travel_time() -> None:
    t = hourly(24 * 6)
    up1, up2 = 50 + 20 * np.sin(np.arange(t.size) / 10), np.full(t.size, 30.0)
    down = np.roll(up1, 12) + 30.0  # up1 arrives 12 h later
    down[96:120] *= 1.6  # day 5: far more than arrived from upstream
    target = _data("D", t[24:], down[24:])
    rule = Consistency(station="D", ratio=(0.8, 1.25))
    v = R.consistency(target, [(_data("U1", t, up1), 12.0), (_data("U2", t, up2), 0.0)], rule)
    flagged_days = np.unique(target.times[v.mask].astype("datetime64[D]"))
    assert flagged_days.tolist() == [np.datetime64("2026-04-05").item()]
    assert 1.5 < v.score[v.mask].min() < 1.7


def test_consistency_by_label_for_decade_means() -> None:
    labels = np.array(["2026-01-01", "2026-01-11", "2026-01-21"], dtype="datetime64[s]")
    parts = [(_data("A", labels, np.array([10.0, 10.0, 10.0]), Aggregation.DECADE_MEAN), 0.0),
             (_data("B", labels, np.array([5.0, 5.0, 5.0]), Aggregation.DECADE_MEAN), 0.0)]
    target = _data("V", labels, np.array([15.0, 15.2, 18.0]), Aggregation.DECADE_MEAN)
    v = R.consistency(target, parts, Consistency(station="V", ratio=(0.97, 1.03)))
    assert v.mask.tolist() == [False, False, True]


def test_fill_gaps_only_short_interior_runs() -> None:
    v = np.array([np.nan, 1.0, np.nan, 3.0, np.nan, np.nan, np.nan, 7.0, np.nan])
    out, filled = fill_gaps(v, 2)
    assert filled.tolist() == [False, False, True, False, False, False, False, False, False]
    assert out[2] == 2.0 and np.isnan(out[4:7]).all() and np.isnan(out[[0, 8]]).all()
    out, filled = fill_gaps(v, 3)
    assert out[4:7].tolist() == [4.0, 5.0, 6.0]


def test_station_overrides_merge_over_the_variable() -> None:
    qc = load_config(ROOT / "config").qc
    base, station = qc.checks("11242", "discharge"), qc.checks("11272", "discharge")
    assert base.limits is None and station.limits.max == 600
    assert station.spike == base.spike


@pytest.mark.parametrize("edit, key", [
    (lambda d: d["qc"]["stations"].update({"99999": {"discharge": {}}}), "qc.stations.99999"),
    (lambda d: d["qc"]["stations"].update({"11242": {"reservoir_level": {}}}), "qc.stations.11242.reservoir_level"),
    (lambda d: d["qc"]["stations"].update({"11242": {"discharge": {"spike": {"window": 1}}}}),
     "qc.stations.11242.discharge.spike.window"),
    (lambda d: d["qc"]["variables"].update({"snow": {}}), "qc.variables.snow"),
    (lambda d: d["qc"]["consistency"].append({"station": "CHARVAK", "ratio": [1.2, 0.8]}), "qc.consistency"),
])
def test_bad_qc_configuration_names_file_and_key(tmp_path, edit, key) -> None:
    cfg = tmp_path / "config"
    shutil.copytree(ROOT / "config", cfg)
    doc = yaml.safe_load((cfg / "qc.yaml").read_text())
    edit(doc)
    (cfg / "qc.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert err.value.file.endswith("qc.yaml") and err.value.key.startswith(key), str(err.value)


def test_period_values_know_the_calendar_and_coverage() -> None:
    """The forecasts' calendar and resampling, which the check shares, with month means added."""
    starts = np.array(["2026-01-21", "2026-02-21", "2024-02-26", "2026-02-01"], dtype="datetime64[D]")
    assert D.period_days(starts[:2], "decade").tolist() == [11, 8]
    assert D.period_days(starts[2:3], "pentad").tolist() == [4]  # 26-29 February of a leap year
    assert D.period_days(starts[3:], "month").tolist() == [28]
    assert D.period_start(np.array(["2026-02-17T13:00"], dtype="datetime64[s]"), "month")[0] == starts[3]
    days = np.arange(np.datetime64("2026-02-01"), np.datetime64("2026-03-01"))
    rain = np.full(days.size, 2.0)
    rain[12:15] = np.nan  # 3 of the 10 days of the second decade unreported
    got = D.resample(days, rain, "decade", min_coverage=0.8, how="sum")
    assert got[0].astype("datetime64[D]").tolist() == [np.datetime64("2026-02-01").item(),
                                                       np.datetime64("2026-02-11").item(),
                                                       np.datetime64("2026-02-21").item()]
    assert got[1][0] == 20.0 and np.isnan(got[1][1]) and got[1][2] == 16.0  # the last decade has 8 days
    assert D.resample(days, rain, "month", min_coverage=0.8, how="sum")[1].tolist() == [56.0]


def test_a_decade_mean_contradicted_by_the_readings_flags_both() -> None:
    t = hourly(24 * 40)  # 4 decades of hourly readings from 1 April
    q = 50 + 5 * np.sin(np.arange(t.size) / 300)
    readings = _data("S", t, q)
    labels = np.unique(D.period_start(t, "decade")).astype("datetime64[s]")
    means = D.resample(t, q, "decade")[1]
    stored = means.copy()
    stored[1] *= 1.1  # the agency's second decade 10 % above its own readings
    stored[2] += 1.0  # within 3 % + 0.5
    decades = _data("S", labels, stored, Aggregation.DECADE_MEAN)
    p = PeriodAgreement(tolerance_relative=0.03, tolerance_absolute=0.5)
    v = R.stored_period_check(decades, readings, p)
    assert v.mask.tolist() == [False, True, False, False]
    assert v.score[1] == pytest.approx(means[1]) and v.params["compared_with"] == "instantaneous"
    f = R.finer_check(readings, decades, p)
    flagged = np.unique(t[f.mask].astype("datetime64[D]"))
    assert flagged[0] == np.datetime64("2026-04-11") and flagged[-1] == np.datetime64("2026-04-20") and flagged.size == 10
    assert np.all(f.score[f.mask] == stored[1])
    # readings that cover under 80 % of a decade (7 days of the second) are not compared
    for days, second in ((18, True), (17, False)):
        part = _data("S", t[: 24 * days], q[: 24 * days])
        assert R.stored_period_check(decades, part, p).mask.tolist() == [False, second, False, False]
