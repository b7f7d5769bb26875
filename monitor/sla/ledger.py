"""What the collectors observed of each SLA component, by event time, as runs.

A component is a device (``device:ID``) or a check (``check:ID``) that some service
depends on. Every event about it is an *observation* by one source (a collector
instance): up, down or unknown, standing for ``STALE_FACTOR`` times the source's
interval. Consecutive observations of one state with no gap longer than that fold
into one :class:`Run` — ``[start, last]`` plus how long the last one stands — so a
device polled every minute for a year without trouble is one row, not half a
million.

Per source, observations arrive in the source's own order (the engine applies
``(src, seq)`` in sequence), so runs only ever grow at the end; a source's replayed
outbox hours later is applied at its own time. Sources are combined only when
reports are computed (:mod:`monitor.sla.timeline`), which makes the result the
same whatever order the sources' events interleaved in: late, out-of-order across
sources, and duplicate events give the same ledger. A source whose clock stepped
back (an observation inside one of its own runs, of another state) is counted and
left out.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, Literal

from monitor.events import (
    CheckEvent,
    DeviceTopic,
    Event,
    HeartbeatEvent,
    MetricsEvent,
    StateEvent,
)
from monitor.rows import LateRow, RunRow
from monitor.state import State

__all__ = ["MAX_VALIDITY", "STALE_FACTOR", "Ledger", "Run", "RunRow", "observed_state"]

ObsState = Literal["up", "down", "unknown"]
STALE_FACTOR: Final = 3.0
DEFAULT_INTERVAL: Final = 60.0
HORIZON: Final = 8 * 86400.0  # runs kept in memory; an outbox drops after 7 days
MAX_VALIDITY: Final = 86400.0  # no observation stands for longer than a day

_STATE_EVENT: Final[dict[str, ObsState]] = {
    "up": "up", "online": "up",
    "down": "down", "unreachable": "down", "offline": "down", "stopping": "down",
    "auth_error": "unknown", "unknown": "unknown",
}


def observed_state(event: Event) -> ObsState | None:
    """The availability an event shows: a device that answers a poll or sends a
    heartbeat is up; a collector's verdict counts as it says; a check is up when it
    passed. ``unreachable`` (behind a failed parent) is down for the service's users,
    whatever the cause. Traps show nothing about availability here."""
    if isinstance(event, (MetricsEvent, HeartbeatEvent)):
        return "up"
    if isinstance(event, StateEvent):
        return _STATE_EVENT[event.state]
    if isinstance(event, CheckEvent):
        return "up" if event.ok else "down"
    return None


@dataclass(slots=True)
class Run:
    """Observations of one state from one source, from ``start`` to ``last``, the last
    standing for ``validity`` seconds (until the next run, if that starts sooner)."""

    start: float
    last: float
    state: str
    validity: float




@dataclass(slots=True)
class Ledger:
    """The runs of every tracked component, per source; ``changes()`` hands the runs
    touched since the last call to the store, in the batch's transaction."""

    # component -> how long one of its observations stands when the event says no
    # interval (3 x the device's or check's configured interval)
    tracked: dict[str, float]
    horizon: float = HORIZON
    runs: dict[tuple[str, str], list[Run]] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    # Event time before which the SLA months are closed (set by the SLA service):
    # what comes for them is kept aside as late, and changes no reported figure.
    closed_before: float = 0.0
    _dirty: dict[tuple[str, str, float], Run] = field(default_factory=dict)
    _late: list[LateRow] = field(default_factory=list)

    # -- from events -------------------------------------------------------------------

    def on_event(self, topic: DeviceTopic, event: Event, state: State) -> None:
        observed = observed_state(event)
        if observed is None:
            return
        if isinstance(event, CheckEvent):
            component = f"check:{event.check}"
        else:
            component = f"device:{event.device}"
        default = self.tracked.get(component)
        if default is None:
            return
        if event.ts < self.closed_before:
            self.counts["closed_month"] += 1
            self._late.append((component, event.src, event.ts, observed, time.time()))
            return
        interval = getattr(event, "interval", None)
        validity = min(STALE_FACTOR * interval if interval else default, MAX_VALIDITY)
        self.observe(component, event.src, event.ts, observed, validity)

    def observe(self, component: str, src: str, ts: float, state: str,
                validity: float) -> None:
        key = (component, src)
        runs = self.runs.get(key)
        if runs is None:
            runs = self.runs[key] = []
        if runs and ts < runs[-1].last:
            self._insert(component, src, runs, ts, state, validity)
            return
        last = runs[-1] if runs else None
        if last is not None and last.state == state and ts - last.last <= last.validity:
            if ts > last.last or validity != last.validity:
                last.last, last.validity = ts, validity
                self._touch(component, src, last)
            else:
                self.counts["duplicate"] += 1
            return
        if last is not None and last.start == last.last == ts:
            # the same instant, a later seq: the source changed its mind
            last.state, last.validity = state, validity
            self._touch(component, src, last)
            return
        run = Run(ts, ts, state, validity)
        runs.append(run)
        self._touch(component, src, run)
        self._prune(runs, ts)

    def _insert(self, component: str, src: str, runs: list[Run], ts: float, state: str,
                validity: float) -> None:
        if ts < runs[-1].last - self.horizon:
            self.counts["too_late"] += 1
            return
        i = bisect.bisect_right(runs, ts, key=lambda r: r.start)
        before = runs[i - 1] if i > 0 else None
        if before is not None and before.start <= ts <= before.last:
            self.counts["duplicate" if before.state == state else "clock_reversed"] += 1
            return
        run = Run(ts, ts, state, validity)
        runs.insert(i, run)
        self._touch(component, src, run)

    def _touch(self, component: str, src: str, run: Run) -> None:
        self._dirty[(component, src, run.start)] = run
        self.counts["applied"] += 1

    def _prune(self, runs: list[Run], now: float) -> None:
        if len(runs) > 64 and runs[0].last + runs[0].validity < now - self.horizon:
            keep = bisect.bisect_left(runs, now - self.horizon,
                                      key=lambda r: r.last + r.validity)
            del runs[:min(keep, len(runs) - 1)]

    # -- to and from the store ---------------------------------------------------------

    def late_changes(self) -> list[LateRow]:
        late, self._late = self._late, []
        return late

    def changes(self) -> list[RunRow]:
        rows = [(c, s, r.start, r.last, r.state, r.validity)
                for (c, s, _), r in self._dirty.items()]
        self._dirty.clear()
        return rows

    def load(self, rows: Iterable[RunRow]) -> None:
        """Take the recent runs back from the store (sorted by start per source)."""
        for component, src, start, last, state, validity in rows:
            self.runs.setdefault((component, src), []).append(Run(start, last, state,
                                                                   validity))
        for runs in self.runs.values():
            runs.sort(key=lambda r: r.start)
