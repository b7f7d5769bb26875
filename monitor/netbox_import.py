"""Devices from NetBox, for ``driftsvakt import netbox`` (the difference and the
writing are monitor.estate_import's, as for a spreadsheet or the directory).

NetBox is where some centres keep their network: what ``netbox.filter`` finds in
/api/dcim/devices/ (active devices by default) becomes the estate's devices — the id
from the name, the class from the role (``netbox.roles``; a device of a role not
mapped is left out and named, a device without a name too), the site of the same
slug (or as ``netbox.sites`` maps it), the primary address without its prefix
length, NetBox's tags, and an SNMP profile per role where ``netbox.snmp_profiles``
gives one. pynetbox pages through the list as NetBox serves it; every request has
the timeout of ``netbox.timeout``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pynetbox
import requests
from requests.adapters import HTTPAdapter

from monitor.config import Config, NetboxSettings
from monitor.estate_import import ImportRefused, device_id_of

__all__ = ["NetboxDevices", "netbox_devices"]


class _TimeoutAdapter(HTTPAdapter):
    """requests has no session-wide timeout: every request through this one has it."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout

    def send(self, request: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        kwargs["timeout"] = kwargs.get("timeout") or self.timeout
        return super().send(request, **kwargs)


@dataclass(slots=True)
class NetboxDevices:
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)
    left_out: list[str] = field(default_factory=list)  # name: why


def _slug(value: Any) -> str:
    return str(getattr(value, "slug", "") or "") if value is not None else ""


def _detail(exc: Any) -> str:
    """NetBox's own words ({"detail": ...}) where it gave them."""
    try:
        body = exc.req.json()
    except ValueError:
        return str(exc.error)[:300]
    return str(body.get("detail", body))[:300] if isinstance(body, dict) else str(body)[:300]


def netbox_devices(config: Config, settings: NetboxSettings) -> NetboxDevices:
    """What NetBox says, in the estate's YAML form; a site the estate lacks, or two
    devices with one id, refuse the import (every one named)."""
    session = requests.Session()
    adapter = _TimeoutAdapter(settings.timeout)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    if settings.ca_file:
        session.verify = settings.ca_file
    api = pynetbox.api(settings.url, token=settings.token.resolve())
    api.http_session = session
    out = NetboxDevices()
    problems: list[str] = []
    try:
        found = list(api.dcim.devices.filter(**settings.filter))
    except pynetbox.RequestError as exc:
        raise ImportRefused(f"{settings.url}: NetBox answered {exc.req.status_code}: "
                            f"{_detail(exc)}") from None
    except requests.RequestException as exc:
        raise ImportRefused(f"{settings.url}: {type(exc).__name__}: {exc}") from None
    for record in found:
        name = str(record.name or "")
        role = _slug(getattr(record, "role", None) or getattr(record, "device_role", None))
        if not name:
            out.left_out.append(f"NetBox device #{record.id}: has no name")
            continue
        device_class = settings.roles.get(role)
        if device_class is None:
            out.left_out.append(f"{name}: role {role!r} has no class (netbox.roles)")
            continue
        netbox_site = _slug(record.site)
        site = settings.sites.get(netbox_site, netbox_site)
        device_id = device_id_of(name)
        if site not in config.sites:
            problems.append(f"{name}: NetBox site {netbox_site!r} is no site of the estate "
                            "(netbox.sites maps one)")
            continue
        if device_id in out.devices:
            problems.append(f"{name}: id {device_id!r} again (NetBox #{record.id})")
            continue
        device: dict[str, Any] = {"id": device_id, "name": name, "class": device_class,
                                  "site": site}
        primary = getattr(record, "primary_ip4", None) or getattr(record, "primary_ip", None)
        if primary is not None and getattr(primary, "address", None):
            device["address"] = str(primary.address).split("/")[0]
            profile = settings.snmp_profiles.get(role)
            if profile:
                device["snmp_profile"] = profile
        tags = sorted(_slug(t) for t in (record.tags or []) if _slug(t))
        if tags:
            device["tags"] = tags
        out.devices[device_id] = device
    if problems:
        raise ImportRefused("\n".join(problems))
    return out
