"""What an agent installed with an enrolment token says of itself when it starts.

The token (``driftsvakt enrolment-token``) names the location whose broker the agent
talks to and the municipality it enrols in; its secret is the broker password of the
municipality's enrolment identity (``enrol-{municipality}``) and the key of the proof
the engine checks (monitor.registration). The facts: host name, system, addresses
(loopback and link-local left out), a machine id that survives a rename (systemd's
/etc/machine-id, Windows' MachineGuid), and on a domain member the AD site and the
computer object's DN, read from the registry where Windows keeps them (Group
Policy's record of the machine's DN, Netlogon's site).
"""

from __future__ import annotations

import ipaddress
import platform
import socket
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitor.enrolment import proof

__all__ = ["HostFacts", "host_facts", "registration_body"]


@dataclass(frozen=True, slots=True)
class HostFacts:
    hostname: str
    os: str
    addresses: list[str]
    machine_id: str
    ad_site: str | None = None
    dn: str | None = None


def _addresses() -> list[str]:
    import psutil

    out: list[str] = []
    for entries in psutil.net_if_addrs().values():
        for entry in entries:
            if entry.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            try:
                address = ipaddress.ip_address(entry.address.split("%")[0])
            except ValueError:
                continue
            if not (address.is_loopback or address.is_link_local) and str(address) not in out:
                out.append(str(address))
    return out[:64]


def _windows_value(key: str, name: str) -> str | None:
    if sys.platform != "win32":
        return None
    import winreg

    try:
        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, key) as handle:
            value, _ = winreg.QueryValueEx(handle, name)
    except OSError:
        return None
    return str(value) or None


def _machine_id() -> str:
    guid = _windows_value(r"SOFTWARE\Microsoft\Cryptography", "MachineGuid")
    if guid:
        return guid.lower()
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            text = Path(path).read_text(encoding="ascii").strip()
        except OSError:
            continue
        if text:
            return text
    return f"mac-{uuid.getnode():012x}"


def host_facts(machine_id: str | None = None, ad_site: str | None = None,
               dn: str | None = None) -> HostFacts:
    """This host's facts; what the settings give (a Linux host's AD place) wins."""
    name = socket.gethostname()
    fqdn = socket.getfqdn(name)  # the resolver's full name, where it knows this host's
    same = fqdn.split(".")[0].lower() == name.split(".")[0].lower()
    return HostFacts(
        hostname=fqdn if same else name, os=platform.platform(terse=False)[:200],
        addresses=_addresses(), machine_id=machine_id or _machine_id(),
        ad_site=ad_site or _windows_value(
            r"SYSTEM\CurrentControlSet\Services\Netlogon\Parameters", "DynamicSiteName"),
        dn=dn or _windows_value(
            r"SOFTWARE\Microsoft\Windows\CurrentVersion\Group Policy\State\Machine",
            "Distinguished-Name"))


def registration_body(facts: HostFacts, municipality: str, device: str, secret: str,
                      device_class: str) -> dict[str, Any]:
    """The ``register`` event's fields (monitor.events.RegisterEvent)."""
    body: dict[str, Any] = {
        "hostname": facts.hostname[:253], "os": facts.os, "addresses": facts.addresses,
        "machine_id": facts.machine_id[:128], "class": device_class,
        "proof": proof(secret, municipality, device, facts.machine_id[:128])}
    if facts.ad_site:
        body["ad_site"] = facts.ad_site[:256]
    if facts.dn:
        body["dn"] = facts.dn[:1024]
    return body
