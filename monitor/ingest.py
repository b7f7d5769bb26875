"""From a batch of MQTT messages to state changes, store rows and acknowledgements.

No I/O here: :meth:`Ingest.process` takes (topic, payload) pairs and the time, and
returns what the caller must write in one transaction (:class:`BatchEffects`), after
which it acknowledges ``effects.progress``. A payload that fails to decode is
dead-lettered, counted, logged at most once per source and reason per minute, and —
when its ``src`` and ``seq`` can still be read — counted as processed, so that its
collector does not resend it forever.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Protocol

import msgspec
import structlog

from monitor.events import (
    DeviceTopic,
    Event,
    MetricsEvent,
    Rejected,
    decode_event,
    parse_device_topic,
)
from monitor.sequencing import Verdict, admit
from monitor.state import DeviceStatus, State
from monitor.store.db import DeadLetter, DeviceRow

__all__ = ["BatchEffects", "Bounds", "EventObserver", "Ingest", "IngestCounters", "LogLimiter",
           "Observers"]

log = structlog.get_logger(__name__)


class IngestCounters(Protocol):
    """Where ingest reports what it did; the engine backs it with Prometheus metrics."""

    def applied(self, stream: str, samples: int, lag: float) -> None: ...
    def rejected(self, reason: str) -> None: ...
    def duplicate(self) -> None: ...
    def gap(self) -> None: ...
    def skipped(self, count: int) -> None: ...


class EventObserver(Protocol):
    """Told of each applied event, after the state has it (the rules)."""

    def on_event(self, topic: DeviceTopic, event: Event, state: State) -> None: ...


class Observers:
    """Several observers as one, told in order (the rules, then the SLA ledger)."""

    def __init__(self, *observers: EventObserver) -> None:
        self.observers = observers

    def on_event(self, topic: DeviceTopic, event: Event, state: State) -> None:
        for observer in self.observers:
            observer.on_event(topic, event, state)


class LogLimiter:
    """Allow one log line per key per ``period`` seconds."""

    def __init__(self, period: float = 60.0, max_keys: int = 10_000) -> None:
        self.period = period
        self.max_keys = max_keys
        self._last: dict[tuple[str, ...], float] = {}

    def allow(self, key: tuple[str, ...], now: float) -> bool:
        last = self._last.get(key)
        if last is not None and now - last < self.period:
            return False
        if len(self._last) >= self.max_keys:
            self._last.clear()  # a flood of distinct keys: forget, rather than grow
        self._last[key] = now
        return True


class _Envelope(msgspec.Struct):
    """Just enough of a rejected payload to account for it."""

    src: str | None = None
    seq: int | None = None


_ENVELOPE: Final = msgspec.json.Decoder(_Envelope)


def _envelope(payload: bytes) -> _Envelope:
    try:
        env = _ENVELOPE.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError, RecursionError):
        return _Envelope()
    if not isinstance(env.src, str) or not (0 < len(env.src) <= 128):
        return _Envelope()
    if not isinstance(env.seq, int) or isinstance(env.seq, bool) or not 1 <= env.seq < 2**63:
        return _Envelope(env.src, None)
    return env


# Rejections by the bounds: what they reject is not taken as the source's progress.
_UNTRUSTED: Final = frozenset({"future", "late", "seq_jump"})


@dataclass(frozen=True, slots=True)
class Bounds:
    """What no event may claim, whoever sent it (config: engine.max_*)."""

    max_clock_skew: float = 300.0
    max_event_age: float = 8 * 24 * 3600.0  # an outbox keeps 7 days, plus a day
    max_seq_jump: int = 1_000_000_000
    bind_src: bool = True  # an event counts only on its source's own topic

    def check_source(self, where: DeviceTopic, event: Event) -> None:
        """The broker lets only a source's identity publish on its topic: the payload
        may not speak for another."""
        if where.src is None:
            if self.bind_src:
                raise Rejected("unbound_src", "the topic names no source (…/{stream}/{src}); "
                                              "engine.bind_src takes events only on their "
                                              "source's own topic")
        elif event.src != where.src:
            raise Rejected("src_mismatch",
                           f"payload src {event.src!r} != topic src {where.src!r}")

    def speaks_for(self, topic: str, src: str) -> bool:
        """Whether ``topic`` is one that only ``src`` may publish on."""
        try:
            named = parse_device_topic(topic).src
        except Rejected:
            return False
        return named == src if named is not None else not self.bind_src

    def check(self, event: Event, applied: int | None, now: float) -> None:
        if event.ts > now + self.max_clock_skew:
            raise Rejected("future", f"event time {event.ts:.0f} is {event.ts - now:.0f} s "
                                     f"ahead of the engine's clock (at most "
                                     f"{self.max_clock_skew:.0f} s)")
        if event.ts < now - self.max_event_age:
            raise Rejected("late", f"event time {event.ts:.0f} is {now - event.ts:.0f} s "
                                   f"old (at most {self.max_event_age:.0f} s)")
        if applied is not None and event.seq - applied > self.max_seq_jump:
            raise Rejected("seq_jump", f"seq {event.seq} is {event.seq - applied} ahead of "
                                       f"{event.src}'s progress {applied} (at most "
                                       f"{self.max_seq_jump})")


@dataclass(slots=True)
class BatchEffects:
    progress: dict[str, int] = field(default_factory=dict)
    devices: dict[str, DeviceRow] = field(default_factory=dict)
    dead: list[DeadLetter] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # events applied, per source
    skipped: dict[str, int] = field(default_factory=dict)  # seqs given up on, per source
    # Sources that sent again what was already applied: they have not seen our
    # acknowledgement (lost on the way, or a bridge dropped it), so it is owed again.
    resent_by: set[str] = field(default_factory=set)
    # Sources whose events came past a gap, with what is applied of them: they learn
    # that we lack the gap only from an acknowledgement that does not move (an engine
    # that missed a new source's first events has never acknowledged it at all).
    behind: dict[str, int] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.progress or self.devices or self.dead)


class Ingest:
    """Decode, sequence and apply batches of events to :class:`State`."""

    def __init__(self, state: State, progress: dict[str, int], counters: IngestCounters,
                 limiter: LogLimiter | None = None,
                 observer: EventObserver | None = None, bounds: Bounds | None = None,
                 gate: Callable[[DeviceTopic, Event], None] | None = None) -> None:
        self.state = state
        self.gate = gate  # raises Rejected for what the estate refuses (registrations)
        self.bounds = bounds or Bounds()
        self.observer = observer
        self.progress = progress  # src -> highest seq applied; persisted by the caller
        self.counters = counters
        self.limiter = limiter or LogLimiter()
        self._unlogged_skips: dict[str, int] = {}

    def process(self, messages: list[tuple[str, bytes]], now: float) -> BatchEffects:
        effects = BatchEffects()
        for topic, payload in messages:
            try:
                where = parse_device_topic(topic)
                event = decode_event(where.stream, payload)
                if event.device != where.device:
                    raise Rejected("topic_mismatch",
                                   f"payload device {event.device!r} != topic {where.device!r}")
                self.bounds.check_source(where, event)
                self.bounds.check(event, self.progress.get(event.src), now)
                if self.gate is not None:
                    self.gate(where, event)
            except Rejected as exc:
                self._reject(effects, topic, payload, exc, now)
                continue
            self._admit(effects, where, event, now)
        return effects

    def _admit(self, effects: BatchEffects, where: DeviceTopic, event: Event,
               now: float) -> None:
        decision = admit(self.progress.get(event.src), event.seq, event.floor)
        if decision.skipped:
            self._skipped(effects, event.src, decision.skipped, now)
        if decision.verdict is Verdict.DUPLICATE:
            self.counters.duplicate()
            effects.resent_by.add(event.src)
            if decision.skipped:
                self._advance(effects, event.src, decision.base)
            return
        if decision.verdict is Verdict.GAP:
            self.counters.gap()
            if decision.skipped:
                self._advance(effects, event.src, decision.base)
            effects.behind[event.src] = self.progress.get(event.src, decision.base)
            return
        status = self.state.apply(where, event)
        if self.observer is not None:
            self.observer.on_event(where, event, self.state)
        self._advance(effects, event.src, event.seq)
        effects.counts[event.src] = effects.counts.get(event.src, 0) + 1
        effects.devices[event.device] = _row(event.device, status)
        samples = len(event.samples) if isinstance(event, MetricsEvent) else 0
        self.counters.applied(where.stream, samples, now - event.ts)

    def _skipped(self, effects: BatchEffects, src: str, count: int, now: float) -> None:
        """Counted, stored with the batch, and logged with every seq since the last line
        (the log is rate-limited, the count never is)."""
        self.counters.skipped(count)
        effects.skipped[src] = effects.skipped.get(src, 0) + count
        unlogged = self._unlogged_skips[src] = self._unlogged_skips.get(src, 0) + count
        if self.limiter.allow((src, "skipped"), now):
            del self._unlogged_skips[src]
            log.warning("events_skipped", src=src, count=unlogged,
                        why="dropped from the source's outbox or acknowledged elsewhere")

    def _advance(self, effects: BatchEffects, src: str, applied: int) -> None:
        self.progress[src] = applied
        effects.progress[src] = applied

    def _reject(self, effects: BatchEffects, topic: str, payload: bytes, exc: Rejected,
                now: float) -> None:
        env = _envelope(payload)
        self.counters.rejected(exc.reason)
        effects.dead.append(DeadLetter(now, topic[:512], env.src, exc.reason,
                                       exc.detail[:1000], payload[:65536]))
        if self.limiter.allow((env.src or "?", exc.reason), now):
            log.warning("event_rejected", src=env.src, topic=topic[:200], reason=exc.reason,
                        detail=exc.detail[:300])
        if (env.src is not None and env.seq is not None and exc.reason not in _UNTRUSTED
                and self.bounds.speaks_for(topic, env.src)):
            # Counts as processed, so the collector stops resending it: but only in
            # order, as any other event, so that nothing before it is skipped, and only
            # on the source's own topic. An event outside the bounds, or one that names
            # a source whose topic it did not come on, never does: it would let anyone
            # who can publish use up a real source's next seq (that source's real event
            # would then be a duplicate); a real source with a wrong clock stalls
            # instead, loudly.
            decision = admit(self.progress.get(env.src), env.seq, None)
            if decision.verdict is Verdict.APPLY:
                self._advance(effects, env.src, env.seq)


def _row(device: str, status: DeviceStatus) -> DeviceRow:
    return DeviceRow(device, status.last_seen, status.state, status.state_since, status.reason)
