"""``watermon alerts evaluate|list|show|ack`` for operators (and the delivery commands beside them).

An acknowledgement is the operator's note that somebody is on it: it is kept on the
alert, sends nothing to the ministries, and is cleared when the alert escalates.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from typing import Any, Callable

from sqlalchemy import Connection, select, update

from watermon.db.schema import Alert, AlertEvent, Delivery, Station, WebhookEndpoint

FORMATS = ("table", "csv", "json")
LIST_COLUMNS = ["id", "rule", "station", "level", "status", "opened_at", "updated_at", "resolved_at", "value",
                "threshold", "unit", "acked_by", "message"]


def _engine_and_config(s: Any) -> tuple[Any, Any]:
    from watermon.config import load_config
    from watermon.db.engine import make_engine

    return load_config(s.config_dir), make_engine(s.db_url)


def list_alerts(conn: Connection, *, open_only: bool = False, station: str | None = None, rule: str | None = None,
                limit: int = 50) -> list[dict[str, Any]]:
    """Alerts, open ones first, then newest first."""
    q = (select(Alert.__table__, Station.code).join(Station, Station.id == Alert.station_id)
         .order_by((Alert.status == "open").desc(), Alert.updated_at.desc(), Alert.id.desc()).limit(limit))
    if open_only:
        q = q.where(Alert.status == "open")
    if station:
        q = q.where(Station.code == station)
    if rule:
        q = q.where(Alert.rule_id == rule)
    out = []
    for a in conn.execute(q):
        details = json.loads(a.details)
        out.append({"id": a.id, "rule": a.rule_id, "kind": a.kind, "station": a.code, "variable": a.variable,
                    "level": a.level, "status": a.status, "opened_at": a.opened_at, "updated_at": a.updated_at,
                    "resolved_at": a.resolved_at, "value": a.value, "threshold": a.threshold,
                    "unit": details.get("unit"), "observed_at": a.observed_at, "acked_by": a.acked_by,
                    "acked_at": a.acked_at, "message": details.get("messages", {}).get("en", "")})
    return out


def alert_detail(conn: Connection, alert_id: int) -> dict[str, Any] | None:
    """One alert with its events, each with its delivery to every endpoint."""
    a = conn.execute(select(Alert.__table__, Station.code).join(Station, Station.id == Alert.station_id)
                     .where(Alert.id == alert_id)).first()
    if a is None:
        return None
    events = []
    for ev in conn.execute(select(AlertEvent.__table__).where(AlertEvent.alert_id == a.id).order_by(AlertEvent.id)):
        deliveries = [{
            "endpoint": d.endpoint_id, "agency": d.agency, "status": d.status, "attempts": d.attempts,
            "webhook_id": d.webhook_id, "next_attempt_at": d.next_attempt_at, "last_attempt_at": d.last_attempt_at,
            "last_status": d.last_status, "last_error": d.last_error, "delivered_at": d.delivered_at,
        } for d in conn.execute(
            select(Delivery.__table__, WebhookEndpoint.agency_id.label("agency"))
            .join(WebhookEndpoint, WebhookEndpoint.id == Delivery.endpoint_id)
            .where(Delivery.event_id == ev.id).order_by(Delivery.endpoint_id))]
        events.append({"id": ev.id, "event": ev.event, "level": ev.level, "at": ev.at,
                       "payload": json.loads(ev.payload), "deliveries": deliveries})
    return {"id": a.id, "rule": a.rule_id, "kind": a.kind, "station": a.code, "variable": a.variable, "level": a.level,
            "status": a.status, "opened_at": a.opened_at, "updated_at": a.updated_at, "resolved_at": a.resolved_at,
            "value": a.value, "threshold": a.threshold, "observed_at": a.observed_at, "acked_by": a.acked_by,
            "acked_at": a.acked_at, "ack_note": a.ack_note, "details": json.loads(a.details), "events": events}


def acknowledge(conn: Connection, alert_id: int, by: str, note: str | None,
                now: datetime | None = None) -> tuple[str | None, datetime | None] | None:
    """Record who acknowledged the alert; returns the previous (by, at), or None for an unknown alert."""
    old = conn.execute(select(Alert.acked_by, Alert.acked_at).where(Alert.id == alert_id)).first()
    if old is None:
        return None
    conn.execute(update(Alert).where(Alert.id == alert_id).values(
        acked_by=by, acked_at=now or datetime.now(timezone.utc), ack_note=note))
    return old.acked_by, old.acked_at


def _t(v: datetime | None) -> str:
    return "–" if v is None else v.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _n(x: float | None) -> str:
    return "–" if x is None else f"{x:.6g}"


def _json_default(o: Any) -> Any:
    if isinstance(o, datetime):
        return _t(o)
    raise TypeError(type(o).__name__)


def cmd_evaluate(args: argparse.Namespace, s: Any) -> int:
    from watermon.alerts.service import evaluate

    config, engine = _engine_and_config(s)
    for rid in args.rule or []:
        try:
            config.alerts.rule(rid)
        except KeyError as exc:
            raise args.usage_error(exc.args[0]) from None
    summary = evaluate(engine, config, now=args.now, rule_ids=args.rule)
    engine.dispose()
    if args.json:
        print(json.dumps(summary.as_dict(), indent=2))
    else:
        print(f"alerts evaluate: {summary.summary()}")
        for e in summary.errors:
            print(f"  error: {e}")
    return 1 if summary.errors else 0


def cmd_list(args: argparse.Namespace, s: Any) -> int:
    from watermon.output import write_rows

    config, engine = _engine_and_config(s)
    if args.station:
        try:
            config.station(args.station)
        except KeyError as exc:
            raise args.usage_error(exc.args[0]) from None
    with engine.connect() as conn:
        rows = list_alerts(conn, open_only=args.open, station=args.station, rule=args.rule, limit=args.limit)
    engine.dispose()
    if args.format == "table":
        for r in rows:
            r["message"] = r["message"] if len(r["message"]) <= 70 else r["message"][:67] + "..."
    write_rows(sys.stdout, rows, LIST_COLUMNS, args.format)
    return 0


def cmd_show(args: argparse.Namespace, s: Any) -> int:
    _, engine = _engine_and_config(s)
    with engine.connect() as conn:
        a = alert_detail(conn, args.id)
    engine.dispose()
    if a is None:
        raise args.usage_error(f"no alert {args.id}")
    if args.json:
        print(json.dumps(a, indent=2, ensure_ascii=False, default=_json_default))
        return 0
    unit = a["details"].get("unit") or ""
    print(f"alert {a['id']}: {a['rule']} ({a['kind']}) at {a['station']}: {a['level']}, {a['status']}")
    print(f"  opened {_t(a['opened_at'])}, last change {_t(a['updated_at'])}"
          + (f", resolved {_t(a['resolved_at'])}" if a["resolved_at"] else ""))
    print(f"  value {_n(a['value'])} {unit} (threshold {_n(a['threshold'])} {unit}), observed {_t(a['observed_at'])}")
    if a["acked_by"]:
        note = f": {a['ack_note']}" if a["ack_note"] else ""
        print(f"  acknowledged by {a['acked_by']} at {_t(a['acked_at'])}{note}")
    pending = a["details"].get("pending")
    if pending:
        print(f"  holding its level: {pending['count']} new readings below it so far (hysteresis)")
    for lang, text in a["details"].get("messages", {}).items():
        print(f"  [{lang}] {text}")
    print("events:")
    for ev in a["events"]:
        seq = ev["payload"]["data"]["sequence"]
        print(f"  #{seq} {ev['event']} ({ev['level']}) at {_t(ev['at'])}, event {ev['id']}")
        for d in ev["deliveries"]:
            text = {"delivered": f"delivered {_t(d['delivered_at'])}",
                    "pending": f"pending, next try {_t(d['next_attempt_at'])}"}.get(d["status"], d["status"])
            err = f"; last error: {d['last_error']}" if d["last_error"] and d["status"] != "delivered" else ""
            print(f"      {d['endpoint']} ({d['agency']}): {text}, {d['attempts']} attempts, {d['webhook_id']}{err}")
        if not ev["deliveries"]:
            print("      no endpoint (none configured and enabled for its recipients)")
    return 0


def cmd_ack(args: argparse.Namespace, s: Any) -> int:
    _, engine = _engine_and_config(s)
    with engine.begin() as conn:
        previous = acknowledge(conn, args.id, args.by, args.note)
    engine.dispose()
    if previous is None:
        raise args.usage_error(f"no alert {args.id}")
    was = f" (was acknowledged by {previous[0]} at {_t(previous[1])})" if previous[0] else ""
    print(f"alert {args.id} acknowledged by {args.by}{was}")
    return 0


def add_commands(sub: argparse._SubParsersAction, time_type: Callable[[str], Any],
                 usage_error: type[Exception]) -> None:
    """Register ``alerts`` and its subcommands on the main parser."""
    alerts = sub.add_parser("alerts", help="alerts: evaluate the rules, list, show, acknowledge, deliver")
    alerts = alerts.add_subparsers(dest="alerts_command", required=True, metavar="ALERTS_COMMAND")

    q = alerts.add_parser("evaluate", help="judge every enabled rule now; write alert changes and their outbox rows")
    q.add_argument("--now", type=time_type, help="evaluate as of this time (ISO 8601; default: the clock)")
    q.add_argument("--rule", action="append", metavar="RULE_ID", help="only this rule, enabled or not (repeatable)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_evaluate)

    q = alerts.add_parser("list", help="alerts, open first, newest first")
    q.add_argument("--open", action="store_true", help="only open alerts")
    q.add_argument("--station", metavar="CODE")
    q.add_argument("--rule", metavar="RULE_ID")
    q.add_argument("--limit", type=int, default=50)
    q.add_argument("--format", choices=FORMATS, default="table")
    q.set_defaults(func=cmd_list)

    q = alerts.add_parser("show", help="one alert: its messages, events and each endpoint's delivery")
    q.add_argument("id", type=int, metavar="ID")
    q.add_argument("--json", action="store_true", help="everything, with each event's webhook body")
    q.set_defaults(func=cmd_show)

    q = alerts.add_parser("ack", help="acknowledge an alert (kept on it; nothing is sent)")
    q.add_argument("id", type=int, metavar="ID")
    q.add_argument("--by", required=True, metavar="NAME", help="who acknowledges")
    q.add_argument("--note", help="what is being done")
    q.set_defaults(func=cmd_ack)

    for name in ("evaluate", "list", "show", "ack"):
        alerts.choices[name].set_defaults(usage_error=usage_error)

    from watermon.alerts.delivery_commands import add_delivery_commands

    add_delivery_commands(alerts, time_type, usage_error)
