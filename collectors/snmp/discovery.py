"""SNMP discovery: ask every address of a subnet, with an estate's SNMP profile, what
it is, and propose the ones that answer and are not in the estate yet as devices.

One GET per address of the system group and a few scalars that tell classes apart;
the class is decided by the first rule that holds, in this order (the reasons are in
``classify``'s table), and a device no rule places is proposed without a class, for
the operator to choose — never guessed:

1. firewall   sysObjectID under a firewall maker (Fortinet, Palo Alto, Check Point,
              SonicWall, WatchGuard)
2. ups        UPS-MIB answers (upsIdentModel), or sysObjectID under APC's UPS or
              Eaton's/MGE's tree
3. pdu        APC's rack PDU MIB answers (rPDUIdentName, rPDU2), or sysObjectID under
              APC's PDU tree
4. printer    Printer-MIB answers (prtGeneralPrinterName)
5. ap         sysDescr names an access point (Aironet, "access point", UniFi UAP)
6. switch     BRIDGE-MIB has ports (dot1dBaseNumPorts > 0): before router, since
              layer-3 switches forward IP too
7. server     HOST-RESOURCES answers (hrSystemUptime): Windows, Linux, net-snmp hosts
8. router     ipForwarding is forwarding(1)
9. sysServices (RFC 3418): layer 3 → router, layer 2 → switch

Devices already in the estate (by address) are reported as known, not proposed. The
proposal is YAML a site can review and add to its estate; nothing is written by this.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from collectors.snmp.client import CollectError, Session, Value

__all__ = ["Found", "Scan", "classify", "discover"]

SYS_DESCR: Final = "1.3.6.1.2.1.1.1.0"
SYS_OBJECT_ID: Final = "1.3.6.1.2.1.1.2.0"
SYS_NAME: Final = "1.3.6.1.2.1.1.5.0"
SYS_SERVICES: Final = "1.3.6.1.2.1.1.7.0"
IP_FORWARDING: Final = "1.3.6.1.2.1.4.1.0"
DOT1D_BASE_NUM_PORTS: Final = "1.3.6.1.2.1.17.1.2.0"
HR_SYSTEM_UPTIME: Final = "1.3.6.1.2.1.25.1.1.0"
UPS_IDENT_MODEL: Final = "1.3.6.1.2.1.33.1.1.2.0"
PRT_GENERAL_PRINTER_NAME: Final = "1.3.6.1.2.1.43.5.1.1.16.1"
RPDU_IDENT_NAME: Final = "1.3.6.1.4.1.318.1.1.12.1.1.0"
RPDU2_IDENT_COUNT: Final = "1.3.6.1.4.1.318.1.1.26.1.1.0"
PROBES: Final = (SYS_DESCR, SYS_OBJECT_ID, SYS_NAME, SYS_SERVICES, IP_FORWARDING,
                 DOT1D_BASE_NUM_PORTS, HR_SYSTEM_UPTIME, UPS_IDENT_MODEL,
                 PRT_GENERAL_PRINTER_NAME, RPDU_IDENT_NAME, RPDU2_IDENT_COUNT)

ENTERPRISES: Final = "1.3.6.1.4.1."
FIREWALL_MAKERS: Final = ("12356", "25461", "2620", "8741", "3097")
UPS_TREES: Final = ("318.1.1.1", "318.1.3.2", "534", "705")
PDU_TREES: Final = ("318.1.3.4",)
ACCESS_POINT: Final = re.compile(r"(?i)\baironet\b|access point|\bUAP\b")
MAX_ADDRESSES: Final = 65_536  # a /16: a bigger scan is a mistake, not a plan


@dataclass(frozen=True, slots=True)
class Found:
    address: str
    name: str  # sysName, else the address
    descr: str
    object_id: str
    device_class: str | None  # None: no rule placed it
    reason: str
    known_as: str | None = None  # the estate's device at this address


@dataclass(slots=True)
class Scan:
    found: list[Found]
    asked: int
    seconds: float


def _under(oid: str, trees: Iterable[str]) -> bool:
    return any(oid == ENTERPRISES + t or oid.startswith(ENTERPRISES + t + ".") for t in trees)


def classify(values: dict[str, Value]) -> tuple[str | None, str]:
    """The class the answers place a device in, and why (the first rule that holds)."""
    oid = values[SYS_OBJECT_ID].text if SYS_OBJECT_ID in values else ""
    descr = values[SYS_DESCR].text if SYS_DESCR in values else ""

    def number(key: str) -> float | None:
        return values[key].number if key in values else None

    services = int(number(SYS_SERVICES) or 0)
    rules: list[tuple[bool, str, str]] = [
        (_under(oid, FIREWALL_MAKERS), "firewall", f"sysObjectID {oid} (a firewall maker)"),
        (UPS_IDENT_MODEL in values, "ups", "UPS-MIB answers"),
        (_under(oid, UPS_TREES), "ups", f"sysObjectID {oid} (a UPS maker's tree)"),
        (RPDU_IDENT_NAME in values or RPDU2_IDENT_COUNT in values, "pdu",
         "PowerNet rPDU answers"),
        (_under(oid, PDU_TREES), "pdu", f"sysObjectID {oid} (APC's PDUs)"),
        (PRT_GENERAL_PRINTER_NAME in values, "printer", "Printer-MIB answers"),
        (bool(ACCESS_POINT.search(descr)), "ap", "sysDescr names an access point"),
        ((number(DOT1D_BASE_NUM_PORTS) or 0) > 0, "switch",
         f"BRIDGE-MIB: {int(number(DOT1D_BASE_NUM_PORTS) or 0)} bridge ports"),
        (HR_SYSTEM_UPTIME in values, "server", "HOST-RESOURCES answers"),
        (number(IP_FORWARDING) == 1, "router", "ipForwarding: forwarding"),
        (bool(services & 4), "router", f"sysServices {services}: layer 3"),
        (bool(services & 2), "switch", f"sysServices {services}: layer 2"),
    ]
    for holds, device_class, reason in rules:
        if holds:
            return device_class, reason
    return None, "no rule placed it: choose its class"


async def discover(subnet: str, session_for: Callable[[str], Session],
                   known: dict[str, str], concurrency: int = 64,
                   on_error: Callable[[str, CollectError], None] | None = None) -> Scan:
    """Ask every host address of ``subnet``; ``known``: address → the estate's device.
    An address that does not answer is left out; one that answers with an error is
    passed to ``on_error``."""
    network = ipaddress.ip_network(subnet, strict=False)
    if network.num_addresses > MAX_ADDRESSES:
        raise ValueError(f"{subnet} has {network.num_addresses} addresses; scan at most "
                         f"a /16 ({MAX_ADDRESSES}) at a time")
    hosts = [str(a) for a in (network.hosts() if network.num_addresses > 2 else network)]
    gate = asyncio.Semaphore(concurrency)
    started = time.monotonic()

    async def ask(address: str) -> Found | None:
        async with gate:
            try:
                values = await session_for(address).get(list(PROBES))
            except CollectError as exc:
                if exc.kind != "timeout" and on_error is not None:
                    on_error(address, exc)
                return None
        if not values:
            return None
        device_class, reason = classify(values)
        name = values[SYS_NAME].text if SYS_NAME in values else ""
        return Found(address=address, name=name or address,
                     descr=(values[SYS_DESCR].text if SYS_DESCR in values else "")[:200],
                     object_id=values[SYS_OBJECT_ID].text if SYS_OBJECT_ID in values else "",
                     device_class=device_class, reason=reason, known_as=known.get(address))

    answers = await asyncio.gather(*(ask(a) for a in hosts))
    return Scan(found=[f for f in answers if f is not None], asked=len(hosts),
                seconds=time.monotonic() - started)


def _slug(name: str) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", name.lower().split(".")[0]).strip("-")[:56]
    return slug if slug and slug[0].isalnum() else f"d-{slug}".strip("-")


def proposal(scan: Scan, subnet: str, site: str, profile: str, taken: set[str]) -> str:
    """The scan as YAML for the estate: new devices placed on ``site`` with
    ``profile``, each with the reason for its class; known and unplaced ones as
    comments."""
    new = [f for f in scan.found if f.known_as is None]
    known = [f for f in scan.found if f.known_as is not None]
    classes = sorted({f.device_class or "?" for f in new})
    counts = ", ".join(f"{sum(1 for f in new if (f.device_class or '?') == c)} {c}"
                       for c in classes)
    lines = [f"# driftsvakt discover {subnet} with profile {profile}: {scan.asked} "
             f"addresses asked in {scan.seconds:.1f} s, {len(scan.found)} answered: "
             f"{len(new)} new ({counts or 'none'}), {len(known)} already in the estate",
             *(f"# known: {f.known_as} at {f.address}" for f in known),
             "devices:"]
    taken = set(taken)
    for f in sorted(new, key=lambda f: ipaddress.ip_address(f.address)):
        slug = base = _slug(f.name)
        n = 2
        while slug in taken:
            slug, n = f"{base}-{n}"[:63], n + 1
        taken.add(slug)
        entry = [f"  - id: {slug}", f"    name: {_quoted(f.name)}",
                 f"    class: {f.device_class}  # {f.reason}", f"    site: {site}",
                 f"    address: {f.address}", f"    snmp_profile: {profile}"]
        if f.device_class is None:  # left for the operator: not valid until chosen
            entry = [f"  # {line.strip()}" for line in entry]
            entry.insert(0, f"  # {f.address} ({f.descr[:80]!r}): {f.reason}")
        lines += entry
    if not new:
        lines[-1] = "devices: []"
    return "\n".join(lines) + "\n"


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
