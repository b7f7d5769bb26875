"""``driftsvakt collect checks``: run each configured check on its interval, publish results.

Each check has its own loop, started at a random point within its first interval so
that hundreds of checks do not fire together; at most ``concurrency`` probes run at
once. A probe that fails is retried ``retries`` times before the failure is reported.
A run that overruns its interval is counted and the missed run skipped, never
stacked. Results go out as ``check`` events of the check's device.
"""

from __future__ import annotations

import asyncio
import random
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import structlog

from collectors.checks.icmp import IcmpUnavailable, Pinger
from collectors.checks.probes import ProbeResult, dns_probe, http_probe, tcp_probe, tls_probe
from collectors.common.publisher import Publisher
from collectors.common.service import first_of
from monitor.config import CheckSpec, Config

__all__ = ["CheckRunner", "RunnerStats"]

log = structlog.get_logger(__name__)


@dataclass
class RunnerStats:
    runs: int = 0
    failures: int = 0
    overruns: int = 0


class CheckRunner:
    """Runs the checks that belong to ``location``."""

    def __init__(self, config: Config, location: str, publisher: Publisher, *,
                 pinger: Pinger | None = None, concurrency: int = 64,
                 rng: random.Random | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.location = location
        self.publisher = publisher
        self.pinger = pinger or Pinger()
        self.slots = asyncio.Semaphore(concurrency)
        self.rng = rng or random.Random()
        self.clock = clock
        self.stats = RunnerStats()
        self.checks = self._ours(config)
        self._stop = asyncio.Event()
        self._gone: dict[str, asyncio.Event] = {}  # a check's loop ends when set
        self._group: asyncio.TaskGroup | None = None
        self._session: aiohttp.ClientSession | None = None

    def _ours(self, config: Config) -> list[CheckSpec]:
        return [c for c in config.checks.values()
                if (c.location or config.location_of(c.device)) == self.location]

    def stop(self) -> None:
        self._stop.set()

    def reload(self, config: Config) -> dict[str, int]:
        """A reloaded estate: a check that left or changed ends its loop after the run
        under way, a new or changed one starts its own; the others go on."""
        old = {c.id: c for c in self.checks}
        new = {c.id: c for c in self._ours(config)}
        ending = [i for i in old if new.get(i) != old[i]]
        starting = [new[i] for i in new if old.get(i) != new[i]]
        self.config = config
        for check in ending:
            self._gone.pop(check, asyncio.Event()).set()
        self.checks = list(new.values())
        if self._group is not None:
            for spec in starting:
                self._start(self._group, spec)
        return {"checks": len(self.checks), "ended": len(ending), "started": len(starting)}

    def _start(self, group: asyncio.TaskGroup, spec: CheckSpec) -> None:
        gone = self._gone[spec.id] = asyncio.Event()
        group.create_task(self._loop(spec, gone), name=f"check-{spec.id}")

    async def run(self) -> None:
        try:
            self.pinger.open()
        except IcmpUnavailable as exc:
            log.error("icmp_unavailable", reason=str(exc),
                      consequence="icmp checks report failure with this reason")
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=60)
        async with aiohttp.ClientSession(connector=connector) as session:
            self._session = session
            log.info("checks_started", location=self.location, checks=len(self.checks))
            async with asyncio.TaskGroup() as tg:
                self._group = tg
                tg.create_task(self._stop.wait(), name="checks-running")  # checks may come
                for spec in self.checks:
                    self._start(tg, spec)
            self._group = None
        self.pinger.close()

    async def _loop(self, spec: CheckSpec, gone: asyncio.Event) -> None:
        delay = self.rng.uniform(0, spec.interval)
        next_at = time.monotonic() + delay
        while not self._stop.is_set():
            await first_of(next_at - time.monotonic(), self._stop, gone)
            if self._stop.is_set() or gone.is_set():
                return
            await self.run_once(spec)
            next_at += spec.interval
            if next_at < time.monotonic():  # overran: skip the missed runs
                missed = int((time.monotonic() - next_at) // spec.interval) + 1
                self.stats.overruns += missed
                next_at += missed * spec.interval

    async def run_once(self, spec: CheckSpec) -> ProbeResult:
        """Probe (with retries), publish the result, return it."""
        started = self.clock()
        async with self.slots:
            result = await self.probe(spec)
            for _ in range(spec.retries):
                if result.ok:
                    break
                result = await self.probe(spec)
        self.stats.runs += 1
        if not result.ok:
            self.stats.failures += 1
        await self.publisher.check(
            self.config.municipality_of(spec.device), spec.device, started, check=spec.id,
            kind=spec.kind, ok=result.ok, latency=result.latency, reason=result.reason,
            values=result.values)
        return result

    async def probe(self, spec: CheckSpec) -> ProbeResult:
        if spec.kind == "icmp":
            return await self._icmp(spec)
        if spec.kind == "tcp":
            return await tcp_probe(*spec.host_port(), spec.timeout)
        if spec.kind == "tls":
            host, port = spec.host_port()
            return await tls_probe(host, port, spec.timeout, server_name=spec.server_name,
                                   ca_file=spec.ca_file)
        if spec.kind == "dns":
            return await dns_probe(spec.target, spec.timeout, expect=tuple(spec.expect))
        assert self._session is not None, "run() opens the HTTP session"
        context = ssl.create_default_context(cafile=spec.ca_file) if spec.ca_file else None
        return await http_probe(self._session, spec.target, spec.timeout,
                                expect_status=tuple(spec.expect_status),
                                body_match=spec.body_match,
                                follow_redirects=spec.follow_redirects, ssl_context=context)

    async def _icmp(self, spec: CheckSpec) -> ProbeResult:
        target = spec.target.strip("[]")
        try:
            infos = await asyncio.wait_for(
                asyncio.get_running_loop().getaddrinfo(target, None, type=socket.SOCK_RAW),
                spec.timeout)
            address = str(infos[0][4][0])
            rtt = await self.pinger.ping(address, spec.timeout)
        except TimeoutError:
            return ProbeResult(False, reason=f"{target}: no echo reply within {spec.timeout} s")
        except IcmpUnavailable as exc:
            return ProbeResult(False, reason=f"ICMP unavailable here: {exc}")
        except OSError as exc:
            return ProbeResult(False, reason=f"{target}: {exc}")
        return ProbeResult(True, latency=rtt)
