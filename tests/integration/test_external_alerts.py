"""Alerts from Prometheus, through the Alertmanager API the engine serves
(``POST /api/v2/alerts``): a real Prometheus (Debian's) evaluates a rule on a flag it
scrapes and sends its alert to the engine as to an Alertmanager, with a bearer token.
The alert fires in the engine with the device's site and municipality, pages the
on-call person through the escalation chain (an SMS gateway on loopback), and
resolves when Prometheus says so, with the resolved notice to whoever was paged.
An alert its sender stops renewing resolves when its endsAt passes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.parse
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from monitor.app import EngineApp, start_engine
from monitor.config import Config, load_config
from tests.estate import SERVER, write_estate
from tests.integration.test_workbench import _until
from tests.servers import Mosquitto, free_port

pytestmark = pytest.mark.integration

TOKEN = "prometheus-sender-token"
VIEWER = "viewer-token-loppa"


class Sinks:
    """What Prometheus scrapes (a flag, 1 while the backup is failing) and the SMS
    gateway the engine pages through."""

    def __init__(self) -> None:
        self.port = free_port()
        self.flag = 1
        self.sms: list[tuple[str, str]] = []

    async def metrics(self, _: web.Request) -> web.Response:
        return web.Response(text=f"backup_failed {self.flag}\n")

    async def gateway(self, request: web.Request) -> web.Response:
        # the number as sent: a raw "+" is not read as a space here
        to = urllib.parse.unquote(request.raw_path.split("to=")[-1].split("&")[0])
        self.sms.append((to, (await request.read()).decode()))
        return web.Response(text="ok")


@pytest.fixture
async def sinks() -> AsyncIterator[Sinks]:
    found = Sinks()
    app = web.Application()
    app.router.add_get("/metrics", found.metrics)
    app.router.add_post("/sms", found.gateway)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", found.port).start()
    yield found
    await runner.cleanup()


def _estate(tmp: Path, broker_port: int, sinks: Sinks) -> Path:
    path = write_estate(tmp / "estate", broker_port, free_port())
    estate = yaml.safe_load(path.read_text(encoding="utf-8"))
    estate["users"] = [
        {"id": "prometheus", "role": "operator", "token": {"env": "EXT_TOKEN"}},
        {"id": "per", "role": "viewer", "municipality": "loppa",
         "token": {"env": "EXT_VIEWER"}}]
    estate["notifications"] = {
        "people": [{"id": "ola", "name": "Ola", "phone": "+4790000001"}],
        "receivers": [{"id": "sms", "language": "en", "sms": {
            "url": f"http://127.0.0.1:{sinks.port}/sms?to={{{{ to }}}}",
            "body": "{{ message }}"}}],
        "escalations": [{"id": "vakt", "steps": [
            {"after": "0s", "people": ["ola"], "via": ["sms"]}]}],
        "route": {"escalation": "vakt", "receiver": "sms", "group_wait": "0s",
                  "group_interval": "1s"}}
    path.write_text(yaml.safe_dump(estate, allow_unicode=True), encoding="utf-8")
    return path


def _prometheus(tmp: Path, engine_port: int, sinks: Sinks) -> tuple[subprocess.Popen[bytes],
                                                                    int]:
    binary = shutil.which("prometheus")
    assert binary is not None, "prometheus is not installed (the test command installs it)"
    (tmp / "token").write_text(TOKEN, encoding="utf-8")
    (tmp / "rules.yml").write_text(yaml.safe_dump({"groups": [{
        "name": "backup", "interval": "1s", "rules": [{
            "alert": "BackupFailed", "expr": "backup_failed == 1",
            "labels": {"severity": "critical", "device": SERVER},
            "annotations": {"summary": "Backup of {{ $labels.job }} failed"}}]}]}),
        encoding="utf-8")
    (tmp / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp / "rules.yml")],
        "scrape_configs": [{"job_name": "backup", "static_configs": [
            {"targets": [f"127.0.0.1:{sinks.port}"]}]}],
        "alerting": {"alertmanagers": [{
            "api_version": "v2", "static_configs": [{"targets": [f"127.0.0.1:{engine_port}"]}],
            "authorization": {"type": "Bearer", "credentials_file": str(tmp / "token")}}]},
    }), encoding="utf-8")
    port = free_port()
    log = open(tmp / "prometheus.log", "wb")  # noqa: SIM115 - the child owns it
    proc = subprocess.Popen(
        [binary, f"--config.file={tmp / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}",
         "--rules.alert.resend-delay=1s"], stdout=log, stderr=log)
    return proc, port


async def _alerts(session: aiohttp.ClientSession, app: EngineApp, state: str = ""
                  ) -> list[dict[str, Any]]:
    async with session.get(app.url + "/api/v1/alerts" + (f"?state={state}" if state else ""),
                           headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
        return list((await resp.json())["alerts"])


@pytest.fixture
async def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sinks: Sinks
                 ) -> AsyncIterator[tuple[EngineApp, Config]]:
    monkeypatch.setenv("EXT_TOKEN", TOKEN)
    monkeypatch.setenv("EXT_VIEWER", VIEWER)
    with Mosquitto(tmp_path / "broker") as broker:
        config = load_config(_estate(tmp_path, broker.port, sinks))
        app = await start_engine(config, "alta")
        try:
            yield app, config
        finally:
            await app.stop()


async def test_a_prometheus_alert_pages_and_resolves(
        tmp_path: Path, engine: tuple[EngineApp, Config], sinks: Sinks) -> None:
    app, config = engine
    prometheus, _ = _prometheus(tmp_path, config.engine.http_port, sinks)
    try:
        async with aiohttp.ClientSession() as session:
            async def backup_alert() -> list[dict[str, Any]]:
                return [a for a in await _alerts(session, app)
                        if a["alertname"] == "BackupFailed"]

            (alert,) = await _until(backup_alert, "Prometheus's alert in the engine", 60)
            assert (alert["state"], alert["severity"], alert["external"]) == (
                "firing", "critical", True)
            assert {k: alert["labels"][k] for k in ("device", "site", "municipality",
                                                    "location")} == {
                "device": SERVER, "site": "oksfjord", "municipality": "loppa",
                "location": "alta"}
            assert alert["annotations"]["summary"] == "Backup of backup failed"
            # paged through the escalation chain
            await _until(lambda: _async(sinks.sms), "the page to the on-call person", 20)
            to, text = sinks.sms[0]
            assert to == "+4790000001"
            assert "FIRING CRITICAL: Backup of backup failed" in text
            # the municipality's viewer sees it (the device is theirs)
            async with session.get(app.url + "/api/v1/alerts", headers={
                    "Authorization": f"Bearer {VIEWER}"}) as resp:
                seen = [a["alertname"] for a in (await resp.json())["alerts"]]
            assert "BackupFailed" in seen

            sinks.flag = 0  # the backup ran: Prometheus sends the alert resolved

            async def resolved() -> list[dict[str, Any]]:
                return [a for a in await _alerts(session, app, "resolved")
                        if a["alertname"] == "BackupFailed"]

            await _until(resolved, "resolved by Prometheus", 60)
            async with session.get(app.url + f"/api/v1/alerts/{alert['id']}",
                                   headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
                log = (await resp.json())["log"]
            assert [(e["state"], e["detail"]) for e in log][-1] == (
                "resolved", "resolved by its sender")
            await _until(lambda: _async(len(sinks.sms) >= 2), "the resolved notice", 20)
            assert "RESOLVED" in sinks.sms[1][1]
            assert len(sinks.sms) == 2  # one page, one resolved notice
    finally:
        os.kill(prometheus.pid, signal.SIGTERM)
        prometheus.wait(30)


async def _async(value: Any) -> Any:
    return value


async def test_posted_alerts_refused_resolved_and_expired(
        engine: tuple[EngineApp, Config]) -> None:
    """Who may post, what is refused (with why), and an alert not renewed expires."""
    app, _ = engine
    url = app.url + "/api/v2/alerts"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    now = datetime.now(UTC)
    soon = {"labels": {"alertname": "ExporterSilent", "job": "node", "severity": "page"},
            "annotations": {"summary": "node exporter silent"},
            "startsAt": now.isoformat(), "endsAt": (now + timedelta(seconds=3)).isoformat()}
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json=[soon]) as resp:
            assert resp.status == 401
        async with session.post(url, json=[soon], headers={
                "Authorization": f"Bearer {VIEWER}"}) as resp:
            assert resp.status == 404  # a viewer learns nothing
        for bad, why in (([{"labels": {"job": "x"}}], "alertname"),
                         ([{"labels": {"alertname": "X", "bad-name": "1"}}],
                          "bad-name"),
                         ({"labels": {}}, "Expected `array`"),
                         ([{"labels": {"alertname": "X"},
                            "startsAt": "2026-12-01T10:00:00"}], "time zone")):
            async with session.post(url, json=bad, headers=auth) as resp:
                assert (resp.status, why in await resp.text()) == (400, True), bad
        started = time.monotonic()
        async with session.post(url, json=[soon], headers=auth) as resp:
            assert resp.status == 200
        (alert,) = [a for a in await _alerts(session, app)
                    if a["alertname"] == "ExporterSilent"]
        # "page" is critical; no device: only the centre's people see it
        assert (alert["severity"], alert["state"]) == ("critical", "firing")

        async def expired() -> list[dict[str, Any]]:
            return [a for a in await _alerts(session, app, "resolved")
                    if a["alertname"] == "ExporterSilent"]

        await _until(expired, "expired after its endsAt", 20)
        assert time.monotonic() - started >= 2.0
        async with session.get(app.url + f"/api/v1/alerts/{alert['id']}",
                               headers=auth) as resp:
            log = (await resp.json())["log"]
        assert log[-1]["detail"] == "expired: not renewed by its sender"
        async with session.get(app.url + "/metrics") as resp:
            text = await resp.text()
        assert ('driftsvakt_external_alerts_received_total{sender="prometheus"} 1.0'
                in text)
