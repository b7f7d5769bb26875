"""Who is at the other end of each port: the neighbour tables of LLDP (LLDP-MIB,
IEEE 802.1AB) and Cisco's CDP (CISCO-CDP-MIB), as a switch or router keeps them.

Read with one walk of each table; our side of a link is named by the port's ifName
(CDP indexes by ifIndex; LLDP by its own port number, named by lldpLocPortDesc, else
lldpLocPortId); their side by what they announce: LLDP's system name (else its chassis
id: a MAC as aa:bb:…, a name as text) and port id, CDP's device id and port, and CDP's
address (IPv4) when it gives one.
"""

from __future__ import annotations

import ipaddress
from typing import Final

from collectors.snmp.client import Session, Value
from monitor.events import Neighbour

__all__ = ["neighbours"]

IF_NAME: Final = "1.3.6.1.2.1.31.1.1.1.1"
IF_DESCR: Final = "1.3.6.1.2.1.2.2.1.2"
CDP_ADDRESS_TYPE: Final = "1.3.6.1.4.1.9.9.23.1.2.1.1.3"
CDP_ADDRESS: Final = "1.3.6.1.4.1.9.9.23.1.2.1.1.4"
CDP_DEVICE_ID: Final = "1.3.6.1.4.1.9.9.23.1.2.1.1.6"
CDP_DEVICE_PORT: Final = "1.3.6.1.4.1.9.9.23.1.2.1.1.7"
CDP_PLATFORM: Final = "1.3.6.1.4.1.9.9.23.1.2.1.1.8"
LLDP_LOC_PORT_ID: Final = "1.0.8802.1.1.2.1.3.7.1.3"
LLDP_LOC_PORT_DESC: Final = "1.0.8802.1.1.2.1.3.7.1.4"
LLDP_CHASSIS_SUBTYPE: Final = "1.0.8802.1.1.2.1.4.1.1.4"
LLDP_CHASSIS_ID: Final = "1.0.8802.1.1.2.1.4.1.1.5"
LLDP_PORT_SUBTYPE: Final = "1.0.8802.1.1.2.1.4.1.1.6"
LLDP_PORT_ID: Final = "1.0.8802.1.1.2.1.4.1.1.7"
LLDP_PORT_DESC: Final = "1.0.8802.1.1.2.1.4.1.1.8"
LLDP_SYS_NAME: Final = "1.0.8802.1.1.2.1.4.1.1.9"
LLDP_SYS_DESC: Final = "1.0.8802.1.1.2.1.4.1.1.10"
# LLDP's chassis and port ids and system name are at most 255 octets (IEEE 802.1AB
# 8.5.2, 8.5.3, 8.5.6); a longer text from an agent is cut to the wire's 256
WIRE_TEXT: Final = 256
MAC_ADDRESS: Final = 4  # LldpChassisIdSubtype / LldpPortIdSubtype macAddress(4)
PORT_MAC: Final = 3


def _text(value: Value | None) -> str:
    """The text; six bytes that are no text (a NIC announcing its MAC as its name) as
    a MAC address."""
    if value is None:
        return ""
    if value.raw is not None and len(value.raw) == 6 and value.text.startswith("0x"):
        return _mac(value)
    return value.text.strip()[:WIRE_TEXT]


def _mac(value: Value | None) -> str:
    raw = value.raw if value is not None else None
    if raw is not None and len(raw) == 6:
        return ":".join(f"{b:02x}" for b in raw)
    return "" if value is None else value.text.strip()[:WIRE_TEXT]


def _ipv4(value: Value | None, address_type: Value | None) -> str | None:
    raw = value.raw if value is not None else None
    if raw is None or len(raw) != 4 or (address_type is not None
                                        and address_type.number not in (None, 1.0)):
        return None
    return str(ipaddress.IPv4Address(raw))


async def neighbours(session: Session) -> list[Neighbour]:
    """Every neighbour the device reports, CDP's first, each in the table's order."""
    names = await session.walk([IF_NAME, IF_DESCR])
    found: list[Neighbour] = []
    cdp = await session.walk([CDP_ADDRESS_TYPE, CDP_ADDRESS, CDP_DEVICE_ID,
                              CDP_DEVICE_PORT, CDP_PLATFORM])
    for index, device_id in cdp[CDP_DEVICE_ID].items():
        if_index = index.split(".")[0]
        local = (_text(names[IF_NAME].get(if_index)) or _text(names[IF_DESCR].get(if_index))
                 or if_index)
        found.append(Neighbour(
            "cdp", local, _text(device_id), _text(cdp[CDP_DEVICE_PORT].get(index)),
            _ipv4(cdp[CDP_ADDRESS].get(index), cdp[CDP_ADDRESS_TYPE].get(index)),
            _text(cdp[CDP_PLATFORM].get(index))))
    local_ports = await session.walk([LLDP_LOC_PORT_ID, LLDP_LOC_PORT_DESC])
    lldp = await session.walk([LLDP_CHASSIS_SUBTYPE, LLDP_CHASSIS_ID, LLDP_PORT_SUBTYPE,
                               LLDP_PORT_ID, LLDP_PORT_DESC, LLDP_SYS_NAME, LLDP_SYS_DESC])
    for index, chassis in lldp[LLDP_CHASSIS_ID].items():
        port_num = index.split(".")[1] if index.count(".") >= 2 else index
        local = (_text(local_ports[LLDP_LOC_PORT_DESC].get(port_num))
                 or _text(local_ports[LLDP_LOC_PORT_ID].get(port_num)) or port_num)
        subtype = lldp[LLDP_CHASSIS_SUBTYPE].get(index)
        name = _text(lldp[LLDP_SYS_NAME].get(index)) or (
            _mac(chassis) if subtype is not None and subtype.number == MAC_ADDRESS
            else _text(chassis))
        port_subtype = lldp[LLDP_PORT_SUBTYPE].get(index)
        port_id = lldp[LLDP_PORT_ID].get(index)
        port = (_mac(port_id) if port_subtype is not None and port_subtype.number == PORT_MAC
                else _text(port_id)) or _text(lldp[LLDP_PORT_DESC].get(index))
        found.append(Neighbour("lldp", local, name, port, None,
                               _text(lldp[LLDP_SYS_DESC].get(index)).split("\n")[0]))
    return found
