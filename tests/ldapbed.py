"""OpenLDAP's slapd on 127.0.0.1 with a directory laid out as a municipality's Active
Directory is: users under OU=Brukere, groups per municipality and role under
OU=Grupper (groupOfNames with member), a disabled account marked as AD marks it for
a filter (here employeeType: a user is an inetOrgPerson here), and a municipality's
computers as AD's computer objects (OpenLDAP ships AD's schema as msuser.schema),
disabled by userAccountControl's ACCOUNTDISABLE bit as in AD."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from types import TracebackType
from typing import Final

from tests.servers import free_port, wait_port

__all__ = ["BASE", "COMPUTERS", "COMPUTER_OU", "PASSWORDS", "SERVICE_DN", "Slapd"]

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


COMPUTER_OU: Final = f"ou=Loppa,ou=Kommuner,{BASE}"
# Loppa's computers as AD holds them: userAccountControl 4096 is a workstation or
# server account, 4098 the same disabled (ACCOUNTDISABLE, 2), 532480 a domain controller
COMPUTERS: Final = {"LOPPA-PC001": ("Windows 11 Enterprise", 4096),
                    "LOPPA-PC002": ("Windows 11 Enterprise", 4096),
                    "LOPPA-PC003": ("Windows 11 Enterprise", 4098),
                    "LOPPA-PC004": ("Windows 10 Enterprise", 4096),
                    "LOPPA-SRV01": ("Windows Server 2022 Standard", 532480)}


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
    for ou in ("Kommuner", "Loppa,ou=Kommuner"):
        entries.append(f"dn: ou={ou},{BASE}\nobjectClass: organizationalUnit\n"
                       f"ou: {ou.split(',')[0]}")
    for name, (system, control) in COMPUTERS.items():
        # AD's computer class (OpenLDAP's msuser.schema), with what AD always sets
        entries.append(f"dn: cn={name},{COMPUTER_OU}\nobjectClass: computer\ncn: {name}\n"
                       f"sn: {name}\ninstanceType: 4\nnTSecurityDescriptor: AA==\n"
                       f"objectCategory: CN=Computer,CN=Schema,CN=Configuration,{BASE}\n"
                       f"dNSHostName: {name.lower()}.loppa.kommune.no\n"
                       f"operatingSystem: {system}\nuserAccountControl: {control}")
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
            "include /etc/ldap/schema/nis.schema",  # msuser.schema needs it
            "include /etc/ldap/schema/msuser.schema",  # AD's computer and its attributes
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
