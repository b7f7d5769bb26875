"""Row shapes the store keeps for the features above it, defined below both so that
the store imports no feature (tests/unit/test_imports.py)."""

from __future__ import annotations

__all__ = ["LateRow", "RunRow"]

RunRow = tuple[str, str, float, float, str, float]
"""One SLA run: component, src, start, last, state, validity (monitor.sla.ledger)."""

LateRow = tuple[str, str, float, str, float]
"""An observation of a closed SLA month, kept aside: component, src, ts, state,
received (monitor.sla.ledger)."""
