"""Helpers shared by the benchmarks: payload builders, CPU time, medians."""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from monitor.events import MetricsEvent, Sample, encode

__all__ = ["cpu_seconds", "machine", "median_of", "metrics_payload"]


def metrics_payload(seq: int, samples: int, device: str = "loppa-sw1") -> bytes:
    """A metrics event like a switch poll: interface counters with ifname labels."""
    return encode(MetricsEvent(
        v=1, ts=time.time(), src="bench-1", seq=seq, device=device, floor=1, interval=60.0,
        samples=[Sample(name="if_hc_in_octets", value=float(1_000_000 + seq + i),
                        labels={"ifname": f"Gi1/0/{i + 1}"}, kind="counter64")
                 for i in range(samples)]))


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU time of a process (this one by default), from /proc."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def median_of(runs: int, fn: Callable[[], float]) -> tuple[float, list[float]]:
    values = [fn() for _ in range(runs)]
    return statistics.median(values), values


def machine() -> str:
    return (f"{platform.python_implementation()} {platform.python_version()}, "
            f"{os.cpu_count()} cores, {platform.machine()}")


EXAMPLE = Path(__file__).resolve().parents[1] / "deploy" / "examples" / "vest-finnmark"


def example_estate(tmp: Path, broker_port: int) -> Path:
    """The example estate copied into ``tmp``, on the benchmark's broker and store,
    without its notifications: nothing may be sent anywhere from a benchmark."""
    estate = tmp / "estate"
    shutil.copytree(EXAMPLE, estate)
    (estate / "notifications.yaml").unlink()
    main_file = estate / "estate.yaml"
    doc = yaml.safe_load(main_file.read_text(encoding="utf-8"))
    for b in doc["brokers"]:
        b["port"] = broker_port
    doc["engine"] = {**doc.get("engine", {}), "http_host": "127.0.0.1", "http_port": 0,
                     "store": str(tmp / "engine-{location}.db")}
    doc["outbox"] = {**doc.get("outbox", {}), "directory": str(tmp / "outbox")}
    main_file.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return estate
