"""Composition of the SNMP collector: the shared collector set-up plus the poller."""

from __future__ import annotations

import asyncio

import structlog

from collectors.common.service import (
    CannotStart,
    collector_context,
    load_for,
    report,
    stop_on_signals,
)
from collectors.snmp.modules import load_modules
from collectors.snmp.poller import SnmpPoller
from monitor.yamlmodel import Problems

__all__ = ["run_snmp"]

log = structlog.get_logger(__name__)


async def run_snmp(config_path: str, location: str) -> int:
    try:
        config = load_for(config_path, location)
        try:
            modules = load_modules()
        except Problems as exc:
            raise CannotStart(str(exc)) from None
        async with collector_context(config, location, "snmp") as ctx:
            try:
                poller = SnmpPoller(config, location, ctx.publisher, modules)
            except (KeyError, OSError) as exc:  # a secret that is not there: name it
                raise CannotStart(f"SNMP credentials: {exc}") from None
            stop_on_signals(poller.stop, ctx.publisher.stop)
            async with asyncio.TaskGroup() as tg:
                tg.create_task(ctx.publisher.run(), name="publisher")
                tg.create_task(poller.run(), name="snmp")
    except CannotStart as exc:
        return report(exc)
    log.info("snmp_stopped", polls=poller.stats.polls, errors=dict(poller.stats.errors),
             overruns=poller.stats.overruns)
    return 0
