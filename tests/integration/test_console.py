"""The devices API and the operator console, on a real engine fed through mosquitto:
statuses as /metrics has them, open alerts and checks per device, and a viewer that
sees its own municipality only."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from monitor.app import EngineApp
from monitor.config import Config
from tests.feed import publish
from tests.integration.test_sla import call, engine  # noqa: F401 - the fixture
from tests.servers import Mosquitto

pytestmark = pytest.mark.integration


async def _devices(session: aiohttp.ClientSession, app: EngineApp, who: str,
                   query: str = "") -> tuple[int, dict[str, Any]]:
    status, text = await call(session, app, "GET", f"/api/v1/devices{query}", who)
    return status, json.loads(text)


async def test_devices_and_console_by_role(
        engine: tuple[EngineApp, Config, Mosquitto],  # noqa: F811 - test_sla's fixture
        tmp_path: Path) -> None:
    app, config, _ = engine
    now = time.time()
    await publish(config, tmp_path / "outbox.db", "console-test", [
        ("loppa", "loppa-sw1", "state", now, {"state": "up"}),
        ("loppa", "loppa-mail1", "state", now, {"state": "down",
                                                "reason": "no response from 10.1.0.5:161"}),
        ("loppa", "loppa-web", "check", now, {"check": "loppa-fag", "kind": "http",
                                              "ok": False, "reason": "HTTP 503"}),
        ("alta", "alta-core", "state", now, {"state": "up"}),
        ("loppa", "loppa-sw1", "trap", now, {
            "trap_oid": "1.3.6.1.6.3.1.1.5.3", "trap_name": "linkDown",
            "agent_addr": "10.1.0.1", "varbinds": [{"oid": "1.3.6.1.2.1.2.2.1.1.7",
                                                    "type": "Integer", "value": "7",
                                                    "name": "ifIndex"}]}),
    ])
    async with aiohttp.ClientSession() as session:
        want = {"loppa-sw1": "up", "loppa-mail1": "down", "loppa-mail2": "unknown",
                "loppa-web": "up", "alta-core": "up"}
        async with asyncio.timeout(20):
            while True:
                status, body = await _devices(session, app, "ola")
                assert status == 200
                got = {d["id"]: d["status"] for d in body["devices"]}
                alerts = {d["id"]: d["open_alerts"] for d in body["devices"]}
                if got == want and alerts["loppa-sw1"] == 1:
                    break
                await asyncio.sleep(0.2)
        assert {"down": 1, "unreachable": 0, "auth_error": 0, "unknown": 1, "off": 0,
                "up": 3} == body["by_status"]
        mail1 = next(d for d in body["devices"] if d["id"] == "loppa-mail1")
        assert ("E-post 1", "server", "oksfjord", "Øksfjord", "loppa", "alta", "down",
                "no response from 10.1.0.5:161") == (
            mail1["name"], mail1["class"], mail1["site"], mail1["site_name"],
            mail1["municipality"], mail1["location"], mail1["state"], mail1["reason"])

        status, down = await _devices(session, app, "kari", "?status=down")
        assert [d["id"] for d in down["devices"]] == ["loppa-mail1"]
        status, _ = await _devices(session, app, "kari", "?status=sideways")
        assert status == 400
        status, loppa = await _devices(session, app, "kari", "?municipality=loppa&class=switch")
        assert [d["id"] for d in loppa["devices"]] == ["loppa-sw1"]

        status, text = await call(session, app, "GET", "/api/v1/devices/loppa-sw1", "ola")
        sw1 = json.loads(text)
        assert [a["alertname"] for a in sw1["alerts"]] == ["LinkDownTrap"]
        assert sw1["open_alerts"] == 1
        status, text = await call(session, app, "GET", "/api/v1/devices/loppa-web", "ola")
        web_ = json.loads(text)
        assert [(c["check"], c["kind"], c["ok"], c["reason"]) for c in web_["checks"]] == [
            ("loppa-fag", "http", False, "HTTP 503")]

        # a viewer of Alta: its own device, nothing of Loppa
        status, own = await _devices(session, app, "liv")
        assert [d["id"] for d in own["devices"]] == ["alta-core"]
        assert "loppa" not in json.dumps(own).lower()
        status, _ = await _devices(session, app, "liv", "?municipality=loppa")
        assert status == 404
        status, _ = await call(session, app, "GET", "/api/v1/devices/loppa-sw1", "liv")
        assert status == 404
        status, _ = await call(session, app, "GET", "/api/v1/devices/alta-core", "liv")
        assert status == 200

        # the console: an operator's page; a viewer goes to its portal; no token, /login
        status, page = await call(session, app, "GET", "/", "ola")
        assert status == 200
        assert '<div class="tile down" data-status="down"><b>1</b>nede</div>' in page
        assert '<tr data-device="loppa-mail1">' in page
        assert "no response from 10.1.0.5:161" in page
        assert "LinkDownTrap" in page
        assert '<div class="tile warning"><b>1</b>advarsel</div>' in page
        assert page.index('data-site="oksfjord"') < page.index('data-site="alta-radhus"')
        async with session.get(app.url + "/", allow_redirects=False,
                               headers={"Authorization": "Bearer liv-viewer-alta-token"}
                               ) as resp:
            assert (resp.status, resp.headers["Location"]) == (302, "/sla/alta")
        async with session.get(app.url + "/", allow_redirects=False) as resp:
            assert (resp.status, resp.headers["Location"]) == (303, "/login")


async def test_the_console_renders_a_firing_parent_with_devices_behind_it(
        tmp_path: Path) -> None:
    """The case the console exists for: a switch is down and fires DeviceDown with a
    server behind it (tests/estate.py: loppa-srv1's parent is loppa-sw1)."""
    from monitor.app import start_engine
    from monitor.config import load_config
    from tests.estate import DEVICES, SERVER, write_estate

    with Mosquitto(tmp_path / "broker") as broker:
        config = load_config(write_estate(tmp_path / "estate", broker.port))
        assert DEVICES[0] == config.devices[SERVER].parent
        app = await start_engine(config, "alta", http_port=0)
        try:
            # down since 150 s ago: past DeviceDown's `for: 2m`, so it fires at once
            await publish(config, tmp_path / "outbox.db", "console-parent", [
                ("loppa", DEVICES[0], "state", time.time() - 150, {"state": "down"})])
            async with aiohttp.ClientSession() as session:
                async with asyncio.timeout(20):
                    while True:
                        async with session.get(app.url + "/api/v1/alerts") as resp:
                            alerts = (await resp.json())["alerts"]
                        firing = [a for a in alerts if a["state"] == "firing"
                                  and a["alertname"] == "DeviceDown"]
                        if firing:
                            break
                        await asyncio.sleep(0.2)
                assert 1 == firing[0]["behind"]
                async with session.get(app.url + "/") as resp:
                    page = await resp.text()
                    assert 200 == resp.status, page[:2000]
                assert "DeviceDown" in page
                assert "1 enheter bak" in page
        finally:
            await app.stop()
