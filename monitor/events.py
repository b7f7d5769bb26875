"""The wire contract between collectors and engines: MQTT topics and versioned payloads.

Topics (ARCHITECTURE.md):

    driftsvakt/v1/{location}/{municipality}/{device}/{stream}/{src}
    driftsvakt/v1/_sys/{location}/{component}/{instance}     retained component status
    driftsvakt/v1/_ack/{location}/{src}                      retained end-to-end ack

Streams: ``metrics``, ``state``, ``trap``, ``check``, ``heartbeat``, and ``register``
(a host agent enrolled with its municipality's token announcing itself: its host
name, system, addresses and directory place; monitor.registration), and
``neighbours`` (a switch's LLDP and CDP neighbour tables, read by the SNMP poller;
the engine's map of the links, monitor.links).

The last level of a device topic names the source that publishes it, so the broker's
ACL (one identity per source, ``driftsvakt broker-auth``) decides who may speak for a
source, and the engine takes an event only where the payload's ``src`` is the
topic's. The five-level form of ARCHITECTURE.md (no ``{src}``) still parses; the
engine refuses it unless ``engine.bind_src`` is off.

Every payload is a JSON object with ``v`` (schema version), ``ts`` (event time, Unix
seconds), ``src`` (collector instance), ``seq`` (per-source sequence number),
``device``, and the body of its stream. ``floor`` is the lowest ``seq`` the source
still holds in its outbox: anything below it was acknowledged or dropped at the
source, so an engine that never saw it does not wait for it.

Decoding is strict (unknown keys, wrong types, non-finite numbers, oversize payloads
and unknown versions are rejected) and never raises anything but :class:`Rejected`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Annotated, Final, Literal

import msgspec

__all__ = [
    "DEVICE_LABELS",
    "MAX_NEIGHBOURS",
    "MAX_PAYLOAD_BYTES",
    "SCHEMA_VERSION",
    "STREAMS",
    "Ack",
    "CheckEvent",
    "ComponentStatus",
    "DeviceTopic",
    "Event",
    "HeartbeatEvent",
    "MetricsEvent",
    "Neighbour",
    "NeighboursEvent",
    "RegisterEvent",
    "Rejected",
    "Sample",
    "StateEvent",
    "TrapEvent",
    "Varbind",
    "ack_topic",
    "decode_ack",
    "decode_event",
    "device_topic",
    "encode",
    "parse_device_topic",
    "sys_topic",
]

SCHEMA_VERSION: Final = 1
PREFIX: Final = "driftsvakt/v1"
MAX_PAYLOAD_BYTES: Final = 256 * 1024
MAX_SAMPLES: Final = 20_000

SLUG_PATTERN: Final = "^[a-z0-9][a-z0-9-]{0,62}$"
_SLUG = re.compile(SLUG_PATTERN)

Slug = Annotated[str, msgspec.Meta(pattern=SLUG_PATTERN)]
# A collector instance id: a slug, optionally with dots (host names make good ids).
SRC_PATTERN: Final = "^[a-z0-9][a-z0-9.-]{0,127}$"
_SRC = re.compile(SRC_PATTERN)
SrcId = Annotated[str, msgspec.Meta(pattern=SRC_PATTERN)]
Seq = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]
NAME_PATTERN: Final = "^[a-zA-Z_][a-zA-Z0-9_]{0,127}$"
Name = Annotated[str, msgspec.Meta(pattern=NAME_PATTERN)]
# Sample names and label keys are checked by _NameCheck instead of a msgspec pattern:
# they come from a small set, and a regex per occurrence was 60 % of decode time
# (bench/bench_decode.py).
LooseName = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
ShortText = Annotated[str, msgspec.Meta(max_length=1024)]
# Labels the engine puts on every device series; a sample may not bring its own (a
# duplicate label makes Prometheus refuse the whole scrape), nor a "__" name.
DEVICE_LABELS: Final = ("location", "municipality", "site", "device", "class")
Stream = Literal["metrics", "state", "trap", "check", "heartbeat", "register", "neighbours"]
STREAMS: Final[tuple[str, ...]] = ("metrics", "state", "trap", "check", "heartbeat",
                                   "register", "neighbours")
# the most neighbours one table read may carry: a chassis with a phone on every port
# of a stack has a few hundred; the rest are counted by the poller, not sent
MAX_NEIGHBOURS: Final = 1000

RejectReason = Literal[
    "oversize",
    "malformed_json",
    "invalid",
    "unsupported_version",
    "bad_topic",
    "topic_mismatch",
    "src_mismatch",  # the payload's src is not the source its topic names
    "unbound_src",  # the topic names no source (engine.bind_src)
    "future",  # event time further ahead of the engine's clock than engine.max_clock_skew
    "late",  # event time older than engine.max_event_age: no outbox keeps it that long
    "seq_jump",  # seq further ahead of its source's progress than engine.max_seq_jump
    "enrolment",  # a registration without a valid proof, or an event of a refused agent
    "topology",  # neighbour tables of a device that is not the estate's network gear
]


class Rejected(Exception):
    """A payload or topic that does not satisfy the contract.

    ``reason`` is one of a small fixed set (it becomes a metric label);
    ``detail`` says precisely what was wrong, for logs and the dead-letter store.
    """

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: RejectReason = reason
        self.detail = detail


class _NameCheck:
    """Validates metric names and label keys once each; remembers a bounded set."""

    def __init__(self, limit: int = 50_000) -> None:
        self.known: set[str] = set()
        self._limit = limit
        self._re = re.compile(NAME_PATTERN)

    def valid(self, name: str) -> bool:
        if name in self.known:
            return True
        if not self._re.match(name):
            return False
        if len(self.known) >= self._limit:
            self.known.clear()
        self.known.add(name)
        return True


_names: Final = _NameCheck()


def _finite(value: float, what: str) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {value!r}")


class _Base(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True,
            omit_defaults=True):
    v: Literal[1]
    ts: float
    src: SrcId
    seq: Seq
    device: Slug
    floor: Seq | None = None

    def __post_init__(self) -> None:
        _finite(self.ts, "ts")
        if self.ts < 0:
            raise ValueError("ts must not be negative")
        if self.floor is not None and self.floor > self.seq:
            raise ValueError("floor must not exceed seq")


class Sample(msgspec.Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True,
             gc=False):
    """One value of one series. ``kind`` tells the engine how to derive rates.

    Names and finiteness are checked by :class:`MetricsEvent` for the whole batch
    (the JSON decoder already refuses NaN, Infinity and out-of-range numbers).
    """

    name: LooseName
    # an integer stays one on the wire and in the engine: a Counter64 above 2**53 is
    # exact (a float keeps 53 bits)
    value: int | float
    labels: dict[LooseName, ShortText] = {}
    kind: Literal["gauge", "counter32", "counter64", "counter"] = "gauge"


class MetricsEvent(_Base, frozen=True, kw_only=True):
    """A batch of samples from one poll of one device."""

    samples: Annotated[list[Sample], msgspec.Meta(max_length=MAX_SAMPLES)]
    interval: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.interval is not None:
            _finite(self.interval, "interval")
            if self.interval <= 0:
                raise ValueError("interval must be positive")
        isfinite = math.isfinite
        valid, known = _names.valid, _names.known
        for i, sample in enumerate(self.samples):
            if sample.name not in known and not valid(sample.name):
                raise ValueError(f"$.samples[{i}].name {sample.name[:60]!r} does not match "
                                 f"{NAME_PATTERN}")
            if not isfinite(sample.value):  # only reachable when built in Python
                raise ValueError(f"$.samples[{i}].value must be a finite number")
            for key in sample.labels:
                if key not in known and not valid(key):
                    raise ValueError(f"$.samples[{i}].labels key {key[:60]!r} does not match "
                                     f"{NAME_PATTERN}")
                if key in DEVICE_LABELS or key.startswith("__"):
                    raise ValueError(f"$.samples[{i}].labels key {key!r} is reserved: the "
                                     "engine adds it")


DeviceStateName = Literal[
    "up", "down", "unreachable", "auth_error", "unknown", "online", "offline", "stopping"
]


class StateEvent(_Base, frozen=True, kw_only=True):
    """What a collector concluded about a device: answering, silent, refusing us."""

    state: DeviceStateName
    reason: ShortText | None = None


class Varbind(msgspec.Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    oid: Annotated[str, msgspec.Meta(pattern=r"^[0-9]+(\.[0-9]+)*$", max_length=512)]
    type: Annotated[str, msgspec.Meta(max_length=32)]
    value: ShortText
    name: ShortText | None = None


class TrapEvent(_Base, frozen=True, kw_only=True):
    trap_oid: Annotated[str, msgspec.Meta(pattern=r"^[0-9]+(\.[0-9]+)*$", max_length=512)]
    trap_name: ShortText | None = None
    agent_addr: ShortText
    varbinds: Annotated[list[Varbind], msgspec.Meta(max_length=1000)] = []


CheckKind = Literal["icmp", "tcp", "http", "tls", "dns"]


class CheckEvent(_Base, frozen=True, kw_only=True):
    check: Slug
    kind: CheckKind
    ok: bool
    latency: float | None = None
    reason: ShortText | None = None
    values: dict[Name, float] = {}

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.latency is not None:
            _finite(self.latency, "latency")
        for key, value in self.values.items():
            _finite(value, f"values.{key}")


class HeartbeatEvent(_Base, frozen=True, kw_only=True):
    interval: float

    def __post_init__(self) -> None:
        super().__post_init__()
        _finite(self.interval, "interval")
        if self.interval <= 0:
            raise ValueError("interval must be positive")


class RegisterEvent(_Base, frozen=True, kw_only=True):
    """A host agent enrolled with a municipality's token announcing itself; the
    engine places it by the estate's rules (monitor.registration)."""

    hostname: Annotated[str, msgspec.Meta(min_length=1, max_length=253)]
    os: ShortText = ""
    addresses: Annotated[list[Annotated[str, msgspec.Meta(max_length=64)]],
                         msgspec.Meta(max_length=64)] = []
    machine_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    device_class: Literal["server", "pc"] = msgspec.field(name="class", default="pc")
    ad_site: Annotated[str, msgspec.Meta(max_length=256)] | None = None
    dn: Annotated[str, msgspec.Meta(max_length=1024)] | None = None  # its AD object's
    proof: Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]


PortName = Annotated[str, msgspec.Meta(max_length=256)]


class Neighbour(msgspec.Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    """Who is at the other end of one of the device's ports, as its LLDP or CDP table
    says (collectors/snmp/neighbours)."""

    protocol: Literal["lldp", "cdp"]
    local_port: PortName  # our port
    name: Annotated[str, msgspec.Meta(max_length=256)]  # what they call themselves
    port: PortName  # their port
    address: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    platform: ShortText = ""


class NeighboursEvent(_Base, frozen=True, kw_only=True):
    """A switch's or router's neighbour tables, read every ``topology.interval``: the
    engine's map of the links (monitor.links) is made of them."""

    neighbours: Annotated[list[Neighbour], msgspec.Meta(max_length=MAX_NEIGHBOURS)]
    truncated: Annotated[int, msgspec.Meta(ge=0)] = 0  # rows beyond MAX_NEIGHBOURS


Event = (MetricsEvent | StateEvent | TrapEvent | CheckEvent | HeartbeatEvent | RegisterEvent
         | NeighboursEvent)

_EVENT_TYPES: Final[dict[str, type[Event]]] = {
    "metrics": MetricsEvent,
    "state": StateEvent,
    "trap": TrapEvent,
    "check": CheckEvent,
    "heartbeat": HeartbeatEvent,
    "register": RegisterEvent,
    "neighbours": NeighboursEvent,
}
_DECODERS: Final = {stream: msgspec.json.Decoder(t) for stream, t in _EVENT_TYPES.items()}
_ENCODER: Final = msgspec.json.Encoder()


class _VersionOnly(msgspec.Struct):
    v: object = None


_VERSION_DECODER: Final = msgspec.json.Decoder(_VersionOnly)


@dataclass(frozen=True, slots=True)
class DeviceTopic:
    location: str
    municipality: str
    device: str
    stream: str
    src: str | None = None  # the publishing source, where the topic names it


def _check_slug(value: str, what: str) -> str:
    if not _SLUG.match(value):
        raise Rejected("bad_topic", f"{what} {value!r} is not a slug [a-z0-9-]+")
    return value


def _check_src(value: str) -> str:
    if not _SRC.match(value):
        raise Rejected("bad_topic", f"src {value[:130]!r} is not a source id "
                                    "[a-z0-9][a-z0-9.-]*")
    return value


def device_topic(location: str, municipality: str, device: str, stream: str,
                 src: str) -> str:
    """Build a device event topic, refusing anything that would not parse back."""
    for value, what in ((location, "location"), (municipality, "municipality"),
                        (device, "device")):
        _check_slug(value, what)
    _check_src(src)
    if stream not in _EVENT_TYPES:
        raise Rejected("bad_topic", f"unknown stream {stream!r}")
    return f"{PREFIX}/{location}/{municipality}/{device}/{stream}/{src}"


def parse_device_topic(topic: str) -> DeviceTopic:
    parts = topic.split("/")
    if len(parts) not in (6, 7) or f"{parts[0]}/{parts[1]}" != PREFIX:
        raise Rejected("bad_topic", f"not a device topic: {topic[:200]!r}")
    location, municipality, device, stream = parts[2:6]
    _check_slug(location, "location")
    _check_slug(municipality, "municipality")
    _check_slug(device, "device")
    if stream not in _EVENT_TYPES:
        raise Rejected("bad_topic", f"unknown stream {stream[:40]!r}")
    src = _check_src(parts[6]) if len(parts) == 7 else None
    return DeviceTopic(location, municipality, device, stream, src)


def sys_topic(location: str, component: str, instance: str) -> str:
    return f"{PREFIX}/_sys/{location}/{component}/{instance}"


def ack_topic(location: str, src: str) -> str:
    return f"{PREFIX}/_ack/{location}/{src}"


def encode(event: Event | Ack | ComponentStatus) -> bytes:
    return _ENCODER.encode(event)


def decode_event(stream: str, payload: bytes) -> Event:
    """Decode and validate one payload of ``stream``; raise only :class:`Rejected`."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise Rejected("oversize", f"{len(payload)} bytes > {MAX_PAYLOAD_BYTES}")
    decoder = _DECODERS.get(stream)
    if decoder is None:
        raise Rejected("bad_topic", f"unknown stream {stream[:40]!r}")
    try:
        return decoder.decode(payload)
    except msgspec.ValidationError as exc:
        _reject_unknown_version(payload)
        raise Rejected("invalid", str(exc)) from None
    except msgspec.DecodeError as exc:
        raise Rejected("malformed_json", str(exc)) from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise Rejected("invalid", f"{type(exc).__name__}: {exc}") from None


def _reject_unknown_version(payload: bytes) -> None:
    try:
        version = _VERSION_DECODER.decode(payload).v
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError, RecursionError):
        return
    if version is not None and version != SCHEMA_VERSION:
        raise Rejected("unsupported_version", f"schema version {version!r} is not supported")


class Ack(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """An engine's promise: everything from ``src`` up to ``seq`` is durably processed."""

    v: Literal[1] = 1
    seq: Annotated[int, msgspec.Meta(ge=0)]
    ts: float


_ACK_DECODER: Final = msgspec.json.Decoder(Ack)


def decode_ack(payload: bytes) -> Ack:
    try:
        return _ACK_DECODER.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
        raise Rejected("invalid", f"ack: {exc}") from None


class ComponentStatus(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Retained status of a collector or engine, republished every ``interval`` seconds;
    the last will says ``offline``."""

    v: Literal[1] = 1
    status: Literal["online", "offline", "stopping"]
    ts: float
    component: str
    instance: str
    version: str = ""
    # a collector's outbox: rows waiting for acknowledgement, and dropped since start
    outbox_rows: int | None = None
    outbox_dropped: int | None = None
    # how often the sender republishes this status: silence for three of them is offline
    interval: Annotated[float, msgspec.Meta(gt=0, le=86400)] | None = None
    # what a collector counted since start that it could not pass on as events: traps
    # the kernel dropped from a full socket, datagrams that were not SNMP, …
    counters: Annotated[dict[Annotated[str, msgspec.Meta(pattern=NAME_PATTERN)],
                             Annotated[int, msgspec.Meta(ge=0)]],
                        msgspec.Meta(max_length=32)] = {}
