"""Rule evaluation throughput with the shipped rule set on a 5,000-device estate.

    python -m bench.bench_rules [--profile]

The estate: 500 access switches (48 ports x 8 interface series), 1,500 servers
(CPU, memory, 10 filesystems, 4 network interfaces) and 3,000 PCs — about 250,000
series. Each round publishes one poll of every device, as prebuilt MQTT payloads,
through the engine's ingest path (decode, sequence, apply to state) with and
without the rules; the difference is the rules' cost. Printed: samples/s through
ingest + rules on one core, the rules' share, the tick (absence scan, timers,
suppression) on the whole estate, and memory per device. Median of 3 runs, after
a first round that creates every tracker.
"""

from __future__ import annotations

import cProfile
import gc
import pstats
import random
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Final

from prometheus_client import CollectorRegistry

from bench.common import machine
from monitor.events import MetricsEvent, Sample, encode
from monitor.ingest import Ingest
from monitor.metrics import EngineMetrics
from monitor.rules.evaluator import RuleEngine
from monitor.rules.inventory import DeviceInfo, Inventory
from monitor.rules.kinds.absence import Absence
from monitor.rules.model import load_rules
from monitor.state import State

ROOT: Final = Path(__file__).resolve().parents[1]
SWITCHES, SERVERS, PCS = 500, 1_500, 3_000
PORTS: Final = 48
BATCH: Final = 1_000


def estate() -> Inventory:
    devices = []
    for i in range(SWITCHES):
        devices.append(DeviceInfo(f"sw{i}", f"Switch {i}", "switch", f"site{i % 40}",
                                  f"Site {i % 40}", f"m{i % 7}", "alta"))
    for i in range(SERVERS):
        devices.append(DeviceInfo(f"srv{i}", f"Server {i}", "server", f"site{i % 40}",
                                  f"Site {i % 40}", f"m{i % 7}", "alta",
                                  parent=f"sw{i % SWITCHES}"))
    for i in range(PCS):
        devices.append(DeviceInfo(f"pc{i}", f"PC {i}", "pc", f"site{i % 40}",
                                  f"Site {i % 40}", f"m{i % 7}", "alta",
                                  parent=f"sw{i % SWITCHES}"))
    return Inventory.from_list(devices)


def samples_for(device: DeviceInfo, round_: int, rng: random.Random) -> list[Sample]:
    if device.device_class == "switch":
        out = [Sample("sys_uptime_seconds", 1e6 + round_ * 60.0)]
        for port in range(1, PORTS + 1):
            labels = {"ifname": f"Gi1/0/{port}"}
            base = port * 1e9 + round_ * 60 * 2e6
            out += [Sample("if_in_octets", base, labels, "counter64"),
                    Sample("if_out_octets", base / 2, labels, "counter64"),
                    Sample("if_in_errors", float(round_), labels, "counter32"),
                    Sample("if_out_errors", 0.0, labels, "counter32"),
                    Sample("if_in_discards", 0.0, labels, "counter32"),
                    Sample("if_admin_status", 1.0, labels),
                    Sample("if_oper_status", 1.0 if port < 40 else 2.0, labels),
                    Sample("if_speed_bps", 1e9, labels)]
        return out
    if device.device_class == "server":
        out = [Sample("cpu_usage_ratio", rng.uniform(0.05, 0.99)),
               Sample("memory_used_ratio", rng.uniform(0.3, 0.9)),
               Sample("uptime_seconds", 1e6 + round_ * 30.0)]
        for fs in range(10):
            labels = {"mountpoint": f"/data{fs}", "fstype": "ext4"}
            out += [Sample("filesystem_used_ratio", rng.uniform(0.1, 0.95), labels),
                    Sample("filesystem_size_bytes", 1e11, labels)]
        for nic in range(4):
            labels = {"interface": f"eth{nic}"}
            out += [Sample("network_receive_bytes", round_ * 1e6, labels, "counter"),
                    Sample("network_transmit_bytes", round_ * 1e6, labels, "counter"),
                    Sample("network_receive_errors", 0.0, labels, "counter"),
                    Sample("network_transmit_errors", 0.0, labels, "counter")]
        return out
    return [Sample("cpu_usage_ratio", rng.uniform(0.0, 1.0)),
            Sample("memory_used_ratio", rng.uniform(0.2, 0.8)),
            Sample("filesystem_used_ratio", rng.uniform(0.2, 0.8),
                   {"mountpoint": "C:", "fstype": "NTFS"}),
            Sample("uptime_seconds", 1e5 + round_ * 60.0),
            Sample("network_receive_bytes", round_ * 1e5, {"interface": "eth0"}, "counter")]


def payloads(inventory: Inventory, rounds: int) -> list[list[tuple[str, bytes]]]:
    rng = random.Random(1)
    seq = 0
    out = []
    start = time.time() - rounds * 60
    for r in range(rounds):
        messages = []
        for device in inventory.devices.values():
            seq += 1
            event = MetricsEvent(v=1, ts=start + r * 60, src="bench-rules", seq=seq,
                                 device=device.id, samples=samples_for(device, r, rng),
                                 interval=60.0)
            messages.append((f"driftsvakt/v1/alta/{device.municipality}/{device.id}/metrics/bench-rules",
                             encode(event)))
        out.append(messages)
    return out


def memory(with_rules: bool, rounds: list[list[tuple[str, bytes]]],
           inventory: Inventory) -> int:
    """Bytes held by the state (and the rules) after two rounds, by tracemalloc."""
    gc.collect()
    tracemalloc.start()
    state = State()
    engine = RuleEngine(load_rules(ROOT / "rules"), inventory, started=time.time()) \
        if with_rules else None
    ingest = Ingest(state, {}, EngineMetrics(CollectorRegistry()), observer=engine)
    for messages in rounds[:2]:
        for i in range(0, len(messages), BATCH):
            ingest.process(messages[i:i + BATCH], time.time())
    gc.collect()
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return held


def run(with_rules: bool, rounds: list[list[tuple[str, bytes]]], inventory: Inventory,
        profile: bool = False) -> tuple[float, int, RuleEngine | None]:
    """CPU seconds for the timed rounds, samples in them, the engine."""
    gc.collect()
    state = State()
    engine = RuleEngine(load_rules(ROOT / "rules"), inventory, started=time.time()) \
        if with_rules else None
    ingest = Ingest(state, {}, EngineMetrics(CollectorRegistry()), observer=engine)

    def feed(messages: list[tuple[str, bytes]]) -> None:
        for i in range(0, len(messages), BATCH):
            ingest.process(messages[i:i + BATCH], time.time())

    feed(rounds[0])  # creates every series and tracker
    samples = 0
    profiler = cProfile.Profile() if profile else None
    started = time.process_time()
    if profiler:
        profiler.enable()
    for messages in rounds[1:]:
        feed(messages)
    if profiler:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
    elapsed = time.process_time() - started
    for messages in rounds[1:]:
        samples += sum(m[1].count(b'"name"') for m in messages)
    return elapsed, samples, engine


def main() -> None:
    profile = "--profile" in sys.argv
    inventory = estate()
    rounds = payloads(inventory, 4)
    series = sum(r[1].count(b'"name"') for r in rounds[0])
    print(f"rules bench: {len(inventory.devices)} devices, {series:,} series, "
          f"{len(load_rules(ROOT / 'rules').rules)} rules; {machine()}")
    if profile:
        run(True, rounds, inventory, profile=True)
        return
    results: dict[bool, list[tuple[float, int, RuleEngine | None]]] = {}
    for with_rules in (False, True, False, True, False, True):
        elapsed, samples, engine = run(with_rules, rounds, inventory)
        results.setdefault(with_rules, []).append((elapsed, samples, engine))
    for with_rules, runs in results.items():
        runs.sort(key=lambda r: r[0])
        elapsed, samples, engine = runs[len(runs) // 2]
        what = "ingest + rules" if with_rules else "ingest only   "
        held = memory(with_rules, rounds, inventory)
        print(f"  {what}: {samples / elapsed:>10,.0f} samples/s on one core "
              f"({elapsed / (len(rounds) - 1) * 1000:6.0f} ms per estate-wide round); "
              f"memory {held / len(inventory.devices) / 1024:5.1f} KiB per device")
    plain = sorted(r[0] for r in results[False])[1]
    ruled = sorted(r[0] for r in results[True])[1]
    engine = results[True][0][2]
    assert engine is not None
    share = (ruled - plain) / ruled
    print(f"  rules' share of the CPU: {share:.0%}; trackers: {len(engine.lifecycle.trackers):,}; "
          f"alerts: {len(engine.active())}")
    state = State()
    ingest = Ingest(state, {}, EngineMetrics(CollectorRegistry()), observer=engine)
    for i in range(0, len(rounds[-1]), BATCH):
        ingest.process(rounds[-1][i:i + BATCH], time.time())
    ticks = []
    absence = engine.kinds["absence"]
    assert isinstance(absence, Absence)
    for k in range(5):
        absence.last_run = float("-inf")  # make every tick scan for absence
        started = time.perf_counter()
        engine.tick(time.time() + k, state)
        ticks.append(time.perf_counter() - started)
    ticks.sort()
    print(f"  tick with absence scan over the estate: {ticks[2] * 1000:.1f} ms (median of 5)")


if __name__ == "__main__":
    main()
