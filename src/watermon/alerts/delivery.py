"""The relay: sends the outbox (``delivery`` rows) to the ministries' endpoints.

The producer writes an alert event and one ``pending`` delivery per enabled endpoint in
one transaction. This relay, run by the delivery DAG every minute (or as a daemon):

* **claims** due deliveries of one endpoint in one short statement (on PostgreSQL with
  ``FOR UPDATE SKIP LOCKED``, on SQLite a single ``UPDATE ... RETURNING``, atomic under
  SQLite's one writer). A claim counts the attempt and moves ``next_attempt_at`` a lease
  ahead, so no transaction is open while the HTTP request runs, and a relay killed
  mid-request leaves the delivery to be sent again once the lease has run out (at least
  once; receivers de-duplicate by ``webhook-id``, which is the same on every retry);
* **sends** it (Standard Webhooks v1: ``webhook-id``, ``webhook-timestamp`` of the attempt,
  ``webhook-signature``; the body is ``alert_event.payload`` byte for byte);
* **records** the outcome: 2xx delivered; 410 Gone disables the endpoint and every one of
  its pending deliveries; anything else (other status, refused or timed-out connection,
  a redirect, a URL the policy refuses) waits for the next step of the retry schedule,
  with jitter, and no less than a 429/503 ``Retry-After``; after the last step: ``dead``.

Each endpoint has its own dispatcher thread and its own pool of ``max_concurrency``
sending threads and HTTP connections: an endpoint that times out only ever occupies its
own threads, so the other ministry's alerts go out as if it were not there.
``watermon alerts replay`` puts dead or disabled deliveries back in the queue.
"""

from __future__ import annotations

import logging
import os
import random
import re
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Connection, Engine, and_, exists, func, select, update

from watermon.alerts import signing
from watermon.alerts.transport import Outcome, Transport
from watermon.config.models import BasinConfig
from watermon.config.webhooks import Endpoint, Retry, WebhooksConfig
from watermon.db.schema import AlertEvent, Delivery, WebhookEndpoint

log = logging.getLogger(__name__)

SECRET_CONNECTION_PREFIX = "watermon_webhook_"
SECRET_ENV_PREFIX = "WATERMON_WEBHOOK_SECRET_"
REMOVED = "not in config/webhooks.yaml"
"""``disabled_reason`` of an endpoint taken out of the configuration (undone when it is back)"""

PREFETCH = 2
"""claims per endpoint ahead of the senders, in multiples of ``max_concurrency``: one claim feeds the
senders twice over, halving the transactions per delivery. A claimed delivery so waits for at most
one request before its own, which the default lease (:attr:`WebhooksConfig.lease`) allows for; were it
exceeded, the worst outcome is a second copy, which receivers de-duplicate."""

D = Delivery.__table__
W = WebhookEndpoint.__table__
E = AlertEvent.__table__


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


# --- secrets ---------------------------------------------------------------------------------

def secret_env_var(endpoint_id: str) -> str:
    return SECRET_ENV_PREFIX + re.sub(r"[^A-Z0-9]", "_", endpoint_id.upper())


def secret_connection_id(endpoint_id: str) -> str:
    return SECRET_CONNECTION_PREFIX + endpoint_id


def _airflow_secret(endpoint_id: str) -> str | None:
    try:
        from airflow.sdk import Connection
        from airflow.sdk.exceptions import AirflowNotFoundException
    except ImportError:
        return None
    try:
        return Connection.get(secret_connection_id(endpoint_id)).password or None
    except AirflowNotFoundException:
        return None


def endpoint_secret(endpoint_id: str) -> tuple[str | None, str | None]:
    """The endpoint's ``whsec_`` secret and where it was found (``airflow`` or ``env``).

    The Airflow connection ``watermon_webhook_<id>`` (its password), else the environment
    variable ``WATERMON_WEBHOOK_SECRET_<ID>``. Outside Airflow (the CLI, a daemon) the
    environment is looked at first, so that Airflow is imported only when it has to be.
    """
    in_airflow = "airflow.sdk" in sys.modules
    if in_airflow and (s := _airflow_secret(endpoint_id)):
        return s, "airflow"
    if s := os.environ.get(secret_env_var(endpoint_id)):
        return s, "env"
    if not in_airflow and (s := _airflow_secret(endpoint_id)):
        return s, "airflow"
    return None, None


# --- endpoints --------------------------------------------------------------------------------

def sync_endpoints(conn: Connection, config: BasinConfig | WebhooksConfig) -> int:
    """Insert or update ``webhook_endpoint`` rows from the configuration; returns rows changed.

    An endpoint no longer configured is disabled (its deliveries must stay attributable),
    and enabled again when it comes back. One disabled by a 410 stays disabled until
    ``watermon alerts replay --enable``.
    """
    wh = config.webhooks if isinstance(config, BasinConfig) else config
    existing = {r.id: r for r in conn.execute(select(W))}
    changed = 0
    for e in wh.endpoints:
        old = existing.pop(e.id, None)
        if old is None:
            conn.execute(W.insert().values(id=e.id, agency_id=e.agency, url=e.url))
            changed += 1
            continue
        values: dict[str, Any] = {}
        if (old.agency_id, old.url) != (e.agency, e.url):
            values.update(agency_id=e.agency, url=e.url)
        if old.disabled_reason == REMOVED:
            values.update(disabled_at=None, disabled_reason=None)
        if values:
            conn.execute(update(W).where(W.c.id == e.id).values(values))
            changed += 1
    for old in existing.values():
        if old.disabled_at is None:
            conn.execute(update(W).where(W.c.id == old.id).values(disabled_at=utcnow(), disabled_reason=REMOVED))
            changed += 1
    return changed


def _sweep_disabled(conn: Connection) -> int:
    """Pending deliveries of disabled endpoints (written while one was being disabled) -> disabled."""
    disabled = select(W.c.id).where(W.c.disabled_at.is_not(None))
    return conn.execute(update(D).where(D.c.status == "pending", D.c.endpoint_id.in_(disabled))
                        .values(status="disabled")).rowcount


# --- the schedule -----------------------------------------------------------------------------

def backoff(retry: Retry, attempts: int, rng: random.Random | None = None) -> timedelta | None:
    """The wait before the next attempt after ``attempts`` failed ones; None once the schedule is used up."""
    if attempts >= len(retry.schedule):
        return None
    base = retry.schedule[attempts].total_seconds()
    factor = (rng or random).uniform(1 - retry.jitter, 1 + retry.jitter) if retry.jitter else 1.0
    return timedelta(seconds=base * factor)


def next_wait(retry: Retry, attempts: int, outcome: Outcome, rng: random.Random | None = None) -> timedelta | None:
    """The wait after a failed attempt: the schedule's, but no less than a (capped) Retry-After."""
    wait = backoff(retry, attempts, rng)
    if wait is None:
        return None
    if outcome.retry_after is not None and outcome.status in (429, 503):
        asked = min(timedelta(seconds=outcome.retry_after), retry.max_retry_after)
        wait = max(wait, asked)
    return wait


# --- claiming and recording -----------------------------------------------------------------

@dataclass(frozen=True)
class Claimed:
    id: int
    event_id: int
    webhook_id: str
    attempts: int
    """attempts including this one"""
    body: bytes


def next_due(conn: Connection, endpoint_id: str) -> datetime | None:
    return conn.execute(select(func.min(D.c.next_attempt_at))
                        .where(D.c.status == "pending", D.c.endpoint_id == endpoint_id)).scalar()


def claim(conn: Connection, endpoint_id: str, limit: int, now: datetime, lease: timedelta) -> list[Claimed]:
    """Take up to ``limit`` due deliveries of an enabled endpoint, in one statement (commit after)."""
    enabled = exists().where(W.c.id == D.c.endpoint_id, W.c.disabled_at.is_(None))
    due = (select(D.c.id)
           .where(D.c.status == "pending", D.c.endpoint_id == endpoint_id, D.c.next_attempt_at <= now, enabled)
           .order_by(D.c.next_attempt_at, D.c.id).limit(limit))
    stmt = update(D).values(attempts=D.c.attempts + 1, next_attempt_at=now + lease, last_attempt_at=now)
    if conn.dialect.name == "postgresql":
        # a MATERIALIZED CTE: evaluated once (as an IN subquery the planner may rescan it and go past LIMIT)
        locked = due.with_for_update(skip_locked=True, of=D).cte("due").prefix_with("MATERIALIZED")
        stmt = stmt.where(D.c.id == locked.c.id)
    else:  # one statement, so atomic under SQLite's single writer
        stmt = stmt.where(D.c.id.in_(due), D.c.status == "pending")
    rows = conn.execute(stmt.returning(D.c.id, D.c.event_id, D.c.webhook_id, D.c.attempts)).all()
    if not rows:
        return []
    bodies = dict(conn.execute(select(E.c.id, E.c.payload).where(E.c.id.in_({r.event_id for r in rows}))).all())
    rows.sort(key=lambda r: r.id)
    return [Claimed(r.id, r.event_id, r.webhook_id, r.attempts, bodies[r.event_id].encode("utf-8")) for r in rows]


def _error(text: str | None) -> str | None:
    return text[:1000] if text else text


def record_delivered(conn: Connection, delivered: list[tuple[Claimed, Outcome]], now: datetime) -> None:
    """Mark deliveries answered 2xx as delivered, one statement per status code."""
    by_status: dict[int | None, list[int]] = {}
    for c, o in delivered:
        by_status.setdefault(o.status, []).append(c.id)
    for status, ids in by_status.items():
        # whatever happened meanwhile (a stale claim elsewhere, a 410 on another request): it is delivered
        conn.execute(update(D).where(D.c.id.in_(ids)).values(
            status="delivered", delivered_at=now, last_status=status, last_error=None))


def record(conn: Connection, endpoint: Endpoint, c: Claimed, outcome: Outcome, retry: Retry,
           now: datetime, rng: random.Random | None = None) -> str:
    """Write what an attempt came to; returns the delivery's new state (``retry`` for pending)."""
    if outcome.ok:
        record_delivered(conn, [(c, outcome)], now)
        return "delivered"
    mine = and_(D.c.id == c.id, D.c.status == "pending", D.c.attempts == c.attempts)
    if outcome.status == 410:
        reason = f"410 Gone from {endpoint.url} at {now.isoformat(timespec='seconds')}"
        conn.execute(update(W).where(W.c.id == endpoint.id, W.c.disabled_at.is_(None))
                     .values(disabled_at=now, disabled_reason=reason))
        conn.execute(update(D).where(mine).values(status="disabled", last_status=410,
                                                  last_error=_error(outcome.error)))
        conn.execute(update(D).where(D.c.endpoint_id == endpoint.id, D.c.status == "pending")
                     .values(status="disabled"))
        return "disabled"
    wait = next_wait(retry, c.attempts, outcome, rng)
    if wait is None:
        conn.execute(update(D).where(mine).values(status="dead", last_status=outcome.status,
                                                  last_error=_error(outcome.error)))
        return "dead"
    conn.execute(update(D).where(mine).values(next_attempt_at=now + wait, last_status=outcome.status,
                                              last_error=_error(outcome.error)))
    return "retry"


# --- the relay ----------------------------------------------------------------------------------

@dataclass
class EndpointStats:
    endpoint: str
    attempts: int = 0
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    disabled: int = 0
    last_error: str | None = None


@dataclass
class DeliverySummary:
    seconds: float = 0.0
    endpoints: dict[str, EndpointStats] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    """endpoints not served, with why (disabled, no secret)"""
    errors: dict[str, str] = field(default_factory=dict)
    """endpoints whose dispatcher stopped on an error (the database)"""

    def total(self, what: str) -> int:
        return sum(getattr(s, what) for s in self.endpoints.values())

    def as_dict(self) -> dict[str, Any]:
        return {"seconds": round(self.seconds, 3),
                "attempts": self.total("attempts"), "delivered": self.total("delivered"),
                "retried": self.total("retried"), "dead": self.total("dead"), "disabled": self.total("disabled"),
                "endpoints": {k: asdict(v) for k, v in self.endpoints.items()},
                "skipped": self.skipped, "errors": self.errors}

    def summary(self) -> str:
        parts = [f"{k}: {s.delivered} delivered, {s.retried} to retry, {s.dead} dead, {s.disabled} disabled"
                 + (f" (last error: {s.last_error})" if s.last_error and (s.retried or s.dead) else "")
                 for k, s in self.endpoints.items()]
        parts += [f"{k}: not served ({why})" for k, why in self.skipped.items()]
        parts += [f"{k}: stopped on error: {why}" for k, why in self.errors.items()]
        return f"{self.seconds:.1f} s; " + ("; ".join(parts) or "no endpoints")


class _EndpointRelay:
    """One endpoint: a dispatcher thread, and ``max_concurrency`` sending threads.

    The dispatcher alone writes to the database: in one short transaction per turn it
    records the outcomes the senders have handed back and claims due deliveries to keep
    the senders busy (up to ``PREFETCH`` x ``max_concurrency`` claimed and unrecorded).
    Senders only do HTTP; at most ``max_concurrency`` requests are in flight.
    """

    def __init__(self, engine: Engine, config: WebhooksConfig, endpoint: Endpoint, secret: str,
                 stop: threading.Event, deadline: float | None, until_idle: bool, rng: random.Random,
                 write_lock: threading.Lock | None) -> None:
        self.engine, self.config, self.endpoint, self.secret = engine, config, endpoint, secret
        self.stop, self.deadline, self.until_idle, self.rng = stop, deadline, until_idle, rng
        self.stats = EndpointStats(endpoint.id)
        self.error: str | None = None
        self.disabled = False
        self.busy = 0
        """deliveries claimed and not yet recorded"""
        self.finished: list[tuple[Claimed, Outcome | None]] = []
        """handed back by the senders; None: not sent (the endpoint was disabled meanwhile)"""
        self.cond = threading.Condition()
        self.lock = write_lock
        self.transport = Transport(config)
        self.pool = ThreadPoolExecutor(config.max_concurrency, thread_name_prefix=f"webhook-{endpoint.id}")
        self.thread = threading.Thread(target=self._run, name=f"relay-{endpoint.id}", daemon=True)

    def wake(self) -> None:
        with self.cond:
            self.cond.notify_all()

    def _done(self) -> bool:
        return (self.stop.is_set() or self.disabled
                or (self.deadline is not None and time.monotonic() >= self.deadline))

    def _run(self) -> None:
        try:
            self._dispatch()
        except Exception as exc:  # the database: stop this endpoint, report, let the caller decide
            log.exception("relay for %s stopped", self.endpoint.id)
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.pool.shutdown(wait=True)
            self.transport.close()

    def _turn(self, handed_back: list[tuple[Claimed, Outcome | None]], want: int, now: datetime) -> list[Claimed]:
        """Record the senders' outcomes and claim up to ``want`` due deliveries, in one transaction."""
        finished = [(c, o) for c, o in handed_back if o is not None]
        if self.lock:
            self.lock.acquire()
        try:
            with self.engine.begin() as conn:
                record_delivered(conn, [(c, o) for c, o in finished if o.ok], now)
                states = ["delivered" if o.ok else record(conn, self.endpoint, c, o, self.config.retry, now, self.rng)
                          for c, o in finished]
                claimed = claim(conn, self.endpoint.id, want, now, self.config.lease) if want else []
        finally:
            if self.lock:
                self.lock.release()
        for (c, o), state in zip(finished, states, strict=True):
            self._count(c, o, state)
        return claimed

    def _dispatch(self) -> None:
        size, poll = self.config.max_concurrency, self.config.poll_interval
        due_at: datetime | None = None
        more = False  # the last claim got all it asked for: more may be due
        while True:
            with self.cond:
                finished, self.finished = self.finished, []
                done = self._done()
                if done and self.busy == 0:
                    return
                free = 0 if done else PREFETCH * size - self.busy + len(finished)
            now = utcnow()
            want = 0
            # Busy (outcomes to record, or a full claim just made): claim straight away, in the same
            # transaction. Otherwise look first with a read, so an idle relay writes nothing.
            look = not (finished or more)
            if free > 0:
                if look:
                    with self.engine.connect() as conn:
                        due_at = next_due(conn, self.endpoint.id)
                want = free if not look or (due_at is not None and due_at <= now) else 0
            claimed = self._turn(finished, want, now) if finished or want else []
            more = bool(want) and len(claimed) == want
            with self.cond:
                self.busy += len(claimed) - len(finished)
                for c in claimed:
                    self.pool.submit(self._send, c)
                if more or self.finished or (want and not look):
                    continue  # more may be due; or find out when the next one is
                if self.until_idle and self.busy == 0 and not claimed and (due_at is None or due_at > now):
                    return
                wait = poll
                if due_at is not None and due_at > now:
                    wait = min(poll, max(0.001, (due_at - now).total_seconds()))
                self.cond.wait(timeout=wait)

    def _send(self, c: Claimed) -> None:
        if self.disabled:  # claimed ahead, then the endpoint answered 410: already marked disabled
            with self.cond:
                self.finished.append((c, None))
                self.cond.notify_all()
            return
        try:
            headers = signing.headers(self.secret, c.webhook_id, c.body, int(time.time()))
            outcome = self.transport.post(self.endpoint.url, c.body, headers)
        except Exception as exc:  # a bug, not the endpoint: record it as a failed attempt
            log.exception("delivery %s to %s", c.webhook_id, self.endpoint.id)
            outcome = Outcome(None, f"{type(exc).__name__}: {exc}", None, 0.0)
        with self.cond:
            if outcome.status == 410:
                self.disabled = True  # at once: deliveries claimed ahead are not sent (the record disables them)
            self.finished.append((c, outcome))
            self.cond.notify_all()

    def _count(self, c: Claimed, outcome: Outcome, state: str) -> None:
        self.stats.attempts += 1
        if state == "delivered":
            self.stats.delivered += 1
            return
        self.stats.last_error = outcome.error
        if state == "retry":
            self.stats.retried += 1
            log.warning("delivery %s to %s, attempt %d: %s", c.webhook_id, self.endpoint.id, c.attempts,
                        outcome.error)
        elif state == "dead":
            self.stats.dead += 1
            log.error("delivery %s (%s) to %s is dead after %d attempts: %s", c.id, c.webhook_id,
                      self.endpoint.id, c.attempts, outcome.error)
        else:
            self.stats.disabled += 1
            self.disabled = True
            log.error("endpoint %s answered 410 Gone: disabled (watermon alerts replay --enable)",
                      self.endpoint.id)


def deliver(engine: Engine, config: BasinConfig | WebhooksConfig, *, until_idle: bool = False,
            max_seconds: float | None = None, endpoints: Sequence[str] | None = None,
            stop: threading.Event | None = None, seed: int | None = None) -> DeliverySummary:
    """Send due deliveries to every enabled endpoint, each endpoint independently.

    ``until_idle``: return once nothing is due and nothing is in flight (retries
    scheduled later stay queued). ``max_seconds``: stop claiming after that long and
    return when the requests in flight are answered (the DAG's bounded run). Neither:
    run until ``stop`` is set (the daemon). Endpoints without a secret are not served
    (reported in ``skipped``); their deliveries wait.
    """
    wh = config.webhooks if isinstance(config, BasinConfig) else config
    started = time.monotonic()
    stop = stop or threading.Event()
    rng = random.Random(seed)
    # On SQLite the endpoints' dispatchers take turns to write rather than meet in SQLite's busy
    # handler (which sleeps in steps of milliseconds); PostgreSQL needs no such thing.
    write_lock = threading.Lock() if engine.dialect.name == "sqlite" else None
    with engine.begin() as conn:
        sync_endpoints(conn, wh)
        _sweep_disabled(conn)
        state = {r.id: r for r in conn.execute(select(W))}
    summary = DeliverySummary()
    relays: list[_EndpointRelay] = []
    wanted = set(endpoints) if endpoints else None
    for ep in wh.endpoints:
        if wanted is not None and ep.id not in wanted:
            continue
        if state[ep.id].disabled_at is not None:
            summary.skipped[ep.id] = f"disabled: {state[ep.id].disabled_reason}"
            continue
        secret, where = endpoint_secret(ep.id)
        problem = None
        try:
            if secret:
                signing.secret_key(secret)  # a malformed secret fails here, not on every attempt
        except ValueError as exc:
            problem = f"the one from {where} is unusable ({exc}); "
        if not secret or problem:
            summary.skipped[ep.id] = (f"no secret: {problem or ''}set the Airflow connection "
                                      f"{secret_connection_id(ep.id)} (password) or {secret_env_var(ep.id)}")
            log.error("endpoint %s: %s", ep.id, summary.skipped[ep.id])
            continue
        deadline = started + max_seconds if max_seconds is not None else None
        relays.append(_EndpointRelay(engine, wh, ep, secret, stop, deadline, until_idle, rng, write_lock))
    for r in relays:
        r.thread.start()
    try:
        for r in relays:
            while r.thread.is_alive():
                r.thread.join(timeout=0.5)
    except KeyboardInterrupt:
        stop.set()
        for r in relays:
            r.wake()
        for r in relays:
            r.thread.join()
    for r in relays:
        summary.endpoints[r.endpoint.id] = r.stats
        if r.error:
            summary.errors[r.endpoint.id] = r.error
    summary.seconds = time.monotonic() - started
    return summary


def deliver_task(max_seconds: float = 50.0) -> dict[str, Any]:
    """The delivery DAG's task: a bounded run; fails when an endpoint has no secret or the database fails."""
    from watermon.config import load_config
    from watermon.db.engine import make_engine
    from watermon.orchestration.tasks import database_url
    from watermon.settings import Settings

    config = load_config(Settings.from_env().config_dir)
    engine = make_engine(database_url())
    try:
        summary = deliver(engine, config, max_seconds=max_seconds)
    finally:
        engine.dispose()
    log.info("%s", summary.summary())
    no_secret = {k: v for k, v in summary.skipped.items() if v.startswith("no secret")}
    if summary.errors or no_secret:
        raise RuntimeError(f"alert delivery incomplete: {summary.summary()}")
    return summary.as_dict()


# --- replay and status --------------------------------------------------------------------------

def new_webhook_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def replay(conn: Connection, *, statuses: Iterable[str] = ("dead", "disabled"),
           endpoint_ids: Sequence[str] | None = None, event_ids: Sequence[int] | None = None,
           since: datetime | None = None, enable: bool = False, now: datetime | None = None) -> dict[str, Any]:
    """Queue deliveries again (attempts from zero, due now, the same ``webhook-id``).

    ``enable`` (with ``endpoint_ids``) first re-enables those endpoints and queues the
    events written while each was disabled (after the last event it has a delivery for),
    which the producer skipped. Deliveries of endpoints still disabled are left alone.
    """
    now = now or utcnow()
    statuses = tuple(statuses)
    bad = set(statuses) - {"dead", "disabled", "delivered"}
    if bad:
        raise ValueError(f"cannot replay deliveries in state {', '.join(sorted(bad))}")
    out: dict[str, Any] = {"enabled": [], "requeued": 0, "backfilled": 0, "left_disabled_endpoint": 0}
    if enable:
        if not endpoint_ids:
            raise ValueError("--enable needs the endpoints to enable (--endpoint)")
        for ep in endpoint_ids:
            row = conn.execute(select(W).where(W.c.id == ep)).first()
            if row is None:
                raise ValueError(f"unknown endpoint {ep!r}")
            if row.disabled_at is None:
                continue
            conn.execute(update(W).where(W.c.id == ep).values(disabled_at=None, disabled_reason=None))
            out["enabled"].append(ep)
            last = conn.execute(select(func.max(D.c.event_id)).where(D.c.endpoint_id == ep)).scalar()
            if last is None:
                continue
            missing = conn.execute(select(E.c.id).where(
                E.c.id > last, ~exists().where(D.c.event_id == E.c.id, D.c.endpoint_id == ep)).order_by(E.c.id)
            ).scalars().all()
            for event_id in missing:
                conn.execute(D.insert().values(event_id=event_id, endpoint_id=ep, webhook_id=new_webhook_id(),
                                               status="pending", attempts=0, created_at=now, next_attempt_at=now))
            out["backfilled"] += len(missing)
    cond = [D.c.status.in_(statuses)]
    if endpoint_ids:
        cond.append(D.c.endpoint_id.in_(list(endpoint_ids)))
    if event_ids:
        cond.append(D.c.event_id.in_(list(event_ids)))
    if since is not None:
        cond.append(D.c.created_at >= since)
    enabled = exists().where(W.c.id == D.c.endpoint_id, W.c.disabled_at.is_(None))
    out["left_disabled_endpoint"] = conn.execute(select(func.count()).select_from(D).where(*cond, ~enabled)).scalar()
    out["requeued"] = conn.execute(update(D).where(*cond, enabled).values(
        status="pending", attempts=0, next_attempt_at=now, delivered_at=None)).rowcount
    return out


def endpoint_status(conn: Connection, config: BasinConfig | WebhooksConfig) -> list[dict[str, Any]]:
    """Each endpoint (configured or in the database) with its state and deliveries per state."""
    wh = config.webhooks if isinstance(config, BasinConfig) else config
    now = utcnow()
    rows = {r.id: r for r in conn.execute(select(W))}
    counts: dict[tuple[str, str], int] = {
        (r.endpoint_id, r.status): r.n for r in conn.execute(
            select(D.c.endpoint_id, D.c.status, func.count().label("n")).group_by(D.c.endpoint_id, D.c.status))}
    oldest = dict(conn.execute(select(D.c.endpoint_id, func.min(D.c.created_at))
                               .where(D.c.status == "pending").group_by(D.c.endpoint_id)).all())
    last_err = {r.endpoint_id: r.last_error for r in conn.execute(
        select(D.c.endpoint_id, D.c.last_error).where(
            D.c.id.in_(select(func.max(D.c.id)).where(D.c.last_error.is_not(None)).group_by(D.c.endpoint_id))))}
    ids = [e.id for e in wh.endpoints] + sorted(set(rows) - {e.id for e in wh.endpoints})
    out = []
    for ep in ids:
        row = rows.get(ep)
        cfg = next((e for e in wh.endpoints if e.id == ep), None)
        _, where = endpoint_secret(ep) if cfg else (None, None)
        old = oldest.get(ep)
        out.append({
            "id": ep, "agency": cfg.agency if cfg else row.agency_id, "url": cfg.url if cfg else row.url,
            "state": ("not synced (run watermon init)" if row is None else
                      "enabled" if row.disabled_at is None else f"disabled: {row.disabled_reason}"),
            "secret": where or "MISSING",
            **{s: counts.get((ep, s), 0) for s in ("pending", "delivered", "dead", "disabled")},
            "oldest_pending_s": round((now - old).total_seconds(), 1) if old else None,
            "last_error": last_err.get(ep),
        })
    return out
