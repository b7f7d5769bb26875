"""Composition of the checks collector: the shared collector set-up plus the runner."""

from __future__ import annotations

import asyncio

import structlog

from collectors.checks.runner import CheckRunner
from collectors.common.service import (
    CannotStart,
    collector_context,
    load_for,
    reload_on_sighup,
    report,
    stop_on_signals,
)

__all__ = ["run_checks"]

log = structlog.get_logger(__name__)


async def run_checks(config_path: str, location: str) -> int:
    try:
        config = load_for(config_path, location)
        async with collector_context(config, location, "checks") as ctx:
            runner = CheckRunner(config, location, ctx.publisher)
            stop_on_signals(runner.stop, ctx.publisher.stop)
            reload_on_sighup(config_path, location, "checks", runner.reload,
                             ctx.publisher.counts)
            async with asyncio.TaskGroup() as tg:
                tg.create_task(ctx.publisher.run(), name="publisher")
                tg.create_task(runner.run(), name="checks")
    except CannotStart as exc:
        return report(exc)
    log.info("checks_stopped", runs=runner.stats.runs, failures=runner.stats.failures,
             overruns=runner.stats.overruns)
    return 0
