"""One service's availability over one period, from its components' timelines.

The steps, each a sweep over piecewise-constant timelines (:mod:`.timeline`):

1. each leaf (device or check) has a state — up, down or unknown — and the names
   of the maintenance windows that cover it;
2. the service's state follows its ``depends`` rule, three-valued: ``k`` of ``n``
   up is up (degraded when a member is down), fewer than ``k`` even counting the
   unknown members is down, anything between is unknown. Downtime that only
   maintenance explains — the service would be up with the members under
   maintenance up — is ``maintenance``; redundancy lost to planned work is not
   degradation;
3. corrections reclassify down, degraded and unknown time as ``maintenance`` or
   ``excluded`` (outside the centre's responsibility); up time is never touched;
4. down stretches shorter than the policy's ``ignore_blips_under`` count as up;
5. only service hours count; the policy says how degraded, maintenance and unknown
   time count; availability = up / (up + down).

All times are Unix seconds; service hours come from the schedule in local time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from monitor.officehours import Schedule
from monitor.sla.settings import ServicePolicy, ServiceSpec, parse_ref
from monitor.sla.timeline import sweep

__all__ = ["CorrectionSpan", "Incident", "ServiceResult", "Stretch", "Verdict",
           "evaluate", "leaf_refs", "service_result"]

RANK: Final = {"up": 0, "degraded": 1, "unknown": 2, "down": 3}


@dataclass(frozen=True, slots=True)
class Verdict:
    """A service's state over a stretch, with the leaves that were not up (the cause)
    and the maintenance windows and corrections in play."""

    state: str  # up, degraded, down, unknown, maintenance, excluded
    underlying: str = ""  # for maintenance and excluded: the state it stood for
    causes: tuple[str, ...] = ()
    windows: tuple[str, ...] = ()
    corrections: tuple[str, ...] = ()
    blip: bool = False


@dataclass(frozen=True, slots=True)
class CorrectionSpan:
    id: str
    start: float
    end: float
    kind: str  # maintenance or excluded


@dataclass(frozen=True, slots=True)
class Incident:
    start: float
    end: float
    seconds: float  # within service hours
    causes: tuple[str, ...]
    ongoing: bool = False


@dataclass(frozen=True, slots=True)
class Stretch:
    start: float
    end: float
    seconds: float  # within service hours
    detail: tuple[str, ...] = ()


@dataclass(slots=True)
class ServiceResult:
    service: str
    start: float
    end: float  # the period's end, which may lie in the future
    until: float  # what was counted: the period up to now
    target: float  # ratio
    seconds: dict[str, float] = field(default_factory=dict)
    counted_up: float = 0.0
    counted_down: float = 0.0
    scheduled: float = 0.0  # service-hours seconds in the whole period
    blips_ignored: int = 0
    incidents: list[Incident] = field(default_factory=list)
    maintenance: list[Stretch] = field(default_factory=list)
    unknown: list[Stretch] = field(default_factory=list)
    corrected: list[Stretch] = field(default_factory=list)

    @property
    def achieved(self) -> float | None:
        counted = self.counted_up + self.counted_down
        return self.counted_up / counted if counted > 0 else None

    @property
    def met(self) -> bool | None:
        achieved = self.achieved
        return None if achieved is None else achieved >= self.target - 1e-12

    @property
    def budget_allowed(self) -> float:
        """Downtime the target allows over the whole period: the scheduled time less
        what has been excluded so far."""
        excluded = self.counted_excluded
        return (1.0 - self.target) * max(0.0, self.scheduled - excluded)

    @property
    def counted_excluded(self) -> float:
        counted = self.counted_up + self.counted_down
        return max(0.0, self.seconds.get("service_hours", 0.0) - counted)

    @property
    def budget_remaining(self) -> float:
        return self.budget_allowed - self.counted_down

    @property
    def burn_rate(self) -> float | None:
        """Downtime used against the budget for the elapsed part of the period: 1.0 uses
        the budget up exactly by the period's end."""
        elapsed = self.seconds.get("service_hours", 0.0)
        if self.scheduled <= 0 or elapsed <= 0:
            return None
        share = self.budget_allowed * elapsed / self.scheduled
        if share <= 0:
            return None if self.counted_down == 0 else float("inf")
        return self.counted_down / share


def leaf_refs(spec: ServiceSpec, services: Mapping[str, ServiceSpec]) -> list[str]:
    """Every device and check the service rests on, through other services too."""
    out: dict[str, None] = {}

    def walk(s: ServiceSpec) -> None:
        for ref in s.depends.refs:
            kind, name = parse_ref(ref)
            if kind == "service":
                walk(services[name])
            else:
                out[ref] = None
    walk(spec)
    return list(out)


def _combine(required: int, members: Sequence[str]) -> str:
    ups = sum(1 for m in members if m in ("up", "degraded"))
    if ups >= required:
        impaired = any(m in ("down", "degraded") for m in members)
        return "degraded" if impaired else "up"
    unknown = sum(1 for m in members if m == "unknown")
    return "unknown" if ups + unknown >= required else "down"


LeafValue = tuple[str, tuple[str, ...]]  # state, maintenance windows covering it


def evaluate(spec: ServiceSpec, services: Mapping[str, ServiceSpec],
             leaves: Mapping[str, LeafValue]) -> Verdict:
    """The service's state given each leaf's state and maintenance windows."""
    actual: list[str] = []
    planned: list[str] = []
    causes: list[str] = []
    windows: list[str] = []
    for ref in spec.depends.refs:
        kind, name = parse_ref(ref)
        if kind == "service":
            child = evaluate(services[name], services, leaves)
            causes.extend(child.causes)
            windows.extend(child.windows)
            if child.state == "maintenance":
                actual.append(child.underlying)
                planned.append("up")
            else:
                actual.append(child.state)
                planned.append(child.state)
            continue
        state, covering = leaves[ref]
        actual.append(state)
        planned.append("up" if covering else state)
        if state != "up":
            causes.append(f"{ref} {state}")
        windows.extend(covering)
    required = spec.depends.required
    real = _combine(required, actual)
    causes_t = tuple(dict.fromkeys(causes)) if real != "up" else ()
    windows_t = tuple(dict.fromkeys(windows))
    if real in ("up", "degraded"):
        if real == "degraded" and _combine(required, planned) == "up":
            return Verdict("up", windows=windows_t)
        return Verdict(real, causes=causes_t, windows=windows_t if real != "up" else ())
    if _combine(required, planned) in ("up", "degraded"):
        return Verdict("maintenance", underlying=real, causes=causes_t, windows=windows_t)
    return Verdict(real, causes=causes_t)


def _counted(verdict: Verdict, policy: ServicePolicy) -> str:
    """up, down or excluded: how a stretch counts under the policy."""
    state = verdict.state
    if state == "maintenance":
        if policy.maintenance == "excluded":
            return "excluded"
        if policy.maintenance == "up":
            return "up"
        state = verdict.underlying
    if state == "excluded":
        return "excluded"
    if state == "degraded":
        return policy.degraded
    if state == "unknown":
        return policy.unknown
    return state


def service_result(spec: ServiceSpec, services: Mapping[str, ServiceSpec],
                   leaves: Mapping[str, Sequence[tuple[float, float, object]]],
                   maintenance: Mapping[str, Sequence[tuple[float, float, object]]],
                   corrections: Sequence[CorrectionSpan], schedule: Schedule | None,
                   start: float, end: float, now: float) -> ServiceResult:
    """Availability of ``spec`` over [start, end), counting only up to ``now``.

    ``leaves``: each leaf's full timeline of up/down/unknown over the period;
    ``maintenance``: per leaf, non-overlapping stretches whose value is the tuple of
    window names covering it."""
    until = max(start, min(end, now))
    policy = spec.policy
    result = ServiceResult(spec.id, start, end, until, spec.target_ratio)
    refs = leaf_refs(spec, services)
    timelines: list[Sequence[tuple[float, float, object]]] = []
    for ref in refs:
        timelines.append(leaves[ref])
        timelines.append(maintenance.get(ref, ()))

    def verdict_of(values: list[object]) -> Verdict:
        leaf_values: dict[str, LeafValue] = {}
        for i, ref in enumerate(refs):
            state = values[2 * i]
            covering = values[2 * i + 1]
            leaf_values[ref] = (str(state) if state is not None else "unknown",
                                covering if isinstance(covering, tuple) else ())
        return evaluate(spec, services, leaf_values)

    timeline = sweep(timelines, start, until, verdict_of)
    timeline = _correct(timeline, corrections, start, until)
    timeline, result.blips_ignored = _drop_blips(timeline, policy.ignore_blips_under)
    hours = _hours(schedule, start, end)
    result.scheduled = sum(min(e, end) - max(s, start) for s, e, _ in hours)
    seconds = dict.fromkeys(("service_hours", "up", "degraded", "down", "unknown",
                             "maintenance", "excluded"), 0.0)
    in_hours = sweep([timeline, hours], start, until,
                     lambda v: v[0] if v[1] is not None else None)
    for s, e, value in in_hours:
        if not isinstance(value, Verdict):
            continue
        length = e - s
        seconds["service_hours"] += length
        seconds[value.state] += length
        counted = _counted(value, policy)
        if counted == "up":
            result.counted_up += length
        elif counted == "down":
            result.counted_down += length
    result.seconds = seconds
    result.incidents = _incidents(timeline, in_hours, policy, now)
    result.maintenance = _stretches(in_hours, lambda v: v.state == "maintenance",
                                    lambda v: v.windows)
    result.unknown = _stretches(in_hours, lambda v: v.state == "unknown",
                                lambda v: v.causes)
    result.corrected = _stretches(in_hours, lambda v: bool(v.corrections),
                                  lambda v: v.corrections)
    return result


def _correct(timeline: list[tuple[float, float, object]], corrections: Sequence[CorrectionSpan],
             start: float, end: float) -> list[tuple[float, float, object]]:
    if not corrections:
        return timeline
    spans = [[(c.start, c.end, c)] for c in corrections]

    def apply(values: list[object]) -> object:
        verdict = values[0]
        assert isinstance(verdict, Verdict)
        active = [c for c in values[1:] if isinstance(c, CorrectionSpan)]
        if not active or verdict.state in ("up", "excluded"):
            return verdict
        kind = "excluded" if any(c.kind == "excluded" for c in active) else "maintenance"
        underlying = verdict.underlying if verdict.state == "maintenance" else verdict.state
        return Verdict(kind, underlying=underlying, causes=verdict.causes,
                       windows=verdict.windows,
                       corrections=tuple(sorted(c.id for c in active)))
    return sweep([timeline, *spans], start, end, apply)


def _drop_blips(timeline: list[tuple[float, float, object]], under: float
                ) -> tuple[list[tuple[float, float, object]], int]:
    if under <= 0:
        return timeline, 0
    out = list(timeline)
    blips = 0
    i = 0
    while i < len(out):
        verdict = out[i][2]
        if not (isinstance(verdict, Verdict) and verdict.state == "down"):
            i += 1
            continue
        j = i
        while j + 1 < len(out) and out[j + 1][0] == out[j][1]:
            following = out[j + 1][2]
            if not (isinstance(following, Verdict) and following.state == "down"):
                break
            j += 1
        if out[j][1] - out[i][0] < under:
            blips += 1
            for k in range(i, j + 1):
                s, e, v = out[k]
                assert isinstance(v, Verdict)
                out[k] = (s, e, Verdict("up", windows=v.windows, blip=True))
        i = j + 1
    return out, blips


def _hours(schedule: Schedule | None, start: float, end: float
           ) -> list[tuple[float, float, object]]:
    if schedule is None:
        return [(start, end, True)] if start < end else []
    a, b = datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC)
    return [(s.timestamp(), e.timestamp(), True) for s, e in schedule.open_intervals(a, b)]


def _incidents(timeline: list[tuple[float, float, object]],
               in_hours: list[tuple[float, float, object]], policy: ServicePolicy,
               now: float) -> list[Incident]:
    """Maximal stretches counted as down, in wall time (an outage over a weekend is one
    incident), each with its downtime within service hours and its causes."""
    down_hours = [(s, e) for s, e, v in in_hours
                  if isinstance(v, Verdict) and _counted(v, policy) == "down"]
    out: list[Incident] = []
    current: list[tuple[float, float, Verdict]] = []

    def flush() -> None:
        if not current:
            return
        s, e = current[0][0], current[-1][1]
        seconds = sum(max(0.0, min(e, de) - max(s, ds)) for ds, de in down_hours)
        if seconds > 0:
            causes = tuple(dict.fromkeys(c for _, _, v in current for c in v.causes))
            out.append(Incident(s, e, seconds, causes, ongoing=e >= now))
        current.clear()

    for s, e, v in timeline:
        if isinstance(v, Verdict) and _counted(v, policy) == "down":
            if current and current[-1][1] != s:
                flush()
            current.append((s, e, v))
        else:
            flush()
    flush()
    return out


def _stretches(in_hours: list[tuple[float, float, object]],
               wanted: Callable[[Verdict], bool],
               detail: Callable[[Verdict], tuple[str, ...]]) -> list[Stretch]:
    out: list[Stretch] = []
    for s, e, v in in_hours:
        if not isinstance(v, Verdict) or not wanted(v):
            continue
        names = tuple(detail(v))
        if out and out[-1].end == s and out[-1].detail == names:
            last = out[-1]
            out[-1] = Stretch(last.start, e, last.seconds + e - s, names)
        else:
            out.append(Stretch(s, e, e - s, names))
    return out
