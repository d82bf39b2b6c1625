"""The webhook body of an alert event, as the ministries receive it (``schemas/alert-event.v1.json``).

``{"type": "alert.<event>", "timestamp": ISO 8601 UTC, "data": {...}}``: the Standard
Webhooks envelope. ``data`` carries everything a ministry's system needs without
calling back: the alert and its place in the episode (``alert_id``, ``sequence``: the
events of one alert are numbered 1, 2, ... so a receiver can order retried deliveries),
the rule, the level and the one before, the station, the value and the thresholds,
the time of the reading (or valid time of the forecast), the forecast excerpt for
forecast rules, the kind's evidence, and the message in each configured language
(English and Russian always, Kazakh and Uzbek where ``config/alerts.yaml`` gives them).

The body is built once, when the event is written, and stored in ``alert_event.payload``;
the relay sends it byte for byte, so every retry and every ministry gets the same text.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from watermon.alerts.rules import Condition, iso
from watermon.config.alerts import Language
from watermon.config.models import BasinConfig, Station

SCHEMA_ID = "urn:watermon:schema:alert-event:v1"
SCHEMA_VERSION = 1
TYPES = {e: f"alert.{e}" for e in ("opened", "escalated", "updated", "deescalated", "resolved")}


def _round(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


def num(x: float | None, unit: str | None = None) -> str:
    """A number as people read it: centimetres for levels in m, whole m3/s for big rivers."""
    if x is None:
        return "–"
    x = float(x)
    if unit == "m":
        return f"{x:.2f}"
    if x.is_integer() and abs(x) < 1e9:
        return str(int(x))
    if unit == "h":
        return f"{x:.0f}" if abs(x) >= 100 else f"{x:.1f}"
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.1f}" if abs(x) >= 10 else f"{x:.2f}"


def when(t: datetime | str | None) -> str:
    if t is None:
        return "–"
    if isinstance(t, str):
        t = datetime.fromisoformat(t.replace("Z", "+00:00"))
    return t.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def station_name(station: Station, lang_code: str, lang: Language) -> str:
    """The language's own name, else the Russian name for Russian and Kazakh (Cyrillic), else the name."""
    if station.code in lang.stations:
        return lang.stations[station.code]
    return (station.name_ru or station.name) if lang_code in ("ru", "kk") else station.name


def _context(lang_code: str, lang: Language, station: Station, rule: Any, cond: Condition, event: str,
             level: str) -> dict[str, str]:
    unit = cond.unit or ""
    ev = cond.evidence
    ctx = {
        "event": lang.events[event], "level": lang.levels[level], "station": station_name(station, lang_code, lang),
        "code": station.code,
        "river": station.river or "", "variable": lang.variables.get(cond.variable or "", cond.variable or ""),
        "value": num(cond.value_at(level), unit), "unit": lang.units.get(unit, unit),
        "threshold": num(cond.thresholds.get(level), unit), "time": when(cond.observed_at),
    }
    if cond.kind == "forecast":
        fc = ev.get("forecast", {})
        ctx.update(model=str(fc.get("model", "")), issue_time=when(fc.get("issue_time")),
                   valid_time=when(ev.get("valid_time")), lead=str(ev.get("lead", "–")),
                   statistic=lang.terms.get(ev.get("statistic", ""), ev.get("statistic", "")),
                   first_time=when(ev.get("first_time")))
    elif cond.kind == "reservoir_level":
        band = ev.get("bands", {}).get(level, {}).get("band", "")
        ctx["band"] = lang.bands.get(band, band)
    elif cond.kind == "outage":
        ctx.update(hours=num(cond.value_at(level), "h"), last_reading=when(ev.get("last_reading")))
    elif cond.kind == "qc_burst":
        ctx.update(count=str(ev.get("count", 0)), window_hours=num(ev.get("window_hours"), "h"),
                   checks=", ".join(f"{lang.terms.get(c, c)} {n}" for c, n in ev.get("checks", {}).items()) or "–")
    elif cond.kind == "transboundary":
        deficit = ev.get("deficit")
        ctx.update(decade=str(ev.get("label", ev.get("decade", ""))), schedule=num(ev.get("schedule"), unit),
                   deficit_pct="–" if deficit is None else f"{100 * deficit:.1f}", readings=str(ev.get("readings", 0)))
    return ctx


def messages(config: BasinConfig, rule: Any, cond: Condition, event: str, level: str) -> dict[str, str]:
    """The event's message in every language the rule's template set has (en and ru at least)."""
    station = config.station(cond.station)
    out: dict[str, str] = {}
    for code, tpl in config.alerts.messages.get(rule.template, {}).items():
        lang = config.alerts.languages[code]
        text = tpl.resolved if event == "resolved" else tpl.active
        out[code] = text.format_map(_context(code, lang, station, rule, cond, event, level))
    return out


def station_info(config: BasinConfig, code: str) -> dict[str, Any]:
    st = config.station(code)
    return {"code": st.code, "name": st.name, "name_ru": st.name_ru, "river": st.river, "kind": str(st.kind),
            "agency": st.agency, "country": config.agency(st.agency).country, "lat": st.lat, "lon": st.lon}


def build_body(config: BasinConfig, rule: Any, cond: Condition, *, event: str, at: datetime, alert_id: int,
               sequence: int, level: str, previous_level: str | None, opened_at: datetime,
               resolved_at: datetime | None, recipients: list[str]) -> dict[str, Any]:
    """The body of one event. ``level`` is the alert's level after the event (for resolved: the one it left)."""
    evidence = dict(cond.evidence)
    excerpt = evidence.pop("forecast", None)
    data: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "alert_id": alert_id,
        "sequence": sequence,
        "event": event,
        "status": "resolved" if event == "resolved" else "open",
        "rule": rule.id,
        "kind": rule.kind,
        "description": rule.description,
        "level": level,
        "previous_level": previous_level,
        "direction": cond.direction,
        "station": station_info(config, cond.station),
        "variable": cond.variable,
        "unit": cond.unit,
        "value": _round(cond.value_at(level)),
        "threshold": _round(cond.thresholds.get(level)),
        "thresholds": {lv: _round(t) for lv, t in cond.thresholds.items()},
        "observed_at": iso(cond.observed_at) if cond.observed_at else None,
        "opened_at": iso(opened_at),
        "resolved_at": iso(resolved_at) if resolved_at else None,
        "evidence": evidence,
        "recipients": recipients,
        "messages": messages(config, rule, cond, event, level),
    }
    if excerpt is not None:
        data["forecast"] = excerpt
    if config.alerts.link_base_url:
        data["links"] = {"alert": f"{config.alerts.link_base_url.rstrip('/')}/{alert_id}"}
    return {"type": TYPES[event], "timestamp": iso(at), "data": data}


def encode(body: dict[str, Any]) -> str:
    """The stored (and sent) text: compact UTF-8 JSON, keys in the order above."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
