"""A fake SNMP agent on loopback that misbehaves on purpose: the poller stays up, each bad
poll ends with a typed error, and the next good poll succeeds.

The fake is a UDP socket that decodes our real v2c requests with pysnmp's message API
and answers as told: well, with garbage, truncated, with a wrong request id, twice,
too late, with OIDs that do not increase in a walk, or with bytes hypothesis makes.
A real agent cannot be made to do these things on demand; this one speaks real SNMP.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyasn1.codec.ber import decoder, encoder
from pysnmp.proto import api
from pysnmp.proto.rfc1902 import Counter64, Integer32, OctetString, TimeTicks

from collectors.common.publisher import Emitter
from collectors.snmp.modules import load_modules
from collectors.snmp.poller import SnmpPoller
from monitor.config import Config, load_config
from tests.servers import free_udp_port

pytestmark = pytest.mark.integration

V2C = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]
ROWS = 3
COLUMNS = {oid for m in load_modules().values() for t in m.tables
           for oid in [*(c.oid for c in t.columns), *(o for cs in t.labels.values() for o in cs)]}


def _split(oid: str) -> tuple[str, int]:
    """(column root, index) of a column or of one of its instances."""
    if oid in COLUMNS:
        return oid, 0
    root, _, index = oid.rpartition(".")
    return root, int(index)


class FakeAgent(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.mode = "good"
        self.fuzz = b""
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        assert self.transport is not None
        if self.mode == "garbage":
            self.transport.sendto(os.urandom(60), addr)
            return
        if self.mode == "fuzz":
            self.transport.sendto(self.fuzz, addr)
            return
        request, _ = decoder.decode(data, asn1Spec=V2C.Message())
        response = self._answer(request)
        wire = encoder.encode(response)
        if self.mode == "truncated":
            self.transport.sendto(wire[: len(wire) // 2], addr)
        elif self.mode == "duplicate":
            self.transport.sendto(wire, addr)
            self.transport.sendto(wire, addr)
        elif self.mode == "late":
            asyncio.get_running_loop().call_later(1.5, self.transport.sendto, wire, addr)
        else:
            self.transport.sendto(wire, addr)

    def _answer(self, request: Any) -> Any:
        pdu = V2C.apiMessage.get_pdu(request)
        response = V2C.apiMessage.get_response(request)
        rsp_pdu = V2C.apiMessage.get_pdu(response)
        if self.mode == "wrong_id":
            V2C.apiPDU.set_request_id(rsp_pdu, int(V2C.apiPDU.get_request_id(pdu)) + 7)
        asked = [str(oid) for oid, _ in V2C.apiPDU.get_varbinds(pdu)]
        if pdu.tagSet == V2C.GetBulkRequestPDU.tagSet:
            binds = self._bulk(asked)
        else:
            binds = [(oid, TimeTicks(12345) if oid.endswith(".1.3.0") else
                      OctetString(b"fake-agent")) for oid in asked]
        V2C.apiPDU.set_varbinds(rsp_pdu, binds)
        return response

    def _bulk(self, columns: list[str]) -> list[tuple[str, Any]]:
        binds: list[tuple[str, Any]] = []
        for rep in range(ROWS + 1):
            for column in columns:
                if self.mode == "nonincreasing":
                    binds.append((column, Integer32(1)))
                    continue
                root, start = _split(column)
                index = start + rep + 1
                if index > ROWS:
                    binds.append(("1.3.6.1.9.9.9", Integer32(0)))  # past the column
                else:
                    binds.append((f"{root}.{index}", Counter64(1000 * index)))
        return binds


@pytest.fixture
async def fake(tmp_path: Path) -> Any:
    port = free_udp_port()
    agent = FakeAgent()
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: agent, local_addr=("127.0.0.1", port))
    os.environ["DV_FAKE_COMMUNITY"] = "fake"
    path = tmp_path / "estate.yaml"
    path.write_text(yaml.safe_dump({
        "locations": [{"id": "alta", "name": "Alta"}],
        "municipalities": [{"id": "alta", "name": "Alta"}],
        "sites": [{"id": "dc", "name": "DC", "location": "alta", "municipality": "alta"}],
        "snmp_profiles": [{"id": "v2c", "version": "2c", "port": port, "timeout": 0.4,
                           "retries": 0, "community": {"env": "DV_FAKE_COMMUNITY"}}],
        "devices": [{"id": "sw1", "name": "Switch", "class": "switch", "site": "dc",
                     "address": "127.0.0.1", "snmp_profile": "v2c"}],
    }), encoding="utf-8")
    try:
        yield agent, load_config(path)
    finally:
        transport.close()


class Discard(Emitter):
    async def emit(self, *args: Any, **kwargs: Any) -> int:
        return 0


@pytest.mark.parametrize(("mode", "error"), [
    ("garbage", "timeout"),
    ("truncated", "timeout"),
    ("wrong_id", "timeout"),
    ("late", "timeout"),
    ("nonincreasing", "protocol"),
])
async def test_bad_response_is_a_typed_error_and_the_next_poll_succeeds(
        fake: tuple[FakeAgent, Config], mode: str, error: str) -> None:
    """Each misbehaviour ends that poll with its typed error; then a good poll works."""
    agent, config = fake
    poller = SnmpPoller(config, "alta", Discard(), load_modules())
    device = config.devices["sw1"]
    agent.mode = mode
    await poller.poll_and_publish(device)
    assert {error: 1} == dict(poller.stats.errors)
    agent.mode = "good"
    await asyncio.sleep(1.2 if mode == "late" else 0)  # let the late answer land first
    assert "up" == await poller.poll_and_publish(device)


async def test_duplicate_responses_are_harmless(fake: tuple[FakeAgent, Config]) -> None:
    agent, config = fake
    poller = SnmpPoller(config, "alta", Discard(), load_modules())
    agent.mode = "duplicate"
    samples = await poller.poll(config.devices["sw1"])
    assert 3 * ROWS <= len(samples)
    assert "up" == await poller.poll_and_publish(config.devices["sw1"])


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.binary(min_size=0, max_size=300))
async def test_fuzzed_responses_only_typed_errors(fake: tuple[FakeAgent, Config],
                                                  payload: bytes) -> None:
    """Whatever bytes come back, a poll ends in a value or a typed CollectError."""
    agent, config = fake
    poller = SnmpPoller(config, "alta", Discard(), load_modules())
    agent.mode, agent.fuzz = "fuzz", payload
    state = await poller.poll_and_publish(config.devices["sw1"])
    assert state in ("up", "down", "error")
