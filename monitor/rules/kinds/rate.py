"""``rate``: a counter's rate of change against a limit, with hysteresis.

Rates come from :func:`monitor.counters.counter_rate` (32-bit wraps, resets, reboots
seen as sysUpTime going back), times ``scale``, optionally as a percentage of another
series of the same labels (``percent_of``, e.g. interface speed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from monitor.counters import counter_rate
from monitor.events import ComponentStatus
from monitor.rules.kinds import LabelKey, RuleKind, component_tracker
from monitor.rules.kinds.threshold import check_limits

if TYPE_CHECKING:
    from monitor.rules.lifecycle import Tracker
    from monitor.rules.model import Rule, RuleSpec
    from monitor.state import State

__all__ = ["Rate"]


class Rate(RuleKind):
    name = "rate"
    subjects = ("series", "component")
    takes = frozenset({"value", "percent_of"})

    @classmethod
    def check(cls, spec: RuleSpec, subject: str) -> None:
        check_limits(spec)

    def load(self, rules: list[Rule]) -> None:
        super().load(rules)
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
        self._judge(rule, tracker, value, sample_kind, ts, device, lkey, state, reboot)

    def on_component(self, location: str, component: str, instance: str,
                     status: ComponentStatus, device: str | None) -> None:
        for rule in self._components:
            tracker = component_tracker(self.ctx, rule, location, component, instance,
                                        status, device)
            if tracker is None:
                continue
            raw = getattr(status, rule.spec.select.metric or "", None)
            if isinstance(raw, int | float):
                self._judge(rule, tracker, float(raw), "counter", status.ts, device or "", (),
                            None, False)

    def _judge(self, rule: Rule, tracker: Tracker, value: float, kind: str, ts: float,
               device: str, lkey: LabelKey, state: State | None, reboot: bool) -> None:
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
        self.ctx.lifecycle.set(rule, tracker, rule.condition(rate, tracker.active), rate, ts,
                               device)
