"""``driftsvakt agent``: read the host each interval, publish through the outbox.

One metrics event and one heartbeat per cycle, through the shared
:class:`~collectors.common.publisher.Publisher`: nothing is lost while the broker or
the link is away, the last will marks the host ``offline`` when the connection
drops, and a clean shutdown (SIGTERM, Ctrl-C, the Windows service stopping)
publishes ``stopping``. An agent with an enrolment token logs in as its
municipality's enrolment identity and registers itself first, every time it starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from dataclasses import replace

import structlog

from collectors.agent.enrol import HostFacts, host_facts, registration_body
from collectors.agent.host import ServiceSource, host_samples, service_source
from collectors.agent.settings import AgentSettings
from collectors.common.outbox import Outbox
from collectors.common.publisher import Publisher
from monitor.enrolment import parse_token
from monitor.events import Sample
from monitor.fields import Broker

__all__ = ["Agent", "run_agent"]

log = structlog.get_logger(__name__)


class Agent:
    """The agent's cycle; ``run`` until ``stop``."""

    def __init__(self, settings: AgentSettings, publisher: Publisher,
                 services: ServiceSource, device: str) -> None:
        self.settings = settings
        self.publisher = publisher
        self.services = services
        self.device = device
        self._stop = asyncio.Event()
        self.cycles = 0

    def stop(self) -> None:
        self._stop.set()

    async def cycle(self) -> None:
        watch = self.settings.watch
        samples = await asyncio.to_thread(host_samples, watch.processes)
        states = await self.services.states(list(watch.services))
        samples += [Sample(name="service_active", value=1.0 if up else 0.0,
                           labels={"service": name[:128]}) for name, up in states.items()]
        now = time.time()
        await self.publisher.metrics(self.settings.municipality, self.device, now, samples,
                                     interval=self.settings.every)
        await self.publisher.heartbeat(self.settings.municipality, self.device, now,
                                       interval=self.settings.every)
        self.cycles += 1

    async def run(self) -> None:
        every = self.settings.every
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                await self.cycle()
            except OSError as exc:  # a host reading failed: log, keep the cycle going
                log.warning("agent_cycle_failed", device=self.device, error=str(exc))
            next_at += every
            delay = max(0.0, next_at - time.monotonic())
            if delay == 0.0:
                next_at = time.monotonic()  # overran: start again from now, never stack
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)


def _login(settings: AgentSettings, device: str) -> tuple[Broker, str | None, str | None]:
    """The broker login, and the enrolment secret where the agent enrols."""
    broker = settings.broker
    assert broker is not None
    if settings.enrolment_token is not None:
        _, municipality, secret = parse_token(settings.enrolment_token.resolve())
        return replace(broker, username=f"enrol-{municipality}"), secret, secret
    if broker.username and "{device}" in broker.username:
        # one settings file for a municipality's PCs, each its own broker identity
        broker = replace(broker, username=broker.username.replace("{device}", device))
    return broker, broker.password.resolve() if broker.password else None, None


async def register(publisher: Publisher, settings: AgentSettings, device: str,
                   secret: str, facts: HostFacts | None = None) -> int | None:
    """This host's registration, through the outbox like any event."""
    if facts is None:
        facts = await asyncio.to_thread(host_facts, settings.machine_id, settings.ad_site,
                                        settings.dn)
    body = registration_body(facts, settings.municipality, device, secret,
                             settings.device_class)
    seq = await publisher.emit(settings.municipality, device, "register", time.time(),
                               **body)
    log.info("agent_registering", hostname=facts.hostname, addresses=facts.addresses,
             machine_id=facts.machine_id, ad_site=facts.ad_site, dn=facts.dn)
    return seq


async def run_agent(settings: AgentSettings) -> int:
    import psutil

    psutil.cpu_percent(interval=None)  # the first reading primes the counter
    device = settings.device_id()
    broker, password, secret = _login(settings, device)
    structlog.contextvars.bind_contextvars(location=settings.location,
                                           municipality=settings.municipality, device=device)
    outbox = await Outbox.open(settings.outbox)
    publisher = Publisher(broker=broker, location=settings.location, component="agent",
                          instance=device, outbox=outbox, password=password)
    agent = Agent(settings, publisher, service_source(), device)
    if secret is not None:  # first in the outbox: the engine places it before its data
        await register(publisher, settings, device, secret)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):  # Windows: Ctrl-C raises instead
            loop.add_signal_handler(sig, agent.stop)
    log.info("agent_started", interval=settings.every, broker=f"{broker.host}:{broker.port}",
             outbox=settings.outbox, device_class=settings.device_class)
    try:
        async with asyncio.TaskGroup() as tg:
            sender = tg.create_task(publisher.run(), name="publisher")
            await agent.run()
            publisher.stop()
            await asyncio.wait_for(asyncio.shield(sender), 10)
    finally:
        await outbox.close()
    log.info("agent_stopped", cycles=agent.cycles)
    return 0
