"""A municipality's planned maintenance as iCalendar and Atom feeds, through a real
engine: subscription links with a key (a calendar app cannot sign in), the portal's
sign-in without one, and each municipality's own part of a shared window only."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.etree import ElementTree as ET
from zoneinfo import ZoneInfo

import aiohttp
import icalendar
import pytest
import yaml

from monitor.app import EngineApp, start_engine
from monitor.config import load_config
from tests.estate import write_estate
from tests.servers import Mosquitto

pytestmark = pytest.mark.integration

TOKENS = {"kari": "feed-admin-token-0123", "per": "feed-loppa-token-0123",
          "liv": "feed-alta-token-01234"}
ATOM = "{http://www.w3.org/2005/Atom}"


@pytest.fixture
async def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[EngineApp]:
    for user, token in TOKENS.items():
        monkeypatch.setenv(f"FEED_{user.upper()}", token)
    monkeypatch.setenv("FEED_SECRET", "signing-secret-for-links-0123456789")
    with Mosquitto(tmp_path / "broker") as broker:
        path = write_estate(tmp_path, broker.port)
        estate = yaml.safe_load(path.read_text(encoding="utf-8"))
        estate["municipalities"].append({"id": "alta", "name": "Alta kommune"})
        estate["sites"].append({"id": "alta-radhus", "name": "Alta rådhus",
                                "location": "alta", "municipality": "alta"})
        estate["devices"].append({"id": "alta-core", "name": "Kjerne Alta", "class": "switch",
                                  "site": "alta-radhus"})
        estate["users"] = [
            {"id": "kari", "role": "admin", "token": {"env": "FEED_KARI"}},
            {"id": "per", "role": "viewer", "municipality": "loppa",
             "token": {"env": "FEED_PER"}},
            {"id": "liv", "role": "viewer", "municipality": "alta", "token": {"env": "FEED_LIV"}}]
        estate["notifications"] = {"external_url": "https://driftsvakt.example",
                                   "ack_secret": {"env": "FEED_SECRET"}}
        estate["services"] = [{"id": "nett-loppa", "name": "Nett", "municipalities": ["loppa"],
                               "target": 99.5, "depends": {"all": ["device:loppa-sw1"]}}]
        path.write_text(yaml.safe_dump(estate, allow_unicode=True), encoding="utf-8")
        app = await start_engine(load_config(path), "alta", http_port=0)
        try:
            yield app
        finally:
            await app.stop()


async def _get(app: EngineApp, path: str, who: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {TOKENS[who]}"} if who else {}
    async with aiohttp.ClientSession() as session, session.get(
            app.url + path, headers=headers, allow_redirects=False) as resp:
        return resp.status, await resp.text()


async def test_feeds_hold_the_municipalitys_own_maintenance(engine: EngineApp) -> None:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    windows = [("Bytte av kjernesvitsj i Loppa", ["loppa-sw1"], start),
               ("Alta og Loppa: ny brannmur", ["loppa-sw2", "alta-core"],
                start + timedelta(days=1))]
    async with aiohttp.ClientSession() as session:
        for name, devices, at in windows:
            async with session.post(engine.url + "/api/v1/maintenance", json={
                    "name": name, "devices": devices, "starts_at": at.isoformat(),
                    "ends_at": (at + timedelta(hours=2)).isoformat()},
                    headers={"Authorization": f"Bearer {TOKENS['kari']}"}) as resp:
                assert 201 == resp.status
    status, page = await _get(engine, "/sla/loppa", "per")
    assert 200 == status
    links = dict(re.findall(r'href="(/sla/loppa/vedlikehold\.(ics|atom)\?key=[0-9a-f]{32})"',
                            page))
    ics_link, atom_link = (next(k for k, v in links.items() if v == kind)
                           for kind in ("ics", "atom"))
    # the calendar, fetched twice without signing in: the same events, by UID
    status, text = await _get(engine, ics_link)
    assert 200 == status
    assert text == (await _get(engine, ics_link))[1]
    events = list(icalendar.Calendar.from_ical(text).walk("VEVENT"))
    oslo = ZoneInfo("Europe/Oslo")
    assert [("Bytte av kjernesvitsj i Loppa", start.astimezone(oslo)),
            ("Planlagt vedlikehold", (start + timedelta(days=1)).astimezone(oslo))] == [
        (str(e["summary"]), e.decoded("dtstart")) for e in events]
    assert "Alta" not in text
    assert "brannmur" not in text
    status, text = await _get(engine, atom_link)
    assert 200 == status
    feed = ET.fromstring(text.encode())
    assert ["Bytte av kjernesvitsj i Loppa", "Planlagt vedlikehold"] == [
        e.findtext(f"{ATOM}title") for e in feed.iter(f"{ATOM}entry")]
    # Loppa's key opens nothing of Alta's, nor does no key or a wrong one; the portal's
    # sign-in does, for the municipality's own viewers only
    key = ics_link.rsplit("=", 1)[1]
    for path, who, want in ((f"/sla/alta/vedlikehold.ics?key={key}", None, 401),
                            ("/sla/loppa/vedlikehold.ics", None, 401),
                            ("/sla/loppa/vedlikehold.ics?key=" + "0" * 32, None, 401),
                            ("/sla/loppa/vedlikehold.atom?key=%C3%B8", None, 401),
                            ("/sla/loppa/vedlikehold.ics", "per", 200),
                            ("/sla/loppa/vedlikehold.ics", "liv", 404),
                            ("/sla/nowhere/vedlikehold.ics", "kari", 404)):
        assert want == (await _get(engine, path, who))[0], (path, who)
    status, text = await _get(engine, "/sla/alta/vedlikehold.ics", "liv")
    assert (200, ["Planlagt vedlikehold"]) == (status, [
        str(e["summary"]) for e in icalendar.Calendar.from_ical(text).walk("VEVENT")])
