"""What the rules know about each device: where it is, what it is, what it hangs off.

Built from the config (or, for rule unit tests, from a short device list), once per
load; the topology questions — who is behind a device, is anything on its path to
the centre down — are answered from precomputed maps.

A device hangs off its declared parents; one with none declared hangs off the
parents its switches' LLDP and CDP tables show (monitor.links, put here with
:meth:`Inventory.set_links`), any one of which reaches it. Declared parents win.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from monitor.config import Config

__all__ = ["DeviceInfo", "Inventory"]


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    id: str
    name: str
    device_class: str
    site: str
    site_name: str
    municipality: str
    location: str
    tags: frozenset[str] = frozenset()
    parent: str | None = None
    interval: float | None = None
    watch: frozenset[str] = frozenset()  # interfaces whose going down always matters
    parents: tuple[str, ...] = ()  # redundant uplinks (``parent`` is the single one)
    needed: int = 1  # how many of them must reach it

    @classmethod
    def of(cls, config: Config, device_id: str) -> DeviceInfo:
        d = config.devices[device_id]
        site = config.sites[d.site]
        return cls(d.id, d.name, d.device_class, d.site, site.name, site.municipality,
                   site.location, frozenset(d.tags), d.parent, d.interval,
                   frozenset(d.watch_interfaces), tuple(d.parents), d.parents_needed)

    @property
    def uplinks(self) -> tuple[str, ...]:
        return self.parents or ((self.parent,) if self.parent is not None else ())

    def context(self) -> dict[str, str]:
        """The labels every alert about this device carries."""
        return {"device": self.id, "class": self.device_class, "site": self.site,
                "municipality": self.municipality, "location": self.location}


@dataclass(slots=True)
class Inventory:
    devices: dict[str, DeviceInfo]
    children: dict[str, list[str]] = field(default_factory=dict)
    _behind: dict[str, int] = field(default_factory=dict)
    # what the links show (monitor.links): parents of devices with none declared, and
    # the ports of each device that join it to its parent or to another switch
    discovered: dict[str, tuple[str, ...]] = field(default_factory=dict)
    link_ports: dict[str, frozenset[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._family()

    def _family(self) -> None:
        self.children = {}
        for device in self.devices:
            for parent in self.uplinks(device)[0]:
                self.children.setdefault(parent, []).append(device)
        self._behind = {}

    @classmethod
    def from_config(cls, config: Config) -> Inventory:
        return cls({d: DeviceInfo.of(config, d) for d in config.devices})

    @classmethod
    def from_list(cls, devices: Iterable[DeviceInfo]) -> Inventory:
        return cls({d.id: d for d in devices})

    def replace(self, other: Inventory) -> None:
        """Become ``other`` (a reloaded estate), in place: the rules' topology, muting
        and lifecycle hold this object, and see the new estate at once."""
        self.devices = other.devices
        self._family()

    def add(self, device: DeviceInfo) -> None:
        """A device joins (a registered agent): nothing else changes."""
        self.devices[device.id] = device
        for parent in self.uplinks(device.id)[0]:
            self.children.setdefault(parent, []).append(device.id)
        self._behind = {}

    def set_links(self, parents: dict[str, tuple[str, ...]],
                  ports: dict[str, frozenset[str]]) -> set[str]:
        """Take what the links show now; return the devices whose parents changed."""
        before = {d: self.uplinks(d)[0] for d in set(self.discovered) | set(parents)}
        self.discovered, self.link_ports = dict(parents), dict(ports)
        self._family()
        return {d for d, was in before.items() if self.uplinks(d)[0] != was}

    def watched(self, device: str) -> frozenset[str]:
        """The interfaces whose going down always matters: those the estate names, and
        those the links show joining the device to its parent or another switch."""
        info = self.devices.get(device)
        own = info.watch if info is not None else frozenset()
        found = self.link_ports.get(device)
        return own | found if found else own

    def ancestors(self, device: str) -> Iterator[str]:
        """Every device on a path from ``device`` to the centre, nearest first."""
        seen = {device}
        queue = list(self.uplinks(device)[0])
        while queue:
            parent = queue.pop(0)
            if parent in seen:
                continue
            seen.add(parent)
            yield parent
            queue.extend(self.uplinks(parent)[0])

    def uplinks(self, device: str) -> tuple[tuple[str, ...], int]:
        """Its parents, and how many of them must reach it (monitor.rules.topology):
        declared, else those the links show (any one of them reaching it)."""
        info = self.devices.get(device)
        if info is None:
            return (), 1
        if info.uplinks:
            return info.uplinks, info.needed
        found = self.discovered.get(device)
        if not found:
            return (), 1
        return tuple(p for p in found if p in self.devices), 1

    def declared(self, device: str) -> bool:
        """Whether its parents are the estate's (not the links')."""
        info = self.devices.get(device)
        return info is not None and bool(info.uplinks)

    def descendants(self, device: str) -> list[str]:
        out: list[str] = []
        stack = list(self.children.get(device, ()))
        seen = {device}
        while stack:
            child = stack.pop()
            if child in seen:
                continue
            seen.add(child)
            out.append(child)
            stack.extend(self.children.get(child, ()))
        return out

    def dependents(self, device: str) -> list[str]:
        """The devices behind ``device`` that it alone cuts off: those a redundant
        path still reaches (the other side of a pair) are not."""
        below = self.descendants(device)
        cut = {device}
        changed = True
        while changed:  # until no more is cut: a few rounds, one per level of the tree
            changed = False
            for child in below:
                if child in cut:
                    continue
                parents, needed = self.uplinks(child)
                if sum(1 for p in parents if p not in cut) < needed:
                    cut.add(child)
                    changed = True
        return [d for d in below if d in cut]

    def behind_by_municipality(self, device: str) -> dict[str, int]:
        """Of the devices behind ``device``, how many in each municipality: a switch at
        the centre can cut off several municipalities, and the page says which."""
        counts: dict[str, int] = {}
        for child in self.dependents(device):
            info = self.devices.get(child)
            if info is not None:
                counts[info.municipality] = counts.get(info.municipality, 0) + 1
        return counts

    def behind(self, device: str) -> int:
        """How many devices reach the centre only through ``device``."""
        count = self._behind.get(device)
        if count is None:
            count = self._behind[device] = len(self.dependents(device))
        return count
