"""Counter rates with exact expected values: steady, 32-bit wrap, resets, reboots."""

from __future__ import annotations

import pytest

from monitor.counters import counter_rate, rebooted


@pytest.mark.parametrize(("prev", "cur", "kind", "reboot", "rate"), [
    (1_000, 61_000, "counter64", False, 1_000.0),                 # steady
    (4_294_967_000, 704, "counter32", False, 1_000 / 60),          # one 32-bit wrap
    (2**64 - 100, 500, "counter64", False, None),                  # 64-bit going back: reset
    (3_000_000_000, 4_000_000_000, "counter32", False, 1_000_000_000 / 60),
    (4_000_000_000, 3_900_000_000, "counter32", False, None),      # back by little: a reset
    (5_000, 100, "counter64", True, None),                         # rebooted
    (5_000, 5_000, "counter32", False, 0.0),
    (10, 20, "counter", False, 10 / 60),
    (20, 10, "counter", False, None),
])
def test_counter_rate(prev: float, cur: float, kind: str, reboot: bool,
                      rate: float | None) -> None:
    """Each step over 60 s gives exactly this rate, or None where none can be told."""
    assert rate == counter_rate(prev, 1_000.0, cur, 1_060.0, kind, reboot=reboot)


def test_no_rate_without_elapsed_time() -> None:
    assert counter_rate(1, 5.0, 2, 5.0, "counter64") is None
    assert counter_rate(1, 6.0, 2, 5.0, "counter64") is None


def test_reboot_is_uptime_going_back() -> None:
    """sysUpTime lower than before is a reboot; higher, equal or unknown is not."""
    assert [True, False, False, False] == [
        rebooted(86_400.0, 12.5), rebooted(12.5, 86_400.0), rebooted(10.0, 10.0),
        rebooted(None, 5.0)]
