"""Ingest without I/O: what is applied, dropped, held back, skipped and rejected."""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from monitor.ingest import Ingest, LogLimiter
from monitor.state import State

TOPIC = "driftsvakt/v1/alta/loppa/loppa-sw1/state/snmp-alta-1"
NOW = 1_790_000_000.0


@dataclass
class FakeCounters:
    """A hand-written IngestCounters that records what it is told."""

    applied_by_stream: Counter[str] = field(default_factory=Counter)
    samples: int = 0
    lags: list[float] = field(default_factory=list)
    rejected_by_reason: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    gaps: int = 0
    skipped_total: int = 0

    def applied(self, stream: str, samples: int, lag: float) -> None:
        self.applied_by_stream[stream] += 1
        self.samples += samples
        self.lags.append(lag)

    def rejected(self, reason: str) -> None:
        self.rejected_by_reason[reason] += 1

    def duplicate(self) -> None:
        self.duplicates += 1

    def gap(self) -> None:
        self.gaps += 1

    def skipped(self, count: int) -> None:
        self.skipped_total += count


def state_event(seq: int, state: str = "up", floor: int | None = None, ts: float = NOW - 2,
                device: str = "loppa-sw1") -> tuple[str, bytes]:
    body: dict[str, object] = {"v": 1, "ts": ts, "src": "snmp-alta-1", "seq": seq,
                               "device": device, "state": state}
    if floor is not None:
        body["floor"] = floor
    return TOPIC, json.dumps(body).encode()


def make() -> tuple[Ingest, FakeCounters]:
    counters = FakeCounters()
    return Ingest(State(), {}, counters), counters


def test_in_order_events_apply_and_advance_progress() -> None:
    """Three events in order: all applied, progress 3, lag measured from event time."""
    ingest, counters = make()
    effects = ingest.process([state_event(1), state_event(2, "down"), state_event(3)], NOW)
    assert {"snmp-alta-1": 3} == effects.progress
    assert {"snmp-alta-1": 3} == effects.counts
    assert {"state": 3} == dict(counters.applied_by_stream)
    assert [2.0, 2.0, 2.0] == counters.lags
    assert "up" == ingest.state.devices["loppa-sw1"].state


def test_duplicates_and_gaps_are_not_applied() -> None:
    """A redelivery is dropped; an event after a gap waits for the resend."""
    ingest, counters = make()
    ingest.process([state_event(1)], NOW)
    effects = ingest.process([state_event(1), state_event(3), state_event(2),
                              state_event(3)], NOW)
    assert (1, 1) == (counters.duplicates, counters.gaps)
    assert {"snmp-alta-1": 3} == effects.progress
    assert {"snmp-alta-1": 2} == effects.counts
    assert {"snmp-alta-1"} == effects.resent_by  # the source missed an acknowledgement
    assert set() == ingest.process([state_event(4)], NOW).resent_by


def test_floor_skips_what_the_source_no_longer_holds() -> None:
    """After 2, the source says it holds only from 6: 3..5 are given up and counted."""
    ingest, counters = make()
    ingest.process([state_event(1), state_event(2)], NOW)
    effects = ingest.process([state_event(6, floor=6)], NOW)
    assert {"snmp-alta-1": 6} == effects.progress
    assert 3 == counters.skipped_total


def test_late_state_never_overwrites_newer() -> None:
    """Event time decides: an older 'down' that arrives last does not win."""
    ingest, _ = make()
    ingest.process([state_event(1, "up", ts=NOW - 10), state_event(2, "down", ts=NOW - 60)],
                   NOW)
    status = ingest.state.devices["loppa-sw1"]
    assert ("up", NOW - 10, NOW - 10) == (status.state, status.state_since, status.last_seen)


def test_rejected_payload_counts_as_processed_only_in_order() -> None:
    """A bad payload with a readable src/seq advances progress if it is the next one,
    and only then; every rejection is dead-lettered with its reason."""
    ingest, counters = make()
    bad_next = (TOPIC, b'{"v":1,"ts":1,"src":"snmp-alta-1","seq":1,"device":"loppa-sw1"}')
    bad_ahead = (TOPIC, b'{"src":"snmp-alta-1","seq":5,"garbage":true}')
    mismatch = state_event(2, device="loppa-sw2")
    effects = ingest.process([bad_next, bad_ahead, mismatch, (TOPIC, b"\xff\xfe")], NOW)
    assert {"snmp-alta-1": 2} == effects.progress
    assert {"invalid": 2, "topic_mismatch": 1, "malformed_json": 1} == dict(
        counters.rejected_by_reason)
    assert [("snmp-alta-1", "invalid"), ("snmp-alta-1", "invalid"),
            ("snmp-alta-1", "topic_mismatch"), (None, "malformed_json")] == [
        (d.src, d.reason) for d in effects.dead]
    assert "loppa-sw2" not in ingest.state.devices


def test_only_the_sources_own_topic_speaks_for_it() -> None:
    """An event, good or bad, naming snmp-alta-1 on a PC agent's topic or on a topic
    that names no source is dead-lettered and uses up none of snmp-alta-1's seqs, so
    its real next event is applied; with engine.bind_src off, the five-level topic
    counts as before."""
    ingest, counters = make()
    foreign = "driftsvakt/v1/alta/loppa/loppa-sw1/state/pc-1"
    unbound = "driftsvakt/v1/alta/loppa/loppa-sw1/state"
    _, good = state_event(1, "down")
    bad = b'{"v":1,"ts":1,"src":"snmp-alta-1","seq":1,"device":"loppa-sw1"}'
    effects = ingest.process([(foreign, good), (unbound, good), (foreign, bad),
                              (unbound, bad)], NOW)
    assert ({}, "loppa-sw1" in ingest.state.devices) == (effects.progress, False)
    assert {"src_mismatch": 1, "unbound_src": 1, "invalid": 2} == dict(
        counters.rejected_by_reason)
    effects = ingest.process([state_event(1, "up")], NOW)
    assert ({"snmp-alta-1": 1}, "up") == (effects.progress,
                                          ingest.state.devices["loppa-sw1"].state)
    legacy, _ = make()
    legacy.bounds = replace(legacy.bounds, bind_src=False)
    effects = legacy.process([(unbound, bad), (unbound, state_event(2, "down")[1]),
                              (foreign, state_event(3)[1])], NOW)
    assert ({"snmp-alta-1": 2}, "down") == (effects.progress,
                                            legacy.state.devices["loppa-sw1"].state)


def test_log_limiter_allows_once_per_key_per_period() -> None:
    """One line per (source, reason) per minute; other keys are independent."""
    limiter = LogLimiter(period=60)
    assert [True, False, True, False, True] == [
        limiter.allow(("a", "invalid"), 0.0),
        limiter.allow(("a", "invalid"), 59.9),
        limiter.allow(("b", "invalid"), 59.9),
        limiter.allow(("a", "invalid"), 59.99),
        limiter.allow(("a", "invalid"), 60.0),
    ]


def test_skips_go_to_the_batch_and_the_log_names_every_one() -> None:
    """Skips are stored with the batch; the log is rate-limited, but its line carries
    every seq skipped since the last one (4 + 5 + 6), not only the first incident's."""
    counters = FakeCounters()
    ingest = Ingest(State(), {}, counters, limiter=LogLimiter(period=60.0))
    ingest.process([state_event(1)], NOW)
    with capture_logs() as logs:
        first = ingest.process([state_event(6, floor=6)], NOW)  # 2..5 skipped, logged
        second = ingest.process([state_event(12, floor=12)], NOW + 1)  # 7..11, held
        third = ingest.process([state_event(19, floor=19)], NOW + 61)  # 13..18: logs 11
    assert ({"snmp-alta-1": 4}, {"snmp-alta-1": 5}, {"snmp-alta-1": 6}) == (
        first.skipped, second.skipped, third.skipped)
    assert 15 == counters.skipped_total
    assert [4, 11] == [line["count"] for line in logs if line["event"] == "events_skipped"]


@st.composite
def _forgery(draw: st.DrawFn) -> tuple[str, int, int | None, float]:
    """An event with the real source's src that breaks one bound: a time too far
    ahead or too old (with any seq the real source sends, its next one included), or
    a seq too far ahead of anything the source has sent; or any event at all under its
    src on a topic that is not the source's own: another source's (a PC agent's
    credential publishes only there) or one that names no source."""
    kind = draw(st.sampled_from(["future", "late", "jump", "foreign", "unbound"]))
    if kind in ("foreign", "unbound"):
        return kind, draw(st.integers(1, 2**63 - 1)), draw(st.one_of(st.none(), st.just(1))), \
            NOW - 1
    if kind == "future":
        return kind, draw(st.integers(1, 200)), None, NOW + draw(st.floats(301, 1e12))
    if kind == "late":
        return kind, draw(st.integers(1, 200)), None, NOW - draw(st.floats(8 * 86400 + 1,
                                                                            NOW))
    seq = draw(st.integers(1_000_000_201, 2**63 - 1))
    return kind, seq, draw(st.one_of(st.none(), st.just(seq))), NOW


@settings(max_examples=200, deadline=None)
@given(st.lists(_forgery(), max_size=20), st.randoms(use_true_random=False),
       st.integers(1, 100))
def test_a_real_source_is_applied_in_order_exactly_once_whatever_else_arrives(
        forgeries: list[tuple[str, int, int | None, float]], rng: random.Random,
        total: int) -> None:
    """The real source's events 1..total, each delivered once or twice, interleaved
    with forgeries under its src: the state sees exactly 1..total, in order, and every
    forgery is rejected with its reason."""
    ingest, counters = make()
    applied: list[float] = []

    class Recorder:
        def on_event(self, topic: object, event: Any, state: State) -> None:
            applied.append(event.samples[0].value)

    ingest.observer = Recorder()
    stream = [_metrics_event(k) for k in range(1, total + 1)]
    stream += [_metrics_event(k) for k in rng.sample(range(1, total + 1), total // 3)]
    stream.sort(key=lambda item: item[0])  # duplicates right after their original
    messages = [message for _, message in stream]
    topics = {"foreign": "driftsvakt/v1/alta/loppa/loppa-sw1/metrics/pc-1",
              "unbound": "driftsvakt/v1/alta/loppa/loppa-sw1/metrics"}
    for kind, seq, floor, ts in sorted(forgeries, key=lambda f: f[0] in topics):
        _, (topic, payload) = _metrics_event(seq, floor, ts)
        if kind in topics:
            # anywhere, the source's first event included: the topic gives it away
            messages.insert(rng.randrange(0, len(messages) + 1), (topics[kind], payload))
        else:
            # on the source's own topic only its identity can publish: these are the
            # source itself gone wrong, after its first event (a src the engine has
            # never seen has no progress to be ahead of)
            messages.insert(rng.randrange(1, len(messages) + 1), (topic, payload))
    for message in messages:
        ingest.process([message], NOW)
    assert [float(k) for k in range(1, total + 1)] == applied
    reason = {"future": "future", "late": "late", "jump": "seq_jump",
              "foreign": "src_mismatch", "unbound": "unbound_src"}
    assert Counter(reason[kind] for kind, *_ in forgeries) == \
        +Counter(dict(counters.rejected_by_reason))


def _metrics_event(seq: int, floor: int | None = 1, ts: float = NOW - 1
                   ) -> tuple[int, tuple[str, bytes]]:
    body: dict[str, object] = {"v": 1, "ts": ts, "src": "snmp-alta-1", "seq": seq,
                               "device": "loppa-sw1",
                               "samples": [{"name": "produced", "value": float(seq)}]}
    if floor is not None:
        body["floor"] = floor
    return seq, ("driftsvakt/v1/alta/loppa/loppa-sw1/metrics/snmp-alta-1",
                 json.dumps(body).encode())
