"""A secret in the config: where it lives (an environment variable or a file), never
its value. Resolved only where it is used; its repr names the reference only."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = ["SecretRef", "private_file"]

_ENV_RE: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class SecretRef:
    """Where a secret lives: an environment variable or a file (first line, stripped)."""

    __scalar_hint__ = (
        "secrets are given by reference, never inline: use {env: NAME} or {file: PATH}"
    )

    env: str | None = None
    file: str | None = None

    def __post_init__(self) -> None:
        if (self.env is None) == (self.file is None):
            raise ValueError("a secret reference takes exactly one of 'env' or 'file'")
        if self.env is not None and not _ENV_RE.match(self.env):
            raise ValueError(f"{self.env!r} is not an environment variable name")

    def resolve(self) -> str:
        """Read the secret now; raises ``KeyError``/``OSError`` naming the reference only."""
        if self.env is not None:
            value = os.environ.get(self.env)
            if value is None:
                raise KeyError(f"environment variable {self.env} is not set")
            return value
        assert self.file is not None
        return Path(self.file).read_text(encoding="utf-8").strip()

    def __repr__(self) -> str:
        return f"SecretRef(env={self.env!r})" if self.env else f"SecretRef(file={self.file!r})"


def private_file(path: str | Path) -> None:
    """Make ``path`` a file only its owner may read and write (created empty if it is
    not there, so it is never readable by others, not for a moment). The store and the
    outboxes hold live acknowledgement links and the estate's events; SQLite gives its
    -wal and -shm files the database file's permissions."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
