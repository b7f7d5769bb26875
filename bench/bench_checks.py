"""Checks per second for ICMP and HTTP against local targets, with CPU per check.

    python -m bench.bench_checks

ICMP: 5,000 echo requests to 127.0.0.0/8 addresses on the checks collector's one
socket, 1,000 in flight. HTTP: 3,000 probes of a local aiohttp server running in
another process (its CPU is not counted), 100 in flight. Median of 3 runs.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time

import aiohttp

from bench.common import cpu_seconds, machine
from collectors.checks.icmp import IcmpUnavailable, Pinger
from collectors.checks.probes import http_probe
from tests.servers import free_port, wait_port

ICMP_N = 5000
HTTP_N = 3000

SERVER = """
import sys
from aiohttp import web
async def ok(_): return web.Response(text="ok")
app = web.Application(); app.router.add_get("/", ok)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


async def icmp_round() -> tuple[float, float, int]:
    pinger = Pinger()
    pinger.open()
    targets = [f"127.{i // 62500 % 250}.{i // 250 % 250}.{i % 250 + 1}" for i in range(ICMP_N)]
    cpu, start = cpu_seconds(), time.perf_counter()
    results = await asyncio.gather(*(pinger.ping(t, 5) for t in targets),
                                   return_exceptions=True)
    elapsed, used = time.perf_counter() - start, cpu_seconds() - cpu
    pinger.close()
    return ICMP_N / elapsed, used / ICMP_N, sum(isinstance(r, float) for r in results)


async def http_round(port: int) -> tuple[float, float, int]:
    slots = asyncio.Semaphore(100)
    url = f"http://127.0.0.1:{port}/"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        async def one() -> bool:
            async with slots:
                return (await http_probe(session, url, 5)).ok
        cpu, start = cpu_seconds(), time.perf_counter()
        oks = await asyncio.gather(*(one() for _ in range(HTTP_N)))
        elapsed, used = time.perf_counter() - start, cpu_seconds() - cpu
    return HTTP_N / elapsed, used / HTTP_N, sum(oks)


def main() -> None:
    print(f"checks; {machine()}")
    try:
        runs = [asyncio.run(icmp_round()) for _ in range(3)]
        rate, cpu, ok = (statistics.median(r[i] for r in runs) for i in range(3))
        print(f"  ICMP: {rate:,.0f} pings/s, {cpu * 1e6:.0f} µs CPU per ping, "
              f"{ok:.0f}/{ICMP_N} answered (one socket)")
    except IcmpUnavailable as exc:
        print(f"  ICMP: not available here: {exc}")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)])
    try:
        wait_port(port)
        runs = [asyncio.run(http_round(port)) for _ in range(3)]
        rate, cpu, ok = (statistics.median(r[i] for r in runs) for i in range(3))
        print(f"  HTTP: {rate:,.0f} checks/s, {cpu * 1e6:.0f} µs CPU per check, "
              f"{ok:.0f}/{HTTP_N} ok")
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
