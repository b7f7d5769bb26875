"""Counter64 values beyond a float's 53 bits, exact from the device to the engine.

tests/data/snmprec/counter64-big.snmprec is written from IF-MIB with ifHCInOctets and
ifHCOutOctets at 2**53 + 1, 2**64 - 1 and other values a float cannot hold (as a
float, 9007199254740993 is 9007199254740992). Served by snmpsim, polled by the real
poller, carried in a metrics event as the wire has it and decoded as the engine
decodes it: every value equal to the recording's digits."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.events import MetricsEvent, decode_event, encode
from tests.snmp_poll import own_recordings, poll_recording

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def snmpsim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    yield from own_recordings(tmp_path_factory)


async def test_counter64_beyond_53_bits_arrives_exact(
        snmpsim: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    samples = await poll_recording(snmpsim, "counter64-big", "switch", tmp_path,
                                   monkeypatch)
    wire = encode(MetricsEvent(v=1, ts=time.time(), src="snmp-alta", seq=1, device="dev",
                               samples=samples))
    event = decode_event("metrics", wire)
    assert isinstance(event, MetricsEvent)
    got = {(s.name, s.labels["ifname"]): s.value for s in event.samples
           if s.name in ("if_in_octets", "if_out_octets")}
    assert {("if_in_octets", "Hu1/0/1"): 9007199254740993,
            ("if_in_octets", "Hu1/0/2"): 18446744073709551615,
            ("if_out_octets", "Hu1/0/1"): 12345678901234567891,
            ("if_out_octets", "Hu1/0/2"): 9007199254740992} == got
    assert all(type(v) is int for v in got.values())
    assert b"18446744073709551615" in wire
