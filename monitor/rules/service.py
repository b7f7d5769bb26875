"""The rules inside a running engine: evaluation on ingest, the tick, persistence, reload.

What the rules change is written with the batch of events that caused it (one
transaction, before the collectors are acknowledged), or by the tick for what time
alone changes. On start the store gives back the alerts, silences and maintenance
windows, and the time of the last evaluation (for the ``for:`` outage tolerance).
A reload reads the rule files afresh; if any is broken the whole reload is refused
and the running rules go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Final, Literal

import msgspec
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from monitor.config import Config
from monitor.events import ComponentStatus, DeviceTopic, Event
from monitor.links import LinkView
from monitor.registration import Registration, RegistrationChange
from monitor.rules.alerts import Alert
from monitor.rules.evaluator import RuleEngine
from monitor.rules.external import PostableAlert, take
from monitor.rules.inventory import DeviceInfo, Inventory
from monitor.rules.lifecycle import KEEP_RESOLVED
from monitor.rules.model import RuleSet, load_rules
from monitor.rules.suppress import Maintenance, Silence, SpecError
from monitor.sla.notes import StatusNote
from monitor.sla.report import Correction
from monitor.state import State
from monitor.store.db import AlertChanges, Store
from monitor.yamlmodel import Problems

__all__ = ["RulesService", "default_rules_path"]

log = structlog.get_logger(__name__)

TICK_SECONDS: Final = 1.0


class OperatorAction(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """What an operator did at one location, as the engines share it (``_ops``): the
    latest action per object (an alert's acknowledgement, a silence, a window)."""

    kind: Literal["acknowledge", "silence", "expire_silence", "maintenance",
                  "delete_maintenance", "correction", "delete_correction", "note",
                  "delete_note", "registration"]
    key: str  # the alert's fingerprint, the silence's, window's, correction's or note's id
    actor: str
    at: float
    comment: str = ""
    silence: Silence | None = None
    maintenance: Maintenance | None = None
    correction: Correction | None = None
    note: StatusNote | None = None
    registration: Registration | None = None

    @property
    def entry(self) -> str:
        """One shared entry per object: a later action on it replaces the earlier."""
        kind = {"expire_silence": "silence", "delete_maintenance": "maintenance",
                "delete_correction": "correction", "delete_note": "note"}
        return f"{kind.get(self.kind, self.kind)}/{self.key}"


_ACTION: Final = msgspec.json.Decoder(OperatorAction)
_ENCODER: Final = msgspec.json.Encoder()
_ALERT: Final = msgspec.json.Decoder(Alert)
_SILENCE: Final = msgspec.json.Decoder(Silence)
_MAINTENANCE: Final = msgspec.json.Decoder(Maintenance)


def default_rules_path(config: Config) -> Path:
    """``engine.rules`` from the config, else the rule set shipped with driftsvakt."""
    if config.engine.rules is not None:
        return Path(config.engine.rules)
    return Path(__file__).resolve().parents[2] / "rules"


class RulesMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.eval_seconds = Histogram(
            "driftsvakt_rule_evaluation_duration_seconds",
            "Rule evaluation per ingest batch and per tick", ["trigger"],
            buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
            registry=registry)
        self.loaded = Gauge("driftsvakt_rules_loaded", "Rules in the running rule set",
                            registry=registry)
        self.reload_ok = Gauge("driftsvakt_rules_last_reload_success",
                               "1 if the last rule (re)load succeeded", registry=registry)
        self.reload_at = Gauge("driftsvakt_rules_last_reload_success_timestamp_seconds",
                               "When the rules were last loaded successfully",
                               registry=registry)
        self.external = Counter(
            "driftsvakt_external_alerts_received_total",
            "Alerts posted by other systems (POST /api/v2/alerts), by the API user that "
            "posted them", ["sender"], registry=registry)
        self.on_batch = self.eval_seconds.labels("events")
        self.on_tick = self.eval_seconds.labels("tick")


class AlertsCollector(Collector):
    """``driftsvakt_alerts``: alerts not resolved, counted at scrape time."""

    def __init__(self, engine: RuleEngine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "driftsvakt_alerts", "Alerts by state shown (pending, firing, acknowledged, "
            "suppressed), severity, location, municipality and rule",
            labels=["state", "severity", "location", "municipality", "alertname"])
        counts: dict[tuple[str, str, str, str, str], int] = {}
        for alert in self.engine.alerts.values():
            if alert.state == "resolved":
                continue
            key = (alert.shown_state(), alert.severity, alert.labels.get("location", ""),
                   alert.labels.get("municipality", ""), alert.rule)
            counts[key] = counts.get(key, 0) + 1
        for key, count in counts.items():
            family.add_metric(list(key), float(count))
        yield family


class RulesService:
    def __init__(self, engine: RuleEngine, store: Store, state: State, path: Path,
                 registry: CollectorRegistry) -> None:
        self.engine = engine
        self.store = store
        self.state = state
        self.path = path
        self.metrics = RulesMetrics(registry)
        registry.register(AlertsCollector(engine))
        self.metrics.loaded.set(len(engine.rules.rules))
        self.metrics.reload_ok.set(1)
        self.metrics.reload_at.set(time.time())
        self._batch_seconds = 0.0
        # told of every alert that changed (notifications), after each evaluation
        self.listeners: list[Callable[[list[Alert]], None]] = []
        # operator actions shared with the peer engine: ours out once stored, theirs in
        self.replicate: Callable[[str, bytes], None] | None = None
        self._peer_actions: list[OperatorAction] = []
        # an operator's decision on a registered agent, from the peer (monitor.registration)
        self.on_registration: Callable[[Registration], RegistrationChange | None] | None = None

    @classmethod
    async def start(cls, config: Config, store: Store, state: State,
                    registry: CollectorRegistry) -> RulesService:
        """Load the rules (raising Problems if broken) and what the store kept."""
        path = default_rules_path(config)
        rules = load_rules(path)
        now = time.time()
        engine = RuleEngine(rules, Inventory.from_config(config), started=now,
                            hours_for=config.office_hours_for,
                            outage_tolerance=config.engine.outage_tolerance)
        service = cls(engine, store, state, path, registry)
        await service._restore(now)
        engine.lifecycle.announce = True
        log.info("rules_loaded", path=str(path), summary=rules.summary(),
                 alerts=len(engine.active()))
        return service

    async def _restore(self, now: float) -> None:
        alerts = [_ALERT.decode(body) for body in
                  await self.store.load_alerts(now - KEEP_RESOLVED)]
        last_eval = await self.store.fact("last_eval")
        for raw in await self.store.silences(now):
            silence = _SILENCE.decode(raw)
            try:
                self.engine.add_silence(silence, now)
            except SpecError as exc:  # pragma: no cover - checked when it was made
                log.warning("silence_unusable", id=silence.id, error=str(exc))
        for raw in await self.store.maintenance_windows():
            window = _MAINTENANCE.decode(raw)
            self.engine.add_maintenance(window, now)
        # Device states as the store kept them: topology holds across the restart.
        for device, status in self.state.devices.items():
            if status.state is not None:
                self.engine.observe_state(device, status.state)
        self.engine.restore(alerts, last_eval, now)

    # -- what others read: copies, never the live alerts -------------------------------

    def find(self, fingerprint: str) -> Alert | None:
        alert = self.engine.alerts.get(fingerprint)
        return copy.copy(alert) if alert is not None else None

    def current(self) -> list[Alert]:
        """Every alert held, resolved ones of the last hour included."""
        return [copy.copy(a) for a in self.engine.alerts.values()]

    async def lookup(self, fingerprint: str) -> Alert | None:
        """An alert held in memory, else as the store last wrote it (an alert resolved
        longer ago than memory keeps, which an old notification still links to)."""
        found = self.find(fingerprint)
        if found is not None:
            return found
        body = await self.store.alert_body(fingerprint)
        return _ALERT.decode(body) if body is not None else None

    async def of_device(self, device: str, limit: int = 50) -> list[Alert]:
        """The alerts about ``device``, newest first: memory's over the store's."""
        held = {a.fingerprint: copy.copy(a) for a in self.engine.alerts.values()
                if a.labels.get("device") == device}
        for body in await self.store.device_alerts(device, limit):
            alert = _ALERT.decode(body)
            held.setdefault(alert.fingerprint, alert)
        return sorted(held.values(), key=lambda a: a.active_since, reverse=True)[:limit]

    # -- what people do: each one change in memory and one transaction -------------------

    async def acknowledge(self, fp: str, who: str, comment: str,
                          detail: dict[str, str] | None = None) -> Alert:
        """Raises KeyError when there is no such alert, or it is resolved."""
        alert = self.engine.acknowledge(fp, who, comment, time.time())
        await self.store.audit(who, "acknowledge", f"alert/{fp}",
                               _ENCODER.encode(detail or {"comment": comment}), self.changes())
        self._share(OperatorAction(kind="acknowledge", key=fp, actor=who, at=time.time(),
                                   comment=comment))
        return alert

    async def add_silence(self, silence: Silence, actor: str) -> None:
        """Raises SpecError for a silence that cannot hold (bad matchers, times)."""
        silence.created_by = actor
        self.engine.add_silence(silence, time.time())
        await self.store.put_silence(silence.id, _ENCODER.encode(silence),
                                     silence.ends_at.timestamp(), actor, "create_silence",
                                     self.changes())
        self._share(OperatorAction(kind="silence", key=silence.id, actor=actor,
                                   at=time.time(), silence=silence))

    async def expire_silence(self, sid: str, actor: str) -> bool:
        if sid not in self.engine.silences:
            return False
        self.engine.remove_silence(sid, time.time())
        await self.store.delete_silence(sid, actor, self.changes())
        self._share(OperatorAction(kind="expire_silence", key=sid, actor=actor,
                                   at=time.time()))
        return True

    async def add_maintenance(self, window: Maintenance, actor: str) -> None:
        """Raises SpecError for a window that cannot hold."""
        window.created_by = actor
        self.engine.add_maintenance(window, time.time())
        await self.store.put_maintenance(window.id, _ENCODER.encode(window), actor,
                                         "create_maintenance", self.changes())
        self._share(OperatorAction(kind="maintenance", key=window.id, actor=actor,
                                   at=time.time(), maintenance=window))

    async def delete_maintenance(self, mid: str, actor: str) -> bool:
        if mid not in self.engine.maintenance:
            return False
        self.engine.remove_maintenance(mid, time.time())
        await self.store.delete_maintenance(mid, actor, self.changes())
        self._share(OperatorAction(kind="delete_maintenance", key=mid, actor=actor,
                                   at=time.time()))
        return True

    async def add_correction(self, correction: Correction, actor: str) -> None:
        """An SLA correction (checked by the caller against the config)."""
        await self.store.put_correction(correction.id, _ENCODER.encode(correction), actor)
        self._share(OperatorAction(kind="correction", key=correction.id, actor=actor,
                                   at=time.time(), correction=correction))

    async def delete_correction(self, cid: str, actor: str) -> None:
        await self.store.delete_correction(cid, actor)
        self._share(OperatorAction(kind="delete_correction", key=cid, actor=actor,
                                   at=time.time()))

    async def put_note(self, note: StatusNote, actor: str, created: bool) -> None:
        """A status page note's new version (checked by the caller)."""
        await self.store.put_note(note.id, note.municipality, _ENCODER.encode(note),
                                  note.changed, actor,
                                  "create_status_note" if created else "update_status_note")
        self._share(OperatorAction(kind="note", key=note.id, actor=actor, at=note.changed,
                                   note=note))

    async def delete_note(self, nid: str, actor: str) -> None:
        await self.store.delete_note(nid, actor)
        self._share(OperatorAction(kind="delete_note", key=nid, actor=actor,
                                   at=time.time()))

    def share_registration(self, row: Registration) -> None:
        self._share(OperatorAction(kind="registration", key=row.device, actor=row.by,
                                   at=row.changed, registration=row))

    # -- the other location's operators -----------------------------------------------

    def _share(self, action: OperatorAction) -> None:
        if self.replicate is not None:  # stored: the peer engine may apply it
            self.replicate(action.entry, _ENCODER.encode(action))

    def apply_peer(self, payload: bytes) -> None:
        """An action taken at the other location; applied at the next tick."""
        if not payload:
            return
        try:
            self._peer_actions.append(_ACTION.decode(payload))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("peer_action_rejected", error=str(exc)[:300])

    async def _apply_peer_actions(self) -> None:
        """Each as if taken here, with its own actor and an audit entry saying it came
        from the peer; not shared again. An action already in force changes nothing."""
        actions, self._peer_actions = self._peer_actions, []
        now = time.time()
        for action in actions:
            detail = _ENCODER.encode({"comment": action.comment, "via": "peer engine"})
            if action.kind == "acknowledge":
                alert = self.engine.alerts.get(action.key)
                if alert is None or alert.ack_by is not None or alert.state == "resolved":
                    continue
                self.engine.acknowledge(action.key, action.actor, action.comment, action.at)
                await self.store.audit(action.actor, "acknowledge", f"alert/{action.key}",
                                       detail, self.changes())
            elif action.kind in ("silence", "maintenance"):
                await self._add_from_peer(action, now)
            elif action.kind == "expire_silence" and action.key in self.engine.silences:
                self.engine.remove_silence(action.key, now)
                await self.store.delete_silence(action.key, action.actor, self.changes())
            elif action.kind == "delete_maintenance" and action.key in self.engine.maintenance:
                self.engine.remove_maintenance(action.key, now)
                await self.store.delete_maintenance(action.key, action.actor, self.changes())
            elif action.kind in ("correction", "delete_correction"):
                await self._correct_from_peer(action)
            elif action.kind in ("note", "delete_note"):
                await self._note_from_peer(action)
            elif (action.kind == "registration" and action.registration is not None
                  and self.on_registration is not None):
                change = self.on_registration(action.registration)
                if change is not None:
                    await self.store.put_registration(change)

    async def _note_from_peer(self, action: OperatorAction) -> None:
        """A note's version from the peer, taken if it is later than the one held; a
        note deleted at either location stays deleted."""
        held = await self.store.note_version(action.key)
        if action.kind == "note" and action.note is not None:
            if held is None or (not held[1] and held[0] < action.note.changed):
                await self.store.put_note(
                    action.key, action.note.municipality, _ENCODER.encode(action.note),
                    action.note.changed, action.actor,
                    "create_status_note" if held is None else "update_status_note")
        elif action.kind == "delete_note" and held is not None and not held[1]:
            await self.store.delete_note(action.key, action.actor)

    async def _correct_from_peer(self, action: OperatorAction) -> None:
        """An SLA correction the peer made or deleted; one it made is taken once, one
        deleted here is never brought back."""
        if action.kind == "correction" and action.correction is not None:
            if not await self.store.correction_known(action.key):
                await self.store.put_correction(
                    action.key, _ENCODER.encode(action.correction), action.actor)
        elif action.kind == "delete_correction" and await self.store.correction_held(
                action.key):
            await self.store.delete_correction(action.key, action.actor)

    async def _add_from_peer(self, action: OperatorAction, now: float) -> None:
        """A silence or a window the peer created, unless we hold it already."""
        spec = action.silence or action.maintenance
        held = self.engine.silences if action.silence else self.engine.maintenance
        if spec is None or action.key in held:
            return
        try:
            if isinstance(spec, Silence):
                self.engine.add_silence(spec, now)
            else:
                self.engine.add_maintenance(spec, now)
        except SpecError as exc:
            log.warning("peer_action_rejected", key=action.key, error=str(exc))
            return
        if isinstance(spec, Silence):
            await self.store.put_silence(action.key, _ENCODER.encode(spec),
                                         spec.ends_at.timestamp(), action.actor,
                                         "create_silence", self.changes())
        else:
            await self.store.put_maintenance(action.key, _ENCODER.encode(spec), action.actor,
                                             "create_maintenance", self.changes())

    # -- on the ingest path ------------------------------------------------------------

    def on_event(self, topic: DeviceTopic, event: Event, state: State) -> None:
        started = time.perf_counter()
        self.engine.on_event(topic, event, state)
        self._batch_seconds += time.perf_counter() - started

    def on_component(self, location: str, component: str, instance: str,
                     status: ComponentStatus) -> None:
        started = time.perf_counter()
        self.engine.on_component(location, component, instance, status)
        self._batch_seconds += time.perf_counter() - started

    def changes(self, evaluated_at: float | None = None) -> AlertChanges:
        """Take what the rules changed, encoded for the store; closes a batch's timing."""
        if self._batch_seconds:
            self.metrics.on_batch.observe(self._batch_seconds)
            self._batch_seconds = 0.0
        upsert, dropped, transitions = self.engine.take_changes()
        if upsert and self.listeners:
            copies = [copy.copy(a) for a in upsert]
            for listener in self.listeners:
                listener(copies)
        return AlertChanges(
            upsert=[(a.fingerprint, a.rule, a.state, _ENCODER.encode(a)) for a in upsert],
            dropped=dropped,
            log=[(t.fingerprint, t.ts, t.state, t.detail) for t in transitions],
            evaluated_at=evaluated_at)

    # -- other systems' alerts -----------------------------------------------------------

    async def take_external(self, posted: list[PostableAlert], sender: str) -> int:
        """Alerts posted as to Alertmanager (monitor.rules.external), committed as one
        change; returns how many are firing from this post."""
        now = time.time()
        firing = sum(1 for one in posted
                     if take(self.engine.lifecycle, one, now) is not None)
        await self.store.commit_alerts(self.changes())
        self.metrics.external.labels(sender=sender).inc(len(posted))
        return firing

    # -- the tick ----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Tick until ``stop``; a store failure ends the engine, as in ingest."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), TICK_SECONDS)
            await self.tick(time.time())

    async def tick(self, now: float) -> None:
        if self._peer_actions:
            await self._apply_peer_actions()
        started = time.perf_counter()
        self.engine.tick(now, self.state)
        self.metrics.on_tick.observe(time.perf_counter() - started)
        await self.store.commit_alerts(self.changes(evaluated_at=now))

    # -- reload ------------------------------------------------------------------------

    def estate_changed(self, config: Config, retired: set[str], now: float) -> int:
        """The estate reloaded (``config`` adopted it): the rules take its inventory,
        and the alerts of ``retired`` devices resolve as retired; how many did. The
        caller commits (``changes()``)."""
        return self.engine.estate_changed(Inventory.from_config(config), retired, now)

    def uplinks(self, device: str) -> tuple[tuple[str, ...], int]:
        """A device's parents, declared or from the links, and how many must reach it:
        the rules' answer, which the console's statuses share."""
        return self.engine.inventory.uplinks(device)

    def links_changed(self, view: LinkView, now: float) -> None:
        """The links show other parents or ports (monitor.links); the caller commits."""
        moved = self.engine.links_changed(view.parents, view.ports, now)
        if moved:
            log.info("parents_from_links", devices=moved)

    def devices_joined(self, config: Config, joined: Iterable[str]) -> None:
        """Devices added to the running estate (registered agents) and nothing else."""
        self.engine.devices_joined(DeviceInfo.of(config, d) for d in joined)

    async def reload(self) -> list[str]:
        """Read the rule files again; return the problems (empty on success)."""
        try:
            rules: RuleSet = await asyncio.to_thread(load_rules, self.path)
        except Problems as exc:
            self.metrics.reload_ok.set(0)
            problems = [str(p) for p in exc.problems]
            log.error("rules_reload_refused", path=str(self.path), problems=len(problems),
                      first=problems[0] if problems else None)
            return problems
        self.engine.load(rules, time.time())
        self.metrics.loaded.set(len(rules.rules))
        self.metrics.reload_ok.set(1)
        self.metrics.reload_at.set(time.time())
        await self.store.commit_alerts(self.changes())
        log.info("rules_reloaded", path=str(self.path), summary=rules.summary())
        return []
