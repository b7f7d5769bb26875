"""The brokers' identities and ACL, generated from the estate: least privilege by default.

Every engine, every collector component of a location and every host agent logs in
as itself; what each may publish is written out per identity, so a credential taken
from one PC can publish only that PC's own events and status:

- ``engine-{location}``: reads everything; writes its acknowledgements, its status,
  its share of the notification log and of the operators' actions;
- ``{component}-{location}`` (snmp, traps, checks): events of that location only, on
  its own source's topics (``…/{stream}/{component}-{location}``), its own status, and
  reads the acknowledgements;
- ``agent-{device}`` for every server and PC: its device's events on its own source's
  topics (``…/{device}/{stream}/{device}``), its own status, and the acknowledgements
  of its own events;

The source named in a device topic is what the engine binds the payload's ``src`` to
(``engine.bind_src``), so no identity can speak for another source.
- ``enrol-{municipality}`` for a municipality with an enrolment token
  (``enrolment.tokens``): its password is the token's secret, which every agent
  installed with the token holds, so it may write only what no one else owns — events
  in its municipality on topics whose source is the device itself, never a device the
  estate's files declare, never a collector's source — and agent status of devices
  the files do not declare. Any of the municipality's enrolled agents can speak for
  another (they share the token); none can speak for anything else.
- ``readonly`` (troubleshooting, exports) and ``bridge-{location}`` (the bridge).

Passwords are random, one file per identity under ``secrets/`` (owner only), and
stay as they are on later runs, so adding a device changes nothing for the others;
``rotate`` gives the named identities new ones. The password file holds mosquitto's
own PBKDF2-SHA512 hashes (``$7$``), what ``mosquitto_passwd`` writes.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, get_args

from monitor.config import Config
from monitor.events import PREFIX
from monitor.fields import BrokerComponent
from monitor.secrets import private_file

__all__ = ["AGENT_CLASSES", "Identity", "identities", "mosquitto_hash", "write_broker_auth"]

AGENT_CLASSES: Final = ("server", "pc")  # where the host agent runs
_ITERATIONS: Final = 101  # mosquitto_passwd's own
COLLECTORS: Final = tuple(c for c in get_args(BrokerComponent) if c != "engine")


@dataclass(frozen=True, slots=True)
class Identity:
    user: str
    rules: tuple[str, ...]  # mosquitto ACL lines: "topic read|write|readwrite|deny TOPIC"
    password: str | None = None  # one the estate gives (an enrolment token's secret)


def identities(config: Config) -> list[Identity]:
    """Every identity the estate needs, with what it may do."""
    root = PREFIX
    found: list[Identity] = []
    for loc in config.locations:
        found.append(Identity(f"engine-{loc}", (
            f"topic read {root}/#",
            f"topic write {root}/_ack/{loc}/#",
            f"topic write {root}/_sys/{loc}/engine/#",
            f"topic write {root}/_nflog/{loc}/#",
            f"topic write {root}/_ops/{loc}/#")))
        for component in COLLECTORS:
            found.append(Identity(f"{component}-{loc}", (
                f"topic write {root}/{loc}/+/+/+/{component}-{loc}",
                f"topic write {root}/_sys/{loc}/{component}/#",
                f"topic read {root}/_ack/#")))
        found.append(Identity(f"bridge-{loc}", (f"topic readwrite {root}/#",)))
    for device in config.devices.values():
        if device.device_class not in AGENT_CLASSES:
            continue
        site = config.sites[device.site]
        found.append(Identity(f"agent-{device.id}", (
            f"topic write {root}/{site.location}/{site.municipality}/{device.id}/+/{device.id}",
            f"topic write {root}/_sys/{site.location}/agent/{device.id}",
            f"topic read {root}/_ack/+/{device.id}")))
    found.extend(_enrolment(config))
    found.append(Identity("readonly", (f"topic read {root}/#",)))
    return found


def _enrolment(config: Config) -> Iterable[Identity]:
    """One identity per enrolment token. mosquitto takes "deny" lines before the
    grants, so the grants can be broad and the denials exact."""
    root = PREFIX
    sources = [f"{c}-{loc}" for loc in config.locations for c in COLLECTORS]
    for token in config.enrolment.tokens:
        m = token.municipality
        own = sorted(d.id for d in config.devices.values()
                     if config.sites[d.site].municipality == m)
        rules = [*(f"topic deny {root}/+/+/+/+/{src}" for src in sources),
                 *(f"topic deny {root}/+/{m}/{d}/#" for d in own),
                 *(f"topic deny {root}/+/+/+/+/{d}" for d in sorted(config.devices)),
                 *(f"topic deny {root}/_sys/+/agent/{d}" for d in sorted(config.devices))]
        for loc in config.locations:
            rules += [f"topic write {root}/{loc}/{m}/+/+/+",
                      f"topic write {root}/_sys/{loc}/agent/+"]
        rules.append(f"topic read {root}/_ack/+/+")
        yield Identity(f"enrol-{m}", tuple(rules), token.token.resolve())


def mosquitto_hash(password: str, salt: bytes | None = None) -> str:
    """mosquitto's ``$7$`` entry: PBKDF2-HMAC-SHA512, 12 bytes of salt, base64."""
    salt = salt if salt is not None else secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, _ITERATIONS)
    return (f"$7${_ITERATIONS}${base64.b64encode(salt).decode()}$"
            f"{base64.b64encode(digest).decode()}")


def acl_text(found: Iterable[Identity]) -> str:
    lines = ["# Generated by `driftsvakt broker-auth` from the estate; do not edit.",
             "# One identity per engine, collector component and host agent.", ""]
    for identity in found:
        lines += [f"user {identity.user}", *identity.rules, ""]
    return "\n".join(lines)


def write_broker_auth(config: Config, out: Path, rotate: Iterable[str] = ()
                      ) -> tuple[int, list[str]]:
    """Write ``driftsvakt.acl``, ``driftsvakt.passwd`` and ``secrets/USER`` into
    ``out``; return how many identities there are and which got a new password."""
    found = identities(config)
    users = {i.user for i in found}
    unknown = sorted(set(rotate) - users)
    if unknown:
        raise ValueError(f"no such identity to rotate: {', '.join(unknown)}")
    keys = out / "secrets"
    keys.mkdir(parents=True, exist_ok=True)
    keys.chmod(0o700)
    made: list[str] = []
    entries: list[str] = []
    for identity in found:
        path = keys / identity.user
        if identity.password is not None:  # the estate's: rotated there
            entries.append(f"{identity.user}:{mosquitto_hash(identity.password)}")
            continue
        if identity.user in set(rotate) or not path.exists():
            _write_private(path, secrets.token_urlsafe(24) + "\n")
            made.append(identity.user)
        password = path.read_text(encoding="utf-8").strip()
        entries.append(f"{identity.user}:{mosquitto_hash(password)}")
    _write_private(out / "driftsvakt.passwd", "\n".join(entries) + "\n")
    _write_private(out / "driftsvakt.acl", acl_text(found))
    return len(found), made


def _write_private(path: Path, text: str) -> None:
    """Written whole (renamed into place), readable by its owner only."""
    part = path.with_name(path.name + ".part")
    part.unlink(missing_ok=True)
    private_file(part)
    part.write_text(text, encoding="utf-8")
    part.replace(path)
