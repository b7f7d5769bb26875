"""``driftsvakt collect traps``: SNMP v1/v2c traps and v3 traps and informs, to MQTT.

pysnmp's notification receiver does the protocol (communities, USM users, the
response to an inform). Each notification becomes a ``trap`` event of the device
whose address sent it; a source that is no known device is counted and published
under device ``unknown`` with its address, never dropped. linkDown and linkUp
(with ifIndex and ifName where sent), coldStart, warmStart and authenticationFailure
are named; every other trap is published with its OID and varbinds, names resolved
through the MIBs pysnmp ships where it has them.

Port 162 needs privilege: run with CAP_NET_BIND_SERVICE (see deploy/systemd/).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import structlog
from pysnmp.carrier.asyncio.dgram import udp
from pysnmp.entity import config as snmp_config
from pysnmp.entity import engine as snmp_engine
from pysnmp.entity.rfc3413 import ntfrcv
from pysnmp.smi import builder, view

from collectors.common.publisher import Emitter
from collectors.common.sockets import grow_receive_buffer
from collectors.snmp.client import AUTH_PROTOCOLS, PRIV_PROTOCOLS
from collectors.snmp.text import bounded, octets_text
from monitor.config import Config
from monitor.events import Varbind

__all__ = ["TrapReceiver", "TrapUser", "name_of"]

log = structlog.get_logger(__name__)

SNMP_TRAP_OID: Final = "1.3.6.1.6.3.1.1.4.1.0"
SYS_UPTIME: Final = "1.3.6.1.2.1.1.3.0"
# Generic traps (SNMPv2-MIB, IF-MIB) and the varbinds they carry. IF-MIB is not among
# the MIBs pysnmp ships, so its names used here are listed by hand.
KNOWN: Final = {
    "1.3.6.1.6.3.1.1.5.1": "coldStart",
    "1.3.6.1.6.3.1.1.5.2": "warmStart",
    "1.3.6.1.6.3.1.1.5.3": "linkDown",
    "1.3.6.1.6.3.1.1.5.4": "linkUp",
    "1.3.6.1.6.3.1.1.5.5": "authenticationFailure",
    "1.3.6.1.2.1.2.2.1.1": "ifIndex",
    "1.3.6.1.2.1.2.2.1.2": "ifDescr",
    "1.3.6.1.2.1.2.2.1.7": "ifAdminStatus",
    "1.3.6.1.2.1.2.2.1.8": "ifOperStatus",
    "1.3.6.1.2.1.31.1.1.1.1": "ifName",
    "1.3.6.1.2.1.31.1.1.1.18": "ifAlias",
}
_REFUSALS: Final = {
    "__SNMPv2-MIB": ("snmpInASNParseErrs", "snmpInBadCommunityNames", "snmpInBadVersions"),
    "__SNMP-USER-BASED-SM-MIB": ("usmStatsUnknownUserNames", "usmStatsWrongDigests",
                                 "usmStatsDecryptionErrors", "usmStatsUnknownEngineIDs",
                                 "usmStatsNotInTimeWindows", "usmStatsUnsupportedSecLevels"),
}


@dataclass(frozen=True, slots=True)
class TrapUser:
    """A USM user that may send v3 traps or informs to us."""

    name: str
    auth_protocol: str | None = None
    auth_key: str | None = None
    priv_protocol: str | None = None
    priv_key: str | None = None
    engine_id: bytes | None = None  # the sender's, for v3 traps (informs discover ours)


class _Names:
    def __init__(self) -> None:
        mib_builder = builder.MibBuilder()
        mib_builder.load_modules("SNMPv2-MIB", "RFC1213-MIB")
        self.view = view.MibViewController(mib_builder)

    def __call__(self, oid: str) -> str | None:
        # An instance (ifIndex.3) is named by its column.
        for candidate in (oid, oid.rsplit(".", 1)[0]):
            if candidate in KNOWN:
                return KNOWN[candidate]
        try:
            _, label, suffix = self.view.get_node_name(tuple(int(p) for p in oid.split(".")))
        except Exception:
            return None
        # The node itself or one instance of it; a far ancestor ("enterprises" for a
        # vendor's trap) would only mislead.
        return str(label[-1]) if label and len(suffix) <= 1 else None


name_of: Final = _Names()


USM_MODEL: Final = 3
AUTH_PRIV: Final = 3


@dataclass
class TrapStats:
    received: int = 0
    unknown_source: int = 0
    below_level: int = 0  # v3 below the user's security level: refused
    by_name: Counter[str] = field(default_factory=Counter)


class TrapReceiver:
    """Listens on ``host:port`` (UDP) and emits a trap event per notification."""

    def __init__(self, config: Config, location: str, emitter: Emitter, *,
                 host: str = "0.0.0.0", port: int = 162, communities: tuple[str, ...] = (),
                 users: tuple[TrapUser, ...] = ()) -> None:
        self.config = config
        self.location = location
        self.emitter = emitter
        self.host = host
        self.port = port
        self.communities = communities
        self.users = users
        self.stats = TrapStats()
        self.by_address = {d.address: d.id for d in config.devices.values() if d.address}
        self._engine: Any = None
        self._socket: socket.socket | None = None
        self._inode = 0
        self.receive_buffer = 0
        self._tasks: set[asyncio.Task[int | None]] = set()
        # the security level each v3 user's keys make (RFC 3411: 1, 2, 3)
        self._levels = {u.name: 1 + bool(u.auth_protocol) + bool(u.priv_protocol)
                        for u in users}


    def reload(self, config: Config) -> dict[str, int]:
        """A reloaded estate: traps from a device added are its own from now on, those
        from one removed are counted as from an unknown address."""
        self.config = config
        self.by_address = {d.address: d.id for d in config.devices.values() if d.address}
        return {"addresses": len(self.by_address)}
    def start(self) -> None:
        """Listen; raises OSError when the address cannot be bound."""
        engine = snmp_engine.SnmpEngine()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        # a burst of traps (a switch stack rebooting, a storm) must fit, and what does
        # not is counted by the kernel, read back by socket_drops()
        self.receive_buffer = grow_receive_buffer(sock)
        sock.setblocking(False)
        self.port = int(sock.getsockname()[1])
        self._inode = os.fstat(sock.fileno()).st_ino
        self._socket = sock
        transport = udp.UdpAsyncioTransport().open_server_mode(sock=sock)
        snmp_config.add_transport(engine, udp.DOMAIN_NAME, transport)
        for i, community in enumerate(self.communities):
            snmp_config.add_v1_system(engine, f"community-{i}", community)
        for user in self.users:
            auth = (AUTH_PROTOCOLS[user.auth_protocol] if user.auth_protocol
                    else snmp_config.USM_AUTH_NONE)
            priv = (PRIV_PROTOCOLS[user.priv_protocol] if user.priv_protocol
                    else snmp_config.USM_PRIV_NONE)
            snmp_config.add_v3_user(engine, user.name, auth, user.auth_key, priv, user.priv_key,
                                    securityEngineId=user.engine_id)
        ntfrcv.NotificationReceiver(engine, self._on_notification)
        self._engine = engine
        log.info("trap_receiver_started", host=self.host, port=self.port,
                 communities=len(self.communities), users=len(self.users))

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close_dispatcher()
            self._engine = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def socket_drops(self) -> int:
        """Datagrams the kernel dropped from this socket's full receive buffer
        (/proc/net/udp's ``drops`` for its inode; 0 where there is no such file)."""
        try:
            text = Path("/proc/net/udp").read_text(encoding="ascii")
        except OSError:
            return 0
        inode = str(self._inode)
        for line in text.splitlines()[1:]:
            fields = line.split()
            if len(fields) >= 13 and fields[9] == inode:
                return int(fields[12])
        return 0

    def unreadable(self) -> dict[str, int]:
        """What the SNMP engine refused before a notification came of it: datagrams
        that are not SNMP, unknown communities, v3 users, digests, keys."""
        if self._engine is None:
            return {}
        mib = self._engine.get_mib_builder()
        out = {}
        for module, names in _REFUSALS.items():
            for name in names:
                (instance,) = mib.import_symbols(module, name)
                out[name] = int(instance.syntax)
        return out

    def counters(self) -> dict[str, int]:
        """For the collector's status (ComponentStatus.counters)."""
        refused = self.unreadable()
        return {"traps_received": self.stats.received,
                "traps_unknown_source": self.stats.unknown_source,
                "trap_socket_drops": self.socket_drops(),
                "trap_not_snmp": refused.get("snmpInASNParseErrs", 0),
                "trap_bad_community": refused.get("snmpInBadCommunityNames", 0),
                "trap_v3_refused": sum(v for k, v in refused.items()
                                       if k.startswith("usmStats")) + self.stats.below_level}

    async def drain(self) -> None:
        """Wait until every notification received so far is in the outbox."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _at_users_level(self, engine: Any, source: str) -> bool:
        """A v3 message must come at its user's security level. pysnmp refuses a lower
        one for informs (usmStatsUnsupportedSecLevels) but takes a v3 *trap* at any
        level the sender names: without this, anyone who knows an authPriv user's name
        and the sender's engine ID could send traps with no key at all."""
        context = engine.observer.get_execution_context("rfc3412.receiveMessage:request")
        if int(context.get("securityModel", 0)) != USM_MODEL:
            return True
        name = str(context.get("securityName", ""))
        wanted = self._levels.get(name, AUTH_PRIV)
        got = int(context.get("securityLevel", 0))
        if got >= wanted:
            return True
        self.stats.below_level += 1
        log.warning("trap_below_security_level", source=source, user=name[:64],
                    level=got, wanted=wanted)
        return False

    def _on_notification(self, engine: Any, state_reference: Any, context_engine_id: Any,
                         context_name: Any, var_binds: Any, cb_ctx: Any) -> None:
        received = time.time()
        _, address = engine.message_dispatcher.get_transport_info(state_reference)
        source = str(address[0])
        if not self._at_users_level(engine, source):
            return
        binds = [(str(oid), value) for oid, value in var_binds]
        trap_oid = next((str(v) for o, v in binds if o == SNMP_TRAP_OID), "0.0")
        trap_name = name_of(trap_oid)
        self.stats.received += 1
        self.stats.by_name[trap_name or "other"] += 1
        device = self.by_address.get(source)
        if device is None:
            # counted and logged, not published: an address no device has would become
            # a device of its own in the engine, shown down and alerted on
            self.stats.unknown_source += 1
            log.warning("trap_from_unknown_source", source=source, trap_oid=trap_oid,
                        trap_name=trap_name)
            return
        municipality = self.config.municipality_of(device)
        varbinds = [Varbind(o, type(v).__name__[:32], bounded(_text(v)), name_of(o))
                    for o, v in binds if o not in (SNMP_TRAP_OID, SYS_UPTIME)]
        task = asyncio.get_running_loop().create_task(self.emitter.trap(
            municipality, device, received, trap_oid=trap_oid, trap_name=trap_name,
            agent_addr=source, varbinds=varbinds))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _text(value: Any) -> str:
    if hasattr(value, "asOctets") and type(value).__name__ == "OctetString":
        return octets_text(bytes(value.asOctets()))
    try:
        return str(int(value))
    except (TypeError, ValueError):
        return str(value.prettyPrint() if hasattr(value, "prettyPrint") else value)
