"""The estate's links as its switches report them, kept and put in force.

The SNMP poller reads each switch's and router's LLDP and CDP tables every
``topology.interval`` and sends them as a ``neighbours`` event. They are kept here
per device — a neighbour no longer reported is kept ``topology.forget_after``, since
a switch that fails drops out of its neighbours' tables exactly when what hangs off
it matters — stored with the batch that brought them, and walked (monitor.linkmap)
into:

- parents for each device that has none declared: declared parents win, and a
  proposal that would close a loop with them is left out;
- the ports that join a device to its parents or to another network device: the
  interface rules watch them (monitor.rules.kinds.state).

Both go to the rules' inventory (monitor.rules.inventory), which the console's map
and statuses read as well: one answer to "what does this device hang off".
NAV's topology-derived "shadow" state is the model: a device behind a failed
switch is shown unreachable, not down, without anyone having typed in its parent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

import msgspec
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from monitor.config import Config
from monitor.events import DeviceTopic, Event, Neighbour, NeighboursEvent, Rejected
from monitor.linkmap import Placement, TopologyReport, propose
from monitor.state import State

__all__ = ["LinkView", "Links"]

log = structlog.get_logger(__name__)

Key = tuple[str, str, str, str]  # protocol, our port, their name, their port
Kept = list[tuple[Neighbour, float]]  # what a device reported, with when last
_KEPT: Final = msgspec.json.Decoder(Kept)
_ENCODE: Final = msgspec.json.Encoder()
VERDICTS: Final = ("proposed", "agrees", "differs")


@dataclass(frozen=True, slots=True)
class LinkView:
    """What the links show now."""

    parents: dict[str, tuple[str, ...]] = field(default_factory=dict)  # none declared
    ports: dict[str, frozenset[str]] = field(default_factory=dict)  # to watch
    report: TopologyReport = field(default_factory=TopologyReport)

    def placement(self, device: str) -> Placement | None:
        return self.report.placements.get(device)


def _key(n: Neighbour) -> Key:
    return (n.protocol, n.local_port, n.name, n.port)


class Links:
    """Neighbour tables in (as an ingest observer), a :class:`LinkView` out."""

    def __init__(self, config: Config, registry: CollectorRegistry | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.reports: dict[str, dict[Key, tuple[Neighbour, float]]] = {}
        self.view = LinkView()
        self._unsaved: set[str] = set()
        self._dirty = False
        self._stale_at = float("inf")  # when the oldest row kept is forgotten
        # the rules' inventory takes each new view (monitor.rules.service)
        self.put_in_force: Callable[[LinkView, float], None] | None = None
        # whether a device is a registered agent (monitor.registration), not the files'
        self.registered: Callable[[str], bool] = lambda device: False
        self.placements = Gauge("driftsvakt_topology_placements",
                                "Devices the links place under a parent, by whether "
                                "none is declared (proposed: in force), the declared "
                                "one agrees, or it differs", ["verdict"], registry=registry)
        self.known_links = Gauge("driftsvakt_topology_links",
                                 "Links between estate devices the neighbour tables show",
                                 registry=registry)
        self.truncated = Counter("driftsvakt_neighbours_truncated_total",
                                 "Neighbour table rows a poller could not send (more "
                                 "than one event holds)", registry=registry)
        for verdict in VERDICTS:
            self.placements.labels(verdict)

    def load(self, rows: Iterable[tuple[str, bytes]]) -> None:
        """What the store kept (monitor.store.db ``neighbour_report``)."""
        for device, body in rows:
            try:
                kept = _KEPT.decode(body)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                log.warning("neighbour_report_unreadable", device=device, error=str(exc))
                continue
            self.reports[device] = {_key(n): (n, seen) for n, seen in kept}
        self._dirty = True

    def check(self, where: DeviceTopic, event: Event) -> None:
        """Only the estate's own network gear (``topology.classes``, declared in its
        files, not a registered agent) speaks of links: a table from anything else
        could hang a server on a PC and hide the server's outage behind the PC's.
        Raises Rejected (dead-lettered and counted by ingest)."""
        if not isinstance(event, NeighboursEvent):
            return
        device = self.config.devices.get(event.device)
        if device is None or self.registered(event.device):
            raise Rejected("topology", f"{event.device!r} is not a device of the estate's "
                                       "files: its neighbour tables are not taken")
        if device.device_class not in self.config.topology.classes:
            raise Rejected("topology", f"{event.device!r} is a {device.device_class}, not "
                                       f"one of topology.classes "
                                       f"({', '.join(self.config.topology.classes)})")

    def on_event(self, topic: DeviceTopic, event: Event, state: State) -> None:
        if isinstance(event, NeighboursEvent):
            self.take(event.device, event.neighbours, event.ts)
            if event.truncated:
                self.truncated.inc(event.truncated)

    def take(self, device: str, neighbours: Iterable[Neighbour], ts: float) -> None:
        """A device's tables as read at ``ts``; rows it no longer reports are kept
        until they are ``forget_after`` old."""
        keep = self.config.topology.forget_after
        fresh = {_key(n): (n, ts) for n in neighbours}
        before = self.reports.get(device, {})
        for key, (n, seen) in before.items():
            if key not in fresh and ts - seen < keep:
                fresh[key] = (n, seen)
        self.reports[device] = fresh
        self._unsaved.add(device)
        if {n for n, _ in fresh.values()} != {n for n, _ in before.values()}:
            self._dirty = True  # else the same rows again: only their times moved

    def estate_changed(self) -> None:
        """The estate reloaded: its devices may match other neighbours, now."""
        self.refresh(self.clock())

    def stale(self) -> None:
        """Devices joined: worked out again with the next batch."""
        self._dirty = True

    def changes(self) -> list[tuple[str, bytes, float]]:
        """Called once per batch: the view is worked out again if anything came, and
        the reports that changed are returned for the batch's transaction."""
        now = self.clock()
        if self._dirty or now >= self._stale_at:
            self.refresh(now)
        rows = [(d, _ENCODE.encode(list(self.reports[d].values())), now)
                for d in sorted(self._unsaved) if d in self.reports]
        self._unsaved.clear()
        return rows

    def refresh(self, now: float) -> LinkView:
        self._dirty = False
        keep = self.config.topology.forget_after
        devices = self.config.devices
        seen: dict[str, list[Neighbour]] = {}
        for device, rows in sorted(self.reports.items()):  # the same view whatever came first
            stale = [k for k, (_, at) in rows.items() if now - at > keep]
            for key in stale:
                del rows[key]
            if stale:
                self._unsaved.add(device)
            if device in devices and rows:
                seen[device] = [n for n, _ in rows.values()]
        self._stale_at = min((at for rows in self.reports.values() for _, at in rows.values()),
                             default=float("inf")) + keep
        if not self.config.topology.discover:
            seen = {}  # parents only as declared, whatever was kept
        report = propose(devices, seen, self.config.topology.roots,
                         self.config.topology.classes)
        view = LinkView(self._parents(report), self._ports(report), report)
        changed = (view.parents != self.view.parents or view.ports != self.view.ports)
        self.view = view
        counts = dict.fromkeys(VERDICTS, 0)
        for placement in report.placements.values():
            counts[placement.verdict] += 1
        for verdict, count in counts.items():
            self.placements.labels(verdict).set(count)
        self.known_links.set(len({tuple(sorted((link.device, link.other)))
                                  for link in report.links if link.known}))
        if changed:
            log.info("links_changed", placed=len(view.parents), proposed=counts["proposed"],
                     differs=counts["differs"])
            if self.put_in_force is not None:
                self.put_in_force(view, now)
        return view

    def _parents(self, report: TopologyReport) -> dict[str, tuple[str, ...]]:
        """The proposals for devices with no declared parent, in the walk's order; a
        parent that hangs (declared or by an earlier proposal) off the device itself
        is left out."""
        devices = self.config.devices
        taken: dict[str, tuple[str, ...]] = {}

        def above(device: str) -> tuple[str, ...]:
            known = devices.get(device)
            if known is not None and known.uplinks:
                return known.uplinks
            return taken.get(device, ())

        def hangs_off(start: str, device: str) -> bool:
            stack, seen = [start], set()
            while stack:
                node = stack.pop()
                if node == device:
                    return True
                if node not in seen:
                    seen.add(node)
                    stack.extend(above(node))
            return False

        for placement in report.placements.values():
            if placement.declared:
                continue
            parents = tuple(p for p in placement.parents if not hangs_off(p, placement.device))
            if parents:
                taken[placement.device] = parents
        return taken

    def _ports(self, report: TopologyReport) -> dict[str, frozenset[str]]:
        """Per device, its ports to other network devices (``topology.classes``) and
        its own ports to its parents (declared or found): a switch's port to a PC or
        a server is left alone — a PC switched off is no news; name a server's port in
        ``watch_interfaces`` to watch it."""
        devices = self.config.devices
        network = set(self.config.topology.classes)
        found: dict[str, set[str]] = {}
        for link in report.links:
            if not link.known or link.device not in devices or link.other not in devices:
                continue
            mine, theirs = devices[link.device], devices[link.other]
            placed = report.placements.get(link.device)
            upward = link.other in mine.uplinks or (
                not mine.uplinks and placed is not None and link.other in placed.parents)
            if upward or (mine.device_class in network and theirs.device_class in network):
                found.setdefault(link.device, set()).add(link.port)
        return {d: frozenset(p) for d, p in found.items()}
