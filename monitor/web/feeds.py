"""A municipality's planned maintenance as feeds: iCalendar for a calendar app, Atom for
a feed reader. What a feed holds is what the portal shows the municipality (its own
part of a window, named only when the window is theirs alone), 60 days ahead.

A calendar app cannot sign in, so the portal gives each municipality's readers links
with a key: an HMAC of the municipality under the engine's signing secret
(``notifications.ack_secret``), worth nothing for another municipality and nothing
but the feed. Without the key a feed answers who may see the portal (session cookie
or bearer token), 404 to a viewer of another municipality.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import UTC, datetime
from typing import Final
from xml.etree import ElementTree as ET
from zoneinfo import ZoneInfo

import icalendar
from aiohttp import web

from monitor.config import Config
from monitor.officehours import OSLO
from monitor.sla.report import Planned, planned_maintenance
from monitor.store.db import Store
from monitor.web.auth import Auth, problem

__all__ = ["Feeds"]

DAYS: Final = 60
_ZONE: Final = ZoneInfo(OSLO)
ATOM: Final = "http://www.w3.org/2005/Atom"


class Feeds:
    def __init__(self, config: Config, store: Store, auth: Auth, secret: bytes | None) -> None:
        self.config = config
        self.store = store
        self.auth = auth
        self.secret = secret

    def key(self, municipality: str) -> str | None:
        if self.secret is None:
            return None
        return hmac.new(self.secret, b"feed:" + municipality.encode(), hashlib.sha256
                        ).hexdigest()[:32]

    def links(self, municipality: str) -> dict[str, str]:
        """The subscription links the portal shows (empty without a signing secret)."""
        key = self.key(municipality)
        if key is None:
            return {}
        return {kind: f"/sla/{municipality}/vedlikehold.{kind}?key={key}"
                for kind in ("ics", "atom")}

    def _refused(self, request: web.Request, municipality: str) -> web.Response | None:
        if municipality not in self.config.municipalities:
            return problem(404, "no such municipality")
        sent, key = request.query.get("key"), self.key(municipality)
        if sent is not None and key is not None and sent.isascii() and hmac.compare_digest(
                sent, key):
            return None
        user = self.auth.user_of(request, page=True)
        if isinstance(user, web.Response):
            return user
        return None if Auth.sees(user, municipality) else problem(404, "no such municipality")

    async def _planned(self, municipality: str) -> list[Planned]:
        return await planned_maintenance(self.config, self.store, municipality, time.time(),
                                         days=DAYS)

    async def ical(self, request: web.Request) -> web.StreamResponse:
        m = request.match_info["m"]
        refused = self._refused(request, m)
        if refused is not None:
            return refused
        name = self.config.municipalities[m].name
        cal = icalendar.Calendar()
        cal.add("prodid", "-//driftsvakt//vedlikehold//NO")
        cal.add("version", "2.0")
        cal.add("x-wr-calname", f"Planlagt vedlikehold: {name}")
        for p in await self._planned(m):
            event = icalendar.Event()
            event.add("uid", f"{p.id}-{int(p.start)}@driftsvakt")
            event.add("summary", p.name)
            event.add("dtstart", datetime.fromtimestamp(p.start, _ZONE))
            event.add("dtend", datetime.fromtimestamp(p.end, _ZONE))
            event.add("dtstamp", datetime.fromtimestamp(p.start, UTC))
            cal.add_component(event)
        cal.add_missing_timezones()
        return web.Response(body=cal.to_ical(), content_type="text/calendar", charset="utf-8")

    async def atom(self, request: web.Request) -> web.StreamResponse:
        m = request.match_info["m"]
        refused = self._refused(request, m)
        if refused is not None:
            return refused
        planned = await self._planned(m)
        ET.register_namespace("", ATOM)
        feed = ET.Element(f"{{{ATOM}}}feed")

        def add(parent: ET.Element, tag: str, text: str) -> ET.Element:
            element = ET.SubElement(parent, f"{{{ATOM}}}{tag}")
            element.text = text
            return element

        add(feed, "id", f"urn:driftsvakt:{m}:vedlikehold")
        add(feed, "title", f"Planlagt vedlikehold: {self.config.municipalities[m].name}")
        add(feed, "updated", _iso(max((p.start for p in planned), default=0.0)))
        author = ET.SubElement(feed, f"{{{ATOM}}}author")
        add(author, "name", "Driftssentralen")
        for p in planned:
            entry = ET.SubElement(feed, f"{{{ATOM}}}entry")
            add(entry, "id", f"urn:driftsvakt:vedlikehold:{p.id}:{int(p.start)}")
            add(entry, "title", p.name)
            add(entry, "updated", _iso(p.start))
            add(entry, "summary", f"{_local(p.start)}–{_local(p.end)}: {p.name}")
        body = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
        return web.Response(body=body, content_type="application/atom+xml", charset="utf-8")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _local(ts: float) -> str:
    return datetime.fromtimestamp(ts, _ZONE).strftime("%d.%m.%Y %H:%M")
