"""The SLA inside the engine: the ledger fed by ingest, reports over HTTP, metrics.

Routes (every one behind :class:`~monitor.auth.Auth`; a viewer bound to one
municipality gets 404 for anything of another, exactly as for one that does not
exist):

    GET    /api/v1/sla                         municipalities with services
    GET    /api/v1/sla/{m}?month=|from=&to=    report; &format=json|csv|html
    GET    /api/v1/sla/{m}/corrections         corrections bearing on m
    POST   /api/v1/sla/{m}/corrections         reclassify an interval (admin, audited)
    DELETE /api/v1/sla/{m}/corrections/{id}    withdraw one (admin, audited)
    GET    /sla/{m}                            the portal: this month and the last 12
    GET    /sla                                the portal's front door (a viewer's own)
    GET/POST /login, POST /logout              a token for a cookie, for browsers

Metrics are computed every ``refresh`` seconds, not on scrape: a scrape must not
wait for a month of arithmetic.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Final

import msgspec
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from monitor.auth import COOKIE, Auth, problem
from monitor.config import ApiUser, Config
from monitor.sla.ledger import HORIZON, STALE_FACTOR, Ledger
from monitor.sla.render import History, report_csv, report_html, report_json
from monitor.sla.report import (
    OSLO,
    Correction,
    MunicipalityReport,
    build_report,
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
        service = cls(config, store, ledger, refresh)
        registry.register(_SlaCollector(service))
        return service

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

    # -- HTTP --------------------------------------------------------------------------

    def add_routes(self, app: web.Application, auth: Auth) -> None:
        self.auth = auth
        auth.add_routes(app, [
            ("GET", "/api/v1/sla", "viewer", self._list),
            ("GET", "/api/v1/sla/{m}", "viewer", self._get),
            ("GET", "/api/v1/sla/{m}/corrections", "viewer", self._corrections),
            ("POST", "/api/v1/sla/{m}/corrections", "admin", self._add_correction),
            ("DELETE", "/api/v1/sla/{m}/corrections/{id}", "admin", self._delete_correction),
        ])
        auth.add_pages(app, [("/sla/{m}", "viewer", self._portal),
                             ("/sla", "viewer", self._front)])
        app.router.add_get("/login", self._login_form)
        app.router.add_post("/login", self._login)
        app.router.add_post("/logout", self._logout)

    def _visible(self, user: ApiUser | None, municipality: str) -> bool:
        return (municipality in self.config.municipalities
                and bool(services_of(self.config, municipality))
                and Auth.sees(user, municipality))

    async def _list(self, _: web.Request, user: ApiUser | None) -> web.StreamResponse:
        return web.json_response({"municipalities": [
            {"id": m, "name": self.config.municipalities[m].name,
             "services": [s.id for s in services_of(self.config, m)]}
            for m in self.municipalities() if Auth.sees(user, m)]})

    async def _get(self, request: web.Request, user: ApiUser | None) -> web.StreamResponse:
        m = request.match_info["m"]
        if not self._visible(user, m):
            return problem(404, NOT_FOUND)
        fmt = request.query.get("format", "json")
        if fmt not in ("json", "csv", "html"):
            return problem(400, "format is json, csv or html")
        try:
            report = await self.report(m, dict(request.query), time.time())
        except ValueError as exc:
            return problem(400, str(exc))
        if fmt == "csv":
            return web.Response(text=report_csv(report), content_type="text/csv",
                                charset="utf-8", headers={
                                    "Content-Disposition":
                                    f'attachment; filename="sla-{m}-{report.period.label}.csv"'})
        if fmt == "html":
            return web.Response(text=report_html(report), content_type="text/html",
                                charset="utf-8")
        return web.json_response(report_json(report))

    def _corrections_of(self, corrections: list[Correction], m: str) -> list[Correction]:
        ids = {s.id for s in services_of(self.config, m)}
        return [c for c in corrections if c.service in ids and
                (not c.municipalities or m in c.municipalities)]

    async def _corrections(self, request: web.Request, user: ApiUser | None
                           ) -> web.StreamResponse:
        m = request.match_info["m"]
        if not self._visible(user, m):
            return problem(404, NOT_FOUND)
        every = [msgspec.json.decode(b, type=Correction) for b in await self.store.corrections()]
        return web.json_response({"corrections": [
            msgspec.to_builtins(c) for c in self._corrections_of(every, m)]})

    async def _add_correction(self, request: web.Request, user: ApiUser | None
                              ) -> web.StreamResponse:
        assert user is not None
        m = request.match_info["m"]
        if not self._visible(user, m):
            return problem(404, NOT_FOUND)
        try:
            correction = msgspec.json.decode(await request.read(), type=Correction)
            if not correction.municipalities:
                correction.municipalities = [m]
            if m not in correction.municipalities:
                raise ValueError(f"a correction made under {m!r} must include {m!r}")
            correction.check(self.config)
        except (msgspec.DecodeError, ValueError) as exc:
            return problem(400, str(exc))
        correction.id = f"c-{secrets.token_hex(6)}"
        correction.created_by = user.id
        correction.created_at = datetime.now(UTC)
        body = _ENCODER.encode(correction)
        await self.store.put_correction(correction.id, body, user.id)
        log.info("sla_corrected", municipality=m, service=correction.service,
                 correction=correction.id, by=user.id)
        return web.json_response(msgspec.to_builtins(correction), status=201)

    async def _delete_correction(self, request: web.Request, user: ApiUser | None
                                 ) -> web.StreamResponse:
        assert user is not None
        m, cid = request.match_info["m"], request.match_info["id"]
        if not self._visible(user, m):
            return problem(404, NOT_FOUND)
        every = [msgspec.json.decode(b, type=Correction) for b in await self.store.corrections()]
        if cid not in {c.id for c in self._corrections_of(every, m)}:
            return problem(404, "no such correction")
        await self.store.delete_correction(cid, user.id)
        return web.json_response({"deleted": cid})

    async def _portal(self, request: web.Request, user: ApiUser | None) -> web.StreamResponse:
        m = request.match_info["m"]
        if not self._visible(user, m):
            return web.Response(status=404, text="Fant ikke siden.", content_type="text/plain")
        now = time.time()
        try:
            report = await self.report(m, dict(request.query), now)
        except ValueError as exc:
            return web.Response(status=400, text=str(exc), content_type="text/plain")
        history = await self.history(m, min(now, report.period.end - 1))
        return web.Response(text=report_html(report, history, portal=True),
                            content_type="text/html", charset="utf-8")

    async def _front(self, _: web.Request, user: ApiUser | None) -> web.StreamResponse:
        if user is not None and user.role == "viewer" and user.municipality:
            raise web.HTTPFound(f"/sla/{user.municipality}")
        links = "".join(f'<li><a href="/sla/{m}">{self.config.municipalities[m].name}</a></li>'
                        for m in self.municipalities())
        return web.Response(content_type="text/html", text=(
            "<!doctype html><html lang=nb><meta charset=utf-8><title>Tjenestenivå</title>"
            f"<h1>Tjenestenivå</h1><ul>{links}</ul></html>"))

    async def _login_form(self, _: web.Request) -> web.StreamResponse:
        return web.Response(content_type="text/html", text=(
            "<!doctype html><html lang=nb><meta charset=utf-8><title>Logg inn</title>"
            "<h1>Logg inn</h1><form method=post action=/login>"
            "<label>Tilgangsnøkkel <input type=password name=token autocomplete=off>"
            "</label> <button>Logg inn</button></form></html>"))

    async def _login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        token = str(form.get("token", ""))
        user = self.auth.user_for_token(token) if token else None
        if user is None:
            return web.Response(status=401, content_type="text/html", text=(
                "<!doctype html><meta charset=utf-8><p>Ukjent nøkkel. "
                "<a href=/login>Prøv igjen</a></p>"))
        where = f"/sla/{user.municipality}" if user.role == "viewer" else "/"
        response = web.HTTPSeeOther(where)
        response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", max_age=12 * 3600,
                            secure=request.secure)
        log.info("portal_login", user=user.id)
        raise response

    async def _logout(self, _: web.Request) -> web.StreamResponse:
        response = web.HTTPSeeOther("/login")
        response.del_cookie(COOKIE)
        raise response


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
        for outcome in ("applied", "duplicate", "clock_reversed", "too_late"):
            observations.add_metric([outcome], self.service.ledger.counts[outcome])
        refresh = GaugeMetricFamily("driftsvakt_sla_refresh_seconds",
                                    "How long the last computation of the SLA figures took")
        refresh.add_metric([], self.service.refresh_seconds)
        yield from (availability, target, remaining, downtime, observations, refresh)
