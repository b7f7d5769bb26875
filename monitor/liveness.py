"""Who is alive: decided by the last will or by silence over a bound, never by clocks.

A component (engine or collector) publishes its retained status when it connects and
again every ``interval`` seconds; the broker publishes its last will (``offline``) when
the connection breaks. Statuses are taken in the order the engine hears them, stamped
with the engine's own clock: a will is built before the ``online`` that follows it, so
ordering by the sender's ``ts`` would drop the will. A component unheard for
``MISSES`` intervals is offline, which covers what a will cannot: a bridge that is
gone, a broker killed together with its clients.

A location is unreachable when its engine is not online and nothing at all (no event,
no status) has come from it for ``LOCATION_SILENCE`` seconds; it is reported as the
pseudo-component ``location`` so the same state rules raise and resolve it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import msgspec

from monitor.events import ComponentStatus

__all__ = ["DEFAULT_INTERVAL", "LOCATION_SILENCE", "MISSES", "ComponentKey", "Liveness"]

ComponentKey = tuple[str, str, str]  # location, component, instance

MISSES: Final = 3  # heartbeats missed before silence counts as offline
DEFAULT_INTERVAL: Final = 30.0  # for statuses that do not say their interval
LOCATION_SILENCE: Final = 15.0  # three of an engine's 5 s heartbeats


@dataclass(slots=True)
class _Heard:
    status: ComponentStatus  # as applied: stamped with the time it was heard
    heard: float  # when last heard, on the engine's clock
    interval: float


class Liveness:
    """The engine's view of every component's liveness, and of each other location."""

    def __init__(self, own_location: str, locations: Iterable[str]) -> None:
        self.own_location = own_location
        self.others = sorted(set(locations) - {own_location})
        self.components: dict[ComponentKey, _Heard] = {}
        self.location_heard: dict[str, float] = {}
        self.location_up: dict[str, bool] = {}
        self.listening_since: float | None = None
        self._last_stamp = 0.0

    def stamp(self, now: float) -> float:
        """``now``, made strictly increasing: two statuses heard in one batch keep their
        order for everything that orders by time (state, rules)."""
        self._last_stamp = max(now, self._last_stamp + 1e-6)
        return self._last_stamp

    def listening(self, now: float | None) -> None:
        """Subscribed since ``now`` (None: not connected). Silence counts only while we
        listen, and from when we started to: a broker we cannot reach is not a sign
        that everyone behind it is dead."""
        self.listening_since = now

    def heard_from(self, location: str, now: float) -> None:
        """Anything at all came from ``location``."""
        self.location_heard[location] = now

    def heard(self, key: ComponentKey, status: ComponentStatus, now: float,
              retained: bool) -> ComponentStatus:
        """Take a status as heard now; return it stamped for state and rules.

        A retained status was published some time ago: it counts as heard at its own
        ``ts`` if that is earlier, so a stale ``online`` of a component that died
        while no will could reach us goes offline after its bound, not after a new one.
        """
        at = min(now, status.ts) if retained else now
        stamped = msgspec.structs.replace(status, ts=self.stamp(now))
        interval = status.interval if status.interval else DEFAULT_INTERVAL
        self.components[key] = _Heard(stamped, at, interval)
        if status.status == "online":  # a will is the broker speaking, not the location
            self.heard_from(key[0], at)
        return stamped

    def bound(self, key: ComponentKey) -> float | None:
        entry = self.components.get(key)
        return None if entry is None else MISSES * entry.interval

    def sweep(self, now: float) -> list[tuple[ComponentKey, ComponentStatus]]:
        """Statuses that silence has changed since the last sweep: components unheard
        over their bound (offline), and other locations gone or back."""
        if self.listening_since is None:
            return []
        since = self.listening_since
        changed: list[tuple[ComponentKey, ComponentStatus]] = []
        for key, entry in self.components.items():
            if entry.status.status != "online":
                continue
            if now - max(entry.heard, since) > MISSES * entry.interval:
                entry.status = msgspec.structs.replace(entry.status, status="offline",
                                                       ts=self.stamp(now))
                changed.append((key, entry.status))
        for location in self.others:
            up = self._reachable(location, now, since)
            if self.location_up.get(location) != up and (up or now - since > LOCATION_SILENCE):
                self.location_up[location] = up
                changed.append(((location, "location", location), ComponentStatus(
                    status="online" if up else "offline", ts=self.stamp(now),
                    component="location", instance=location, interval=LOCATION_SILENCE)))
        return changed

    def _reachable(self, location: str, now: float, since: float) -> bool:
        engines = [e for (loc, comp, _), e in self.components.items()
                   if loc == location and comp == "engine"]
        if any(e.status.status == "online" for e in engines):
            return True
        last = self.location_heard.get(location)
        return last is not None and now - max(last, since) <= LOCATION_SILENCE
