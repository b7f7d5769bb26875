"""Which incident notes a status page shows, in which order."""

from __future__ import annotations

from datetime import UTC, datetime

from monitor.sla.notes import StatusNote, shown_notes

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC).timestamp()


def _note(nid: str, created_h_ago: float, resolved_h_ago: float | None) -> StatusNote:
    return StatusNote(
        municipality="alta", text=nid, id=nid,
        created_at=datetime.fromtimestamp(NOW - created_h_ago * 3600, UTC),
        resolved_at=None if resolved_h_ago is None
        else datetime.fromtimestamp(NOW - resolved_h_ago * 3600, UTC))


def test_open_first_then_resolved_in_the_last_three_days_newest_first() -> None:
    notes = [_note("old-open", 100, None), _note("resolved-2d", 50, 48),
             _note("resolved-71h59", 80, 71 + 59 / 60), _note("resolved-72h", 80, 72),
             _note("new-open", 1, None), _note("resolved-1h", 3, 1)]
    # 72 h after its resolution a note leaves the page (3 × 86,400 s, not <)
    assert ["new-open", "old-open", "resolved-1h", "resolved-2d", "resolved-71h59"] == [
        n.id for n in shown_notes(notes, NOW)]
