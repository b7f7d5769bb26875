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
        return verify(self.ack_secret, request.match_info["alert"], q.get("since", ""),
                      q.get("by", ""), q.get("exp", ""), q.get("sig", ""))

    async def ack_form(self, request: web.Request) -> web.Response:
        """What the link acknowledges, and a button; a link sent to a receiver (a shared
        mailbox, a chat room) rather than a person asks who is acknowledging."""
        problem = self._check_link(request)
        if problem is not None:
            return web.Response(status=403, text=problem)
        alert = self.rules.find(request.match_info["alert"])
        summary = (alert.annotations.get("summary_nb") or alert.annotations.get(
            "summary") or alert.rule) if alert else "?"
        by = request.query.get("by", "")
        person = self.people.get(by)
        who = (f"<p>Kvitteres som {_escape(person.name or person.id)}.</p>" if person
               else "<p><label>Ditt navn <input name=name required maxlength=100 "
                    "autocomplete=name></label></p>")
        return web.Response(content_type="text/html", text=(
            "<!doctype html><html lang=nb><meta charset=utf-8><meta name=viewport "
            "content='width=device-width, initial-scale=1'><title>Kvitter alarm</title>"
            f"<h1>Kvitter alarm</h1><p>{_escape(summary)}</p>"
            f"<form method=post action='{_escape(request.path_qs)}'>{who}"
            "<p><label>Kommentar <input name=comment maxlength=500></label></p>"
            "<button>Kvitter</button></form>"))

    async def ack(self, request: web.Request) -> web.Response:
        problem = self._check_link(request)
        if problem is not None:
            return web.Response(status=403, text=problem)
        fp = request.match_info["alert"]
        by = request.query.get("by", "")
        alert = self.rules.find(fp)
        if alert is None or alert.state == "resolved":
            return web.Response(status=404, text="Varselet er løst / the alert is resolved.")
        if int(alert.active_since) != int(request.query.get("since", "0")):
            # the link was sent for an earlier incident of this alert: it must not stop
            # the escalation of this one
            return web.Response(status=410, text=(
                "Lenken gjelder en tidligere hendelse / the link is for an earlier "
                "incident of this alert."))
        if alert.ack_by is not None:
            return web.Response(text=f"Allerede kvittert av {alert.ack_by} / already "
                                     f"acknowledged.")
        form = await request.post()
        name = _one_line(str(form.get("name", "")))[:100]
        comment = _one_line(str(form.get("comment", "")))[:500] or "kvittert med lenke"
        if by in self.people:
            who = f"{by} (link)"
        elif name:
            who = f"{name} (link to {by})"  # the person, and where the link was sent
        else:
            return web.Response(status=400, text=(
                "Skriv navnet ditt: lenken ble sendt til en felles mottaker, ikke til deg."))
        try:
            await self.rules.acknowledge(fp, who, comment, {"via": "link", "sent_to": by,
                                                            "comment": comment})
        except KeyError:
            return web.Response(status=404, text="no such alert, or it is resolved")
        return web.Response(text="Kvittert / acknowledged.")


def _one_line(text: str) -> str:
    """A name or comment as one line of printable text (it goes in logs and messages)."""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())


def _escape(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("'", "&#39;").replace('"', "&quot;"))
