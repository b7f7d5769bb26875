"""The estate and the services' settings, as one YAML file or a directory of them.

``load_config`` returns a frozen :class:`Config` or raises :class:`Problems` listing
every error (file, line, key path) found in one pass: shape and type errors first,
then references, duplicates and parent cycles across all files.

Secrets are never inline: a secret field takes ``{env: NAME}`` or ``{file: PATH}``
and is resolved only where it is used, by :meth:`SecretRef.resolve`.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import typing
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Final, Literal
from zoneinfo import ZoneInfoNotFoundError

import yaml

from monitor.events import CheckKind
from monitor.fields import (
    Address,
    Broker,
    BrokerComponent,
    DeviceClass,
    NonNegativeInt,
    Port,
    Positive,
    PositiveInt,
    Slug,
)
from monitor.fields import address_problem as _address
from monitor.notify.settings import NotificationSettings, check_notifications
from monitor.officehours import OSLO, Schedule
from monitor.secrets import SecretRef
from monitor.sla.settings import ServiceSpec, service_problems
from monitor.yamlmodel import (
    Check,
    Document,
    FieldError,
    Problem,
    Problems,
    convert,
    is_missing,
)
from monitor.yamlmodel import load_documents as _load_documents

__all__ = [
    "ApiUser",
    "Broker",
    "CheckSpec",
    "Config",
    "Device",
    "EngineSettings",
    "Location",
    "Municipality",
    "OfficeHours",
    "OutboxSettings",
    "SecretRef",
    "Site",
    "SnmpProfile",
    "load_config",
]


DEFAULT_OFFICE_HOURS: Final = Schedule.from_text({"mon-fri": ["07:00-16:00"]})
DEFAULT_GRACE: Final = 1800.0



@dataclass(frozen=True, slots=True)
class OfficeHours:
    """When PCs are expected on, for a municipality or a site (Europe/Oslo by default)."""

    id: Slug
    weekly: dict[str, list[str]]
    timezone: str = OSLO
    public_holidays: bool = True
    closed: list[str] = field(default_factory=list)
    grace: Positive = 1800.0

    def __post_init__(self) -> None:
        self.schedule()  # raises ValueError with the reason, reported at this entry

    def schedule(self) -> Schedule:
        try:
            days = frozenset(date.fromisoformat(d) for d in self.closed)
            return Schedule.from_text(self.weekly, timezone=self.timezone,
                                      public_holidays=self.public_holidays, closed_days=days)
        except ZoneInfoNotFoundError:
            raise ValueError(f"unknown time zone {self.timezone!r}") from None
        except ValueError as exc:
            raise ValueError(f"office hours: {exc}") from None


@dataclass(frozen=True, slots=True)
class Location:
    id: Slug
    name: str


@dataclass(frozen=True, slots=True)
class Municipality:
    id: Slug
    name: str
    org_number: str | None = None
    office_hours: Slug | None = None


@dataclass(frozen=True, slots=True)
class Site:
    id: Slug
    name: str
    location: Slug
    municipality: Slug
    kind: Literal[
        "town-hall", "school", "care-home", "health-centre", "depot", "library",
        "kindergarten", "datacentre", "office", "other",
    ] = "other"
    address: str | None = None
    office_hours: Slug | None = None


SnmpAuth = Literal["SHA", "SHA-224", "SHA-256", "SHA-384", "SHA-512", "MD5"]
SnmpPriv = Literal["AES", "AES-192", "AES-256", "DES"]


@dataclass(frozen=True, slots=True)
class SnmpProfile:
    """SNMP credentials, referenced by devices. MD5 and DES need ``legacy: true``."""

    id: Slug
    version: Literal["1", "2c", "3"]
    community: SecretRef | None = None
    user: str | None = None
    auth_protocol: SnmpAuth | None = None
    auth_key: SecretRef | None = None
    priv_protocol: SnmpPriv | None = None
    priv_key: SecretRef | None = None
    legacy: bool = False
    port: Port = 161
    timeout: Positive = 2.0
    retries: NonNegativeInt = 1

    def read_secrets(self) -> dict[str, str]:
        """The community, or the v3 keys, read now (KeyError, OSError: one is not
        there)."""
        return {key: ref.resolve() for key in ("community", "auth_key", "priv_key")
                if (ref := getattr(self, key)) is not None}

    def __post_init__(self) -> None:
        if self.version in ("1", "2c"):
            if self.community is None:
                raise ValueError(f"SNMP v{self.version} needs 'community'")
            if self.user or self.auth_key or self.priv_key:
                raise ValueError(f"SNMP v{self.version} takes no user, auth_key or priv_key")
            return
        if not self.user:
            raise ValueError("SNMP v3 needs 'user'")
        if (self.auth_protocol is None) != (self.auth_key is None):
            raise ValueError("SNMP v3: 'auth_protocol' and 'auth_key' go together")
        if (self.priv_protocol is None) != (self.priv_key is None):
            raise ValueError("SNMP v3: 'priv_protocol' and 'priv_key' go together")
        if self.priv_protocol and not self.auth_protocol:
            raise ValueError("SNMP v3: privacy needs authentication (authPriv)")
        if not self.legacy and (self.auth_protocol == "MD5" or self.priv_protocol == "DES"):
            key = "auth_protocol" if self.auth_protocol == "MD5" else "priv_protocol"
            raise FieldError(key, "MD5 and DES are broken; set 'legacy: true' to use them "
                                  "anyway")


@dataclass(frozen=True, slots=True)
class Device:
    id: Slug
    name: str
    device_class: DeviceClass = field(metadata={"key": "class"})
    site: Slug
    address: Address | None = None
    parent: Slug | None = None
    snmp_profile: Slug | None = None
    tags: list[Slug] = field(default_factory=list)
    interval: Positive | None = None
    # interfaces (ifName) whose going down always matters — its uplinks, say, as
    # `driftsvakt topology` names them — even if not seen up since the engine started
    watch_interfaces: list[str] = field(default_factory=list)
    # redundant uplinks (a stacked pair, two routers): the device is cut off from the
    # centre, and shown unreachable rather than down, only when fewer than
    # ``parents_needed`` of them still reach it; ``parent`` is the one-uplink case
    parents: list[Slug] = field(default_factory=list)
    parents_needed: PositiveInt = 1

    def __post_init__(self) -> None:
        if self.parent is not None and self.parents:
            raise FieldError("parents", "give either parent or parents, not both")
        if self.parents_needed > max(1, len(self.parents)):
            raise FieldError("parents_needed", f"{self.parents_needed} of "
                                               f"{len(self.parents) or 1} parent(s)")

    @property
    def uplinks(self) -> tuple[str, ...]:
        """Every parent: ``parents``, or ``parent`` alone."""
        return tuple(self.parents) if self.parents else (
            (self.parent,) if self.parent is not None else ())




@dataclass(frozen=True, slots=True)
class CheckSpec:
    """A service check run from the centre; its results are events of ``device``.

    ``target``: a host or address (icmp), ``host:port`` (tcp, tls), a URL (http), or a
    name to resolve (dns).
    """

    id: Slug
    kind: CheckKind
    device: Slug
    target: str
    interval: Positive = 60.0
    timeout: Positive = 5.0
    retries: NonNegativeInt = 1
    expect_status: list[int] = field(default_factory=lambda: [200])
    body_match: str | None = None
    follow_redirects: bool = True
    ca_file: str | None = None
    server_name: str | None = None
    expect: list[str] = field(default_factory=list)
    location: Slug | None = None

    def __post_init__(self) -> None:
        if self.kind in ("tcp", "tls"):
            host, _, port = self.target.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise FieldError("target", f"a {self.kind} check's target is host:port, "
                                           f"not {self.target!r}")
        elif self.kind == "http":
            if not re.match(r"^https?://[^/\s]+", self.target):
                raise FieldError("target", f"an http check's target is an http(s) URL, "
                                           f"not {self.target!r}")
        elif self.kind in ("icmp", "dns") and _address(self.target.strip("[]")) is not None:
            raise FieldError("target",
                             f"{self.target!r} is neither an IP address nor a host name")
        if self.body_match is not None:
            try:
                re.compile(self.body_match)
            except re.error as exc:
                raise FieldError("body_match",
                                 f"not a regular expression: {exc}") from None
        if self.timeout > self.interval:
            raise FieldError("timeout", "timeout must not exceed interval")

    def host_port(self) -> tuple[str, int]:
        host, _, port = self.target.rpartition(":")
        return host.strip("[]"), int(port)


@dataclass(frozen=True, slots=True)
class TrapUserSettings:
    """A USM user allowed to send v3 traps and informs to the trap receiver."""

    user: str
    auth_protocol: SnmpAuth | None = None
    auth_key: SecretRef | None = None
    priv_protocol: SnmpPriv | None = None
    priv_key: SecretRef | None = None
    engine_id: str | None = None  # hex, the sender's; needed for v3 traps, not informs

    def __post_init__(self) -> None:
        if (self.auth_protocol is None) != (self.auth_key is None):
            raise FieldError("auth_key", "'auth_protocol' and 'auth_key' go together")
        if (self.priv_protocol is None) != (self.priv_key is None):
            raise FieldError("priv_key", "'priv_protocol' and 'priv_key' go together")
        if self.engine_id is not None:
            try:
                bytes.fromhex(self.engine_id)
            except ValueError:
                raise FieldError("engine_id", f"{self.engine_id!r} is not hex") from None


@dataclass(frozen=True, slots=True)
class TrapSettings:
    host: str = "0.0.0.0"
    port: Port = 162
    communities: list[SecretRef] = field(default_factory=list)
    users: list[TrapUserSettings] = field(default_factory=list)


def _viewers_name_their_municipality(role: str, municipality: str | None) -> None:
    if role == "viewer" and municipality is None:
        raise FieldError("municipality", "a viewers' group sees one municipality: name it")


@dataclass(frozen=True, slots=True)
class LdapGroup:
    """Members of the group ``dn`` get ``role`` (a viewer also the municipality)."""

    dn: str
    role: Literal["admin", "operator", "viewer"]
    municipality: Slug | None = None

    def __post_init__(self) -> None:
        _viewers_name_their_municipality(self.role, self.municipality)


@dataclass(frozen=True, slots=True)
class LdapComputers:
    """The computer objects under ``base`` (a municipality's OU) as devices of ``site``
    (``driftsvakt import ldap``): a PC, or a server where the operating system says
    so; a disabled or deleted object leaves the estate at the next import."""

    base: str
    site: Slug
    # AD's computers, disabled ones left out (userAccountControl's ACCOUNTDISABLE bit)
    filter: str = ("(&(objectClass=computer)"
                   "(!(userAccountControl:1.2.840.113556.1.4.803:=2)))")
    name_attribute: str = "cn"
    address_attribute: str = "dNSHostName"
    os_attribute: str = "operatingSystem"
    server_when: str = "Server"  # in the operating system's name: a server, else a PC
    parent: Slug | None = None


@dataclass(frozen=True, slots=True)
class LdapSettings:
    """Sign-in at /login against the municipalities' directory (Active Directory or
    any LDAP): the service account finds the user, the user's own bind checks the
    password, group membership gives role and municipality."""

    url: str  # ldap://host:389 or ldaps://host:636
    user_base: str
    groups: list[LdapGroup]
    starttls: bool = False
    ca_file: str | None = None
    bind_dn: str | None = None
    bind_password: SecretRef | None = None
    # {user} is the name typed, escaped; AD's: (&(objectClass=user)(sAMAccountName={user})
    # (!(userAccountControl:1.2.840.113556.1.4.803:=2))) leaves out disabled accounts
    user_filter: str = "(&(objectClass=person)(uid={user}))"
    group_base: str | None = None  # the user_base when not given
    group_filter: str = "(member={dn})"
    timeout: Positive = 5.0
    computers: list[LdapComputers] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.url.startswith(("ldap://", "ldaps://")):
            raise FieldError("url", "ldap://host:port or ldaps://host:port")
        if "{user}" not in self.user_filter:
            raise FieldError("user_filter", "must contain {user}")


@dataclass(frozen=True, slots=True)
class OidcGroup:
    """Those whose ``claim`` (see OidcSettings) holds ``value`` get ``role`` (a viewer
    also the municipality). In Entra ID a group's value is its object id; an app
    role's is the role's value."""

    value: str
    role: Literal["admin", "operator", "viewer"]
    municipality: Slug | None = None

    def __post_init__(self) -> None:
        _viewers_name_their_municipality(self.role, self.municipality)


@dataclass(frozen=True, slots=True)
class OidcSettings:
    """Sign-in at /login/oidc with OpenID Connect (Entra ID, or any provider): the
    authorization code flow with PKCE; the ID token's ``claim`` (groups, or app roles)
    gives role and municipality, as the directory's groups do."""

    issuer: str  # Entra ID: https://login.microsoftonline.com/{tenant}/v2.0
    client_id: str
    # the address the browser comes back to; register it with the provider
    redirect_url: str  # https://driftsvakt.example/login/oidc/callback
    groups: list[OidcGroup]
    client_secret: SecretRef | None = None  # none: a public client (PKCE only)
    claim: str = "groups"  # Entra ID app roles: "roles"
    name_claim: str = "preferred_username"
    scopes: list[str] = field(default_factory=lambda: ["openid", "profile"])
    timeout: Positive = 5.0

    def __post_init__(self) -> None:
        for key in ("issuer", "redirect_url"):
            url = urllib.parse.urlsplit(getattr(self, key))
            try:
                loopback = ipaddress.ip_address(url.hostname or "").is_loopback
            except ValueError:
                loopback = url.hostname == "localhost"
            if url.scheme != "https" and not (url.scheme == "http" and loopback):
                raise FieldError(key, "an https:// address (http:// only on loopback)")
        if not self.redirect_url.endswith("/login/oidc/callback"):
            raise FieldError("redirect_url", "the engine's /login/oidc/callback address")
        if "openid" not in self.scopes:
            raise FieldError("scopes", "must include openid")


@dataclass(frozen=True, slots=True)
class NetboxSettings:
    """Devices from NetBox (``driftsvakt import netbox``): those ``filter`` finds (query
    parameters of /api/dcim/devices/), each role mapped to a class in ``roles`` (a
    device of a role not mapped is left out, and named), each NetBox site to the
    estate's site of the same slug unless ``sites`` maps it."""

    url: str
    token: SecretRef
    roles: dict[str, DeviceClass]
    filter: dict[str, str] = field(default_factory=lambda: {"status": "active"})
    sites: dict[str, Slug] = field(default_factory=dict)
    snmp_profiles: dict[str, Slug] = field(default_factory=dict)  # role -> profile
    timeout: Positive = 10.0
    ca_file: str | None = None

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise FieldError("url", "http(s)://host[:port] of NetBox")


@dataclass(frozen=True, slots=True)
class PlacementRule:
    """Where an agent that registers goes: a rule matches on every condition it
    names, and sets the fields it names that an earlier matching rule has not."""

    subnet: str | None = None  # an IP network holding one of the agent's addresses
    name: str | None = None  # a regular expression on the short host name, lower case
    ou: str | None = None  # the agent's AD object lies under this DN (any case)
    ad_site: str | None = None  # the AD site the agent reports
    municipality: Slug | None = None
    site: Slug | None = None
    device_class: Literal["server", "pc"] | None = field(default=None,
                                                         metadata={"key": "class"})

    def __post_init__(self) -> None:
        if not (self.subnet or self.name or self.ou or self.ad_site):
            raise ValueError("a rule needs a condition: subnet, name, ou or ad_site")
        if not (self.municipality or self.site or self.device_class):
            raise ValueError("a rule sets municipality, site or class")
        if self.subnet is not None:
            try:
                ipaddress.ip_network(self.subnet)
            except ValueError as exc:
                raise FieldError("subnet", str(exc)) from None
        if self.name is not None:
            try:
                re.compile(self.name)
            except re.error as exc:
                raise FieldError("name", f"not a regular expression: {exc}") from None


@dataclass(frozen=True, slots=True)
class EnrolmentToken:
    """A municipality's enrolment token: an agent installed with it registers into
    that municipality; ``policy`` says whether a fully placed one is accepted at once
    or held for an operator's approval."""

    municipality: Slug
    token: SecretRef
    policy: Literal["accept", "approve"] = "approve"


@dataclass(frozen=True, slots=True)
class EnrolmentSettings:
    tokens: list[EnrolmentToken] = field(default_factory=list)
    placement: list[PlacementRule] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class PollerSettings:
    # directories of the site's own SNMP modules (YAML, as collectors/snmp/modules);
    # relative to the config's directory; a module named as a shipped one replaces it
    modules: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class TopologySettings:
    """The links as the switches' LLDP and CDP tables show them (monitor.links): the
    poller reads the tables of the devices of ``classes`` every ``interval`` seconds;
    the engine walks the links from ``roots`` (else from the tops of the declared
    tree: monitor.linkmap) and gives a device with no declared parent the parents
    the walk finds. A link no longer reported is kept ``forget_after`` seconds: a
    switch that failed takes its links out of its neighbours' tables exactly when
    what hangs off it must be known."""

    discover: bool = True
    interval: Positive = 900.0
    classes: list[DeviceClass] = field(default_factory=lambda: ["switch", "router"])
    roots: list[Slug] = field(default_factory=list)
    forget_after: Positive = 7 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class EngineSettings:
    http_host: Address = "127.0.0.1"
    http_port: Annotated[int, Check(lambda v: None if 0 <= v < 65536 else "not a port")] = 9810
    store: str = "var/engine-{location}.db"
    batch_max: PositiveInt = 2000
    batch_wait: Positive = 0.02
    # rule files (file or directory); default: the rules/ shipped beside the package
    rules: str | None = None
    # a pending ``for:`` survives an engine outage shorter than this (seconds)
    outage_tolerance: Positive = 3600.0
    # What the engine takes on trust from no event (monitor.ingest.Bounds): an event
    # time this far ahead of the engine's clock (a wrong clock, or a forgery that would
    # hide later reports), one older than any outbox keeps, and a seq this far ahead of
    # its source's progress (which would blind the source for good) are rejected.
    max_clock_skew: Positive = 300.0
    max_event_age: Positive = 8 * 24 * 3600.0
    max_seq_jump: PositiveInt = 1_000_000_000
    # an event counts only on its source's own topic (.../{stream}/{src}), which the
    # broker's ACL gives to that source's identity alone; off only while collectors
    # that publish the five-level topic are being replaced
    bind_src: bool = True
    # series one device may create (a 1,000-port chassis has about 15,000)
    max_series_per_device: PositiveInt = 20_000
    # a month's SLA figures close this long after it ends (its report has gone out):
    # observations of it that come later are kept aside as late, not counted
    sla_closed_after: Positive = 3 * 24 * 3600.0
    # where the operators' Grafana is: the console's device pages link to its panels
    grafana_url: str | None = None
    # when set, /metrics answers only this bearer token (Prometheus's
    # authorization.credentials_file): every municipality's series are there
    metrics_token: SecretRef | None = None


@dataclass(frozen=True, slots=True)
class OutboxSettings:
    """Bounds of a collector's on-disk outbox; the oldest rows go first when full."""

    directory: str = "var/outbox"
    max_rows: PositiveInt = 1_000_000
    max_age: Positive = 7 * 24 * 3600.0
    window: PositiveInt = 5000
    ack_timeout: Positive = 5.0
    wait_for: list[Slug] | None = None


@dataclass(frozen=True, slots=True)
class ApiUser:
    """Someone who may use the engine's API, by bearer token. ``viewer`` s see one
    municipality only; ``operator`` s acknowledge and silence; ``admin`` s also reload
    rules and plan maintenance."""

    id: Slug
    role: Literal["admin", "operator", "viewer"]
    # the token itself, by reference; or only its SHA-256 (hex), so that the config
    # holds nothing that works as a credential (`printf %s TOKEN | sha256sum`)
    token: SecretRef | None = None
    token_sha256: str | None = None
    name: str | None = None
    municipality: Slug | None = None
    # a break-glass sign-in with user name and password at /login: the password's
    # Argon2id hash (`driftsvakt hash-password`), never the password
    password_argon2: str | None = None
    # signed in through the directory (monitor.web.directory), for that session only:
    # its credential is the directory's, not in this config
    directory: bool = False

    def __post_init__(self) -> None:
        if self.role == "viewer" and self.municipality is None:
            raise FieldError("municipality", "a viewer sees one municipality: name it")
        if self.token is not None and self.token_sha256 is not None:
            raise FieldError("token", "give the token (a secret reference) or its "
                                      "token_sha256, not both")
        if (self.token is None and self.token_sha256 is None and self.password_argon2 is None
                and not self.directory):
            raise FieldError("token", "give a token, its token_sha256 or a password_argon2")
        if self.password_argon2 is not None and not self.password_argon2.startswith(
                "$argon2id$"):
            raise FieldError("password_argon2", "an Argon2id hash ($argon2id$…), as "
                                                "`driftsvakt hash-password` prints it")
        if self.token_sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}",
                                                                self.token_sha256):
            raise FieldError("token_sha256", "64 lowercase hex digits: the SHA-256 of the "
                                             "token (printf %s TOKEN | sha256sum)")


@dataclass(frozen=True, slots=True)
class _File:
    """The shape of one config file: every key optional, lists merged across files."""

    locations: list[Location] = field(default_factory=list)
    municipalities: list[Municipality] = field(default_factory=list)
    office_hours: list[OfficeHours] = field(default_factory=list)
    sites: list[Site] = field(default_factory=list)
    snmp_profiles: list[SnmpProfile] = field(default_factory=list)
    devices: list[Device] = field(default_factory=list)
    checks: list[CheckSpec] = field(default_factory=list)
    brokers: list[Broker] = field(default_factory=list)
    users: list[ApiUser] = field(default_factory=list)
    services: list[ServiceSpec] = field(default_factory=list)
    engine: EngineSettings | None = None
    outbox: OutboxSettings | None = None
    traps: TrapSettings | None = None
    poller: PollerSettings | None = None
    ldap: LdapSettings | None = None
    oidc: OidcSettings | None = None
    notifications: NotificationSettings | None = None
    enrolment: EnrolmentSettings | None = None
    netbox: NetboxSettings | None = None
    topology: TopologySettings | None = None


@dataclass(frozen=True, slots=True)
class Config:
    locations: dict[str, Location]
    municipalities: dict[str, Municipality]
    sites: dict[str, Site]
    snmp_profiles: dict[str, SnmpProfile]
    devices: dict[str, Device]
    brokers: dict[str, Broker]
    engine: EngineSettings
    outbox: OutboxSettings
    office_hours: dict[str, OfficeHours] = field(default_factory=dict)
    checks: dict[str, CheckSpec] = field(default_factory=dict)
    source: str = ""
    # built once from office_hours at load: a schedule is asked about on every scrape
    schedules: dict[str, Schedule] = field(default_factory=dict)
    traps: TrapSettings = field(default_factory=TrapSettings)
    poller: PollerSettings = field(default_factory=PollerSettings)
    ldap: LdapSettings | None = None
    oidc: OidcSettings | None = None
    users: dict[str, ApiUser] = field(default_factory=dict)
    notifications: NotificationSettings = field(default_factory=NotificationSettings)
    services: dict[str, ServiceSpec] = field(default_factory=dict)
    enrolment: EnrolmentSettings = field(default_factory=EnrolmentSettings)
    netbox: NetboxSettings | None = None
    topology: TopologySettings = field(default_factory=TopologySettings)

    def adopt(self, new: Config) -> list[str]:
        """Put ``new``'s estate in force in this very object, in one step: every part
        of a running engine holds this object, and reads it again at its next use.
        The settings a process reads only at start keep their running value; their
        names are returned when ``new`` changes them (they take effect at restart)."""
        for name in ESTATE_FIELDS:
            object.__setattr__(self, name, getattr(new, name))
        return [name for name in AT_START_FIELDS if getattr(self, name) != getattr(new, name)]

    def module_dirs(self) -> list[Path]:
        """``poller.modules``, relative ones from the config's own directory."""
        source = Path(self.source)
        base = source if source.is_dir() else source.parent
        return [base / d for d in self.poller.modules]

    def summary(self) -> str:
        classes = Counter(d.device_class for d in self.devices.values())
        per_class = ", ".join(f"{n} {c}" for c, n in sorted(classes.items()))
        return (
            f"{len(self.locations)} locations, {len(self.municipalities)} municipalities, "
            f"{len(self.sites)} sites, {len(self.devices)} devices ({per_class}), "
            f"{len(self.checks)} checks, {len(self.services)} services, "
            f"{len(self.snmp_profiles)} SNMP profiles, "
            f"{len(self.brokers)} brokers"
        )

    def broker_for(self, location: str, component: str | None = None) -> Broker:
        """The broker of ``location``, with ``component``'s own login where it has one."""
        broker = self.brokers.get(location) or Broker(location=location)
        return broker.login_for(component) if component else broker

    def office_hours_for(self, device_id: str) -> tuple[Schedule, float]:
        """The office hours (and grace, seconds) that apply to a device: its site's,
        else its municipality's, else Monday to Friday 07:00-16:00 without holidays."""
        site = self.sites[self.devices[device_id].site]
        ref = site.office_hours or self.municipalities[site.municipality].office_hours
        if ref is None:
            return DEFAULT_OFFICE_HOURS, DEFAULT_GRACE
        schedule = self.schedules.get(ref) or self.office_hours[ref].schedule()
        return schedule, self.office_hours[ref].grace

    def municipality_of(self, device_id: str) -> str:
        return self.sites[self.devices[device_id].site].municipality

    def location_of(self, device_id: str) -> str:
        return self.sites[self.devices[device_id].site].location


# What a reload puts in force (Config.adopt), and what only a restart does: the
# listeners, the broker connections, the store, the sign-in providers.
ESTATE_FIELDS: Final = ("municipalities", "sites", "snmp_profiles", "devices",
                        "office_hours", "schedules", "checks", "users", "notifications",
                        "services", "enrolment", "topology")
AT_START_FIELDS: Final = ("locations", "brokers", "engine", "outbox", "traps", "poller",
                          "ldap", "oidc")


@dataclass(slots=True)
class _Where:
    doc: Document
    path: str

    def problem(self, key: str, message: str) -> None:
        path = f"{self.path}.{key}" if key else self.path
        self.doc.problem(path, message)


_LISTS: Final = ("locations", "municipalities", "office_hours", "sites", "snmp_profiles",
                  "devices", "checks", "brokers", "users", "services")
_ID_KEY: Final = {name: "location" if name == "brokers" else "id" for name in _LISTS}


@dataclass(slots=True)
class _Record:
    """The scalar facts of one list item, read from the node tree whether or not the
    item converted, so that references are checked even next to a type error and a
    broken item does not make every reference to it "unknown"."""

    where: _Where
    facts: dict[str, str]
    parents: list[str] = field(default_factory=list)  # a device's redundant uplinks


def _read_file(doc: Document, root: yaml.MappingNode, records: dict[str, dict[str, _Record]],
               typed: dict[str, dict[str, Any]],
               singletons: dict[str, tuple[Any, Document]]) -> None:
    """One file's lists (merged across files) and settings blocks (set once)."""
    hints = typing.get_type_hints(_File, include_extras=True)
    for key_node, _ in root.value:
        name = getattr(key_node, "value", "")
        doc.lines.setdefault(name, key_node.start_mark.line + 1)
        if name not in hints:
            close = difflib.get_close_matches(name, list(hints), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            doc.problem(name, f"unknown key{hint}; known keys: {', '.join(sorted(hints))}")
    for key_node, value_node in root.value:
        name = getattr(key_node, "value", "")
        if name in _LISTS:
            (item_tp,) = typing.get_args(hints[name])
            _collect_list(doc, name, value_node, item_tp, records, typed)
        elif name in ("engine", "outbox", "traps", "poller", "ldap", "oidc",
                      "notifications", "enrolment", "netbox", "topology"):
            value = convert(doc, value_node, hints[name], name)
            if name in singletons:
                other = singletons[name][1]
                doc.problem(name, f"'{name}' is also set in {other.file}")
            elif not is_missing(value):
                singletons[name] = (value, doc)


def _check_settings(singletons: dict[str, tuple[Any, Document]],
                    records: dict[str, dict[str, _Record]]) -> None:
    """The settings blocks' references into the lists (notifications, ldap)."""
    if "notifications" in singletons:
        settings, doc = singletons["notifications"]
        for path, message in check_notifications(settings, set(records["office_hours"])):
            doc.problem(f"notifications.{path}", message)
    if "ldap" in singletons:
        settings, doc = singletons["ldap"]
        for i, computers in enumerate(settings.computers):
            if computers.site not in records["sites"]:
                doc.problem(f"ldap.computers[{i}].site", f"unknown site {computers.site!r}")
    if "enrolment" in singletons:
        settings, doc = singletons["enrolment"]
        _check_enrolment(settings, doc, records)
    if "topology" in singletons:
        topology, doc = singletons["topology"]
        for i, root in enumerate(topology.roots):
            if root not in records["devices"]:
                doc.problem(f"topology.roots[{i}]", f"unknown device {root!r}")
    if "netbox" in singletons:
        settings, doc = singletons["netbox"]
        for netbox_site, site in settings.sites.items():
            if site not in records["sites"]:
                doc.problem(f"netbox.sites.{netbox_site}", f"unknown site {site!r}")
        for role, profile in settings.snmp_profiles.items():
            if profile not in records["snmp_profiles"]:
                doc.problem(f"netbox.snmp_profiles.{role}", f"unknown SNMP profile "
                                                           f"{profile!r}")


def _check_enrolment(settings: EnrolmentSettings, doc: Document,
                     records: dict[str, dict[str, _Record]]) -> None:
    municipalities, sites = records["municipalities"], records["sites"]
    seen: set[str] = set()
    for i, token in enumerate(settings.tokens):
        where = f"enrolment.tokens[{i}].municipality"
        if token.municipality not in municipalities:
            doc.problem(where, f"unknown municipality {token.municipality!r}")
        elif token.municipality in seen:
            doc.problem(where, f"{token.municipality!r} has a token already")
        seen.add(token.municipality)
    for i, rule in enumerate(settings.placement):
        where = f"enrolment.placement[{i}]"
        if rule.municipality is not None and rule.municipality not in municipalities:
            doc.problem(f"{where}.municipality", f"unknown municipality {rule.municipality!r}")
        if rule.site is not None:
            site = sites.get(rule.site)
            if site is None:
                doc.problem(f"{where}.site", f"unknown site {rule.site!r}")
            elif rule.municipality and site.facts.get("municipality") != rule.municipality:
                doc.problem(f"{where}.site", f"site {rule.site!r} is not in "
                                             f"{rule.municipality!r}")


def load_config(path: str | Path) -> Config:
    """Load and check everything; raise :class:`Problems` with all errors found."""
    root = Path(path)
    if not root.exists():
        raise Problems([Problem(str(root), 0, "", "no such file or directory")])
    docs = _load_documents(root)
    unreadable = [p for doc in docs if doc.root is None for p in doc.problems]
    if unreadable:
        # A file that does not parse leaves holes that every reference into it would
        # report again (thousands of follow-on errors): say only what does not parse.
        raise Problems(unreadable)
    records: dict[str, dict[str, _Record]] = {name: {} for name in _LISTS}
    typed: dict[str, dict[str, Any]] = {name: {} for name in _LISTS}
    singletons: dict[str, tuple[Any, Document]] = {}
    for doc in docs:
        if doc.root is None:
            continue
        if not isinstance(doc.root, yaml.MappingNode):
            convert(doc, doc.root, _File)  # reports "expected a mapping"
            continue
        _read_file(doc, doc.root, records, typed, singletons)
    _check_references(records)
    for sid, path, message in service_problems(
            typed["services"], set(records["services"]), set(records["devices"]),
            set(records["checks"]), set(records["municipalities"]),
            set(records["office_hours"])):
        records["services"][sid].where.problem(path, message)
    _check_settings(singletons, records)
    problems = [p for doc in docs for p in doc.problems]
    if problems:
        raise Problems(problems)
    engine = singletons.get("engine", (EngineSettings(), None))[0]
    outbox = singletons.get("outbox", (OutboxSettings(), None))[0]
    traps = singletons.get("traps", (TrapSettings(), None))[0]
    poller = singletons.get("poller", (PollerSettings(), None))[0]
    return Config(
        locations=typed["locations"],
        municipalities=typed["municipalities"],
        sites=typed["sites"],
        snmp_profiles=typed["snmp_profiles"],
        devices=typed["devices"],
        brokers=typed["brokers"],
        office_hours=typed["office_hours"],
        checks=typed["checks"],
        schedules={k: v.schedule() for k, v in typed["office_hours"].items()},
        engine=engine,
        outbox=outbox,
        traps=traps,
        poller=poller,
        ldap=singletons.get("ldap", (None, None))[0],
        oidc=singletons.get("oidc", (None, None))[0],
        users=typed["users"],
        services=typed["services"],
        notifications=singletons.get("notifications", (NotificationSettings(), None))[0],
        enrolment=singletons.get("enrolment", (EnrolmentSettings(), None))[0],
        netbox=singletons.get("netbox", (None, None))[0],
        topology=singletons.get("topology", (TopologySettings(), None))[0],
        source=str(root),
    )


def _collect_list(doc: Document, name: str, node: yaml.Node, item_tp: Any,
                  records: dict[str, dict[str, _Record]], typed: dict[str, dict[str, Any]]
                  ) -> None:
    if not isinstance(node, yaml.SequenceNode):
        convert(doc, node, list[item_tp], name)
        return
    id_key = _ID_KEY[name]
    for i, child in enumerate(node.value):
        here = _Where(doc, f"{name}[{i}]")
        item = convert(doc, child, item_tp, here.path)
        facts = _scalar_facts(child)
        key = facts.get(id_key)
        if key is None:
            continue  # the missing or malformed id is already reported
        first = records[name].get(key)
        if first is not None:
            here.problem(id_key, f"duplicate id {key!r}; first defined at "
                                 f"{first.where.doc.file}:{first.where.doc.line_of(first.where.path)}")
            continue
        records[name][key] = _Record(here, facts, _scalar_list(child, "parents"))
        if not is_missing(item):
            typed[name][key] = item


def _scalar_list(node: yaml.Node, key: str) -> list[str]:
    """The scalars of the list under ``key``, read from the node tree."""
    if not isinstance(node, yaml.MappingNode):
        return []
    for k, v in node.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key and isinstance(
                v, yaml.SequenceNode):
            return [item.value for item in v.value
                    if isinstance(item, yaml.ScalarNode) and item.value]
    return []


def _scalar_facts(node: yaml.Node) -> dict[str, str]:
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {
        k.value: v.value
        for k, v in node.value
        if isinstance(k, yaml.ScalarNode) and isinstance(v, yaml.ScalarNode) and v.value
    }


def _check_references(records: dict[str, dict[str, _Record]]) -> None:
    locations, municipalities = records["locations"], records["municipalities"]
    sites, devices = records["sites"], records["devices"]

    def must_exist(rec: _Record, key: str, known: dict[str, _Record], what: str) -> None:
        value = rec.facts.get(key)
        if value is not None and value not in known:
            rec.where.problem(key, f"unknown {what} {value!r}")

    for rec in sites.values():
        must_exist(rec, "location", locations, "location")
        must_exist(rec, "municipality", municipalities, "municipality")
        must_exist(rec, "office_hours", records["office_hours"], "office hours")
    for rec in municipalities.values():
        must_exist(rec, "office_hours", records["office_hours"], "office hours")
    for rec in records["brokers"].values():
        must_exist(rec, "location", locations, "location")
    _check_devices(records, must_exist)
    for rec in records["users"].values():
        must_exist(rec, "municipality", municipalities, "municipality")
    for rec in records["checks"].values():
        must_exist(rec, "device", devices, "device")
        must_exist(rec, "location", locations, "location")


MustExist = typing.Callable[[_Record, str, dict[str, _Record], str], None]


def _check_devices(records: dict[str, dict[str, _Record]], must_exist: MustExist) -> None:
    """Each device's references, its name, its address, and its parents' cycles."""
    devices = records["devices"]
    addresses: dict[str, str] = {}
    # a host agent's source is its device: a device named as a collector would share
    # that collector's source, and its agent could speak for the collector
    collectors = {f"{c}-{loc}" for loc in records["locations"]
                  for c in typing.get_args(BrokerComponent) if c != "engine"}
    for device_id, rec in devices.items():
        if device_id in collectors:
            rec.where.problem("id", f"{device_id!r} is the source id of a collector "
                                    "(component-location); name the device otherwise")
        must_exist(rec, "site", records["sites"], "site")
        must_exist(rec, "snmp_profile", records["snmp_profiles"], "SNMP profile")
        _check_parents(device_id, rec, devices, must_exist)
        address = rec.facts.get("address")
        if "snmp_profile" in rec.facts and address is None:
            rec.where.problem("snmp_profile", "a device polled over SNMP needs an address")
        if address is not None:
            other = addresses.setdefault(address, device_id)
            if other != device_id:
                rec.where.problem("address", f"address {address} is also used by {other!r}")
    parents = {d: [p for p in (rec.facts.get("parent"), *rec.parents) if p]
               for d, rec in devices.items()}
    for cycle in _parent_cycles(parents):
        devices[cycle[0]].where.problem(
            "parent", "parent cycle: " + " -> ".join([*cycle, cycle[0]])
        )


def _check_parents(device_id: str, rec: _Record, devices: dict[str, _Record],
                   must_exist: MustExist) -> None:
    if rec.facts.get("parent") == device_id:
        rec.where.problem("parent", "a device cannot be its own parent")
    else:
        must_exist(rec, "parent", devices, "parent device")
    for i, other in enumerate(rec.parents):
        if other == device_id:
            rec.where.problem(f"parents[{i}]", "a device cannot be its own parent")
        elif other not in devices:
            rec.where.problem(f"parents[{i}]", f"unknown parent device {other!r}")


def _parent_cycles(parents: dict[str, list[str]]) -> list[list[str]]:
    """Each parent cycle once, as the list of devices on it, starting at its smallest
    id (a device may have several parents: each path is followed)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    found: dict[tuple[str, ...], list[str]] = {}
    for start in parents:
        if state.get(start):
            continue
        path: list[str] = [start]
        state[start] = 1
        stack = [iter(parents.get(start, []))]
        while stack:
            step = next(stack[-1], None)
            if step is None:
                state[path.pop()] = 2
                stack.pop()
            elif step not in parents or state.get(step) == 2:
                continue
            elif state.get(step) == 1:
                cycle = path[path.index(step):]
                i = cycle.index(min(cycle))
                key = tuple(cycle[i:] + cycle[:i])
                found.setdefault(key, list(key))
            else:
                state[step] = 1
                path.append(step)
                stack.append(iter(parents.get(step, [])))
    return list(found.values())
