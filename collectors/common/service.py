"""What every collector process does around its own work: config, outbox, publisher,
signals, and a clear message instead of a traceback when it cannot start."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import structlog

from collectors.common.outbox import Outbox
from collectors.common.publisher import Publisher
from monitor.config import Config, load_config
from monitor.yamlmodel import Problems

__all__ = ["CannotStart", "CollectorContext", "collector_context", "first_of", "load_for",
           "reload_on_sighup", "report", "stop_on_signals"]

log = structlog.get_logger(__name__)


class CannotStart(Exception):
    """Says, for the operator, why the collector cannot start."""


@dataclass(frozen=True, slots=True)
class CollectorContext:
    config: Config
    location: str
    publisher: Publisher
    outbox: Outbox


def load_for(config_path: str, location: str) -> Config:
    try:
        config = load_config(Path(config_path))
    except Problems as exc:
        raise CannotStart(str(exc)) from None
    if location not in config.locations:
        raise CannotStart(f"{config_path}: location {location!r} is not in the config")
    return config


@asynccontextmanager
async def collector_context(config: Config, location: str, component: str
                            ) -> AsyncIterator[CollectorContext]:
    """The publisher of collector ``component`` at ``location``, on its own outbox."""
    broker = config.broker_for(location, component)
    instance = f"{component}-{location}"
    try:
        password = broker.password.resolve() if broker.password else None
    except (KeyError, OSError) as exc:
        raise CannotStart(f"broker password: {exc}") from None
    outbox = await Outbox.open(Path(config.outbox.directory) / f"{instance}.db",
                               max_rows=config.outbox.max_rows, max_age=config.outbox.max_age)
    try:
        publisher = Publisher(broker=broker, location=location, component=component,
                              instance=instance, outbox=outbox, password=password,
                              wait_for=config.outbox.wait_for, window=config.outbox.window,
                              ack_timeout=config.outbox.ack_timeout)
        yield CollectorContext(config, location, publisher, outbox)
    finally:
        await outbox.close()


def stop_on_signals(*stops: Callable[[], None]) -> None:
    """SIGTERM and SIGINT call every ``stop`` (where the platform has signal handlers)."""
    loop = asyncio.get_running_loop()

    def stop_all() -> None:
        for stop in stops:
            stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop_all)


def reload_on_sighup(config_path: str, location: str, component: str,
                     apply: Callable[[Config], object],
                     counts: dict[str, int] | None = None) -> None:
    """SIGHUP reads the estate again (off the event loop) and hands it to ``apply``;
    an estate with any problem is refused as a whole and the collector goes on with
    the one it has, as the engine does (monitor.reload). A refusal is logged and
    counted in ``counts`` (the publisher's: its status reports it, and the engine
    exports it as driftsvakt_collector_counted_total{what="reload_refused"})."""
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[None]] = set()

    def refused(problems: str) -> None:
        log.error("collector_reload_refused", component=component, location=location,
                  problems=problems[:2000])
        if counts is not None:
            counts["reload_refused"] = counts.get("reload_refused", 0) + 1

    async def reload() -> None:
        try:
            config = await asyncio.to_thread(load_for, config_path, location)
        except CannotStart as exc:
            refused(str(exc))
            return
        try:
            change = apply(config)
        except (KeyError, OSError) as exc:  # a secret the new estate names is not there
            refused(f"a secret cannot be read: {exc}")
            return
        log.info("collector_reloaded", component=component, location=location,
                 change=change)

    def start() -> None:
        task = loop.create_task(reload())
        pending.add(task)
        task.add_done_callback(pending.discard)

    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGHUP, start)


async def first_of(timeout: float, *events: asyncio.Event) -> None:
    """Until one of ``events`` is set, or ``timeout`` seconds have passed: a
    collector's loop sleeps until its next run, its stop, or its device's removal."""
    waits = {asyncio.ensure_future(event.wait()) for event in events}
    try:
        await asyncio.wait(waits, timeout=max(0.0, timeout),
                           return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in waits:
            waiting.cancel()


def report(exc: CannotStart) -> int:
    print(f"cannot start: {exc}", file=sys.stderr)
    return 1
