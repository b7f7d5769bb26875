"""Alerts from other systems, as Alertmanager takes them (``POST /api/v2/alerts``):
Prometheus, or any Alertmanager client, sends its firing alerts again and again with
an ``endsAt`` ahead, and once with ``endsAt`` passed when they resolve.

Such an alert joins driftsvakt's lifecycle as it is: it fires at once (its sender
had its own ``for:``), is muted by silences, maintenance, topology and inhibitions,
routed, escalated and acknowledged like any other, and resolves when its sender says
so or when its ``endsAt`` passes without a renewal (a sender that went away). Its
fingerprint is its label set, as in Alertmanager; a ``device`` label naming a device
of the estate brings the device's site, municipality and location with it (so a
municipality's viewer sees it, and maintenance of the site covers it).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Final

import msgspec

from monitor.rules.alerts import Alert, fingerprint
from monitor.rules.lifecycle import Lifecycle

__all__ = ["MAX_ALERTS", "PostableAlert", "take"]

MAX_ALERTS: Final = 1000  # in one post
# what an alert without an ``endsAt`` is taken to last (Alertmanager's resolve_timeout)
RESOLVE_TIMEOUT: Final = 300.0
_LABEL: Final = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_SEVERITIES: Final = {"critical": "critical", "page": "critical", "major": "major",
                      "error": "major", "high": "major", "warning": "warning",
                      "warn": "warning", "medium": "warning", "info": "info",
                      "low": "info", "none": "info"}
# labels that come from the estate, never from the sender
_CONTEXT: Final = frozenset({"class", "site", "municipality", "location"})
_PREFIX: Final = "external\x00"


class PostableAlert(msgspec.Struct, forbid_unknown_fields=False, rename="camel"):
    """Alertmanager API v2's postableAlert."""

    labels: Annotated[dict[str, Annotated[str, msgspec.Meta(max_length=1024)]],
                      msgspec.Meta(min_length=1, max_length=64)]
    annotations: Annotated[dict[str, Annotated[str, msgspec.Meta(max_length=4096)]],
                           msgspec.Meta(max_length=64)] = {}
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    generator_url: str = ""

    def problem(self) -> str | None:
        if not self.labels.get("alertname"):
            return "labels.alertname is required"
        bad = next((k for k in self.labels if not _LABEL.match(k)), None)
        if bad is not None:
            return f"label name {bad!r} is not a Prometheus label name"
        for when in (self.starts_at, self.ends_at):
            if when is not None and when.tzinfo is None:
                return "startsAt and endsAt need a time zone (RFC 3339)"
        return None


def take(lifecycle: Lifecycle, posted: PostableAlert, now: float) -> Alert | None:
    """Apply one posted alert; returns the alert it fired or renewed, None when it
    resolved one (or resolved nothing that was firing)."""
    labels = {k: v for k, v in posted.labels.items() if k not in _CONTEXT}
    name = labels["alertname"]
    fp = fingerprint(_PREFIX + name, tuple(sorted(labels.items())))
    starts = posted.starts_at.timestamp() if posted.starts_at is not None else now
    ends = posted.ends_at.timestamp() if posted.ends_at is not None else now + RESOLVE_TIMEOUT
    alert = lifecycle.alerts.get(fp)
    if ends <= now:
        if alert is not None and alert.state == "firing":
            lifecycle.resolve(alert, max(min(ends, now), alert.active_since), "resolved by "
                              "its sender")
        return None
    if alert is not None and alert.state == "firing":
        alert.expires_at = ends
        alert.annotations = dict(posted.annotations)
        lifecycle.changed.add(fp)  # the new expiry is written with the next commit
        return alert
    info = lifecycle.inventory.devices.get(labels.get("device", ""))
    if info is not None:
        labels.update(info.context())
    severity = _SEVERITIES.get(labels.get("severity", "").lower(), "warning")
    labels["severity"] = severity
    alert = Alert(fp, name, severity, labels, "firing", min(starts, now), fired_at=now,
                  annotations=dict(posted.annotations), external=True, expires_at=ends)
    lifecycle.alerts[fp] = alert
    lifecycle.dropped.discard(fp)
    lifecycle.muting.count_source(alert, 1)
    alert.suppressed = lifecycle.muting.reason(alert, now)
    lifecycle.note(alert, now, "firing", alert.suppressed)
    return alert
