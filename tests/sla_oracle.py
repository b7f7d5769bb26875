"""A brute-force SLA oracle: the state of every second, decided from scratch.

Written to be obviously right rather than fast, and independently of
monitor.sla.compute: no runs, no sweeps, no interval arithmetic. For each second it
asks each source for its latest observation at or before that second, combines as
the README's SLA policy says, and counts. Service hours come from
``Schedule.is_open`` (not ``open_intervals``, which the ledger uses).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from monitor.officehours import Schedule
from monitor.sla.settings import ServiceSpec


@dataclass(frozen=True)
class Obs:
    component: str
    src: str
    seq: int
    ts: int
    state: str
    validity: int


@dataclass
class OracleResult:
    seconds: dict[str, int] = field(default_factory=dict)
    counted_up: int = 0
    counted_down: int = 0
    incidents: int = 0


def _leaf_state(sources: Sequence[Sequence[Obs]], t: int) -> str:
    """Each source's observations sorted by (ts, seq): its latest at or before t."""
    states = []
    for observations in sources:
        i = bisect.bisect_right(observations, t, key=lambda o: o.ts)
        if i > 0 and t < observations[i - 1].ts + observations[i - 1].validity:
            states.append(observations[i - 1].state)
    if "up" in states:
        return "up"
    if "down" in states:
        return "down"
    return "unknown"


def _service_state(spec: ServiceSpec, services: Mapping[str, ServiceSpec],
                   leaf: Mapping[str, tuple[str, bool]]) -> tuple[str, str]:
    """(state, underlying) of a service; state may be 'maintenance'."""
    actual, planned = [], []
    for ref in spec.depends.refs:
        kind, _, name = ref.partition(":")
        if kind == "service":
            state, under = _service_state(services[name], services, leaf)
            if state == "maintenance":
                actual.append(under)
                planned.append("up")
            else:
                actual.append(state)
                planned.append(state)
        else:
            state, covered = leaf[ref]
            actual.append(state)
            planned.append("up" if covered else state)
    k = spec.depends.required

    def judge(members: list[str]) -> str:
        good = [m for m in members if m in ("up", "degraded")]
        unknown = [m for m in members if m == "unknown"]
        if len(good) >= k:
            return "degraded" if any(m in ("down", "degraded") for m in members) else "up"
        if len(good) + len(unknown) >= k:
            return "unknown"
        return "down"

    real, plan = judge(actual), judge(planned)
    if real == "up":
        return "up", ""
    if real == "degraded":
        return ("up", "") if plan == "up" else ("degraded", "")
    if plan in ("up", "degraded"):
        return "maintenance", real
    return real, ""


def leaves_of(spec: ServiceSpec, services: Mapping[str, ServiceSpec]) -> list[str]:
    out: list[str] = []
    for ref in spec.depends.refs:
        kind, _, name = ref.partition(":")
        for leaf in (leaves_of(services[name], services) if kind == "service" else [ref]):
            if leaf not in out:
                out.append(leaf)
    return out


def oracle(spec: ServiceSpec, services: Mapping[str, ServiceSpec],
           observations: Sequence[Obs],
           maintenance: Mapping[str, Sequence[tuple[int, int]]],
           corrections: Sequence[tuple[int, int, str]],
           schedule: Schedule | None, start: int, end: int, step: int = 1) -> OracleResult:
    """``step``: seconds per evaluation; exact when every observation, validity and
    boundary is a multiple of it (a scripted month on a minute grid)."""
    leaves = leaves_of(spec, services)
    per_leaf: dict[str, list[list[Obs]]] = {}
    for ref in leaves:
        by_src: dict[str, list[Obs]] = {}
        for o in observations:
            if o.component == ref:
                by_src.setdefault(o.src, []).append(o)
        per_leaf[ref] = [sorted(v, key=lambda o: (o.ts, o.seq)) for v in by_src.values()]
    states: list[tuple[str, str]] = []
    for t in range(start, end, step):
        values = {ref: (_leaf_state(per_leaf[ref], t),
                        any(a <= t < b for a, b in maintenance.get(ref, ())))
                  for ref in leaves}
        state, under = _service_state(spec, services, values)
        if state in ("down", "degraded", "unknown", "maintenance"):
            kinds = [kind for a, b, kind in corrections if a <= t < b]
            if kinds:
                under = under if state == "maintenance" else state
                state = "excluded" if "excluded" in kinds else "maintenance"
        states.append((state, under))
    # blips: a down stretch shorter than the policy's limit counts as up
    limit = spec.policy.ignore_blips_under
    i = 0
    while i < len(states):
        if states[i][0] != "down":
            i += 1
            continue
        j = i
        while j < len(states) and states[j][0] == "down":
            j += 1
        if (j - i) * step < limit:
            for k in range(i, j):
                states[k] = ("up", "")
        i = j
    result = OracleResult(seconds=dict.fromkeys(
        ("service_hours", "up", "degraded", "down", "unknown", "maintenance", "excluded"), 0))
    policy = spec.policy
    down_now = False
    for offset, (state, under) in enumerate(states):
        t = start + offset * step
        counted = state
        if state == "maintenance":
            counted = {"excluded": "excluded", "up": "up"}.get(policy.maintenance, under)
        if counted == "degraded":
            counted = policy.degraded
        elif counted == "unknown":
            counted = policy.unknown
        # incidents: maximal counted-down stretches in wall time with some in-hours time
        if counted == "down" and not down_now:
            down_now, in_hours = True, False
        elif counted != "down" and down_now:
            down_now = False
            result.incidents += in_hours
        if schedule is not None and not schedule.is_open(datetime.fromtimestamp(t, UTC)):
            continue
        if counted == "down":
            in_hours = True
        result.seconds["service_hours"] += step
        result.seconds[state] += step
        if counted == "up":
            result.counted_up += step
        elif counted == "down":
            result.counted_down += step
    if down_now:
        result.incidents += in_hours
    return result
