"""Exactly-once application of each source's events, from at-least-once delivery.

Per source the engine keeps ``applied``: the highest ``seq`` up to which every event
was applied (or skipped for good). An event is applied only when it is the next one
(``seq == applied + 1``); anything at or below is a duplicate, anything above is held
back as a gap, and the collector resends from ``applied + 1`` when our ack stops
advancing (go-back-N, as in TCP). ``floor`` says what the source no longer holds:
seqs below it were dropped from its outbox or acknowledged to another engine, so
waiting for them would wait forever.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = ["Admission", "Verdict", "admit"]


class Verdict(Enum):
    APPLY = "apply"
    DUPLICATE = "duplicate"
    GAP = "gap"


@dataclass(frozen=True, slots=True)
class Admission:
    verdict: Verdict
    # ``applied`` to use before applying this event (moved up to floor - 1 if needed)
    base: int
    # seqs given up on because the source no longer holds them
    skipped: int


def admit(applied: int | None, seq: int, floor: int | None) -> Admission:
    """Decide what to do with event ``seq`` of a source whose progress is ``applied``.

    ``applied`` is None for a source never seen: then its first event is taken as the
    start (or its floor, which says where the source's outbox begins).
    """
    start = (floor if floor is not None else seq) - 1
    if applied is None:
        applied, skipped = start, 0
    elif floor is not None and start > applied:
        applied, skipped = start, start - applied
    else:
        skipped = 0
    if seq <= applied:
        return Admission(Verdict.DUPLICATE, applied, skipped)
    if seq == applied + 1:
        return Admission(Verdict.APPLY, applied, skipped)
    return Admission(Verdict.GAP, applied, skipped)
