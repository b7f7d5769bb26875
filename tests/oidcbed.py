"""An OpenID Connect provider for the tests, built from authlib's server components
(AuthorizationServer, the authorization code grant, the OpenID Connect and PKCE
extensions) on aiohttp, as Entra ID is to driftsvakt: a sign-in form, a token
endpoint that checks the client's secret and the PKCE verifier, signed ID tokens
(RS256) and the keys that verify them at jwks_uri, discovery at
/.well-known/openid-configuration. Users carry a ``groups`` claim, as Entra ID's do.

It listens on 127.0.0.2, another site than the engine's 127.0.0.1 to a browser, so
that coming back from it is the cross-site navigation it is in production.
``rogue`` makes it sign with a key it does not publish (a forged token);
``roll_keys()`` starts signing with a new key, published beside the old one.
"""

from __future__ import annotations

import html
import json
import secrets
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, ClassVar

from aiohttp import web
from authlib.common.security import generate_token
from authlib.oauth2 import AuthorizationServer, OAuth2Request
from authlib.oauth2.rfc6749 import ClientMixin, JsonRequest
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant
from authlib.oauth2.rfc6749.requests import OAuth2Payload
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import AuthorizationCodeMixin, UserInfo
from authlib.oidc.core.grants import OpenIDCode
from joserfc.jwk import KeySet, RSAKey

from tests.servers import free_port

HOST = "127.0.0.2"
CLIENT_ID = "driftsvakt-test"
CLIENT_SECRET = "klienthemmelighet-" + "x" * 16
GROUP_IDS = {  # Entra ID gives groups by object id
    "alta-lesere": "5b0c1c9e-0000-4000-8000-00000000a17a",
    "hammerfest-lesere": "5b0c1c9e-0000-4000-8000-0000000000af",
    "operatorer": "5b0c1c9e-0000-4000-8000-0000000000e1",
    "uvedkommende": "5b0c1c9e-0000-4000-8000-0000000000ff",
}
USERS = {  # name: (password, groups)
    "liv@alta.kommune.no": ("liv-passord-1", ["alta-lesere"]),
    "ola@driftssentral.no": ("ola-passord-1", ["operatorer"]),
    "sara@alta.kommune.no": ("sara-passord-1", ["uvedkommende"]),
}


@dataclass
class _Client(ClientMixin):  # type: ignore[misc]
    client_id: str
    client_secret: str
    redirect_uris: list[str]

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope: str) -> str:
        return " ".join(s for s in (scope or "").split() if s in ("openid", "profile"))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return secrets.compare_digest(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return endpoint != "token" or method == "client_secret_basic"

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass
class _Code(AuthorizationCodeMixin):  # type: ignore[misc]
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int = field(default_factory=lambda: int(time.time()))

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


class _Payload(OAuth2Payload):  # type: ignore[misc]
    def __init__(self, values: dict[str, list[str]]) -> None:
        self._values = values

    @property
    def data(self) -> dict[str, str]:
        return {k: v[0] for k, v in self._values.items()}

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return defaultdict(list, self._values)


class _Request(OAuth2Request):  # type: ignore[misc]
    """An aiohttp request, read whole, as authlib's grants read a request."""

    def __init__(self, request: web.Request, form: dict[str, str]) -> None:
        super().__init__(request.method, str(request.url), headers=dict(request.headers))
        self._args = dict(request.query)
        self._form = form
        values: dict[str, list[str]] = defaultdict(list)
        for k, v in [*request.query.items(), *form.items()]:
            values[k].append(v)
        self.payload = _Payload(values)

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


class _Grant(AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar = ["client_secret_basic"]

    def save_authorization_code(self, code: str, request: _Request) -> None:
        data = request.payload.data
        self.server.codes[code] = _Code(
            code=code, client_id=request.client.get_client_id(),
            redirect_uri=data.get("redirect_uri", ""), scope=request.scope,
            user=request.user, nonce=data.get("nonce"),
            code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"))

    def query_authorization_code(self, code: str, client: _Client) -> _Code | None:
        found = self.server.codes.get(code)
        return found if found and found.client_id == client.get_client_id() else None

    def delete_authorization_code(self, authorization_code: _Code) -> None:
        self.server.codes.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code: _Code) -> str:
        return authorization_code.user


class _IdToken(OpenIDCode):  # type: ignore[misc]
    def __init__(self, provider: Provider) -> None:
        super().__init__(require_nonce=True)
        self.provider = provider

    def exists_nonce(self, nonce: str, request: _Request) -> bool:
        return any(c.nonce == nonce for c in self.provider.codes.values())

    def resolve_client_private_key(self, client: _Client) -> RSAKey:
        return self.provider.rogue_key if self.provider.rogue else self.provider.key

    def get_client_algorithm(self, client: _Client) -> str:
        return "RS256"

    def get_encode_header(self, client: _Client) -> dict[str, str]:
        # the rogue key claims the real key's id
        return {"alg": "RS256", "kid": str(self.provider.key.kid)}

    def get_client_claims(self, client: _Client) -> dict[str, Any]:
        return {"iss": self.provider.issuer, "aud": [client.get_client_id()]}

    def generate_user_info(self, user: str, scope: str) -> UserInfo:
        return UserInfo(sub=f"sub-{user}", preferred_username=user,
                        groups=[GROUP_IDS[g] for g in USERS[user][1]])


class Provider(AuthorizationServer):  # type: ignore[misc]
    def __init__(self, redirect_uri: str) -> None:
        super().__init__(scopes_supported=["openid", "profile"])
        self.port = free_port()
        self.issuer = f"http://{HOST}:{self.port}"
        self.clients = {CLIENT_ID: _Client(CLIENT_ID, CLIENT_SECRET, [redirect_uri])}
        self.codes: dict[str, _Code] = {}
        self.key = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig"})
        self.rogue_key = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig"})
        self.rogue = False
        self.retired: list[RSAKey] = []  # keys rolled over, still published
        self.signed_in: list[str] = []
        self.register_token_generator("default", BearerTokenGenerator(
            lambda **_: generate_token(42)))
        self.register_grant(_Grant, [_IdToken(self), CodeChallenge(required=True)])
        self.runner: web.AppRunner | None = None

    def roll_keys(self) -> None:
        """A new signing key, as a provider rolls its keys: tokens are signed with it
        from now on, and it is published beside the old one."""
        self.retired.append(self.key)
        self.key = RSAKey.generate_key(2048, parameters={
            "kid": f"k{len(self.retired) + 1}", "use": "sig"})

    # authlib's hooks
    def query_client(self, client_id: str) -> _Client | None:
        return self.clients.get(client_id)

    def save_token(self, token: dict[str, Any], request: _Request) -> None:
        pass

    def create_oauth2_request(self, request: _Request) -> _Request:
        return request

    def create_json_request(self, request: _Request) -> JsonRequest:
        raise NotImplementedError

    def handle_response(self, status: int, body: Any, headers: Any) -> web.Response:
        text = json.dumps(body) if isinstance(body, dict) else (body or "")
        return web.Response(status=status, text=text, headers=dict(headers))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass

    # HTTP
    async def _discovery(self, _: web.Request) -> web.Response:
        return web.json_response({
            "issuer": self.issuer, "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token", "jwks_uri": f"{self.issuer}/keys",
            "response_types_supported": ["code"], "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"]})

    async def _keys(self, _: web.Request) -> web.Response:
        return web.json_response(KeySet([self.key, *self.retired]).as_dict(private=False))

    async def _authorize_form(self, request: web.Request) -> web.Response:
        hidden = "".join(f"<input type=hidden name={html.escape(k)} value=\"{html.escape(v)}\">"
                         for k, v in request.query.items())
        return web.Response(content_type="text/html", text=(
            "<!doctype html><meta charset=utf-8><title>Test-ID</title>"
            "<form method=post action=/authorize>"
            f"{hidden}<input name=username id=username><input type=password name=password "
            "id=password><button id=signin name=action value=signin>Logg inn</button>"
            "<button id=cancel name=action value=cancel>Avbryt</button></form>"))

    async def _authorize(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        name = form.pop("username", "")
        password = form.pop("password", "")
        action = form.pop("action", "signin")
        oauth = _Request(request, form)  # the form carries the request's parameters
        user = None
        if action == "signin":
            if USERS.get(name, ("",))[0] != password or not password:
                return web.Response(status=401, text="wrong password")
            user = name
            self.signed_in.append(name)
        grant = self.get_authorization_grant(oauth)
        response: web.Response = self.create_authorization_response(
            oauth, grant_user=user, grant=grant)
        return response

    async def _token(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        response: web.Response = self.create_token_response(_Request(request, form))
        return response

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/keys", self._keys)
        app.router.add_get("/authorize", self._authorize_form)
        app.router.add_post("/authorize", self._authorize)
        app.router.add_post("/token", self._token)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, HOST, self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
