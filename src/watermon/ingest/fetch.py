"""Pull a time window from a source's HTTP endpoint into its inbox.

The payload is saved before it is ingested, so what was received stays on disk for
audit and a re-fetch of an unchanged window is recognised by its sha256.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import httpx

from watermon.config.models import Source


class FetchError(RuntimeError):
    pass


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def fetch_window(source: Source, start: datetime, end: datetime, inbox: Path) -> Path:
    """Download ``[start, end)`` from ``source.http`` into ``inbox``; returns the file."""
    if source.http is None:
        raise FetchError(f"source {source.id} has no http endpoint configured")
    url = source.http.url.format(start=_iso(start), end=_iso(end))
    headers = {"Accept": "application/json"}
    if source.http.token_env:
        token = os.environ.get(source.http.token_env)
        if not token:
            raise FetchError(f"source {source.id}: environment variable {source.http.token_env} is not set")
        headers["Authorization"] = f"Bearer {token}"
    try:
        resp = httpx.get(url, headers=headers, timeout=source.http.timeout_s, follow_redirects=False)
    except httpx.HTTPError as exc:
        raise FetchError(f"source {source.id}: GET {url}: {exc}") from exc
    if resp.status_code != 200:
        raise FetchError(f"source {source.id}: GET {url}: HTTP {resp.status_code}: {resp.text[:200]}")
    inbox.mkdir(parents=True, exist_ok=True)
    fetched = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    name = f"{source.id}_{start:%Y%m%dT%H%M}_{end:%Y%m%dT%H%M}_fetched{fetched}.json"
    path = inbox / name
    tmp = path.with_suffix(".part")
    tmp.write_bytes(resp.content)
    tmp.replace(path)
    return path
