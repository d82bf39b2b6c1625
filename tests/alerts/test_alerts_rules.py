"""Alert rules without a database: each kind's judgement, the state machine, the config, the body's schema."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from pydantic import TypeAdapter

from watermon.alerts import rules as R
from watermon.alerts.body import build_body, num
from watermon.alerts.lifecycle import Pending, State, decide
from watermon.config import ConfigError, load_config
from watermon.config.alerts import Margin, Policy, Rule

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "schemas" / "alert-event.v1.json").read_text(encoding="utf-8"))
VALIDATOR = Draft202012Validator(SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)
T0 = datetime(2026, 5, 3, 6, tzinfo=timezone.utc)
DEMO_RULES = yaml.safe_load((ROOT / "config" / "alerts.yaml").read_text(encoding="utf-8"))["alerts"]["rules"]
IX = {r["id"]: i for i, r in enumerate(DEMO_RULES)}
"""each demo rule's place in alerts.rules, which error keys name"""


def rule(**kw: Any) -> Any:
    return TypeAdapter(Rule).validate_python({"id": "r", "stations": ["11242"], **kw})


def reading(hours: float, value: float, qc: str = "good") -> R.Reading:
    return R.Reading(T0 + timedelta(hours=hours), value, qc)


TH = [("watch", 950.0), ("warning", 1150.0), ("danger", 1400.0)]


# --- each kind --------------------------------------------------------------------------------

def test_observed_takes_the_latest_usable_reading_and_its_level() -> None:
    r = rule(kind="observed", variable="discharge", max_age_hours=12)
    c = R.observed(r, "11242", TH, [reading(-2, 1200), reading(-1, 990), reading(0, 5000, "suspect")], T0, "m3/s")
    assert (c.level, c.value, c.observed_at) == ("watch", 990, T0 - timedelta(hours=1))
    assert c.evidence == {"reading": {"time": "2026-05-03T05:00:00Z", "value": 990, "qc": "good"}}
    assert R.observed(r, "11242", TH, [reading(-1, 1500, "bad")], T0, "m3/s") is None  # only doubtful data: unknown
    assert R.observed(r, "11242", TH, [reading(-13, 1500)], T0, "m3/s") is None  # too old
    assert R.observed(r, "11242", TH, [reading(1, 1500)], T0, "m3/s") is None  # after `now`: not yet
    assert R.observed(r, "11242", TH, [reading(0, 1400, "unchecked")], T0, "m3/s").level == "danger"  # no QC wait
    assert R.observed(r, "11242", TH, [reading(0, 949.9)], T0, "m3/s").level is None
    # a revised value is new evidence even at the same time
    assert R.observed(r, "11242", TH, [reading(0, 1000)], T0, None).key != R.observed(
        r, "11242", TH, [reading(0, 1001)], T0, None).key


def fc_rows(run: int, issued: datetime, medians: list[float], spread: float = 60.0) -> list[R.ForecastRow]:
    return [R.ForecastRow(run, issued, "linear_reservoir", "daily", i + 1, issued + timedelta(days=i + 1),
                          {"median": m, "q05": m - spread, "q25": m - spread / 3, "q75": m + spread / 3,
                           "q95": m + spread}) for i, m in enumerate(medians)]


def test_forecast_judges_each_level_on_its_statistic_within_max_lead() -> None:
    r = rule(kind="forecast", variable="discharge", stations=["16279"], max_lead=3, statistics={"watch": "q95"})
    th = [("watch", 350.0), ("warning", 450.0), ("danger", 600.0)]
    rows = fc_rows(7, T0 - timedelta(hours=2), [300, 320, 340, 700, 800])
    c = R.forecast(r, "16279", th, rows, T0, "m3/s")
    assert c.level == "watch"  # q95 400 of lead 3 >= 350; the medians stay below 450; lead 4 is beyond max_lead
    assert c.values == {"watch": 400, "warning": 340, "danger": 340}
    assert c.observed_at == rows[2].valid_time and c.key == "run 7"
    ev = c.evidence
    assert (ev["lead"], ev["statistic"], ev["first_time"]) == (3, "q95", R.iso(rows[0].valid_time))  # 360 at lead 1
    assert [x["lead"] for x in ev["forecast"]["leads"]] == [1, 2, 3]
    assert ev["forecast"]["leads"][0] == {"lead": 1, "valid_time": R.iso(rows[0].valid_time), "median": 300,
                                          "q05": 240, "q25": 280, "q75": 320, "q95": 360}
    assert ev["forecast"]["statistics"] == {"watch": "q95", "warning": "median", "danger": "median"}
    up = R.forecast(r, "16279", th, fc_rows(8, T0, [300, 610, 500]), T0, "m3/s")
    assert (up.level, up.value, up.evidence["lead"]) == ("danger", 610, 2)
    assert R.forecast(r, "16279", th, rows, T0 + timedelta(hours=49), "m3/s") is None  # stale run: unknown
    assert R.forecast(r, "16279", th, [], T0, "m3/s") is None


def test_reservoir_bands_above_and_below(config) -> None:
    chardara = next(x for x in config.reservoirs if x.station == "CHARDARA")  # dead 236, normal max 252, flood 252.5
    high = rule(kind="reservoir_level", stations=["CHARDARA"], bands={
        "watch": {"band": "normal_max", "offset_m": -0.5}, "warning": {"band": "normal_max"},
        "danger": {"band": "flood"}})
    low = rule(kind="reservoir_level", stations=["CHARDARA"], direction="below", bands={
        "watch": {"band": "dead_storage", "offset_m": 5}, "danger": {"band": "dead_storage"}})
    c = R.reservoir(high, "CHARDARA", chardara, [reading(-3, 252.1)], T0)
    assert (c.level, c.thresholds, c.unit) == ("warning", {"watch": 251.5, "warning": 252.0, "danger": 252.5}, "m")
    assert c.evidence["bands"]["watch"] == {"band": "normal_max", "offset_m": -0.5}
    assert R.reservoir(low, "CHARDARA", chardara, [reading(-3, 240.0)], T0).level == "watch"
    assert R.reservoir(low, "CHARDARA", chardara, [reading(-3, 235.9)], T0).level == "danger"
    assert R.reservoir(low, "CHARDARA", chardara, [reading(-3, 241.1)], T0).level is None
    assert R.reservoir(high, "CHARDARA", chardara, [reading(-49, 253)], T0) is None  # older than 48 h


def test_outage_counts_hours_of_silence() -> None:
    r = rule(kind="outage", after_hours={"warning": 12, "danger": 48})
    assert R.outage(r, "11242", None, T0) is None  # never reported: unknown, not an alert storm on a new system
    c = R.outage(r, "11242", T0 - timedelta(hours=13.5), T0)
    assert (c.level, c.value, c.unit, c.variable, c.key) == ("warning", 13.5, "h", None, "2026-05-02T16:30:00Z")
    assert R.outage(r, "11242", T0 - timedelta(hours=48), T0).level == "danger"
    assert R.outage(r, "11242", T0 - timedelta(hours=11), T0).level is None


def test_qc_burst_counts_flagged_values_in_the_window() -> None:
    r = rule(kind="qc_burst", window_hours=24, min_flags={"watch": 3, "warning": 5})

    def flag(h: float, check: str = "spike", var: str = "discharge", level: str = "suspect") -> R.FlagRow:
        return R.FlagRow(var, "instantaneous", T0 + timedelta(hours=h), check, level)

    flags = [flag(-1), flag(-1, "flatline"), flag(-2, "flatline"), flag(-3, var="stage", level="bad"),
             flag(-25), flag(-4, level="missing")]
    c = R.qc_burst(r, "11242", flags, T0)
    assert (c.level, c.value) == ("watch", 3)  # one value doubted by two checks counts once; -25 h is outside
    assert c.evidence["checks"] == {"flatline": 2, "spike": 2} and c.evidence["variables"] == ["discharge", "stage"]
    only_q = rule(kind="qc_burst", window_hours=24, min_flags={"watch": 3}, variables=["discharge"])
    assert R.qc_burst(only_q, "11242", flags, T0).value == 2
    assert R.qc_burst(r, "11242", [], T0).level is None  # a quiet window is a clear condition, not unknown


def test_transboundary_judges_the_decade_mean_against_its_schedule() -> None:
    r = rule(kind="transboundary", stations=["16275"], deficit={"watch": 0.05, "warning": 0.15, "danger": 0.3},
             schedule={"decades": {"05-1": 500, "05-2": 600}})
    decade, start, end = R.decade_of(datetime(2026, 5, 10, 20, tzinfo=timezone.utc), "Asia/Tashkent")
    assert (decade, start, end) == ("05-2", datetime(2026, 5, 10, 19, tzinfo=timezone.utc),
                                    datetime(2026, 5, 20, 19, tzinfo=timezone.utc))  # already the 11th in Tashkent
    now = datetime(2026, 5, 3, 0, tzinfo=timezone.utc)
    rs = [R.Reading(datetime(2026, 4, 30, 19, tzinfo=timezone.utc) + timedelta(hours=6 * i), v, "good")
          for i, v in enumerate([440, 450, 470, 480, 9000])]
    rs[4] = R.Reading(rs[4].time, 9000, "suspect")
    c = R.transboundary(r, "16275", rs, now)
    assert (c.level, c.value, c.thresholds) == ("watch", 460, {"watch": 475, "warning": 425, "danger": 350})
    assert c.direction == "below" and c.evidence["schedule"] == 500 and c.evidence["readings"] == 4
    assert c.evidence["deficit"] == 0.08 and c.evidence["label"] == "01.05–10.05.2026"
    assert R.transboundary(r, "16275", rs[:3], now) is None  # fewer than min_readings
    june = [R.Reading(datetime(2026, 6, 2, tzinfo=timezone.utc) + timedelta(hours=6 * i), 100, "good")
            for i in range(4)]
    off = R.transboundary(r, "16275", june, datetime(2026, 6, 3, tzinfo=timezone.utc))
    assert off.level is None and off.thresholds == {} and off.evidence["schedule"] is None  # no agreement: nothing due


# --- the state machine ------------------------------------------------------------------------

POLICY = Policy(hysteresis=Margin(absolute=50), resolve_after=2, min_change=Margin(absolute=100))


def cond(value: float, key: str | None = None, direction: str = "above", th: list | None = None) -> R.Condition:
    r = rule(kind="observed", variable="discharge", direction=direction)
    return R.condition(r, "11242", th or TH, {lv: value for lv, _ in th or TH}, unit="m3/s", observed_at=T0,
                       key=key or f"k{value}", evidence={})


def test_open_escalate_update_and_nothing_twice() -> None:
    assert decide(None, None, POLICY).write is False  # unknown
    assert decide(None, cond(900), POLICY).write is False
    d = decide(None, cond(960), POLICY)
    assert (d.event, d.level) == ("opened", "watch")
    watch = State("watch", 960, 950)
    assert decide(watch, cond(960), POLICY).write is False  # the same data again: nothing
    assert decide(watch, cond(1059), POLICY).write is False  # moved less than min_change
    assert decide(watch, cond(1060), POLICY).event == "updated"
    up = decide(watch, cond(1400), POLICY)
    assert (up.event, up.level) == ("escalated", "danger")
    no_updates = POLICY.model_copy(update={"min_change": None})
    assert decide(watch, cond(1100), no_updates).write is False
    moved_threshold = cond(960, th=[("watch", 800.0)])
    assert decide(State("watch", 960, 950), moved_threshold, POLICY).event == "updated"  # a new schedule, say


def test_hysteresis_band_counts_new_evidence_before_leaving() -> None:
    danger = State("danger", 1420, 1400)
    d1 = decide(danger, cond(1380, "a"), POLICY)  # below 1400 but within 50: hold, count 1
    assert (d1.event, d1.level, d1.pending) == (None, "danger", Pending(1, "warning", "a"))
    held = State("danger", 1420, 1400, d1.pending)
    assert decide(held, cond(1380, "a"), POLICY).write is False  # the same reading again counts nothing
    d2 = decide(held, cond(1390, "b"), POLICY)
    assert (d2.event, d2.level, d2.pending) == ("deescalated", "warning", None)
    back = decide(held, cond(1410, "c"), POLICY)  # at the level again: the count starts over, without an event
    assert (back.event, back.write, back.pending) == (None, True, None)


def test_leaving_beyond_the_margin_is_immediate() -> None:
    danger = State("danger", 1420, 1400)
    d = decide(danger, cond(1340), POLICY)  # below 1350: warning still holds (>= 1100)
    assert (d.event, d.level, d.pending) == ("deescalated", "warning", None)
    d = decide(danger, cond(1120), POLICY)  # inside warning's band: the reading counts towards leaving it too
    assert (d.event, d.level, d.pending) == ("deescalated", "warning", Pending(1, "watch", "k1120"))
    d = decide(State("watch", 960, 950), cond(899), POLICY)
    assert (d.event, d.level) == ("resolved", "watch")
    d = decide(State("watch", 960, 950), cond(930, "x"), POLICY)
    assert (d.event, d.pending) == (None, Pending(1, None, "x"))
    d = decide(State("watch", 960, 950, d.pending), cond(940, "y"), POLICY)
    assert (d.event, d.level) == ("resolved", "watch")
    one = POLICY.model_copy(update={"resolve_after": 1})
    assert decide(State("watch", 960, 950), cond(930), one).event == "resolved"
    d = decide(danger, cond(1120), one)
    assert (d.event, d.level) == ("deescalated", "watch")


def test_below_rules_mirror_the_hysteresis() -> None:
    th = [("watch", 241.0), ("warning", 238.0), ("danger", 236.0)]
    p = Policy(hysteresis=Margin(absolute=0.3), resolve_after=3, min_change=None)
    assert decide(None, cond(237.9, direction="below", th=th), p).level == "warning"
    s = State("danger", 235.8, 236.0)
    assert decide(s, cond(236.2, direction="below", th=th), p).event is None  # within 0.3 above: hold
    d = decide(s, cond(238.5, direction="below", th=th), p)
    assert (d.event, d.level) == ("deescalated", "watch")


# --- configuration ------------------------------------------------------------------------------

def test_demo_rules_load_with_four_languages(config) -> None:
    kinds = {r.kind for r in config.alerts.rules}
    assert kinds == {"observed", "forecast", "reservoir_level", "outage", "qc_burst", "transboundary"}
    tb = config.alerts.rule("transboundary-chinaz")
    assert tb.stations == ("16275",) and tb.recipients == () and len(tb.schedule.decades) == 18
    assert set(config.alerts.messages["transboundary"]) == {"en", "ru", "kk", "uz"}
    outage = config.alerts.rule("outage-kz-gauges")
    assert outage.policy(config.alerts.defaults).min_change is None  # silence growing is no news
    assert config.alerts.rule("outage-reservoirs").after_hours.warning == 36


def _broken(tmp_path: Path, edit) -> Path:
    d = tmp_path / "config"
    shutil.copytree(ROOT / "config", d)
    doc = yaml.safe_load((d / "alerts.yaml").read_text(encoding="utf-8"))
    edit(doc["alerts"])
    (d / "alerts.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return d


def _rule(doc: dict, rule_id: str) -> dict:
    return next(r for r in doc["rules"] if r["id"] == rule_id)


@pytest.mark.parametrize(
    ("edit", "key", "message"),
    [
        (lambda a: _rule(a, "observed-discharge")["stations"].append("99999"),
         f"alerts.rules[{IX['observed-discharge']}](observed-discharge).stations[8]", "unknown station '99999'"),
        (lambda a: _rule(a, "observed-discharge")["stations"].append("CHARVAK"),
         f"alerts.rules[{IX['observed-discharge']}](observed-discharge).stations[8]", "does not measure 'discharge'"),
        (lambda a: _rule(a, "observed-discharge").update(variable="stage"),
         f"alerts.rules[{IX['observed-discharge']}](observed-discharge).stations[0]", "no thresholds for 16279/stage"),
        (lambda a: _rule(a, "observed-discharge").update(thresholds={"11242": {"watch": 900, "warning": 800}}),
         f"alerts.rules[{IX['observed-discharge']}](observed-discharge).thresholds.11242", "expected watch < warning"),
        (lambda a: _rule(a, "transboundary-chinaz").update(recipients=["kazhydromet"]),
         f"alerts.rules[{IX['transboundary-chinaz']}].transboundary", "goes to both ministries"),
        (lambda a: _rule(a, "transboundary-chinaz")["schedule"]["decades"].update({"13-1": 100}),
         f"alerts.rules[{IX['transboundary-chinaz']}].transboundary.schedule.decades", "expected MM-D"),
        (lambda a: _rule(a, "reservoir-high").update(hysteresis={"relative": 0.01}),
         f"alerts.rules[{IX['reservoir-high']}].reservoir_level.hysteresis", "absolute margin"),
        (lambda a: _rule(a, "reservoir-low")["bands"].update(danger={"band": "flood"}),
         f"alerts.rules[{IX['reservoir-low']}](reservoir-low).bands", "expected watch > warning > danger"),
        (lambda a: _rule(a, "qc-burst").update(recipients=["kyrgyzhydromet"]),
         f"alerts.rules[{IX['qc-burst']}](qc-burst).recipients", "unknown agency"),
        (lambda a: _rule(a, "qc-burst").update(kind="weather"), f"alerts.rules[{IX['qc-burst']}]",
         "does not match any of the expected tags"),
        (lambda a: a["messages"]["outage"].pop("ru"), "alerts.messages.outage", "no 'ru' template"),
        (lambda a: a["messages"]["outage"]["en"].update(active="{event}: {station} silent for {days} days"),
         "alerts.messages.outage.en.active", "unknown placeholder {days}"),
        (lambda a: a["messages"]["observed"]["en"].update(active="{event}: {hours}"),
         "alerts.messages.observed.en.active", "unknown placeholder {hours}"),  # outage's, not observed's
        (lambda a: a["languages"]["kk"]["levels"].pop("danger"), "alerts.languages.kk", "levels: missing danger"),
        (lambda a: _rule(a, "outage-kz-gauges").update(messages="nowhere"),
         f"alerts.rules[{IX['outage-kz-gauges']}](outage-kz-gauges).messages", "no message templates 'nowhere'"),
        (lambda a: a["rules"].append(dict(a["rules"][0])), f"alerts.rules[{len(IX)}](observed-discharge)",
         "duplicate rule id"),
    ],
)
def test_config_errors_name_the_file_and_the_key(tmp_path: Path, edit, key: str, message: str) -> None:
    d = _broken(tmp_path, edit)
    with pytest.raises(ConfigError) as err:
        load_config(d)
    assert err.value.file == str(d / "alerts.yaml")
    assert err.value.key.startswith(key), err.value.key
    assert message in err.value.message, err.value.message


def test_without_alerts_yaml_there_are_no_rules(tmp_path: Path) -> None:
    d = tmp_path / "config"
    shutil.copytree(ROOT / "config", d)
    (d / "alerts.yaml").unlink()
    assert load_config(d).alerts.rules == ()


# --- the body -------------------------------------------------------------------------------------

def test_body_validates_and_speaks_every_configured_language(config) -> None:
    r = config.alerts.rule("observed-discharge")
    c = R.observed(r, "11242", R.thresholds_for(r, "11242", config), [reading(-1, 1210.44)], T0, "m3/s")
    body = build_body(config, r, c, event="escalated", at=T0, alert_id=4, sequence=3, level="warning",
                      previous_level="watch", opened_at=T0 - timedelta(days=1), resolved_at=None,
                      recipients=["kazhydromet", "uzhydromet"])
    VALIDATOR.validate(body)
    d = body["data"]
    assert body["type"] == "alert.escalated" and body["timestamp"] == "2026-05-03T06:00:00Z"
    assert (d["value"], d["threshold"], d["unit"], d["observed_at"]) == (1210.44, 1150, "m3/s", "2026-05-03T05:00:00Z")
    assert d["station"] == {"code": "11242", "name": "Syr Darya at Kokbulak (below Chardara dam)",
                            "name_ru": "р. Сырдарья – Кокбулак", "river": "Syr Darya", "kind": "river_gauge",
                            "agency": "kazhydromet", "country": "KZ", "lat": 41.3, "lon": 67.98}
    assert set(d["messages"]) == {"en", "ru", "kk", "uz"}
    assert d["messages"]["en"] == ("ESCALATED: Syr Darya at Kokbulak (below Chardara dam) (11242): discharge 1210 m3/s "
                                   "at 2026-05-03 05:00 UTC, warning level (threshold 1150 m3/s).")
    assert d["messages"]["ru"].startswith("ПОВЫШЕНИЕ УРОВНЯ: р. Сырдарья – Кокбулак (11242): расход воды 1210 м³/с")
    assert "Сырдария – Көкбұлақ" in d["messages"]["kk"] and "«ескерту»" in d["messages"]["kk"]
    assert "forecast" not in d
    bad = json.loads(json.dumps(body))
    bad["data"]["event"] = "opened"  # type and event disagree
    assert not VALIDATOR.is_valid(bad)
    del body["data"]["messages"]["ru"]
    assert not VALIDATOR.is_valid(body)


def test_number_formats() -> None:
    assert [num(1210.44), num(12.345), num(3.14159), num(251.5, "m"), num(13.25, "h"), num(1428.6, "h"), num(7.0),
            num(None)] == [
        "1210", "12.3", "3.14", "251.50", "13.2", "1429", "7", "–"]
