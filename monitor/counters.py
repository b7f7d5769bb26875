"""Rates from raw SNMP counters, right across 32-bit wraps, resets and reboots.

Collectors publish counters raw with their type; rates are derived here. A 32-bit
counter that goes back wrapped (at 10 Gbit/s ifInOctets wraps every 3.4 s, which is
why the 64-bit ones exist). A 64-bit counter that goes back was reset: no rate. A
device whose uptime went back rebooted: its counters restarted, no rate across it.
Never a negative or absurd rate.
"""

from __future__ import annotations

from typing import Final

__all__ = ["counter_rate", "rebooted"]

WRAP: Final = {"counter32": 2**32, "counter64": 2**64}


def rebooted(previous_uptime: float | None, current_uptime: float | None) -> bool:
    return (previous_uptime is not None and current_uptime is not None
            and current_uptime < previous_uptime)


def counter_rate(previous: float, previous_ts: float, current: float, current_ts: float,
                 kind: str, *, reboot: bool = False) -> float | None:
    """Per-second increase from ``previous`` to ``current``; None where none can be told."""
    elapsed = current_ts - previous_ts
    if elapsed <= 0 or reboot:
        return None
    delta = current - previous
    if delta < 0:
        if kind != "counter32":
            return None  # a 64-bit or unknown-width counter going back was reset
        delta += WRAP["counter32"]
        if delta > WRAP["counter32"] // 2:
            return None  # more than half the range in one step: a reset, not a wrap
    return delta / elapsed
