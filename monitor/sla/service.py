"""The SLA inside the engine: the ledger fed by ingest, reports, metrics (its routes
are in monitor.web.sla).

Metrics are computed every ``refresh`` seconds, not on scrape: a scrape must not
wait for a month of arithmetic.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Final

import msgspec
import structlog
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from monitor.config import Config
from monitor.sla.ledger import HORIZON, STALE_FACTOR, Ledger
from monitor.sla.render import History
from monitor.sla.report import (
    OSLO,
    MunicipalityReport,
    build_report,
    closed_before,
    month_period,
    period_from_query,
    services_of,
)
from monitor.sla.settings import parse_ref
from monitor.store.db import Store

__all__ = ["SlaService", "tracked_components"]

log = structlog.get_logger(__name__)

_ENCODER: Final = msgspec.json.Encoder()
NOT_FOUND: Final = "no such municipality, or it has no services"


def tracked_components(config: Config) -> dict[str, float]:
    """Every device and check a service rests on, with how long one observation of it
    stands when the event does not say (three of its intervals)."""
    out: dict[str, float] = {}
    for spec in config.services.values():
        for ref in spec.depends.refs:
            kind, name = parse_ref(ref)
            if kind == "device":
                out[ref] = STALE_FACTOR * (config.devices[name].interval or 60.0)
            elif kind == "check":
                out[ref] = STALE_FACTOR * config.checks[name].interval
    return out


def _months_back(now: float, count: int) -> list[str]:
    local = datetime.fromtimestamp(now, OSLO)
    year, month = local.year, local.month
    out = []
    for _ in range(count):
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return out[::-1]


class SlaService:
    def __init__(self, config: Config, store: Store, ledger: Ledger,
                 refresh: float = 30.0) -> None:
        self.config = config
        self.store = store
        self.ledger = ledger
        self.refresh = refresh
        self.cache: dict[str, dict[str, MunicipalityReport]] = {}  # period -> m -> report
        self.refresh_seconds = 0.0

    @classmethod
    async def start(cls, config: Config, store: Store, registry: CollectorRegistry,
                    refresh: float = 30.0) -> SlaService:
        ledger = Ledger(tracked_components(config))
        ledger.load(await store.recent_sla_runs(time.time() - HORIZON))
        ledger.closed_before = closed_before(time.time(), config.engine.sla_closed_after)
        service = cls(config, store, ledger, refresh)
        registry.register(_SlaCollector(service))
        return service

    def estate_changed(self) -> None:
        """The estate reloaded: its services' components are what the ledger tracks
        from now on (what it recorded of the others stays, as history)."""
        self.ledger.tracked = tracked_components(self.config)
        self.cache.clear()

    def municipalities(self) -> list[str]:
        return [m for m in self.config.municipalities if services_of(self.config, m)]

    async def report(self, municipality: str, query: dict[str, str], now: float
                     ) -> MunicipalityReport:
        return await build_report(self.config, self.store, municipality,
                                  period_from_query(query, now), now)

    async def history(self, municipality: str, now: float, months: int = 13) -> History:
        out: History = {}
        for month in _months_back(now, months):
            report = await build_report(self.config, self.store, municipality,
                                        month_period(month), now)
            for spec, result in report.services:
                out.setdefault(spec.id, []).append((month, result.achieved))
        return out

    # -- metrics -----------------------------------------------------------------------

    async def update_metrics(self, now: float) -> None:
        started = time.perf_counter()
        self.ledger.closed_before = closed_before(now, self.config.engine.sla_closed_after)
        this, last = _months_back(now, 2)[::-1]
        cache: dict[str, dict[str, MunicipalityReport]] = {"current_month": {},
                                                           "previous_month": {}}
        for m in self.municipalities():
            for label, month in (("current_month", this), ("previous_month", last)):
                cache[label][m] = await build_report(self.config, self.store, m,
                                                     month_period(month), now)
        self.cache = cache
        self.refresh_seconds = time.perf_counter() - started

    async def run(self, stop: asyncio.Event) -> None:
        """Refresh the SLA metrics until ``stop``; a failure ends the task, and its
        supervisor logs, counts and restarts it."""
        while not stop.is_set():
            await self.update_metrics(time.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.refresh)


class _SlaCollector(Collector):
    """Serves the last computed figures (see :meth:`SlaService.update_metrics`)."""

    def __init__(self, service: SlaService) -> None:
        self.service = service

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        availability = GaugeMetricFamily(
            "driftsvakt_sla_availability_ratio",
            "Availability within service hours: up / (up + down), as the agreement's "
            "policy counts them", labels=["municipality", "service", "period"])
        target = GaugeMetricFamily("driftsvakt_sla_target_ratio",
                                   "The agreed availability", labels=["municipality", "service"])
        remaining = GaugeMetricFamily(
            "driftsvakt_sla_error_budget_remaining_seconds",
            "Downtime the target still allows this month (negative: overdrawn)",
            labels=["municipality", "service"])
        downtime = GaugeMetricFamily(
            "driftsvakt_sla_downtime_seconds", "Downtime counted against the agreement",
            labels=["municipality", "service", "period"])
        for period, reports in self.service.cache.items():
            for m, report in reports.items():
                for spec, result in report.services:
                    if result.achieved is not None:
                        availability.add_metric([m, spec.id, period], result.achieved)
                    downtime.add_metric([m, spec.id, period], result.counted_down)
                    if period == "current_month":
                        target.add_metric([m, spec.id], spec.target_ratio)
                        remaining.add_metric([m, spec.id], result.budget_remaining)
        observations = CounterMetricFamily(
            "driftsvakt_sla_observations", "Observations offered to the SLA ledger, by "
            "outcome", labels=["outcome"])
        for outcome in ("applied", "duplicate", "clock_reversed", "too_late", "closed_month"):
            observations.add_metric([outcome], self.service.ledger.counts[outcome])
        refresh = GaugeMetricFamily("driftsvakt_sla_refresh_seconds",
                                    "How long the last computation of the SLA figures took")
        refresh.add_metric([], self.service.refresh_seconds)
        yield from (availability, target, remaining, downtime, observations, refresh)
