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

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.test_rules_engine import ROOT, TOKENS, Rig
from tests.lldpbed import COMMUNITY, lldp_available, lldp_switches
from tests.servers import Mosquitto

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
