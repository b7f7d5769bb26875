"""What each device reports, and what that means behind a parent that is down.

A device that reports down while something on its path to the centre is down is
*unreachable*: a ``state`` rule on ``down`` does not see it as down, and any other
alert about it is muted with reason ``topology`` (monitor.rules.muting).
"""

from __future__ import annotations

from monitor.rules.inventory import Inventory

__all__ = ["Topology"]


class Topology:
    def __init__(self, inventory: Inventory) -> None:
        self.inventory = inventory
        self._raw: dict[str, str | None] = {}

    def observe(self, device: str, state: str | None) -> bool:
        """Take a device's reported state; True when whether it is down changed (and so
        the effective state of everything behind it)."""
        before = self._raw.get(device)
        self._raw[device] = state
        return (before == "down") != (state == "down")

    def effective_state(self, device: str) -> str | None:
        raw = self._raw.get(device)
        if raw == "down" and self.parent_down(device):
            return "unreachable"
        return raw

    def parent_down(self, device: str) -> bool:
        return any(self._raw.get(a) in ("down", "unreachable")
                   for a in self.inventory.ancestors(device))
