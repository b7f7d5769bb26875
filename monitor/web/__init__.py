"""The engine's HTTP interface: /metrics, /healthz, /readyz (aiohttp)."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

__all__ = ["build_app"]

ReadyCheck = Callable[[], Awaitable[dict[str, bool]]]


def build_app(registry: CollectorRegistry, ready: ReadyCheck,
              extend: Callable[[web.Application], None] | None = None,
              series: Callable[[], Awaitable[bytes]] | None = None) -> web.Application:
    """``series``: the device series' text (monitor.exposition), appended to the
    registry's own, rendered without holding the event loop."""

    async def metrics(request: web.Request) -> web.Response:
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
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if extend is not None:
        extend(app)
    return app
