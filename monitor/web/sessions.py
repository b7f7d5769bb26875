"""Server-side sign-ins: the browser's cookie holds a random session id, not a credential.

A session ends when its user signs out (or out everywhere), after ``idle`` seconds
unused, and ``max_age`` seconds after sign-in whatever happens; each sign-in starts a
new one (an id seen before sign-in is never promoted). Only the ids' SHA-256 is kept.
The id is worth nothing on the API, which takes bearer tokens only. Sessions live in
the engine's memory: a restart signs everyone out, which is what an operator expects
of a restarted security boundary.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

__all__ = ["Sessions"]

_ID_BYTES: Final = 32


@dataclass(slots=True)
class _Session:
    user: str
    started: float
    used: float


class Sessions:
    def __init__(self, max_age: float = 12 * 3600.0, idle: float = 2 * 3600.0,
                 clock: Callable[[], float] = time.time, capacity: int = 10_000) -> None:
        self.max_age = max_age
        self.idle = idle
        self.clock = clock
        self.capacity = capacity
        self._by_key: dict[bytes, _Session] = {}

    @staticmethod
    def _key(sid: str) -> bytes | None:
        if not (0 < len(sid) <= 128) or not sid.isascii() or not sid.isprintable():
            return None
        return hashlib.sha256(sid.encode()).digest()

    def start(self, user: str) -> str:
        now = self.clock()
        if len(self._by_key) >= self.capacity:  # a flood of sign-ins: the least used go
            self._expire(now)
            for key, _ in sorted(self._by_key.items(), key=lambda kv: kv[1].used)[
                    :max(1, len(self._by_key) - self.capacity + 1)]:
                del self._by_key[key]
        sid = secrets.token_urlsafe(_ID_BYTES)
        self._by_key[hashlib.sha256(sid.encode()).digest()] = _Session(user, now, now)
        return sid

    def user(self, sid: str) -> str | None:
        """Whose session ``sid`` is, if it is one and still valid; using it keeps it."""
        key = self._key(sid)
        session = None if key is None else self._by_key.get(key)
        if key is None or session is None:
            return None
        now = self.clock()
        if now - session.started >= self.max_age or now - session.used >= self.idle:
            del self._by_key[key]
            return None
        session.used = now
        return session.user

    def end(self, sid: str) -> str | None:
        """Sign out of this session; whose it was."""
        key = self._key(sid)
        session = None if key is None else self._by_key.pop(key, None)
        return None if session is None else session.user

    def end_all(self, user: str) -> int:
        """Sign ``user`` out everywhere; how many sessions ended."""
        keys = [k for k, s in self._by_key.items() if s.user == user]
        for key in keys:
            del self._by_key[key]
        return len(keys)

    def users(self) -> set[str]:
        """Whose sessions are live."""
        self._expire(self.clock())
        return {s.user for s in self._by_key.values()}

    def _expire(self, now: float) -> None:
        for key in [k for k, s in self._by_key.items()
                    if now - s.started >= self.max_age or now - s.used >= self.idle]:
            del self._by_key[key]
