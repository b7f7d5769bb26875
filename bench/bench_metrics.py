"""/metrics render time at 50k, 200k and 500k series, and the event loop's lag during
a scrape.

    python -m bench.bench_metrics

State is filled as a region's switches would fill it: 48-port switches with 8
interface series each (plus a few device series), labelled by location,
municipality, site, device, class and ifname. Printed per size: the render time of
the device series through prometheus-client (a custom collector building metric
families at scrape time, the generic path), through monitor.exposition (first scrape,
when every series' text is built, and a steady scrape), the body size plain and
gzipped; then, at each size, a real scrape over HTTP (gzip, as Prometheus asks)
while a task measures how late the event loop runs its timers. Medians of 3.
"""

from __future__ import annotations

import asyncio
import gzip
import statistics
import threading
import time
import urllib.request
from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bench.common import machine
from monitor.exposition import SeriesExposition
from monitor.state import DeviceStatus, SeriesValue, State
from monitor.web import build_app

PORTS = 48
PER_PORT = ("if_in_octets", "if_out_octets", "if_in_errors", "if_out_errors",
            "if_in_discards", "if_oper_status", "if_admin_status", "if_speed_bps")


def fill(series: int) -> State:
    state = State()
    switches = series // (PORTS * len(PER_PORT) + 2)
    now = time.time()
    for i in range(switches):
        device = f"sw{i}"
        state.devices[device] = DeviceStatus(f"loc{i % 2}", f"m{i % 17}", now)
        state.series[(device, "sys_uptime_seconds", ())] = SeriesValue(1e6 + i, now, "gauge")
        state.series[(device, "cpu_usage_ratio", ())] = SeriesValue(0.12, now, "gauge")
        for port in range(1, PORTS + 1):
            labels = (("ifname", f"Gi1/0/{port}"),)
            for name in PER_PORT:
                kind = "counter64" if "octets" in name else (
                    "counter32" if name.endswith(("errors", "discards")) else "gauge")
                state.series[(device, name, labels)] = SeriesValue(
                    float(port * 1_000_003 + i), now, kind)
    return state


def labels_of(device: str, location: str, municipality: str) -> list[str]:
    return [location, municipality, f"site-{device[2:]}", device, "switch"]


class GenericCollector(Collector):
    """The generic path: prometheus-client metric families built at scrape time."""

    def __init__(self, state: State) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
        base_labels = ["location", "municipality", "site", "device", "class"]
        for (device, name, labels), value in self.state.series.items():
            family = families.get(name)
            if family is None:
                extra = [k for k, _ in labels]
                cls = GaugeMetricFamily if value.kind == "gauge" else CounterMetricFamily
                family = families[name] = cls(f"driftsvakt_{name}", name,
                                              labels=[*base_labels, *extra])
            status = self.state.devices[device]
            family.add_metric([*labels_of(device, status.location, status.municipality),
                               *(v for _, v in labels)], value.value)
        yield from families.values()


async def renders(state: State) -> tuple[float, list[float], bytes]:
    """The first render and three steady ones, in one event loop as in the engine."""
    exposition = SeriesExposition(state, labels_of)
    started = time.perf_counter()
    body = await exposition.render()
    first = time.perf_counter() - started
    steady = []
    for _ in range(3):
        started = time.perf_counter()
        body = await exposition.render()
        steady.append(time.perf_counter() - started)
    return first, steady, body


def median(values: list[float]) -> float:
    return statistics.median(values)


async def scrape_lag(state: State) -> tuple[float, float, int]:
    """(scrape seconds, worst timer lateness in s, gzipped bytes) over real HTTP."""
    exposition = SeriesExposition(state, labels_of)
    await exposition.render()  # the first scrape builds the texts

    async def ready() -> dict[str, bool]:
        return {}

    runner = web.AppRunner(build_app(CollectorRegistry(), ready, series=exposition.render),
                           access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    worst = 0.0
    done = threading.Event()
    result: dict[str, float] = {}

    def client() -> None:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                         headers={"Accept-Encoding": "gzip"})
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=60) as resp:
            result["bytes"] = len(resp.read())
        result["seconds"] = time.perf_counter() - started
        done.set()

    thread = threading.Thread(target=client)
    thread.start()
    while not done.is_set():
        before = time.perf_counter()
        await asyncio.sleep(0.005)
        worst = max(worst, time.perf_counter() - before - 0.005)
    thread.join()
    await runner.cleanup()
    return result["seconds"], worst, int(result["bytes"])


def main() -> None:
    print(f"/metrics exposition of device series; {machine()}")
    for size in (50_000, 200_000, 500_000):
        state = fill(size)
        generic = CollectorRegistry()
        generic.register(GenericCollector(state))
        old = []
        for _ in range(3 if size <= 200_000 else 1):
            started = time.perf_counter()
            generate_latest(generic)
            old.append(time.perf_counter() - started)
        first, steady, body = asyncio.run(renders(state))
        zipped = gzip.compress(body, compresslevel=1)
        print(f"  {len(state.series):>7,} series: prometheus-client collector "
              f"{median(old):6.3f} s; exposition first {first:6.3f} s, steady "
              f"{median(steady):6.3f} s; {len(body) / 1e6:6.1f} MB, gzip "
              f"{len(zipped) / 1e6:5.1f} MB")
    for size in (50_000, 200_000, 500_000):
        runs = sorted(asyncio.run(scrape_lag(fill(size))) for _ in range(3))
        seconds, lag, gzipped = runs[1]
        print(f"  scrape over HTTP at {size:,} series, gzip: {seconds:.3f} s, "
              f"{gzipped / 1e6:.1f} MB; worst event-loop lag during it "
              f"{max(r[1] for r in runs) * 1000:.1f} ms (median run {lag * 1000:.1f} ms)")


if __name__ == "__main__":
    main()
