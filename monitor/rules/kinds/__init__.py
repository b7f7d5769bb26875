"""One module per kind of rule, each behind :class:`RuleKind`.

A kind says which subjects its rules may have and checks its own part of a rule
file (``check``, run while the file is parsed), and judges its rules' conditions
from what it is given: samples, device states, checks, component statuses, traps,
or the passing of time. Whatever it decides goes to the one alert lifecycle
(monitor.rules.lifecycle). The evaluator (monitor.rules.evaluator) routes each event
to the kinds that have rules for it.

Adding a kind: a module here with a :class:`RuleKind` subclass, and its line in
:data:`KINDS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from monitor.events import CheckEvent, ComponentStatus, TrapEvent
from monitor.officehours import OpenPeriods

if TYPE_CHECKING:
    from monitor.rules.inventory import Inventory
    from monitor.rules.lifecycle import Lifecycle, Tracker
    from monitor.rules.model import Rule, RuleSpec
    from monitor.rules.topology import Topology
    from monitor.state import State

__all__ = ["KINDS", "Context", "HoursFor", "LabelKey", "RuleKind", "SampleHandler", "check_tracker",
           "component_tracker"]

HoursFor = Callable[[str], tuple[OpenPeriods, float]]
LabelKey = tuple[tuple[str, str], ...]
SampleHandler = Callable[["Rule", str, LabelKey, float, str, float, "State", bool], None]
"""``RuleKind.on_sample``: rule, device, label key, value, sample kind, ts, state, reboot."""


@dataclass(slots=True)
class Context:
    """What every kind works with."""

    lifecycle: Lifecycle
    inventory: Inventory
    topology: Topology
    device_matches: Callable[[Rule, str], bool]
    hours_for: HoursFor
    started: float


class RuleKind:
    """A kind of rule. The handlers do nothing unless a kind has rules for them."""

    name: ClassVar[str]
    subjects: ClassVar[tuple[str, ...]]
    """What its rules may be about; the first is the default."""
    takes: ClassVar[frozenset[str]] = frozenset()
    """Which of the kind-specific keys (``value``, ``percent_of``, ``states``,
    ``trap_oid``) its rules may have; the others are refused."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.rules: list[Rule] = []

    @classmethod
    def check(cls, spec: RuleSpec, subject: str) -> None:
        """Raise ``FieldError`` for what this kind does not accept in ``spec``."""

    def load(self, rules: list[Rule]) -> None:
        self.rules = rules

    def metric_of(self, rule: Rule) -> str | None:
        """The sample name whose samples this rule is given, if any."""
        return None

    def on_sample(self, rule: Rule, device: str, lkey: LabelKey, value: float,
                  sample_kind: str, ts: float, state: State, reboot: bool) -> None:
        """A sample named :meth:`metric_of` ``rule``, of a device the rule selects."""

    def on_device_state(self, device: str, ts: float) -> None:
        """``device``'s effective state may have changed at ``ts``."""

    def on_check(self, event: CheckEvent) -> None: ...

    def on_component(self, location: str, component: str, instance: str,
                     status: ComponentStatus, device: str | None) -> None: ...

    def on_trap(self, event: TrapEvent) -> None: ...

    def tick(self, now: float, state: State) -> None:
        """What time alone changes for this kind."""

    def restore(self, now: float) -> None:
        """The alerts were restored from the store (timers this kind keeps)."""


def check_tracker(ctx: Context, rule: Rule, event: CheckEvent) -> Tracker | None:
    """The tracker of ``rule`` for this check, if the rule takes it and the event is
    newer than what the rule has seen."""
    if not ctx.device_matches(rule, event.device):
        return None
    labels = {"check": event.check, "check_kind": event.kind}
    if rule.matchers and not all(m.matches(labels) for m in rule.matchers):
        return None
    tracker = ctx.lifecycle.tracker(rule, (rule.name, event.device, event.check),
                                    (("device", event.device), ("check", event.check)),
                                    extra={"check_kind": event.kind})
    return None if event.ts <= tracker.last_ts else tracker


def component_tracker(ctx: Context, rule: Rule, location: str, component: str,
                      instance: str, status: ComponentStatus,
                      device: str | None) -> Tracker | None:
    """The tracker of ``rule`` for this component, if the rule selects it and the status
    is newer than what the rule has seen."""
    select = rule.spec.select
    if select.components and component not in select.components:
        return None
    if select.locations and location not in select.locations:
        return None
    if device is not None and not ctx.device_matches(rule, device):
        return None
    identity = (("component", component), ("instance", instance), ("location", location))
    tracker = ctx.lifecycle.tracker(rule, (rule.name, location, component, instance),
                                    identity)
    return None if status.ts <= tracker.last_ts else tracker


def _kinds() -> dict[str, type[RuleKind]]:
    from monitor.rules.kinds.absence import Absence
    from monitor.rules.kinds.rate import Rate
    from monitor.rules.kinds.state import StateRules
    from monitor.rules.kinds.threshold import Threshold
    from monitor.rules.kinds.trap import Trap

    return {k.name: k for k in (Threshold, Rate, Absence, StateRules, Trap)}


KINDS: dict[str, type[RuleKind]] = _kinds()
