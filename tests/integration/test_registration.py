"""500 host agents register themselves into a running engine, with real parts: a
mosquitto holding the password file and ACL `driftsvakt broker-auth` wrote (each agent
logs in as its municipality's enrolment identity with the token's secret), the engine
as its own process, and the agents — the real agent's registration and cycle, each
with its own outbox and MQTT connection — in a process of their own
(tests.storm_agents).

The estate's placement rules put them by subnet and AD OU; Loppa accepts agents its
rules place, Hasvik approves each. What the test expects of each agent is worked out
here from the rules by hand, per group of agents. Then: a registration forged with a
guessed token is refused and counted; an operator accepts a held agent and rejects
another, whose events are refused from then on; a rule with no selector (it would
fire for any device) fires for accepted agents and for none held.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from monitor.app import start_engine
from monitor.config import load_config
from monitor.enrolment import proof
from tests.integration.test_mosquitto_deploy import Client
from tests.servers import Mosquitto, free_port, wait_port, wait_ready

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
AGENTS = 500
SECRETS = {"loppa": "loppa-enrolment-secret-7f3a", "hasvik": "hasvik-enrolment-secret-91c2"}
OPERATOR, ADMIN = "ola-operator-token", "kari-admin-token"
SKOLER = "OU=Skoler,OU=Hasvik,DC=kommune,DC=no"
ALTA = "OU=Alta,DC=kommune,DC=no"
RULES = """
rules:
  - name: AgentReporting
    kind: threshold
    severity: info
    select: {metric: cpu_usage_ratio}
    value: 0.01
    clear: 0.005
"""


def _agent(i: int) -> tuple[dict[str, Any], tuple[str, str, str | None, str, str]]:
    """Agent ``i``'s plan entry, and what the rules make of it, by hand:
    (status, municipality, site, class, reason)."""
    m = "hasvik" if 200 <= i < 350 else "loppa"
    prefix = "hv" if m == "hasvik" else "lop"
    kind = "srv" if i % 10 == 0 else "pc"
    device = f"{prefix}-{kind}{i}"
    dn = None
    expected: tuple[str, str, str | None, str]
    if i < 100:  # Loppa's town hall subnet; Loppa accepts
        address = f"10.21.1.{i + 1}"
        expected = ("accepted", "loppa", "loppa-radhus", "enrolment.placement[0]: site "
                                                          "loppa-radhus")
    elif i < 200:  # Loppa's school subnet
        address = f"10.21.2.{i - 99}"
        expected = ("accepted", "loppa", "loppa-skole", "enrolment.placement[1]: site "
                                                        "loppa-skole")
    elif i < 300:  # Hasvik's subnet; Hasvik approves each
        address = f"10.22.1.{i - 199}"
        expected = ("pending", "hasvik", "hasvik-radhus", "hasvik approves each new agent")
    elif i < 350:  # no subnet rule, but in Hasvik's schools' OU
        address, dn = f"192.168.50.{i - 299}", f"CN={device.upper()},{SKOLER}"
        expected = ("pending", "hasvik", "hasvik-skole", "hasvik approves each new agent")
    elif i < 450:  # nothing places it
        address = f"10.77.0.{i - 349}"
        expected = ("pending", "loppa", None,
                    "no placement rule gives a site: choose one to accept it")
    else:  # Loppa's token, Alta's OU
        address, dn = f"10.88.0.{i - 449}", f"CN={device.upper()},{ALTA}"
        expected = ("pending", "alta", "alta-skole",
                    "the rules place it in alta, but it enrolled with loppa's token")
    cls = "server" if kind == "srv" and prefix == "lop" else "pc"
    status, municipality, site, reason = expected
    if status == "accepted" and cls == "server":
        reason += "; enrolment.placement[2]: class server"
    entry = {"id": device, "municipality": m, "class": "pc", "enrol": {
        "secret": SECRETS[m], "hostname": f"{device.upper()}.{m}.kommune.no",
        "addresses": ["fe80::1", address], "machine_id": f"machine-{i:04d}", "dn": dn}}
    return entry, (status, municipality, site, cls, reason)


def _estate(tmp: Path, broker_port: int, http_port: int) -> Path:
    for m, secret in SECRETS.items():
        (tmp / f"{m}.token").write_text(secret + "\n", encoding="utf-8")
    (tmp / "rules").mkdir()
    (tmp / "rules" / "agents.yaml").write_text(RULES, encoding="utf-8")
    sites = ["loppa-radhus", "loppa-skole", "hasvik-radhus", "hasvik-skole", "alta-skole"]
    estate = {
        "locations": [{"id": "alta", "name": "Alta"}],
        "municipalities": [{"id": m, "name": f"{m.title()} kommune"}
                           for m in ("loppa", "hasvik", "alta")],
        "sites": [{"id": s, "name": s, "location": "alta", "municipality": s.split("-")[0]}
                  for s in sites],
        "devices": [{"id": "loppa-sw1", "name": "loppa-sw1", "class": "switch",
                     "site": "loppa-radhus", "address": "127.0.1.1"},
                    {"id": "lop-srv1", "name": "lop-srv1", "class": "server",
                     "site": "loppa-radhus"}],
        "brokers": [{"location": "alta", "host": "127.0.0.1", "port": broker_port,
                     "logins": [{"component": "engine", "username": "engine-alta",
                                 "password": {"file": str(tmp / "auth/secrets/engine-alta")}}]}],
        "engine": {"http_host": "127.0.0.1", "http_port": http_port,
                   "store": str(tmp / "engine-{location}.db"), "rules": str(tmp / "rules")},
        "users": [{"id": "ola", "role": "operator", "token": {"env": "TOKEN_OLA"}},
                  {"id": "kari", "role": "admin", "token": {"env": "TOKEN_KARI"}}],
        "enrolment": {
            "tokens": [{"municipality": "loppa", "policy": "accept",
                        "token": {"file": str(tmp / "loppa.token")}},
                       {"municipality": "hasvik", "policy": "approve",
                        "token": {"file": str(tmp / "hasvik.token")}}],
            "placement": [{"subnet": "10.21.1.0/24", "site": "loppa-radhus"},
                          {"subnet": "10.21.2.0/24", "site": "loppa-skole"},
                          {"name": "lop-srv[0-9]+", "class": "server"},
                          {"subnet": "10.22.0.0/16", "site": "hasvik-radhus"},
                          {"ou": SKOLER, "site": "hasvik-skole"},
                          {"ou": ALTA, "municipality": "alta", "site": "alta-skole"},
                          {"ad_site": "Testlab", "site": "loppa-skole"}]},
    }
    path = tmp / "estate.yaml"
    path.write_text(yaml.safe_dump(estate, sort_keys=False), encoding="utf-8")
    return path


class Bed:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.http_port = free_port()
        broker_port = free_port()
        self.config = _estate(tmp, broker_port, self.http_port)
        done = subprocess.run([sys.executable, "-m", "monitor.cli", "broker-auth", "--config",
                               str(self.config), "--out", str(tmp / "auth")], cwd=ROOT,
                              capture_output=True, text=True, timeout=60, check=False)
        assert 0 == done.returncode, done.stderr
        self.broker = Mosquitto(tmp / "broker", port=broker_port,
                                password_file=tmp / "auth" / "driftsvakt.passwd",
                                acl_file=tmp / "auth" / "driftsvakt.acl").start()
        self.procs: list[subprocess.Popen[bytes]] = []
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), "TOKEN_OLA": OPERATOR,
                    "TOKEN_KARI": ADMIN}

    def spawn(self, args: list[str], log: str) -> subprocess.Popen[bytes]:
        with (self.tmp / log).open("wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", *args], stdout=out,
                                    stderr=subprocess.STDOUT, cwd=ROOT, env=self.env)
        self.procs.append(proc)
        return proc

    def start_engine(self) -> None:
        self.spawn(["monitor.cli", "--log-json", "engine", "--config", str(self.config),
                    "--location", "alta"], "engine.log")
        wait_port(self.http_port, timeout=30)
        self.until(lambda: self.api("GET", "/readyz")[0] == 200, 30, "engine ready")

    def start_agents(self, entries: list[dict[str, Any]]) -> None:
        plan = self.tmp / "agents.json"
        plan.write_text(json.dumps({"broker_port": self.broker.port, "interval": 5.0,
                                    "outboxes": str(self.tmp / "outboxes"),
                                    "agents": entries}), encoding="utf-8")
        (self.tmp / "outboxes").mkdir()
        self.spawn(["tests.storm_agents", str(plan)], "agents.log")

    def api(self, method: str, path: str, body: dict[str, Any] | None = None,
            token: str = OPERATOR) -> tuple[int, Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}{path}", method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                text = resp.read()
                return resp.status, json.loads(text) if path.startswith("/api") else text
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())
        except OSError:
            return 0, None

    def metric(self, name: str, **labels: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics",
                                    timeout=10) as resp:
            text = resp.read().decode()
        wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        found = re.search(rf"^{name}{{{re.escape(wanted)}}} (\S+)$", text, re.MULTILINE)
        assert found is not None, f"{name}{{{wanted}}} not in /metrics"
        return float(found.group(1))

    def registrations(self) -> dict[str, dict[str, Any]]:
        _, body = self.api("GET", "/api/v1/registrations")
        return {r["device"]: r for r in body["registrations"]}

    @staticmethod
    def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.5)
        raise AssertionError(f"not within {timeout:g} s: {what}")

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.broker.stop()


@pytest.fixture
def bed(tmp_path: Path) -> Iterator[Bed]:
    bed = Bed(tmp_path)
    try:
        yield bed
    finally:
        bed.close()


def test_500_agents_register_and_are_placed(bed: Bed) -> None:
    plan = [_agent(i) for i in range(AGENTS)]
    expected = {entry["id"]: want for entry, want in plan}
    bed.start_engine()
    started = time.monotonic()
    bed.start_agents([entry for entry, _ in plan])
    bed.until(lambda: len(bed.registrations()) == AGENTS, 180, "every agent registered")
    print(f"{AGENTS} registrations taken in {time.monotonic() - started:.1f} s "
          "(agents' start included)")
    rows = bed.registrations()
    got = {d: (r["status"], r["municipality"], r["site"], r["device_class"], r["reason"])
           for d, r in rows.items()}
    assert expected == got
    accepted = sorted(d for d, want in expected.items() if want[0] == "accepted")
    held = sorted(d for d, want in expected.items() if want[0] == "pending")
    assert (200, 300) == (len(accepted), len(held))
    assert ("lop-pc1", ["fe80::1", "10.21.1.2"], "machine-0001", "LOP-PC1.loppa.kommune.no") \
        == tuple(rows["lop-pc1"][k] for k in ("device", "addresses", "machine_id",
                                               "hostname"))
    assert 200.0 == bed.metric("driftsvakt_registered_agents", status="accepted")
    assert 300.0 == bed.metric("driftsvakt_registered_agents", status="pending")
    # accepted agents are devices of their site; held ones are not
    status, device = bed.api("GET", "/api/v1/devices/lop-srv120")
    assert (200, "loppa-skole", "server", "loppa", ["registered"]) == (
        status, device["site"], device["class"], device["municipality"], device["tags"])
    assert 404 == bed.api("GET", "/api/v1/devices/hv-pc201")[0]

    # a rule with no selector fires for every accepted agent, and for no held one
    def firing() -> set[str]:
        _, body = bed.api("GET", "/api/v1/alerts?alertname=AgentReporting")
        return {a["labels"]["device"] for a in body["alerts"] if a["state"] == "firing"}
    bed.until(lambda: set(accepted) <= firing(), 60, "accepted agents' alerts")
    time.sleep(6)  # another interval of every agent's events
    assert set(accepted) == firing()

    # a registration forged with a guessed token, by an enrolment identity
    forged = Client(bed.broker.port, None, "enrol-loppa", SECRETS["loppa"])
    body = {"v": 1, "ts": time.time(), "src": "lop-pc999", "seq": 1, "device": "lop-pc999",
            "hostname": "LOP-PC999", "machine_id": "x", "addresses": ["10.21.1.250"],
            "proof": proof("guessed", "loppa", "lop-pc999", "x")}
    code = forged.publish("driftsvakt/v1/alta/loppa/lop-pc999/register/lop-pc999",
                          json.dumps(body).encode())
    forged.close()
    assert 0 <= code < 0x80  # the broker lets the identity in: the engine refuses it
    bed.until(lambda: bed.metric("driftsvakt_events_rejected_total",
                                 reason="enrolment") == 1.0, 20, "the forgery refused")
    assert "lop-pc999" not in bed.registrations()

    # an operator accepts one held agent, moving it, and rejects another
    status, row = bed.api("POST", "/api/v1/registrations/lop-pc361",
                          {"action": "accept", "site": "loppa-skole"})
    assert 200 == status, row
    assert ("accepted", "loppa-skole", "ola") == (row["status"], row["site"],
                                                  row["by"])
    status, row = bed.api("POST", "/api/v1/registrations/hv-pc211", {"action": "reject"})
    assert (200, "rejected") == (status, row["status"])
    assert 400 == bed.api("POST", "/api/v1/registrations/lop-pc362", {"action": "accept"})[0]
    assert 404 == bed.api("POST", "/api/v1/registrations/nobody", {"action": "accept"})[0]
    status, device = bed.api("GET", "/api/v1/devices/lop-pc361")
    assert (200, "loppa-skole") == (status, device["site"])
    bed.until(lambda: "lop-pc361" in firing(), 30, "the accepted agent's alert")
    # the rejected agent's events (every 5 s) are refused from now on, and counted
    bed.until(lambda: bed.metric("driftsvakt_events_rejected_total",
                                 reason="enrolment") >= 3.0, 30, "the rejected agent refused")
    assert "hv-pc211" not in firing()
    _, rejected = bed.api("GET", "/api/v1/registrations?status=rejected")
    assert ["hv-pc211"] == [r["device"] for r in rejected["registrations"]]

    # every decision is in the audit log: the rules' 500, and the operator's two
    _, audit = bed.api("GET", "/api/v1/audit?limit=1000", token=ADMIN)
    entries = [(e["actor"], e["action"], e["target"]) for e in audit["audit"]
               if e["target"].startswith("registration/")]
    assert AGENTS == sum(1 for e in entries if e[:2] == ("enrolment", "register_agent"))
    assert {("ola", "accept_agent", "registration/lop-pc361"),
            ("ola", "reject_agent", "registration/hv-pc211")} == {
        e for e in entries if e[0] == "ola"}

    # a restarted engine holds the same: the registrations, the accepted as devices
    engine = bed.procs[0]
    engine.terminate()
    assert 0 == engine.wait(30)
    bed.start_engine()
    after = bed.registrations()
    assert AGENTS == len(after)
    assert {d: r["status"] for d, r in after.items()} == {
        **{d: r["status"] for d, r in rows.items()},
        "lop-pc361": "accepted", "hv-pc211": "rejected"}
    assert "loppa-skole" == bed.api("GET", "/api/v1/devices/lop-pc361")[1]["site"]
    assert "loppa-radhus" == bed.api("GET", "/api/v1/devices/lop-pc1")[1]["site"]


def _this_host() -> tuple[str, set[str], str]:
    """This machine's name, addresses and machine id, read with the system's tools."""
    name = subprocess.run(["hostname"], capture_output=True, text=True, check=True
                          ).stdout.strip()
    shown = subprocess.run(["ip", "-o", "addr", "show"], capture_output=True, text=True,
                           check=True).stdout
    addresses = {m.group(2).split("/")[0] for m in re.finditer(
        r"^\d+: (\S+)\s+inet6? (\S+) .*?scope (\w+)", shown, re.MULTILINE)
        if m.group(3) == "global"}
    machine = Path("/etc/machine-id").read_text(encoding="ascii").strip()
    return name, addresses, machine


def test_the_agent_command_registers_its_host(bed: Bed) -> None:
    """`driftsvakt agent` with only a broker address and the token `driftsvakt
    enrolment-token` printed (and, as a Linux host in a domain may, its AD site in its
    settings): it logs in as Loppa's enrolment identity and registers this host."""
    if not Path("/etc/machine-id").exists():
        pytest.skip("this host has no /etc/machine-id to compare with")
    name, addresses, machine = _this_host()
    printed = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "enrolment-token", "--config", str(bed.config),
         "--location", "alta", "loppa"], capture_output=True, text=True, cwd=ROOT,
        timeout=60, check=True).stdout.strip()
    assert f"dv1:alta:loppa:{SECRETS['loppa']}" == printed
    token = bed.tmp / "agent.token"
    token.write_text(printed + "\n", encoding="utf-8")
    settings = bed.tmp / "agent.yaml"
    settings.write_text(yaml.safe_dump({"location": "alta", "municipality": "loppa",
                                        "ad_site": "Testlab", "interval": 5,
                                        "outbox": str(bed.tmp / "agent-outbox.db")}),
                        encoding="utf-8")
    bed.start_engine()
    bed.spawn(["monitor.cli", "agent", "--config", str(settings), "--enrolment-token-file",
               str(token), "--broker-host", "127.0.0.1", "--broker-port",
               str(bed.broker.port)], "agent.log")
    device = re.sub(r"[^a-z0-9-]+", "-", name.split(".")[0].lower()).strip("-")
    bed.until(lambda: device in bed.registrations(), 60, "the agent's registration")
    row = bed.registrations()[device]
    assert ("accepted", "loppa", "loppa-skole", machine, "Testlab") == (
        row["status"], row["municipality"], row["site"], row["machine_id"], row["ad_site"])
    assert addresses == set(row["addresses"])
    assert name.split(".")[0].lower() == row["hostname"].split(".")[0].lower()
    bed.until(lambda: bed.api("GET", f"/api/v1/devices/{device}")[1].get("status") == "up",
              30, "the agent's device up")


async def test_an_approval_at_one_location_holds_at_both(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both locations' engines (in this process, on one real broker) take the same
    registrations and hold them for Hasvik's approval; an operator accepts one at Alta
    on the API, and Hammerfest's engine has it accepted, a device of its site, with the
    operator's name in its own audit log; the other, rejected on Hammerfest's
    workbench form, is rejected at Alta."""
    with Mosquitto(tmp_path / "broker") as broker:
        path = _estate(tmp_path, broker.port, 0)
        estate = yaml.safe_load(path.read_text(encoding="utf-8"))
        estate["locations"].append({"id": "hammerfest", "name": "Hammerfest"})
        estate["brokers"] = [{"location": loc, "host": "127.0.0.1", "port": broker.port}
                             for loc in ("alta", "hammerfest")]
        path.write_text(yaml.safe_dump(estate, sort_keys=False), encoding="utf-8")
        monkeypatch.setenv("TOKEN_OLA", OPERATOR)
        monkeypatch.setenv("TOKEN_KARI", ADMIN)
        apps = [await start_engine(load_config(path), loc, http_port=0)
                for loc in ("alta", "hammerfest")]
        try:
            for app in apps:
                await wait_ready(app.url)
            client = Client(broker.port, None, None)
            for device in ("hv-pc7", "hv-pc8"):
                machine = f"machine-{device}"
                body = {"v": 1, "ts": time.time(), "src": device, "seq": 1, "device": device,
                        "hostname": f"{device.upper()}.hasvik.kommune.no",
                        "machine_id": machine, "addresses": ["10.22.3.7"],
                        "proof": proof(SECRETS["hasvik"], "hasvik", device, machine)}
                client.publish(f"driftsvakt/v1/alta/hasvik/{device}/register/{device}",
                               json.dumps(body).encode())
            client.close()
            device = "hv-pc7"

            async def status(app: Any, device: str = device) -> str | None:
                row = app.estate.agents.rows.get(device)
                return None if row is None else str(row.status)

            await _until_async(lambda: _all([status(a, d) for a in apps
                                             for d in ("hv-pc7", "hv-pc8")], "pending"), 20)
            headers = {"Authorization": f"Bearer {OPERATOR}"}
            async with aiohttp.ClientSession() as session:
                async with session.post(f"{apps[0].url}/api/v1/registrations/{device}",
                                        json={"action": "accept"}, headers=headers) as resp:
                    assert 200 == resp.status, await resp.text()
                # the workbench's form, at the other location
                async with session.post(f"{apps[1].url}/registrations/hv-pc8",
                                        data={"action": "reject"}, headers=headers,
                                        allow_redirects=False) as resp:
                    assert (303, "/registrations") == (resp.status, resp.headers["Location"])
            await _until_async(lambda: _all([status(apps[0], "hv-pc8")], "rejected"), 20)
            hammerfest = apps[1]
            await _until_async(lambda: _all([status(hammerfest)], "accepted"), 20)
            assert "hasvik-radhus" == hammerfest.estate.config.devices[device].site
            audit = [(actor, action) for _, actor, action, target, _ in
                     await hammerfest.store.audit_log() if target == f"registration/{device}"]
            assert [("ola", "accept_agent"), ("enrolment", "register_agent")] == audit
        finally:
            for app in apps:
                await app.stop()


async def _all(checks: list[Awaitable[Any]], wanted: str) -> bool:
    return all([(await check) == wanted for check in checks])


async def _until_async(condition: Callable[[], Any], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"not within {timeout:g} s")
