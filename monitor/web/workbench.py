"""The operator's workbench: the pages an incident is worked from, in Norwegian.

    GET  /problems          firing and acknowledged alerts, worst or newest first,
                            filtered by location, municipality, site, class,
                            severity, state; acknowledge or silence the checked rows
    GET  /alerts/{id}       an alert: what, where, since, value, what is behind it,
                            its timeline; acknowledge as the person signed in
    GET  /devices/{id}      a device: status and why, its path to the centre, what is
                            behind it, interfaces, checks, alerts, a timeline
    GET  /sites/{id}        a site's devices as the tree they hang in; maintenance
    GET  /topology          the network as a map (SVG): what hangs on what, where it
                            is down, unreachable or under maintenance
    GET  /search?q=         devices by id, name, address, site, interface alias
    POST /problems/ack      acknowledge the checked alerts, with a comment
    POST /problems/silence  silence the checked alerts for some hours
    POST /maintenance       plan maintenance for a device, a site, or the devices of
                            the checked alerts (admin)
    GET  /notes             the municipalities' incident notes (monitor.web.notes)

Pages are server-rendered (Jinja2, escaped by default) and need no script; forms
carry the form token of the signed-in user (monitor.web.auth). Every change goes
through RulesService, so it is audited, logged on the alert and shared with the
other location exactly as the API's changes are.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import msgspec
from aiohttp import web
from multidict import MultiDictProxy

from monitor.config import ApiUser, Config
from monitor.rules.alerts import Alert
from monitor.rules.service import RulesService
from monitor.rules.suppress import Maintenance, Silence, SpecError
from monitor.state import State
from monitor.web.auth import CSRF_FIELD, Auth, problem
from monitor.web.console import SEVERITIES, STATUSES, Console, DeviceRow
from monitor.web.pages import ALERT_STATE_NB, CLASS_NB, ENV, OSLO, STATUS_NB, ago

__all__ = ["Workbench"]

STATES: Final = ("firing", "acknowledged", "suppressed")
# Labels every alert about a device carries (monitor.rules.inventory): a silence made
# from a row names the alert by its own labels, not by where the device stands.
_CONTEXT_LABELS: Final = frozenset({"class", "site", "municipality", "location"})
SILENCE_HOURS: Final = (1, 4, 8, 24, 72)
TIMELINE_DAYS: Final = 7
MAX_ROWS: Final = 500
_NETWORK: Final = frozenset({"switch", "router", "firewall"})
_MAP_COLUMN: Final = 230  # px per level of the map
_MAP_ROW: Final = 22  # px per device on it


@dataclass(frozen=True, slots=True)
class Interface:
    index: str
    name: str
    alias: str
    values: dict[str, float] = field(default_factory=dict)
    rates: dict[str, float] = field(default_factory=dict)  # counters, per second


@dataclass(frozen=True, slots=True)
class MapNode:
    row: DeviceRow
    depth: int
    order: int
    behind: int
    maintenance: bool


@dataclass(frozen=True, slots=True)
class Moment:
    """One line of a timeline."""

    ts: float
    what: str
    detail: str = ""
    who: str = ""
    css: str = ""


class Workbench:
    def __init__(self, config: Config, state: State, rules: RulesService, console: Console,
                 auth: Auth, grafana_url: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.state = state
        self.rules = rules
        self.console = console
        self.auth = auth
        self.grafana_url = grafana_url.rstrip("/") if grafana_url else None
        self.clock = clock

    def render(self, request: web.Request, template: str, user: ApiUser | None,
                **values: Any) -> web.Response:
        now = self.clock()
        text = ENV.get_template(template).render(
            now=now, user=user, config=self.config, csrf=self.auth.form_token(request),
            csrf_field=CSRF_FIELD, here=request.path_qs, ago=lambda ts: ago(ts, now),
            location=self.config.locations[self.console.location].name,
            may_act=user is None or user.role in ("operator", "admin"),
            may_plan=user is None or user.role == "admin", **values)
        return web.Response(text=text, content_type="text/html", charset="utf-8")

    def _rows_by_id(self, user: ApiUser | None, only: Iterable[str] | None = None
                    ) -> dict[str, DeviceRow]:
        return {r.device.id: r for r in self.console.rows(user, self.clock(), only)}

    # -- problems ------------------------------------------------------------------------

    async def problems(self, request: web.Request, user: ApiUser | None
                       ) -> web.StreamResponse:
        query = request.query
        filters = {k: query[k] for k in ("location", "municipality", "site", "class",
                                         "severity", "state") if query.get(k)}
        sort = query.get("sort", "worst")
        alerts = []
        for alert in self.rules.engine.alerts.values():
            if alert.state != "firing" or not Auth.sees(user, alert.labels.get("municipality")):
                continue
            shown = alert.shown_state()
            if filters.get("state", "open") == "open" and shown == "suppressed":
                continue
            if filters.get("state") in STATES and shown != filters["state"]:
                continue
            if filters.get("severity") and alert.severity != filters["severity"]:
                continue
            if any(alert.labels.get(k) != v for k, v in filters.items()
                   if k in ("location", "municipality", "site", "class")):
                continue
            alerts.append(alert)
        if sort == "newest":
            alerts.sort(key=lambda a: -(a.active_since or 0))
        else:
            alerts.sort(key=lambda a: (SEVERITIES.index(a.severity), a.ack_by is not None,
                                       -(a.behind or 0), a.active_since or 0))
        return self.render(
            request, "problems.html", user, alerts=alerts[:MAX_ROWS], shown=len(alerts),
            filters=filters, sort=sort, severities=SEVERITIES, states=STATES,
            choices=self._choices(user), silence_hours=SILENCE_HOURS,
            by_severity=Counter(a.severity for a in alerts))

    def _choices(self, user: ApiUser | None) -> dict[str, list[tuple[str, str]]]:
        c = self.config
        return {
            "location": [(k, v.name) for k, v in sorted(c.locations.items())],
            "municipality": [(k, v.name) for k, v in sorted(c.municipalities.items())
                             if Auth.sees(user, k)],
            "site": sorted(((k, v.name) for k, v in c.sites.items()
                            if Auth.sees(user, v.municipality)), key=lambda kv: kv[1]),
            "class": sorted({(d.device_class, CLASS_NB.get(d.device_class, d.device_class))
                             for d in c.devices.values()}),
        }

    def _checked(self, form: MultiDictProxy[Any], user: ApiUser | None) -> list[Alert]:
        """The alerts checked on the form that ``user`` may see (copies)."""
        found = (self.rules.find(fp) for fp in _picked(form))
        return [a for a in found
                if a is not None and Auth.sees(user, a.labels.get("municipality"))]

    async def acknowledge(self, request: web.Request, user: ApiUser | None
                          ) -> web.StreamResponse:
        assert user is not None
        form = await request.post()
        comment = str(form.get("comment", "")).strip()
        done = 0
        for alert in self._checked(form, user):
            try:
                await self.rules.acknowledge(alert.fingerprint, user.id, comment,
                                             {"comment": comment, "via": "console"})
            except KeyError:
                continue  # resolved meanwhile
            done += 1
        if not done:
            return problem(400, "check at least one open alert")
        raise web.HTTPSeeOther(_back(form))

    async def silence(self, request: web.Request, user: ApiUser | None
                      ) -> web.StreamResponse:
        assert user is not None
        form = await request.post()
        hours = _hours(form)
        if hours is None:
            return problem(400, "hours: a number between 0 and 336")
        comment = str(form.get("comment", "")).strip() or "dempet fra konsollet"
        now = datetime.now(UTC)
        made = 0
        for alert in self._checked(form, user):
            matchers = [f'{k}="{_quoted(v)}"' for k, v in sorted(alert.labels.items())
                        if k not in _CONTEXT_LABELS]
            silence = Silence(matchers=matchers, starts_at=now,
                              ends_at=now + timedelta(hours=hours), comment=comment,
                              id=f"s-{secrets.token_hex(6)}")
            try:
                await self.rules.add_silence(silence, user.id)
            except SpecError as exc:
                return problem(400, str(exc))
            made += 1
        if not made:
            return problem(400, "check at least one open alert")
        raise web.HTTPSeeOther(_back(form))

    async def maintenance(self, request: web.Request, user: ApiUser | None
                          ) -> web.StreamResponse:
        """A one-off window for a device or a site, from now or a local start time."""
        assert user is not None
        form = await request.post()
        device, site = str(form.get("device", "")), str(form.get("site", ""))
        # from the Problems page: the devices of the checked alerts
        picked = sorted({a.device for a in self._checked(form, user)
                         if a.device in self.config.devices})
        if sum(map(bool, (device, site, picked))) != 1:
            return problem(400, "say which: device, site, or checked alerts with devices")
        if device and device not in self.config.devices:
            return problem(400, f"no device {device!r}")
        if site and site not in self.config.sites:
            return problem(400, f"no site {site!r}")
        hours = _hours(form)
        if hours is None:
            return problem(400, "hours: a number between 0 and 336")
        try:
            start_text = str(form.get("start", "")).strip()
            start = (datetime.fromisoformat(start_text).replace(tzinfo=OSLO)
                     if start_text else datetime.now(UTC))
        except ValueError:
            return problem(400, "start: YYYY-MM-DDTHH:MM, local time")
        devices = [device] if device else picked
        target = (", ".join(self.config.devices[d].name for d in devices[:3])
                  + (f" og {len(devices) - 3} til" if len(devices) > 3 else "")
                  if devices else self.config.sites[site].name)
        window = Maintenance(
            name=str(form.get("name", "")).strip()[:200] or f"Vedlikehold: {target}"[:200],
            starts_at=start, ends_at=start + timedelta(hours=hours),
            devices=devices, sites=[site] if site else [],
            comment=str(form.get("comment", "")).strip(), id=f"m-{secrets.token_hex(6)}")
        try:
            window.check()
            await self.rules.add_maintenance(window, user.id)
        except SpecError as exc:
            return problem(400, str(exc))
        raise web.HTTPSeeOther(_back(form))

    # -- an alert ------------------------------------------------------------------------

    async def alert(self, request: web.Request, user: ApiUser | None) -> web.StreamResponse:
        alert = await self.rules.lookup(request.match_info["id"])
        if alert is None or not Auth.sees(user, alert.labels.get("municipality")):
            return problem(404, "no such alert")
        below = self.rules.engine.inventory.descendants(alert.device) if alert.device else []
        rows = self._rows_by_id(user, [alert.device or "", *below])
        device = rows.get(alert.device or "")
        behind = sorted((rows[d] for d in below if d in rows),
                        key=lambda r: (_rank(r.status), r.device.name))
        timeline = await self._timeline_of_alerts([alert], since=0)
        return self.render(request, "alert.html", user, alert=alert, device=device,
                            behind=behind, timeline=timeline)

    async def _timeline_of_alerts(self, alerts: Iterable[Alert], since: float
                                  ) -> list[Moment]:
        by_fp = {a.fingerprint: a for a in alerts}
        out = []
        for fp, ts, state, detail in await self.rules.store.alert_logs(by_fp, since):
            alert = by_fp[fp]
            who = detail or "" if state == "acknowledged" else ""
            out.append(Moment(ts, f"{alert.rule}: {ALERT_STATE_NB.get(state, state)}",
                              "" if who else (detail or ""), who, state))
        for ts, actor, action, _target, detail in await self.rules.store.audit_of(
                f"alert/{fp}" for fp in by_fp):
            if ts < since:
                continue
            comment = _comment(detail)
            out.append(Moment(ts, _ACTIONS.get(action, action), comment, actor, "audit"))
        return sorted(out, key=lambda m: m.ts, reverse=True)

    # -- a device ------------------------------------------------------------------------

    async def device(self, request: web.Request, user: ApiUser | None) -> web.StreamResponse:
        device_id = request.match_info["id"]
        inventory = self.rules.engine.inventory
        rows = self._rows_by_id(user, [device_id, *inventory.ancestors(device_id),
                                       *inventory.descendants(device_id)])
        row = rows.get(device_id)
        if row is None:
            return problem(404, "no such device")
        path = [rows[a] for a in inventory.ancestors(device_id) if a in rows]
        behind = sorted((rows[d] for d in inventory.descendants(device_id) if d in rows),
                        key=lambda r: (_rank(r.status), r.device.name))
        children = [rows[d] for d in inventory.children.get(device_id, []) if d in rows]
        alerts = await self.rules.of_device(device_id)
        now = self.clock()
        since = now - TIMELINE_DAYS * 86400
        timeline = await self._timeline_of_alerts(alerts, since)
        timeline.extend(await self._state_changes(device_id, since, now))
        timeline.extend(await self._plans_for(row, since))
        timeline.sort(key=lambda m: m.ts, reverse=True)
        checks = sorted((check, event) for (owner, check), event in self.state.checks.items()
                        if owner == device_id)
        grafana = (f"{self.grafana_url}/d/driftsvakt-device?var-device={device_id}"
                   if self.grafana_url else None)
        links = self.console.links
        neighbours = ([link for link in links.view.report.links if link.device == device_id]
                      if links is not None else [])
        return self.render(
            request, "device.html", user, row=row, path=path, behind=behind,
            children=children, interfaces=self._interfaces(device_id), checks=checks,
            parents=self.console.parents(device_id), neighbours=neighbours[:500],
            watched=inventory.watched(device_id),
            open_alerts=[a for a in alerts if a.state == "firing"],
            past_alerts=[a for a in alerts if a.state == "resolved"][:20],
            timeline=timeline[:200], grafana=grafana, hours=(1, 2, 4, 8, 24))

    def _interfaces(self, device: str) -> list[Interface]:
        found: dict[str, Interface] = {}
        for (owner, name, labels), value in self.state.series.items():
            if owner != device or not name.startswith("if_"):
                continue
            tags = dict(labels)
            index = tags.get("ifindex")
            if index is None:
                continue
            face = found.get(index)
            if face is None:
                face = found[index] = Interface(index, tags.get("ifname", index),
                                                tags.get("ifalias", ""))
            face.values[name] = value.value
            if value.rate is not None:
                face.rates[name] = value.rate
        return sorted(found.values(), key=lambda f: (len(f.index), f.index))

    async def _state_changes(self, device: str, since: float, now: float) -> list[Moment]:
        seen: set[tuple[float, str]] = set()
        out = []
        for _c, _src, start, _last, state, _v in await self.rules.store.sla_runs(
                [f"device:{device}"], since, now, 0.0):
            if (start, state) in seen or start < since:
                continue
            seen.add((start, state))
            out.append(Moment(start, f"Rapportert {STATUS_NB.get(state, state)}", css=state))
        return out

    async def _plans_for(self, row: DeviceRow, since: float) -> list[Moment]:
        """Maintenance that covers the device, and silences naming it."""
        d = row.device
        targets = [f"maintenance/{m.id}" for m in self.rules.engine.maintenance.values()
                   if d.id in m.devices or d.site in m.sites
                   or row.municipality in m.municipalities
                   or any(t in d.tags for t in m.tags)]
        targets += [f"silence/{s.spec.id}" for s in self.rules.engine.silences.values()
                    if any(m.name == "device" and m.op == "=" and m.value == d.id
                           for m in s.matchers)]
        return [Moment(ts, _ACTIONS.get(action, action), _comment(detail), actor, "audit")
                for ts, actor, action, _t, detail in await self.rules.store.audit_of(targets)
                if ts >= since]

    # -- a site --------------------------------------------------------------------------

    async def site(self, request: web.Request, user: ApiUser | None) -> web.StreamResponse:
        site = self.config.sites.get(request.match_info["id"])
        if site is None or not Auth.sees(user, site.municipality):
            return problem(404, "no such site")
        rows = self._rows_by_id(user, [d.id for d in self.config.devices.values()
                                       if d.site == site.id])
        here = {r.device.id: r for r in rows.values() if r.device.site == site.id}
        children: dict[str | None, list[str]] = {}
        inventory = self.rules.engine.inventory
        for r in here.values():
            # the tree shows a device once, under its first parent on this site
            parent = next((p for p in inventory.uplinks(r.device.id)[0] if p in here), None)
            children.setdefault(parent, []).append(r.device.id)
        tree: list[tuple[int, DeviceRow]] = []

        def walk(parent: str | None, depth: int) -> None:
            for child in sorted(children.get(parent, []),
                                key=lambda i: (_rank(here[i].status), i)):
                tree.append((depth, here[child]))
                walk(child, depth + 1)

        walk(None, 0)
        now = self.clock()
        windows = [m for m in self.rules.engine.maintenance.values()
                   if site.id in m.sites or any(d in here for d in m.devices)]
        return self.render(
            request, "site.html", user, site=site, tree=tree,
            counts=Counter(r.status for r in here.values()), statuses=STATUSES,
            windows=[(m, m.active(now)) for m in windows], hours=(1, 2, 4, 8, 24))

    # -- topology ------------------------------------------------------------------------

    async def topology(self, request: web.Request, user: ApiUser | None
                       ) -> web.StreamResponse:
        """The devices that others hang on (and all network gear), laid out as a tree
        from the centre outwards: depth left to right, one row per branch's end."""
        inventory = self.rules.engine.inventory
        shown = {d.id for d in self.config.devices.values()
                 if d.device_class in _NETWORK or inventory.children.get(d.id)}
        rows = self._rows_by_id(user, shown)
        now = self.clock()
        maintained = {d for d in rows if any(
            m.covers(inventory.devices[d]) and m.active(now)
            for m in self.rules.engine.maintenance.values())}
        roots = sorted((d for d in rows
                        if not any(p in rows for p in inventory.uplinks(d)[0])),
                       key=lambda d: (self.config.devices[d].site, d))
        nodes: list[MapNode] = []
        edges: list[tuple[MapNode, MapNode, bool]] = []  # parent, child, from the links
        placed: dict[str, MapNode] = {}

        def place(device: str, depth: int, parent: MapNode | None) -> None:
            node = placed.get(device)
            known = node is not None  # the second parent of a pair: one more edge
            if node is None:
                node = placed[device] = MapNode(rows[device], depth, len(nodes),
                                                inventory.behind(device), device in maintained)
                nodes.append(node)
            if parent is not None:
                edges.append((parent, node, not inventory.declared(device)))
            if known:
                return
            for child in sorted(c for c in inventory.children.get(device, []) if c in rows):
                place(child, depth + 1, node)

        for root in roots:
            place(root, 0, None)
        depth = max((n.depth for n in nodes), default=0)
        return self.render(request, "topology.html", user, nodes=nodes, edges=edges,
                            proposals=self._proposals(rows),
                            width=(depth + 1) * _MAP_COLUMN + 40,
                            height=len(nodes) * _MAP_ROW + 20,
                            column=_MAP_COLUMN, row_height=_MAP_ROW,
                            counts=Counter("maintenance" if n.maintenance else n.row.status
                                           for n in nodes))

    def _proposals(self, shown: dict[str, DeviceRow]) -> list[tuple[str, str, str, str]]:
        """What the links show that the estate does not say: (device, declared, links,
        ports), the differing first, then those in force only from the links."""
        links = self.console.links
        if links is None:
            return []
        out = []
        for p in sorted(links.view.report.placements.values(),
                        key=lambda p: (p.verdict != "differs", p.device)):
            if p.device in shown and p.verdict != "agrees":
                out.append((p.device, ", ".join(p.declared), ", ".join(p.parents),
                            ", ".join(p.uplinks)))
        return out

    # -- search --------------------------------------------------------------------------

    async def search(self, request: web.Request, user: ApiUser | None) -> web.StreamResponse:
        q = request.query.get("q", "").strip()
        hits: list[tuple[DeviceRow, str]] = []
        if q:
            needle = q.casefold()
            aliases = self._aliases()
            for row in self.console.rows(user, self.clock()):
                d = row.device
                site = self.config.sites[d.site].name
                why = next((f"{label}: {text}" for label, text in (
                    ("id", d.id), ("navn", d.name), ("adresse", d.address or ""),
                    ("lokasjon", site)) if needle in text.casefold()), None)
                if why is None:
                    why = next((f"grensesnitt: {a}" for a in aliases.get(d.id, ())
                                if needle in a.casefold()), None)
                if why is not None:
                    hits.append((row, why))
                if len(hits) >= MAX_ROWS:
                    break
            hits.sort(key=lambda h: (h[0].device.id.casefold() != needle, _rank(h[0].status),
                                     h[0].device.id))
            if len(hits) == 1 and hits[0][0].device.id.casefold() == needle:
                raise web.HTTPSeeOther(f"/devices/{hits[0][0].device.id}")
        return self.render(request, "search.html", user, q=q, hits=hits)

    def _aliases(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for (device, name, labels), _ in self.state.series.items():
            if name == "if_oper_status":
                for k, v in labels:
                    if k in ("ifalias", "ifname") and v:
                        out.setdefault(device, set()).add(v)
        return out


# -- helpers ----------------------------------------------------------------------------

_ACTIONS: Final = {"acknowledge": "Kvittert", "create_silence": "Dempet",
                   "expire_silence": "Demping avsluttet", "create_maintenance":
                   "Vedlikehold planlagt", "delete_maintenance": "Vedlikehold slettet"}


def _rank(status: str) -> int:
    return STATUSES.index(status) if status in STATUSES else len(STATUSES)


def _picked(form: MultiDictProxy[Any]) -> list[str]:
    return [str(v) for v in form.getall("alert", [])][:MAX_ROWS]


def _hours(form: MultiDictProxy[Any]) -> float | None:
    """The form's ``hours``: more than 0 and at most 14 days, else None."""
    try:
        hours = float(str(form.get("hours", "")))
    except ValueError:
        return None
    return hours if 0 < hours <= 24 * 14 else None


def _back(form: MultiDictProxy[Any]) -> str:
    """Where a form sends the browser after: a path on this site, never elsewhere."""
    where = str(form.get("next", "/problems"))
    if not where.startswith("/") or where.startswith("//") or "\\" in where or any(
            ch in where for ch in "\r\n"):
        return "/problems"
    return where


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _comment(detail: str) -> str:
    try:
        body = msgspec.json.decode(detail)
    except msgspec.DecodeError:
        return ""
    if isinstance(body, dict):
        return str(body.get("comment") or body.get("name") or "")
    return ""
