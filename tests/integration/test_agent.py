"""Host agent -> real mosquitto -> engine: labels, last will, and a 30 s broker outage."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor.events import ComponentStatus, sys_topic
from tests.estate import SERVER, write_estate
from tests.servers import Mosquitto, free_port, wait_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
KEEPALIVE = 30.0  # the agent's default (Broker.keepalive)


class Rig:
    """Broker, engine and agent processes for one test; each stopped by its own PID."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.broker = Mosquitto(tmp / "broker").start()
        self.http = free_port()
        self.config = write_estate(tmp, self.broker.port, self.http)
        self.outbox = tmp / "agent-outbox.db"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.engine = self._spawn("engine.log", "engine", "--config", str(self.config),
                                  "--location", "alta", "--http-port", str(self.http))
        wait_port(self.http, 30)
        self.agent = self.start_agent()

    def _spawn(self, log: str, *args: str) -> subprocess.Popen[bytes]:
        out = open(self.tmp / log, "ab")  # noqa: SIM115 - the child owns it
        proc = subprocess.Popen([sys.executable, "-m", "monitor.cli", "--log-json", *args],
                                stdout=out, stderr=out, cwd=ROOT)
        self.procs.append(proc)
        return proc

    def start_agent(self) -> subprocess.Popen[bytes]:
        return self._spawn("agent.log", "agent", "--location", "alta", "--municipality",
                           "loppa", "--device", SERVER, "--class", "server", "--interval",
                           "1", "--broker-port", str(self.broker.port), "--outbox",
                           str(self.outbox))

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/metrics", timeout=5) as r:
            return str(r.read().decode())

    def progress(self) -> tuple[int, int]:
        with sqlite3.connect(f"file:{self.tmp / 'engine-alta.db'}?mode=ro", uri=True) as db:
            row = db.execute("SELECT applied, events FROM source_progress WHERE src = ?",
                             (SERVER,)).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def outbox_last_seq(self) -> int:
        with sqlite3.connect(f"file:{self.outbox}?mode=ro", uri=True) as db:
            row = db.execute("SELECT seq FROM sqlite_sequence WHERE name='outbox'").fetchone()
        return int(row[0]) if row else 0

    def wait(self, what: str, predicate: object, within: float) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                if predicate():  # type: ignore[operator]
                    return
            except (OSError, sqlite3.Error):
                pass
            time.sleep(0.2)
        logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}"
                         for p in sorted(self.tmp.glob("*.log")))
        raise AssertionError(f"{what}: not within {within} s\n{logs}")

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)
        self.broker.stop()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    try:
        yield r
    finally:
        r.close()


def series(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """(labels, value) of every sample of metric family ``name`` in an exposition."""
    return [(dict(s.labels), s.value) for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == name]


def test_agent_metrics_reach_the_engine_with_the_right_labels(rig: Rig) -> None:
    """Memory, filesystem and network series of the host appear with the device's labels."""
    device = {"location": "alta", "municipality": "loppa", "site": "oksfjord",
              "device": SERVER, "class": "server"}
    rig.wait("memory series in /metrics",
             lambda: series(rig.metrics(), "driftsvakt_memory_used_ratio"), 30)
    text = rig.metrics()
    [(labels, ratio)] = series(text, "driftsvakt_memory_used_ratio")
    assert device == labels
    assert 0.0 < ratio < 1.0
    fs = series(text, "driftsvakt_filesystem_size_bytes")
    assert fs
    assert all(device.items() <= labels.items() and "mountpoint" in labels for labels, _ in fs)
    assert any(labels.get("interface") == "lo"
               for labels, _ in series(text, "driftsvakt_network_receive_bytes_total"))
    assert ({"location": "alta", "component": "agent", "instance": SERVER}, 1.0) in series(
        text, "driftsvakt_component_up")


async def test_sigkill_gives_offline_through_the_last_will(rig: Rig) -> None:
    """SIGKILL of the agent: its retained status turns offline within 1.5 x keepalive."""
    topic = sys_topic("alta", "agent", SERVER)
    decoder = msgspec.json.Decoder(ComponentStatus)
    async with aiomqtt.Client("127.0.0.1", rig.broker.port) as client:
        await client.subscribe(topic, qos=1)
        async with asyncio.timeout(30):
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                if decoder.decode(message.payload).status == "online":
                    break
        killed = time.monotonic()
        os.kill(rig.agent.pid, signal.SIGKILL)
        async with asyncio.timeout(1.5 * KEEPALIVE):
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                if decoder.decode(message.payload).status == "offline":
                    break
        assert time.monotonic() - killed < 1.5 * KEEPALIVE


def test_broker_down_for_30_s_loses_no_sample(rig: Rig) -> None:
    """Readings taken while the broker is away wait in the outbox and are applied once."""
    rig.wait("first readings applied", lambda: rig.progress()[0] >= 4, 30)
    rig.broker.stop()
    time.sleep(30)
    produced = rig.outbox_last_seq()
    rig.broker.start()
    rig.wait("backlog applied", lambda: rig.progress()[0] >= produced + 2, 60)
    rig.agent.send_signal(signal.SIGTERM)
    assert 0 == rig.agent.wait(15)
    applied, events = rig.progress()
    assert produced >= 4 + 2 * 25  # a metrics event and a heartbeat per second while away
    assert applied == events  # every seq from the first applied, each once, none skipped
    assert "driftsvakt_events_skipped_total 0.0" in rig.metrics()


def test_agent_over_tls_with_a_password(tmp_path: Path) -> None:
    """The agent connects with MQTT v5 over TLS (a CA file) and a password from the
    environment; the broker refuses anonymous clients."""
    import trustme
    import yaml

    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert_file, key_file, ca_file = (tmp_path / "cert.pem", tmp_path / "key.pem",
                                    tmp_path / "ca.pem")
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    ca.cert_pem.write_to_path(str(ca_file))
    broker = Mosquitto(tmp_path / "broker", tls=(cert_file, key_file),
                       users={"agent": "s3cret-agent"}).start()
    settings = tmp_path / "agent.yaml"
    settings.write_text(yaml.safe_dump({
        "location": "alta", "municipality": "loppa", "device": SERVER, "class": "server",
        "interval": 1,
        "broker": {"location": "alta", "host": "localhost", "port": broker.port,
                   "username": "agent", "password": {"env": "AGENT_MQTT_PASSWORD"},
                   "tls_ca": str(ca_file)},
        "outbox": str(tmp_path / "outbox.db")}), encoding="utf-8")
    log = open(tmp_path / "agent.log", "wb")  # noqa: SIM115 - the child owns it
    agent = subprocess.Popen([sys.executable, "-m", "monitor.cli", "--log-json", "agent",
                              "--config", str(settings)], stdout=log, stderr=log, cwd=ROOT,
                             env={**os.environ, "AGENT_MQTT_PASSWORD": "s3cret-agent"})

    async def first_reading() -> bytes:
        context = ssl.create_default_context(cafile=str(ca_file))
        async with aiomqtt.Client("localhost", broker.port, username="agent",
                                  password="s3cret-agent", tls_context=context,
                                  protocol=aiomqtt.ProtocolVersion.V5) as client:
            await client.subscribe(f"driftsvakt/v1/alta/loppa/{SERVER}/metrics/+", qos=1)
            async with asyncio.timeout(20):
                async for message in client.messages:
                    assert isinstance(message.payload, bytes)
                    return message.payload
        raise AssertionError("no message")

    try:
        payload = asyncio.run(first_reading())
        assert b'"memory_used_ratio"' in payload
        assert b"s3cret" not in (tmp_path / "agent.log").read_bytes()
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(15)
        broker.stop()
