"""SNMP v1/v2c messages in BER, encoded and decoded directly (the community-based hot path).

pyasn1's generic codec is most of the cost of an SNMP poll in Python (bench/bench_snmp.py:
~440 µs of CPU per varbind through pysnmp's high-level API). Community messages are a
small fixed shape, so this module builds requests from bytes and walks responses with a
hand-written TLV reader. Every decode path raises :class:`WireError` and nothing else:
the bytes come from the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = [
    "END_OF_MIB",
    "GET",
    "GETBULK",
    "NO_SUCH",
    "Response",
    "WireError",
    "decode_response",
    "encode_oid",
    "encode_request",
    "encode_response",
    "encode_value",
    "encode_varbind",
    "oid_arcs",
    "oid_content",
    "oid_text",
    "oid_tlv",
    "suffix_arcs",
    "suffix_text",
]

GET: Final = 0xA0
GETNEXT: Final = 0xA1
RESPONSE: Final = 0xA2
GETBULK: Final = 0xA5

NO_SUCH: Final = object()      # noSuchObject / noSuchInstance
END_OF_MIB: Final = object()   # endOfMibView

# application types -> the names pysnmp gives them, for Value.snmp_type
UNSIGNED: Final = {0x41: "Counter32", 0x42: "Gauge32", 0x43: "TimeTicks", 0x46: "Counter64",
                   0x47: "Unsigned32"}


class WireError(Exception):
    """A message that is not a well-formed SNMP response; says where and why."""


@dataclass(frozen=True, slots=True)
class Response:
    request_id: int
    error_status: int
    error_index: int
    # (OID content octets, value): value is int, bytes, str (an OID value or IP address),
    # NO_SUCH or END_OF_MIB
    varbinds: list[tuple[bytes, object]]
    snmp_types: list[str]


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes((tag,)) + _length(len(body)) + body


def _integer(value: int) -> bytes:
    size = max(1, (value.bit_length() + 8) // 8)
    return _tlv(0x02, value.to_bytes(size, "big", signed=True))


def encode_oid(oid: str) -> bytes:
    """The BER OBJECT IDENTIFIER (tag and length included) of a dotted OID."""
    return oid_tlv(oid_content(oid))


def oid_tlv(content: bytes) -> bytes:
    return _tlv(0x06, content)


def oid_content(oid: str) -> bytes:
    """The content octets of an OID's BER encoding. Each arc's encoding ends in a byte
    below 0x80, so a column's octets are a prefix of exactly its rows' octets: a walk can
    match rows to columns without decoding them. (Byte order is *not* OID order: 256 is
    82 00 and 16384 is 81 80 00.)"""
    try:
        arcs = [int(p) for p in oid.split(".")]
    except ValueError:
        raise WireError(f"{oid!r} is not a numeric OID") from None
    if len(arcs) < 2 or arcs[0] > 2 or (arcs[0] < 2 and arcs[1] >= 40) or min(arcs) < 0:
        raise WireError(f"{oid!r} is not a valid OID")
    out = bytearray()
    for arc in [40 * arcs[0] + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out.extend(reversed(chunk))
    return bytes(out)


_NULL: Final = b"\x05\x00"


def encode_value(tag: int, value: int | bytes) -> bytes:
    """A varbind value: INTEGER (0x02), OCTET STRING (0x04), OID (0x06, content octets),
    the unsigned application types (0x41-0x47), or an exception (0x80-0x82, empty)."""
    if isinstance(value, bytes):
        return _tlv(tag, value)
    if tag == 0x02:
        return _integer(value)
    return _tlv(tag, value.to_bytes(value.bit_length() // 8 + 1, "big"))  # unsigned


def encode_varbind(oid: bytes, value: bytes) -> bytes:
    """One VarBind from OID content octets and an encoded value (see encode_value)."""
    return _tlv(0x30, oid_tlv(oid) + value)


def encode_response(version: int, community: bytes, request_id: int,
                    varbinds: list[bytes], error_status: int = 0, error_index: int = 0
                    ) -> bytes:
    """A Response-PDU message (what an agent sends) from encoded varbinds."""
    pdu = _tlv(RESPONSE, _integer(request_id) + _integer(error_status)
               + _integer(error_index) + _tlv(0x30, b"".join(varbinds)))
    return _tlv(0x30, _integer(version) + _tlv(0x04, community) + pdu)


def encode_request(version: int, community: bytes, pdu_type: int, request_id: int,
                   oids: list[bytes], non_repeaters: int = 0, max_repetitions: int = 0
                   ) -> bytes:
    """A GET/GETNEXT/GETBULK message; ``oids`` already BER-encoded (see encode_oid)."""
    binds = _tlv(0x30, b"".join(_tlv(0x30, oid + _NULL) for oid in oids))
    pdu = _tlv(pdu_type, _integer(request_id) + _integer(non_repeaters)
               + _integer(max_repetitions) + binds)
    return _tlv(0x30, _integer(version) + _tlv(0x04, community) + pdu)


def _read(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, start of value, end of value) of the TLV at ``pos``."""
    if pos + 2 > end:
        raise WireError(f"truncated at byte {pos}")
    tag = data[pos]
    first = data[pos + 1]
    pos += 2
    if first & 0x80:
        count = first & 0x7F
        if count == 0 or count > 4 or pos + count > end:
            raise WireError(f"bad length at byte {pos - 1}")
        length = int.from_bytes(data[pos:pos + count], "big")
        pos += count
    else:
        length = first
    if pos + length > end:
        raise WireError(f"length {length} at byte {pos} runs past the message")
    return tag, pos, pos + length


def _int(data: bytes, start: int, stop: int) -> int:
    if start == stop or stop - start > 9:
        raise WireError(f"bad INTEGER at byte {start}")
    return int.from_bytes(data[start:stop], "big", signed=True)


def oid_text(content: bytes) -> str:
    return _oid(content, 0, len(content))


def suffix_arcs(content: bytes) -> tuple[int, ...]:
    """The arcs of an OID's tail (a row index) from its content octets."""
    if not content or content[-1] & 0x80:
        raise WireError("bad OID suffix")
    arcs: list[int] = []
    value = 0
    for byte in content:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    return tuple(arcs)


def suffix_text(content: bytes) -> str:
    return ".".join(str(a) for a in suffix_arcs(content))


def oid_arcs(content: bytes) -> tuple[int, ...]:
    """All arcs of an OID from its content octets (the first byte holds two)."""
    return tuple(int(a) for a in oid_text(content).split("."))


def _oid(data: bytes, start: int, stop: int) -> str:
    if start == stop:
        raise WireError(f"empty OID at byte {start}")
    arcs: list[int] = []
    value = 0
    for i in range(start, stop):
        byte = data[i]
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    if data[stop - 1] & 0x80:
        raise WireError(f"unterminated OID arc at byte {stop - 1}")
    first = arcs[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return ".".join(str(a) for a in (*head, *arcs[1:]))


def decode_response(data: bytes) -> Response:
    """Decode a v1/v2c GetResponse; raise WireError for anything else or anything broken."""
    fields, pos, list_end = _response_header(data)
    binds: list[tuple[bytes, object]] = []
    types: list[str] = []
    while pos < list_end:
        tag, s, bind_end = _read(data, pos, list_end)
        if tag != 0x30:
            raise WireError(f"bad varbind at byte {pos}")
        tag, os_, oe = _read(data, s, bind_end)
        if tag != 0x06 or os_ == oe or data[oe - 1] & 0x80:
            raise WireError(f"varbind without a well-formed OID at byte {s}")
        vtag, vs, ve = _read(data, oe, bind_end)
        value, kind = _value(data, vtag, vs, ve)
        binds.append((data[os_:oe], value))
        types.append(kind)
        pos = bind_end
    return Response(fields[0], fields[1], fields[2], binds, types)


def _response_header(data: bytes) -> tuple[list[int], int, int]:
    """Message, version, community and PDU header: the request id, error status and
    index, and where the varbind list starts and ends."""
    end = len(data)
    tag, pos, stop = _read(data, 0, end)
    if tag != 0x30 or stop != end:
        raise WireError("not a single SEQUENCE")
    tag, s, e = _read(data, pos, stop)
    if tag != 0x02 or _int(data, s, e) not in (0, 1):
        raise WireError("not an SNMP v1/v2c message")
    tag, s, pos = _read(data, e, stop)
    if tag != 0x04:
        raise WireError("no community")
    tag, pos, pdu_end = _read(data, pos, stop)
    if tag != RESPONSE:
        raise WireError(f"PDU type 0x{tag:02x} is not a response")
    fields = []
    for _ in range(3):
        tag, s, pos = _read(data, pos, pdu_end)
        if tag != 0x02:
            raise WireError("bad PDU header")
        fields.append(_int(data, s, pos))
    tag, pos, list_end = _read(data, pos, pdu_end)
    if tag != 0x30:
        raise WireError("no varbind list")
    return fields, pos, list_end


def _value(data: bytes, vtag: int, vs: int, ve: int) -> tuple[object, str]:
    """One varbind's value and its SNMP type name."""
    if vtag == 0x02:
        return _int(data, vs, ve), "Integer32"
    if vtag in UNSIGNED:
        if ve - vs > 9 or vs == ve:
            raise WireError(f"bad {UNSIGNED[vtag]} at byte {vs}")
        return int.from_bytes(data[vs:ve], "big"), UNSIGNED[vtag]
    if vtag == 0x04 or vtag == 0x44:
        return bytes(data[vs:ve]), "OctetString"
    if vtag == 0x06:
        return _oid(data, vs, ve), "ObjectIdentifier"
    if vtag == 0x40:
        if ve - vs != 4:
            raise WireError(f"bad IpAddress at byte {vs}")
        return ".".join(str(b) for b in data[vs:ve]), "IpAddress"
    if vtag in (0x80, 0x81):
        return NO_SUCH, "NoSuchObject"
    if vtag == 0x82:
        return END_OF_MIB, "EndOfMibView"
    if vtag == 0x05:
        return NO_SUCH, "Null"
    raise WireError(f"unknown value type 0x{vtag:02x} at byte {vs - 2}")
