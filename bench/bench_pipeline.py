"""End to end: publisher with outbox -> real mosquitto -> engine process, with CPU per part.

    python -m bench.bench_pipeline [EVENTS]

For events of 1 and 50 samples: the publisher (this process) stores EVENTS events in
its SQLite outbox and sends them; a ``driftsvakt engine`` child process applies,
commits and acknowledges them. Printed per run: end-to-end events/s (first emit to
last acknowledgement), and CPU µs per event of the publisher, the engine and the
broker, read from /proc. Median of 3 runs each.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import cpu_seconds, machine
from collectors.common.outbox import Outbox
from collectors.common.publisher import Publisher
from monitor.config import load_config
from monitor.events import Sample
from tests.estate import DEVICES, write_estate
from tests.servers import Mosquitto, free_port, wait_port

ROOT = Path(__file__).resolve().parents[1]


async def one_run(events: int, samples: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        broker = Mosquitto(tmp / "broker").start()
        http_port = free_port()
        config_path = write_estate(tmp, broker.port, http_port)
        engine = subprocess.Popen(  # noqa: ASYNC220 - started once, before measuring
            [sys.executable, "-m", "monitor.cli", "--log-level", "warning", "engine",
             "--config", str(config_path), "--location", "alta", "--http-port",
             str(http_port)], cwd=ROOT, stderr=subprocess.DEVNULL)
        try:
            wait_port(http_port, 30)
            await asyncio.sleep(0.5)
            config = load_config(config_path)
            outbox = await Outbox.open(tmp / "outbox.db")
            publisher = Publisher(broker=config.broker_for("alta"), location="alta",
                                  component="bench", instance="bench-1", outbox=outbox)
            runner = asyncio.create_task(publisher.run())
            payload = [Sample(name="if_hc_in_octets", value=float(i),
                              labels={"ifname": f"Gi1/0/{i}"}, kind="counter64")
                       for i in range(samples)]
            assert broker.proc is not None
            cpu0 = (cpu_seconds(), cpu_seconds(engine.pid), cpu_seconds(broker.proc.pid))
            start = time.perf_counter()
            for first in range(0, events, 500):
                await asyncio.gather(*(
                    publisher.emit("loppa", DEVICES[k % len(DEVICES)], "metrics", time.time(),
                                   samples=payload)
                    for k in range(first, min(events, first + 500))))
            stored = time.perf_counter() - start
            await asyncio.wait_for(outbox.drained(), 60 * 10)
            elapsed = time.perf_counter() - start
            cpu1 = (cpu_seconds(), cpu_seconds(engine.pid), cpu_seconds(broker.proc.pid))
            publisher.stop()
            await asyncio.wait_for(runner, 10)
            await outbox.close()
        finally:
            engine.send_signal(signal.SIGTERM)
            engine.wait(15)
            broker.stop()
    pub, eng, brk = (b - a for a, b in zip(cpu0, cpu1, strict=True))
    return {"events_per_s": events / elapsed, "stored_per_s": events / stored,
            "publisher_us": pub / events * 1e6, "engine_us": eng / events * 1e6,
            "broker_us": brk / events * 1e6}


def main() -> None:
    logging.getLogger("driftsvakt.aiomqtt").setLevel(logging.ERROR)
    events = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    print(f"pipeline: publisher+outbox -> mosquitto -> engine, {events} events; {machine()}")
    for samples in (1, 50):
        runs = [asyncio.run(one_run(events, samples)) for _ in range(3)]
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"  {samples:>2} sample(s)/event: {med['events_per_s']:>8,.0f} events/s end to end"
              f" ({med['events_per_s'] * samples:>9,.0f} samples/s); outbox stores "
              f"{med['stored_per_s']:>8,.0f} events/s")
        print(f"      CPU per event: publisher {med['publisher_us']:6.1f} µs, engine "
              f"{med['engine_us']:6.1f} µs, broker {med['broker_us']:5.1f} µs")


if __name__ == "__main__":
    main()
