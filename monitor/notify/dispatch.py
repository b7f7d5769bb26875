"""Routing and grouping in Alertmanager's model, on an injectable clock.

An alert walks the routing tree: a route matches when its matchers do (and, if it
says so, only in office hours or only after them); the first matching child takes
it unless that child says ``continue``; with no matching child the route itself
does. Timings and ``group_by`` are inherited (defaults as Alertmanager: group_wait
30 s, group_interval 5 m, repeat_interval 4 h; ``group_by`` empty).

Alerts of one route with the same values of its ``group_by`` labels form a group.
A group is first flushed ``group_wait`` after its first alert, then at most every
``group_interval`` when its content changed (but ``group_wait`` after its last alert
resolved: the all-clear is not held back), and again every ``repeat_interval``
while something still fires. What was sent is kept per group and receiver (the
notification log): a flush with nothing new is not sent, and a resolved alert is
announced only to those who were told it fired. So a storm of alerts at one site
becomes one message per group — and with topology, alerts behind a down switch are
suppressed and never reach a group at all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from monitor.fields import parse_duration
from monitor.notify.settings import RouteSettings
from monitor.officehours import Schedule
from monitor.rules.alerts import Alert
from monitor.rules.matchers import Matcher, parse_matcher

__all__ = ["Dispatcher", "Flush", "Route", "SentLog", "build_routes"]

GROUP_WAIT: Final = 30.0
GROUP_INTERVAL: Final = 300.0
REPEAT_INTERVAL: Final = 4 * 3600.0


@dataclass(frozen=True, slots=True)
class Route:
    id: str
    receiver: str | None
    escalation: str | None
    matchers: tuple[Matcher, ...]
    continue_: bool
    group_by: tuple[str, ...]
    group_wait: float
    group_interval: float
    repeat_interval: float
    active: str
    calendar: Schedule | None
    children: tuple[Route, ...]

    def matches(self, alert: Alert, at: float) -> bool:
        if not all(m.matches(alert.labels) for m in self.matchers):
            return False
        if self.active == "always":
            return True
        moment = datetime.fromtimestamp(at, UTC)
        calendar = self.calendar or Schedule.from_text({"mon-fri": ["07:00-16:00"]})
        return calendar.is_open(moment) == (self.active == "office_hours")


def build_routes(settings: RouteSettings, calendars: dict[str, Schedule]) -> Route:
    def build(s: RouteSettings, parent: Route | None, path: str) -> Route:
        route = Route(
            id=path,
            receiver=s.receiver or (parent.receiver if parent and not s.escalation else None),
            escalation=s.escalation,
            matchers=tuple(parse_matcher(m) for m in s.matchers),
            continue_=s.continue_,
            group_by=tuple(s.group_by) if s.group_by is not None else
            (parent.group_by if parent else ()),
            group_wait=parse_duration(s.group_wait) if s.group_wait else
            (parent.group_wait if parent else GROUP_WAIT),
            group_interval=parse_duration(s.group_interval) if s.group_interval else
            (parent.group_interval if parent else GROUP_INTERVAL),
            repeat_interval=parse_duration(s.repeat_interval) if s.repeat_interval else
            (parent.repeat_interval if parent else REPEAT_INTERVAL),
            active=s.active,
            calendar=calendars.get(s.calendar) if s.calendar else
            (parent.calendar if parent else None),
            children=(),
        )
        children = tuple(build(c, route, f"{path}.{i}") for i, c in enumerate(s.routes))
        return Route(**{**{f: getattr(route, f) for f in route.__dataclass_fields__},
                        "children": children})

    return build(settings, None, "root")


def match_routes(route: Route, alert: Alert, at: float) -> list[Route]:
    """The routes that take ``alert``: Alertmanager's depth-first walk."""
    if not route.matches(alert, at):
        return []
    found: list[Route] = []
    for child in route.children:
        taken = match_routes(child, alert, at)
        if taken:
            found += taken
            if not child.continue_:
                break
    return found or [route]


@dataclass(slots=True)
class Group:
    key: str
    route: Route
    labels: dict[str, str]
    alerts: dict[str, Alert] = field(default_factory=dict)
    created: float = 0.0
    next_flush: float = 0.0
    changed: bool = True


@dataclass(frozen=True, slots=True)
class SentLog:
    """What a receiver was last told about a group (Alertmanager's nflog entry)."""

    firing: frozenset[str]
    resolved: frozenset[str]
    at: float


@dataclass(frozen=True, slots=True)
class Flush:
    """One notification to make: the group, whom, what fires and what resolved."""

    group: str
    route: Route
    labels: dict[str, str]
    firing: tuple[Alert, ...]
    resolved: tuple[Alert, ...]
    at: float

    @property
    def dedup_key(self) -> str:
        text = "|".join([self.group, ",".join(sorted(a.fingerprint for a in self.firing)),
                         ",".join(sorted(a.fingerprint for a in self.resolved)),
                         str(int(self.at))])
        return hashlib.blake2b(text.encode(), digest_size=10).hexdigest()


def notifiable(alert: Alert) -> bool:
    return (alert.state == "firing" and alert.suppressed is None and not alert.flapping
            and alert.ack_by is None)


class Dispatcher:
    """Groups alerts and decides, at each tick, which notifications to make."""

    def __init__(self, root: Route, sent: dict[str, SentLog] | None = None,
                 on_sent: Callable[[str, SentLog], None] | None = None) -> None:
        self.root = root
        self.groups: dict[str, Group] = {}
        self.sent: dict[str, SentLog] = sent if sent is not None else {}
        self.on_sent = on_sent

    def update(self, alert: Alert, at: float) -> None:
        """An alert changed (fired, resolved, got acknowledged or suppressed)."""
        for route in match_routes(self.root, alert, at):
            labels = {k: alert.labels.get(k, "") for k in route.group_by}
            key = route.id + "{" + ",".join(f"{k}={v}" for k, v in sorted(labels.items())) + "}"
            group = self.groups.get(key)
            if group is None:
                if not notifiable(alert):
                    continue  # nothing to say about an alert never announced
                group = self.groups[key] = Group(key, route, labels, created=at,
                                                 next_flush=at + route.group_wait)
            group.alerts[alert.fingerprint] = alert
            group.changed = True
            if alert.state == "resolved" and not any(
                    a.state == "firing" for a in group.alerts.values()):
                # all clear: say so after group_wait (which still absorbs a flap), not
                # a whole group_interval later, as Alertmanager would
                group.next_flush = min(group.next_flush, at + route.group_wait)

    def due(self, at: float) -> list[Flush]:
        """The notifications to make at ``at``; marks them as sent in the log."""
        out = []
        for key, group in list(self.groups.items()):
            if at < group.next_flush:
                continue
            flush = self._flush(group, at)
            if flush is not None:
                out.append(flush)
            group.changed = False
            group.next_flush = at + group.route.group_interval
            firing = [a for a in group.alerts.values() if a.state == "firing"]
            if not firing:
                del self.groups[key]  # everything resolved and announced
            else:
                for fp, alert in list(group.alerts.items()):
                    if alert.state == "resolved":
                        del group.alerts[fp]
        return out

    def _flush(self, group: Group, at: float) -> Flush | None:
        firing = tuple(a for a in group.alerts.values() if notifiable(a))
        now_firing = frozenset(a.fingerprint for a in firing)
        last = self.sent.get(group.key)
        told = last.firing if last else frozenset()
        resolved = tuple(a for a in group.alerts.values()
                         if a.fingerprint in told and a.fingerprint not in now_firing
                         and a.state == "resolved")
        if not firing and not resolved:
            if last is not None and not now_firing:
                self._record(group.key, SentLog(frozenset(), last.resolved, last.at))
            return None
        if last is not None and now_firing == last.firing and not resolved and \
                at - last.at < group.route.repeat_interval:
            return None  # nothing new, and not yet time to repeat
        self._record(group.key, SentLog(now_firing, frozenset(a.fingerprint for a in resolved),
                                        at))
        return Flush(group.key, group.route, group.labels, firing, resolved, at)

    def _record(self, key: str, entry: SentLog) -> None:
        self.sent[key] = entry
        if self.on_sent is not None:
            self.on_sent(key, entry)
