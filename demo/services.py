"""Local services for the demo to check: an intranet over HTTP and HTTPS on loopback.

One page per municipality; Loppa's answers 500 for one minute in every five, so the
demo shows a failing check coming and going. The HTTPS side uses a certificate from
a throw-away CA (trustme, installed with the demo extra) valid for 90 days.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog
from aiohttp import web

from monitor.config import CheckSpec, Config

__all__ = ["DemoWeb", "demo_checks", "demo_web"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class DemoWeb:
    http_port: int
    https_port: int | None
    ca_file: str | None


def _app(config: Config) -> web.Application:
    async def page(request: web.Request) -> web.Response:
        mun = request.match_info["municipality"]
        if mun not in config.municipalities:
            raise web.HTTPNotFound
        if mun == "loppa" and int(time.time() // 60) % 5 == 0:
            return web.Response(status=500, text="Intern feil")
        return web.Response(text=f"Intranett for {config.municipalities[mun].name}")

    async def chat(request: web.Request) -> web.Response:
        """The operators' chat channel of the demo: notifications land here."""
        body = await request.json()
        first = str(body.get("text", "")).splitlines()[0] if body.get("text") else ""
        log.info("demo_notification", message=first[:200])
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/{municipality}", page)
    app.router.add_post("/chat", chat)
    return app


@asynccontextmanager
async def demo_web(config: Config, workdir: Path) -> AsyncIterator[DemoWeb]:
    runner = web.AppRunner(_app(config), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    http_port = runner.addresses[0][1]
    https_port: int | None = None
    ca_file: str | None = None
    try:
        import trustme
    except ImportError:
        log.warning("demo_tls_skipped", why="trustme is not installed (pip install "
                    "'driftsvakt[demo]')")
    else:
        ca = trustme.CA(organization_name="driftsvakt demo")
        cert = ca.issue_cert("localhost", "127.0.0.1",
                             not_after=datetime.now(UTC) + timedelta(days=90))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        ca_path = workdir / "demo-ca.pem"
        ca.cert_pem.write_to_path(str(ca_path))
        ca_file = str(ca_path)
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context).start()
        https_port = runner.addresses[-1][1]
    log.info("demo_web_started", http_port=http_port, https_port=https_port)
    try:
        yield DemoWeb(http_port, https_port, ca_file)
    finally:
        await runner.cleanup()


def demo_checks(config: Config, web_: DemoWeb) -> dict[str, CheckSpec]:
    """Per municipality: its intranet over HTTP, its certificate, ping, and a TCP port."""
    checks: dict[str, CheckSpec] = {}
    for mun, municipality in config.municipalities.items():
        device = f"{mun}-dc01"
        if device not in config.devices:
            continue
        specs = [
            CheckSpec(id=f"{mun}-intranett", kind="http", device=device, interval=30,
                      target=f"http://127.0.0.1:{web_.http_port}/{mun}",
                      body_match=municipality.name, retries=0),
            CheckSpec(id=f"{mun}-ping", kind="icmp", device=device, target="127.0.0.1",
                      interval=30),
            CheckSpec(id=f"{mun}-ldap", kind="tcp", device=device, interval=30,
                      target=f"127.0.0.1:{web_.http_port}"),
        ]
        if web_.https_port is not None:
            specs.append(CheckSpec(id=f"{mun}-intranett-tls", kind="tls", device=device,
                                   target=f"127.0.0.1:{web_.https_port}", interval=60,
                                   server_name="localhost", ca_file=web_.ca_file))
        checks.update((s.id, s) for s in specs)
    return checks
