"""Exactly-once admission of events by (src, seq), as a table of cases."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.sequencing import Verdict, admit


@pytest.mark.parametrize(("applied", "seq", "floor", "verdict", "base", "skipped"), [
    (None, 1, None, Verdict.APPLY, 0, 0),        # first contact, first event
    (None, 40, None, Verdict.APPLY, 39, 0),      # first contact mid-stream, no floor
    (None, 40, 35, Verdict.GAP, 34, 0),          # first contact: 35..39 still held, wait
    (None, 35, 35, Verdict.APPLY, 34, 0),
    (10, 11, None, Verdict.APPLY, 10, 0),        # the next one
    (10, 10, None, Verdict.DUPLICATE, 10, 0),    # QoS 1 redelivery
    (10, 3, None, Verdict.DUPLICATE, 10, 0),
    (10, 13, None, Verdict.GAP, 10, 0),          # 11, 12 lost in a broker crash
    (10, 13, 12, Verdict.GAP, 11, 1),            # 11 dropped at the source, 12 is due
    (10, 13, 13, Verdict.APPLY, 12, 2),          # 11, 12 dropped at the source
    (10, 13, 5, Verdict.GAP, 10, 0),             # a floor behind us changes nothing
])
def test_admission_table(applied: int | None, seq: int, floor: int | None, verdict: Verdict,
                         base: int, skipped: int) -> None:
    """Each case decides apply/duplicate/gap and where the source's progress starts."""
    got = admit(applied, seq, floor)
    assert (verdict, base, skipped) == (got.verdict, got.base, got.skipped)


@given(st.lists(st.integers(min_value=1, max_value=60), max_size=300))
def test_any_delivery_order_applies_each_at_most_once_and_in_order(deliveries: list[int]
                                                                   ) -> None:
    """Whatever arrives, in whatever order and how often, is applied once, in order."""
    applied: int | None = 0
    seen: list[int] = []
    for seq in [*deliveries, *range(1, 61)]:  # the resend after all fills every gap
        result = admit(applied, seq, None)
        applied = result.base
        if result.verdict is Verdict.APPLY:
            seen.append(seq)
            applied = seq
    assert list(range(1, 61)) == seen
