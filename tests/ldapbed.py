"""OpenLDAP's slapd on 127.0.0.1 with a directory laid out as a municipality's Active
Directory is: users under OU=Brukere, groups per municipality and role under
OU=Grupper (groupOfNames with member), a disabled account marked as AD marks it for
a filter (here employeeType, as userAccountControl is not in OpenLDAP's schemas)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from types import TracebackType
from typing import Final

from tests.servers import free_port, wait_port

__all__ = ["BASE", "PASSWORDS", "SERVICE_DN", "Slapd"]

BASE: Final = "dc=vest-finnmark,dc=example"
SERVICE_DN: Final = f"cn=driftsvakt,ou=Tjenester,{BASE}"
PASSWORDS: Final = {"liv": "liv-passord-1234", "ola": "ola-passord-1234",
                    "kari": "kari-passord-1234", "nils": "nils-passord-1234",
                    "sara": "sara-passord-1234", "driftsvakt": "tjeneste-passord-1234"}
# who is in which group (and so may do what): liv reads Alta, ola operates, kari is an
# admin and also reads Alta, nils is disabled, sara is in no group of ours
GROUPS: Final = {"driftsvakt-alta-lesere": ["liv", "kari", "nils"],
                 "driftsvakt-hammerfest-lesere": [],
                 "driftsvakt-operatorer": ["ola"],
                 "driftsvakt-administratorer": ["kari"],
                 "alle-ansatte": ["liv", "ola", "kari", "nils", "sara"]}


def _tree() -> str:
    entries = [f"dn: {BASE}\nobjectClass: dcObject\nobjectClass: organization\n"
               "o: Vest-Finnmark IKT\ndc: vest-finnmark"]
    for ou in ("Brukere", "Grupper", "Tjenester"):
        entries.append(f"dn: ou={ou},{BASE}\nobjectClass: organizationalUnit\nou: {ou}")
    entries.append(f"dn: {SERVICE_DN}\nobjectClass: inetOrgPerson\ncn: driftsvakt\n"
                   f"sn: tjeneste\nuserPassword: {PASSWORDS['driftsvakt']}")
    for user in ("liv", "ola", "kari", "nils", "sara"):
        disabled = "\nemployeeType: disabled" if user == "nils" else ""
        entries.append(f"dn: uid={user},ou=Brukere,{BASE}\nobjectClass: inetOrgPerson\n"
                       f"uid: {user}\ncn: {user.title()}\nsn: {user.title()}\n"
                       f"userPassword: {PASSWORDS[user]}{disabled}")
    for group, members in GROUPS.items():
        # groupOfNames needs a member: an empty group holds the service account
        names = [f"uid={m},ou=Brukere,{BASE}" for m in members] or [SERVICE_DN]
        entries.append(f"dn: cn={group},ou=Grupper,{BASE}\nobjectClass: groupOfNames\n"
                       f"cn: {group}\n" + "\n".join(f"member: {n}" for n in names))
    return "\n\n".join(entries) + "\n"


class Slapd:
    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("slapd") or "/usr/sbin/slapd"
        if not Path(binary).exists():
            raise RuntimeError("slapd is not installed (the test command installs it)")
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.url = f"ldap://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        db = workdir / "db"
        db.mkdir(parents=True)
        self.conf = workdir / "slapd.conf"
        self.conf.write_text("\n".join([
            "include /etc/ldap/schema/core.schema",
            "include /etc/ldap/schema/cosine.schema",
            "include /etc/ldap/schema/inetorgperson.schema",
            f"pidfile {workdir / 'slapd.pid'}",
            "modulepath /usr/lib/ldap", "moduleload back_mdb",
            "database mdb", "maxsize 10485760", f'suffix "{BASE}"',
            f'rootdn "cn=admin,{BASE}"', "rootpw admin-passord-1234", f"directory {db}",
            "access to attrs=userPassword by anonymous auth by self write by * none",
            "access to * by users read by * none", ""]), encoding="utf-8")
        (workdir / "tree.ldif").write_text(_tree(), encoding="utf-8")
        subprocess.run([shutil.which("slapadd") or "/usr/sbin/slapadd", "-f", str(self.conf),
                        "-l", str(workdir / "tree.ldif")], check=True, capture_output=True,
                       timeout=60)

    def start(self) -> Slapd:
        with (self.workdir / "slapd.log").open("wb") as log:
            self.proc = subprocess.Popen([self.binary, "-f", str(self.conf), "-h",
                                          f"{self.url}/", "-d", "0"],
                                         stdout=log, stderr=subprocess.STDOUT)
        wait_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def __enter__(self) -> Slapd:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
