"""SNMP v2c without pysnmp: prebuilt requests, one shared UDP socket, the BER reader of
:mod:`collectors.snmp.wire`. v3 (USM) stays with pysnmp, which does it well.

All sessions of a poller share one :class:`UdpRequester`: one socket with a large
receive buffer (a dropped reply is a false "down"), replies matched to requests by
request id and source address. A reply that cannot be decoded, has an unknown id, comes
from elsewhere or arrives late is counted and dropped; the request then times out and
is retried as configured, as with any lost datagram.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from collectors.common.sockets import grow_receive_buffer
from collectors.snmp.client import END, CollectError, Session, Value
from collectors.snmp.text import octets_text
from collectors.snmp.wire import (
    END_OF_MIB,
    GET,
    GETBULK,
    NO_SUCH,
    Response,
    WireError,
    decode_response,
    encode_request,
    oid_content,
    oid_text,
    oid_tlv,
)
from monitor.config import SnmpProfile

__all__ = ["CommunitySession", "RequesterStats", "UdpRequester"]


@dataclass
class RequesterStats:
    sent: int = 0
    retries: int = 0
    malformed: int = 0
    unmatched: int = 0


class UdpRequester(asyncio.DatagramProtocol):
    """One UDP socket for all requests of a poller."""

    def __init__(self) -> None:
        self.stats = RequesterStats()
        self._transport: asyncio.DatagramTransport | None = None
        self._opening: asyncio.Lock | None = None
        self._pending: dict[int, tuple[asyncio.Future[Response], str]] = {}
        self._ids = itertools.count(random.randrange(1, 2**30))

    def connection_made(self, transport: Any) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            grow_receive_buffer(sock)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            response = decode_response(data)
        except WireError:
            self.stats.malformed += 1
            return
        entry = self._pending.get(response.request_id)
        if entry is None or entry[1] != addr[0] or entry[0].done():
            self.stats.unmatched += 1  # late, duplicate, or not ours
            return
        entry[0].set_result(response)

    async def _open(self) -> asyncio.DatagramTransport:
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._transport is None:
                transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
                    lambda: self, local_addr=("0.0.0.0", 0))
                self._transport = transport
        return self._transport

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def request(self, host: str, port: int, build: Callable[[int], bytes],
                      timeout: float, retries: int) -> Response:
        transport = await self._open()
        request_id = next(self._ids) & 0x7FFFFFFF
        message = build(request_id)
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = (future, host)
        try:
            for attempt in range(retries + 1):
                if attempt:
                    self.stats.retries += 1
                self.stats.sent += 1
                transport.sendto(message, (host, port))
                try:
                    return await asyncio.wait_for(asyncio.shield(future), timeout)
                except TimeoutError:
                    continue
            raise CollectError("timeout", f"no response from {host}:{port} after "
                                          f"{retries + 1} x {timeout} s")
        finally:
            del self._pending[request_id]
            if not future.done():
                future.cancel()


def _value(raw: object, snmp_type: str) -> Value | object | None:
    if raw is END_OF_MIB:
        return END
    if raw is NO_SUCH:
        return None
    if isinstance(raw, int):
        return Value(raw, "", snmp_type)  # an int: a Counter64 stays exact
    if isinstance(raw, bytes):
        return Value(None, octets_text(raw), snmp_type, raw)
    return Value(None, str(raw), snmp_type)


class CommunitySession(Session):
    """v2c requests to one device through the shared requester."""

    def __init__(self, requester: UdpRequester, address: str, profile: SnmpProfile,
                 community: str) -> None:
        self.requester = requester
        self.address = address
        self.profile = profile
        self.community = community.encode()
    async def _send(self, pdu_type: int, oids: Sequence[bytes], max_repetitions: int = 0
                    ) -> Response:
        encoded = [oid_tlv(o) for o in oids]
        response = await self.requester.request(
            self.address, self.profile.port,
            lambda rid: encode_request(1, self.community, pdu_type, rid, encoded, 0,
                                       max_repetitions),
            self.profile.timeout, self.profile.retries)
        if response.error_status:
            raise CollectError("protocol", f"error status {response.error_status} at "
                                           f"varbind {response.error_index}")
        return response

    async def get(self, oids: Sequence[str]) -> dict[str, Value]:
        if not oids:
            return {}
        try:
            contents = [oid_content(o) for o in oids]
        except WireError as exc:
            raise CollectError("protocol", str(exc)) from None
        response = await self._send(GET, contents)
        found: dict[str, Value] = {}
        for (oid, raw), kind in zip(response.varbinds, response.snmp_types, strict=True):
            value = _value(raw, kind)
            if isinstance(value, Value):
                try:
                    found[oid_text(oid)] = value
                except WireError as exc:
                    raise CollectError("protocol", str(exc)) from None
        return found

    async def bulk(self, oids: Sequence[bytes], max_repetitions: int
                   ) -> list[tuple[bytes, Value | object | None]]:
        response = await self._send(GETBULK, oids, max_repetitions)
        return [(oid, _value(raw, kind))
                for (oid, raw), kind in zip(response.varbinds, response.snmp_types,
                                            strict=True)]
