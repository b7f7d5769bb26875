"""48-port switches over SNMP v2c: driftsvakt's poller and Prometheus's snmp_exporter
side by side, and an estate of 5,000 switches in one collector process.

    python -m bench.bench_snmp_switches [--targets 200] [--rounds 3] [--runs 3]
                                        [--estate 5000] [--window 60]

Needs root (a network namespace of its own), net-snmp's snmpd and snmpget, and for the
side-by-side part Debian's ``prometheus-snmp-exporter``; mosquitto for the estate.

The namespace (``bench/netns.py``) has 24 veth pairs, so snmpd answers the interface
table of a 48-port switch (49 rows with ``lo``); four snmpd instances on the second
core answer every switch, each switch on a loopback address of its own. On the first
core, in turn:

- driftsvakt's poller (``SnmpPoller.poll_and_publish``, the shipped system and IF-MIB
  modules, events encoded as the publisher encodes them) polls every target ``rounds``
  times, 50 polls in flight;
- snmp_exporter (``GOMAXPROCS=1``), with a module listing the same OIDs (``get:`` the
  scalars, ``walk:`` the same columns, ``max_repetitions: 50`` so each column is one
  request), is scraped for the same targets by a client with 50 requests in flight;
  its CPU and the client's are counted together.

CPU per varbind and per poll come from each process's CPU time; "switches per core-s"
is polls per CPU-second. The estate part runs ``driftsvakt collect snmp`` itself —
real publisher, outbox and a mosquitto in the namespace — on 5,000 switches with a 60 s
interval, and reads its own metrics and CPU time over one interval in steady state.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
import yaml

from bench.common import cpu_seconds, machine
from bench.netns import COMMUNITY, Namespace, namespace, switch_address
from collectors.common.publisher import Emitter
from collectors.snmp.modules import Module, load_modules, modules_for

SNMPD_PORTS = (16101, 16102, 16103, 16104)
EXPORTER_PORT = 19116
INFLIGHT = 50


# --- configs -----------------------------------------------------------------------


def estate_yaml(targets: int, *, broker_port: int = 1883, outbox: str = "outbox",
                interval: float = 60.0) -> dict[str, Any]:
    return {
        "locations": [{"id": "alta", "name": "Alta"}],
        "municipalities": [{"id": "alta", "name": "Alta"}],
        "sites": [{"id": "dc", "name": "DC", "location": "alta", "municipality": "alta"}],
        "brokers": [{"location": "alta", "host": "127.0.0.1", "port": broker_port}],
        "outbox": {"directory": outbox},
        "snmp_profiles": [{"id": f"v2c-{p}", "version": "2c", "port": p,
                           "community": {"env": "DV_BENCH_COMMUNITY"},
                           "timeout": 5, "retries": 1} for p in SNMPD_PORTS],
        "devices": [{"id": f"sw{i}", "name": f"sw{i}", "class": "switch", "site": "dc",
                     "address": switch_address(i), "interval": interval,
                     "snmp_profile": f"v2c-{SNMPD_PORTS[i % len(SNMPD_PORTS)]}"}
                    for i in range(targets)],
    }


def exporter_module(modules: list[Module]) -> dict[str, Any]:
    """An snmp_exporter (0.21) module asking for exactly what the poller asks for."""
    scalars = [s.oid for m in modules for s in m.scalars]
    scalars += [o for m in modules if m.info for o in m.info.labels.values()]
    metrics: list[dict[str, Any]] = [
        {"name": s.name, "oid": s.oid.removesuffix(".0"), "type": "gauge"}
        for m in modules for s in m.scalars]
    metrics += [{"name": label, "oid": oid.removesuffix(".0"), "type": "DisplayString"}
                for m in modules if m.info for label, oid in m.info.labels.items()]
    walk: list[str] = []
    index = [{"labelname": "ifIndex", "type": "gauge"}]
    for m in modules:
        for table in m.tables:
            name_oid = next(iter(table.labels.get("ifname", [])), None)
            lookups = ([{"labels": ["ifIndex"], "labelname": "ifName", "oid": name_oid,
                         "type": "DisplayString"}] if name_oid else [])
            for label, candidates in table.labels.items():
                for oid in candidates:
                    walk.append(oid)
                    metrics.append({"name": f"{label}_{len(walk)}", "oid": oid,
                                    "type": "DisplayString", "indexes": index})
            for column in table.columns:
                walk.append(column.oid)
                metrics.append({"name": column.name, "oid": column.oid,
                                "type": "counter" if column.kind.startswith("counter")
                                else "gauge", "indexes": index, "lookups": lookups})
    return {"switch": {"version": 2, "auth": {"community": COMMUNITY}, "retries": 1,
                       "timeout": "5s", "max_repetitions": 50, "get": scalars,
                       "walk": list(dict.fromkeys(walk)), "metrics": metrics}}


# --- workers, run inside the namespace on the first core ----------------------------


class _EncodeOnly(Emitter):
    """The publisher's work on an event up to the outbox: encode it."""

    def __init__(self) -> None:
        self.encoder = msgspec.json.Encoder()
        self.bytes = 0

    async def emit(self, municipality: str, device: str, stream: str, ts: float,
                   **body: Any) -> int:
        self.bytes += len(self.encoder.encode({"v": 1, "ts": ts, "src": "bench",
                                               "device": device, **body}))
        return 0


async def poller_worker(config_path: str, rounds: int) -> dict[str, Any]:
    from collectors.snmp.poller import SnmpPoller
    from monitor.config import load_config

    poller = SnmpPoller(load_config(Path(config_path)), "alta", _EncodeOnly(),
                        load_modules(), concurrency=INFLIGHT)
    devices = poller.devices
    await asyncio.gather(*(poller.poll_and_publish(d) for d in devices))  # warm-up
    poller.stats.varbinds = 0
    poller.stats.errors.clear()
    cpu, start = cpu_seconds(), time.perf_counter()
    for _ in range(rounds):
        await asyncio.gather(*(poller.poll_and_publish(d) for d in devices))
    used, elapsed = cpu_seconds() - cpu, time.perf_counter() - start
    poller.close()
    return {"cpu": used, "elapsed": elapsed, "polls": len(devices) * rounds,
            "varbinds": poller.stats.varbinds, "errors": sum(poller.stats.errors.values())}


_PDUS = re.compile(rb"^snmp_scrape_pdus_returned (\S+)$", re.M)


async def exporter_worker(targets: list[str], rounds: int) -> dict[str, Any]:
    import aiohttp

    base = f"http://127.0.0.1:{EXPORTER_PORT}"
    slots = asyncio.Semaphore(INFLIGHT)
    varbinds = errors = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=INFLIGHT)) as http:
        deadline = time.monotonic() + 10
        while True:
            try:
                async with http.get(f"{base}/metrics") as response:
                    await response.read()
                    break
            except aiohttp.ClientError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)

        async def scrape(target: str) -> None:
            nonlocal varbinds, errors
            async with slots, http.get(f"{base}/snmp", params={
                    "module": "switch", "target": target}) as response:
                body = await response.read()
            found = _PDUS.search(body)
            if response.status != 200 or found is None or b"if_in_octets{" not in body:
                errors += 1
            else:
                varbinds += int(float(found.group(1)))

        await asyncio.gather(*(scrape(t) for t in targets))  # warm-up
        varbinds = errors = 0
        cpu, start = cpu_seconds(), time.perf_counter()
        for _ in range(rounds):
            await asyncio.gather(*(scrape(t) for t in targets))
        used, elapsed = cpu_seconds() - cpu, time.perf_counter() - start
    return {"cpu": used, "elapsed": elapsed, "polls": len(targets) * rounds,
            "varbinds": varbinds, "errors": errors}


# --- the run ------------------------------------------------------------------------


def _worker(ns: Namespace, *args: str) -> dict[str, Any]:
    out = ns.run([sys.executable, "-m", "bench.bench_snmp_switches", "--worker", *args],
                 core=0).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def side_by_side(ns: Namespace, tmp: Path, targets: int, rounds: int, runs: int) -> None:
    (tmp / "estate.yaml").write_text(yaml.safe_dump(estate_yaml(targets)), encoding="utf-8")
    modules = modules_for("switch", load_modules())
    (tmp / "snmp.yml").write_text(yaml.safe_dump(exporter_module(modules)), encoding="utf-8")
    addresses = [f"{switch_address(i)}:{SNMPD_PORTS[i % len(SNMPD_PORTS)]}"
                 for i in range(targets)]
    (tmp / "targets.json").write_text(json.dumps(addresses), encoding="utf-8")
    binary = shutil.which("prometheus-snmp-exporter")
    exporter = None
    if binary is None:
        print("  prometheus-snmp-exporter is not installed: the poller alone")
    else:
        exporter = ns.start([binary, f"--config.file={tmp / 'snmp.yml'}",
                             f"--web.listen-address=127.0.0.1:{EXPORTER_PORT}",
                             "--log.level=error"], core=0, env={"GOMAXPROCS": "1"},
                            log="exporter.log")
    ours: list[dict[str, Any]] = []
    theirs: list[dict[str, Any]] = []
    for _ in range(runs):
        ours.append(_worker(ns, "poller", str(tmp / "estate.yaml"), str(rounds)))
        if exporter is not None:
            before = cpu_seconds(exporter.pid)
            result = _worker(ns, "exporter", str(tmp / "targets.json"), str(rounds))
            result["client_cpu"] = result["cpu"]
            result["cpu"] += cpu_seconds(exporter.pid) - before
            theirs.append(result)
    if exporter is not None:
        exporter.terminate()
        exporter.wait(10)

    def figures(results: list[dict[str, Any]]) -> tuple[float, float, float, float, int]:
        per_vb = statistics.median(r["cpu"] / r["varbinds"] * 1e6 for r in results)
        per_poll = statistics.median(r["cpu"] / r["polls"] * 1e3 for r in results)
        rate = statistics.median(r["polls"] / r["cpu"] for r in results)
        wall = statistics.median(r["polls"] / r["elapsed"] for r in results)
        errors = sum(r["errors"] for r in results)
        return per_vb, per_poll, rate, wall, errors

    vb_per_poll = ours[0]["varbinds"] / ours[0]["polls"]
    print(f"  {targets} switches × {rounds} rounds, {INFLIGHT} in flight, medians of {runs} "
          f"runs; {vb_per_poll:.0f} varbinds per poll")
    header = (f"  {'':<22}{'µs CPU/varbind':>15}{'ms CPU/poll':>13}"
              f"{'polls/CPU-s':>13}{'polls/s':>9}{'errors':>8}")
    print(header)
    a = figures(ours)
    print(f"  {'driftsvakt poller':<22}{a[0]:>15.1f}{a[1]:>13.2f}{a[2]:>13.0f}{a[3]:>9.0f}"
          f"{a[4]:>8}")
    if theirs:
        b = figures(theirs)
        client = statistics.median(r["client_cpu"] / r["polls"] * 1e3 for r in theirs)
        print(f"  {'snmp_exporter+client':<22}{b[0]:>15.1f}{b[1]:>13.2f}{b[2]:>13.0f}"
              f"{b[3]:>9.0f}{b[4]:>8}   (client {client:.2f} ms of it; "
              f"{theirs[0]['varbinds'] / theirs[0]['polls']:.0f} varbinds per scrape)")
        print(f"  ratio driftsvakt / snmp_exporter, CPU per varbind: {a[0] / b[0]:.2f}")


def _scrape(ns: Namespace, url: str) -> dict[str, float]:
    out = _worker(ns, "scrape", url)
    return {k: float(v) for k, v in out.items()}


def estate(ns: Namespace, tmp: Path, switches: int, window: float) -> None:
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(mosquitto).exists():
        print("  mosquitto is not installed: no estate run")
        return
    conf = tmp / "mosquitto.conf"
    conf.write_text("listener 18830 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    "max_queued_messages 100000\nuser root\n", encoding="utf-8")
    ns.start([mosquitto, "-c", str(conf)], core=1, log="mosquitto.log")
    config = tmp / "estate-big.yaml"
    config.write_text(yaml.safe_dump(estate_yaml(switches, broker_port=18830,
                                                 outbox=str(tmp / "outbox"))),
                      encoding="utf-8")
    driftsvakt = str(Path(sys.executable).parent / "driftsvakt")
    collector = ns.start([driftsvakt, "collect", "snmp", "--config", str(config),
                          "--location", "alta", "--http-port", "19820"], core=0,
                         env={"DV_BENCH_COMMUNITY": COMMUNITY},
                         log="collector.log")
    url = "http://127.0.0.1:19820/metrics"
    time.sleep(15)  # start-up, and the first polls spread over the interval
    first, cpu0, t0 = _scrape(ns, url), cpu_seconds(collector.pid), time.monotonic()
    time.sleep(window)
    last, cpu1, t1 = _scrape(ns, url), cpu_seconds(collector.pid), time.monotonic()
    collector.send_signal(signal.SIGTERM)
    collector.wait(60)

    def delta(key: str) -> float:
        return last.get(key, 0.0) - first.get(key, 0.0)

    polls = delta("polls")
    print(f"  {switches} switches at a 60 s interval, one `driftsvakt collect snmp` "
          f"(publisher, outbox, mosquitto) on one core, over {t1 - t0:.0f} s:")
    print(f"    {polls:.0f} polls ({polls / (t1 - t0) * 60:.0f} per 60 s), "
          f"{delta('timeouts'):.0f} timeouts, {delta('overruns'):.0f} overruns, "
          f"{delta('errors'):.0f} errors; collector CPU {(cpu1 - cpu0) / (t1 - t0):.0%} "
          f"of a core ({(cpu1 - cpu0) / max(polls, 1) * 1e3:.2f} ms per poll); "
          f"poll duration p50/p99 from its histogram {last.get('p50', 0) * 1e3:.0f}/"
          f"{last.get('p99', 0) * 1e3:.0f} ms")


async def scrape_worker(url: str) -> dict[str, float]:
    """The collector's own counters, and its poll-duration quantiles from the histogram."""
    import aiohttp
    from prometheus_client.parser import text_string_to_metric_families

    async with aiohttp.ClientSession() as http, http.get(url) as response:
        text = await response.text()
    found: dict[str, float] = {"errors": 0.0}
    buckets: list[tuple[float, float]] = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "driftsvakt_snmp_polls_total":
                found["polls"] = s.value
            elif s.name == "driftsvakt_snmp_poll_overruns_total":
                found["overruns"] = s.value
            elif s.name == "driftsvakt_snmp_poll_errors_total":
                found["errors"] += s.value
                if s.labels.get("kind") == "timeout":
                    found["timeouts"] = s.value
            elif s.name == "driftsvakt_snmp_poll_duration_seconds_bucket":
                buckets.append((float(s.labels["le"]), s.value))
    if buckets and buckets[-1][1]:
        total = buckets[-1][1]
        for q, key in ((0.5, "p50"), (0.99, "p99")):
            found[key] = next(le for le, n in buckets if n >= q * total)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--estate", type=int, default=5000, help="0: skip the estate run")
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, *rest = args.worker
        if kind == "poller":
            os.environ["DV_BENCH_COMMUNITY"] = COMMUNITY
            result: Any = asyncio.run(poller_worker(rest[0], int(rest[1])))
        elif kind == "exporter":
            targets = json.loads(Path(rest[0]).read_text(encoding="utf-8"))
            result = asyncio.run(exporter_worker(targets, int(rest[1])))
        else:
            result = asyncio.run(scrape_worker(rest[0]))
        print(json.dumps(result))
        return
    print(f"SNMP v2c, 48-port switches on real snmpd in a namespace; {machine()}")
    with tempfile.TemporaryDirectory() as name, namespace(Path(name)) as ns:
        tmp = Path(name)
        for port in SNMPD_PORTS:
            ns.snmpd(port, core=1)
        side_by_side(ns, tmp, args.targets, args.rounds, args.runs)
        if args.estate:
            estate(ns, tmp, args.estate, args.window)


if __name__ == "__main__":
    try:
        main()
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"{exc.cmd[:6]}… failed:\n{exc.stderr}") from None
