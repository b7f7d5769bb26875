"""The engine's HTTP interface: /metrics, /healthz, /readyz (aiohttp)."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import hmac
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

__all__ = ["SECURITY_HEADERS", "build_app"]

ReadyCheck = Callable[[], Awaitable[dict[str, bool]]]


# Every answer: no framing, no sniffing, no referrer leaving with a signed link in it,
# and pages that can load nothing but their own inline style (they have no script).
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "img-src 'self' data:; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


async def security_headers(_: web.Request, response: web.StreamResponse) -> None:
    """On every answer as it is sent — a streamed one (a store snapshot) too, which a
    middleware would see only after its headers had gone."""
    response.headers.update(SECURITY_HEADERS)


def build_app(registry: CollectorRegistry, ready: ReadyCheck,
              extend: Callable[[web.Application], None] | None = None,
              series: Callable[[], Awaitable[bytes]] | None = None,
              scrape_token: str | None = None) -> web.Application:
    """``series``: the device series' text (monitor.exposition), appended to the
    registry's own, rendered without holding the event loop. ``scrape_token``: when
    set, /metrics answers only ``Authorization: Bearer <it>`` (every municipality's
    series are there; the console's viewers must not read them)."""
    expected = (hashlib.sha256(scrape_token.encode()).digest()
                if scrape_token is not None else None)

    async def metrics(request: web.Request) -> web.Response:
        if expected is not None:
            header = request.headers.get("Authorization", "")
            given = header[7:].strip() if header.startswith("Bearer ") else ""
            if not hmac.compare_digest(
                    hashlib.sha256(given.encode("utf-8", "replace")).digest(), expected):
                return web.json_response({"error": "send the scrape token: Authorization: "
                                                   "Bearer <engine.metrics_token>"},
                                         status=401)
        body = generate_latest(registry)
        if series is not None:
            body += await series()
        headers = {"Content-Type": CONTENT_TYPE_LATEST}
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            body = await asyncio.to_thread(gzip.compress, body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        return web.Response(body=body, headers=headers)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        checks = await ready()
        ok = all(checks.values())
        return web.json_response({"ready": ok, "checks": checks}, status=200 if ok else 503)

    app = web.Application()
    app.on_response_prepare.append(security_headers)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if extend is not None:
        extend(app)
    return app
