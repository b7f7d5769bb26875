"""A collector's on-disk outbox: every event is here before it is sent, until acknowledged.

Rows are numbered by SQLite (``AUTOINCREMENT``: a number is never reused, even after
the rows are deleted), and that number is the event's ``seq``. ``put`` returns once the
row is committed; concurrent puts share one commit (group commit), so a collector
that emits many events pays for few fsyncs. Rows are deleted only when the engines
the collector waits for have acknowledged them. The outbox is bounded by rows and
age: when it must drop, it drops the oldest, and counts them.

A full disk does not stop a collector: an event that cannot be written is lost,
counted in ``dropped`` (so its status and alerts show it) and logged with SQLite's own
reason; the counters change only after a commit, and writing resumes by itself when
space returns. SQLite's WAL needs room to grow and to checkpoint (a few MB), so a disk
that is nearly full refills at once: free more than that.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Self

import aiosqlite
import structlog

from monitor.secrets import private_file

__all__ = ["Outbox", "OutboxRow", "OutboxWriteFailed"]

log = structlog.get_logger(__name__)

FAILURE_LOG_EVERY: Final = 60.0
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS outbox (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    topic   TEXT NOT NULL,
    body    BLOB NOT NULL,
    created REAL NOT NULL
);
"""


class OutboxWriteFailed(Exception):
    """An event could not be stored (SQLite's reason kept as the cause): it is lost."""

    def __init__(self, path: str, cause: sqlite3.Error) -> None:
        super().__init__(f"{path}: {cause}")
        self.cause = cause


@dataclass(frozen=True, slots=True)
class OutboxRow:
    seq: int
    topic: str
    body: bytes
    created: float


class Outbox:
    """Durable FIFO of (topic, body) with SQLite-assigned sequence numbers."""

    def __init__(self, db: aiosqlite.Connection, path: str, max_rows: int,
                 max_age: float) -> None:
        self._db = db
        self.path = path
        self.max_rows = max_rows
        self.max_age = max_age
        self.rows = 0
        self.first_seq = 1  # lowest seq still held (== floor of the next event sent)
        self.last_seq = 0   # highest seq ever assigned
        self.dropped = 0  # events lost: dropped when full or old, or never written
        self.write_failures = 0
        self.changed = asyncio.Event()
        # set on a write failure and on recovery: the publisher reports it at once
        self.failing = asyncio.Event()
        self._failing_since: float | None = None
        self._failing_logged = 0.0
        self._failing_lost = 0
        self._pending: list[tuple[str, bytes, float, asyncio.Future[int]]] = []
        self._flushing: asyncio.Task[None] | None = None
        # One connection: a transaction spans awaits, and nothing may interleave with it.
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str | Path, *, max_rows: int = 1_000_000,
                   max_age: float = 7 * 86400.0) -> Self:
        path = str(path)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        private_file(path)
        db = await aiosqlite.connect(path, isolation_level=None)
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=FULL")
        await db.executescript(_SCHEMA)
        outbox = cls(db, path, max_rows, max_age)
        await outbox._load()
        return outbox

    async def _load(self) -> None:
        async with self._db.execute("SELECT COUNT(*), MIN(seq), MAX(seq) FROM outbox") as cur:
            row = await cur.fetchone()
        assert row is not None
        count, lowest, highest = row
        async with self._db.execute(
                "SELECT seq FROM sqlite_sequence WHERE name = 'outbox'") as cur:
            seq_row = await cur.fetchone()
        self.rows = int(count)
        self.last_seq = int(seq_row[0]) if seq_row else 0
        self.first_seq = int(lowest) if lowest is not None else self.last_seq + 1
        del highest

    async def close(self) -> None:
        if self._flushing is not None:
            await self._flushing
        await self._db.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def put(self, topic: str, body: bytes) -> int:
        """Store one event durably; return its seq once committed.

        Raises :class:`OutboxWriteFailed` when the database cannot take it (a full
        disk): the event is lost, counted in ``dropped`` and ``write_failures``, and
        logged with SQLite's own words; the next put tries again."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append((topic, body, time.time(), future))
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush(), name="outbox-flush")
        return await future

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    first = await self._insert([(t, b, c) for t, b, c, _ in batch])
                except sqlite3.Error as exc:
                    self._write_failed("put", exc, lost=len(batch))
                    failure = OutboxWriteFailed(self.path, exc)
                    for *_, future in batch:
                        if not future.done():
                            future.set_exception(failure)
                    continue
                except BaseException as exc:
                    for *_, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    raise
                self._write_ok()
                for offset, (*_, future) in enumerate(batch):
                    if not future.done():
                        future.set_result(first + offset)
                self.changed.set()
        finally:
            self._flushing = None

    async def _insert(self, rows: list[tuple[str, bytes, float]]) -> int:
        """One transaction; the counters change only once it has committed."""
        db = self._db
        async with self._lock:
            await db.execute("BEGIN IMMEDIATE")
            try:
                await db.executemany(
                    "INSERT INTO outbox (topic, body, created) VALUES (?, ?, ?)", rows)
                async with db.execute(
                        "SELECT seq FROM sqlite_sequence WHERE name = 'outbox'") as cur:
                    row = await cur.fetchone()
                assert row is not None
                last = int(row[0])
                overflow = self.rows + len(rows) - self.max_rows
                gone = await self._delete_oldest(overflow) if overflow > 0 else []
                await db.execute("COMMIT")
            except BaseException:
                # SQLite may already have rolled back on its own (a full disk does):
                # a second ROLLBACK would raise and hide the first error.
                if db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        await db.execute("ROLLBACK")
                raise
            first = last - len(rows) + 1
            if self.rows == 0:
                self.first_seq = first
            self.rows += len(rows)
            self.last_seq = last
            self._forget(gone, why="full")
        return first

    async def _delete_oldest(self, count: int) -> list[int]:
        """Inside a transaction: delete the ``count`` oldest rows; return their seqs."""
        async with self._db.execute(
                "DELETE FROM outbox WHERE seq IN "
                "(SELECT seq FROM outbox ORDER BY seq LIMIT ?) RETURNING seq", (count,)) as cur:
            return [int(r[0]) async for r in cur]

    def _forget(self, gone: list[int], why: str) -> None:
        if not gone:
            return
        self.rows -= len(gone)
        self.dropped += len(gone)
        self.first_seq = max(self.first_seq, max(gone) + 1)
        log.error("outbox_dropped", path=self.path, count=len(gone), why=why,
                  first=min(gone), last=max(gone))

    async def expire(self, now: float | None = None) -> int:
        """Drop rows older than ``max_age``; return how many."""
        cutoff = (now if now is not None else time.time()) - self.max_age
        return await asyncio.shield(self._expire(cutoff))

    async def _expire(self, cutoff: float) -> int:
        async with self._lock:
            try:
                async with self._db.execute(
                        "DELETE FROM outbox WHERE created < ? RETURNING seq", (cutoff,)) as cur:
                    gone = [int(r[0]) async for r in cur]
            except sqlite3.Error as exc:
                self._write_failed("expire", exc)
                return 0
            self._forget(gone, why="age")
        return len(gone)

    async def acknowledge(self, upto: int) -> int:
        """Delete every row with seq <= ``upto``; return how many went.

        Shielded: the publisher's ack task is cancelled when its connection drops, and a
        DELETE that reached the database must be counted, or ``rows`` stays too high and
        ``drained`` never returns. A DELETE the disk cannot take (WAL pages need space)
        is logged and counted; the rows go with the next acknowledgement.
        """
        if upto < self.first_seq:
            return 0
        return await asyncio.shield(self._acknowledge(upto))

    async def _acknowledge(self, upto: int) -> int:
        async with self._lock:
            try:
                cur = await self._db.execute("DELETE FROM outbox WHERE seq <= ?", (upto,))
            except sqlite3.Error as exc:
                self._write_failed("acknowledge", exc)
                return 0
            deleted = cur.rowcount
            await cur.close()
            self.rows -= deleted
            self.first_seq = max(self.first_seq, upto + 1)
        self.changed.set()
        return deleted

    def _write_failed(self, what: str, exc: sqlite3.Error, lost: int = 0) -> None:
        """Count a failed write; log the first of a run at once, then once a minute."""
        self.write_failures += 1
        self.dropped += lost
        self._failing_lost += lost
        now = time.monotonic()
        if self._failing_since is None or now - self._failing_logged >= FAILURE_LOG_EVERY:
            log.error("outbox_write_failed", path=self.path, op=what, cause=str(exc),
                      lost=lost, lost_in_run=self._failing_lost,
                      failures=self.write_failures)
            self._failing_logged = now
        if self._failing_since is None:
            self._failing_since = now
        self.failing.set()

    def _write_ok(self) -> None:
        if self._failing_since is not None:
            log.warning("outbox_write_recovered", path=self.path,
                        lost_in_run=self._failing_lost,
                        seconds=round(time.monotonic() - self._failing_since, 1))
            self._failing_since = None
            self._failing_lost = 0
            self.failing.set()

    async def drained(self) -> None:
        """Return once every row is acknowledged and deleted (callers bound the wait)."""
        while self.rows > 0:
            self.changed.clear()
            if self.rows > 0:
                await self.changed.wait()

    async def read(self, start: int, limit: int) -> list[OutboxRow]:
        """Rows with seq >= ``start``, in order."""
        async with self._db.execute(
                "SELECT seq, topic, body, created FROM outbox WHERE seq >= ? ORDER BY seq "
                "LIMIT ?", (start, limit)) as cur:
            return [OutboxRow(int(s), str(t), bytes(b), float(c)) async for s, t, b, c in cur]
