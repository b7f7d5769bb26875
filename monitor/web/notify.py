"""On-call rotas (operators and admins) and the signed acknowledgement links that
notifications carry (their own signature, no sign-in)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiohttp import web

from monitor.config import ApiUser
from monitor.notify.links import verify
from monitor.notify.service import NotifyService

__all__ = ["NotifyRoutes"]


class NotifyRoutes:
    def __init__(self, notify: NotifyService) -> None:
        self.schedules = notify.schedules
        self.people = notify.people
        self.ack_secret = notify.ack_secret
        self.rules = notify.rules

    async def oncall(self, request: web.Request, _: ApiUser | None) -> web.Response:
        oncall = self.schedules.get(request.match_info["schedule"])
        if oncall is None:
            return web.json_response({"error": "no such schedule"}, status=404)
        at = datetime.now(UTC)
        change = oncall.next_change(at)
        return web.json_response({
            "schedule": oncall.settings.id, "now": oncall.who(at),
            "next": None if change is None else {"at": change[0].isoformat(),
                                                 "who": change[1]}})

    async def ical(self, request: web.Request, _: ApiUser | None) -> web.Response:
        oncall = self.schedules.get(request.match_info["schedule"])
        if oncall is None:
            return web.json_response({"error": "no such schedule"}, status=404)
        at = datetime.now(UTC)
        body = oncall.ical(at - timedelta(days=7), at + timedelta(days=56), self.people)
        return web.Response(body=body, content_type="text/calendar", charset="utf-8")

    def _check_link(self, request: web.Request) -> str | None:
        if self.ack_secret is None:
            return "acknowledgement links are not configured"
        q = request.query
        return verify(self.ack_secret, request.match_info["alert"], q.get("by", ""),
                      q.get("exp", ""), q.get("sig", ""))

    async def ack_form(self, request: web.Request) -> web.Response:
        problem = self._check_link(request)
        if problem is not None:
            return web.Response(status=403, text=problem)
        alert = self.rules.find(request.match_info["alert"])
        summary = alert.annotations.get("summary", alert.rule) if alert else "?"
        return web.Response(content_type="text/html", text=(
            "<!doctype html><meta charset=utf-8><title>Kvitter alarm</title>"
            f"<p>{_escape(summary)}</p><form method=post action='{_escape(request.path_qs)}'>"
            "<button>Kvitter / acknowledge</button></form>"))

    async def ack(self, request: web.Request) -> web.Response:
        problem = self._check_link(request)
        if problem is not None:
            return web.Response(status=403, text=problem)
        fp = request.match_info["alert"]
        who = f"{request.query.get('by', '')} (link)"
        try:
            await self.rules.acknowledge(fp, who, "acknowledged by link", {"via": "link"})
        except KeyError:
            return web.Response(status=404, text="no such alert, or it is resolved")
        return web.Response(text="Kvittert / acknowledged.")


def _escape(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("'", "&#39;").replace('"', "&quot;"))
