"""The one way a collector sends events: outbox first, MQTT v5 QoS 1, end-to-end acks.

``emit`` writes the event to the :class:`~collectors.common.outbox.Outbox` and
returns its ``seq`` once committed. ``run`` keeps a connection to the location's
broker (full-jitter backoff, a last will that marks the component offline, a
retained ``online`` status), sends outbox rows in order with a bounded window of
events not yet acknowledged by the engines, and deletes rows only when every engine
in ``wait_for`` has acknowledged them on its retained ``_ack`` topic.

With both locations in ``wait_for`` (two-location deployments), an event stays until
both engines have it, and a lagging engine gets it again; but only an engine heard
from lately (PRESENT_SECONDS), and not long before our own (PRESENT_LAG), sets the send
window and the resend point, so an engine that is away, or a location cut off, holds
back the one that is there for seconds, not a minute. Its
events wait in the outbox (bounded by rows and age, as always) until it is back.

When the acknowledgement stops advancing for ``ack_timeout`` while events are
outstanding, everything after it is sent again (go-back-N): a broker that was killed,
an engine that restarted or a bridge that dropped messages all end up here, and the
engine drops what it already applied. A publish the broker refuses (PUBACK reason
code >= 0x80, e.g. 0x87 not authorised) stays in the outbox, is counted and logged,
and is retried after a backoff. Against an MQTT 3.1.1 broker refusals cannot be
seen (mosquitto drops such messages silently); this is logged once at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import aiomqtt
import msgspec
import structlog

from collectors.common.outbox import Outbox, OutboxRow, OutboxWriteFailed
from monitor.events import (
    MAX_NEIGHBOURS,
    MAX_PAYLOAD_BYTES,
    MAX_SAMPLES,
    CheckKind,
    ComponentStatus,
    DeviceStateName,
    Neighbour,
    Rejected,
    Sample,
    Varbind,
    ack_topic,
    decode_ack,
    device_topic,
    encode,
)
from monitor.events import sys_topic as make_sys_topic
from monitor.fields import Broker
from monitor.mqtt import Backoff, MqttClient, broker_trouble, client_for

__all__ = ["Emitter", "Publisher", "PublisherStats"]

log = structlog.get_logger(__name__)

STATUS_EVERY: Final = 30.0
STATUS_MIN_GAP: Final = 1.0
EXPIRE_EVERY: Final = 60.0
REFUSED_BACKOFF: Final = 5.0
RESEND_AFTER_MAX: Final = 120.0
PRESENT_SECONDS: Final = 60.0  # an engine heard from this recently is there...
# ...unless it is this far behind our own location's engine: then it is away (a
# partition), and our own engine is not held back by it. Acks come within a second of
# each other over a working bridge, and a busy engine still acks all the time.
PRESENT_LAG: Final = 5.0
_ENCODER: Final = msgspec.json.Encoder()


class Emitter:
    """The typed producer API: one method per stream, so that a misspelt or missing
    field is a type error where it is written, not a dead letter at the engine.

    Each stores the event durably and returns its seq, or None when the outbox could
    not store it (counted there). Subclasses implement :meth:`emit`, the untyped path
    underneath (tests use it to send arbitrary, even invalid, bodies).
    """

    async def emit(self, municipality: str, device: str, stream: str, ts: float,
                   **body: Any) -> int | None:
        raise NotImplementedError

    async def metrics(self, municipality: str, device: str, ts: float, samples: list[Sample],
                      *, interval: float | None = None) -> int | None:
        """One poll's samples, in as many events as keep each under the engine's limits
        (a 2,000-port chassis is a few megabytes); returns the last event's seq, None
        if any part could not be stored."""
        last: int | None = None
        stored = True
        for part in split_samples(samples):
            last = await self.emit(municipality, device, "metrics", ts, samples=part,
                                   interval=interval)
            stored = stored and last is not None
        return last if stored else None

    async def state(self, municipality: str, device: str, ts: float, state: DeviceStateName,
                    *, reason: str | None = None) -> int | None:
        return await self.emit(municipality, device, "state", ts, state=state, reason=reason)

    async def check(self, municipality: str, device: str, ts: float, *, check: str,
                    kind: CheckKind, ok: bool, latency: float | None = None,
                    reason: str | None = None, values: dict[str, float] | None = None
                    ) -> int | None:
        return await self.emit(municipality, device, "check", ts, check=check, kind=kind,
                               ok=ok, latency=latency, reason=reason, values=values or {})

    async def trap(self, municipality: str, device: str, ts: float, *, trap_oid: str,
                   agent_addr: str, varbinds: list[Varbind], trap_name: str | None = None
                   ) -> int | None:
        return await self.emit(municipality, device, "trap", ts, trap_oid=trap_oid,
                               trap_name=trap_name, agent_addr=agent_addr, varbinds=varbinds)

    async def heartbeat(self, municipality: str, device: str, ts: float, *,
                        interval: float) -> int | None:
        return await self.emit(municipality, device, "heartbeat", ts, interval=interval)

    async def neighbours(self, municipality: str, device: str, ts: float,
                         neighbours: list[Neighbour]) -> int | None:
        """A device's LLDP and CDP tables in one event (the engine takes each as the
        whole table); rows beyond what one event carries are counted in it
        (``truncated``, exported by the engine), not sent."""
        sent: list[Neighbour] = []
        size = 0
        for row in neighbours[:MAX_NEIGHBOURS]:
            size += len(_ENCODER.encode(row)) + 1
            if size > SAMPLES_BUDGET:
                break
            sent.append(row)
        if len(sent) < len(neighbours):
            log.warning("neighbours_truncated", device=device, rows=len(neighbours),
                        sent=len(sent))
        return await self.emit(municipality, device, "neighbours", ts, neighbours=sent,
                               truncated=len(neighbours) - len(sent))


# What the samples of one event may take, encoded: the engine's limit less room for
# the envelope (topic fields, src, seq, floor, interval).
SAMPLES_BUDGET: Final = MAX_PAYLOAD_BYTES - 4096


def split_samples(samples: list[Sample]) -> list[list[Sample]]:
    """``samples`` in consecutive parts, each within MAX_SAMPLES and, encoded, within
    SAMPLES_BUDGET bytes (an engine rejects a larger event whole)."""
    size = len(_ENCODER.encode(samples))
    if size <= SAMPLES_BUDGET and len(samples) <= MAX_SAMPLES:
        return [samples]
    if len(samples) == 1:
        return [samples]  # one sample this large is refused by the engine, and counted
    parts = max(2, -(-size // SAMPLES_BUDGET), -(-len(samples) // MAX_SAMPLES))
    step = -(-len(samples) // parts)
    out: list[list[Sample]] = []
    for start in range(0, len(samples), step):
        out.extend(split_samples(samples[start:start + step]))
    return out


@dataclass
class PublisherStats:
    """What a publisher did since start; reported in its retained status too."""

    emitted: int = 0
    published: int = 0
    acknowledged: int = 0
    resent: int = 0
    refused: dict[int, int] = field(default_factory=dict)
    connects: int = 0


class Publisher(Emitter):
    """Outbox-backed, acknowledged publishing for one collector instance."""

    def __init__(self, *, broker: Broker, location: str, component: str, instance: str,
                 outbox: Outbox, wait_for: Sequence[str] | None = None, window: int = 5000,
                 ack_timeout: float = 5.0, chunk: int = 200, password: str | None = None,
                 v5: bool = True, version: str = "0.1.0") -> None:
        self.broker = broker
        self.location = location
        self.component = component
        self.instance = instance
        self.outbox = outbox
        self.wait_for = tuple(wait_for) if wait_for else (location,)
        self.window = window
        self.ack_timeout = ack_timeout
        self.chunk = chunk
        self.password = password
        self.v5 = v5
        self.version = version
        # the collector's own counts, reported in the status (ComponentStatus.counters):
        # those its parts keep (a trap receiver's), and those kept here (reloads refused)
        self.counters: Callable[[], dict[str, int]] | None = None
        self.counts: dict[str, int] = {}
        self.stats = PublisherStats()
        self.connected = False
        self.acked: dict[str, int] = {}
        self._acked_at: dict[str, float] = {}  # when each engine's ack last moved
        self.next_send = outbox.first_seq
        self._progress_at = time.monotonic()
        # Doubles after each resend that brought no acknowledgement, so that an engine
        # that is away for long does not get the same window queued again and again.
        self._resend_after = ack_timeout
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self.status_topic = make_sys_topic(location, component, instance)

    # --- producing ---------------------------------------------------------------

    async def emit(self, municipality: str, device: str, stream: str, ts: float,
                   **body: Any) -> int | None:
        """Store one event for ``device`` durably; return its seq.

        ``body`` holds the stream's fields (see :mod:`monitor.events`); ``v``, ``src``,
        ``seq`` and ``floor`` are added here and at send time. None when the outbox
        could not store it (a full disk): the outbox counted and logged the loss, the
        status reports it at once, and the collector carries on.
        """
        topic = device_topic(self.location, municipality, device, stream, self.instance)
        payload = _ENCODER.encode({"v": 1, "ts": ts, "src": self.instance, "device": device,
                                   **body})
        try:
            seq = await self.outbox.put(topic, payload)
        except OutboxWriteFailed:
            return None
        self.stats.emitted += 1
        self._wake.set()
        return seq

    # --- running -----------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def _status(self, status: str) -> bytes:
        return encode(ComponentStatus(
            status=status, ts=time.time(), component=self.component,  # type: ignore[arg-type]
            instance=self.instance, version=self.version, outbox_rows=self.outbox.rows,
            outbox_dropped=self.outbox.dropped, interval=STATUS_EVERY,
            counters={**self.counts,
                      **(self.counters() if self.counters is not None else {})}))

    async def run(self) -> None:
        """Connect, send and resend until :meth:`stop`; never raises on broker trouble."""
        if not self.v5:
            log.warning("mqtt_v311_mode", component=self.component, instance=self.instance,
                        consequence="refused publishes cannot be detected (no reason codes)")
        backoff = Backoff()
        failing = False
        will = aiomqtt.Will(self.status_topic, self._status("offline"), qos=1, retain=True)
        while not self._stop.is_set():
            client = client_for(self.broker, password=self.password, will=will, v5=self.v5,
                                identifier=f"driftsvakt-{self.component}-{self.instance}")
            try:
                async with client:
                    self.stats.connects += 1
                    if failing:
                        log.info("broker_recovered", instance=self.instance,
                                 host=self.broker.host, port=self.broker.port)
                        failing = False
                    backoff.reset()
                    await self._session(client)
            except Exception as exc:
                trouble = broker_trouble(exc)
                if trouble is None:
                    raise
                if not failing:
                    log.warning("broker_unavailable", instance=self.instance,
                                host=self.broker.host, port=self.broker.port, error=str(trouble))
                    failing = True
            finally:
                self.connected = False
            if not self._stop.is_set():
                await self._sleep_or_stop(backoff.wait())

    async def _sleep_or_stop(self, sleeper: Any) -> None:
        stop = asyncio.create_task(self._stop.wait())
        sleep = asyncio.ensure_future(sleeper)
        await asyncio.wait({stop, sleep}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        sleep.cancel()

    async def _session(self, client: MqttClient) -> None:
        await client.publish_checked(self.status_topic, self._status("online"), retain=True)
        topics = [(ack_topic(loc, self.instance), 1) for loc in self.wait_for]
        await client.subscribe(topics)
        self.connected = True
        # Start again after what is known to be acknowledged; the retained acks that
        # arrive in a moment delete what was acknowledged while we were away.
        self.next_send = max(self.outbox.first_seq, self._send_base() + 1)
        self._progress_at = time.monotonic()
        async with asyncio.TaskGroup() as tg:
            acks = tg.create_task(self._ack_loop(client), name="publisher-acks")
            status = tg.create_task(self._status_loop(client), name="publisher-status")
            await self._send_loop(client)
            acks.cancel()
            status.cancel()
        await client.publish_checked(self.status_topic, self._status("stopping"), retain=True)

    def _acked_upto(self) -> int:
        """Highest seq acknowledged by every engine we wait for (0 when one is silent):
        what may be deleted."""
        if any(loc not in self.acked for loc in self.wait_for):
            return 0
        return min(self.acked[loc] for loc in self.wait_for)

    def _send_base(self) -> int:
        """Highest seq acknowledged by every engine that is there (our own location's
        always counts): where the send window starts and a resend begins."""
        now = time.monotonic()
        own = self._acked_at.get(self.location)
        present = [loc for loc in self.wait_for if loc == self.location or (
            loc in self._acked_at and now - self._acked_at[loc] < PRESENT_SECONDS
            and (own is None or own - self._acked_at[loc] < PRESENT_LAG))]
        if any(loc not in self.acked for loc in present):
            return 0
        return min((self.acked[loc] for loc in present), default=0)

    async def _ack_loop(self, client: MqttClient) -> None:
        prefix = ack_topic("", "")[:-1]  # driftsvakt/v1/_ack/
        async for message in client.messages:
            topic = message.topic.value
            if not topic.startswith(prefix):
                continue  # amqtt has been seen delivering other retained topics here
            location = topic[len(prefix):].split("/", 1)[0]
            payload = message.payload if isinstance(message.payload, bytes) else b""
            if not payload or location not in self.wait_for:
                continue
            try:
                ack = decode_ack(payload)
            except Rejected as exc:
                log.warning("ack_rejected", topic=topic, detail=exc.detail)
                continue
            before, base = self._acked_upto(), self._send_base()
            if ack.seq > self.acked.get(location, 0):
                self.acked[location] = ack.seq
            if not message.retain:
                # A live ack says the engine is there, also one that does not move: an
                # engine that lacks our first events says so with seq 0. A retained
                # ack is from the past: that engine may be gone.
                self._acked_at[location] = time.monotonic()
            upto = self._acked_upto()
            if upto > before:
                deleted = await self.outbox.acknowledge(upto)
                self.stats.acknowledged += deleted
            if upto > before or self._send_base() > base:
                self._progress_at = time.monotonic()
                self._resend_after = self.ack_timeout
                self._wake.set()

    async def _status_loop(self, client: MqttClient) -> None:
        """The retained status every STATUS_EVERY seconds, and at once (at most once a
        second) when the outbox starts or stops failing to write."""
        last_expire = time.monotonic()
        failing = self.outbox.failing
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(failing.wait(), STATUS_EVERY)
            if failing.is_set():
                failing.clear()
                await asyncio.sleep(STATUS_MIN_GAP)
            if time.monotonic() - last_expire >= EXPIRE_EVERY:
                await self.outbox.expire()
                last_expire = time.monotonic()
            await client.publish_checked(self.status_topic, self._status("online"), retain=True)

    async def _send_loop(self, client: MqttClient) -> None:
        outbox = self.outbox
        while not self._stop.is_set():
            acked = max(self._send_base(), outbox.first_seq - 1)
            self.next_send = max(self.next_send, outbox.first_seq)
            outstanding = self.next_send - 1 - acked
            if self.next_send <= outbox.last_seq and outstanding < self.window:
                rows = await outbox.read(self.next_send, min(self.chunk,
                                                             self.window - outstanding))
                if rows:
                    if outstanding <= 0:
                        self._progress_at = time.monotonic()
                    if not await self._send_rows(client, rows):
                        await self._sleep_or_stop(asyncio.sleep(REFUSED_BACKOFF))
                    continue
            waited = time.monotonic() - self._progress_at
            if outstanding > 0 and waited > self._resend_after:
                log.info("resending", instance=self.instance, from_seq=acked + 1,
                         outstanding=outstanding, waited=round(waited, 1))
                self.stats.resent += outstanding
                self.next_send = acked + 1
                self._progress_at = time.monotonic()
                self._resend_after = min(self._resend_after * 2, RESEND_AFTER_MAX)
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.ack_timeout / 2)

    async def _send_rows(self, client: MqttClient, rows: list[OutboxRow]) -> bool:
        """Publish ``rows`` pipelined; False if the broker refused one (sent again later)."""
        floor = self.outbox.first_seq
        results = await client.publish_many([(row.topic, _with_seq(row, floor))
                                             for row in rows])
        for row, refused in zip(rows, results, strict=True):
            if refused is None:
                self.stats.published += 1
                self.next_send = row.seq + 1
                continue
            self.stats.refused[refused.code] = self.stats.refused.get(refused.code, 0) + 1
            log.error("publish_refused", instance=self.instance, topic=refused.topic,
                      code=f"0x{refused.code:02x}", reason=refused.name, seq=row.seq,
                      kept="in outbox, retried")
            self.next_send = row.seq
            return False
        return True


def _with_seq(row: OutboxRow, floor: int) -> bytes:
    """The stored body with ``seq`` and ``floor`` put in front (JSON key order is free)."""
    return b'{"seq":%d,"floor":%d,%b' % (row.seq, min(floor, row.seq), row.body[1:])
