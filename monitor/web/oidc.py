"""Sign-in with OpenID Connect (Entra ID, or any provider): the authorization code
flow with PKCE (RFC 7636) and a nonce.

``/login/oidc`` sends the browser to the provider with a fresh state, nonce and code
verifier, kept here (never in the browser) and bound to that browser by a short-lived
cookie; ``/login/oidc/callback`` takes the code back only with that state and that
cookie, trades it (with the verifier and, for a confidential client, its secret) for
an ID token, and accepts the token only if its signature is by a key the provider
publishes, it was issued by the configured issuer for this client, it has not expired
and it carries the nonce sent. The configured ``claim`` (Entra ID: ``groups``, or
``roles`` for app roles) gives role and municipality (monitor.web.grants). Every
refusal is logged with its reason; the provider's password check is its own.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import structlog
from aiohttp import web
from authlib.common.security import generate_token
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from monitor.config import ApiUser, OidcSettings
from monitor.web.grants import granted_user

__all__ = ["Oidc", "OidcRefused"]

log = structlog.get_logger(__name__)

BINDING_COOKIE: Final = "driftsvakt_oidc"
PENDING_SECONDS: Final = 600.0  # from leaving for the provider to coming back
MAX_PENDING: Final = 10_000
ALGORITHMS: Final = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384"]
LEEWAY_SECONDS: Final = 60  # clocks of engine and provider may differ this much


class OidcRefused(Exception):
    """A sign-in that did not come through; ``status`` says what kind of failure."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(slots=True)
class _Pending:
    nonce: str
    verifier: str
    binding: bytes  # SHA-256 of the cookie that sent this browser away
    started: float


class Oidc:
    def __init__(self, settings: OidcSettings, client_secret: str | None,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.client_secret = client_secret
        self.clock = clock
        self._pending: dict[str, _Pending] = {}
        self._metadata: dict[str, Any] | None = None
        self._keys: KeySet | None = None
        self._lock = asyncio.Lock()

    # the provider's published configuration and keys, fetched when first needed

    async def _get_json(self, url: str) -> dict[str, Any]:
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session, \
                    session.get(url) as resp:
                if resp.status != 200:
                    raise OidcRefused(503, f"{url} answered {resp.status}")
                body = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise OidcRefused(503, f"{url}: {exc!r}"[:300]) from None
        if not isinstance(body, dict):
            raise OidcRefused(503, f"{url} did not answer a JSON object")
        return body

    async def metadata(self) -> dict[str, Any]:
        async with self._lock:
            if self._metadata is None:
                issuer = self.settings.issuer.rstrip("/")
                found = await self._get_json(f"{issuer}/.well-known/openid-configuration")
                if found.get("issuer") != self.settings.issuer:
                    raise OidcRefused(503, f"the provider calls itself {found.get('issuer')!r},"
                                           f" not {self.settings.issuer!r}")
                for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                    if not isinstance(found.get(key), str):
                        raise OidcRefused(503, f"the provider's configuration has no {key}")
                self._metadata = found
            return self._metadata

    async def keys(self, refresh: bool = False) -> KeySet:
        """The provider's signing keys; fetched again when a token names a key not
        among them (the provider rolled its keys)."""
        meta = await self.metadata()
        async with self._lock:
            if self._keys is None or refresh:
                try:
                    self._keys = KeySet.import_key_set(
                        await self._get_json(meta["jwks_uri"]))  # type: ignore[arg-type]
                except (JoseError, ValueError, KeyError, TypeError) as exc:
                    raise OidcRefused(503, f"the provider's keys: {exc!r}"[:300]) from None
            return self._keys

    # the two legs of the flow

    async def redirect(self, request: web.Request) -> web.Response:
        """The answer that sends the browser to the provider."""
        meta = await self.metadata()
        now = self.clock()
        if len(self._pending) >= MAX_PENDING:
            self._pending = {s: p for s, p in self._pending.items()
                             if now - p.started < PENDING_SECONDS}
            if len(self._pending) >= MAX_PENDING:
                raise OidcRefused(503, "too many sign-ins under way")
        state, binding = generate_token(32), generate_token(32)
        pending = _Pending(nonce=generate_token(32), verifier=generate_token(64),
                           binding=hashlib.sha256(binding.encode()).digest(), started=now)
        self._pending[state] = pending
        query = urllib.parse.urlencode({
            "response_type": "code", "client_id": self.settings.client_id,
            "redirect_uri": self.settings.redirect_url,
            "scope": " ".join(self.settings.scopes), "state": state,
            "nonce": pending.nonce, "code_challenge_method": "S256",
            "code_challenge": create_s256_code_challenge(pending.verifier)})
        endpoint = meta["authorization_endpoint"]
        response = web.Response(status=302, headers={
            "Location": f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"})
        # Lax: it must come back on the provider's top-level redirect to the callback
        response.set_cookie(BINDING_COOKIE, binding, httponly=True, samesite="Lax",
                            max_age=int(PENDING_SECONDS), secure=request.secure,
                            path="/login/oidc")
        return response

    async def callback(self, request: web.Request) -> ApiUser:
        """The user the provider vouched for, or OidcRefused saying why not."""
        query = request.query
        pending = self._pending.pop(query.get("state", ""), None)
        binding = request.cookies.get(BINDING_COOKIE, "")
        if pending is None or self.clock() - pending.started > PENDING_SECONDS:
            raise OidcRefused(400, "unknown or expired state")
        if not hmac.compare_digest(hashlib.sha256(binding.encode()).digest(),
                                   pending.binding):
            raise OidcRefused(400, "the state was issued to another browser")
        if "error" in query:
            raise OidcRefused(401, f"the provider refused: {query.get('error', '')[:100]} "
                                   f"{query.get('error_description', '')[:200]}")
        code = query.get("code", "")
        if not code:
            raise OidcRefused(400, "no code")
        claims = await self._claims(await self._id_token(code, pending.verifier),
                                    pending.nonce)
        name = str(claims.get(self.settings.name_claim) or claims["sub"])[:256]
        values = claims.get(self.settings.claim)
        if values is None and self.settings.claim in (claims.get("_claim_names") or {}):
            log.warning("oidc_groups_overage", user=name[:64], claim=self.settings.claim,
                        hint="the user is in too many groups for the token: emit only "
                             "groups assigned to the application, or use app roles")
        if isinstance(values, str):
            values = [values]
        if not isinstance(values, list):
            values = []
        wanted = {str(v) for v in values}
        user = granted_user("oidc", name, [(g.role, g.municipality)
                                           for g in self.settings.groups if g.value in wanted])
        if user is None:
            raise OidcRefused(403, "no configured group")
        return user

    async def _id_token(self, code: str, verifier: str) -> str:
        meta = await self.metadata()
        form = {"grant_type": "authorization_code", "code": code,
                "redirect_uri": self.settings.redirect_url, "code_verifier": verifier,
                "client_id": self.settings.client_id}
        headers = {"Accept": "application/json"}
        if self.client_secret is not None:  # client_secret_basic, RFC 6749 2.3.1
            pair = (f"{urllib.parse.quote(self.settings.client_id, safe='')}:"
                    f"{urllib.parse.quote(self.client_secret, safe='')}")
            headers["Authorization"] = f"Basic {base64.b64encode(pair.encode()).decode()}"
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session, \
                    session.post(meta["token_endpoint"], data=form, headers=headers) as resp:
                body = await resp.json(content_type=None)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise OidcRefused(503, f"token endpoint: {exc!r}"[:300]) from None
        if status != 200 or not isinstance(body, dict):
            error = body.get("error") if isinstance(body, dict) else None
            raise OidcRefused(401, f"token endpoint answered {status} {error or ''}".strip())
        token = body.get("id_token")
        if not isinstance(token, str):
            raise OidcRefused(401, "no id_token in the token response")
        return token

    async def _claims(self, token: str, nonce: str) -> dict[str, Any]:
        keys = await self.keys()
        try:
            try:
                decoded = jwt.decode(token, keys, algorithms=ALGORITHMS)
            except JoseError:  # perhaps a key published since: ask once more
                decoded = jwt.decode(token, await self.keys(refresh=True),
                                     algorithms=ALGORITHMS)
            jwt.JWTClaimsRegistry(
                leeway=LEEWAY_SECONDS,
                iss={"essential": True, "value": self.settings.issuer},
                aud={"essential": True, "value": self.settings.client_id},
                sub={"essential": True}, exp={"essential": True},
                nonce={"essential": True, "value": nonce},
            ).validate(decoded.claims)
        except (JoseError, ValueError) as exc:
            raise OidcRefused(401, f"ID token refused: {exc!r}"[:300]) from None
        claims = dict(decoded.claims)
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != self.settings.client_id:
            raise OidcRefused(401, "ID token for several audiences, not authorized for us")
        return claims
