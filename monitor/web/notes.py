"""Incident notes for the municipalities' status pages over HTTP (monitor.sla.notes):
operators write and update them and mark them resolved, admins withdraw one written
by mistake, a municipality's viewers read their own. Every change is audited and
shared with the other location (monitor.rules.service)."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime

import msgspec
import structlog
from aiohttp import web

from monitor.config import ApiUser
from monitor.rules.service import RulesService
from monitor.sla.notes import NoteUpdate, StatusNote, notes_of
from monitor.sla.report import Text
from monitor.web.auth import problem
from monitor.web.sla import NOT_FOUND, SlaRoutes

__all__ = ["NoteRoutes"]

log = structlog.get_logger(__name__)


class _NewNote(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    text: Text
    services: list[str] = []


class _Change(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    text: Text | None = None  # an update, added below the note
    resolved: bool = False  # the incident is over (with or without a last update)


class NoteRoutes:
    def __init__(self, slas: SlaRoutes, rules: RulesService) -> None:
        self.slas = slas
        self.rules = rules
        self.store = slas.store
        self.config = slas.config

    async def held(self, m: str) -> list[StatusNote]:
        return await notes_of(self.store, m)

    async def list(self, request: web.Request, user: ApiUser | None) -> web.StreamResponse:
        m = request.match_info["m"]
        if not self.slas.visible(user, m):
            return problem(404, NOT_FOUND)
        return web.json_response({"notes": [msgspec.to_builtins(n)
                                            for n in await self.held(m)]})

    async def add(self, request: web.Request, user: ApiUser | None) -> web.StreamResponse:
        assert user is not None
        m = request.match_info["m"]
        if not self.slas.visible(user, m):
            return problem(404, NOT_FOUND)
        try:
            new = msgspec.json.decode(await request.read(), type=_NewNote)
            now = time.time()
            note = StatusNote(municipality=m, text=new.text.strip(), services=new.services,
                              id=f"n-{secrets.token_hex(6)}", created_by=user.id,
                              created_at=datetime.fromtimestamp(now, UTC), changed=now)
            note.check(self.config)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            return problem(400, str(exc))
        await self.rules.put_note(note, user.id, created=True)
        log.info("status_note_posted", municipality=m, note=note.id, by=user.id)
        return web.json_response(msgspec.to_builtins(note), status=201)

    async def change(self, request: web.Request, user: ApiUser | None) -> web.StreamResponse:
        assert user is not None
        m, nid = request.match_info["m"], request.match_info["id"]
        if not self.slas.visible(user, m):
            return problem(404, NOT_FOUND)
        note = next((n for n in await self.held(m) if n.id == nid), None)
        if note is None:
            return problem(404, "no such note")
        try:
            change = msgspec.json.decode(await request.read(), type=_Change)
            if change.text is not None and not change.text.strip():
                raise ValueError("text is empty")
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            return problem(400, str(exc))
        if change.text is None and not change.resolved:
            return problem(400, "give an update's text, or resolved: true, or both")
        if note.resolved_at is not None:
            return problem(409, "the note is resolved; post a new one")
        now = time.time()
        at = datetime.fromtimestamp(now, UTC)
        if change.text is not None:
            note.updates.append(NoteUpdate(at=at, text=change.text.strip(), by=user.id))
        if change.resolved:
            note.resolved_at = at
        note.changed = max(now, note.changed + 1e-6)  # later than the version it replaces
        await self.rules.put_note(note, user.id, created=False)
        log.info("status_note_updated", municipality=m, note=nid, by=user.id,
                 resolved=change.resolved)
        return web.json_response(msgspec.to_builtins(note))

    async def delete(self, request: web.Request, user: ApiUser | None) -> web.StreamResponse:
        assert user is not None
        m, nid = request.match_info["m"], request.match_info["id"]
        if not self.slas.visible(user, m):
            return problem(404, NOT_FOUND)
        if nid not in {n.id for n in await self.held(m)}:
            return problem(404, "no such note")
        await self.rules.delete_note(nid, user.id)
        log.info("status_note_deleted", municipality=m, note=nid, by=user.id)
        return web.json_response({"deleted": nid})
