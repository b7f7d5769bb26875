"""Sign-in for browsers: a token for an HttpOnly, SameSite=Strict cookie, honoured for
reads only (monitor.web.auth)."""

from __future__ import annotations

import structlog
from aiohttp import web

from monitor.web.auth import COOKIE, Auth

__all__ = ["Login"]

log = structlog.get_logger(__name__)


class Login:
    def __init__(self, auth: Auth) -> None:
        self.auth = auth

    async def form(self, _: web.Request) -> web.StreamResponse:
        return web.Response(content_type="text/html", text=(
            "<!doctype html><html lang=nb><meta charset=utf-8><title>Logg inn</title>"
            "<h1>Logg inn</h1><form method=post action=/login>"
            "<label>Tilgangsnøkkel <input type=password name=token autocomplete=off>"
            "</label> <button>Logg inn</button></form></html>"))

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        token = str(form.get("token", ""))
        user = self.auth.user_for_token(token) if token else None
        if user is None:
            return web.Response(status=401, content_type="text/html", text=(
                "<!doctype html><meta charset=utf-8><p>Ukjent nøkkel. "
                "<a href=/login>Prøv igjen</a></p>"))
        where = f"/sla/{user.municipality}" if user.role == "viewer" else "/"
        response = web.HTTPSeeOther(where)
        response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", max_age=12 * 3600,
                            secure=request.secure)
        log.info("portal_login", user=user.id)
        raise response

    async def logout(self, _: web.Request) -> web.StreamResponse:
        response = web.HTTPSeeOther("/login")
        response.del_cookie(COOKIE)
        raise response
