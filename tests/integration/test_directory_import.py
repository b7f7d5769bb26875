"""The municipality's computers from its directory: OpenLDAP's slapd with AD's own
computer objects (msuser.schema) in Loppa's OU. `driftsvakt import ldap` proposes
the enabled ones as PCs and a server by their operating system, writes them with
--apply, and after one is disabled and one deleted in the directory, the next import
removes both from the estate; an OU that is not there is refused, not taken as
empty."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import ldap3
import pytest
import yaml

from monitor.config import load_config
from tests.ldapbed import BASE, COMPUTER_OU, PASSWORDS, SERVICE_DN, Slapd

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _estate(tmp: Path, slapd: Slapd, base: str = COMPUTER_OU) -> Path:
    root = tmp / "estate"
    root.mkdir(exist_ok=True)
    (root / "estate.yaml").write_text(yaml.safe_dump({
        "locations": [{"id": "alta", "name": "Alta"}],
        "municipalities": [{"id": "loppa", "name": "Loppa kommune"}],
        "sites": [{"id": "loppa-radhus", "name": "Loppa rådhus", "location": "alta",
                   "municipality": "loppa"}],
        "ldap": {"url": slapd.url, "bind_dn": SERVICE_DN,
                 "bind_password": {"env": "DV_LDAP_PASSWORD"},
                 "user_base": f"ou=Brukere,{BASE}", "groups": [],
                 "computers": [{"base": base, "site": "loppa-radhus"}]},
    }, allow_unicode=True), encoding="utf-8")
    return root


def _import(root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "monitor.cli", "import", "ldap",
                           "--config", str(root), *extra], capture_output=True, text=True,
                          cwd=ROOT, timeout=60,
                          env={"DV_LDAP_PASSWORD": PASSWORDS["driftsvakt"],
                               "PATH": "/usr/bin:/bin"})


def test_computers_come_and_go_with_the_directory(tmp_path: Path) -> None:
    with Slapd(tmp_path / "ldap") as slapd:
        root = _estate(tmp_path, slapd)
        shown = _import(root)
        assert 0 == shown.returncode, shown.stderr
        # LOPPA-PC003 is disabled in AD (4098): not proposed
        assert shown.stdout.splitlines()[1:6] == [
            "  + loppa-pc001 (pc, loppa-radhus)", "  + loppa-pc002 (pc, loppa-radhus)",
            "  + loppa-pc004 (pc, loppa-radhus)", "  + loppa-srv01 (server, loppa-radhus)",
            "  4 new, 0 changed, 0 removed, 0 left alone, 0 unchanged"]
        assert 0 == _import(root, "--apply").returncode
        config = load_config(root)
        assert "loppa-pc002.loppa.kommune.no" == config.devices["loppa-pc002"].address
        assert "server" == config.devices["loppa-srv01"].device_class
        # the directory's owners disable one computer and delete another
        admin = ldap3.Connection(ldap3.Server(slapd.url), f"cn=admin,{BASE}",
                                 "admin-passord-1234", auto_bind=True)
        assert admin.modify(f"cn=LOPPA-PC001,{COMPUTER_OU}", {  # type: ignore[no-untyped-call]
            "userAccountControl": [(ldap3.MODIFY_REPLACE, ["4098"])]}), admin.result
        assert admin.delete(  # type: ignore[no-untyped-call]
            f"cn=LOPPA-PC004,{COMPUTER_OU}"), admin.result
        admin.unbind()
        again = _import(root, "--apply")
        assert 0 == again.returncode, again.stderr
        assert again.stdout.splitlines()[1:4] == [
            "  - loppa-pc001 (no longer in the source: retired at the next reload)",
            "  - loppa-pc004 (no longer in the source: retired at the next reload)",
            "  0 new, 0 changed, 2 removed, 0 left alone, 2 unchanged"]
        assert sorted(load_config(root).devices) == ["loppa-pc002", "loppa-srv01"]
        # a mistyped OU is an error, not an empty OU that would retire every computer
        wrong = _estate(tmp_path, slapd, f"ou=Lopa,ou=Kommuner,{BASE}")
        refused = _import(wrong, "--apply")
        assert 1 == refused.returncode
        assert "noSuchObject" in refused.stderr
        assert sorted(load_config(root).devices) == ["loppa-pc002", "loppa-srv01"]
