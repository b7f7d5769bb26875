"""Host agent footprint: resident memory and CPU at its default intervals.

    python -m bench.bench_agent

Runs ``driftsvakt agent`` against a real mosquitto and engine twice, for 20 s each, at
1 s and at 10 s intervals, and reads its CPU time and RSS from /proc. The two runs
separate the cost of one reading from the cost of idling (timers, keepalive), which
gives the CPU share at the defaults: 30 s for servers, 60 s for PCs.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import cpu_seconds, machine
from tests.estate import SERVER, write_estate
from tests.servers import Mosquitto, free_port, wait_port

ROOT = Path(__file__).resolve().parents[1]
WINDOW = 20.0


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def measure(interval: float) -> tuple[float, float, float]:
    """(CPU seconds over the window, readings taken, RSS MiB at the end)."""
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        broker = Mosquitto(tmp / "broker").start()
        http = free_port()
        config = write_estate(tmp, broker.port, http)
        engine = subprocess.Popen([sys.executable, "-m", "monitor.cli", "--log-level",
                                   "warning", "engine", "--config", str(config), "--location",
                                   "alta", "--http-port", str(http)], cwd=ROOT)
        wait_port(http, 30)
        agent = subprocess.Popen([sys.executable, "-m", "monitor.cli", "--log-level", "warning",
                                  "agent", "--location", "alta", "--municipality", "loppa",
                                  "--device", SERVER, "--class", "server", "--interval",
                                  str(interval), "--broker-port", str(broker.port),
                                  "--outbox", str(tmp / "agent.db")], cwd=ROOT)
        try:
            time.sleep(5)  # start-up (imports, first reading) is not the steady state
            before = cpu_seconds(agent.pid)
            time.sleep(WINDOW)
            used = cpu_seconds(agent.pid) - before
            rss = rss_mib(agent.pid)
        finally:
            for proc in (agent, engine):
                proc.send_signal(signal.SIGTERM)
                proc.wait(15)
            broker.stop()
    return used, WINDOW / interval, rss


def main() -> None:
    fast_cpu, fast_n, rss = measure(1.0)
    slow_cpu, slow_n, _ = measure(10.0)
    per_reading = (fast_cpu - slow_cpu) / (fast_n - slow_n)
    idle = max(0.0, (slow_cpu - slow_n * per_reading) / WINDOW)
    print(f"host agent footprint; {machine()}")
    print(f"  RSS after start-up: {rss:.1f} MiB")
    print(f"  CPU per reading (metrics + heartbeat, outbox, publish): "
          f"{per_reading * 1000:.1f} ms; idle: {idle * 100:.3f} % of a core")
    for label, every in (("server, every 30 s", 30), ("pc, every 60 s", 60)):
        print(f"  {label}: {(per_reading / every + idle) * 100:.3f} % of one core")


if __name__ == "__main__":
    main()
