"""The municipalities' computers from their directory (Active Directory, or any
LDAP) as devices, for ``driftsvakt import ldap`` (the difference and the writing are
monitor.estate_import's, as for a spreadsheet).

Each ``ldap.computers`` entry names an OU and the site its computers go on; the
service account of ``ldap:`` searches it with the entry's filter — by default AD's
computer objects without the ACCOUNTDISABLE bit, so a disabled computer is simply not
found, as a deleted one is, and leaves the estate at the next import. A computer's
id is its name in lower case; its address its DNS name; a server when its operating
system's name says so, else a PC.
"""

from __future__ import annotations

import math
from typing import Any

import ldap3
from ldap3.core.exceptions import LDAPException

from monitor.config import LdapSettings
from monitor.estate_import import ImportRefused, device_id_of

__all__ = ["computers"]


def _first(entry: dict[str, Any], attribute: str) -> str:
    value = entry.get(attribute)
    if isinstance(value, list):
        value = value[0] if value else ""
    return str(value or "").strip()


def computers(settings: LdapSettings, bind_password: str | None
              ) -> dict[str, dict[str, Any]]:
    """Every computer the ``computers`` entries find, by id, in the estate's YAML
    form; two with one name (in two OUs) are refused, naming both."""
    server = ldap3.Server(settings.url, connect_timeout=settings.timeout, get_info=ldap3.NONE)
    found: dict[str, dict[str, Any]] = {}
    where: dict[str, str] = {}
    problems: list[str] = []
    try:
        conn = ldap3.Connection(server, user=settings.bind_dn, password=bind_password,
                                receive_timeout=math.ceil(settings.timeout), read_only=True,
                                raise_exceptions=False)
        if settings.starttls and not conn.start_tls():
            raise ImportRefused(f"{settings.url}: STARTTLS refused")
        if not conn.bind():
            raise ImportRefused(f"{settings.url}: the service account's bind was refused: "
                                f"{conn.result.get('description')}")
        try:
            for spec in settings.computers:
                attributes = [spec.name_attribute, spec.address_attribute, spec.os_attribute]
                entries = conn.extend.standard.paged_search(
                    spec.base, spec.filter, attributes=attributes, paged_size=500,
                    generator=False, time_limit=int(settings.timeout) * 10)
                if conn.result.get("result") != 0:  # an OU that is not there: not "empty"
                    raise ImportRefused(f"{spec.base}: {conn.result.get('description')} "
                                        f"{conn.result.get('message') or ''}".strip())
                for entry in entries or []:
                    if entry.get("type") != "searchResEntry":
                        continue
                    attrs = entry.get("attributes", {})
                    name = _first(attrs, spec.name_attribute)
                    device_id = device_id_of(name)
                    if not device_id:
                        problems.append(f"{entry['dn']}: no {spec.name_attribute}")
                        continue
                    if device_id in found:
                        problems.append(f"{device_id}: both {where[device_id]} and "
                                        f"{entry['dn']}")
                        continue
                    system = _first(attrs, spec.os_attribute)
                    device: dict[str, Any] = {
                        "id": device_id, "name": name,
                        "class": "server" if spec.server_when in system else "pc",
                        "site": spec.site}
                    address = _first(attrs, spec.address_attribute)
                    if address:
                        device["address"] = address
                    if spec.parent:
                        device["parent"] = spec.parent
                    found[device_id], where[device_id] = device, str(entry["dn"])
        finally:
            conn.unbind()
    except (LDAPException, OSError) as exc:
        raise ImportRefused(f"{settings.url}: {exc}") from None
    if problems:
        raise ImportRefused("\n".join(problems))
    return found
