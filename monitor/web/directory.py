"""Sign-in against the municipalities' directory (Active Directory, or any LDAP server).

The service account (``ldap.bind_dn``) finds the one entry ``user_filter`` gives for
the name typed (escaped: a name cannot widen the filter); a bind as that entry with
the password typed checks the password (an empty password is refused before: LDAP
would take it as an anonymous bind); the groups it is a member of give the role and,
for viewers, the municipality (monitor.web.grants). ldap3 is synchronous: the caller
runs this in a thread, every network step bounded by ``ldap.timeout``.
"""

from __future__ import annotations

import math
import ssl

import ldap3
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars

from monitor.config import ApiUser, LdapSettings
from monitor.web.grants import granted_user

__all__ = ["Directory", "DirectoryUnavailable"]


class DirectoryUnavailable(Exception):
    """The directory did not answer, or refused the service account."""


class Directory:
    def __init__(self, settings: LdapSettings, bind_password: str | None) -> None:
        self.settings = settings
        self.bind_password = bind_password
        tls = None
        if settings.starttls or settings.url.startswith("ldaps://"):
            tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=settings.ca_file)
        self.server = ldap3.Server(settings.url, tls=tls, connect_timeout=settings.timeout,
                                   get_info=ldap3.NONE)
        self.groups = {g.dn.lower(): g for g in settings.groups}

    def _connect(self, dn: str | None, password: str | None) -> ldap3.Connection:
        conn = ldap3.Connection(self.server, user=dn, password=password,
                                receive_timeout=math.ceil(self.settings.timeout),  # whole s
                                read_only=True, raise_exceptions=False)
        if self.settings.starttls and not conn.start_tls():
            raise DirectoryUnavailable("STARTTLS refused")
        return conn

    def authenticate(self, name: str, password: str) -> ApiUser | None:
        """The user ``name`` signs in as, if the password is theirs and a configured
        group says what they may do; raises DirectoryUnavailable when the directory
        cannot say."""
        if not name or not password or len(name) > 256:
            return None
        try:
            service = self._connect(self.settings.bind_dn, self.bind_password)
            if not service.bind():
                raise DirectoryUnavailable(f"service bind refused: {service.result}")
            try:
                user_dn = self._find(service, name)
                if user_dn is None:
                    return None
                own = self._connect(user_dn, password)
                if not own.bind():
                    return None
                own.unbind()
                member_of = self._groups_of(service, user_dn)
            finally:
                service.unbind()
        except (LDAPException, OSError) as exc:
            raise DirectoryUnavailable(str(exc)) from None
        return self._user(name, member_of)

    def _find(self, conn: ldap3.Connection, name: str) -> str | None:
        query = self.settings.user_filter.replace("{user}", escape_filter_chars(name))
        conn.search(self.settings.user_base, query, attributes=[], size_limit=2,
                    time_limit=int(self.settings.timeout))
        entries = [e for e in conn.response or [] if e.get("type") == "searchResEntry"]
        return str(entries[0]["dn"]) if len(entries) == 1 else None

    def _groups_of(self, conn: ldap3.Connection, user_dn: str) -> list[str]:
        query = self.settings.group_filter.replace("{dn}", escape_filter_chars(user_dn))
        conn.search(self.settings.group_base or self.settings.user_base, query,
                    attributes=[], time_limit=int(self.settings.timeout))
        return [str(e["dn"]).lower() for e in conn.response or []
                if e.get("type") == "searchResEntry"]

    def _user(self, name: str, member_of: list[str]) -> ApiUser | None:
        return granted_user("ldap", name, [(self.groups[dn].role, self.groups[dn].municipality)
                                           for dn in member_of if dn in self.groups])
