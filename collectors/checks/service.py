"""Composition of the checks collector: config, outbox, publisher, runner, signals."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path

import structlog

from collectors.checks.runner import CheckRunner
from collectors.common.outbox import Outbox
from collectors.common.publisher import Publisher
from monitor.config import load_config
from monitor.yamlmodel import Problems

__all__ = ["run_checks"]

log = structlog.get_logger(__name__)


async def run_checks(config_path: str, location: str) -> int:
    try:
        config = load_config(Path(config_path))
    except Problems as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    if location not in config.locations:
        print(f"{config_path}: location {location!r} is not in the config", file=sys.stderr)
        return 1
    broker = config.broker_for(location)
    password = broker.password.resolve() if broker.password else None
    instance = f"checks-{location}"
    outbox = await Outbox.open(Path(config.outbox.directory) / f"{instance}.db",
                               max_rows=config.outbox.max_rows, max_age=config.outbox.max_age)
    publisher = Publisher(broker=broker, location=location, component="checks",
                          instance=instance, outbox=outbox, password=password,
                          wait_for=config.outbox.wait_for, window=config.outbox.window,
                          ack_timeout=config.outbox.ack_timeout)
    runner = CheckRunner(config, location, publisher)
    loop = asyncio.get_running_loop()

    def stop() -> None:
        runner.stop()
        publisher.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop)
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(publisher.run(), name="publisher")
            tg.create_task(runner.run(), name="checks")
    finally:
        await outbox.close()
    log.info("checks_stopped", runs=runner.stats.runs, failures=runner.stats.failures,
             overruns=runner.stats.overruns)
    return 0
