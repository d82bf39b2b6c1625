"""Alert delivery: end-to-end latency and throughput on loopback, with both ministries up and with one down.

Latency is measured from the commit of an alert event and its outbox rows (what the
alert evaluation writes when a threshold crossing is stored) to the moment the
ministry's receiver has stored the alert (its ``received_at``, written in the same
transaction that makes it durable). The pieces run as in production, one process each:

* the relay, ``deliver(...)`` in long-running mode (as ``watermon alerts deliver --forever``
  runs it), with the configuration's defaults (poll every 0.25 s, 4 requests in flight per
  endpoint, connect/read timeouts 5 s/15 s);
* one ``watermon receive`` per ministry (its own SQLite file, fsync on every alert);
* the producer (this process), writing ``--rate`` events a second for ``--seconds``.

Scenarios, each on a fresh database:

1. both endpoints healthy;
2. the Uzbek endpoint refusing connections (nothing listens on its port);
3. the Uzbek endpoint timing out (a socket that accepts connections and never answers);
4. throughput: ``--burst`` events written at once, both healthy, until both receivers hold all.

Target (issue 6): p95 < 1 s with both healthy; with one down, the other's p95 unchanged.

Run: ``.venv/bin/python benchmarks/alerts.py [--db sqlite|postgresql] [--rate 20] [--seconds 15] [--burst 2000]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sqlalchemy import select  # noqa: E402

from ingest import Databases, fresh_engine  # noqa: E402
from watermon.alerts.lifecycle import write_deliveries  # noqa: E402
from watermon.alerts.signing import new_secret  # noqa: E402
from watermon.config import load_config  # noqa: E402
from watermon.db.schema import Alert, AlertEvent, Delivery, Station  # noqa: E402

RELAY = """\
import os, signal, threading
from watermon.alerts.delivery import deliver
from watermon.config import load_config
from watermon.db.engine import make_engine

stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
print(deliver(make_engine(os.environ["WATERMON_DB_URL"]), load_config(os.environ["WATERMON_CONFIG"]),
              stop=stop).summary(), flush=True)
"""
ENDPOINTS = {"kz_ministry": "kazhydromet", "uz_ministry": "uzhydromet"}


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Receiver:
    """``watermon receive`` in its own process."""

    def __init__(self, work: Path, name: str, secret: str) -> None:
        self.db = work / f"{name}.db"
        env = {**os.environ, "BENCH_SECRET": secret}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "watermon.cli", "receive", "--port", "0", "--secret-env", "BENCH_SECRET",
             "--db", str(self.db)], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        self.url = line.split()[3]
        self.health = self.url.replace("/webhook", "/health")

    def count(self) -> int:
        return httpx.get(self.health).json()["alerts"]

    def received(self) -> dict[str, float]:
        con = sqlite3.connect(self.db)
        rows = dict(con.execute("SELECT webhook_id, received_at FROM alert_message"))
        con.close()
        return rows

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.communicate(timeout=10)


class Blackhole:
    """Accepts TCP connections (the kernel does, from the backlog) and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/webhook"

    def stop(self) -> None:
        self.sock.close()


def write_config(work: Path, urls: dict[str, str]) -> Path:
    cfg = work / "config"
    shutil.rmtree(cfg, ignore_errors=True)
    shutil.copytree(ROOT / "config", cfg)
    doc = yaml.safe_load((cfg / "webhooks.yaml").read_text())
    for ep in doc["webhooks"]["endpoints"]:
        ep["url"] = urls[ep["id"]]
    (cfg / "webhooks.yaml").write_text(yaml.safe_dump(doc))
    return cfg


def produce(engine, alert_id: int, n: int) -> dict[int, float]:
    """``n`` events and their outbox rows in one transaction, as the alert evaluation writes them
    (the rows by :func:`watermon.alerts.lifecycle.write_deliveries`; the body is a fixed example)."""
    now = datetime.now(timezone.utc)
    ids = []
    with engine.begin() as conn:
        for _ in range(n):
            body = {"type": "alert.escalated", "timestamp": now.isoformat().replace("+00:00", "Z"),
                    "data": {"alert_id": alert_id, "station": "16279", "level": "danger", "value": 412.0,
                             "threshold": 380.0, "messages": {"en": "Discharge above the danger level"}}}
            eid = conn.execute(AlertEvent.__table__.insert().values(
                alert_id=alert_id, event="escalated", level="danger", at=now, payload=json.dumps(body))
                .returning(AlertEvent.id)).scalar_one()
            assert write_deliveries(conn, eid, list(ENDPOINTS.values())) == 2  # the producer's own outbox writer
            ids.append(eid)
    t = time.time()  # committed
    return {eid: t for eid in ids}


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def scenario(name: str, dbs: Databases, config, work: Path, secret: str, *, down: str | None, rate: float,
             seconds: float, burst: int = 0) -> dict[str, dict[str, float]]:
    from watermon.alerts.delivery import sync_endpoints

    url = dbs.url(name.replace(" ", "_").replace("-", "_"))
    engine = fresh_engine(url, config)
    receivers = {ep: Receiver(work, f"{name}-{ep}", secret) for ep in ENDPOINTS if ep != "uz_ministry" or not down}
    hole = Blackhole() if down == "timeout" else None
    urls = {ep: r.url for ep, r in receivers.items()}
    if down == "refused":
        urls["uz_ministry"] = f"http://127.0.0.1:{free_port()}/webhook"
    elif down == "timeout":
        urls["uz_ministry"] = hole.url
    cfg_dir = write_config(work, urls)
    cfg = load_config(cfg_dir)
    with engine.begin() as conn:
        sync_endpoints(conn, cfg)
        station = conn.execute(select(Station.id).order_by(Station.id)).scalars().first()
        now = datetime.now(timezone.utc)
        alert_id = conn.execute(Alert.__table__.insert().values(
            rule_id="bench", kind="threshold", station_id=station, level="danger", status="open", opened_at=now,
            updated_at=now, details="{}").returning(Alert.id)).scalar_one()
    env = {**os.environ, "WATERMON_DB_URL": url, "WATERMON_CONFIG": str(cfg_dir),
           **{f"WATERMON_WEBHOOK_SECRET_{ep.upper()}": secret for ep in ENDPOINTS}}
    relay = subprocess.Popen([sys.executable, "-c", RELAY], env=env, stdout=subprocess.PIPE, text=True)
    # the relay's start-up is not part of an alert's latency: one warm-up event, not counted
    warmup = produce(engine, alert_id, 1)
    while any(r.count() < 1 for r in receivers.values()):
        time.sleep(0.05)
    committed: dict[int, float] = {}
    t_start = time.time()
    if burst:
        committed.update(produce(engine, alert_id, burst))
    else:
        n = int(rate * seconds)
        for i in range(n):
            target = t_start + i / rate
            time.sleep(max(0.0, target - time.time()))
            committed.update(produce(engine, alert_id, 1))
    expected = len(committed)
    deadline = time.time() + 120
    while time.time() < deadline and any(r.count() < expected + len(warmup) for r in receivers.values()):
        time.sleep(0.05)
    relay.terminate()
    relay_out, _ = relay.communicate(timeout=60)
    with engine.connect() as conn:
        owner = {r.webhook_id: (r.event_id, r.endpoint_id) for r in conn.execute(select(Delivery.__table__))}
    results: dict[str, dict[str, float]] = {}
    for ep, r in receivers.items():
        held = r.received()
        lat = [t - committed[owner[w][0]] for w, t in held.items() if owner[w][0] in committed]
        res = {"n": len(lat), "expected": expected, "p50": percentile(lat, 50), "p95": percentile(lat, 95),
               "max": max(lat) if lat else float("nan")}
        if burst:
            res["seconds"] = max(t for w, t in held.items() if owner[w][0] in committed) - t_start
        results[ep] = res
        r.stop()
    if hole:
        hole.stop()
    if down:
        with engine.connect() as conn:
            rows = [r for r in conn.execute(select(Delivery.__table__).where(Delivery.endpoint_id == "uz_ministry"))]
        errors = {(r.last_error or "").split(" (")[0].split(":")[0] for r in rows if r.last_error}
        results["uz_ministry (down)"] = {"pending": sum(r.status == "pending" for r in rows),
                                         "attempts": sum(r.attempts for r in rows), "errors": sorted(errors)}
    results["relay"] = {"summary": relay_out.strip()}
    engine.dispose()
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    p.add_argument("--rate", type=float, default=20.0, help="events a second in the latency scenarios")
    p.add_argument("--seconds", type=float, default=15.0, help="length of each latency scenario")
    p.add_argument("--burst", type=int, default=2000, help="events written at once for the throughput scenario")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="watermon-bench-alerts-"))
    dbs = Databases(args.db, work)
    config = load_config(ROOT / "config")
    secret = new_secret()
    print(f"alert delivery on loopback, {args.db}; {args.rate:g} events/s for {args.seconds:g} s per latency "
          f"scenario (x2 endpoints); {os.cpu_count()} CPUs")
    try:
        runs = {}
        for name, down in (("healthy", None), ("uz-refused", "refused"), ("uz-timeout", "timeout")):
            runs[name] = scenario(name, dbs, config, work, secret, down=down, rate=args.rate, seconds=args.seconds)
        burst = scenario("burst", dbs, config, work, secret, down=None, rate=0, seconds=0, burst=args.burst)
    finally:
        dbs.close()
        shutil.rmtree(work, ignore_errors=True)

    base = runs["healthy"]["kz_ministry"]["p95"]
    print(f"\n{'scenario':<12} {'endpoint':<12} {'alerts':>9} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} "
          f"{'p95 vs healthy':>15}")
    for name, res in runs.items():
        for ep in ENDPOINTS:
            r = res.get(ep)
            if r is None:
                continue
            ratio = r["p95"] / (base if ep == "kz_ministry" else runs["healthy"]["uz_ministry"]["p95"])
            print(f"{name:<12} {ep:<12} {r['n']:>4}/{r['expected']:<4} {r['p50'] * 1000:>8.0f} "
                  f"{r['p95'] * 1000:>8.0f} {r['max'] * 1000:>8.0f} {ratio:>14.2f}x")
        if "uz_ministry (down)" in res:
            d = res["uz_ministry (down)"]
            print(f"{'':<12} {'uz_ministry':<12} down: {d['pending']} pending, {d['attempts']} attempts, "
                  f"errors: {'; '.join(d['errors'])}")
    total = sum(burst[ep]["n"] for ep in ENDPOINTS)
    secs = max(burst[ep]["seconds"] for ep in ENDPOINTS)
    print(f"\nthroughput: {args.burst} events x 2 endpoints = {total} deliveries in {secs:.2f} s "
          f"= {total / secs:.0f} deliveries/s (p50 {burst['kz_ministry']['p50']:.2f} s, "
          f"p95 {burst['kz_ministry']['p95']:.2f} s after the burst's commit)")
    ok = runs["healthy"]["kz_ministry"]["p95"] < 1 and runs["healthy"]["uz_ministry"]["p95"] < 1
    worst = max(runs[s]["kz_ministry"]["p95"] / base for s in ("uz-refused", "uz-timeout"))
    print(f"target p95 < 1 s with both healthy: {'met' if ok else 'MISSED'}; kz p95 with uz down: "
          f"at most {worst:.2f}x the healthy p95")


if __name__ == "__main__":
    main()
