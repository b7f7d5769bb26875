"""The engine's MQTT side: receive in batches, apply, commit, then acknowledge.

Order per batch is the durability promise of ARCHITECTURE.md: decode and apply
(:class:`~monitor.ingest.Ingest`), write the batch's effects in one store
transaction, and only then acknowledge: PUBACK to the broker (which keeps what was
not acknowledged in the engine's persistent session, and sends it again after a
crash, so events of the other location, whose collectors do not wait for us, are not
lost) and each touched source's progress on its retained ``_ack`` topic. A store
failure ends the engine (non-zero exit): memory would be ahead of disk, and a
restart reloads the truth.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from typing import Final

import aiomqtt
import msgspec
import structlog

from monitor.config import Broker
from monitor.events import Ack as AckPayload
from monitor.events import ComponentStatus, Rejected, ack_topic, encode, sys_topic
from monitor.ingest import BatchEffects, Ingest
from monitor.links import Links
from monitor.liveness import Liveness
from monitor.metrics import EngineMetrics
from monitor.mqtt import Backoff, MqttClient, broker_trouble, client_for
from monitor.registration import Registry
from monitor.rules.service import RulesService
from monitor.sla.ledger import Ledger
from monitor.store.db import Store

__all__ = ["Engine"]

log = structlog.get_logger(__name__)

# Device events (driftsvakt/v1/{location}/{municipality}/{device}/{stream}/{src}) in one
# filter; statuses (driftsvakt/v1/_sys/{location}/{component}/{instance}) and device
# events of the five-level form, which names no source, in the other: a separate filter
# for _sys would match those topics twice, and the broker would deliver each twice.
TOPICS: Final = ("driftsvakt/v1/+/+/+/+/+", "driftsvakt/v1/+/+/+/+")
# What the two engines share, each kind retained per entry under its own topic,
# driftsvakt/v1/_{kind}/{location}/{entry}: the notification log (nflog) and the
# operators' actions (ops). Each engine writes its own location's entries.
SHARED_KINDS: Final = ("nflog", "ops")
_SHARED_PREFIXES: Final = tuple(f"driftsvakt/v1/_{kind}/" for kind in SHARED_KINDS)
_SYS_DECODER: Final = msgspec.json.Decoder(ComponentStatus)
VERSION: Final = "0.1.0"
HEARTBEAT_SECONDS: Final = 5.0  # the peer takes over after three of these are missed
SWEEP_SECONDS: Final = 1.0  # how often silence is judged


class Engine:
    """One location's engine: MQTT in, state and store, acknowledgements out."""

    def __init__(self, *, broker: Broker, location: str, store: Store, ingest: Ingest,
                 metrics: EngineMetrics, password: str | None = None, v5: bool = True,
                 batch_max: int = 2000, batch_wait: float = 0.02,
                 instance: str | None = None, rules: RulesService | None = None,
                 ledger: Ledger | None = None, liveness: Liveness | None = None,
                 agents: Registry | None = None, links: Links | None = None) -> None:
        self.broker = broker
        self.agents = agents
        self.links = links
        self.liveness = liveness or Liveness(location, [location])
        self.rules = rules
        self.ledger = ledger
        self.location = location
        self.store = store
        self.ingest = ingest
        self.metrics = metrics
        self.password = password
        self.v5 = v5
        self.batch_max = batch_max
        self.batch_wait = batch_wait
        self.instance = instance or location
        self.connected = False
        self._stop = asyncio.Event()
        self._acks_due: dict[str, int] = {}
        self._acks_wake = asyncio.Event()
        self._acks_sent: dict[str, int] = {}
        self._behind_said: dict[str, float] = {}  # when a source behind a gap was told
        # what is shared with the peer engine: ours out (the newest per entry), theirs in
        self._shared_out: dict[str, bytes] = {}
        self._shared_wake = asyncio.Event()
        self.on_shared: dict[str, Callable[[bytes], None]] = {}

    def stop(self) -> None:
        """Ask the engine to finish: stop taking messages, flush, acknowledge, say goodbye."""
        self._stop.set()

    def sharer(self, kind: str) -> Callable[[str, bytes], None]:
        """Where a feature hands what the peer engine must know (``kind`` in
        SHARED_KINDS): retained, the newest per entry, published when connected, so a
        peer that was away reads it when it is back."""
        assert kind in SHARED_KINDS

        def share(key: str, payload: bytes) -> None:
            digest = hashlib.blake2b(key.encode(), digest_size=12).hexdigest()
            self._shared_out[f"driftsvakt/v1/_{kind}/{self.location}/{digest}"] = payload
            self._shared_wake.set()
        return share

    def _status(self, status: str) -> bytes:
        return encode(ComponentStatus(status=status, ts=time.time(),  # type: ignore[arg-type]
                                      component="engine", instance=self.instance,
                                      version=VERSION, interval=HEARTBEAT_SECONDS))

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Until ``stop`` (or :meth:`stop`); broker trouble is waited out, anything else
        (a store failure) raises: memory would be ahead of the store."""
        if stop is not None:
            self._stop = stop
        backoff = Backoff()
        failing = False
        status_topic = sys_topic(self.location, "engine", self.instance)
        will = aiomqtt.Will(status_topic, self._status("offline"), qos=1, retain=True)
        while not self._stop.is_set():
            client = client_for(self.broker, identifier=f"driftsvakt-engine-{self.instance}",
                                password=self.password, will=will, persistent=True,
                                v5=self.v5, manual_ack=True)
            try:
                async with client:
                    if failing:
                        log.info("broker_recovered", host=self.broker.host, port=self.broker.port)
                        failing = False
                    backoff.reset()
                    await self._session(client, status_topic)
            except Exception as exc:
                if broker_trouble(exc) is None:
                    raise
                self.connected = False
                self.liveness.listening(None)
                self.metrics.mqtt_connected.set(0)
                if not failing:
                    log.warning("broker_unavailable", host=self.broker.host,
                                port=self.broker.port, error=str(broker_trouble(exc)))
                    failing = True
                if self._stop.is_set():
                    break
                stop_wait = asyncio.create_task(self._stop.wait())
                await asyncio.wait({stop_wait, asyncio.create_task(backoff.wait())},
                                   return_when=asyncio.FIRST_COMPLETED)
                stop_wait.cancel()

    async def _session(self, client: MqttClient, status_topic: str) -> None:
        # The last session may have ended inside a batch's commit, which ran on: it is
        # stored before anything it applied is acknowledged, or its failure stops us.
        await self.store.settled()
        await client.publish_checked(status_topic, self._status("online"), retain=True)
        result = await client.subscribe([*((t, 1) for t in TOPICS),
                                         *((f"driftsvakt/v1/_{kind}/#", 1)
                                           for kind in SHARED_KINDS)])
        codes = [getattr(c, "value", c) for c in (result or [])]
        if any(isinstance(c, int) and c >= 0x80 for c in codes):
            raise aiomqtt.MqttError(f"subscription refused: {codes}")
        self.connected = True
        self.liveness.listening(time.time())
        self.metrics.mqtt_connected.set(1)
        self._acks_sent.clear()  # a new session: say where we are again
        self._acks_due.update(self.ingest.progress)
        self._acks_wake.set()
        log.info("engine_subscribed", location=self.location, broker=self.broker.host,
                 port=self.broker.port, sources=len(self.ingest.progress))
        async with asyncio.TaskGroup() as tg:
            acks = tg.create_task(self._ack_loop(client), name="ack-publisher")
            beats = tg.create_task(self._heartbeat_loop(client, status_topic),
                                   name="engine-heartbeat")
            shared = tg.create_task(self._shared_loop(client), name="engine-shared")
            await self._receive_loop(client)
            # Stopping: everything applied is acknowledged before we say goodbye.
            beats.cancel()
            shared.cancel()
            self._acks_wake.set()
            await self._flush_acks(client)
            acks.cancel()
        self.connected = False
        self.liveness.listening(None)
        self.metrics.mqtt_connected.set(0)
        await client.publish_checked(status_topic, self._status("stopping"), retain=True)

    async def _receive_loop(self, client: MqttClient) -> None:
        stop_wait = asyncio.create_task(self._stop.wait())
        receive: asyncio.Task[list[aiomqtt.Message]] | None = None
        try:
            swept = time.monotonic()
            while True:
                if receive is None or receive.done():
                    receive = asyncio.create_task(client.receive_batch(self.batch_max,
                                                                       self.batch_wait))
                done, _ = await asyncio.wait({receive, stop_wait}, timeout=SWEEP_SECONDS,
                                             return_when=asyncio.FIRST_COMPLETED)
                if stop_wait in done:
                    return
                if receive in done:
                    batch = receive.result()
                    await self._apply(batch)
                    client.ack(batch)  # stored: the broker may forget them
                if time.monotonic() - swept >= SWEEP_SECONDS:
                    swept = time.monotonic()
                    await self._sweep(time.time())
        finally:
            stop_wait.cancel()
            # Cancelled from outside (the ack task failed first) or stopping: the pending
            # receive goes too, so its disconnect error is not left unread.
            if receive is not None:
                receive.cancel()

    async def _apply(self, batch: list[aiomqtt.Message]) -> None:
        started = time.perf_counter()
        now = time.time()
        device_messages: list[tuple[str, bytes]] = []
        for message in batch:
            topic = message.topic.value
            payload = message.payload if isinstance(message.payload, bytes) else b""
            if topic.startswith("driftsvakt/v1/_sys/"):
                self._apply_sys(topic, payload, now, bool(message.retain))
            elif topic.startswith(_SHARED_PREFIXES):
                self._apply_shared(topic, payload)
            else:
                device_messages.append((topic, payload))
        for location in {t.split("/", 3)[2] for t, _ in device_messages if t.count("/") > 2}:
            self.liveness.heard_from(location, now)
        effects = self.ingest.process(device_messages, now)
        # the links first: parents they change change what the rules conclude
        links = self.links.changes() if self.links is not None else None
        alerts = self.rules.changes() if self.rules is not None else None
        runs = self.ledger.changes() if self.ledger is not None else None
        late = self.ledger.late_changes() if self.ledger is not None else None
        registrations = self.agents.changes() if self.agents is not None else None
        if effects or alerts or runs or late or registrations or links:
            # Ingest has applied the batch and will not take it again: the store runs
            # the commit to its end even if this session is torn down meanwhile.
            try:
                await self.store.commit_batch(effects.progress, effects.devices.values(),
                                              effects.dead, effects.counts, alerts, runs,
                                              effects.skipped, late, registrations, links)
            except Exception:
                self.metrics.store_errors.inc()
                log.exception("store_commit_failed", path=self.store.path)
                raise
        self._owe_acks(effects)
        self.metrics.batch_events.observe(len(batch))
        self.metrics.batch_seconds.observe(time.perf_counter() - started)

    def _owe_acks(self, effects: BatchEffects) -> None:
        """What the sources are to be told after the batch's commit."""
        if effects.progress:
            self._acks_due.update(effects.progress)
            self._acks_wake.set()
        for src in effects.resent_by:
            # Acknowledged before, and sent again: say it again, or the source resends
            # the same window until it happens to emit something new.
            self._acks_sent.pop(src, None)
            self._acks_due.setdefault(src, self.ingest.progress[src])
            self._acks_wake.set()
        now = time.monotonic()
        for src, applied in effects.behind.items():
            # Behind a gap: say where we are, so the source resends from there; at most
            # once a second per source, however fast its later events come.
            if now - self._behind_said.get(src, 0.0) >= 1.0 and src not in effects.progress:
                self._behind_said[src] = now
                self._acks_sent.pop(src, None)
                self._acks_due.setdefault(src, applied)
                self._acks_wake.set()

    def _apply_sys(self, topic: str, payload: bytes, now: float, retained: bool) -> None:
        parts = topic.split("/")
        if len(parts) != 6 or not payload:
            return  # a cleared retained message, or not ours
        try:
            status = _SYS_DECODER.decode(payload)
        except Exception as exc:
            self.ingest.counters.rejected("invalid")
            log.warning("status_rejected", topic=topic[:200], error=str(Rejected(
                "invalid", str(exc))))
            return
        key = (parts[3], parts[4], parts[5])
        self._apply_component(key, self.liveness.heard(key, status, now, retained))

    def _apply_component(self, key: tuple[str, str, str], status: ComponentStatus) -> None:
        self.ingest.state.apply_component(*key, status)
        if self.rules is not None:
            self.rules.on_component(*key, status)

    async def _sweep(self, now: float) -> None:
        """Components and locations that silence has taken offline, or given back."""
        changed = self.liveness.sweep(now)
        for key, status in changed:
            log.warning("component_silent" if status.status == "offline" else "location_back",
                        location=key[0], component=key[1], instance=key[2],
                        status=status.status)
            self._apply_component(key, status)
        if changed and self.rules is not None:
            alerts = self.rules.changes()
            if alerts:
                await self.store.commit_alerts(alerts)

    def _apply_shared(self, topic: str, payload: bytes) -> None:
        parts = topic.split("/")  # driftsvakt, v1, _kind, location, entry
        handler = self.on_shared.get(parts[2][1:]) if len(parts) == 5 else None
        if handler is not None and parts[3] != self.location:  # our own come back too
            handler(payload)

    async def _shared_loop(self, client: MqttClient) -> None:
        self._shared_wake.set()  # a new session: send what waited while we were away
        while True:
            await self._shared_wake.wait()
            self._shared_wake.clear()
            while self._shared_out:
                topic, payload = next(iter(self._shared_out.items()))
                await client.publish_checked(topic, payload, retain=True)
                if self._shared_out.get(topic) is payload:  # not replaced meanwhile
                    del self._shared_out[topic]

    async def _heartbeat_loop(self, client: MqttClient, status_topic: str) -> None:
        """``online`` every HEARTBEAT_SECONDS: the peer's proof that we are alive, which
        a will cannot give when the bridge between the locations is gone."""
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            await client.publish_checked(status_topic, self._status("online"), retain=True)

    async def _ack_loop(self, client: MqttClient) -> None:
        while True:
            await self._acks_wake.wait()
            self._acks_wake.clear()
            await self._flush_acks(client)

    async def _flush_acks(self, client: MqttClient) -> None:
        due = {src: seq for src, seq in self._acks_due.items()
               if self._acks_sent.get(src) != seq}
        self._acks_due.clear()
        if not due:
            return
        now = time.time()

        async def send(src: str, seq: int) -> None:
            payload = encode(AckPayload(v=1, seq=seq, ts=now))
            try:
                await client.publish_checked(ack_topic(self.location, src), payload,
                                             retain=True, ack_timeout=10.0)
            except aiomqtt.MqttError:
                self._acks_due.setdefault(src, seq)  # retried on the next wake
                raise
            self._acks_sent[src] = seq
            self.metrics.acks_published.inc()

        async with asyncio.TaskGroup() as tg:
            for src, seq in due.items():
                tg.create_task(send(src, seq))
