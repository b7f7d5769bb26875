"""The links in force, end to end over a live network: switches of network namespaces
cabled as a tree (tests/lldpbed.py: each runs net-snmp with lldpd as its AgentX
subagent), the real poller (`driftsvakt collect snmp`) and the real engine as
processes on a real mosquitto. The estate declares no parent at all, only the core as
where the walk starts.

The expected parents are the cabling the bed was built with; the failure is made in
the network (a switch's management link taken down, so it stops answering), and what
the engine must conclude — the switch down, the one behind it unreachable, one page —
follows from that cabling.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from collectors.snmp.modules import load_modules
from collectors.snmp.poller import SnmpPoller
from demo.simulated_snmp import SimulatedAgents
from monitor.config import Device, load_config
from tests.integration.test_rules_engine import ROOT, TOKENS, Rig
from tests.integration.test_snmp import FirstPollNow, RecordingEmitter
from tests.lldpbed import COMMUNITY, lldp_available, lldp_switches
from tests.servers import Mosquitto, free_udp_port

pytestmark = pytest.mark.integration

CABLING = {"core": None, "dist": "core", "acc1": "dist", "acc2": "dist"}
# a switch down pages after 8 s: long enough for the one behind it to be seen
# unreachable first, whichever of the two the poller finds silent first
RULES = ("rules:\n  - {name: SwitchDown, kind: state, severity: critical, "
         "select: {class: [switch]}, states: [down], for: 8s}\n")


def _until(what: str, check: Any, timeout: float = 40.0) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"{what}: not within {timeout} s; last: {last}")


def _page(rig: Rig, path: str) -> str:
    request = urllib.request.Request(f"http://127.0.0.1:{rig.http_port}{path}",
                                     headers={"Authorization": f"Bearer {TOKENS['ola']}"})
    with urllib.request.urlopen(request, timeout=5) as resp:
        return str(resp.read().decode())


def test_a_failed_switch_hides_what_the_links_hang_on_it(tmp_path: Path) -> None:
    why = lldp_available()
    if why is not None:
        pytest.skip(why)
    (tmp_path / "community").write_text(COMMUNITY + "\n", encoding="utf-8")
    with lldp_switches(tmp_path / "switches", CABLING) as switches, \
            Mosquitto(tmp_path / "broker") as broker:
        rig = Rig(tmp_path, broker)
        rig.rules.write_text(RULES, encoding="utf-8")
        estate = yaml.safe_load(rig.config.read_text(encoding="utf-8"))
        estate["snmp_profiles"] = [{"id": "lldp", "version": "2c", "timeout": 1,
                                    "retries": 0,
                                    "community": {"file": str(tmp_path / "community")}}]
        estate["devices"] += [{"id": d, "name": d, "class": "switch", "site": "oksfjord",
                               "address": s.address, "snmp_profile": "lldp", "interval": 2}
                              for d, s in switches.items()]
        estate["topology"] = {"roots": ["core"], "interval": 5}
        rig.config.write_text(yaml.safe_dump(estate, allow_unicode=True), encoding="utf-8")
        log = (tmp_path / "snmp.log").open("wb")
        poller = None
        try:
            rig.start()
            poller = subprocess.Popen(
                [sys.executable, "-m", "monitor.cli", "--log-json", "collect", "snmp",
                 "--config", str(rig.config), "--location", "alta"],
                stdout=log, stderr=log, env=rig.env, cwd=ROOT)

            def devices() -> dict[str, dict[str, Any]]:
                status, body = rig.api("GET", "/api/v1/devices")
                assert 200 == status
                return {d["id"]: d for d in body["devices"] if d["id"] in CABLING}

            def placed() -> dict[str, Any] | None:
                found = {d: (tuple(row["parents"]), row["parents_from"])
                         for d, row in devices().items()}
                return found if all(found[d][1] == "links" for d in ("dist", "acc1",
                                                                      "acc2")) else None

            found = _until("parents from the switches' LLDP tables", placed)
            assert {"core": ((), None), "dist": (("core",), "links"),
                    "acc1": (("dist",), "links"), "acc2": (("dist",), "links")} == found
            _until("every switch up", lambda: all(
                row["status"] == "up" for row in devices().values()))
            # the map draws the links' edges dashed, each as cabled
            page = _page(rig, "/topology")
            for child, parent in CABLING.items():
                if parent:
                    assert (f'class="edge found" data-from="{parent}" data-to="{child}"'
                            in page), child
            # the switch's page: its neighbours by port, the cabled ones watched
            table = _page(rig, "/devices/dist").split('id="neighbours"', 1)[1]
            for port, other in (("uplink", "core"), ("to-acc1", "acc1"), ("to-acc2", "acc2")):
                assert (f'<tr data-port="{port}"><td>{port} <span class="muted">(overvåket)'
                        f'</span></td><td><a href="/devices/{other}">{other}</a></td>'
                        in table), port
            assert 'id="parents-from"' in _page(rig, "/devices/acc1")
            _, body = rig.api("GET", "/api/v1/devices/dist")
            assert {("uplink", "core"), ("to-acc1", "acc1"), ("to-acc2", "acc2")} <= {
                (link["port"], link["neighbour"]) for link in body["links"]}
            assert ["acc1", "acc2"] == body["behind"]

            # dist fails, and acc1 behind it with it; acc2 still answers
            for name in ("dist", "acc1"):
                subprocess.run(["ip", "-n", switches[name].namespace, "link", "set",
                                "mgmt", "down"], check=True, timeout=10)
            failed_at = time.monotonic()
            _until("dist down, acc1 unreachable", lambda: {
                d: row["status"] for d, row in devices().items()} == {
                    "core": "up", "dist": "down", "acc1": "unreachable", "acc2": "up"})
            alert = rig.wait_for("SwitchDown", "firing", timeout=30)
            time.sleep(max(0.0, failed_at + 14 - time.monotonic()))  # acc1's for: passed
            _, body = rig.api("GET", "/api/v1/alerts?alertname=SwitchDown")
            assert [("dist", "firing")] == [(a["labels"]["device"], a["state"])
                                             for a in body["alerts"]]
            assert "dist" == alert["labels"]["device"]
            metrics = urllib.request.urlopen(
                f"http://127.0.0.1:{rig.http_port}/metrics", timeout=5).read().decode()
            assert 'driftsvakt_topology_placements{verdict="proposed"} 3.0' in metrics
            assert "driftsvakt_topology_links 3.0" in metrics
        finally:
            if poller is not None:
                poller.terminate()
                poller.wait(15)
            log.close()
            rig.close()
    lines = [json.loads(line) for line in (tmp_path / "snmp.log").read_text(
        encoding="utf-8").splitlines() if line.startswith("{")]
    assert not [e for e in lines if e["event"] == "neighbours_unread"]


def _tables_of(device: str) -> Callable[[tuple[float, str, str, dict[str, Any]]], bool]:
    return lambda e: e[1] == device and e[2] == "neighbours"


async def test_the_poller_repolls_what_the_links_hang_on_a_device_that_answers_again(
        tmp_path: Path) -> None:
    """The demo's simulated agents, cabled dist → acc (each announcing the other over
    LLDP); the poller's estate declares no parent. dist polled every second, acc every
    20 s; both fall silent, then answer again: acc is polled at once when dist
    answers — the poller read the cabling from the tables itself — not at its next turn
    up to 20 s later."""
    port = free_udp_port()
    (tmp_path / "community").write_text("dv-links\n", encoding="utf-8")
    addresses = {"core": "127.46.0.1", "dist": "127.46.0.2", "acc": "127.46.0.3"}
    cabled = {"core": None, "dist": "core", "acc": "dist"}
    path = tmp_path / "estate.yaml"
    path.write_text(yaml.safe_dump({
        "locations": [{"id": "alta", "name": "Alta"}],
        "municipalities": [{"id": "alta", "name": "Alta"}],
        "sites": [{"id": "s", "name": "S", "location": "alta", "municipality": "alta"}],
        "snmp_profiles": [{"id": "sim", "version": "2c", "port": port, "timeout": 0.5,
                           "retries": 0, "community": {"file": str(tmp_path / "community")}}],
        "devices": [{"id": d, "name": d, "class": "switch", "site": "s", "address": a,
                     "snmp_profile": "sim", "interval": 20 if d == "acc" else 1}
                    for d, a in addresses.items()],
        "topology": {"roots": ["core"]}}), encoding="utf-8")
    config = load_config(path)
    sims = SimulatedAgents([(Device(id=d, name=d, device_class="switch", site="s",
                                    parent=cabled[d]), a) for d, a in addresses.items()],
                           port=port, community="dv-links", seed=3)
    await sims.start()
    emitter = RecordingEmitter()
    poller = SnmpPoller(config, "alta", emitter, load_modules(), rng=FirstPollNow())

    def state(device: str, value: str, after: float = 0.0) -> Any:
        return lambda e: (e[0] > after and e[1] == device and e[2] == "state"
                          and e[3]["state"] == value)

    runner = asyncio.create_task(poller.run())
    try:
        async with asyncio.timeout(10):
            for device in addresses:
                await emitter.until(_tables_of(device))
        sims.outage("dist", 30)
        sims.outage("acc", 22)
        async with asyncio.timeout(40):  # acc's second turn, 20 s after its first
            await emitter.until(state("acc", "down"))
            silent = await emitter.until(state("dist", "down"))
        async with asyncio.timeout(20):
            parent_up = await emitter.until(state("dist", "up", silent))
            child_up = await emitter.until(state("acc", "up", silent))
        print(f"\nacc answered {child_up - parent_up:.2f} s after dist")
        assert child_up - parent_up < 2.0
        assert {"dist": ["acc"], "core": ["dist"]} == poller.children
        assert 1 == poller.stats.rechecks
    finally:
        poller.stop()
        await asyncio.wait_for(runner, 10)
        sims.close()
