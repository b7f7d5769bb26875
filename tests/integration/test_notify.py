"""Notifications against real servers started by the tests.

A real SMTP server (aiosmtpd, STARTTLS with a certificate made here, AUTH required)
and real HTTP servers (aiohttp) as the webhook, SMS-gateway and Alertmanager
receivers. Alertmanager itself cannot run here; its API v2 endpoint is served by the
test and checked for the body Alertmanager documents. Failure tests are timelines:
an alert at t, the delivery wanted between a and b, and the total count checked, so
that a duplicate fails the test.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email
import email.policy
import json
import logging
import shutil
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
import trustme
import yaml
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from prometheus_client import CollectorRegistry, generate_latest

from monitor.config import load_config
from monitor.events import ComponentStatus, DeviceTopic, StateEvent
from monitor.logging import configure_logging
from monitor.notify.links import ack_url
from monitor.notify.service import NotifyService
from monitor.rules.service import RulesService
from monitor.state import State
from monitor.store.db import Store
from monitor.web.notify import NotifyRoutes
from tests.estate import DEVICES, write_estate
from tests.servers import free_port, wait_port

pytestmark = pytest.mark.integration

RULES = """
rules:
  - name: SwitchDown
    kind: state
    severity: critical
    select: {class: [switch]}
    states: [down]
    annotations:
      summary: "{{ device_name }} is down"
      summary_nb: "{{ device_name }} er nede"
"""


@dataclass
class Http:
    """An HTTP receiver: answers as ``behave`` says, records what it was sent."""

    port: int
    received: list[tuple[float, str, Any]] = field(default_factory=list)
    behave: Callable[[float, str], tuple[int, dict[str, str]]] = lambda _t, _p: (200, {})

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        status, headers = self.behave(time.monotonic(), request.path)
        if status < 300:
            try:
                payload: Any = json.loads(body) if body else None
            except ValueError:
                payload = body.decode()
            self.received.append((time.monotonic(), request.path_qs, payload))
        return web.Response(status=status, headers=headers, text="{}")


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[float, str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((time.monotonic(), envelope.mail_from, envelope.rcpt_tos,
                              envelope.content))
        return "250 OK"


def _authenticator(password: str) -> Callable[..., AuthResult]:
    def check(server: Any, session: Any, envelope: Any, mechanism: str,
              data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.login == b"driftsvakt" and \
            data.password == password.encode()
        return AuthResult(success=ok, handled=False)
    return check


class Rig:
    """Store, rules and notifications of one engine, in this process."""

    def __init__(self, tmp: Path, notifications: dict[str, Any], ca: trustme.CA) -> None:
        self.tmp = tmp
        self.ca = ca
        config = write_estate(tmp, free_port())
        estate = yaml.safe_load(config.read_text(encoding="utf-8"))
        (tmp / "rules.yaml").write_text(RULES, encoding="utf-8")
        estate["engine"]["rules"] = str(tmp / "rules.yaml")
        estate["notifications"] = notifications
        config.write_text(yaml.safe_dump(estate, allow_unicode=True), encoding="utf-8")
        self.config = load_config(config)
        self.state = State()
        self.seq = 0

    async def start(self, backoff_cap: float = 5.0, location: str | None = None) -> None:
        self.store = await Store.open(self.tmp / "engine.db")
        self.registry = CollectorRegistry()
        self.rules = await RulesService.start(self.config, self.store, self.state,
                                              self.registry)
        self.notify = await NotifyService.start(self.config, self.store, self.rules,
                                                self.registry, location, self.state)
        self.rules.listeners.append(self.notify.on_alerts)  # as monitor.app wires it
        self.notify.backoff_cap = backoff_cap
        self.stop_event = asyncio.Event()
        self.task = asyncio.create_task(self.notify.run(self.stop_event))

    async def stop(self) -> None:
        self.stop_event.set()
        await self.task
        await self.store.close()

    async def down(self, device: str, state: str = "down", location: str = "alta") -> float:
        self.seq += 1
        event = StateEvent(v=1, ts=time.time(), src="test", seq=self.seq, device=device,
                           state=state)  # type: ignore[arg-type]
        topic = DeviceTopic(location, "loppa", device, "state")
        self.state.apply(topic, event)
        self.rules.on_event(topic, event, self.state)
        await self.store.commit_alerts(self.rules.changes())
        return time.monotonic()


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def http() -> AsyncIterator[Http]:
    receiver = Http(free_port())
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", receiver.port).start()
    yield receiver
    await runner.cleanup()


def _smtp(ca: trustme.CA, port: int, mailbox: Mailbox, password: str) -> Controller:
    cert = ca.issue_cert("127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    controller = Controller(mailbox, hostname="127.0.0.1", port=port, tls_context=context,
                            require_starttls=True, auth_required=True,
                            authenticator=_authenticator(password))
    controller.start()
    return controller


def _ca_file(tmp: Path, ca: trustme.CA) -> str:
    path = tmp / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


async def _wait(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s")
        await asyncio.sleep(0.1)


async def test_every_receiver_gets_the_right_message(tmp_path: Path, ca: trustme.CA,
                                                     http: Http,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    smtp_port = free_port()
    mailbox = Mailbox()
    controller = _smtp(ca, smtp_port, mailbox, "smtp-passord")
    monkeypatch.setenv("SMTP_PASSWORD", "smtp-passord")
    monkeypatch.setenv("TEAMS_URL", f"http://127.0.0.1:{http.port}/teams/token-abc")
    monkeypatch.setenv("SLACK_URL", f"http://127.0.0.1:{http.port}/slack")
    monkeypatch.setenv("SMS_KEY", "sms-key")
    rig = Rig(tmp_path, {
        "external_url": "https://drift.example.no",
        "receivers": [
            {"id": "epost", "language": "nb", "email": {
                "smarthost": f"127.0.0.1:{smtp_port}", "from": "driftsvakt@example.no",
                "to": ["drift@example.no", "vakt@example.no"], "starttls": True,
                "username": "driftsvakt", "password": {"env": "SMTP_PASSWORD"},
                "ca_file": _ca_file(tmp_path, ca)}},
            {"id": "teams", "webhook": {"url": {"env": "TEAMS_URL"}, "format": "teams"}},
            {"id": "slack", "language": "en",
             "webhook": {"url": {"env": "SLACK_URL"}, "format": "slack"}},
            {"id": "sms", "sms": {
                "url": f"http://127.0.0.1:{http.port}/sms?to={{{{ to }}}}",
                "method": "POST", "headers": {"Authorization": "Bearer {{ secret }}"},
                "body": '{"text": {{ message | tojson }}}', "secret": {"env": "SMS_KEY"},
                "to": ["+4799999999"]}},
            {"id": "am", "alertmanager": {"urls": [f"http://127.0.0.1:{http.port}"]}},
        ],
        "route": {"receiver": "epost", "group_by": ["site"], "group_wait": "0s",
                  "group_interval": "1s", "routes": [
            {"receiver": "teams", "continue": True},
            {"receiver": "slack", "continue": True},
            {"receiver": "sms", "continue": True},
            {"receiver": "am", "continue": True},
            {"receiver": "epost"},
        ]},
    }, ca)
    await rig.start()
    try:
        await rig.down(DEVICES[0])
        await _wait(lambda: len(mailbox.messages) == 1 and len(http.received) == 4, 15)
        _, sender, recipients, content = mailbox.messages[0]
        mail = email.message_from_bytes(content, policy=email.policy.default)
        assert ("driftsvakt@example.no", ["drift@example.no", "vakt@example.no"]) == (
            sender, recipients)
        assert "[ALARM:1] SwitchDown – Øksfjord, Loppa kommune" == mail["Subject"]
        text = mail.get_content()
        assert "ALARM (kritisk): loppa-sw1 er nede" in text  # a Norwegian receiver
        assert "Enhet: loppa-sw1 (loppa-sw1), Øksfjord, Loppa kommune" in text
        assert "1 enhet bak denne er utilgjengelig" in text  # the server behind the switch
        assert "Detaljer: https://drift.example.no/alerts/" in text
        by_path = {path.split("?")[0]: body for _, path, body in http.received}
        card = by_path["/teams/token-abc"]["attachments"][0]["content"]
        assert "AdaptiveCard" == card["type"]
        assert card["body"][0]["text"].startswith("[ALARM:1] SwitchDown")
        assert by_path["/slack"]["text"].startswith("**[FIRING:1] SwitchDown")
        assert "FIRING (critical): loppa-sw1 is down" in by_path["/slack"]["text"]
        assert "ALARM KRITISK: loppa-sw1 er nede" in by_path["/sms"]["text"]
        (sms_path,) = [p for _, p, _ in http.received if p.startswith("/sms")]
        assert "/sms?to=%2B4799999999" == sms_path or "/sms?to=+4799999999" == sms_path
        (am_alert,) = by_path["/api/v2/alerts"]
        assert ("SwitchDown", "loppa-sw1") == (am_alert["labels"]["alertname"],
                                               am_alert["labels"]["device"])
        # endsAt four resends (4 x 1 min) ahead: Alertmanager keeps it firing while resent
        ends = datetime.fromisoformat(am_alert["endsAt"]).timestamp()
        assert 235 < ends - time.time() <= 240
        # resolved: one more message each, saying so
        await rig.down(DEVICES[0], "up")
        await _wait(lambda: len(mailbox.messages) == 2 and len(http.received) == 8, 15)
        resolved_mail = email.message_from_bytes(mailbox.messages[1][3],
                                                 policy=email.policy.default)
        assert resolved_mail["Subject"].startswith("[OK] SwitchDown")
        # it says what was wrong and that it is over, not "… is down … er løst"
        resolved_text = resolved_mail.get_content()
        assert "LØST " in resolved_text
        assert ": SwitchDown på loppa-sw1 (Øksfjord). Det var: loppa-sw1 er nede" in (
            resolved_text)
        resolved_am = [b for _, p, b in http.received if p == "/api/v2/alerts"][1][0]
        assert "endsAt" in resolved_am
    finally:
        await rig.stop()
        controller.stop()


async def test_webhook_500_for_60_s_is_delivered_once_after(
        tmp_path: Path, ca: trustme.CA, http: Http, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_URL", f"http://127.0.0.1:{http.port}/hook")
    rig = Rig(tmp_path, {
        "receivers": [{"id": "hook", "webhook": {"url": {"env": "HOOK_URL"}}}],
        "route": {"receiver": "hook", "group_wait": "0s"}}, ca)
    outage_until = time.monotonic() + 60
    http.behave = lambda t, _p: (500, {}) if t < outage_until else (200, {})
    await rig.start(backoff_cap=8.0)
    try:
        pushed = await rig.down(DEVICES[1])
        await _wait(lambda: len(http.received) >= 1, 90)
        await asyncio.sleep(3)  # would a duplicate follow?
        assert 1 == len(http.received)
        delay = http.received[0][0] - pushed
        assert 60 <= delay < 60 + 8 + 2, delay
    finally:
        await rig.stop()


async def test_smtp_down_queues_and_delivers_after(tmp_path: Path, ca: trustme.CA,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv("SMTP_PASSWORD", "pw")
    rig = Rig(tmp_path, {
        "receivers": [{"id": "epost", "email": {
            "smarthost": f"127.0.0.1:{port}", "from": "d@example.no", "to": ["v@example.no"],
            "username": "driftsvakt", "password": {"env": "SMTP_PASSWORD"},
            "ca_file": _ca_file(tmp_path, ca)}}],
        "route": {"receiver": "epost", "group_wait": "0s"}}, ca)
    await rig.start(backoff_cap=2.0)
    mailbox = Mailbox()
    controller = None
    try:
        await rig.down(DEVICES[2])
        await asyncio.sleep(4)
        counts = await rig.store.notification_counts()
        assert {"queued": 1} == counts  # kept, with attempts behind it
        controller = _smtp(ca, port, mailbox, "pw")
        started = time.monotonic()
        await _wait(lambda: len(mailbox.messages) == 1, 10)
        assert mailbox.messages[0][0] - started < 3
        await asyncio.sleep(2.5)
        assert 1 == len(mailbox.messages)
        assert {"sent": 1} == await rig.store.notification_counts()
    finally:
        await rig.stop()
        if controller is not None:
            controller.stop()


async def test_retry_after_fallback_rate_limit_and_no_resend_on_restart(
        tmp_path: Path, ca: trustme.CA, http: Http, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRIMARY", f"http://127.0.0.1:{http.port}/primary")
    monkeypatch.setenv("BACKUP", f"http://127.0.0.1:{http.port}/backup")
    monkeypatch.setenv("COSTLY", f"http://127.0.0.1:{http.port}/costly")
    notifications = {
        "receivers": [
            {"id": "primary", "webhook": {"url": {"env": "PRIMARY"}}, "fallback": "backup",
             "fallback_after": 3},
            {"id": "backup", "webhook": {"url": {"env": "BACKUP"}}},
            {"id": "costly", "webhook": {"url": {"env": "COSTLY"}}, "rate_limit_per_hour": 2},
        ],
        "route": {"receiver": "primary", "group_by": ["device"], "group_wait": "0s",
                  "routes": [{"matchers": [f'device="{DEVICES[5]}"'], "receiver": "primary"},
                             {"receiver": "costly"}]}}
    started = time.monotonic()
    http.behave = lambda t, _p: ((429, {"Retry-After": "3"}) if t - started < 1.5
                                 else (200, {}))
    rig = Rig(tmp_path, notifications, ca)
    await rig.start(backoff_cap=1.0)
    try:
        pushed = await rig.down(DEVICES[6])  # to costly: 429 Retry-After 3, then 200
        await _wait(lambda: len(http.received) == 1, 10)
        assert 3 <= http.received[0][0] - pushed < 5
        # primary keeps failing: after three attempts, the backup receiver takes it
        primary_calls: list[float] = []

        def primary_down(t: float, path: str) -> tuple[int, dict[str, str]]:
            if path != "/primary":
                return (200, {})
            primary_calls.append(t)
            return (503, {})
        http.behave = primary_down
        await rig.down(DEVICES[5])
        await _wait(lambda: any(p == "/backup" for _, p, _ in http.received), 15)
        assert 3 == len(primary_calls)
        # the rate limit, 2 an hour: one more message to costly goes out, two wait
        for device in DEVICES[7:10]:
            await rig.down(device)
        await asyncio.sleep(4)
        costly = [p for _, p, _ in http.received if p == "/costly"]
        assert 2 == len(costly)
        counts = await rig.store.notification_counts()
        assert 2 == counts.get("queued")  # they wait for the hour to pass
    finally:
        await rig.stop()
    before = len(http.received)
    # a restart on the same store: nothing already sent goes out again
    again = Rig(tmp_path, notifications, ca)
    again.state = rig.state
    await again.start()
    try:
        await asyncio.sleep(3)
        assert before == len(http.received)
    finally:
        await again.stop()


async def test_a_canary_secret_never_shows(tmp_path: Path, ca: trustme.CA, http: Http,
                                           capfd: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    canary = "CANARY-5e1f0c9b"
    for name in ("SMTP_PASSWORD", "SMS_KEY", "ACK_SECRET", "TOKEN"):
        monkeypatch.setenv(name, canary)
    monkeypatch.setenv("HOOK_URL", f"http://127.0.0.1:{http.port}/hook/{canary}")
    smtp_port = free_port()
    controller = _smtp(ca, smtp_port, Mailbox(), "another-password")  # refuses the canary
    http.behave = lambda t, _p: (500, {})
    saved = structlog.get_config()
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    configure_logging("debug", json=True)
    root.setLevel(logging.DEBUG)  # the libraries' debug output too
    rig = Rig(tmp_path, {
        "ack_secret": {"env": "ACK_SECRET"},
        "receivers": [
            {"id": "epost", "email": {
                "smarthost": f"127.0.0.1:{smtp_port}", "from": "d@example.no",
                "to": ["v@example.no"], "username": "driftsvakt",
                "password": {"env": "SMTP_PASSWORD"}, "ca_file": _ca_file(tmp_path, ca)}},
            {"id": "hook", "webhook": {"url": {"env": "HOOK_URL"}}},
            {"id": "sms", "sms": {"url": f"http://127.0.0.1:{http.port}/sms?key={{{{ secret }}}}",
                                  "secret": {"env": "SMS_KEY"}, "to": ["+4791234567"]}},
        ],
        "route": {"receiver": "epost", "group_wait": "0s", "routes": [
            {"receiver": "hook", "continue": True}, {"receiver": "sms", "continue": True},
            {"receiver": "epost"}]}}, ca)
    await rig.start(backoff_cap=1.0)
    try:
        await rig.down(DEVICES[3])
        await asyncio.sleep(4)
        rows = await rig.store.notifications()
        assert {"failed", "queued"} >= {state for _, state, _, _, _ in rows}
        details = " ".join(str(d) for *_, d in rows)
        metrics = generate_latest(rig.registry).decode()
        alerts = json.dumps([a.as_json() for a in rig.rules.engine.alerts.values()])
        config_text = repr(rig.config)
    finally:
        await rig.stop()
        controller.stop()
        structlog.configure(**saved)
        root.handlers[:], root.level = saved_handlers, saved_level
    logs = capfd.readouterr()
    assert "notification_failed" in logs.err  # the failures were logged ...
    for where, text in (("logs", logs.out + logs.err), ("store", details),
                        ("metrics", metrics), ("alerts", alerts), ("config", config_text)):
        assert canary not in text, where  # ... and the secret never was


async def test_each_location_notifies_its_own_until_the_peer_engine_is_away(
        tmp_path: Path, ca: trustme.CA, http: Http, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hot standby: the alta engine notifies for alta; for hammerfest only once the
    hammerfest engine has been offline for 15 s."""
    monkeypatch.setenv("HOOK_URL", f"http://127.0.0.1:{http.port}/hook")
    rig = Rig(tmp_path, {"receivers": [{"id": "hook", "webhook": {"url": {"env": "HOOK_URL"}}}],
                         "route": {"receiver": "hook", "group_wait": "0s",
                                   "group_by": ["device"]}}, ca)
    site = rig.config.sites["oksfjord"]
    rig.config.sites["hammerfest-site"] = dataclasses.replace(
        site, id="hammerfest-site", location="hammerfest")
    now = time.time()
    rig.state.apply_component("hammerfest", "engine", "hammerfest", ComponentStatus(
        status="online", ts=now - 60, component="engine", instance="hammerfest"))
    await rig.start(location="alta")
    try:
        await rig.down(DEVICES[0])
        await _wait(lambda: len(http.received) == 1, 10)
        alert = next(iter(rig.rules.engine.alerts.values()))
        # an alert of the other location: its own engine is up, so not ours to send
        other = dataclasses.replace(alert, fingerprint="other", labels={
            **alert.labels, "location": "hammerfest", "device": DEVICES[1]})
        rig.rules.engine.alerts["other"] = other
        rig.notify.on_alerts([other])
        await asyncio.sleep(2)
        assert 1 == len(http.received)
        rig.state.apply_component("hammerfest", "engine", "hammerfest", ComponentStatus(
            status="offline", ts=time.time() - 14, component="engine", instance="hammerfest"))
        await asyncio.sleep(2.5)  # 16 s offline: taken over
        await _wait(lambda: len(http.received) == 2, 5)
        assert DEVICES[1] == http.received[1][2]["alerts"][0]["device"]
    finally:
        await rig.stop()


def _escalating(http: Http, external_url: str) -> dict[str, Any]:
    return {
        "external_url": external_url,
        "ack_secret": {"env": "ACK_SECRET"},
        "people": [{"id": "ola", "name": "Ola", "phone": "+4790000001"},
                   {"id": "kari", "name": "Kari", "phone": "+4790000002"}],
        "receivers": [{"id": "sms", "language": "en", "sms": {
            "url": f"http://127.0.0.1:{http.port}/sms?to={{{{ to }}}}",
            "body": "{{ message }}"}}],
        "escalations": [{"id": "vakt", "steps": [
            {"after": "0s", "people": ["ola"], "via": ["sms"]},
            {"after": "4s", "people": ["kari"], "via": ["sms"]}]}],
        "route": {"escalation": "vakt", "receiver": "sms", "group_wait": "0s",
                  "routes": [{"escalation": "vakt"}]},
    }


def _sms_to(http: Http) -> list[str]:
    return [path.split("to=")[1] for _, path, _ in http.received if path.startswith("/sms")]


async def test_a_signed_link_acknowledges_and_stops_the_chain(
        tmp_path: Path, ca: trustme.CA, http: Http, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACK_SECRET", "a-long-random-secret")
    port = free_port()
    settings = _escalating(http, f"http://127.0.0.1:{port}")
    settings["route"]["group_interval"] = "1s"  # a second incident is paged at once
    rig = Rig(tmp_path, settings, ca)
    await rig.start()
    app = web.Application()
    links = NotifyRoutes(rig.notify)  # the engine's ack-link routes (monitor.web.routes)
    app.router.add_get("/ack/{alert}", links.ack_form)
    app.router.add_post("/ack/{alert}", links.ack)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await rig.down(DEVICES[0])
        await _wait(lambda: len(http.received) == 1, 10)
        assert ["%2B4790000001"] == _sms_to(http) or ["+4790000001"] == _sms_to(http)
        text = http.received[0][2]
        link = text.split("Ack: ")[1].split()[0]
        assert link.startswith(f"http://127.0.0.1:{port}/ack/")
        async with aiohttp.ClientSession() as session:
            async with session.get(link) as resp:  # opening it acknowledges nothing
                assert (200, "Kvitter") == (resp.status, "Kvitter" if "Kvitter" in
                                            await resp.text() else "")
            assert rig.rules.engine.active()[0].ack_by is None
            async with session.post(link.replace("sig=", "sig=0")) as resp:
                assert 403 == resp.status
            async with session.post(link) as resp:
                assert 200 == resp.status
        assert "ola (link)" == rig.rules.engine.active()[0].ack_by
        await asyncio.sleep(6)  # past the second step's 4 s: kari is not paged
        assert 1 == len(http.received)
        audit = await rig.store.audit_log()
        assert [("ola (link)", "acknowledge")] == [(a[1], a[2]) for a in audit]
        async with aiohttp.ClientSession() as session, session.post(link) as resp:
            # once only
            assert (200, "Allerede kvittert av ola (link)") == (
                resp.status, (await resp.text()).split(" / ")[0])
        assert 1 == len(await rig.store.audit_log())

        # the switch comes back, and later fails again: a new incident of the same
        # alert. The old link must not stop this one's escalation.
        def pages() -> list[tuple[str, str]]:
            return [(to, body) for (_, path, body), to in zip(http.received, _sms_to(http),
                                                              strict=True)
                    if "Ack: " in body]

        await rig.down(DEVICES[0], "up")
        await _wait(lambda: not rig.rules.engine.active(), 10)
        await asyncio.sleep(1.1)
        await rig.down(DEVICES[0])
        await _wait(lambda: len(pages()) == 2, 10)  # ola: paged again
        new_link = pages()[1][1].split("Ack: ")[1].split()[0]
        assert new_link != link
        async with aiohttp.ClientSession() as session, session.post(link) as resp:
            assert 410 == resp.status
        assert rig.rules.engine.active()[0].ack_by is None
        await _wait(lambda: len(pages()) == 3, 10)  # kari paged: it escalated
        assert pages()[2][0] in ("%2B4790000002", "+4790000002")

        # a link sent to a receiver (a shared mailbox), not a person: who acknowledges
        # must say their name; the audit keeps both the person and where the link went
        alert = rig.rules.engine.active()[0]
        assert rig.notify.ack_secret is not None
        shared = ack_url(f"http://127.0.0.1:{port}", rig.notify.ack_secret,
                         alert.fingerprint, alert.active_since, "drift-epost", 3600)
        async with aiohttp.ClientSession() as session:
            async with session.get(shared) as resp:
                assert 'name=name required' in await resp.text()
            async with session.post(shared, data={"comment": "ser på det"}) as resp:
                assert 400 == resp.status
            async with session.post(shared, data={"name": "Kari\r\nNordmann",
                                                  "comment": "ser på det"}) as resp:
                assert 200 == resp.status
        acked = rig.rules.engine.active()[0]
        assert ("Kari Nordmann (link to drift-epost)", "ser på det") == (acked.ack_by,
                                                                          acked.ack_comment)
    finally:
        await runner.cleanup()
        await rig.stop()


async def test_an_escalation_continues_across_a_restart(
        tmp_path: Path, ca: trustme.CA, http: Http, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACK_SECRET", "a-long-random-secret")
    settings = _escalating(http, "http://127.0.0.1:9")
    rig = Rig(tmp_path, settings, ca)
    await rig.start()
    try:
        await rig.down(DEVICES[0])
        await _wait(lambda: len(http.received) == 1, 10)
    finally:
        await rig.stop()
    again = Rig(tmp_path, settings, ca)
    again.state = rig.state
    await again.start()
    try:
        await _wait(lambda: len(http.received) == 2, 10)
        assert 2 == len(set(_sms_to(http)))  # ola, then kari: once each
        await asyncio.sleep(2)
        assert 2 == len(http.received)
    finally:
        await again.stop()


class Alertmanager:
    """A real Alertmanager (Debian's prometheus-alertmanager) on 127.0.0.1, alone."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
        if binary is None:
            raise RuntimeError("prometheus-alertmanager is not installed (the test "
                               "command installs it)")
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "alertmanager.yml"
        # resolve_timeout is what bit before: alerts without endsAt ended after it
        config.write_text("global: {resolve_timeout: 5s}\n"
                          "route: {receiver: nobody}\nreceivers: [{name: nobody}]\n",
                          encoding="utf-8")
        self.port = free_port()
        self.proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address="],
            stdout=subprocess.DEVNULL, stderr=open(workdir / "am.log", "wb"))  # noqa: SIM115
        wait_port(self.port, timeout=30)

    async def alerts(self) -> list[dict[str, Any]]:
        async with aiohttp.ClientSession() as session, session.get(
                f"http://127.0.0.1:{self.port}/api/v2/alerts") as resp:
            return list(await resp.json())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


async def test_a_real_alertmanager_keeps_a_firing_alert_firing_and_ends_it_on_resolve(
        tmp_path: Path, ca: trustme.CA) -> None:
    """Alertmanager 0.25 with resolve_timeout 5 s: an alert still down 20 s later is
    still active there (its endsAt moved on with each resend); resolved, it ends."""
    am = Alertmanager(tmp_path / "am")
    rig = Rig(tmp_path, {
        "receivers": [{"id": "am", "alertmanager": {
            "urls": [f"http://127.0.0.1:{am.port}"], "resend": "2s"}}],
        "route": {"receiver": "am", "group_wait": "0s", "group_interval": "1s"}}, ca)
    await rig.start()
    try:
        await rig.down(DEVICES[0])

        async def active() -> list[dict[str, Any]]:
            return [a for a in await am.alerts() if a["status"]["state"] == "active"]

        deadline = time.monotonic() + 15
        while not await active():
            assert time.monotonic() < deadline, "the alert did not reach Alertmanager"
            await asyncio.sleep(0.2)
        first = datetime.fromisoformat((await active())[0]["endsAt"]).timestamp()
        await asyncio.sleep(20)  # four times resolve_timeout, twice the first endsAt
        (still,) = await active()
        assert ("SwitchDown", DEVICES[0]) == (still["labels"]["alertname"],
                                              still["labels"]["device"])
        assert datetime.fromisoformat(still["endsAt"]).timestamp() > first + 15
        await rig.down(DEVICES[0], "up")
        deadline = time.monotonic() + 15
        while await active():
            assert time.monotonic() < deadline, "the resolved alert stayed active"
            await asyncio.sleep(0.2)
    finally:
        await rig.stop()
        am.stop()
