"""Alert episodes: a pure state machine, and its write in one transaction with the outbox.

One alert per rule, station and episode. With ``T`` a level's threshold and ``h`` the
rule's hysteresis margin (absolute, or a fraction of ``T``), for a rule looking
``above`` (``below`` mirrors it):

* **open** when the value reaches the threshold of a level (``v >= T``);
* **escalate** at once when it reaches a more severe level;
* **update** when, at the same level, the value (or the threshold: a new decade's
  schedule) moved by at least ``min_change`` since the last event; never otherwise,
  so evaluating again on the same data writes nothing;
* **de-escalate or resolve** at once when the value falls below ``T - h`` of the
  current level: to the most severe level whose ``T - h`` it still reaches, or resolved
  if none. Between ``T - h`` and ``T`` (the hysteresis band) the alert holds its level
  until ``resolve_after`` consecutive new pieces of evidence (readings, forecast runs,
  decades: a new :attr:`Condition.key`) stay below the level; it then moves to the most
  severe level those reached, or resolves. The count lives in ``alert.details``.

Unknown conditions (no usable data) change nothing. An escalation clears the operator's
acknowledgement: the alert asks for attention again.

Each change is one transaction: the alert row, its event (with the webhook body fixed
in ``payload``) and one ``pending`` delivery per enabled endpoint of each recipient
agency. Two evaluators at once cannot open two alerts (the partial unique index
``uq_alert_open_episode`` refuses the second insert) nor change one twice (updates are
compare-and-set on ``details``, which carries a revision); the loser rolls back, reads
the winner's state and decides again, which with the same data is to do nothing.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from watermon.alerts.body import build_body, encode, messages
from watermon.alerts.rules import Condition, rank
from watermon.config.alerts import LEVELS, Policy
from watermon.config.models import BasinConfig
from watermon.db.schema import Alert, AlertEvent, Delivery, WebhookEndpoint

A = Alert.__table__
E = AlertEvent.__table__
D = Delivery.__table__
W = WebhookEndpoint.__table__
ATTEMPTS = 5
"""decisions taken again after losing a race, before giving up"""


# --- the state machine (pure) ------------------------------------------------------------------

@dataclass(frozen=True)
class Pending:
    """Consecutive new evidence below the alert's level, while the value is inside the hysteresis band."""

    count: int
    level: str | None
    """the most severe level that evidence reached (None: none)"""
    key: str
    """the last evidence counted"""


@dataclass(frozen=True)
class State:
    """An open alert, as the lifecycle needs it."""

    level: str
    value: float | None
    """the value told in the last event"""
    threshold: float | None
    pending: Pending | None = None


@dataclass(frozen=True)
class Decision:
    event: str | None
    """opened, escalated, updated, deescalated, resolved; None: no event"""
    level: str | None
    """the level after the decision (for resolved: the level left)"""
    pending: Pending | None = None
    write: bool = False


NOTHING = Decision(None, None)


def decide(state: State | None, cond: Condition | None, policy: Policy) -> Decision:
    """What to do with an alert (``state``, None when none is open) given the rule's condition now."""
    if cond is None:
        return NOTHING
    if state is None:
        return Decision("opened", cond.level, None, True) if cond.level else NOTHING
    cur, raw = state.level, cond.level
    if rank(raw) > rank(cur):
        return Decision("escalated", raw, None, True)
    if raw == cur:
        if _material(state, cond, cur, policy):
            return Decision("updated", cur, None, True)
        return Decision(None, cur, None, True) if state.pending is not None else NOTHING
    if not cond.holds(cur, _margin(cond, cur, policy)):  # beyond the hysteresis band: move at once
        target = next((lv for lv in reversed(LEVELS[:rank(cur)]) if cond.holds(lv, _margin(cond, lv, policy))), None)
        return _down(cond, cur, target, policy)
    p = state.pending
    if p is not None and p.key == cond.key:  # the same evidence again
        return NOTHING
    count = (p.count if p else 0) + 1
    seen = max(p.level if p else None, raw, key=rank)
    if count >= policy.resolve_after:
        return _down(cond, cur, seen, policy)
    return Decision(None, cur, Pending(count, seen, cond.key), True)


def _margin(cond: Condition, level: str, policy: Policy) -> float:
    t = cond.thresholds.get(level)
    return 0.0 if t is None else policy.hysteresis.of(t)


def _down(cond: Condition, cur: str, target: str | None, policy: Policy) -> Decision:
    """De-escalate to ``target`` (resolve for None); the evidence that did it counts towards leaving it too."""
    pending = None
    if target is not None and rank(cond.level) < rank(target):
        if policy.resolve_after <= 1:
            target = cond.level
        else:
            pending = Pending(1, cond.level, cond.key)
    if target is None:
        return Decision("resolved", cur, None, True)
    return Decision("deescalated", target, pending, True)


def _material(state: State, cond: Condition, level: str, policy: Policy) -> bool:
    if policy.min_change is None:
        return False
    t = cond.thresholds.get(level)
    m = policy.min_change.of(t if t is not None else (state.threshold or 0.0))

    def moved(a: float | None, b: float | None) -> bool:
        return a is not None and b is not None and a != b and abs(a - b) >= m

    return moved(cond.value_at(level), state.value) or moved(t, state.threshold)


# --- the write ------------------------------------------------------------------------------------

class Conflict(Exception):
    """Another evaluator changed the alert between this one's read and its write."""


@dataclass(frozen=True)
class Outcome:
    alert_id: int | None
    event: str | None
    deliveries: int
    counted: bool
    """a pending count was written (no event)"""


def load_open(conn: Connection, rule_id: str, station_id: int) -> Any:
    """The open alert of a rule at a station, or None."""
    return conn.execute(select(A).where(A.c.rule_id == rule_id, A.c.station_id == station_id,
                                        A.c.status == "open")).first()


def state_of(row: Any) -> State | None:
    if row is None:
        return None
    p = json.loads(row.details).get("pending")
    return State(row.level, row.value, row.threshold, Pending(p["count"], p["level"], p["key"]) if p else None)


def _details(cond: Condition, msgs: dict[str, str], recipients: list[str], pending: Pending | None,
             rev: int) -> str:
    return json.dumps({
        "rev": rev, "direction": cond.direction, "unit": cond.unit, "thresholds": cond.thresholds,
        "evidence": cond.evidence, "key": cond.key, "messages": msgs, "recipients": recipients,
        "pending": None if pending is None else {"count": pending.count, "level": pending.level, "key": pending.key},
    }, ensure_ascii=False, allow_nan=False)


def recipients_of(rule: Any, config: BasinConfig) -> list[str]:
    """The agencies told: the rule's, else every agency (both ministries)."""
    return list(rule.recipients) or [a.id for a in config.agencies]


def write(conn: Connection, config: BasinConfig, rule: Any, cond: Condition, station_id: int, row: Any,
          d: Decision, now: datetime) -> Outcome:
    """Apply a decision in the caller's transaction; raises :class:`Conflict` when the alert moved meanwhile."""
    recipients = recipients_of(rule, config)
    if d.event is None:  # only the pending count changes
        old = json.loads(row.details)
        old["rev"] = old.get("rev", 0) + 1
        old["pending"] = None if d.pending is None else {"count": d.pending.count, "level": d.pending.level,
                                                         "key": d.pending.key}
        _cas(conn, row, details=json.dumps(old, ensure_ascii=False, allow_nan=False))
        return Outcome(row.id, None, 0, True)
    assert d.level is not None
    msgs = messages(config, rule, cond, d.event, d.level)
    rev = 0 if row is None else json.loads(row.details).get("rev", 0) + 1
    values: dict[str, Any] = {
        "level": d.level, "value": cond.value_at(d.level), "threshold": cond.thresholds.get(d.level),
        "observed_at": cond.observed_at, "updated_at": now,
        "details": _details(cond, msgs, recipients, d.pending, rev),
    }
    if row is None:
        alert_id = conn.execute(insert(A).values(
            rule_id=rule.id, kind=rule.kind, station_id=station_id, variable=cond.variable, status="open",
            opened_at=now, **values).returning(A.c.id)).scalar_one()
        opened_at, previous = now, None
    else:
        if d.event == "resolved":
            values.update(status="resolved", resolved_at=now)
        if d.event == "escalated":
            values.update(acked_by=None, acked_at=None, ack_note=None)
        _cas(conn, row, **values)
        alert_id, opened_at, previous = row.id, row.opened_at, row.level
    sequence = conn.execute(select(func.count()).select_from(E).where(E.c.alert_id == alert_id)).scalar_one() + 1
    body = build_body(config, rule, cond, event=d.event, at=now, alert_id=alert_id, sequence=sequence, level=d.level,
                      previous_level=previous, opened_at=opened_at,
                      resolved_at=now if d.event == "resolved" else None, recipients=recipients)
    event_id = conn.execute(insert(E).values(alert_id=alert_id, event=d.event, level=d.level, at=now,
                                             payload=encode(body)).returning(E.c.id)).scalar_one()
    n = write_deliveries(conn, event_id, recipients)
    return Outcome(alert_id, d.event, n, False)


def _cas(conn: Connection, row: Any, **values: Any) -> None:
    done = conn.execute(update(A).where(A.c.id == row.id, A.c.status == "open", A.c.details == row.details)
                        .values(**values)).rowcount
    if done != 1:
        raise Conflict(f"alert {row.id} changed meanwhile")


def write_deliveries(conn: Connection, event_id: int, agencies: list[str]) -> int:
    """One pending delivery per enabled endpoint of the recipient agencies (the outbox), due now."""
    endpoints = conn.execute(select(W.c.id).where(W.c.disabled_at.is_(None), W.c.agency_id.in_(agencies))
                             .order_by(W.c.id)).scalars().all()
    now = datetime.now(timezone.utc)  # the relay's clock, whatever time the evaluation is for
    for ep in endpoints:
        conn.execute(insert(D).values(event_id=event_id, endpoint_id=ep, webhook_id=f"msg_{uuid.uuid4().hex}",
                                      status="pending", attempts=0, created_at=now, next_attempt_at=now))
    return len(endpoints)


def process(engine: Engine, config: BasinConfig, rule: Any, cond: Condition | None, station_id: int,
            now: datetime) -> Outcome:
    """Decide and write one rule at one station, in one transaction; decide again after losing a race."""
    policy = rule.policy(config.alerts.defaults)
    for attempt in range(ATTEMPTS):
        try:
            with engine.begin() as conn:
                row = load_open(conn, rule.id, station_id)
                d = decide(state_of(row), cond, policy)
                if not d.write:
                    return Outcome(None if row is None else row.id, None, 0, False)
                return write(conn, config, rule, cond, station_id, row, d, now)  # type: ignore[arg-type]
        except (IntegrityError, Conflict):
            if attempt == ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")
