"""Sign-in with OpenID Connect, as with Entra ID: an OpenID Connect provider built from
authlib's server components (tests/oidcbed.py) on another site than the engine, a
real engine, and the whole flow in Chromium — the provider's form, the code with
PKCE, the signed ID token, the groups claim giving role and municipality. Then what
must be refused: a forged token, a state from another browser or none, a sign-in
the user cancelled, a provider that does not answer."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import yaml
from structlog.testing import capture_logs

from monitor.app import EngineApp, start_engine
from monitor.config import load_config
from monitor.startup import StartRefused
from monitor.web.auth import COOKIE
from monitor.yamlmodel import Problems
from tests.estate import write_estate
from tests.integration.test_sla_browser import Browser, browser  # noqa: F401 - fixture
from tests.oidcbed import CLIENT_ID, CLIENT_SECRET, GROUP_IDS, USERS, Provider
from tests.servers import Mosquitto, free_port

pytestmark = pytest.mark.integration


def _estate(tmp_path: Path, broker_port: int, port: int, issuer: str) -> Path:
    path = write_estate(tmp_path, broker_port, port)
    estate = yaml.safe_load(path.read_text(encoding="utf-8"))
    estate["municipalities"] += [{"id": "alta", "name": "Alta kommune"},
                                 {"id": "hammerfest", "name": "Hammerfest kommune"}]
    estate["oidc"] = {
        "issuer": issuer, "client_id": CLIENT_ID,
        "client_secret": {"env": "DV_OIDC_SECRET"},
        "redirect_url": f"http://127.0.0.1:{port}/login/oidc/callback",
        "groups": [
            {"value": GROUP_IDS["alta-lesere"], "role": "viewer", "municipality": "alta"},
            {"value": GROUP_IDS["hammerfest-lesere"], "role": "viewer",
             "municipality": "hammerfest"},
            {"value": GROUP_IDS["operatorer"], "role": "operator"}]}
    path.write_text(yaml.safe_dump(estate, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture
async def bed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
              ) -> AsyncIterator[tuple[EngineApp, Provider]]:
    monkeypatch.setenv("DV_OIDC_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")  # the provider is on loopback
    port = free_port()
    callback = f"http://127.0.0.1:{port}/login/oidc/callback"
    provider = Provider(callback)
    await provider.start()
    with Mosquitto(tmp_path / "broker") as broker:
        path = _estate(tmp_path, broker.port, port, provider.issuer)
        app = await start_engine(load_config(path), "alta")
        try:
            yield app, provider
        finally:
            await app.stop()
            await provider.stop()


async def _at(page: Browser, url: str) -> str:
    """Wait until the browser shows ``url`` (after redirects and the page's own move
    onwards); its text."""
    for _ in range(200):
        try:
            here = await page.js("location.href + '\\n' + document.readyState")
        except AssertionError:  # the page is between documents
            here = ""
        if here == f"{url}\ncomplete":
            return str(await page.js("document.body.innerText"))
        await asyncio.sleep(0.1)
    raise AssertionError(f"the browser is at {here!r}, not {url}")


async def _page(page: Browser, url: str) -> str:
    await page.goto(url)
    return str(await page.js("document.title + '\\n' + document.body.innerText"))


async def _sign_in_at_provider(page: Browser, app: EngineApp, provider: Provider,
                               user: str) -> None:
    await page.goto(app.url + "/login")
    await page.js("document.querySelector('a[href=\"/login/oidc\"]').click()")
    for _ in range(100):  # on the provider's own sign-in form
        try:
            if await page.js("!!document.getElementById('username')"):
                break
        except AssertionError:
            pass
        await asyncio.sleep(0.1)
    await page.js(f"document.getElementById('username').value = {json.dumps(user)};"
                  f"document.getElementById('password').value = "
                  f"{json.dumps(USERS[user][0])}; document.getElementById('signin').click()")


async def test_the_whole_flow_in_a_browser_gives_role_and_municipality(
        bed: tuple[EngineApp, Provider], browser: Browser) -> None:  # noqa: F811
    """Liv (Alta's readers in the provider) lands on Alta's status page and cannot
    open Hammerfest's; Ola (operators) lands on the console and opens the operators'
    pages; Sara, in no group of ours, is told she has no access. The session cookie is
    SameSite=Strict and the way back from the provider is cross-site: the sign-in only
    works because the last step moves on from the engine's own page."""
    app, provider = bed
    await _sign_in_at_provider(browser, app, provider, "liv@alta.kommune.no")
    text = await _at(browser, f"{app.url}/sla/alta")
    assert "Alta kommune" in text
    assert "Hammerfest" not in text
    assert "Fant ikke siden." in await _page(browser, f"{app.url}/sla/hammerfest")

    await _sign_in_at_provider(browser, app, provider, "ola@driftssentral.no")
    await _at(browser, f"{app.url}/")
    assert "Problemer" in await _page(browser, f"{app.url}/problems")
    assert "Hammerfest kommune" in await _page(browser, f"{app.url}/sla/hammerfest")

    await _sign_in_at_provider(browser, app, provider, "sara@alta.kommune.no")
    text = ""
    for _ in range(100):
        text = str(await browser.js("document.body ? document.body.innerText : ''"))
        if "tilgang" in text:
            break
        await asyncio.sleep(0.1)
    assert "Kontoen din har ikke tilgang til driftsvakt." in text
    assert provider.signed_in == ["liv@alta.kommune.no", "ola@driftssentral.no",
                                  "sara@alta.kommune.no"]


async def _flow(app: EngineApp, provider: Provider, user: str, action: str = "signin",
                jar: aiohttp.CookieJar | None = None) -> tuple[int, str, str | None]:
    """The flow as a browser follows it, step by step: status and text of the
    engine's answer at the callback, and the session cookie it set."""
    jar = jar or aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        async with session.get(app.url + "/login/oidc", allow_redirects=False) as resp:
            assert 302 == resp.status, await resp.text()
            away = resp.headers["Location"]
        params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(away).query))
        assert params["code_challenge_method"] == "S256"
        async with session.post(f"{provider.issuer}/authorize", allow_redirects=False,
                                data={**params, "username": user,
                                      "password": USERS[user][0], "action": action}) as resp:
            assert 302 == resp.status, await resp.text()
            back = resp.headers["Location"]
        async with session.get(back, allow_redirects=False) as resp:
            cookie = resp.cookies.get(COOKIE)
            return resp.status, await resp.text(), None if cookie is None else cookie.value


async def test_what_must_not_sign_anyone_in(bed: tuple[EngineApp, Provider]) -> None:
    app, provider = bed
    with capture_logs() as logs:
        # the flow works
        status, _, sid = await _flow(app, provider, "liv@alta.kommune.no")
        assert (200, True) == (status, sid is not None)
        # a token signed with a key the provider does not publish
        provider.rogue = True
        status, text, sid = await _flow(app, provider, "liv@alta.kommune.no")
        assert (401, None, True) == (status, sid, "avvist" in text)
        provider.rogue = False
        # the provider rolls its keys: a token under the new key's id is checked
        # against the keys fetched again, once
        provider.roll_keys()
        status, _, sid = await _flow(app, provider, "liv@alta.kommune.no")
        assert (200, True) == (status, sid is not None)
        # the user cancels at the provider
        status, _, sid = await _flow(app, provider, "liv@alta.kommune.no", action="cancel")
        assert (401, None) == (status, sid)
        # the way back without the browser's binding cookie (a link someone was sent),
        # and with a state never issued
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
            async with s.get(app.url + "/login/oidc", allow_redirects=False) as resp:
                away = resp.headers["Location"]
            state = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(away).query))["state"]
        async with aiohttp.ClientSession() as s:
            for query in (f"state={state}&code=x", "state=never-issued&code=x", ""):
                async with s.get(f"{app.url}/login/oidc/callback?{query}",
                                 allow_redirects=False) as resp:
                    assert (400, None) == (resp.status, resp.cookies.get(COOKIE))
    reasons = [e["reason"] for e in logs if e["event"] == "portal_login_failed"]
    assert 5 == len(reasons), reasons
    assert reasons[0].startswith("ID token refused")
    assert reasons[1].startswith("the provider refused: access_denied")
    assert reasons[2:] == ["the state was issued to another browser",
                           "unknown or expired state", "unknown or expired state"]
    assert 2 == sum(1 for e in logs if e["event"] == "portal_login" and e["how"] == "oidc")


async def test_a_provider_that_does_not_answer_is_a_clear_503(
        bed: tuple[EngineApp, Provider]) -> None:
    app, provider = bed
    await provider.stop()
    async with aiohttp.ClientSession() as session:
        async with session.get(app.url + "/login/oidc", allow_redirects=False) as resp:
            assert 503 == resp.status
            assert "nødinnloggingen" in await resp.text()
        async with session.get(app.url + "/healthz") as resp:
            assert 200 == resp.status


async def test_an_unreadable_client_secret_refuses_to_start(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail closed: the client secret's variable unset, or blank, and the engine does
    not start (and `check config` names it: monitor.startup.unusable_credentials)."""
    with Mosquitto(tmp_path / "broker") as broker:
        path = _estate(tmp_path, broker.port, free_port(), "http://127.0.0.2:9/")
        monkeypatch.delenv("DV_OIDC_SECRET", raising=False)
        with pytest.raises(StartRefused, match=r"oidc\.client_secret.*DV_OIDC_SECRET"):
            await start_engine(load_config(path), "alta", http_port=0)
        monkeypatch.setenv("DV_OIDC_SECRET", " ")
        with pytest.raises(StartRefused, match=r"oidc\.client_secret.*is empty"):
            await start_engine(load_config(path), "alta", http_port=0)


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("issuer", "http://login.example/", "an https:// address (http:// only on loopback)"),
    ("redirect_url", "https://driftsvakt.example/", "the engine's /login/oidc/callback"),
    ("scopes", ["profile"], "must include openid"),
    ("groups", [{"value": "x", "role": "viewer"}], "a viewers' group sees one municipality"),
])
def test_oidc_settings_are_checked(tmp_path: Path, key: str, value: object,
                                   expected: str) -> None:
    path = _estate(tmp_path, 1883, 8080, "https://login.example/v2.0")
    estate = yaml.safe_load(path.read_text(encoding="utf-8"))
    estate["oidc"][key] = value
    path.write_text(yaml.safe_dump(estate, allow_unicode=True), encoding="utf-8")
    with pytest.raises(Problems) as caught:
        load_config(path)
    assert [expected] == [p.message[:len(expected)] for p in caught.value.problems]
