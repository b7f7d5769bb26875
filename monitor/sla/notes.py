"""Plain-language incident notes on a municipality's status page ("driftsmeldinger"):
what the centre tells the municipality's readers about an outage while it lasts —
what is affected, what is being done, when it is expected back — and that it is over.

A note belongs to one municipality (its text is written for that municipality's
readers, and no other sees it), may name some of that municipality's services, gets
updates, and is resolved. ``changed`` orders a note's versions: the engines share each
change, and the later version wins at both.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from monitor.config import Config
from monitor.sla.report import Text, services_of
from monitor.store.db import Store

__all__ = ["NoteUpdate", "StatusNote", "notes_of", "shown_notes"]

RESOLVED_SHOWN_SECONDS = 3 * 86400  # a resolved note stays on the page this long


class NoteUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    at: datetime
    text: Text
    by: str


class StatusNote(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    municipality: str
    text: Text
    services: list[str] = []  # none: the municipality's services in general
    id: str = ""
    created_by: str = ""
    created_at: datetime | None = None
    updates: list[NoteUpdate] = []
    resolved_at: datetime | None = None
    changed: float = 0.0  # when this version was made (seconds since the epoch)

    def check(self, config: Config) -> None:
        theirs = {s.id for s in services_of(config, self.municipality)}
        for service in self.services:
            if service not in theirs:
                raise ValueError(f"{service!r} is not a service of {self.municipality!r}")
        if not self.text.strip():
            raise ValueError("text is empty")


def shown_notes(notes: list[StatusNote], now: float) -> list[StatusNote]:
    """Those a status page shows: open ones, and those resolved in the last three
    days; open ones first, newest first within each."""
    shown = [n for n in notes if n.resolved_at is None
             or now - n.resolved_at.timestamp() < RESOLVED_SHOWN_SECONDS]
    return sorted(shown, key=lambda n: (n.resolved_at is not None,
                                        -(n.created_at.timestamp() if n.created_at else 0)))


async def notes_of(store: Store, municipality: str) -> list[StatusNote]:
    """The municipality's notes (not deleted), the latest changed first."""
    notes = [msgspec.json.decode(b, type=StatusNote) for b in await store.notes(municipality)]
    return sorted(notes, key=lambda n: -n.changed)
