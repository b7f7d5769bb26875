"""The ``notifications:`` part of the config: receivers, the routing tree, people,
on-call schedules and escalation chains. Checked with the rest of the config, every
error with file, line and key; secrets only by reference."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Annotated, Final, Literal

from monitor.fields import Duration, parse_duration
from monitor.rules.matchers import MatcherText
from monitor.secrets import SecretRef
from monitor.yamlmodel import Check, FieldError

__all__ = [
    "EmailSettings",
    "EscalationSettings",
    "Layer",
    "NotificationSettings",
    "Override",
    "Person",
    "ReceiverSettings",
    "RouteSettings",
    "ScheduleSettings",
    "SmsSettings",
    "StepSettings",
    "WebhookSettings",
    "check_notifications",
]

_SLUG: Final = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_HANDOVER: Final = re.compile(
    r"^(?:(mon|tue|wed|thu|fri|sat|sun) )?([01][0-9]|2[0-3]):([0-5][0-9])$")


def _slug(value: str) -> str | None:
    return None if _SLUG.match(value) else f"{value!r} is not a slug"


def _iso_date(value: str) -> str | None:
    try:
        date.fromisoformat(value)
    except ValueError:
        return f"{value!r} is not a date (YYYY-MM-DD)"
    return None


def _handover(value: str) -> str | None:
    if _HANDOVER.match(value):
        return None
    return f"{value!r} is not a handover like 08:00 or 'mon 08:00'"


Slug = Annotated[str, Check(_slug)]


def _template(text: str) -> str | None:
    # Jinja2 is loaded only where a template is written: collectors read this file too
    from monitor.notify.templates import check_template
    return check_template(text)


NotifyTemplate = Annotated[str, Check(_template)]


@dataclass(frozen=True, slots=True)
class EmailSettings:
    """SMTP: ``tls`` is implicit TLS (port 465), ``starttls`` upgrades (587)."""

    smarthost: str
    sender: str = field(metadata={"key": "from"})
    to: list[str] = field(default_factory=list)
    tls: bool = False
    starttls: bool = True
    username: str | None = None
    password: SecretRef | None = None
    ca_file: str | None = None
    timeout: float = 10.0

    def __post_init__(self) -> None:
        host, _, port = self.smarthost.rpartition(":")
        if not host or not port.isdigit():
            raise FieldError("smarthost", f"{self.smarthost!r} is not host:port")
        if self.tls and self.starttls:
            raise FieldError("starttls", "choose 'tls' (implicit, 465) or 'starttls' (587)")
        if (self.username is None) != (self.password is None):
            raise FieldError("password", "'username' and 'password' go together")


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """A JSON POST; ``format`` shapes the body for Teams, Slack or Mattermost."""

    url: SecretRef
    format: Literal["generic", "teams", "slack", "mattermost"] = "generic"
    timeout: float = 10.0
    ca_file: str | None = None


@dataclass(frozen=True, slots=True)
class SmsSettings:
    """Any HTTP SMS gateway: ``url``, ``headers`` and ``body`` are templates given
    ``to``, ``message`` and ``secret`` (the resolved ``secret`` reference)."""

    url: str
    method: Literal["GET", "POST"] = "POST"
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    secret: SecretRef | None = None
    to: list[str] = field(default_factory=list)
    max_length: int = 480
    timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class AlertmanagerSettings:
    """Hand alerts to an Alertmanager cluster (API v2), which deduplicates."""

    urls: list[str]
    timeout: float = 10.0
    # Alertmanager resolves an alert it has not heard of by its endsAt: every firing
    # alert is sent again this often, with endsAt four times this far ahead (as
    # Prometheus does), so it stays firing while it fires, and ends soon after a
    # takeover or a crash stops the resends.
    resend: Duration = "1m"


@dataclass(frozen=True, slots=True)
class ReceiverSettings:
    id: Slug
    email: EmailSettings | None = None
    webhook: WebhookSettings | None = None
    sms: SmsSettings | None = None
    alertmanager: AlertmanagerSettings | None = None
    language: Literal["nb", "en"] = "nb"
    subject: NotifyTemplate | None = None  # Jinja2; defaults per language
    body: NotifyTemplate | None = None
    # SMS costs money: at most this many messages per hour (0 = no limit)
    rate_limit_per_hour: int = 0
    # after this many failed attempts, the message goes to the fallback receiver
    fallback: Slug | None = None
    fallback_after: int = 5

    def __post_init__(self) -> None:
        kinds = [k for k in RECEIVER_KINDS if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"a receiver is exactly one of {', '.join(RECEIVER_KINDS)}")

    @property
    def kind(self) -> str:
        return next(k for k in RECEIVER_KINDS if getattr(self, k) is not None)


RECEIVER_KINDS: Final = ("email", "webhook", "sms", "alertmanager")
"""The keys of ReceiverSettings that name a channel (monitor.notify.receivers.CHANNELS)."""


@dataclass(frozen=True, slots=True)
class RouteSettings:
    """Alertmanager's route: the first matching child takes the alert unless it says
    ``continue``; timings are inherited. ``active`` restricts a route to office hours
    or to after hours of ``calendar`` (an office_hours id; default Mon-Fri 07-16)."""

    receiver: Slug | None = None
    escalation: Slug | None = None
    matchers: list[MatcherText] = field(default_factory=list)
    continue_: bool = field(default=False, metadata={"key": "continue"})
    group_by: list[str] | None = None
    group_wait: Duration | None = None
    group_interval: Duration | None = None
    repeat_interval: Duration | None = None
    active: Literal["always", "office_hours", "after_hours"] = "always"
    calendar: Slug | None = None
    routes: list[RouteSettings] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Person:
    id: Slug
    name: str
    email: str | None = None
    phone: str | None = None


@dataclass(frozen=True, slots=True)
class Layer:
    """A rotation: ``members`` take turns, handing over every day or week at
    ``handover`` (``08:00`` or ``mon 08:00``, local time) from ``start``."""

    members: list[Slug]
    rotation: Literal["daily", "weekly"] = "weekly"
    handover: Annotated[str, Check(_handover)] = "mon 08:00"
    start: Annotated[str, Check(_iso_date)] = "2026-01-05"
    only: Literal["always", "office_hours", "after_hours"] = "always"

    def __post_init__(self) -> None:
        if not self.members:
            raise FieldError("members", "a rotation needs at least one member")


@dataclass(frozen=True, slots=True)
class Override:
    """``who`` takes the shift from ``start`` to ``end`` (ISO times with offset)."""

    who: Slug
    start: str
    end: str


@dataclass(frozen=True, slots=True)
class ScheduleSettings:
    """Layers from bottom to top: the highest layer with someone on call wins;
    overrides win over every layer."""

    id: Slug
    layers: list[Layer]
    overrides: list[Override] = field(default_factory=list)
    timezone: str = "Europe/Oslo"
    calendar: Slug | None = None  # office hours for layers restricted by 'only'


@dataclass(frozen=True, slots=True)
class StepSettings:
    """Who to notify at this step, through which receivers, after how long unacked."""

    after: Duration
    schedule: Slug | None = None
    people: list[Slug] = field(default_factory=list)
    via: list[Slug] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.schedule is None and not self.people:
            raise ValueError("a step notifies a schedule's on-call person or 'people'")
        if not self.via:
            raise FieldError("via", "name the receivers to reach them through")


@dataclass(frozen=True, slots=True)
class EscalationSettings:
    id: Slug
    steps: list[StepSettings]
    repeat: int = 0  # run the whole chain again this many times ...
    repeat_after: Duration = "30m"  # ... starting this long after its last step

    def __post_init__(self) -> None:
        if not self.steps:
            raise FieldError("steps", "an escalation needs at least one step")
        afters = [parse_duration(s.after) for s in self.steps]
        if afters != sorted(afters):
            raise FieldError("steps", "steps must come in order of 'after'")


@dataclass(frozen=True, slots=True)
class NotificationSettings:
    route: RouteSettings | None = None
    receivers: list[ReceiverSettings] = field(default_factory=list)
    people: list[Person] = field(default_factory=list)
    schedules: list[ScheduleSettings] = field(default_factory=list)
    escalations: list[EscalationSettings] = field(default_factory=list)
    external_url: str = "http://127.0.0.1:9810"
    ack_secret: SecretRef | None = None
    ack_link_ttl: Duration = "24h"
    language: Literal["nb", "en"] = "nb"


def check_notifications(settings: NotificationSettings, calendars: set[str]
                        ) -> list[tuple[str, str]]:
    """References between the parts: (key path, message) for each dangling one."""
    receivers = {r.id for r in settings.receivers}
    problems = [(f"receivers[{i}].fallback", f"unknown receiver {r.fallback!r}")
                for i, r in enumerate(settings.receivers)
                if r.fallback is not None and r.fallback not in receivers]
    if settings.route is not None:
        problems += _route_problems(settings.route, "route", True, receivers,
                                    {e.id for e in settings.escalations}, calendars)
    people = {p.id for p in settings.people}
    problems += _schedule_problems(settings, people, calendars)
    problems += _escalation_problems(settings, people, receivers,
                                     {s.id for s in settings.schedules})
    return problems


def _route_problems(route: RouteSettings, path: str, root: bool, receivers: set[str],
                    escalations: set[str], calendars: set[str]) -> list[tuple[str, str]]:
    problems = []
    if root and route.receiver is None:
        problems.append((path, "the root route needs a receiver"))
    if route.receiver is not None and route.receiver not in receivers:
        problems.append((f"{path}.receiver", f"unknown receiver {route.receiver!r}"))
    if route.escalation is not None and route.escalation not in escalations:
        problems.append((f"{path}.escalation", f"unknown escalation {route.escalation!r}"))
    if route.calendar is not None and route.calendar not in calendars:
        problems.append((f"{path}.calendar", f"unknown office hours {route.calendar!r}"))
    for j, child in enumerate(route.routes):
        problems += _route_problems(child, f"{path}.routes[{j}]", False, receivers,
                                    escalations, calendars)
    return problems


def _schedule_problems(settings: NotificationSettings, people: set[str],
                       calendars: set[str]) -> list[tuple[str, str]]:
    problems = []
    for i, schedule in enumerate(settings.schedules):
        for j, layer in enumerate(schedule.layers):
            problems += [(f"schedules[{i}].layers[{j}].members", f"unknown person {m!r}")
                         for m in layer.members if m not in people]
        problems += [(f"schedules[{i}].overrides[{j}].who", f"unknown person {o.who!r}")
                     for j, o in enumerate(schedule.overrides) if o.who not in people]
        if schedule.calendar is not None and schedule.calendar not in calendars:
            problems.append((f"schedules[{i}].calendar",
                             f"unknown office hours {schedule.calendar!r}"))
    return problems


def _escalation_problems(settings: NotificationSettings, people: set[str],
                         receivers: set[str], schedules: set[str]) -> list[tuple[str, str]]:
    problems = []
    for i, escalation in enumerate(settings.escalations):
        for j, step in enumerate(escalation.steps):
            where = f"escalations[{i}].steps[{j}]"
            if step.schedule is not None and step.schedule not in schedules:
                problems.append((f"{where}.schedule", f"unknown schedule {step.schedule!r}"))
            problems += [(f"{where}.people", f"unknown person {p!r}")
                         for p in step.people if p not in people]
            problems += [(f"{where}.via", f"unknown receiver {v!r}")
                         for v in step.via if v not in receivers]
    return problems
