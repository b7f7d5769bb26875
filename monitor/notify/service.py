"""Notifications inside a running engine: from alert changes to delivered messages.

Alert changes come from the rules (each batch and tick). A 1 s loop flushes the
groups that are due, runs escalation chains, renders messages and queues them in the
store's delivery outbox *in the same transaction* as the notification log and chain
state that say they were made; a restart therefore never makes a message twice. A
delivery loop sends what is queued, retrying with exponential backoff (or the
receiver's Retry-After) for retryable failures, handing over to the fallback
receiver after ``fallback_after`` failures, and holding to each receiver's hourly
rate limit. A message is marked sent only after the receiver took it: a crash in
between sends it once more after the restart — at most one duplicate, never a loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from typing import Any, Final, Protocol

import aiohttp
import msgspec
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from monitor.config import Config
from monitor.fields import at_time, parse_duration
from monitor.notify.dispatch import Dispatcher, Flush, Route, SentLog, build_routes, notifiable
from monitor.notify.escalation import Chain, Escalator, Page
from monitor.notify.links import ack_url
from monitor.notify.oncall import OnCall
from monitor.notify.receivers import CHANNELS, Message, Outcome, send
from monitor.notify.settings import ReceiverSettings
from monitor.notify.templates import DEFAULTS, alert_view, render
from monitor.rules.alerts import Alert
from monitor.rules.inventory import Inventory
from monitor.state import State
from monitor.store.db import Store
from monitor.yamlmodel import Problem, Problems

__all__ = ["NotifyService"]

log = structlog.get_logger(__name__)

BACKOFF_BASE: Final = 2.0
BACKOFF_CAP: Final = 30.0
TAKEOVER_SECONDS: Final = 15.0
_MESSAGE: Final = msgspec.json.Decoder(Message)
_ENCODER: Final = msgspec.json.Encoder()


class _SentLogBody(msgspec.Struct):
    firing: list[str]
    resolved: list[str]
    at: float


class PeerLogEntry(msgspec.Struct, forbid_unknown_fields=True):
    """A notification log entry as the engines share it (``driftsvakt/v1/_nflog/``)."""

    key: str
    firing: list[str]
    resolved: list[str]
    at: float


_PEER_ENTRY: Final = msgspec.json.Decoder(PeerLogEntry)


class NotifyMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.outcomes = Counter("driftsvakt_notifications_total",
                                "Delivery attempts by receiver and outcome (sent, retry, "
                                "failed, rate_limited, handed_over)", ["receiver", "outcome"],
                                registry=registry)
        self.latency = Histogram(
            "driftsvakt_notification_delivery_seconds",
            "From queueing a notification to the receiver taking it", ["receiver"],
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600), registry=registry)
        self.depth = Gauge("driftsvakt_notification_outbox_messages",
                           "Notifications waiting in the delivery outbox", registry=registry)


class AlertSource(Protocol):
    """What notifications need of the rules (monitor.rules.service.RulesService):
    copies of alerts, never the live ones, and acknowledging as a person."""

    def find(self, fingerprint: str) -> Alert | None: ...

    def current(self) -> list[Alert]: ...

    async def acknowledge(self, fp: str, who: str, comment: str,
                          detail: dict[str, str] | None = None) -> Alert: ...


class NotifyService:
    """Groups, routes, escalates and delivers. Told of changed alerts through
    :meth:`on_alerts` (wired in the composition root, monitor.app), with copies."""

    def __init__(self, config: Config, store: Store, rules: AlertSource,
                 registry: CollectorRegistry, backoff_cap: float = BACKOFF_CAP,
                 location: str | None = None, state: State | None = None) -> None:
        settings = config.notifications
        self.config = config
        self.store = store
        self.rules = rules
        self.metrics = NotifyMetrics(registry)
        self.backoff_cap = backoff_cap
        self.escalator = Escalator({}, {})
        self.dispatcher: Dispatcher | None = None
        self._sent_here: set[str] = set()
        self.configure(config)
        try:
            secret = settings.ack_secret.resolve() if settings.ack_secret is not None else None
        except (KeyError, OSError) as exc:
            raise Problems([Problem(config.source, 0, "notifications.ack_secret",
                                    f"cannot read the secret: {exc}")]) from None
        self.ack_secret = secret.encode() if secret else None
        self.ack_ttl = parse_duration(settings.ack_link_ttl)
        self._nflog_dirty: dict[str, bytes] = {}
        # One notification log for both locations: what this engine sent is handed to
        # ``replicate`` once stored (the engine publishes it to its peer), and what the
        # peer sent comes in through apply_peer, so a takeover or a hand-back does not
        # send again what the other engine already sent.
        self.replicate: Callable[[str, bytes], None] | None = None
        self._wake = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        # Hot standby: both locations' engines evaluate everything; each notifies for
        # its own location, and for a peer's whose engine has been away for 15 s.
        self.location = location
        self.state = state
        self.started = time.time()
        self.covering: set[str] | None = None if location is None else {location}
        self._am_told: dict[str, float] = {}  # group -> when an Alertmanager last heard it

    def configure(self, config: Config) -> None:
        """Receivers, routes, people, rotas and escalation policies, and the names
        messages use (at start, and when the estate reloads): groups waiting, the
        notification log and escalations under way carry over."""
        settings = self.settings = config.notifications
        for receiver in settings.receivers:  # zeros, not missing series
            for outcome in ("sent", "retry", "failed", "rate_limited", "handed_over"):
                self.metrics.outcomes.labels(receiver.id, outcome)
        self.receivers: dict[str, ReceiverSettings] = {r.id: r for r in settings.receivers}
        self.people = {p.id: p for p in settings.people}
        self.schedules = {s.id: OnCall(s, config.schedules.get(s.calendar or ""))
                          for s in settings.schedules}
        self.escalator.policies = {e.id: e for e in settings.escalations}
        self.escalator.schedules = self.schedules
        self.site_names = {s.id: s.name for s in config.sites.values()}
        self.municipality_names = {m.id: m.name for m in config.municipalities.values()}
        self.inventory = Inventory.from_config(config)
        self.device_names = {d.id: d.name for d in config.devices.values()}
        root = build_routes(settings.route, config.schedules) if settings.route else None
        if root is None:
            self.dispatcher = None
        elif self.dispatcher is None:
            self.dispatcher = Dispatcher(root, on_sent=self._remember)
        else:
            self.dispatcher.root = root

    @classmethod
    async def start(cls, config: Config, store: Store, rules: AlertSource,
                    registry: CollectorRegistry, location: str | None = None,
                    state: State | None = None) -> NotifyService:
        service = cls(config, store, rules, registry, location=location, state=state)
        if service.dispatcher is not None:
            for key, raw in (await store.load_nflog()).items():
                body = msgspec.json.decode(raw, type=_SentLogBody)
                service.dispatcher.sent[key] = SentLog(frozenset(body.firing),
                                                       frozenset(body.resolved), body.at)
            now = time.time()
            for key, raw in (await store.load_chains()).items():
                chain = msgspec.json.decode(raw, type=Chain)
                service.escalator.chains[key] = chain
                route = _route_with(service.dispatcher.root, chain.policy)
                firing = tuple(a for fp in chain.firing if (a := rules.find(fp)) is not None)
                if route is not None and firing and not chain.done:
                    # the chain goes on where it was, with the alerts it was about
                    service.escalator.last_flush[key] = Flush(key, route, {}, firing, (), now)
            for alert in rules.current():
                if service.mine(alert):
                    service.dispatcher.update(alert, now)
        return service

    def _remember(self, key: str, entry: SentLog) -> None:
        self._nflog_dirty[key] = _ENCODER.encode(_SentLogBody(
            sorted(entry.firing), sorted(entry.resolved), entry.at))
        self._sent_here.add(key)

    def apply_peer(self, payload: bytes) -> None:
        """The other engine's notification log entry: newer than ours, it is ours."""
        if self.dispatcher is None or not payload:
            return
        try:
            entry = _PEER_ENTRY.decode(payload)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("peer_nflog_rejected", error=str(exc)[:300])
            return
        current = self.dispatcher.sent.get(entry.key)
        if current is not None and current.at >= entry.at:
            return
        self.dispatcher.sent[entry.key] = SentLog(frozenset(entry.firing),
                                                  frozenset(entry.resolved), entry.at)
        self._nflog_dirty[entry.key] = _ENCODER.encode(_SentLogBody(
            entry.firing, entry.resolved, entry.at))  # stored, not handed on again

    def mine(self, alert: Alert) -> bool:
        return self.covering is None or alert.labels.get("location", self.location) \
            in self.covering

    def on_alerts(self, alerts: Iterable[Alert]) -> None:
        if self.dispatcher is None:
            return
        now = time.time()
        for alert in alerts:
            if self.mine(alert):
                self.dispatcher.update(alert, now)

    def _take_over(self, now: float) -> None:
        """Cover the locations whose engine has been offline (or silent) for 15 s."""
        if self.covering is None or self.dispatcher is None or self.state is None:
            return
        covering = {self.location or ""} | {
            location for location in self.config.locations
            if location != self.location and self._away_for(location, now) >= TAKEOVER_SECONDS}
        gained, lost = covering - self.covering, self.covering - covering
        if not gained and not lost:
            return
        if gained:
            log.warning("notify_takeover", locations=sorted(gained),
                        why="their engine is offline")
        if lost:
            log.info("notify_handed_back", locations=sorted(lost),
                     why="their engine is online again")
        self.covering = covering
        for alert in self.rules.current():
            if alert.labels.get("location") in gained:
                self.dispatcher.update(alert, now)
        for key, group in list(self.dispatcher.groups.items()):
            # handed back: what that engine says now is its own to send; our copies
            # of its alerts would go stale here and be sent again
            if group.alerts and all(a.labels.get("location") in lost
                                    for a in group.alerts.values()):
                del self.dispatcher.groups[key]

    def _away_for(self, location: str, now: float) -> float:
        """How long ``location``'s engine has not been online (0 while it is)."""
        assert self.state is not None
        peer = next((key for key in self.state.components
                     if key[0] == location and key[1] == "engine"), None)
        if peer is None:
            return now - self.started
        if self.state.components[peer].status == "online":
            return 0.0
        return now - self.state.component_since[peer]

    # -- making messages ---------------------------------------------------------------

    def _alertmanager_resends(self, now: float) -> list[tuple[str, str, bytes]]:
        """What an Alertmanager receiver was last told is firing, told again every
        ``resend``: its endsAt moves on, so Alertmanager does not resolve it by time."""
        assert self.dispatcher is not None
        out = []
        for group in self.dispatcher.groups.values():
            receiver = self.receivers.get(group.route.receiver or "")
            if receiver is None or receiver.alertmanager is None:
                continue
            every = parse_duration(receiver.alertmanager.resend)
            last = self.dispatcher.sent.get(group.key)
            if last is None or not last.firing or now - self._am_told.get(
                    group.key, last.at) < every:
                continue
            firing = tuple(a for a in group.alerts.values()
                           if notifiable(a) and a.fingerprint in last.firing)
            if firing:
                self._am_told[group.key] = now
                out.append(self._message(Flush(group.key, group.route, group.labels, firing,
                                               (), now), receiver.id, None, now))
        for gone in self._am_told.keys() - self.dispatcher.groups.keys():
            del self._am_told[gone]
        return out

    async def tick(self, now: float) -> int:
        """Flush due groups and escalations into the outbox; return messages queued."""
        if self.dispatcher is None:
            return 0
        self._take_over(now)
        messages: list[tuple[str, str, bytes]] = []
        for flush in self.dispatcher.due(now):
            if flush.route.escalation is not None:
                messages += self._pages(self.escalator.flush(flush, now), now)
            elif flush.route.receiver is not None:
                messages.append(self._message(flush, flush.route.receiver, None, now))
        def acknowledged(fingerprints: list[str]) -> bool:
            found = [self.rules.find(fp) for fp in fingerprints]
            return all(a is None or a.ack_by is not None or a.state == "resolved"
                       for a in found)

        messages += self._pages(self.escalator.tick(now, acknowledged), now)
        messages += self._alertmanager_resends(now)
        chains = {k: _ENCODER.encode(c) for k, c in self.escalator.chains.items()}
        if messages or self._nflog_dirty:
            await self.store.enqueue_notifications(messages, self._nflog_dirty, chains)
            if self.replicate is not None:
                for key in self._sent_here & self._nflog_dirty.keys():
                    body = msgspec.json.decode(self._nflog_dirty[key], type=_SentLogBody)
                    self.replicate(key, _ENCODER.encode(PeerLogEntry(
                        key, body.firing, body.resolved, body.at)))
            self._sent_here.clear()
            self._nflog_dirty = {}
            for key in [k for k, c in self.escalator.chains.items() if c.done]:
                if key not in self.dispatcher.groups:
                    del self.escalator.chains[key]
        if messages:
            self._wake.set()
        return len(messages)

    def _pages(self, pages: list[Page], now: float) -> list[tuple[str, str, bytes]]:
        return [self._message(page.flush, page.receiver, page.person, now,
                              resolved_only=page.resolved_notice, step=page.step)
                for page in pages]

    def _behind_by(self, alert: Alert) -> dict[str, int] | None:
        device = alert.device
        return self.inventory.behind_by_municipality(device) if alert.behind and device \
            else None

    def _message(self, flush: Flush, receiver_id: str, person: str | None, now: float,
                 resolved_only: bool = False, step: int = 0) -> tuple[str, str, bytes]:
        receiver = self.receivers[receiver_id]
        language = receiver.language
        firing = () if resolved_only else flush.firing
        resolved = flush.resolved

        def link(alert: Alert) -> str | None:
            if self.ack_secret is None:
                return None
            return ack_url(self.settings.external_url, self.ack_secret, alert.fingerprint,
                           alert.active_since, person or receiver_id, self.ack_ttl, now)

        views = [alert_view(a, self.settings.external_url, self.site_names,
                            self.device_names, link(a), language, self.municipality_names,
                            self._behind_by(a))
                 for a in firing]
        done = [alert_view(a, self.settings.external_url, self.site_names,
                           self.device_names, None, language, self.municipality_names)
                for a in resolved]
        context: dict[str, Any] = {"firing": views, "resolved": done, "labels": flush.labels,
                                   "count": len(views), "external_url":
                                   self.settings.external_url}
        templates = DEFAULTS[language]
        recipients: list[str] = []
        if person is not None:
            who = self.people.get(person)
            address = CHANNELS[receiver.kind].address_of(who) if who is not None else None
            if address:
                recipients = [address]
        am = receiver.alertmanager
        holds = at_time(now + 4 * parse_duration(am.resend)).isoformat() if am else None
        for view, alert in zip([*views, *done], [*firing, *resolved], strict=True):
            view["starts_at"] = at_time(alert.active_since).isoformat()
            view["ends_at"] = (at_time(alert.resolved_at).isoformat()
                               if alert.resolved_at else holds)
        message = Message(
            receiver=receiver_id,
            subject=self._render(receiver_id, receiver.subject, templates["subject"], context),
            body=self._render(receiver_id, receiver.body, templates["body"], context),
            sms=render(templates["sms"], context),
            recipients=recipients, status="firing" if views else "resolved",
            group=flush.group, alerts=[*views, *done])
        dedup = f"{flush.dedup_key}:{receiver_id}:{person or ''}:{step}" \
                f"{':resolved' if resolved_only else ''}"
        return dedup, receiver_id, _ENCODER.encode(message)

    @staticmethod
    def _render(receiver: str, own: str | None, default: str, context: dict[str, Any]) -> str:
        """A receiver's own template, or the default if it fails on this message (a name
        it uses that this message lacks): a message goes out either way."""
        if own is not None:
            try:
                return render(own, context)
            except Exception as exc:  # jinja2 raises several kinds
                log.warning("notification_template_failed", receiver=receiver,
                            error=f"{type(exc).__name__}: {exc}"[:300])
        return render(default, context)

    # -- delivery ----------------------------------------------------------------------

    async def deliver(self, now: float) -> int:
        """Send what is due; return how many were attempted."""
        rows = await self.store.due_notifications(now)
        if not rows:
            return 0
        if self._session is None:
            self._session = aiohttp.ClientSession()
        allowed: dict[str, int] = {}
        sending = []
        for row in rows:  # the hourly limit is decided here, before sending in parallel
            receiver = self.receivers.get(row[1])
            if receiver is not None and receiver.rate_limit_per_hour:
                if row[1] not in allowed:
                    allowed[row[1]] = receiver.rate_limit_per_hour - \
                        await self.store.sent_since(row[1], now - 3600)
                if allowed[row[1]] <= 0:
                    await self.store.mark_notification(row[0], "queued", "rate limited",
                                                       now + 60)
                    self.metrics.outcomes.labels(row[1], "rate_limited").inc()
                    continue
                allowed[row[1]] -= 1
            sending.append(row)
        await asyncio.gather(*(self._deliver_one(row, now) for row in sending))
        counts = await self.store.notification_counts()
        self.metrics.depth.set(counts.get("queued", 0))
        return len(rows)

    async def _deliver_one(self, row: tuple[int, str, bytes, int, float], now: float) -> None:
        nid, receiver_id, body, attempts, created = row
        receiver = self.receivers.get(receiver_id)
        if receiver is None:
            await self.store.mark_notification(nid, "failed", "receiver no longer configured")
            self.metrics.outcomes.labels(receiver_id, "failed").inc()
            return
        message = _MESSAGE.decode(body)
        assert self._session is not None
        outcome: Outcome = await send(message, receiver, self._session)
        attempts += 1
        if outcome.result == "sent":
            await self.store.mark_notification(nid, "sent", outcome.detail, attempts=attempts)
            self.metrics.outcomes.labels(receiver_id, "sent").inc()
            self.metrics.latency.labels(receiver_id).observe(max(time.time() - created, 0))
            return
        log.warning("notification_failed", receiver=receiver_id, attempt=attempts,
                    outcome=outcome.result, detail=outcome.detail)
        give_up = outcome.result == "permanent" or (
            receiver.fallback is not None and attempts >= receiver.fallback_after)
        if give_up and receiver.fallback is not None:
            await self.store.enqueue_notifications(
                [(f"{nid}:fallback", receiver.fallback,
                  _ENCODER.encode(msgspec.structs.replace(message,
                                                          receiver=receiver.fallback)))],
                {}, {})
            await self.store.mark_notification(nid, "handed_over", outcome.detail,
                                               attempts=attempts)
            self.metrics.outcomes.labels(receiver_id, "handed_over").inc()
            self._wake.set()
        elif outcome.result == "permanent":
            await self.store.mark_notification(nid, "failed", outcome.detail,
                                               attempts=attempts)
            self.metrics.outcomes.labels(receiver_id, "failed").inc()
        else:
            delay = outcome.retry_after if outcome.retry_after is not None else \
                min(BACKOFF_BASE * 2 ** (attempts - 1), self.backoff_cap)
            await self.store.mark_notification(nid, "queued", outcome.detail, now + delay,
                                               attempts)
            self.metrics.outcomes.labels(receiver_id, "retry").inc()

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 1.0)
                self._wake.clear()
                now = time.time()
                await self.tick(now)
                await self.deliver(now)
            await self.tick(time.time())  # queued, it goes out after the next start
        finally:
            if self._session is not None:
                await self._session.close()


def _route_with(route: Route, escalation: str) -> Route | None:
    if route.escalation == escalation:
        return route
    for child in route.children:
        found = _route_with(child, escalation)
        if found is not None:
            return found
    return None
