"""Incident notes for the municipalities' status pages over HTTP (monitor.sla.notes):
operators write and update them and mark them resolved — on the API or on the
workbench's page /notes — admins withdraw one written by mistake, a municipality's
viewers read their own. Every change is audited and shared with the other location
(monitor.rules.service)."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime

import msgspec
import structlog
from aiohttp import web

from monitor.config import ApiUser
from monitor.rules.service import RulesService
from monitor.sla.notes import NoteUpdate, StatusNote, notes_of, shown_notes
from monitor.sla.report import Text, services_of
from monitor.web.auth import problem
from monitor.web.sla import NOT_FOUND, SlaRoutes
from monitor.web.workbench import Workbench

__all__ = ["NoteRoutes"]

log = structlog.get_logger(__name__)

MAX_TEXT = 2000


class _NewNote(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    text: Text
    services: list[str] = []


class _Change(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    text: Text | None = None  # an update, added below the note
    resolved: bool = False  # the incident is over (with or without a last update)


class _Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class NoteRoutes:
    def __init__(self, slas: SlaRoutes, rules: RulesService, bench: Workbench) -> None:
        self.slas = slas
        self.rules = rules
        self.bench = bench
        self.store = slas.store
        self.config = slas.config

    # -- the changes, whichever way they come -------------------------------------------

    async def _post(self, m: str, text: str, services: list[str], user: ApiUser
                    ) -> StatusNote:
        now = time.time()
        note = StatusNote(municipality=m, text=text.strip()[:MAX_TEXT], services=services,
                          id=f"n-{secrets.token_hex(6)}", created_by=user.id,
                          created_at=datetime.fromtimestamp(now, UTC), changed=now)
        try:
            note.check(self.config)
        except ValueError as exc:
            raise _Refused(400, str(exc)) from None
        await self.rules.put_note(note, user.id, created=True)
        log.info("status_note_posted", municipality=m, note=note.id, by=user.id)
        return note

    async def _change(self, m: str, nid: str, text: str | None, resolved: bool,
                      user: ApiUser) -> StatusNote:
        note = next((n for n in await notes_of(self.store, m) if n.id == nid), None)
        if note is None:
            raise _Refused(404, "no such note")
        text = None if text is None else text.strip()[:MAX_TEXT]
        if text == "":
            raise _Refused(400, "text is empty")
        if text is None and not resolved:
            raise _Refused(400, "give an update's text, or resolved: true, or both")
        if note.resolved_at is not None:
            raise _Refused(409, "the note is resolved; post a new one")
        now = time.time()
        at = datetime.fromtimestamp(now, UTC)
        if text is not None:
            note.updates.append(NoteUpdate(at=at, text=text, by=user.id))
        if resolved:
            note.resolved_at = at
        note.changed = max(now, note.changed + 1e-6)  # later than the version it replaces
        await self.rules.put_note(note, user.id, created=False)
        log.info("status_note_updated", municipality=m, note=nid, by=user.id,
                 resolved=resolved)
        return note

    # -- API ------------------------------------------------------------------------------

    async def list(self, request: web.Request, user: ApiUser | None) -> web.StreamResponse:
        m = request.match_info["m"]
        if not self.slas.visible(user, m):
            return problem(404, NOT_FOUND)
        return web.json_response({"notes": [msgspec.to_builtins(n)
                                            for n in await notes_of(self.store, m)]})

    async def add(self, request: web.Request, user: ApiUser | None) -> web.StreamResponse:
        assert user is not None
        m = request.match_info["m"]
        if not self.slas.visible(user, m):
            return problem(404, NOT_FOUND)
        try:
            new = msgspec.json.decode(await request.read(), type=_NewNote)
            note = await self._post(m, new.text, new.services, user)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return problem(400, str(exc))
        except _Refused as exc:
            return problem(exc.status, str(exc))
        return web.json_response(msgspec.to_builtins(note), status=201)

    async def change(self, request: web.Request, user: ApiUser | None) -> web.StreamResponse:
        assert user is not None
        m, nid = request.match_info["m"], request.match_info["id"]
        if not self.slas.visible(user, m):
            return problem(404, NOT_FOUND)
        try:
            change = msgspec.json.decode(await request.read(), type=_Change)
            note = await self._change(m, nid, change.text, change.resolved, user)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return problem(400, str(exc))
        except _Refused as exc:
            return problem(exc.status, str(exc))
        return web.json_response(msgspec.to_builtins(note))

    async def delete(self, request: web.Request, user: ApiUser | None) -> web.StreamResponse:
        assert user is not None
        m, nid = request.match_info["m"], request.match_info["id"]
        if not self.slas.visible(user, m):
            return problem(404, NOT_FOUND)
        if nid not in {n.id for n in await notes_of(self.store, m)}:
            return problem(404, "no such note")
        await self.rules.delete_note(nid, user.id)
        log.info("status_note_deleted", municipality=m, note=nid, by=user.id)
        return web.json_response({"deleted": nid})

    # -- the workbench's page and its forms ------------------------------------------------

    async def page(self, request: web.Request, user: ApiUser | None) -> web.StreamResponse:
        """Each municipality with services: its notes as its status page shows them,
        each with a form for an update; a form for a new note."""
        now = time.time()
        places = []
        for m in self.slas.municipalities():
            services = services_of(self.config, m)
            places.append({"id": m, "name": self.config.municipalities[m].name,
                           "services": services,
                           "names": {s.id: s.name for s in services},
                           "notes": shown_notes(await notes_of(self.store, m), now)})
        return self.bench.render(request, "notes.html", user, places=places,
                                 max_text=MAX_TEXT)

    async def form_post(self, request: web.Request, user: ApiUser | None
                        ) -> web.StreamResponse:
        assert user is not None
        form = await request.post()
        m = str(form.get("municipality", ""))
        if not self.slas.visible(user, m):
            return problem(400, "choose a municipality")
        services = [str(s) for s in form.getall("service", [])]
        try:
            await self._post(m, str(form.get("text", "")), services, user)
        except _Refused as exc:
            return problem(exc.status, str(exc))
        raise web.HTTPSeeOther("/notes")

    async def form_change(self, request: web.Request, user: ApiUser | None
                          ) -> web.StreamResponse:
        assert user is not None
        form = await request.post()
        m = str(form.get("municipality", ""))
        if not self.slas.visible(user, m):
            return problem(404, "no such note")
        text = str(form.get("text", "")).strip() or None
        try:
            await self._change(m, request.match_info["id"], text,
                               bool(form.get("resolved")), user)
        except _Refused as exc:
            return problem(exc.status, str(exc))
        raise web.HTTPSeeOther("/notes")
