"""Two locations in network namespaces: takeover time, catch-up after a partition,
and what having every event at both engines costs per event.

    python -m bench.bench_ha [--runs 3] [--partition 60] [--rate 200]

Each run builds the bed of tests/netbed.py afresh (the shipped broker configs with
TLS, passwords, ACL and bridge; real engines, producers and a poller; needs root):

- **takeover**: Hammerfest's engine SIGKILLed, and a Hammerfest device reported down
  just after; from the kill to Alta's notification (group_wait 0, as in the tests).
  The bound is the takeover clock (15 s after the engine is seen offline).
- **catch-up**: both locations' producers send ``--rate`` events/s each while the
  link is cut for ``--partition`` seconds; from the heal until each engine has what
  the other location had at the heal, and the backlog that was.
- **cost per event**: only Hammerfest's producer sends, ``--rate`` events/s for 30 s;
  CPU µs per event of each broker and engine, read from /proc: Alta's broker and
  engine are what replication costs (Hammerfest's broker also feeds the bridge).

Median of ``--runs``, with the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.common import cpu_seconds, machine
from tests.integration.test_liveness import Sink
from tests.integration.test_partition import (
    HTTP_PORT,
    Poller,
    bed_sink,
    catch_up,
    estate,
    progress,
    start_engine,
    start_producer,
)
from tests.netbed import Bed, bed_available, two_locations
from tests.servers import wait_port


async def _until(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)


async def _with_bed(work: Callable[[Bed, Sink], Awaitable[dict[str, float]]]
                    ) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp, two_locations(Path(tmp) / "bed") as bed:
        async with bed_sink(bed) as sink:
            return await work(bed, sink)


async def _start(bed: Bed, sink: Sink) -> tuple[Path, Path, dict[str, Any]]:
    engine_conf, collector_conf = estate(bed)
    for loc in (bed.hammerfest, bed.alta):
        bed.start_broker(loc)
    engines = {loc.id: start_engine(loc, engine_conf, sink.port) for loc in bed.locations}
    for loc in bed.locations:
        await asyncio.to_thread(wait_port, HTTP_PORT, 60, loc.address)
    return engine_conf, collector_conf, engines


async def takeover(bed: Bed, sink: Sink) -> dict[str, float]:
    _, _, engines = await _start(bed, sink)
    poller = Poller(bed, bed.hammerfest)
    stop = asyncio.Event()
    polling = asyncio.create_task(poller.run(stop))
    await asyncio.sleep(20)  # both engines online and heard by each other
    os.kill(engines["hammerfest"].pid, signal.SIGKILL)
    killed = time.monotonic()
    poller.failing = True
    await _until(lambda: bool(sink.sent("alta", "DeviceDown", "hf-sw2")), 90)
    sent = sink.sent("alta", "DeviceDown", "hf-sw2")
    stop.set()
    polling.cancel()
    return {"takeover_s": (sent[0] - killed) if sent else float("nan")}


async def partition(bed: Bed, sink: Sink, seconds: float, rate: float) -> dict[str, float]:
    _, collector_conf, _ = await _start(bed, sink)
    stores = {loc.id: bed.workdir / "estate" / f"engine-{loc.id}.db" for loc in bed.locations}
    total = int(rate * (seconds + 15))
    producers = [start_producer(loc, collector_conf, total, rate) for loc in bed.locations]
    await asyncio.sleep(5)
    cut_progress = {loc: progress(s).get(f"producer-{loc}", (0, 0))[0]
                    for loc, s in stores.items()}
    bed.cut()
    await asyncio.sleep(seconds)
    bed.heal()
    healed = time.monotonic()
    at_heal = {loc: progress(s).get(f"producer-{loc}", (0, 0))[0] for loc, s in stores.items()}
    lag = await asyncio.wait_for(catch_up(stores, healed), 300)
    for proc in producers:
        await asyncio.to_thread(proc.wait, 300)
    backlog = sum(at_heal[loc] - cut_progress[loc] for loc in stores)
    return {"catch_up_alta_s": lag["alta"], "catch_up_hammerfest_s": lag["hammerfest"],
            "backlog_events": backlog}


async def cost(bed: Bed, sink: Sink, rate: float) -> dict[str, float]:
    _, collector_conf, engines = await _start(bed, sink)
    brokers = {loc.id: loc.procs[0] for loc in bed.locations}  # started first
    await asyncio.sleep(3)
    total = int(rate * 30)
    parts = {f"{what} {loc}": proc.pid for what, procs in (("broker", brokers),
                                                           ("engine", engines))
             for loc, proc in procs.items()}
    before = {name: cpu_seconds(pid) for name, pid in parts.items()}
    producer = start_producer(bed.hammerfest, collector_conf, total, rate)
    await asyncio.to_thread(producer.wait, 300)
    stores = {loc.id: bed.workdir / "estate" / f"engine-{loc.id}.db" for loc in bed.locations}
    await _until(lambda: progress(stores["alta"]).get("producer-hammerfest", (0, 0))[0]
                 >= total, 120)
    return {f"{name} µs/event": (cpu_seconds(pid) - before[name]) / total * 1e6
            for name, pid in parts.items()}


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--partition", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=200.0)
    args = parser.parse_args()
    why = bed_available()
    if why is not None:
        raise SystemExit(f"bench_ha: {why}")
    print(f"bench_ha on {machine()}; median of {args.runs} runs")
    for name, work in (
            ("takeover", lambda b, s: takeover(b, s)),
            (f"partition {args.partition:.0f} s at {args.rate:.0f} events/s per location",
             lambda b, s: partition(b, s, args.partition, args.rate)),
            (f"cost per event, Hammerfest producing {args.rate:.0f} events/s",
             lambda b, s: cost(b, s, args.rate))):
        runs = [asyncio.run(_with_bed(work)) for _ in range(args.runs)]
        print(f"{name}:")
        for key, value in _median(runs).items():
            each = ", ".join(f"{r[key]:.1f}" for r in runs)
            print(f"  {key:<28} {value:10.1f}   ({each})")


if __name__ == "__main__":
    main()
