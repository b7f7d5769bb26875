"""Composition of the SNMP collector: the shared collector set-up plus the poller."""

from __future__ import annotations

import asyncio

import structlog
from aiohttp import web

from collectors.common.service import (
    CannotStart,
    collector_context,
    load_for,
    reload_on_sighup,
    report,
    stop_on_signals,
)
from collectors.snmp.modules import load_modules
from collectors.snmp.poller import SnmpPoller
from monitor.web import build_app
from monitor.yamlmodel import Problems

__all__ = ["run_snmp"]

log = structlog.get_logger(__name__)


async def run_snmp(config_path: str, location: str, http_port: int | None = None,
                   http_host: str = "127.0.0.1") -> int:
    """``http_port``: serve the poller's own metrics on /metrics there (0: any port)."""
    try:
        config = load_for(config_path, location)
        try:
            modules = load_modules(extra=config.module_dirs())
        except Problems as exc:
            raise CannotStart(str(exc)) from None
        async with collector_context(config, location, "snmp") as ctx:
            try:
                poller = SnmpPoller(config, location, ctx.publisher, modules)
            except (KeyError, OSError) as exc:  # a secret that is not there: name it
                raise CannotStart(f"SNMP credentials: {exc}") from None
            stop_on_signals(poller.stop, ctx.publisher.stop)
            reload_on_sighup(config_path, location, "snmp", poller.reload,
                             ctx.publisher.counts)
            runner = None
            if http_port is not None:
                async def ready() -> dict[str, bool]:
                    return {"polling": bool(poller.devices)}

                runner = web.AppRunner(build_app(poller.metrics.registry, ready),
                                       access_log=None)
                await runner.setup()
                await web.TCPSite(runner, http_host, http_port).start()
                log.info("snmp_metrics_served", url=f"http://{http_host}:"
                         f"{runner.addresses[0][1]}/metrics")
            try:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(ctx.publisher.run(), name="publisher")
                    tg.create_task(poller.run(), name="snmp")
            finally:
                if runner is not None:
                    await runner.cleanup()
    except CannotStart as exc:
        return report(exc)
    log.info("snmp_stopped", polls=poller.stats.polls, errors=dict(poller.stats.errors),
             overruns=poller.stats.overruns)
    return 0
