"""aiomqtt, extended where driftsvakt needs more than it gives, and connection helpers.

aiomqtt 2.5 waits for a PUBACK but throws its reason code away, so a publish the
broker refuses (0x87 not authorised, 0x97 quota exceeded, ...) looks like success.
:class:`MqttClient` keeps the reason code of each PUBACK and raises
:class:`PublishRefused` for codes >= 0x80. It also drains the incoming queue in
batches: the per-message task that ``client.messages`` creates is most of the cost
of receiving one message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import ssl
from collections.abc import Iterable
from typing import Any, Final

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from monitor.fields import Broker

__all__ = [
    "Backoff",
    "MqttClient",
    "PublishRefused",
    "broker_trouble",
    "client_for",
    "session_properties",
]

SESSION_EXPIRY_SECONDS: Final = 24 * 3600


class PublishRefused(aiomqtt.MqttError):
    """The broker answered a QoS 1 publish with a failure reason code (>= 0x80)."""

    def __init__(self, topic: str, code: int, name: str) -> None:
        super().__init__(f"publish to {topic} refused: 0x{code:02x} {name}")
        self.topic = topic
        self.code = code
        self.name = name


NO_DELAY: Final = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class MqttClient(aiomqtt.Client):
    """aiomqtt's client with PUBACK reason codes checked and batched receive."""

    def __init__(self, *args: Any, manual_ack: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reasons: dict[int, ReasonCode] = {}
        self.v5 = kwargs.get("protocol") == aiomqtt.ProtocolVersion.V5
        if manual_ack:
            # paho then sends no PUBACK on receipt: ack() sends it, once the messages
            # are stored; whatever was not acknowledged when the connection broke is
            # sent again by the broker to the persistent session.
            self._client.manual_ack_set(True)

    def ack(self, messages: Iterable[aiomqtt.Message]) -> None:
        """PUBACK ``messages`` (manual_ack clients): they are durably processed."""
        for message in messages:
            if message.qos > 0:
                self._client.ack(message.mid, message.qos)

    async def __aexit__(self, *exc_info: Any) -> None:
        try:
            await super().__aexit__(*exc_info)
        finally:
            # aiomqtt leaves the error of an unexpected disconnection in a future nobody
            # reads once the session has ended on it; read it so asyncio does not log
            # "Future exception was never retrieved" long after the reconnect.
            gone = self._disconnected
            if gone.done() and not gone.cancelled():
                gone.exception()

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int,
                    reason_code: ReasonCode, properties: Properties) -> None:
        if mid in self._pending_publishes:
            self._reasons[mid] = reason_code
        super()._on_publish(client, userdata, mid, reason_code, properties)

    async def publish_checked(self, topic: str, payload: bytes, *, qos: int = 1,
                              retain: bool = False, ack_timeout: float = 10.0) -> None:
        """Publish and wait for the broker's acknowledgement; raise on refusal.

        Mirrors ``aiomqtt.Client.publish`` but keeps the message id, so the reason
        code of its PUBACK can be read back.
        """
        info = self._client.publish(topic, payload, qos, retain)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise aiomqtt.MqttCodeError(info.rc, "Could not publish message")
        if qos == 0:
            return
        if not info.is_published():
            confirmation = asyncio.Event()
            with self._pending_call(info.mid, confirmation, self._pending_publishes):
                await self._wait_for(confirmation.wait(), timeout=ack_timeout)
        reason = self._reasons.pop(info.mid, None)
        if reason is not None and reason.value >= 0x80:
            raise PublishRefused(topic, reason.value, reason.getName())

    async def publish_many(self, messages: list[tuple[str, bytes]], *,
                           ack_timeout: float = 30.0) -> list[PublishRefused | None]:
        """Publish QoS 1 messages pipelined; wait for all PUBACKs; report refusals.

        One waiter for the whole batch instead of aiomqtt's per-call bookkeeping, which
        scans every pending call on each publish (quadratic in the messages in flight:
        see bench/bench_pipeline.py). The result lists, per message, None or the
        refusal its PUBACK carried.
        """
        waiter = _BatchWaiter(len(messages))
        mids: list[int] = []
        try:
            for topic, payload in messages:
                info = self._client.publish(topic, payload, 1, False)
                if info.rc != paho.MQTT_ERR_SUCCESS:
                    raise aiomqtt.MqttCodeError(info.rc, "Could not publish message")
                mids.append(info.mid)
                # Registered before any PUBACK can be read: both happen on this thread,
                # and the reader runs only when we yield to the event loop.
                self._pending_publishes[info.mid] = waiter  # type: ignore[assignment]
            await self._wait_for(waiter.wait(), timeout=ack_timeout)
        finally:
            for mid in mids:
                self._pending_publishes.pop(mid, None)
        results: list[PublishRefused | None] = []
        for mid, (topic, _) in zip(mids, messages, strict=True):
            reason = self._reasons.pop(mid, None)
            refused = reason is not None and reason.value >= 0x80
            results.append(PublishRefused(topic, reason.value, reason.getName())
                           if refused and reason is not None else None)
        return results

    async def receive_batch(self, max_messages: int, linger: float = 0.0
                            ) -> list[aiomqtt.Message]:
        """Wait for one message, then take what else is queued, up to ``max_messages``.

        If more than the first were already queued (we are under load), wait up to
        ``linger`` seconds for the batch to fill: one store commit and one ack per
        source then serve many messages. A lone message is never held back.
        """
        first = await anext(aiter(self.messages))
        batch = [first]
        queue: asyncio.Queue[aiomqtt.Message] = self._queue
        self._drain(queue, batch, max_messages)
        if linger > 0 and 1 < len(batch) < max_messages:
            await asyncio.sleep(linger)
            self._drain(queue, batch, max_messages)
        return batch

    @staticmethod
    def _drain(queue: asyncio.Queue[aiomqtt.Message], batch: list[aiomqtt.Message],
               max_messages: int) -> None:
        with contextlib.suppress(asyncio.QueueEmpty):
            while len(batch) < max_messages:
                batch.append(queue.get_nowait())


class _BatchWaiter:
    """Stands in for aiomqtt's per-publish ``asyncio.Event``: its ``set()`` is called once
    per PUBACK, and the batch is done when all have come."""

    def __init__(self, count: int) -> None:
        self._left = count
        self._done = asyncio.Event()
        if count == 0:
            self._done.set()

    def set(self) -> None:
        self._left -= 1
        if self._left <= 0:
            self._done.set()

    async def wait(self) -> None:
        await self._done.wait()


def broker_trouble(exc: BaseException) -> aiomqtt.MqttError | None:
    """The MQTT error in ``exc`` — plain or inside a TaskGroup's exception group — if
    that is all it holds; None if anything else is in it (a bug: let it propagate)."""
    if isinstance(exc, aiomqtt.MqttError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        match, rest = exc.split(aiomqtt.MqttError)
        if rest is None and match is not None:
            first = match.exceptions[0]
            return broker_trouble(first)
    return None


class _PendingCallsFilter(logging.Filter):
    """aiomqtt warns once per publish while more than 50 are pending; pipelining
    hundreds is how the publisher reaches its throughput, so that warning is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("There are ")


_AIOMQTT_LOGGER: Final = logging.getLogger("driftsvakt.aiomqtt")
_AIOMQTT_LOGGER.addFilter(_PendingCallsFilter())


def session_properties(expiry: int = SESSION_EXPIRY_SECONDS) -> Properties:
    """CONNECT properties for a session the broker keeps while we are away."""
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = expiry
    return props


def client_for(broker: Broker, *, identifier: str, password: str | None = None,
               will: aiomqtt.Will | None = None, persistent: bool = False,
               v5: bool = True, max_inflight: int = 1000,
               manual_ack: bool = False) -> MqttClient:
    """Build a client for ``broker``; ``persistent`` keeps the session across restarts."""
    tls: ssl.SSLContext | None = None
    if broker.tls_ca:
        tls = ssl.create_default_context(cafile=broker.tls_ca)
    protocol = aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311
    kwargs: dict[str, Any] = {}
    if v5:
        kwargs["clean_start"] = not persistent
        if persistent:
            kwargs["properties"] = session_properties()
    else:
        kwargs["clean_session"] = not persistent
    return MqttClient(
        broker.host, broker.port, username=broker.username, password=password,
        identifier=identifier, protocol=protocol, will=will, keepalive=broker.keepalive,
        logger=_AIOMQTT_LOGGER,
        tls_context=tls, timeout=10.0, max_inflight_messages=max_inflight,
        max_queued_outgoing_messages=0, manual_ack=manual_ack,
        # a small publish (a trap, an ack) goes out at once, not after the peer's
        # delayed ACK (Nagle held about a third of traps back some 40 ms)
        socket_options=(NO_DELAY,), **kwargs,
    )


class Backoff:
    """Full-jitter exponential backoff: wait a random time up to ``base * 2**n``, capped."""

    def __init__(self, base: float = 0.25, cap: float = 15.0) -> None:
        self.base = base
        self.cap = cap
        self.attempt = 0

    def reset(self) -> None:
        self.attempt = 0

    async def wait(self) -> float:
        delay = random.uniform(0, min(self.cap, self.base * 2**self.attempt))
        self.attempt += 1
        await asyncio.sleep(delay)
        return delay
