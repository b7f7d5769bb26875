"""The SLA portal in a real browser: headless Chromium, driven over the DevTools protocol.

A viewer of Alta signs in at /login with its token (a form, a cookie), lands on
/sla/alta, sees its services against their targets with a bar per month, cannot open
Loppa's page, and the page prints to a PDF of A4 pages. The protocol is spoken with
aiohttp's WebSocket client: Chromium from Debian, no browser download.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import pytest

from monitor.app import EngineApp, start_engine
from monitor.config import load_config
from monitor.store.db import Store
from tests.integration.test_sla import TOKENS, estate
from tests.servers import Mosquitto, free_port

pytestmark = pytest.mark.integration

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


class Browser:
    """One page of a headless Chromium, over the DevTools protocol."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        mid = next(self.ids)
        await self.ws.send_json({"id": mid, "method": method, "params": params})
        async with asyncio.timeout(30):
            while True:
                message = json.loads((await self.ws.receive()).data)
                if message.get("id") == mid:
                    assert "error" not in message, message
                    return dict(message.get("result", {}))
                self.events.append(message)

    async def wait_for(self, event: str) -> None:
        async with asyncio.timeout(30):
            while not any(e.get("method") == event for e in self.events):
                self.events.append(json.loads((await self.ws.receive()).data))
        self.events.clear()

    async def goto(self, url: str) -> None:
        self.events.clear()
        await self.call("Page.navigate", url=url)
        await self.wait_for("Page.loadEventFired")

    async def js(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression,
                                 returnByValue=True, awaitPromise=True)
        return result["result"].get("value")


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Browser]:
    binary = shutil.which("chromium")
    assert binary is not None, "chromium is not installed (the test command installs it)"
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        binary, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium'}",
        f"--remote-debugging-port={port}", "about:blank",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 30
            pages: list[dict[str, Any]] = []
            while not pages:
                try:
                    async with session.get(f"http://127.0.0.1:{port}/json/list") as resp:
                        pages = [t for t in await resp.json() if t["type"] == "page"]
                except aiohttp.ClientError:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.2)
            async with session.ws_connect(pages[0]["webSocketDebuggerUrl"],
                                          max_msg_size=64 * 1024 * 1024) as ws:
                page = Browser(ws)
                await page.call("Page.enable")
                yield page
    finally:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


@pytest.fixture
async def portal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[EngineApp]:
    """Alta's engine, its broker's port at ``app.broker_port``."""
    for user, token in TOKENS.items():
        monkeypatch.setenv(f"SLA_TOKEN_{user.upper()}", token)
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    config = load_config(estate(tmp_path, broker.port, free_port()))
    # ninety days of Alta's core switch: up, with a 45-minute outage a month ago
    now = time.time()
    start = now - 90 * 86400
    outage = now - 30 * 86400
    async with await Store.open(tmp_path / "engine-alta.db") as store:
        await store.put_sla_runs([
            ("device:alta-core", "poller-a", start, outage - 600, "up", 1800.0),
            ("device:alta-core", "poller-a", outage, outage + 2700, "down", 1800.0),
            ("device:alta-core", "poller-a", outage + 2700 + 600, now, "up", 1800.0)])
    app = await start_engine(config, "alta")
    app.broker_port = broker.port  # type: ignore[attr-defined]
    try:
        yield app
    finally:
        await app.stop()
        broker.stop()


async def test_a_viewer_signs_in_reads_its_portal_and_prints_it(
        portal: EngineApp, browser: Browser, tmp_path: Path) -> None:
    await browser.goto(f"{portal.url}/sla/alta")
    assert await browser.js("document.body.innerText") != ""
    assert "Tjenestenivå for" not in await browser.js("document.body.innerText")  # 401
    await browser.goto(f"{portal.url}/login")
    await browser.js(f"document.querySelector('input[name=token]').value = "
                     f"{json.dumps(TOKENS['liv'])}; document.querySelector('form').submit()")
    await browser.wait_for("Page.loadEventFired")
    page = await browser.js("""({
        path: location.pathname,
        title: document.title,
        heading: document.querySelector('h1').innerText,
        services: [...document.querySelectorAll('#summary tbody tr')].map(
            r => r.dataset.service),
        achieved: [...document.querySelectorAll('#summary td.achieved')].map(
            td => td.innerText),
        bars: document.querySelectorAll('svg.chart rect').length,
        targets: document.querySelectorAll('svg.chart line.target').length,
        text: document.body.innerText,
        lang: document.documentElement.lang,
    })""")
    assert page["path"] == "/sla/alta"
    assert page["lang"] == "nb"
    assert page["heading"] == "Tjenestenivå for Alta kommune"
    assert page["services"] == ["e-post", "nett-alta"]
    assert page["bars"] == 2 * 13 and page["targets"] == 2  # noqa: PT018
    assert "Loppa" not in page["text"]
    assert all(a.endswith("%") or a == "–" for a in page["achieved"])

    # last month's outage is an incident, in words
    month = await browser.js("""(() => { const d = new Date(Date.now() - 30 * 86400e3);
        return d.getFullYear() + '-' + String(d.getMonth() + 1).padStart(2, '0'); })()""")
    await browser.goto(f"{portal.url}/sla/alta?month={month}")
    text = await browser.js("document.body.innerText")
    assert "enhet alta-core nede" in text, text[:2000]

    await browser.goto(f"{portal.url}/sla/loppa")
    assert "Fant ikke" in await browser.js("document.body.innerText")

    pdf = await browser.call("Page.printToPDF", preferCSSPageSize=True, printBackground=True)
    data = base64.b64decode(pdf["data"])
    assert data.startswith(b"%PDF")
    await browser.goto(f"{portal.url}/sla/alta?month={month}")
    pdf = await browser.call("Page.printToPDF", preferCSSPageSize=True, printBackground=True)
    data = base64.b64decode(pdf["data"])
    (tmp_path / "sla-alta.pdf").write_bytes(data)
    pages = data.count(b"/Type /Page") - data.count(b"/Type /Pages")
    assert 1 <= pages <= 3, pages


async def test_an_operator_signs_in_to_the_console(portal: EngineApp, browser: Browser) -> None:
    """The console at / sends a browser without a token to /login; an operator's token
    leads to the console: the devices by status and every site."""
    await browser.goto(f"{portal.url}/")
    assert await browser.js("location.pathname") == "/login"
    await browser.js(f"document.querySelector('input[name=token]').value = "
                     f"{json.dumps(TOKENS['ola'])}; document.querySelector('form').submit()")
    await browser.wait_for("Page.loadEventFired")
    page = await browser.js("""({
        path: location.pathname,
        heading: document.querySelector('h1').innerText,
        banner: document.querySelector('header strong').innerText,
        tiles: Object.fromEntries([...document.querySelectorAll('#status-tiles .tile')].map(
            t => [t.dataset.status, Number(t.querySelector('b').innerText)])),
        sites: [...document.querySelectorAll('#sites tr[data-site]')].map(r => r.dataset.site),
    })""")
    assert page["path"] == "/"
    assert (page["banner"], page["heading"]) == ("Driftsvakt – Alta", "Oversikt")
    # nothing has reported to this engine yet: all five devices unknown
    assert page["tiles"] == {"down": 0, "unreachable": 0, "auth_error": 0, "unknown": 5,
                             "off": 0, "up": 0}
    assert sorted(page["sites"]) == ["alta-radhus", "oksfjord"]


async def _submit(page: Browser, script: str) -> None:
    """Fill in and submit a form as a person would; wait for the page after it."""
    page.events.clear()
    await page.js(script)
    await page.wait_for("Page.loadEventFired")


async def _sign_in(page: Browser, app: EngineApp, who: str) -> None:
    await page.goto(f"{app.url}/login")
    await _submit(page, f"document.querySelector('input[name=token]').value = "
                        f"{json.dumps(TOKENS[who])}; document.querySelector('form').submit()")


def _artifacts(tmp_path: Path) -> Path:
    out = Path(os.environ.get("DRIFTSVAKT_TEST_ARTIFACTS", tmp_path))
    out.mkdir(parents=True, exist_ok=True)
    return out


async def test_the_status_page_during_an_incident_and_announced_maintenance(
        portal: EngineApp, browser: Browser, tmp_path: Path) -> None:
    """Alta's core switch is down now and a window is announced for the day after
    tomorrow: at 1400 and at 390 px wide (a phone) Alta's viewer sees the service
    down, since when, and the maintenance ahead, nothing wider than the screen.
    Screenshots are kept as test artifacts (DRIFTSVAKT_TEST_ARTIFACTS, else the
    test's directory)."""
    async with aiomqtt.Client("127.0.0.1", portal.broker_port) as client:  # type: ignore[attr-defined]
        # from the poller whose reports the fixture's ninety days are
        await client.publish("driftsvakt/v1/alta/alta/alta-core/state/poller-a",
                             json.dumps({"v": 1, "ts": time.time(), "src": "poller-a",
                                         "seq": 1, "floor": 1, "device": "alta-core",
                                         "state": "down", "reason": "no response"}), qos=1)
    start = datetime.now(UTC) + timedelta(days=2)
    async with aiohttp.ClientSession() as session, session.post(
            portal.url + "/api/v1/maintenance", json={
                "name": "Bytte av kjernesvitsj", "devices": ["alta-core"],
                "starts_at": start.isoformat(),
                "ends_at": (start + timedelta(hours=2)).isoformat()},
            headers={"Authorization": f"Bearer {TOKENS['kari']}"}) as resp:
        assert 201 == resp.status
    # the operator on duty tells Alta what is going on, in plain words, on the
    # workbench's page; a note for Loppa at the same time (on the API) is Loppa's alone
    async with aiohttp.ClientSession(headers={
            "Authorization": f"Bearer {TOKENS['ola']}"}) as session:
        async with session.post(f"{portal.url}/api/v1/sla/loppa/notes",
                                json={"text": "Loppa: treg e-post"}) as resp:
            assert 201 == resp.status, await resp.text()
            loppa_note = await resp.json()
        async with session.post(f"{portal.url}/api/v1/sla/alta/notes/{loppa_note['id']}",
                                json={"resolved": True}) as resp:
            assert 404 == resp.status  # Loppa's note is not under Alta
    await _sign_in(browser, portal, "ola")
    await browser.goto(f"{portal.url}/notes")
    await _submit(browser, """
        const form = document.getElementById('new-note');
        form.municipality.value = 'alta';
        [...form.service.options].forEach(o => o.selected = o.value === 'nett-alta');
        form.text.value = 'Nettverket på rådhuset er nede etter et strømbrudd i ' +
                          'serverrommet. Elektriker er på vei.';
        form.submit()""")
    assert "/notes" == await browser.js("location.pathname")
    await _submit(browser, """
        const form = document.querySelector('#m-alta ~ .note form');
        form.text.value = 'Strømmen er tilbake; svitsjen starter.';
        form.submit()""")
    assert "Strømmen er tilbake" in await browser.js("document.body.innerText")
    await _sign_in(browser, portal, "liv")
    out = _artifacts(tmp_path)
    for width, height in ((1400, 900), (390, 844)):
        await browser.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                           deviceScaleFactor=1, mobile=width < 600)
        deadline = time.monotonic() + 20
        while True:  # the event may reach the engine a moment after the sign-in
            await browser.goto(f"{portal.url}/sla/alta")
            page = await browser.js("""({
                states: Object.fromEntries([...document.querySelectorAll('#now tr[data-state]')]
                    .map(r => [r.cells[0].innerText, r.dataset.state])),
                planned: document.querySelector('#planned').innerText,
                notes: [...document.querySelectorAll('#notes .incident')].map(
                    n => n.dataset.state + ': ' + n.innerText),
                lead: document.querySelector('.lead').innerText,
                wide: document.documentElement.scrollWidth,
                widest: [...document.querySelectorAll('body *')].filter(
                    e => e.getBoundingClientRect().right > window.innerWidth).map(
                    e => e.tagName + '#' + e.id + '.' + e.className).slice(0, 5),
            })""")
            if page["states"].get("Nettverk Alta rådhus") == "down" or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        assert "down" == page["states"].get("Nettverk Alta rådhus"), page
        assert "Bytte av kjernesvitsj" in page["planned"], page
        (shown,) = page["notes"]
        assert shown.startswith("open: Pågår: Nettverk Alta rådhus\n\nMeldt "), shown
        assert ("Nettverket på rådhuset er nede etter et strømbrudd i serverrommet. "
                "Elektriker er på vei.") in shown
        assert ": Strømmen er tilbake; svitsjen starter." in shown
        assert "av driftssentralen. Perioden er ikke over" in page["lead"], page
        assert page["wide"] <= width, (width, page["wide"], page["widest"])
        shot = await browser.call("Page.captureScreenshot", format="png",
                                  captureBeyondViewport=True)
        (out / f"status-alta-{width}px.png").write_bytes(base64.b64decode(shot["data"]))
