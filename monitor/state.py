"""The engine's live picture: the latest sample of every series, and each device's status.

Events are applied by *event time*: a late or replayed event never overwrites a newer
value, so both locations end with the same picture whatever order they received in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from monitor.events import (
    CheckEvent,
    ComponentStatus,
    DeviceTopic,
    Event,
    HeartbeatEvent,
    MetricsEvent,
    StateEvent,
    TrapEvent,
)

__all__ = ["DeviceStatus", "SeriesKey", "SeriesValue", "State"]

LabelsKey = tuple[tuple[str, str], ...]
SeriesKey = tuple[str, str, LabelsKey]  # device, metric name, sorted labels


@dataclass(slots=True)
class SeriesValue:
    value: float
    ts: float
    kind: str
    # a counter's rate per second between its last two samples (None: a gauge, one
    # sample so far, or a counter that went back: wrapped or reset)
    rate: float | None = None
    # the series' exposition text up to its value, and its metric family, filled in
    # by monitor.exposition at the first scrape that sees it
    text: str | None = None
    family: Any = None


@dataclass(slots=True)
class DeviceStatus:
    location: str
    municipality: str
    last_seen: float = 0.0
    state: str | None = None
    state_since: float | None = None
    reason: str | None = None
    interval: float | None = None


@dataclass(slots=True)
class State:
    series: dict[SeriesKey, SeriesValue] = field(default_factory=dict)
    devices: dict[str, DeviceStatus] = field(default_factory=dict)
    components: dict[tuple[str, str, str], ComponentStatus] = field(default_factory=dict)
    # when each component's status last changed (a status heard again changes nothing)
    component_since: dict[tuple[str, str, str], float] = field(default_factory=dict)
    checks: dict[tuple[str, str], CheckEvent] = field(default_factory=dict)
    traps_total: int = 0
    # One device may not grow the engine without bound: series past this many are
    # refused, and counted per device (engine.max_series_per_device).
    max_series_per_device: int = 20_000
    series_per_device: dict[str, int] = field(default_factory=dict)
    series_refused: dict[str, int] = field(default_factory=dict)

    def forget(self, devices: set[str]) -> None:
        """Devices that left the estate: their status, series and checks go (an event
        still on its way for one comes back as an unknown device)."""
        for key in [k for k in self.series if k[0] in devices]:
            del self.series[key]
        for key2 in [k for k in self.checks if k[0] in devices]:
            del self.checks[key2]
        for device in devices:
            self.devices.pop(device, None)
            self.series_per_device.pop(device, None)
            self.series_refused.pop(device, None)

    def apply(self, topic: DeviceTopic, event: Event) -> DeviceStatus:
        """Apply one admitted event; return the device's status after it."""
        status = self.devices.get(event.device)
        if status is None:
            status = self.devices[event.device] = DeviceStatus(topic.location, topic.municipality)
        if event.ts > status.last_seen:
            status.last_seen = event.ts
        if isinstance(event, MetricsEvent):
            self._apply_samples(event)
            if event.interval is not None:
                status.interval = event.interval
        elif isinstance(event, StateEvent):
            if status.state_since is None or event.ts >= status.state_since:
                if event.state != status.state:
                    status.state = event.state
                    status.state_since = event.ts
                status.reason = event.reason
        elif isinstance(event, CheckEvent):
            check_key = (event.device, event.check)
            current_check = self.checks.get(check_key)
            if current_check is None or event.ts >= current_check.ts:
                self.checks[check_key] = event
        elif isinstance(event, HeartbeatEvent):
            status.interval = event.interval
        elif isinstance(event, TrapEvent):
            self.traps_total += 1
        return status

    def _apply_samples(self, event: MetricsEvent) -> None:
        """Each sample into its series (the hot path: one lookup per sample)."""
        series = self.series
        device, ts = event.device, event.ts
        for sample in event.samples:
            labels = sample.labels
            if not labels:
                key: SeriesKey = (device, sample.name, ())
            elif len(labels) == 1:
                key = (device, sample.name, tuple(labels.items()))
            else:
                key = (device, sample.name, tuple(sorted(labels.items())))
            current = series.get(key)
            if current is None:
                if self._room_for_series(device):
                    series[key] = SeriesValue(sample.value, ts, sample.kind)
            elif ts >= current.ts:
                if sample.kind != "gauge" and ts > current.ts:
                    delta = sample.value - current.value
                    current.rate = delta / (ts - current.ts) if delta >= 0 else None
                current.value = sample.value
                current.ts = ts
                current.kind = sample.kind

    def _room_for_series(self, device: str) -> bool:
        count = self.series_per_device.get(device, 0)
        if count >= self.max_series_per_device:
            self.series_refused[device] = self.series_refused.get(device, 0) + 1
            return False
        self.series_per_device[device] = count + 1
        return True

    def apply_component(self, location: str, component: str, instance: str,
                        status: ComponentStatus) -> None:
        key = (location, component, instance)
        current = self.components.get(key)
        if current is None or status.ts >= current.ts:
            self.components[key] = status
            if current is None or current.status != status.status:
                self.component_since[key] = status.ts
