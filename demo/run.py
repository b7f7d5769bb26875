"""``driftsvakt demo``: the whole system on one machine, on the example estate.

Two locations, each with its own broker and engine, as in production: with
mosquitto installed, two mosquitto processes bridged for ``driftsvakt/v1/#`` with
queued QoS 1 (each engine sees the whole estate); without it, one amqtt broker in
this process, which speaks MQTT 3.1.1 only, so the publishers run without v5 reason
codes (they say so in the log).

The network gear of each location (switches, routers, firewalls, UPSes) is polled over
real SNMP v2c on loopback by the real poller: each device is a simulated agent on an
address of its own in 127.0.0.0/8 (``demo/simulated_snmp.py``) with moving
counters and injected faults, whose traps go to the real trap receiver. Everything else
(PCs, servers, access points, printers) is played by a simulator per location that
publishes the events their agents would send; all of it through the real publisher and
outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Final, Protocol

import structlog

from collectors.checks.runner import CheckRunner
from collectors.common.outbox import Outbox
from collectors.common.publisher import Publisher
from collectors.snmp.modules import load_modules
from collectors.snmp.poller import SnmpPoller
from collectors.traps.receiver import TrapReceiver
from demo.services import DemoWeb, demo_checks, demo_web
from demo.simulated_snmp import SimulatedAgents
from demo.simulator import Simulator
from monitor.app import EngineApp, start_engine
from monitor.config import (
    ApiUser,
    Broker,
    Config,
    Device,
    SnmpProfile,
    TrapSettings,
    load_config,
)
from monitor.notify.settings import (
    NotificationSettings,
    ReceiverSettings,
    RouteSettings,
    WebhookSettings,
)
from monitor.secrets import SecretRef
from monitor.yamlmodel import Problems

__all__ = ["run_demo"]

log = structlog.get_logger(__name__)

EXAMPLE: Final = Path(__file__).resolve().parents[1] / "deploy" / "examples" / "vest-finnmark"
SNMP_CLASSES: Final = frozenset({"switch", "router", "firewall", "ups"})
SNMP_INTERVAL: Final = 30.0
SNMP_COMMUNITY: Final = "driftsvakt-demo"
# this municipality's switches below its core are given no parent in the engines'
# estate: the links their simulated agents announce over LLDP place them (dashed on
# /topology)
FROM_LINKS: Final = "hasvik"


class _Worker(Protocol):
    async def run(self) -> None: ...

    def stop(self) -> None: ...


@dataclasses.dataclass(frozen=True)
class _SnmpEstate:
    """Where each simulated agent listens, and the ports of the demo's SNMP."""

    agents: dict[str, list[tuple[Device, str]]]  # location -> (device, address)
    agent_port: int
    trap_ports: dict[str, int]

    @property
    def devices(self) -> frozenset[str]:
        return frozenset(d.id for served in self.agents.values() for d, _ in served)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _mosquitto_binary() -> str | None:
    import shutil

    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/bin/mosquitto") if Path(p).exists()), None)


@asynccontextmanager
async def _mosquitto(binary: str, workdir: Path, name: str, port: int,
                     bridge_to: int | None) -> AsyncIterator[None]:
    """A mosquitto child process; ``bridge_to`` adds a bridge to the other location."""
    import os

    conf = workdir / f"mosquitto-{name}.conf"
    lines = [
        f"listener {port} 127.0.0.1",
        "allow_anonymous true",
        "persistence false",
        "max_queued_messages 200000",
        f"log_dest file {workdir / f'mosquitto-{name}.log'}",
        "log_type error", "log_type warning", "log_type notice",
    ]
    if os.geteuid() == 0:
        lines.append("user root")  # else it drops to 'mosquitto' and cannot write here
    if bridge_to is not None:
        lines += [
            "connection bridge-to-peer",
            f"address 127.0.0.1:{bridge_to}",
            "topic driftsvakt/v1/# both 1",
            "cleansession false",
            "bridge_attempt_unsubscribe false",
            "restart_timeout 1 10",
        ]
    conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
    # Its own session: Ctrl-C reaches only the demo, which stops the brokers last,
    # after the engines have committed and acknowledged. And should the demo be
    # killed outright, the kernel stops them too (no broker left behind).
    proc = await asyncio.create_subprocess_exec(binary, "-c", str(conf),
                                                stdout=subprocess.DEVNULL,
                                                stderr=subprocess.DEVNULL,
                                                start_new_session=True,
                                                preexec_fn=_die_with_parent)
    try:
        await _wait_port(port)
        log.info("broker_started", broker="mosquitto", location=name, port=port, pid=proc.pid)
        yield
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the demo's process ends (Linux)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@asynccontextmanager
async def _amqtt(port: int) -> AsyncIterator[None]:
    try:
        from amqtt.broker import Broker as AmqttBroker
    except ImportError:
        raise SystemExit("neither mosquitto nor amqtt is installed: install mosquitto "
                         "(apt-get install mosquitto) or pip install 'driftsvakt[demo]'") from None
    broker = AmqttBroker({
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin":
                    {"allow_anonymous": True}},
    })
    await broker.start()
    log.info("broker_started", broker="amqtt", port=port, protocol="MQTT 3.1.1")
    try:
        yield
    finally:
        await broker.shutdown()


async def _wait_port(port: int, within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            await writer.wait_closed()
            return
        except OSError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.05)


# Who may sign in to the demo's console and portal (the token is the password at
# /login): the demo runs on loopback only, so its tokens are printed, not secret.
DEMO_USERS: Final = (("vakt", "operator", None), ("drift", "admin", None),
                     ("alta", "viewer", "alta"))


def _demo_users(config: Config, workdir: Path) -> dict[str, ApiUser]:
    users = {}
    for uid, role, municipality in DEMO_USERS:
        if municipality is not None and municipality not in config.municipalities:
            continue
        token = workdir / f"token-{uid}"
        token.write_text(f"demo-{uid}\n", encoding="utf-8")
        token.chmod(0o600)
        users[uid] = ApiUser(id=uid, role=role,  # type: ignore[arg-type]
                             token=SecretRef(file=str(token)), municipality=municipality)
    return users


def _demo_config(config: Config, workdir: Path, ports: dict[str, int]) -> Config:
    brokers = {loc: Broker(location=loc, host="127.0.0.1", port=ports[loc])
               for loc in config.locations}
    engine = dataclasses.replace(config.engine, store=str(workdir / "engine-{location}.db"))
    outbox = dataclasses.replace(config.outbox, directory=str(workdir / "outbox"),
                                 ack_timeout=5.0)
    users = config.users or _demo_users(config, workdir)
    return dataclasses.replace(config, brokers=brokers, engine=engine, outbox=outbox,
                               users=users)


def _free_udp_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _loopback_addresses_work() -> bool:
    """Linux answers on all of 127.0.0.0/8; other systems only on 127.0.0.1."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind(("127.31.0.1", 0))
        except OSError:
            return False
    return True


def _snmp_estate(config: Config, work: Path) -> tuple[Config, _SnmpEstate]:
    """The network gear moves to simulated agents on loopback, polled with v2c; the
    servers' SNMP is left to the simulator, which plays their host agent instead."""
    locations = sorted(config.locations)
    served: dict[str, list[tuple[Device, str]]] = {loc: [] for loc in locations}
    use_agents = _loopback_addresses_work()
    if not use_agents:
        log.warning("snmp_agents_unavailable", reason="cannot bind 127.31.0.1: only "
                    "127.0.0.1 is local here; the simulator plays the network gear")
    devices: dict[str, Device] = {}
    for device in config.devices.values():
        loc = config.location_of(device.id)
        if use_agents and device.device_class in SNMP_CLASSES and device.snmp_profile:
            n = len(served[loc])
            address = f"127.{31 + locations.index(loc)}.{n // 250}.{n % 250 + 1}"
            device = dataclasses.replace(device, address=address, snmp_profile="demo-v2c",
                                         interval=SNMP_INTERVAL)
            served[loc].append((device, address))  # cabled as declared
            if (device.device_class == "switch" and device.parent
                    and config.devices[device.parent].device_class in ("switch", "router")
                    and config.municipality_of(device.id) == FROM_LINKS):
                device = dataclasses.replace(device, parent=None)
        elif device.snmp_profile:
            device = dataclasses.replace(device, snmp_profile=None)
        devices[device.id] = device
    community = work / "snmp-community"
    community.write_text(SNMP_COMMUNITY + "\n", encoding="utf-8")
    estate = _SnmpEstate(served, _free_udp_port(), {loc: _free_udp_port() for loc in locations})
    profile = SnmpProfile(id="demo-v2c", version="2c", community=SecretRef(file=str(community)),
                          port=estate.agent_port, timeout=2.0, retries=1)
    traps = TrapSettings(host="127.0.0.1", communities=[SecretRef(file=str(community))])
    return dataclasses.replace(config, devices=devices, traps=traps,
                               snmp_profiles={**config.snmp_profiles, profile.id: profile}
                               ), estate


async def _publisher(stack: AsyncExitStack, config: Config, work: Path, location: str,
                     component: str, v5: bool) -> Publisher:
    outbox = await Outbox.open(work / "outbox" / f"{component}-{location}.db",
                               max_rows=config.outbox.max_rows, max_age=config.outbox.max_age)
    stack.push_async_callback(outbox.close)
    return Publisher(broker=config.broker_for(location), location=location,
                     component=component, instance=f"{component}-{location}", outbox=outbox,
                     v5=v5, ack_timeout=config.outbox.ack_timeout)


def _demo_notifications(web_: DemoWeb, work: Path, http_port: int) -> NotificationSettings:
    """Whatever the estate's own receivers, the demo notifies only its own chat sink on
    loopback (the log shows each message as ``demo_notification``)."""
    url_file = work / "chat-url"
    url_file.write_text(f"http://127.0.0.1:{web_.http_port}/chat\n", encoding="utf-8")
    return NotificationSettings(
        route=RouteSettings(receiver="vaktrom", group_by=["alertname", "site"],
                            group_wait="30s", group_interval="5m"),
        receivers=[ReceiverSettings(id="vaktrom", webhook=WebhookSettings(
            url=SecretRef(file=str(url_file)), format="slack"))],
        external_url=f"http://127.0.0.1:{http_port}")


async def _brokers(stack: AsyncExitStack, binary: str | None, work: Path,
                   locations: list[str]) -> dict[str, int]:
    """One mosquitto per location, the second bridged to the first; without mosquitto,
    one in-process amqtt broker for all. Returns each location's broker port."""
    if binary is None:
        shared = _free_port()
        await stack.enter_async_context(_amqtt(shared))
        return dict.fromkeys(locations, shared)
    ports = {loc: _free_port() for loc in locations}
    for i, loc in enumerate(locations):
        bridge = ports[locations[0]] if i > 0 else None
        await stack.enter_async_context(_mosquitto(binary, work, loc, ports[loc], bridge))
    return ports


async def run_demo(config_path: str | None, *, http_port: int = 9810, broker: str = "auto",
                   workdir: str | None = None) -> int:
    try:
        base = load_config(Path(config_path) if config_path else EXAMPLE)
    except Problems as exc:
        for problem in exc.problems:
            print(problem)
        return 1
    binary = _mosquitto_binary() if broker in ("auto", "mosquitto") else None
    if broker == "mosquitto" and binary is None:
        print("mosquitto is not installed (apt-get install mosquitto)")
        return 1
    use_mosquitto = binary is not None
    locations = sorted(base.locations)
    async with AsyncExitStack() as stack:
        if workdir is None:
            workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="driftsvakt-demo-"))
        work = Path(workdir)
        work.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, at start
        ports = await _brokers(stack, binary, work, locations)
        config, snmp_estate = _snmp_estate(_demo_config(base, work, ports), work)
        web_ = await stack.enter_async_context(demo_web(config, work))
        config = dataclasses.replace(config, checks=demo_checks(config, web_),
                                     notifications=_demo_notifications(web_, work, http_port))
        engines: list[EngineApp] = []
        for i, loc in enumerate(locations):
            app = await start_engine(config, loc, http_port=http_port + i, v5=use_mosquitto)
            engines.append(app)
            stack.push_async_callback(app.stop)
        publishers: list[Publisher] = []
        workers: list[_Worker] = []
        modules = load_modules()
        for loc in locations:
            simulator = await _publisher(stack, config, work, loc, "simulator", use_mosquitto)
            checks = await _publisher(stack, config, work, loc, "checks", use_mosquitto)
            snmp = await _publisher(stack, config, work, loc, "snmp", use_mosquitto)
            traps = await _publisher(stack, config, work, loc, "traps", use_mosquitto)
            publishers += [simulator, checks, snmp, traps]
            receiver = TrapReceiver(config, loc, traps, host="127.0.0.1",
                                    port=snmp_estate.trap_ports[loc],
                                    communities=(SNMP_COMMUNITY,))
            receiver.start()
            stack.callback(receiver.close)
            agents = SimulatedAgents(snmp_estate.agents[loc], port=snmp_estate.agent_port,
                                     community=SNMP_COMMUNITY,
                                     trap_to=("127.0.0.1", snmp_estate.trap_ports[loc]),
                                     location=loc)
            await agents.start()
            stack.callback(agents.close)
            poller = SnmpPoller(config, loc, snmp, modules)
            stack.callback(poller.close)
            workers += [Simulator(config, loc, simulator, skip=snmp_estate.devices),
                        CheckRunner(config, loc, checks), agents, poller]
        print("driftsvakt demo is running (Ctrl-C stops it):", flush=True)
        for loc, app in zip(locations, engines, strict=True):
            print(f"  console {loc:<10} {app.url}/  (problems {app.url}/problems, SLA "
                  f"portal {app.url}/sla)", flush=True)
            print(f"  engine {loc:<11} {app.url}/metrics  {app.url}/readyz", flush=True)
        if not base.users:
            print("  sign in      at /login with the token " + ", ".join(
                f"demo-{uid} ({role}{f' of {m}' if m else ''})"
                for uid, role, m in DEMO_USERS if uid in config.users), flush=True)
        print(f"  brokers      {', '.join(f'{k}=127.0.0.1:{v}' for k, v in ports.items())}"
              f" ({'mosquitto, bridged' if use_mosquitto else 'amqtt, MQTT 3.1.1'})",
              flush=True)
        print(f"  snmp         {len(snmp_estate.devices)} devices on simulated agents "
              f"(127.31.x.x/127.32.x.x:{snmp_estate.agent_port}, v2c), traps to "
              f"{', '.join(f'{k}=127.0.0.1:{v}' for k, v in snmp_estate.trap_ports.items())}",
              flush=True)
        if FROM_LINKS in config.municipalities:
            print(f"  links        {config.municipalities[FROM_LINKS].name}'s switches have "
                  "no declared parent: LLDP places them (dashed on /topology)", flush=True)
        print(f"  data         {work}", flush=True)
        print(f"  checked      http://127.0.0.1:{web_.http_port}/alta"
              f"{'' if web_.https_port is None else f' and TLS on {web_.https_port}'}",
              flush=True)
        await _run_until_signal(publishers, workers, engines)
    log.info("demo_stopped")
    return 0


async def _run_until_signal(publishers: list[Publisher], workers: list[_Worker],
                            engines: list[EngineApp]) -> None:
    """Run until SIGINT/SIGTERM or an engine fails; the workers stop before the
    publishers, which send what is queued before they go."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    try:
        async with asyncio.TaskGroup() as tg:
            for pub in publishers:
                tg.create_task(pub.run(), name=f"publisher-{pub.instance}")
            for worker in workers:
                tg.create_task(worker.run(), name=type(worker).__name__)
            engine_failed = [app.supervision for app in engines]
            waiter = asyncio.create_task(stopping.wait())
            await asyncio.wait({waiter, *engine_failed}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            log.info("demo_stopping")
            for worker in workers:
                worker.stop()
            for pub in publishers:
                pub.stop()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
