"""Socket receive buffers large enough that a burst of replies is never dropped.

A reply dropped from a full receive buffer looks exactly like a device that did not
answer: a false "down". Collectors that keep many requests in flight on one socket
(ICMP echo, SNMP) grow its buffer at creation.
"""

from __future__ import annotations

import socket
from typing import Final

import structlog

__all__ = ["RECEIVE_BUFFER", "grow_receive_buffer"]

log = structlog.get_logger(__name__)

RECEIVE_BUFFER: Final = 8 * 1024 * 1024


def grow_receive_buffer(sock: socket.socket, wanted: int = RECEIVE_BUFFER) -> int:
    """As large as allowed: SO_RCVBUFFORCE with privilege, else up to net.core.rmem_max.
    Returns the size the kernel granted (it reports twice what it accounts)."""
    force = getattr(socket, "SO_RCVBUFFORCE", None)
    try:
        if force is None:
            raise PermissionError
        sock.setsockopt(socket.SOL_SOCKET, force, wanted)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, wanted)
    got = int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
    if got < wanted:
        log.warning("receive_buffer_small", bytes=got, wanted=wanted,
                    hint="raise net.core.rmem_max, or keep fewer requests in flight")
    return got
