"""Alert episodes over the database (SQLite and PostgreSQL): every rule kind from ingested data to
the alert, its events and the outbox; hysteresis; nothing twice; atomic writes; concurrent evaluators.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from jsonschema import Draft202012Validator
from pydantic import TypeAdapter
from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError

from watermon.alerts import lifecycle
from watermon.alerts.service import evaluate
from watermon.config import BasinConfig
from watermon.config.alerts import Rule
from watermon.db.engine import make_engine
from watermon.db.schema import (
    Alert,
    AlertEvent,
    Delivery,
    ForecastModel,
    ForecastRun,
    ForecastValue,
    QcFlag,
    QcRun,
    Series,
    Station,
    WebhookEndpoint,
)
from watermon.export.waterml2 import SeriesToWrite, write_waterml2
from watermon.ingest.service import ingest_file
from watermon.periods import Aggregation

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "schemas" / "alert-event.v1.json").read_text(encoding="utf-8"))
VALIDATOR = Draft202012Validator(SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)
T0 = datetime(2026, 5, 3, 3, tzinfo=timezone.utc)
H = timedelta(hours=1)


# --- helpers ---------------------------------------------------------------------------------------

class Feed:
    """Writes readings as the agencies deliver them (one file, one batch) and ingests them."""

    def __init__(self, tmp_path: Path, engine: Engine, config: BasinConfig) -> None:
        self.dir, self.engine, self.config, self.n = tmp_path, engine, config, 0

    def __call__(self, code: str, points: Iterable[tuple[datetime, float] | tuple[datetime, float, str]],
                 variable: str = "discharge") -> None:
        pts = [(p[0], p[1], p[2] if len(p) > 2 else None) for p in points]
        st = self.config.station(code)
        self.n += 1
        if st.kind == "reservoir":
            source = "kz-reservoirs" if st.agency == "kazhydromet" else "uz-reservoirs"
            path = self.dir / f"r{self.n}.json"
            path.write_text(json.dumps({"records": [{"station": code, "time": t.isoformat(),
                                                     "level": {"value": v, "unit": "m"}} for t, v, _ in pts]}))
        elif st.agency == "kazhydromet":
            source, path = "kz-hydromet", self.dir / f"kz{self.n}.csv"
            almaty = ZoneInfo("Asia/Almaty")
            lines = [f"{code};{'Q' if variable == 'discharge' else 'H'};{t.astimezone(almaty):%d.%m.%Y %H:%M};"
                     f"{str(v).replace('.', ',')};m3/s;{q or '1'}\n" for t, v, q in pts]
            path.write_text("station;variable;time;value;unit;quality\n" + "".join(lines), encoding="utf-8")
        else:
            source, path = "uz-hydromet", self.dir / f"uz{self.n}.xml"
            write_waterml2(path, [SeriesToWrite(code, st.name, st.lat, st.lon, variable, Aggregation.INSTANTANEOUS,
                                                "m3/s", timedelta(hours=5), pts)],
                           generation_time=max(t for t, _, _ in pts))
        report = ingest_file(self.engine, self.config, source, path)
        assert report.status == "loaded" and not report.rejected, report.summary()


@pytest.fixture
def feed(tmp_path: Path, engine: Engine, config: BasinConfig) -> Feed:
    return Feed(tmp_path, engine, config)


@pytest.fixture(autouse=True)
def endpoints(engine: Engine) -> None:
    """Both ministries' endpoints, and a third, disabled one that must get nothing."""
    with engine.begin() as conn:
        conn.execute(insert(WebhookEndpoint), [
            {"id": "kz_ministry", "agency_id": "kazhydromet", "url": "https://kz.example/hook", "disabled_at": None},
            {"id": "uz_ministry", "agency_id": "uzhydromet", "url": "https://uz.example/hook", "disabled_at": None},
            {"id": "kz_old", "agency_id": "kazhydromet", "url": "https://old.example/hook",
             "disabled_at": T0 - timedelta(days=30)},
        ])


def with_rules(config: BasinConfig, *rules: dict[str, Any]) -> BasinConfig:
    adapter = TypeAdapter(Rule)
    alerts = config.alerts.model_copy(update={"rules": tuple(adapter.validate_python(r) for r in rules)})
    return config.model_copy(update={"alerts": alerts})


def snapshot(engine: Engine) -> tuple[list, list, list]:
    """Every row of the three tables an evaluation may write."""
    with engine.connect() as conn:
        return tuple(sorted(tuple(r) for r in conn.execute(select(t.__table__))) for t in (Alert, AlertEvent, Delivery))


def run(engine: Engine, config: BasinConfig, now: datetime) -> dict[str, int]:
    """Evaluate, then evaluate again: the second pass must write nothing at all."""
    first = evaluate(engine, config, now=now)
    assert not first.errors, first.errors
    before = snapshot(engine)
    again = evaluate(engine, config, now=now)
    assert not again.errors and not again.events and again.counted == 0
    assert snapshot(engine) == before
    return dict(first.events)


def events(engine: Engine, alert_id: int | None = None) -> list[dict[str, Any]]:
    """The webhook bodies written, in order; each is checked against the JSON Schema."""
    with engine.connect() as conn:
        q = select(AlertEvent.payload).order_by(AlertEvent.id)
        if alert_id is not None:
            q = q.where(AlertEvent.alert_id == alert_id)
        bodies = [json.loads(p) for p in conn.execute(q).scalars()]
    for b in bodies:
        VALIDATOR.validate(b)
    return bodies


def trail(engine: Engine) -> list[tuple[int, str, str]]:
    return [(b["data"]["alert_id"], b["data"]["event"], b["data"]["level"]) for b in events(engine)]


def alerts(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return conn.execute(select(Alert.__table__).order_by(Alert.id)).all()


def deliveries(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return conn.execute(select(Delivery.__table__).order_by(Delivery.id)).all()


# --- every kind --------------------------------------------------------------------------------------

OBSERVED = {"id": "q-11242", "kind": "observed", "variable": "discharge", "stations": ["11242"],
            "hysteresis": {"absolute": 50}, "resolve_after": 2, "min_change": {"absolute": 100}}


def test_observed_episode_through_every_event_and_its_outbox(engine: Engine, config: BasinConfig, feed: Feed) -> None:
    cfg = with_rules(config, OBSERVED)  # 11242: watch 950, warning 1150, danger 1400
    steps = [  # (value, provider quality, events expected)
        (900, None, {}), (960, None, {"opened": 1}), (970, None, {}), (1080, None, {"updated": 1}),
        (2000, "2", {}),  # suspect: not alerted on (the last usable reading is still 1080)
        (1200, None, {"escalated": 1}), (1420, None, {"escalated": 1}),
        (1380, None, {}),  # within 50 below danger: held, counted
        (1390, None, {"deescalated": 1}),  # the second reading in a row below danger: down to warning
        (1100, None, {}),  # in warning's band
        (1090, None, {"deescalated": 1}),  # beyond it: down to watch at once
        (930, None, {}), (940, None, {"resolved": 1}), (920, None, {}), (955, None, {"opened": 1}),
    ]
    for i, (value, quality, expected) in enumerate(steps):
        feed("11242", [(T0 + i * H, value, quality)] if quality else [(T0 + i * H, value)])
        assert run(engine, cfg, T0 + i * H) == expected, f"step {i}: {value}"
        if i == 1:
            with engine.begin() as conn:
                conn.execute(Alert.__table__.update().values(acked_by="operator", acked_at=T0 + i * H))
        if i == 4:
            assert alerts(engine)[0].acked_by == "operator"  # an update keeps the acknowledgement
        if i == 5:
            assert alerts(engine)[0].acked_by is None  # an escalation asks for attention again
        if i == 7:
            assert json.loads(alerts(engine)[0].details)["pending"]["count"] == 1
    assert trail(engine) == [(1, "opened", "watch"), (1, "updated", "watch"), (1, "escalated", "warning"),
                             (1, "escalated", "danger"), (1, "deescalated", "warning"), (1, "deescalated", "watch"),
                             (1, "resolved", "watch"), (2, "opened", "watch")]
    first, second = alerts(engine)
    assert (first.status, first.resolved_at, first.value, first.threshold) == ("resolved", T0 + 12 * H, 940, 950)
    assert (second.status, second.level, second.value, second.observed_at) == ("open", "watch", 955, T0 + 14 * H)
    bodies = events(engine)
    assert [b["data"]["sequence"] for b in bodies] == [1, 2, 3, 4, 5, 6, 7, 1]
    assert [b["data"]["previous_level"] for b in bodies[:4]] == [None, "watch", "watch", "warning"]
    esc = bodies[3]["data"]
    assert (bodies[3]["type"], esc["value"], esc["threshold"], esc["observed_at"]) == (
        "alert.escalated", 1420, 1400, "2026-05-03T09:00:00Z")
    assert esc["evidence"]["reading"] == {"time": "2026-05-03T09:00:00Z", "value": 1420, "qc": "good"}
    assert esc["recipients"] == ["kazhydromet", "uzhydromet"]  # both ministries by default
    assert esc["messages"]["en"].startswith("ESCALATED: Syr Darya at Kokbulak (below Chardara dam) (11242): "
                                            "discharge 1420 m3/s at 2026-05-03 09:00 UTC, danger level")
    assert bodies[6]["data"]["resolved_at"] == "2026-05-03T15:00:00Z" and bodies[6]["data"]["status"] == "resolved"
    # the outbox: one pending row per enabled endpoint and event, none for the disabled endpoint
    out = deliveries(engine)
    assert len(out) == 2 * len(bodies)
    with engine.connect() as conn:
        per_event = conn.execute(select(Delivery.event_id, Delivery.endpoint_id).order_by(Delivery.id)).all()
    assert {ep for _, ep in per_event} == {"kz_ministry", "uz_ministry"}
    assert all(d.status == "pending" and d.attempts == 0 and d.webhook_id.startswith("msg_") for d in out)
    assert len({d.webhook_id for d in out}) == len(out)


def add_run(engine: Engine, station: str, issued: datetime, medians: list[float], spread: float = 60.0,
            status: str = "done") -> int:
    with engine.begin() as conn:
        sid = conn.execute(select(Station.id).where(Station.code == station)).scalar_one()
        run_id = conn.execute(insert(ForecastRun).values(
            issue_time=issued, created_at=issued, finished_at=issued, status=status, trigger="test",
            config_sha256="0" * 64, code_version="test").returning(ForecastRun.id)).scalar_one()
        model_id = conn.execute(insert(ForecastModel).values(
            run_id=run_id, station_id=sid, variable="discharge", step="daily", model="linear_reservoir",
            params="{}").returning(ForecastModel.id)).scalar_one()
        conn.execute(insert(ForecastValue), [
            {"model_id": model_id, "lead": lead, "quantile": q, "valid_time": issued + timedelta(days=lead),
             "value": m + off * spread}
            for lead, m in enumerate(medians, 1)
            for q, off in ((0.05, -1), (0.25, -1 / 3), (0.5, 0), (0.75, 1 / 3), (0.95, 1))])
    return run_id


def test_forecast_exceedance_with_its_excerpt(engine: Engine, config: BasinConfig) -> None:
    cfg = with_rules(config, {"id": "fc", "kind": "forecast", "variable": "discharge", "stations": ["16279"],
                              "step": "daily", "max_lead": 3, "statistics": {"watch": "q95"}})
    # 16279: watch 350, warning 450, danger 600
    add_run(engine, "16279", T0, [300, 320, 330, 900])  # q95 of lead 3: 390 -> watch; lead 4 is beyond max_lead
    assert run(engine, cfg, T0 + H) == {"opened": 1}
    (body,) = events(engine)
    fc = body["data"]["forecast"]
    assert (fc["model"], fc["step"], [x["lead"] for x in fc["leads"]]) == ("linear_reservoir", "daily", [1, 2, 3])
    assert fc["leads"][2] == {"lead": 3, "valid_time": "2026-05-06T03:00:00Z", "median": 330, "q05": 270,
                              "q25": 310, "q75": 350, "q95": 390}
    assert fc["statistics"] == {"watch": "q95", "warning": "median", "danger": "median"}
    assert (body["data"]["value"], body["data"]["threshold"], body["data"]["observed_at"]) == (
        390, 350, "2026-05-06T03:00:00Z")
    assert "q95" not in body["data"]["messages"]["ru"] and "95-й процентиль" in body["data"]["messages"]["ru"]
    add_run(engine, "16279", T0 + 24 * H, [400, 470, 440])
    later = add_run(engine, "16279", T0 + 72 * H, [700, 800, 900])  # not issued yet at the next evaluation
    assert run(engine, cfg, T0 + 25 * H) == {"escalated": 1}
    assert events(engine)[-1]["data"]["forecast"]["run_id"] == later - 1
    assert run(engine, cfg, T0 + 70 * H) == {}  # the latest run is 46 h old: still judged, unchanged
    with engine.begin() as conn:  # withdraw the future run: a stale forecast decides nothing
        conn.execute(ForecastRun.__table__.update().where(ForecastRun.id == later).values(status="failed"))
    assert run(engine, cfg, T0 + 80 * H) == {}
    add_run(engine, "16279", T0 + 90 * H, [200, 210, 220])
    assert run(engine, cfg, T0 + 91 * H) == {"resolved": 1}
    assert trail(engine) == [(1, "opened", "watch"), (1, "escalated", "warning"), (1, "resolved", "warning")]
    last = events(engine)[-1]["data"]["messages"]["en"]
    assert last.startswith("RESOLVED: Chatkal at Khudaydod (16279): the forecast")


def test_reservoir_bands_above_and_below(engine: Engine, config: BasinConfig, feed: Feed) -> None:
    cfg = with_rules(config, *(r.model_dump(mode="json") for r in config.alerts.rules
                               if r.id in ("reservoir-high", "reservoir-low")))
    # Chardara: dead storage 236, normal maximum 252, flood 252.5; high: 251.5/252/252.5 (0.1), low: 241/238/236 (0.3)
    levels = [251.0, 251.6, 252.6, 252.45, 251.3, 240.9, 237.9, 235.8, 236.2, 238.5]
    expected = [{}, {"opened": 1}, {"escalated": 1}, {}, {"resolved": 1}, {"opened": 1}, {"escalated": 1},
                {"escalated": 1}, {}, {"deescalated": 1}]
    for day, (level, exp) in enumerate(zip(levels, expected, strict=True)):
        t = T0 + timedelta(days=day)
        feed("CHARDARA", [(t, level)], variable="reservoir_level")
        assert run(engine, cfg, t + H) == exp, f"day {day}: {level}"
    assert trail(engine) == [(1, "opened", "watch"), (1, "escalated", "danger"), (1, "resolved", "danger"),
                             (2, "opened", "watch"), (2, "escalated", "warning"), (2, "escalated", "danger"),
                             (2, "deescalated", "watch")]
    low = events(engine, 2)[2]["data"]
    assert (low["direction"], low["unit"], low["value"], low["threshold"]) == ("below", "m", 235.8, 236)
    assert low["thresholds"] == {"watch": 241, "warning": 238, "danger": 236}
    assert "dead storage level" in low["messages"]["en"] and "уровень мёртвого объёма" in low["messages"]["ru"]
    assert low["messages"]["kk"].startswith("ДЕҢГЕЙ КӨТЕРІЛДІ: Шардара су қоймасы")


def test_outage_opens_escalates_and_resolves_on_the_next_reading(engine: Engine, config: BasinConfig,
                                                                  feed: Feed) -> None:
    cfg = with_rules(config, {"id": "silent", "kind": "outage", "stations": ["11272", "11219"],
                              "after_hours": {"warning": 12, "danger": 48}})
    feed("11272", [(T0 + i * 6 * H, 40.0 + i) for i in range(4)])  # last reading at T0 + 18 h
    last = T0 + 18 * H
    assert run(engine, cfg, last + 11 * H) == {}  # 11219 never reported: unknown, not silent
    assert run(engine, cfg, last + 13 * H) == {"opened": 1}
    assert run(engine, cfg, last + 20 * H) == {}  # silence growing is no news
    assert run(engine, cfg, last + 49 * H) == {"escalated": 1}
    feed("11272", [(last + 50 * H, 41.0)])
    assert run(engine, cfg, last + 50 * H) == {"resolved": 1}
    opened, escalated, resolved = (b["data"] for b in events(engine))
    assert (opened["variable"], opened["unit"], opened["value"], opened["threshold"]) == (None, "h", 13, 12)
    assert opened["evidence"] == {"last_reading": "2026-05-03T21:00:00Z", "hours": 13.0}
    assert opened["messages"]["en"] == ("ALERT: Keles at Kazygurt (11272): no data for 13 h, last reading "
                                        "2026-05-03 21:00 UTC (warning level after 12 h).")
    assert escalated["level"] == "danger" and resolved["observed_at"] == "2026-05-05T23:00:00Z"


def test_qc_burst_counts_values_of_the_current_revision(engine: Engine, config: BasinConfig, feed: Feed) -> None:
    cfg = with_rules(config, {"id": "burst", "kind": "qc_burst", "stations": ["11250"], "window_hours": 24,
                              "min_flags": {"watch": 3, "warning": 5}})
    times = [T0 + i * 6 * H for i in range(4)]
    feed("11250", [(t, 500.0 + i) for i, t in enumerate(times)])
    with engine.begin() as conn:
        series = conn.execute(select(Series.id).join(Station, Station.id == Series.station_id)
                              .where(Station.code == "11250", Series.variable == "discharge")).scalar_one()
        run_id = conn.execute(insert(QcRun).values(started_at=T0, finished_at=T0, status="done", trigger="test",
                                                   config_sha256="0" * 64, code_version="test")
                              .returning(QcRun.id)).scalar_one()
        conn.execute(insert(QcFlag), [
            {"series_id": series, "obs_time": t, "check_id": check, "revision": 1, "level": level,
             "detail": "{}", "run_id": run_id}
            for t, check, level in [(times[0], "spike", "suspect"), (times[0], "limits", "bad"),
                                    (times[1], "flatline", "suspect"), (times[2], "flatline", "suspect")]])
    now = times[-1] + H
    assert run(engine, cfg, now) == {"opened": 1}
    (body,) = events(engine)
    assert (body["data"]["value"], body["data"]["unit"], body["data"]["evidence"]["checks"]) == (
        3, None, {"flatline": 2, "limits": 1, "spike": 1})
    feed("11250", [(times[2], 480.0)])  # a revision: the flag judged the old value and no longer applies
    assert run(engine, cfg, now) == {"resolved": 1}


def test_transboundary_decade_deficit_goes_to_both_ministries(engine: Engine, config: BasinConfig,
                                                              feed: Feed) -> None:
    cfg = with_rules(config, {
        "id": "border", "kind": "transboundary", "stations": ["16275"],
        "deficit": {"watch": 0.05, "warning": 0.15}, "schedule": {"decades": {"05-1": 500, "05-2": 600}}})
    start = datetime(2026, 4, 30, 19, tzinfo=timezone.utc)  # 1 May 00:00 in Tashkent
    feed("16275", [(start + i * 6 * H, 460.0) for i in range(8)])
    assert run(engine, cfg, start + 2 * 6 * H) == {}  # 3 readings: too few to judge a decade
    assert run(engine, cfg, start + 7 * 6 * H) == {"opened": 1}
    second = start + timedelta(days=10)
    feed("16275", [(second + i * 6 * H, 480.0) for i in range(4)])
    assert run(engine, cfg, second + 6 * H) == {}  # the new decade has 2 readings: the alert stays as it was
    assert run(engine, cfg, second + 3 * 6 * H) == {"escalated": 1}  # 480 against 600: 20 % short
    june = datetime(2026, 5, 31, 19, tzinfo=timezone.utc)
    feed("16275", [(june + i * 6 * H, 480.0) for i in range(4)])
    assert run(engine, cfg, june + 3 * 6 * H) == {"resolved": 1}  # no schedule in June: nothing is due
    opened, escalated, resolved = (b["data"] for b in events(engine))
    assert (opened["value"], opened["threshold"], opened["evidence"]["schedule"]) == (460, 475, 500)
    assert (escalated["value"], escalated["threshold"], escalated["evidence"]["decade"]) == (480, 510, "05-2")
    assert (resolved["threshold"], resolved["thresholds"]) == (None, {})
    assert opened["recipients"] == ["kazhydromet", "uzhydromet"]
    assert {d.endpoint_id for d in deliveries(engine)} == {"kz_ministry", "uz_ministry"}
    assert opened["messages"]["uz"].startswith("XABAR: Sirdaryo – Chinoz (16275), chegara posti: 01.05–10.05.2026")


def test_recipients_narrow_the_outbox(engine: Engine, config: BasinConfig, feed: Feed) -> None:
    cfg = with_rules(config, {**OBSERVED, "recipients": ["kazhydromet"]})
    feed("11242", [(T0, 1000.0)])
    assert run(engine, cfg, T0) == {"opened": 1}
    assert [d.endpoint_id for d in deliveries(engine)] == ["kz_ministry"]
    assert events(engine)[0]["data"]["recipients"] == ["kazhydromet"]


# --- atomicity and concurrency ---------------------------------------------------------------------

def test_alert_event_and_outbox_are_written_together_or_not_at_all(engine: Engine, config: BasinConfig, feed: Feed,
                                                                   monkeypatch) -> None:
    cfg = with_rules(config, {**OBSERVED, "stations": ["11242", "11272"]})
    feed("11242", [(T0, 1000.0)])
    feed("11272", [(T0, 300.0)])
    real = lifecycle.write_deliveries
    calls: list[int] = []

    def crash_on_the_first(conn, event_id, agencies):  # noqa: ANN001
        n = real(conn, event_id, agencies)  # the alert, its event and the delivery rows are written ...
        calls.append(n)
        if len(calls) == 1:
            raise RuntimeError("relay database hiccup")  # ... and the transaction fails before it commits
        return n

    monkeypatch.setattr(lifecycle, "write_deliveries", crash_on_the_first)
    summary = evaluate(engine, cfg, now=T0)
    assert summary.errors == ["q-11242@11242: RuntimeError: relay database hiccup"]
    assert dict(summary.events) == {"opened": 1} and calls == [2, 2]  # the other station went ahead
    a, e, d = snapshot(engine)
    assert len(a) == 1 and len(e) == 1 and len(d) == 2  # 11272's alert whole; nothing of 11242's
    with engine.connect() as conn:
        with_alert = conn.execute(select(Station.code).join(Alert, Alert.station_id == Station.id)).scalars().all()
    assert with_alert == ["11272"]
    monkeypatch.setattr(lifecycle, "write_deliveries", real)
    summary = evaluate(engine, cfg, now=T0)  # the next evaluation catches up
    assert not summary.errors and dict(summary.events) == {"opened": 1}
    assert [len(x) for x in snapshot(engine)] == [2, 2, 4]


def race(db_url: str, cfg: BasinConfig, now: datetime, monkeypatch) -> list[Any]:
    """Two evaluators (own engines, own threads) that both read the alert's state before either writes."""
    real = lifecycle.load_open
    barrier = threading.Barrier(2, timeout=30)
    mine = threading.local()

    def load_then_wait(conn, rule_id, station_id):  # noqa: ANN001
        row = real(conn, rule_id, station_id)
        if not getattr(mine, "waited", False):
            mine.waited = True
            barrier.wait()  # both have decided on the same state now
        return row

    real_write = lifecycle.write
    lost: list[str] = []

    def write_or_lose(*args, **kw):  # noqa: ANN002, ANN003
        try:
            return real_write(*args, **kw)
        except (IntegrityError, lifecycle.Conflict) as exc:
            lost.append(type(exc).__name__)
            raise

    monkeypatch.setattr(lifecycle, "load_open", load_then_wait)
    monkeypatch.setattr(lifecycle, "write", write_or_lose)
    results: list[Any] = [None, None]

    def one(i: int) -> None:
        e = make_engine(db_url)
        try:
            results[i] = evaluate(e, cfg, now=now)
        except Exception as exc:  # noqa: BLE001 (reported below)
            results[i] = exc
        finally:
            e.dispose()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    monkeypatch.setattr(lifecycle, "load_open", real)
    monkeypatch.setattr(lifecycle, "write", real_write)
    assert not any(isinstance(r, Exception) for r in results), results
    assert not any(r.errors for r in results), [r.errors for r in results]
    return results, lost


def test_two_concurrent_evaluators_open_one_alert_and_escalate_it_once(engine: Engine, db_url: str,
                                                                       config: BasinConfig, feed: Feed,
                                                                       monkeypatch) -> None:
    cfg = with_rules(config, OBSERVED)
    feed("11242", [(T0, 1000.0)])
    results, lost = race(db_url, cfg, T0, monkeypatch)
    assert sorted(sum(r.events.values()) for r in results) == [0, 1]  # one opened it, the other found it open
    assert lost == ["IntegrityError"]  # the partial unique index refused the second alert
    feed("11242", [(T0 + H, 1500.0)])
    results, lost = race(db_url, cfg, T0 + H, monkeypatch)
    assert sorted(sum(r.events.values()) for r in results) == [0, 1]
    assert lost == ["Conflict"]  # the compare-and-set refused the second escalation
    (alert,) = alerts(engine)  # on PostgreSQL the loser's insert used up an id: compare by the alert's own
    assert trail(engine) == [(alert.id, "opened", "watch"), (alert.id, "escalated", "danger")]
    assert len(deliveries(engine)) == 4


# --- the command line --------------------------------------------------------------------------------

def test_cli_evaluate_list_show_ack(engine: Engine, db_url: str, config: BasinConfig, feed: Feed, tmp_path: Path,
                                    monkeypatch, capsys) -> None:
    from watermon.cli import main

    monkeypatch.setenv("WATERMON_DB_URL", db_url)
    monkeypatch.setenv("WATERMON_CONFIG", str(ROOT / "config"))
    monkeypatch.setenv("WATERMON_DATA_DIR", str(tmp_path))
    feed("11242", [(T0, 1200.0)])

    def cli(*argv: str) -> tuple[int, str]:
        rc = main(list(argv))
        return rc, capsys.readouterr().out

    rc, out = cli("alerts", "evaluate", "--now", "2026-05-03T04:00:00Z", "--json")  # every demo rule
    doc = json.loads(out)
    assert rc == 0 and doc["events"] == {"opened": 1} and doc["deliveries"] == 2 and doc["errors"] == []
    assert doc["rules"] == sum(r.enabled for r in config.alerts.rules)
    rc, out = cli("alerts", "evaluate", "--now", "2026-05-03T04:00:00Z")
    assert rc == 0 and "no events" in out and "1 alerts open" in out
    rc, out = cli("alerts", "list", "--open", "--format", "json")
    (row,) = json.loads(out)
    assert (row["rule"], row["station"], row["level"], row["value"], row["threshold"], row["unit"]) == (
        "observed-discharge", "11242", "warning", 1200, 1150, "m3/s")
    assert row["message"].startswith("ALERT: Syr Darya at Kokbulak")
    assert json.loads(cli("alerts", "list", "--station", "16279", "--format", "json")[1]) == []
    rc, out = cli("alerts", "show", str(row["id"]))
    assert rc == 0 and f"alert {row['id']}: observed-discharge (observed) at 11242: warning, open" in out
    assert "#1 opened (warning)" in out and "kz_ministry (kazhydromet): pending" in out and "uz_ministry" in out
    assert "[ru] ОПОВЕЩЕНИЕ: р. Сырдарья – Кокбулак (11242)" in out
    rc, out = cli("alerts", "ack", str(row["id"]), "--by", "duty hydrologist", "--note", "gauge checked by phone")
    assert rc == 0 and out.strip() == f"alert {row['id']} acknowledged by duty hydrologist"
    rc, out = cli("alerts", "show", str(row["id"]), "--json")
    doc = json.loads(out)
    assert (doc["acked_by"], doc["ack_note"]) == ("duty hydrologist", "gauge checked by phone")
    (ev,) = doc["events"]
    VALIDATOR.validate(ev["payload"])
    assert sorted(d["endpoint"] for d in ev["deliveries"]) == ["kz_ministry", "uz_ministry"]
    assert cli("alerts", "show", "999")[0] == 2
    assert cli("alerts", "ack", "999", "--by", "x")[0] == 2
    assert cli("alerts", "evaluate", "--rule", "nope")[0] == 2
    assert cli("alerts", "list", "--station", "NOPE")[0] == 2


def test_open_alerts_of_a_removed_rule_or_station_are_reported(engine: Engine, config: BasinConfig,
                                                               feed: Feed) -> None:
    cfg = with_rules(config, {**OBSERVED, "stations": ["11242", "11272"]})
    feed("11242", [(T0, 1000.0)])
    feed("11272", [(T0, 300.0)])
    opened = evaluate(engine, cfg, now=T0)
    assert dict(opened.events) == {"opened": 2} and opened.orphaned == []
    with engine.connect() as conn:
        ids = dict(conn.execute(select(Station.code, Alert.id).join(Alert, Alert.station_id == Station.id)).all())
    narrowed = evaluate(engine, with_rules(config, {**OBSERVED, "stations": ["11242"]}), now=T0)
    assert narrowed.orphaned == [f"q-11242@11272 #{ids['11272']}"]
    assert f"open alerts no rule evaluates any more: q-11242@11272 #{ids['11272']}" in narrowed.summary()
    before = snapshot(engine)
    gone = evaluate(engine, with_rules(config), now=T0)
    assert sorted(gone.orphaned) == sorted(f"q-11242@{c} #{i}" for c, i in ids.items())
    assert snapshot(engine) == before  # reported, never closed behind the ministries' backs
