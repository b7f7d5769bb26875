"""One aiosqlite connection in WAL mode, migrated by numbered scripts.

The engine is the only writer. Everything one batch of events changes — source
progress, device status, dead letters — is written in one transaction, and the
acknowledgement to the collectors is sent only after that transaction commits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol, Self

import aiosqlite
import structlog

from monitor.rows import LateRow, RunRow
from monitor.secrets import private_file


class RegistrationChange(Protocol):
    """A registration's version and its audit entry (monitor.registration's)."""

    @property
    def actor(self) -> str: ...
    @property
    def action(self) -> str: ...
    def store_row(self) -> tuple[str, str, str, float, bytes]: ...

__all__ = ["MIGRATIONS", "AlertChanges", "DeadLetter", "DeviceRow", "Store"]

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
    # 2: alerts, their log, silences, maintenance windows, the audit log, engine facts
    """
    CREATE TABLE alert (
        fingerprint TEXT PRIMARY KEY,
        rule        TEXT NOT NULL,
        state       TEXT NOT NULL,          -- pending, firing, resolved
        body        TEXT NOT NULL,          -- the whole alert as JSON
        updated     REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX alert_state ON alert (state);
    CREATE TABLE alert_log (
        id          INTEGER PRIMARY KEY,
        fingerprint TEXT NOT NULL,
        ts          REAL NOT NULL,
        state       TEXT NOT NULL,
        detail      TEXT
    );
    CREATE INDEX alert_log_fingerprint ON alert_log (fingerprint, ts);
    CREATE TABLE silence (
        id          TEXT PRIMARY KEY,
        body        TEXT NOT NULL,
        ends_at     REAL NOT NULL,
        deleted_at  REAL
    ) WITHOUT ROWID;
    CREATE TABLE maintenance (
        id          TEXT PRIMARY KEY,
        body        TEXT NOT NULL,
        deleted_at  REAL
    ) WITHOUT ROWID;
    CREATE TABLE audit (
        id          INTEGER PRIMARY KEY,
        ts          REAL NOT NULL,
        actor       TEXT NOT NULL,
        action      TEXT NOT NULL,
        target      TEXT NOT NULL,
        detail      TEXT NOT NULL
    );
    CREATE TABLE engine_fact (
        key         TEXT PRIMARY KEY,
        value       REAL NOT NULL
    ) WITHOUT ROWID;
    """,
    # 3: notifications: the delivery outbox, the notification log, escalation chains
    """
    CREATE TABLE notification (
        id          INTEGER PRIMARY KEY,
        dedup       TEXT NOT NULL UNIQUE,    -- one message per flush and recipient
        receiver    TEXT NOT NULL,
        body        BLOB NOT NULL,           -- the rendered message (JSON)
        created     REAL NOT NULL,
        next_at     REAL NOT NULL,
        attempts    INTEGER NOT NULL DEFAULT 0,
        state       TEXT NOT NULL,           -- queued, sending, sent, failed, handed_over
        detail      TEXT,
        sent_at     REAL
    );
    CREATE INDEX notification_due ON notification (state, next_at);
    CREATE INDEX notification_sent ON notification (receiver, sent_at);
    CREATE TABLE nflog (
        key         TEXT PRIMARY KEY,
        body        BLOB NOT NULL,
        updated     REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE escalation (
        grp         TEXT PRIMARY KEY,
        body        BLOB NOT NULL,
        updated     REAL NOT NULL
    ) WITHOUT ROWID;
    """,
    # 4: the SLA ledger's runs of observations, and corrections to it
    """
    CREATE TABLE sla_run (
        component   TEXT NOT NULL,           -- device:ID or check:ID
        src         TEXT NOT NULL,           -- the collector that observed it
        start       REAL NOT NULL,           -- first observation of the run
        last        REAL NOT NULL,           -- last observation of the run
        state       TEXT NOT NULL,           -- up, down, unknown
        validity    REAL NOT NULL,           -- how long the last observation stands
        PRIMARY KEY (component, src, start)
    ) WITHOUT ROWID;
    CREATE INDEX sla_run_last ON sla_run (component, last);
    CREATE TABLE sla_correction (
        id          TEXT PRIMARY KEY,
        body        TEXT NOT NULL,
        deleted_at  REAL
    ) WITHOUT ROWID;
    """,
    # 5: seqs given up on per source, kept across restarts: a loss stays on record
    """
    ALTER TABLE source_progress ADD COLUMN skipped INTEGER NOT NULL DEFAULT 0;
    """,
    # 6: observations that came after their month's SLA figures were closed
    """
    CREATE TABLE sla_late (
        component   TEXT NOT NULL,
        src         TEXT NOT NULL,
        ts          REAL NOT NULL,           -- when it was observed
        state       TEXT NOT NULL,
        received    REAL NOT NULL            -- when the engine got it
    );
    CREATE INDEX sla_late_ts ON sla_late (ts);
    """,
    # 7: incident notes on the municipalities' status pages, latest version of each
    """
    CREATE TABLE status_note (
        id           TEXT PRIMARY KEY,
        municipality TEXT NOT NULL,
        body         TEXT NOT NULL,
        changed      REAL NOT NULL,          -- the version's time: the later one wins
        deleted_at   REAL
    ) WITHOUT ROWID;
    CREATE INDEX status_note_municipality ON status_note (municipality);
    """,
    # 8: host agents that registered themselves, the latest version of each
    """
    CREATE TABLE registration (
        device       TEXT PRIMARY KEY,
        municipality TEXT NOT NULL,
        status       TEXT NOT NULL,          -- accepted, pending, rejected
        changed      REAL NOT NULL,          -- the version's time: the later one wins
        body         BLOB NOT NULL
    ) WITHOUT ROWID;
    """,
    # 9: each switch's neighbour tables as last kept (monitor.links)
    """
    CREATE TABLE neighbour_report (
        device   TEXT PRIMARY KEY,
        body     BLOB NOT NULL,              -- [[neighbour, last seen], ...]
        updated  REAL NOT NULL
    ) WITHOUT ROWID;
    """,
)
_PUT_REGISTRATION: Final = (
    "INSERT INTO registration (device, municipality, status, changed, body) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (device) DO UPDATE SET "
    "municipality = excluded.municipality, status = excluded.status, "
    "changed = excluded.changed, body = excluded.body")

DEAD_LETTER_KEEP: Final = 10_000
_PUT_RUNS: Final = (
    "INSERT INTO sla_run (component, src, start, last, state, validity) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (component, src, start) DO "
    "UPDATE SET last = excluded.last, state = excluded.state, validity = excluded.validity")


@dataclass(slots=True)
class AlertChanges:
    """What the rules changed since the last write: alerts (as JSON bodies), pending
    alerts that were dropped, and the log of transitions."""

    upsert: list[tuple[str, str, str, bytes]] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    log: list[tuple[str, float, str, str | None]] = field(default_factory=list)
    evaluated_at: float | None = None

    def __bool__(self) -> bool:
        return bool(self.upsert or self.dropped or self.log or self.evaluated_at)


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


log = structlog.get_logger(__name__)

Work = Callable[[aiosqlite.Connection], Awaitable[None]]


class Store:
    """The engine's store; use as ``async with Store.open(path) as store``."""

    def __init__(self, db: aiosqlite.Connection, path: str) -> None:
        self._db = db
        self.path = path
        # aiosqlite runs one statement at a time, but a transaction spans several awaits:
        # nothing else may start one in between.
        self._tx = asyncio.Lock()
        # Transactions whose callers were cancelled: they run on, and settled() says
        # how they ended.
        self._orphans: list[asyncio.Future[None]] = []

    @classmethod
    async def open(cls, path: str | Path) -> Self:
        path = str(path)
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            private_file(path)
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
        async with self._tx:  # a transaction still running ends first
            await self._db.close()

    async def _transaction(self, work: Work) -> None:
        """Run ``work`` in one IMMEDIATE transaction: all of it or none, and to its end.

        Shielded from the caller's cancellation. The engine's session is torn down when
        the broker goes (its ack task fails and cancels the batch being committed); a
        transaction cut at that await would be rolled back while memory keeps the
        batch, which is never applied again, or — cut at BEGIN — left open, so that
        every later BEGIN fails and the engine stops.
        """
        task = asyncio.ensure_future(self._run_transaction(work))
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(_report_orphan)
            self._orphans.append(task)
            raise

    async def settled(self) -> None:
        """Wait for the transactions whose callers were cancelled; raise if one failed.

        The engine calls this before it acknowledges anything in a new session: what it
        acknowledges must be on disk, and a store that failed must stop it.
        """
        orphans, self._orphans = self._orphans, []
        for task in orphans:
            await task

    async def _run_transaction(self, work: Work) -> None:
        async with self._tx:
            db = self._db
            await db.execute("BEGIN IMMEDIATE")
            try:
                await work(db)
                await db.execute("COMMIT")
            except BaseException:
                await db.execute("ROLLBACK")
                raise

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

    async def skipped(self) -> dict[str, int]:
        """Per source that ever lost any: the seqs given up on, across restarts."""
        query = "SELECT src, skipped FROM source_progress WHERE skipped > 0"
        async with self._db.execute(query) as cur:
            return {str(src): int(n) async for src, n in cur}

    async def source_counts(self) -> dict[str, tuple[int, int]]:
        """Per source: (highest seq processed, events applied ever)."""
        async with self._db.execute("SELECT src, applied, events FROM source_progress") as cur:
            return {str(s): (int(a), int(e)) async for s, a, e in cur}

    async def forget_devices(self, devices: Iterable[str]) -> None:
        """The kept status of devices that left the estate (their alerts stay, as
        history)."""
        gone = [(d,) for d in devices]

        async def work(db: aiosqlite.Connection) -> None:
            await db.executemany("DELETE FROM device_status WHERE device = ?", gone)

        if gone:
            await self._transaction(work)

    async def load_devices(self) -> list[DeviceRow]:
        query = "SELECT device, last_seen, state, state_since, reason FROM device_status"
        async with self._db.execute(query) as cur:
            return [DeviceRow(*row) async for row in cur]

    async def commit_batch(self, progress: dict[str, int], devices: Iterable[DeviceRow],
                           dead: Iterable[DeadLetter],
                           counts: dict[str, int] | None = None,
                           alerts: AlertChanges | None = None,
                           runs: list[RunRow] | None = None,
                           skipped: dict[str, int] | None = None,
                           late: list[LateRow] | None = None,
                           registrations: Sequence[RegistrationChange] | None = None,
                           links: Sequence[tuple[str, bytes, float]] | None = None
                           ) -> None:
        """Write one batch's effects — the alerts and SLA runs it changed included, the
        registrations it decided with their audit entries, the neighbour tables it
        brought — in one transaction."""
        async def work(db: aiosqlite.Connection) -> None:
            await self._commit_batch(db, progress, devices, dead, counts or {}, alerts,
                                     runs or [], skipped or {})
            if late:
                await db.executemany("INSERT INTO sla_late (component, src, ts, state, "
                                     "received) VALUES (?, ?, ?, ?, ?)", late)
            for change in registrations or ():
                await self._put_registration(db, change)
            if links:
                await db.executemany(
                    "INSERT INTO neighbour_report (device, body, updated) VALUES (?, ?, ?) "
                    "ON CONFLICT (device) DO UPDATE SET body = excluded.body, "
                    "updated = excluded.updated", links)

        await self._transaction(work)

    async def commit_alerts(self, alerts: AlertChanges) -> None:
        """Write what a rules tick changed (timers, absence, expiry)."""
        async def work(_: aiosqlite.Connection) -> None:
            await self._write_alerts(alerts)

        await self._transaction(work)

    async def _write_alerts(self, alerts: AlertChanges) -> None:
        db = self._db
        now = time.time()
        if alerts.upsert:
            await db.executemany(
                "INSERT INTO alert (fingerprint, rule, state, body, updated) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (fingerprint) DO UPDATE SET "
                "rule = excluded.rule, state = excluded.state, body = excluded.body, "
                "updated = excluded.updated",
                [(fp, rule, state, body, now) for fp, rule, state, body in alerts.upsert])
        if alerts.dropped:
            await db.executemany("DELETE FROM alert WHERE fingerprint = ? AND state = 'pending'",
                                 [(fp,) for fp in alerts.dropped])
        if alerts.log:
            await db.executemany(
                "INSERT INTO alert_log (fingerprint, ts, state, detail) VALUES (?, ?, ?, ?)",
                alerts.log)
        if alerts.evaluated_at is not None:
            await db.execute(
                "INSERT INTO engine_fact (key, value) VALUES ('last_eval', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (alerts.evaluated_at,))

    async def load_alerts(self, resolved_since: float) -> list[bytes]:
        """Bodies of every alert not resolved, and of those resolved since then."""
        query = ("SELECT body FROM alert WHERE state != 'resolved' OR updated >= ?")
        async with self._db.execute(query, (resolved_since,)) as cur:
            return [bytes(row[0]) if isinstance(row[0], bytes) else str(row[0]).encode()
                    async for row in cur]

    async def alert_log(self, fingerprint: str | None = None, limit: int = 1000
                        ) -> list[tuple[str, float, str, str | None]]:
        args: tuple[object, ...] = (limit,)
        query = "SELECT fingerprint, ts, state, detail FROM alert_log ORDER BY id LIMIT ?"
        if fingerprint is not None:
            args = (fingerprint, limit)
            query = ("SELECT fingerprint, ts, state, detail FROM alert_log "
                     "WHERE fingerprint = ? ORDER BY id LIMIT ?")
        async with self._db.execute(query, args) as cur:
            return [(str(a), float(b), str(c), d) async for a, b, c, d in cur]

    async def device_alerts(self, device: str, limit: int = 50) -> list[bytes]:
        """Bodies of the alerts about ``device`` this store holds, newest first
        (resolved ones are kept as long as the alert table keeps them)."""
        query = ("SELECT body FROM alert "
                 "WHERE json_extract(CAST(body AS TEXT), '$.labels.device') = ? "
                 "ORDER BY updated DESC LIMIT ?")
        async with self._db.execute(query, (device, limit)) as cur:
            return [bytes(row[0]) if isinstance(row[0], bytes) else str(row[0]).encode()
                    async for row in cur]

    async def alert_body(self, fingerprint: str) -> bytes | None:
        async with self._db.execute("SELECT body FROM alert WHERE fingerprint = ?",
                                    (fingerprint,)) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        return bytes(row[0]) if isinstance(row[0], bytes) else str(row[0]).encode()

    async def alert_logs(self, fingerprints: Iterable[str], since: float, limit: int = 500
                         ) -> list[tuple[str, float, str, str | None]]:
        """The transitions of several alerts since ``since``, newest first."""
        fps = list(fingerprints)
        if not fps:
            return []
        marks = ",".join("?" * len(fps))
        query = (f"SELECT fingerprint, ts, state, detail FROM alert_log WHERE fingerprint "
                 f"IN ({marks}) AND ts >= ? ORDER BY ts DESC LIMIT ?")
        async with self._db.execute(query, (*fps, since, limit)) as cur:
            return [(str(a), float(b), str(c), d) async for a, b, c, d in cur]

    async def audit_of(self, targets: Iterable[str], limit: int = 200
                       ) -> list[tuple[float, str, str, str, str]]:
        """The audit lines about these targets (``alert/<fp>``, ``silence/<id>``, …),
        newest first."""
        names = list(targets)
        if not names:
            return []
        marks = ",".join("?" * len(names))
        query = (f"SELECT ts, actor, action, target, detail FROM audit WHERE target IN "
                 f"({marks}) ORDER BY id DESC LIMIT ?")
        async with self._db.execute(query, (*names, limit)) as cur:
            return [(float(a), str(b), str(c), str(d), str(e)) async for a, b, c, d, e in cur]

    async def fact(self, key: str) -> float | None:
        async with self._db.execute("SELECT value FROM engine_fact WHERE key = ?",
                                    (key,)) as cur:
            row = await cur.fetchone()
        return float(row[0]) if row else None

    async def put_silence(self, sid: str, body: bytes, ends_at: float, actor: str,
                          action: str, alerts: AlertChanges | None = None) -> None:
        await self._change(
            "INSERT INTO silence (id, body, ends_at) VALUES (?, ?, ?) ON CONFLICT (id) DO "
            "UPDATE SET body = excluded.body, ends_at = excluded.ends_at, deleted_at = NULL",
            (sid, body, ends_at), actor, action, f"silence/{sid}", body, alerts)

    async def delete_silence(self, sid: str, actor: str,
                             alerts: AlertChanges | None = None) -> None:
        await self._change("UPDATE silence SET deleted_at = ? WHERE id = ?",
                           (time.time(), sid), actor, "expire_silence", f"silence/{sid}", b"{}",
                           alerts)

    async def silences(self, since: float) -> list[bytes]:
        query = "SELECT body FROM silence WHERE deleted_at IS NULL AND ends_at >= ?"
        async with self._db.execute(query, (since,)) as cur:
            return [bytes(row[0]) async for row in cur]

    async def put_maintenance(self, mid: str, body: bytes, actor: str, action: str,
                              alerts: AlertChanges | None = None) -> None:
        await self._change(
            "INSERT INTO maintenance (id, body) VALUES (?, ?) ON CONFLICT (id) DO "
            "UPDATE SET body = excluded.body, deleted_at = NULL",
            (mid, body), actor, action, f"maintenance/{mid}", body, alerts)

    async def delete_maintenance(self, mid: str, actor: str,
                                 alerts: AlertChanges | None = None) -> None:
        await self._change("UPDATE maintenance SET deleted_at = ? WHERE id = ?",
                           (time.time(), mid), actor, "delete_maintenance",
                           f"maintenance/{mid}", b"{}", alerts)

    async def maintenance_history(self) -> list[tuple[bytes, float | None]]:
        """Every maintenance window ever planned, with when it was deleted, if it was."""
        async with self._db.execute("SELECT body, deleted_at FROM maintenance") as cur:
            return [(bytes(row[0]), row[1]) async for row in cur]

    # -- SLA ---------------------------------------------------------------------------

    async def sla_runs(self, components: Iterable[str], start: float, end: float,
                       reach: float) -> list[RunRow]:
        """The runs of ``components`` that may bear on [start, end): those observed
        since ``start - reach`` (``reach``: the longest an observation stands)."""
        out: list[RunRow] = []
        query = ("SELECT component, src, start, last, state, validity FROM sla_run "
                 "WHERE component = ? AND last >= ? AND start < ? ORDER BY src, start")
        for component in components:
            async with self._db.execute(query, (component, start - reach, end)) as cur:
                out.extend([(r[0], r[1], r[2], r[3], r[4], r[5]) async for r in cur])
        return out

    async def recent_sla_runs(self, since: float) -> list[RunRow]:
        query = ("SELECT component, src, start, last, state, validity FROM sla_run "
                 "WHERE last >= ? ORDER BY component, src, start")
        async with self._db.execute(query, (since,)) as cur:
            return [(r[0], r[1], r[2], r[3], r[4], r[5]) async for r in cur]

    async def put_sla_runs(self, runs: list[RunRow]) -> None:
        """Write runs outside a batch (imports, benchmarks)."""
        async def work(db: aiosqlite.Connection) -> None:
            await db.executemany(_PUT_RUNS, runs)

        await self._transaction(work)

    async def put_correction(self, cid: str, body: bytes, actor: str) -> None:
        await self._change("INSERT INTO sla_correction (id, body) VALUES (?, ?)",
                           (cid, body), actor, "create_sla_correction",
                           f"sla_correction/{cid}", body)

    async def delete_correction(self, cid: str, actor: str) -> None:
        await self._change("UPDATE sla_correction SET deleted_at = ? WHERE id = ?",
                           (time.time(), cid), actor, "delete_sla_correction",
                           f"sla_correction/{cid}", b"{}")

    async def put_note(self, nid: str, municipality: str, body: bytes, changed: float,
                       actor: str, action: str) -> None:
        """A note's new version (``action``: create_status_note, update_status_note)."""
        await self._change(
            "INSERT INTO status_note (id, municipality, body, changed) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET body = excluded.body, changed = excluded.changed",
            (nid, municipality, body, changed), actor, action, f"status_note/{nid}", body)

    async def delete_note(self, nid: str, actor: str) -> None:
        await self._change("UPDATE status_note SET deleted_at = ? WHERE id = ?",
                           (time.time(), nid), actor, "delete_status_note",
                           f"status_note/{nid}", b"{}")

    async def put_registration(self, change: RegistrationChange) -> None:
        """An operator's decision (or the peer's), with its audit entry."""
        await self._transaction(lambda db: self._put_registration(db, change))

    async def _put_registration(self, db: aiosqlite.Connection,
                                change: RegistrationChange) -> None:
        row = change.store_row()
        await db.execute(_PUT_REGISTRATION, row)
        await self._audit(change.actor, change.action, f"registration/{row[0]}", row[4])

    async def registrations(self) -> list[bytes]:
        async with self._db.execute("SELECT body FROM registration") as cur:
            return [bytes(row[0]) async for row in cur]

    async def neighbour_reports(self) -> list[tuple[str, bytes]]:
        async with self._db.execute("SELECT device, body FROM neighbour_report") as cur:
            return [(row[0], bytes(row[1])) async for row in cur]

    async def note_version(self, nid: str) -> tuple[float, bool] | None:
        """The held version's time, and whether it was deleted; None if never held."""
        query = "SELECT changed, deleted_at IS NOT NULL FROM status_note WHERE id = ?"
        async with self._db.execute(query, (nid,)) as cur:
            row = await cur.fetchone()
        return None if row is None else (float(row[0]), bool(row[1]))

    async def notes(self, municipality: str) -> list[bytes]:
        query = ("SELECT body FROM status_note WHERE municipality = ? "
                 "AND deleted_at IS NULL")
        async with self._db.execute(query, (municipality,)) as cur:
            return [bytes(row[0]) async for row in cur]

    async def late_observations(self, components: Iterable[str], start: float, end: float
                                ) -> list[LateRow]:
        """Observations of ``components`` in [start, end) that came after that time's
        SLA month was closed, oldest first."""
        wanted = list(components)
        if not wanted:
            return []
        marks = ", ".join("?" * len(wanted))
        query = (f"SELECT component, src, ts, state, received FROM sla_late WHERE ts >= ? "
                 f"AND ts < ? AND component IN ({marks}) ORDER BY ts")
        async with self._db.execute(query, (start, end, *wanted)) as cur:
            return [(r[0], r[1], r[2], r[3], r[4]) async for r in cur]

    async def correction_known(self, cid: str) -> bool:
        """Whether a correction with this id was ever stored (deleted ones included)."""
        query = "SELECT 1 FROM sla_correction WHERE id = ?"
        async with self._db.execute(query, (cid,)) as cur:
            return await cur.fetchone() is not None

    async def correction_held(self, cid: str) -> bool:
        query = "SELECT 1 FROM sla_correction WHERE id = ? AND deleted_at IS NULL"
        async with self._db.execute(query, (cid,)) as cur:
            return await cur.fetchone() is not None

    async def corrections(self) -> list[bytes]:
        query = "SELECT body FROM sla_correction WHERE deleted_at IS NULL"
        async with self._db.execute(query) as cur:
            return [bytes(row[0]) async for row in cur]

    async def maintenance_windows(self) -> list[bytes]:
        query = "SELECT body FROM maintenance WHERE deleted_at IS NULL"
        async with self._db.execute(query) as cur:
            return [bytes(row[0]) async for row in cur]

    async def audit(self, actor: str, action: str, target: str, detail: bytes,
                    alerts: AlertChanges | None = None) -> None:
        """Record a change made by a person, with what it did to the alerts."""
        async def work(_: aiosqlite.Connection) -> None:
            await self._audit(actor, action, target, detail)
            if alerts:
                await self._write_alerts(alerts)

        await self._transaction(work)

    async def audit_log(self, limit: int = 100) -> list[tuple[float, str, str, str, str]]:
        query = "SELECT ts, actor, action, target, detail FROM audit ORDER BY id DESC LIMIT ?"
        async with self._db.execute(query, (limit,)) as cur:
            return [(float(a), str(b), str(c), str(d), str(e)) async for a, b, c, d, e in cur]

    async def _audit(self, actor: str, action: str, target: str, detail: bytes) -> None:
        await self._db.execute(
            "INSERT INTO audit (ts, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
            (time.time(), actor, action, target, detail.decode()))

    async def _change(self, sql: str, args: tuple[object, ...], actor: str, action: str,
                      target: str, detail: bytes, alerts: AlertChanges | None = None) -> None:
        """A person's change, its audit entry and what it did to the alerts: one
        transaction."""
        async def work(db: aiosqlite.Connection) -> None:
            await db.execute(sql, args)
            await self._audit(actor, action, target, detail)
            if alerts:
                await self._write_alerts(alerts)

        await self._transaction(work)

    async def _commit_batch(self, db: aiosqlite.Connection, progress: dict[str, int],
                            devices: Iterable[DeviceRow], dead: Iterable[DeadLetter],
                            counts: dict[str, int], alerts: AlertChanges | None,
                            runs: list[RunRow], skipped: dict[str, int]) -> None:
        now = time.time()
        if alerts:
            await self._write_alerts(alerts)
        if runs:
            await db.executemany(_PUT_RUNS, runs)
        await db.executemany(
            "INSERT INTO source_progress (src, applied, events, skipped, updated) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (src) DO UPDATE SET "
            "applied = excluded.applied, events = events + excluded.events, "
            "skipped = skipped + excluded.skipped, updated = excluded.updated",
            [(src, applied, counts.get(src, 0), skipped.get(src, 0), now)
             for src, applied in progress.items()],
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

    # -- notifications -----------------------------------------------------------------

    async def enqueue_notifications(self, messages: Iterable[tuple[str, str, bytes]],
                                    nflog: dict[str, bytes], chains: dict[str, bytes]
                                    ) -> None:
        """Queue (dedup key, receiver, body) messages with the notification log and the
        escalation chains that say they were made: all or nothing."""
        now = time.time()
        rows = [(d, r, b, now, now) for d, r, b in messages]

        async def work(db: aiosqlite.Connection) -> None:
            await db.executemany(
                "INSERT OR IGNORE INTO notification (dedup, receiver, body, created, "
                "next_at, state) VALUES (?, ?, ?, ?, ?, 'queued')", rows)
            await db.executemany(
                "INSERT INTO nflog (key, body, updated) VALUES (?, ?, ?) ON CONFLICT "
                "(key) DO UPDATE SET body = excluded.body, updated = excluded.updated",
                [(k, b, now) for k, b in nflog.items()])
            await db.executemany(
                "INSERT INTO escalation (grp, body, updated) VALUES (?, ?, ?) ON CONFLICT "
                "(grp) DO UPDATE SET body = excluded.body, updated = excluded.updated",
                [(k, b, now) for k, b in chains.items()])

        await self._transaction(work)

    async def due_notifications(self, now: float, limit: int = 100
                                ) -> list[tuple[int, str, bytes, int, float]]:
        query = ("SELECT id, receiver, body, attempts, created FROM notification "
                 "WHERE state = 'queued' AND next_at <= ? ORDER BY id LIMIT ?")
        async with self._db.execute(query, (now, limit)) as cur:
            return [(int(i), str(r), bytes(b), int(a), float(c)) async for i, r, b, a, c in cur]

    async def mark_notification(self, nid: int, state: str, detail: str,
                                next_at: float | None = None, attempts: int | None = None
                                ) -> None:
        async with self._tx:
            await self._db.execute(
                "UPDATE notification SET state = ?, detail = ?, next_at = COALESCE(?, next_at),"
                " attempts = COALESCE(?, attempts), sent_at = CASE WHEN ? = 'sent' THEN ? "
                "ELSE sent_at END WHERE id = ?",
                (state, detail, next_at, attempts, state, time.time(), nid))
            await self._db.commit()

    async def sent_since(self, receiver: str, since: float) -> int:
        query = "SELECT COUNT(*) FROM notification WHERE receiver = ? AND sent_at >= ?"
        async with self._db.execute(query, (receiver, since)) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def notification_counts(self) -> dict[str, int]:
        async with self._db.execute(
                "SELECT state, COUNT(*) FROM notification GROUP BY state") as cur:
            return {str(s): int(n) async for s, n in cur}

    async def notifications(self, limit: int = 1000) -> list[tuple[str, str, bytes, int,
                                                                    str | None]]:
        query = ("SELECT receiver, state, body, attempts, detail FROM notification "
                 "ORDER BY id LIMIT ?")
        async with self._db.execute(query, (limit,)) as cur:
            return [(str(r), str(s), bytes(b), int(a), d) async for r, s, b, a, d in cur]

    async def load_nflog(self) -> dict[str, bytes]:
        async with self._db.execute("SELECT key, body FROM nflog") as cur:
            return {str(k): bytes(b) async for k, b in cur}

    async def load_chains(self) -> dict[str, bytes]:
        async with self._db.execute("SELECT grp, body FROM escalation") as cur:
            return {str(k): bytes(b) async for k, b in cur}

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        query = ("SELECT received_at, topic, src, reason, detail, payload FROM dead_letter "
                 "ORDER BY id DESC LIMIT ?")
        async with self._db.execute(query, (limit,)) as cur:
            return [DeadLetter(*row) async for row in cur]

    async def writable(self) -> bool:
        """For /readyz: can we take the write lock right now?"""
        return await asyncio.shield(self._try_write_lock())

    async def _try_write_lock(self) -> bool:
        async with self._tx:
            try:
                await self._db.execute("BEGIN IMMEDIATE")
            except aiosqlite.Error:
                return False
            await self._db.execute("ROLLBACK")
            return True


def _report_orphan(task: asyncio.Future[None]) -> None:
    """Logged as it ends: its caller is gone, and settled() may come much later."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("store_write_failed", error=repr(exc), caller="cancelled")
