"""The alert lifecycle, for every kind of rule alike: pending → firing → resolved.

A rule kind (monitor.rules.kinds) judges whether its condition is met for one series
and calls :meth:`Lifecycle.set`; everything after that is here: ``for:`` timers,
firing with its annotations and muting reason, resolving, flapping, and the record
of what changed for the store.

``for:`` is measured from the event that first met the condition, in event time.
Flapping: every change of a series' condition is remembered for ``window``; more than
``changes`` of them flag the alert flapping (its notifications are held), and it
settles at ``settle`` changes or fewer. A plain count over a sliding window, where
Icinga weights recent changes more: easier to state in a rule file and to test.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

import structlog

from monitor.fields import at_time
from monitor.rules.alerts import Alert, Transition, fingerprint
from monitor.rules.inventory import DeviceInfo, Inventory
from monitor.rules.model import Rule
from monitor.rules.muting import Muting

__all__ = ["Identity", "Lifecycle", "Tracker"]

_log = structlog.get_logger(__name__)

KEEP_RESOLVED: Final = 3600.0

Identity = tuple[tuple[str, str], ...]
TimerHandler = Callable[[Alert, Rule, float], None]


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


class Lifecycle:
    def __init__(self, inventory: Inventory, muting: Muting) -> None:
        self.inventory = inventory
        self.muting = muting
        self.alerts: dict[str, Alert] = {}
        self.changed: set[str] = set()
        self.dropped: set[str] = set()
        self.log: list[Transition] = []
        self.announce = False  # log firing and resolved: the engine's, not a rule test's
        self.by_name: dict[str, Rule] = {}
        self.trackers: dict[tuple[Any, ...], Tracker] = {}
        self._extra: dict[str, dict[str, str]] = {}  # labels beyond the identity
        self._timers: list[tuple[float, int, str, str]] = []  # due, n, what, fingerprint
        self._n = itertools.count()
        self._on_timer: dict[str, TimerHandler] = {"fire": self._fire_due}

    def load(self, rules: Iterable[Rule]) -> None:
        """New rules: trackers start afresh (alerts carry over by fingerprint)."""
        self.by_name = {r.name: r for r in rules}
        self.trackers = {}

    def tracker(self, rule: Rule, key: tuple[Any, ...], identity: Identity,
                extra: dict[str, str] | None = None) -> Tracker:
        tracker = self.trackers.get(key)
        if tracker is None:
            fp = fingerprint(rule.name, identity)
            tracker = self.trackers[key] = Tracker(fp, identity)
            alert = self.alerts.get(fp)
            if alert is not None and alert.state != "resolved":
                tracker.active = True  # carried over a restart or a reload
            if extra:
                self._extra[fp] = extra
        return tracker

    # -- the condition changes ------------------------------------------------------------

    def set(self, rule: Rule, tracker: Tracker, met: bool, value: float | None, ts: float,
            device: str | None) -> None:
        """The rule's condition for ``tracker``'s series is ``met`` (or not) at ``ts``."""
        tracker.last_ts = ts
        if met == tracker.active:
            if met:
                alert = self.alerts.get(tracker.fp)
                if alert is None or alert.state == "resolved":
                    self._raise(rule, tracker, value, ts, device)
                else:
                    alert.value = value
                    if alert.state == "pending" and ts >= alert.active_since + rule.for_seconds:
                        self.fire(alert, ts)
            return
        tracker.active = met
        self._flap(rule, tracker, ts)
        if met:
            self._raise(rule, tracker, value, ts, device)
        else:
            alert = self.alerts.get(tracker.fp)
            if alert is not None and alert.state != "resolved":
                self.resolve(alert, ts)

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
        self.note(alert, ts, "pending")
        if rule.for_seconds <= 0:
            self.fire(alert, ts)
        else:
            self.schedule(ts + rule.for_seconds, "fire", tracker.fp)

    def fire(self, alert: Alert, ts: float) -> None:
        rule = self.by_name[alert.rule]
        alert.state = "firing"
        alert.fired_at = ts
        device = alert.device
        if device is not None and rule.spec.kind == "state" and "down" in rule.spec.states:
            alert.behind = self.inventory.behind(device)
        alert.annotations = rule.render(self._variables(alert, rule))
        self.muting.count_source(alert, 1)
        alert.suppressed = self.muting.reason(alert, ts)
        self.note(alert, ts, "firing", alert.suppressed)

    def resolve(self, alert: Alert, ts: float, detail: str | None = None,
                ended_by: str | None = None) -> None:
        """``ended_by``: why, when not because it recovered (``retired``, ``rule
        removed``); a notification says so instead of "recovered"."""
        if alert.state == "pending":
            del self.alerts[alert.fingerprint]
            self.changed.discard(alert.fingerprint)
            self.dropped.add(alert.fingerprint)
            self.log.append(Transition(alert.fingerprint, ts, "dropped", detail))
            return
        if alert.state == "firing":
            self.muting.count_source(alert, -1)
        alert.state = "resolved"
        alert.resolved_at = ts
        alert.ended_by = ended_by
        self.note(alert, ts, "resolved", detail)

    def note(self, alert: Alert, ts: float, what: str, detail: str | None = None) -> None:
        self.changed.add(alert.fingerprint)
        self.log.append(Transition(alert.fingerprint, ts, what, detail))
        if self.announce and what in ("firing", "resolved"):  # the log says what pages say
            labels = alert.labels
            _log.info(f"alert_{what}", alert=alert.rule, severity=alert.severity,
                      device=alert.device or labels.get("instance"),
                      municipality=labels.get("municipality"), location=labels.get("location"),
                      suppressed=alert.suppressed, behind=alert.behind or None)

    # -- flapping --------------------------------------------------------------------

    def _flap(self, rule: Rule, tracker: Tracker, ts: float) -> None:
        if rule.spec.flapping is None:
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
                self.note(alert, now, "flapping" if flapping else "settled")

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
            "since": at_time(alert.active_since).isoformat(),
            "alertname": alert.rule, "severity": alert.severity,
            "threshold": rule.spec.value,
        }

    # -- time ------------------------------------------------------------------------

    def on_timer(self, what: str, handler: TimerHandler) -> None:
        """``handler(alert, rule, now)`` runs when a timer ``what`` comes due."""
        self._on_timer[what] = handler

    def schedule(self, due: float, what: str, fp: str) -> None:
        heapq.heappush(self._timers, (due, next(self._n), what, fp))

    def run_timers(self, now: float) -> None:
        """Timers due by ``now``: ``for:`` coming due, and what kinds registered."""
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, _, what, fp = heapq.heappop(timers)
            alert = self.alerts.get(fp)
            if alert is None or alert.state == "resolved":
                continue
            rule = self.by_name.get(alert.rule)
            if rule is not None:
                self._on_timer[what](alert, rule, now)

    def settle(self, now: float) -> None:
        """Flapping alerts whose changes have aged out of their window settle."""
        for key, tracker in self.trackers.items():
            if tracker.flapping:
                self._settle(self.by_name[key[0]], tracker, now)

    def _fire_due(self, alert: Alert, rule: Rule, now: float) -> None:
        if alert.state == "pending" and alert.active_since + rule.for_seconds <= now:
            self.fire(alert, now)

    def refresh(self, now: float) -> None:
        """Re-decide muting of firing alerts; forget long-resolved ones."""
        for fp, alert in list(self.alerts.items()):
            if alert.state == "resolved":
                if alert.resolved_at is not None and now - alert.resolved_at > KEEP_RESOLVED:
                    del self.alerts[fp]
                continue
            if alert.state != "firing":
                continue
            if alert.expires_at is not None and alert.expires_at <= now:
                self.resolve(alert, alert.expires_at, "expired: not renewed by its sender")
                continue
            reason = self.muting.reason(alert, now)
            if reason != alert.suppressed:
                alert.suppressed = reason
                self.note(alert, now, "suppressed" if reason else "unsuppressed", reason)

    # -- people and the store ---------------------------------------------------------

    def acknowledge(self, fp: str, who: str, comment: str, now: float) -> Alert:
        alert = self.alerts.get(fp)
        if alert is None or alert.state == "resolved":
            raise KeyError(fp)
        alert.ack_by, alert.ack_at, alert.ack_comment = who, now, comment
        self.note(alert, now, "acknowledged", who)
        return alert

    def restore(self, alerts: Iterable[Alert], restart_pending_at: float | None) -> None:
        """Take the alerts the store kept; pending ``for:`` timers continue where they
        were, or start again at ``restart_pending_at`` (after a long outage)."""
        for alert in alerts:
            self.alerts[alert.fingerprint] = alert
            if alert.state != "pending":
                continue
            rule = self.by_name.get(alert.rule)
            if rule is None:
                continue
            if restart_pending_at is not None:
                alert.active_since = restart_pending_at
                self.changed.add(alert.fingerprint)
            self.schedule(alert.active_since + rule.for_seconds, "fire", alert.fingerprint)

    def take_changes(self) -> tuple[list[Alert], list[str], list[Transition]]:
        """What to write: alerts to upsert, pending alerts to forget, the log."""
        changed = [self.alerts[fp] for fp in self.changed if fp in self.alerts]
        dropped = list(self.dropped)
        log = self.log
        self.changed, self.dropped, self.log = set(), set(), []
        return changed, dropped, log

    def active(self) -> list[Alert]:
        return [a for a in self.alerts.values() if a.state != "resolved"]
