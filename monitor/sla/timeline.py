"""Piecewise-constant timelines: lists of ``(start, end, value)`` over ``[a, b)``.

Everything the SLA needs reduces to two operations on them: turn one source's runs
into the stretches it vouches for (:func:`source_cover`), and sweep several
timelines at once, computing a value for each elementary stretch between their
boundaries (:func:`sweep`). Adjacent stretches of equal value are merged, so a
month of an untroubled service is one segment.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import TypeVar

from monitor.sla.ledger import Run

__all__ = ["Segment", "clip", "combine_sources", "source_cover", "sweep"]

V = TypeVar("V")
Segment = tuple[float, float, V]


def source_cover(runs: Sequence[Run], a: float, b: float) -> list[tuple[float, float, str]]:
    """The stretches within [a, b) that one source's runs (sorted by start) vouch for:
    each run from its first observation until its last stops standing, or the next
    run begins."""
    out: list[tuple[float, float, str]] = []
    for i, run in enumerate(runs):
        end = run.last + run.validity
        if i + 1 < len(runs):
            end = min(end, runs[i + 1].start)
        s, e = max(run.start, a), min(end, b)
        if s < e:
            out.append((s, e, run.state))
    return out


def sweep(timelines: Sequence[Sequence[tuple[float, float, V]]], a: float, b: float,
          fn: Callable[[list[V | None]], object]) -> list[tuple[float, float, object]]:
    """``fn`` of every timeline's value (None where it has none) on each elementary
    stretch of [a, b), merged where ``fn`` gives the same value."""
    if a >= b:
        return []
    points = {a, b}
    for timeline in timelines:
        for s, e, _ in timeline:
            if s < b and e > a:
                points.add(max(s, a))
                points.add(min(e, b))
    bounds = sorted(points)
    index = [0] * len(timelines)
    out: list[tuple[float, float, object]] = []
    for x, y in itertools.pairwise(bounds):
        values: list[V | None] = []
        for k, timeline in enumerate(timelines):
            i = index[k]
            while i < len(timeline) and timeline[i][1] <= x:
                i += 1
            index[k] = i
            values.append(timeline[i][2] if i < len(timeline) and timeline[i][0] <= x
                          else None)
        value = fn(values)
        if out and out[-1][2] == value and out[-1][1] == x:
            out[-1] = (out[-1][0], y, value)
        else:
            out.append((x, y, value))
    return out


def combine_sources(covers: Sequence[Sequence[tuple[float, float, str]]], a: float, b: float
                    ) -> list[tuple[float, float, object]]:
    """One component's state from all the sources that watch it: up if any source
    saw it up, else down if any saw it down, else unknown (nobody could tell)."""
    def pick(values: list[str | None]) -> str:
        if "up" in values:
            return "up"
        if "down" in values:
            return "down"
        return "unknown"
    return sweep(covers, a, b, pick)


def clip(segments: Sequence[tuple[float, float, V]], a: float, b: float
         ) -> list[tuple[float, float, V]]:
    return [(max(s, a), min(e, b), v) for s, e, v in segments if s < b and e > a]
