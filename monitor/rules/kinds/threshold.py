"""``threshold``: a value against a limit, with a separate clear limit (hysteresis).

Once met, the condition holds until the value crosses ``clear``. About a series
(samples of one name), a service check's value, or a component's status field.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from monitor.events import CheckEvent, ComponentStatus
from monitor.rules.kinds import LabelKey, RuleKind, check_tracker, component_tracker
from monitor.yamlmodel import FieldError

if TYPE_CHECKING:
    from monitor.rules.model import Rule, RuleSpec
    from monitor.state import State

__all__ = ["Threshold", "check_limits"]


def check_limits(spec: RuleSpec) -> None:
    """A limit, the metric it applies to, and a clear limit on the right side of it."""
    if spec.value is None:
        raise FieldError("value", f"a {spec.kind} rule needs 'value' (the threshold)")
    if spec.select.metric is None:
        raise FieldError("select", f"a {spec.kind} rule needs 'select.metric'")
    if spec.clear is not None:
        wrong = spec.clear > spec.value if spec.op in (">", ">=") else spec.clear < spec.value
        if wrong:
            side = "at or below" if spec.op in (">", ">=") else "at or above"
            raise FieldError("clear", f"the clear threshold must lie {side} the "
                                      f"firing threshold {spec.value} (hysteresis)")


class Threshold(RuleKind):
    name = "threshold"
    subjects = ("series", "check", "component")
    takes = frozenset({"value"})

    @classmethod
    def check(cls, spec: RuleSpec, subject: str) -> None:
        check_limits(spec)

    def load(self, rules: list[Rule]) -> None:
        super().load(rules)
        self._checks = [r for r in rules if r.subject == "check"]
        self._components = [r for r in rules if r.subject == "component"]

    def metric_of(self, rule: Rule) -> str | None:
        return rule.spec.select.metric if rule.subject == "series" else None

    def on_sample(self, rule: Rule, device: str, lkey: LabelKey, value: float,
                  sample_kind: str, ts: float, state: State, reboot: bool) -> None:
        lifecycle = self.ctx.lifecycle
        key = (rule.name, device, lkey)
        tracker = lifecycle.trackers.get(key) or lifecycle.tracker(
            rule, key, (("device", device), *lkey))
        if ts <= tracker.last_ts:
            return
        met = rule.condition(value, tracker.active)
        if not met and not tracker.active:
            tracker.last_ts = ts  # the common case: quiet, and was quiet
            return
        lifecycle.set(rule, tracker, met, value, ts, device)

    def on_check(self, event: CheckEvent) -> None:
        for rule in self._checks:
            tracker = check_tracker(self.ctx, rule, event)
            if tracker is None:
                continue
            metric = rule.spec.select.metric
            value = event.latency if metric == "latency" else event.values.get(metric or "")
            if value is None:
                continue
            self.ctx.lifecycle.set(rule, tracker, rule.condition(value, tracker.active),
                                   value, event.ts, event.device)

    def on_component(self, location: str, component: str, instance: str,
                     status: ComponentStatus, device: str | None) -> None:
        for rule in self._components:
            tracker = component_tracker(self.ctx, rule, location, component, instance,
                                        status, device)
            if tracker is None:
                continue
            raw = getattr(status, rule.spec.select.metric or "", None)
            if not isinstance(raw, int | float):
                continue
            self.ctx.lifecycle.set(rule, tracker, rule.condition(float(raw), tracker.active),
                                   float(raw), status.ts, device)
