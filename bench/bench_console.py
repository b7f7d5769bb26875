"""Workbench page times on the example estate during an incident.

    python -m bench.bench_console [requests-per-page]

The example estate (deploy/examples/vest-finnmark: 3,400 devices, 38 sites) runs in a
real engine process fed through mosquitto: every device reports up, then the switch
with the most devices behind it and all of those stop answering (DeviceDown fires,
the rest are unreachable). Each page is then fetched in turn over HTTP, sequentially,
as one operator's browser would; printed per page: p50 and p95 of the response time
(request to last byte) and the body size. Medians of 3 runs, a fresh engine each.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from bench.common import machine
from collectors.common.outbox import Outbox
from collectors.common.publisher import Publisher
from monitor.config import Config, load_config
from monitor.rules.inventory import Inventory
from tests.servers import Mosquitto, free_port, wait_port

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "deploy" / "examples" / "vest-finnmark"


def write_estate(tmp: Path, broker_port: int, http_port: int) -> Path:
    target = tmp / "estate"
    shutil.copytree(EXAMPLE, target)
    (target / "notifications.yaml").unlink()  # nothing leaves the machine
    estate = yaml.safe_load((target / "estate.yaml").read_text(encoding="utf-8"))
    estate["brokers"] = [{"location": loc["id"], "host": "127.0.0.1", "port": broker_port}
                         for loc in estate["locations"]]
    estate["engine"] = {"http_host": "127.0.0.1", "http_port": http_port,
                        "store": str(tmp / "engine-{location}.db")}
    estate["outbox"] = {"directory": str(tmp / "outbox")}
    (target / "estate.yaml").write_text(yaml.safe_dump(estate, allow_unicode=True),
                                        encoding="utf-8")
    return target


def incident_parent(config: Config) -> tuple[str, list[str]]:
    """The switch, short of the estate's roots, with the most devices behind it."""
    inventory = Inventory.from_config(config)
    switches = [d.id for d in config.devices.values()
                if d.device_class == "switch" and d.parent is not None]
    best = max(switches, key=lambda s: (len(inventory.descendants(s)), s))
    return best, inventory.descendants(best)


async def feed(config: Config, tmp: Path, parent: str, behind: list[str]) -> None:
    outbox = await Outbox.open(tmp / "outbox.db")
    publisher = Publisher(broker=config.broker_for("alta"), location="alta",
                          component="bench", instance="bench-console", outbox=outbox)
    runner = asyncio.create_task(publisher.run())
    now = time.time()
    events: list[tuple[str, str, str, float, dict[str, Any]]] = []
    for device in config.devices:
        events.append((config.municipality_of(device), device, "state", now - 300,
                       {"state": "up"}))
    for device in [parent, *behind]:
        events.append((config.municipality_of(device), device, "state", now - 150,
                       {"state": "down", "reason": "no response"}))
    for start in range(0, len(events), 500):
        await asyncio.gather(*(publisher.emit(m, d, s, ts, **body)
                               for m, d, s, ts, body in events[start:start + 500]))
    await asyncio.wait_for(outbox.drained(), 120)
    publisher.stop()
    await asyncio.wait_for(runner, 10)
    await outbox.close()


async def one_run(requests: int) -> dict[str, tuple[float, float, int]]:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        broker = Mosquitto(tmp / "broker").start()
        http_port = free_port()
        config_path = write_estate(tmp, broker.port, http_port)
        config = load_config(config_path)
        parent, behind = incident_parent(config)
        engine = subprocess.Popen(  # noqa: ASYNC220 - started once, before measuring
            [sys.executable, "-m", "monitor.cli", "--log-level", "warning", "engine",
             "--config", str(config_path), "--location", "alta"],
            cwd=ROOT, stderr=subprocess.DEVNULL)
        try:
            wait_port(http_port, 60)
            await feed(config, tmp, parent, behind)
            url = f"http://127.0.0.1:{http_port}"
            async with aiohttp.ClientSession() as session:
                fp = await _firing(session, url, parent)
                site = config.devices[parent].site
                pages = {"/": "/", "/problems": "/problems", "/alerts/{id}": f"/alerts/{fp}",
                         "/devices/{down}": f"/devices/{parent}",
                         "/devices/{unreachable}": f"/devices/{behind[0]}",
                         "/sites/{id}": f"/sites/{site}", "/topology": "/topology",
                         "/search?q=": "/search?q=skole"}
                out = {}
                for name, path in pages.items():
                    times, size = [], 0
                    for _ in range(requests):
                        start = time.perf_counter()
                        async with session.get(url + path) as resp:
                            body = await resp.read()
                            assert resp.status == 200, (path, resp.status, body[:300])
                        times.append(time.perf_counter() - start)
                        size = len(body)
                    times.sort()
                    out[name] = (statistics.median(times),
                                 times[min(len(times) - 1, int(len(times) * 0.95))], size)
                return out | {"_behind": (float(len(behind)), 0.0, 0)}
        finally:
            engine.send_signal(signal.SIGTERM)
            engine.wait(30)
            broker.stop()


async def _firing(session: aiohttp.ClientSession, url: str, device: str) -> str:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        async with session.get(url + "/api/v1/alerts") as resp:
            for alert in (await resp.json())["alerts"]:
                if (alert["alertname"], alert["labels"].get("device")) == ("DeviceDown",
                                                                            device):
                    return str(alert["id"])
        await asyncio.sleep(0.5)
    raise TimeoutError(f"DeviceDown for {device} did not fire")


def main() -> None:
    logging.getLogger("driftsvakt.aiomqtt").setLevel(logging.ERROR)
    requests = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    runs = [asyncio.run(one_run(requests)) for _ in range(3)]
    behind = int(runs[0].pop("_behind")[0])
    for run in runs[1:]:
        run.pop("_behind")
    print(f"workbench pages, example estate during an incident ({behind} devices behind "
          f"the switch that went down), {requests} requests per page; {machine()}")
    for name in runs[0]:
        p50 = statistics.median(r[name][0] for r in runs) * 1000
        p95 = statistics.median(r[name][1] for r in runs) * 1000
        print(f"  {name:<24} p50 {p50:6.1f} ms   p95 {p95:6.1f} ms   "
              f"{runs[0][name][2] / 1024:7.1f} KiB")


if __name__ == "__main__":
    main()
