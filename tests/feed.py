"""Events into a broker the way a collector sends them: the real publisher and outbox,
returning once the broker has acknowledged every one."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from collectors.common.outbox import Outbox
from collectors.common.publisher import Publisher
from monitor.config import Config

__all__ = ["publish"]

Event = tuple[str, str, str, float, dict[str, Any]]  # municipality, device, stream, ts, body


async def publish(config: Config, outbox: Path, instance: str, events: Iterable[Event], *,
                  location: str = "alta", within: float = 120.0) -> None:
    box = await Outbox.open(outbox)
    publisher = Publisher(broker=config.broker_for(location), location=location,
                          component="test", instance=instance, outbox=box, ack_timeout=2.0)
    task = asyncio.create_task(publisher.run())
    try:
        # Emitted a chunk at a time, as a busy collector does: the outbox commits each
        # chunk in one transaction, in the order of the calls.
        pending = list(events)
        for start in range(0, len(pending), 500):
            await asyncio.gather(*(publisher.emit(m, device, stream, ts, **body)
                                   for m, device, stream, ts, body in pending[start:start + 500]))
        async with asyncio.timeout(within):
            await box.drained()
    finally:
        publisher.stop()
        await asyncio.wait_for(task, 10)
        await box.close()
