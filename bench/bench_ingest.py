"""Engine decode + sequencing + apply throughput on one core, without I/O.

    python -m bench.bench_ingest

Feeds prebuilt MQTT (topic, payload) batches of 1,000 messages through
:class:`monitor.ingest.Ingest` — the engine's whole CPU path per event except the
MQTT client and the SQLite commit — for events of 1 and of 50 samples, and prints
events/s, samples/s and µs per event (median of 5 runs).
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry

from bench.common import machine, median_of, metrics_payload
from monitor.ingest import Ingest
from monitor.metrics import EngineMetrics
from monitor.state import State

EVENTS = 50_000
BATCH = 1_000
DEVICES = 500


def run(samples: int) -> float:
    topic = "driftsvakt/v1/alta/loppa/loppa-sw{}/metrics/bench-1"
    messages = [(topic.format(seq % DEVICES), metrics_payload(seq, samples,
                                                                f"loppa-sw{seq % DEVICES}"))
                for seq in range(1, EVENTS + 1)]
    ingest = Ingest(State(), {}, EngineMetrics(CollectorRegistry()))
    start = time.process_time()
    for i in range(0, EVENTS, BATCH):
        ingest.process(messages[i:i + BATCH], time.time())
    elapsed = time.process_time() - start
    assert ingest.progress["bench-1"] == EVENTS
    return elapsed


def main() -> None:
    print(f"ingest (decode + dedup + apply), {EVENTS} events in batches of {BATCH}; "
          f"{machine()}")
    for samples in (1, 50):
        seconds, _ = median_of(5, lambda s=samples: run(s))  # type: ignore[misc]
        print(f"  {samples:>2} sample(s)/event: {EVENTS / seconds:>10,.0f} events/s "
              f"{EVENTS * samples / seconds:>12,.0f} samples/s "
              f"{seconds / EVENTS * 1e6:8.2f} µs/event (CPU)")


if __name__ == "__main__":
    main()
