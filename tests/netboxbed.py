"""A stand-in for NetBox's REST API, for `driftsvakt import netbox`.

NetBox itself cannot run here: it is a Django application with PostgreSQL and Redis
that is packaged neither on PyPI nor in Debian. This serves the one endpoint the
import reads, /api/dcim/devices/, in NetBox 4's documented shape — token
authentication (``Authorization: Token …``, 403 ``{"detail": "Invalid token"}``
otherwise), limit/offset pagination with ``count``/``next``/``previous`` (50 a page
unless asked, at most MAX_PAGE_SIZE: 1,000 unless set), the ``status``, ``role``,
``site`` and ``tag`` filters, nested objects with their ``url`` — so that the real
client, pynetbox, pages through it as it pages through NetBox.
"""

from __future__ import annotations

import threading
from typing import Any

from aiohttp import web

from tests.servers import free_port

__all__ = ["NetboxStandIn", "device"]

PAGE, MAX_PAGE = 50, 1000


def _nested(kind: str, pk: int, slug: str, base: str) -> dict[str, Any]:
    return {"id": pk, "url": f"{base}/api/{kind}/{pk}/", "display": slug, "name": slug,
            "slug": slug}


def device(pk: int, name: str | None, role: str, site: str, status: str = "active",
           address: str | None = None, tags: tuple[str, ...] = ()) -> dict[str, Any]:
    """A device as NetBox holds it (its base URL filled in when served)."""
    return {"pk": pk, "name": name, "role": role, "site": site, "status": status,
            "address": address, "tags": list(tags)}


class NetboxStandIn:
    def __init__(self, token: str, max_page: int = MAX_PAGE) -> None:
        self.token = token
        self.max_page = max_page  # NetBox's MAX_PAGE_SIZE setting
        self.devices: list[dict[str, Any]] = []
        self.requests: list[str] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._runner: web.AppRunner | None = None

    def _shown(self, d: dict[str, Any]) -> dict[str, Any]:
        base = self.url
        ip = None
        if d["address"]:
            ip = {"id": d["pk"] + 10_000, "url": f"{base}/api/ipam/ip-addresses/{d['pk']}/",
                  "family": {"value": 4, "label": "IPv4"}, "address": d["address"],
                  "display": d["address"]}
        return {
            "id": d["pk"], "url": f"{base}/api/dcim/devices/{d['pk']}/",
            "display": d["name"] or f"Unnamed device ({d['pk']})", "name": d["name"],
            "role": _nested("dcim/device-roles", 1, d["role"], base),
            "site": _nested("dcim/sites", 1, d["site"], base),
            "status": {"value": d["status"], "label": d["status"].title()},
            "primary_ip": ip, "primary_ip4": ip, "primary_ip6": None,
            "tags": [{**_nested("extras/tags", i, t, base), "color": "9e9e9e"}
                     for i, t in enumerate(d["tags"], 1)],
        }

    async def _devices(self, request: web.Request) -> web.Response:
        self.requests.append(str(request.rel_url))
        if request.headers.get("Authorization") != f"Token {self.token}":
            return web.json_response({"detail": "Invalid token"}, status=403)
        q = request.query
        found = [d for d in self.devices
                 if all(not q.getall(key, []) or d[field] in q.getall(key)
                        for key, field in (("status", "status"), ("role", "role"),
                                           ("site", "site")))
                 and all(t in d["tags"] for t in q.getall("tag", []))]
        limit = min(int(q.get("limit", PAGE)) or self.max_page, self.max_page)
        offset = int(q.get("offset", 0))
        page = found[offset:offset + limit]

        def link(at: int) -> str:
            rest = "&".join(f"{k}={v}" for k, v in q.items() if k not in ("limit", "offset"))
            return (f"{self.url}/api/dcim/devices/?{rest + '&' if rest else ''}"
                    f"limit={limit}&offset={at}")
        return web.json_response({
            "count": len(found),
            "next": link(offset + limit) if offset + limit < len(found) else None,
            "previous": link(max(0, offset - limit)) if offset else None,
            "results": [self._shown(d) for d in page]})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/api/dcim/devices/", self._devices)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class Silent:
    """A port that takes connections and never answers (a NetBox that hangs)."""

    def __init__(self) -> None:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self._held: list[Any] = []
        self._thread = threading.Thread(target=self._hold, daemon=True)
        self._thread.start()

    def _hold(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self._held:
            conn.close()
