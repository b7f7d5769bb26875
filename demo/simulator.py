"""A simulated estate for the demo: plausible events for every device of one location.

Each device reports on its own schedule, spread with jitter; switches and routers
send interface counters that grow with a daily traffic curve, servers CPU, memory
and disk, UPSes battery figures, PCs a heartbeat and their CPU. PCs keep their
site's office hours: they are switched off (their agent says ``stopping``) when the
office closes and come on during the first half hour after it opens. Now and then a
device goes down for a while and comes back, so the demo has something to show.
Everything goes through the real :class:`~collectors.common.publisher.Publisher`.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import structlog

from collectors.common.publisher import Publisher
from monitor.config import Config, Device
from monitor.events import Sample

__all__ = ["Simulator"]

log = structlog.get_logger(__name__)

PORTS: Final = {"switch": 8, "router": 4, "firewall": 4}
SPEED_BPS: Final = 1e9


@dataclass(slots=True)
class _DeviceSim:
    device: Device
    municipality: str
    booted: float
    octets: dict[str, list[float]] = field(default_factory=dict)
    cpu: float = 0.1
    down_until: float = 0.0
    errors: dict[str, list[int]] = field(default_factory=dict)
    last_state: str = ""
    arrives_after: float = 0.0  # a PC: seconds after the office opens that it is turned on


class Simulator:
    """Drives the devices of ``location`` through ``publisher`` until stopped."""

    def __init__(self, config: Config, location: str, publisher: Publisher, *,
                 interval: float = 15.0, pc_interval: float = 30.0, first_round: float = 5.0,
                 fault_every: float = 20.0, seed: int | None = None,
                 clock: Callable[[], float] = time.time,
                 skip: frozenset[str] = frozenset()) -> None:
        """``skip``: devices something else reports for (the demo's simulated SNMP
        agents, polled by the real poller)."""
        self.config = config
        self.location = location
        self.publisher = publisher
        self.interval = interval
        self.pc_interval = pc_interval
        self.first_round = first_round
        self.fault_every = fault_every
        self.rng = random.Random(seed)
        self.clock = clock
        self._stop = asyncio.Event()
        now = clock()
        self.devices = {
            d.id: _DeviceSim(d, config.municipality_of(d.id),
                             booted=now - self.rng.uniform(3600, 90 * 86400),
                             arrives_after=self.rng.uniform(0, 1800))
            for d in config.devices.values()
            if config.location_of(d.id) == location and d.id not in skip
        }

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        now = self.clock()
        queue = [(now + self.rng.uniform(0, self.first_round), d) for d in self.devices]
        heapq.heapify(queue)
        next_fault = now + self.fault_every
        log.info("simulator_started", location=self.location, devices=len(self.devices))
        while not self._stop.is_set() and queue:
            due = queue[0][0]
            delay = due - self.clock()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=min(delay, 1.0))
                continue
            # Everything due now goes out together: the outbox commits it in one go.
            batch: list[tuple[float, str]] = []
            while queue and queue[0][0] <= due + 0.05:
                batch.append(heapq.heappop(queue))
            await asyncio.gather(*(self._report(self.devices[d], t) for t, d in batch))
            for t, d in batch:
                every = (self.pc_interval if self.devices[d].device.device_class == "pc"
                         else self.interval)
                heapq.heappush(queue, (t + every, d))
            if due >= next_fault:
                self._inject_fault(due)
                next_fault = due + self.rng.expovariate(1 / self.fault_every)

    def _inject_fault(self, now: float) -> None:
        candidates = [s for s in self.devices.values()
                      if s.device.device_class not in ("pc",) and s.down_until < now]
        if not candidates:
            return
        sim = self.rng.choice(candidates)
        # Two in three are blips, shorter than DeviceDown's for: 2m (no alert); the
        # others are outages of 3 to 10 minutes that alert, notify and resolve.
        outage = self.rng.random() < 1 / 3
        sim.down_until = now + (self.rng.uniform(180, 600) if outage
                                else self.rng.uniform(30, 110))
        log.info("simulated_fault", location=self.location, device=sim.device.id,
                 until=round(sim.down_until - now))

    def _pc_is_on(self, sim: _DeviceSim, now: float) -> bool:
        hours, _ = self.config.office_hours_for(sim.device.id)
        at = datetime.fromtimestamp(now, UTC)
        opened = hours.period_start(at)
        return opened is not None and (at - opened).total_seconds() >= sim.arrives_after

    async def _report(self, sim: _DeviceSim, now: float) -> None:
        device = sim.device
        pub = self.publisher
        if device.device_class == "pc":
            if not self._pc_is_on(sim, now):
                if sim.last_state != "stopping":
                    sim.last_state = "stopping"
                    await pub.state(sim.municipality, device.id, now, "stopping",
                                    reason="switched off (simulated office hours)")
                return
            if sim.last_state != "online":
                sim.last_state = "online"
                sim.booted = now
                await pub.state(sim.municipality, device.id, now, "online")
        if now < sim.down_until:
            # repeated every poll while down, as the real poller does: the SLA ledger
            # reads silence as "unknown", not as "still down"
            sim.last_state = "down"
            await pub.state(sim.municipality, device.id, now, "down",
                            reason="no SNMP response (simulated)")
            return
        if sim.last_state == "down":
            sim.booted = now - self.rng.uniform(5, 60)  # it came back by rebooting
            sim.octets.clear()
        if sim.last_state != "up" and device.device_class != "pc":
            sim.last_state = "up"
            await pub.state(sim.municipality, device.id, now, "up")
        samples = self._samples(sim, now)
        if device.device_class == "pc":
            await pub.heartbeat(sim.municipality, device.id, now, interval=self.pc_interval)
        if samples:
            interval = self.pc_interval if device.device_class == "pc" else self.interval
            await pub.metrics(sim.municipality, device.id, now, samples, interval=interval)

    def _samples(self, sim: _DeviceSim, now: float) -> list[Sample]:
        cls = sim.device.device_class
        rng = self.rng
        sim.cpu = min(1.0, max(0.01, sim.cpu + rng.gauss(0, 0.03)))
        uptime = Sample(name="sys_uptime_seconds", value=round(now - sim.booted, 1))
        if cls in PORTS:
            hour = (now / 3600 + 1) % 24  # Norwegian local time, roughly
            load = 0.05 + 0.25 * max(0.0, math.sin(math.pi * (hour - 6) / 14))
            samples = [uptime, Sample(name="cpu_usage_ratio", value=round(sim.cpu * 0.5, 4))]
            for port in range(1, PORTS[cls] + 1):
                ifname = f"Gi1/0/{port}"
                counters = sim.octets.setdefault(ifname, [rng.uniform(0, 1e12),
                                                          rng.uniform(0, 1e12)])
                for i in (0, 1):
                    counters[i] += load * SPEED_BPS / 8 * self.interval * rng.uniform(0.5, 1.5)
                oper_up = not (port == PORTS[cls] and rng.random() < 0.02)
                errors = sim.errors.setdefault(ifname, [0, 0])
                if port == 1:  # a dirty uplink here and there: CRC errors now and then
                    errors[0] = (errors[0] + int(rng.expovariate(1 / 20))) % 2**32
                labels = {"ifname": ifname}
                samples += [  # the names the SNMP poller's if_mib module gives them
                    Sample(name="if_in_octets", value=float(int(counters[0])),
                           labels=labels, kind="counter64"),
                    Sample(name="if_out_octets", value=float(int(counters[1])),
                           labels=labels, kind="counter64"),
                    Sample(name="if_in_errors", value=float(errors[0]), labels=labels,
                           kind="counter32"),
                    Sample(name="if_out_errors", value=float(errors[1]), labels=labels,
                           kind="counter32"),
                    Sample(name="if_admin_status", value=1.0, labels=labels),
                    Sample(name="if_oper_status", value=1.0 if oper_up else 2.0, labels=labels),
                    Sample(name="if_speed_bps", value=float(SPEED_BPS), labels=labels),
                ]
            return samples
        if cls == "server":
            return [
                uptime,
                Sample(name="cpu_usage_ratio", value=round(sim.cpu, 4)),
                Sample(name="memory_used_ratio", value=round(0.4 + 0.4 * sim.cpu, 4)),
                Sample(name="filesystem_used_ratio", value=round(rng.uniform(0.3, 0.9), 3),
                       labels={"mountpoint": "/"}),
                Sample(name="load1", value=round(sim.cpu * 4, 2)),
            ]
        if cls == "ups":
            return [  # as the SNMP poller's ups_mib module names them; 3 = normal
                Sample(name="ups_output_source", value=3.0),
                Sample(name="ups_on_battery", value=0.0),
                Sample(name="ups_battery_status", value=2.0),  # normal
                Sample(name="ups_seconds_on_battery", value=0.0),
                Sample(name="ups_estimated_charge_remaining_percent", value=100.0),
                Sample(name="ups_estimated_minutes_remaining",
                       value=float(round(rng.uniform(28, 32)))),
            ]
        if cls == "pc":
            return [Sample(name="cpu_usage_ratio", value=round(sim.cpu, 4))]
        return [uptime]
