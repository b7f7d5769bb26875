"""The operator's workbench through an incident, in a real headless Chromium against a
real engine fed through mosquitto.

A distribution switch at a school goes down with 30 devices behind it (five access
switches with five devices each). The Problems page shows one alert naming 30 devices
behind; the 30 are ``unreachable`` on their pages, in the API and in /metrics. An
operator signs in, acknowledges the alert with a comment and silences an interface
alert from the Problems page; an administrator plans maintenance for the site; each
shows in the audit log and on the alert's timeline. The switch comes back and the
Problems page empties. Every page is captured at 1400 and 390 px wide into
``var/test-artifacts/workbench/``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from monitor.app import EngineApp, start_engine
from monitor.config import Config, load_config
from monitor.events import Sample
from tests.feed import publish
from tests.integration.test_sla_browser import (  # noqa: F401 - the fixture
    Browser,
    _submit,
    browser,
)
from tests.servers import Mosquitto, free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "var" / "test-artifacts" / "workbench"
TOKENS = {"kari": "kari-admin-token-wb", "ola": "ola-operator-token-wb"}
DIST = "alta-dist1"
ACCESS = [f"alta-acc{i}" for i in range(1, 6)]
LEAVES = [f"alta-skole-{a[-1]}-{j}" for a in ACCESS for j in range(1, 6)]
BEHIND = ACCESS + LEAVES  # 5 + 25 = 30 devices reach the centre only through DIST
FIREWALL = "alta-fw1"
WAN = {"ifindex": "1", "ifname": "Gi0/1", "ifalias": "WAN"}


def workbench_estate(tmp: Path, broker_port: int) -> Path:
    devices: list[dict[str, Any]] = [
        {"id": "alta-core", "name": "Kjernesvitsj Alta", "class": "switch",
         "site": "alta-radhus", "address": "127.0.2.1"},
        {"id": FIREWALL, "name": "Brannmur Alta", "class": "firewall", "site": "alta-radhus",
         "address": "127.0.2.2", "parent": "alta-core"},
        {"id": DIST, "name": "Distribusjon Komsa skole", "class": "switch",
         "site": "komsa-skole", "address": "127.0.2.10", "parent": "alta-core"},
    ]
    for i, acc in enumerate(ACCESS, 1):
        devices.append({"id": acc, "name": f"Aksess {i} Komsa", "class": "switch",
                        "site": "komsa-skole", "address": f"127.0.2.{10 + i}", "parent": DIST})
    for n, leaf in enumerate(LEAVES):
        devices.append({"id": leaf, "name": f"Server {leaf[-3:]}", "class": "server",
                        "site": "komsa-skole", "address": f"127.0.3.{n + 1}",
                        "parent": ACCESS[n // 5]})
    config = {
        "locations": [{"id": "alta", "name": "Alta"}, {"id": "hammerfest", "name": "Hammerfest"}],
        "municipalities": [{"id": "alta", "name": "Alta kommune"}],
        "sites": [{"id": "alta-radhus", "name": "Alta rådhus", "location": "alta",
                   "municipality": "alta"},
                  {"id": "komsa-skole", "name": "Komsa skole", "location": "alta",
                   "municipality": "alta"}],
        "devices": devices,
        "brokers": [{"location": "alta", "host": "127.0.0.1", "port": broker_port},
                    {"location": "hammerfest", "host": "127.0.0.1", "port": broker_port}],
        "engine": {"http_host": "127.0.0.1", "http_port": free_port(),
                   "store": str(tmp / "engine-{location}.db"),
                   "grafana_url": "http://grafana.invalid"},
        "outbox": {"directory": str(tmp / "outbox"), "ack_timeout": 2.0},
        "users": [{"id": "kari", "role": "admin", "token": {"env": "WB_TOKEN_KARI"}},
                  {"id": "ola", "role": "operator", "token": {"env": "WB_TOKEN_OLA"}}],
    }
    path = tmp / "estate.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


def _up(device: str, ts: float) -> tuple[str, str, str, float, dict[str, Any]]:
    return ("alta", device, "state", ts, {"state": "up"})


def _down(device: str, ts: float) -> tuple[str, str, str, float, dict[str, Any]]:
    return ("alta", device, "state", ts, {"state": "down",
                                          "reason": "no response from SNMP agent"})


async def _api(session: aiohttp.ClientSession, app: EngineApp, path: str,
               who: str = "kari") -> Any:
    async with session.get(app.url + path,
                           headers={"Authorization": f"Bearer {TOKENS[who]}"}) as resp:
        assert resp.status == 200, (path, await resp.text())
        return await resp.json()


async def _until(check: Any, what: str, within: float = 30) -> Any:
    deadline = time.monotonic() + within
    while True:
        found = await check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(0.2)


async def _shoot(page: Browser, name: str) -> None:
    """The page as it is, at a desktop's and at a phone's width, into the artifacts."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for width in (1400, 390):
        await page.call("Emulation.setDeviceMetricsOverride", width=width, height=900,
                        deviceScaleFactor=1, mobile=width < 600)
        height = await page.js("document.documentElement.scrollHeight")
        shot = await page.call("Page.captureScreenshot", format="png",
                               captureBeyondViewport=True,
                               clip={"x": 0, "y": 0, "width": width,
                                     "height": min(int(height), 6000), "scale": 1})
        (ARTIFACTS / f"{name}-{width}.png").write_bytes(base64.b64decode(shot["data"]))
        # nothing wider than the screen but a table that scrolls inside its own box
        overflow = await page.js("document.documentElement.scrollWidth")
        assert overflow <= width + 1, (name, width, overflow)
    await page.call("Emulation.clearDeviceMetricsOverride")


async def _sign_in(page: Browser, app: EngineApp, who: str) -> None:
    await page.goto(app.url + "/login")
    await _submit(page, f"document.querySelector('input[name=token]').value = "
                        f"{json.dumps(TOKENS[who])}; document.forms[0].submit()")


async def test_an_incident_worked_in_the_browser(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, browser: Browser) -> None:  # noqa: F811
    for user, token in TOKENS.items():
        monkeypatch.setenv(f"WB_TOKEN_{user.upper()}", token)
    with Mosquitto(tmp_path / "broker") as broker:
        config: Config = load_config(workbench_estate(tmp_path, broker.port))
        app = await start_engine(config, "alta")
        try:
            await _incident(app, config, tmp_path, browser)
        finally:
            await app.stop()


async def _incident(app: EngineApp, config: Config, tmp: Path, page: Browser) -> None:
    now = time.time()
    # the estate is up; then the distribution switch and all behind it stop answering
    # (150 s ago: past DeviceDown's `for: 2m`), and a firewall port goes down
    await publish(config, tmp / "outbox.db", "poller-wb", [
        _up("alta-core", now - 300), _up(FIREWALL, now - 300), _up(DIST, now - 300),
        *(_up(d, now - 300) for d in BEHIND),
        _down(DIST, now - 150), *(_down(d, now - 150) for d in BEHIND),
        _up("alta-core", now - 1), _up(FIREWALL, now - 1),
        ("alta", FIREWALL, "metrics", now - 90, {"samples": [
            Sample(name="if_admin_status", value=1.0,
                   labels={"ifindex": "3", "ifname": "Gi0/3", "ifalias": "Uplink Komsa"}),
            Sample(name="if_oper_status", value=2.0,
                   labels={"ifindex": "3", "ifname": "Gi0/3", "ifalias": "Uplink Komsa"}),
            Sample(name="if_in_octets", value=1_000_000.0, kind="counter64", labels=WAN)],
            "interval": 60.0}),
        # 750,000 octets in the 60 s after: 12,500 B/s, 100 kbit/s
        ("alta", FIREWALL, "metrics", now - 30, {"samples": [
            Sample(name="if_in_octets", value=1_750_000.0, kind="counter64", labels=WAN)],
            "interval": 60.0}),
    ])
    async with aiohttp.ClientSession() as session:
        async def firing() -> list[dict[str, Any]]:
            alerts = (await _api(session, app, "/api/v1/alerts"))["alerts"]
            names = sorted(a["alertname"] for a in alerts if a["state"] == "firing"
                           and "device" in a["labels"])
            return alerts if names == ["DeviceDown", "InterfaceDown"] else []

        # about devices, these two and nothing else (the absent Hammerfest location has
        # its own alert, about no device)
        alerts = await _until(firing, "DeviceDown and InterfaceDown firing, nothing else")
        device_down = next(a for a in alerts if a["alertname"] == "DeviceDown")
        if_down = next(a for a in alerts if a["alertname"] == "InterfaceDown")
        assert (device_down["labels"]["device"], device_down["behind"]) == (DIST, 30)

        # unreachable, not down: in the API and in /metrics
        listing = await _api(session, app, "/api/v1/devices?status=unreachable")
        assert sorted(d["id"] for d in listing["devices"]) == sorted(BEHIND)
        assert [d["id"] for d in (await _api(
            session, app, "/api/v1/devices?status=down"))["devices"]] == [DIST]
        async with session.get(app.url + "/metrics") as resp:
            metrics = await resp.text()
        unreachable = [line for line in metrics.splitlines()
                       if line.startswith("driftsvakt_device_status{")
                       and 'status="unreachable"' in line and line.endswith(" 1.0")]
        assert len(unreachable) == 30, unreachable[:3]

    # -- the operator in the browser ------------------------------------------------------
    await _sign_in(page, app, "ola")
    await page.goto(app.url + "/problems")
    rows = await page.js("[...document.querySelectorAll('#problems tr[data-alert]')]"
                         ".map(r => [r.dataset.alert, r.querySelector('.behind').textContent])")
    assert sorted(rows) == sorted([[device_down["id"], "30"], [if_down["id"], ""]])
    await _shoot(page, "problems-incident")

    await _submit(page, f"""
        document.querySelector('tr[data-alert="{device_down["id"]}"] input').checked = true;
        document.querySelector('input[name=comment]').value =
            'Strøm borte på Komsa, elektriker varslet';
        document.getElementById('ack').click()""")
    assert await page.js("location.pathname") == "/problems"
    acked = await page.js(f"document.querySelector('tr[data-alert=\"{device_down['id']}\"]')"
                          ".textContent")
    assert "ola" in acked
    assert "Strøm borte på Komsa" in acked

    await _submit(page, f"""
        document.querySelector('tr[data-alert="{if_down["id"]}"] input').checked = true;
        document.querySelector('select[name=hours]').value = '4';
        document.querySelector('input[name=comment]').value = 'Kjent: kabel byttes';
        document.getElementById('silence').click()""")
    # a silenced alert leaves the open problems; it is listed under "dempet"
    assert await page.js("[...document.querySelectorAll('#problems tr[data-alert]')]"
                         ".map(r => r.dataset.alert)") == [device_down["id"]]
    await page.goto(app.url + "/problems?state=suppressed")
    assert await page.js("[...document.querySelectorAll('#problems tr[data-alert]')]"
                         ".map(r => r.dataset.alert)") == [if_down["id"]]

    # the alert page a notification links to, and the pages behind it
    await page.goto(app.url + f"/alerts/{device_down['id']}")
    text = await page.js("document.body.innerText")
    assert "30 enheter bak denne er utilgjengelige" in text
    assert "Kvittert av" in text
    assert "ola" in text
    timeline = await page.js("document.getElementById('timeline').innerText")
    assert "Kvittert" in timeline
    assert "Strøm borte på Komsa" in timeline
    await _shoot(page, "alert")
    await page.goto(app.url + f"/devices/{LEAVES[0]}")
    assert await page.js("document.getElementById('status').textContent") == "utilgjengelig"
    path = await page.js("[...document.querySelectorAll('#path a')].map(a => a.textContent)")
    assert path == ["Aksess 1 Komsa", "Distribusjon Komsa skole", "Kjernesvitsj Alta"]
    await _shoot(page, "device-behind")
    await page.goto(app.url + f"/devices/{DIST}")
    assert await page.js("document.getElementById('status').textContent") == "nede"
    assert await page.js("document.querySelectorAll('#behind + div tr[data-device]').length") == 30
    await _shoot(page, "device-down")
    await page.goto(app.url + f"/devices/{FIREWALL}")
    assert "Uplink Komsa" in await page.js("document.getElementById('interfaces').innerText")
    assert await page.js("document.querySelector('tr[data-ifindex=\"1\"] .traffic-in')"
                         ".textContent") == "100 kbit/s"
    await _shoot(page, "device-interfaces")
    await page.goto(app.url + "/search?q=uplink")
    assert await page.js("[...document.querySelectorAll('#hits tr[data-device]')]"
                         ".map(r => r.dataset.device)") == [FIREWALL]
    await _shoot(page, "search")
    # the map: the switch down, the access switches behind it unreachable
    await page.goto(app.url + "/topology")
    on_map = await page.js("Object.fromEntries([...document.querySelectorAll('#map a')]"
                           ".map(a => [a.dataset.device, a.dataset.status]))")
    assert on_map == {"alta-core": "up", FIREWALL: "up", DIST: "down",
                      **dict.fromkeys(ACCESS, "unreachable")}
    await _shoot(page, "topology")
    # an operator may not plan maintenance: the form is not offered
    await page.goto(app.url + "/sites/komsa-skole")
    assert await page.js("document.getElementById('maintenance-form')") is None

    # -- the administrator plans maintenance for the site --------------------------------
    await _sign_in(page, app, "kari")
    await page.goto(app.url + "/sites/komsa-skole")
    statuses = await page.js("[...document.querySelectorAll("
                             "'#tree tr[data-device] td:nth-child(2)')]"
                             ".map(td => td.textContent)")
    assert sorted(statuses) == sorted(["nede"] + ["utilgjengelig"] * 30)
    await _submit(page, """
        const f = document.getElementById('maintenance-form');
        f.querySelector('select[name=hours]').value = '2';
        f.querySelector('input[name=comment]').value = 'Elektriker på Komsa';
        f.querySelector('button').click()""")
    assert await page.js("location.pathname") == "/sites/komsa-skole"
    assert "Elektriker på Komsa" in await page.js("document.getElementById('windows').innerText")
    await _shoot(page, "site")
    await page.goto(app.url + "/topology")
    on_map = await page.js("Object.fromEntries([...document.querySelectorAll('#map a')]"
                           ".map(a => [a.dataset.device, a.dataset.status]))")
    assert on_map == {"alta-core": "up", FIREWALL: "up",
                      **dict.fromkeys([DIST, *ACCESS], "maintenance")}
    # and for the firewall, from its (silenced) alert's row on the Problems page
    await page.goto(app.url + "/problems?state=suppressed")
    await _submit(page, f"""
        document.querySelector('tr[data-alert="{if_down["id"]}"] input').checked = true;
        document.querySelector('select[name=hours]').value = '1';
        document.getElementById('maintain').click()""")
    assert await page.js("location.pathname + location.search") == "/problems?state=suppressed"
    await page.goto(app.url + "/topology")
    assert (await page.js("document.querySelector('#map a[data-device=\"alta-fw1\"]')"
                          ".dataset.status")) == "maintenance"
    await page.goto(app.url + "/")
    await _shoot(page, "console")

    async with aiohttp.ClientSession() as session:
        audit = (await _api(session, app, "/api/v1/audit"))["audit"]
        did = sorted((a["actor"], a["action"]) for a in audit)
        assert did == [("kari", "create_maintenance"), ("kari", "create_maintenance"),
                       ("ola", "acknowledge"), ("ola", "create_silence")]
        ack = next(a for a in audit if a["action"] == "acknowledge")
        assert (ack["target"], ack["detail"]["comment"], ack["detail"]["via"]) == (
            f"alert/{device_down['id']}", "Strøm borte på Komsa, elektriker varslet", "console")

        # -- the switch comes back ------------------------------------------------------
        back = time.time()
        await publish(config, tmp / "outbox.db", "poller-wb", [
            _up(DIST, back), *(_up(d, back) for d in BEHIND)])

        async def settled() -> bool:
            body = await _api(session, app, "/api/v1/devices")
            statuses = {d["id"]: d["status"] for d in body["devices"]}
            alerts = (await _api(session, app, "/api/v1/alerts"))["alerts"]
            return (all(statuses[d] == "up" for d in [DIST, *BEHIND])
                    and not any(a["alertname"] == "DeviceDown" for a in alerts))

        await _until(settled, "the switch and all behind it up, DeviceDown resolved")
    await page.goto(app.url + "/problems")
    assert await page.js("document.querySelectorAll('#problems tr[data-alert]').length") == 0
    await page.goto(app.url + f"/alerts/{device_down['id']}")
    assert await page.js("document.getElementById('state').textContent") == "løst"
    await _shoot(page, "alert-resolved")
