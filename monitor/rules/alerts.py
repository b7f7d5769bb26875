"""An alert and its lifecycle: pending → firing → resolved, acknowledged, suppressed.

The fingerprint is the rule plus the identifying labels (device and series labels,
check, component, trap identity): the same problem on the same thing is one alert,
whatever the engine's restarts and reloads. ``state`` is the lifecycle; whether an
alert is acknowledged or suppressed is kept beside it, and :meth:`Alert.shown_state`
folds them into the one word the console and the metrics use.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Alert", "AlertState", "Transition", "fingerprint"]

AlertState = Literal["pending", "firing", "resolved"]


def fingerprint(rule: str, identity: tuple[tuple[str, str], ...]) -> str:
    text = rule + "\x00" + "\x00".join(f"{k}\x01{v}" for k, v in sorted(identity))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


@dataclass(slots=True)
class Alert:
    fingerprint: str
    rule: str
    severity: str
    labels: dict[str, str]
    state: AlertState
    active_since: float
    value: float | None = None
    fired_at: float | None = None
    resolved_at: float | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    ack_by: str | None = None
    ack_at: float | None = None
    ack_comment: str | None = None
    suppressed: str | None = None  # topology, maintenance:<id>, silence:<id>, inhibited
    flapping: bool = False
    behind: int = 0  # devices reachable only through this alert's device
    # an alert another system sent (monitor.rules.external): it fires while its sender
    # keeps renewing it and resolves when told to or when this time passes
    external: bool = False
    expires_at: float | None = None
    # why it resolved, when not because what it is about recovered: "retired" (its
    # device left the estate), "moved" (to another site, municipality or location:
    # the alert's labels, and so who sees and is told of it, were the old ones'),
    # "rule removed"
    ended_by: str | None = None

    @property
    def device(self) -> str | None:
        return self.labels.get("device")

    def shown_state(self) -> str:
        if self.state != "firing":
            return self.state
        if self.suppressed:
            return "suppressed"
        if self.ack_by:
            return "acknowledged"
        return "firing"

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.fingerprint, "alertname": self.rule, "severity": self.severity,
            "state": self.shown_state(), "lifecycle": self.state, "labels": self.labels,
            "annotations": self.annotations, "value": self.value,
            "active_since": self.active_since, "fired_at": self.fired_at,
            "resolved_at": self.resolved_at, "suppressed": self.suppressed,
            "flapping": self.flapping, "behind": self.behind, "external": self.external,
            "ended_by": self.ended_by,
            "acknowledged": None if self.ack_by is None else {
                "by": self.ack_by, "at": self.ack_at, "comment": self.ack_comment},
        }


@dataclass(frozen=True, slots=True)
class Transition:
    """One step of an alert's life, kept in the store's alert log."""

    fingerprint: str
    ts: float
    state: str  # pending, firing, resolved, dropped, acknowledged, suppressed, unsuppressed
    detail: str | None = None
