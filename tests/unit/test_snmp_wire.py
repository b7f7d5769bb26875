"""The SNMP v2c wire format: agrees with pyasn1, keeps OID order, fails only typed."""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pyasn1.codec.ber import decoder, encoder
from pysnmp.proto import api
from pysnmp.proto.rfc1902 import Counter32, Counter64, Gauge32, Integer32, OctetString, TimeTicks

from collectors.snmp.wire import (
    GETBULK,
    WireError,
    decode_response,
    encode_oid,
    encode_request,
    oid_content,
    oid_text,
    suffix_text,
)

V2C = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]

arcs = st.lists(st.integers(min_value=0, max_value=2**32 - 1), min_size=0, max_size=12)
oids = st.builds(lambda first, second, rest: [first, second, *rest],
                 st.integers(min_value=0, max_value=1), st.integers(min_value=0, max_value=39),
                 arcs)


def dotted(parts: list[int]) -> str:
    return ".".join(str(p) for p in parts)


@given(oids)
def test_oid_round_trip(parts: list[int]) -> None:
    assert dotted(parts) == oid_text(oid_content(dotted(parts)))


@given(oids, oids)
def test_encoded_prefix_is_exactly_the_oid_prefix(a: list[int], b: list[int]) -> None:
    """The walk matches rows to a column by octet prefix: that must agree with arcs,
    and the index arcs decode from the tail alone. (Octet *order* does not follow OID
    order — 0.0.256 is 00 82 00, 0.0.16384 is 00 81 80 00 — so order is checked on
    decoded arcs.)"""
    prefix = oid_content(dotted(a))
    assert (b[:len(a)] == a) == oid_content(dotted(b)).startswith(prefix)
    child = oid_content(dotted([*a, 7, 16384]))
    assert child.startswith(prefix)
    assert "7.16384" == suffix_text(child[len(prefix):])


@given(oids)
def test_oid_encoding_matches_pyasn1(parts: list[int]) -> None:
    from pysnmp.proto.rfc1902 import ObjectName

    assert encoder.encode(ObjectName(dotted(parts))) == encode_oid(dotted(parts))


def test_request_decodes_with_pysnmp() -> None:
    raw = encode_request(1, b"public", GETBULK, 4242,
                         [encode_oid("1.3.6.1.2.1.2.2.1.2"), encode_oid("1.3.6.1.2.1.31")], 0, 25)
    message, rest = decoder.decode(raw, asn1Spec=V2C.Message())
    pdu = V2C.apiMessage.get_pdu(message)
    assert (b"", 4242, 25) == (rest, int(V2C.apiPDU.get_request_id(pdu)),
                               int(V2C.apiBulkPDU.get_max_repetitions(pdu)))
    assert ["1.3.6.1.2.1.2.2.1.2", "1.3.6.1.2.1.31"] == [
        str(o) for o, _ in V2C.apiPDU.get_varbinds(pdu)]


values = st.one_of(
    st.integers(-(2**31), 2**31 - 1).map(Integer32),
    st.integers(0, 2**32 - 1).map(Counter32),
    st.integers(0, 2**32 - 1).map(Gauge32),
    st.integers(0, 2**32 - 1).map(TimeTicks),
    st.integers(0, 2**64 - 1).map(Counter64),
    st.binary(max_size=40).map(OctetString),
)


@settings(max_examples=200)
@given(st.lists(st.tuples(oids, values), min_size=1, max_size=20),
       st.integers(0, 2**31 - 1))
def test_responses_from_pyasn1_decode_to_the_same_values(binds: list[tuple[list[int], Any]],
                                                         request_id: int) -> None:
    request = V2C.Message()
    V2C.apiMessage.set_defaults(request)
    pdu = V2C.GetResponsePDU()
    V2C.apiPDU.set_defaults(pdu)
    V2C.apiPDU.set_request_id(pdu, request_id)
    V2C.apiPDU.set_varbinds(pdu, [(dotted(o), v) for o, v in binds])
    V2C.apiMessage.set_pdu(request, pdu)
    decoded = decode_response(encoder.encode(request))
    assert request_id == decoded.request_id
    assert [(dotted(o), bytes(v) if isinstance(v, OctetString) else int(v))
            for o, v in binds] == [(oid_text(o), v) for o, v in decoded.varbinds]


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_wire_error(data: bytes) -> None:
    with contextlib.suppress(WireError):
        decode_response(data)
