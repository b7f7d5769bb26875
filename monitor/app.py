"""Composition root of ``driftsvakt engine``: builds every component, runs, shuts down.

Shutdown on SIGTERM or SIGINT, in stages, each under its own timeout: stop taking
messages, commit what was taken, publish the last acknowledgements and the
``stopping`` status, stop the HTTP server, close the store.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry

from monitor.api import add_api_routes
from monitor.auth import Auth
from monitor.config import Config, load_config
from monitor.console import add_console_routes
from monitor.engine import Engine
from monitor.exposition import SeriesExposition
from monitor.ingest import Ingest, Observers
from monitor.metrics import EngineMetrics, StateCollector
from monitor.notify.service import NotifyService
from monitor.rules.service import RulesService
from monitor.sla.service import SlaService
from monitor.state import DeviceStatus, State
from monitor.store.db import Store
from monitor.web import build_app
from monitor.yamlmodel import Problem, Problems

__all__ = ["EngineApp", "run_engine", "start_engine"]

log = structlog.get_logger(__name__)

SHUTDOWN_ENGINE_SECONDS: Final = 6.0
SHUTDOWN_HTTP_SECONDS: Final = 2.0


@dataclass
class EngineApp:
    """A running engine with its HTTP server; ``stop()`` shuts it down in stages."""

    engine: Engine
    store: Store
    runner: web.AppRunner
    task: asyncio.Task[None]
    url: str
    rules: RulesService
    ticks: asyncio.Task[None]
    ticks_stop: asyncio.Event
    notify: NotifyService
    notify_task: asyncio.Task[None]
    notify_stop: asyncio.Event
    sla: SlaService
    sla_task: asyncio.Task[None]
    sla_stop: asyncio.Event

    async def stop(self) -> None:
        self.engine.stop()
        await _finish(self.task, "engine")  # its failure is reported by run_engine
        self.ticks_stop.set()  # the last tick writes what the rules still hold
        await _finish(self.ticks, "rules")
        self.notify_stop.set()  # then notifications queue what that tick decided
        await _finish(self.notify_task, "notify")
        self.sla_stop.set()
        await _finish(self.sla_task, "sla")
        try:
            await asyncio.wait_for(self.runner.cleanup(), SHUTDOWN_HTTP_SECONDS)
        except TimeoutError:
            log.warning("shutdown_stage_timeout", stage="http")
        await self.store.close()


async def _finish(task: asyncio.Task[None], stage: str) -> None:
    """Wait for one stage of the shutdown, within its time; cancel it past that."""
    try:
        await asyncio.wait_for(asyncio.shield(task), SHUTDOWN_ENGINE_SECONDS)
    except TimeoutError:
        log.warning("shutdown_stage_timeout", stage=stage)
        task.cancel()
    except Exception:
        if stage != "engine":
            log.exception("shutdown_stage_failed", stage=stage)


async def start_engine(config: Config, location: str, *, http_port: int | None = None,
                       v5: bool = True) -> EngineApp:
    """Build and start an engine for ``location``; the caller awaits ``stop()``."""
    if location not in config.locations:
        raise Problems([Problem(config.source, 0, "--location",
                                f"location {location!r} is not in the config")])
    broker = config.broker_for(location)
    password = broker.password.resolve() if broker.password else None
    store_path = config.engine.store.format(location=location)
    store = await Store.open(store_path)
    state = State()
    for row in await store.load_devices():
        known = config.devices.get(row.device)
        status = DeviceStatus(
            config.location_of(row.device) if known else "",
            config.municipality_of(row.device) if known else "",
            row.last_seen, row.state, row.state_since, row.reason)
        state.devices[row.device] = status
    registry = CollectorRegistry()
    metrics = EngineMetrics(registry)
    collector = StateCollector(state, config)
    registry.register(collector)
    exposition = SeriesExposition(state, collector.device_labels)
    try:
        rules = await RulesService.start(config, store, state, registry)
        notify = await NotifyService.start(config, store, rules, registry, location, state)
        sla = await SlaService.start(config, store, registry)
    except BaseException:
        await store.close()
        raise
    ingest = Ingest(state, await store.load_progress(), metrics,
                    observer=Observers(rules, sla.ledger))
    engine = Engine(broker=broker, location=location, store=store, ingest=ingest,
                    metrics=metrics, password=password, v5=v5,
                    batch_max=config.engine.batch_max, batch_wait=config.engine.batch_wait,
                    rules=rules, ledger=sla.ledger)
    auth = Auth(config)

    async def ready() -> dict[str, bool]:
        return {"broker": engine.connected, "store": await store.writable()}

    def routes(app: web.Application) -> None:
        add_api_routes(app, config, rules, auth)
        add_console_routes(app, config, state, rules, auth, location)
        notify.add_routes(app, auth)
        sla.add_routes(app, auth)

    runner = web.AppRunner(build_app(registry, ready, routes, exposition.render),
                           access_log=None)
    await runner.setup()
    port = config.engine.http_port if http_port is None else http_port
    site = web.TCPSite(runner, config.engine.http_host, port)
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else port
    url = f"http://{config.engine.http_host}:{bound}"
    task = asyncio.create_task(engine.run(), name=f"engine-{location}")
    ticks_stop = asyncio.Event()
    ticks = asyncio.create_task(rules.run(ticks_stop), name=f"rules-{location}")
    notify_stop = asyncio.Event()
    notify_task = asyncio.create_task(notify.run(notify_stop), name=f"notify-{location}")
    sla_stop = asyncio.Event()
    sla_task = asyncio.create_task(sla.run(sla_stop), name=f"sla-{location}")
    log.info("engine_started", location=location, url=url, store=store_path,
             broker=f"{broker.host}:{broker.port}")
    return EngineApp(engine, store, runner, task, url, rules, ticks, ticks_stop, notify,
                     notify_task, notify_stop, sla, sla_task, sla_stop)


async def run_engine(config_path: str, location: str, *, http_port: int | None = None) -> int:
    try:
        config = load_config(Path(config_path))
        app = await start_engine(config, location, http_port=http_port)
    except Problems as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    reloads: set[asyncio.Task[list[str]]] = set()

    def reload() -> None:
        task = asyncio.create_task(app.rules.reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, reload)
    done, _ = await asyncio.wait({app.task, app.ticks, asyncio.create_task(stopping.wait())},
                                 return_when=asyncio.FIRST_COMPLETED)
    failed = next((t for t in (app.task, app.ticks)
                   if t in done and t.exception() is not None), None)
    if failed is not None:
        log.error("engine_failed", location=location, exc_info=failed.exception())
    log.info("engine_stopping", location=location)
    await app.stop()
    log.info("engine_stopped", location=location)
    return 1 if failed is not None else 0
