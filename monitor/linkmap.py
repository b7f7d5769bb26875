"""The estate's links from its devices' neighbour tables (collectors/snmp/neighbours),
and the parents they propose — for ``driftsvakt topology``, and for the engine's map
of the links (monitor.links), which gives them to the devices with none declared.

A neighbour is an estate device when its address is that device's, or its name is
the device's id or name (case and domain aside, and CDP's "(serial)" suffix). The
links between estate devices form a graph; walking it from the devices with no
declared parent (the core), each device reached gets as proposed parent the device
it was reached from, and as uplink its own port towards it. A device reached from
two devices at once (two uplinks, a redundant pair) gets both, as NAV and Checkmk
show them. A parent declared in the estate wins: a proposal that differs is
reported, never applied. Where the walk starts: ``topology.roots``, else the tops of
the declared tree — the devices with no parent that have network gear declared below
them — and then, for what those do not reach, any other device with declared
children and no parent.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from monitor.events import Neighbour

__all__ = ["Link", "Placeable", "Placement", "TopologyReport", "propose"]


class Placeable(Protocol):
    """What the walk needs of a device (monitor.config.Device has it)."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def address(self) -> str | None: ...
    @property
    def device_class(self) -> str: ...
    @property
    def uplinks(self) -> tuple[str, ...]: ...


@dataclass(frozen=True, slots=True)
class Link:
    device: str
    port: str
    other: str  # an estate device's id, or the neighbour's own name
    other_port: str
    protocol: str
    known: bool  # ``other`` is an estate device


@dataclass(slots=True)
class Placement:
    device: str
    parents: list[str]  # proposed: one, or two for a redundant pair
    uplinks: list[str]  # its ports towards them
    declared: tuple[str, ...]  # the estate's parent, or its redundant parents

    @property
    def verdict(self) -> str:
        if not self.declared:
            return "proposed"
        # one declared parent of a proposed pair holds; a declared pair must be the pair
        if len(self.declared) == 1:
            return "agrees" if self.declared[0] in self.parents else "differs"
        return "agrees" if set(self.declared) == set(self.parents) else "differs"


@dataclass(slots=True)
class TopologyReport:
    links: list[Link] = field(default_factory=list)
    placements: dict[str, Placement] = field(default_factory=dict)

    def text(self) -> str:
        lines = []
        for p in sorted(self.placements.values(), key=lambda p: p.device):
            via = ", ".join(f"{parent} (uplink {port})" for parent, port
                            in zip(p.parents, p.uplinks, strict=True))
            note = {"agrees": "as declared", "proposed": "none declared: proposed",
                    "differs": f"declared {', '.join(p.declared)}: differs"}[p.verdict]
            lines.append(f"{p.device}: parent {via} — {note}")
        outside = [link for link in self.links if not link.known]
        if outside:
            lines.append(f"{len(outside)} neighbours not in the estate:")
            lines += [f"  {link.device} {link.port} → {link.other} {link.other_port} "
                      f"({link.protocol})" for link in outside]
        return "\n".join(lines) + "\n"


@functools.lru_cache(maxsize=65536)  # the engine walks the same names every time
def _norm(name: str) -> str:
    name = re.sub(r"\(.*\)$", "", name.strip().lower())
    return re.sub(r"[\s_]+", "-", name.split(".")[0])


Ports = dict[tuple[str, str], tuple[str, str]]  # (a, b) -> (a's port, b's port)


def _links(devices: Mapping[str, Placeable], seen: Mapping[str, list[Neighbour]],
           report: TopologyReport) -> tuple[Ports, Ports]:
    """Every neighbour as a link (into ``report``); between estate devices, the ports
    as each end reported them, and as the other end did."""
    by_name: dict[str, str] = {}
    for d in devices.values():
        by_name.setdefault(_norm(d.id), d.id)
        by_name.setdefault(_norm(d.name), d.id)
    by_address = {d.address: d.id for d in devices.values() if d.address}
    own: Ports = {}
    heard: Ports = {}
    for device, found in seen.items():
        for n in found:
            other = by_address.get(n.address or "") or by_name.get(_norm(n.name))
            if other == device:
                continue
            report.links.append(Link(device, n.local_port, other or n.name, n.port,
                                     n.protocol, other is not None))
            if other is not None:
                own.setdefault((device, other), (n.local_port, n.port))
                heard.setdefault((other, device), (n.port, n.local_port))
    return own, heard


def _tops(devices: Mapping[str, Placeable], adjacent: Mapping[str, set[str]],
          network: Collection[str]) -> tuple[list[str], list[str]]:
    """The devices with declared children and no parent: first those with network gear
    declared below them (the tops of the declared tree), then the rest. An access
    switch whose PCs are declared under it, but not itself, is one of the rest: walked
    from only where the tops do not reach, it is not made the parent of its own
    distribution switch."""
    children: dict[str, list[str]] = {}
    for d in devices.values():
        for p in d.uplinks:
            children.setdefault(p, []).append(d.id)

    def gear_below(top: str) -> bool:
        stack, seen = list(children.get(top, ())), {top}
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            if devices[node].device_class in network:
                return True
            stack.extend(children.get(node, ()))
        return False

    candidates = sorted(d for d in adjacent if d in children and not devices[d].uplinks)
    first = [d for d in candidates if gear_below(d)]
    return first, [d for d in candidates if d not in first]


def propose(devices: Mapping[str, Placeable], seen: Mapping[str, list[Neighbour]],
            roots: list[str] | None = None,
            network: Collection[str] = ("switch", "router")) -> TopologyReport:
    """``seen``: each asked device's neighbours; ``roots``: where the walk starts, by
    default the tops of the declared tree (:func:`_tops`; a device with neither
    children nor a parent declared is not yet placed, not a root)."""
    report = TopologyReport()
    own, heard = _links(devices, seen, report)
    ports = {**heard, **own}  # what a device says of its own port wins
    adjacent: dict[str, set[str]] = {}
    for a, b in ports:
        adjacent.setdefault(a, set()).add(b)
    starts, rest = (roots, []) if roots else _tops(devices, adjacent, network)
    visited: set[str] = set()
    for group in (starts, rest):
        fresh = [r for r in group if r not in visited]  # the rest: where the tops do not reach
        visited.update(fresh)
        frontier = sorted(fresh)
        while frontier:
            reached: dict[str, list[str]] = {}
            for u in frontier:
                for v in sorted(adjacent.get(u, ())):
                    if v not in visited:
                        reached.setdefault(v, []).append(u)
            for v, parents in sorted(reached.items()):
                visited.add(v)
                report.placements[v] = Placement(
                    v, parents, [ports[(v, p)][0] for p in parents], devices[v].uplinks)
            frontier = sorted(reached)
    return report
