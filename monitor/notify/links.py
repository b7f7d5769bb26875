"""Signed, expiring acknowledgement links for notifications.

``/ack/{alert}?since={unix time}&by={person}&exp={unix time}&sig={HMAC-SHA256}``: the
signature covers the alert, the start of the incident it was sent for (``since``: the
alert's active_since), the person and the expiry, under the configured ``ack_secret``;
a link cannot be altered to acknowledge another alert, a later incident of the same
alert, or to live longer. Opening the link shows a confirmation form (mail scanners
that follow links must not acknowledge anything); posting it acknowledges, once.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import quote

__all__ = ["ack_url", "verify"]


def _sig(secret: bytes, alert: str, since: int, person: str, expires: int) -> str:
    text = f"{alert}\x00{since}\x00{person}\x00{expires}".encode()
    return hmac.new(secret, text, hashlib.sha256).hexdigest()


def ack_url(base: str, secret: bytes, alert: str, since: float, person: str, ttl: float,
            now: float | None = None) -> str:
    expires = int((now if now is not None else time.time()) + ttl)
    start = int(since)
    return (f"{base.rstrip('/')}/ack/{alert}?since={start}&by={quote(person)}&exp={expires}"
            f"&sig={_sig(secret, alert, start, person, expires)}")


def verify(secret: bytes, alert: str, since: str, person: str, expires: str, sig: str,
           now: float | None = None) -> str | None:
    """None if the link is good, else why not."""
    try:
        exp, start = int(expires), int(since)
    except ValueError:
        return "malformed link"
    if not sig.isascii() or not hmac.compare_digest(
            _sig(secret, alert, start, person, exp), sig):
        return "the link's signature does not match"
    if (now if now is not None else time.time()) > exp:
        return "the link has expired"
    return None
