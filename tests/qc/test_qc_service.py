"""QC over the database: flags beside the raw values, re-runs, overrides, conflicts, report, model input."""

from __future__ import annotations

import json
import shutil
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import yaml
from sqlalchemy import func, select, text

from watermon.cli import main
from watermon.config import load_config
from watermon.db.schema import Observation, QcBatch, QcFlag, QcOverride, QcRun
from watermon.flags import Flag
from watermon.ingest.service import ingest_file
from watermon.periods import Aggregation
from watermon.qc.model_input import model_input
from watermon.qc.overrides import OverrideError, add_override
from watermon.qc.report import qc_report
from watermon.qc.service import run_qc
from watermon.qc.store import effective_levels, load_series, series_refs

ROOT = Path(__file__).resolve().parents[2]
HEADER = "station;variable;time;value;unit\n"
HOURS = (2, 8, 14, 20)  # Almaty local; 21, 03, 09, 15 UTC
T0 = datetime(2026, 4, 1)


def flow(n: int, seed: int = 1) -> np.ndarray:
    """A smooth rising river with a little noise, 4 readings a day."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return np.round(50 + 30 * np.sin(t / 40) + t * 0.2 + rng.normal(0, 0.8, n), 1)


def write_csv(path: Path, values: np.ndarray, station: str = "11242", start: int = 0, var: str = "Q",
              skip: set[int] = frozenset()) -> Path:
    lines = []
    for i, v in enumerate(values, start=start):
        if i in skip:
            continue
        t = T0 + timedelta(days=i // 4, hours=HOURS[i % 4])
        lines.append(f"{station};{var};{t:%d.%m.%Y %H:%M};{str(v).replace('.', ',')};{'m3/s' if var == 'Q' else 'm'}\n")
    path.write_text(HEADER + "".join(lines), encoding="utf-8")
    return path


def utc(i: int) -> datetime:
    """UTC time of reading number ``i`` (Almaty is UTC+5)."""
    return (T0 + timedelta(days=i // 4, hours=HOURS[i % 4] - 5)).replace(tzinfo=timezone.utc)


def flags_of(engine, check: str | None = None) -> list[tuple]:
    with engine.connect() as conn:
        q = select(QcFlag.series_id, QcFlag.obs_time, QcFlag.check_id, QcFlag.revision, QcFlag.level, QcFlag.detail)
        if check:
            q = q.where(QcFlag.check_id == check)
        return sorted(tuple(r) for r in conn.execute(q))


def observations(engine) -> list[tuple]:
    with engine.connect() as conn:
        return sorted(tuple(r) for r in conn.execute(select(Observation.__table__)))


def levels_of(engine, station: str, variable: str = "discharge") -> tuple[np.ndarray, np.ndarray]:
    with engine.connect() as conn:
        ref = next(r for r in series_refs(conn, [station]).values() if r.variable == variable)
        data = load_series(conn, ref)
        return data.times, effective_levels(conn, data)


@pytest.fixture
def faulty(tmp_path, engine, config):
    """200 readings of 11242 with a spike at 60, a frozen sensor at 120-131 and two missing readings at 90-91."""
    q = flow(200)
    q[60] *= 4
    q[120:132] = q[119]
    ingest_file(engine, config, "kz-hydromet", write_csv(tmp_path / "a.csv", q, skip={90, 91}))
    return q


def test_flags_the_faults_beside_the_untouched_values(faulty, engine, config) -> None:
    before = observations(engine)
    summary = run_qc(engine, config)
    assert observations(engine) == before  # nothing stored is changed
    spikes = [r[1] for r in flags_of(engine, "spike")]
    flat = [r[1] for r in flags_of(engine, "flatline")]
    gaps = flags_of(engine, "gap")
    assert spikes == [utc(60)]
    assert flat == [utc(i) for i in range(120, 132)]  # not 119, the last good reading
    assert [(r[1], r[3], r[4]) for r in gaps] == [(utc(90), 0, "missing"), (utc(91), 0, "missing")]
    detail = json.loads(flags_of(engine, "spike")[0][5])
    spike = config.qc.checks("11242", "discharge").spike
    assert detail["threshold"] == spike.threshold and detail["score"] > spike.threshold
    assert detail["value"] == faulty[60]
    assert summary.flags == {"flatline": 12, "spike": 1} and summary.missing == 2
    times, levels = levels_of(engine, "11242")
    assert dict(zip(*np.unique(levels, return_counts=True), strict=True)) == {"good": 185, "suspect": 13}


def test_rerun_is_idempotent_and_since_rechecks_a_period(faulty, engine, config) -> None:
    run_qc(engine, config)
    first = flags_of(engine)
    again = run_qc(engine, config)
    assert (again.batches, again.series) == (0, 0) and flags_of(engine) == first
    rerun = run_qc(engine, config, since=utc(100))
    assert rerun.series >= 1 and flags_of(engine) == first
    for inside in (utc(125), utc(91)):  # in the middle of the frozen run; inside the gap
        run_qc(engine, config, since=inside)
        assert flags_of(engine) == first
    whole = run_qc(engine, config, since=datetime(2000, 1, 1, tzinfo=timezone.utc), stations=["11242"])
    assert whole.flags == {"flatline": 12, "spike": 1} and flags_of(engine) == first
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(QcRun).where(QcRun.status == "done")).scalar_one() == 6


def test_new_batches_are_checked_incrementally_with_context(tmp_path, faulty, engine, config) -> None:
    run_qc(engine, config)
    more = flow(260)[200:]
    more[30] /= 5  # a dip spike in the new data (reading 230)
    ingest_file(engine, config, "kz-hydromet", write_csv(tmp_path / "b.csv", more, start=200))
    summary = run_qc(engine, config)
    assert summary.batches == 1 and summary.series == 1
    assert [r[1] for r in flags_of(engine, "spike")] == [utc(60), utc(230)]
    with engine.connect() as conn:
        claimed = conn.execute(select(QcBatch.batch_id, QcBatch.run_id).order_by(QcBatch.batch_id)).all()
    assert [r.run_id for r in claimed] == [1, 2]


def test_a_revision_makes_old_flags_stale_until_qc_judges_it(tmp_path, faulty, engine, config) -> None:
    run_qc(engine, config)
    fixed = faulty.copy()
    fixed[60] = round(fixed[60] / 4, 1)
    fixed[120:132] = flow(200)[120:132]
    ingest_file(engine, config, "kz-hydromet", write_csv(tmp_path / "fix.csv", fixed[55:135], start=55))
    times, levels = levels_of(engine, "11242")
    i60 = int(np.searchsorted(times, np.datetime64(utc(60).replace(tzinfo=None))))
    assert levels[i60] == "unchecked"  # new revision, not yet judged; the flag on revision 1 no longer applies
    run_qc(engine, config)
    assert flags_of(engine, "spike") == [] and flags_of(engine, "flatline") == []
    times, levels = levels_of(engine, "11242")
    assert set(levels) == {"good"}


def test_override_wins_over_later_runs_and_history_is_kept(faulty, engine, config) -> None:
    run_qc(engine, config)
    with engine.begin() as conn:
        add_override(conn, station="11242", variable="discharge", aggregation=Aggregation.INSTANTANEOUS,
                     time_from=utc(60), time_to=utc(60), level=Flag.GOOD, reason="ice jam release, seen on site",
                     author="hydrologist A")
        add_override(conn, station="11242", variable="discharge", aggregation=Aggregation.INSTANTANEOUS,
                     time_from=utc(10), time_to=utc(12), level=Flag.BAD, reason="gauge under repair",
                     author="hydrologist B")
    run_qc(engine, config, since=datetime(2000, 1, 1, tzinfo=timezone.utc))
    times, levels = levels_of(engine, "11242")
    at = {t: lv for t, lv in zip(times, levels, strict=True)}
    key = lambda i: np.datetime64(utc(i).replace(tzinfo=None))  # noqa: E731
    assert at[key(60)] == "good" and [at[key(i)] for i in (10, 11, 12)] == ["bad"] * 3
    assert [r[1] for r in flags_of(engine, "spike")] == [utc(60)]  # the automatic verdict stays on record
    with engine.begin() as conn:
        add_override(conn, station="11242", variable="discharge", aggregation=Aggregation.INSTANTANEOUS,
                     time_from=utc(0), time_to=utc(100), level=None, reason="back to the checks", author="A")
    times, levels = levels_of(engine, "11242")
    at = {t: lv for t, lv in zip(times, levels, strict=True)}
    assert at[key(60)] == "suspect" and at[key(10)] == "good"
    with engine.connect() as conn:
        history = conn.execute(select(QcOverride.author, QcOverride.level).order_by(QcOverride.id)).all()
    assert history == [("hydrologist A", "good"), ("hydrologist B", "bad"), ("A", None)]


def test_view_agrees_with_the_service(faulty, engine, config) -> None:
    run_qc(engine, config)
    with engine.begin() as conn:
        add_override(conn, station="11242", variable="discharge", aggregation=Aggregation.INSTANTANEOUS,
                     time_from=utc(0), time_to=utc(3), level=Flag.ESTIMATED, reason="r", author="a")
    _, levels = levels_of(engine, "11242")
    with engine.connect() as conn:
        view = [r[0] for r in conn.execute(text(
            "SELECT q.qc_flag FROM observation_qc q JOIN series s ON s.id = q.series_id "
            "JOIN station st ON st.id = s.station_id WHERE st.code = '11242' ORDER BY q.obs_time"))]
    assert view == list(levels)
    assert view.count("estimated") == 4 and view.count("suspect") == 13


@pytest.mark.parametrize("kwargs, message", [
    ({"reason": "  "}, "needs a reason"),
    ({"time_to": datetime(2026, 3, 1, tzinfo=timezone.utc)}, "ends"),
    ({"station": "11219"}, "no stored series 11219/discharge"),
])
def test_override_refuses_what_it_cannot_record(faulty, engine, kwargs, message) -> None:
    args = dict(station="11242", variable="discharge", aggregation=Aggregation.INSTANTANEOUS,
                time_from=utc(1), time_to=utc(2), level=Flag.BAD, reason="why", author="who")
    with engine.begin() as conn, pytest.raises(OverrideError, match=message):
        add_override(conn, **{**args, **kwargs})


def test_conflicting_sources_for_the_same_time_are_flagged(tmp_path, engine) -> None:
    cfg = tmp_path / "config"
    shutil.copytree(ROOT / "config", cfg)
    doc = yaml.safe_load((cfg / "sources.yaml").read_text())
    backup = dict(next(s for s in doc["sources"] if s["id"] == "kz-hydromet"), id="kz-hydromet-backup",
                  inbox="inbox/kz-backup")
    doc["sources"].append(backup)
    (cfg / "sources.yaml").write_text(yaml.safe_dump(doc))
    config = load_config(cfg)
    q = flow(80)
    ingest_file(engine, config, "kz-hydromet", write_csv(tmp_path / "a.csv", q))
    other = q.copy()
    other[40] += 5.0  # the backup channel says something else for one time
    other[41] += 0.01  # and within rounding for another
    ingest_file(engine, config, "kz-hydromet-backup", write_csv(tmp_path / "b.csv", other))
    run_qc(engine, config)
    (row,) = flags_of(engine, "conflict")
    detail = json.loads(row[5])
    assert row[1] == utc(40) and row[3] == 2
    assert (detail["source"], detail["other_source"], detail["other_value"]) == ("kz-hydromet-backup", "kz-hydromet", q[40])


def test_future_times_and_station_limits(tmp_path, engine, config) -> None:
    q = flow(40)
    q[10] = 650.0  # above the limit configured for 11272 (600) but physically possible
    ingest_file(engine, config, "kz-hydromet", write_csv(tmp_path / "a.csv", q, station="11272"))
    run_qc(engine, config, now=utc(30))
    assert [(r[1], r[4]) for r in flags_of(engine, "limits")] == [(utc(10), "suspect")]
    future = [r[1] for r in flags_of(engine, "future")]
    assert future == [utc(i) for i in range(31, 40)]  # beyond now + 1 h of tolerance


def test_report_counts_levels_checks_and_worst_period(faulty, engine, config) -> None:
    run_qc(engine, config)
    with engine.connect() as conn:
        (rep,) = [r for r in qc_report(conn, stations=["11242"]) if r.variable == "discharge"]
    assert rep.values == 198 and rep.levels == {"good": 185, "suspect": 13} and rep.missing == 2
    assert rep.checks == {"flatline": 12, "spike": 1}
    assert (rep.worst[0].start, rep.worst[0].end, rep.worst[0].values) == (utc(120), utc(131), 12)
    assert rep.worst[0].checks == {"flatline": 12}


def test_model_input_fills_short_gaps_only(tmp_path, engine, config) -> None:
    q = flow(120)
    missing = {20, 50, 51, 52, 53, 54, 55}  # one reading; then six in a row (max_gap for readings is 4)
    ingest_file(engine, config, "kz-hydromet", write_csv(tmp_path / "a.csv", q, skip=missing))
    run_qc(engine, config)
    with engine.connect() as conn:
        ds = model_input(conn, config, "11242", "discharge", Aggregation.INSTANTANEOUS)
    assert ds.sizes["time"] == 120 and ds.attrs["units"] == "m3/s"
    flags = ds["flag"].values
    assert flags[20] == "estimated" and abs(float(ds["value"][20]) - (q[19] + q[21]) / 2) < 1e-9
    assert list(flags[50:56]) == ["missing"] * 6 and np.isnan(ds["value"].values[50:56]).all()
    assert set(np.delete(flags, [20, 50, 51, 52, 53, 54, 55])) == {"good"}


def test_model_input_leaves_out_doubtful_values(faulty, engine, config) -> None:
    run_qc(engine, config)
    with engine.connect() as conn:
        ds = model_input(conn, config, "11242", "discharge", Aggregation.INSTANTANEOUS)
    assert ds["flag"].values[60] == "estimated"  # the spike, refused, then filled from its neighbours
    assert np.isnan(ds["value"].values[120:132]).all()  # 12 frozen readings: too long to fill
    assert set(ds["flag"].values[120:132]) == {"suspect"}


def test_cli_run_report_override_and_flags(faulty, engine, config, db_url, monkeypatch, capsys) -> None:
    monkeypatch.setenv("WATERMON_DB_URL", db_url)
    assert main(["qc", "run", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["flags"] == {"flatline": 12, "spike": 1}
    assert main(["qc", "report", "--station", "11242", "--format", "csv"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("station,variable,aggregation,values,good,estimated,suspect,bad,unchecked,missing")
    assert out[1].startswith("11242,discharge,instantaneous,198,185,0,13,0,0,2,flatline=12 spike=1,")
    assert main(["qc", "override", "11242", "discharge", "--from", utc(60).isoformat(), "--flag", "good",
                 "--reason", "flood wave, confirmed", "--by", "N. Abenov"]) == 0
    assert "-> good (by N. Abenov)" in capsys.readouterr().out
    assert main(["qc", "overrides", "--format", "json"]) == 0
    (ov,) = json.loads(capsys.readouterr().out)
    assert (ov["author"], ov["level"], ov["reason"]) == ("N. Abenov", "good", "flood wave, confirmed")
    assert main(["qc", "flags", "11242", "--check", "spike", "--format", "json"]) == 0
    (fl,) = json.loads(capsys.readouterr().out)
    assert fl["check"] == "spike"
    assert json.loads(fl["detail"])["window"] == config.qc.checks("11242", "discharge").spike.window
    assert main(["qc", "override", "11242", "discharge", "--from", utc(60).isoformat(), "--flag", "good",
                 "--reason", " "]) == 2
    assert "needs a reason" in capsys.readouterr().err
    assert main(["qc", "report", "--station", "NOPE"]) == 2


def _archive_csv(path: Path, station: str, decades: dict[str, float]) -> Path:
    """Uzhydromet archive rows: decade means dated on the decade's last day."""
    rows = [f"{end},{v},0,m3s,Q,{station},x,Chatkal,Chirchik,dec" for end, v in decades.items()]
    path.write_text("date,data,norm,units,type,code,station,river,basin,resolution\n" + "\n".join(rows) + "\n")
    return path


def _daily_csv(path: Path, station: str, first: str, values: np.ndarray) -> Path:
    days = np.arange(np.datetime64(first), np.datetime64(first) + values.size)
    path.write_text("date,data,code,units\n" + "".join(f"{d},{v},{station},m3/s\n" for d, v in zip(days, values, strict=True)))
    return path


def test_decade_means_and_daily_values_that_disagree_are_both_flagged(tmp_path, engine, config) -> None:
    """The check runs again on the decade means when the daily values arrive later (and the other way round)."""
    daily = np.round(40 + np.arange(30) * 0.5, 1)  # 1-30 April
    means = [float(daily[i:i + 10].mean()) for i in (0, 10, 20)]
    decades = {"2026-04-10": means[0], "2026-04-20": round(means[1] * 1.2, 1), "2026-04-30": round(means[2], 1)}
    ingest_file(engine, config, "uz-hydromet-archive", _archive_csv(tmp_path / "dec.csv", "16279", decades))
    run_qc(engine, config)
    assert flags_of(engine, "aggregation") == []
    ingest_file(engine, config, "uz-hydromet-archive", _daily_csv(tmp_path / "day.csv", "16279", "2026-04-01", daily))
    run_qc(engine, config)
    flags = flags_of(engine, "aggregation")
    with engine.connect() as conn:
        agg = {sid: str(r.aggregation) for sid, r in series_refs(conn, ["16279"]).items()}
    by = {a: sorted(r[1].date().isoformat() for r in flags if agg[r[0]] == a) for a in ("decade_mean", "daily_mean")}
    assert by["decade_mean"] == ["2026-04-11"]
    assert by["daily_mean"] == [f"2026-04-{d}" for d in range(11, 21)]
    detail = next(json.loads(r[5]) for r in flags if agg[r[0]] == "decade_mean")
    assert detail["compared_with"] == "daily_mean" and detail["score"] == pytest.approx(means[1])
    with engine.connect() as conn:
        ref = next(r for r in series_refs(conn, ["16279"]).values() if r.aggregation == "decade_mean")
        levels = effective_levels(conn, load_series(conn, ref))
    assert list(levels) == ["good", "suspect", "good"]


def test_the_real_daily_file_contradicts_the_archive(shared_data, engine, config) -> None:
    """charvak_chatkal_daily_1965_1967.csv against the decade archive, as QC finds it: its
    "Charvak" series (stored as 16294, the Charvak inflow, by the source's station map) is
    0.57 x the archive's 16294 decade means, and its 16279 is 0.90 x the archive's 16279
    (its "Charvak" decade means are the archive's 16279 to 0.5 m3/s in 91 of 98 decades:
    the file's labels do not match the archive's stations)."""
    archive = shared_data / "chirchik"
    for name in ("chirchik_uzhydromet.csv", "charvak_chatkal_daily_1965_1967.csv"):
        ingest_file(engine, config, "uz-hydromet-archive", archive / name)
    run_qc(engine, config)
    with engine.connect() as conn:
        refs = {sid: r for sid, r in series_refs(conn, ["16279", "16294"]).items()}
    ratios: dict[tuple[str, str], list[float]] = {}
    for sid, t, check, _, level, detail in flags_of(engine, "aggregation"):
        ref = refs[sid]
        assert level == "suspect" and date(1965, 1, 1) <= t.date() <= date(1967, 9, 30)
        if ref.aggregation == "decade_mean":
            d = json.loads(detail)
            ratios.setdefault((ref.station, "decade"), []).append(d["score"] / d["value"])
        else:
            ratios.setdefault((ref.station, "daily"), []).append(1.0)
    counts = {k: len(v) for k, v in ratios.items()}
    assert counts[("16294", "decade")] == 97 and counts[("16279", "decade")] == 84
    assert counts[("16294", "daily")] == 983 and counts[("16279", "daily")] == 854
    assert np.median(ratios[("16294", "decade")]) == pytest.approx(0.566, abs=0.01)
    assert np.median(ratios[("16279", "decade")]) == pytest.approx(0.90, abs=0.01)
