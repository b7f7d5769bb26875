"""SNMP discovery: `driftsvakt discover` over a subnet of the demo's simulated agents
(real SNMP v2c on loopback) proposes the network gear the estate does not hold yet,
with the right classes, as YAML that loads into the estate; and each recording of a
real device in shared/testdata, served by snmpsim, is placed in the class the device
is (a Catalyst, a ProCurve and a D-Link switch, an APC rack PDU, an Eaton UPS, a
Linux and a Windows server)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from pysnmp.hlapi.v3arch.asyncio import SnmpEngine

from collectors.snmp.client import SnmpSession
from collectors.snmp.discovery import discover
from demo.simulated_snmp import SimulatedAgents
from monitor.config import Device, SnmpProfile, load_config
from monitor.secrets import SecretRef
from tests.servers import free_udp_port
from tests.snmp_poll import shared_recordings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
COMMUNITY = "dv-discover"
SUBNET = "127.41.7.0/28"  # 14 host addresses, 127.41.7.1-14
# what answers there: three devices the estate holds, six it does not yet
GEAR = {"core": ("switch", 1), "gw": ("router", 2), "fw": ("firewall", 3),
        "sw-hall": ("switch", 5), "sw-skole": ("switch", 6), "rtr-2": ("router", 7),
        "fw-2": ("firewall", 9), "ups-kjeller": ("ups", 10), "ap-bibliotek": ("ap", 12)}
IN_ESTATE = ("core", "gw", "fw")


def _estate(tmp: Path, port: int) -> Path:
    (tmp / "community").write_text(COMMUNITY + "\n", encoding="utf-8")
    path = tmp / "estate.yaml"
    path.write_text(yaml.safe_dump({
        "locations": [{"id": "alta", "name": "Alta"}],
        "municipalities": [{"id": "loppa", "name": "Loppa kommune"}],
        "sites": [{"id": "oksfjord", "name": "Øksfjord", "location": "alta",
                   "municipality": "loppa"}],
        "snmp_profiles": [{"id": "sim", "version": "2c", "port": port, "timeout": 1,
                           "retries": 1, "community": {"file": str(tmp / "community")}}],
        "devices": [{"id": d, "name": d, "class": GEAR[d][0], "site": "oksfjord",
                     "address": f"127.41.7.{GEAR[d][1]}", "snmp_profile": "sim"}
                    for d in IN_ESTATE],
    }, allow_unicode=True), encoding="utf-8")
    return path


async def test_a_subnet_scan_proposes_the_new_gear_with_its_classes(tmp_path: Path) -> None:
    port = free_udp_port()
    path = _estate(tmp_path, port)
    agents = SimulatedAgents(
        [(Device(id=d, name=d, device_class=c, site="oksfjord"), f"127.41.7.{n}")  # type: ignore[arg-type]
         for d, (c, n) in GEAR.items()], port=port, community=COMMUNITY, seed=3)
    await agents.start()
    try:
        done = await asyncio.to_thread(subprocess.run, [
            sys.executable, "-m", "monitor.cli", "discover", "--config", str(path),
            "--subnet", SUBNET, "--profile", "sim", "--site", "oksfjord"],
            capture_output=True, text=True, cwd=ROOT, timeout=120)
    finally:
        agents.close()
    assert 0 == done.returncode, done.stderr
    header = done.stdout.splitlines()[0]
    assert header.startswith(f"# driftsvakt discover {SUBNET} with profile sim: 14 "
                             "addresses asked in "), header
    assert header.endswith("9 answered: 6 new (1 ap, 1 firewall, 1 router, 2 switch, "
                           "1 ups), 3 already in the estate"), header
    proposed = yaml.safe_load(done.stdout)["devices"]
    # sysName is the device's id in the simulation: the proposal names it so
    assert {d["id"]: (d["class"], d["address"]) for d in proposed} == {
        d: (GEAR[d][0], f"127.41.7.{GEAR[d][1]}") for d in GEAR if d not in IN_ESTATE}
    assert "# known: core at 127.41.7.1" in done.stdout
    assert "class: switch  # BRIDGE-MIB: 24 bridge ports" in done.stdout
    # the proposal is estate: added as it stands, the config loads
    (tmp_path / "found.yaml").write_text(done.stdout, encoding="utf-8")
    both = tmp_path / "both"
    both.mkdir()
    path.rename(both / "estate.yaml")
    (tmp_path / "found.yaml").rename(both / "found.yaml")
    assert len(load_config(both).devices) == len(GEAR)


@pytest.fixture(scope="module")
def snmpsim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    yield from shared_recordings(tmp_path_factory)


@pytest.mark.parametrize(("recording", "device_class", "reason"), [
    ("cisco-c3750", "switch", "BRIDGE-MIB: 12 bridge ports"),
    ("hpe-procurve-516733-b21", "switch", "BRIDGE-MIB: 24 bridge ports"),
    # a layer-3 switch: it forwards IP (ipForwarding 1), and is a switch all the same
    ("dlink-des3200", "switch", "BRIDGE-MIB: 18 bridge ports"),
    ("apc-8641", "pdu", "PowerNet rPDU answers"),
    ("eaton-93e-80", "ups", "UPS-MIB answers"),
    ("ibm-x3550-m3", "server", "HOST-RESOURCES answers"),
    ("server-2003-5-2", "server", "HOST-RESOURCES answers"),
])
async def test_real_devices_are_placed_in_their_class(
        snmpsim: int, recording: str, device_class: str, reason: str) -> None:
    """The expected classes are what the devices are (model and vendor from each
    recording's own sysDescr); the reasons are the recorded values read by hand:
    dot1dBaseNumPorts 12, 24 and 18, rPDUIdentName, upsIdentModel, hrSystemUptime."""
    profile = SnmpProfile(id="rec", version="2c", port=snmpsim, timeout=5, retries=1,
                          community=SecretRef(env="UNUSED"))
    engine = SnmpEngine()
    try:
        scan = await discover("127.0.0.1/32", lambda a: SnmpSession(
            engine, a, profile, {"community": recording}), {})
    finally:
        engine.close_dispatcher()
    (found,) = scan.found
    assert (device_class, reason) == (found.device_class, found.reason)
