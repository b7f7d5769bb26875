"""The engine's web side against a careless or hostile client: security headers on
every answer, sign-in guesses throttled and logged, and tokens with characters no
real token has refused with 401, never 500. A real engine on a real mosquitto."""

from __future__ import annotations

import asyncio
import hashlib
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import yaml
from structlog.testing import capture_logs

from monitor.app import EngineApp, start_engine
from monitor.config import load_config
from monitor.startup import StartRefused
from monitor.web import SECURITY_HEADERS
from monitor.web.auth import COOKIE
from monitor.web.login import MAX_FAILURES
from monitor.yamlmodel import Problems
from tests.estate import write_estate
from tests.servers import Mosquitto

pytestmark = pytest.mark.integration

TOKEN = "web-test-token-0123456789"
PASSWORD = "nødinnlogging-2026-vinter"


@pytest.fixture
async def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[EngineApp]:
    monkeypatch.setenv("DV_WEB_TOKEN", TOKEN)
    with Mosquitto(tmp_path / "broker") as broker:
        path = write_estate(tmp_path, broker.port)
        estate = yaml.safe_load(path.read_text(encoding="utf-8"))
        estate["users"] = [{"id": "kari", "role": "admin", "token": {"env": "DV_WEB_TOKEN"}},
                           {"id": "brann", "role": "operator", "password_argon2": _hash(PASSWORD)}]
        path.write_text(yaml.safe_dump(estate), encoding="utf-8")
        app = await start_engine(load_config(path), "alta", http_port=0)
        try:
            yield app
        finally:
            await app.stop()


def _hash(password: str) -> str:
    """As an operator makes it: `driftsvakt hash-password`, the password on stdin."""
    done = subprocess.run([sys.executable, "-m", "monitor.cli", "hash-password"],
                          input=password + "\n", capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[2])
    return done.stdout.strip()


@pytest.mark.parametrize("path", ["/", "/login", "/metrics", "/api/v1/alerts", "/readyz"])
async def test_every_answer_carries_the_security_headers(engine: EngineApp, path: str) -> None:
    async with aiohttp.ClientSession() as session, session.get(
            engine.url + path, allow_redirects=False) as resp:
        assert SECURITY_HEADERS == {k: resp.headers.get(k) for k in SECURITY_HEADERS}, \
            resp.status


async def test_sign_in_guesses_are_throttled_and_logged(engine: EngineApp) -> None:
    """Ten wrong tokens a minute from one address, then 429 with Retry-After, even
    for the right token until the minute has passed; each failure is logged."""
    statuses = []
    with capture_logs() as logs:
        async with aiohttp.ClientSession() as session:
            for i in range(MAX_FAILURES + 3):
                async with session.post(engine.url + "/login", data={"token": f"guess{i}"},
                                        allow_redirects=False) as resp:
                    statuses.append(resp.status)
                    retry = resp.headers.get("Retry-After")
            async with session.post(engine.url + "/login", data={"token": TOKEN},
                                    allow_redirects=False) as resp:
                right = resp.status
    assert [401] * MAX_FAILURES + [429] * 3 == statuses
    assert retry is not None
    assert 0 < int(retry) <= 61
    assert 429 == right
    failures = [e["failures"] for e in logs if e["event"] == "portal_login_failed"]
    assert list(range(1, MAX_FAILURES + 1)) == failures


async def test_a_thousand_password_guesses_from_a_hundred_addresses(
        engine: EngineApp) -> None:
    """A brute-force run against the break-glass user: 1,000 guesses, ten from each of
    100 loopback addresses (as a botnet spreads them, so that no one address reaches
    its own limit). The user's limit holds: ten guesses are checked, each logged with
    its address and count; the other 990 are turned away (429) unchecked, and all of
    it is in driftsvakt_web_sign_ins_total, which the DriftsvaktSignInsThrottled
    alert reads."""
    statuses: list[int] = []
    with capture_logs() as logs:
        for host in range(1, 101):
            connector = aiohttp.TCPConnector(local_addr=(f"127.0.9.{host}", 0))
            async with aiohttp.ClientSession(connector=connector) as session:
                for guess in range(10):
                    async with session.post(engine.url + "/login", data={
                            "user": "brann", "password": f"gjett-{host}-{guess}"},
                            allow_redirects=False) as resp:
                        statuses.append(resp.status)
    assert 1000 == len(statuses)
    assert [401] * MAX_FAILURES + [429] * (1000 - MAX_FAILURES) == statuses
    failed = [(e["address"], e["failures"]) for e in logs
              if e["event"] == "portal_login_failed"]
    assert [("127.0.9.1", n) for n in range(1, MAX_FAILURES + 1)] == failed
    async with aiohttp.ClientSession() as session, session.get(engine.url + "/metrics") as resp:
        metrics = await resp.text()
    for outcome, count in (("failed", MAX_FAILURES), ("throttled", 1000 - MAX_FAILURES),
                           ("ok", 0)):
        assert (f'driftsvakt_web_sign_ins_total{{how="password",outcome="{outcome}"}} '
                f"{float(count)}") in metrics, outcome


@pytest.mark.parametrize("header", [b"Bearer \xa0", b"Bearer " + TOKEN.encode() + b"\xa0\xa0",
                                    "Bearer ø".encode(), b"Bearer ", b"Bearer \t "])
async def test_a_token_no_real_token_looks_like_is_refused_not_500(
        engine: EngineApp, header: bytes) -> None:
    """Raw bytes as a client may send them: a non-breaking space (0xA0) alone or after
    the real token, a non-ASCII letter, nothing, only blanks."""
    host, port = engine.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /api/v1/alerts HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                 b"Authorization: " + header + b"\r\n\r\n")
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    assert status_line.split()[1] in (b"400", b"401"), status_line
    # and the real token still works
    started = time.monotonic()
    async with aiohttp.ClientSession() as session, session.get(
            engine.url + "/api/v1/alerts", headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
        assert 200 == resp.status
    assert time.monotonic() - started < 10


async def _sign_in(url: str, token: str = TOKEN, cookie: str | None = None) -> str:
    """The session id /login sets for ``token`` (sent with an old ``cookie``, if any)."""
    headers = {"Cookie": f"{COOKIE}={cookie}"} if cookie else {}
    async with aiohttp.ClientSession() as session, session.post(
            url + "/login", data={"token": token}, headers=headers,
            allow_redirects=False) as resp:
        assert 303 == resp.status
        return resp.cookies[COOKIE].value


async def _status(url: str, path: str, sid: str, method: str = "GET",
                  data: dict[str, str] | None = None) -> int:
    async with aiohttp.ClientSession() as session, session.request(
            method, url + path, headers={"Cookie": f"{COOKIE}={sid}"}, data=data,
            allow_redirects=False) as resp:
        return resp.status


async def test_a_session_is_the_servers_not_a_credential(engine: EngineApp) -> None:
    """The cookie is a session id: it opens pages, not the API; the token itself as
    a cookie opens nothing; a new sign-in is a new id and the one it came with ends;
    signing out ends the session, and out everywhere every session of the user."""
    url = engine.url
    first = await _sign_in(url)
    assert TOKEN not in first
    assert [200, 200, 401] == [await _status(url, p, first)
                               for p in ("/", "/devices/loppa-sw1", "/api/v1/alerts")]
    assert 303 == await _status(url, "/", TOKEN)  # the token as a cookie: sign in first
    second = await _sign_in(url, cookie=first)
    assert second != first
    assert (303, 200) == (await _status(url, "/", first), await _status(url, "/", second))
    third = await _sign_in(url)
    assert 303 == await _status(url, "/logout", third, "POST")
    assert (303, 200) == (await _status(url, "/", third), await _status(url, "/", second))
    fourth = await _sign_in(url)
    with capture_logs() as logs:
        assert 303 == await _status(url, "/logout", fourth, "POST", {"everywhere": "1"})
    assert (303, 303) == (await _status(url, "/", second), await _status(url, "/", fourth))
    assert [2] == [e["sessions"] for e in logs if e["event"] == "portal_logout_everywhere"]


async def test_a_break_glass_user_signs_in_with_a_password(engine: EngineApp) -> None:
    """A user with an Argon2id hash signs in with name and password and gets a session
    (pages, not the API); a wrong password and a name that is no user's are refused
    alike; ten failures for the name make even the right password wait (429)."""
    url = engine.url

    async def sign_in(user: str, password: str) -> tuple[int, str | None]:
        async with aiohttp.ClientSession() as session, session.post(
                url + "/login", data={"user": user, "password": password},
                allow_redirects=False) as resp:
            cookie = resp.cookies.get(COOKIE)
            return resp.status, None if cookie is None else cookie.value

    status, sid = await sign_in("brann", PASSWORD)
    assert (303, True) == (status, sid is not None)
    assert sid is not None
    assert [200, 401] == [await _status(url, p, sid) for p in ("/problems", "/api/v1/alerts")]
    with capture_logs() as logs:
        assert [(401, None)] * 2 == [await sign_in("brann", "feil"),
                                     await sign_in("ingen", PASSWORD)]
    assert [("brann", 1), ("ingen", 2)] == [(e["user"], e["failures"]) for e in logs
                                            if e["event"] == "portal_login_failed"]
    for _ in range(MAX_FAILURES - 1):
        await sign_in("brann", "feil")
    assert 429 == (await sign_in("brann", PASSWORD))[0]


async def test_console_forms_need_their_form_token(engine: EngineApp) -> None:
    """The cookie alone changes nothing: a form without the form token, with a wrong
    one, or with the token of another sign-in is refused (403) and logged; with the
    token of the page it came from it goes through; where it sends the browser after
    is a path on this site, never another host."""
    cookie = {"Cookie": f"{COOKIE}={await _sign_in(engine.url)}"}
    form = {"device": "loppa-sw1", "hours": "1", "comment": "bytte av vifte"}
    async with aiohttp.ClientSession() as session:
        async with session.get(engine.url + "/devices/loppa-sw1", headers=cookie) as resp:
            assert resp.status == 200
            page = await resp.text()
        found = re.search(r'name="csrf" value="([0-9a-f]{64})"', page)
        assert found is not None
        token = found.group(1)
        with capture_logs() as logs:
            for extra in ({}, {"csrf": "0" * 64}, {"csrf": "ø" * 8}):
                async with session.post(engine.url + "/maintenance", data={**form, **extra},
                                        headers=cookie, allow_redirects=False) as resp:
                    assert resp.status == 403, extra
            async with session.post(engine.url + "/maintenance", data={**form, "csrf": token},
                                    headers={"Cookie": f"{COOKIE}=someone-else"},
                                    allow_redirects=False) as resp:
                assert resp.status == 401
            async with session.post(engine.url + "/maintenance", data={**form, "csrf": token},
                                    allow_redirects=False) as resp:
                assert resp.status == 401
        assert sum(1 for e in logs if e["event"] == "console_form_refused") == 3
        for where, sent_to in (("/devices/loppa-sw1", "/devices/loppa-sw1"),
                               ("//evil.example/x", "/problems"),
                               ("https://evil.example/", "/problems")):
            async with session.post(engine.url + "/maintenance", headers=cookie,
                                    data={**form, "csrf": token, "next": where},
                                    allow_redirects=False) as resp:
                assert (resp.status, resp.headers["Location"]) == (303, sent_to)
        async with session.get(engine.url + "/api/v1/audit", headers={
                "Authorization": f"Bearer {TOKEN}"}) as resp:
            audit = (await resp.json())["audit"]
        assert [(a["actor"], a["action"]) for a in audit] == [("kari", "create_maintenance")] * 3


async def test_metrics_answer_only_the_scrape_token_when_one_is_set(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every municipality's series are on /metrics: with engine.metrics_token set, a
    viewer's cookie, no token or a wrong one gets 401; Prometheus's bearer token gets
    the series. An empty token refuses to start."""
    monkeypatch.setenv("DV_WEB_TOKEN", TOKEN)
    monkeypatch.setenv("DV_SCRAPE", "scrape-token-abc")
    with Mosquitto(tmp_path / "broker") as broker:
        path = write_estate(tmp_path, broker.port)
        estate = yaml.safe_load(path.read_text(encoding="utf-8"))
        estate["users"] = [{"id": "kari", "role": "admin", "token": {"env": "DV_WEB_TOKEN"}}]
        estate["engine"]["metrics_token"] = {"env": "DV_SCRAPE"}
        path.write_text(yaml.safe_dump(estate), encoding="utf-8")
        app = await start_engine(load_config(path), "alta", http_port=0)
        try:
            async with aiohttp.ClientSession() as session:
                for headers in ({}, {"Authorization": "Bearer wrong"},
                                {"Authorization": f"Bearer {TOKEN}"},
                                {"Cookie": f"{COOKIE}={TOKEN}"},
                                {"Authorization": "Bearer \xa0"}):
                    async with session.get(app.url + "/metrics", headers=headers) as resp:
                        assert resp.status == 401, headers
                async with session.get(app.url + "/metrics", headers={
                        "Authorization": "Bearer scrape-token-abc"}) as resp:
                    assert resp.status == 200
                    assert "driftsvakt_events_applied_total" in await resp.text()
                async with session.get(app.url + "/healthz") as resp:
                    assert resp.status == 200  # liveness stays open
        finally:
            await app.stop()
        monkeypatch.setenv("DV_SCRAPE", " ")
        with pytest.raises(StartRefused, match=r"engine\.metrics_token.*is empty"):
            await start_engine(load_config(path), "alta", http_port=0)


async def test_a_user_known_by_the_hash_of_its_token(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The config may hold only a token's SHA-256 (what `printf %s TOKEN | sha256sum`
    prints, here for "machine-token-0123456789"): the token works, nothing in the config
    does; no credential at all, both token and token_sha256, or a password hash that is
    not Argon2id is an error with its line."""
    digest = hashlib.sha256(b"machine-token-0123456789").hexdigest()
    with Mosquitto(tmp_path / "broker") as broker:
        path = write_estate(tmp_path, broker.port)
        estate = yaml.safe_load(path.read_text(encoding="utf-8"))
        estate["users"] = [{"id": "backup-robot", "role": "operator", "token_sha256": digest}]
        path.write_text(yaml.safe_dump(estate), encoding="utf-8")
        app = await start_engine(load_config(path), "alta", http_port=0)
        try:
            async with aiohttp.ClientSession() as session:
                for token, status in (("machine-token-0123456789", 200), (digest, 401),
                                      ("machine-token-012345678", 401)):
                    async with session.get(app.url + "/api/v1/alerts", headers={
                            "Authorization": f"Bearer {token}"}) as resp:
                        assert resp.status == status, token
        finally:
            await app.stop()
        estate["users"] = [{"id": "x", "role": "operator"},
                           {"id": "y", "role": "operator", "token_sha256": "ABC"},
                           {"id": "z", "role": "operator", "token_sha256": digest,
                            "token": {"env": "X"}},
                           {"id": "w", "role": "operator", "password_argon2": "$2b$12$abc"}]
        path.write_text(yaml.safe_dump(estate), encoding="utf-8")
        with pytest.raises(Problems) as raised:
            load_config(path)
        found = sorted(f"{p.key}: {p.message}" for p in raised.value.problems)
        assert len(found) == 4, found
        assert any("give a token, its token_sha256 or a password_argon2" in f for f in found)
        assert any("64 lowercase hex digits" in f for f in found)
        assert any("not both" in f for f in found)
        assert any("an Argon2id hash" in f for f in found)
