"""GETBULK as the simulated agents answer it: non-repeaters, repetitions, the cap on a
response and the end of the MIB (RFC 3416 §4.2.3), read back with the poller's reader."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st
from pyasn1.codec.ber import encoder

from collectors.snmp.wire import END_OF_MIB, decode_response, oid_text
from demo.simulated_snmp import V2C, SimulatedAgents
from monitor.config import Device

SWITCH = Device(id="sw1", name="sw1", device_class="switch", site="s")
UPS = Device(id="ups1", name="ups1", device_class="ups", site="s")


def _bulk(oids: list[str], non_repeaters: int, repetitions: int,
          community: str = "c") -> bytes:
    p = V2C
    pdu = p.GetBulkRequestPDU()
    p.apiBulkPDU.set_defaults(pdu)
    p.apiBulkPDU.set_request_id(pdu, 4242)
    p.apiBulkPDU.set_non_repeaters(pdu, non_repeaters)
    p.apiBulkPDU.set_max_repetitions(pdu, repetitions)
    p.apiBulkPDU.set_varbinds(pdu, [(tuple(int(a) for a in o.split(".")), p.Null(""))
                                    for o in oids])
    message = p.Message()
    p.apiMessage.set_defaults(message)
    p.apiMessage.set_community(message, community)
    p.apiMessage.set_pdu(message, pdu)
    return bytes(encoder.encode(message))


def _agents() -> SimulatedAgents:
    return SimulatedAgents([(SWITCH, "127.31.0.1"), (UPS, "127.31.0.2")], port=1,
                           community="c", seed=1, clock=lambda: 1_800_000_000.0)


def test_non_repeaters_then_rows_of_repeaters() -> None:
    agents = _agents()
    reply = agents.respond(agents.devices["sw1"], _bulk(
        ["1.3.6.1.2.1.1.2", "1.3.6.1.2.1.2.2.1.7", "1.3.6.1.2.1.2.2.1.8"], 1, 3))
    assert reply is not None
    response = decode_response(reply)
    assert 4242 == response.request_id
    assert ["1.3.6.1.2.1.1.2.0",
            "1.3.6.1.2.1.2.2.1.7.1", "1.3.6.1.2.1.2.2.1.8.1",
            "1.3.6.1.2.1.2.2.1.7.2", "1.3.6.1.2.1.2.2.1.8.2",
            "1.3.6.1.2.1.2.2.1.7.3", "1.3.6.1.2.1.2.2.1.8.3"] == [
        oid_text(o) for o, _ in response.varbinds]


def test_a_response_holds_at_most_250_varbinds_of_whole_rows() -> None:
    agents = _agents()
    reply = agents.respond(agents.devices["sw1"], _bulk(
        [f"1.3.6.1.2.1.2.2.1.{c}" for c in (2, 5, 7, 8, 10, 13, 14)], 0, 100))
    assert reply is not None
    assert 35 * 7 == len(decode_response(reply).varbinds)  # 36 rows would be 252


def test_the_end_of_the_mib_stops_the_repetitions() -> None:
    agents = _agents()
    reply = agents.respond(agents.devices["ups1"], _bulk(["1.3.6.1.2.1.33.1.4"], 0, 10))
    assert reply is not None
    values = [v for _, v in decode_response(reply).varbinds]
    assert [3, END_OF_MIB] == values  # upsOutputSource normal, then nothing more


def test_wrong_community_and_garbage_get_no_answer_and_are_counted() -> None:
    agents = _agents()
    sim = agents.devices["sw1"]
    assert agents.respond(sim, _bulk(["1.3.6.1.2.1.1"], 0, 1, community="x")) is None
    rng = random.Random(3)
    for size in (0, 1, 7, 40, 300):
        assert agents.respond(sim, rng.randbytes(size)) is None
    assert (1, 5) == (agents.stats.bad_community, agents.stats.malformed)
    assert agents.respond(sim, _bulk(["1.3.6.1.2.1.1"], 0, 1)) is not None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 199), st.binary(max_size=8))
def test_no_datagram_makes_an_agent_raise(noise: bytes, at: int, cut: bytes) -> None:
    """Random bytes, and a valid request with bytes spliced in: no answer or a reply."""
    agents = _agents()
    sim = agents.devices["sw1"]
    valid = _bulk(["1.3.6.1.2.1.2.2.1.8"], 0, 5)
    for data in (noise, valid[:at % len(valid)] + cut + valid[at % len(valid):]):
        reply = agents.respond(sim, data)
        assert reply is None or isinstance(reply, bytes)
