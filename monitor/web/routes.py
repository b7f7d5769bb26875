"""Every route the engine serves, in one table: method, path, who may use it, handler.

``viewer``/``operator``/``admin``: the least role, behind :class:`Auth` (a viewer sees
its own municipality only); ``page``: a browser page, which sends a visitor without a
session to /login; ``form``: a console form, posted with the cookie and the form's
token (or a bearer header); ``open``: no sign-in (the signed ack links carry their own
signature, and so do the maintenance feeds' subscription links, which otherwise take
the portal's sign-in; /login is how one signs in). /metrics, /healthz and /readyz are served by
:func:`monitor.web.build_app`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from monitor.config import Config
from monitor.links import Links
from monitor.notify.service import NotifyService
from monitor.registration import Registry
from monitor.reload import EstateReload
from monitor.rules.service import RulesService
from monitor.sla.service import SlaService
from monitor.state import State
from monitor.web.api import Api
from monitor.web.auth import Auth
from monitor.web.console import Console
from monitor.web.feeds import Feeds
from monitor.web.login import Login
from monitor.web.notes import NoteRoutes
from monitor.web.notify import NotifyRoutes
from monitor.web.registrations import RegistrationRoutes
from monitor.web.sla import SlaRoutes
from monitor.web.workbench import Workbench

__all__ = ["add_routes"]

Handler = Callable[..., Awaitable[web.StreamResponse]]


def add_routes(app: web.Application, *, config: Config, auth: Auth, rules: RulesService,
               notify: NotifyService, sla: SlaService, state: State, location: str,
               estate: EstateReload, agents: Registry, links: Links | None = None) -> None:
    api = Api(config, rules, auth, estate)
    console = Console(config, state, rules, location, links)
    bench = Workbench(config, state, rules, console, auth, config.engine.grafana_url)
    oncall = NotifyRoutes(notify)
    feeds = Feeds(config, sla.store, auth, notify.ack_secret)
    slas = SlaRoutes(sla, rules, feeds)
    login = Login(auth)
    notes = NoteRoutes(slas, rules, bench)
    registrations = RegistrationRoutes(agents, rules.store, bench)
    table: list[tuple[str, str, str, Any]] = [
        ("GET", "/", "page viewer", console.page),
        ("GET", "/problems", "page operator", bench.problems),
        ("POST", "/problems/ack", "form operator", bench.acknowledge),
        ("POST", "/problems/silence", "form operator", bench.silence),
        ("POST", "/maintenance", "form admin", bench.maintenance),
        ("GET", "/alerts/{id}", "page operator", bench.alert),
        ("GET", "/devices/{id}", "page operator", bench.device),
        ("GET", "/sites/{id}", "page operator", bench.site),
        ("GET", "/topology", "page operator", bench.topology),
        ("GET", "/search", "page operator", bench.search),
        ("GET", "/notes", "page operator", notes.page),
        ("POST", "/notes", "form operator", notes.form_post),
        ("POST", "/notes/{id}", "form operator", notes.form_change),
        ("GET", "/registrations", "page operator", registrations.page),
        ("POST", "/registrations/{id}", "form operator", registrations.form),
        ("GET", "/api/v1/devices", "viewer", console.list_devices),
        ("GET", "/api/v1/devices/{id}", "viewer", console.get_device),
        ("GET", "/api/v1/alerts", "viewer", api.list_alerts),
        ("GET", "/api/v1/alerts/{id}", "viewer", api.get_alert),
        ("POST", "/api/v1/alerts/{id}/ack", "operator", api.ack),
        ("POST", "/api/v2/alerts", "operator", api.post_alerts),
        ("GET", "/api/v1/silences", "viewer", api.list_silences),
        ("POST", "/api/v1/silences", "operator", api.add_silence),
        ("DELETE", "/api/v1/silences/{id}", "operator", api.delete_silence),
        ("GET", "/api/v1/maintenance", "viewer", api.list_maintenance),
        ("POST", "/api/v1/maintenance", "admin", api.add_maintenance),
        ("DELETE", "/api/v1/maintenance/{id}", "admin", api.delete_maintenance),
        ("GET", "/api/v1/registrations", "operator", registrations.list),
        ("POST", "/api/v1/registrations/{id}", "operator", registrations.decide),
        ("POST", "/-/reload", "admin", api.reload),
        ("GET", "/api/v1/audit", "admin", api.audit),
        ("GET", "/api/v1/store/snapshot", "admin", api.store_snapshot),
        ("GET", "/api/v1/oncall/{schedule}", "operator", oncall.oncall),
        ("GET", "/api/v1/oncall/{schedule}/calendar.ics", "operator", oncall.ical),
        ("GET", "/ack/{alert}", "open", oncall.ack_form),
        ("POST", "/ack/{alert}", "open", oncall.ack),
        ("GET", "/api/v1/sla", "viewer", slas.sla_list),
        ("GET", "/api/v1/sla/{m}", "viewer", slas.sla_get),
        ("GET", "/api/v1/sla/{m}/corrections", "viewer", slas.corrections),
        ("POST", "/api/v1/sla/{m}/corrections", "admin", slas.add_correction),
        ("DELETE", "/api/v1/sla/{m}/corrections/{id}", "admin", slas.delete_correction),
        ("GET", "/api/v1/sla/{m}/notes", "viewer", notes.list),
        ("POST", "/api/v1/sla/{m}/notes", "operator", notes.add),
        ("POST", "/api/v1/sla/{m}/notes/{id}", "operator", notes.change),
        ("DELETE", "/api/v1/sla/{m}/notes/{id}", "admin", notes.delete),
        ("GET", "/sla/{m}", "page viewer", slas.portal),
        ("GET", "/sla", "page viewer", slas.front),
        ("GET", "/sla/{m}/vedlikehold.ics", "open", feeds.ical),
        ("GET", "/sla/{m}/vedlikehold.atom", "open", feeds.atom),
        ("GET", "/login", "open", login.form),
        ("POST", "/login", "open", login.login),
        ("POST", "/logout", "open", login.logout),
        ("GET", "/login/oidc", "open", login.oidc_start),
        ("GET", "/login/oidc/callback", "open", login.oidc_callback),
    ]
    for method, path, who, handler in table:
        if who == "open":
            app.router.add_route(method, path, handler)
        elif who.startswith("page "):
            app.router.add_route(method, path, auth.guard(who[5:], handler, page=True))
        elif who.startswith("form "):
            app.router.add_route(method, path, auth.guard(who[5:], handler, form=True))
        else:
            app.router.add_route(method, path, auth.guard(who, handler))
