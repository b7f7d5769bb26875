"""The SNMP poller against a real net-snmp snmpd started by the test on loopback."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest

from collectors.common.publisher import Emitter
from collectors.snmp.modules import load_modules
from collectors.snmp.poller import SnmpPoller
from monitor.config import Config, load_config
from tests.servers import Mosquitto, Snmpd, free_port, wait_port

pytestmark = pytest.mark.integration


@dataclass
class RecordingEmitter(Emitter):
    """Records what the poller emits (our own Emitter protocol; the publisher's path to
    the broker is tested on its own in test_pipeline and test_no_loss)."""

    events: list[tuple[float, str, str, dict[str, Any]]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def emit(self, municipality: str, device: str, stream: str, ts: float,
                   **body: Any) -> int:
        self.events.append((time.monotonic(), device, stream, body))
        self.changed.set()
        return len(self.events)

    async def until(self, predicate: Callable[[tuple[float, str, str, dict[str, Any]]], bool]
                    ) -> float:
        """Wait for an event matching ``predicate``; return when it was emitted."""
        while True:
            for event in self.events:
                if predicate(event):
                    return event[0]
            self.changed.clear()
            await self.changed.wait()


@pytest.fixture
def snmpd(tmp_path: Path) -> Iterator[Snmpd]:
    agent = Snmpd(tmp_path / "snmpd").start()
    try:
        yield agent
    finally:
        agent.stop()


def estate(tmp_path: Path, agent: Snmpd, monkeypatch: pytest.MonkeyPatch,
           auth_key: str = Snmpd.AUTH_KEY, interval: float = 60,
           priv_key: str = Snmpd.PRIV_KEY) -> Config:
    monkeypatch.setenv("DV_COMMUNITY", Snmpd.COMMUNITY)
    monkeypatch.setenv("DV_AUTH", auth_key)
    monkeypatch.setenv("DV_PRIV", priv_key)
    path = tmp_path / "estate.yaml"
    common = {"port": agent.port, "timeout": 0.5, "retries": 1}
    path.write_text(yaml.safe_dump({
        "locations": [{"id": "alta", "name": "Alta"}],
        "municipalities": [{"id": "alta", "name": "Alta kommune"}],
        "sites": [{"id": "radhus", "name": "Rådhus", "location": "alta",
                   "municipality": "alta"}],
        "snmp_profiles": [
            {"id": "v1", "version": "1", "community": {"env": "DV_COMMUNITY"}, **common},
            {"id": "v2c", "version": "2c", "community": {"env": "DV_COMMUNITY"}, **common},
            {"id": "v3", "version": "3", "user": Snmpd.USER, "auth_protocol": "SHA-256",
             "auth_key": {"env": "DV_AUTH"}, "priv_protocol": "AES",
             "priv_key": {"env": "DV_PRIV"}, **common},
        ],
        "devices": [
            {"id": "srv-v2c", "name": "v2c", "class": "server", "site": "radhus",
             "address": "127.0.0.1", "snmp_profile": "v2c", "interval": interval},
            {"id": "srv-v3", "name": "v3", "class": "server", "site": "radhus",
             "address": "127.0.0.2", "snmp_profile": "v3", "interval": interval},
            {"id": "srv-v1", "name": "v1", "class": "server", "site": "radhus",
             "address": "127.0.0.3", "snmp_profile": "v1", "interval": interval},
        ],
    }), encoding="utf-8")
    return load_config(path)  # the agent listens on 127.0.0.1, .2 and .3


async def _poll(config: Config, device: str) -> dict[tuple[str, tuple[tuple[str, str], ...]],
                                                    float]:
    poller = SnmpPoller(config, "alta", RecordingEmitter(), load_modules())
    samples = await poller.poll(config.devices[device])
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in samples}


@pytest.mark.parametrize(("device", "octets"), [
    ("srv-v2c", "1.3.6.1.2.1.31.1.1.1.6"),
    ("srv-v3", "1.3.6.1.2.1.31.1.1.1.6"),
    # SNMPv1 has no Counter64: snmpd skips ifHCInOctets, the poller falls back to ifInOctets
    ("srv-v1", "1.3.6.1.2.1.2.2.1.10"),
])
async def test_values_equal_snmpbulkwalk(tmp_path: Path, snmpd: Snmpd,
                                         monkeypatch: pytest.MonkeyPatch, device: str,
                                         octets: str) -> None:
    """v1 (GETNEXT), v2c and v3 authPriv (SHA-256 + AES) poll the same values net-snmp's
    own snmpbulkwalk reads; moving counters lie between a walk before and one after."""
    config = estate(tmp_path, snmpd, monkeypatch)
    before = snmpd.bulkwalk(octets)
    got = await _poll(config, device)
    after = snmpd.bulkwalk(octets)
    names = snmpd.bulkwalk("1.3.6.1.2.1.31.1.1.1.1")
    oper = snmpd.bulkwalk("1.3.6.1.2.1.2.2.1.8")
    for oid, name in names.items():
        index = oid.rsplit(".", 1)[1]
        labels = (("ifindex", index), ("ifname", name))
        assert float(oper[f"1.3.6.1.2.1.2.2.1.8.{index}"]) == got[("if_oper_status", labels)]
        polled = got[("if_in_octets", labels)]
        key = f"{octets}.{index}"
        assert float(before[key]) <= polled <= float(after[key])
    info = [k for k in got if k[0] == "snmp_system_info"]
    assert [("snmp_system_info", (("sys_descr", info[0][1][0][1]),
                                  ("sys_name", "driftsvakt-test-agent"),
                                  ("sys_object_id", info[0][1][2][1])))] == info
    storage = snmpd.bulkwalk("1.3.6.1.2.1.25.2.3.1.5")
    sizes = {k[1][0][1]: v for k, v in got.items() if k[0] == "hr_storage_size_units"}
    assert {oid.rsplit(".", 1)[1]: float(v) for oid, v in storage.items()} == sizes
    assert any(k[0] == "ucd_load_average" for k in got)


async def test_wrong_v3_key_is_auth_error_not_down(tmp_path: Path, snmpd: Snmpd,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A wrong authentication key is reported as auth_error; the device is not down."""
    config = estate(tmp_path, snmpd, monkeypatch, auth_key="wrong-key-456")
    emitter = RecordingEmitter()
    poller = SnmpPoller(config, "alta", emitter, load_modules())
    state = await poller.poll_and_publish(config.devices["srv-v3"])
    assert "auth_error" == state
    [(_, device, stream, body)] = emitter.events
    assert ("srv-v3", "state", "auth_error") == (device, stream, body["state"])
    assert "WrongDigest" in body["reason"]


async def test_a_wrong_privacy_key_is_auth_error_not_down(
        tmp_path: Path, snmpd: Snmpd, monkeypatch: pytest.MonkeyPatch) -> None:
    """The right authentication key with a wrong privacy key: the agent cannot decrypt
    the request; the poller says so (auth_error, DecryptionError), not down."""
    config = estate(tmp_path, snmpd, monkeypatch, priv_key="wrong-priv-456")
    emitter = RecordingEmitter()
    poller = SnmpPoller(config, "alta", emitter, load_modules())
    state = await poller.poll_and_publish(config.devices["srv-v3"])
    [(_, device, stream, body)] = emitter.events
    assert (state, device, stream, body["state"]) == ("auth_error", "srv-v3", "state",
                                                      "auth_error")
    assert "Decryption" in body["reason"]


async def test_stopped_agent_is_down_within_interval_plus_timeouts(
        tmp_path: Path, snmpd: Snmpd, monkeypatch: pytest.MonkeyPatch) -> None:
    """Poll every 2 s with 0.5 s timeout and 1 retry: after the agent stops, 'down' is
    published within 2 + 0.5 x 2 s."""
    config = estate(tmp_path, snmpd, monkeypatch, interval=2)
    emitter = RecordingEmitter()
    poller = SnmpPoller(config, "alta", emitter, load_modules())
    poller.devices = [config.devices["srv-v2c"]]
    runner = asyncio.create_task(poller.run())
    try:
        async with asyncio.timeout(10):
            await emitter.until(lambda e: e[2] == "metrics")
        snmpd.stop()
        stopped = time.monotonic()
        async with asyncio.timeout(10):
            down_at = await emitter.until(lambda e: e[2] == "state" and e[3]["state"] == "down")
        assert down_at - stopped <= 2 + 0.5 * 2 + 0.5  # + scheduling slack
    finally:
        poller.stop()
        await asyncio.wait_for(runner, 10)


async def test_no_false_timeouts_with_100_polls_in_flight(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """400 full server polls, 100 at a time, against one snmpd on 100 loopback addresses:
    not one times out. (pysnmp's default socket buffer made 311 of 400 time out here,
    each a false "down".)"""
    addresses = tuple(f"127.0.0.{i}" for i in range(1, 101))
    agent = Snmpd(tmp_path / "snmpd", addresses=addresses).start()
    try:
        monkeypatch.setenv("DV_COMMUNITY", Snmpd.COMMUNITY)
        path = tmp_path / "estate.yaml"
        path.write_text(yaml.safe_dump({
            "locations": [{"id": "alta", "name": "Alta"}],
            "municipalities": [{"id": "alta", "name": "Alta"}],
            "sites": [{"id": "dc", "name": "DC", "location": "alta", "municipality": "alta"}],
            "snmp_profiles": [{"id": "v2c", "version": "2c", "port": agent.port,
                               "community": {"env": "DV_COMMUNITY"}, "timeout": 3,
                               "retries": 0}],
            "devices": [{"id": f"srv{i}", "name": "s", "class": "server", "site": "dc",
                         "address": a, "snmp_profile": "v2c"}
                        for i, a in enumerate(addresses)],
        }), encoding="utf-8")
        config = load_config(path)
        poller = SnmpPoller(config, "alta", RecordingEmitter(), load_modules(),
                            concurrency=100)
        states: list[str] = []
        for _ in range(4):
            states += await asyncio.gather(*(poller.poll_and_publish(d)
                                             for d in poller.devices))
        assert {"up": 400} == {s: states.count(s) for s in set(states)}
        assert 0 == sum(poller.stats.errors.values())
    finally:
        agent.stop()


async def test_poller_metrics_count_what_happened(tmp_path: Path, snmpd: Snmpd,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The poller's own metrics: polls, durations, errors by kind, backoff, varbinds."""
    config = estate(tmp_path, snmpd, monkeypatch)
    poller = SnmpPoller(config, "alta", RecordingEmitter(), load_modules())
    for device in poller.devices:
        await poller.poll_and_publish(device)
    text = generate_latest(poller.metrics.registry).decode()
    assert 'driftsvakt_snmp_polls_total{location="alta"} 3.0' in text
    assert 'driftsvakt_snmp_poll_duration_seconds_count 3.0' in text
    assert 'driftsvakt_snmp_poll_errors_total{kind="timeout",location="alta"} 0.0' in text
    assert 'driftsvakt_snmp_devices_in_backoff{location="alta"} 0.0' in text
    varbinds = float(text.split('driftsvakt_snmp_varbinds_total{location="alta"} ')[1]
                     .split()[0])
    assert varbinds == poller.stats.varbinds > 50


def test_collect_snmp_serves_its_metrics(tmp_path: Path, snmpd: Snmpd,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """`driftsvakt collect snmp --http-port`, with a real broker, serves /metrics."""
    estate(tmp_path, snmpd, monkeypatch)
    with Mosquitto(tmp_path / "broker") as broker:
        estate_path = tmp_path / "estate.yaml"
        data = yaml.safe_load(estate_path.read_text(encoding="utf-8"))
        data["brokers"] = [{"location": "alta", "host": "127.0.0.1", "port": broker.port}]
        data["outbox"] = {"directory": str(tmp_path / "outbox")}
        estate_path.write_text(yaml.safe_dump(data), encoding="utf-8")
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "monitor.cli", "collect", "snmp", "--config",
             str(estate_path), "--location", "alta", "--http-port", str(port)],
            cwd=Path(__file__).resolve().parents[2], env=dict(os.environ),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_port(port, timeout=20)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                served = r.read().decode()
            assert "driftsvakt_snmp_poll_duration_seconds_bucket" in served
            assert 'driftsvakt_snmp_devices_in_backoff{location="alta"}' in served
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=15)
        assert 0 == proc.returncode, err.decode()[-2000:]


class FirstPollNow(random.Random):
    """The poller spreads first polls over the interval; here each starts at once."""

    def uniform(self, a: float, b: float) -> float:
        return a


async def test_what_is_behind_a_device_is_polled_at_once_when_it_answers_again(
        tmp_path: Path, snmpd: Snmpd, monkeypatch: pytest.MonkeyPatch) -> None:
    """A switch polled every second and a server behind it every 20 s, both down while
    the agent is stopped. When the switch answers again the server is polled at once,
    not at its next turn up to 20 s (in the estate up to 90 s) later, when a `for: 2m`
    could have fired on its stale 'down' as soon as the switch no longer suppressed it."""
    config = estate(tmp_path, snmpd, monkeypatch, interval=1)
    path = tmp_path / "estate.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["devices"][2].update(parent="srv-v2c", interval=20)  # srv-v1 behind srv-v2c
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    config = load_config(path)
    emitter = RecordingEmitter()
    poller = SnmpPoller(config, "alta", emitter, load_modules(), rng=FirstPollNow())
    poller.devices = [config.devices["srv-v2c"], config.devices["srv-v1"]]

    def state(device: str, value: str, after: float = 0.0) -> Callable[..., bool]:
        return lambda e: (e[0] > after and e[1] == device and e[2] == "state"
                          and e[3]["state"] == value)

    runner = asyncio.create_task(poller.run())
    try:
        async with asyncio.timeout(10):
            await emitter.until(lambda e: e[1] == "srv-v1" and e[2] == "metrics")
        snmpd.stop()
        async with asyncio.timeout(40):  # the server's next turn is 20 s after its first
            await emitter.until(state("srv-v1", "down"))
        restarted = time.monotonic()
        snmpd.start()
        async with asyncio.timeout(15):
            parent_up = await emitter.until(state("srv-v2c", "up", restarted))
            child_up = await emitter.until(state("srv-v1", "up", restarted))
        print(f"\nthe server behind answered {child_up - parent_up:.2f} s after its switch")
        assert child_up - parent_up < 2.0
        assert 1 == poller.stats.rechecks
    finally:
        poller.stop()
        await asyncio.wait_for(runner, 10)
