"""The shipped mosquitto configs, started for real: TLS, passwords, the ACL per role,
and the bridge between the locations. Paths and ports are moved into the test's
directory; everything else is the shipped text."""

from __future__ import annotations

import contextlib
import os
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import trustme
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from tests.servers import TcpLink, _passwd_binary, free_port, mosquitto_binary, wait_port

pytestmark = pytest.mark.integration

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"
USERS = ("engine-alta", "engine-hammerfest", "collector-alta", "collector-hammerfest",
         "readonly", "bridge-alta")


def _install(tmp: Path, name: str, port: int, peer_port: int | None,
             max_queued: int | None = None) -> Path:
    text = (DEPLOY / name).read_text(encoding="utf-8")
    if max_queued is not None:
        assert "max_queued_messages 2000000\n" in text
        text = text.replace("max_queued_messages 2000000\n",
                            f"max_queued_messages {max_queued}\n")
    for old, new in (("/etc/mosquitto/certs/", f"{tmp}/certs/"),
                     ("/etc/mosquitto/driftsvakt.passwd", f"{tmp}/passwd"),
                     ("/etc/mosquitto/driftsvakt.acl", str(DEPLOY / "driftsvakt.acl")),
                     ("/var/lib/mosquitto/", f"{tmp}/{name}.db/"),
                     ("/etc/mosquitto/driftsvakt.d", f"{tmp}/{name}.d"),
                     ("listener 8883", f"listener {port} 127.0.0.1"),
                     ("broker-hammerfest.vest-finnmark.example:8883", f"127.0.0.1:{peer_port}")):
        text = text.replace(old, new)
    if os.geteuid() == 0:
        text += "\nuser root\n"
    (tmp / f"{name}.db").mkdir()
    (tmp / f"{name}.d").mkdir()
    if peer_port is not None:
        bridge = (DEPLOY / "alta.d" / "bridge.conf").read_text(encoding="utf-8")
        bridge = bridge.replace("broker-hammerfest.vest-finnmark.example:8883",
                                f"127.0.0.1:{peer_port}").replace(
            "/etc/mosquitto/certs/", f"{tmp}/certs/").replace("change-me", "pw-bridge-alta")
        (tmp / f"{name}.d" / "bridge.conf").write_text(bridge, encoding="utf-8")
    text += f"\nlog_dest file {tmp}/{name}.log\n"
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    return path


@contextlib.contextmanager
def _brokers(tmp_path: Path, max_queued: int | None = None, link: bool = False
             ) -> Iterator[tuple[int, int, str, TcpLink | None]]:
    """Hammerfest and Alta with the shipped configs, Alta bridging to Hammerfest
    (through a TcpLink that can be cut, if ``link``)."""
    binary = mosquitto_binary()
    assert binary is not None
    tmp_path.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    (tmp_path / "certs").mkdir()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_pem.write_to_path(str(tmp_path / "certs" / "broker.key"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "certs" / "broker.crt"))
    ca.cert_pem.write_to_path(str(tmp_path / "certs" / "ca.crt"))
    passwd = tmp_path / "passwd"
    passwd.touch()
    for user in USERS:
        subprocess.run([_passwd_binary(), "-b", str(passwd), user, f"pw-{user}"], check=True,
                       capture_output=True)
    h_port, a_port = free_port(), free_port()
    wan = TcpLink(h_port) if link else None
    procs = []
    try:
        for name, port, peer in (("hammerfest.conf", h_port, None),
                                 ("alta.conf", a_port, wan.port if wan else h_port)):
            procs.append(subprocess.Popen(
                [binary, "-c", str(_install(tmp_path, name, port, peer, max_queued))],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
            wait_port(port)
        yield a_port, h_port, str(tmp_path / "certs" / "ca.crt"), wan
    finally:
        if wan is not None:
            wan.close()
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def brokers(tmp_path: Path) -> Iterator[tuple[int, int, str]]:
    with _brokers(tmp_path) as (a_port, h_port, ca, _):
        yield a_port, h_port, ca


class Client:
    def __init__(self, port: int, ca: str | None, user: str | None,
                 password: str | None = None) -> None:
        """A v5 client logged in as ``user`` (password ``pw-USER`` unless given), over
        TLS when ``ca`` is given."""
        self.received: list[str] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{user}-{port}",
                                  protocol=mqtt.MQTTv5)
        if ca is not None:
            self.client.tls_set(ca_certs=ca, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        if user is not None:
            self.client.username_pw_set(user, password or f"pw-{user}")
        self.connected = threading.Event()
        self.code: ReasonCode | None = None
        self.acks: dict[int, int] = {}

        def on_connect(c: mqtt.Client, u: object, f: object, rc: ReasonCode, p: object) -> None:
            self.code = rc
            self.connected.set()

        def on_publish(c: mqtt.Client, u: object, mid: int, rc: ReasonCode, p: object) -> None:
            self.acks[mid] = rc.value

        def on_message(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
            self.received.append(msg.topic)

        self.client.on_connect = on_connect
        self.client.on_publish = on_publish
        self.client.on_message = on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.connected.wait(10)

    def publish_many(self, topics: list[str], within: float = 60.0) -> int:
        """Publish at QoS 1 without waiting in between; return how many were acked."""
        mids = [self.client.publish(t, b"{}", qos=1).mid for t in topics]
        deadline = time.monotonic() + within
        while any(m not in self.acks for m in mids) and time.monotonic() < deadline:
            time.sleep(0.05)
        return sum(1 for m in mids if self.acks.get(m) == 0)

    def publish(self, topic: str, payload: bytes = b"{}") -> int:
        info = self.client.publish(topic, payload, qos=1)
        deadline = time.monotonic() + 5
        while info.mid not in self.acks and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.acks.get(info.mid, -1)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_tls_passwords_acl_and_bridge(brokers: tuple[int, int, str]) -> None:
    a_port, h_port, ca = brokers
    anonymous = Client(a_port, ca, None)
    assert anonymous.code is not None
    assert anonymous.code.is_failure  # not authorised
    anonymous.close()
    engine = Client(a_port, ca, "engine-alta")
    engine.client.subscribe("driftsvakt/v1/#", qos=1)
    collector_a = Client(a_port, ca, "collector-alta")
    collector_h = Client(h_port, ca, "collector-hammerfest")
    readonly = Client(a_port, ca, "readonly")
    time.sleep(1.5)  # the bridge connects and subscribes
    try:
        assert 0 == collector_a.publish("driftsvakt/v1/alta/loppa/sw1/metrics")
        # a collector of Alta may not speak for Hammerfest; readonly may not publish
        assert 0x87 == collector_a.publish("driftsvakt/v1/hammerfest/masoy/sw1/metrics")
        assert 0x87 == readonly.publish("driftsvakt/v1/alta/loppa/sw2/metrics")
        # Hammerfest's collector publishes at home; the bridge brings it to Alta
        assert 0 == collector_h.publish("driftsvakt/v1/hammerfest/masoy/sw9/metrics")
        deadline = time.monotonic() + 10
        while len(engine.received) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        assert sorted(engine.received) == ["driftsvakt/v1/alta/loppa/sw1/metrics",
                                           "driftsvakt/v1/hammerfest/masoy/sw9/metrics"]
    finally:
        for c in (engine, collector_a, collector_h, readonly):
            c.close()


PARTITION_MESSAGES = 3_000


def test_the_bridge_queue_outlasts_a_partition(tmp_path: Path) -> None:
    """The link between the locations is cut for 15 s while Hammerfest's collector
    publishes 3,000 events; when it returns, the bridge delivers all 3,000 to Alta's
    engine with the shipped queue limits. Beside it, the same pair with mosquitto's
    default of 1,000 queued messages loses most of them: the limit is what decides."""
    delivered: dict[str, int] = {}
    with _brokers(tmp_path / "shipped", link=True) as shipped, \
            _brokers(tmp_path / "default", max_queued=1000, link=True) as default:
        pairs = {"shipped": shipped, "default": default}
        engines, collectors = {}, {}
        for name, (a_port, h_port, ca, _) in pairs.items():
            engines[name] = Client(a_port, ca, "engine-alta")
            engines[name].client.subscribe("driftsvakt/v1/hammerfest/#", qos=1)
            collectors[name] = Client(h_port, ca, "collector-hammerfest")
        try:
            time.sleep(1.5)  # the bridges connect and subscribe
            for name in pairs:  # the link works before the cut
                assert 0 == collectors[name].publish("driftsvakt/v1/hammerfest/masoy/x/state")
            deadline = time.monotonic() + 10
            while (min(len(e.received) for e in engines.values()) < 1
                   and time.monotonic() < deadline):
                time.sleep(0.05)
            cut_at = time.monotonic()
            for _, _, _, wan in pairs.values():
                assert wan is not None
                wan.cut()
            time.sleep(0.5)
            topics = [f"driftsvakt/v1/hammerfest/masoy/sw{i}/metrics"
                      for i in range(PARTITION_MESSAGES)]
            for name in pairs:  # accepted at home: the collector's outbox is done
                assert PARTITION_MESSAGES == collectors[name].publish_many(topics)
            time.sleep(max(0.0, cut_at + 15 - time.monotonic()))
            for _, _, _, wan in pairs.values():
                assert wan is not None
                wan.restore()
            # the bridge retries within restart_timeout (5 s, backing off to 60 s)
            deadline = time.monotonic() + 120
            counts: tuple[int, ...] = (-1, -1)
            last_change = time.monotonic()
            while time.monotonic() < deadline:
                now = tuple(len(e.received) for e in engines.values())
                if now != counts:
                    counts, last_change = now, time.monotonic()
                if counts[0] == PARTITION_MESSAGES + 1 and \
                        time.monotonic() - last_change > 3 and counts[1] > 1:
                    break
                time.sleep(0.1)
            for name, engine in engines.items():
                delivered[name] = len(set(engine.received) - {
                    "driftsvakt/v1/hammerfest/masoy/x/state"})
        finally:
            for c in (*engines.values(), *collectors.values()):
                c.close()
    print(f"after a 15 s partition: shipped limits delivered {delivered['shipped']} of "
          f"{PARTITION_MESSAGES}, the default of 1,000 queued {delivered['default']}")
    assert PARTITION_MESSAGES == delivered["shipped"]
    assert delivered["default"] < PARTITION_MESSAGES / 2
