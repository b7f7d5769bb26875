"""``absence``: a device (or one of its series) silent for ``missed`` intervals.

Checked every few seconds for every device the rule selects. A device whose
collector says why it is silent (down, unreachable, auth_error) is left to the state
rules; a PC is judged by its office hours (monitor.officehours: off, not down, outside
them and during the grace after opening).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Final

from monitor.fields import at_time
from monitor.officehours import ALWAYS, classify_silence
from monitor.rules.kinds import Context, LabelKey, RuleKind
from monitor.yamlmodel import FieldError

if TYPE_CHECKING:
    from monitor.rules.model import Rule, RuleSpec
    from monitor.state import DeviceStatus, State

__all__ = ["Absence"]

DEFAULT_INTERVAL: Final = 60.0
EVERY: Final = 5.0
FAILURE_STATES: Final = frozenset({"down", "unreachable", "auth_error"})


class Absence(RuleKind):
    name = "absence"
    subjects = ("device",)

    @classmethod
    def check(cls, spec: RuleSpec, subject: str) -> None:
        if spec.missed < 1:
            raise FieldError("missed", "must be at least 1 (intervals without data)")

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.last_metric: dict[tuple[str, str], float] = {}  # kept across reloads
        self.last_run = float("-inf")

    def metric_of(self, rule: Rule) -> str | None:
        return rule.spec.select.metric

    def on_sample(self, rule: Rule, device: str, lkey: LabelKey, value: float,
                  sample_kind: str, ts: float, state: State, reboot: bool) -> None:
        self.last_metric[(rule.name, device)] = ts

    def tick(self, now: float, state: State) -> None:
        if now - self.last_run < EVERY:
            return
        self.last_run = now
        lifecycle = self.ctx.lifecycle
        for rule in self.rules:
            for device_id in self.ctx.inventory.devices:
                if not self.ctx.device_matches(rule, device_id):
                    continue
                status = state.devices.get(device_id)
                met, silent_for = self._silent(rule, device_id, status, now)
                if not met and (rule.name, device_id) not in lifecycle.trackers:
                    continue  # nothing to clear: no tracker for every quiet device
                tracker = lifecycle.tracker(rule, (rule.name, device_id),
                                            (("device", device_id),))
                lifecycle.set(rule, tracker, met, silent_for, now, device_id)

    def _silent(self, rule: Rule, device_id: str, status: DeviceStatus | None,
                now: float) -> tuple[bool, float]:
        """Is the device silent past the rule's bound, and for how long."""
        info = self.ctx.inventory.devices[device_id]
        if rule.spec.select.metric:
            last = self.last_metric.get((rule.name, device_id))
        else:
            last = status.last_seen if status and status.last_seen else None
        every = (status.interval if status and status.interval else None) or \
            info.interval or DEFAULT_INTERVAL
        expected = every * rule.spec.missed
        reference = last if last is not None else self.ctx.started
        if now - reference <= expected:
            return False, now - reference
        if status is not None and status.state in FAILURE_STATES:
            return False, now - reference  # the collector says why: state rules speak
        hours, grace = (self.ctx.hours_for(device_id) if info.device_class == "pc"
                        else (ALWAYS, 0.0))
        verdict = classify_silence(
            info.device_class, at_time(reference),
            at_time(now), expected_every=timedelta(seconds=expected),
            hours=hours, grace=timedelta(seconds=grace))
        return verdict == "down", now - reference
