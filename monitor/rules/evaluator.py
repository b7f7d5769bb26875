"""Rule evaluation: events in, alert transitions out, with no full scans on the hot path.

Each event is evaluated for the series it touches only: rules are indexed by metric
name, trap OID and subject, and whether a rule's selector takes a device or a series
is decided once and remembered. A periodic :meth:`RuleEngine.tick` does what time
alone changes: ``for:`` timers coming due, absence of data, trap alerts timing out,
flapping settling, silences and maintenance windows starting and ending.

Conditions use *event time*; an event older than the last one seen for a series is
ignored here (the state has it, the rules have moved on). ``for:`` is measured from
the event that first met the condition. Threshold and rate rules latch: once met, the
condition holds until the value crosses ``clear`` (hysteresis).

Topology: a device that reports down while something on its path to the centre is
down is *unreachable*. A ``state`` rule on ``down`` does not see it as down, so it
gets no alert of its own; any other alert about it is suppressed with reason
``topology``. The parent's alert carries ``behind``, the number of devices reachable
only through it.

Flapping: every change of a series' condition is remembered for ``window``; more
than ``changes`` of them flag the alert flapping (its notifications are held), and it
settles at ``settle`` changes or fewer. A plain count over a sliding window, where
Icinga weights recent changes more: easier to state in a rule file and to test.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from monitor.config import DEFAULT_GRACE, DEFAULT_OFFICE_HOURS
from monitor.counters import counter_rate
from monitor.events import (
    CheckEvent,
    ComponentStatus,
    DeviceTopic,
    Event,
    MetricsEvent,
    StateEvent,
    TrapEvent,
)
from monitor.officehours import ALWAYS, OpenPeriods, classify_silence
from monitor.rules.alerts import Alert, Transition, fingerprint
from monitor.rules.inventory import DeviceInfo, Inventory
from monitor.rules.matchers import Matcher
from monitor.rules.model import Inhibition, Rule, RuleSet
from monitor.rules.suppress import Maintenance, Silence
from monitor.state import State

__all__ = ["RuleEngine"]

DEFAULT_INTERVAL: Final = 60.0
UPTIME_METRICS: Final = ("sys_uptime_seconds", "uptime_seconds", "hr_system_uptime_seconds")
FAILURE_STATES: Final = frozenset({"down", "unreachable", "auth_error"})
KEEP_RESOLVED: Final = 3600.0
ABSENCE_EVERY: Final = 5.0
OUTAGE_TOLERANCE: Final = 3600.0

Identity = tuple[tuple[str, str], ...]
HoursFor = Callable[[str], tuple[OpenPeriods, float]]


@dataclass(slots=True)
class Tracker:
    """One rule's view of one series: is the condition met, since when, what came before."""

    fp: str
    identity: Identity
    active: bool = False
    last_ts: float = float("-inf")
    prev_value: float | None = None
    prev_ts: float = 0.0
    changes: deque[float] | None = None  # only for rules with flapping (an empty deque
    # is 600 bytes, times every series)
    flapping: bool = False


@dataclass(slots=True)
class _Silence:
    spec: Silence
    matchers: tuple[Matcher, ...]
    start: float
    end: float


class RuleEngine:
    def __init__(self, rules: RuleSet, inventory: Inventory, *, started: float,
                 hours_for: HoursFor | None = None,
                 outage_tolerance: float = OUTAGE_TOLERANCE) -> None:
        self.inventory = inventory
        self.started = started
        self.hours_for = hours_for or (lambda _d: (DEFAULT_OFFICE_HOURS, DEFAULT_GRACE))
        self.outage_tolerance = outage_tolerance
        self.alerts: dict[str, Alert] = {}
        self.changed: set[str] = set()
        self.dropped: set[str] = set()
        self.log: list[Transition] = []
        self.silences: dict[str, _Silence] = {}
        self.maintenance: dict[str, Maintenance] = {}
        self._raw_state: dict[str, str | None] = {}
        self._uptime: dict[str, float] = {}
        self._last_metric: dict[tuple[str, str], float] = {}
        self._timers: list[tuple[float, int, str, str]] = []  # due, n, what, fingerprint
        self._n = itertools.count()
        self._last_absence = float("-inf")
        self._extra: dict[str, dict[str, str]] = {}  # labels beyond the identity
        self._trap_seen: dict[str, tuple[float, Tracker]] = {}
        self.load(rules, started)

    # -- rules -----------------------------------------------------------------------

    def load(self, rules: RuleSet, now: float) -> None:
        """Take a new rule set; alerts carry over by fingerprint, trackers start afresh.
        Alerts of rules that are gone are resolved at ``now``."""
        self.rules = rules
        self.by_name = {r.name: r for r in rules.rules}
        self._trackers: dict[tuple[Any, ...], Tracker] = {}
        self._device_ok: dict[tuple[str, str], bool] = {}
        self._device_rules: dict[str, dict[str, list[Rule]]] = {}
        self._by_metric: dict[str, list[Rule]] = {}
        self._state_rules: list[Rule] = []
        self._check_rules: list[Rule] = []
        self._component_rules: list[Rule] = []
        self._absence_rules: list[Rule] = []
        self._trap_rules: dict[str, list[Rule]] = {}
        self._trap_resolvers: dict[str, list[Rule]] = {}
        for rule in rules.rules:
            spec, subject = rule.spec, rule.subject
            if spec.kind == "trap":
                assert spec.trap_oid is not None
                self._trap_rules.setdefault(spec.trap_oid, []).append(rule)
                if spec.resolve_oid:
                    self._trap_resolvers.setdefault(spec.resolve_oid, []).append(rule)
            elif subject == "check":
                self._check_rules.append(rule)
            elif subject == "component":
                self._component_rules.append(rule)
            elif subject == "interface":
                self._by_metric.setdefault("if_oper_status", []).append(rule)
            elif spec.kind == "absence":
                self._absence_rules.append(rule)
                if spec.select.metric:
                    self._by_metric.setdefault(spec.select.metric, []).append(rule)
            elif spec.kind == "state":
                self._state_rules.append(rule)
            else:
                assert spec.select.metric is not None
                self._by_metric.setdefault(spec.select.metric, []).append(rule)
        self._count_sources()
        for fp, alert in list(self.alerts.items()):
            if alert.rule not in self.by_name and alert.state != "resolved":
                self._resolve(alert, now, "rule removed")
            elif alert.state == "pending":
                self._schedule(alert.active_since + self.by_name[alert.rule].for_seconds,
                               "fire", fp)

    def _device_matches(self, rule: Rule, device: str) -> bool:
        key = (rule.name, device)
        found = self._device_ok.get(key)
        if found is None:
            found = self._device_ok[key] = _select_device(rule, self.inventory.devices.get(
                device), device)
        return found

    # -- events ----------------------------------------------------------------------

    def on_event(self, topic: DeviceTopic, event: Event, state: State) -> None:
        if isinstance(event, MetricsEvent):
            self._on_metrics(event, state)
        elif isinstance(event, StateEvent):
            self._on_state(event.device, event.ts, state)
        elif isinstance(event, CheckEvent):
            self._on_check(event)
        elif isinstance(event, TrapEvent):
            self._on_trap(event)

    def _metric_rules(self, device: str) -> dict[str, list[Rule]]:
        """The metric rules whose device selectors take ``device``, by metric name."""
        found = self._device_rules.get(device)
        if found is None:
            found = {}
            for metric, rules in self._by_metric.items():
                mine = [r for r in rules if self._device_matches(r, device)]
                if mine:
                    found[metric] = mine
            self._device_rules[device] = found
        return found

    def _on_metrics(self, event: MetricsEvent, state: State) -> None:
        device, ts = event.device, event.ts
        by_metric = self._metric_rules(device)
        reboot = False
        matched = []
        for sample in event.samples:
            name = sample.name
            if name in UPTIME_METRICS:
                before = self._uptime.get(device)
                if before is not None and sample.value < before:
                    reboot = True
                self._uptime[device] = sample.value
            rules = by_metric.get(name)
            if rules is not None:
                matched.append((sample, rules))
        trackers = self._trackers
        for sample, rules in matched:
            labels = sample.labels
            lkey = tuple(labels.items()) if len(labels) < 2 else tuple(sorted(labels.items()))
            value = sample.value
            for rule in rules:
                if rule.matchers and not all(m.matches(labels) for m in rule.matchers):
                    continue
                kind = rule.kind
                if kind == "absence":
                    self._last_metric[(rule.name, device)] = ts
                    continue
                tracker = trackers.get((rule.name, device, lkey))
                if tracker is None:
                    tracker = self._tracker(rule, (rule.name, device, lkey),
                                            (("device", device), *lkey))
                if ts <= tracker.last_ts:
                    continue
                if kind == "threshold":
                    met = rule.condition(value, tracker.active)
                elif rule.subject == "interface":
                    admin = state.series.get((device, "if_admin_status", lkey))
                    met = admin is not None and admin.value == 1 and value in (2, 7)
                else:
                    self._rate(rule, tracker, value, sample.kind, ts, device, lkey, state,
                               reboot)
                    continue
                if not met and not tracker.active:
                    tracker.last_ts = ts  # the common case: quiet, and was quiet
                    continue
                self._set(rule, tracker, met, value, ts, device)

    def _rate(self, rule: Rule, tracker: Tracker, value: float, kind: str, ts: float,
              device: str, lkey: tuple[tuple[str, str], ...], state: State | None,
              reboot: bool) -> None:
        prev, prev_ts = tracker.prev_value, tracker.prev_ts
        tracker.prev_value, tracker.prev_ts = value, ts
        if prev is None:
            tracker.last_ts = ts
            return
        rate = counter_rate(prev, prev_ts, value, ts, kind, reboot=reboot)
        if rate is None:
            tracker.last_ts = ts
            return
        rate *= rule.spec.scale
        if rule.spec.percent_of and state is not None:
            of = state.series.get((device, rule.spec.percent_of, lkey))
            if of is None or of.value <= 0:
                tracker.last_ts = ts
                return
            rate = 100.0 * rate / of.value
        self._set(rule, tracker, rule.condition(rate, tracker.active), rate, ts, device)

    def _on_state(self, device: str, ts: float, state: State) -> None:
        status = state.devices.get(device)
        raw = status.state if status else None
        before = self._raw_state.get(device)
        self._raw_state[device] = raw
        self._evaluate_device_state(device, ts)
        if (before == "down") != (raw == "down"):
            for child in self.inventory.descendants(device):  # their effective state changed
                self._evaluate_device_state(child, ts)

    def observe_state(self, device: str, state: str | None) -> None:
        """Know a device's reported state without evaluating (restored from the store)."""
        self._raw_state[device] = state

    def effective_state(self, device: str) -> str | None:
        raw = self._raw_state.get(device)
        if raw == "down" and self.parent_down(device):
            return "unreachable"
        return raw

    def parent_down(self, device: str) -> bool:
        return any(self._raw_state.get(a) in ("down", "unreachable")
                   for a in self.inventory.ancestors(device))

    def _evaluate_device_state(self, device: str, ts: float) -> None:
        if not self._state_rules:
            return
        effective = self.effective_state(device)
        for rule in self._state_rules:
            if not self._device_matches(rule, device):
                continue
            tracker = self._tracker(rule, (rule.name, device), (("device", device),))
            if ts < tracker.last_ts:
                continue
            self._set(rule, tracker, effective in rule.spec.states, None, ts, device)

    def _on_check(self, event: CheckEvent) -> None:
        for rule in self._check_rules:
            if not self._device_matches(rule, event.device):
                continue
            metric = rule.spec.select.metric
            labels = {"check": event.check, "check_kind": event.kind}
            if rule.matchers and not all(m.matches(labels) for m in rule.matchers):
                continue
            tracker = self._tracker(rule, (rule.name, event.device, event.check),
                                    (("device", event.device), ("check", event.check)),
                                    extra={"check_kind": event.kind})
            if event.ts <= tracker.last_ts:
                continue
            if rule.spec.kind == "state":
                self._set(rule, tracker, not event.ok, event.latency, event.ts, event.device)
                continue
            value = event.latency if metric == "latency" else event.values.get(metric or "")
            if value is None:
                continue
            self._set(rule, tracker, rule.condition(value, tracker.active), value, event.ts,
                      event.device)

    def on_component(self, location: str, component: str, instance: str,
                     status: ComponentStatus) -> None:
        device = instance if instance in self.inventory.devices else None
        for rule in self._component_rules:
            select = rule.spec.select
            if select.components and component not in select.components:
                continue
            if select.locations and location not in select.locations:
                continue
            if device is not None and not self._device_matches(rule, device):
                continue
            identity: Identity = (("component", component), ("instance", instance),
                                  ("location", location))
            tracker = self._tracker(rule, (rule.name, location, component, instance), identity)
            if status.ts <= tracker.last_ts:
                continue
            if rule.spec.kind == "state":
                self._set(rule, tracker, status.status in rule.spec.states, None, status.ts,
                          device)
                continue
            raw = getattr(status, select.metric or "", None)
            if not isinstance(raw, int | float):
                continue
            if rule.spec.kind == "threshold":
                self._set(rule, tracker, rule.condition(float(raw), tracker.active),
                          float(raw), status.ts, device)
            else:
                self._rate(rule, tracker, float(raw), "counter", status.ts, device or "", (),
                           None, False)

    def _on_trap(self, event: TrapEvent) -> None:
        for rule in self._trap_rules.get(event.trap_oid, ()):
            found = self._trap_identity(rule, event)
            if found is None:
                continue
            identity, tkey = found
            tracker = self._tracker(rule, tkey, identity)
            tracker.last_ts = min(tracker.last_ts, event.ts)  # every trap counts
            self._set(rule, tracker, True, None, event.ts, event.device)
            if rule.resolve_after is not None:
                seen = self._trap_seen.get(tracker.fp)
                self._trap_seen[tracker.fp] = (max(event.ts, seen[0] if seen else event.ts),
                                               tracker)
                self._schedule(event.ts + rule.resolve_after, "expire", tracker.fp)
        for rule in self._trap_resolvers.get(event.trap_oid, ()):
            found = self._trap_identity(rule, event, resolving=True)
            if found is None:
                continue
            identity, tkey = found
            tracker = self._tracker(rule, tkey, identity)
            if tracker.active:
                self._set(rule, tracker, False, None, max(event.ts, tracker.last_ts), None)

    def _trap_identity(self, rule: Rule, event: TrapEvent, resolving: bool = False
                       ) -> tuple[Identity, tuple[Any, ...]] | None:
        if not self._device_matches(rule, event.device):
            return None
        values: dict[str, str] = {}
        for label, oid in rule.spec.identify_by.items():
            for vb in event.varbinds:
                if vb.oid == oid or vb.oid.startswith(oid + "."):
                    values[label] = vb.value
                    break
        if not resolving:
            named = dict(values)
            for vb in event.varbinds:
                if vb.name:
                    named.setdefault(vb.name, vb.value)
            if rule.varbinds and not all(m.matches(named) for m in rule.varbinds):
                return None
        lkey = tuple(sorted(values.items()))
        return (("device", event.device), *lkey), (rule.name, event.device, lkey)

    # -- the lifecycle ---------------------------------------------------------------

    def _tracker(self, rule: Rule, key: tuple[Any, ...], identity: Identity,
                 extra: dict[str, str] | None = None) -> Tracker:
        tracker = self._trackers.get(key)
        if tracker is None:
            fp = fingerprint(rule.name, identity)
            tracker = self._trackers[key] = Tracker(fp, identity)
            alert = self.alerts.get(fp)
            if alert is not None and alert.state != "resolved":
                tracker.active = True  # carried over a restart or a reload
            if extra:
                self._extra[fp] = extra
        return tracker

    def _set(self, rule: Rule, tracker: Tracker, met: bool, value: float | None, ts: float,
             device: str | None) -> None:
        tracker.last_ts = ts
        if met == tracker.active:
            if met:
                alert = self.alerts.get(tracker.fp)
                if alert is None or alert.state == "resolved":
                    self._raise(rule, tracker, value, ts, device)
                else:
                    alert.value = value
                    if alert.state == "pending" and ts >= alert.active_since + rule.for_seconds:
                        self._fire(alert, ts)
            return
        tracker.active = met
        self._flap(rule, tracker, ts)
        if met:
            self._raise(rule, tracker, value, ts, device)
        else:
            alert = self.alerts.get(tracker.fp)
            if alert is not None and alert.state != "resolved":
                self._resolve(alert, ts)

    def _raise(self, rule: Rule, tracker: Tracker, value: float | None, ts: float,
               device: str | None) -> None:
        alert = self.alerts.get(tracker.fp)
        if alert is not None and alert.state != "resolved":
            alert.value = value
            return
        labels = dict(tracker.identity)
        info = self.inventory.devices.get(device) if device else None
        if info is not None:
            labels.update(info.context())
        labels.update(self._extra.get(tracker.fp, {}))
        labels.update(rule.spec.labels)
        labels["alertname"] = rule.name
        labels["severity"] = rule.spec.severity
        alert = Alert(tracker.fp, rule.name, rule.spec.severity, labels, "pending", ts, value,
                      flapping=tracker.flapping)
        self.alerts[tracker.fp] = alert
        self.dropped.discard(tracker.fp)
        self._note(alert, ts, "pending")
        if rule.for_seconds <= 0:
            self._fire(alert, ts)
        else:
            self._schedule(ts + rule.for_seconds, "fire", tracker.fp)

    def _fire(self, alert: Alert, ts: float) -> None:
        rule = self.by_name[alert.rule]
        alert.state = "firing"
        alert.fired_at = ts
        device = alert.device
        if device is not None and rule.spec.kind == "state" and "down" in rule.spec.states:
            alert.behind = self.inventory.behind(device)
        alert.annotations = rule.render(self._variables(alert, rule))
        self._count_source(alert, 1)
        alert.suppressed = self._suppression(alert, ts, self._inhibition_index())
        self._note(alert, ts, "firing", alert.suppressed)

    def _resolve(self, alert: Alert, ts: float, detail: str | None = None) -> None:
        if alert.state == "pending":
            del self.alerts[alert.fingerprint]
            self.changed.discard(alert.fingerprint)
            self.dropped.add(alert.fingerprint)
            self.log.append(Transition(alert.fingerprint, ts, "dropped", detail))
            return
        if alert.state == "firing":
            self._count_source(alert, -1)
        alert.state = "resolved"
        alert.resolved_at = ts
        self._note(alert, ts, "resolved", detail)

    def _note(self, alert: Alert, ts: float, what: str, detail: str | None = None) -> None:
        self.changed.add(alert.fingerprint)
        self.log.append(Transition(alert.fingerprint, ts, what, detail))

    def _flap(self, rule: Rule, tracker: Tracker, ts: float) -> None:
        spec = rule.spec.flapping
        if spec is None:
            return
        if tracker.changes is None:
            tracker.changes = deque()
        tracker.changes.append(ts)
        self._settle(rule, tracker, ts)

    def _settle(self, rule: Rule, tracker: Tracker, now: float) -> None:
        spec = rule.spec.flapping
        changes = tracker.changes
        if spec is None or changes is None:
            return
        while changes and changes[0] < now - rule.flap_window:
            changes.popleft()
        settle = spec.settle if spec.settle is not None else spec.changes // 2
        flapping = tracker.flapping
        if not flapping and len(changes) > spec.changes:
            flapping = True
        elif flapping and len(changes) <= settle:
            flapping = False
        if flapping != tracker.flapping:
            tracker.flapping = flapping
            alert = self.alerts.get(tracker.fp)
            if alert is not None:
                alert.flapping = flapping
                self._note(alert, now, "flapping" if flapping else "settled")

    def _variables(self, alert: Alert, rule: Rule) -> dict[str, Any]:
        info: DeviceInfo | None = self.inventory.devices.get(alert.device or "")
        return {
            "device": alert.device or alert.labels.get("instance", ""),
            "device_name": info.name if info else alert.device or "",
            "class": info.device_class if info else "", "site": info.site if info else "",
            "site_name": info.site_name if info else "",
            "municipality": alert.labels.get("municipality", ""),
            "location": alert.labels.get("location", ""), "value": alert.value,
            "labels": alert.labels, "behind": alert.behind,
            "since": datetime.fromtimestamp(alert.active_since, UTC).isoformat(),
            "alertname": alert.rule, "severity": alert.severity,
            "threshold": rule.spec.value,
        }

    # -- time ------------------------------------------------------------------------

    def _schedule(self, due: float, what: str, fp: str) -> None:
        heapq.heappush(self._timers, (due, next(self._n), what, fp))

    def tick(self, now: float, state: State) -> None:
        """Everything time alone changes, up to ``now``."""
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, _, what, fp = heapq.heappop(timers)
            alert = self.alerts.get(fp)
            if alert is None or alert.state == "resolved":
                continue
            rule = self.by_name.get(alert.rule)
            if rule is None:
                continue
            if what == "fire" and alert.state == "pending":
                if alert.active_since + rule.for_seconds <= now:
                    self._fire(alert, now)
            elif what == "expire" and rule.resolve_after is not None:
                seen = self._trap_seen.get(fp)
                last = seen[0] if seen else alert.active_since
                if last + rule.resolve_after <= now:
                    if seen is not None:
                        seen[1].active = False
                        del self._trap_seen[fp]
                    self._resolve(alert, now, "no clearing trap within resolve_after")
        if now - self._last_absence >= ABSENCE_EVERY:
            self._last_absence = now
            self._absence(now, state)
        for key, tracker in self._trackers.items():
            if tracker.flapping:
                self._settle(self.by_name[key[0]], tracker, now)
        self.refresh(now)

    def _absence(self, now: float, state: State) -> None:
        for rule in self._absence_rules:
            for device_id, info in self.inventory.devices.items():
                if not self._device_matches(rule, device_id):
                    continue
                status = state.devices.get(device_id)
                if rule.spec.select.metric:
                    last = self._last_metric.get((rule.name, device_id))
                else:
                    last = status.last_seen if status and status.last_seen else None
                every = (status.interval if status and status.interval else None) or \
                    info.interval or DEFAULT_INTERVAL
                expected = every * rule.spec.missed
                reference = last if last is not None else self.started
                if now - reference <= expected:
                    met = False
                elif status is not None and status.state in FAILURE_STATES:
                    met = False  # the collector says why: the state rules speak for it
                else:
                    hours, grace = (self.hours_for(device_id) if info.device_class == "pc"
                                    else (ALWAYS, 0.0))
                    verdict = classify_silence(
                        info.device_class, datetime.fromtimestamp(reference, UTC),
                        datetime.fromtimestamp(now, UTC),
                        expected_every=timedelta(seconds=expected), hours=hours,
                        grace=timedelta(seconds=grace))
                    met = verdict == "down"
                if not met and (rule.name, device_id) not in self._trackers:
                    continue  # nothing to clear: no tracker for every quiet device
                tracker = self._tracker(rule, (rule.name, device_id),
                                        (("device", device_id),))
                self._set(rule, tracker, met, now - reference, now, device_id)

    # -- suppression -----------------------------------------------------------------

    def _count_sources(self) -> None:
        """Count, per inhibition, the firing source alerts by their ``equal`` labels;
        kept up to date by every firing and resolving, so no check scans the alerts."""
        self._sources: list[dict[tuple[str, ...], int]] = [{} for _ in self.rules.inhibitions]
        for alert in self.alerts.values():
            if alert.state == "firing":
                self._count_source(alert, 1)

    def _count_source(self, alert: Alert, delta: int) -> None:
        for inh, counts in zip(self.rules.inhibitions, self._sources, strict=True):
            if all(m.matches(alert.labels) for m in inh.source):
                key = tuple(alert.labels.get(k, "") for k in inh.equal)
                left = counts.get(key, 0) + delta
                if left > 0:
                    counts[key] = left
                else:
                    counts.pop(key, None)

    def _inhibition_index(self) -> list[tuple[Inhibition, dict[tuple[str, ...], int]]]:
        return list(zip(self.rules.inhibitions, self._sources, strict=True))

    def _suppression(self, alert: Alert, now: float,
                     inhibitions: list[tuple[Inhibition, dict[tuple[str, ...], int]]]
                     ) -> str | None:
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
        for inh, sources in inhibitions:
            if not sources or not all(m.matches(alert.labels) for m in inh.target):
                continue
            if all(m.matches(alert.labels) for m in inh.source):
                continue  # a source alert is not muted by its own kind
            if tuple(alert.labels.get(k, "") for k in inh.equal) in sources:
                return "inhibited"
        return None

    def refresh(self, now: float) -> None:
        """Re-decide suppression of firing alerts; forget long-resolved ones."""
        index = self._inhibition_index()
        for fp, alert in list(self.alerts.items()):
            if alert.state == "resolved":
                if alert.resolved_at is not None and now - alert.resolved_at > KEEP_RESOLVED:
                    del self.alerts[fp]
                continue
            if alert.state != "firing":
                continue
            reason = self._suppression(alert, now, index)
            if reason != alert.suppressed:
                alert.suppressed = reason
                self._note(alert, now, "suppressed" if reason else "unsuppressed", reason)

    # -- people ----------------------------------------------------------------------

    def acknowledge(self, fp: str, who: str, comment: str, now: float) -> Alert:
        alert = self.alerts.get(fp)
        if alert is None or alert.state == "resolved":
            raise KeyError(fp)
        alert.ack_by, alert.ack_at, alert.ack_comment = who, now, comment
        self._note(alert, now, "acknowledged", who)
        return alert

    def add_silence(self, silence: Silence, now: float) -> None:
        matchers, start, end = silence.compile()
        self.silences[silence.id] = _Silence(silence, matchers, start, end)
        self.refresh(now)

    def remove_silence(self, sid: str, now: float) -> None:
        self.silences.pop(sid, None)
        self.refresh(now)

    def add_maintenance(self, window: Maintenance, now: float) -> None:
        window.check()
        self.maintenance[window.id] = window
        self.refresh(now)

    def remove_maintenance(self, mid: str, now: float) -> None:
        self.maintenance.pop(mid, None)
        self.refresh(now)

    # -- persistence -----------------------------------------------------------------

    def restore(self, alerts: Iterable[Alert], last_eval: float | None, now: float) -> None:
        """Take the alerts the store kept. Pending ``for:`` timers continue where they
        were if the engine was away for less than the outage tolerance; after a longer
        outage they start again, as Prometheus does."""
        away = now - last_eval if last_eval is not None else float("inf")
        for alert in alerts:
            self.alerts[alert.fingerprint] = alert
            if alert.state != "pending":
                continue
            rule = self.by_name.get(alert.rule)
            if rule is None:
                continue
            if away > self.outage_tolerance:
                alert.active_since = now
                self.changed.add(alert.fingerprint)
            self._schedule(alert.active_since + rule.for_seconds, "fire", alert.fingerprint)
        self._count_sources()
        for alert in self.alerts.values():
            rule = self.by_name.get(alert.rule)
            if alert.state == "firing" and rule is not None and rule.resolve_after:
                self._schedule(now + rule.resolve_after, "expire", alert.fingerprint)

    def take_changes(self) -> tuple[list[Alert], list[str], list[Transition]]:
        """What to write: alerts to upsert, pending alerts to forget, the log."""
        changed = [self.alerts[fp] for fp in self.changed if fp in self.alerts]
        dropped = list(self.dropped)
        log = self.log
        self.changed, self.dropped, self.log = set(), set(), []
        return changed, dropped, log

    def active(self) -> list[Alert]:
        return [a for a in self.alerts.values() if a.state != "resolved"]


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
