"""The devices API and the operator console (``/``): the estate's live state as this
engine holds it.

    GET /api/v1/devices        the inventory with each device's status; filters
                               location, municipality, site, class, status
    GET /api/v1/devices/{id}   one device: status, reason and since when, its open
                               alerts, its checks, the devices behind it
    GET /                      the console: devices by status, open alerts by
                               severity, the sites, what is down and why

A device's status is decided as /metrics decides it (``DeviceClassifier``): up, down,
off (a PC outside office hours), unreachable, auth_error; ``unknown`` for a configured
device this engine has not heard from. A viewer sees its own municipality only; a
device of another is not found, and the console sends a viewer to its SLA portal.
The overview reads; acting on alerts is the workbench's (monitor.web.workbench).
"""

from __future__ import annotations

import time
import typing
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from monitor.config import ApiUser, Config, Device, Site
from monitor.fields import at_time
from monitor.links import Links
from monitor.metrics import DeviceClassifier
from monitor.rules.model import Severity
from monitor.rules.service import RulesService
from monitor.state import DeviceStatus, State
from monitor.web.auth import Auth, problem
from monitor.web.pages import ENV, ago

__all__ = ["Console"]

STATUSES: Final = ("down", "unreachable", "auth_error", "unknown", "off", "up")
PROBLEMS: Final = frozenset({"down", "unreachable", "auth_error"})
# the console lists this many failed devices, worst first; the rest are counted
PROBLEM_ROWS: Final = 200
SEVERITIES: Final = typing.get_args(Severity)  # most severe first

@dataclass(frozen=True, slots=True)
class DeviceRow:
    device: Device
    municipality: str
    location: str
    status: str
    state: str | None
    reason: str | None
    since: float | None  # when the last reported state began
    last_seen: float | None
    open_alerts: int

    def as_json(self, config: Config, user: ApiUser | None) -> dict[str, Any]:
        """A viewer (a municipality) is not shown which of the centre's locations
        watches the device: that is the centre's own business."""
        d = self.device
        body = {
            "id": d.id, "name": d.name, "class": d.device_class, "site": d.site,
            "site_name": config.sites[d.site].name, "municipality": self.municipality,
            "location": self.location, "address": d.address, "parent": d.parent,
            "parents": list(d.uplinks), "parents_from": "declared" if d.uplinks else None,
            "tags": d.tags, "status": self.status, "state": self.state,
            "reason": self.reason, "state_since": self.since, "last_seen": self.last_seen,
            "open_alerts": self.open_alerts,
        }
        if user is not None and user.role == "viewer":
            del body["location"]
        return body


@dataclass(frozen=True, slots=True)
class _SiteRow:
    site: Site
    counts: Counter[str]
    worst: str  # the worst problem status among its devices, else up


class Console:
    def __init__(self, config: Config, state: State, rules: RulesService, location: str,
                 links: Links | None = None, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.state = state
        self.rules = rules
        self.location = location
        self.links = links
        self.clock = clock

    def parents(self, device: str) -> dict[str, Any]:
        """What the device hangs off as the rules see it — declared, else what the
        links show — and, where the links show another parent than the declared one,
        that proposal."""
        inventory = self.rules.engine.inventory
        found, _ = inventory.uplinks(device)
        body: dict[str, Any] = {
            "parents": list(found),
            "parents_from": ("declared" if inventory.declared(device)
                             else "links" if found else None)}
        placement = self.links.view.placement(device) if self.links is not None else None
        if placement is not None and placement.verdict == "differs":
            body["links_propose"] = list(placement.parents)
        return body

    def classifier(self, now: float) -> DeviceClassifier:
        return DeviceClassifier(self.config, at_time(now), self.state.devices,
                                self.rules.uplinks)

    def _open_alerts(self, user: ApiUser | None) -> list[Any]:
        return [a for a in self.rules.engine.alerts.values()
                if a.state != "resolved"
                and Auth.sees(user, a.labels.get("municipality"))]

    def rows(self, user: ApiUser | None, now: float,
             only: Iterable[str] | None = None) -> list[DeviceRow]:
        """Every configured device ``user`` may see (of ``only``, if given), with its
        status now."""
        classify = self.classifier(now)
        by_device = Counter(a.labels.get("device") for a in self._open_alerts(user)
                            if a.state == "firing")
        out = []
        devices = self.config.devices
        chosen = devices.values() if only is None else (devices[d] for d in only
                                                         if d in devices)
        for device in chosen:
            municipality = self.config.municipality_of(device.id)
            if not Auth.sees(user, municipality):
                continue
            status = self.state.devices.get(device.id)
            if status is None:
                out.append(DeviceRow(device, municipality,
                                     self.config.location_of(device.id),
                                     _never_heard(classify, device), None,
                                     None, None, None, by_device[device.id]))
                continue
            out.append(DeviceRow(device, municipality, self.config.location_of(device.id),
                                 classify(device.id, device.device_class, status),
                                 status.state, status.reason, status.state_since,
                                 status.last_seen or None, by_device[device.id]))
        return out

    # -- API ---------------------------------------------------------------------------

    async def list_devices(self, request: web.Request, user: ApiUser | None
                           ) -> web.StreamResponse:
        query = request.query
        municipality = query.get("municipality")
        if municipality is not None and not Auth.sees(user, municipality):
            return problem(404, "not found")
        wanted = {k: query[k] for k in ("location", "municipality", "site", "class", "status")
                  if k in query}
        if "status" in wanted and wanted["status"] not in STATUSES:
            return problem(400, f"status is one of {', '.join(STATUSES)}")
        out = []
        for row in self.rows(user, self.clock()):
            shown = row.as_json(self.config, user)
            shown.update(self.parents(row.device.id))
            if all(str(shown.get(k)) == v for k, v in wanted.items()):
                out.append(shown)
        counts = Counter(d["status"] for d in out)
        return web.json_response({"devices": out, "count": len(out),
                                  "by_status": {s: counts[s] for s in STATUSES}})

    async def get_device(self, request: web.Request, user: ApiUser | None
                         ) -> web.StreamResponse:
        device_id = request.match_info["id"]
        device = self.config.devices.get(device_id)
        if device is None or not Auth.sees(user, self.config.municipality_of(device_id)):
            return problem(404, "no such device")
        now = self.clock()
        classify = self.classifier(now)
        status = self.state.devices.get(device_id)
        row = DeviceRow(device, self.config.municipality_of(device_id),
                        self.config.location_of(device_id),
                        _never_heard(classify, device) if status is None else classify(
                            device_id, device.device_class, status),
                        status.state if status else None, status.reason if status else None,
                        status.state_since if status else None,
                        (status.last_seen or None) if status else None, 0)
        alerts = [a.as_json() for a in self._open_alerts(user)
                  if a.labels.get("device") == device_id]
        body = row.as_json(self.config, user)
        body.update(self.parents(device_id))
        body["open_alerts"] = sum(1 for a in alerts if a["lifecycle"] == "firing")
        body["alerts"] = alerts
        body["checks"] = [
            {"check": check, "kind": event.kind, "ok": event.ok, "latency": event.latency,
             "reason": event.reason, "ts": event.ts}
            for (owner, check), event in sorted((k, e) for k, e in self.state.checks.items()
                                                if k[0] == device_id)]
        body["behind"] = sorted(self.rules.engine.inventory.children.get(device_id, ()))
        if self.links is not None:
            body["links"] = [
                {"port": link.port, "neighbour": link.other, "neighbour_port": link.other_port,
                 "protocol": link.protocol, "in_estate": link.known}
                for link in self.links.view.report.links if link.device == device_id]
        return web.json_response(body)

    # -- the console -------------------------------------------------------------------

    async def page(self, _: web.Request, user: ApiUser | None) -> web.StreamResponse:
        if user is not None and user.role == "viewer":
            raise web.HTTPFound(f"/sla/{user.municipality}")
        now = self.clock()
        rows = self.rows(user, now)
        alerts = sorted(
            (a for a in self._open_alerts(user) if a.state == "firing"),
            key=lambda a: (SEVERITIES.index(a.severity), a.active_since or 0))
        sites: dict[str, Counter[str]] = {}
        for row in rows:
            sites.setdefault(row.device.site, Counter())[row.status] += 1
        site_rows = sorted(
            (_SiteRow(self.config.sites[s], c,
                      next((st for st in STATUSES if c[st] and st in PROBLEMS), "up"))
             for s, c in sites.items()),
            key=lambda r: (r.worst == "up", r.site.municipality, r.site.name))
        problems = sorted((r for r in rows if r.status in PROBLEMS),
                          key=lambda r: (STATUSES.index(r.status), r.device.site, r.device.id))
        text = ENV.get_template("console.html").render(
            now=now, location=self.config.locations[self.location].name,
            counts=Counter(r.status for r in rows), statuses=STATUSES, total=len(rows),
            alerts=alerts, by_severity=Counter(a.severity for a in alerts),
            severities=SEVERITIES, sites=site_rows, problems=problems[:PROBLEM_ROWS],
            problem_count=len(problems), config=self.config,
            ago=lambda ts: ago(ts, now), user=user)
        return web.Response(text=text, content_type="text/html", charset="utf-8")


def _never_heard(classify: DeviceClassifier, device: Device) -> str:
    """A device the engine has no event of: ``unknown``, except a PC outside office
    hours (or in the grace after opening), which is ``off`` as any silent PC is."""
    if device.device_class != "pc":
        return "unknown"
    verdict = classify(device.id, "pc", DeviceStatus("", ""))
    return "off" if verdict == "off" else "unknown"
