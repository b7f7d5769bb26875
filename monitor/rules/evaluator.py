"""Rule evaluation: events in, alert transitions out, with no full scans on the hot path.

The evaluator routes: each event goes to the rule kinds (monitor.rules.kinds, one
module each) that have rules for what it touches. Samples go to the rules of their
name only, and whether a rule's selector takes a device is decided once and
remembered. A periodic :meth:`RuleEngine.tick` does what time alone changes: ``for:``
timers coming due, absence of data, trap alerts timing out, flapping settling,
silences and maintenance windows starting and ending.

Conditions use *event time*; an event older than the last one seen for a series is
ignored (the state has it, the rules have moved on). The parts: the alert lifecycle
(monitor.rules.lifecycle), why an alert is muted (monitor.rules.muting: maintenance,
silence, topology, inhibition), and what is behind a down parent
(monitor.rules.topology). A firing ``state`` rule on ``down`` carries ``behind``,
the number of devices reachable only through its device.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from monitor.config import DEFAULT_GRACE, DEFAULT_OFFICE_HOURS
from monitor.events import (
    CheckEvent,
    ComponentStatus,
    DeviceTopic,
    Event,
    MetricsEvent,
    StateEvent,
    TrapEvent,
)
from monitor.rules.alerts import Alert, Transition
from monitor.rules.inventory import DeviceInfo, Inventory
from monitor.rules.kinds import KINDS, Context, HoursFor, RuleKind, SampleHandler
from monitor.rules.lifecycle import Lifecycle
from monitor.rules.model import Rule, RuleSet
from monitor.rules.muting import ActiveSilence, Muting
from monitor.rules.suppress import Maintenance, Silence
from monitor.rules.topology import Topology
from monitor.state import State

__all__ = ["RuleEngine"]

UPTIME_METRICS: Final = ("sys_uptime_seconds", "uptime_seconds", "hr_system_uptime_seconds")
OUTAGE_TOLERANCE: Final = 3600.0

SampleRoute = tuple[Rule, SampleHandler]


def _overrides(kind: RuleKind, method: str) -> bool:
    return getattr(type(kind), method) is not getattr(RuleKind, method)


class RuleEngine:
    def __init__(self, rules: RuleSet, inventory: Inventory, *, started: float,
                 hours_for: HoursFor | None = None,
                 outage_tolerance: float = OUTAGE_TOLERANCE) -> None:
        self.inventory = inventory
        self.started = started
        self.hours_for = hours_for or (lambda _d: (DEFAULT_OFFICE_HOURS, DEFAULT_GRACE))
        self.outage_tolerance = outage_tolerance
        self.topology = Topology(inventory)
        self.muting = Muting(inventory, self.topology.parent_down)
        self.lifecycle = Lifecycle(inventory, self.muting)
        ctx = Context(self.lifecycle, inventory, self.topology, self._device_matches,
                      self.hours_for, started)
        self.kinds = {name: kind(ctx) for name, kind in KINDS.items()}
        kinds = list(self.kinds.values())
        self._on_device_state = [k for k in kinds if _overrides(k, "on_device_state")]
        self._on_check = [k for k in kinds if _overrides(k, "on_check")]
        self._on_component = [k for k in kinds if _overrides(k, "on_component")]
        self._on_trap = [k for k in kinds if _overrides(k, "on_trap")]
        self._uptime: dict[str, float] = {}
        self.load(rules, started)

    # what the rules service, the API and the tests read
    @property
    def alerts(self) -> dict[str, Alert]:
        return self.lifecycle.alerts

    @property
    def log(self) -> list[Transition]:
        return self.lifecycle.log

    @property
    def silences(self) -> dict[str, ActiveSilence]:
        return self.muting.silences

    @property
    def maintenance(self) -> dict[str, Maintenance]:
        return self.muting.maintenance

    # -- rules -----------------------------------------------------------------------

    def load(self, rules: RuleSet, now: float) -> None:
        """Take a new rule set; alerts carry over by fingerprint, trackers start afresh.
        Alerts of rules that are gone are resolved at ``now``."""
        self.rules = rules
        self.by_name = {r.name: r for r in rules.rules}
        self.lifecycle.load(rules.rules)
        self._device_ok: dict[str, dict[str, bool]] = {}  # device -> rule -> selected
        self._device_routes: dict[str, dict[str, list[SampleRoute]]] = {}
        self._by_metric: dict[str, list[SampleRoute]] = {}
        for name, kind in self.kinds.items():
            kind.load([r for r in rules.rules if r.kind == name])
        for rule in rules.rules:
            kind = self.kinds[rule.kind]
            metric = kind.metric_of(rule)
            if metric is not None:
                self._by_metric.setdefault(metric, []).append((rule, kind.on_sample))
        alerts = self.lifecycle.alerts
        self.muting.recount(rules.inhibitions, alerts.values())
        for fp, alert in list(alerts.items()):
            if alert.external:
                continue  # its sender's, not a rule's
            if alert.rule not in self.by_name and alert.state != "resolved":
                self.lifecycle.resolve(alert, now, "rule removed", ended_by="rule removed")
            elif alert.state == "pending":
                self.lifecycle.schedule(
                    alert.active_since + self.by_name[alert.rule].for_seconds, "fire", fp)

    def estate_changed(self, inventory: Inventory, retired: Iterable[str], now: float
                       ) -> int:
        """Take a reloaded estate: the alerts of devices that left it resolve as
        retired (not as recovered); those of devices that moved to another site,
        municipality or location (or class) resolve as moved — their labels decide who
        sees them and who is told, and were the old place's — and start afresh under
        the new labels if their condition still holds. The rules start again on the
        new inventory as on a rules reload (alerts carry over, trackers start afresh,
        so no absence rule waits for a device that is gone). Returns how many alerts
        were retired or moved."""
        gone = set(retired)
        count = 0
        for alert in list(self.lifecycle.alerts.values()):
            if alert.state == "resolved" or alert.device is None or alert.external:
                continue
            if alert.device in gone:
                self.lifecycle.resolve(alert, now, "device retired", ended_by="retired")
                count += 1
                continue
            info = inventory.devices.get(alert.device)
            rule = self.by_name.get(alert.rule)
            fixed = rule.spec.labels if rule is not None else {}  # the rule's own win
            if info is not None and any(alert.labels.get(k) != v
                                        for k, v in info.context().items() if k not in fixed):
                self.lifecycle.resolve(alert, now, "device moved", ended_by="moved")
                count += 1
        for device in gone:
            self.topology.observe(device, None)
            self._uptime.pop(device, None)
        self.inventory.replace(inventory)
        self.load(self.rules, now)
        return count

    def devices_joined(self, devices: Iterable[DeviceInfo]) -> None:
        """New devices (registered agents) in the estate, nothing else changed: the
        trackers keep running; what was worked out for these devices before is not."""
        fresh = set()
        for info in devices:
            self.inventory.add(info)
            fresh.add(info.id)
        for device in fresh:
            self._device_ok.pop(device, None)
            self._device_routes.pop(device, None)

    def links_changed(self, parents: dict[str, tuple[str, ...]],
                      ports: dict[str, frozenset[str]], now: float) -> int:
        """The links show other parents (monitor.links): what hangs off a changed
        parent is looked at again, since whether it is down or unreachable may have
        changed. Returns how many devices' parents changed."""
        moved = self.inventory.set_links(parents, ports)
        again = set(moved)
        for device in moved:
            again.update(self.inventory.descendants(device))
        for device in sorted(again):
            self._device_state(device, now)
        return len(moved)

    def _device_matches(self, rule: Rule, device: str) -> bool:
        known = self._device_ok.get(device)
        if known is None:
            known = self._device_ok[device] = {}
        found = known.get(rule.name)
        if found is None:
            found = known[rule.name] = _select_device(rule, self.inventory.devices.get(
                device), device)
        return found

    # -- events ----------------------------------------------------------------------

    def on_event(self, topic: DeviceTopic, event: Event, state: State) -> None:
        if isinstance(event, MetricsEvent):
            self._on_metrics(event, state)
        elif isinstance(event, StateEvent):
            self._on_state(event.device, event.ts, state)
        elif isinstance(event, CheckEvent):
            for kind in self._on_check:
                kind.on_check(event)
        elif isinstance(event, TrapEvent):
            for kind in self._on_trap:
                kind.on_trap(event)

    def _routes(self, device: str) -> dict[str, list[SampleRoute]]:
        """The sample rules whose device selectors take ``device``, by sample name."""
        found = self._device_routes.get(device)
        if found is None:
            found = {}
            for metric, routes in self._by_metric.items():
                mine = [r for r in routes if self._device_matches(r[0], device)]
                if mine:
                    found[metric] = mine
            self._device_routes[device] = found
        return found

    def _on_metrics(self, event: MetricsEvent, state: State) -> None:
        device, ts = event.device, event.ts
        by_metric = self._routes(device)
        reboot = False
        matched = []
        for sample in event.samples:
            name = sample.name
            if name in UPTIME_METRICS:
                before = self._uptime.get(device)
                if before is not None and sample.value < before:
                    reboot = True
                self._uptime[device] = sample.value
            routes = by_metric.get(name)
            if routes is not None:
                matched.append((sample, routes))
        for sample, routes in matched:
            labels = sample.labels
            lkey = tuple(labels.items()) if len(labels) < 2 else tuple(sorted(labels.items()))
            for rule, handle in routes:
                if rule.matchers and not all(m.matches(labels) for m in rule.matchers):
                    continue
                handle(rule, device, lkey, sample.value, sample.kind, ts, state, reboot)

    def _on_state(self, device: str, ts: float, state: State) -> None:
        status = state.devices.get(device)
        down_changed = self.topology.observe(device, status.state if status else None)
        self._device_state(device, ts)
        if down_changed:
            for child in self.inventory.descendants(device):  # their effective state changed
                self._device_state(child, ts)

    def _device_state(self, device: str, ts: float) -> None:
        for kind in self._on_device_state:
            kind.on_device_state(device, ts)

    def observe_state(self, device: str, state: str | None) -> None:
        """Know a device's reported state without evaluating (restored from the store)."""
        self.topology.observe(device, state)

    def effective_state(self, device: str) -> str | None:
        return self.topology.effective_state(device)

    def parent_down(self, device: str) -> bool:
        return self.topology.parent_down(device)

    def on_component(self, location: str, component: str, instance: str,
                     status: ComponentStatus) -> None:
        device = instance if instance in self.inventory.devices else None
        for kind in self._on_component:
            kind.on_component(location, component, instance, status, device)

    # -- time ------------------------------------------------------------------------

    def tick(self, now: float, state: State) -> None:
        """Everything time alone changes, up to ``now``."""
        self.lifecycle.run_timers(now)
        for kind in self.kinds.values():
            kind.tick(now, state)
        self.lifecycle.settle(now)
        self.lifecycle.refresh(now)

    def refresh(self, now: float) -> None:
        """Re-decide muting of firing alerts; forget long-resolved ones."""
        self.lifecycle.refresh(now)

    # -- people ----------------------------------------------------------------------

    def acknowledge(self, fp: str, who: str, comment: str, now: float) -> Alert:
        return self.lifecycle.acknowledge(fp, who, comment, now)

    def add_silence(self, silence: Silence, now: float) -> None:
        self.muting.add_silence(silence)
        self.refresh(now)

    def remove_silence(self, sid: str, now: float) -> None:
        self.muting.remove_silence(sid)
        self.refresh(now)

    def add_maintenance(self, window: Maintenance, now: float) -> None:
        self.muting.add_maintenance(window)
        self.refresh(now)

    def remove_maintenance(self, mid: str, now: float) -> None:
        self.muting.remove_maintenance(mid)
        self.refresh(now)

    # -- persistence -----------------------------------------------------------------

    def restore(self, alerts: Iterable[Alert], last_eval: float | None, now: float) -> None:
        """Take the alerts the store kept. Pending ``for:`` timers continue where they
        were if the engine was away for less than the outage tolerance; after a longer
        outage they start again, as Prometheus does."""
        away = now - last_eval if last_eval is not None else float("inf")
        self.lifecycle.restore(alerts, now if away > self.outage_tolerance else None)
        self.muting.recount(self.rules.inhibitions, self.lifecycle.alerts.values())
        for kind in self.kinds.values():
            kind.restore(now)

    def take_changes(self) -> tuple[list[Alert], list[str], list[Transition]]:
        """What to write: alerts to upsert, pending alerts to forget, the log."""
        return self.lifecycle.take_changes()

    def active(self) -> list[Alert]:
        return self.lifecycle.active()


def _select_device(rule: Rule, info: DeviceInfo | None, device: str) -> bool:
    select = rule.spec.select
    if select.devices and device not in select.devices:
        return False
    if info is None:
        return not (select.classes or select.tags or select.locations or select.sites
                    or select.municipalities)
    if select.classes and info.device_class not in select.classes:
        return False
    if select.locations and info.location not in select.locations:
        return False
    if select.municipalities and info.municipality not in select.municipalities:
        return False
    if select.sites and info.site not in select.sites:
        return False
    return not select.tags or any(tag in info.tags for tag in select.tags)
