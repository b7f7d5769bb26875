"""Why a firing alert is muted, if it is: maintenance, a silence, its parent being down
(topology), or an inhibition. One reason at most, in that order.

Inhibitions as Alertmanager's: a firing *source* alert mutes *target* alerts with the
same values of the ``equal`` labels. The firing sources are counted per inhibition as
alerts fire and resolve (:meth:`Muting.count_source`), so no check scans the alerts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from monitor.rules.alerts import Alert
from monitor.rules.inventory import Inventory
from monitor.rules.matchers import Matcher
from monitor.rules.model import Inhibition
from monitor.rules.suppress import Maintenance, Silence

__all__ = ["ActiveSilence", "Muting"]


@dataclass(slots=True)
class ActiveSilence:
    spec: Silence
    matchers: tuple[Matcher, ...]
    start: float
    end: float


class Muting:
    def __init__(self, inventory: Inventory, parent_down: Callable[[str], bool]) -> None:
        self.inventory = inventory
        self.parent_down = parent_down
        self.silences: dict[str, ActiveSilence] = {}
        self.maintenance: dict[str, Maintenance] = {}
        self._inhibitions: list[tuple[Inhibition, dict[tuple[str, ...], int]]] = []

    def recount(self, inhibitions: Iterable[Inhibition], alerts: Iterable[Alert]) -> None:
        """Start counting for ``inhibitions`` from the firing ``alerts``."""
        self._inhibitions = [(inh, {}) for inh in inhibitions]
        for alert in alerts:
            if alert.state == "firing":
                self.count_source(alert, 1)

    def count_source(self, alert: Alert, delta: int) -> None:
        """``alert`` fires (+1) or stops firing (-1)."""
        for inh, counts in self._inhibitions:
            if all(m.matches(alert.labels) for m in inh.source):
                key = tuple(alert.labels.get(k, "") for k in inh.equal)
                left = counts.get(key, 0) + delta
                if left > 0:
                    counts[key] = left
                else:
                    counts.pop(key, None)

    def reason(self, alert: Alert, now: float) -> str | None:
        info = self.inventory.devices.get(alert.device or "")
        if info is not None:
            for mid, window in self.maintenance.items():
                if window.covers(info) and window.active(now):
                    return f"maintenance:{mid}"
        for sid, silence in self.silences.items():
            if silence.start <= now < silence.end and all(
                    m.matches(alert.labels) for m in silence.matchers):
                return f"silence:{sid}"
        if alert.device is not None and self.parent_down(alert.device):
            return "topology"
        for inh, sources in self._inhibitions:
            if not sources or not all(m.matches(alert.labels) for m in inh.target):
                continue
            if all(m.matches(alert.labels) for m in inh.source):
                continue  # a source alert is not muted by its own kind
            if tuple(alert.labels.get(k, "") for k in inh.equal) in sources:
                return "inhibited"
        return None

    def add_silence(self, silence: Silence) -> None:
        matchers, start, end = silence.compile()
        self.silences[silence.id] = ActiveSilence(silence, matchers, start, end)

    def remove_silence(self, sid: str) -> None:
        self.silences.pop(sid, None)

    def add_maintenance(self, window: Maintenance) -> None:
        window.check()
        self.maintenance[window.id] = window

    def remove_maintenance(self, mid: str) -> None:
        self.maintenance.pop(mid, None)
