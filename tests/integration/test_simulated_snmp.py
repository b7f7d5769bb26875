"""The demo's simulated SNMP agents: a protocol-correct v2c agent for net-snmp's own
tools, polled by the real poller through mosquitto, with faults that say so in traps."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest
import yaml

from collectors.common.outbox import Outbox
from collectors.common.publisher import Publisher
from collectors.snmp.community import CommunitySession
from collectors.snmp.modules import load_modules
from collectors.snmp.poller import SnmpPoller
from collectors.traps.receiver import TrapReceiver
from demo.simulated_snmp import SimulatedAgents
from monitor.config import Config, load_config
from monitor.events import (
    Event,
    MetricsEvent,
    StateEvent,
    TrapEvent,
    decode_event,
    parse_device_topic,
)
from tests.servers import Mosquitto, free_udp_port

pytestmark = pytest.mark.integration

COMMUNITY = "dv-sim"
ADDRESSES = {"sw1": "127.31.9.1", "fw1": "127.31.9.2", "ups1": "127.31.9.3"}
CLASSES = {"sw1": "switch", "fw1": "firewall", "ups1": "ups"}


def _config(tmp: Path, broker_port: int, agent_port: int) -> Config:
    (tmp / "community").write_text(COMMUNITY + "\n", encoding="utf-8")
    estate = {
        "locations": [{"id": "alta", "name": "Alta"}],
        "municipalities": [{"id": "loppa", "name": "Loppa kommune"}],
        "sites": [{"id": "oksfjord", "name": "Øksfjord", "location": "alta",
                   "municipality": "loppa"}],
        "brokers": [{"location": "alta", "host": "127.0.0.1", "port": broker_port}],
        "outbox": {"directory": str(tmp / "outbox"), "ack_timeout": 2.0},
        "snmp_profiles": [
            {"id": "sim", "version": "2c", "port": agent_port, "timeout": 0.5, "retries": 0,
             "community": {"file": str(tmp / "community")}}],
        "devices": [{"id": d, "name": d, "class": CLASSES[d], "site": "oksfjord",
                     "address": a, "snmp_profile": "sim"} for d, a in ADDRESSES.items()],
    }
    path = tmp / "estate.yaml"
    path.write_text(yaml.safe_dump(estate, allow_unicode=True), encoding="utf-8")
    return load_config(path)


def _agents(config: Config, port: int, trap_port: int | None = None) -> SimulatedAgents:
    return SimulatedAgents([(config.devices[d], a) for d, a in ADDRESSES.items()], port=port,
                           community=COMMUNITY, seed=7,
                           trap_to=("127.0.0.1", trap_port) if trap_port else None)


def _walk(tool: str, target: str, oid: str) -> dict[str, str]:
    out = subprocess.run([tool, "-v2c", "-c", COMMUNITY, "-On", "-Oe", "-Oq", "-Ot", target,
                          oid], capture_output=True, text=True, check=True, timeout=30).stdout
    found = {}
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        found[key.lstrip(".")] = value.strip().strip('"')
    return found


async def test_net_snmp_tools_read_the_model(tmp_path: Path) -> None:
    """snmpbulkwalk (GETBULK), snmpwalk (GETNEXT) and snmpget read every OID the model
    serves, in order, with its names; a firewall has no ifXTable; a missing instance and
    a missing object are told apart."""
    port = free_udp_port()
    config = _config(tmp_path, 1883, port)
    agents = _agents(config, port)
    await agents.start()
    try:
        switch = f"{ADDRESSES['sw1']}:{port}"
        bulk = await asyncio.to_thread(_walk, "snmpbulkwalk", switch, "1.3.6.1.2.1")
        plain = await asyncio.to_thread(_walk, "snmpwalk", switch, "1.3.6.1.2.1.31")
        firewall = await asyncio.to_thread(_walk, "snmpbulkwalk",
                                           f"{ADDRESSES['fw1']}:{port}", "1.3.6.1.2.1")
        got = await asyncio.to_thread(subprocess.run, [
            "snmpget", "-v2c", "-c", COMMUNITY, "-On", switch, "1.3.6.1.2.1.1.5.0",
            "1.3.6.1.2.1.2.2.1.2.99", "1.3.6.1.2.1.1.9.0"], capture_output=True, text=True,
            check=True)
    finally:
        agents.close()
    oids, _ = agents.devices["sw1"].mib(agents.clock())
    served = [".".join(map(str, o)) for o in oids]
    assert served == list(bulk)  # every OID, in order, nothing more
    # system (7 with sysServices), ifNumber, ifTable, ipForwarding, ifXTable, and
    # BRIDGE-MIB's port count
    assert 7 + 1 + 24 * 12 + 1 + 24 * 5 + 1 == len(bulk)
    assert ("2", "2", "24") == (bulk["1.3.6.1.2.1.1.7.0"], bulk["1.3.6.1.2.1.4.1.0"],
                                bulk["1.3.6.1.2.1.17.1.2.0"])
    assert [f"Gi1/0/{n}" for n in range(1, 25)] == [
        v for k, v in plain.items() if k.startswith("1.3.6.1.2.1.31.1.1.1.1.")]
    assert "sw1" == bulk["1.3.6.1.2.1.1.5.0"]
    assert not [k for k in firewall if k.startswith("1.3.6.1.2.1.31.")]
    assert "GigabitEthernet1/0/4" == firewall["1.3.6.1.2.1.2.2.1.2.4"]
    lines = got.stdout.splitlines()
    assert 'STRING: "sw1"' in lines[0]
    assert "No Such Instance" in lines[1]
    assert "No Such Object" in lines[2]


async def _events(client: aiomqtt.Client) -> AsyncIterator[tuple[str, str, Event]]:
    async for message in client.messages:
        assert isinstance(message.payload, bytes)
        where = parse_device_topic(message.topic.value)
        yield where.device, where.stream, decode_event(where.stream, message.payload)


async def _next(events: AsyncIterator[tuple[str, str, Event]], device: str, stream: str,
                within: float = 5.0) -> Event:
    async with asyncio.timeout(within):
        async for got_device, got_stream, event in events:
            if (got_device, got_stream) == (device, stream):
                return event
    raise AssertionError("unreachable")


async def test_poller_reads_the_agents_and_faults_arrive_as_traps(tmp_path: Path) -> None:
    """Through the real poller, publisher, trap receiver and mosquitto: the switch's
    64-bit counters and names are the model's; the firewall falls back to the 32-bit
    counters and ifDescr; the UPS is on mains. An interface taken down sends linkDown
    (then linkUp) and polls as down; an outage is a state down and ends with coldStart
    and a fresh sysUpTime; a wrong community gets no answer, as from a real agent."""
    agent_port, trap_port = free_udp_port(), free_udp_port()
    with Mosquitto(tmp_path / "broker") as broker:
        config = _config(tmp_path, broker.port, agent_port)
        agents = _agents(config, agent_port, trap_port)
        await agents.start()
        outbox = await Outbox.open(tmp_path / "collector.db")
        publisher = Publisher(broker=config.broker_for("alta"), location="alta",
                              component="snmp", instance="snmp-alta", outbox=outbox)
        receiver = TrapReceiver(config, "alta", publisher, host="127.0.0.1", port=trap_port,
                                communities=(COMMUNITY,))
        receiver.start()
        poller = SnmpPoller(config, "alta", publisher, load_modules())
        sender = asyncio.create_task(publisher.run())
        devices = config.devices
        try:
            async with aiomqtt.Client("127.0.0.1", broker.port) as client:
                await client.subscribe("driftsvakt/v1/alta/#", qos=1)
                events = _events(client)
                assert "up" == await poller.poll_and_publish(devices["sw1"])
                first = await _next(events, "sw1", "metrics")
                assert isinstance(first, MetricsEvent)
                sw = agents.devices["sw1"]
                octets = {s.labels["ifname"]: (s.value, s.kind) for s in first.samples
                          if s.name == "if_in_octets"}
                assert {p.name: (float(int(p.octets[0])), "counter64")
                        for p in sw.ports} == octets
                assert {"uplink"} == {s.labels.get("ifalias") for s in first.samples
                                      if s.name == "if_in_octets"} - {None}

                assert "up" == await poller.poll_and_publish(devices["fw1"])
                fw = await _next(events, "fw1", "metrics")
                assert isinstance(fw, MetricsEvent)
                assert {(f"GigabitEthernet1/0/{n}", "counter32") for n in range(1, 5)} == {
                    (s.labels["ifname"], s.kind) for s in fw.samples
                    if s.name == "if_in_octets"}

                assert "up" == await poller.poll_and_publish(devices["ups1"])
                ups = await _next(events, "ups1", "metrics")
                assert isinstance(ups, MetricsEvent)
                assert 3.0 == next(s.value for s in ups.samples
                                   if s.name == "ups_output_source")

                agents.interface_down("sw1", 5, seconds=1.5)
                down = await _next(events, "sw1", "trap", within=1.0)
                assert isinstance(down, TrapEvent)
                assert ("linkDown", ADDRESSES["sw1"]) == (down.trap_name, down.agent_addr)
                assert {"ifIndex": "5", "ifOperStatus": "2", "ifName": "Gi1/0/5"}.items() <= {
                    v.name: v.value for v in down.varbinds}.items()
                await poller.poll_and_publish(devices["sw1"])
                polled = await _next(events, "sw1", "metrics")
                assert isinstance(polled, MetricsEvent)
                assert 2.0 == next(s.value for s in polled.samples
                                   if s.name == "if_oper_status"
                                   and s.labels["ifname"] == "Gi1/0/5")
                up = await _next(events, "sw1", "trap", within=3.0)
                assert isinstance(up, TrapEvent)
                assert "linkUp" == up.trap_name

                agents.outage("sw1", seconds=1.0)
                assert "down" == await poller.poll_and_publish(devices["sw1"])
                state = await _next(events, "sw1", "state")
                assert isinstance(state, StateEvent)
                assert "down" == state.state
                cold = await _next(events, "sw1", "trap", within=3.0)
                assert isinstance(cold, TrapEvent)
                assert "coldStart" == cold.trap_name
                assert "up" == await poller.poll_and_publish(devices["sw1"])
                after = await _next(events, "sw1", "metrics")
                assert isinstance(after, MetricsEvent)
                uptime = next(s.value for s in after.samples if s.name == "sys_uptime_seconds")
                assert 0 < uptime < 120  # it came back rebooted

                refused = agents.stats.bad_community
                poller.sessions["sw1"] = CommunitySession(
                    poller.requester, ADDRESSES["sw1"], config.snmp_profiles["sim"], "wrong")
                assert "down" == await poller.poll_and_publish(devices["sw1"])
                assert refused + 1 == agents.stats.bad_community
        finally:
            publisher.stop()
            await asyncio.wait_for(sender, 10)
            receiver.close()
            poller.close()
            agents.close()
            await outbox.close()
    assert 0 == agents.stats.malformed
