"""`driftsvakt import netbox`: NetBox's devices into the estate through pynetbox, the
real client, against a stand-in for NetBox's REST API (tests/netboxbed.py says why):
130 active devices over three pages, roles mapped to classes, a NetBox site mapped to
the estate's, the difference shown; written with --apply only once the estate passes
its check with it (the core router, named otherwise in NetBox, shared the address of
the estate's own declaration of it); then followed — an address changed, a device
decommissioned, the one declared by hand left alone; a device of a role
not mapped and one without a name named and left out; a wrong token and a NetBox
that does not answer refused with what happened, nothing written."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest
import yaml

from monitor.config import load_config
from tests.netboxbed import NetboxStandIn, Silent, device

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "0123456789abcdef0123456789abcdef01234567"  # a NetBox v1 token's shape


def _estate(tmp: Path, url: str, timeout: float = 10.0) -> Path:
    root = tmp / "estate"
    root.mkdir(exist_ok=True)
    (tmp / "netbox.token").write_text(TOKEN + "\n", encoding="utf-8")
    (root / "estate.yaml").write_text(yaml.safe_dump({
        "locations": [{"id": "alta", "name": "Alta"}],
        "municipalities": [{"id": "loppa", "name": "Loppa kommune"}],
        "sites": [{"id": "oksfjord", "name": "Øksfjord", "location": "alta",
                   "municipality": "loppa"},
                  {"id": "bergsfjord", "name": "Bergsfjord", "location": "alta",
                   "municipality": "loppa"}],
        "snmp_profiles": [{"id": "nett", "version": "2c",
                           "community": {"env": "DV_COMMUNITY"}}],
        "devices": [{"id": "loppa-core", "name": "Kjerne", "class": "router",
                     "site": "oksfjord", "address": "10.9.0.1"}],
        "netbox": {"url": url, "token": {"file": str(tmp / "netbox.token")},
                   "timeout": timeout,
                   "roles": {"access-switch": "switch", "router": "router",
                             "server": "server"},
                   "sites": {"loppa-oksfjord": "oksfjord"},
                   "snmp_profiles": {"access-switch": "nett", "router": "nett"}},
    }, allow_unicode=True), encoding="utf-8")
    return root


async def _import(root: Path, *extra: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor.cli", "import", "netbox", "--config", str(root),
        *extra, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin", "DV_COMMUNITY": "public"})
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _seed(netbox: NetboxStandIn) -> None:
    netbox.devices = [
        *(device(i, f"lop-sw{i:03d}", "access-switch", "loppa-oksfjord",
                 address=f"10.21.{i // 200}.{i % 200 + 1}/24") for i in range(1, 121)),
        *(device(200 + i, f"LOP-SRV{i}", "server", "bergsfjord", address=f"10.22.0.{i}/24",
                 tags=("drift", "vmware")) for i in range(1, 10)),
        device(300, "Kjerne", "router", "loppa-oksfjord", address="10.9.0.1/30"),
        device(301, "lop-gammel", "access-switch", "bergsfjord", status="offline"),
        device(302, "lop-patch1", "patch-panel", "bergsfjord"),
        device(303, None, "server", "bergsfjord"),
    ]


async def test_netbox_devices_come_and_go(tmp_path: Path) -> None:
    netbox = NetboxStandIn(TOKEN, max_page=50)  # NetBox set to serve 50 at most
    await netbox.start()
    try:
        _seed(netbox)
        root = _estate(tmp_path, netbox.url)
        owned = root / "imported-netbox.yaml"
        code, out, err = await _import(root)
        assert 0 == code, err
        lines = out.splitlines()
        # by hand: 120 switches, 9 servers and the router Kjerne (id kjerne); lop-gammel
        # is offline (not asked for), the patch panel's role and the unnamed one named
        assert f"import {netbox.url} into {owned}: 130 devices" == lines[0]
        assert "  + lop-srv1 (server, bergsfjord)" in lines
        assert "  + lop-sw001 (switch, oksfjord)" in lines
        assert [ln for ln in lines if not ln.startswith("  +")] == [
            f"import {netbox.url} into {owned}: 130 devices",
            "  130 new, 0 changed, 0 removed, 0 left alone, 0 unchanged",
            "  not imported: lop-patch1: role 'patch-panel' has no class (netbox.roles)",
            "  not imported: NetBox device #303: has no name",
            "nothing written: run again with --apply to write it"]
        assert not owned.exists()
        # pynetbox asks for everything (limit=0), NetBox gives a page of its most and
        # the next link; pynetbox asks for the rest at the offset, then follows links
        assert ["/api/dcim/devices/?status=active&limit=0",
                "/api/dcim/devices/?status=active&limit=132&offset=50",
                "/api/dcim/devices/?status=active&limit=50&offset=100"] == netbox.requests

        # the core router is in NetBox under another name than the estate's own
        # declaration of it: the estate's check refuses the file, nothing is written
        code, out, err = await _import(root, "--apply")
        assert 1 == code
        assert err.splitlines()[0] == "import refused, nothing written:"
        assert err.splitlines()[1].endswith(
            "devices[129].address: address 10.9.0.1 is also used by 'loppa-core'")
        assert not owned.exists()
        netbox.devices[129]["name"] = "loppa-core"  # NetBox named as the estate names it
        code, out, err = await _import(root, "--apply")
        assert 0 == code, err
        assert "  129 new, 0 changed, 0 removed, 1 left alone, 0 unchanged" in out
        assert "  ! loppa-core: declared by hand in the estate, left as it is" in out
        config = load_config(root)
        assert 130 == len(config.devices)  # 129 imported, loppa-core the estate's own
        sw = config.devices["lop-sw001"]
        assert ("switch", "oksfjord", "10.21.0.2", "nett") == (
            sw.device_class, sw.site, sw.address, sw.snmp_profile)
        srv = config.devices["lop-srv3"]
        assert ("LOP-SRV3", "10.22.0.3", None, ["drift", "vmware"]) == (
            srv.name, srv.address, srv.snmp_profile, srv.tags)

        # NetBox changes: an address, a switch decommissioned
        netbox.devices[0]["address"] = "10.21.9.9/24"
        netbox.devices[1]["status"] = "decommissioning"
        code, out, err = await _import(root, "--apply")
        assert 0 == code, err
        assert out.splitlines()[1:5] == [
            "  ~ lop-sw001: address 10.21.0.2 → 10.21.9.9",
            "  - lop-sw002 (no longer in the source: retired at the next reload)",
            "  ! loppa-core: declared by hand in the estate, left as it is",
            "  0 new, 1 changed, 1 removed, 1 left alone, 127 unchanged"]
        config = load_config(root)
        assert "lop-sw002" not in config.devices
        assert ("10.21.9.9", "Kjerne", "router") == (
            config.devices["lop-sw001"].address, config.devices["loppa-core"].name,
            config.devices["loppa-core"].device_class)

        # a wrong token: NetBox's own refusal, nothing written
        before = owned.read_text(encoding="utf-8")
        (tmp_path / "netbox.token").write_text("f" * 40 + "\n", encoding="utf-8")
        code, out, err = await _import(root, "--apply")
        assert 1 == code
        assert err.splitlines() == ["import refused, nothing written:",
                                    f"{netbox.url}: NetBox answered 403: Invalid token"]
        assert before == owned.read_text(encoding="utf-8")
    finally:
        await netbox.stop()


async def test_a_netbox_that_does_not_answer_is_refused_in_time(tmp_path: Path) -> None:
    silent = Silent()
    try:
        root = _estate(tmp_path, silent.url, timeout=1.0)
        started = time.monotonic()
        code, _, err = await _import(root, "--apply")
        took = time.monotonic() - started
        assert 1 == code
        assert err.startswith(f"import refused, nothing written:\n{silent.url}: "
                              "ReadTimeout: "), err
        assert took < 30  # the 1 s timeout, not the client's default of none
        assert not (root / "imported-netbox.yaml").exists()
    finally:
        silent.close()
