"""The wire contract: round trips, rejections, and that only Rejected ever escapes."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.events import (
    MAX_PAYLOAD_BYTES,
    CheckEvent,
    Event,
    HeartbeatEvent,
    MetricsEvent,
    Rejected,
    Sample,
    StateEvent,
    TrapEvent,
    Varbind,
    ack_topic,
    decode_event,
    device_topic,
    encode,
    parse_device_topic,
)

COMMON: dict[str, Any] = {
    "v": 1, "ts": 1_790_000_000.25, "src": "snmp-alta-1", "seq": 7, "device": "alta-core1",
}

EXAMPLES: dict[str, Event] = {
    "metrics": MetricsEvent(**COMMON, samples=[
        Sample(name="if_hc_in_octets", value=1.5e12, labels={"ifname": "Gi1/0/1"},
               kind="counter64"),
        Sample(name="cpu_load_ratio", value=0.25),
    ], interval=60.0, floor=3),
    "state": StateEvent(**COMMON, state="auth_error", reason="usmStatsWrongDigests"),
    "trap": TrapEvent(**COMMON, trap_oid="1.3.6.1.6.3.1.1.5.3", trap_name="linkDown",
                      agent_addr="127.0.0.1",
                      varbinds=[Varbind(oid="1.3.6.1.2.1.2.2.1.1.3", type="Integer", value="3")]),
    "check": CheckEvent(**COMMON, check="epost-https", kind="http", ok=False, latency=0.125,
                        reason="status 500", values={"status": 500.0}),
    "heartbeat": HeartbeatEvent(**COMMON, interval=30.0),
}


@pytest.mark.parametrize("stream", sorted(EXAMPLES))
def test_round_trip(stream: str) -> None:
    """Every payload kind decodes to exactly what was encoded."""
    event = EXAMPLES[stream]
    assert event == decode_event(stream, encode(event))


def _payload(stream: str, **changes: object) -> bytes:
    body = json.loads(encode(EXAMPLES[stream]))
    for key, value in changes.items():
        if value is ...:
            body.pop(key, None)
        else:
            body[key] = value
    return json.dumps(body).encode()


@pytest.mark.parametrize(("stream", "payload", "reason", "detail"), [
    ("state", b"{not json", "malformed_json", ""),
    ("state", b"[]", "invalid", "Expected `object`"),
    ("state", _payload("state", extra=1), "invalid", "unknown field `extra`"),
    ("state", _payload("state", ts="now"), "invalid", "$.ts"),
    ("state", _payload("state", seq=0), "invalid", "$.seq"),
    ("state", _payload("state", device="Alta Core"), "invalid", "$.device"),
    ("state", _payload("state", state="sleepy"), "invalid", "$.state"),
    ("state", _payload("state", ts=...), "invalid", "missing required field `ts`"),
    ("state", _payload("state", v=2), "unsupported_version", "version 2"),
    ("state", _payload("state", v=2, future_field=1), "unsupported_version", "version 2"),
    ("state", _payload("state", floor=99), "invalid", "floor must not exceed seq"),
    ("metrics", b'{"v":1,"ts":1,"src":"a","seq":1,"device":"d","samples":'
                b'[{"name":"x","value":1e999}]}', "invalid", "out of range"),
    ("metrics", b'{"v":1,"ts":1,"src":"a","seq":1,"device":"d","samples":'
                b'[{"name":"x","value":NaN}]}', "malformed_json", ""),
    ("metrics", b'{"v":1,"ts":-1,"src":"a","seq":1,"device":"d","samples":[]}',
     "invalid", "ts must not be negative"),
    ("metrics", b'{"v":1,"ts":1,"src":"a","seq":1,"device":"d","samples":'
                b'[{"name":"bad name","value":1}]}', "invalid", "$.samples[0].name"),
    ("metrics", b" " * (MAX_PAYLOAD_BYTES + 1), "oversize", ""),
    ("nonsense", b"{}", "bad_topic", "unknown stream"),
])
def test_rejections(stream: str, payload: bytes, reason: str, detail: str) -> None:
    """Each kind of bad payload gets its reason and a detail that says what was wrong."""
    with pytest.raises(Rejected) as caught:
        decode_event(stream, payload)
    assert reason == caught.value.reason
    assert detail in caught.value.detail


def test_topics_round_trip_and_reject() -> None:
    """Topics are built from slugs only and parse back; anything else is a bad_topic.
    The last level names the publishing source; the five-level form names none."""
    topic = device_topic("alta", "loppa", "loppa-core1", "metrics", "snmp-alta")
    assert topic == "driftsvakt/v1/alta/loppa/loppa-core1/metrics/snmp-alta"
    parsed = parse_device_topic(topic)
    assert ("alta", "loppa", "loppa-core1", "metrics", "snmp-alta") == (
        parsed.location, parsed.municipality, parsed.device, parsed.stream, parsed.src)
    assert parse_device_topic("driftsvakt/v1/alta/loppa/x/state").src is None
    assert parse_device_topic("driftsvakt/v1/alta/loppa/x/state/pc-1.lan").src == "pc-1.lan"
    assert ack_topic("alta", "snmp-alta-1") == "driftsvakt/v1/_ack/alta/snmp-alta-1"
    for bad in ("driftsvakt/v1/alta/loppa/x", "driftsvakt/v2/a/b/c/metrics",
                "driftsvakt/v1/Alta/loppa/x/metrics", "driftsvakt/v1/a/b/c/logs",
                "driftsvakt/v1/a/b/c/state/Snmp", "driftsvakt/v1/a/b/c/state/",
                "driftsvakt/v1/a/b/c/state/s/t"):
        with pytest.raises(Rejected) as caught:
            parse_device_topic(bad)
        assert caught.value.reason == "bad_topic"
    with pytest.raises(Rejected):
        device_topic("alta", "lop pa", "x", "metrics", "snmp-alta")
    with pytest.raises(Rejected):
        device_topic("alta", "loppa", "x", "metrics", "snmp/alta")


@settings(max_examples=400, deadline=None)
@given(stream=st.sampled_from(sorted(EXAMPLES)), payload=st.binary(max_size=512))
def test_arbitrary_bytes_only_reject(stream: str, payload: bytes) -> None:
    """Arbitrary bytes either decode or raise Rejected, never anything else."""
    with contextlib.suppress(Rejected):
        decode_event(stream, payload)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(stream=st.sampled_from(sorted(EXAMPLES)), value=_json,
       base=st.sampled_from(sorted(EXAMPLES)), key=st.sampled_from(
           ["v", "ts", "src", "seq", "device", "floor", "samples", "state", "interval",
            "varbinds", "values", "latency", "check", "other"]))
def test_arbitrary_json_only_reject(stream: str, value: object, base: str, key: str) -> None:
    """Arbitrary JSON, alone or put into a valid payload, decodes or raises Rejected."""
    for payload in (json.dumps(value).encode(), _payload(base, **{key: value})):
        try:
            event = decode_event(stream, payload)
        except Rejected:
            continue
        assert event == decode_event(stream, encode(event))


@pytest.mark.parametrize("label", ["device", "location", "municipality", "site", "class",
                                   "__name__", "__x"])
def test_a_reserved_label_is_refused_at_decode(label: str) -> None:
    """The engine adds these to every device series: a sample bringing its own would
    make Prometheus refuse the whole scrape."""
    payload = json.dumps({**COMMON, "samples": [
        {"name": "x", "value": 1.0, "labels": {label: "spoof"}}]}).encode()
    with pytest.raises(Rejected) as caught:
        decode_event("metrics", payload)
    assert "invalid" == caught.value.reason
    assert f"labels key {label!r} is reserved" in caught.value.detail
