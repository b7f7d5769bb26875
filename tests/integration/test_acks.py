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
from pathlib import Path

import aiomqtt
import pytest

from collectors.common.outbox import Outbox
from collectors.common.publisher import Publisher
from monitor.app import EngineApp
from monitor.config import Config
from monitor.events import ack_topic
from monitor.fields import Broker
from tests.integration.test_sla import engine  # noqa: F401 - the fixture
from tests.servers import Mosquitto, wait_ready

pytestmark = pytest.mark.integration

SRC = "acks-test"


async def _next_ack(client: aiomqtt.Client, within: float) -> int:
    async with asyncio.timeout(within):
        async for message in client.messages:
            if isinstance(message.payload, bytes) and message.payload:
                return int(json.loads(message.payload)["seq"])
    raise AssertionError("subscription ended")


async def test_a_duplicate_is_acknowledged_again(
        engine: tuple[EngineApp, Config, Mosquitto]) -> None:  # noqa: F811
    app, _, broker = engine
    await wait_ready(app.url)  # subscribed: what is published before is not kept for it
    topic = f"driftsvakt/v1/alta/loppa/loppa-sw1/state/{SRC}"
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


async def test_an_engine_behind_a_gap_says_where_it_is(
        engine: tuple[EngineApp, Config, Mosquitto]) -> None:  # noqa: F811
    """A new source whose first events the engine missed (it subscribed after them,
    or a bridge dropped them): the engine has never acknowledged it, so only an
    acknowledgement that does not move (seq 0) tells the source to resend."""
    app, _, broker = engine
    await wait_ready(app.url)
    topic = f"driftsvakt/v1/alta/loppa/loppa-sw1/state/{SRC}"

    def event(seq: int) -> str:
        return json.dumps({"v": 1, "ts": time.time(), "src": SRC, "seq": seq, "floor": 1,
                           "device": "loppa-sw1", "state": "up"})

    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="acks-test",
                              protocol=aiomqtt.ProtocolVersion.V5) as client:
        await client.subscribe(ack_topic("alta", SRC), qos=1)
        await client.publish(topic, event(3), qos=1)  # 1 and 2 never reached it
        assert 0 == await _next_ack(client, 10)
        for seq in (1, 2, 3):  # the source resends from there
            await client.publish(topic, event(seq), qos=1)
        acks = [await _next_ack(client, 10)]
        while acks[-1] < 3:
            acks.append(await _next_ack(client, 10))
        assert acks == sorted(acks)


async def test_a_source_resends_to_an_engine_whose_acknowledgement_does_not_move(
        tmp_path: Path) -> None:
    """The real publisher with both locations in wait_for; Alta's engine (a client of
    the test) takes everything, Hammerfest's missed events 1 and 2 and says seq 0 on
    seeing 3: the publisher sends 1 and 2 again (before, an engine that had never
    acknowledged was taken for away, and was never sent them again)."""
    broker = Mosquitto(tmp_path / "broker").start()
    outbox = await Outbox.open(tmp_path / "outbox.db")
    publisher = Publisher(broker=Broker(location="alta", port=broker.port), location="alta",
                          component="poller", instance=SRC, outbox=outbox,
                          wait_for=["alta", "hammerfest"], ack_timeout=0.5)
    seen: list[int] = []
    try:
        async with aiomqtt.Client("127.0.0.1", broker.port, identifier="engines",
                                  protocol=aiomqtt.ProtocolVersion.V5) as engines:
            await engines.subscribe("driftsvakt/v1/alta/#", qos=1)
            runner = asyncio.create_task(publisher.run())
            for _ in range(2):
                await publisher.state("loppa", "loppa-sw1", time.time(), "up")
            async with asyncio.timeout(20):
                async for message in engines.messages:
                    assert isinstance(message.payload, bytes)
                    seq = int(json.loads(message.payload)["seq"])
                    seen.append(seq)
                    await engines.publish(ack_topic("alta", SRC), json.dumps(
                        {"v": 1, "seq": max(seen), "ts": time.time()}), qos=1, retain=True)
                    if len(seen) == 2:  # hammerfest missed 1 and 2; 3 reaches it
                        await publisher.state("loppa", "loppa-sw1", time.time(), "up")
                    elif seq == 3 and seen.count(3) == 1:
                        await engines.publish(ack_topic("hammerfest", SRC), json.dumps(
                            {"v": 1, "seq": 0, "ts": time.time()}), qos=1, retain=True)
                    elif seq == 2 and seen.count(2) == 2:
                        break
        assert [1, 2, 3, 1, 2] == seen[:5]
        publisher.stop()
        await asyncio.wait_for(runner, 10)
    finally:
        await outbox.close()
        broker.stop()
