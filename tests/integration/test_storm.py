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
devices behind it; nothing for anything behind it; after the recovery, every device up
and nothing pending, so no page can follow; one resolved notice to each who was told.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiosmtpd.controller import Controller

from collectors.agent.run import Agent
from collectors.agent.settings import AgentSettings
from collectors.common.outbox import Outbox
from collectors.common.publisher import Publisher
from collectors.snmp.modules import load_modules
from collectors.snmp.poller import SnmpPoller
from demo.simulated_snmp import SimulatedAgents
from monitor.app import EngineApp, start_engine
from monitor.config import Config, load_config
from monitor.fields import Broker
from tests.servers import Mosquitto, TcpLink, free_port, free_udp_port, wait_ready

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

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = message.get_body(preferencelist=("plain",))
        text = body.get_content() if body is not None else ""
        self.messages.append((list(envelope.rcpt_tos), str(message["Subject"]), str(text)))
        return "250 OK"

    def to(self, address: str) -> list[tuple[str, str]]:
        return [(s, b) for rcpt, s, b in self.messages if address in rcpt]


class NoServices:
    async def states(self, names: list[str]) -> dict[str, bool]:
        return {}


def _estate(tmp: Path, broker_port: int, snmp_port: int, smtp_port: int,
            office_hours: bool) -> tuple[Path, dict[str, str], list[dict[str, Any]]]:
    """The estate; the SNMP devices' addresses; the agents' devices."""
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
                   {"id": "kari", "name": "Kari Nilsen", "email": "kari@storm.example"}],
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


async def _until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        await asyncio.sleep(0.5)


@dataclass
class Storm:
    """What one run saw."""

    mail: Mailbox
    app: EngineApp
    paged_at: float = 0.0
    recovered_at: float = 0.0
    states_after: dict[str, str | None] = field(default_factory=dict)
    open_after: list[tuple[str, str | None, str]] = field(default_factory=list)


async def _run(tmp: Path, office_hours: bool) -> Storm:
    smtp_port, snmp_port = free_port(), free_udp_port()
    mailbox = Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    broker = Mosquitto(tmp / "broker").start()
    link = TcpLink(broker.port)  # the agents' way to the broker, through the core
    try:
        path, addresses, agent_devices = _estate(tmp, broker.port, snmp_port, smtp_port,
                                                 office_hours)
        config = load_config(path)
        return await _storm(tmp, config, addresses, agent_devices, link, mailbox)
    finally:
        link.close()
        broker.stop()
        smtp.stop()


async def _storm(tmp: Path, config: Config, addresses: dict[str, str],
                 agent_devices: list[dict[str, Any]], link: TcpLink,
                 mailbox: Mailbox) -> Storm:
    app = await start_engine(config, "alta", http_port=0)
    sims = SimulatedAgents([(config.devices[d], a) for d, a in addresses.items()],
                           port=config.snmp_profiles["sim"].port, community=COMMUNITY,
                           seed=11, location="alta")
    outboxes: list[Outbox] = []
    workers: list[Any] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        await wait_ready(app.url)
        await sims.start()
        outbox = await Outbox.open(tmp / "snmp.db")
        outboxes.append(outbox)
        poller_pub = Publisher(broker=config.broker_for("alta", "snmp"), location="alta",
                               component="snmp", instance="snmp-alta", outbox=outbox)
        poller = SnmpPoller(config, "alta", poller_pub, load_modules())
        workers += [poller_pub, poller]
        relay = Broker(location="alta", host="127.0.0.1", port=link.port)
        for device in agent_devices:
            site = config.sites[device["site"]]
            box = await Outbox.open(tmp / "agents" / f"{device['id']}.db")
            outboxes.append(box)
            publisher = Publisher(broker=relay, location="alta", component="agent",
                                  instance=device["id"], outbox=box)
            settings = AgentSettings(location="alta", municipality=site.municipality,
                                     device=device["id"], device_class=device["class"],
                                     interval=15.0, broker=relay)
            workers += [publisher, Agent(settings, publisher, NoServices(), device["id"])]
        tasks = [asyncio.create_task(w.run()) for w in workers]
        devices = app.engine.ingest.state.devices

        def heard() -> bool:
            return all(d in devices for d in config.devices) and all(
                devices[d].state == "up" for d in addresses)

        await _until(heard, 90, "every device heard from, every polled one up")
        await asyncio.sleep(20)  # a settled estate: alerts of the start have had their say
        assert [] == mailbox.messages, "the estate was not quiet before the storm"

        dark = [d for d in addresses if d not in ("edge", "edge-ap1", "edge-ap2")]
        for device_id in dark:
            sims.outage(device_id, OUTAGE)
        link.cut()
        started = time.monotonic()
        storm = Storm(mailbox, app)
        await _until(lambda: bool(mailbox.messages), OUTAGE - 5, "the page")
        storm.paged_at = time.monotonic() - started
        await asyncio.sleep(max(0.0, OUTAGE - (time.monotonic() - started)))
        link.restore()  # on the same port
        storm.recovered_at = time.monotonic() - started

        def settled() -> bool:
            return all(devices[d].state == "up" for d in addresses) and not [
                a for a in app.rules.current() if a.state in ("pending", "firing")
                and a.suppressed is None]

        await _until(settled, 90, "every polled device up, nothing pending or firing")
        storm.states_after = {d: devices[d].state for d in addresses}
        storm.open_after = [(a.rule, a.device, a.state) for a in app.rules.current()
                            if a.state in ("pending", "firing")]
        await _until(lambda: len(mailbox.messages) >= 2, 60, "the resolved notice")
        await asyncio.sleep(40)  # group_wait and more: anything else would have come
        return storm
    finally:
        for w in workers:
            w.stop()
        if tasks:
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
        sims.close()
        for box in outboxes:
            await box.close()
        await app.stop()


def _check(storm: Storm, recipient: str) -> None:
    sent = storm.mail.to(recipient)
    print(f"\n{recipient}: paged {storm.paged_at:.0f} s after the core went dark; "
          f"{len(storm.mail.messages)} message(s): "
          + "; ".join(s for _, s, _ in storm.mail.messages))
    assert 2 == len(storm.mail.messages), storm.mail.messages
    (fired_subject, fired_body), (resolved_subject, resolved_body) = sent
    assert fired_subject.startswith("[ALARM:1] DeviceDown – Datasenteret"), fired_subject
    assert "(core)" in fired_body, fired_body
    assert "315 enheter bak denne" in fired_body, fired_body
    assert resolved_subject.startswith("[OK] DeviceDown – Datasenteret"), resolved_subject
    assert resolved_body.startswith("LØST "), resolved_body
    assert ": DeviceDown på core (Datasenteret)" in resolved_body, resolved_body
    assert all(state == "up" for state in storm.states_after.values())
    assert [] == storm.open_after


@pytest.mark.parametrize("office_hours", [True, False], ids=["office-hours", "after-hours"])
async def test_a_core_switch_storm_pages_once_and_resolves_once(
        tmp_path: Path, office_hours: bool) -> None:
    storm = await _run(tmp_path, office_hours)
    _check(storm, CHANNEL if office_hours else ON_CALL)
