"""An engine acknowledges again when a source resends what it has already applied.

The source resends only because it has not seen the acknowledgement: lost with a
broker, or dropped by a bridge. Were the duplicates only dropped, the source would go
on resending the same window until it next emitted something new — for a quiet
source, a long time with its outbox held. Real mosquitto, real engine.
"""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import aiomqtt
import pytest

from monitor.app import EngineApp
from monitor.config import Config
from monitor.events import ack_topic
from tests.integration.test_sla import engine  # noqa: F401 - the fixture
from tests.servers import Mosquitto

pytestmark = pytest.mark.integration

SRC = "acks-test"


async def _next_ack(client: aiomqtt.Client, within: float) -> int:
    async with asyncio.timeout(within):
        async for message in client.messages:
            if isinstance(message.payload, bytes) and message.payload:
                return int(json.loads(message.payload)["seq"])
    raise AssertionError("subscription ended")


async def _ready(url: str) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(200):
            async with http.get(f"{url}/readyz") as resp:
                if resp.status == 200:
                    return
            await asyncio.sleep(0.05)
    raise AssertionError("engine not ready after 10 s")


async def test_a_duplicate_is_acknowledged_again(
        engine: tuple[EngineApp, Config, Mosquitto]) -> None:  # noqa: F811
    app, _, broker = engine
    await _ready(app.url)  # subscribed: what is published before is not kept for it
    topic = "driftsvakt/v1/alta/loppa/loppa-sw1/state"
    event = json.dumps({"v": 1, "ts": time.time(), "src": SRC, "seq": 1, "floor": 1,
                        "device": "loppa-sw1", "state": "up"})
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="acks-test",
                              protocol=aiomqtt.ProtocolVersion.V5) as client:
        await client.subscribe(ack_topic("alta", SRC), qos=1)
        await client.publish(topic, event, qos=1)
        assert 1 == await _next_ack(client, 10)
        # the acknowledgement is lost: the retained copy goes, the source never saw it
        await client.publish(ack_topic("alta", SRC), b"", qos=1, retain=True)
        await client.publish(topic, event, qos=1)  # so it sends the event again
        assert 1 == await _next_ack(client, 10)
