"""``state``: a device, interface, service check or component in one of ``states``.

A device's state is its *effective* state (monitor.rules.topology): behind a parent
that is down it is ``unreachable``, never ``down``. An interface is down when it is
administratively up and operationally down (or lower-layer down), and it matters:
it has an alias (someone described what it is for), it is one the estate says to
watch (``watch_interfaces``), it joins the device to its parent or to another switch
as the LLDP and CDP tables show (monitor.links), or it has been seen up since the
engine started (a port going down is news;
an access port nobody ever plugged in is not). Checkmk's default is the same idea
(the state at discovery is the expected one); LibreNMS alerts on any ifOperStatus
change of a port that is not ignored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from monitor.events import CheckEvent, ComponentStatus
from monitor.rules.kinds import LabelKey, RuleKind, check_tracker, component_tracker
from monitor.yamlmodel import FieldError

if TYPE_CHECKING:
    from monitor.rules.model import Rule, RuleSpec
    from monitor.state import State

__all__ = ["STATES", "StateRules"]

STATES: Final[dict[str, tuple[str, ...]]] = {
    "device": ("down", "unreachable", "auth_error", "offline", "stopping"),
    "interface": ("down",),
    "check": ("failed",),
    "component": ("offline", "stopping", "degraded"),
}
IF_DOWN: Final = (2, 7)  # IF-MIB ifOperStatus down, lowerLayerDown
IF_UP: Final = 1.0


def _has_alias(lkey: LabelKey) -> bool:
    return any(k == "ifalias" and v for k, v in lkey)


class StateRules(RuleKind):
    name = "state"
    subjects = ("device", "interface", "check", "component")
    takes = frozenset({"states"})

    @classmethod
    def check(cls, spec: RuleSpec, subject: str) -> None:
        allowed = STATES[subject]
        if not spec.states:
            raise FieldError("states", f"a state rule needs 'states' (some of "
                                       f"{', '.join(allowed)})")
        for state in spec.states:
            if state not in allowed:
                raise FieldError("states", f"{state!r} is not a {subject} state; "
                                           f"known: {', '.join(allowed)}")

    def load(self, rules: list[Rule]) -> None:
        super().load(rules)
        self._devices = [r for r in rules if r.subject == "device"]
        self._checks = [r for r in rules if r.subject == "check"]
        self._components = [r for r in rules if r.subject == "component"]

    def metric_of(self, rule: Rule) -> str | None:
        return "if_oper_status" if rule.subject == "interface" else None

    def on_sample(self, rule: Rule, device: str, lkey: LabelKey, value: float,
                  sample_kind: str, ts: float, state: State, reboot: bool) -> None:
        lifecycle = self.ctx.lifecycle
        key = (rule.name, device, lkey)
        tracker = lifecycle.trackers.get(key) or lifecycle.tracker(
            rule, key, (("device", device), *lkey))
        if ts <= tracker.last_ts:
            return
        if value == IF_UP:
            tracker.prev_value = IF_UP  # seen up: from now on, its going down is news
        admin = state.series.get((device, "if_admin_status", lkey))
        met = (admin is not None and admin.value == 1 and value in IF_DOWN
               and (tracker.prev_value == IF_UP or _has_alias(lkey)
                    or self._watched(device, lkey)))
        if not met and not tracker.active:
            tracker.last_ts = ts
            return
        lifecycle.set(rule, tracker, met, value, ts, device)

    def _watched(self, device: str, lkey: LabelKey) -> bool:
        watch = self.ctx.inventory.watched(device)
        return bool(watch) and any(k == "ifname" and v in watch for k, v in lkey)

    def on_device_state(self, device: str, ts: float) -> None:
        if not self._devices:
            return
        effective = self.ctx.topology.effective_state(device)
        for rule in self._devices:
            if not self.ctx.device_matches(rule, device):
                continue
            tracker = self.ctx.lifecycle.tracker(rule, (rule.name, device),
                                                 (("device", device),))
            if ts < tracker.last_ts:
                continue
            self.ctx.lifecycle.set(rule, tracker, effective in rule.spec.states, None, ts,
                                   device)

    def on_check(self, event: CheckEvent) -> None:
        for rule in self._checks:
            tracker = check_tracker(self.ctx, rule, event)
            if tracker is not None:
                self.ctx.lifecycle.set(rule, tracker, not event.ok, event.latency, event.ts,
                                       event.device)

    def on_component(self, location: str, component: str, instance: str,
                     status: ComponentStatus, device: str | None) -> None:
        for rule in self._components:
            tracker = component_tracker(self.ctx, rule, location, component, instance,
                                        status, device)
            if tracker is not None:
                self.ctx.lifecycle.set(rule, tracker, status.status in rule.spec.states,
                                       None, status.ts, device)
