"""Sign-in against a real directory: OpenLDAP's slapd with an AD-like tree
(tests/ldapbed.py), a real engine. The service account finds the user, the user's
own bind checks the password, group membership gives role and municipality."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import yaml
from structlog.testing import capture_logs

from monitor.app import EngineApp, start_engine
from monitor.config import load_config
from monitor.web.auth import COOKIE
from tests.estate import write_estate
from tests.ldapbed import BASE, PASSWORDS, SERVICE_DN, Slapd
from tests.servers import Mosquitto

pytestmark = pytest.mark.integration


def _group(name: str) -> str:
    return f"cn={name},ou=Grupper,{BASE}"


@pytest.fixture
async def bed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
              ) -> AsyncIterator[tuple[EngineApp, Slapd]]:
    monkeypatch.setenv("DV_LDAP_PASSWORD", PASSWORDS["driftsvakt"])
    with Slapd(tmp_path / "ldap") as slapd, Mosquitto(tmp_path / "broker") as broker:
        path = write_estate(tmp_path, broker.port)
        estate = yaml.safe_load(path.read_text(encoding="utf-8"))
        estate["municipalities"] += [{"id": "alta", "name": "Alta kommune"},
                                     {"id": "hammerfest", "name": "Hammerfest kommune"}]
        estate["ldap"] = {
            "url": slapd.url, "bind_dn": SERVICE_DN,
            "bind_password": {"env": "DV_LDAP_PASSWORD"},
            "user_base": f"ou=Brukere,{BASE}", "group_base": f"ou=Grupper,{BASE}",
            # as AD's filter leaves out disabled accounts
            "user_filter": "(&(objectClass=inetOrgPerson)(uid={user})"
                           "(!(employeeType=disabled)))",
            "groups": [
                {"dn": _group("driftsvakt-alta-lesere"), "role": "viewer",
                 "municipality": "alta"},
                {"dn": _group("driftsvakt-hammerfest-lesere"), "role": "viewer",
                 "municipality": "hammerfest"},
                {"dn": _group("driftsvakt-operatorer"), "role": "operator"},
                {"dn": _group("driftsvakt-administratorer"), "role": "admin"}]}
        path.write_text(yaml.safe_dump(estate, allow_unicode=True), encoding="utf-8")
        app = await start_engine(load_config(path), "alta", http_port=0)
        try:
            yield app, slapd
        finally:
            await app.stop()


async def _sign_in(app: EngineApp, user: str, password: str) -> tuple[int, str | None]:
    async with aiohttp.ClientSession() as session, session.post(
            app.url + "/login", data={"user": user, "password": password},
            allow_redirects=False) as resp:
        cookie = resp.cookies.get(COOKIE)
        return resp.status, None if cookie is None else cookie.value


async def _page(app: EngineApp, path: str, sid: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(
            app.url + path, headers={"Cookie": f"{COOKIE}={sid}"},
            allow_redirects=False) as resp:
        return resp.status


async def test_directory_users_get_their_groups_role_and_municipality(
        bed: tuple[EngineApp, Slapd]) -> None:
    """Liv (Alta's viewers) sees Alta's portal, not Hammerfest's nor the operators'
    console; Ola (operators) the console; Kari (administrators, and Alta's viewers) is
    an admin. A disabled account, one in no group of ours, a wrong or empty password,
    and a name that tries to widen the filter are refused alike."""
    app, _ = bed
    status, liv = await _sign_in(app, "liv", PASSWORDS["liv"])
    assert (303, True) == (status, liv is not None)
    assert liv is not None
    assert [200, 404, 404] == [await _page(app, p, liv)
                               for p in ("/sla/alta", "/sla/hammerfest", "/problems")]
    _, ola = await _sign_in(app, "ola", PASSWORDS["ola"])
    _, kari = await _sign_in(app, "kari", PASSWORDS["kari"])
    assert ola is not None
    assert kari is not None
    assert [200, 200, 200] == [await _page(app, "/problems", ola),
                               await _page(app, "/problems", kari),
                               await _page(app, "/sla/hammerfest", kari)]
    with capture_logs() as logs:
        refused = [await _sign_in(app, user, password) for user, password in (
            ("nils", PASSWORDS["nils"]), ("sara", PASSWORDS["sara"]), ("liv", "feil"),
            ("liv", ""), ("*", PASSWORDS["liv"]), ("liv)(uid=*", PASSWORDS["liv"]))]
    assert [(401, None)] * 6 == refused
    assert 6 == sum(1 for e in logs if e["event"] == "portal_login_failed")
    assert ["sara"] == [e["user"] for e in logs if e["event"] == "sign_in_no_group"]


async def test_a_directory_that_does_not_answer_is_a_clear_503(
        bed: tuple[EngineApp, Slapd]) -> None:
    """slapd stopped: sign-in answers 503 and says to use the break-glass sign-in, the
    failure is logged, and the engine goes on."""
    app, slapd = bed
    slapd.stop()
    with capture_logs() as logs:
        assert (503, None) == await _sign_in(app, "liv", PASSWORDS["liv"])
    assert ["directory_unavailable"] == [e["event"] for e in logs
                                         if e["event"].startswith("directory_")]
    async with aiohttp.ClientSession() as session, session.get(app.url + "/healthz") as resp:
        assert 200 == resp.status
