"""A poll's samples split over events the engine accepts: the collector's budget and
the engine's limits (monitor.events) agree, for any poll, up to a 2,000-port chassis."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.common.publisher import split_samples
from monitor.events import MAX_PAYLOAD_BYTES, MAX_SAMPLES, Sample, decode_event

_ENCODER = msgspec.json.Encoder()


def _as_sent(samples: list[Sample]) -> bytes:
    """The payload as the publisher builds it, with the largest src, seq and floor."""
    return _ENCODER.encode({"v": 1, "ts": 1.8e9, "src": "s" * 128, "device": "d" * 63,
                            "samples": samples, "interval": 60.0, "seq": 2**63 - 1,
                            "floor": 2**63 - 1})


def chassis(ports: int) -> list[Sample]:
    """What the IF-MIB module yields for ``ports`` interfaces with long aliases."""
    out = []
    for i in range(1, ports + 1):
        labels = {"ifindex": str(i), "ifname": f"TenGigabitEthernet{i // 48}/0/{i % 48}",
                  "ifalias": f"uplink to building {i} — ærfugl øst, rack {i % 40:02d} " * 2}
        for name in ("if_in_octets", "if_out_octets", "if_in_errors", "if_out_errors",
                     "if_in_discards", "if_out_discards", "if_oper_status",
                     "if_admin_status", "if_speed_bps"):
            out.append(Sample(name=name, value=float(i) * 1e9, labels=labels,
                              kind="counter64" if "octets" in name else "gauge"))
    return out


def _check(samples: list[Sample]) -> int:
    parts = split_samples(samples)
    assert [s for part in parts for s in part] == samples  # all of them, in order
    for part in parts:
        payload = _as_sent(part)
        assert len(payload) <= MAX_PAYLOAD_BYTES
        assert len(part) <= MAX_SAMPLES
        decode_event("metrics", payload)  # the engine accepts it
    return len(parts)


def test_a_2000_port_chassis_arrives_in_parts_the_engine_accepts() -> None:
    samples = chassis(2000)
    size = len(_ENCODER.encode(samples))
    assert size > 4 * MAX_PAYLOAD_BYTES  # a whole poll is far over the limit
    parts = _check(samples)
    assert size // MAX_PAYLOAD_BYTES < parts <= 2 * (size // MAX_PAYLOAD_BYTES + 1)


def test_a_small_poll_stays_one_event() -> None:
    assert _check(chassis(24)) == 1


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=0, max_value=25_000), st.integers(min_value=0, max_value=300))
def test_any_poll_splits_into_accepted_events(count: int, alias: int) -> None:
    """Many tiny samples (the sample count binds) or fewer large ones (bytes bind)."""
    samples = [Sample(name="x", value=float(i), labels={"a": "é" * alias} if alias else {})
               for i in range(count)]
    _check(samples)
