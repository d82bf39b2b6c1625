"""Alert delivery configuration (``config/webhooks.yaml``): the ministries' endpoints, retries, URL policy.

Alerts go to each ministry as Standard Webhooks v1 (signed HTTP POSTs). Secrets are never
in this file: each endpoint's ``whsec_...`` secret comes from the Airflow connection
``watermon_webhook_<id>`` (its password) or the environment variable
``WATERMON_WEBHOOK_SECRET_<ID>`` (see :func:`watermon.alerts.delivery.endpoint_secret`).

Production endpoints are ``https://`` URLs on public addresses. Plain HTTP, and targets
that resolve to private, loopback or link-local addresses, are refused unless their host
is listed in ``allow_insecure_hosts`` / ``allow_private_hosts`` (the demo allows
``127.0.0.1``, where ``watermon receive`` listens).
"""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Standard Webhooks' recommended schedule: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h
# (about 27.6 hours from the first attempt to the last).
DEFAULT_SCHEDULE: tuple[timedelta, ...] = (
    timedelta(0), timedelta(seconds=5), timedelta(minutes=5), timedelta(minutes=30),
    timedelta(hours=2), timedelta(hours=5), timedelta(hours=10), timedelta(hours=10),
)


class Endpoint(_Strict):
    """One ministry's receiving URL."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=48,
                    description="also names the secret: connection watermon_webhook_<id>, "
                                "env WATERMON_WEBHOOK_SECRET_<ID>")
    agency: str = Field(description="the agency whose ministry this endpoint belongs to")
    url: str = Field(max_length=500)

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http(s) URL with a host, got {v!r}")
        if parts.username or parts.password:
            raise ValueError("credentials in the URL are not allowed; the signature authenticates the sender")
        if parts.fragment:
            raise ValueError("a URL fragment is never sent; remove it")
        return v

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""


class Retry(_Strict):
    """When to try again: ``schedule[k]`` is the wait before attempt k+1 (k = 0: the first)."""

    schedule: tuple[timedelta, ...] = Field(default=DEFAULT_SCHEDULE, min_length=1)
    jitter: float = Field(0.2, ge=0, lt=1, description="each wait is scaled by a random factor in [1-j, 1+j]")
    max_retry_after: timedelta = Field(
        timedelta(hours=24), description="a 429/503 Retry-After is honoured up to this long")

    @field_validator("schedule")
    @classmethod
    def _non_negative(cls, v: tuple[timedelta, ...]) -> tuple[timedelta, ...]:
        if any(d < timedelta(0) for d in v):
            raise ValueError("waits must not be negative")
        return v


class Timeouts(_Strict):
    connect: float = Field(5.0, gt=0, description="seconds to establish the connection (TLS included)")
    read: float = Field(15.0, gt=0, description="seconds to wait for the response (and to send the body)")


def _host_or_network(v: str) -> str:
    v = v.strip().lower()
    if "/" in v:
        ipaddress.ip_network(v, strict=False)  # raises ValueError
    return v


class WebhooksConfig(_Strict):
    endpoints: tuple[Endpoint, ...] = ()
    retry: Retry = Retry()
    timeouts: Timeouts = Timeouts()
    allow_insecure_hosts: tuple[str, ...] = Field(
        default=(), description="hosts (names or addresses) that may be sent to over plain HTTP")
    allow_private_hosts: tuple[str, ...] = Field(
        default=(), description="hosts, addresses or networks (CIDR) that may resolve to private, "
                                "loopback or link-local addresses")
    max_concurrency: int = Field(4, ge=1, le=64, description="requests in flight at once, per endpoint")
    poll_interval: float = Field(0.25, gt=0, le=60, description="seconds between looks for due deliveries")
    claim_lease: timedelta | None = Field(
        None, description="how long a claimed delivery is left to its relay before another may send it "
                          "(a relay killed mid-request); default: long enough for two requests (one "
                          "queued before it) at their timeouts, 2 x (connect + 2 x read) + 10 s")

    @field_validator("allow_insecure_hosts", "allow_private_hosts")
    @classmethod
    def _hosts(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_host_or_network(h) for h in v)

    @model_validator(mode="after")
    def _unique_ids(self) -> WebhooksConfig:
        seen: set[str] = set()
        for e in self.endpoints:
            if e.id in seen:
                raise ValueError(f"duplicate endpoint id {e.id!r}")
            seen.add(e.id)
        return self

    @property
    def lease(self) -> timedelta:
        if self.claim_lease is not None:
            return self.claim_lease
        # one request: connect, send (write timeout = read) and read; a claimed delivery may wait for one
        return timedelta(seconds=2 * (self.timeouts.connect + 2 * self.timeouts.read) + 10)

    def endpoint(self, endpoint_id: str) -> Endpoint:
        try:
            return next(e for e in self.endpoints if e.id == endpoint_id)
        except StopIteration:
            known = ", ".join(e.id for e in self.endpoints) or "none"
            raise KeyError(f"unknown endpoint {endpoint_id!r} (configured: {known})") from None
