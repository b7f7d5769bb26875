"""A month's SLA report for a municipality with 50 services over a year of history.

    python -m bench.bench_sla

The estate: one municipality, 120 devices, 50 services on them (all, any and
2-of-3; a third in office hours, some resting on other services). A year of ledger
runs is written to a fresh store: each device up for stretches of 2 to 72 hours, down
for 1 minute to 3 hours between them, a collector gap now and then, and a second
source (a host agent) for a third of the devices; a weekly maintenance window and
a dozen corrections. Printed: rows in the store, then the median of 5 of a month's
report (what the API and ``driftsvakt sla report`` compute), of the portal's 13
months, and of one refresh of the metrics.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import yaml

from bench.common import machine
from monitor.config import Config, load_config
from monitor.rules.suppress import Maintenance, Recurrence
from monitor.sla.ledger import Ledger, RunRow
from monitor.sla.report import Correction, build_report, month_period
from monitor.sla.service import SlaService
from monitor.store.db import Store

DEVICES, SERVICES = 120, 50
YEAR_START = datetime(2025, 11, 1, tzinfo=UTC).timestamp()
NOW = datetime(2026, 11, 1, 0, 30, tzinfo=UTC).timestamp()


def estate(directory: Path) -> Config:
    rng = random.Random(50)
    devices = [{"id": f"d{i:03d}", "name": f"Server {i}", "class": "server",
                "site": "radhus"} for i in range(DEVICES)]
    services = []
    for i in range(SERVICES):
        picks = [f"device:{d['id']}" for d in rng.sample(devices, 3)]
        kind = i % 3
        depends = ({"all": picks[:2]} if kind == 0 else {"any": picks[:2]} if kind == 1
                   else {"at_least": 2, "of": picks})
        if i >= 40 and i % 5 == 0:
            depends = {"all": [f"service:s{i - 40:02d}", picks[0]]}
        services.append({"id": f"s{i:02d}", "name": f"Tjeneste {i}",
                         "municipalities": ["alta"], "target": 99.5,
                         "hours": "kontortid" if i % 3 == 0 else None,
                         "depends": depends,
                         "policy": {"ignore_blips_under": 120 if i % 2 else 0}})
    for s in services:
        if s["hours"] is None:
            del s["hours"]
    config = {
        "locations": [{"id": "alta", "name": "Alta"}],
        "municipalities": [{"id": "alta", "name": "Alta kommune"}],
        "office_hours": [{"id": "kontortid", "weekly": {"mon-fri": ["07:00-16:00"]}}],
        "sites": [{"id": "radhus", "name": "Rådhuset", "location": "alta",
                   "municipality": "alta"}],
        "devices": devices, "services": services,
        "engine": {"store": str(directory / "engine-{location}.db")},
    }
    path = directory / "estate.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return load_config(path)


def history(rng: random.Random) -> list[RunRow]:
    rows: list[RunRow] = []
    for i in range(DEVICES):
        sources = ["poller"] + (["agent"] if i % 3 == 0 else [])
        for src in sources:
            t = YEAR_START + rng.uniform(0, 600)
            while t < NOW:
                up_for = rng.uniform(2, 72) * 3600
                rows.append((f"device:d{i:03d}", src, t, t + up_for, "up", 180.0))
                t += up_for + 60
                if rng.random() < 0.1:
                    t += rng.uniform(600, 4 * 3600)  # the collector was away: unknown
                    continue
                down_for = rng.uniform(60, 3 * 3600)
                rows.append((f"device:d{i:03d}", src, t, t + down_for, "down", 180.0))
                t += down_for + 60
    return rows


async def main() -> None:
    rng = random.Random(2026)
    with tempfile.TemporaryDirectory() as tmp:
        config = estate(Path(tmp))
        async with await Store.open(Path(tmp) / "engine-alta.db") as store:
            rows = history(rng)
            await store.put_sla_runs(rows)
            weekly = Maintenance(
                name="Patching", starts_at=datetime.fromtimestamp(YEAR_START, UTC),
                recurrence=Recurrence(every="weekly", days=["sun"], at="02:00",
                                      duration="2h"),
                devices=[f"d{i:03d}" for i in range(0, DEVICES, 4)])
            await store.put_maintenance("m-1", msgspec.json.encode(weekly), "bench",
                                        "create_maintenance")
            for k in range(12):
                start = YEAR_START + k * 30 * 86400 + 86400
                correction = Correction(
                    service=f"s{k:02d}", classify_as="excluded", comment="strømbrudd",
                    starts_at=datetime.fromtimestamp(start, UTC),
                    ends_at=datetime.fromtimestamp(start + 4 * 3600, UTC), id=f"c-{k}")
                await store.put_correction(correction.id, msgspec.json.encode(correction),
                                           "bench")
            print(f"machine: {machine()}")
            print(f"history: {len(rows):,} runs of {DEVICES} devices over a year, "
                  f"{SERVICES} services")
            period = month_period("2026-10")

            async def month() -> float:
                started = time.perf_counter()
                report = await build_report(config, store, "alta", period, NOW)
                assert len(report.services) == SERVICES
                return time.perf_counter() - started

            async def portal() -> float:
                started = time.perf_counter()
                await SlaService(config, store, Ledger({})).history("alta", NOW)
                return time.perf_counter() - started

            async def metrics() -> float:
                started = time.perf_counter()
                await SlaService(config, store, Ledger({})).update_metrics(NOW)
                return time.perf_counter() - started

            for name, fn in (("month report (API, CLI)", month),
                             ("portal: 13 months", portal),
                             ("metrics refresh (this and last month)", metrics)):
                await fn()  # warm the page cache
                runs = [await fn() for _ in range(5)]
                print(f"{name}: median {statistics.median(runs) * 1000:.0f} ms "
                      f"(runs: {', '.join(f'{r * 1000:.0f}' for r in runs)} ms)")


if __name__ == "__main__":
    asyncio.run(main())
