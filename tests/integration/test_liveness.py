"""Liveness through the real mechanisms: a SIGKILLed engine's last will crossing the
bridge, a SIGKILLed agent's will, and a location gone silent behind a frozen link.

Two mosquitto brokers, one per location, joined by a bridge that runs through a TCP
relay the test can freeze (bytes stop, connections stay open: neither broker notices
before its keepalive). The Alta engine runs in the test's process, the Hammerfest
engine and the agent as real processes of the command line; each engine notifies a
webhook of its own, so the sink records which engine sent what and when.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import pytest
import yaml
from aiohttp import web

from monitor.app import EngineApp, start_engine
from monitor.config import load_config
from tests.estate import write_estate
from tests.servers import Mosquitto, TcpLink, free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
HF_ENGINE = ("hammerfest", "engine", "hammerfest")
HF_DEVICE = "hf-sw1"

DEVICE_RULE = """
rules:
  - name: DeviceDown
    kind: state
    subject: device
    severity: critical
    states: [down]
    annotations:
      summary: "{{ device }} is down"
"""


@dataclass
class Sink:
    """The webhook both engines notify, each on a path of its own."""

    port: int
    received: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((time.monotonic(), request.path, await request.json()))
        return web.Response(text="{}")

    def sent(self, engine: str, alertname: str, device: str | None = None) -> list[float]:
        """When ``engine`` sent a firing notice of ``alertname`` (for ``device``)."""
        return [at for at, path, body in self.received
                if path == f"/{engine}" and body["status"] == "firing"
                and any(a["alertname"] == alertname
                        and (device is None or a.get("device") == device)
                        for a in body["alerts"])]


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    receiver = Sink(free_port())
    app = web.Application()
    app.router.add_post("/{engine}", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", receiver.port).start()
    yield receiver
    await runner.cleanup()


@dataclass
class Locations:
    alta: Mosquitto
    hammerfest: Mosquitto
    link: TcpLink
    config: Path


def _bridge(link_port: int) -> str:
    return "\n".join([
        "connection alta", f"address 127.0.0.1:{link_port}", "topic driftsvakt/v1/# both 1",
        "bridge_protocol_version mqttv311", "cleansession false",
        "remote_clientid bridge-hammerfest", "local_clientid bridge-hammerfest-local",
        "try_private true", "restart_timeout 1 5", "keepalive_interval 120", ""])


def _estate(directory: Path, alta_port: int, hammerfest_port: int, hook: str) -> Path:
    path = write_estate(directory, alta_port)
    estate = yaml.safe_load(path.read_text(encoding="utf-8"))
    estate["brokers"][1]["port"] = hammerfest_port
    estate["sites"].append({"id": "hf-site", "name": "Hammerfest sentrum",
                            "location": "hammerfest", "municipality": "loppa"})
    estate["devices"] += [{"id": d, "name": d, "class": "switch", "site": "hf-site",
                           "address": f"127.0.2.{i}"}
                          for i, d in enumerate((HF_DEVICE, "hf-sw2"), 1)]
    rules = directory / "rules"
    rules.mkdir()
    shutil.copy(ROOT / "rules" / "driftsvakt.yaml", rules / "driftsvakt.yaml")
    (rules / "devices.yaml").write_text(DEVICE_RULE, encoding="utf-8")
    estate["engine"]["rules"] = str(rules)
    estate["users"] = [{"id": "kari", "role": "admin", "token": {"env": "DV_TEST_TOKEN"}}]
    estate["notifications"] = {
        "receivers": [{"id": "hook", "language": "en",
                       "webhook": {"url": {"env": "DV_TEST_HOOK"}}}],
        "route": {"receiver": "hook", "group_wait": "0s", "group_interval": "1s",
                  "group_by": ["alertname", "device"]},
    }
    path.write_text(yaml.safe_dump(estate, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture
def locations(tmp_path: Path, sink: Sink) -> Iterator[Locations]:
    alta = Mosquitto(tmp_path / "broker-alta").start()
    link = TcpLink(alta.port)
    hammerfest = Mosquitto(tmp_path / "broker-hammerfest", extra=_bridge(link.port)).start()
    try:
        yield Locations(alta, hammerfest, link, _estate(
            tmp_path / "estate", alta.port, hammerfest.port, f"127.0.0.1:{sink.port}"))
    finally:
        link.close()
        hammerfest.stop()
        alta.stop()


TOKEN = "liveness-test-token"


def _engine_process(config: Path, location: str, sink: Sink, log: Path, http_port: int = 0
                    ) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "monitor.cli", "--no-log-json", "engine", "--config",
             str(config), "--location", location, "--http-port", str(http_port)],
            stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
            env={**os.environ, "DV_TEST_HOOK": f"http://127.0.0.1:{sink.port}/{location}",
                 "DV_TEST_TOKEN": TOKEN})


def _agent_process(broker_port: int, tmp_path: Path) -> subprocess.Popen[bytes]:
    with (tmp_path / "agent.log").open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "monitor.cli", "--no-log-json", "agent", "--location",
             "alta", "--municipality", "loppa", "--device", "loppa-srv1", "--class", "server",
             "--broker-port", str(broker_port), "--outbox", str(tmp_path / "agent.db")],
            stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)


async def _alta(config: Path, sink: Sink, monkeypatch: pytest.MonkeyPatch) -> EngineApp:
    monkeypatch.setenv("DV_TEST_HOOK", f"http://127.0.0.1:{sink.port}/alta")
    monkeypatch.setenv("DV_TEST_TOKEN", TOKEN)
    return await start_engine(load_config(config), "alta", http_port=0)


async def _until(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Wait for ``check``; return the monotonic time it came true."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        await asyncio.sleep(0.05)
    return time.monotonic()


def _status(app: EngineApp, key: tuple[str, str, str]) -> str | None:
    found = app.engine.ingest.state.components.get(key)
    return None if found is None else found.status


async def _down(broker: Mosquitto, location: str, device: str, src: str = "probe") -> None:
    event = {"v": 1, "ts": time.time(), "src": src, "seq": 1, "floor": 1,
             "device": device, "state": "down", "reason": "test"}
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier=src) as client:
        await client.publish(f"driftsvakt/v1/{location}/loppa/{device}/state/{src}",
                             json.dumps(event).encode(), qos=1)


async def _component_up(app: EngineApp, key: tuple[str, str, str]) -> float:
    location, component, instance = key
    wanted = (f'driftsvakt_component_up{{component="{component}",instance="{instance}",'
              f'location="{location}"}} ')
    async with aiohttp.ClientSession() as session, session.get(app.url + "/metrics") as resp:
        text = await resp.text()
    return float(next(line for line in text.splitlines()
                      if line.startswith(wanted)).rsplit(" ", 1)[1])


async def _hammerfest_alert_firing_at_both(app: EngineApp, locations: Locations,
                                           sink: Sink) -> None:
    await _until(lambda: _status(app, HF_ENGINE) == "online", 30, "hammerfest engine seen")
    await _down(locations.hammerfest, "hammerfest", HF_DEVICE)
    await _until(lambda: bool(sink.sent("hammerfest", "DeviceDown", HF_DEVICE)), 15,
                 "hammerfest notifies its own device")
    await _until(lambda: any(a.rule == "DeviceDown" and a.state == "firing"
                             for a in app.rules.current()), 10, "alta has the alert too")
    await asyncio.sleep(2)
    assert [] == sink.sent("alta", "DeviceDown")  # not alta's to send while its peer is up


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


async def test_a_sigkilled_engine_is_offline_by_its_will_and_its_peer_takes_over(
        tmp_path: Path, locations: Locations, sink: Sink,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Hammerfest's engine SIGKILLed; a Hammerfest device goes down just after: Alta
    sees the engine offline by its will and sends the notification within 30 s of the
    kill (group_wait 0 here)."""
    peer = _engine_process(locations.config, "hammerfest", sink, tmp_path / "hammerfest.log")
    app = await _alta(locations.config, sink, monkeypatch)
    try:
        await _until(lambda: _status(app, HF_ENGINE) == "online", 30, "hammerfest engine seen")
        killed = time.monotonic()
        _kill(peer)
        offline = await _until(lambda: _status(app, HF_ENGINE) == "offline", 10,
                               "the will reaches alta")
        await _down(locations.hammerfest, "hammerfest", HF_DEVICE)
        sent = await _until(lambda: bool(sink.sent("alta", "DeviceDown", HF_DEVICE)), 30,
                            "alta sends hammerfest's notification")
        print(f"\nwill seen at alta {offline - killed:.2f} s after SIGKILL; "
              f"hammerfest's alert sent by alta {sent - killed:.1f} s after it")
        assert offline - killed < 5  # the will, not the 15 s of silence
        assert sent - killed < 30
        assert 0 == await _component_up(app, HF_ENGINE)
        assert [] == sink.sent("hammerfest", "DeviceDown", HF_DEVICE)  # it was dead
        assert 1 == len(sink.sent("alta", "DeviceDown", HF_DEVICE))
    finally:
        _kill(peer)
        await app.stop()


async def test_a_location_behind_a_frozen_link_is_unreachable_and_taken_over(
        tmp_path: Path, locations: Locations, sink: Sink,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The link frozen while a Hammerfest alert fires (Hammerfest has notified it): Alta
    finds the location unreachable by silence, pages that, and takes Hammerfest's
    notifications over, without sending again what Hammerfest sent."""
    peer = _engine_process(locations.config, "hammerfest", sink, tmp_path / "hammerfest.log")
    app = await _alta(locations.config, sink, monkeypatch)
    location = ("hammerfest", "location", "hammerfest")
    try:
        await _hammerfest_alert_firing_at_both(app, locations, sink)
        await _until(lambda: _status(app, location) == "online", 5, "hammerfest reachable")
        frozen = time.monotonic()
        locations.link.freeze()  # no will can cross: only silence tells
        offline = await _until(lambda: _status(app, HF_ENGINE) == "offline", 30,
                               "the engine's silence")
        unreachable = await _until(lambda: _status(app, location) == "offline", 30,
                                   "the location's silence")
        paged = await _until(lambda: bool(sink.sent("alta", "LocationUnreachable")), 60,
                             "alta pages 'location unreachable'")
        taken = await _until(lambda: "hammerfest" in (app.notify.covering or set()), 60,
                             "alta covers hammerfest")
        print(f"\nafter the freeze: engine silent {offline - frozen:.1f} s, location "
              f"unreachable {unreachable - frozen:.1f} s, paged {paged - frozen:.1f} s, "
              f"hammerfest's notifications taken over {taken - frozen:.1f} s")
        assert max(paged, taken) - frozen < 60
        await asyncio.sleep(3)
        assert [] == sink.sent("alta", "DeviceDown", HF_DEVICE)  # Hammerfest sent it
        assert 0 == await _component_up(app, HF_ENGINE)
        assert peer.poll() is None  # hammerfest itself never stopped
        locations.link.thaw()
        await _until(lambda: _status(app, HF_ENGINE) == "online", 30, "the peer heard again")
        await _until(lambda: _status(app, location) == "online", 30, "reachable again")
    finally:
        _kill(peer)
        await app.stop()


async def test_a_sigkilled_agent_is_offline_at_the_engine_by_its_will(
        tmp_path: Path, locations: Locations, sink: Sink,
        monkeypatch: pytest.MonkeyPatch) -> None:
    app = await _alta(locations.config, sink, monkeypatch)
    key = ("alta", "agent", "loppa-srv1")
    agent = _agent_process(locations.alta.port, tmp_path)
    try:
        await _until(lambda: _status(app, key) == "online", 30, "the agent seen")
        killed = time.monotonic()
        _kill(agent)
        offline = await _until(lambda: _status(app, key) == "offline", 10, "the agent's will")
        print(f"\nagent's will seen {offline - killed:.2f} s after SIGKILL")
        assert 0 == await _component_up(app, key)
    finally:
        _kill(agent)
        await app.stop()


def _resolved(sink: Sink, engine: str, device: str) -> list[float]:
    return [at for at, path, body in sink.received
            if path == f"/{engine}" and body["status"] == "resolved"
            and any(a.get("device") == device for a in body["alerts"])]


async def test_a_planned_stop_takeover_and_hand_back_notify_once(
        tmp_path: Path, locations: Locations, sink: Sink,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Hammerfest's engine stopped (SIGTERM, the upgrade procedure) while a Hammerfest
    alert fires; Alta takes over; Hammerfest comes back; the device recovers. The
    engines share their notification log: exactly one FIRING and one RESOLVED."""
    peer = _engine_process(locations.config, "hammerfest", sink, tmp_path / "hammerfest.log")
    app = await _alta(locations.config, sink, monkeypatch)
    try:
        await _hammerfest_alert_firing_at_both(app, locations, sink)
        peer.send_signal(signal.SIGTERM)
        assert 0 == peer.wait(timeout=20)
        await _until(lambda: "hammerfest" in (app.notify.covering or set()), 30,
                     "alta takes over")
        await asyncio.sleep(3)  # a duplicate would go out now
        assert [] == sink.sent("alta", "DeviceDown", HF_DEVICE)
        peer = _engine_process(locations.config, "hammerfest", sink,
                               tmp_path / "hammerfest-2.log")
        await _until(lambda: "hammerfest" not in (app.notify.covering or {"hammerfest"}),
                     30, "hammerfest covers itself again")
        up = json.dumps({"v": 1, "ts": time.time(), "src": "probe", "seq": 2, "floor": 1,
                         "device": HF_DEVICE, "state": "up"}).encode()
        async with aiomqtt.Client("127.0.0.1", locations.hammerfest.port,
                                  identifier="probe") as client:
            await client.publish(f"driftsvakt/v1/hammerfest/loppa/{HF_DEVICE}/state/probe", up,
                                 qos=1)
        await _until(lambda: bool(_resolved(sink, "hammerfest", HF_DEVICE)
                                  or _resolved(sink, "alta", HF_DEVICE)), 30, "resolved")
        await asyncio.sleep(3)
        firing = sink.sent("hammerfest", "DeviceDown", HF_DEVICE) + sink.sent(
            "alta", "DeviceDown", HF_DEVICE)
        resolved = _resolved(sink, "hammerfest", HF_DEVICE) + _resolved(
            sink, "alta", HF_DEVICE)
        senders = sorted({path for _, path, body in sink.received
                          if body["alerts"][0]["alertname"] == "DeviceDown"})
        print(f"\nDeviceDown: {len(firing)} firing, {len(resolved)} resolved, by {senders}")
        assert (1, 1) == (len(firing), len(resolved))
    finally:
        _kill(peer)
        await app.stop()


async def test_an_acknowledgement_and_a_silence_made_during_a_partition_hold_at_both(
        tmp_path: Path, locations: Locations, sink: Sink,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With the link frozen, an operator at Hammerfest acknowledges the firing alert and
    silences another device; after the link comes back both hold at Alta too, with
    the operator as actor and an audit entry, and Alta notifies nothing they cover."""
    port = free_port()
    peer = _engine_process(locations.config, "hammerfest", sink, tmp_path / "hammerfest.log",
                           http_port=port)
    app = await _alta(locations.config, sink, monkeypatch)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        await _hammerfest_alert_firing_at_both(app, locations, sink)
        (alert,) = [a for a in app.rules.current() if a.rule == "DeviceDown"]
        locations.link.freeze()
        base = f"http://127.0.0.1:{port}/api/v1"
        async with aiohttp.ClientSession(headers=headers) as session:
            async with session.post(f"{base}/alerts/{alert.fingerprint}/ack",
                                    json={"comment": "på saken"}) as resp:
                assert 200 == resp.status, await resp.text()
            now = time.time()
            silence = {"matchers": ['device="hf-sw2"'], "comment": "bytter svitsj",
                       "starts_at": _iso(now - 60), "ends_at": _iso(now + 3600)}
            async with session.post(f"{base}/silences", json=silence) as resp:
                assert 201 == resp.status, await resp.text()
                sid = (await resp.json())["id"]
        await asyncio.sleep(5)
        assert sid not in app.rules.engine.silences  # partitioned: not yet
        healed = time.monotonic()
        locations.link.thaw()
        held = await _until(lambda: sid in app.rules.engine.silences and any(
            a.fingerprint == alert.fingerprint and a.ack_by == "kari"
            for a in app.rules.current()), 30, "the actions reach alta")
        print(f"\nacknowledgement and silence held at Alta {held - healed:.1f} s after the heal")
        audit = await app.store.audit_log(10)
        assert {("kari", "acknowledge"), ("kari", "create_silence")} <= {
            (entry[1], entry[2]) for entry in audit}
        await _down(locations.hammerfest, "hammerfest", "hf-sw2", "probe2")  # silenced
        await asyncio.sleep(4)
        assert [] == sink.sent("alta", "DeviceDown", "hf-sw2")
        assert [] == sink.sent("hammerfest", "DeviceDown", "hf-sw2")
    finally:
        _kill(peer)
        await app.stop()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def _lose_store(store: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{store}{suffix}").unlink(missing_ok=True)


def _rows(store: Path, query: str) -> set[tuple[object, ...]]:
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=10) as db:
        return set(db.execute(query).fetchall())


async def test_an_engine_that_lost_its_store_rebuilds_from_its_peer(
        tmp_path: Path, locations: Locations, sink: Sink,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Alta's engine stopped and its store deleted; `driftsvakt store rebuild` takes
    Hammerfest's; Alta starts on it: the alert log, the SLA ledger and the operators'
    silences equal Hammerfest's, and Alta sends nothing again."""
    port = free_port()
    peer = _engine_process(locations.config, "hammerfest", sink, tmp_path / "hammerfest.log",
                           http_port=port)
    app = await _alta(locations.config, sink, monkeypatch)
    estate = locations.config.parent
    token = tmp_path / "token"
    token.write_text(TOKEN, encoding="utf-8")
    try:
        await _hammerfest_alert_firing_at_both(app, locations, sink)
        now = time.time()
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as s, \
                s.post(f"http://127.0.0.1:{port}/api/v1/silences", json={
                    "matchers": ['device="hf-sw2"'], "comment": "c",
                    "starts_at": _iso(now - 60), "ends_at": _iso(now + 3600)}) as resp:
            assert 201 == resp.status
        await asyncio.sleep(2)
        assert 0 == await app.stop()
        _lose_store(estate / "engine-alta.db")
        rebuilt = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "monitor.cli", "store", "rebuild", "--config",
            str(locations.config), "--location", "alta", "--peer", f"http://127.0.0.1:{port}",
            "--token-file", str(token), cwd=ROOT, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await rebuilt.communicate()
        assert 0 == rebuilt.returncode, err.decode()
        print("\n" + out.decode().strip())
        app = await _alta(locations.config, sink, monkeypatch)
        await asyncio.sleep(3)
        mine, theirs = estate / "engine-alta.db", estate / "engine-hammerfest.db"
        for query in ("SELECT fingerprint, ts, state FROM alert_log WHERE fingerprint IN "
                      "(SELECT fingerprint FROM alert WHERE rule = 'DeviceDown')",
                      "SELECT component, src, start, state FROM sla_run",
                      "SELECT id FROM silence"):
            assert _rows(mine, query) == _rows(theirs, query), query
        assert 1 == len(_rows(mine, "SELECT id FROM silence"))
        assert [] == sink.sent("alta", "DeviceDown", HF_DEVICE)
    finally:
        _kill(peer)
        await app.stop()
