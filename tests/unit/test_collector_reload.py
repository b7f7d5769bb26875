"""A collector that refuses a reloaded estate says so where it is watched: the refusal
is counted, reported in its retained status, and so exported by the engine as
driftsvakt_collector_counted_total{what="reload_refused"}
(DriftsvaktCollectorReloadRefused, promtool-tested in deploy/prometheus/tests.yml)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import msgspec

from collectors.common.outbox import Outbox
from collectors.common.publisher import Publisher
from collectors.common.service import reload_on_sighup
from monitor.events import ComponentStatus
from monitor.fields import Broker


async def test_a_refused_reload_is_counted_and_reported(tmp_path: Path) -> None:
    broken = tmp_path / "estate.yaml"
    broken.write_text("locations: [\n", encoding="utf-8")  # does not parse
    box = await Outbox.open(tmp_path / "outbox.db")
    publisher = Publisher(broker=Broker(location="alta"), location="alta", component="snmp",
                          instance="snmp-alta", outbox=box)
    applied: list[object] = []
    loop = asyncio.get_running_loop()
    try:
        reload_on_sighup(str(broken), "alta", "snmp", applied.append, publisher.counts)
        for expected in (1, 2):
            os.kill(os.getpid(), signal.SIGHUP)
            for _ in range(500):  # at most 10 s
                if publisher.counts.get("reload_refused") == expected:
                    break
                await asyncio.sleep(0.02)
            assert expected == publisher.counts.get("reload_refused")
        status = msgspec.json.decode(publisher._status("online"), type=ComponentStatus)
        assert {"reload_refused": 2} == status.counters
        assert [] == applied
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
        await box.close()
