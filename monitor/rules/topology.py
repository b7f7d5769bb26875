"""What each device reports, and what that means behind a parent that is down.

A device that reports down while it is cut off from the centre is *unreachable*: a
``state`` rule on ``down`` does not see it as down, and any other alert about it is
muted with reason ``topology`` (monitor.rules.muting). Cut off: fewer of its parents
reach it than it needs (one, unless ``parents_needed`` says more), a parent reaching
it when that parent is neither down nor cut off itself. With one parent that is "anything
on its path to the centre is down"; with a redundant pair, both sides down.
"""

from __future__ import annotations

from collections.abc import Callable

from monitor.rules.inventory import Inventory

__all__ = ["Topology", "Uplinks", "cut_off"]

Uplinks = Callable[[str], tuple[tuple[str, ...], int]]  # device -> (parents, needed)


def cut_off(device: str, uplinks: Uplinks, is_down: Callable[[str], bool]) -> bool:
    """Whether ``device`` is cut off from the centre (the one rule, for the rules and
    for the console's statuses)."""
    known: dict[str, bool] = {}

    def walk(node: str, seen: frozenset[str]) -> bool:
        if node in known:
            return known[node]
        parents, needed = uplinks(node)
        if not parents:
            return False
        here = seen | {node}
        reaching = sum(1 for p in parents
                       if p not in here and not is_down(p) and not walk(p, here))
        known[node] = result = reaching < needed
        return result

    return walk(device, frozenset())


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
        return cut_off(device, self.inventory.uplinks,
                       lambda d: self._raw.get(d) in ("down", "unreachable"))
