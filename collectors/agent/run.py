"""``driftsvakt agent``: read the host each interval, publish through the outbox.

One metrics event and one heartbeat per cycle, through the shared
:class:`~collectors.common.publisher.Publisher`: nothing is lost while the broker or
the link is away, the last will marks the host ``offline`` when the connection
drops, and a clean shutdown (SIGTERM, Ctrl-C, the Windows service stopping)
publishes ``stopping``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from dataclasses import replace

import structlog

from collectors.agent.host import ServiceSource, host_samples, service_source
from collectors.agent.settings import AgentSettings
from collectors.common.outbox import Outbox
from collectors.common.publisher import Publisher
from monitor.events import Sample

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


async def run_agent(settings: AgentSettings) -> int:
    import psutil

    psutil.cpu_percent(interval=None)  # the first reading primes the counter
    device = settings.device_id()
    broker = settings.broker
    assert broker is not None
    if broker.username and "{device}" in broker.username:
        # one settings file for a municipality's PCs, each its own broker identity
        broker = replace(broker, username=broker.username.replace("{device}", device))
    structlog.contextvars.bind_contextvars(location=settings.location,
                                           municipality=settings.municipality, device=device)
    password = broker.password.resolve() if broker.password else None
    outbox = await Outbox.open(settings.outbox)
    publisher = Publisher(broker=broker, location=settings.location, component="agent",
                          instance=device, outbox=outbox, password=password)
    agent = Agent(settings, publisher, service_source(), device)
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
