"""Publisher -> real mosquitto -> engine, in one process: exactly once, visible in /metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from collectors.common.outbox import Outbox
from collectors.common.publisher import Publisher
from monitor.app import start_engine
from monitor.config import load_config
from monitor.events import Sample
from tests.estate import DEVICES, write_estate
from tests.servers import Mosquitto

pytestmark = pytest.mark.integration


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    with Mosquitto(tmp_path / "broker") as mosq:
        yield mosq


async def _metric(url: str, name: str) -> float:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as resp:
        text = await resp.text()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def _until(predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"condition not met within {timeout} s")


async def test_ten_thousand_events_applied_exactly_once(tmp_path: Path, broker: Mosquitto
                                                         ) -> None:
    """10,000 events from one publisher are each applied once and show in /metrics."""
    config = load_config(write_estate(tmp_path, broker.port))
    engine = await start_engine(config, "alta", http_port=0)
    outbox = await Outbox.open(tmp_path / "outbox.db")
    publisher = Publisher(broker=config.broker_for("alta"), location="alta",
                          component="snmp", instance="snmp-alta-1", outbox=outbox)
    runner = asyncio.create_task(publisher.run())
    try:
        for start in range(0, 10_000, 500):
            await asyncio.gather(*(
                publisher.emit("loppa", DEVICES[k % 10], "metrics", time.time(),
                               samples=[Sample(name="produced_seq", value=float(k))])
                for k in range(start + 1, start + 501)))

        async def all_acked() -> bool:
            return outbox.rows == 0

        await _until(all_acked, 60)
        assert 10_000 == await _metric(engine.url, "driftsvakt_events_applied_total")
        assert 10_000 == await _metric(engine.url, "driftsvakt_samples_applied_total")
        assert 0 == await _metric(engine.url, "driftsvakt_events_rejected_total")
        assert 10 == await _metric(engine.url, "driftsvakt_device_up")
        assert {"snmp-alta-1": (10_000, 10_000)} == await engine.store.source_counts()
        assert 10_000 == publisher.stats.acknowledged
    finally:
        publisher.stop()
        await asyncio.wait_for(runner, 10)
        await outbox.close()
        await engine.stop()
