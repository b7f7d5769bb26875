"""``trap``: an SNMP trap raises an alert, identified by some of its varbinds; a
clearing trap (``resolve_oid``) or quiet for ``resolve_after`` resolves it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from monitor.events import TrapEvent
from monitor.rules.kinds import Context, RuleKind
from monitor.yamlmodel import FieldError

if TYPE_CHECKING:
    from monitor.rules.alerts import Alert
    from monitor.rules.lifecycle import Identity, Tracker
    from monitor.rules.model import Rule, RuleSpec

__all__ = ["Trap"]


class Trap(RuleKind):
    name = "trap"
    subjects = ("device",)
    takes = frozenset({"trap_oid"})

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self._seen: dict[str, tuple[float, Tracker]] = {}  # fp: last trap, its tracker
        ctx.lifecycle.on_timer("expire", self._expire)

    @classmethod
    def check(cls, spec: RuleSpec, subject: str) -> None:
        if spec.trap_oid is None:
            raise FieldError("trap_oid", "a trap rule needs 'trap_oid'")
        if spec.resolve_oid is None and spec.resolve_after is None:
            raise FieldError("resolve_after", "a trap rule needs 'resolve_oid', "
                                              "'resolve_after' or both")

    def load(self, rules: list[Rule]) -> None:
        super().load(rules)
        self._raising: dict[str, list[Rule]] = {}
        self._resolving: dict[str, list[Rule]] = {}
        for rule in rules:
            assert rule.spec.trap_oid is not None
            self._raising.setdefault(rule.spec.trap_oid, []).append(rule)
            if rule.spec.resolve_oid:
                self._resolving.setdefault(rule.spec.resolve_oid, []).append(rule)

    def on_trap(self, event: TrapEvent) -> None:
        lifecycle = self.ctx.lifecycle
        for rule in self._raising.get(event.trap_oid, ()):
            found = self._identity(rule, event)
            if found is None:
                continue
            identity, key = found
            tracker = lifecycle.tracker(rule, key, identity)
            tracker.last_ts = min(tracker.last_ts, event.ts)  # every trap counts
            lifecycle.set(rule, tracker, True, None, event.ts, event.device)
            if rule.resolve_after is not None:
                seen = self._seen.get(tracker.fp)
                self._seen[tracker.fp] = (max(event.ts, seen[0] if seen else event.ts),
                                          tracker)
                lifecycle.schedule(event.ts + rule.resolve_after, "expire", tracker.fp)
        for rule in self._resolving.get(event.trap_oid, ()):
            found = self._identity(rule, event, resolving=True)
            if found is None:
                continue
            identity, key = found
            tracker = lifecycle.tracker(rule, key, identity)
            if tracker.active:
                lifecycle.set(rule, tracker, False, None, max(event.ts, tracker.last_ts), None)

    def _identity(self, rule: Rule, event: TrapEvent, resolving: bool = False
                  ) -> tuple[Identity, tuple[Any, ...]] | None:
        if not self.ctx.device_matches(rule, event.device):
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

    def _expire(self, alert: Alert, rule: Rule, now: float) -> None:
        if rule.resolve_after is None:
            return
        seen = self._seen.get(alert.fingerprint)
        last = seen[0] if seen else alert.active_since
        if last + rule.resolve_after <= now:
            if seen is not None:
                seen[1].active = False
                del self._seen[alert.fingerprint]
            self.ctx.lifecycle.resolve(alert, now, "no clearing trap within resolve_after")

    def restore(self, now: float) -> None:
        for alert in self.ctx.lifecycle.alerts.values():
            rule = self.ctx.lifecycle.by_name.get(alert.rule)
            if alert.state == "firing" and rule is not None and rule.resolve_after:
                self.ctx.lifecycle.schedule(now + rule.resolve_after, "expire",
                                            alert.fingerprint)
