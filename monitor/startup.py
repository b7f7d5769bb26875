"""What the engine makes sure of before it takes any work, each a one-line refusal.

An engine that cannot do its job must exit at once with a code that says why, so that
systemd (and the person reading its journal) can tell a wrong config, which a restart
will not mend, from a port or store still held by another process, which it may:

=====  ==========================================================================
 code  meaning
=====  ==========================================================================
   0   stopped on SIGTERM/SIGINT
   1   a task under the ``stop`` policy died (monitor.supervisor); restart it
   2   wrong command line
  73   the HTTP port cannot be bound (in use by another process, or not allowed)
  75   the store is locked by another engine (its PID is named)
  78   the config is invalid, or a credential it names cannot be read or is empty
=====  ==========================================================================

The shipped unit (deploy/systemd) restarts on failure except for 78
(``RestartPreventExitStatus=78``).
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import os
import socket
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Final

from monitor.config import Config
from monitor.secrets import SecretRef

__all__ = ["EXIT_CONFIG", "EXIT_PORT", "EXIT_STORE_LOCKED", "StartRefused", "StoreLock",
           "bind_http", "check_credentials"]

EXIT_PORT: Final = 73
EXIT_STORE_LOCKED: Final = 75
EXIT_CONFIG: Final = 78


class StartRefused(Exception):
    """Why the engine will not start, for the operator, with the exit code to use."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def bind_http(host: str, port: int) -> socket.socket:
    """The HTTP listener, bound before anything else is opened, so a taken port is
    found before the store, the broker or any task is touched."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=128)
    except OSError as exc:
        why = ("is in use by another process" if exc.errno == errno.EADDRINUSE
               else f"cannot be bound: {exc.strerror or exc}")
        raise StartRefused(EXIT_PORT, f"HTTP port {host}:{port} {why}") from None


class StoreLock:
    """An exclusive ``flock`` on ``<store>.lock``, held for the engine's life.

    Two engines on one store would each apply and acknowledge the same events and
    knock each other off the broker (one client id); the second is refused instead.
    The kernel drops the lock when the process ends, however it ends.
    """

    def __init__(self, store_path: str) -> None:
        self.path = Path(f"{store_path}.lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise StartRefused(
                EXIT_STORE_LOCKED, f"store {self.path.with_suffix('')} is in use by another "
                f"engine (pid {holder}); one store, one engine") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _secret_refs(value: Any, key: str) -> Iterator[tuple[str, SecretRef]]:
    if isinstance(value, SecretRef):
        yield key, value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from _secret_refs(getattr(value, f.name), f"{key}.{f.name}")
    elif isinstance(value, dict):
        for name, item in value.items():
            yield from _secret_refs(item, f"{key}.{name}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _secret_refs(item, f"{key}[{i}]")


def engine_secrets(config: Config, location: str) -> Iterator[tuple[str, SecretRef]]:
    """Every credential an engine of ``location`` uses: its broker's password, the API
    users' tokens, the notification settings' secrets (receivers, ack links), the
    directory's service account, the OpenID Connect client's secret and the
    municipalities' enrolment tokens."""
    broker = config.brokers.get(location)
    if broker is not None and broker.password is not None:
        yield f"brokers.{location}.password", broker.password
    yield from _secret_refs(config.users, "users")
    if config.engine.metrics_token is not None:
        yield "engine.metrics_token", config.engine.metrics_token
    yield from _secret_refs(config.notifications, "notifications")
    if config.ldap is not None:
        yield from _secret_refs(config.ldap, "ldap")
    if config.oidc is not None:
        yield from _secret_refs(config.oidc, "oidc")
    for i, token in enumerate(config.enrolment.tokens):
        yield f"enrolment.tokens[{i}].token", token.token


def unusable_credentials(refs: Iterable[tuple[str, SecretRef]]) -> list[str]:
    """Each credential that cannot be read, or is empty, with why."""
    problems = []
    for key, ref in refs:
        try:
            value = ref.resolve()
        except (KeyError, OSError) as exc:
            reason = exc.args[0] if isinstance(exc, KeyError) and exc.args else (
                getattr(exc, "strerror", None) or str(exc))
            problems.append(f"{key}: {ref!r}: {reason}")
            continue
        if not value.strip():
            problems.append(f"{key}: {ref!r}: is empty")
    return problems


def every_secret(config: Config) -> Iterator[tuple[str, SecretRef]]:
    """Every credential the config names, for any location's engine or collector, and
    the import's (NetBox's token)."""
    seen: set[str] = set()
    for location in config.locations:
        for key, ref in engine_secrets(config, location):
            if key not in seen:
                seen.add(key)
                yield key, ref
    yield from _secret_refs(config.snmp_profiles, "snmp_profiles")
    yield from _secret_refs(config.traps, "traps")
    if config.netbox is not None:
        yield "netbox.token", config.netbox.token


def check_credentials(config: Config, location: str) -> None:
    """Read every credential now; refuse to start, naming each one that cannot be read
    or is empty (an empty token would let an empty header in)."""
    problems = unusable_credentials(engine_secrets(config, location))
    if problems:
        raise StartRefused(EXIT_CONFIG, f"{config.source}: credentials cannot be used: "
                           + "; ".join(problems))

