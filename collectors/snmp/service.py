"""Composition of the SNMP collector: config, modules, outbox, publisher, poller."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path

import structlog

from collectors.common.outbox import Outbox
from collectors.common.publisher import Publisher
from collectors.snmp.modules import load_modules
from collectors.snmp.poller import SnmpPoller
from monitor.config import load_config
from monitor.yamlmodel import Problems

__all__ = ["run_snmp"]

log = structlog.get_logger(__name__)


async def run_snmp(config_path: str, location: str) -> int:
    try:
        config = load_config(Path(config_path))
        modules = load_modules()
    except Problems as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    if location not in config.locations:
        print(f"{config_path}: location {location!r} is not in the config", file=sys.stderr)
        return 1
    broker = config.broker_for(location)
    instance = f"snmp-{location}"
    outbox = await Outbox.open(Path(config.outbox.directory) / f"{instance}.db",
                               max_rows=config.outbox.max_rows, max_age=config.outbox.max_age)
    publisher = Publisher(broker=broker, location=location, component="snmp",
                          instance=instance, outbox=outbox,
                          password=broker.password.resolve() if broker.password else None,
                          wait_for=config.outbox.wait_for, window=config.outbox.window,
                          ack_timeout=config.outbox.ack_timeout)
    try:
        poller = SnmpPoller(config, location, publisher, modules)
    except (KeyError, OSError) as exc:  # a secret that is not there: say which, at start
        print(f"cannot start the SNMP poller: {exc}", file=sys.stderr)
        await outbox.close()
        return 1
    loop = asyncio.get_running_loop()

    def stop() -> None:
        poller.stop()
        publisher.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop)
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(publisher.run(), name="publisher")
            tg.create_task(poller.run(), name="snmp")
    finally:
        await outbox.close()
    log.info("snmp_stopped", polls=poller.stats.polls, errors=dict(poller.stats.errors),
             overruns=poller.stats.overruns)
    return 0
