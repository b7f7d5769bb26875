"""The estate read again by a running engine (a child process, real mosquitto): a
SIGHUP that adds a site with 50 devices and removes 10 keeps every other device's
state and alerts (acknowledgement included), resolves the removed devices' alerts as
retired rather than recovered, and puts the new devices under the rules at once; a
broken estate sent by ``POST /-/reload`` is refused as a whole, naming file, line and
key, and changes nothing."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import yaml

from demo.simulated_snmp import SimulatedAgents
from monitor.config import Device
from tests.estate import DEVICES
from tests.integration.test_rules_engine import ROOT, Rig
from tests.servers import Mosquitto, free_udp_port

pytestmark = pytest.mark.integration

HASVIK = [f"hv-sw{i}" for i in range(1, 31)]
REMOVED = HASVIK[:10]
KVALSUND = [f"kv-sw{i}" for i in range(1, 51)]


def _switch(device: str, site: str, n: int) -> dict[str, Any]:
    return {"id": device, "name": device, "class": "switch", "site": site,
            "address": f"127.0.{2 if site == 'hasvik' else 3}.{n}"}


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    with Mosquitto(tmp_path / "broker") as broker:
        rig = Rig(tmp_path, broker)
        estate = yaml.safe_load(rig.config.read_text(encoding="utf-8"))
        estate["sites"].append({"id": "hasvik", "name": "Hasvik", "location": "alta",
                                "municipality": "loppa"})
        estate["devices"] += [_switch(d, "hasvik", n) for n, d in enumerate(HASVIK, 1)]
        rig.config.write_text(yaml.safe_dump(estate, allow_unicode=True), encoding="utf-8")
        try:
            yield rig
        finally:
            rig.close()


def _devices(rig: Rig) -> dict[str, dict[str, Any]]:
    status, body = rig.api("GET", "/api/v1/devices")
    assert 200 == status
    return {d["id"]: d for d in body["devices"]}


def _alerts(rig: Rig) -> dict[str, dict[str, Any]]:
    _, body = rig.api("GET", "/api/v1/alerts?alertname=SwitchDown")
    return {a["labels"]["device"]: a for a in body["alerts"]}


def test_a_sighup_adds_a_site_removes_devices_and_keeps_the_rest(rig: Rig) -> None:
    rig.start()
    for device in [*DEVICES, *HASVIK]:
        down = device in (DEVICES[2], HASVIK[14], REMOVED[1])
        rig.publish(device, "state", state="down" if down else "up")
    rig.wait_for("SwitchDown", "firing")
    deadline = time.monotonic() + 20
    while len(_alerts(rig)) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    alerts = _alerts(rig)
    assert {DEVICES[2], HASVIK[14], REMOVED[1]} == set(alerts)
    gone = alerts[REMOVED[1]]["id"]
    status, _ = rig.api("POST", f"/api/v1/alerts/{alerts[DEVICES[2]]['id']}/ack",
                        body={"comment": "på vei"})
    assert 200 == status
    before = _devices(rig)
    assert 41 == len(before)

    estate = yaml.safe_load(rig.config.read_text(encoding="utf-8"))
    estate["sites"].append({"id": "kvalsund", "name": "Kvalsund", "location": "alta",
                            "municipality": "loppa"})
    estate["devices"] = [d for d in estate["devices"] if d["id"] not in REMOVED]
    estate["devices"] += [_switch(d, "kvalsund", n) for n, d in enumerate(KVALSUND, 1)]
    rig.config.write_text(yaml.safe_dump(estate, allow_unicode=True), encoding="utf-8")
    assert rig.engine is not None
    os.kill(rig.engine.pid, signal.SIGHUP)
    deadline = time.monotonic() + 20
    after = _devices(rig)
    while len(after) != 81 and time.monotonic() < deadline:
        time.sleep(0.2)
        after = _devices(rig)
    assert 41 - 10 + 50 == len(after)
    assert not set(REMOVED) & set(after)
    # every device that stayed is as it was: status, state, since when, last seen
    for device in set(before) - set(REMOVED):
        keep = ("status", "state", "state_since", "last_seen", "open_alerts")
        assert {k: before[device][k] for k in keep} == {k: after[device][k] for k in keep}, \
            device
    # the new ones are known, not yet heard from
    assert {"unknown"} == {after[d]["status"] for d in KVALSUND}, {
        after[d]["status"] for d in KVALSUND}
    alerts = _alerts(rig)
    assert "acknowledged" == alerts[DEVICES[2]]["state"]
    assert "ola" == alerts[DEVICES[2]]["acknowledged"]["by"]
    assert "firing" == alerts[HASVIK[14]]["state"]
    assert REMOVED[1] not in alerts  # the API lists open alerts: it resolved
    retired = [json.loads(line) for line in (rig.tmp / "engine.log").read_text(
        encoding="utf-8").splitlines() if '"alert_resolved"' in line]
    assert [REMOVED[1]] == [e["device"] for e in retired]
    # and says so: retired, not recovered
    status, alert = rig.api("GET", f"/api/v1/alerts/{gone}")
    assert (200, "resolved", "retired") == (status, alert["lifecycle"], alert["ended_by"])
    reloaded = [json.loads(line) for line in (rig.tmp / "engine.log").read_text(
        encoding="utf-8").splitlines() if '"estate_reloaded"' in line]
    assert 1 == len(reloaded)
    assert {"added": 50, "removed": 10, "changed": 0} == reloaded[0]["devices"]
    assert 1 == reloaded[0]["retired_alerts"]
    assert [] == reloaded[0]["at_restart"]
    # a new device is under the rules at once
    rig.publish(KVALSUND[6], "state", state="down")
    deadline = time.monotonic() + 10
    while KVALSUND[6] not in _alerts(rig) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "firing" == _alerts(rig)[KVALSUND[6]]["state"]
    status, body = rig.api("GET", "/api/v1/audit", who="kari")
    assert ["SIGHUP"] == [e["actor"] for e in body["audit"] if e["action"] == "reload_estate"]


def test_a_broken_estate_is_refused_as_a_whole(rig: Rig) -> None:
    rig.start()
    before = _devices(rig)
    estate = yaml.safe_load(rig.config.read_text(encoding="utf-8"))
    estate["devices"] += [_switch(d, "kvalsund", n) for n, d in enumerate(KVALSUND, 1)]
    estate["devices"] = [d for d in estate["devices"] if d["id"] not in REMOVED]
    rig.config.write_text(yaml.safe_dump(estate, allow_unicode=True), encoding="utf-8")
    status, body = rig.api("POST", "/-/reload", who="kari")
    assert 400 == status
    assert not body["reloaded"]
    # one problem per device naming the missing site, with file and line
    assert 50 == len(body["problems"]), body["problems"][:3]
    assert all("estate.yaml:" in p and "unknown site 'kvalsund'" in p
               for p in body["problems"]), body["problems"][:3]
    assert before == _devices(rig)
    assert "driftsvakt_estate_last_reload_success 0.0" in _metrics(rig)
    assert 403 == rig.api("POST", "/-/reload", who="ola")[0]
    # mended (the site added), the same call puts it in force and says what changed
    estate["sites"].append({"id": "kvalsund", "name": "Kvalsund", "location": "alta",
                            "municipality": "loppa"})
    rig.config.write_text(yaml.safe_dump(estate, allow_unicode=True), encoding="utf-8")
    status, body = rig.api("POST", "/-/reload", who="kari")
    assert (200, True) == (status, body["reloaded"]), body
    assert {"added": 50, "removed": 10, "changed": 0} == body["estate"]["devices"]
    assert len(before) + 40 == len(_devices(rig))
    assert "driftsvakt_estate_last_reload_success 1.0" in _metrics(rig)


def _metrics(rig: Rig) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{rig.http_port}/metrics",
                                timeout=5) as resp:
        return str(resp.read().decode())


async def test_the_poller_takes_a_reloaded_estate_on_sighup(tmp_path: Path) -> None:
    """`driftsvakt collect snmp` as a process, polling simulated agents every second:
    after a SIGHUP with an estate that drops one switch and adds another, the new one
    is polled and published, the dropped one no longer (a poll under way may finish),
    and the one that stayed goes on without a gap; a broken estate on the next
    SIGHUP is refused and polling goes on as it was."""
    port = free_udp_port()
    keep, drop, add = "sw-blir", "sw-borte", "sw-ny"
    addresses = {keep: "127.44.1.1", drop: "127.44.1.2", add: "127.44.1.3"}
    (tmp_path / "community").write_text("dv-reload\n", encoding="utf-8")

    def estate(devices: list[str]) -> dict[str, Any]:
        return {
            "locations": [{"id": "alta", "name": "Alta"}],
            "municipalities": [{"id": "loppa", "name": "Loppa kommune"}],
            "sites": [{"id": "oksfjord", "name": "Øksfjord", "location": "alta",
                       "municipality": "loppa"}],
            "brokers": [{"location": "alta", "host": "127.0.0.1", "port": broker.port}],
            "outbox": {"directory": str(tmp_path / "outbox"), "ack_timeout": 2.0},
            "snmp_profiles": [{"id": "sim", "version": "2c", "port": port, "timeout": 0.5,
                               "retries": 0,
                               "community": {"file": str(tmp_path / "community")}}],
            "devices": [{"id": d, "name": d, "class": "switch", "site": "oksfjord",
                         "address": addresses[d], "snmp_profile": "sim", "interval": 1}
                        for d in devices]}

    with Mosquitto(tmp_path / "broker") as broker:
        path = tmp_path / "estate.yaml"
        path.write_text(yaml.safe_dump(estate([keep, drop])), encoding="utf-8")
        agents = SimulatedAgents(
            [(Device(id=d, name=d, device_class="switch", site="oksfjord"), a)
             for d, a in addresses.items()], port=port, community="dv-reload", seed=5)
        await agents.start()
        polled: dict[str, list[float]] = {d: [] for d in addresses}
        log = (tmp_path / "snmp.log").open("wb")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "monitor.cli", "--log-json", "collect", "snmp", "--config",
            str(path), "--location", "alta", stdout=log, stderr=log, cwd=ROOT)
        try:
            async with aiomqtt.Client("127.0.0.1", broker.port) as client:
                await client.subscribe("driftsvakt/v1/alta/+/+/metrics/+", qos=1)

                async def listen(seconds: float) -> None:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(seconds):
                            async for message in client.messages:
                                # when it was polled (the publisher sends in
                                # batches: arrival says little)
                                body = json.loads(bytes(message.payload))
                                polled[str(message.topic).split("/")[4]].append(
                                    float(body["ts"]))

                await listen(5)
                assert (True, True, False) == (bool(polled[keep]), bool(polled[drop]),
                                               bool(polled[add])), polled
                path.write_text(yaml.safe_dump(estate([keep, add])), encoding="utf-8")
                os.kill(proc.pid, signal.SIGHUP)
                reloaded = time.time()
                await listen(6)
                assert [t for t in polled[add] if t > reloaded], polled
                assert not [t for t in polled[drop] if t > reloaded + 1], polled[drop]
                kept = sorted(t for t in polled[keep] if t > reloaded - 2)
                assert len(kept) >= 5
                assert max(b - a for a, b in itertools.pairwise(kept)) < 2.5
                path.write_text("devices: [\n", encoding="utf-8")  # broken
                os.kill(proc.pid, signal.SIGHUP)
                broken = time.time()
                await listen(3)
                assert [t for t in polled[add] if t > broken + 1], polled
        finally:
            proc.terminate()
            await proc.wait()
            agents.close()
            log.close()
    lines = [json.loads(line) for line in (tmp_path / "snmp.log").read_text(
        encoding="utf-8").splitlines() if line.startswith("{")]
    events = [e["event"] for e in lines if e["event"].startswith("collector_reload")]
    assert ["collector_reloaded", "collector_reload_refused"] == events
    (done,) = [e for e in lines if e["event"] == "collector_reloaded"]
    assert {"devices": 2, "ended": 1, "started": 1} == done["change"]
