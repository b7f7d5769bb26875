"""SNMP poller cost against a real net-snmp snmpd: CPU per varbind, per device, devices/s.

    python -m bench.bench_snmp

The poller (this process) polls servers with the shipped modules (system, IF-MIB,
HOST-RESOURCES, UCD) on an snmpd listening on 50 loopback addresses, 50 polls in
flight, 4 rounds; snmpd is pinned to the other core when taskset is there. Prints
the median of 3 runs. 48-port switches side by side with snmp_exporter, and 5,000
switches in one collector: bench_snmp_switches.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.common import cpu_seconds, machine
from collectors.common.publisher import Emitter
from collectors.snmp.modules import load_modules
from collectors.snmp.poller import SnmpPoller
from monitor.config import load_config
from tests.servers import Snmpd

DEVICES = 50
ROUNDS = 4


class _Discard(Emitter):
    async def emit(self, *args: Any, **kwargs: Any) -> int:
        return 0


async def one_run() -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        addresses = tuple(f"127.0.0.{i}" for i in range(1, DEVICES + 1))
        agent = Snmpd(tmp / "snmpd", addresses=addresses).start()
        if shutil.which("taskset") and agent.proc is not None:
            subprocess.run(["taskset", "-pc", "1", str(agent.proc.pid)], check=False,  # noqa: ASYNC221
                           capture_output=True)
            os.sched_setaffinity(0, {0})
        try:
            os.environ["DV_BENCH_COMMUNITY"] = Snmpd.COMMUNITY
            path = tmp / "estate.yaml"
            path.write_text(yaml.safe_dump({
                "locations": [{"id": "alta", "name": "Alta"}],
                "municipalities": [{"id": "alta", "name": "Alta"}],
                "sites": [{"id": "dc", "name": "DC", "location": "alta",
                           "municipality": "alta"}],
                "snmp_profiles": [{"id": "v2c", "version": "2c", "port": agent.port,
                                   "community": {"env": "DV_BENCH_COMMUNITY"},
                                   "timeout": 5, "retries": 0}],
                "devices": [{"id": f"srv{i}", "name": "s", "class": "server", "site": "dc",
                             "address": a, "snmp_profile": "v2c"}
                            for i, a in enumerate(addresses)]}), encoding="utf-8")
            poller = SnmpPoller(load_config(path), "alta", _Discard(), load_modules(),
                                concurrency=DEVICES)
            await asyncio.gather(*(poller.poll(d) for d in poller.devices))  # warm-up
            poller.stats.varbinds = 0
            cpu, start = cpu_seconds(), time.perf_counter()
            for _ in range(ROUNDS):
                await asyncio.gather(*(poller.poll(d) for d in poller.devices))
            used, elapsed = cpu_seconds() - cpu, time.perf_counter() - start
            varbinds = poller.stats.varbinds
        finally:
            agent.stop()
    polls = DEVICES * ROUNDS
    return used / varbinds * 1e6, used / polls * 1e3, polls / elapsed


def main() -> None:
    runs = [asyncio.run(one_run()) for _ in range(3)]
    per_vb, per_dev, rate = (statistics.median(r[i] for r in runs) for i in range(3))
    print(f"snmp poller (v2c: prebuilt requests, own BER reader, multi-column GETBULK); "
          f"{machine()}")
    print(f"  {per_vb:.0f} µs CPU per varbind, {per_dev:.1f} ms CPU per server poll, "
          f"{rate:.0f} polls/s with {DEVICES} in flight")


if __name__ == "__main__":
    main()
