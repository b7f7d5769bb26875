"""One device's SNMP session: credentials from a profile, GET and multi-column GETBULK.

pysnmp 7 (asyncio) does USM, transports and the wire format. Its results are
translated here, where it is called, into values or a :class:`CollectError` of a
small fixed set of kinds: ``timeout`` (no answer: the device may be down),
``auth_error`` (wrong credentials: not down), ``protocol`` (an error status, a
malformed or non-increasing response), ``config`` (a cipher that is not available).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from pysnmp.carrier.asyncio.dgram import udp
from pysnmp.hlapi.v3arch.asyncio import (
    CommunityData,
    ContextData,
    ObjectIdentity,
    ObjectType,
    SnmpEngine,
    UdpTransportTarget,
    UsmUserData,
    bulk_cmd,
    get_cmd,
    next_cmd,
)
from pysnmp.hlapi.v3arch.asyncio import auth as usm
from pysnmp.proto import errind
from pysnmp.proto.rfc1902 import Counter32, Counter64, Gauge32, Integer32, TimeTicks
from pysnmp.proto.rfc1905 import EndOfMibView, NoSuchInstance, NoSuchObject

from collectors.common.sockets import grow_receive_buffer
from collectors.snmp.text import octets_text
from collectors.snmp.wire import WireError, oid_arcs, oid_content, oid_text, suffix_arcs
from monitor.config import SnmpProfile

__all__ = ["END", "CollectError", "Session", "SnmpSession", "Value"]

ErrorKind = Literal["timeout", "auth_error", "protocol", "config"]

AUTH_PROTOCOLS: Final = {
    "MD5": usm.usmHMACMD5AuthProtocol, "SHA": usm.usmHMACSHAAuthProtocol,
    "SHA-224": usm.usmHMAC128SHA224AuthProtocol, "SHA-256": usm.usmHMAC192SHA256AuthProtocol,
    "SHA-384": usm.usmHMAC256SHA384AuthProtocol, "SHA-512": usm.usmHMAC384SHA512AuthProtocol,
}
PRIV_PROTOCOLS: Final = {
    "DES": usm.usmDESPrivProtocol, "AES": usm.usmAesCfb128Protocol,
    "AES-192": usm.usmAesCfb192Protocol, "AES-256": usm.usmAesCfb256Protocol,
}
_AUTH_ERRORS: Final = (errind.WrongDigest, errind.UnknownUserName, errind.AuthenticationError,
                       errind.UnknownSecurityName, errind.UnsupportedSecurityLevel,
                       errind.DecryptionError, errind.NotInTimeWindow)


class _RoomyUdp(udp.UdpAsyncioTransport):  # type: ignore[misc]
    """pysnmp's UDP transport with a receive buffer for many responses in flight: with
    the default one, 100 polls in flight dropped responses (14 of 400 polls timed out
    falsely), and every such timeout is a false "device down"."""

    def connection_made(self, transport: Any) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            grow_receive_buffer(sock)
        super().connection_made(transport)


class _Target(UdpTransportTarget):  # type: ignore[misc]
    PROTO_TRANSPORT = _RoomyUdp


class CollectError(Exception):
    def __init__(self, kind: ErrorKind, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind: ErrorKind = kind
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Value:
    """A decoded varbind value: a number (with its SNMP type) or text. An SNMP integer
    stays a Python int: a Counter64 above 2**53 is exact, as a float it is not."""

    number: float | None
    text: str
    snmp_type: str
    raw: bytes | None = None  # an octet string's own bytes (an address, a MAC)


def _decode(value: Any) -> Value | None:
    if isinstance(value, NoSuchObject | NoSuchInstance | EndOfMibView):
        return None
    name = type(value).__name__
    if isinstance(value, Counter32 | Counter64 | Gauge32 | Integer32 | TimeTicks):
        return Value(int(value), "", name)
    try:
        return Value(int(value), "", name)
    except (TypeError, ValueError):
        pass
    if name == "ObjectIdentifier":
        return Value(None, str(value), name)
    raw = bytes(value) if hasattr(value, "asOctets") else str(value).encode()
    return Value(None, octets_text(raw), name, raw)


END: Final = object()  # endOfMibView in a walk result
V1_NO_SUCH_NAME: Final = 2
MAX_ROWS: Final = 100_000  # per column and poll: an agent that walks forever is broken


class Session:
    """Requests to one device. Subclasses provide ``get`` and ``bulk``; the walk of
    several columns at once, and its checks, are shared."""

    async def get(self, oids: Sequence[str]) -> dict[str, Value]:
        raise NotImplementedError

    async def bulk(self, oids: Sequence[bytes], max_repetitions: int
                   ) -> list[tuple[bytes, Value | object | None]]:
        """One GETBULK of OIDs given as BER content octets: (oid, Value, None for
        noSuch*, or END), in response order, OIDs again as content octets."""
        raise NotImplementedError

    async def walk(self, columns: Sequence[str], max_repetitions: int = 25
                   ) -> dict[str, dict[str, Value]]:
        """Walk several table columns together with GETBULK: column -> {index: value}.

        OIDs stay BER content octets: a column's octets prefix exactly its rows', so a
        row is matched without decoding, and only its index (a few arcs) is decoded to
        check order and to key the row; a full OID is decoded once per column, at its end.
        """
        result: dict[str, dict[str, Value]] = {c: {} for c in columns}
        bases = {c: oid_content(c) for c in columns}
        base_arcs = {c: tuple(int(a) for a in c.split(".")) for c in columns}
        # per unfinished column: the last OID seen (octets) and its index arcs
        cursor: dict[str, tuple[bytes, tuple[int, ...]]] = {c: (b, ()) for c, b in
                                                            bases.items()}
        while cursor:
            pending = list(cursor)
            binds = await self.bulk([cursor[c][0] for c in pending], max_repetitions)
            if not binds:
                break
            progressed = False
            for i, (oid, value) in enumerate(binds):
                column = pending[i % len(pending)]
                state = cursor.get(column)
                if state is None:
                    continue
                if value is END:
                    del cursor[column]  # the agent has nothing after it
                    continue
                index = _next_index(oid, bases[column], base_arcs[column], state)
                if index is None:
                    del cursor[column]  # left the column: it is done
                    continue
                cursor[column] = (oid, index)
                progressed = True
                if isinstance(value, Value):
                    rows = result[column]
                    rows[".".join(str(a) for a in index)] = value
                    if len(rows) > MAX_ROWS:
                        raise CollectError("protocol", f"more than {MAX_ROWS} rows in "
                                                       f"{column}")
            if not progressed:
                break
        return result


def _next_index(oid: bytes, base: bytes, base_arcs: tuple[int, ...],
                last: tuple[bytes, tuple[int, ...]]) -> tuple[int, ...] | None:
    """The row index of ``oid`` in the column ``base``, None when it left the column;
    CollectError when it does not come after ``last`` (the OID and index seen before).

    GETBULK answers with the OIDs after the ones asked: anything else is a broken
    agent, and following it could loop forever."""
    try:
        inside = len(oid) > len(base) and oid.startswith(base)
        index = suffix_arcs(oid[len(base):]) if inside else None
        if (index is not None and index <= last[1]) or (
                index is None and oid_arcs(oid) <= base_arcs + last[1]):
            raise CollectError("protocol", f"non-increasing OID {_text(oid)} "
                                           f"after {_text(last[0])}")
    except WireError as exc:
        raise CollectError("protocol", str(exc)) from None
    return index


class SnmpSession(Session):
    """Through pysnmp: v1, and v3 with USM; ``engine`` is shared by all devices."""

    def __init__(self, engine: SnmpEngine, address: str, profile: SnmpProfile,
                 secrets: dict[str, str]) -> None:
        self.engine = engine
        self.address = address
        self.profile = profile
        self.auth = _auth_data(profile, secrets)
        self._target: UdpTransportTarget | None = None

    async def _transport(self) -> UdpTransportTarget:
        if self._target is None:
            self._target = await _Target.create(
                (self.address, self.profile.port), timeout=self.profile.timeout,
                retries=self.profile.retries)
        return self._target

    async def _v1(self, command: Any, oids: list[str]) -> dict[int, tuple[str, Any]]:
        """A v1 GET or GETNEXT. v1 has no per-varbind exceptions: a missing OID (or the
        end of the MIB view) fails the whole request with noSuchName at its index, so
        that varbind is dropped and the rest asked again. Returns position -> (oid,
        value) for the varbinds that were answered."""
        remaining = list(range(len(oids)))
        target = await self._transport()
        while remaining:
            try:
                error, status, index, binds = await command(
                    self.engine, self.auth, target, ContextData(),
                    *(ObjectType(ObjectIdentity(oids[i])) for i in remaining),
                    lookupMib=False)
            except (OverflowError, ValueError, TypeError) as exc:
                raise CollectError("protocol", f"undecodable response: {exc}") from None
            if not error and status and int(status) == V1_NO_SUCH_NAME and \
                    0 < int(index) <= len(remaining):
                del remaining[int(index) - 1]
                continue
            _check(error, status)
            return {i: (str(oid), value) for i, (oid, value) in zip(remaining, binds,
                                                                   strict=True)}
        return {}

    async def get(self, oids: Sequence[str]) -> dict[str, Value]:
        """GET scalars; absent ones (noSuchObject/Instance) are left out."""
        if not oids:
            return {}
        if self.profile.version == "1":
            answered = list((await self._v1(get_cmd, list(oids))).values())
        else:
            target = await self._transport()
            try:
                error, status, _, binds = await get_cmd(
                    self.engine, self.auth, target, ContextData(),
                    *(ObjectType(ObjectIdentity(o)) for o in oids), lookupMib=False)
            except (OverflowError, ValueError, TypeError) as exc:  # pyasn1 on bad packets
                raise CollectError("protocol", f"undecodable response: {exc}") from None
            _check(error, status)
            answered = [(str(oid), value) for oid, value in binds]
        found: dict[str, Value] = {}
        for oid, value in answered:
            decoded = _decode(value)
            if decoded is not None:
                found[oid] = decoded
        return found

    async def bulk(self, oids: Sequence[bytes], max_repetitions: int
                   ) -> list[tuple[bytes, Value | object | None]]:
        if self.profile.version == "1":
            # v1 has no GETBULK: one GETNEXT, one row per column; a column whose next
            # OID is past the end of the view is reported as END.
            answered = await self._v1(next_cmd, [oid_text(o) for o in oids])
            return [(oid_content(answered[i][0]), _decode(answered[i][1]))
                    if i in answered else (o, END) for i, o in enumerate(oids)]
        target = await self._transport()
        try:
            error, status, _, binds = await bulk_cmd(
                self.engine, self.auth, target, ContextData(), 0, max_repetitions,
                *(ObjectType(ObjectIdentity(oid_text(o))) for o in oids), lookupMib=False)
        except (OverflowError, ValueError, TypeError) as exc:
            raise CollectError("protocol", f"undecodable response: {exc}") from None
        _check(error, status)
        return [(oid_content(str(oid)),
                 END if isinstance(value, EndOfMibView) else _decode(value))
                for oid, value in binds]


def _text(content: bytes) -> str:
    try:
        return oid_text(content)
    except WireError:
        return content.hex()


def _check(error: Any, status: Any) -> None:
    if error:
        if isinstance(error, errind.RequestTimedOut):
            raise CollectError("timeout", str(error))
        if isinstance(error, _AUTH_ERRORS):
            raise CollectError("auth_error", f"{type(error).__name__}: {error}")
        raise CollectError("protocol", f"{type(error).__name__}: {error}")
    if status and int(status) != 0:
        raise CollectError("protocol", f"error status {status.prettyPrint()}")


def _auth_data(profile: SnmpProfile, secrets: dict[str, str]) -> CommunityData | UsmUserData:
    if profile.version in ("1", "2c"):
        return CommunityData(secrets["community"], mpModel=0 if profile.version == "1" else 1)
    auth = AUTH_PROTOCOLS[profile.auth_protocol] if profile.auth_protocol else usm.usmNoAuthProtocol
    priv = PRIV_PROTOCOLS[profile.priv_protocol] if profile.priv_protocol else usm.usmNoPrivProtocol
    return UsmUserData(profile.user or "", secrets.get("auth_key"), secrets.get("priv_key"),
                       authProtocol=auth, privProtocol=priv)
