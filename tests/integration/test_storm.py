"""A storm through the whole chain, in office hours and after hours.

A core switch and everything behind it go dark for 200 s: 3 distribution switches (one
per municipality), 12 access switches and 300 end devices (60 access points polled over
SNMP, 36 servers and 204 PCs with the host agent). A second site with its own switch
stays up. Everything is real but the devices' SNMP agents, which are the demo's
simulated ones (real SNMP v2c on loopback addresses of their own): the poller and its
publisher, the 240 host agents (each with its own outbox and MQTT connection, through
a relay that is cut so they lose the broker as they would behind a dark core),
mosquitto, the engine with the shipped rules and the example's route tree (group_wait
30 s, group_interval 5 m, DeviceDown after 2 m) and an SMTP server (aiosmtpd).

Office hours and after hours differ only in the office-hours calendar: open all week,
or closed today and tomorrow (the clock itself is not shifted; the routing reads the
calendar at the alert's time, which is what a shifted clock would change).

What must hold, in both: one message to whoever is told (the operators' channel in
office hours, the on-call person after hours), naming the core switch and the 315
devices behind it with the three municipalities they are in (105 each); nothing for
anything behind it; after the recovery, every device up
and nothing pending, so no page can follow; one resolved notice to each who was told.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiosmtpd.controller import Controller

from collectors.common.outbox import Outbox
from collectors.common.publisher import Publisher
from collectors.snmp.modules import load_modules
from collectors.snmp.poller import SnmpPoller
from demo.simulated_snmp import SimulatedAgents
from monitor.config import Config, load_config
from tests.servers import Mosquitto, free_port, free_udp_port, wait_ready

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
COMMUNITY = "dv-storm"
MUNICIPALITIES = ("loppa", "hasvik", "kvalsund")
OUTAGE = 200.0  # longer than DeviceDown's 2 m plus group_wait: the page comes first
PER_ACCESS = (5, 3, 17)  # access points, servers, PCs behind each access switch
ON_CALL = "ola.nordmann@storm.example"
CHANNEL = "vaktrom@storm.example"


@dataclass
class Mailbox:
    """What the SMTP server was given, as (recipients, subject, body)."""

    messages: list[tuple[list[str], str, str]] = field(default_factory=list)
    arrived: list[float] = field(default_factory=list)  # monotonic, one per message

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = message.get_body(preferencelist=("plain",))
        text = body.get_content() if body is not None else ""
        self.messages.append((list(envelope.rcpt_tos), str(message["Subject"]), str(text)))
        self.arrived.append(time.monotonic())
        return "250 OK"

    def to(self, address: str) -> list[tuple[str, str]]:
        return [(s, b) for rcpt, s, b in self.messages if address in rcpt]


def _estate(tmp: Path, broker_port: int, snmp_port: int, smtp_port: int,
            office_hours: bool) -> tuple[Path, dict[str, str], list[dict[str, Any]]]:
    """The estate; the SNMP devices' addresses; the agents' devices."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "community").write_text(COMMUNITY + "\n", encoding="utf-8")
    sites = [{"id": "datasenter", "name": "Datasenteret", "location": "alta",
              "municipality": "loppa"}]
    sites += [{"id": f"{m}-radhus", "name": f"Rådhuset i {m.title()}", "location": "alta",
               "municipality": m} for m in MUNICIPALITIES]
    sites.append({"id": "breivikbotn", "name": "Breivikbotn", "location": "alta",
                  "municipality": "hasvik"})
    devices: list[dict[str, Any]] = []
    addresses: dict[str, str] = {}

    def snmp(device_id: str, cls: str, site: str, parent: str | None) -> None:
        addresses[device_id] = f"127.33.{len(addresses) // 250}.{len(addresses) % 250 + 1}"
        devices.append({"id": device_id, "name": device_id, "class": cls, "site": site,
                        "address": addresses[device_id], "snmp_profile": "sim",
                        "interval": 10, **({"parent": parent} if parent else {})})

    agents: list[dict[str, Any]] = []
    snmp("core", "switch", "datasenter", None)
    for d, municipality in enumerate(MUNICIPALITIES, 1):
        site = f"{municipality}-radhus"
        snmp(f"dist{d}", "switch", site, "core")
        for a in range(1, 5):
            access = f"acc{d}-{a}"
            snmp(access, "switch", site, f"dist{d}")
            aps, servers, pcs = PER_ACCESS
            for n in range(1, aps + 1):
                snmp(f"ap{d}-{a}-{n}", "ap", site, access)
            for cls, count in (("server", servers), ("pc", pcs)):
                for n in range(1, count + 1):
                    agents.append({"id": f"{cls}{d}-{a}-{n}", "name": f"{cls}{d}-{a}-{n}",
                                   "class": cls, "site": site, "parent": access})
    snmp("edge", "switch", "breivikbotn", None)
    for n in (1, 2):
        snmp(f"edge-ap{n}", "ap", "breivikbotn", "edge")
    agents.append({"id": "edge-srv1", "name": "edge-srv1", "class": "server",
                   "site": "breivikbotn", "parent": "edge"})
    devices += agents
    today = date.today()
    calendar: dict[str, Any] = {"id": "kontortid", "public_holidays": False,
                                "weekly": {"mon-sun": ["00:00-24:00"]}}
    if not office_hours:
        calendar["closed"] = [str(today - timedelta(days=1)), str(today),
                              str(today + timedelta(days=1))]
    estate = {
        "locations": [{"id": "alta", "name": "Alta"}],
        "municipalities": [{"id": m, "name": f"{m.title()} kommune",
                            "office_hours": "kontortid"} for m in MUNICIPALITIES],
        "office_hours": [calendar],
        "sites": sites,
        "snmp_profiles": [{"id": "sim", "version": "2c", "port": snmp_port, "timeout": 1.0,
                           "retries": 1, "community": {"file": str(tmp / "community")}}],
        "devices": devices,
        "brokers": [{"location": "alta", "host": "127.0.0.1", "port": broker_port}],
        "engine": {"http_host": "127.0.0.1", "http_port": 0,
                   "store": str(tmp / "engine-{location}.db")},
        "outbox": {"directory": str(tmp / "outbox"), "ack_timeout": 2.0},
        "notifications": _notifications(smtp_port),
    }
    path = tmp / "estate.yaml"
    path.write_text(yaml.safe_dump(estate, allow_unicode=True), encoding="utf-8")
    return path, addresses, agents


def _notifications(smtp_port: int) -> dict[str, Any]:
    """The example's route tree and escalation (deploy/examples/vest-finnmark/
    notifications.yaml), every receiver e-mail to the SMTP server here: the channel's
    to the channel's address, the escalation's to the person on call (by e-mail only,
    where the example also sends an SMS, so that one page is one message)."""
    def mail(to: list[str] | None = None) -> dict[str, Any]:
        return {"smarthost": f"127.0.0.1:{smtp_port}", "from": "driftsvakt@storm.example",
                "starttls": False, **({"to": to} if to else {})}

    example = yaml.safe_load((ROOT / "deploy" / "examples" / "vest-finnmark" /
                              "notifications.yaml").read_text(encoding="utf-8"))
    route = example["notifications"]["route"]
    return {
        "external_url": "https://driftsvakt.storm.example",
        "language": "nb",
        "receivers": [
            {"id": "drift-epost", "email": mail(["drift@storm.example"])},
            {"id": "vaktrom-teams", "email": mail([CHANNEL])},
            {"id": "beredskap-epost", "email": mail()},
        ],
        "route": route,
        "people": [{"id": "ola", "name": "Ola Nordmann", "email": ON_CALL},
                   {"id": "kari", "name": "Kari Nilsen", "email": "kari@storm.example"},
                   {"id": "leder", "name": "Sigrid Eira", "email": "leder@storm.example"}],
        "schedules": [{"id": "beredskap-alta", "layers": [
            {"members": ["ola"], "rotation": "weekly", "handover": "mon 08:00",
             "start": "2026-01-05"}]},
            {"id": "andrelinje", "layers": [
                {"members": ["kari"], "rotation": "weekly", "handover": "mon 08:00",
                 "start": "2026-01-05"}]}],
        "escalations": [{**chain, "steps": [{**step, "via": ["beredskap-epost"]}
                                            for step in chain["steps"]]}
                        for chain in example["notifications"]["escalations"]],
    }


async def _until(check: Callable[[], Awaitable[bool]], timeout: float, what: str,
                 detail: Callable[[], object] = lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s {detail()}"
        await asyncio.sleep(1.0)


@dataclass
class Storm:
    """What one run saw."""

    mail: Mailbox
    dark_at: float = 0.0  # monotonic
    recovered_at: float = 0.0
    states_after: dict[str, str] = field(default_factory=dict)
    open_after: list[tuple[str, str | None, str]] = field(default_factory=list)


async def _run(tmp: Path, office_hours: bool) -> Storm:
    smtp_port, snmp_port, http_port = free_port(), free_udp_port(), free_port()
    mailbox = Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    broker = Mosquitto(tmp / "broker").start()
    engine: subprocess.Popen[bytes] | None = None
    try:
        path, addresses, agent_devices = _estate(tmp, broker.port, snmp_port, smtp_port,
                                                 office_hours)
        engine = _spawn(["monitor.cli", "--no-log-json", "engine", "--config", str(path),
                         "--location", "alta", "--http-port", str(http_port)],
                        tmp / "engine.log")
        url = f"http://127.0.0.1:{http_port}"
        await wait_ready(url, 30)
        return await _storm(tmp, load_config(path), url, addresses, agent_devices, mailbox,
                            broker.port)
    finally:
        await _end(engine)
        broker.stop()
        smtp.stop()


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", *args], stdout=out,
                                stderr=subprocess.STDOUT, cwd=ROOT)


async def _end(process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, as systemd stops it, and wait for the exit."""
    if process is not None:
        process.terminate()
        await asyncio.to_thread(process.wait, 60)


async def _get(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=10)) as resp:
        assert 200 == resp.status, url
        return await resp.json()


async def _storm(tmp: Path, config: Config, url: str, addresses: dict[str, str],
                 agent_devices: list[dict[str, Any]], mailbox: Mailbox,
                 broker_port: int) -> Storm:
    sims = SimulatedAgents([(config.devices[d], a) for d, a in addresses.items()],
                           port=config.snmp_profiles["sim"].port, community=COMMUNITY,
                           seed=11, location="alta")
    outbox = await Outbox.open(tmp / "snmp.db")
    publisher = Publisher(broker=config.broker_for("alta", "snmp"), location="alta",
                          component="snmp", instance="snmp-alta", outbox=outbox)
    poller = SnmpPoller(config, "alta", publisher, load_modules())
    plan = tmp / "agents.json"
    plan.write_text(json.dumps({
        "broker_port": broker_port, "outboxes": str(tmp / "agents"), "interval": 15.0,
        "agents": [{"id": d["id"], "municipality": config.sites[d["site"]].municipality,
                    "class": d["class"], "behind_core": d["site"] != "breivikbotn"}
                   for d in agent_devices]}), encoding="utf-8")
    (tmp / "agents").mkdir()
    agents: subprocess.Popen[bytes] | None = None
    tasks: list[asyncio.Task[None]] = []
    try:
        await sims.start()
        tasks = [asyncio.create_task(w.run()) for w in (publisher, poller)]
        agents = _spawn(["tests.storm_agents", str(plan)], tmp / "agents.log")
        async with aiohttp.ClientSession() as session:
            async def devices() -> dict[str, dict[str, Any]]:
                got = await _get(session, f"{url}/api/v1/devices")
                return {d["id"]: d for d in got["devices"]}

            async def heard() -> bool:
                now = await devices()
                return all(now[d]["last_seen"] is not None for d in config.devices) and all(
                    now[d]["status"] == "up" for d in addresses)

            await _until(heard, 120, "every device heard from, every polled one up")
            await asyncio.sleep(20)  # a settled estate: alerts of the start have had their say
            assert [] == mailbox.messages, "the estate was not quiet before the storm"

            for device_id in addresses:
                if device_id not in ("edge", "edge-ap1", "edge-ap2"):
                    sims.outage(device_id, OUTAGE)
            os.kill(agents.pid, signal.SIGUSR1)  # the agents behind the core lose the broker
            storm = Storm(mailbox, dark_at=time.monotonic())

            async def paged() -> bool:
                return bool(mailbox.messages)

            await _until(paged, OUTAGE - 5, "the page")
            await asyncio.sleep(max(0.0, OUTAGE - (time.monotonic() - storm.dark_at)))
            os.kill(agents.pid, signal.SIGUSR2)
            storm.recovered_at = time.monotonic()

            async def settled() -> bool:
                now = await devices()
                alerts = (await _get(session, f"{url}/api/v1/alerts"))["alerts"]
                storm.states_after = {d: now[d]["status"] for d in addresses}
                storm.open_after = [(a["alertname"], a["labels"].get("device"), a["lifecycle"])
                                    for a in alerts if a["lifecycle"] in ("pending", "firing")
                                    and a["suppressed"] is None]
                return all(s == "up" for s in storm.states_after.values()) \
                    and not storm.open_after

            await _until(settled, 90, "every polled device up, nothing pending or firing",
                         lambda: ({d: s for d, s in storm.states_after.items() if s != "up"},
                                  storm.open_after))

            async def resolved() -> bool:
                return len(mailbox.messages) >= 2

            await _until(resolved, 60, "the resolved notice")
            await asyncio.sleep(40)  # group_wait and more: anything else would have come
            return storm
    finally:
        await _end(agents)
        poller.stop()
        publisher.stop()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
        sims.close()
        await outbox.close()


def _check(storm: Storm, recipient: str) -> None:
    sent = storm.mail.to(recipient)
    times = storm.mail.arrived
    print(f"\n{recipient}: {len(storm.mail.messages)} message(s): "
          + "; ".join(s for _, s, _ in storm.mail.messages)
          + (f"; paged {times[0] - storm.dark_at:.0f} s after the core went dark, resolved "
             f"{times[1] - storm.recovered_at:.0f} s after it came back" if len(times) > 1
             else ""))
    assert 2 == len(storm.mail.messages), storm.mail.messages
    (fired_subject, fired_body), (resolved_subject, resolved_body) = sent
    assert fired_subject.startswith("[ALARM:1] DeviceDown – Datasenteret"), fired_subject
    assert "(core)" in fired_body, fired_body
    assert ("315 enheter bak denne er utilgjengelige (Hasvik kommune 105, Kvalsund kommune "
            "105, Loppa kommune 105)") in fired_body, fired_body
    assert resolved_subject.startswith("[OK] DeviceDown – Datasenteret"), resolved_subject
    assert resolved_body.startswith("LØST "), resolved_body
    assert ": DeviceDown på core (Datasenteret)" in resolved_body, resolved_body
    assert all(state == "up" for state in storm.states_after.values())
    assert [] == storm.open_after


@pytest.mark.timeout(600)
async def test_a_core_switch_storm_pages_once_and_resolves_once(tmp_path: Path) -> None:
    """Office hours and after hours side by side, each on a bed of its own."""
    office, after = await asyncio.gather(_run(tmp_path / "office-hours", True),
                                         _run(tmp_path / "after-hours", False),
                                         return_exceptions=True)
    for outcome in (office, after):
        if isinstance(outcome, BaseException):
            raise outcome
    assert isinstance(office, Storm)
    assert isinstance(after, Storm)
    _check(office, CHANNEL)
    _check(after, ON_CALL)
