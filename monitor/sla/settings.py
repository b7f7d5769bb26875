"""Services and their service-level agreements, as written in the config's ``services:``.

A service is what a municipality buys from the centre ("E-post", "Fagsystem",
"Nettverk Alta rådhus"): a target, the hours it is promised in, and what it depends
on — devices, checks or other services — combined with ``all``, ``any`` or
``at_least: k`` of ``of``. A shared service lists every municipality that uses it
and counts for each of them.

The policy makes the choices explicit on which monitoring products disagree:
whether degraded time (redundancy lost, service still delivered) counts as up or
down, whether short blips count, and what planned maintenance and unknown time do
to the ratio. The README's "SLA policy" section documents them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated, Final, Literal

from monitor.yamlmodel import Check, FieldError

__all__ = ["Depends", "ServicePolicy", "ServiceSpec", "parse_ref", "service_problems"]

REF_KINDS: Final = ("device", "check", "service")
_SLUG: Final = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
ServiceId = Annotated[str, Check(lambda v: None if _SLUG.match(v) else
                                 f"{v!r} is not a slug: lower-case letters, digits and '-'")]


def parse_ref(ref: str) -> tuple[str, str]:
    """'device:mail1' -> ('device', 'mail1'); raises ValueError with the reason."""
    kind, sep, name = ref.partition(":")
    if not sep or kind not in REF_KINDS or not name:
        raise ValueError(f"{ref!r} is not a reference: write device:ID, check:ID or "
                         "service:ID")
    return kind, name


@dataclass(frozen=True, slots=True)
class Depends:
    """Exactly one of ``all``, ``any``, or ``at_least`` with ``of`` (k of n)."""

    all: list[str] | None = None
    any: list[str] | None = None
    at_least: int | None = None
    of: list[str] | None = None

    def __post_init__(self) -> None:
        given = [k for k in ("all", "any", "of") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("depends takes exactly one of 'all', 'any', or 'at_least' "
                             "with 'of'")
        if (self.at_least is None) != (self.of is None):
            raise FieldError("at_least", "'at_least' and 'of' go together")
        refs = self.refs
        if not refs:
            raise FieldError(given[0], "name at least one device, check or service")
        for i, ref in enumerate(refs):
            try:
                parse_ref(ref)
            except ValueError as exc:
                raise FieldError(f"{given[0]}[{i}]", str(exc)) from None
        if len(set(refs)) != len(refs):
            raise FieldError(given[0], "a dependency is named twice")
        if self.at_least is not None and not 1 <= self.at_least <= len(refs):
            raise FieldError("at_least", f"must be between 1 and {len(refs)}, the number "
                                         "of dependencies")

    @property
    def refs(self) -> list[str]:
        return self.all or self.any or self.of or []

    @property
    def required(self) -> int:
        """How many of the dependencies must be up for the service to be up."""
        if self.all is not None:
            return len(self.all)
        if self.any is not None:
            return 1
        assert self.at_least is not None
        return self.at_least


@dataclass(frozen=True, slots=True)
class ServicePolicy:
    """How the time of one agreement counts.

    ``degraded``: redundancy lost but the service delivered — counts as ``up`` (the
    default) or ``down``. ``ignore_blips_under``: a down stretch shorter than this
    (seconds) counts as up; 0 counts every second. ``maintenance``: ``excluded``
    from the ratio (the default), counted as ``up`` (Zabbix's way), or ``ignored``
    (the real state counts). ``unknown`` (no data): ``excluded`` (the default), or
    counted as ``up`` or ``down``.
    """

    degraded: Literal["up", "down"] = "up"
    ignore_blips_under: float = 0.0
    maintenance: Literal["excluded", "up", "ignored"] = "excluded"
    unknown: Literal["excluded", "up", "down"] = "excluded"

    def __post_init__(self) -> None:
        if not 0 <= self.ignore_blips_under <= 3600:
            raise FieldError("ignore_blips_under", "must be between 0 and 3600 seconds")


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """One service and its agreement. ``target`` in percent (99.5); ``hours`` names
    an ``office_hours`` entry, or is absent for 24/7."""

    id: ServiceId
    name: str
    municipalities: list[str]
    target: float
    depends: Depends
    hours: str | None = None
    policy: ServicePolicy = field(default_factory=ServicePolicy)
    description: str = ""

    def __post_init__(self) -> None:
        if not 0 < self.target <= 100:
            raise FieldError("target", f"{self.target} is not a percentage in (0, 100]")
        if not self.municipalities:
            raise FieldError("municipalities", "name the municipalities this service is "
                                               "for")
        if len(set(self.municipalities)) != len(self.municipalities):
            raise FieldError("municipalities", "a municipality is named twice")

    @property
    def target_ratio(self) -> float:
        return self.target / 100.0


def service_problems(services: dict[str, ServiceSpec], service_ids: set[str],
                     devices: set[str], checks: set[str], municipalities: set[str],
                     office_hours: set[str]) -> Iterator[tuple[str, str, str]]:
    """(service id, key path, message) for each unknown reference and each cycle;
    ``service_ids`` holds every service defined, converted or not."""
    for sid, spec in services.items():
        for i, m in enumerate(spec.municipalities):
            if m not in municipalities:
                yield sid, f"municipalities[{i}]", f"unknown municipality {m!r}"
        if spec.hours is not None and spec.hours not in office_hours:
            yield sid, "hours", f"unknown office hours {spec.hours!r}"
        key = next(k for k in ("all", "any", "of") if getattr(spec.depends, k) is not None)
        known = {"device": devices, "check": checks, "service": service_ids}
        for i, ref in enumerate(spec.depends.refs):
            kind, name = parse_ref(ref)
            if name not in known[kind]:
                yield sid, f"depends.{key}[{i}]", f"unknown {kind} {name!r}"
            elif kind == "service" and name == sid:
                yield sid, f"depends.{key}[{i}]", "a service cannot depend on itself"
    for cycle in _cycles(services):
        yield cycle[0], "depends", "dependency cycle: " + " -> ".join([*cycle, cycle[0]])


def _cycles(services: dict[str, ServiceSpec]) -> list[list[str]]:
    edges = {sid: [n for k, n in map(parse_ref, s.depends.refs)
                   if k == "service" and n in services and n != sid]
             for sid, s in services.items()}
    state: dict[str, int] = {}
    found: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        path.append(node)
        for nxt in edges[node]:
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):]
                i = cycle.index(min(cycle))
                found.append(cycle[i:] + cycle[:i])
            elif nxt not in state:
                visit(nxt, path)
        path.pop()
        state[node] = 2

    for sid in sorted(edges):
        if sid not in state:
            visit(sid, [])
    return found
