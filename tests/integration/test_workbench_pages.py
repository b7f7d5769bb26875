"""Every workbench page renders, escaped, with every kind of alert firing: on an empty
estate and on one of 3,000 devices, with hostile text (markup, a template expression,
CR/LF) in every field a device can influence: a state's reason, an interface's name
and alias, a filesystem's mount point, a trap's varbinds, a check's reason, and what
an agent says of itself when it registers (host name, system, AD object)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from monitor.app import EngineApp, start_engine
from monitor.config import load_config
from monitor.enrolment import proof
from monitor.events import Neighbour, Sample
from tests.feed import publish
from tests.integration.test_workbench import _until
from tests.servers import Mosquitto, free_port

pytestmark = pytest.mark.integration

TOKEN = "kari-admin-token-pages"
HOSTILE = "<script>alert(1)</script>{{7*7}}\r\nX-Evil: 1 «rådhus»"
# one alert of each kind: state (device, interface, check), trap, threshold, absence
KINDS = {"DeviceDown", "InterfaceDown", "CheckFailed", "LinkDownTrap", "DiskFull", "NoData"}


def estate(tmp: Path, broker_port: int, size: int) -> Path:
    devices: list[dict[str, Any]] = []
    checks: list[dict[str, Any]] = []
    if size:
        devices = [{"id": "core", "name": "Kjerne", "class": "switch", "site": "radhus"},
                   *({"id": f"acc-{i}", "name": f"Aksess {i}", "class": "switch",
                      "site": f"site-{i % 20}", "parent": "core"} for i in range(60))]
        devices += [{"id": f"srv-{i}", "name": f"Server {i}", "class": "server",
                     "site": f"site-{i % 20}", "parent": f"acc-{i % 60}",
                     "address": f"10.{i // 250}.{i % 250}.1"} for i in range(size - 65)]
        devices += [{"id": "bad-sw", "name": "Svitsj", "class": "switch", "site": "radhus",
                     "parent": "core"},
                    {"id": "bad-srv", "name": "Server", "class": "server", "site": "radhus",
                     "parent": "core"},
                    {"id": "bad-web", "name": "Web", "class": "server", "site": "radhus",
                     "parent": "core"},
                    {"id": "quiet", "name": "Stille", "class": "server", "site": "radhus",
                     "parent": "core", "interval": 60}]
        checks = [{"id": "fag", "kind": "http", "device": "bad-web",
                   "target": "http://127.0.0.1:9/"}]
    config = {
        "locations": [{"id": "alta", "name": "Alta"}],
        "municipalities": [{"id": "alta", "name": "Alta kommune"}],
        "sites": [{"id": "radhus", "name": "Rådhus", "location": "alta",
                   "municipality": "alta"},
                  *({"id": f"site-{i}", "name": f"Skole {i}", "location": "alta",
                     "municipality": "alta"} for i in range(20))],
        "devices": devices,
        "checks": checks,
        "brokers": [{"location": "alta", "host": "127.0.0.1", "port": broker_port}],
        "engine": {"http_host": "127.0.0.1", "http_port": free_port(),
                   "store": str(tmp / "engine-{location}.db")},
        "outbox": {"directory": str(tmp / "outbox"), "ack_timeout": 2.0},
        "users": [{"id": "kari", "role": "admin", "token": {"env": "PAGES_TOKEN"}}],
        "enrolment": {"tokens": [{"municipality": "alta", "token": {"env": "PAGES_TOKEN"}}]},
    }
    path = tmp / "estate.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


def hostile_events(now: float, size: int) -> list[tuple[str, str, str, float, dict[str, Any]]]:
    face = {"ifindex": "7", "ifname": HOSTILE, "ifalias": HOSTILE}
    events: list[tuple[str, str, str, float, dict[str, Any]]] = [
        ("alta", d, "state", now - 1, {"state": "up"})
        for d in ["core", *(f"acc-{i}" for i in range(60)),
                  *(f"srv-{i}" for i in range(size - 65)), "bad-sw", "bad-web"]]
    events += [
        ("alta", "quiet", "state", now - 600, {"state": "up"}),  # silent since: NoData
        ("alta", "bad-srv", "state", now - 300, {"state": "down", "reason": HOSTILE}),
        ("alta", "bad-srv", "metrics", now - 300, {"samples": [
            Sample(name="filesystem_used_ratio", value=0.99,
                   labels={"mountpoint": HOSTILE, "fstype": "ext4"})], "interval": 60.0}),
        ("alta", "bad-srv", "metrics", now - 2, {"samples": [
            Sample(name="filesystem_used_ratio", value=0.99,
                   labels={"mountpoint": HOSTILE, "fstype": "ext4"})], "interval": 60.0}),
        ("alta", "bad-sw", "metrics", now - 90, {"samples": [
            Sample(name="if_admin_status", value=1.0, labels=face),
            Sample(name="if_oper_status", value=2.0, labels=face)], "interval": 60.0}),
        ("alta", "bad-sw", "trap", now - 1, {
            "trap_oid": "1.3.6.1.6.3.1.1.5.3", "trap_name": "linkDown",
            "agent_addr": "10.1.0.1", "varbinds": [
                {"oid": "1.3.6.1.2.1.2.2.1.1.7", "type": "Integer", "value": "7",
                 "name": "ifIndex"},
                {"oid": "1.3.6.1.2.1.31.1.1.1.18.7", "type": "OctetString",
                 "value": HOSTILE, "name": "ifAlias"}]}),
        ("alta", "bad-sw", "neighbours", now - 1, {"neighbours": [
            Neighbour("lldp", HOSTILE, HOSTILE, HOSTILE, None, HOSTILE),
            Neighbour("lldp", "Gi0/1", "core", "Gi1/0/7"),
            Neighbour("cdp", "Gi0/9", "acc-3", "Gi0/48")]}),
        ("alta", "bad-web", "check", now - 200, {"check": "fag", "kind": "http", "ok": False,
                                                 "reason": HOSTILE}),
        ("alta", "bad-web", "check", now - 1, {"check": "fag", "kind": "http", "ok": False,
                                               "reason": HOSTILE}),
    ]
    return events


async def _page(session: aiohttp.ClientSession, app: EngineApp, path: str) -> str:
    async with session.get(app.url + path, allow_redirects=False,
                           headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
        body = await resp.text()
        assert resp.status == 200, (path, resp.status, body[:500])
    assert "<script" not in body.lower(), path
    return body


@pytest.mark.parametrize("size", [0, 3000])
async def test_every_page_renders_escaped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          size: int) -> None:
    monkeypatch.setenv("PAGES_TOKEN", TOKEN)
    with Mosquitto(tmp_path / "broker") as broker:
        config = load_config(estate(tmp_path, broker.port, size))
        app = await start_engine(config, "alta")
        try:
            async with aiohttp.ClientSession() as session:
                alerts: list[dict[str, Any]] = []
                if size:
                    await publish(config, tmp_path / "outbox.db", "pages",
                                  hostile_events(time.time(), size))

                    async def all_kinds() -> list[dict[str, Any]]:
                        async with session.get(
                                app.url + "/api/v1/alerts",
                                headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
                            found = (await resp.json())["alerts"]
                        names = {a["alertname"] for a in found if a["state"] == "firing"}
                        return found if KINDS <= names else []

                    alerts = await _until(all_kinds, f"{sorted(KINDS)} firing", 60)
                    await publish(config, tmp_path / "reg.db", "reg-pc1", [(
                        "alta", "reg-pc1", "register", time.time(), {
                            "hostname": HOSTILE, "os": HOSTILE, "dn": HOSTILE,
                            "addresses": ["10.9.9.9"], "machine_id": "m1",
                            "proof": proof(TOKEN, "alta", "reg-pc1", "m1")})])
                paths = ["/", "/problems", "/problems?state=acknowledged",
                         "/problems?state=suppressed&sort=newest",
                         "/problems?severity=critical&municipality=alta&site=radhus",
                         "/search?q=%3Cscript%3E", "/search?q=%7B%7B7*7%7D%7D",
                         "/search?q=srv", "/topology", "/registrations",
                         *(f"/sites/{s}" for s in config.sites),
                         *(f"/alerts/{a['id']}" for a in alerts)]
                if size:
                    paths += ["/devices/core", "/devices/bad-sw", "/devices/bad-srv",
                              "/devices/bad-web", "/devices/quiet", "/devices/srv-1",
                              "/devices/acc-3"]
                pages = {p: await _page(session, app, p) for p in paths}
                if size:
                    # the hostile text is shown, escaped, never run or expanded
                    for path in ("/devices/bad-sw", "/devices/bad-srv", "/devices/bad-web",
                                 "/problems", "/registrations"):
                        assert "&lt;script&gt;alert(1)&lt;/script&gt;{{7*7}}" in pages[path], (
                            path)
                    # a switch's neighbour table: the hostile neighbour escaped in its
                    # own section; the cabling that differs from the estate on the map
                    table = pages["/devices/bad-sw"].split('id="neighbours"', 1)[1]
                    assert "&lt;script&gt;alert(1)&lt;/script&gt;{{7*7}}" in table
                    assert '<a href="/devices/acc-3">acc-3</a>' in table
                    assert ('<tr data-device="acc-3"><td><a href="/devices/acc-3">acc-3</a></td>'
                            '<td>core</td><td>bad-sw</td><td>Gi0/48</td></tr>'
                            ) in pages["/topology"].replace("\n", "")
                    assert ('<p id="links-propose">Kablingen viser en annen forelder enn '
                            'inventaret: bad-sw.') in pages["/devices/acc-3"]
                    problems = pages["/problems"]
                    for name in KINDS:
                        assert name in problems, name
                    assert len([p for p in paths if p.startswith("/alerts/")]) >= len(KINDS)
        finally:
            await app.stop()
