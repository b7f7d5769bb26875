"""LLDP and CDP neighbour tables of real devices, served by snmpsim from
shared/testdata, read as `driftsvakt topology` reads them (the expected neighbours
are the recordings' rows decoded by hand: hex strings, ifName of each ifIndex); and
the command itself over the demo's simulated agents, which announce their cabling
over LLDP."""

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
from collectors.snmp.neighbours import neighbours
from demo.simulated_snmp import SimulatedAgents
from monitor.config import Device, SnmpProfile
from monitor.events import Neighbour
from monitor.secrets import SecretRef
from tests.lldpbed import COMMUNITY, lldp_available, lldp_switches
from tests.servers import free_udp_port
from tests.snmp_poll import shared_recordings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

EMULEX = "Emulex OneConnect 10Gb Multi function Adapter"


@pytest.fixture(scope="module")
def snmpsim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    yield from shared_recordings(tmp_path_factory)


async def _read(port: int, recording: str) -> list[Neighbour]:
    profile = SnmpProfile(id="rec", version="2c", port=port, timeout=10, retries=1,
                          community=SecretRef(env="UNUSED"))
    engine = SnmpEngine()
    try:
        return await neighbours(SnmpSession(engine, "127.0.0.1", profile,
                                            {"community": recording}))
    finally:
        engine.close_dispatcher()


async def test_a_catalyst_stack_with_125_access_points_by_cdp(snmpsim: int) -> None:
    """The C3750's cdpCacheTable: 125 rows, each an access point; the first row is
    ifIndex 10101 (ifName 4769312f302f31 = Gi1/0/1), cdpCacheDeviceId
    452d444a…6f72 = E-DJ-1F-101indoor, cdpCacheAddress ac1c0244 = 172.28.2.68."""
    found = await _read(snmpsim, "cisco-c3750")
    assert 125 == len(found)
    assert {"cdp"} == {n.protocol for n in found}
    assert Neighbour("cdp", "Gi1/0/1", "E-DJ-1F-101indoor", "GigabitEthernet0",
                     "172.28.2.68", "cisco AIR-CAP1602I-C-K9") == found[0]


async def test_a_procurve_with_servers_and_a_nexus_by_lldp_and_cdp(snmpsim: int) -> None:
    """The ProCurve reports the same five neighbours in both tables: three servers'
    NICs that announce only their MAC (chassis and port subtype macAddress), and a
    Nexus on port 17 twice — by its system name with a MAC chassis (Eth1/19) and by a
    locally named chassis (Ethernet1/19). CDP's address type 65535 is no IP: no
    address; 0a280113 and de18c0fc are 10.40.1.19 and 222.24.192.252."""
    found = await _read(snmpsim, "hpe-procurve-516733-b21")
    assert [(n.protocol, n.local_port, n.name, n.port, n.address) for n in found] == [
        ("cdp", "8", "e8:39:35:1a:ca:99", "e8:39:35:1a:ca:99", None),
        ("cdp", "15", "e8:39:35:1a:3c:65", "e8:39:35:1a:3c:65", None),
        ("cdp", "16", "e8:39:35:1a:ca:91", "e8:39:35:1a:ca:91", None),
        ("cdp", "17", "8c:60:4f:19:16:3a", "Eth1/19", "10.40.1.19"),
        ("cdp", "17", "NWPU-CA-5548-01(SSI183706KP)", "Ethernet1/19", "222.24.192.252"),
        ("lldp", "8", "e8:39:35:1a:ca:99", "e8:39:35:1a:ca:99", None),
        ("lldp", "15", "e8:39:35:1a:3c:65", "e8:39:35:1a:3c:65", None),
        ("lldp", "16", "e8:39:35:1a:ca:91", "e8:39:35:1a:ca:91", None),
        ("lldp", "17", "NWPU-CA-5548-01", "Eth1/19", None),
        ("lldp", "17", "NWPU-CA-5548-01(SSI183706KP)", "Ethernet1/19", None)]
    assert EMULEX == found[0].platform
    assert found[4].platform.endswith("Version 6.0(2)N2(3)N5K-C5548UP")


async def test_driftsvakt_topology_over_simulated_lldp(tmp_path: Path) -> None:
    """The demo's simulated agents cabled as the truth has it — core, a distribution
    switch under it, three access switches under that, one of them with a UPS — and
    announcing it over LLDP; the estate given to `driftsvakt topology` leaves one
    access switch without a parent and puts another under the wrong one. The command
    confirms the declared parents that hold, proposes the missing one, reports the
    wrong one, and names the ports: each child's port 1 (Gi1/0/1) is its uplink."""
    truth = {"core": None, "dist": "core", "acc1": "dist", "acc2": "dist", "acc3": "dist",
             "ups1": "acc1"}
    declared = {**truth, "acc2": None, "acc3": "acc1"}
    classes = {d: "ups" if d == "ups1" else "switch" for d in truth}
    addresses = {d: f"127.45.0.{i}" for i, d in enumerate(truth, 1)}
    port = free_udp_port()
    agents = SimulatedAgents(
        [(Device(id=d, name=d, device_class=classes[d], site="s", parent=p),  # type: ignore[arg-type]
          addresses[d]) for d, p in truth.items()], port=port, community="dv-topo", seed=1)
    (tmp_path / "community").write_text("dv-topo\n", encoding="utf-8")
    path = tmp_path / "estate.yaml"
    path.write_text(yaml.safe_dump({
        "locations": [{"id": "alta", "name": "Alta"}],
        "municipalities": [{"id": "alta", "name": "Alta"}],
        "sites": [{"id": "s", "name": "S", "location": "alta", "municipality": "alta"}],
        "snmp_profiles": [{"id": "sim", "version": "2c", "port": port, "timeout": 1,
                           "retries": 1, "community": {"file": str(tmp_path / "community")}}],
        "devices": [{"id": d, "name": d, "class": classes[d], "site": "s",
                     "address": addresses[d], "snmp_profile": "sim",
                     **({"parent": p} if p else {})} for d, p in declared.items()]}),
        encoding="utf-8")
    await agents.start()
    try:
        done = await asyncio.to_thread(subprocess.run, [
            sys.executable, "-m", "monitor.cli", "topology", "--config", str(path),
            "--location", "alta"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    finally:
        agents.close()
    assert 0 == done.returncode, done.stderr
    assert done.stdout.splitlines() == [
        "# 6 of 6 SNMP devices in alta answered",
        "acc1: parent dist (uplink Gi1/0/1) — as declared",
        "acc2: parent dist (uplink Gi1/0/1) — none declared: proposed",
        "acc3: parent dist (uplink Gi1/0/1) — declared acc1: differs",
        "dist: parent core (uplink Gi1/0/1) — as declared",
        "ups1: parent acc1 (uplink eth0) — as declared"]


async def test_driftsvakt_topology_over_live_lldp(tmp_path: Path) -> None:
    """Switches of network namespaces cabled as a tree — core, a distribution switch,
    two access switches under it — running lldpd as net-snmp's AgentX subagent, as a
    Linux switch or server does: `driftsvakt topology` reads their LLDP-MIB over SNMP
    and proposes the parents as cabled, each child's port "uplink" its uplink; the
    estate declares one access switch under the wrong parent and leaves the other
    without one."""
    why = lldp_available()
    if why is not None:
        pytest.skip(why)
    truth = {"core": None, "dist": "core", "acc1": "dist", "acc2": "dist"}
    declared = {**truth, "acc1": "core", "acc2": None}
    (tmp_path / "community").write_text(COMMUNITY + "\n", encoding="utf-8")
    with lldp_switches(tmp_path / "switches", truth) as switches:
        path = tmp_path / "estate.yaml"
        path.write_text(yaml.safe_dump({
            "locations": [{"id": "alta", "name": "Alta"}],
            "municipalities": [{"id": "alta", "name": "Alta"}],
            "sites": [{"id": "s", "name": "S", "location": "alta", "municipality": "alta"}],
            "snmp_profiles": [{"id": "lldp", "version": "2c", "timeout": 2, "retries": 1,
                               "community": {"file": str(tmp_path / "community")}}],
            "devices": [{"id": d, "name": d, "class": "switch", "site": "s",
                         "address": switches[d].address, "snmp_profile": "lldp",
                         **({"parent": p} if p else {})} for d, p in declared.items()]}),
            encoding="utf-8")
        done = await asyncio.to_thread(subprocess.run, [
            sys.executable, "-m", "monitor.cli", "topology", "--config", str(path),
            "--location", "alta"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert 0 == done.returncode, done.stderr
    assert done.stdout.splitlines() == [
        "# 4 of 4 SNMP devices in alta answered",
        "acc1: parent dist (uplink uplink) — declared core: differs",
        "acc2: parent dist (uplink uplink) — none declared: proposed",
        "dist: parent core (uplink uplink) — as declared"]
