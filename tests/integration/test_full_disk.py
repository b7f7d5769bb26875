"""Every collector kind survives a full disk under its outbox, says why, counts what it
lost, and carries on by itself when space returns.

Real parts throughout: each collector is its own `driftsvakt` process with its outbox
on a small tmpfs that the test fills to the last byte; a real mosquitto and a real
engine (its store on an ordinary disk) acknowledge what arrives; the SNMP poller polls
a real snmpd, the trap receiver gets net-snmp's snmptrap, the checks connect to a real
listening port, the agent reads this host.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from tests.estate import DEVICES, SERVER, write_estate
from tests.fulldisk import fill, small_tmpfs
from tests.servers import Mosquitto, Snmpd, free_port, free_udp_port, wait_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
KINDS = ("agent", "checks", "snmp", "traps")
COMMUNITY = "dv-full-disk"


class Rig:
    """Broker, engine and one collector, each stopped by its own PID."""

    def __init__(self, tmp: Path, disk: Path, kind: str) -> None:
        self.tmp, self.disk, self.kind = tmp, disk, kind
        self.procs: list[subprocess.Popen[bytes]] = []
        self.broker = Mosquitto(tmp / "broker").start()
        self.http = free_port()
        self.config = write_estate(tmp, self.broker.port, self.http)
        self.env = {**os.environ, "DV_COMMUNITY": COMMUNITY}
        self.snmpd: Snmpd | None = None
        self.trap_port = free_udp_port()
        self._estate_for(kind)
        self.src = SERVER if kind == "agent" else f"{kind}-alta"
        self.engine = self._spawn("engine.log", "engine", "--config", str(self.config),
                                  "--location", "alta")
        wait_port(self.http, 30)
        self.collector = self._spawn("collector.log", *self._command(kind))

    def _estate_for(self, kind: str) -> None:
        estate = yaml.safe_load(self.config.read_text(encoding="utf-8"))
        estate["outbox"] = {"directory": str(self.disk), "ack_timeout": 2.0}
        if kind == "checks":  # a real listener: the broker's own port
            estate["checks"] = [{"id": "broker-port", "kind": "tcp", "device": SERVER,
                                 "target": f"127.0.0.1:{self.broker.port}", "interval": 1.0,
                                 "timeout": 0.5}]
        elif kind == "snmp":
            self.snmpd = Snmpd(self.tmp / "snmpd").start()
            estate["snmp_profiles"] = [{"id": "v2c", "version": "2c", "port": self.snmpd.port,
                                        "community": {"env": "DV_SNMP"}, "timeout": 0.5,
                                        "retries": 0}]
            device = estate["devices"][0]
            device.update(address="127.0.0.1", snmp_profile="v2c", interval=1.0)
            self.env["DV_SNMP"] = Snmpd.COMMUNITY
        elif kind == "traps":
            estate["traps"] = {"host": "127.0.0.1", "port": self.trap_port,
                               "communities": [{"env": "DV_COMMUNITY"}]}
        self.config.write_text(yaml.safe_dump(estate, allow_unicode=True), encoding="utf-8")

    def _command(self, kind: str) -> list[str]:
        if kind == "agent":
            return ["agent", "--location", "alta", "--municipality", "loppa", "--device",
                    SERVER, "--class", "server", "--interval", "1", "--broker-port",
                    str(self.broker.port), "--outbox", str(self.disk / "agent.db")]
        return ["collect", kind, "--config", str(self.config), "--location", "alta"]

    def _spawn(self, log: str, *args: str) -> subprocess.Popen[bytes]:
        out = open(self.tmp / log, "ab")  # noqa: SIM115 - the child owns it
        proc = subprocess.Popen([sys.executable, "-m", "monitor.cli", "--log-json", *args],
                                stdout=out, stderr=out, cwd=ROOT, env=self.env)
        self.procs.append(proc)
        return proc

    def applied(self) -> int:
        """Events of our source the engine has committed."""
        try:
            with sqlite3.connect(f"file:{self.tmp / 'engine-alta.db'}?mode=ro",
                                 uri=True) as db:
                row = db.execute("SELECT applied FROM source_progress WHERE src = ?",
                                 (self.src,)).fetchone()
        except sqlite3.Error:
            return 0
        return int(row[0]) if row else 0

    def reported_dropped(self) -> float:
        """The collector's own count of lost events, as its status tells the engine."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/metrics", timeout=5) as r:
            text = r.read().decode()
        pattern = rf'^driftsvakt_outbox_dropped_total\{{[^}}]*instance="{self.src}"[^}}]*\}} (\S+)'
        found = re.search(pattern, text, re.MULTILINE)
        return float(found.group(1)) if found else -1.0

    def log_events(self) -> list[dict[str, object]]:
        lines = (self.tmp / "collector.log").read_text(encoding="utf-8", errors="replace")
        events = []
        for line in lines.splitlines():
            if line.startswith("{"):
                try:
                    events.append(json.loads(line))
                except ValueError:
                    continue
        return events

    def wait(self, what: str, predicate: Callable[[], bool], within: float) -> None:
        deadline = time.monotonic() + within
        while not predicate():
            assert self.collector.poll() is None, \
                f"the collector exited ({self.collector.returncode}) waiting for {what}"
            assert time.monotonic() < deadline, f"no {what} within {within} s"
            time.sleep(0.2)

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
        if self.snmpd is not None:
            self.snmpd.stop()
        self.broker.stop()


def _send_traps(port: int, stop: threading.Event) -> None:
    """linkDown/linkUp from loppa-sw1's address, three a second, until ``stop``."""
    while not stop.is_set():
        subprocess.run(["snmptrap", "-v2c", "-c", COMMUNITY, "--clientaddr=127.0.1.1",
                        f"127.0.0.1:{port}", "", "1.3.6.1.6.3.1.1.5.3",
                        "1.3.6.1.2.1.2.2.1.1.1", "i", "1"], capture_output=True, check=False)
        stop.wait(0.3)


@pytest.fixture
def traffic() -> Iterator[Callable[[int], None]]:
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def start(port: int) -> None:
        thread = threading.Thread(target=_send_traps, args=(port, stop), daemon=True)
        thread.start()
        threads.append(thread)

    yield start
    stop.set()
    for thread in threads:
        thread.join(timeout=10)


@pytest.mark.parametrize("kind", KINDS)
def test_a_collector_survives_a_full_disk_and_recovers(
        kind: str, tmp_path: Path, traffic: Callable[[int], None]) -> None:
    assert DEVICES[0] == "loppa-sw1"
    with small_tmpfs(tmp_path / "disk") as disk:
        rig = Rig(tmp_path, disk, kind)
        try:
            if kind == "traps":
                traffic(rig.trap_port)
            rig.wait("first events at the engine", lambda: rig.applied() >= 2, 30)
            filler = fill(disk)
            rig.wait("lost events in the collector's status", lambda: rig.reported_dropped() > 0,
                     60)
            failures = [e for e in rig.log_events() if e.get("event") == "outbox_write_failed"]
            assert failures, "no outbox_write_failed line"
            assert "database or disk is full" in str(failures[0]["cause"])
            assert all("cannot rollback" not in str(e) for e in rig.log_events())
            assert rig.collector.poll() is None  # alive, under a full disk

            filler.unlink()  # space returns
            before = rig.applied()
            rig.wait("events after the disk was freed", lambda: rig.applied() > before + 2, 60)
            recovered = [e for e in rig.log_events()
                         if e.get("event") == "outbox_write_recovered"]
            assert 1 == len(recovered)
            assert int(str(recovered[0]["lost_in_run"])) >= 1

            rig.collector.send_signal(signal.SIGTERM)
            assert 0 == rig.collector.wait(timeout=20)
        finally:
            rig.close()
