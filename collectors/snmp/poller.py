"""``driftsvakt collect snmp``: poll every SNMP device of a location on its interval.

Per device: one GET for the scalars of its class's modules, one multi-column GETBULK
walk for their tables (a second for fallback columns the device lacks, such as the
32-bit octet counters where there is no ifXTable), one batched metrics event.

No answer gives a ``state: down`` event at once; a refused digest or unknown user
``auth_error`` (not down); a malformed response ends that poll with a typed error and
the next poll starts afresh. Polls are spread over the interval with jitter, run at
most ``concurrency`` at a time, and a device that keeps timing out is polled less
often (up to 4 intervals apart) — its down state was already reported on the first.
A poll that overruns its interval is counted and the missed turn skipped.

Switches and routers (``topology.classes``) also have their LLDP and CDP neighbour
tables read every ``topology.interval``, after a poll they answered, and sent as a
``neighbours`` event: the engine's map of the links (monitor.links) is made of them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import random
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import structlog
from pysnmp.hlapi.v3arch.asyncio import SnmpEngine

from collectors.common.publisher import Emitter
from collectors.common.service import first_of
from collectors.snmp.client import CollectError, Session, SnmpSession, Value
from collectors.snmp.community import CommunitySession, UdpRequester
from collectors.snmp.metrics import PollerMetrics
from collectors.snmp.modules import Module, Table, modules_for
from collectors.snmp.neighbours import neighbours
from collectors.snmp.text import bounded
from monitor.config import Config, Device
from monitor.events import DeviceStateName, Neighbour, Sample
from monitor.linkmap import propose

__all__ = ["PollerStats", "SnmpPoller", "samples_from"]

log = structlog.get_logger(__name__)

DEFAULT_INTERVAL: Final = 60.0
MAX_BACKOFF_INTERVALS: Final = 4
# A silent device is polled less often (its timeouts hold a slot for long), but never
# less than every 90 s: any change of it is then seen within the shortest `for:` of the
# shipped rules (DeviceDown, 2 min), and a device's recovery is not reported minutes late.
MAX_BACKOFF_SECONDS: Final = 90.0


@dataclass
class PollerStats:
    polls: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    overruns: int = 0
    varbinds: int = 0
    rechecks: int = 0  # devices polled early because their parent answered again
    neighbour_reads: int = 0  # LLDP/CDP tables read (topology.interval)
    neighbour_errors: int = 0  # reads that failed (the poll itself had answered)
    # the latest poll durations (bounded: a poller runs for months)
    durations: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))


SYS_OBJECT_ID: Final = "1.3.6.1.2.1.1.2.0"
SYS_UPTIME: Final = "1.3.6.1.2.1.1.3.0"

# what a failed poll says of the device; other errors (protocol, ...) say nothing
_STATE_OF_ERROR: Final[dict[str, DeviceStateName]] = {"timeout": "down",
                                                      "auth_error": "auth_error"}


def samples_from(modules: list[Module], scalars: dict[str, Value],
                 columns: dict[str, dict[str, Value]]) -> list[Sample]:
    """The metrics of one poll, from the values fetched (pure: tested without a device).
    A module that ``fills_in`` (a vendor's MIB read into the standard metrics) sends
    only the metrics the others did not: a UPS with UPS-MIB and XUPS-MIB has one
    series per metric, from the standard."""
    samples: list[Sample] = []
    primary = [m for m in modules if not m.fills_in]
    for module in (*primary, *(m for m in modules if m.fills_in)):
        got = _module_samples(module, scalars, columns)
        if module.fills_in:
            known = {s.name for s in samples}
            got = [s for s in got if s.name not in known]
        samples += got
    return samples


def _module_samples(module: Module, scalars: dict[str, Value],
                    columns: dict[str, dict[str, Value]]) -> list[Sample]:
    samples: list[Sample] = []
    for scalar in module.scalars:
        value = scalars.get(scalar.oid)
        if value is not None and value.number is not None:
            number = scalar.sample_value(value.number)
            if number is not None:
                samples.append(Sample(name=scalar.name, value=number, kind=scalar.kind))
    if module.info is not None:
        labels = {k: bounded(scalars[o].text) for k, o in module.info.labels.items()
                  if o in scalars}
        if labels:
            samples.append(Sample(name=module.info.name, value=1.0, labels=labels))
    for table in module.tables:
        samples += _table_samples(table, columns)
    return samples


def _table_samples(table: Table, columns: dict[str, dict[str, Value]]) -> list[Sample]:
    """A table's rows as samples, each labelled with its index and the first of each
    label's candidate columns that has a value for the row."""
    samples = []
    labelled: dict[str, dict[str, str]] = {}

    def labels_of(index: str) -> dict[str, str]:
        found_labels = labelled.get(index)
        if found_labels is None:
            found_labels = labelled[index] = {table.index: index}
            for label, candidates in table.labels.items():
                for oid in candidates:
                    found = columns.get(oid, {}).get(index)
                    if found is not None and (found.text or found.number is not None):
                        text = found.text or str(int(found.number or 0))
                        shown = table.label_values.get(label, {}).get(text, text)
                        found_labels[label] = bounded(shown)
                        break
        return found_labels

    for column in table.columns:
        rows = columns.get(column.oid, {})
        sources = [(list(rows.items()), column.kind, column.scale)]
        if column.fallback:  # each row the column lacks, from the fallback
            sources.append(([(i, v) for i, v in columns.get(column.fallback, {}).items()
                             if i not in rows], column.fallback_kind, column.fallback_scale))
        for found, kind, scale in sources:
            for index, value in found:
                # no value, or the device's way of saying it does not know: no sample
                number = None if value.number is None else column.sample_value(
                    value.number, scale)
                if number is not None:
                    samples.append(Sample(name=column.name, value=number,
                                          labels=labels_of(index), kind=kind))
    for ratio in table.ratios:
        divisors = columns.get(ratio.denominator, {})
        for index, value in columns.get(ratio.numerator, {}).items():
            divisor = divisors.get(index)
            if value.number is None or divisor is None or not divisor.number:
                continue
            samples.append(Sample(name=ratio.name, value=value.number / divisor.number,
                                  labels=labels_of(index)))
    return samples


def _lacks_rows(table: Table, oid: str, columns: dict[str, dict[str, Value]]) -> bool:
    """Does column ``oid`` lack a row that the table's other columns have?"""
    have = columns.get(oid, {})
    rows = {i for c in table.columns if not c.fallback for i in columns.get(c.oid, {})}
    return not have or not rows <= have.keys()


def _scalar_oids(modules: list[Module]) -> list[str]:
    oids = [s.oid for m in modules for s in m.scalars]
    return oids + [o for m in modules if m.info for o in m.info.labels.values()]


def _is_ipv4(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).version == 4
    except ValueError:
        return False  # a host name: pysnmp resolves it


class SnmpPoller:
    """Polls the SNMP devices of ``location`` until stopped."""

    def __init__(self, config: Config, location: str, publisher: Emitter,
                 modules: dict[str, Module], *, concurrency: int = 64,
                 engine: SnmpEngine | None = None, rng: random.Random | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.location = location
        self.publisher = publisher
        self.modules = modules
        self.slots = asyncio.Semaphore(concurrency)
        self.engine = engine or SnmpEngine()
        self.rng = rng or random.Random()
        self.clock = clock
        self.stats = PollerStats()
        self.requester = UdpRequester()
        self.devices = self._polled(config)
        self.sessions = {d.id: self._session(d) for d in self.devices}
        self.sys_object_ids: dict[str, str] = {}  # what each device said it is
        self.state: dict[str, str] = {}
        self.in_backoff: set[str] = set()
        self._neighbours_read: dict[str, float] = {}  # when each device's tables were
        self._neighbours: dict[str, list[Neighbour]] = {}  # and what they said
        self._recheck = {d.id: asyncio.Event() for d in self.devices}
        self._gone: dict[str, asyncio.Event] = {}  # a device's loop ends when set
        self._group: asyncio.TaskGroup | None = None
        self._family()
        self.metrics = PollerMetrics(lambda: (self.stats, self.requester.stats,
                                              len(self.in_backoff), self.location))
        self._stop = asyncio.Event()

    def _polled(self, config: Config) -> list[Device]:
        return [d for d in config.devices.values()
                if d.snmp_profile and d.address and config.location_of(d.id) == self.location]

    def _family(self) -> None:
        # When a device answers again, what is behind it is polled at once: it was
        # reported down while unreachable, and must not stay so after its parent is back.
        # Behind it: what the estate declares, and for a device with no parent declared,
        # what the neighbour tables this poller read show (monitor.linkmap, as the
        # engine reads them).
        self.children: dict[str, list[str]] = {}
        self._family_stale = False
        polled = {d.id for d in self.devices}
        found = propose(self.config.devices, self._neighbours, self.config.topology.roots,
                        self.config.topology.classes) if self._neighbours else None
        for d in self.devices:
            parents = d.uplinks
            if not parents and found is not None and d.id in found.placements:
                parents = tuple(found.placements[d.id].parents)
            for parent in parents:
                if parent in polled:
                    self.children.setdefault(parent, []).append(d.id)

    def reload(self, config: Config) -> dict[str, int]:
        """A reloaded estate: a device that left, or changed (address, profile,
        interval, parent…), ends its loop after the poll under way; a new or changed
        one starts its own. The others go on as they were, state and backoff kept. A
        profile whose secret cannot be read refuses the reload as a whole (KeyError,
        OSError), before anything changes."""
        old = {d.id: d for d in self.devices}
        new = {d.id: d for d in self._polled(config)}
        changed_profiles = {p for p in config.snmp_profiles
                            if config.snmp_profiles[p] != self.config.snmp_profiles.get(p)}
        ending = [i for i in old if i not in new or new[i] != old[i]
                  or new[i].snmp_profile in changed_profiles]
        starting = [new[i] for i in new if i not in old or i in ending]
        running, self.config = self.config, config
        try:
            sessions = {d.id: self._session(d) for d in starting}
        except (KeyError, OSError):
            self.config = running  # a secret that cannot be read: nothing changed
            raise
        for ended in ending:
            self._gone.pop(ended, asyncio.Event()).set()
            self.sessions.pop(ended, None)
            self.state.pop(ended, None)
            self.in_backoff.discard(ended)
            self._neighbours_read.pop(ended, None)
            self._neighbours.pop(ended, None)
        self.sessions.update(sessions)
        self.devices = list(new.values())
        self._family()
        for device in starting:
            self._recheck[device.id] = asyncio.Event()
            if self._group is not None:
                self._start(self._group, device)
        return {"devices": len(self.devices), "ended": len(ending),
                "started": len(starting)}

    def _start(self, group: asyncio.TaskGroup, device: Device) -> None:
        gone = self._gone[device.id] = asyncio.Event()
        group.create_task(self._loop(device, gone), name=f"snmp-{device.id}")

    def _session(self, device: Device) -> Session:
        assert device.snmp_profile is not None
        assert device.address is not None
        profile = self.config.snmp_profiles[device.snmp_profile]
        secrets = profile.read_secrets()  # missing secret: fail at start, naming it
        if profile.version == "2c" and _is_ipv4(device.address):
            # the lean path: prebuilt requests, our BER reader, one shared socket
            return CommunitySession(self.requester, device.address, profile,
                                    secrets["community"])
        return SnmpSession(self.engine, device.address, profile, secrets)

    async def _privacy_refused(self, device: Device) -> bool:
        """An authPriv device that did not answer: does it answer authNoPriv, with the
        same user and authentication key? Then it is up and the key right, and it is
        the privacy key (or protocol) it refuses: an agent drops what it cannot decrypt
        without a report (net-snmp does), which looks exactly like a device that is down.
        The probe runs on an SNMP engine of its own, so the user's real settings on the
        shared one are not touched."""
        profile = self.config.snmp_profiles[device.snmp_profile or ""]
        if profile.version != "3" or not profile.priv_protocol or device.address is None:
            return False
        probe = dataclasses.replace(profile, priv_protocol=None, priv_key=None,
                                    timeout=min(profile.timeout, 2.0), retries=0)
        secrets = {"auth_key": profile.auth_key.resolve()} if profile.auth_key else {}
        engine = SnmpEngine()
        try:
            await SnmpSession(engine, device.address, probe, secrets).get([SYS_UPTIME])
        except CollectError as exc:
            return exc.kind != "timeout"  # an answer, if only an error: it is there
        finally:
            engine.close_dispatcher()
        return True

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self.requester.close()

    async def poll(self, device: Device) -> list[Sample]:
        """One poll of ``device``; raises CollectError."""
        known = self.sys_object_ids.get(device.id)
        modules = modules_for(device.device_class, self.modules, known)
        session = self.sessions[device.id]
        scalars = await session.get(_scalar_oids(modules))
        found = scalars.get(SYS_OBJECT_ID)
        if found is not None and found.text and found.text != known:
            # the first answer names the vendor: its modules join from this poll on
            self.sys_object_ids[device.id] = found.text
            extra = [m for m in modules_for(device.device_class, self.modules, found.text)
                     if m not in modules]
            if extra:
                modules += extra
                if _scalar_oids(extra):
                    scalars.update(await session.get(_scalar_oids(extra)))
        primary = [o for m in modules for t in m.tables for o in t.walked()]
        columns = await session.walk(list(dict.fromkeys(primary))) if primary else {}
        missing = [col.fallback for m in modules for t in m.tables for col in t.columns
                   if col.fallback and _lacks_rows(t, col.oid, columns)]
        if missing:
            columns.update(await session.walk(list(dict.fromkeys(missing))))
        self.stats.varbinds += len(scalars) + sum(len(rows) for rows in columns.values())
        return samples_from(modules, scalars, columns)

    def _neighbours_due(self, device: Device) -> bool:
        topology = self.config.topology
        if not topology.discover or device.device_class not in topology.classes:
            return False
        last = self._neighbours_read.get(device.id)
        return last is None or time.monotonic() - last >= topology.interval

    async def _read_neighbours(self, device: Device, municipality: str) -> None:
        """The device's LLDP and CDP tables, after a poll it answered (monitor.links);
        a failed read is counted and tried again at the next poll."""
        started = self.clock()
        try:
            found = await neighbours(self.sessions[device.id])
        except CollectError as exc:
            self.stats.neighbour_errors += 1
            log.warning("neighbours_unread", device=device.id, error=exc.detail)
            return
        self._neighbours_read[device.id] = time.monotonic()
        self.stats.neighbour_reads += 1
        if found != self._neighbours.get(device.id):
            self._neighbours[device.id] = found
            self._family_stale = True  # worked out when a device answers again
        await self.publisher.neighbours(municipality, device.id, started, found)

    async def poll_and_publish(self, device: Device) -> str:
        """Poll once and publish what it found; return the device's state."""
        municipality = self.config.municipality_of(device.id)
        started, mono = self.clock(), time.perf_counter()
        interval = device.interval or DEFAULT_INTERVAL
        state: DeviceStateName | None
        reason: str | None
        async with self.slots:
            try:
                samples = await self.poll(device)
                state, reason = "up", None
                if self._neighbours_due(device):
                    await self._read_neighbours(device, municipality)
            except CollectError as exc:
                samples, reason = [], exc.detail
                kind = exc.kind
                if kind == "timeout" and await self._privacy_refused(device):
                    kind, reason = "auth_error", (
                        "DecryptionError: no answer with privacy, but the agent answers "
                        "authNoPriv with this user and key: the privacy key or protocol "
                        "is wrong")
                state = _STATE_OF_ERROR.get(kind)
                self.stats.errors[kind] += 1
        self.stats.polls += 1
        elapsed = time.perf_counter() - mono
        self.stats.durations.append(elapsed)
        self.metrics.poll_seconds.observe(elapsed)
        previous = self.state.get(device.id)
        if state == "up" and previous not in (None, "up"):
            if self._family_stale:
                self._family()
            for child in self.children.get(device.id, ()):
                if self.state.get(child, "up") != "up":
                    self._recheck[child].set()
        if state and state != previous:
            self.state[device.id] = state
            if state != "up" or previous is not None:
                log.info("device_state", device=device.id, state=state, reason=reason)
            await self.publisher.state(municipality, device.id, started, state,
                                       reason=reason)
        elif state in ("down", "auth_error"):
            await self.publisher.state(municipality, device.id, started, state,
                                       reason=reason)
        if not state:
            log.warning("poll_failed", device=device.id, error=reason)
        if samples:
            await self.publisher.metrics(municipality, device.id, started, samples,
                                         interval=interval)
        return state or "error"

    async def run(self) -> None:
        log.info("snmp_poller_started", location=self.location, devices=len(self.devices))
        try:
            async with asyncio.TaskGroup() as tg:
                self._group = tg
                tg.create_task(self._stop.wait(), name="snmp-running")  # devices may come
                for device in self.devices:
                    self._start(tg, device)
        finally:
            self._group = None
            self.close()

    async def _loop(self, device: Device, gone: asyncio.Event) -> None:
        interval = device.interval or DEFAULT_INTERVAL
        next_at = time.monotonic() + self.rng.uniform(0, interval)
        timeouts = 0
        recheck = self._recheck[device.id]
        while not self._stop.is_set():
            await first_of(next_at - time.monotonic(), recheck, self._stop, gone)
            if self._stop.is_set() or gone.is_set():
                return
            if recheck.is_set():  # its parent answers again: now, and back to the interval
                recheck.clear()
                self.stats.rechecks += 1
                timeouts, next_at = 0, time.monotonic()
            state = await self.poll_and_publish(device)
            timeouts = timeouts + 1 if state == "down" else 0
            factor = min(MAX_BACKOFF_INTERVALS, 2 ** max(0, timeouts - 2))
            if factor > 1:
                self.in_backoff.add(device.id)
            else:
                self.in_backoff.discard(device.id)
            next_at += min(interval * factor, max(interval, MAX_BACKOFF_SECONDS))
            if next_at < time.monotonic():
                missed = int((time.monotonic() - next_at) // interval) + 1
                self.stats.overruns += missed
                next_at += missed * interval
