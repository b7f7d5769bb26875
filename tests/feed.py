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
        for municipality, device, stream, ts, body in events:
            await publisher.emit(municipality, device, stream, ts, **body)
        async with asyncio.timeout(within):
            await box.drained()
    finally:
        publisher.stop()
        await asyncio.wait_for(task, 10)
        await box.close()
