"""``driftsvakt demo``: the whole system on one machine, on the example estate.

Two locations, each with its own broker and engine, as in production: with
mosquitto installed, two mosquitto processes bridged for ``driftsvakt/v1/#`` with
queued QoS 1 (each engine sees the whole estate); without it, one amqtt broker in
this process, which speaks MQTT 3.1.1 only, so the publishers run without v5 reason
codes (they say so in the log). A simulator per location publishes the estate's
events through the real publisher and outbox.
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
from typing import Any, Final

import structlog

from collectors.checks.runner import CheckRunner
from collectors.common.outbox import Outbox
from collectors.common.publisher import Publisher
from collectors.demo_services import DemoWeb, demo_checks, demo_web
from collectors.simulator import Simulator
from monitor.app import EngineApp, start_engine
from monitor.config import Broker, Config, load_config
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
    # after the engines have committed and acknowledged.
    proc = await asyncio.create_subprocess_exec(binary, "-c", str(conf),
                                                stdout=subprocess.DEVNULL,
                                                stderr=subprocess.DEVNULL,
                                                start_new_session=True)
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


def _demo_config(config: Config, workdir: Path, ports: dict[str, int]) -> Config:
    brokers = {loc: Broker(location=loc, host="127.0.0.1", port=ports[loc])
               for loc in config.locations}
    engine = dataclasses.replace(config.engine, store=str(workdir / "engine-{location}.db"))
    outbox = dataclasses.replace(config.outbox, directory=str(workdir / "outbox"),
                                 ack_timeout=5.0)
    return dataclasses.replace(config, brokers=brokers, engine=engine, outbox=outbox)


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
        if use_mosquitto:
            ports = {loc: _free_port() for loc in locations}
        else:
            shared = _free_port()
            ports = dict.fromkeys(locations, shared)
        config = _demo_config(base, work, ports)
        if use_mosquitto:
            assert binary is not None
            for i, loc in enumerate(locations):
                # The second broker bridges to the first: one bridge joins the two.
                bridge = ports[locations[0]] if i > 0 else None
                await stack.enter_async_context(
                    _mosquitto(binary, work, loc, ports[loc], bridge))
        else:
            await stack.enter_async_context(_amqtt(ports[locations[0]]))
        web_ = await stack.enter_async_context(demo_web(config, work))
        config = dataclasses.replace(config, checks=demo_checks(config, web_),
                                     notifications=_demo_notifications(web_, work, http_port))
        engines: list[EngineApp] = []
        for i, loc in enumerate(locations):
            app = await start_engine(config, loc, http_port=http_port + i, v5=use_mosquitto)
            engines.append(app)
            stack.push_async_callback(app.stop)
        publishers: list[Publisher] = []
        simulators: list[Simulator] = []
        runners: list[CheckRunner] = []
        for loc in locations:
            outbox = await Outbox.open(work / "outbox" / f"sim-{loc}.db",
                                       max_rows=config.outbox.max_rows,
                                       max_age=config.outbox.max_age)
            stack.push_async_callback(outbox.close)
            publisher = Publisher(broker=config.broker_for(loc), location=loc,
                                  component="simulator", instance=f"sim-{loc}", outbox=outbox,
                                  v5=use_mosquitto, ack_timeout=config.outbox.ack_timeout)
            publishers.append(publisher)
            simulators.append(Simulator(config, loc, publisher))
            checks_outbox = await Outbox.open(work / "outbox" / f"checks-{loc}.db")
            stack.push_async_callback(checks_outbox.close)
            checks_publisher = Publisher(broker=config.broker_for(loc), location=loc,
                                         component="checks", instance=f"checks-{loc}",
                                         outbox=checks_outbox, v5=use_mosquitto,
                                         ack_timeout=config.outbox.ack_timeout)
            publishers.append(checks_publisher)
            runners.append(CheckRunner(config, loc, checks_publisher))
        print("driftsvakt demo is running (Ctrl-C stops it):", flush=True)
        for loc, app in zip(locations, engines, strict=True):
            print(f"  engine {loc:<11} {app.url}/metrics  {app.url}/readyz", flush=True)
        print(f"  brokers      {', '.join(f'{k}=127.0.0.1:{v}' for k, v in ports.items())}"
              f" ({'mosquitto, bridged' if use_mosquitto else 'amqtt, MQTT 3.1.1'})",
              flush=True)
        print(f"  data         {work}", flush=True)
        print(f"  checked      http://127.0.0.1:{web_.http_port}/alta"
              f"{'' if web_.https_port is None else f' and TLS on {web_.https_port}'}",
              flush=True)
        await _run_until_signal(publishers, simulators, runners, engines)
    log.info("demo_stopped")
    return 0


async def _run_until_signal(publishers: list[Publisher], simulators: list[Simulator],
                            runners: list[CheckRunner], engines: list[EngineApp]) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    tasks: list[asyncio.Task[Any]] = []
    try:
        async with asyncio.TaskGroup() as tg:
            for pub in publishers:
                tasks.append(tg.create_task(pub.run(), name=f"publisher-{pub.instance}"))
            for sim in simulators:
                tasks.append(tg.create_task(sim.run(), name=f"simulator-{sim.location}"))
            for runner in runners:
                tasks.append(tg.create_task(runner.run(), name=f"checks-{runner.location}"))
            engine_failed = [app.task for app in engines]
            waiter = asyncio.create_task(stopping.wait())
            await asyncio.wait({waiter, *engine_failed}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            log.info("demo_stopping")
            for sim in simulators:
                sim.stop()
            for runner in runners:
                runner.stop()
            for pub in publishers:
                pub.stop()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
