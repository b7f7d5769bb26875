"""Every engine task is supervised: its death restarts it or stops the engine, as its
policy says, and shows in /readyz and the metrics; an engine that cannot start says
why in one line and exits with the documented code.

The engines are real (on a real mosquitto); a task is killed by making a method it
calls raise, the only stand-in here. The start failures run the real command line.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import pytest
import yaml

from monitor.app import EngineApp, start_engine
from monitor.config import load_config
from monitor.ingest import Ingest
from monitor.notify.service import NotifyService
from monitor.rules.service import RulesService
from monitor.sla.service import SlaService
from monitor.startup import EXIT_CONFIG, EXIT_PORT, EXIT_STORE_LOCKED
from monitor.supervisor import EXIT_TASK_FAILED
from tests.estate import write_estate
from tests.servers import Mosquitto, free_port, wait_port

pytestmark = pytest.mark.integration


class Fault(Exception):
    """The injected failure."""


def failing(original: Callable[..., Any], times: int) -> Callable[..., Any]:
    """``original``, except that its first ``times`` calls raise :class:`Fault`."""
    calls = 0

    def call(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls <= times:
            raise Fault(f"injected fault #{calls}")
        return original(*args, **kwargs)

    return call


def failing_async(original: Callable[..., Coroutine[Any, Any, Any]], times: int
                  ) -> Callable[..., Coroutine[Any, Any, Any]]:
    calls = 0

    async def call(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls <= times:
            raise Fault(f"injected fault #{calls}")
        return await original(*args, **kwargs)

    return call


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Mosquitto]:
    with Mosquitto(tmp_path / "broker") as mosquitto:
        yield mosquitto


async def _start(tmp_path: Path, broker: Mosquitto) -> EngineApp:
    config = load_config(write_estate(tmp_path / "estate", broker.port))
    app = await start_engine(config, "alta", http_port=0)
    app.supervisor.healthy_after = 2.0
    return app


async def _readyz(app: EngineApp) -> tuple[int, dict[str, bool]]:
    async with aiohttp.ClientSession() as session, session.get(app.url + "/readyz") as resp:
        return resp.status, (await resp.json())["checks"]


async def _metric(app: EngineApp, name: str) -> float:
    async with aiohttp.ClientSession() as session, session.get(app.url + "/metrics") as resp:
        text = await resp.text()
    for line in text.splitlines():
        if line.startswith((name + " ", name + "{")):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


async def _until(check: Callable[[], Coroutine[Any, Any, bool]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"not within {timeout} s"
        await asyncio.sleep(0.1)


async def _publish_one(broker: Mosquitto) -> None:
    event = {"v": 1, "ts": time.time(), "src": "fault-probe", "seq": 1, "floor": 1,
             "device": "loppa-sw1", "state": "up"}
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="fault-probe") as client:
        await client.publish("driftsvakt/v1/alta/loppa/loppa-sw1/state/fault-probe",
                             json.dumps(event).encode(), qos=1)


@pytest.mark.parametrize("task", ["ingest", "rules"])
async def test_a_stop_task_that_dies_stops_the_engine_non_zero(
        task: str, tmp_path: Path, broker: Mosquitto, monkeypatch: pytest.MonkeyPatch) -> None:
    if task == "ingest":
        monkeypatch.setattr(Ingest, "process", failing(Ingest.process, 1))
    else:
        monkeypatch.setattr(RulesService, "tick", failing_async(RulesService.tick, 1))
    app = await _start(tmp_path, broker)
    try:
        if task == "ingest":
            await _until(lambda: _true(app.engine.connected), 10)
            await _publish_one(broker)
        code = await asyncio.wait_for(asyncio.shield(app.supervision), 15)
        assert EXIT_TASK_FAILED == code
        assert task == app.supervisor.failed
        status, checks = await _readyz(app)  # HTTP is still up until stop()
        assert 503 == status
        assert checks[f"task:{task}"] is False
        assert 1 == await _metric(app, f'driftsvakt_engine_task_failures_total{{task="{task}"}}')
    finally:
        assert EXIT_TASK_FAILED == await app.stop()


async def _true(value: bool) -> bool:
    return value


@pytest.mark.parametrize("task", ["notify", "sla"])
async def test_a_restart_task_that_dies_restarts_and_shows_until_healthy(
        task: str, tmp_path: Path, broker: Mosquitto, monkeypatch: pytest.MonkeyPatch) -> None:
    if task == "notify":
        monkeypatch.setattr(NotifyService, "deliver", failing_async(NotifyService.deliver, 2))
    else:
        monkeypatch.setattr(SlaService, "update_metrics",
                            failing_async(SlaService.update_metrics, 2))
    app = await _start(tmp_path, broker)
    failures = f'driftsvakt_engine_task_failures_total{{task="{task}"}}'
    try:
        async def died_twice() -> bool:
            return await _metric(app, failures) >= 2

        # dies at once, restarts after 1 s, dies again, restarts after 2 s
        await _until(died_twice, 10)
        status, checks = await _readyz(app)
        assert 503 == status
        assert checks[f"task:{task}"] is False

        async def ready() -> bool:
            return (await _readyz(app))[0] == 200

        await _until(ready, 10)  # restarted, and ran for healthy_after
        assert 2 == await _metric(app, failures)
        assert 1 == await _metric(app, f'driftsvakt_engine_task_up{{task="{task}"}}')
        assert not app.supervision.done()  # the engine never stopped
    finally:
        assert 0 == await app.stop()


# --- refusing to start: the real command line, with its exit codes ------------------------


def _engine(config: Path, *args: str, env: dict[str, str] | None = None
            ) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "monitor.cli", "engine", "--config", str(config),
         "--location", "alta", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **(env or {})})


def _refused(proc: subprocess.Popen[str]) -> tuple[int, str]:
    try:
        _, stderr = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError("the engine did not exit within 20 s") from None
    lines = [line for line in stderr.splitlines() if line.startswith("cannot start:")]
    assert 1 == len(lines), stderr
    return proc.returncode, lines[0]


def test_a_taken_http_port_is_refused_with_73(tmp_path: Path) -> None:
    port = free_port()
    config = write_estate(tmp_path, free_port(), http_port=port)
    with socket.create_server(("127.0.0.1", port)):
        code, line = _refused(_engine(config))
    assert EXIT_PORT == code
    assert f"HTTP port 127.0.0.1:{port} is in use by another process" in line
    assert not (tmp_path / "engine-alta.db").exists()  # refused before the store was touched


def test_a_second_engine_on_the_same_store_is_refused_with_75(tmp_path: Path) -> None:
    with Mosquitto(tmp_path / "broker") as broker:
        port = free_port()
        config = write_estate(tmp_path, broker.port, http_port=port)
        first = _engine(config)
        try:
            wait_port(port, timeout=20)
            code, line = _refused(_engine(config, "--http-port", str(free_port())))
            assert EXIT_STORE_LOCKED == code
            assert f"in use by another engine (pid {first.pid})" in line
            assert first.poll() is None  # the first one carries on
        finally:
            first.send_signal(signal.SIGTERM)
            first.communicate(timeout=20)
        assert 0 == first.returncode
        # the lock went with the first engine: a new one starts
        again = _engine(config)
        try:
            wait_port(port, timeout=20)
        finally:
            again.send_signal(signal.SIGTERM)
            again.communicate(timeout=20)


def _with_users(config: Path, users: list[dict[str, Any]]) -> Path:
    estate = yaml.safe_load(config.read_text(encoding="utf-8"))
    estate["users"] = users
    config.write_text(yaml.safe_dump(estate), encoding="utf-8")
    return config


def test_a_credential_that_cannot_be_read_or_is_empty_is_refused_with_78(
        tmp_path: Path) -> None:
    empty = tmp_path / "empty-token"
    empty.write_text("\n", encoding="utf-8")
    config = _with_users(write_estate(tmp_path, free_port()), [
        {"id": "kari", "role": "admin", "token": {"env": "DV_TEST_TOKEN_UNSET"}},
        {"id": "ola", "role": "operator", "token": {"file": str(empty)}},
        {"id": "per", "role": "operator", "token": {"file": str(tmp_path / "missing")}},
        {"id": "liv", "role": "operator", "token": {"env": "DV_TEST_TOKEN_SET"}},
    ])
    env = {"DV_TEST_TOKEN_SET": "a-real-token"}
    os.environ.pop("DV_TEST_TOKEN_UNSET", None)
    code, line = _refused(_engine(config, env=env))
    assert EXIT_CONFIG == code
    assert "users.kari.token: SecretRef(env='DV_TEST_TOKEN_UNSET'): environment variable " \
        "DV_TEST_TOKEN_UNSET is not set" in line
    assert f"users.ola.token: SecretRef(file='{empty}'): is empty" in line
    assert f"users.per.token: SecretRef(file='{tmp_path / 'missing'}'): No such file" in line
    assert "liv" not in line
    assert not (tmp_path / "engine-alta.db").exists()


# --- a loss stays on record ---------------------------------------------------------------


async def test_skipped_events_stay_counted_across_a_restart(
        tmp_path: Path, broker: Mosquitto) -> None:
    """A source that says it no longer holds seqs 2..36 (floor 37): 35 given up on,
    counted, stored with the batch, and counted again by the next engine on that store,
    so the counter never resets and the Prometheus alert on it cannot miss the loss."""
    metric = "driftsvakt_events_skipped_total"

    async def send(seq: int, floor: int) -> None:
        event = {"v": 1, "ts": time.time(), "src": "lossy", "seq": seq, "floor": floor,
                 "device": "loppa-sw1", "state": "up"}
        async with aiomqtt.Client("127.0.0.1", broker.port, identifier="lossy") as client:
            await client.publish("driftsvakt/v1/alta/loppa/loppa-sw1/state/lossy",
                                 json.dumps(event).encode(), qos=1)

    app = await _start(tmp_path, broker)
    try:
        await _until(lambda: _true(app.engine.connected), 10)
        await send(1, 1)
        await send(37, 37)

        async def counted() -> bool:
            return await _metric(app, metric) == 35

        await _until(counted, 10)
    finally:
        assert 0 == await app.stop()
    again = await _start(tmp_path, broker)
    try:
        assert 35 == await _metric(again, metric)
    finally:
        assert 0 == await again.stop()
