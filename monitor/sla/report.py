"""A municipality's SLA report for a period: the one computation behind the API, the
portal, ``driftsvakt sla report`` and the metrics, so they cannot disagree.

Months are calendar months in Europe/Oslo (1 October 00:00 local to 1 November
00:00 local). Reads the ledger's runs, the maintenance windows and the corrections
from the store; the result is plain data that :mod:`.render` turns into JSON, CSV or
HTML.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Final, Literal
from zoneinfo import ZoneInfo

import msgspec

from monitor.config import Config
from monitor.rows import LateRow
from monitor.rules.inventory import DeviceInfo
from monitor.rules.suppress import SHARED_WINDOW, Maintenance
from monitor.sla.compute import (
    CorrectionSpan,
    ServiceResult,
    evaluate,
    leaf_refs,
    service_result,
)
from monitor.sla.ledger import MAX_VALIDITY, Run
from monitor.sla.settings import ServiceSpec, parse_ref
from monitor.sla.timeline import combine_sources, source_cover, sweep
from monitor.store.db import Store

__all__ = ["Correction", "MunicipalityReport", "Period", "Planned", "ServiceNow",
           "build_report", "closed_before", "leaf_timelines", "maintenance_cover",
           "month_period", "period_from_query", "planned_maintenance", "services_of",
           "status_now"]

OSLO: Final = ZoneInfo("Europe/Oslo")
_MONTH_RE: Final = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]


class Correction(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """An admin's reclassification of an interval of one service: as ``maintenance``
    (planned after all) or ``excluded`` (outside the centre's responsibility — the
    municipality's own power cut, a supplier's outage)."""

    service: str
    starts_at: datetime
    ends_at: datetime
    classify_as: Literal["maintenance", "excluded"]
    comment: Text
    municipalities: list[str] = []  # none: every municipality using the service
    id: str = ""
    created_by: str = ""
    created_at: datetime | None = None

    def check(self, config: Config) -> None:
        if self.starts_at.tzinfo is None or self.ends_at.tzinfo is None:
            raise ValueError("starts_at and ends_at need a time zone "
                             "(e.g. 2026-10-04T08:00:00+02:00)")
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        spec = config.services.get(self.service)
        if spec is None:
            raise ValueError(f"no such service {self.service!r}")
        for m in self.municipalities:
            if m not in spec.municipalities:
                raise ValueError(f"service {self.service!r} is not one of {m!r}'s")

    def applies(self, service: str, municipality: str) -> bool:
        return self.service == service and (not self.municipalities
                                            or municipality in self.municipalities)


@dataclass(frozen=True, slots=True)
class Period:
    start: float
    end: float
    label: str  # "2026-10", or "2026-10-01..2026-10-15"


def month_period(month: str) -> Period:
    """'2026-10' -> [1 Oct 00:00, 1 Nov 00:00) Europe/Oslo. Raises ValueError."""
    match = _MONTH_RE.match(month)
    if not match:
        raise ValueError(f"month {month!r} is not YYYY-MM")
    year, mon = int(match.group(1)), int(match.group(2))
    first = datetime(year, mon, 1, tzinfo=OSLO)
    nxt = datetime(year + (mon == 12), mon % 12 + 1, 1, tzinfo=OSLO)
    return Period(first.timestamp(), nxt.timestamp(), month)


def closed_before(now: float, closed_after: float) -> float:
    """Event time before which the SLA months are closed at ``now``: a month closes
    ``closed_after`` seconds after it ends (Europe/Oslo), once its report has gone
    out. The end of the latest month closed by now."""
    local = datetime.fromtimestamp(now, OSLO)
    year, month = local.year, local.month
    end = datetime(year, month, 1, tzinfo=OSLO).timestamp()
    while now < end + closed_after:
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
        end = datetime(year, month, 1, tzinfo=OSLO).timestamp()
    return end


def _instant(text: str, what: str) -> datetime:
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), OSLO)
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{what} {text[:40]!r} is neither YYYY-MM-DD nor an ISO time") \
            from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=OSLO)
    return value


def period_from_query(query: dict[str, str] | Any, now: float) -> Period:
    """``month=YYYY-MM``, or ``from`` and ``to`` (dates in Oslo or ISO times; ``to``
    exclusive), or nothing for this month."""
    if "month" in query:
        if "from" in query or "to" in query:
            raise ValueError("give 'month' or 'from'/'to', not both")
        return month_period(query["month"])
    if "from" in query or "to" in query:
        if "from" not in query or "to" not in query:
            raise ValueError("'from' and 'to' go together")
        a, b = _instant(query["from"], "from"), _instant(query["to"], "to")
        if b <= a:
            raise ValueError("'to' must be after 'from'")
        if b - a > timedelta(days=400):
            raise ValueError("a period is at most 400 days")
        return Period(a.timestamp(), b.timestamp(), f"{query['from']}..{query['to']}")
    today = datetime.fromtimestamp(now, OSLO)
    return month_period(f"{today.year:04d}-{today.month:02d}")


@dataclass(slots=True)
class MunicipalityReport:
    municipality: str
    name: str
    period: Period
    generated_at: float
    services: list[tuple[ServiceSpec, ServiceResult]] = field(default_factory=list)
    corrections: list[Correction] = field(default_factory=list)
    # observations of this period that came after it was closed: not counted above
    late: list[LateRow] = field(default_factory=list)
    # for a period under way: each service's state now
    now: list[ServiceNow] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ServiceNow:
    """A service as its municipality's readers see it now."""

    spec: ServiceSpec
    state: str  # up, down, maintenance, unknown
    since: float | None = None


def _at_end(segments: Sequence[tuple[float, float, object]], until: float
            ) -> tuple[object, float] | None:
    """The value of the segment that reaches ``until``, and when that segment began."""
    if segments and segments[-1][1] >= until - 1e-6:
        return segments[-1][2], segments[-1][0]
    return None


def status_now(config: Config, specs: Sequence[ServiceSpec],
               leaves: dict[str, list[tuple[float, float, object]]],
               maintenance: dict[str, list[tuple[float, float, object]]], until: float
               ) -> list[ServiceNow]:
    """Each service's state at ``until`` from its components' states then, by its
    dependency rule: what is true now, before any agreement's counting (a blip the
    agreement ignores is still down while it lasts). Since: when the components that
    make the state took theirs."""
    out = []
    for spec in specs:
        values = {}
        starts: dict[str, float] = {}
        for ref in leaf_refs(spec, config.services):
            found = _at_end(leaves.get(ref, []), until)
            state, began = (str(found[0]), found[1]) if found else ("unknown", until)
            covering = _at_end(maintenance.get(ref, []), until)
            names = covering[0] if covering and isinstance(covering[0], tuple) else ()
            values[ref] = (state, tuple(str(n) for n in names))
            starts[ref] = covering[1] if covering else began
        verdict = evaluate(spec, config.services, values)
        state = "up" if verdict.state == "degraded" else verdict.state
        if state == "up":
            out.append(ServiceNow(spec, "up"))
            continue
        involved = [starts[ref] for ref, (leaf, names) in values.items()
                    if (leaf != "up" or names)]
        out.append(ServiceNow(spec, state, max(involved) if involved else None))
    return out


@dataclass(frozen=True, slots=True)
class Planned:
    """A maintenance window ahead, as the municipality's readers may see it."""

    name: str
    start: float
    end: float
    id: str = ""  # the window's: with the start, one event in a subscribed calendar


async def planned_maintenance(config: Config, store: Store, municipality: str, now: float,
                              days: int = 14) -> list[Planned]:
    """The maintenance under way or ahead in the next ``days`` that concerns the
    municipality, named only when it is theirs alone (tenant isolation)."""
    devices_of = {d: config.municipality_of(d) for d in config.devices}
    sites_of = {s.id: s.municipality for s in config.sites.values()}
    found = []
    for body, deleted in await store.maintenance_history():
        if deleted is not None:
            continue
        window = msgspec.json.decode(body, type=Maintenance)
        theirs = window.part_of(municipality, devices_of, sites_of)
        if theirs is None:
            continue
        found += [Planned(theirs.name, a, b, window.id)
                  for a, b in window.intervals(now - 7 * 86400, now + days * 86400)
                  if b > now]
    return sorted(found, key=lambda p: p.start)[:20]


def services_of(config: Config, municipality: str) -> list[ServiceSpec]:
    return [s for s in config.services.values() if municipality in s.municipalities]


def leaf_timelines(runs: dict[str, dict[str, list[Run]]], start: float, until: float
                   ) -> dict[str, list[tuple[float, float, object]]]:
    """Each component's up/down/unknown over [start, until), from its sources' runs."""
    return {ref: combine_sources([source_cover(r, start, until) for r in by_src.values()],
                                 start, until)
            for ref, by_src in runs.items()}


def maintenance_cover(windows: Sequence[tuple[Maintenance, float | None]],
                      device: DeviceInfo, start: float, end: float
                      ) -> list[tuple[float, float, object]]:
    """Stretches of [start, end) under maintenance for one device, each with the names
    of the windows covering it."""
    spans = [[(a, b, w.name)] for w, deleted in windows if w.covers(device)
             for a, b in w.intervals(start, end, deleted)]
    if not spans:
        return []
    merged = sweep(spans, start, end,
                   lambda names: tuple(sorted({n for n in names if isinstance(n, str)})) or None)
    return [(s, e, v) for s, e, v in merged if v is not None]


async def _maintenance_of(config: Config, store: Store, municipality: str, refs: list[str],
                          start: float, until: float
                          ) -> dict[str, list[tuple[float, float, object]]]:
    """Per component, its stretches of [start, until) under maintenance, each with the
    names of the windows as ``municipality``'s readers may see them."""
    windows = []
    devices_of = {d: config.municipality_of(d) for d in config.devices}
    sites_of = {s.id: s.municipality for s in config.sites.values()}
    for body, deleted in await store.maintenance_history():
        window = msgspec.json.decode(body, type=Maintenance)
        if not window.only_of(municipality, devices_of, sites_of):
            # a window that also concerns others is named for what it is, not by them
            window = msgspec.structs.replace(window, name=SHARED_WINDOW, comment="")
        windows.append((window, deleted))
    maintenance = {}
    for ref in refs:  # only the devices the services rest on, not the whole estate
        kind, name = parse_ref(ref)
        device = name if kind == "device" else config.checks[name].device
        maintenance[ref] = maintenance_cover(windows, DeviceInfo.of(config, device),
                                              start, until)
    return maintenance


async def build_report(config: Config, store: Store, municipality: str, period: Period,
                       now: float) -> MunicipalityReport:
    """Compute every service of ``municipality`` over ``period``, counting up to ``now``."""
    report = MunicipalityReport(municipality, config.municipalities[municipality].name,
                                period, now)
    specs = services_of(config, municipality)
    if not specs:
        return report
    start, end = period.start, period.end
    until = max(start, min(end, now))
    refs = list(dict.fromkeys(r for s in specs for r in leaf_refs(s, config.services)))
    rows = await store.sla_runs(refs, start, until, MAX_VALIDITY)
    by_source: dict[str, dict[str, list[Run]]] = {ref: {} for ref in refs}
    for component, src, r_start, last, state, validity in rows:
        by_source[component].setdefault(src, []).append(Run(r_start, last, state, validity))
    leaves = leaf_timelines(by_source, start, until)
    maintenance = await _maintenance_of(config, store, municipality, refs, start, until)
    report.late = await store.late_observations(refs, start, end)
    corrections = [msgspec.json.decode(b, type=Correction) for b in await store.corrections()]
    report.corrections = [c for c in corrections
                          if any(c.applies(s.id, municipality) for s in specs)
                          and c.starts_at.timestamp() < end and c.ends_at.timestamp() > start]
    for spec in specs:
        spans = [CorrectionSpan(c.id, c.starts_at.timestamp(), c.ends_at.timestamp(),
                                c.classify_as)
                 for c in report.corrections if c.applies(spec.id, municipality)]
        schedule = config.schedules.get(spec.hours) if spec.hours else None
        result = service_result(spec, config.services, leaves, maintenance, spans, schedule,
                                start, end, now)
        report.services.append((spec, result))
    if start <= now < end:
        report.now = status_now(config, specs, leaves, maintenance, until)
    return report
