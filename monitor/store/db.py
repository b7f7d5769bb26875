"""One aiosqlite connection in WAL mode, migrated by numbered scripts.

The engine is the only writer. Everything one batch of events changes — source
progress, device status, dead letters — is written in one transaction, and the
acknowledgement to the collectors is sent only after that transaction commits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Self

import aiosqlite

__all__ = ["MIGRATIONS", "DeadLetter", "DeviceRow", "Store"]

# Append only: a migration that shipped is never edited, a new one is added.
MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: source progress, device status, dead letters
    """
    CREATE TABLE source_progress (
        src      TEXT PRIMARY KEY,
        applied  INTEGER NOT NULL,           -- every seq up to this one is processed
        events   INTEGER NOT NULL DEFAULT 0, -- events applied from this source, ever
        updated  REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE device_status (
        device      TEXT PRIMARY KEY,
        last_seen   REAL NOT NULL,
        state       TEXT,
        state_since REAL,
        reason      TEXT
    ) WITHOUT ROWID;
    CREATE TABLE dead_letter (
        id          INTEGER PRIMARY KEY,
        received_at REAL NOT NULL,
        topic       TEXT NOT NULL,
        src         TEXT,
        reason      TEXT NOT NULL,
        detail      TEXT NOT NULL,
        payload     BLOB NOT NULL
    );
    CREATE INDEX dead_letter_received ON dead_letter (received_at);
    """,
)

DEAD_LETTER_KEEP: Final = 10_000


@dataclass(frozen=True, slots=True)
class DeviceRow:
    device: str
    last_seen: float
    state: str | None
    state_since: float | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    received_at: float
    topic: str
    src: str | None
    reason: str
    detail: str
    payload: bytes


class Store:
    """The engine's store; use as ``async with Store.open(path) as store``."""

    def __init__(self, db: aiosqlite.Connection, path: str) -> None:
        self._db = db
        self.path = path
        # aiosqlite runs one statement at a time, but a transaction spans several awaits:
        # nothing else may start one in between.
        self._tx = asyncio.Lock()

    @classmethod
    async def open(cls, path: str | Path) -> Self:
        path = str(path)
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path, isolation_level=None)
        await db.execute("PRAGMA journal_mode=WAL")
        # FULL: a batch acknowledged to a collector must survive a power cut, not only
        # a crash of this process. Batching keeps the fsyncs few.
        await db.execute("PRAGMA synchronous=FULL")
        await db.execute("PRAGMA busy_timeout=5000")
        store = cls(db, path)
        await store._migrate()
        return store

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._db.close()

    async def _migrate(self) -> None:
        async with self._db.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        version = int(row[0]) if row else 0
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            await self._db.executescript(
                f"BEGIN IMMEDIATE; {script}; PRAGMA user_version={number}; COMMIT;"
            )

    async def schema_version(self) -> int:
        async with self._db.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def load_progress(self) -> dict[str, int]:
        async with self._db.execute("SELECT src, applied FROM source_progress") as cur:
            return {str(src): int(applied) async for src, applied in cur}

    async def source_counts(self) -> dict[str, tuple[int, int]]:
        """Per source: (highest seq processed, events applied ever)."""
        async with self._db.execute("SELECT src, applied, events FROM source_progress") as cur:
            return {str(s): (int(a), int(e)) async for s, a, e in cur}

    async def load_devices(self) -> list[DeviceRow]:
        query = "SELECT device, last_seen, state, state_since, reason FROM device_status"
        async with self._db.execute(query) as cur:
            return [DeviceRow(*row) async for row in cur]

    async def commit_batch(self, progress: dict[str, int], devices: Iterable[DeviceRow],
                           dead: Iterable[DeadLetter],
                           counts: dict[str, int] | None = None) -> None:
        """Write one batch's effects in one transaction."""
        async with self._tx:
            await self._commit_batch(progress, devices, dead, counts or {})

    async def _commit_batch(self, progress: dict[str, int], devices: Iterable[DeviceRow],
                            dead: Iterable[DeadLetter], counts: dict[str, int]) -> None:
        now = time.time()
        db = self._db
        await db.execute("BEGIN IMMEDIATE")
        try:
            await db.executemany(
                "INSERT INTO source_progress (src, applied, events, updated) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (src) DO UPDATE SET applied = excluded.applied, "
                "events = events + excluded.events, updated = excluded.updated",
                [(src, applied, counts.get(src, 0), now) for src, applied in progress.items()],
            )
            await db.executemany(
                "INSERT INTO device_status (device, last_seen, state, state_since, reason) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (device) DO UPDATE SET "
                "last_seen = excluded.last_seen, state = excluded.state, "
                "state_since = excluded.state_since, reason = excluded.reason",
                [(d.device, d.last_seen, d.state, d.state_since, d.reason) for d in devices],
            )
            dead_rows = [(d.received_at, d.topic, d.src, d.reason, d.detail, d.payload)
                         for d in dead]
            if dead_rows:
                await db.executemany(
                    "INSERT INTO dead_letter (received_at, topic, src, reason, detail, payload)"
                    " VALUES (?, ?, ?, ?, ?, ?)", dead_rows)
                await db.execute(
                    "DELETE FROM dead_letter WHERE id <= "
                    "(SELECT MAX(id) FROM dead_letter) - ?", (DEAD_LETTER_KEEP,))
            await db.execute("COMMIT")
        except BaseException:
            await db.execute("ROLLBACK")
            raise

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        query = ("SELECT received_at, topic, src, reason, detail, payload FROM dead_letter "
                 "ORDER BY id DESC LIMIT ?")
        async with self._db.execute(query, (limit,)) as cur:
            return [DeadLetter(*row) async for row in cur]

    async def writable(self) -> bool:
        """For /readyz: can we take the write lock right now?"""
        async with self._tx:
            try:
                await self._db.execute("BEGIN IMMEDIATE")
                await self._db.execute("ROLLBACK")
            except aiosqlite.Error:
                return False
            return True
