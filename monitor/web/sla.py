"""The SLA over HTTP: reports and corrections (API) and the municipalities' portal.

Every route is behind :class:`~monitor.web.auth.Auth`; a viewer bound to one
municipality gets 404 for anything of another, exactly as for one that does not
exist (the routes are listed in monitor.web.routes).
"""

from __future__ import annotations

import html
import secrets
import time
from datetime import UTC, datetime
from typing import Final

import msgspec
import structlog
from aiohttp import web

from monitor.config import ApiUser
from monitor.rules.service import RulesService
from monitor.sla.notes import notes_of, shown_notes
from monitor.sla.render import report_csv, report_html, report_json
from monitor.sla.report import Correction, planned_maintenance, services_of
from monitor.sla.service import SlaService
from monitor.web.auth import Auth, problem
from monitor.web.feeds import Feeds

__all__ = ["SlaRoutes"]

log = structlog.get_logger(__name__)

NOT_FOUND: Final = "no such municipality, or it has no services"


class SlaRoutes:
    def __init__(self, sla: SlaService, rules: RulesService, feeds: Feeds | None = None
                 ) -> None:
        self.feeds = feeds
        self.rules = rules  # made and deleted there: shared with the peer engine
        self.config = sla.config
        self.store = sla.store
        self.report = sla.report
        self.history = sla.history
        self.municipalities = sla.municipalities

    def visible(self, user: ApiUser | None, municipality: str) -> bool:
        return (municipality in self.config.municipalities
                and bool(services_of(self.config, municipality))
                and Auth.sees(user, municipality))

    async def sla_list(self, _: web.Request, user: ApiUser | None) -> web.StreamResponse:
        return web.json_response({"municipalities": [
            {"id": m, "name": self.config.municipalities[m].name,
             "services": [s.id for s in services_of(self.config, m)]}
            for m in self.municipalities() if Auth.sees(user, m)]})

    async def sla_get(self, request: web.Request, user: ApiUser | None) -> web.StreamResponse:
        m = request.match_info["m"]
        if not self.visible(user, m):
            return problem(404, NOT_FOUND)
        fmt = request.query.get("format", "json")
        if fmt not in ("json", "csv", "html"):
            return problem(400, "format is json, csv or html")
        try:
            report = await self.report(m, dict(request.query), time.time())
        except ValueError as exc:
            return problem(400, str(exc))
        if fmt == "csv":
            return web.Response(text=report_csv(report), content_type="text/csv",
                                charset="utf-8", headers={
                                    "Content-Disposition":
                                    f'attachment; filename="sla-{m}-{report.period.label}.csv"'})
        if fmt == "html":
            return web.Response(text=report_html(report), content_type="text/html",
                                charset="utf-8")
        return web.json_response(report_json(report))

    def _corrections_of(self, corrections: list[Correction], m: str) -> list[Correction]:
        ids = {s.id for s in services_of(self.config, m)}
        return [c for c in corrections if c.service in ids and
                (not c.municipalities or m in c.municipalities)]

    async def corrections(self, request: web.Request, user: ApiUser | None
                           ) -> web.StreamResponse:
        m = request.match_info["m"]
        if not self.visible(user, m):
            return problem(404, NOT_FOUND)
        every = [msgspec.json.decode(b, type=Correction) for b in await self.store.corrections()]
        return web.json_response({"corrections": [
            msgspec.to_builtins(c) for c in self._corrections_of(every, m)]})

    async def add_correction(self, request: web.Request, user: ApiUser | None
                              ) -> web.StreamResponse:
        assert user is not None
        m = request.match_info["m"]
        if not self.visible(user, m):
            return problem(404, NOT_FOUND)
        try:
            correction = msgspec.json.decode(await request.read(), type=Correction)
            if not correction.municipalities:
                correction.municipalities = [m]
            if m not in correction.municipalities:
                raise ValueError(f"a correction made under {m!r} must include {m!r}")
            correction.check(self.config)
        except (msgspec.DecodeError, ValueError) as exc:
            return problem(400, str(exc))
        correction.id = f"c-{secrets.token_hex(6)}"
        correction.created_by = user.id
        correction.created_at = datetime.now(UTC)
        await self.rules.add_correction(correction, user.id)
        log.info("sla_corrected", municipality=m, service=correction.service,
                 correction=correction.id, by=user.id)
        return web.json_response(msgspec.to_builtins(correction), status=201)

    async def delete_correction(self, request: web.Request, user: ApiUser | None
                                 ) -> web.StreamResponse:
        assert user is not None
        m, cid = request.match_info["m"], request.match_info["id"]
        if not self.visible(user, m):
            return problem(404, NOT_FOUND)
        every = [msgspec.json.decode(b, type=Correction) for b in await self.store.corrections()]
        if cid not in {c.id for c in self._corrections_of(every, m)}:
            return problem(404, "no such correction")
        await self.rules.delete_correction(cid, user.id)
        return web.json_response({"deleted": cid})

    async def portal(self, request: web.Request, user: ApiUser | None) -> web.StreamResponse:
        m = request.match_info["m"]
        if not self.visible(user, m):
            if m in self.config.municipalities and Auth.sees(user, m):
                name = html.escape(self.config.municipalities[m].name)
                return web.Response(
                    text=f"<!doctype html><html lang=nb><meta charset=utf-8><title>{name}"
                         f"</title><h1>{name}</h1><p>Ingen tjenester med tjenesteavtale er "
                         "registrert for kommunen ennå. Spør driftssentralen.</p></html>",
                    content_type="text/html", charset="utf-8")
            return web.Response(status=404, text="Fant ikke siden.", content_type="text/plain")
        now = time.time()
        try:
            report = await self.report(m, dict(request.query), now)
        except ValueError as exc:
            return web.Response(status=400, text=str(exc), content_type="text/plain")
        history = await self.history(m, min(now, report.period.end - 1))
        under_way = report.period.start <= now < report.period.end
        return web.Response(
            text=report_html(report, history, portal=True,
                             now=report.now if under_way else None,
                             planned=await planned_maintenance(self.config, self.store, m, now)
                             if under_way else None,
                             notes=shown_notes(await notes_of(self.store, m), now)
                             if under_way else None,
                             feeds=self.feeds.links(m) if self.feeds and under_way else None),
            content_type="text/html", charset="utf-8")

    async def front(self, _: web.Request, user: ApiUser | None) -> web.StreamResponse:
        if user is not None and user.role == "viewer" and user.municipality:
            raise web.HTTPFound(f"/sla/{user.municipality}")
        links = "".join(f'<li><a href="/sla/{m}">{self.config.municipalities[m].name}</a></li>'
                        for m in self.municipalities())
        return web.Response(content_type="text/html", text=(
            "<!doctype html><html lang=nb><meta charset=utf-8><title>Tjenestenivå</title>"
            f"<h1>Tjenestenivå</h1><ul>{links}</ul></html>"))
