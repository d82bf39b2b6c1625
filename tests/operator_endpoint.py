"""A reservoir operator's HTTP endpoint on loopback, for the fetch and DAG tests.

It answers ``GET ...?start=...&end=...`` with one Chardara record at ``start``, and
keeps the request paths so tests can check which window was asked for.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

LEVEL_M = 250.5


@dataclass
class Endpoint:
    url: str
    """URL template with ``{start}`` and ``{end}``, as in a source's ``http.url``."""
    requests: list[str] = field(default_factory=list)


@contextmanager
def operator_endpoint(token: str | None = None) -> Iterator[Endpoint]:
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            seen.append(self.path)
            if token and self.headers.get("Authorization") != f"Bearer {token}":
                self.send_response(401)
                self.end_headers()
                return
            start = parse_qs(urlparse(self.path).query)["start"][0]
            body = json.dumps({"records": [{"station": "CHARDARA", "time": start,
                                            "level": {"value": LEVEL_M, "unit": "m"}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield Endpoint(f"http://127.0.0.1:{server.server_port}/records?start={{start}}&end={{end}}", seen)
    finally:
        server.shutdown()
        server.server_close()
