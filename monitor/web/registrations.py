"""Registered host agents over HTTP (monitor.registration): operators see what
registered, how the rules placed it and why one is held, and accept it (naming the
site where the rules gave none) or reject it — on the API or on the workbench's page
/registrations. Each decision is stored with its audit entry and shared with the
other location."""

from __future__ import annotations

from typing import Literal

import msgspec
import structlog
from aiohttp import web

from monitor.config import ApiUser
from monitor.registration import Registration, Registry
from monitor.store.db import Store
from monitor.web.auth import problem
from monitor.web.workbench import Workbench

__all__ = ["RegistrationRoutes"]

log = structlog.get_logger(__name__)

_ORDER = {"pending": 0, "accepted": 1, "rejected": 2}


class _Decision(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    action: Literal["accept", "reject"]
    site: str | None = None
    device_class: Literal["server", "pc"] | None = msgspec.field(name="class", default=None)


class RegistrationRoutes:
    def __init__(self, agents: Registry, store: Store, bench: Workbench) -> None:
        self.agents = agents
        self.store = store
        self.bench = bench

    def _rows(self, status: str | None) -> list[Registration]:
        rows = [r for r in self.agents.rows.values() if status is None or r.status == status]
        return sorted(rows, key=lambda r: (_ORDER[r.status], r.municipality, r.device))

    async def _decide(self, device: str, decision: _Decision, user: ApiUser
                      ) -> Registration:
        change = self.agents.decide(device, decision.action == "accept", user.id,
                                    decision.site, decision.device_class)
        await self.store.put_registration(change)
        log.info("agent_registration_decided", device=device, by=user.id,
                 status=change.row.status, site=change.row.site)
        return change.row

    # -- API ----------------------------------------------------------------------------

    async def list(self, request: web.Request, user: ApiUser | None) -> web.StreamResponse:
        status = request.query.get("status")
        if status is not None and status not in _ORDER:
            return problem(400, f"status is one of {', '.join(_ORDER)}")
        return web.json_response({"registrations": [msgspec.to_builtins(r)
                                                    for r in self._rows(status)]})

    async def decide(self, request: web.Request, user: ApiUser | None) -> web.StreamResponse:
        assert user is not None
        try:
            decision = msgspec.json.decode(await request.read(), type=_Decision)
            row = await self._decide(request.match_info["id"], decision, user)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            return problem(400, str(exc))
        except KeyError:
            return problem(404, "no such registration")
        return web.json_response(msgspec.to_builtins(row))

    # -- the workbench's page and its form --------------------------------------------------

    async def page(self, request: web.Request, user: ApiUser | None) -> web.StreamResponse:
        config = self.agents.config
        sites = sorted(config.sites.values(), key=lambda s: (s.municipality, s.name))
        return self.bench.render(request, "registrations.html", user,
                                 rows=self._rows(None), sites=sites,
                                 municipalities={m.id: m.name
                                                 for m in config.municipalities.values()})

    async def form(self, request: web.Request, user: ApiUser | None) -> web.StreamResponse:
        assert user is not None
        form = await request.post()
        try:
            decision = _Decision(action="accept" if form.get("action") == "accept"
                                 else "reject", site=str(form.get("site") or "") or None)
            await self._decide(request.match_info["id"], decision, user)
        except ValueError as exc:
            return problem(400, str(exc))
        except KeyError:
            return problem(404, "no such registration")
        raise web.HTTPSeeOther("/registrations")
