"""Service probes: TCP connect, HTTP(S), TLS certificate, DNS, each one call, one result.

A probe never raises for what it finds: a refused port, a 500, a body that does not
match, an expired or wrongly named certificate are all a :class:`ProbeResult` with
``ok=False`` and a reason a person can act on. Every network call runs under the
check's timeout.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp
from cryptography import x509

__all__ = ["ProbeResult", "dns_probe", "http_probe", "tcp_probe", "tls_probe"]


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    latency: float | None = None
    reason: str | None = None
    values: dict[str, float] = field(default_factory=dict)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return f"name does not resolve ({exc.strerror})"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate not valid: {exc.verify_message}"
    return f"{type(exc).__name__}: {exc}"[:300]


async def tcp_probe(host: str, port: int, timeout: float) -> ProbeResult:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
        latency = time.perf_counter() - started
        writer.close()
        try:
            async with asyncio.timeout(timeout):
                await writer.wait_closed()
        except (OSError, TimeoutError):
            pass
    except (OSError, TimeoutError) as exc:
        return ProbeResult(False, reason=f"{host}:{port}: {_describe(exc)}")
    return ProbeResult(True, latency=latency)


async def http_probe(session: aiohttp.ClientSession, url: str, timeout: float, *,
                     expect_status: tuple[int, ...] = (200,), body_match: str | None = None,
                     follow_redirects: bool = True, ssl_context: ssl.SSLContext | None = None
                     ) -> ProbeResult:
    started = time.perf_counter()
    try:
        async with session.get(url, allow_redirects=follow_redirects,
                               timeout=aiohttp.ClientTimeout(total=timeout),
                               ssl=ssl_context if ssl_context is not None else True) as resp:
            body = await resp.text(errors="replace") if body_match else ""
            latency = time.perf_counter() - started
            values = {"status": float(resp.status), "redirects": float(len(resp.history))}
            if resp.status not in expect_status:
                expected = ", ".join(str(s) for s in expect_status)
                return ProbeResult(False, latency, f"status {resp.status} (expected {expected})",
                                   values)
            if body_match and not re.search(body_match, body):
                return ProbeResult(False, latency, f"body does not match {body_match!r}",
                                   values)
            return ProbeResult(True, latency, None, values)
    except aiohttp.ClientConnectorCertificateError as exc:
        return ProbeResult(False, reason=_describe(exc.certificate_error))
    except aiohttp.ClientConnectorError as exc:
        return ProbeResult(False, reason=f"{url}: {_describe(exc.os_error)}")
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return ProbeResult(False, reason=f"{url}: {_describe(exc)}")


async def tls_probe(host: str, port: int, timeout: float, *, server_name: str | None = None,
                    ca_file: str | None = None, now: datetime | None = None) -> ProbeResult:
    """Days left on the certificate, and whether its chain is valid for ``server_name``.

    The expiry is read even when verification fails (an expired or foreign
    certificate), from a second, unverified handshake.
    """
    name = server_name or host
    context = ssl.create_default_context(cafile=ca_file)
    started = time.perf_counter()
    verify_error: str | None = None
    der: bytes | None = None
    try:
        der = await _peer_certificate(host, port, name, context, timeout)
    except ssl.SSLCertVerificationError as exc:
        verify_error = _describe(exc)
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        return ProbeResult(False, reason=f"{host}:{port}: {_describe(exc)}")
    latency = time.perf_counter() - started
    if der is None:
        loose = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        loose.check_hostname = False
        loose.verify_mode = ssl.CERT_NONE
        try:
            der = await _peer_certificate(host, port, name, loose, timeout)
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            return ProbeResult(False, reason=f"{verify_error}; {_describe(exc)}")
    if der is None:
        return ProbeResult(False, reason=verify_error or "no certificate presented")
    cert = x509.load_der_x509_certificate(der)
    left = (cert.not_valid_after_utc - (now or datetime.now(UTC))).total_seconds()
    values = {"expiry_seconds": left, "days_left": left / 86400,
              "not_after_timestamp": cert.not_valid_after_utc.timestamp()}
    if verify_error:
        return ProbeResult(False, latency, verify_error, values)
    if left <= 0:
        return ProbeResult(False, latency, "certificate has expired", values)
    return ProbeResult(True, latency, None, values)


async def _peer_certificate(host: str, port: int, name: str, context: ssl.SSLContext,
                            timeout: float) -> bytes | None:
    async with asyncio.timeout(timeout):
        _, writer = await asyncio.open_connection(host, port, ssl=context,
                                                  server_hostname=name)
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        return ssl_object.getpeercert(binary_form=True) if ssl_object else None
    finally:
        writer.close()


async def dns_probe(name: str, timeout: float, *, expect: tuple[str, ...] = ()) -> ProbeResult:
    """Resolve with the system resolver (as the users' machines do)."""
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            infos = await loop.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError) as exc:
        return ProbeResult(False, reason=f"{name}: {_describe(exc)}")
    latency = time.perf_counter() - started
    addresses = sorted({str(info[4][0]) for info in infos})
    values = {"addresses": float(len(addresses))}
    missing = [a for a in expect if a not in addresses]
    if missing:
        return ProbeResult(False, latency, f"{name} resolves to {', '.join(addresses)}, "
                                           f"not {', '.join(missing)}", values)
    return ProbeResult(True, latency, None, values)
