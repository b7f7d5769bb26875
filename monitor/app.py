"""Composition root of ``driftsvakt engine``: builds every component, runs, shuts down.

Start refuses at once, with a documented exit code (monitor.startup), when the HTTP
port is taken, the store is locked by another engine or a credential cannot be read.
The long-lived tasks run under one supervisor (monitor.supervisor), each with its
policy. Shutdown on SIGTERM or SIGINT, in stages, each under its own timeout: stop
taking messages, commit what was taken, publish the last acknowledgements and the
``stopping`` status; the rules' last tick; notifications queue what it decided; then
the HTTP server, the store and its lock.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry

from monitor.config import Broker, Config, load_config
from monitor.engine import Engine
from monitor.events import DeviceTopic, Event
from monitor.exposition import SeriesExposition
from monitor.ingest import Bounds, Ingest, Observers
from monitor.links import Links
from monitor.liveness import Liveness
from monitor.metrics import EngineMetrics, StateCollector
from monitor.notify.service import NotifyService
from monitor.registration import DECODER as REGISTRATION
from monitor.registration import Registry
from monitor.reload import EstateChange, EstateReload
from monitor.rules.service import RulesService
from monitor.sla.service import SlaService
from monitor.startup import EXIT_CONFIG, StartRefused, StoreLock, bind_http, check_credentials
from monitor.state import DeviceStatus, State
from monitor.store.db import Store
from monitor.supervisor import Supervisor
from monitor.web import build_app
from monitor.web.auth import Auth
from monitor.web.routes import add_routes
from monitor.yamlmodel import Problem, Problems

__all__ = ["EngineApp", "run_engine", "start_engine"]

log = structlog.get_logger(__name__)

SHUTDOWN_HTTP_SECONDS: Final = 2.0


@dataclass
class EngineApp:
    """A running engine with its HTTP server; ``stop()`` shuts it down in stages."""

    engine: Engine
    store: Store
    lock: StoreLock
    runner: web.AppRunner
    url: str
    rules: RulesService
    notify: NotifyService
    sla: SlaService
    supervisor: Supervisor
    supervision: asyncio.Task[int]
    """Ends with the exit code: when ``stop()`` is called, or when a ``stop`` task dies."""
    _stopping: asyncio.Event
    estate: EstateReload

    async def stop(self) -> int:
        """Stop the tasks in order, then HTTP and the store; return the exit code."""
        self._stopping.set()
        code = await self.supervision
        try:
            await asyncio.wait_for(self.runner.cleanup(), SHUTDOWN_HTTP_SECONDS)
        except TimeoutError:
            log.warning("shutdown_stage_timeout", stage="http")
        await self.store.close()
        self.lock.release()
        return code


async def start_engine(config: Config, location: str, *, http_port: int | None = None,
                       v5: bool = True) -> EngineApp:
    """Build and start an engine for ``location``; the caller awaits ``stop()``.

    Raises :class:`StartRefused` (port, store lock, credentials) or :class:`Problems`
    before anything is left running."""
    if location not in config.locations:
        raise Problems([Problem(config.source, 0, "--location",
                                f"location {location!r} is not in the config")])
    check_credentials(config, location)
    broker = config.broker_for(location, "engine")
    password = broker.password.resolve() if broker.password else None
    port = config.engine.http_port if http_port is None else http_port
    listener = bind_http(config.engine.http_host, port)
    store_path = config.engine.store.format(location=location)
    lock = StoreLock(store_path)
    try:
        lock.acquire()
        store = await Store.open(store_path)
    except BaseException:
        listener.close()
        lock.release()
        raise
    try:
        return await _assemble(config, location, broker, password, listener, store, lock, v5)
    except BaseException:
        listener.close()
        await store.close()
        lock.release()
        raise


async def _assemble(config: Config, location: str, broker: Broker, password: str | None,
                    listener: socket.socket, store: Store, lock: StoreLock,
                    v5: bool) -> EngineApp:
    registry = CollectorRegistry()
    agents = Registry(config, registry)  # host agents that registered: in the estate
    agents.load([REGISTRATION.decode(body) for body in await store.registrations()])
    registered = agents.registered(config, config.devices)
    object.__setattr__(config, "devices", {**config.devices, **registered})
    agents.in_force = set(registered)
    state = State(max_series_per_device=config.engine.max_series_per_device)
    for row in await store.load_devices():
        known = config.devices.get(row.device)
        status = DeviceStatus(
            config.location_of(row.device) if known else "",
            config.municipality_of(row.device) if known else "",
            row.last_seen, row.state, row.state_since, row.reason)
        state.devices[row.device] = status
    metrics = EngineMetrics(registry)
    # A loss stays counted across restarts: the counter goes on from the stored total
    # (it is stored in the batch that skipped), so Prometheus never sees it reset.
    metrics.skipped_total.inc(sum((await store.skipped()).values()))
    collector = StateCollector(state, config)
    registry.register(collector)
    exposition = SeriesExposition(state, collector.device_labels)
    rules = await RulesService.start(config, store, state, registry)
    notify = await NotifyService.start(config, store, rules, registry, location, state)
    rules.listeners.append(notify.on_alerts)  # with copies of the alerts that changed
    sla = await SlaService.start(config, store, registry)
    links = Links(config, registry)  # the links the switches report (monitor.links)
    links.load(await store.neighbour_reports())
    links.put_in_force = rules.links_changed
    links.registered = lambda device: device in agents.in_force  # a set it replaces
    links.refresh(time.time())
    collector.uplinks = rules.uplinks
    ingest = Ingest(state, await store.load_progress(), metrics,
                    observer=Observers(agents, links, agents.gated(rules), sla.ledger),
                    gate=_gates(agents.check, links.check),
                    bounds=Bounds(config.engine.max_clock_skew, config.engine.max_event_age,
                                  config.engine.max_seq_jump, config.engine.bind_src))
    engine = Engine(broker=broker, location=location, store=store, ingest=ingest,
                    metrics=metrics, password=password, v5=v5,
                    batch_max=config.engine.batch_max, batch_wait=config.engine.batch_wait,
                    rules=rules, ledger=sla.ledger, agents=agents, links=links,
                    liveness=Liveness(location, config.locations))
    # one notification log and one set of operator actions for both locations
    notify.replicate, engine.on_shared["nflog"] = engine.sharer("nflog"), notify.apply_peer
    rules.replicate, engine.on_shared["ops"] = engine.sharer("ops"), rules.apply_peer
    auth = Auth(config, metrics.sign_ins)
    estate = EstateReload(config, location, rules, notify, sla, state, auth.configure,
                          registry, agents, links)
    agents.join, agents.put_in_force = estate.join, estate.registrations_changed
    agents.share = rules.share_registration
    rules.on_registration = agents.apply_peer
    supervisor = Supervisor(registry)
    # Stopped in this order: ingest commits what it took; the rules' last tick writes
    # what they still hold; notifications queue what that tick decided.
    supervisor.add("ingest", engine.run, "stop")
    supervisor.add("rules", rules.run, "stop")
    supervisor.add("notify", notify.run, "restart")
    supervisor.add("sla", sla.run, "restart")
    supervisor.add("registration", agents.run, "restart")

    async def ready() -> dict[str, bool]:
        return {"broker": engine.connected, "store": await store.writable(),
                **supervisor.health()}

    def routes(app: web.Application) -> None:
        add_routes(app, config=config, auth=auth, rules=rules, notify=notify, sla=sla,
                   state=state, location=location, estate=estate, agents=agents,
                   links=links)

    scrape_token = (config.engine.metrics_token.resolve()
                    if config.engine.metrics_token is not None else None)
    runner = web.AppRunner(build_app(registry, ready, routes, exposition.render,
                                     scrape_token), access_log=None)
    await runner.setup()
    site = web.SockSite(runner, listener)
    await site.start()
    bound = listener.getsockname()[1]
    url = f"http://{config.engine.http_host}:{bound}"
    stopping = asyncio.Event()
    supervision = asyncio.create_task(supervisor.run(stopping), name=f"engine-{location}")
    log.info("engine_started", location=location, url=url, store=store.path,
             broker=f"{broker.host}:{broker.port}")
    return EngineApp(engine, store, lock, runner, url, rules, notify, sla, supervisor,
                     supervision, stopping, estate)


def _gates(*gates: Callable[[DeviceTopic, Event], None]) -> Callable[[DeviceTopic, Event],
                                                                       None]:
    """Several of ingest's gates as one: each may refuse (Rejected)."""
    def gate(where: DeviceTopic, event: Event) -> None:
        for check in gates:
            check(where, event)
    return gate


async def run_engine(config_path: str, location: str, *, http_port: int | None = None) -> int:
    """The ``driftsvakt engine`` command; returns its exit code (monitor.startup)."""
    try:
        config = load_config(Path(config_path))
        app = await start_engine(config, location, http_port=http_port)
    except Problems as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_CONFIG
    except StartRefused as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        log.error("engine_refused_to_start", location=location, reason=str(exc),
                  exit_code=exc.code)
        return exc.code
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    reloads: set[asyncio.Task[tuple[EstateChange, list[str]]]] = set()

    def reload() -> None:
        task = asyncio.create_task(app.estate.everything("SIGHUP"))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, reload)
    signalled = asyncio.create_task(stopping.wait())
    await asyncio.wait({app.supervision, signalled}, return_when=asyncio.FIRST_COMPLETED)
    signalled.cancel()
    log.info("engine_stopping", location=location)
    code = await app.stop()
    if code:
        log.error("engine_failed", location=location, task=app.supervisor.failed,
                  exit_code=code)
    log.info("engine_stopped", location=location, exit_code=code)
    return code
