"""Traps sent with net-snmp's snmptrap/snmpinform arrive on MQTT as typed events in < 1 s."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import msgspec
import pytest

from collectors.common.outbox import Outbox
from collectors.common.publisher import Publisher
from collectors.traps.receiver import TrapReceiver, TrapUser
from monitor.config import load_config
from monitor.events import ComponentStatus, TrapEvent
from tests.estate import DEVICES, write_estate
from tests.servers import Mosquitto, free_udp_port

pytestmark = pytest.mark.integration

COMMUNITY = "dv-traps"
USER = TrapUser("dvtrap", "SHA-256", "trap-auth-123", "AES", "trap-priv-123")


@contextlib.asynccontextmanager
async def _receiving(tmp_path: Path, communities: tuple[str, ...] = (),
                     users: tuple[TrapUser, ...] = ()
                     ) -> AsyncIterator[tuple[TrapReceiver, Mosquitto]]:
    """A trap receiver on a free port publishing through the real publisher to a real
    mosquitto; stopped, drained and closed after the block."""
    with Mosquitto(tmp_path / "broker") as broker:
        config = load_config(write_estate(tmp_path, broker.port))
        outbox = await Outbox.open(tmp_path / "traps.db")
        publisher = Publisher(broker=config.broker_for("alta"), location="alta",
                              component="traps", instance="traps-alta", outbox=outbox)
        receiver = TrapReceiver(config, "alta", publisher, host="127.0.0.1",
                                port=free_udp_port(), communities=communities, users=users)
        receiver.start()
        sender = asyncio.create_task(publisher.run())
        try:
            yield receiver, broker
        finally:
            publisher.stop()
            await asyncio.wait_for(sender, 10)
            receiver.close()
            await outbox.close()


async def test_v2c_trap_and_v3_inform_arrive_as_typed_events(tmp_path: Path) -> None:
    """A v2c linkDown from a known switch and a v3 authPriv inform (coldStart) each
    reach MQTT within 1 s, named, with the source; a trap from an address no device has
    is counted and not published (it would become a phantom device in the engine)."""
    decoder = msgspec.json.Decoder(TrapEvent)
    async with _receiving(tmp_path, (COMMUNITY,), (USER,)) as (receiver, broker):
        port = receiver.port
        async with aiomqtt.Client("127.0.0.1", broker.port) as client:
            await client.subscribe("driftsvakt/v1/alta/+/+/trap/+", qos=1)
            await asyncio.sleep(0.3)
            sends = [
                ["snmptrap", "-v2c", "-c", COMMUNITY, "--clientaddr=127.0.1.1",
                 f"127.0.0.1:{port}", "", "1.3.6.1.6.3.1.1.5.3",
                 "1.3.6.1.2.1.2.2.1.1.3", "i", "3",
                 "1.3.6.1.2.1.31.1.1.1.1.3", "s", "Gi1/0/3"],
                ["snmpinform", "-v3", "-l", "authPriv", "-u", USER.name, "-a", "SHA-256",
                 "-A", str(USER.auth_key), "-x", "AES", "-X", str(USER.priv_key),
                 "--clientaddr=127.0.1.2", f"127.0.0.1:{port}", "",
                 "1.3.6.1.6.3.1.1.5.1"],
                ["snmptrap", "-v2c", "-c", COMMUNITY, f"127.0.0.1:{port}", "",
                 "1.3.6.1.4.1.9999.1.2", "1.3.6.1.4.1.9999.1.2.1", "s", "vendor thing"],
            ]
            got: list[tuple[str, TrapEvent, float]] = []
            for argv in sends:
                sent = time.monotonic()
                proc = await asyncio.create_subprocess_exec(
                    *argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                with contextlib.suppress(TimeoutError):  # the stranger's: nothing comes
                    async with asyncio.timeout(5 if argv is not sends[-1] else 2):
                        async for message in client.messages:
                            assert isinstance(message.payload, bytes)
                            got.append((message.topic.value,
                                        decoder.decode(message.payload),
                                        time.monotonic() - sent))
                            break
                _, err = await proc.communicate()
                assert 0 == proc.returncode, err.decode()
    (t1, link, d1), (t2, cold, d2) = got
    assert f"driftsvakt/v1/alta/loppa/{DEVICES[0]}/trap/traps-alta" == t1
    assert ("linkDown", "127.0.1.1") == (link.trap_name, link.agent_addr)
    assert [("ifIndex", "3"), ("ifName", "Gi1/0/3")] == [(v.name, v.value)
                                                        for v in link.varbinds]
    assert (f"driftsvakt/v1/alta/loppa/{DEVICES[1]}/trap/traps-alta", "coldStart") == (
        t2, cold.trap_name)
    assert max(d1, d2) < 1.0, (d1, d2)
    assert (3, 1) == (receiver.stats.received, receiver.stats.unknown_source)


def test_collect_traps_command_end_to_end(tmp_path: Path) -> None:
    """`driftsvakt collect traps` with the community from the environment: a linkUp
    from a known switch reaches MQTT; SIGTERM stops it with exit 0."""
    import os
    import signal
    import sys

    import yaml

    root = Path(__file__).resolve().parents[2]
    with Mosquitto(tmp_path / "broker") as broker:
        path = write_estate(tmp_path, broker.port)
        estate = yaml.safe_load(path.read_text(encoding="utf-8"))
        estate["traps"] = {"host": "127.0.0.1", "communities": [{"env": "DV_TRAP_COMMUNITY"}]}
        path.write_text(yaml.safe_dump(estate), encoding="utf-8")
        port = free_udp_port()
        sub = subprocess.Popen(["mosquitto_sub", "-p", str(broker.port), "-t",
                                "driftsvakt/v1/alta/+/+/trap/+", "-C", "1", "-W", "20"],
                               stdout=subprocess.PIPE)
        receiver = subprocess.Popen(
            [sys.executable, "-m", "monitor.cli", "collect", "traps", "--config", str(path),
             "--location", "alta", "--port", str(port)], cwd=root,
            env={**os.environ, "DV_TRAP_COMMUNITY": "secret-community"},
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 15
            while sub.poll() is None and time.monotonic() < deadline:
                subprocess.run(["snmptrap", "-v2c", "-c", "secret-community",
                                "--clientaddr=127.0.1.3", f"127.0.0.1:{port}", "",
                                "1.3.6.1.6.3.1.1.5.4", "1.3.6.1.2.1.2.2.1.1.7", "i", "7"],
                               check=True, capture_output=True)
                time.sleep(0.5)
            out, _ = sub.communicate(timeout=10)
            event = msgspec.json.decode(out.strip().splitlines()[0], type=TrapEvent)
            assert ("loppa-sw3", "linkUp", "traps-alta") == (event.device, event.trap_name,
                                                             event.src)
        finally:
            receiver.send_signal(signal.SIGTERM)
            code = receiver.wait(15)
            sub.kill()
            sub.wait()
        assert 0 == code, receiver.stderr.read().decode() if receiver.stderr else ""


def _captured(community: str, port: int) -> bytes:
    """One linkDown as net-snmp's snmptrap puts it on the wire."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("127.0.0.1", port))
        listener.settimeout(10)
        subprocess.run(["snmptrap", "-v2c", "-c", community, f"127.0.0.1:{port}", "",
                        "1.3.6.1.6.3.1.1.5.3", "1.3.6.1.2.1.2.2.1.1.3", "i", "3"],
                       check=True, capture_output=True)
        return listener.recvfrom(65536)[0]


async def test_a_burst_of_2000_traps_arrives_or_is_counted(tmp_path: Path) -> None:
    """2,000 linkDowns back to back from a known switch, 50 datagrams that are not SNMP
    and 30 traps with a community the receiver does not know: every trap is either
    received (and in the outbox) or counted as dropped by the kernel, exactly; the
    garbage and the strangers are counted as such; all of it is in the counters the
    collector's status reports."""
    with Mosquitto(tmp_path / "broker") as broker:
        config = load_config(write_estate(tmp_path, broker.port))
        outbox = await Outbox.open(tmp_path / "traps.db")
        publisher = Publisher(broker=config.broker_for("alta"), location="alta",
                              component="traps", instance="traps-alta", outbox=outbox)
        trap = await asyncio.to_thread(_captured, COMMUNITY, free_udp_port())
        stranger = await asyncio.to_thread(_captured, "not-ours", free_udp_port())
        receiver = TrapReceiver(config, "alta", publisher, host="127.0.0.1",
                                port=free_udp_port(), communities=(COMMUNITY,))
        receiver.start()
        publisher.counters = receiver.counters
        sender = asyncio.create_task(publisher.run())
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
                out.bind(("127.0.1.1", 0))  # loppa-sw1's address in the estate
                for i in range(2000):
                    out.sendto(trap, ("127.0.0.1", receiver.port))
                    if i % 40 == 0:
                        out.sendto(b"\x00not snmp at all", ("127.0.0.1", receiver.port))
                    if i % 67 == 0 and i < 67 * 30:
                        out.sendto(stranger, ("127.0.0.1", receiver.port))
            def accounted() -> int:
                c = receiver.counters()
                return (c["traps_received"] + c["trap_not_snmp"] + c["trap_bad_community"]
                        + c["trap_socket_drops"])

            deadline = time.monotonic() + 60
            while accounted() < 2080:  # every datagram sent, one way or another
                assert time.monotonic() < deadline, receiver.counters()
                await asyncio.sleep(0.1)
            await receiver.drain()
            counted = receiver.counters()
            drops = counted["trap_socket_drops"]
            assert counted["traps_received"] + counted["trap_not_snmp"] + counted[
                "trap_bad_community"] + drops == 2080, counted
            if drops == 0:  # the usual case with the enlarged buffer: all of it, exactly
                assert (counted["traps_received"], counted["trap_not_snmp"],
                        counted["trap_bad_community"]) == (2000, 50, 30)
            assert counted["traps_unknown_source"] == 0
            assert publisher.stats.emitted == counted["traps_received"]
            status = msgspec.json.decode(publisher._status("online"), type=ComponentStatus)
            assert status.counters == counted
        finally:
            publisher.stop()
            await asyncio.wait_for(sender, 10)
            receiver.close()
            await outbox.close()


async def test_a_v3_trap_below_its_users_security_level_is_refused(tmp_path: Path) -> None:
    """An authPriv user's name and the sender's engine ID are not enough: v3 traps at
    noAuthNoPriv and authNoPriv for that user (which pysnmp would take) are refused and
    counted; the same trap at authPriv arrives."""
    engine_id = "8000000001020304"
    user = TrapUser("dvtrap", "SHA-256", "trap-auth-123", "AES", "trap-priv-123",
                    engine_id=bytes.fromhex(engine_id))
    levels = {"noAuthNoPriv": ["-l", "noAuthNoPriv"],
              "authNoPriv": ["-l", "authNoPriv", "-a", "SHA-256", "-A", "trap-auth-123"],
              "authPriv": ["-l", "authPriv", "-a", "SHA-256", "-A", "trap-auth-123",
                           "-x", "AES", "-X", "trap-priv-123"]}
    arrived: list[str] = []
    async with _receiving(tmp_path, users=(user,)) as (receiver, broker), \
            aiomqtt.Client("127.0.0.1", broker.port) as client:
        await client.subscribe("driftsvakt/v1/alta/+/+/trap/+", qos=1)
        await asyncio.sleep(0.3)
        for level, args in levels.items():  # the authPriv one last
            proc = await asyncio.create_subprocess_exec(
                "snmptrap", "-v3", "-e", f"0x{engine_id}", *args, "-u", user.name,
                "--clientaddr=127.0.1.2", f"127.0.0.1:{receiver.port}", "",
                "1.3.6.1.4.1.9999.7", "1.3.6.1.4.1.9999.7.1", "s", level,
                stderr=subprocess.PIPE)
            _, err = await proc.communicate()
            assert 0 == proc.returncode, err.decode()
        async with asyncio.timeout(5):
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                arrived.append(msgspec.json.decode(
                    message.payload, type=TrapEvent).varbinds[0].value)
                break
        await asyncio.sleep(0.5)  # the refused ones are counted by now
    assert ["authPriv"] == arrived
    assert (1, 2, 2) == (receiver.stats.received, receiver.stats.below_level,
                         receiver.counters()["trap_v3_refused"])
