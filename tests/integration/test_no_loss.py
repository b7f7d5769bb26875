"""No loss: broker, engine or collector SIGKILLed mid-stream, each event applied once.

Each test runs real processes — mosquitto, ``driftsvakt engine`` and a producer built
on the real publisher — with 10,000 events in flight, kills one of them with SIGKILL
once about a third has been applied, restarts it, and when the producer has had
everything acknowledged, reads the engine's store: the source's progress is 10,000
and it applied exactly 10,000 events, across all restarts.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from tests.estate import write_estate
from tests.fulldisk import fill, small_tmpfs
from tests.servers import Mosquitto, free_port, wait_port

pytestmark = pytest.mark.integration

TOTAL = 10_000
RATE = 2_500.0  # events/s: 4 s of production, so the kill lands mid-stream
SRC = "producer-alta-1"
ROOT = Path(__file__).resolve().parents[2]


class Processes:
    """The engine and the producer of one test, as child processes, signalled by PID."""

    def __init__(self, tmp: Path, broker: Mosquitto, producer_location: str = "alta") -> None:
        self.tmp = tmp
        self.broker = broker
        self.http_port = free_port()
        self.config = write_estate(tmp, broker.port, self.http_port)
        self.store = tmp / "engine-alta.db"
        self.producer_location = producer_location
        self.engine: subprocess.Popen[bytes] | None = None
        self.peer: subprocess.Popen[bytes] | None = None
        self.producer: subprocess.Popen[bytes] | None = None
        self.env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def _spawn(self, args: list[str], log: str) -> subprocess.Popen[bytes]:
        out = open(self.tmp / log, "ab")  # noqa: SIM115 - the child owns it
        return subprocess.Popen([sys.executable, *args], stdout=out, stderr=out, env=self.env,
                                cwd=ROOT)

    def start_engine(self, wait: bool = True) -> None:
        self.engine = self._spawn(["-m", "monitor.cli", "--log-json", "engine", "--config",
                                   str(self.config), "--location", "alta",
                                   "--http-port", str(self.http_port)], "engine.log")
        if wait:
            wait_port(self.http_port, timeout=30)

    def start_peer(self) -> None:
        """The hammerfest engine, on the same broker and a store of its own."""
        port = free_port()
        self.peer = self._spawn(["-m", "monitor.cli", "--log-json", "engine", "--config",
                                 str(self.config), "--location", "hammerfest",
                                 "--http-port", str(port)], "peer.log")
        wait_port(port, timeout=30)

    def start_producer(self) -> None:
        self.producer = self._spawn(
            ["-m", "tests.integration.producer", str(self.config), self.producer_location,
             SRC, str(TOTAL), str(self.tmp / "outbox.db"), str(RATE)], "producer.log")

    def progress(self) -> tuple[int, int]:
        """(highest seq processed, events applied) from the engine's store, read-only."""
        if not self.store.exists():
            return (0, 0)
        try:
            with sqlite3.connect(f"file:{self.store}?mode=ro", uri=True, timeout=5) as db:
                row = db.execute("SELECT applied, events FROM source_progress WHERE src = ?",
                                 (SRC,)).fetchone()
        except sqlite3.OperationalError:
            return (0, 0)
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def wait_applied(self, at_least: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.progress()[0] < at_least:
            if time.monotonic() > deadline:
                raise AssertionError(f"applied {self.progress()} < {at_least} after {timeout} s"
                                     f"\n{self.logs()}")
            time.sleep(0.05)

    def kill(self, proc: subprocess.Popen[bytes] | None) -> None:
        assert proc is not None
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def wait_producer(self, timeout: float) -> None:
        assert self.producer is not None
        try:
            code = self.producer.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"producer not done after {timeout} s: {self.progress()}\n"
                                 f"{self.logs()}") from None
        assert code == 0, self.logs()

    def stop_engine(self) -> int:
        """SIGTERM: the engine must flush, acknowledge and close within 10 s."""
        assert self.engine is not None
        started = time.monotonic()
        self.engine.send_signal(signal.SIGTERM)
        code = self.engine.wait(timeout=15)
        assert time.monotonic() - started < 10.0
        return code

    def logs(self) -> str:
        parts = []
        for name in ("engine.log", "producer.log"):
            path = self.tmp / name
            if path.exists():
                parts.append(f"--- {name}\n" + path.read_text(errors="replace")[-3000:])
        return "\n".join(parts)

    def cleanup(self) -> None:
        for proc in (self.producer, self.engine, self.peer):
            if proc is not None and proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@contextmanager
def estate(tmp: Path) -> Iterator[tuple[Mosquitto, Processes]]:
    broker = Mosquitto(tmp / "broker").start()
    procs = Processes(tmp, broker)
    try:
        procs.start_engine()
        procs.start_producer()
        yield broker, procs
    finally:
        procs.cleanup()
        broker.stop()


def _assert_exactly_once(procs: Processes) -> None:
    procs.wait_producer(timeout=120)
    assert 0 == procs.stop_engine(), procs.logs()
    assert (TOTAL, TOTAL) == procs.progress(), procs.logs()


def test_broker_killed_mid_stream(tmp_path: Path) -> None:
    """mosquitto SIGKILLed and restarted: every event applied exactly once."""
    with estate(tmp_path) as (broker, procs):
        procs.wait_applied(TOTAL // 3, timeout=60)
        broker.kill()
        time.sleep(1.0)
        broker.start()
        _assert_exactly_once(procs)


def test_engine_killed_mid_stream(tmp_path: Path) -> None:
    """The engine SIGKILLed and restarted on its store: every event applied exactly once."""
    with estate(tmp_path) as (_, procs):
        procs.wait_applied(TOTAL // 3, timeout=60)
        procs.kill(procs.engine)
        before = procs.progress()
        assert before[0] < TOTAL
        time.sleep(0.5)
        procs.start_engine()
        _assert_exactly_once(procs)


def test_collector_killed_mid_stream(tmp_path: Path) -> None:
    """The collector SIGKILLed and restarted on its outbox: every event applied once."""
    with estate(tmp_path) as (_, procs):
        procs.wait_applied(TOTAL // 3, timeout=60)
        procs.kill(procs.producer)
        assert procs.progress()[0] < TOTAL
        procs.start_producer()
        _assert_exactly_once(procs)


def test_the_other_locations_events_survive_three_engine_kills(tmp_path: Path) -> None:
    """A hammerfest collector waits for hammerfest's engine only, so it never resends to
    alta: what alta's engine had received but not stored at a SIGKILL must come again
    from the broker. It does, because alta acknowledges (PUBACK) only after its commit
    and its session persists: all events reach alta exactly once through three kills."""
    broker = Mosquitto(tmp_path / "broker").start()
    procs = Processes(tmp_path, broker, producer_location="hammerfest")
    try:
        procs.start_peer()
        procs.start_engine()
        procs.start_producer()
        for quarter in (1, 2, 3):
            procs.wait_applied(TOTAL * quarter // 4, timeout=60)
            procs.kill(procs.engine)
            time.sleep(0.5)
            procs.start_engine()
        procs.wait_producer(timeout=120)  # hammerfest has acknowledged everything
        procs.wait_applied(TOTAL, timeout=60)
        assert 0 == procs.stop_engine(), procs.logs()
        assert (TOTAL, TOTAL) == procs.progress(), procs.logs()
    finally:
        procs.cleanup()
        broker.stop()


def test_the_other_locations_events_survive_a_sigkill_of_its_peers_broker(
        tmp_path: Path) -> None:
    """Two brokers bridged as deployed; a Hammerfest producer waits for both engines
    (outbox.wait_for: [hammerfest, alta]). Alta's broker is SIGKILLed mid-stream and
    restarted: what it held in memory for Alta's engine dies with it, the producer sees
    Alta's acknowledgement stall and sends it again, and all events reach Alta's
    engine exactly once. (Waiting for its own location only, they were lost.)"""
    alta = Mosquitto(tmp_path / "broker-alta").start()
    bridge = "\n".join([
        "connection alta", f"address 127.0.0.1:{alta.port}", "topic driftsvakt/v1/# both 1",
        "bridge_protocol_version mqttv311", "cleansession false",
        "remote_clientid bridge-hammerfest", "local_clientid bridge-hammerfest-local",
        "try_private true", "restart_timeout 1 2", ""])
    hammerfest = Mosquitto(tmp_path / "broker-hammerfest", extra=bridge).start()
    procs = Processes(tmp_path, alta, producer_location="hammerfest")
    estate = yaml.safe_load(procs.config.read_text(encoding="utf-8"))
    estate["brokers"][1]["port"] = hammerfest.port
    estate["outbox"]["wait_for"] = ["hammerfest", "alta"]
    procs.config.write_text(yaml.safe_dump(estate), encoding="utf-8")
    try:
        procs.start_peer()
        procs.start_engine()
        procs.start_producer()
        procs.wait_applied(TOTAL // 3, timeout=60)
        alta.kill()
        time.sleep(1.0)
        alta.start()
        procs.wait_producer(timeout=120)  # both engines have acknowledged everything
        procs.wait_applied(TOTAL, timeout=60)
        assert 0 == procs.stop_engine(), procs.logs()
        assert (TOTAL, TOTAL) == procs.progress(), procs.logs()
    finally:
        procs.cleanup()
        hammerfest.stop()
        alta.stop()


def _supervise(procs: Processes, done: Callable[[], bool], timeout: float) -> int:
    """Restart the engine whenever it stops, as systemd does, until ``done``; return
    how many times it was restarted."""
    deadline, restarts = time.monotonic() + timeout, 0
    while not done():
        assert time.monotonic() < deadline, f"not done after {timeout} s\n{procs.logs()}"
        assert procs.engine is not None
        if procs.engine.poll() is not None:
            restarts += 1
            procs.start_engine(wait=False)
        time.sleep(0.2)
    return restarts


def test_the_other_locations_events_survive_an_engine_store_on_a_full_disk(
        tmp_path: Path) -> None:
    """Alta's store on a tmpfs filled to the last byte mid-stream, the engine restarted
    whenever it stops (as systemd does) while the disk stays full for 5 s, then space
    given back: every Hammerfest event reaches Alta's engine exactly once (measured
    before: 3,852 of 5,000 lost in such a crash loop)."""
    broker = Mosquitto(tmp_path / "broker").start()
    procs = Processes(tmp_path, broker, producer_location="hammerfest")
    estate = yaml.safe_load(procs.config.read_text(encoding="utf-8"))
    estate["engine"]["store"] = str(tmp_path / "store-{location}" / "engine.db")
    procs.config.write_text(yaml.safe_dump(estate), encoding="utf-8")
    (tmp_path / "store-hammerfest").mkdir()
    procs.store = tmp_path / "store-alta" / "engine.db"
    with small_tmpfs(tmp_path / "store-alta", "16m") as disk:
        try:
            procs.start_peer()
            procs.start_engine()
            procs.start_producer()
            procs.wait_applied(TOTAL // 3, timeout=60)
            filler = fill(disk)
            full_until = time.monotonic() + 5
            restarts = _supervise(procs, lambda: time.monotonic() >= full_until, 10)
            stuck_at = procs.progress()[0]
            filler.unlink()
            # an engine started while the disk was full may still stop: restarted too
            restarts += _supervise(procs, lambda: procs.progress()[0] >= TOTAL, 120)
            procs.wait_producer(timeout=60)
            assert 0 == procs.stop_engine(), procs.logs()
            assert (TOTAL, TOTAL) == procs.progress(), procs.logs()
            print(f"\nfull disk: applied {stuck_at:,} of {TOTAL:,} when space came back, "
                  f"engine restarted {restarts} times; then all {TOTAL:,} exactly once")
            assert stuck_at < TOTAL
        finally:
            procs.cleanup()
            broker.stop()
