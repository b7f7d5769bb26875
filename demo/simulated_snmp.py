"""Simulated SNMP agents for the demo: real SNMP v2c on loopback, answered from a model.

Each simulated device listens on an address of its own in 127.0.0.0/8 and answers
GET, GETNEXT and GETBULK for what the poller's modules ask: the system group, IF-MIB's
ifTable and ifXTable (firewalls, like much older gear, have no ifXTable: the poller
falls back to the 32-bit counters and ifDescr), and UPS-MIB on UPSes. Counters move
with a daily traffic curve and wrap as real ones do. Now and then a fault is injected
and the matching v2c trap sent from the device's address to the trap receiver: an
interface goes down (linkDown, later linkUp), a device stops answering and comes back
rebooted (coldStart), or a device just reboots (coldStart, sysUpTime from zero).

Requests and traps go through pysnmp's protocol API (pyasn1); responses, the bulk of
the traffic, are assembled from varbinds encoded once a second per device (pyasn1
would cost ~250 µs of CPU per varbind answered, a quarter of a core for the demo).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import structlog
from pyasn1.codec.ber import decoder, encoder
from pyasn1.error import PyAsn1Error
from pysnmp.proto import api

from collectors.snmp.wire import encode_response, encode_value, encode_varbind, oid_content
from monitor.config import Device

__all__ = ["AgentStats", "SimulatedAgents", "SimulatedDevice"]

log = structlog.get_logger(__name__)

V2C: Final = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]
Oid = tuple[int, ...]

SYSTEM: Final = (1, 3, 6, 1, 2, 1, 1)
IF_NUMBER: Final = (1, 3, 6, 1, 2, 1, 2, 1, 0)
IF_ENTRY: Final = (1, 3, 6, 1, 2, 1, 2, 2, 1)
IFX_ENTRY: Final = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1)
UPS: Final = (1, 3, 6, 1, 2, 1, 33, 1)
SYS_UPTIME: Final = (1, 3, 6, 1, 2, 1, 1, 3, 0)
IP_FORWARDING: Final = (1, 3, 6, 1, 2, 1, 4, 1, 0)
DOT1D_BASE_NUM_PORTS: Final = (1, 3, 6, 1, 2, 1, 17, 1, 2, 0)
LLDP_LOC_PORT: Final = (1, 0, 8802, 1, 1, 2, 1, 3, 7, 1)
LLDP_REM: Final = (1, 0, 8802, 1, 1, 2, 1, 4, 1, 1)
SNMP_TRAP_OID: Final = (1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0)
COLD_START: Final = (1, 3, 6, 1, 6, 3, 1, 1, 5, 1)
LINK_DOWN: Final = (1, 3, 6, 1, 6, 3, 1, 1, 5, 3)
LINK_UP: Final = (1, 3, 6, 1, 6, 3, 1, 1, 5, 4)

# BER tags of the values served
INTEGER, OCTETS, OID = 0x02, 0x04, 0x06
COUNTER32, GAUGE32, TIMETICKS, COUNTER64 = 0x41, 0x42, 0x43, 0x46
NO_SUCH_OBJECT, NO_SUCH_INSTANCE, END_OF_MIB_VIEW = 0x80, 0x81, 0x82

PORTS: Final = {"switch": 24, "router": 4, "firewall": 4}
SPEED_BPS: Final = 1_000_000_000
MAX_BULK_VARBINDS: Final = 250  # as net-snmp's maxGetbulkResponses
SNAPSHOT_SECONDS: Final = 1.0  # one walk (a few requests) reads one consistent table

SYS_OBJECT_ID: Final = {  # vendors an estate of this kind has
    "switch": (1, 3, 6, 1, 4, 1, 9, 1, 516),  # Cisco Catalyst 3750
    "router": (1, 3, 6, 1, 4, 1, 9, 1, 1208),
    "firewall": (1, 3, 6, 1, 4, 1, 12356, 101, 1, 1000),  # Fortinet
    "ups": (1, 3, 6, 1, 4, 1, 318, 1, 3, 27),  # APC
}

SYS_SERVICES: Final = {  # RFC 3418's layers: 2 datalink, 4 internet, 8 end-to-end, 64 apps
    "switch": 2, "ap": 2, "router": 6, "firewall": 76, "ups": 72,
}


@dataclass(slots=True)
class _Port:
    name: str
    alias: str
    octets: list[float]  # in, out (64-bit; the 32-bit columns are these modulo 2**32)
    errors_in: int = 0
    oper: int = 1  # 1 up, 2 down
    up_at: float = 0.0


@dataclass(slots=True)
class AgentStats:
    requests: int = 0
    answered: int = 0
    malformed: int = 0
    bad_community: int = 0
    silent: int = 0  # requests to a device that is "down"
    traps: int = 0


class SimulatedDevice:
    """One device's MIB, computed from the model at most once a second."""

    def __init__(self, device: Device, address: str, rng: random.Random, now: float) -> None:
        self.device = device
        self.address = address
        self.rng = rng
        self.booted = now - rng.uniform(3600, 90 * 86400)
        self.silent_until = 0.0
        self.updated = now
        kind = device.device_class
        self.ports = [_Port(name=f"Gi1/0/{n}", alias="uplink" if n == 1 else "",
                            octets=[rng.uniform(0, 2**40), rng.uniform(0, 2**40)])
                      for n in range(1, PORTS.get(kind, 0) + 1)]
        self.has_ifx = kind != "firewall"
        # LLDP neighbours: (our port number, our port, their id, their port)
        self.links: list[tuple[int, str, str, str]] = []
        self.on_battery_since: float | None = None
        self._snapshot: tuple[float, list[Oid], list[bytes]] | None = None

    def _ups_rows(self, now: float) -> list[tuple[Oid, int, int | bytes]]:
        battery = self.on_battery_since
        on_battery = battery is not None and now - battery < 300
        seconds = int(now - battery) if on_battery and battery is not None else 0
        return [
            ((*UPS, 1, 1, 0), OCTETS, b"APC"),  # upsIdentManufacturer
            ((*UPS, 1, 2, 0), OCTETS, b"Smart-UPS 3000"),  # upsIdentModel
            ((*UPS, 2, 1, 0), INTEGER, 2),  # upsBatteryStatus: normal
            ((*UPS, 2, 2, 0), INTEGER, seconds),
            ((*UPS, 2, 3, 0), INTEGER, max(5, 30 - seconds // 10)),
            ((*UPS, 2, 4, 0), INTEGER, max(10, 100 - seconds // 6)),
            ((*UPS, 4, 1, 0), INTEGER, 5 if on_battery else 3),
        ]

    def _lldp_rows(self) -> list[tuple[Oid, int, int | bytes]]:
        """The neighbours, as lldpd announces them."""
        rows: list[tuple[Oid, int, int | bytes]] = []
        for num, name, other, other_port in self.links:
            rows += [((*LLDP_LOC_PORT, 3, num), OCTETS, name.encode()),
                     ((*LLDP_LOC_PORT, 4, num), OCTETS, name.encode()),
                     ((*LLDP_REM, 4, 0, num, 1), INTEGER, 7),  # chassis id: local
                     ((*LLDP_REM, 5, 0, num, 1), OCTETS, other.encode()),
                     ((*LLDP_REM, 6, 0, num, 1), INTEGER, 5),  # port id: interfaceName
                     ((*LLDP_REM, 7, 0, num, 1), OCTETS, other_port.encode()),
                     ((*LLDP_REM, 9, 0, num, 1), OCTETS, other.encode())]
        return rows

    def uptime_ticks(self, now: float) -> int:
        return int((now - self.booted) * 100) % 2**32

    def advance(self, now: float) -> None:
        elapsed = max(0.0, now - self.updated)
        self.updated = now
        hour = (now / 3600 + 1) % 24  # Norwegian local time, roughly
        load = 0.05 + 0.25 * max(0.0, math.sin(math.pi * (hour - 6) / 14))
        for port in self.ports:
            if port.oper == 2 and now >= port.up_at:
                continue
            for i in (0, 1):
                port.octets[i] += load * SPEED_BPS / 8 * elapsed * self.rng.uniform(0.6, 1.4)
            if port.name == "Gi1/0/1":
                port.errors_in += int(self.rng.expovariate(1 / 3) * elapsed / 30)

    def mib(self, now: float) -> tuple[list[Oid], list[bytes]]:
        """The sorted OIDs and their encoded varbinds, as of ``now`` (kept a second)."""
        if self._snapshot is not None and now - self._snapshot[0] < SNAPSHOT_SECONDS:
            return self._snapshot[1], self._snapshot[2]
        self.advance(now)
        kind = self.device.device_class
        what = "access point" if kind == "ap" else kind
        rows: list[tuple[Oid, int, int | bytes]] = [
            ((*SYSTEM, 1, 0), OCTETS, f"simulated {what} {self.device.name}".encode()),
            ((*SYSTEM, 2, 0), OID, _oid(SYS_OBJECT_ID.get(kind, (1, 3, 6, 1, 4, 1, 8072)))),
            (SYS_UPTIME, TIMETICKS, self.uptime_ticks(now)),
            ((*SYSTEM, 4, 0), OCTETS, b"vaktrommet@example.no"),
            ((*SYSTEM, 5, 0), OCTETS, self.device.id.encode()),
            ((*SYSTEM, 6, 0), OCTETS, self.device.site.encode()),
            # what discovery tells classes apart by (collectors/snmp/discovery.py)
            ((*SYSTEM, 7, 0), INTEGER, SYS_SERVICES.get(kind, 72)),
            (IP_FORWARDING, INTEGER, 1 if kind in ("router", "firewall") else 2),
        ]
        if kind == "switch":
            rows.append((DOT1D_BASE_NUM_PORTS, INTEGER, len(self.ports)))
        rows += self._lldp_rows()
        if self.ports:
            rows.append((IF_NUMBER, INTEGER, len(self.ports)))
        for n, port in enumerate(self.ports, start=1):
            down = port.oper == 2 and now < port.up_at
            if port.oper == 2 and not down:
                port.oper = 1
            octets = [int(v) for v in port.octets]
            rows += [
                ((*IF_ENTRY, 1, n), INTEGER, n),
                ((*IF_ENTRY, 2, n), OCTETS, f"GigabitEthernet1/0/{n}".encode()),
                ((*IF_ENTRY, 3, n), INTEGER, 6),
                ((*IF_ENTRY, 5, n), GAUGE32, SPEED_BPS),
                ((*IF_ENTRY, 7, n), INTEGER, 1),
                ((*IF_ENTRY, 8, n), INTEGER, 2 if down else 1),
                ((*IF_ENTRY, 10, n), COUNTER32, octets[0] % 2**32),
                ((*IF_ENTRY, 13, n), COUNTER32, 0),
                ((*IF_ENTRY, 14, n), COUNTER32, port.errors_in % 2**32),
                ((*IF_ENTRY, 16, n), COUNTER32, octets[1] % 2**32),
                ((*IF_ENTRY, 19, n), COUNTER32, 0),
                ((*IF_ENTRY, 20, n), COUNTER32, 0),
            ]
            if self.has_ifx:
                rows += [
                    ((*IFX_ENTRY, 1, n), OCTETS, port.name.encode()),
                    ((*IFX_ENTRY, 6, n), COUNTER64, octets[0] % 2**64),
                    ((*IFX_ENTRY, 10, n), COUNTER64, octets[1] % 2**64),
                    ((*IFX_ENTRY, 15, n), GAUGE32, SPEED_BPS // 1_000_000),
                    ((*IFX_ENTRY, 18, n), OCTETS, port.alias.encode()),
                ]
        if kind == "ups":
            rows += self._ups_rows(now)
        rows.sort(key=lambda row: row[0])
        oids = [r[0] for r in rows]
        binds = [encode_varbind(_oid(oid), encode_value(tag, value)) for oid, tag, value in rows]
        self._snapshot = (now, oids, binds)
        return oids, binds

    def forget_snapshot(self) -> None:
        self._snapshot = None


def _oid(oid: Oid) -> bytes:
    return oid_content(".".join(map(str, oid)))


def _exception(oid: Oid, tag: int) -> bytes:
    return encode_varbind(_oid(oid), encode_value(tag, b""))


def _answer(pdu: Any, oids: list[Oid], binds: list[bytes]) -> list[bytes]:
    """The varbinds answering a GET, GETNEXT or GETBULK over the sorted MIB."""
    p = V2C
    asked = [tuple(o) for o, _ in p.apiPDU.get_varbinds(pdu)]

    def exact(oid: Oid) -> tuple[Oid, bytes]:
        i = bisect.bisect_left(oids, oid)
        if i < len(oids) and oids[i] == oid:
            return oid, binds[i]
        # a known object (a column or scalar here) without that instance, or no such object
        known = any(0 <= j < len(oids) and oids[j][:len(oid) - 1] == oid[:-1]
                    for j in (i - 1, i))
        return oid, _exception(oid, NO_SUCH_INSTANCE if known else NO_SUCH_OBJECT)

    def after(oid: Oid) -> tuple[Oid, bytes | None]:
        i = bisect.bisect_right(oids, oid)
        return (oids[i], binds[i]) if i < len(oids) else (oid, None)

    def bound(found: tuple[Oid, bytes | None]) -> bytes:
        return found[1] if found[1] is not None else _exception(found[0], END_OF_MIB_VIEW)

    if pdu.isSameTypeWith(p.GetRequestPDU()):
        return [exact(o)[1] for o in asked]
    if pdu.isSameTypeWith(p.GetNextRequestPDU()):
        return [bound(after(o)) for o in asked]
    non_repeaters = min(int(p.apiBulkPDU.get_non_repeaters(pdu)), len(asked))
    repetitions = max(0, int(p.apiBulkPDU.get_max_repetitions(pdu)))
    out = [bound(after(o)) for o in asked[:non_repeaters]]
    cursors = asked[non_repeaters:]
    for _ in range(repetitions):
        if not cursors or len(out) + len(cursors) > MAX_BULK_VARBINDS:
            break
        row = [after(o) for o in cursors]
        out += [bound(found) for found in row]
        if all(value is None for _, value in row):
            break
        cursors = [o for o, _ in row]
    return out


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(self, agents: SimulatedAgents, sim: SimulatedDevice) -> None:
        self.agents = agents
        self.sim = sim
        self.transport: asyncio.DatagramTransport | None = None

    def itself(self) -> _Endpoint:
        return self

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        reply = self.agents.respond(self.sim, data)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


class SimulatedAgents:
    """The simulated devices of one location, each on ``address:port`` over UDP."""

    def __init__(self, devices: Sequence[tuple[Device, str]], *, port: int, community: str,
                 trap_to: tuple[str, int] | None = None, fault_every: float = 45.0,
                 seed: int | None = None, clock: Callable[[], float] = time.time,
                 location: str = "") -> None:
        self.log = log.bind(location=location) if location else log
        self.port = port
        self.community = community
        self._community = community.encode()
        self.trap_to = trap_to
        self.fault_every = fault_every
        self.rng = random.Random(seed)
        self.clock = clock
        self.stats = AgentStats()
        now = clock()
        self.devices = {d.id: SimulatedDevice(d, address, self.rng, now) for d, address in devices}
        self._cable()
        self._endpoints: dict[str, _Endpoint] = {}
        self._stop = asyncio.Event()
        self._pending: set[asyncio.TimerHandle] = set()

    def _cable(self) -> None:
        """Each device's uplink (its port 1) to the next free port of its parent (from
        port 2), both ends announcing the other over LLDP."""
        children: dict[str, list[SimulatedDevice]] = {}
        for sim in self.devices.values():
            if sim.device.parent in self.devices:
                children.setdefault(sim.device.parent, []).append(sim)
        for parent_id, kids in children.items():
            parent = self.devices[parent_id]
            for number, kid in enumerate(kids, start=2):
                if parent.ports and number > len(parent.ports):
                    break  # a full switch: the rest hang there unannounced
                theirs = parent.ports[number - 1].name if parent.ports else f"eth{number - 1}"
                ours = kid.ports[0].name if kid.ports else "eth0"
                parent.links.append((number, theirs, kid.device.id, ours))
                kid.links.append((1, ours, parent_id, theirs))

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for sim in self.devices.values():
            endpoint = _Endpoint(self, sim)
            await loop.create_datagram_endpoint(endpoint.itself,
                                                local_addr=(sim.address, self.port))
            self._endpoints[sim.device.id] = endpoint
        self.log.info("snmp_agents_started", devices=len(self.devices), port=self.port)

    def close(self) -> None:
        for handle in self._pending:
            handle.cancel()
        for endpoint in self._endpoints.values():
            if endpoint.transport is not None:
                endpoint.transport.close()
        self._endpoints.clear()

    def stop(self) -> None:
        self._stop.set()

    # --- answering -----------------------------------------------------------------

    def respond(self, sim: SimulatedDevice, data: bytes) -> bytes | None:
        self.stats.requests += 1
        now = self.clock()
        if now < sim.silent_until:
            self.stats.silent += 1
            return None
        p = V2C
        try:
            if int(api.decodeMessageVersion(data)) != api.SNMP_VERSION_2C:
                self.stats.malformed += 1
                return None
            message, _ = decoder.decode(data, asn1Spec=p.Message())
            if bytes(p.apiMessage.get_community(message)) != self._community:
                self.stats.bad_community += 1  # as an agent does: no answer
                return None
            request = p.apiMessage.get_pdu(message)
            oids, binds = sim.mib(now)
            reply = encode_response(1, self._community,
                                    int(p.apiPDU.get_request_id(request)),
                                    _answer(request, oids, binds))
        except (PyAsn1Error, ValueError, TypeError, IndexError, OverflowError):
            self.stats.malformed += 1
            return None
        self.stats.answered += 1
        return reply

    # --- faults and traps ----------------------------------------------------------

    def send_trap(self, sim: SimulatedDevice, trap_oid: Oid,
                  extra: Sequence[tuple[Oid, Any]] = ()) -> None:
        endpoint = self._endpoints.get(sim.device.id)
        if self.trap_to is None or endpoint is None or endpoint.transport is None:
            return
        p = V2C
        pdu = p.SNMPv2TrapPDU()
        p.apiTrapPDU.set_defaults(pdu)
        p.apiTrapPDU.set_varbinds(pdu, [(SYS_UPTIME, p.TimeTicks(sim.uptime_ticks(
            self.clock()))), (SNMP_TRAP_OID, p.ObjectIdentifier(trap_oid)), *extra])
        message = p.Message()
        p.apiMessage.set_defaults(message)
        p.apiMessage.set_community(message, self.community)
        p.apiMessage.set_pdu(message, pdu)
        # from the device's own address: the receiver knows the device by it
        endpoint.transport.sendto(bytes(encoder.encode(message)), self.trap_to)
        self.stats.traps += 1

    def _later(self, delay: float, action: Callable[[], None]) -> None:
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle | None = None

        def fire() -> None:
            assert handle is not None
            self._pending.discard(handle)
            action()

        handle = loop.call_later(delay, fire)
        self._pending.add(handle)

    def interface_down(self, device_id: str, port_index: int, seconds: float) -> None:
        """Port ``port_index`` (1-based ifIndex) goes down: linkDown now, linkUp after."""
        sim = self.devices[device_id]
        port = sim.ports[port_index - 1]
        port.oper, port.up_at = 2, self.clock() + seconds
        sim.forget_snapshot()
        p = V2C

        def link(trap: Oid, status: int) -> None:
            self.send_trap(sim, trap, [((*IF_ENTRY, 1, port_index), p.Integer(port_index)),
                                       ((*IF_ENTRY, 7, port_index), p.Integer(1)),
                                       ((*IF_ENTRY, 8, port_index), p.Integer(status)),
                                       ((*IFX_ENTRY, 1, port_index), p.OctetString(port.name))])

        def back() -> None:
            sim.forget_snapshot()
            link(LINK_UP, 1)

        link(LINK_DOWN, 2)
        self._later(seconds, back)
        self.log.info("simulated_fault", fault="interface_down", device=device_id,
                 ifname=port.name, seconds=round(seconds))

    def outage(self, device_id: str, seconds: float) -> None:
        """The device stops answering; it comes back rebooted and says coldStart."""
        sim = self.devices[device_id]
        now = self.clock()
        sim.silent_until = now + seconds
        if sim.device.device_class == "ups":
            sim.on_battery_since = now

        def back() -> None:
            sim.booted = self.clock() - self.rng.uniform(20, 60)
            sim.forget_snapshot()
            self.send_trap(sim, COLD_START)

        self._later(seconds, back)
        self.log.info("simulated_fault", fault="outage", device=device_id, seconds=round(seconds))

    def reboot(self, device_id: str) -> None:
        sim = self.devices[device_id]
        sim.booted = self.clock()
        sim.forget_snapshot()
        self.send_trap(sim, COLD_START)
        self.log.info("simulated_fault", fault="reboot", device=device_id)

    def inject_fault(self) -> None:
        """One fault at random: interface down (half), outage (a third), reboot."""
        now = self.clock()
        candidates = [s for s in self.devices.values() if s.silent_until < now]
        if not candidates:
            return
        sim = self.rng.choice(candidates)
        roll = self.rng.random()
        if sim.ports and roll < 0.5:
            self.interface_down(sim.device.id, self.rng.randrange(2, len(sim.ports) + 1),
                                self.rng.uniform(60, 300))
        elif roll < 0.85:
            # mostly blips shorter than DeviceDown's 2 minutes; one in three alerts
            self.outage(sim.device.id, self.rng.uniform(180, 480) if self.rng.random() < 1 / 3
                        else self.rng.uniform(30, 100))
        else:
            self.reboot(sim.device.id)

    async def run(self) -> None:
        """Inject faults now and then until stopped."""
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(),
                                       self.rng.expovariate(1 / self.fault_every))
            if not self._stop.is_set() and self.devices:
                self.inject_fault()

