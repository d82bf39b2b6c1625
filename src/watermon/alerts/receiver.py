"""A reference receiver a ministry can run: ``watermon receive``.

It accepts Standard Webhooks v1 POSTs, verifies the signature and that the timestamp is
within five minutes of its clock (``401`` otherwise), stores each alert once in its own
SQLite file keyed by ``webhook-id`` (a retried delivery is answered ``200`` again but
stored once; the count of copies is kept), and answers only once the alert is on disk
(``synchronous=FULL``), so an acknowledged alert is never lost to a crash.

``GET /alerts`` lists the stored alerts as JSON (newest first; ``?limit=N``,
``?since=<unix time>``), ``GET /`` shows them as a page, ``GET /health`` counts them.
It needs nothing of watermon but this module: no database, no configuration.
"""

from __future__ import annotations

import html
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from watermon.alerts import signing

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20

SCHEMA = """
CREATE TABLE IF NOT EXISTS alert_message (
    webhook_id        TEXT PRIMARY KEY,
    received_at       REAL NOT NULL,      -- unix time the alert was first stored
    webhook_timestamp INTEGER NOT NULL,   -- the sender's webhook-timestamp of that first copy
    type              TEXT,
    event_time        TEXT,               -- the body's timestamp
    body              TEXT NOT NULL,      -- the JSON body as received
    copies            INTEGER NOT NULL DEFAULT 1,  -- verified requests with this id (retries included)
    last_received_at  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_alert_message_received ON alert_message (received_at);
"""


class ReceiverStore:
    """The receiver's SQLite file: one row per ``webhook-id``."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self.rejected = 0

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def store(self, webhook_id: str, webhook_timestamp: int, body: bytes, doc: dict[str, Any]) -> bool:
        """Keep an alert; True if it is new, False for another copy of one already stored."""
        now = time.time()
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO alert_message (webhook_id, received_at, webhook_timestamp, type, event_time, body,"
                " last_received_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (webhook_id) DO UPDATE SET"
                " copies = copies + 1, last_received_at = excluded.last_received_at RETURNING copies",
                (webhook_id, now, webhook_timestamp, str(doc.get("type")), str(doc.get("timestamp")),
                 body.decode("utf-8"), now))
            (copies,) = cur.fetchone()
            cur.close()
        return copies == 1

    def alerts(self, limit: int | None = 100, since: float | None = None) -> list[dict[str, Any]]:
        sql = "SELECT webhook_id, received_at, type, event_time, body, copies FROM alert_message"
        args: list[Any] = []
        if since is not None:
            sql += " WHERE received_at >= ?"
            args.append(since)
        sql += " ORDER BY received_at DESC, webhook_id"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [{"webhook_id": w, "received_at": datetime.fromtimestamp(r, timezone.utc).isoformat(),
                 "type": t, "timestamp": ts, "data": json.loads(b).get("data"), "copies": c}
                for w, r, t, ts, b, c in rows]

    def counts(self) -> dict[str, int]:
        with self._lock:
            n, total = self._db.execute("SELECT count(*), coalesce(sum(copies), 0) FROM alert_message").fetchone()
        return {"alerts": n, "requests": total, "duplicates": total - n, "rejected": self.rejected}

    def received(self) -> dict[str, tuple[float, int]]:
        """webhook-id -> (when first stored, copies): for tests and the benchmark."""
        with self._lock:
            return {w: (r, c) for w, r, c in
                    self._db.execute("SELECT webhook_id, received_at, copies FROM alert_message")}


class Handler(BaseHTTPRequestHandler):
    server: ReceiverServer
    protocol_version = "HTTP/1.1"  # keep-alive: the relay reuses its connection
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

    def _reply(self, status: int, doc: Any = None, *, content_type: str = "application/json",
               text: str | None = None) -> None:
        data = (text if text is not None else json.dumps(doc, ensure_ascii=False)).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", f"{content_type}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:  # say so, or a keep-alive client sends its next request into a closed socket
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802
        srv = self.server
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            length = -1
        if urlsplit(self.path).path != srv.path or not 0 <= length <= MAX_BODY:
            self.close_connection = True  # the body is not read: the connection cannot carry another request
            if urlsplit(self.path).path != srv.path:
                self._reply(404, {"error": f"POST alerts to {srv.path}"})
            else:
                self._reply(413 if length > MAX_BODY else 411, {"error": f"a body of at most {MAX_BODY} bytes, "
                                                                         "with its Content-Length"})
            return
        body = self.rfile.read(length)
        if len(body) < length:  # the sender went away mid-request (it will send the whole alert again)
            self.close_connection = True
            return
        try:
            msg_id = signing.verify(srv.secrets, dict(self.headers.items()), body, tolerance=srv.tolerance)
        except signing.VerificationError as exc:
            srv.store.rejected += 1
            log.warning("refused a request from %s: %s", self.client_address[0], exc)
            self._reply(401, {"error": str(exc)})
            return
        try:
            doc = json.loads(body)
            if not isinstance(doc, dict) or "type" not in doc:
                raise ValueError("expected a JSON object with a type")
        except ValueError as exc:
            self._reply(400, {"error": f"not an alert event: {exc}"})
            return
        new = srv.store.store(msg_id, int(self.headers["webhook-timestamp"]), body, doc)
        if new:
            log.info("stored %s %s", doc.get("type"), msg_id)
        self._reply(200, {"status": "stored" if new else "duplicate", "webhook_id": msg_id})

    def do_GET(self) -> None:  # noqa: N802
        parts = urlsplit(self.path)
        q = parse_qs(parts.query)
        try:
            limit = int(q.get("limit", ["100"])[0])
            since = float(q["since"][0]) if "since" in q else None
        except ValueError:
            self._reply(400, {"error": "limit is an integer, since a unix time"})
            return
        if parts.path == "/alerts":
            self._reply(200, self.server.store.alerts(limit=limit, since=since))
        elif parts.path == "/health":
            self._reply(200, {"ok": True, **self.server.store.counts()})
        elif parts.path == "/":
            self._reply(200, content_type="text/html", text=page(self.server.store.alerts(limit=limit)))
        else:
            self._reply(404, {"error": "GET /alerts, /health or /"})

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("%s " + fmt, self.client_address[0], *args)


class ReceiverServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, store: ReceiverStore, secrets: Sequence[str], host: str = "127.0.0.1", port: int = 0,
                 path: str = "/webhook", tolerance: float = signing.TOLERANCE_S,
                 handler: type[Handler] = Handler) -> None:
        for s in secrets:
            signing.secret_key(s)  # refuse a malformed secret at start
        self.store, self.secrets, self.path, self.tolerance = store, list(secrets), path, tolerance
        super().__init__((host, port), handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}{self.path}"

    def start(self) -> threading.Thread:
        """Serve in a background thread (tests, the benchmark)."""
        t = threading.Thread(target=self.serve_forever, name=f"receiver-{self.server_address[1]}", daemon=True)
        t.start()
        return t

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def summary_of(data: Any, width: int = 120) -> str:
    """A one-line excerpt of an event's data for lists: well-known fields and the message, if any."""
    text = ""
    if isinstance(data, dict):
        fields = []
        for k in ("station", "station_name", "variable", "level", "status", "event", "value", "threshold"):
            v = data.get(k)
            if isinstance(v, dict):  # e.g. the station as {code, name, ...}
                v = v.get("code") or v.get("name")
            if isinstance(v, (str, int, float)) and not isinstance(v, bool):
                fields.append(f"{k}={v}")
        text = ", ".join(fields)
        for k in ("message", "messages", "title", "headline", "summary"):
            msg = data.get(k)
            if isinstance(msg, dict) and msg:  # per language: English if there, else the first
                msg = msg.get("en", next(iter(msg.values())))
            if isinstance(msg, str) and msg:
                text = f"{text}: {msg}" if text else msg
                break
    if not text:
        text = json.dumps(data, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def page(alerts: list[dict[str, Any]]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(a['received_at'][:19])}Z</td><td>{html.escape(str(a['type']))}</td>"
        f"<td>{html.escape(str(a['timestamp']))}</td><td>{html.escape(summary_of(a['data']))}</td>"
        f"<td>{a['copies']}</td></tr>"
        for a in alerts)
    return ("<!doctype html><html><head><meta charset='utf-8'><meta http-equiv='refresh' content='15'>"
            "<title>watermon alerts received</title><style>body{font-family:sans-serif}td,th{padding:2px 8px;"
            "text-align:left}tr:nth-child(even){background:#eee}</style></head><body>"
            f"<h1>Alerts received ({len(alerts)} shown)</h1><table><tr><th>received (UTC)</th><th>type</th>"
            f"<th>event time</th><th>data</th><th>copies</th></tr>{rows}</table></body></html>")
