"""The config's field types, and the broker block: what every component needs.

Kept apart from :mod:`monitor.config` (the estate, rules, notifications, SLA) so that
the host agent on ~3,500 PCs, and any collector, imports the wire contract and this
module only: none of the engine's features, nor Jinja2 (tests/unit/test_imports.py).
"""

from __future__ import annotations

import ipaddress
import re
import typing
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Annotated, Final, Literal

from monitor.secrets import SecretRef
from monitor.yamlmodel import Check

__all__ = [
    "DEVICE_CLASSES",
    "Address",
    "Broker",
    "DeviceClass",
    "Duration",
    "NonNegativeInt",
    "Port",
    "Positive",
    "PositiveInt",
    "Slug",
    "address_problem",
    "parse_duration",
    "slug_problem",
]

_DURATION: Final = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?$")
_SLUG_RE: Final = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_HOSTNAME_RE: Final = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)


def slug_problem(value: str) -> str | None:
    if _SLUG_RE.match(value):
        return None
    return f"{value!r} is not a slug: lower-case letters, digits and '-', at most 63"


def address_problem(value: str) -> str | None:
    try:
        ipaddress.ip_address(value)
        return None
    except ValueError:
        pass
    if _HOSTNAME_RE.match(value) and not re.fullmatch(r"[0-9.]+", value):
        return None
    return f"{value!r} is neither an IP address nor a host name"


def _port(value: int) -> str | None:
    return None if 0 < value < 65536 else f"{value} is not a port number (1-65535)"


def _positive(value: float) -> str | None:
    return None if value > 0 else f"{value} must be greater than 0"


def _non_negative(value: float) -> str | None:
    return None if value >= 0 else f"{value} must not be negative"


Slug = Annotated[str, Check(slug_problem)]
Address = Annotated[str, Check(address_problem)]
Port = Annotated[int, Check(_port)]
Positive = Annotated[float, Check(_positive)]
PositiveInt = Annotated[int, Check(_positive)]
NonNegativeInt = Annotated[int, Check(_non_negative)]


# What logs in to a location's broker under an identity of its own (the agents'
# identities are their devices', in the agent's own settings).
BrokerComponent = Literal["engine", "snmp", "traps", "checks"]


@dataclass(frozen=True, slots=True)
class BrokerLogin:
    """The identity one component logs in to its location's broker with."""

    component: BrokerComponent
    username: str
    password: SecretRef


@dataclass(frozen=True, slots=True)
class Broker:
    """The MQTT broker of one location. ``username``/``password`` are the default
    login; ``logins`` give a component an identity of its own (what
    ``driftsvakt broker-auth`` generates the ACL for)."""

    location: Slug
    host: Address = "127.0.0.1"
    port: Port = 1883
    username: str | None = None
    password: SecretRef | None = None
    tls_ca: str | None = None
    keepalive: PositiveInt = 30
    logins: list[BrokerLogin] = field(default_factory=list)

    def login_for(self, component: str) -> Broker:
        """This broker as ``component`` logs in to it: its own login if it has one."""
        for login in self.logins:
            if login.component == component:
                return replace(self, username=login.username, password=login.password)
        return self


def parse_duration(text: str) -> float:
    """``90s``, ``5m``, ``1h30m``, ``7d`` → seconds. Raises ValueError."""
    found = _DURATION.match(text.strip())
    if not text.strip() or found is None or not any(found.groups()):
        raise ValueError(f"{text!r} is not a duration (write e.g. 30s, 5m, 1h30m, 7d)")
    d, h, m, s = found.groups()
    return int(d or 0) * 86400 + int(h or 0) * 3600 + int(m or 0) * 60 + float(s or 0)


# shared by every YAML file that names durations
Duration = Annotated[str, Check.parses(parse_duration)]


# Year 3000: past any real event time, and far enough inside what datetime holds that
# converting to any time zone cannot overflow.
_LATEST: Final = 32_503_680_000.0


def at_time(ts: float) -> datetime:
    """An epoch time as an aware UTC datetime, clamped to what datetime can hold: a
    poisoned value in the store (1e12, -1e12) must not fail a scrape or a page."""
    return datetime.fromtimestamp(min(max(ts, 0.0), _LATEST), UTC)


# What a device is; rules select by it, the console names it (monitor.web.pages).
DeviceClass = Literal["server", "pc", "switch", "router", "firewall", "ap", "ups", "pdu",
                      "printer"]
DEVICE_CLASSES: Final[tuple[str, ...]] = typing.get_args(DeviceClass)
