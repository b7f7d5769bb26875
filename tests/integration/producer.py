"""A collector process for the crash tests: emits events 1..N through the real publisher.

    python -m tests.integration.producer CONFIG LOCATION INSTANCE TOTAL OUTBOX RATE

Event k carries the sample ``produced_seq = k``. Restarted on the same outbox it
continues after the last event it stored, so killed and restarted it still produces
each event exactly once. It exits 0 when all N are stored and acknowledged.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from collectors.common.outbox import Outbox
from collectors.common.publisher import Publisher
from monitor.config import load_config
from monitor.events import Sample
from monitor.logging import configure_logging
from tests.estate import DEVICES


async def main(config_path: str, location: str, instance: str, total: int, outbox_path: str,
               rate: float) -> int:
    config = load_config(config_path)
    outbox = await Outbox.open(outbox_path)
    broker = config.broker_for(location)
    publisher = Publisher(broker=broker, location=location,
                          component="producer", instance=instance, outbox=outbox,
                          password=broker.password.resolve() if broker.password else None,
                          ack_timeout=config.outbox.ack_timeout,
                          wait_for=config.outbox.wait_for)
    runner = asyncio.create_task(publisher.run())
    batch = 100
    k = outbox.last_seq
    started = time.monotonic()
    while k < total:
        upto = min(total, k + batch)
        await asyncio.gather(*(
            publisher.emit("loppa", DEVICES[i % len(DEVICES)], "metrics", time.time(),
                           samples=[Sample(name="produced_seq", value=float(i))])
            for i in range(k + 1, upto + 1)))
        k = upto
        ahead = k / rate - (time.monotonic() - started)
        if ahead > 0:
            await asyncio.sleep(ahead)
    await outbox.drained()
    publisher.stop()
    await asyncio.wait_for(runner, 10)
    print(json.dumps({"emitted": publisher.stats.emitted, "resent": publisher.stats.resent,
                      "connects": publisher.stats.connects}), flush=True)
    await outbox.close()
    return 0


if __name__ == "__main__":
    configure_logging("info", json=True)
    args = sys.argv[1:]
    sys.exit(asyncio.run(main(args[0], args[1], args[2], int(args[3]), args[4],
                              float(args[5]))))
