"""Sign-in for browsers: a token for a server-side session (monitor.web.sessions) whose
id is an HttpOnly, SameSite=Strict cookie, honoured for the pages' reads and, with
their form token, the console's forms (monitor.web.auth); sign-out ends the session,
or every session of the user."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Final

import structlog
from aiohttp import web

from monitor.config import ApiUser
from monitor.web.auth import COOKIE, Auth
from monitor.web.directory import DirectoryUnavailable
from monitor.web.oidc import BINDING_COOKIE, OidcRefused

__all__ = ["Login"]

log = structlog.get_logger(__name__)


# Failed sign-ins per client address and per user name: after this many within the
# window, the address (or the name, from anywhere) waits (429) until the window has
# passed; each failure is logged with its count.
MAX_FAILURES: Final = 10
WINDOW_SECONDS: Final = 60.0


class Login:
    def __init__(self, auth: Auth, clock: Callable[[], float] = time.monotonic) -> None:
        self.auth = auth
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}

    def _refused_for(self, key: str) -> float:
        """Seconds ``key`` (an address or a user name) must wait before it may try
        again (0: it may)."""
        now = self.clock()
        failures = self._failures.get(key)
        while failures and now - failures[0] >= WINDOW_SECONDS:
            failures.popleft()
        if not failures:
            self._failures.pop(key, None)
            return 0.0
        return WINDOW_SECONDS - (now - failures[0]) if len(failures) >= MAX_FAILURES else 0.0

    def _failed(self, key: str) -> int:
        """Count a failure against ``key`` (an address, or a user name); how many now."""
        if len(self._failures) > 10_000:  # a flood of addresses: forget, rather than grow
            self._failures.clear()
        failures = self._failures.setdefault(key, deque())
        failures.append(self.clock())
        return len(failures)

    async def form(self, _: web.Request) -> web.StreamResponse:
        single = ("<p><a href=/login/oidc>Logg inn med kommunens konto</a></p>"
                  if self.auth.oidc is not None else "")
        return web.Response(content_type="text/html", text=(
            "<!doctype html><html lang=nb><meta charset=utf-8><title>Logg inn</title>"
            f"<h1>Logg inn</h1>{single}<form method=post action=/login>"
            "<label>Tilgangsnøkkel <input type=password name=token autocomplete=off>"
            "</label> <button>Logg inn</button></form>"
            "<h2>Nødinnlogging</h2><form method=post action=/login>"
            "<label>Brukernavn <input name=user autocomplete=username></label> "
            "<label>Passord <input type=password name=password "
            "autocomplete=current-password></label> <button>Logg inn</button></form></html>"))

    async def login(self, request: web.Request) -> web.StreamResponse:
        address = request.remote or "?"
        form = await request.post()
        token, name = str(form.get("token", "")), str(form.get("user", ""))[:64]
        keys = [address, *((f"user:{name}",) if name else ())]
        wait = max(self._refused_for(key) for key in keys)
        how = "password" if name else "token"
        if wait > 0:
            self.auth.sign_ins.labels(how, "throttled").inc()
            return web.Response(status=429, content_type="text/html",
                                headers={"Retry-After": str(int(wait) + 1)}, text=(
                "<!doctype html><meta charset=utf-8><p>For mange forsøk. Vent litt.</p>"))
        if name:  # Argon2 is slow on purpose, LDAP is synchronous: off the event loop
            try:
                user = await asyncio.to_thread(self._by_password, name,
                                               str(form.get("password", "")))
            except DirectoryUnavailable as exc:
                self.auth.sign_ins.labels("directory", "unavailable").inc()
                log.error("directory_unavailable", error=str(exc)[:300], user=name)
                return web.Response(status=503, content_type="text/html", text=(
                    "<!doctype html><meta charset=utf-8><p>Katalogen svarer ikke. Prøv "
                    "igjen, eller bruk nødinnloggingen.</p>"))
        else:
            user = self.auth.user_for_token(token) if token else None
        if user is None:
            self.auth.sign_ins.labels(how, "failed").inc()
            counts = [self._failed(key) for key in keys]
            log.warning("portal_login_failed", address=address, user=name or None,
                        failures=max(counts), window_s=WINDOW_SECONDS)
            return web.Response(status=401, content_type="text/html", text=(
                "<!doctype html><meta charset=utf-8><p>Ukjent nøkkel. "
                "<a href=/login>Prøv igjen</a></p>"))
        return self.sign_in(request, user, "directory" if user.directory else
                            "password" if name else "token")

    def sign_in(self, request: web.Request, user: ApiUser, how: str) -> web.Response:
        """Start ``user``'s session (never reusing the id the browser came with) and
        send them to their start page. Coming back from an identity provider is a
        cross-site navigation, on which a browser withholds a SameSite=Strict cookie
        even across a redirect: the page moves on by itself, from this site."""
        where = f"/sla/{user.municipality}" if user.role == "viewer" else "/"
        if how == "oidc":
            response = web.Response(content_type="text/html", text=(
                f"<!doctype html><html lang=nb><meta charset=utf-8><meta "
                f"http-equiv=refresh content='0;url={where}'><title>Logget inn</title>"
                f"<p><a href={where}>Videre</a></p></html>"))
            response.del_cookie(BINDING_COOKIE, path="/login/oidc")
        else:
            response = web.Response(status=303, headers={"Location": where})
        old = request.cookies.get(COOKIE)
        if old is not None:
            self.auth.sessions.end(old)  # a new sign-in is a new session, never the old id
        sid = self.auth.start_session(user)
        response.set_cookie(COOKIE, sid, httponly=True, samesite="Strict",
                            max_age=int(self.auth.sessions.max_age), secure=request.secure)
        self.auth.sign_ins.labels(how, "ok").inc()
        log.info("portal_login", user=user.id, address=request.remote or "?",
                 role=user.role, how=how)
        return response

    async def oidc_start(self, request: web.Request) -> web.StreamResponse:
        if self.auth.oidc is None:
            raise web.HTTPNotFound()
        try:
            return await self.auth.oidc.redirect(request)
        except OidcRefused as exc:
            self.auth.sign_ins.labels("oidc", "unavailable").inc()
            log.error("oidc_unavailable", reason=exc.reason)
            return _page(exc.status, "Innloggingstjenesten svarer ikke. Prøv igjen, "
                                     "eller bruk nødinnloggingen.")

    async def oidc_callback(self, request: web.Request) -> web.StreamResponse:
        if self.auth.oidc is None:
            raise web.HTTPNotFound()
        try:
            user = await self.auth.oidc.callback(request)
        except OidcRefused as exc:
            self.auth.sign_ins.labels(
                "oidc", "unavailable" if exc.status == 503 else "failed").inc()
            log.warning("portal_login_failed", how="oidc", address=request.remote or "?",
                        status=exc.status, reason=exc.reason)
            return _page(exc.status, {
                400: "Innloggingen var utløpt eller ble startet i en annen nettleser.",
                403: "Kontoen din har ikke tilgang til driftsvakt.",
                503: "Innloggingstjenesten svarer ikke. Prøv igjen, eller bruk "
                     "nødinnloggingen."}.get(exc.status, "Innloggingen ble avvist."))
        return self.sign_in(request, user, "oidc")

    def _by_password(self, name: str, password: str) -> ApiUser | None:
        """A break-glass user of the config, else the directory, if there is one."""
        if name in self.auth.passwords or self.auth.directory is None:
            return self.auth.user_for_password(name, password)
        return self.auth.directory.authenticate(name, password)

    async def logout(self, request: web.Request) -> web.StreamResponse:
        """Ends this session; with ``everywhere`` in the form, every session of its user
        (a lost laptop). Same-site only: the cookie is SameSite=Strict."""
        sid = request.cookies.get(COOKIE)
        form = await request.post()
        user = None if sid is None else self.auth.sessions.end(sid)
        if user is not None and form.get("everywhere"):
            ended = self.auth.sessions.end_all(user) + 1
            log.info("portal_logout_everywhere", user=user, sessions=ended)
        elif user is not None:
            log.info("portal_logout", user=user)
        response = web.HTTPSeeOther("/login")
        response.del_cookie(COOKIE)
        raise response


def _page(status: int, message: str) -> web.Response:
    return web.Response(status=status, content_type="text/html", text=(
        f"<!doctype html><meta charset=utf-8><p>{message} <a href=/login>Til "
        "innloggingen</a></p>"))
