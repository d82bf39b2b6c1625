"""The relay against real HTTP servers on loopback (500, 429 + Retry-After, 410, timeouts, redirects).

Every request the relay sends is verified with ``standardwebhooks``, an independent
Standard Webhooks implementation. Retry schedules are shortened through the config.
"""

from __future__ import annotations

import argparse
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine, select, update
from standardwebhooks import Webhook, WebhookVerificationError

from watermon.alerts import signing
from watermon.alerts.delivery import (
    REMOVED,
    backoff,
    claim,
    deliver,
    endpoint_secret,
    next_wait,
    replay,
    secret_env_var,
    sync_endpoints,
)
from watermon.alerts.transport import Outcome, PolicyError, UrlPolicy, retry_after_seconds
from watermon.config import BasinConfig, ConfigError, load_config
from watermon.config.webhooks import DEFAULT_SCHEDULE, Retry, WebhooksConfig
from watermon.db.schema import Alert, AlertEvent, Delivery, Station, WebhookEndpoint

ROOT = Path(__file__).resolve().parents[2]
D, W = Delivery.__table__, WebhookEndpoint.__table__
AGENCIES = ("kazhydromet", "uzhydromet")


# --- helpers shared with the other alert tests ---------------------------------------------------

def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def webhooks_config(urls: dict[str, str], *, schedule: tuple[float, ...] = (0, 0.2, 0.2, 0.2), jitter: float = 0.0,
                    connect: float = 1.0, read: float = 1.0, **kw: Any) -> WebhooksConfig:
    """Endpoints ``id -> url`` (agencies in turn) on loopback, allowed explicitly, with a short schedule."""
    return WebhooksConfig.model_validate({
        "endpoints": [{"id": ep, "agency": AGENCIES[i % 2], "url": url} for i, (ep, url) in enumerate(urls.items())],
        "retry": {"schedule": list(schedule), "jitter": jitter},
        "timeouts": {"connect": connect, "read": read},
        "allow_insecure_hosts": ["127.0.0.1"], "allow_private_hosts": ["127.0.0.1"], **kw})


def with_webhooks(config: BasinConfig, wh: WebhooksConfig) -> BasinConfig:
    return config.model_copy(update={"webhooks": wh})


def configure(engine: Engine, config: BasinConfig, wh: WebhooksConfig) -> BasinConfig:
    """The configuration with these endpoints, written to the database (as ``watermon init`` does)."""
    cfg = with_webhooks(config, wh)
    with engine.begin() as conn:
        sync_endpoints(conn, cfg)
    return cfg


def produce(engine: Engine, endpoint_ids: list[str], n: int = 1, *, alert_id: int | None = None) -> list[int]:
    """Write ``n`` alert events and a pending delivery per endpoint in one transaction, as the producer does."""
    now = utcnow()
    ids = []
    with engine.begin() as conn:
        if alert_id is None:
            station = conn.execute(select(Station.id).order_by(Station.id)).scalars().first()
            alert_id = conn.execute(Alert.__table__.insert().values(
                rule_id=f"test-{uuid.uuid4().hex[:8]}", kind="threshold", station_id=station, level="warning",
                status="open", opened_at=now, updated_at=now, details="{}").returning(Alert.id)).scalar_one()
        for _ in range(n):
            body = {"type": "alert.opened", "timestamp": now.isoformat().replace("+00:00", "Z"),
                    "data": {"alert_id": alert_id, "level": "warning", "note": "Сырдарья: уровень ↑"}}
            event_id = conn.execute(AlertEvent.__table__.insert().values(
                alert_id=alert_id, event="opened", level="warning", at=now,
                payload=json.dumps(body, ensure_ascii=False)).returning(AlertEvent.id)).scalar_one()
            for ep in endpoint_ids:
                conn.execute(D.insert().values(event_id=event_id, endpoint_id=ep, webhook_id=f"msg_{uuid.uuid4().hex}",
                                               status="pending", attempts=0, created_at=now, next_attempt_at=now))
            ids.append(event_id)
    return ids


def deliveries(engine: Engine, endpoint_id: str | None = None) -> list[Any]:
    with engine.connect() as conn:
        q = select(D).order_by(D.c.id)
        if endpoint_id:
            q = q.where(D.c.endpoint_id == endpoint_id)
        return list(conn.execute(q))


def payload(engine: Engine, event_id: int) -> bytes:
    with engine.connect() as conn:
        return conn.execute(select(AlertEvent.payload).where(AlertEvent.id == event_id)).scalar_one().encode()


@dataclass
class Seen:
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Scripted:
    """A loopback endpoint answering from a script: one entry per request, then ``default``.

    An entry is a status, ``(status, headers)``, ``"hang"`` (answer nothing for ``hang_s``),
    or a function returning one of those when the request comes.
    """

    url: str
    requests: list[Seen] = field(default_factory=list)
    script: list[Any] = field(default_factory=list)
    default: Any = 200
    hang_s: float = 3.0


@contextmanager
def scripted(script: list[Any] | None = None, default: Any = 200, hang_s: float = 3.0) -> Iterator[Scripted]:
    ep = Scripted("", script=list(script or []), default=default, hang_s=hang_s)
    lock = threading.Lock()
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with lock:
                ep.requests.append(Seen({k.lower(): v for k, v in self.headers.items()}, body, time.time()))
                step = ep.script.pop(0) if ep.script else ep.default
            if callable(step):
                step = step()
            if step == "hang":
                release.wait(ep.hang_s)
                self.close_connection = True
                return
            status, headers = step if isinstance(step, tuple) else (step, {})
            data = b'{"ok": true}' if status < 300 else b"nope"
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    ep.url = f"http://127.0.0.1:{server.server_port}/hook"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield ep
    finally:
        release.set()
        server.shutdown()
        server.server_close()


def max_in_flight(ep: Scripted) -> int:
    """The most requests a hanging endpoint held at once (each hangs ``hang_s`` unless released)."""
    times = sorted(r.at for r in ep.requests)
    return max(sum(1 for t in times if s <= t < s + 1.0) for s in times)


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(cond: Callable[[], bool], timeout: float = 10.0, step: float = 0.02) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(step)
    return cond()


@pytest.fixture
def secret(monkeypatch) -> str:
    s = signing.new_secret()
    for ep in ("a", "b", "kz", "uz"):
        monkeypatch.setenv(secret_env_var(ep), s)
    return s


def verify_all(secret: str, requests: list[Seen]) -> list[Any]:
    """Every request verified by the independent ``standardwebhooks`` implementation."""
    wh = Webhook(secret)
    return [wh.verify(r.body, r.headers) for r in requests]


# --- signatures -------------------------------------------------------------------------------

def test_our_signatures_verify_with_standardwebhooks_and_theirs_with_ours() -> None:
    secret = signing.new_secret()
    body = json.dumps({"type": "alert.opened", "timestamp": "2026-04-01T08:00:00Z",
                       "data": {"station": "16279", "note": "Чирчик ↑"}}, ensure_ascii=False).encode()
    ours = signing.headers(secret, "msg_1", body)
    assert Webhook(secret).verify(body, ours)["data"]["station"] == "16279"

    now = datetime.now(timezone.utc)
    theirs = {"webhook-id": "msg_2", "webhook-timestamp": str(int(now.timestamp())),
              "webhook-signature": Webhook(secret).sign("msg_2", now, body.decode())}
    assert signing.verify(secret, theirs, body) == "msg_2"
    assert theirs["webhook-signature"] == signing.sign(secret, "msg_2", int(now.timestamp()), body)

    # a rotated secret: several signatures, any one valid is enough (both implementations)
    other = signing.new_secret()
    both = {**ours, "webhook-signature": signing.sign(other, "msg_1", int(ours["webhook-timestamp"]), body)
            + " " + ours["webhook-signature"]}
    Webhook(secret).verify(body, both)
    assert signing.verify([other], both, body) == "msg_1"


@pytest.mark.parametrize("tamper", ["body", "id", "timestamp_old", "timestamp_new", "secret", "no_sig", "v2"])
def test_bad_requests_fail_in_both_implementations(tamper: str) -> None:
    secret, body = signing.new_secret(), b'{"type":"alert.opened","timestamp":"x","data":{}}'
    ts = int(time.time())
    h = signing.headers(secret, "msg_x", body, ts)
    key = secret
    if tamper == "body":
        body = body.replace(b"opened", b"closed")
    elif tamper == "id":
        h["webhook-id"] = "msg_y"
    elif tamper in ("timestamp_old", "timestamp_new"):
        t = ts - 301 if tamper == "timestamp_old" else ts + 301
        h = signing.headers(secret, "msg_x", body, t)
    elif tamper == "secret":
        key = signing.new_secret()
    elif tamper == "no_sig":
        del h["webhook-signature"]
    elif tamper == "v2":
        h["webhook-signature"] = h["webhook-signature"].replace("v1,", "v2,")
    with pytest.raises(signing.VerificationError):
        signing.verify(key, h, body)
    with pytest.raises(WebhookVerificationError):
        Webhook(key).verify(body, h)


def test_secret_format() -> None:
    s = signing.new_secret()
    assert s.startswith("whsec_") and len(signing.secret_key(s)) == 32
    assert signing.secret_key(s.removeprefix("whsec_").rstrip("=")) == signing.secret_key(s)
    for bad in ("whsec_!!!", "whsec_" + "QUJD", ""):
        with pytest.raises(ValueError):
            signing.secret_key(bad)


# --- configuration --------------------------------------------------------------------------

def test_demo_config_has_one_loopback_endpoint_per_ministry(config: BasinConfig) -> None:
    wh = config.webhooks
    assert sorted(e.agency for e in wh.endpoints) == sorted(AGENCIES)
    assert all(e.url.startswith("http://127.0.0.1:") for e in wh.endpoints)
    assert wh.retry.schedule == DEFAULT_SCHEDULE
    total = sum(wh.retry.schedule, timedelta())
    assert timedelta(hours=27.5) < total < timedelta(hours=27.7)
    assert "whsec_" not in (ROOT / "config" / "webhooks.yaml").read_text().replace("whsec_...", "")


@pytest.mark.parametrize(("change", "key", "message"), [
    (lambda d: d["endpoints"][0].update(agency="kyrgyzhydromet"), "webhooks.endpoints[0](kz_ministry).agency",
     "unknown agency"),
    (lambda d: d["endpoints"][0].update(url="ftp://x.org/"), "webhooks.endpoints[0].url", "http(s) URL"),
    (lambda d: d["endpoints"][0].update(url="https://u:p@x.org/"), "webhooks.endpoints[0].url", "credentials"),
    (lambda d: d["endpoints"].append(dict(d["endpoints"][0])), "webhooks", "duplicate endpoint id"),
    (lambda d: d["retry"].update(jitter=1.5), "webhooks.retry.jitter", "less than 1"),
    (lambda d: d.update(allow_private_hosts=["10.0.0.0/33"]), "webhooks.allow_private_hosts", ""),
])
def test_config_errors_name_file_and_key(tmp_path: Path, change, key: str, message: str) -> None:
    import shutil

    d = tmp_path / "config"
    shutil.copytree(ROOT / "config", d)
    doc = yaml.safe_load((d / "webhooks.yaml").read_text())
    change(doc["webhooks"])
    (d / "webhooks.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError) as exc:
        load_config(d)
    assert exc.value.file.endswith("webhooks.yaml") and exc.value.key.startswith(key) and message in exc.value.message


def test_secrets_come_from_the_environment_or_airflow(monkeypatch) -> None:
    monkeypatch.setenv("WATERMON_WEBHOOK_SECRET_KZ_MINISTRY", "whsec_env")
    assert endpoint_secret("kz_ministry") == ("whsec_env", "env")
    monkeypatch.delenv("WATERMON_WEBHOOK_SECRET_KZ_MINISTRY")
    monkeypatch.setenv("AIRFLOW_CONN_WATERMON_WEBHOOK_KZ_MINISTRY",
                       '{"conn_type": "generic", "password": "whsec_airflow"}')
    pytest.importorskip("airflow.sdk")
    assert endpoint_secret("kz_ministry") == ("whsec_airflow", "airflow")


# --- schedule -------------------------------------------------------------------------------

def test_backoff_follows_the_schedule_with_bounded_jitter() -> None:
    import random

    r = Retry(jitter=0.2)
    rng = random.Random(1)
    for attempts, base in enumerate(DEFAULT_SCHEDULE):
        waits = [backoff(r, attempts, rng).total_seconds() for _ in range(200)]
        lo, hi = base.total_seconds() * 0.8, base.total_seconds() * 1.2
        assert all(lo <= w <= hi for w in waits)
        if base:
            assert max(waits) - min(waits) > 0.2 * base.total_seconds()  # it really jitters
    assert backoff(r, len(DEFAULT_SCHEDULE)) is None  # schedule used up: dead


def test_retry_after_is_a_floor_and_capped() -> None:
    r = Retry(schedule=(timedelta(0), timedelta(seconds=5)), jitter=0, max_retry_after=timedelta(hours=1))
    assert next_wait(r, 1, Outcome(429, "", 30.0, 0)) == timedelta(seconds=30)
    assert next_wait(r, 1, Outcome(503, "", 1.0, 0)) == timedelta(seconds=5)
    assert next_wait(r, 1, Outcome(429, "", 86400.0, 0)) == timedelta(hours=1)
    assert next_wait(r, 1, Outcome(500, "", 30.0, 0)) == timedelta(seconds=5)  # only 429 and 503
    assert next_wait(r, 2, Outcome(429, "", 30.0, 0)) is None
    now = datetime(2026, 4, 1, 8, 0, tzinfo=timezone.utc)
    assert retry_after_seconds("120", now) == 120
    assert retry_after_seconds("Wed, 01 Apr 2026 08:02:30 GMT", now) == 150
    assert retry_after_seconds("Wed, 01 Apr 2026 07:00:00 GMT", now) == 0
    assert retry_after_seconds("soon", now) is None


# --- URL policy --------------------------------------------------------------------------------

def fake_resolver(table: dict[str, str]) -> Callable[..., list[Any]]:
    def resolve(host: str, port: int, **_: Any) -> list[Any]:
        if host not in table:
            raise socket.gaierror(f"unknown host {host}")
        fam = socket.AF_INET6 if ":" in table[host] else socket.AF_INET
        return [(fam, socket.SOCK_STREAM, 6, "", (table[host], port))]
    return resolve


@pytest.mark.parametrize(("url", "allowed", "why"), [
    ("https://ministry.example/hook", True, ""),
    ("http://ministry.example/hook", False, "plain HTTP"),
    ("https://127.0.0.1/hook", False, "loopback"),
    ("https://localhost.example/hook", False, "loopback"),
    ("https://intranet.example/hook", False, "private"),
    ("https://169.254.169.254/latest/meta-data", False, "link-local"),
    ("https://metadata.example/", False, "link-local"),
    ("https://[::ffff:10.0.0.1]/", False, "private"),
    ("https://[fe80::1]/", False, "link-local"),
    ("https://100.64.0.1/", False, "non-public"),
    ("https://0.0.0.0/", False, "unspecified"),
    ("https://nowhere.example/", False, "cannot resolve"),
    ("https://8.8.8.8/", True, ""),
])
def test_url_policy(url: str, allowed: bool, why: str) -> None:
    policy = UrlPolicy(resolver=fake_resolver({
        "ministry.example": "93.184.216.34", "localhost.example": "127.0.0.1", "intranet.example": "10.1.2.3",
        "metadata.example": "169.254.169.254"}))
    if allowed:
        t = policy.target(url)
        assert t.sni_hostname == (None if url.startswith("https://8.") else "ministry.example")
        return
    with pytest.raises(PolicyError, match=why):
        policy.target(url)


def test_url_policy_allow_lists() -> None:
    resolver = fake_resolver({"gw.ministry.internal": "10.20.0.5", "localhost": "127.0.0.1"})
    policy = UrlPolicy(allow_insecure_hosts=("localhost",), allow_private_hosts=("10.20.0.0/16", "localhost"),
                       resolver=resolver)
    assert policy.target("https://gw.ministry.internal/hook").address == "10.20.0.5"
    t = policy.target("http://localhost:8701/hook")
    assert (t.address, t.host_header, str(t.url)) == ("127.0.0.1", "localhost:8701", "http://127.0.0.1:8701/hook")
    with pytest.raises(PolicyError, match="plain HTTP"):
        policy.target("http://gw.ministry.internal/hook")  # private allowed, plain HTTP not
    with pytest.raises(PolicyError, match="loopback"):
        UrlPolicy(allow_insecure_hosts=("127.0.0.1",)).target("http://127.0.0.1:1/")  # insecure allowed, loopback not


def test_request_goes_to_the_checked_address_under_the_configured_name(engine: Engine, config, secret) -> None:
    """DNS is asked once, by the policy; the request is pinned to that answer, Host and all."""
    with scripted() as ep:
        port = int(ep.url.split(":")[2].split("/")[0])
        wh = webhooks_config({"a": f"http://ministry.example:{port}/hook"}).model_copy(
            update={"allow_insecure_hosts": ("ministry.example",), "allow_private_hosts": ("ministry.example",)})
        from watermon.alerts import transport

        policy = UrlPolicy(("ministry.example",), ("ministry.example",),
                           resolver=fake_resolver({"ministry.example": "127.0.0.1"}))
        with transport.Transport(wh, policy) as t:
            body = b'{"type":"t","timestamp":"x","data":{}}'
            out = t.post(wh.endpoints[0].url, body, signing.headers(secret, "msg_pin", body))
        assert out.ok
        assert ep.requests[0].headers["host"] == f"ministry.example:{port}"
        verify_all(secret, ep.requests)


# --- the relay ---------------------------------------------------------------------------------

def test_delivers_the_payload_verbatim_signed_to_every_endpoint(engine: Engine, config, secret) -> None:
    with scripted() as a, scripted() as b:
        cfg = configure(engine, config, webhooks_config({"a": a.url, "b": b.url}))
        events = produce(engine, ["a", "b"], 5)
        summary = deliver(engine, cfg, until_idle=True)
        assert summary.total("delivered") == 10 and not summary.skipped and not summary.errors
        rows = deliveries(engine)
        assert {r.status for r in rows} == {"delivered"} and {r.attempts for r in rows} == {1}
        for ep, name in ((a, "a"), (b, "b")):
            assert len(ep.requests) == 5
            bodies = verify_all(secret, ep.requests)  # standardwebhooks checks signature and timestamp
            assert {json.dumps(x, sort_keys=True) for x in bodies} == {
                json.dumps(json.loads(payload(engine, e)), sort_keys=True) for e in events}
            sent = {r.headers["webhook-id"]: r.body for r in ep.requests}
            for d in deliveries(engine, name):
                assert sent[d.webhook_id] == payload(engine, d.event_id)  # byte for byte
            assert {r.headers["content-type"] for r in ep.requests} == {"application/json"}
            assert abs(int(ep.requests[0].headers["webhook-timestamp"]) - time.time()) < 5


def test_500_is_retried_on_the_schedule_with_the_same_webhook_id(engine: Engine, config, secret) -> None:
    with scripted([500, 500], default=200) as a:
        cfg = configure(engine, config, webhooks_config({"a": a.url}, schedule=(0, 0.3, 0.6, 1), jitter=0.1))
        produce(engine, ["a"])
        deliver(engine, cfg, max_seconds=2.5)
        (d,) = deliveries(engine, "a")
        assert (d.status, d.attempts, d.last_status) == ("delivered", 3, 200)
        assert [r.headers["webhook-id"] for r in a.requests] == [d.webhook_id] * 3
        gaps = [y.at - x.at for x, y in zip(a.requests, a.requests[1:])]
        assert 0.27 <= gaps[0] < 0.6 and 0.54 <= gaps[1] < 1.0, gaps
        verify_all(secret, a.requests)  # each attempt signed afresh


def test_dead_after_the_schedule_then_replayed(engine: Engine, config, secret) -> None:
    with scripted(default=500) as a:
        cfg = configure(engine, config, webhooks_config({"a": a.url}, schedule=(0, 0.1, 0.1)))
        produce(engine, ["a"])
        deliver(engine, cfg, max_seconds=1.0)
        (d,) = deliveries(engine, "a")
        assert (d.status, d.attempts, d.last_status) == ("dead", 3, 500)
        assert "HTTP 500" in d.last_error
        assert len(a.requests) == 3
        a.default = 200
        assert deliver(engine, cfg, until_idle=True).total("attempts") == 0  # dead stays dead
        with engine.begin() as conn:
            assert replay(conn)["requeued"] == 1
        deliver(engine, cfg, until_idle=True)
        (d2,) = deliveries(engine, "a")
        assert (d2.status, d2.attempts, d2.webhook_id) == ("delivered", 1, d.webhook_id)


@pytest.mark.parametrize("form", ["seconds", "http-date"])
def test_429_and_503_retry_after_is_honoured(engine: Engine, config, secret, form: str) -> None:
    def later(status: int) -> Callable[[], tuple[int, dict[str, str]]]:
        def answer() -> tuple[int, dict[str, str]]:
            if form == "seconds":
                return status, {"Retry-After": "1"}
            from email.utils import format_datetime  # whole seconds: 1 to 2 s from now
            return status, {"Retry-After": format_datetime(datetime.now(timezone.utc) + timedelta(seconds=2),
                                                           usegmt=True)}
        return answer

    with scripted([later(429), later(503)], default=200) as a:
        cfg = configure(engine, config, webhooks_config({"a": a.url}, schedule=(0, 0.05, 0.05, 0.05)))
        produce(engine, ["a"])
        deliver(engine, cfg, until_idle=True)
        (d,) = deliveries(engine, "a")
        assert (d.status, d.last_status) == ("pending", 429)
        wait = (d.next_attempt_at - d.last_attempt_at).total_seconds()
        assert 0.9 <= wait <= 2.1, wait  # not the schedule's 0.05 s
        for _ in range(2):
            assert deliver(engine, cfg, until_idle=True).total("attempts") == 0  # not due yet
            time.sleep(max(0.0, (d.next_attempt_at - utcnow()).total_seconds()) + 0.02)
            deliver(engine, cfg, until_idle=True)
            (d,) = deliveries(engine, "a")
        assert (d.status, d.attempts) == ("delivered", 3)
        gaps = [y.at - x.at for x, y in zip(a.requests, a.requests[1:])]
        assert all(g >= 0.9 for g in gaps), gaps


def test_410_disables_the_endpoint_and_replay_enables_it(engine: Engine, config, secret) -> None:
    with scripted([410], default=200) as a, scripted() as b:
        cfg = configure(engine, config, webhooks_config({"a": a.url, "b": b.url}, max_concurrency=1))
        produce(engine, ["a", "b"], 3)
        summary = deliver(engine, cfg, until_idle=True)
        assert summary.endpoints["a"].disabled == 1 and summary.endpoints["b"].delivered == 3
        assert len(a.requests) == 1  # nothing more to a gone endpoint
        assert [d.status for d in deliveries(engine, "a")] == ["disabled"] * 3
        with engine.connect() as conn:
            ep = conn.execute(select(W).where(W.c.id == "a")).one()
        assert ep.disabled_at is not None and "410 Gone" in ep.disabled_reason
        # the producer skips a disabled endpoint; the relay leaves it alone; config sync does not revive it
        produce(engine, ["b"], 2)
        summary = deliver(engine, cfg, until_idle=True)
        assert "a" in summary.skipped and summary.endpoints["b"].delivered == 2
        with engine.begin() as conn:
            out = replay(conn)
            assert (out["requeued"], out["left_disabled_endpoint"]) == (0, 3)
            out = replay(conn, endpoint_ids=["a"], enable=True)
        assert out == {"enabled": ["a"], "requeued": 3, "backfilled": 2, "left_disabled_endpoint": 0}
        deliver(engine, cfg, until_idle=True)
        assert [d.status for d in deliveries(engine, "a")] == ["delivered"] * 5
        assert len({r.headers["webhook-id"] for r in a.requests}) == 5
        verify_all(secret, a.requests)


def test_an_endpoint_timing_out_does_not_delay_the_other(engine: Engine, config, secret) -> None:
    with scripted(default="hang", hang_s=5) as slow, scripted() as fast:
        cfg = configure(engine, config, webhooks_config({"a": slow.url, "b": fast.url}, read=1.5, max_concurrency=2))
        stop = threading.Event()
        relay = threading.Thread(target=deliver, args=(engine, cfg), kwargs={"stop": stop}, daemon=True)
        relay.start()
        try:
            time.sleep(0.3)
            sent = []
            for _ in range(5):
                t0 = time.time()
                produce(engine, ["a", "b"], 2)
                n = len(fast.requests) + 2
                assert wait_for(lambda: len(fast.requests) >= n, 3)
                sent.append(fast.requests[-1].at - t0)
                time.sleep(0.1)
            assert max(sent) < 0.6, sent  # poll interval 0.25 s + the request, though "a" hangs for 1.5 s
            assert wait_for(lambda: sum(bool(d.last_error) for d in deliveries(engine, "a")) >= 4, 6)
        finally:
            stop.set()
            relay.join(10)
        assert not relay.is_alive()
        assert {d.status for d in deliveries(engine, "b")} == {"delivered"}
        errors = {d.last_error for d in deliveries(engine, "a") if d.last_error}
        assert errors == {"no response within 1.5 s (127.0.0.1)"}, errors
        assert max_in_flight(slow) == 2  # max_concurrency: the hanging endpoint gets no more threads


def test_refused_connection_and_redirect_are_failed_attempts(engine: Engine, config, secret) -> None:
    with scripted() as target, scripted(default=(302, {"Location": "TARGET"})) as redirecting:
        redirecting.default = (302, {"Location": target.url})
        cfg = configure(engine, config, webhooks_config(
            {"a": f"http://127.0.0.1:{closed_port()}/hook", "b": redirecting.url}, schedule=(0, 60)))
        produce(engine, ["a", "b"])
        deliver(engine, cfg, until_idle=True)
        (a,) = deliveries(engine, "a")
        (b,) = deliveries(engine, "b")
        assert a.status == "pending" and a.last_status is None and "cannot connect" in a.last_error
        assert b.status == "pending" and b.last_status == 302 and "not followed" in b.last_error
        assert target.requests == []
        assert 50 < (a.next_attempt_at - a.last_attempt_at).total_seconds() < 70


def test_policy_refusal_is_recorded_and_nothing_is_sent(engine: Engine, config, secret) -> None:
    with scripted() as a:
        wh = webhooks_config({"a": a.url}).model_copy(update={"allow_private_hosts": ()})
        cfg = configure(engine, config, wh)
        produce(engine, ["a"])
        deliver(engine, cfg, until_idle=True)
        (d,) = deliveries(engine, "a")
        assert d.status == "pending" and "loopback" in d.last_error and a.requests == []


def test_endpoint_without_a_usable_secret_is_not_served(engine: Engine, config, monkeypatch) -> None:
    monkeypatch.delenv(secret_env_var("a"), raising=False)
    monkeypatch.setenv(secret_env_var("b"), "whsec_c2hvcnQ=")  # "short": too little key
    monkeypatch.setattr("watermon.alerts.delivery._airflow_secret", lambda _id: None)
    with scripted() as a, scripted() as b:
        cfg = configure(engine, config, webhooks_config({"a": a.url, "b": b.url}))
        produce(engine, ["a", "b"])
        summary = deliver(engine, cfg, until_idle=True)
        assert summary.skipped["a"].startswith("no secret: set") and "WATERMON_WEBHOOK_SECRET_A" in summary.skipped["a"]
        assert "from env is unusable (a webhook secret needs at least 16 bytes" in summary.skipped["b"]
        assert a.requests == b.requests == []
        assert [d.status for d in deliveries(engine)] == ["pending"] * 2


def test_claims_are_exclusive_and_a_lost_claim_comes_back_after_the_lease(engine: Engine, config) -> None:
    configure(engine, config, webhooks_config({"a": "http://127.0.0.1:1/"}))
    produce(engine, ["a"], 40)
    got: list[list[int]] = []
    barrier = threading.Barrier(4)

    def grab() -> None:
        barrier.wait()
        mine = []
        for _ in range(10):
            with engine.begin() as conn:
                mine += [c.id for c in claim(conn, "a", 3, utcnow(), timedelta(seconds=30))]
        got.append(mine)

    threads = [threading.Thread(target=grab) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flat = [i for g in got for i in g]
    assert len(flat) == len(set(flat)) == 40  # every delivery claimed once, by one claimer
    assert all(len(g) <= 30 for g in got)
    # a claim whose relay died: invisible until the lease runs out, then claimed again, LIMIT respected
    with engine.begin() as conn:
        conn.execute(update(D).values(next_attempt_at=utcnow() + timedelta(seconds=1)))
        assert claim(conn, "a", 100, utcnow(), timedelta(seconds=30)) == []
        assert len(claim(conn, "a", 1, utcnow() + timedelta(seconds=2), timedelta(seconds=30))) == 1
        again = claim(conn, "a", 100, utcnow() + timedelta(seconds=2), timedelta(seconds=30))
    assert len(again) == 39 and {c.attempts for c in again} == {2}


def test_sync_endpoints_follows_the_configuration(engine: Engine, config) -> None:
    def state() -> dict[str, tuple]:
        with engine.connect() as conn:
            return {r.id: (r.url, r.disabled_reason) for r in conn.execute(select(W))}

    with engine.begin() as conn:
        assert sync_endpoints(conn, config) == 2  # the demo's two ministries
        assert sync_endpoints(conn, config) == 0
        moved = webhooks_config({"kz_ministry": "https://kz.example/hook"})
        sync_endpoints(conn, moved)
    uz_url = config.webhooks.endpoints[1].url
    assert state() == {"kz_ministry": ("https://kz.example/hook", None), "uz_ministry": (uz_url, REMOVED)}
    with engine.begin() as conn:
        sync_endpoints(conn, config)
    assert state()["uz_ministry"] == (config.webhooks.endpoints[1].url, None)


# --- the command line ---------------------------------------------------------------------------

def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    from watermon.alerts.delivery_commands import add_delivery_commands
    from watermon.cli import UsageError, _time
    from watermon.settings import Settings

    p = argparse.ArgumentParser(prog="watermon")
    sub = p.add_subparsers(dest="command")
    add_delivery_commands(sub.add_parser("alerts").add_subparsers(dest="alerts_command"), _time, UsageError)
    args = p.parse_args(argv)
    rc = args.func(args, Settings.from_env())
    return rc, capsys.readouterr().out


def test_cli_deliver_endpoints_replay(engine: Engine, db_url: str, tmp_path: Path, monkeypatch, capsys,
                                      secret) -> None:
    import shutil

    with scripted(default=500) as a, scripted() as b:
        cfg_dir = tmp_path / "config"
        shutil.copytree(ROOT / "config", cfg_dir)
        wh = webhooks_config({"kz": a.url, "uz": b.url}, schedule=(0,))
        (cfg_dir / "webhooks.yaml").write_text(yaml.safe_dump({"webhooks": json.loads(wh.model_dump_json())}))
        monkeypatch.setenv("WATERMON_CONFIG", str(cfg_dir))
        monkeypatch.setenv("WATERMON_DB_URL", db_url)
        rc, out = run_cli(["alerts", "endpoints", "--sync", "--format", "json"], capsys)
        assert rc == 0 and [(r["id"], r["state"], r["secret"]) for r in json.loads(out)] == [
            ("kz", "enabled", "env"), ("uz", "enabled", "env")]
        produce(engine, ["kz", "uz"], 2)
        rc, out = run_cli(["alerts", "deliver", "--json"], capsys)
        doc = json.loads(out)
        assert rc == 0 and (doc["delivered"], doc["dead"]) == (2, 2)
        rc, out = run_cli(["alerts", "endpoints", "--format", "json"], capsys)
        rows = {r["id"]: r for r in json.loads(out)}
        assert (rows["kz"]["dead"], rows["uz"]["delivered"]) == (2, 2) and "HTTP 500" in rows["kz"]["last_error"]
        rc, out = run_cli(["alerts", "replay", "--endpoint", "kz", "--dry-run"], capsys)
        assert out.startswith("dry run: 2 deliveries (dead/disabled) would be queued again")
        assert {d.status for d in deliveries(engine, "kz")} == {"dead"}
        a.default = 200
        run_cli(["alerts", "replay", "--endpoint", "kz"], capsys)
        rc, out = run_cli(["alerts", "deliver", "--max-seconds", "0.5"], capsys)
        assert rc == 0 and "kz: 2 delivered" in out
        rc, out = run_cli(["alerts", "endpoints", "--new-secret"], capsys)
        assert signing.secret_key(out.strip())
        from watermon.cli import UsageError

        with pytest.raises(UsageError, match="unknown endpoint"):
            run_cli(["alerts", "deliver", "--endpoint", "nope"], capsys)
