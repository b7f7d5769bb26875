"""A 2,000-interface chassis arrives whole, its interface aliases in Latin-1, UTF-8 or
binary as the stated rule shows them: a generated recording (system group, ifTable
and ifXTable for 2,000 ports) served over real SNMP by snmpsim, polled by the real
poller, published through the real publisher and outbox to mosquitto, and applied by
a real engine, whose /metrics then holds every port's counters, none rejected."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
import yaml

from collectors.common.outbox import Outbox
from collectors.common.publisher import Publisher
from collectors.snmp.modules import load_modules
from collectors.snmp.poller import SnmpPoller
from monitor.app import start_engine
from monitor.config import load_config
from tests.servers import Mosquitto, free_port, snmpsim

pytestmark = pytest.mark.integration

PORTS = 2000
# ifAlias of three ports as devices hold them: Latin-1, UTF-8, binary; and what the
# stated rule (collectors/snmp/text.py) makes of each
ALIASES = {7: b"Alta r\xe5dhus", 8: b"Alta r\xc3\xa5dhus", 9: b"\x01\x02\xfe\xff"}
SHOWN = {7: "Alta rådhus", 8: "Alta rådhus", 9: "0x0102feff"}
COMMUNITY = "chassis"


def recording(path: Path) -> None:
    """snmpsim's .snmprec: OID|tag|value, in OID order (snmpsim walks the file)."""
    rows: list[tuple[tuple[int, ...], str, str]] = [
        ((1, 3, 6, 1, 2, 1, 1, 1, 0), "4", "Generated 2000-port chassis"),
        ((1, 3, 6, 1, 2, 1, 1, 2, 0), "6", "1.3.6.1.4.1.9.1.1208"),
        ((1, 3, 6, 1, 2, 1, 1, 3, 0), "67", "123456789"),
        ((1, 3, 6, 1, 2, 1, 1, 5, 0), "4", "chassis"),
    ]
    Column = dict[int, tuple[str, Callable[[int], str]]]
    if_table: Column = {2: ("4", lambda i: f"Te{i // 48}/0/{i % 48}"), 7: ("2", lambda i: "1"),
                8: ("2", lambda i: "1"), 10: ("65", lambda i: str(i)),
                13: ("65", lambda i: "0"), 14: ("65", lambda i: str(i % 7)),
                16: ("65", lambda i: str(2 * i)), 19: ("65", lambda i: "0"),
                20: ("65", lambda i: "0")}
    if_x: Column = {1: ("4", lambda i: f"Te{i // 48}/0/{i % 48}"),
            6: ("70", lambda i: str(10**12 + i)), 10: ("70", lambda i: str(2 * 10**12 + i)),
            15: ("66", lambda i: "10000"), 18: ("4", lambda i: f"port {i} to rack {i % 40}")}
    for column, (tag, value) in if_table.items():
        for i in range(1, PORTS + 1):
            rows.append(((1, 3, 6, 1, 2, 1, 2, 2, 1, column, i), tag, value(i)))
    for column, (tag, value) in if_x.items():
        for i in range(1, PORTS + 1):
            if column == 18 and i in ALIASES:
                continue
            rows.append(((1, 3, 6, 1, 2, 1, 31, 1, 1, 1, column, i), tag, value(i)))
    for i, raw in ALIASES.items():  # as hex: the bytes exactly as the device holds them
        rows.append(((1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 18, i), "4x", raw.hex()))
    rows.sort()
    path.write_text("".join(f"{'.'.join(map(str, oid))}|{tag}|{value}\n"
                            for oid, tag, value in rows), encoding="utf-8")


@pytest.fixture
def chassis_agent(tmp_path: Path) -> Iterator[int]:
    """snmpsim serving the generated recording; yields its UDP port."""
    data = tmp_path / "snmprec"
    data.mkdir()
    recording(data / f"{COMMUNITY}.snmprec")
    with snmpsim(data, tmp_path / "cache", COMMUNITY) as port:
        yield port


async def test_a_2000_port_chassis_arrives_whole(tmp_path: Path, chassis_agent: int,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    port = chassis_agent
    monkeypatch.setenv("DV_CHASSIS_COMMUNITY", COMMUNITY)
    with Mosquitto(tmp_path / "broker") as broker:
        estate = tmp_path / "estate.yaml"
        estate.write_text(yaml.safe_dump({
            "locations": [{"id": "alta", "name": "Alta"}],
            "municipalities": [{"id": "alta", "name": "Alta"}],
            "sites": [{"id": "dc", "name": "DC", "location": "alta",
                       "municipality": "alta"}],
            "snmp_profiles": [{"id": "sim", "version": "2c", "port": port,
                               "timeout": 10, "retries": 1,
                               "community": {"env": "DV_CHASSIS_COMMUNITY"}}],
            "devices": [{"id": "chassis", "name": "Chassis", "class": "switch",
                         "site": "dc", "address": "127.0.0.1", "snmp_profile": "sim"}],
            "brokers": [{"location": "alta", "host": "127.0.0.1", "port": broker.port}],
            "engine": {"http_host": "127.0.0.1", "http_port": free_port(),
                       "store": str(tmp_path / "engine-{location}.db")},
            "outbox": {"directory": str(tmp_path / "outbox"), "ack_timeout": 5.0},
        }), encoding="utf-8")
        config = load_config(estate)
        app = await start_engine(config, "alta")
        outbox = await Outbox.open(tmp_path / "outbox.db")
        publisher = Publisher(broker=config.broker_for("alta"), location="alta",
                              component="snmp", instance="snmp-alta", outbox=outbox)
        runner = asyncio.create_task(publisher.run())
        poller = SnmpPoller(config, "alta", publisher, load_modules())
        try:
            assert await poller.poll_and_publish(config.devices["chassis"]) == "up"
            # the state, then the poll in parts (each within the engine's limit:
            # tests/unit/test_split_samples.py), none of them rejected below
            assert publisher.stats.emitted > 5
            async with asyncio.timeout(60):
                await outbox.drained()
            async with aiohttp.ClientSession() as session, session.get(
                    app.url + "/metrics") as resp:
                text = await resp.text()
            octets = [line for line in text.splitlines()
                      if line.startswith("driftsvakt_if_in_octets_total{")
                      and 'device="chassis"' in line]
            assert len(octets) == PORTS
            # port 1999's 64-bit counter, exactly as recorded: 10^12 + 1999
            assert any('ifindex="1999"' in line and line.endswith(" 1000000001999")
                       for line in octets), [o for o in octets if 'ifindex="1999"' in o]
            for i, shown in SHOWN.items():
                assert any(f'ifalias="{shown}",ifindex="{i}"' in line for line in octets), i
            rejected = [line for line in text.splitlines()
                        if line.startswith("driftsvakt_events_rejected_total{")
                        and not line.endswith(" 0.0")]
            assert rejected == []
        finally:
            poller.close()
            publisher.stop()
            await asyncio.wait_for(runner, 10)
            await outbox.close()
            await app.stop()
