"""Standard Webhooks v1 signatures (symmetric): sign what the relay sends, verify what a receiver gets.

The signed content is ``{webhook-id}.{webhook-timestamp}.{body}``; the signature is the
base64 HMAC-SHA256 of it under the secret, sent as ``webhook-signature: v1,<base64>``
(several space-separated signatures may be sent, e.g. while a secret is rotated). A
secret is written ``whsec_<base64 of the key>``. Receivers refuse timestamps more than
five minutes away from their clock (replays of captured requests), and compare
signatures in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping, Sequence

SECRET_PREFIX = "whsec_"
TOLERANCE_S = 5 * 60


class VerificationError(ValueError):
    """The request is not from the holder of the secret, or it is too old or too new."""


def new_secret(nbytes: int = 32) -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(nbytes)).decode()


def secret_key(secret: str | bytes) -> bytes:
    """The HMAC key of a ``whsec_...`` secret (the prefix is optional, padding too)."""
    if isinstance(secret, bytes):
        key = secret
    else:
        text = secret.strip().removeprefix(SECRET_PREFIX)
        try:
            key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("a webhook secret is whsec_ followed by base64") from None
    if len(key) < 16:
        raise ValueError("a webhook secret needs at least 16 bytes of key")
    return key


def sign(secret: str | bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,<base64 HMAC-SHA256>``."""
    mac = hmac.new(secret_key(secret), b"%s.%d.%s" % (msg_id.encode(), timestamp, body), hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def headers(secret: str | bytes, msg_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt (the timestamp is the attempt's)."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": sign(secret, msg_id, ts, body)}


def verify(secrets_: str | bytes | Sequence[str | bytes], request_headers: Mapping[str, str], body: bytes, *,
           tolerance: float = TOLERANCE_S, now: float | None = None) -> str:
    """Check a request; returns its ``webhook-id``, raises :class:`VerificationError`.

    ``secrets_`` may hold several secrets (during a rotation): any one matching is enough.
    """
    h = {k.lower(): v for k, v in request_headers.items()}
    msg_id, ts_text, sig_text = h.get("webhook-id"), h.get("webhook-timestamp"), h.get("webhook-signature")
    if not (msg_id and ts_text and sig_text):
        raise VerificationError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        ts = int(ts_text)
    except ValueError:
        raise VerificationError("webhook-timestamp is not an integer") from None
    now = time.time() if now is None else now
    if ts < now - tolerance:
        raise VerificationError("webhook-timestamp too old")
    if ts > now + tolerance:
        raise VerificationError("webhook-timestamp too new")
    keys = [secrets_] if isinstance(secrets_, (str, bytes)) else list(secrets_)
    expected = [base64.b64decode(sign(k, msg_id, ts, body)[3:]) for k in keys]
    for part in sig_text.split():
        version, _, value = part.partition(",")
        if version != "v1":
            continue
        try:
            given = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            continue
        # compare against every key, without stopping early, in constant time per comparison
        if any([hmac.compare_digest(given, e) for e in expected]):
            return msg_id
    raise VerificationError("no valid v1 signature")
