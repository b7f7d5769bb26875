"""The device series in Prometheus text format, fast enough for 500,000 of them.

prometheus-client builds a Metric object and a label dict per sample at every
scrape: at 200,000 series that is over a second, and it holds the event loop for all
of it. Here the text of each series up to its value — name and escaped labels — is
rendered once, when the series first appears, and kept; a scrape joins those
prefixes with the current values (``repr`` of the float: values are finite, checked
when decoded, and Prometheus parses Python's float text). The walk yields to the
event loop every few thousand series, so ingest keeps running during a scrape; gzip
runs in a thread (zlib releases the GIL).

Series of one name may carry different label keys — a port with an alias and one
without, a switch with ifXTable and one without: Prometheus takes them as they come
(an absent label is an empty one), so every series is shown.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from monitor.state import SeriesKey, SeriesValue, State

__all__ = ["SeriesExposition"]

CHUNK: Final = 5_000
DEVICE_LABELS: Final = ("location", "municipality", "site", "device", "class")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


@dataclass(slots=True)
class _Family:
    name: str
    kind: str
    members: list[SeriesValue] = field(default_factory=list)


class SeriesExposition:
    """The exposition of one :class:`State` (it keeps its texts on the state's series:
    one exposition per state)."""

    def __init__(self, state: State, device_labels: Callable[[str, str, str], list[str]],
                 prefix: str = "driftsvakt_") -> None:
        self.state = state
        self.device_labels = device_labels
        self.prefix = prefix
        self.families: dict[str, _Family] = {}
        self.learned = 0  # series seen; the state only ever adds series
        self._lock = asyncio.Lock()  # two scrapes at once take turns

    def _learn(self, key: SeriesKey, value: SeriesValue, bases: dict[str, str]) -> None:
        device, name, labels = key
        family = self.families.get(name)
        if family is None:
            metric = self.prefix + name
            if value.kind != "gauge":
                metric = metric.removesuffix("_total") + "_total"
            family = self.families[name] = _Family(
                metric, "gauge" if value.kind == "gauge" else "counter")
        base = bases.get(device)
        if base is None:
            status = self.state.devices.get(device)
            values = self.device_labels(device, status.location if status else "",
                                        status.municipality if status else "")
            base = bases[device] = ",".join(
                f'{k}="{_escape(v)}"' for k, v in zip(DEVICE_LABELS, values, strict=True))
        own = "".join(f',{k}="{_escape(v)}"' for k, v in labels)
        value.text = f"{family.name}{{{base}{own}}} "
        value.family = family
        family.members.append(value)

    def forget_device(self, device: str) -> None:
        """A device's labels changed (moved site, reloaded config): render it afresh."""
        for (owner, _, _), value in self.state.series.items():
            if owner == device and value.family is not None:
                value.family.members.remove(value)
                value.text = value.family = None
                self.learned -= 1

    async def render(self) -> bytes:
        async with self._lock:
            return await self._render()

    async def _render(self) -> bytes:
        series = self.state.series
        if len(series) != self.learned:  # new series since the last scrape
            bases: dict[str, str] = {}
            for n, (key, value) in enumerate(list(series.items()), 1):
                if value.family is None:
                    self._learn(key, value, bases)
                if n % CHUNK == 0:
                    await asyncio.sleep(0)
            self.learned = len(series)
        parts: list[str] = []
        for family in list(self.families.values()):
            members = family.members
            if not members:
                continue
            parts.append(f"# HELP {family.name} {family.name[len(self.prefix):]} as "
                         f"reported by the device\n# TYPE {family.name} {family.kind}\n")
            for start in range(0, len(members), CHUNK):
                parts.append("\n".join([f"{v.text}{v.value!r}"
                                        for v in members[start:start + CHUNK]]))
                parts.append("\n")
                await asyncio.sleep(0)  # let ingest and other requests in
        return "".join(parts).encode()
