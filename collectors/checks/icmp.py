"""ICMP echo for many hosts on one socket per address family (icmplib's packets).

Pinging hundreds of hosts must not cost a process or a socket each: every request
goes out on one socket, and one reader matches the replies to the waiting callers by
sequence number and source address. Privileged raw sockets are used when we have
CAP_NET_RAW (root); otherwise the kernel's unprivileged datagram ICMP sockets, where
``net.ipv4.ping_group_range`` admits our group. Which one — or why neither — is found
out at start and said in the log.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import os
import socket
import time
from dataclasses import dataclass
from typing import Any, Final

import structlog
from icmplib import ICMPRequest, ICMPv4Socket, ICMPv6Socket
from icmplib.exceptions import ICMPLibError, SocketPermissionError

from collectors.common.sockets import grow_receive_buffer

__all__ = ["IcmpUnavailable", "Pinger"]

log = structlog.get_logger(__name__)

ECHO_REPLY: Final = {4: 0, 6: 129}
# A raw socket also queues our own requests on loopback, so each ping can take two
# buffer slots of ~1 KiB (kernel accounting): the default buffer overflowed at 128
# pings in flight (see collectors/common/sockets.py).
MAX_IN_FLIGHT: Final = 1000


class IcmpUnavailable(Exception):
    """Neither raw nor datagram ICMP sockets can be opened here; says why."""


@dataclass(slots=True)
class _Family:
    icmp: Any  # ICMPv4Socket | ICMPv6Socket
    privileged: bool
    pending: dict[int, tuple[str, float, asyncio.Future[float]]]


class Pinger:
    """Shared ICMP echo; ``await ping(address, timeout)`` returns the round trip."""

    def __init__(self, privileged: bool | None = None, max_in_flight: int = MAX_IN_FLIGHT
                 ) -> None:
        self._want_privileged = privileged
        self._slots = asyncio.Semaphore(max_in_flight)
        self._families: dict[int, _Family] = {}
        self._ident = os.getpid() & 0xFFFF
        self._sequence = itertools.count(1)
        self.mode = ""

    def open(self) -> str:
        """Open the IPv4 socket now, to learn (and say) which kind we have."""
        family = self._family(4)
        self.mode = "raw (privileged)" if family.privileged else "datagram (unprivileged)"
        log.info("icmp_socket", mode=self.mode)
        return self.mode

    def _family(self, version: int) -> _Family:
        family = self._families.get(version)
        if family is not None:
            return family
        cls = ICMPv4Socket if version == 4 else ICMPv6Socket
        options = [self._want_privileged] if self._want_privileged is not None else [True,
                                                                                     False]
        errors = []
        for privileged in options:
            try:
                icmp = cls(privileged=privileged)
                break
            except SocketPermissionError:
                errors.append("raw sockets need CAP_NET_RAW" if privileged else
                              "datagram ICMP sockets are not allowed for this group "
                              f"(net.ipv4.ping_group_range = {_ping_group_range()})")
            except ICMPLibError as exc:
                errors.append(str(exc))
        else:
            raise IcmpUnavailable("; ".join(errors))
        raw: socket.socket = icmp.sock
        raw.setblocking(False)
        grow_receive_buffer(raw)
        family = _Family(icmp, privileged, {})
        asyncio.get_running_loop().add_reader(raw.fileno(), self._on_readable, family)
        self._families[version] = family
        return family

    def close(self) -> None:
        for family in self._families.values():
            sock: socket.socket = family.icmp.sock
            asyncio.get_running_loop().remove_reader(sock.fileno())
            family.icmp.close()
            for _, _, future in family.pending.values():
                if not future.done():
                    future.cancel()
        self._families.clear()

    async def ping(self, address: str, timeout: float) -> float:
        """Round-trip time in seconds; raises TimeoutError, OSError or IcmpUnavailable."""
        async with self._slots:
            return await self._ping(address, timeout)

    async def _ping(self, address: str, timeout: float) -> float:
        version = ipaddress.ip_address(address).version
        family = self._family(version)
        sequence = next(self._sequence) & 0xFFFF
        while sequence in family.pending or sequence == 0:
            sequence = next(self._sequence) & 0xFFFF
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        request = ICMPRequest(destination=address, id=self._ident, sequence=sequence,
                              payload_size=32)
        family.pending[sequence] = (_normal(address), time.perf_counter(), future)
        try:
            family.icmp.send(request)
            async with asyncio.timeout(timeout):
                return await future
        except ICMPLibError as exc:
            raise OSError(str(exc)) from None
        finally:
            family.pending.pop(sequence, None)

    def _on_readable(self, family: _Family) -> None:
        sock: socket.socket = family.icmp.sock
        while True:
            try:
                packet, source = sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            now = time.perf_counter()
            # icmplib's parser: it knows where the headers are on raw and datagram sockets.
            reply = family.icmp._parse_reply(packet, source[0], now)
            if reply is None or reply.type != ECHO_REPLY[family.icmp._IP_VERSION]:
                continue
            if family.privileged and reply.id != self._ident:
                continue  # a raw socket sees every echo reply on the host
            entry = family.pending.get(reply.sequence)
            if entry is None or entry[0] != _normal(reply.source):
                continue
            _, sent, future = entry
            if not future.done():
                future.set_result(now - sent)


def _normal(address: str) -> str:
    return str(ipaddress.ip_address(address.split("%")[0]))


def _ping_group_range() -> str:
    try:
        with open("/proc/sys/net/ipv4/ping_group_range", encoding="ascii") as f:
            return f.read().strip().replace("\t", " ")
    except OSError:
        return "unknown"
