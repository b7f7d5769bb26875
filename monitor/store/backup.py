"""Backup of an engine's store while the engine runs.

SQLite's online backup API, from a connection of its own: in WAL mode a reader does
not block the engine's writes, and copying every page in one step reads one
consistent snapshot. The copy is checked (``PRAGMA integrity_check``) before it is
called good. Restore is a file copy with the engine stopped.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Final

__all__ = ["backup", "for_the_peer"]


def backup(source: str | Path, target: str | Path) -> dict[str, int]:
    """Copy ``source`` to ``target``; return row counts of the main tables."""
    source, target = Path(source), Path(target)
    if not source.exists():
        raise FileNotFoundError(f"no store at {source}")
    if target.exists():
        raise FileExistsError(f"{target} exists; a backup never overwrites")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    try:
        dst = sqlite3.connect(partial)
        try:
            src.backup(dst, pages=-1)  # one step: one consistent snapshot
            (verdict,) = dst.execute("PRAGMA integrity_check").fetchone()
            if verdict != "ok":
                raise sqlite3.DatabaseError(f"the copy is not sound: {verdict}")
            counts = {table: int(dst.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
                      for table in ("source_progress", "device_status", "alert", "audit")}
        finally:
            dst.close()
    finally:
        src.close()
    partial.rename(target)
    return counts


# What is this engine's own and not to be taken over by the engine rebuilt from a copy:
# messages still to deliver (the peer delivers them) and the peer's escalation chains.
_THE_PEERS_OWN: Final = ("DELETE FROM notification WHERE state IN ('queued', 'sending')",
                         "DELETE FROM escalation")


def for_the_peer(source: str | Path, target: str | Path) -> dict[str, int]:
    """A backup of ``source`` for the other location's engine to start from: the same
    history (progress, alerts and their log, silences, maintenance, audit, SLA ledger,
    notification log), without what only this engine sends."""
    counts = backup(source, target)
    db = sqlite3.connect(target)
    try:
        with db:
            for statement in _THE_PEERS_OWN:
                db.execute(statement)
        db.execute("VACUUM")
    finally:
        db.close()
    return counts
