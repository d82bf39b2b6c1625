"""The reference receiver: signatures (made by the independent ``standardwebhooks``), de-duplication, listing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine
from standardwebhooks import Webhook

from tests.alerts.test_alerts_delivery import configure, deliveries, produce, webhooks_config
from watermon.alerts import signing
from watermon.alerts.delivery import deliver, secret_env_var
from watermon.alerts.receiver import ReceiverServer, ReceiverStore

BODY = json.dumps({"type": "alert.opened", "timestamp": "2026-04-01T08:00:00Z",
                   "data": {"station": "16279", "level": "danger", "message": "<b>Чирчик</b> ↑"}},
                  ensure_ascii=False).encode()


def their_headers(secret: str, msg_id: str, body: bytes = BODY, at: datetime | None = None) -> dict[str, str]:
    """Headers signed by the standardwebhooks package, not by watermon."""
    at = at or datetime.now(timezone.utc)
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": Webhook(secret).sign(msg_id, at, body.decode()), "content-type": "application/json"}


@pytest.fixture
def receiver(tmp_path: Path):
    secret = signing.new_secret()
    server = ReceiverServer(ReceiverStore(tmp_path / "receiver.db"), [secret])
    server.start()
    yield server, secret
    server.stop()
    server.store.close()


def test_verifies_deduplicates_stores_and_lists(receiver) -> None:
    server, secret = receiver
    with httpx.Client() as client:
        r = client.post(server.url, content=BODY, headers=their_headers(secret, "msg_1"))
        assert (r.status_code, r.json()["status"]) == (200, "stored")
        r = client.post(server.url, content=BODY, headers=their_headers(secret, "msg_1"))  # a retry
        assert (r.status_code, r.json()["status"]) == (200, "duplicate")
        other = BODY.replace(b"danger", b"warning")
        assert client.post(server.url, content=other, headers=their_headers(secret, "msg_2", other)).status_code == 200

        # refused: tampered body, wrong secret, stale or future timestamp, no signature
        tampered = BODY.replace(b"danger", b"watch")
        assert client.post(server.url, content=tampered, headers=their_headers(secret, "msg_3")).status_code == 401
        wrong = their_headers(signing.new_secret(), "msg_4")
        assert client.post(server.url, content=BODY, headers=wrong).status_code == 401
        old = datetime.fromtimestamp(time.time() - 400, timezone.utc)
        r = client.post(server.url, content=BODY, headers=their_headers(secret, "msg_5", at=old))
        assert r.status_code == 401 and "too old" in r.json()["error"]
        new = datetime.fromtimestamp(time.time() + 400, timezone.utc)
        assert client.post(server.url, content=BODY, headers=their_headers(secret, "msg_6", at=new)).status_code == 401
        assert client.post(server.url, content=BODY).status_code == 401
        # signed but not an alert event; wrong path
        not_alert = their_headers(secret, "msg_7", b"[1]")
        assert client.post(server.url, content=b"[1]", headers=not_alert).status_code == 400
        r = client.post(server.url + "x", content=BODY, headers=their_headers(secret, "msg_8"))
        assert r.status_code == 404 and r.headers["connection"] == "close"  # the unread body ends the connection

        alerts = client.get(server.url.replace("/webhook", "/alerts")).json()
        assert [(a["webhook_id"], a["copies"]) for a in sorted(alerts, key=lambda a: a["webhook_id"])] == [
            ("msg_1", 2), ("msg_2", 1)]
        assert {a["data"]["level"] for a in alerts} == {"danger", "warning"}
        assert len(client.get(server.url.replace("/webhook", "/alerts?limit=1")).json()) == 1
        health = client.get(server.url.replace("/webhook", "/health")).json()
        assert health == {"ok": True, "alerts": 2, "requests": 3, "duplicates": 1, "rejected": 5}
        page = client.get(server.url.replace("/webhook", "/")).text
        assert "&lt;b&gt;Чирчик&lt;/b&gt;" in page and "<b>Чирчик" not in page  # escaped


def test_accepts_either_secret_while_one_is_rotated(tmp_path: Path) -> None:
    old, new = signing.new_secret(), signing.new_secret()
    server = ReceiverServer(ReceiverStore(tmp_path / "r.db"), [old, new])
    server.start()
    try:
        for i, s in enumerate((old, new)):
            assert httpx.post(server.url, content=BODY, headers=their_headers(s, f"msg_{i}")).status_code == 200
        assert httpx.post(server.url, content=BODY, headers=their_headers(signing.new_secret(), "x")).status_code == 401
    finally:
        server.stop()


def test_relay_to_receiver_end_to_end(engine: Engine, config, receiver, monkeypatch) -> None:
    server, secret = receiver
    monkeypatch.setenv(secret_env_var("a"), secret)
    cfg = configure(engine, config, webhooks_config({"a": server.url}))
    produce(engine, ["a"], 3)
    deliver(engine, cfg, until_idle=True)
    held = server.store.received()
    assert {d.webhook_id for d in deliveries(engine, "a")} == set(held)
    assert all(copies == 1 for _, copies in held.values())


def test_receive_command(tmp_path: Path) -> None:
    secret = signing.new_secret()
    env = {**os.environ, "MINISTRY_SECRET": secret, "WATERMON_DATA_DIR": str(tmp_path)}
    db = tmp_path / "ministry.db"
    proc = subprocess.Popen([sys.executable, "-m", "watermon.cli", "receive", "--port", "0", "--secret-env",
                             "MINISTRY_SECRET", "--db", str(db)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("receiving alerts at http://127.0.0.1:"), line
        url = line.split()[3]
        for msg in ("msg_a", "msg_b", "msg_a"):
            assert httpx.post(url, content=BODY, headers=their_headers(secret, msg)).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "2 alerts stored, 1 duplicate copies, 0 requests refused" in out
    listed = subprocess.run([sys.executable, "-m", "watermon.cli", "receive", "--list", "--db", str(db),
                             "--format", "json"], env=env, capture_output=True, text=True, check=True)
    assert sorted(a["webhook_id"] for a in json.loads(listed.stdout)) == ["msg_a", "msg_b"]
    table = subprocess.run([sys.executable, "-m", "watermon.cli", "receive", "--list", "--db", str(db)],
                           env=env, capture_output=True, text=True, check=True).stdout
    assert "alert.opened" in table and "station=16279, level=danger" in table
    missing = subprocess.run([sys.executable, "-m", "watermon.cli", "receive", "--secret-env", "NOPE_NOT_SET"],
                             env=env, capture_output=True, text=True)
    assert missing.returncode == 2 and "no secret in $NOPE_NOT_SET" in missing.stderr
