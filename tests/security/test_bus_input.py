"""What one message on the bus can do to an engine, tried as an attacker (or a broken
clock) would: a forged sequence jump, an event time far in the future or a week late,
a poisoned row already in the store. A real mosquitto and a real engine; the numbers
asserted are what the contract allows, not what the code happens to do.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import pytest

from monitor.app import EngineApp, start_engine
from monitor.config import load_config
from tests.estate import DEVICES, SERVER, write_estate
from tests.servers import Mosquitto

pytestmark = pytest.mark.integration

TOPIC = "driftsvakt/v1/alta/loppa/{device}/state/{src}"
SRC = "snmp-alta"


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[tuple[EngineApp, Mosquitto]]:
    with Mosquitto(tmp_path / "broker") as broker:
        app = await start_engine(load_config(write_estate(tmp_path, broker.port)), "alta",
                                 http_port=0)
        try:
            await _until(lambda: app.engine.connected, 10)
            yield app, broker
        finally:
            await app.stop()


async def _until(check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout} s"
        await asyncio.sleep(0.05)


def _event(seq: int, state: str = "up", *, ts: float | None = None, floor: int | None = None,
           device: str = DEVICES[0], src: str = SRC) -> tuple[str, bytes]:
    body: dict[str, Any] = {"v": 1, "ts": time.time() if ts is None else ts, "src": src,
                            "seq": seq, "device": device, "state": state}
    if floor is not None:
        body["floor"] = floor
    return TOPIC.format(device=device, src=src), json.dumps(body).encode()


async def _publish(broker: Mosquitto, events: list[tuple[str, bytes]],
                   identity: str = "test-publisher") -> None:
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier=identity) as client:
        for topic, payload in events:
            await client.publish(topic, payload, qos=1)


async def _get(app: EngineApp, path: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(app.url + path) as resp:
        await resp.read()
        return resp.status


async def _rejected(app: EngineApp, reason: str) -> float:
    async with aiohttp.ClientSession() as session, session.get(app.url + "/metrics") as resp:
        text = await resp.text()
    wanted = f'driftsvakt_events_rejected_total{{reason="{reason}"}} '
    return float(next(line for line in text.splitlines()
                      if line.startswith(wanted)).rsplit(" ", 1)[1])


async def test_a_forged_sequence_jump_does_not_blind_the_real_source(
        engine: tuple[EngineApp, Mosquitto]) -> None:
    """The real source's 10 events, one forged event with its src at seq = floor =
    2^63-1, then the real source's next 100: all 110 real events applied, in order;
    the forgery dead-lettered, counted, never progress."""
    app, broker = engine
    await _publish(broker, [_event(seq, floor=1) for seq in range(1, 11)], "real")
    await _until(lambda: app.engine.ingest.progress.get(SRC) == 10, 10)
    await _publish(broker, [_event(2**63 - 1, "down", floor=2**63 - 1)], "forger")
    await _publish(broker, [_event(seq, floor=1) for seq in range(11, 111)], "real")
    await _until(lambda: app.engine.ingest.progress.get(SRC) == 110, 10)
    applied, events = (await app.store.source_counts())[SRC]
    assert (110, 110) == (applied, events)
    assert 1 == await _rejected(app, "seq_jump")
    assert ["seq_jump"] == [d.reason for d in await app.store.dead_letters()]
    assert "up" == app.engine.ingest.state.devices[DEVICES[0]].state


async def test_an_event_naming_another_source_is_refused_whatever_its_seq(
        engine: tuple[EngineApp, Mosquitto]) -> None:
    """A PC agent's credential publishes only on its own source's topic (the broker's
    ACL, tests/security/test_broker_auth.py): there, events naming the real source
    at its next seq and at 2^63-1, and the same on a topic naming no source, are
    refused and use up nothing; the real source's 100 events are all applied."""
    app, broker = engine
    forged = [_event(seq, "down", floor=seq) for seq in (1, 2**63 - 1)]
    await _publish(broker, [(topic.replace(f"/{SRC}", "/pc-forger"), payload)
                            for topic, payload in forged]
                   + [(topic.rsplit("/", 1)[0], payload) for topic, payload in forged],
                   "forger")
    await _publish(broker, [_event(seq, floor=1) for seq in range(1, 101)], "real")
    await _until(lambda: app.engine.ingest.progress.get(SRC) == 100, 10)
    applied, events = (await app.store.source_counts())[SRC]
    assert (100, 100) == (applied, events)
    assert (2, 2) == (await _rejected(app, "src_mismatch"), await _rejected(app, "unbound_src"))
    assert "up" == app.engine.ingest.state.devices[DEVICES[0]].state


async def test_an_event_time_far_ahead_is_refused_and_every_page_answers(
        engine: tuple[EngineApp, Mosquitto]) -> None:
    """ts = 1e12 (year 33658): refused as future; /metrics, / and the device API 200."""
    app, broker = engine
    await _publish(broker, [_event(1, floor=1), _event(2, "down", ts=1e12)])
    deadline = time.monotonic() + 10
    while await _rejected(app, "future") < 1:
        assert time.monotonic() < deadline, "the future event not rejected within 10 s"
        await asyncio.sleep(0.05)
    assert 1 == app.engine.ingest.progress.get(SRC)  # never taken as progress
    assert "up" == app.engine.ingest.state.devices[DEVICES[0]].state
    assert [200, 200, 200] == [await _get(app, path)
                               for path in ("/metrics", "/", "/api/v1/devices")]


async def test_a_source_two_hours_ahead_does_not_hide_a_later_real_down(
        engine: tuple[EngineApp, Mosquitto]) -> None:
    """A collector with a clock 2 h fast says "up"; the real collector then says
    "down" at the right time: the down stands (ordering by event time alone would
    have kept the fast clock's "up" for 2 h)."""
    app, broker = engine
    fast = "snmp-alta-fastclock"
    await _publish(broker, [_event(1, floor=1, src=fast, ts=time.time() + 7200)], "fast")
    await _publish(broker, [_event(1, "down", floor=1)], "real")
    await _until(lambda: app.engine.ingest.progress.get(SRC) == 1, 10)
    assert "down" == app.engine.ingest.state.devices[DEVICES[0]].state
    assert 1 == await _rejected(app, "future")
    assert fast not in app.engine.ingest.progress  # the fast clock's event counts for nothing


async def test_an_event_older_than_any_outbox_keeps_is_refused(
        engine: tuple[EngineApp, Mosquitto]) -> None:
    """Nine days late: no outbox holds an event that long (7 days), so it is refused;
    three days late is a real backlog after an outage, and is applied."""
    app, broker = engine
    now = time.time()
    await _publish(broker, [_event(1, "down", floor=1, ts=now - 9 * 86400),
                            _event(2, "down", ts=now - 3 * 86400)])
    await _until(lambda: app.engine.ingest.progress.get(SRC) == 2, 10)
    assert 1 == await _rejected(app, "late")
    status = app.engine.ingest.state.devices[DEVICES[0]]
    assert ("down", round(now - 3 * 86400, 3)) == (status.state, round(status.last_seen, 3))


async def test_a_poisoned_row_already_in_the_store_fails_no_page(tmp_path: Path) -> None:
    """A device row with last_seen = 1e12, written before events were bounded: the
    engine starts on it, and /metrics, / and the device API still answer 200."""
    with Mosquitto(tmp_path / "broker") as broker:
        config = load_config(write_estate(tmp_path, broker.port))
        first = await start_engine(config, "alta", http_port=0)
        assert 0 == await first.stop()
        with sqlite3.connect(tmp_path / "engine-alta.db") as db:
            db.execute("INSERT INTO device_status (device, last_seen, state, state_since, "
                       "reason) VALUES (?, 1e12, 'up', 1e12, NULL)", (DEVICES[1],))
        app = await start_engine(config, "alta", http_port=0)
        try:
            assert [200, 200, 200] == [await _get(app, path)
                                       for path in ("/metrics", "/", "/api/v1/devices")]
        finally:
            assert 0 == await app.stop()


def _rss_bytes() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


async def test_one_device_cannot_grow_the_engine_without_bound(
        engine: tuple[EngineApp, Mosquitto]) -> None:
    """300,000 distinct series from one device (60 events of 5,000): the first 20,000
    (engine.max_series_per_device) are kept, 280,000 refused and counted for that
    device, /metrics still answers; a sample with a reserved label is refused."""
    app, broker = engine
    device = DEVICES[2]
    before = _rss_bytes()
    events = []
    for seq in range(1, 61):
        samples = [{"name": f"s{(seq - 1) * 5000 + i}", "value": 1.0} for i in range(5000)]
        topic = TOPIC.format(device=device, src="flood").replace("/state/", "/metrics/")
        events.append((topic, json.dumps(
            {"v": 1, "ts": time.time(), "src": "flood", "seq": seq, "floor": 1,
             "device": device, "samples": samples}).encode()))
    spoof = json.dumps({"v": 1, "ts": time.time(), "src": "flood", "seq": 61,
                        "device": device, "samples": [
                            {"name": "x", "value": 1.0, "labels": {"device": DEVICES[0]}}]})
    events.append((events[0][0], spoof.encode()))
    await _publish(broker, events, "flood")
    await _until(lambda: app.engine.ingest.progress.get("flood") == 61, 60)
    state = app.engine.ingest.state
    grown = (_rss_bytes() - before) / 2**20
    print(f"\n300,000 series offered: {state.series_per_device[device]} kept, "
          f"{state.series_refused[device]} refused; RSS +{grown:.0f} MiB")
    assert (20_000, 280_000) == (state.series_per_device[device],
                                 state.series_refused[device])
    assert 200 == await _get(app, "/metrics")
    async with aiohttp.ClientSession() as session, session.get(app.url + "/metrics") as resp:
        text = await resp.text()
    assert f'device="{device}"' in next(line for line in text.splitlines() if line.startswith(
        "driftsvakt_device_series_refused_total{"))
    assert text.count("\ns") < 20_001  # the device's own series: at most the cap
    assert 1 == await _rejected(app, "invalid")  # the spoofed label, and nothing else
    assert 0 == await _rejected(app, "oversize")
    assert grown < 150  # 262 MiB for these 300,000 series before the cap


async def test_only_network_gear_speaks_of_links(engine: tuple[EngineApp, Mosquitto]) -> None:
    """A server (an agent's device, on its own source) sends neighbour tables saying a
    switch hangs on it, then says it is down with the switch: refused as ``topology``
    and counted, the switch is shown down, not hidden behind the server. The same
    table from the switch the server hangs on (network gear, the poller's source) is
    taken: the switch behind it is then placed there by the links."""
    app, broker = engine
    core, victim = DEVICES[0], DEVICES[5]  # core: the server's declared parent

    def tables(device: str, src: str, seq: int, names: list[str]) -> tuple[str, bytes]:
        rows = [{"protocol": "lldp", "local_port": f"p{i}", "name": name, "port": "uplink"}
                for i, name in enumerate(names)]
        return (TOPIC.format(device=device, src=src).replace("/state/", "/neighbours/"),
                json.dumps({"v": 1, "ts": time.time(), "src": src, "seq": seq, "floor": 1,
                            "device": device, "neighbours": rows}).encode())

    await _publish(broker, [tables(SERVER, "agent-srv", 1, [core, victim]),
                            _event(2, "down", device=SERVER, src="agent-srv")], "agent")
    await _publish(broker, [_event(1, "up", device=victim, floor=1),
                            _event(2, "down", device=victim)], "real")
    await _until(lambda: app.engine.ingest.progress.get(SRC) == 2, 10)
    assert 1 == await _rejected(app, "topology")
    assert ["topology"] == [d.reason for d in await app.store.dead_letters()]
    async with aiohttp.ClientSession() as session, \
            session.get(f"{app.url}/api/v1/devices/{victim}") as resp:
        shown = await resp.json()
    assert ("down", [], None) == (shown["status"], shown["parents"], shown["parents_from"])

    await _publish(broker, [tables(core, SRC, 3, [victim])], "real")
    await _until(lambda: app.engine.ingest.progress.get(SRC) == 3, 10)
    async with aiohttp.ClientSession() as session, \
            session.get(f"{app.url}/api/v1/devices/{victim}") as resp:
        shown = await resp.json()
    assert ([core], "links") == (shown["parents"], shown["parents_from"])
    assert 1 == await _rejected(app, "topology")
