"""Host agent settings: a YAML file, overridden by environment variables, then by flags.

Identity (location, municipality, device, class) comes from the file or the flags;
without a device id the host name is used, made into a slug (``ALTA-PC0042.kommune.no``
becomes ``alta-pc0042``), or mapped through ``device_map`` patterns. An agent installed
with an enrolment token (``--enrolment-token-file``) takes location and municipality
from the token and registers itself (collectors.agent.enrol): nothing else is needed.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final, Literal

from monitor.enrolment import parse_token
from monitor.fields import Broker
from monitor.secrets import SecretRef
from monitor.yamlmodel import Problem, Problems, convert, is_missing, load_documents

__all__ = ["AgentSettings", "load_settings", "slug_from_hostname"]

DEFAULT_INTERVAL: Final = {"server": 30.0, "pc": 60.0}
ENV_PREFIX: Final = "DRIFTSVAKT_AGENT_"


@dataclass(frozen=True, slots=True)
class DeviceMapping:
    match: str   # a regular expression on the lower-cased short host name
    device: str  # the device id, with \\1 etc. for groups


@dataclass(frozen=True, slots=True)
class Watch:
    processes: list[str] = field(default_factory=list)
    services: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class AgentSettings:
    location: str
    municipality: str
    device: str | None = None
    device_class: Literal["server", "pc"] = field(default="server", metadata={"key": "class"})
    interval: float | None = None
    broker: Broker | None = None
    outbox: str = "/var/lib/driftsvakt/agent-outbox.db"
    watch: Watch = field(default_factory=Watch)
    device_map: list[DeviceMapping] = field(default_factory=list)
    enrolment_token: SecretRef | None = None  # registers itself (collectors.agent.enrol)
    # what a registration says where the host cannot tell (a Linux host's AD place)
    machine_id: str | None = None
    ad_site: str | None = None
    dn: str | None = None

    @property
    def every(self) -> float:
        return self.interval or DEFAULT_INTERVAL[self.device_class]

    def device_id(self, hostname: str | None = None) -> str:
        if self.device:
            return self.device
        host = (hostname or socket.gethostname()).split(".")[0].lower()
        for mapping in self.device_map:
            if re.fullmatch(mapping.match, host):
                return re.sub(mapping.match, mapping.device, host)
        return slug_from_hostname(host)


def slug_from_hostname(hostname: str) -> str:
    short = hostname.split(".")[0].lower()
    slug = re.sub(r"[^a-z0-9-]+", "-", short).strip("-")
    return slug[:63] or "unnamed-host"


_ENV_FIELDS: Final = ("location", "municipality", "device", "class", "interval", "outbox")


def load_settings(args: argparse.Namespace) -> AgentSettings:
    """File (if any) < environment < flags; raise Problems with every error."""
    settings = _from_file(args.config) if args.config else None
    overrides = _overrides(args)
    token = _token(args, settings)
    if token is not None:
        overrides["enrolment_token"] = token
        try:
            location, municipality, _ = parse_token(token.resolve())
        except (KeyError, OSError, ValueError) as exc:
            raise Problems([Problem("agent", 0, "enrolment_token", str(exc))]) from None
        for key, value in (("location", location), ("municipality", municipality)):
            given = overrides.get(key, getattr(settings, key, None))
            if given not in (None, value):
                raise Problems([Problem("agent", 0, key, f"{given!r}, but the enrolment "
                                                         f"token is for {value!r}")])
            overrides[key] = value
    if settings is None:
        missing = [k for k in ("location", "municipality") if k not in overrides]
        if missing:
            raise Problems([Problem("agent", 0, k, "required (in --config, as a flag or as "
                                    f"{ENV_PREFIX}{k.upper()})") for k in missing])
        settings = AgentSettings(location=str(overrides.pop("location")),
                                 municipality=str(overrides.pop("municipality")))
    settings = replace(settings, **overrides)  # type: ignore[arg-type]
    return replace(settings, broker=_broker(args, settings))


def _from_file(path: str) -> AgentSettings:
    docs = load_documents(Path(path))
    doc = docs[0]
    value = convert(doc, doc.root, AgentSettings) if doc.root is not None else None
    problems = [p for d in docs for p in d.problems]
    if problems or value is None or is_missing(value):
        raise Problems(problems or [Problem(path, 0, "", "empty settings file")])
    settings: AgentSettings = value
    return settings


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    """What flags, else the environment, set."""
    overrides: dict[str, object] = {}
    for key in _ENV_FIELDS:
        env = os.environ.get(ENV_PREFIX + key.upper())
        flag = getattr(args, key.replace("class", "device_class"), None)
        chosen = flag if flag is not None else env
        if chosen is not None:
            attr = "device_class" if key == "class" else key
            overrides[attr] = float(chosen) if key == "interval" else chosen
    return overrides


def _token(args: argparse.Namespace, settings: AgentSettings | None) -> SecretRef | None:
    path = (getattr(args, "enrolment_token_file", None)
            or os.environ.get(ENV_PREFIX + "ENROLMENT_TOKEN_FILE"))
    if path:
        return SecretRef(file=path)
    return settings.enrolment_token if settings is not None else None


def _broker(args: argparse.Namespace, settings: AgentSettings) -> Broker:
    broker_host = args.broker_host or os.environ.get(ENV_PREFIX + "BROKER_HOST")
    broker_port = args.broker_port or os.environ.get(ENV_PREFIX + "BROKER_PORT")
    broker = settings.broker or Broker(location=settings.location)
    if broker_host or broker_port:
        broker = replace(broker, host=broker_host or broker.host,
                         port=int(broker_port or broker.port))
    password_env = os.environ.get(ENV_PREFIX + "BROKER_PASSWORD_ENV")
    if password_env:
        broker = replace(broker, password=SecretRef(env=password_env))
    return replace(broker, location=settings.location)
