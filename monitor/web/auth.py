"""Who is asking: bearer tokens (or the portal's cookie) to config ``users``, and roles.

One place for every route the engine serves, so that the API, the SLA portal and the
on-call routes agree. Roles: ``viewer`` (reads; bound to one municipality),
``operator`` (also acknowledges and silences), ``admin`` (also plans maintenance,
corrects the SLA, reloads rules, reads the audit log). With no users configured,
reads are open and every change is refused.

A browser cannot send a bearer header when following a link, so ``/login`` trades a
token for a server-side session (monitor.web.sessions) whose id is an HttpOnly,
SameSite=Strict cookie. The cookie is honoured for the pages' reads, and for the
console's own forms only with their form token (an HMAC of the cookie under a key
this process drew at start), so a forged cross-site form can change nothing; the API
takes bearer tokens only.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable, Iterable
from typing import Final

import argon2
import structlog
from aiohttp import web
from prometheus_client import Counter

from monitor.config import ApiUser, Config
from monitor.web.directory import Directory
from monitor.web.grants import ROLES
from monitor.web.oidc import Oidc
from monitor.web.sessions import Sessions

__all__ = ["COOKIE", "CSRF_FIELD", "Auth", "Handler", "problem"]

log = structlog.get_logger(__name__)

COOKIE: Final = "driftsvakt_session"
_HASHER: Final = argon2.PasswordHasher()  # RFC 9106's second recommended profile


@functools.cache
def _dummy_hash() -> str:
    return _HASHER.hash("no such user")
CSRF_FIELD: Final = "csrf"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
UserHandler = Callable[[web.Request, ApiUser | None], Awaitable[web.StreamResponse]]


def problem(status: int, detail: str) -> web.Response:
    return web.json_response({"error": detail}, status=status)


class Auth:
    def __init__(self, config: Config, sign_ins: Counter) -> None:
        self.sign_ins = sign_ins  # by how and outcome (monitor.web.login)
        self.sessions = Sessions()
        self.signed_in: dict[str, ApiUser] = {}  # directory users, by id
        self._form_key = secrets.token_bytes(32)
        self.directory = None if config.ldap is None else Directory(
            config.ldap, None if config.ldap.bind_password is None
            else config.ldap.bind_password.resolve())  # read: check_credentials ran
        self.oidc = None if config.oidc is None else Oidc(
            config.oidc, None if config.oidc.client_secret is None
            else config.oidc.client_secret.resolve())
        self.configure(config)

    def configure(self, config: Config) -> None:
        """The users of the config (at start, and when the estate reloads): a user no
        longer in it is refused from the next request on, its sessions included."""
        tokens: dict[bytes, ApiUser] = {}
        for user in config.users.values():
            if user.token_sha256 is not None:
                tokens[bytes.fromhex(user.token_sha256)] = user
                continue
            if user.token is None:
                continue  # a password user only
            try:
                token = user.token.resolve()
            except (KeyError, OSError) as exc:
                log.error("api_user_token_unavailable", user=user.id, error=str(exc))
                continue
            tokens[hashlib.sha256(token.encode()).digest()] = user
        self.tokens = tokens
        self.passwords = {u.id: u for u in config.users.values()
                          if u.password_argon2 is not None}
        self.by_id = {**self.passwords, **{u.id: u for u in self.tokens.values()}}
        self.users_configured = (bool(config.users) or self.directory is not None
                                 or self.oidc is not None)

    def user_for_token(self, token: str) -> ApiUser | None:
        """The user whose token this is; None for anything else, including an empty
        or blank token and one with characters no generated token has (a non-breaking
        space, a raw 0xA0 byte read as latin-1)."""
        token = token.strip(" \t")
        if not token or not token.isascii() or not token.isprintable():
            return None
        digest = hashlib.sha256(token.encode()).digest()
        found = None
        for known, user in self.tokens.items():
            if hmac.compare_digest(known, digest):
                found = user
        return found

    def user_for_password(self, name: str, password: str) -> ApiUser | None:
        """The user whose Argon2id hash ``password`` matches; as slow for a name that
        is no user's (a hash is checked all the same), so timing tells nothing."""
        user = self.passwords.get(name)
        stored = user.password_argon2 if user is not None else _dummy_hash()
        assert stored is not None
        try:
            _HASHER.verify(stored, password)
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return None
        return user

    def session_user(self, request: web.Request) -> ApiUser | None:
        """The user signed in with this request's session cookie, if any."""
        sid = request.cookies.get(COOKIE)
        uid = None if sid is None else self.sessions.user(sid)
        return None if uid is None else self.by_id.get(uid) or self.signed_in.get(uid)

    def start_session(self, user: ApiUser) -> str:
        """A new session for ``user``; one the directory vouched for is remembered for
        as long as any session of it lives (the directory is asked again at sign-in)."""
        if user.directory:
            if len(self.signed_in) >= 1000:  # forget those whose sessions all ended
                live = self.sessions.users()
                self.signed_in = {k: v for k, v in self.signed_in.items() if k in live}
            self.signed_in[user.id] = user
        return self.sessions.start(user.id)

    def user_of(self, request: web.Request, page: bool = False
                ) -> ApiUser | web.Response | None:
        """Who asks: a bearer token anywhere, or on a page's read the session cookie."""
        if not self.users_configured:
            return None  # no users configured: reads are open, changes refused
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            user = self.user_for_token(header[7:])
            return user if user is not None else problem(401, "unknown token")
        if page and request.method in ("GET", "HEAD") and COOKIE in request.cookies:
            user = self.session_user(request)
            return user if user is not None else problem(401, "sign in at /login")
        return problem(401, "send Authorization: Bearer <token>")

    def form_token(self, request: web.Request) -> str:
        """The token the console's forms carry: bound to the credential this request
        was signed in with, so it is worth nothing with another, or without it."""
        header = request.headers.get("Authorization", "")
        credential = header[7:] if header.startswith("Bearer ") else request.cookies.get(
            COOKIE, "")
        digest = hashlib.sha256(credential.encode("utf-8", "replace")).digest()
        return hmac.new(self._form_key, digest, "sha256").hexdigest()

    async def form_user(self, request: web.Request) -> ApiUser | web.Response | None:
        """Who posts a console form: a bearer header as for the API, or the cookie
        together with the form token of the page the form came from."""
        if not self.users_configured or request.headers.get("Authorization", "").startswith(
                "Bearer "):
            return self.user_of(request)
        if COOKIE not in request.cookies:
            return problem(401, "sign in at /login")
        user = self.session_user(request)
        if user is None:
            return problem(401, "sign in at /login")
        form = await request.post()
        sent = form.get(CSRF_FIELD)
        if not isinstance(sent, str) or not sent.isascii() or not hmac.compare_digest(
                sent, self.form_token(request)):
            log.warning("console_form_refused", user=user.id, path=request.path,
                        address=request.remote)
            return problem(403, "the form is not from this console, or it has expired: "
                                "reload the page")
        return user

    def guard(self, role: str, handler: UserHandler, page: bool = False,
              form: bool = False) -> Handler:
        """``page``: a browser's page, sent to /login instead of a 401; ``form``: a
        console form, which may come with the cookie and its form token."""
        async def guarded(request: web.Request) -> web.StreamResponse:
            user = await self.form_user(request) if form else self.user_of(request, page)
            if isinstance(user, web.Response):
                if page and user.status == 401:
                    raise web.HTTPSeeOther("/login")
                return user
            if role != "viewer" and user is None and not (page and request.method == "GET"):
                return problem(403, "changes need an API user: configure 'users'")
            if user is not None and ROLES[user.role] < ROLES[role]:
                if user.role == "viewer":
                    return problem(404, "not found")  # a viewer learns nothing
                return problem(403, f"{user.id} is a {user.role}; this needs {role}")
            return await handler(request, user)
        return guarded

    def add_routes(self, app: web.Application,
                   routes: Iterable[tuple[str, str, str, UserHandler]]) -> None:
        """Register (method, path, least role, handler) rows, each behind the guard."""
        for method, path, role, handler in routes:
            app.router.add_route(method, path, self.guard(role, handler))

    def add_pages(self, app: web.Application,
                  pages: Iterable[tuple[str, str, UserHandler]]) -> None:
        """Register (path, least role, handler) pages for browsers: GET, behind the
        guard, and a visitor without a valid token is sent to /login."""
        for path, role, handler in pages:
            app.router.add_get(path, self.guard(role, handler, page=True))

    @staticmethod
    def sees(user: ApiUser | None, municipality: str | None) -> bool:
        """May ``user`` see things of ``municipality`` (None: the centre's own)?"""
        return user is None or user.role != "viewer" or municipality == user.municipality
