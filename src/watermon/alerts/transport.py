"""HTTP POSTs to a ministry's endpoint, under the URL policy of ``config/webhooks.yaml``.

* HTTPS only, except hosts listed in ``allow_insecure_hosts``.
* The host is resolved here and every address it resolves to must be public (globally
  routable), except hosts, addresses or networks listed in ``allow_private_hosts``. The
  request then goes to the address that was checked (the URL's name is kept for the
  ``Host`` header, TLS SNI and certificate check), so a second DNS answer cannot point
  the request elsewhere (DNS rebinding).
* Redirects are never followed (a 3xx is a failed attempt), proxies from the
  environment are not used, and connect and read have their own timeouts.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from watermon.config.webhooks import WebhooksConfig

USER_AGENT = "watermon-webhooks/1"
RESOLVE_TTL_S = 30.0
MAX_ERROR_BODY = 300

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class PolicyError(Exception):
    """The URL may not be sent to under the configured policy."""


@dataclass(frozen=True)
class Target:
    """Where a request really goes: the checked address, and the name it was asked for."""

    url: httpx.URL
    """the URL with the host replaced by the checked address"""
    host_header: str
    sni_hostname: str | None
    address: str


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to."""

    status: int | None
    """the HTTP status, None when there was no response"""
    error: str | None
    retry_after: float | None
    """seconds asked for by a 429 or 503 ``Retry-After`` (seconds or an HTTP date)"""
    elapsed: float

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def _kind(ip: IPAddress) -> str | None:
    """Why an address is not public, or None when it is."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return _kind(ip.ipv4_mapped)
    for name in ("unspecified", "loopback", "link_local", "multicast", "private", "reserved"):
        if getattr(ip, f"is_{name}"):
            return name.replace("_", "-")
    return None if ip.is_global else "non-public"


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


class UrlPolicy:
    def __init__(self, allow_insecure_hosts: tuple[str, ...] = (), allow_private_hosts: tuple[str, ...] = (),
                 resolver: Callable[..., list[Any]] = socket.getaddrinfo) -> None:
        self.insecure = {h.lower().strip("[]") for h in allow_insecure_hosts}
        self.private_names: set[str] = set()
        self.private_nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for h in allow_private_hosts:
            if "/" in h or _literal(h) is not None:
                self.private_nets.append(ipaddress.ip_network(h.strip("[]"), strict=False))
            else:
                self.private_names.add(h.lower())
        self._resolver = resolver
        self._cache: dict[tuple[str, int], tuple[float, list[IPAddress]]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: WebhooksConfig) -> UrlPolicy:
        return cls(config.allow_insecure_hosts, config.allow_private_hosts)

    def _addresses(self, host: str, port: int) -> list[IPAddress]:
        literal = _literal(host)
        if literal is not None:
            return [literal]
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get((host, port))
        if hit and now - hit[0] < RESOLVE_TTL_S:
            return hit[1]
        try:
            infos = self._resolver(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise PolicyError(f"cannot resolve {host}: {exc}") from None
        out: list[IPAddress] = []
        for info in infos:
            ip = ipaddress.ip_address(info[4][0].split("%")[0])
            if ip not in out:
                out.append(ip)
        if not out:
            raise PolicyError(f"{host} resolves to no address")
        with self._lock:
            self._cache[(host, port)] = (now, out)
        return out

    def _private_allowed(self, host: str, ip: IPAddress) -> bool:
        if host in self.private_names:
            return True
        ip4 = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped else ip
        return any(ip4 in net for net in self.private_nets if net.version == ip4.version)

    def target(self, url: str) -> Target:
        """Check ``url`` and pin it to an allowed address; raises :class:`PolicyError`."""
        u = httpx.URL(url)
        host = u.host.lower()
        if u.scheme not in ("http", "https"):
            raise PolicyError(f"scheme {u.scheme!r} is not allowed")
        if u.scheme != "https" and host not in self.insecure:
            raise PolicyError(f"plain HTTP to {host} is not allowed (use https, or list the host in "
                              "allow_insecure_hosts)")
        port = u.port or (443 if u.scheme == "https" else 80)
        addresses = self._addresses(host, port)
        for ip in addresses:
            kind = _kind(ip)
            if kind and not self._private_allowed(host, ip):
                raise PolicyError(f"{host} resolves to {ip}, a {kind} address (list it in allow_private_hosts "
                                  "to allow it)")
        ip = addresses[0]
        return Target(url=u.copy_with(host=str(ip)), host_header=u.netloc.decode("ascii"),
                      sni_hostname=host if u.scheme == "https" and _literal(host) is None else None,
                      address=str(ip))


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


class Transport:
    """One endpoint's HTTP client (connection reuse), thread-safe."""

    def __init__(self, config: WebhooksConfig, policy: UrlPolicy | None = None) -> None:
        self.policy = policy or UrlPolicy.from_config(config)
        t = config.timeouts
        self.client = httpx.Client(
            timeout=httpx.Timeout(connect=t.connect, read=t.read, write=t.read, pool=t.connect + t.read),
            follow_redirects=False,
            trust_env=False,
            limits=httpx.Limits(max_connections=config.max_concurrency,
                                max_keepalive_connections=config.max_concurrency),
            headers={"User-Agent": USER_AGENT},
        )

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Outcome:
        start = time.monotonic()
        try:
            target = self.policy.target(url)
        except PolicyError as exc:
            return Outcome(None, f"refused by policy: {exc}", None, time.monotonic() - start)
        extensions = {"sni_hostname": target.sni_hostname} if target.sni_hostname else {}
        req_headers = {**headers, "Host": target.host_header, "Content-Type": "application/json"}
        try:
            with self.client.stream("POST", target.url, content=body, headers=req_headers,
                                    extensions=extensions) as resp:
                excerpt = b""
                for chunk in resp.iter_bytes():
                    excerpt += chunk
                    if len(excerpt) >= MAX_ERROR_BODY:
                        break
                status = resp.status_code
                retry_after = (retry_after_seconds(resp.headers.get("Retry-After"))
                               if status in (429, 503) else None)
                error = None
                if not 200 <= status < 300:
                    error = f"HTTP {status}"
                    if 300 <= status < 400:
                        error += f" (redirect to {resp.headers.get('Location', '?')} not followed)"
                    text = excerpt[:MAX_ERROR_BODY].decode("utf-8", "replace").strip()
                    if text:
                        error += f": {text}"
                return Outcome(status, error, retry_after, time.monotonic() - start)
        except httpx.ConnectTimeout:
            error = f"connect timed out after {self.client.timeout.connect:g} s ({target.address})"
        except httpx.ReadTimeout:
            error = f"no response within {self.client.timeout.read:g} s ({target.address})"
        except httpx.WriteTimeout:
            error = f"sending timed out after {self.client.timeout.write:g} s ({target.address})"
        except httpx.PoolTimeout:
            error = "no free connection (pool timeout)"
        except httpx.ConnectError as exc:
            error = f"cannot connect to {target.address}: {exc}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        return Outcome(None, error, None, time.monotonic() - start)
