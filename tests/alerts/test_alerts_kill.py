"""SIGKILL the relay process again and again while alerts keep coming and two receivers run.

Afterwards every event has reached each receiver at least once, and each receiver holds
it exactly once (de-duplicated by ``webhook-id``). The copies a receiver got more than
once (a relay killed after the receiver stored the alert but before the relay recorded
it) are counted and reported.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from sqlalchemy import Engine, func, select

from tests.alerts.test_alerts_delivery import ROOT, deliveries, produce, utcnow, wait_for, webhooks_config
from watermon.alerts import signing
from watermon.alerts.delivery import deliver, secret_env_var, sync_endpoints
from watermon.alerts.receiver import Handler, ReceiverServer, ReceiverStore
from watermon.config import load_config
from watermon.db.schema import Delivery

pytestmark = pytest.mark.slow

KILLS = 32
D = Delivery.__table__

# The relay as `watermon alerts deliver --forever` runs it, reading only webhooks.yaml (start-up in 0.7 s).
RELAY = """\
import os, pathlib, yaml
from watermon.alerts.delivery import deliver
from watermon.config.webhooks import WebhooksConfig
from watermon.db.engine import make_engine

doc = yaml.safe_load(pathlib.Path(os.environ["WATERMON_CONFIG"], "webhooks.yaml").read_text())
deliver(make_engine(os.environ["WATERMON_DB_URL"]), WebhooksConfig.model_validate(doc["webhooks"]))
"""


class SlowHandler(Handler):
    """A receiver that takes 0-20 ms per alert, so that kills often find requests in flight."""

    def do_POST(self) -> None:  # noqa: N802
        self.server.in_flight += 1
        try:
            time.sleep(random.uniform(0, 0.02))
            super().do_POST()
        finally:
            self.server.in_flight -= 1


def test_relay_killed_many_times_loses_nothing(engine: Engine, db_url: str, tmp_path: Path, monkeypatch,
                                               capsys) -> None:
    rng = random.Random(20261128)
    secret = signing.new_secret()
    receivers = {}
    for ep in ("kz", "uz"):
        server = ReceiverServer(ReceiverStore(tmp_path / f"{ep}.db"), [secret], handler=SlowHandler)
        server.in_flight = 0
        server.start()
        receivers[ep] = server
    cfg_dir = tmp_path / "config"
    shutil.copytree(ROOT / "config", cfg_dir)
    wh = webhooks_config({ep: r.url for ep, r in receivers.items()}, schedule=(0, 0.2, 0.5, 1, 1, 1, 1, 1),
                         claim_lease="PT1S", connect=1, read=2)
    (cfg_dir / "webhooks.yaml").write_text(yaml.safe_dump({"webhooks": json.loads(wh.model_dump_json())}))
    cfg = load_config(cfg_dir)
    with engine.begin() as conn:
        sync_endpoints(conn, cfg)
    for ep in receivers:
        monkeypatch.setenv(secret_env_var(ep), secret)
    env = {**os.environ, "WATERMON_DB_URL": db_url, "WATERMON_CONFIG": str(cfg_dir)}

    produced: list[int] = []
    stop_producing = threading.Event()

    def producer() -> None:  # the alert evaluation, writing events while the relay dies and restarts
        while not stop_producing.is_set():
            produced.extend(produce(engine, list(receivers), 3))
            stop_producing.wait(0.05)

    def requests() -> int:
        return sum(r.store.counts()["requests"] for r in receivers.values())

    feeding = threading.Thread(target=producer, daemon=True)
    feeding.start()
    kills = mid_request = claims_in_flight = 0
    started = time.monotonic()
    to_first: list[float] = []
    try:
        while kills < KILLS:
            relay = subprocess.Popen([sys.executable, "-c", RELAY], env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
            spawned = time.monotonic()
            seen = requests()
            if not wait_for(lambda: requests() > seen or relay.poll() is not None, 20, 0.005):
                pytest.fail("the relay sent nothing within 20 s")
            to_first.append(time.monotonic() - spawned)
            if relay.poll() is not None:
                pytest.fail(f"the relay exited by itself: {relay.stderr.read()}")
            time.sleep(rng.uniform(0, 0.4))
            in_flight = sum(r.in_flight for r in receivers.values())
            relay.send_signal(signal.SIGKILL)
            relay.wait()
            relay.stderr.close()
            kills += 1
            mid_request += in_flight > 0
            with engine.connect() as conn:  # claimed, not recorded: sent again once the lease runs out
                claims_in_flight += conn.execute(select(func.count()).select_from(D).where(
                    D.c.status == "pending", D.c.attempts > 0, D.c.next_attempt_at > utcnow())).scalar()
    finally:
        stop_producing.set()
        feeding.join()
    elapsed = time.monotonic() - started

    # an undisturbed relay finishes the queue once the last leases have run out
    time.sleep(1.2)
    summary = deliver(engine, cfg, until_idle=True)
    assert not summary.errors and not summary.skipped
    for server in receivers.values():
        server.stop()

    rows = deliveries(engine)
    assert len(rows) == 2 * len(produced)
    assert {r.status for r in rows} == {"delivered"}
    assert all(r.last_error is None for r in rows)
    report = {}
    for ep, server in receivers.items():
        expected = {r.webhook_id for r in rows if r.endpoint_id == ep}
        held = server.store.received()
        assert set(held) == expected  # every event reached the receiver at least once
        assert len(held) == len(produced)  # and it holds each exactly once
        counts = server.store.counts()
        assert counts["rejected"] == 0
        report[ep] = counts
        server.store.close()
    duplicates = sum(c["duplicates"] for c in report.values())
    reclaimed = sum(r.attempts - 1 for r in rows)
    # a duplicate needs a kill between the receiver's answer and the relay's record: at most the claims in flight
    assert duplicates <= claims_in_flight
    assert mid_request >= KILLS // 4 and claims_in_flight > 0  # the kills did land mid-delivery
    with capsys.disabled():
        print(f"\n[{engine.dialect.name}] relay SIGKILLed {kills} times in {elapsed:.0f} s (first request "
              f"{statistics.median(to_first):.2f} s after each start, median; {mid_request} kills with a request "
              f"in flight at a receiver, {claims_in_flight} claimed deliveries unrecorded); "
              f"{len(produced)} events x 2 receivers; "
              f"{reclaimed} deliveries sent again after a kill; duplicates before de-dup: "
              + ", ".join(f"{ep} {c['duplicates']} of {c['requests']} requests" for ep, c in report.items())
              + "; after de-dup: every event exactly once at each receiver")
