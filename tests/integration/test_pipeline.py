"""Publisher -> real mosquitto -> engine, in one process: exactly once, visible in /metrics."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from collectors.common.outbox import Outbox
from collectors.common.publisher import Publisher
from monitor.app import start_engine
from monitor.config import load_config
from monitor.events import Sample
from monitor.fields import Broker
from monitor.mqtt import client_for
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


async def _until(predicate: Callable[[], Awaitable[bool]], within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"condition not met within {within} s")


async def _ready(url: str) -> None:
    async def ready() -> bool:
        async with aiohttp.ClientSession() as session, session.get(f"{url}/readyz") as resp:
            return resp.status == 200

    await _until(ready, 10)


async def test_ten_thousand_events_applied_exactly_once(tmp_path: Path, broker: Mosquitto
                                                         ) -> None:
    """10,000 events from one publisher are each applied once and show in /metrics."""
    config = load_config(write_estate(tmp_path, broker.port))
    engine = await start_engine(config, "alta", http_port=0)
    await _ready(engine.url)
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
        assert 2 == await _metric(engine.url, "driftsvakt_component_up")  # engine, snmp
        assert 0 == await _metric(engine.url, "driftsvakt_outbox_dropped_total")
        assert {"snmp-alta-1": (10_000, 10_000)} == await engine.store.source_counts()
        assert 10_000 == publisher.stats.acknowledged
    finally:
        publisher.stop()
        await asyncio.wait_for(runner, 10)
        await outbox.close()
        await engine.stop()


async def test_refused_publish_is_kept_counted_and_retried(tmp_path: Path) -> None:
    """A publish the ACL denies is seen by its v5 reason code (0x87) and stays queued."""
    acl = (
        "topic readwrite driftsvakt/v1/_sys/#\n"
        "topic read driftsvakt/v1/_ack/#\n"
        "topic write driftsvakt/v1/alta/loppa/loppa-sw1/#\n"
    )
    with Mosquitto(tmp_path / "broker", acl=acl) as broker:
        config = load_config(write_estate(tmp_path, broker.port))
        outbox = await Outbox.open(tmp_path / "outbox.db")
        publisher = Publisher(broker=config.broker_for("alta"), location="alta",
                              component="snmp", instance="snmp-alta-1", outbox=outbox)
        runner = asyncio.create_task(publisher.run())
        try:
            await publisher.emit("loppa", "loppa-sw1", "heartbeat", time.time(), interval=30.0)
            seq = await publisher.emit("loppa", "loppa-sw2", "heartbeat", time.time(),
                                       interval=30.0)

            async def refused() -> bool:
                return publisher.stats.refused.get(0x87, 0) >= 1

            await _until(refused, 10)
            assert 1 == publisher.stats.published  # the permitted one
            assert seq == publisher.next_send      # the refused one is next, again
            assert 2 == outbox.rows                # nothing acknowledged, nothing lost
        finally:
            publisher.stop()
            await asyncio.wait_for(runner, 10)
            await outbox.close()


async def test_bad_payloads_are_dead_lettered_and_acknowledged(tmp_path: Path,
                                                               broker: Mosquitto) -> None:
    """Malformed payloads are counted by reason, kept with their reason, and do not
    stop the engine; one whose src and seq can be read counts as processed."""
    import aiomqtt

    from monitor.events import ack_topic, decode_ack

    config = load_config(write_estate(tmp_path, broker.port))
    engine = await start_engine(config, "alta", http_port=0)
    await _ready(engine.url)
    try:
        topic = "driftsvakt/v1/alta/loppa/loppa-sw1/state/rogue-1"
        bad = [
            (topic, b"{not json"),
            (topic, b'{"v":1,"ts":1,"src":"rogue-1","seq":1,"device":"loppa-sw1",'
                    b'"state":"sleepy"}'),
            (topic, b'{"v":9,"src":"rogue-1","seq":2}'),
            ("driftsvakt/v1/alta/loppa/loppa-sw1/logs", b"{}"),
            (topic, b'{"v":1,"ts":1,"src":"rogue-1","seq":3,"device":"loppa-sw2",'
                    b'"state":"up"}'),
        ]
        async with aiomqtt.Client("127.0.0.1", broker.port,
                                  protocol=aiomqtt.ProtocolVersion.V5) as client:
            await client.subscribe(ack_topic("alta", "rogue-1"), qos=1)
            for bad_topic, payload in bad:
                await client.publish(bad_topic, payload, qos=1)
            good = (b'{"v":1,"ts":%f,"src":"rogue-1","seq":4,"device":"loppa-sw1",'
                    b'"state":"up"}' % time.time())
            await client.publish(topic, good, qos=1)
            async with asyncio.timeout(10):
                async for message in client.messages:
                    assert isinstance(message.payload, bytes)
                    if decode_ack(message.payload).seq == 4:
                        break

        async def all_counted() -> bool:
            return 5 == await _metric(engine.url, "driftsvakt_events_rejected_total")

        await _until(all_counted, 10)
        dead = await engine.store.dead_letters()
        assert ["bad_topic", "invalid", "malformed_json", "topic_mismatch",
                "unsupported_version"] == sorted(d.reason for d in dead)
        assert 1 == await _metric(engine.url, "driftsvakt_events_applied_total")
        assert 1 == await _metric(engine.url, "driftsvakt_device_up")
    finally:
        await engine.stop()


async def test_mqtt_connections_send_small_messages_at_once(broker: Mosquitto) -> None:
    """Every MQTT connection (collectors' and engines': one client_for) has Nagle off,
    so a lone trap or ack is not held for the peer's delayed ACK."""
    client = client_for(Broker(location="alta", port=broker.port), identifier="nodelay")
    async with client:
        sock = client._client.socket()
        assert isinstance(sock, socket.socket)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
