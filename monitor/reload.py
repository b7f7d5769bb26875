"""Reading the estate again while the engine runs (SIGHUP, ``POST /-/reload``).

The whole estate is loaded and checked first, off the event loop — every file, every
reference, every credential it names (as at start: an unreadable token refuses the
reload, never opens a door) — and a change with any problem is refused as a whole:
nothing of it is in force, the running estate stays, and the problems are reported
with file, line and key. A change that passes is put in force in one step between two
turns of the event loop (``Config.adopt``; every part of the engine reads the config
it holds at each use), and then the parts that keep something derived from it take
the new estate: the rules' inventory (alerts of devices that left resolve as
*retired*, not as recovered), the devices' state, users, notification routes and
receivers, the SLA ledger's components. What the rest of the engine holds — alerts,
acknowledgements, silences, maintenance, the state of every device that stays — is
untouched. Settings read only at start (listeners, brokers, the store, sign-in
providers) keep their running value and are named as such.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec
import structlog
from prometheus_client import CollectorRegistry, Gauge

from monitor.config import Config, Device, load_config
from monitor.links import Links
from monitor.notify.service import NotifyService
from monitor.registration import Registry
from monitor.rules.service import RulesService
from monitor.sla.service import SlaService
from monitor.startup import StartRefused, check_credentials
from monitor.state import State
from monitor.yamlmodel import Problems

__all__ = ["EstateChange", "EstateReload"]

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class EstateChange:
    reloaded: bool
    problems: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)  # devices
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    retired_alerts: int = 0
    at_restart: list[str] = field(default_factory=list)  # settings that wait for it
    seconds: float = 0.0  # from the call to the change in force and stored
    blocking: float = 0.0  # of which the event loop did nothing else (the one step)

    def summary(self) -> dict[str, object]:
        return {"reloaded": self.reloaded, "problems": self.problems,
                "devices": {"added": len(self.added), "removed": len(self.removed),
                            "changed": len(self.changed)},
                "retired_alerts": self.retired_alerts, "at_restart": self.at_restart,
                "seconds": round(self.seconds, 3), "blocking_seconds": round(self.blocking, 3)}


class EstateReload:
    def __init__(self, config: Config, location: str, rules: RulesService,
                 notify: NotifyService, sla: SlaService, state: State,
                 users: Callable[[Config], None], registry: CollectorRegistry,
                 agents: Registry | None = None, links: Links | None = None) -> None:
        self.config = config
        self.agents = agents  # registered agents: part of the estate, not of its files
        self.links = links  # the links the switches report: matched to the estate anew
        self._joined = False
        self.location = location
        self.rules = rules
        self.notify = notify
        self.sla = sla
        self.state = state
        self.users = users  # the web side takes the users (monitor.web.auth)
        self._lock = asyncio.Lock()
        self.last_ok = Gauge("driftsvakt_estate_last_reload_success",
                             "1 when the last estate reload was put in force (or none was "
                             "asked), 0 when it was refused", registry=registry)
        self.last_ok.set(1)

    async def everything(self, actor: str) -> tuple[EstateChange, list[str]]:
        """The estate, then the rule files (SIGHUP, ``POST /-/reload``); the rules are
        not read again when the estate is refused: one reload, one whole change."""
        change = await self.reload(actor)
        return change, (await self.rules.reload() if change.reloaded else [])

    async def reload(self, actor: str) -> EstateChange:
        async with self._lock:  # two reloads at once would compare against each other
            started = time.perf_counter()
            change = await self._reload()
            change.seconds = time.perf_counter() - started
        await self.rules.store.audit(actor, "reload_estate", self.config.source,
                                     msgspec.json.encode(change.summary()))
        self.last_ok.set(1 if change.reloaded else 0)
        if change.reloaded:
            log.info("estate_reloaded", location=self.location, by=actor,
                     **change.summary())
        else:
            log.error("estate_reload_refused", location=self.location, by=actor,
                      problems=len(change.problems), first=change.problems[0])
        return change

    async def _reload(self) -> EstateChange:
        try:
            new = await asyncio.to_thread(load_config, self.config.source)
            if self.location not in new.locations:
                return EstateChange(False, [f"{self.config.source}: location "
                                            f"{self.location!r} is no longer in the config"])
            check_credentials(new, self.location)
        except Problems as exc:
            return EstateChange(False, [str(p) for p in exc.problems])
        except StartRefused as exc:
            return EstateChange(False, [str(exc)])
        added = self.agents.registered(new, new.devices) if self.agents else {}
        new = dataclasses.replace(new, devices={**new.devices, **added})
        change = await self._put_in_force(new)
        if self.agents is not None:
            self.agents.in_force = set(added)
        return change

    def join(self, devices: list[Device]) -> None:
        """Accepted agents join the running estate at once, in the step that accepted
        them: their next event is a known device's. Nothing else changes, so the rules'
        trackers run on; the notification side takes their names at the next step."""
        agents = self.agents
        assert agents is not None
        for device in devices:
            self.config.devices[device.id] = device
            agents.in_force.add(device.id)
        self.rules.devices_joined(self.config, [d.id for d in devices])
        if self.links is not None:
            self.links.stale()  # worked out again with the batch
        self._joined = True

    async def registrations_changed(self) -> None:
        """What the registrations changed since the last step: an agent rejected after
        it was accepted leaves the estate (its alerts retire), one moved changes site —
        the whole step, as a reload takes it; those that only joined are named to the
        notification side."""
        agents = self.agents
        assert agents is not None
        async with self._lock:
            declared = agents.declared()
            wanted = agents.registered(self.config, declared)
            held = {d: self.config.devices[d] for d in agents.in_force
                    if d in self.config.devices}
            if wanted != held:
                change = await self._put_in_force(
                    dataclasses.replace(self.config, devices={**declared, **wanted}))
                agents.in_force = set(wanted)
                log.info("registered_agents_changed", location=self.location,
                         **change.summary())
            elif self._joined:
                self.notify.configure(self.config)
            self._joined = False

    async def _put_in_force(self, new: Config) -> EstateChange:
        old = self.config.devices
        removed = sorted(set(old) - set(new.devices))
        change = EstateChange(
            True, added=sorted(set(new.devices) - set(old)), removed=removed,
            changed=sorted(d for d in set(old) & set(new.devices) if old[d] != new.devices[d]))
        # one step, no await: nothing sees half of it
        step = time.perf_counter()
        change.at_restart = self.config.adopt(new)
        gone = set(removed)
        change.retired_alerts = self.rules.estate_changed(self.config, gone, time.time())
        if self.links is not None:
            self.links.estate_changed()
        self.state.forget(gone)
        self.notify.configure(self.config)
        self.sla.estate_changed()
        self.users(self.config)
        change.blocking = time.perf_counter() - step
        # then what the store keeps of it
        await self.rules.store.commit_alerts(self.rules.changes())
        await self.rules.store.forget_devices(removed)
        return change
