"""The engine's JSON API: alerts, acknowledgements, silences, maintenance, rule reload.

Authentication is by bearer token (``Authorization: Bearer …``), one per user in the
config's ``users``. Roles: ``viewer`` (reads, and only its own municipality's
alerts), ``operator`` (also acknowledges and silences), ``admin`` (also plans
maintenance, reloads rules and reads the audit log). With no users configured the
API reads without a token and refuses every change. Every change is written to the
audit log (who, what, when) in the same transaction as the change itself.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import tempfile
import time
from pathlib import Path
from typing import Final

import msgspec
import structlog
from aiohttp import web

from monitor.config import ApiUser, Config
from monitor.reload import EstateReload
from monitor.rules.alerts import Alert
from monitor.rules.external import MAX_ALERTS, PostableAlert
from monitor.rules.matchers import Matcher
from monitor.rules.service import RulesService
from monitor.rules.suppress import Maintenance, Silence, SpecError
from monitor.store.backup import for_the_peer
from monitor.web.auth import Auth, problem

__all__ = ["Api"]

log = structlog.get_logger(__name__)

_ENCODER: Final = msgspec.json.Encoder()
_POSTED: Final = msgspec.json.Decoder(list[PostableAlert])


class _Ack(msgspec.Struct, forbid_unknown_fields=True):
    comment: str = ""


class Api:
    def __init__(self, config: Config, rules: RulesService, auth: Auth,
                 estate: EstateReload | None = None) -> None:
        self.config = config
        self.estate = estate
        self.rules = rules
        self.auth = auth

    # -- alerts ------------------------------------------------------------------------

    def _visible(self, alert: Alert, user: ApiUser | None) -> bool:
        return Auth.sees(user, alert.labels.get("municipality"))

    async def list_alerts(self, request: web.Request, user: ApiUser | None
                          ) -> web.StreamResponse:
        query = request.query
        wanted = {k: query[k] for k in ("severity", "location", "municipality", "alertname")
                  if k in query}
        state = query.get("state")
        out = []
        for alert in self.rules.engine.alerts.values():
            if not self._visible(alert, user):
                continue
            if state is not None and state not in (alert.shown_state(), alert.state):
                continue
            if state is None and alert.state == "resolved":
                continue
            if any(alert.labels.get(k) != v for k, v in wanted.items()):
                continue
            out.append(alert.as_json())
        out.sort(key=lambda a: (a["state"] != "firing", a["active_since"]))
        return web.json_response({"alerts": out, "count": len(out)})

    async def get_alert(self, request: web.Request, user: ApiUser | None
                        ) -> web.StreamResponse:
        alert = self.rules.engine.alerts.get(request.match_info["id"])
        if alert is None or not self._visible(alert, user):
            return problem(404, "no such alert")
        body = alert.as_json()
        body["log"] = [{"ts": ts, "state": state, "detail": detail} for _, ts, state, detail
                       in await self.rules.store.alert_log(alert.fingerprint)]
        return web.json_response(body)

    async def ack(self, request: web.Request, user: ApiUser | None) -> web.StreamResponse:
        assert user is not None
        try:
            body = msgspec.json.decode(await request.read() or b"{}", type=_Ack)
        except msgspec.DecodeError as exc:
            return problem(400, str(exc))
        try:
            alert = await self.rules.acknowledge(request.match_info["id"], user.id,
                                                 body.comment)
        except KeyError:
            return problem(404, "no such alert, or it is resolved")
        return web.json_response(alert.as_json())

    # -- alerts from other systems (Alertmanager's API) ---------------------------------

    async def post_alerts(self, request: web.Request, user: ApiUser | None
                          ) -> web.StreamResponse:
        """``POST /api/v2/alerts`` as Alertmanager answers it: a JSON list of
        postableAlerts; 200 with an empty body, 400 saying what is wrong."""
        assert user is not None
        body = await request.read()
        try:
            posted = _POSTED.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("external_alerts_refused", sender=user.id, error=str(exc))
            return problem(400, str(exc))
        if len(posted) > MAX_ALERTS:
            return problem(400, f"at most {MAX_ALERTS} alerts in one post")
        for i, one in enumerate(posted):
            why = one.problem()
            if why is not None:
                log.warning("external_alerts_refused", sender=user.id, error=why, index=i)
                return problem(400, f"alert {i}: {why}")
        await self.rules.take_external(posted, user.id)
        return web.Response(status=200)

    # -- the store, for the peer ---------------------------------------------------------

    async def store_snapshot(self, request: web.Request, user: ApiUser | None
                             ) -> web.StreamResponse:
        """This engine's store as the other location's engine may start from it
        (``driftsvakt store rebuild``): one consistent online backup, streamed."""
        with tempfile.TemporaryDirectory(prefix="driftsvakt-snapshot-") as tmp:
            copy = Path(tmp) / "store.db"
            counts = await asyncio.to_thread(for_the_peer, self.rules.store.path, copy)
            response = web.StreamResponse(headers={
                "Content-Type": "application/vnd.sqlite3",
                "Content-Length": str(copy.stat().st_size),
                "X-Driftsvakt-Rows": json.dumps(counts)})
            await response.prepare(request)
            with copy.open("rb") as body:
                while chunk := await asyncio.to_thread(body.read, 1 << 20):
                    await response.write(chunk)
            await response.write_eof()
            log.info("store_snapshot_sent", to=request.remote, bytes=copy.stat().st_size,
                     **counts)
            return response

    # -- silences and maintenance ------------------------------------------------------

    async def list_silences(self, _: web.Request, user: ApiUser | None) -> web.StreamResponse:
        now = time.time()
        out = [{**msgspec.to_builtins(s.spec), "active": s.start <= now < s.end}
               for s in self.rules.engine.silences.values()
               if s.end > now and Auth.sees(user, _pinned_municipality(s.matchers))]
        return web.json_response({"silences": out})

    async def add_silence(self, request: web.Request, user: ApiUser | None
                          ) -> web.StreamResponse:
        assert user is not None
        try:
            silence = msgspec.json.decode(await request.read(), type=Silence)
            silence.id = f"s-{secrets.token_hex(6)}"
            await self.rules.add_silence(silence, user.id)
        except (msgspec.DecodeError, SpecError) as exc:
            return problem(400, str(exc))
        return web.json_response(msgspec.to_builtins(silence), status=201)

    async def delete_silence(self, request: web.Request, user: ApiUser | None
                             ) -> web.StreamResponse:
        assert user is not None
        sid = request.match_info["id"]
        if not await self.rules.expire_silence(sid, user.id):
            return problem(404, "no such silence")
        return web.json_response({"expired": sid})

    async def list_maintenance(self, _: web.Request, user: ApiUser | None
                               ) -> web.StreamResponse:
        now = time.time()
        out = []
        for window in self.rules.engine.maintenance.values():
            shown: Maintenance | None = window
            if user is not None and user.role == "viewer":
                # a viewer sees its own part of a window, and nothing of another's
                config = self.config  # as it is now: the estate reloads
                shown = window.part_of(
                    user.municipality or "",
                    {d: config.municipality_of(d) for d in window.devices
                     if d in config.devices},
                    {s: config.sites[s].municipality for s in window.sites
                     if s in config.sites})
            if shown is not None:
                out.append({**msgspec.to_builtins(shown), "active": window.active(now)})
        return web.json_response({"maintenance": out})

    async def add_maintenance(self, request: web.Request, user: ApiUser | None
                              ) -> web.StreamResponse:
        assert user is not None
        try:
            window = msgspec.json.decode(await request.read(), type=Maintenance)
            window.id = f"m-{secrets.token_hex(6)}"
            await self.rules.add_maintenance(window, user.id)
        except (msgspec.DecodeError, SpecError) as exc:
            return problem(400, str(exc))
        return web.json_response(msgspec.to_builtins(window), status=201)

    async def delete_maintenance(self, request: web.Request, user: ApiUser | None
                                 ) -> web.StreamResponse:
        assert user is not None
        mid = request.match_info["id"]
        if not await self.rules.delete_maintenance(mid, user.id):
            return problem(404, "no such maintenance window")
        return web.json_response({"deleted": mid})

    # -- administration ----------------------------------------------------------------

    async def reload(self, _: web.Request, user: ApiUser | None) -> web.StreamResponse:
        """The estate, then the rule files; either refused as a whole (400, with every
        problem found)."""
        assert user is not None
        assert self.estate is not None
        change, problems = await self.estate.everything(user.id)
        await self.rules.store.audit(user.id, "reload_rules", str(self.rules.path),
                                     _ENCODER.encode({"problems": problems}))
        body = {"estate": change.summary()}
        if not change.reloaded or problems:
            return web.json_response({"reloaded": False, **body,
                                      "problems": change.problems + problems}, status=400)
        return web.json_response({"reloaded": True, **body,
                                  "rules": len(self.rules.engine.rules.rules)})

    async def audit(self, request: web.Request, user: ApiUser | None) -> web.StreamResponse:
        limit = min(int(request.query.get("limit", "100")), 10_000)
        rows = await self.rules.store.audit_log(limit)
        return web.json_response({"audit": [
            {"ts": ts, "actor": actor, "action": action, "target": target,
             "detail": msgspec.json.decode(detail)}
            for ts, actor, action, target, detail in rows]})


def _pinned_municipality(matchers: tuple[Matcher, ...]) -> str | None:
    """The one municipality a silence's matchers pin, if they pin one: a viewer sees
    only the silences of its own."""
    for m in matchers:
        if m.name == "municipality" and m.op == "=":
            return m.value
    return None
