"""The SLA end to end: a scripted October through real mosquitto into a real engine.

Three collectors (a poller, a host agent, a check runner) publish a month of events
through the real publisher and outbox; the agent's month arrives last, as a replayed
outbox would, and some messages are delivered twice. Maintenance windows (one-off and
weekly, the weekly one on the night the clocks go back) and a correction go in
through the API. The API's figures and ``driftsvakt sla report`` must equal the
brute-force oracle of tests/sla_oracle.py, to the second.

Then every route the engine serves is asked by every role about every municipality:
a viewer of Alta gets 404 for anything of Loppa and never sees Loppa's name.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from monitor.app import EngineApp, start_engine
from monitor.config import Config, load_config
from monitor.events import Sample
from monitor.web import SECURITY_HEADERS
from tests.feed import publish
from tests.servers import Mosquitto, free_port, wait_ready
from tests.sla_oracle import Obs, oracle

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
OSLO = ZoneInfo("Europe/Oslo")
START = datetime(2026, 10, 1, tzinfo=OSLO)
END = datetime(2026, 11, 1, tzinfo=OSLO)
GRID = 600  # every collector reports every ten minutes; an observation stands 30 min
TOKENS = {"kari": "kari-admin-token", "ola": "ola-operator-token",
          "liv": "liv-viewer-alta-token", "per": "per-viewer-loppa-token"}


def estate(tmp: Path, broker_port: int, http_port: int) -> Path:
    sites = [{"id": "oksfjord", "name": "Øksfjord", "location": "alta",
              "municipality": "loppa"},
             {"id": "alta-radhus", "name": "Alta rådhus", "location": "alta",
              "municipality": "alta"}]
    devices = [
        {"id": "loppa-sw1", "name": "Kjernesvitsj Loppa", "class": "switch",
         "site": "oksfjord", "interval": GRID},
        {"id": "loppa-mail1", "name": "E-post 1", "class": "server", "site": "oksfjord",
         "interval": GRID},
        {"id": "loppa-mail2", "name": "E-post 2", "class": "server", "site": "oksfjord",
         "interval": GRID},
        {"id": "loppa-web", "name": "Fagsystem Loppa", "class": "server", "site": "oksfjord",
         "interval": GRID},
        {"id": "alta-core", "name": "Kjernesvitsj Alta", "class": "switch",
         "site": "alta-radhus", "interval": GRID},
    ]
    services = [
        {"id": "e-post", "name": "E-post", "municipalities": ["loppa", "alta"],
         "target": 99.5, "depends": {"any": ["device:loppa-mail1", "device:loppa-mail2"]},
         "policy": {"ignore_blips_under": 900}},
        {"id": "nett-loppa", "name": "Nettverk Loppa rådhus", "municipalities": ["loppa"],
         "target": 99.7, "hours": "kontortid", "depends": {"all": ["device:loppa-sw1"]}},
        {"id": "fagsystem-loppa", "name": "Fagsystem", "municipalities": ["loppa"],
         "target": 99.0, "depends": {"all": ["service:nett-loppa", "check:loppa-fag"]},
         "policy": {"unknown": "down", "maintenance": "ignored"}},
        {"id": "nett-alta", "name": "Nettverk Alta rådhus", "municipalities": ["alta"],
         "target": 99.9, "depends": {"all": ["device:alta-core"]}},
    ]
    config = {
        "locations": [{"id": "alta", "name": "Alta"}, {"id": "hammerfest", "name": "Hammerfest"}],
        "municipalities": [{"id": "loppa", "name": "Loppa kommune"},
                           {"id": "alta", "name": "Alta kommune"}],
        "office_hours": [{"id": "kontortid", "weekly": {"mon-fri": ["07:00-16:00"]}}],
        "sites": sites,
        "devices": devices,
        "checks": [{"id": "loppa-fag", "kind": "http", "device": "loppa-web",
                    "target": "http://127.0.0.1:9/fag", "interval": GRID}],
        "services": services,
        "brokers": [{"location": "alta", "host": "127.0.0.1", "port": broker_port}],
        # a month replayed in seconds: older than any live outbox would hold
        "engine": {"http_host": "127.0.0.1", "http_port": http_port,
                   "store": str(tmp / "engine-{location}.db"), "max_event_age": 90 * 86400,
                   "sla_closed_after": 90 * 86400},
        "outbox": {"directory": str(tmp / "outbox"), "ack_timeout": 2.0},
        "users": [
            {"id": "kari", "role": "admin", "token": {"env": "SLA_TOKEN_KARI"}},
            {"id": "ola", "role": "operator", "token": {"env": "SLA_TOKEN_OLA"}},
            {"id": "liv", "role": "viewer", "municipality": "alta",
             "token": {"env": "SLA_TOKEN_LIV"}},
            {"id": "per", "role": "viewer", "municipality": "loppa",
             "token": {"env": "SLA_TOKEN_PER"}},
        ],
    }
    path = tmp / "estate.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


@dataclass
class Script:
    """A month of observations, per source in its own order, and the events for them."""

    observations: list[Obs]
    events: dict[str, list[tuple[str, str, str, float, dict[str, Any]]]]


def outages(rng: random.Random, count: int, longest: int) -> list[tuple[int, int]]:
    start, end = int(START.timestamp()), int(END.timestamp())
    out = []
    for _ in range(count):
        a = start + rng.randrange((end - start) // GRID) * GRID
        out.append((a, a + rng.randint(1, longest) * GRID))
    return out


def script() -> Script:
    rng = random.Random(20261001)
    start, end = int(START.timestamp()), int(END.timestamp())
    down = {"loppa-mail1": outages(rng, 6, 30), "loppa-mail2": outages(rng, 6, 30),
            "loppa-sw1": [
                *outages(rng, 5, 20),
                # under the one-off maintenance window
                (int(datetime(2026, 10, 14, 20, 30, tzinfo=OSLO).timestamp()),
                 int(datetime(2026, 10, 14, 22, 0, tzinfo=OSLO).timestamp())),
                # the town hall's power cut, corrected as outside the centre's hands
                (int(datetime(2026, 10, 20, 10, 0, tzinfo=OSLO).timestamp()),
                 int(datetime(2026, 10, 20, 12, 0, tzinfo=OSLO).timestamp()))],
            "alta-core": outages(rng, 3, 12)}
    web_down = outages(rng, 6, 10)
    # the poller is away for five hours on 12 October: unknown, not down
    gap = (int(datetime(2026, 10, 12, 9, 0, tzinfo=OSLO).timestamp()),
           int(datetime(2026, 10, 12, 14, 0, tzinfo=OSLO).timestamp()))
    observations: list[Obs] = []
    events: dict[str, list[tuple[str, str, str, float, dict[str, Any]]]] = {
        "poller-a": [], "agent-mail1": [], "checks-a": []}
    seq = dict.fromkeys(events, 0)

    def add(src: str, component: str, municipality: str, device: str, stream: str, t: int,
            state: str, body: dict[str, Any]) -> None:
        seq[src] += 1
        observations.append(Obs(component, src, seq[src], t, state, 3 * GRID))
        events[src].append((municipality, device, stream, float(t), body))

    for t in range(start, end, GRID):
        for device, spans in down.items():
            municipality = "alta" if device == "alta-core" else "loppa"
            if device == "loppa-sw1" and gap[0] <= t < gap[1]:
                continue
            if any(a <= t < b for a, b in spans):
                add("poller-a", f"device:{device}", municipality, device, "state", t, "down",
                    {"state": "down", "reason": "no SNMP response"})
            else:
                add("poller-a", f"device:{device}", municipality, device, "metrics", t, "up",
                    {"samples": [Sample(name="sys_uptime_seconds", value=float(t))],
                     "interval": float(GRID)})
        ok = not any(a <= t < b for a, b in web_down)
        add("checks-a", "check:loppa-fag", "loppa", "loppa-web", "check", t,
            "up" if ok else "down", {"check": "loppa-fag", "kind": "http", "ok": ok})
        # the mail1 host agent heartbeats through the first ten days, except when mail1
        # is down: it says "up" where the poller may have lost it
        if t < start + 10 * 86400 and not any(a <= t < b for a, b in down["loppa-mail1"]):
            add("agent-mail1", "device:loppa-mail1", "loppa", "loppa-mail1", "heartbeat", t,
                "up", {"interval": float(GRID)})
    return Script(observations, events)


MAINTENANCE_ONE_OFF = (datetime(2026, 10, 14, 20, 0, tzinfo=OSLO),
                       datetime(2026, 10, 14, 23, 0, tzinfo=OSLO))
CORRECTION = (datetime(2026, 10, 20, 6, 0, tzinfo=OSLO), datetime(2026, 10, 20, 18, 0,
                                                                     tzinfo=OSLO))


def maintenance_intervals() -> dict[str, list[tuple[int, int]]]:
    """Written out by hand: the one-off window on loppa-sw1, and the Sunday-night patch
    window on loppa-mail2 (02:00 for two hours; on 25 October 02:00 is still summer
    time, so it ends at 03:00 winter time)."""
    sundays = [datetime(2026, 10, d, 2, 0, tzinfo=OSLO) for d in (4, 11, 18, 25)]
    return {
        "device:loppa-sw1": [(int(MAINTENANCE_ONE_OFF[0].timestamp()),
                              int(MAINTENANCE_ONE_OFF[1].timestamp()))],
        "device:loppa-mail2": [(int(s.timestamp()), int(s.timestamp()) + 7200)
                               for s in sundays],
    }


@pytest.fixture
async def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                 ) -> AsyncIterator[tuple[EngineApp, Config, Mosquitto]]:
    for user, token in TOKENS.items():
        monkeypatch.setenv(f"SLA_TOKEN_{user.upper()}", token)
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    config = load_config(estate(tmp_path, broker.port, free_port()))
    app = await start_engine(config, "alta")
    try:
        yield app, config, broker
    finally:
        await app.stop()
        broker.stop()


async def call(session: aiohttp.ClientSession, app: EngineApp, method: str, path: str,
               who: str | None, body: object = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {TOKENS[who]}"} if who else {}
    async with session.request(method, app.url + path, headers=headers,
                               json=body, allow_redirects=False) as resp:
        # the security headers on every answer of every route, to every role
        assert SECURITY_HEADERS.items() <= resp.headers.items(), (method, path, who)
        # a store snapshot is binary: decode leniently, the checks look for names
        return resp.status, (await resp.read()).decode("utf-8", errors="replace")


async def publish_month(config: Config, tmp: Path, plan: Script, broker: Mosquitto) -> None:
    """Poller and checks first, interleaved; the agent's whole month after them (a
    replayed outbox); then a few of the poller's messages again, as a broker may."""
    async def run_source(src: str) -> None:
        await publish(config, tmp / f"outbox-{src}.db", src, plan.events[src])

    await asyncio.gather(run_source("poller-a"), run_source("checks-a"))
    await run_source("agent-mail1")
    # duplicates: the same (src, seq) again, straight onto the broker
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="sla-dup", protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    for seq in (5, 6, 7, 1000):
        municipality, device, stream, ts, body = plan.events["poller-a"][seq - 1]
        payload = {"v": 1, "ts": ts, "src": "poller-a", "seq": seq, "device": device,
                   **{k: ([{"name": s.name, "value": s.value} for s in v]
                          if k == "samples" else v) for k, v in body.items()}}
        if stream == "state":
            payload["state"] = "up"  # a lie: were it applied, the figures would differ
        client.publish(f"driftsvakt/v1/alta/{municipality}/{device}/{stream}/poller-a",
                       json.dumps(payload), qos=1).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()


async def test_a_scripted_month_through_mosquitto_equals_the_oracle(
        engine: tuple[EngineApp, Config, Mosquitto], tmp_path: Path) -> None:
    app, config, broker = engine
    plan = script()
    async with aiohttp.ClientSession() as session:
        one_off = {"name": "Bytte av kjernesvitsj", "devices": ["loppa-sw1"],
                   "starts_at": MAINTENANCE_ONE_OFF[0].isoformat(),
                   "ends_at": MAINTENANCE_ONE_OFF[1].isoformat()}
        weekly = {"name": "Patching søndag natt", "devices": ["loppa-mail2"],
                  "starts_at": START.isoformat(), "ends_at": END.isoformat(),
                  "recurrence": {"every": "weekly", "days": ["sun"], "at": "02:00",
                                 "duration": "2h"}}
        for window in (one_off, weekly):
            status, text = await call(session, app, "POST", "/api/v1/maintenance", "kari",
                                      window)
            assert status == 201, text
        correction = {"service": "nett-loppa", "classify_as": "excluded",
                      "starts_at": CORRECTION[0].isoformat(),
                      "ends_at": CORRECTION[1].isoformat(),
                      "comment": "Strømbrudd i rådhuset (Varanger Kraft)"}
        status, text = await call(session, app, "POST", "/api/v1/sla/loppa/corrections",
                                  "kari", correction)
        assert status == 201, text
        await publish_month(config, tmp_path, plan, broker)
        await asyncio.sleep(0.5)  # the duplicates' batch

        maintenance = maintenance_intervals()
        corrections = {"nett-loppa": [(int(CORRECTION[0].timestamp()),
                                       int(CORRECTION[1].timestamp()), "excluded")]}
        start, end = int(START.timestamp()), int(END.timestamp())
        for municipality in ("loppa", "alta"):
            status, text = await call(session, app, "GET",
                                      f"/api/v1/sla/{municipality}?month=2026-10", "kari")
            assert status == 200, text
            report = json.loads(text)
            assert report["from"] == "2026-10-01T00:00:00+02:00"
            assert report["to"] == "2026-11-01T00:00:00+01:00"
            for got in report["services"]:
                spec = config.services[got["service"]]
                schedule = config.schedules.get(spec.hours) if spec.hours else None
                want = oracle(spec, config.services, plan.observations, maintenance,
                              corrections.get(spec.id, []), schedule, start, end, step=60)
                assert {k: got["seconds"][k] for k in want.seconds} == want.seconds, spec.id
                assert got["seconds"]["counted_up"] == want.counted_up, spec.id
                assert got["seconds"]["counted_down"] == want.counted_down, spec.id
                assert len(got["incidents"]) == want.incidents, spec.id
                counted = want.counted_up + want.counted_down
                assert got["achieved"] == pytest.approx(want.counted_up / counted)
                assert got["met"] == (want.counted_up / counted >= spec.target / 100)
            names = [s["service"] for s in report["services"]]
            assert names == (["e-post", "nett-loppa", "fagsystem-loppa"]
                             if municipality == "loppa" else ["e-post", "nett-alta"])

        loppa = json.loads((await call(session, app, "GET",
                                       "/api/v1/sla/loppa?month=2026-10", "per"))[1])
        by_id = {s["service"]: s for s in loppa["services"]}
        # the five-hour poller gap is unknown time in office hours, not downtime
        assert by_id["nett-loppa"]["seconds"]["unknown"] >= 5 * 3600 - 1800
        assert by_id["nett-loppa"]["corrected"]
        assert loppa["corrections"][0]["comment"] == correction["comment"]
        assert by_id["nett-loppa"]["maintenance"] == [] or all(
            m["windows"] == ["Bytte av kjernesvitsj"] for m in by_id["nett-loppa"]["maintenance"])

        # the monthly report a municipality files: the same numbers as the API
        out = tmp_path / "report.json"
        cli = await asyncio.to_thread(subprocess.run, [
            sys.executable, "-m", "monitor.cli", "sla", "report", "--config",
            config.source, "--municipality", "loppa", "--month", "2026-10", "--format",
            "json", "--location", "alta", "-o", str(out)],
            capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert cli.returncode == 0, cli.stderr
        filed = json.loads(out.read_text(encoding="utf-8"))
        assert [s["seconds"] for s in filed["services"]] == [
            s["seconds"] for s in loppa["services"]]
        assert [s["incidents"] for s in filed["services"]] == [
            s["incidents"] for s in loppa["services"]]
        status, csv_text = await call(session, app, "GET",
                                      "/api/v1/sla/loppa?month=2026-10&format=csv", "per")
        assert status == 200
        rows = [line.split(",") for line in csv_text.strip().splitlines()]
        assert rows[0][:3] == ["municipality", "period", "service"]
        assert [r[2] for r in rows[1:]] == ["e-post", "nett-loppa", "fagsystem-loppa"]
        assert [float(r[7]) for r in rows[1:]] == [
            round(s["seconds"]["counted_down"] / 60, 2) for s in loppa["services"]]

        # the metrics Grafana reads
        await app.sla.update_metrics(END.timestamp() + 86400 * 10)
        status, metrics = await call(session, app, "GET", "/metrics", None)
        ratio = next(line for line in metrics.splitlines() if line.startswith(
            'driftsvakt_sla_availability_ratio{municipality="loppa",period="previous_month",'
            'service="e-post"}'))
        assert float(ratio.split()[-1]) == pytest.approx(by_id["e-post"]["achieved"])
        assert 'driftsvakt_sla_target_ratio{municipality="alta",service="nett-alta"} 0.999' \
            in metrics


# -- tenant isolation -------------------------------------------------------------------------

OPEN = {"/metrics", "/healthz", "/readyz", "/login", "/logout", "/login/oidc",
        "/login/oidc/callback"}
PAGES = {"/", "/sla", "/sla/{m}", "/problems", "/alerts/{id}", "/devices/{id}", "/sites/{id}",
         "/notes", "/registrations",
         "/search", "/topology"}  # a browser without a token is sent to /login


def fill(path: str, municipality: str) -> str:
    for name, value in (("{m}", municipality), ("{id}", "x-1"), ("{schedule}", "vakt"),
                        ("{alert}", "abc")):
        path = path.replace(name, value)
    return path


async def test_every_route_by_every_role_for_every_municipality(
        engine: tuple[EngineApp, Config, Mosquitto]) -> None:
    app, _, _ = engine
    routes = sorted({(r.method, r.resource.canonical) for r in app.runner.app.router.routes()
                     if r.resource is not None and r.method != "HEAD"})
    assert ("GET", "/api/v1/sla/{m}") in routes
    assert ("GET", "/sla/{m}") in routes
    checked = 0
    async with aiohttp.ClientSession() as session:
        # a window over both municipalities' gear, named and explained by Loppa: each
        # viewer may see its own part of it, and nothing of the other's
        now = datetime.now(ZoneInfo("UTC"))
        status, _ = await call(session, app, "POST", "/api/v1/maintenance", "kari", {
            "name": "Loppa bytter kjernesvitsj", "comment": "Loppa-teknikeren kommer",
            "devices": ["loppa-sw1", "alta-core"],
            "starts_at": (now - timedelta(hours=1)).isoformat(),
            "ends_at": (now + timedelta(hours=1)).isoformat()})
        assert status == 201
        status, text = await call(session, app, "GET", "/api/v1/maintenance", "liv")
        (part,) = json.loads(text)["maintenance"]
        assert (part["devices"], part["name"], part["comment"]) == (
            ["alta-core"], "Planlagt vedlikehold", "")
        for method, path in routes:
            for municipality in ("alta", "loppa"):
                url = fill(path, municipality)
                body: dict[str, Any] | None = {} if method in ("POST", "DELETE") else None
                status, _ = await call(session, app, method, url, None, body)
                if path in PAGES and method == "GET":
                    assert status == 303, (method, url)
                elif path not in OPEN and not path.startswith("/ack/"):
                    assert status == 401, (method, url)
                for who, own in (("liv", "alta"), ("per", "loppa")):
                    status, text = await call(session, app, method, url, who, body)
                    other = "loppa" if own == "alta" else "alta"
                    other_name = "Loppa" if own == "alta" else "Alta"
                    checked += 1
                    if path in OPEN or path.startswith("/ack/"):
                        continue
                    if "{m}" in path and municipality != own:
                        assert status == 404, (who, method, url, status)
                    if path != "/metrics":
                        # nothing of the other municipality, in data or in errors
                        assert other not in text.lower().replace("alta-radhus", ""), (
                            who, method, url, text[:300])
                        assert other_name not in text, (who, method, url, text[:300])
                for who in ("ola", "kari"):
                    status, _ = await call(session, app, method, url, who, body)
                    assert status != 401 or path in OPEN, (who, method, url)
                    checked += 1
    assert checked > 100
    # a viewer's portal and its own data
    async with aiohttp.ClientSession() as session:
        status, text = await call(session, app, "GET", "/sla/alta", "liv")
        assert status == 200
        assert "Tjenestenivå for Alta kommune" in text
        assert "E-post" in text
        status, _ = await call(session, app, "GET", "/sla/loppa", "liv")
        assert status == 404
        status, _ = await call(session, app, "GET", "/sla/nowhere", "liv")
        assert status == 404
        status, listing = await call(session, app, "GET", "/api/v1/sla", "liv")
        assert [m["id"] for m in json.loads(listing)["municipalities"]] == ["alta"]
        status, listing = await call(session, app, "GET", "/api/v1/sla", "ola")
        assert sorted(m["id"] for m in json.loads(listing)["municipalities"]) == [
            "alta", "loppa"]



async def test_status_notes_are_written_updated_resolved_and_read_by_their_own(
        engine: tuple[EngineApp, Config, Mosquitto]) -> None:
    """An operator posts a note for Loppa naming its network service, adds an update
    and resolves it; Loppa's viewer reads it, Alta's gets 404 for Loppa's notes and
    sees none on its own; a viewer cannot write one, a service of another
    municipality or an empty text is refused, a resolved note takes no more updates,
    an admin withdraws a note. Every change is in the audit log."""
    app, _, _ = engine
    async with aiohttp.ClientSession() as session:
        base = "/api/v1/sla/loppa/notes"
        status, text = await call(session, app, "POST", base, "ola", {
            "text": "Fiberbrudd mellom Øksfjord og Alta. Leverandøren er varslet.",
            "services": ["nett-loppa"]})
        assert 201 == status, text
        note = json.loads(text)
        assert (note["municipality"], note["created_by"], note["resolved_at"]) == (
            "loppa", "ola", None)
        refused = [
            (await call(session, app, "POST", base, "per", {"text": "x"}))[0],
            (await call(session, app, "POST", base, "ola",
                        {"text": "x", "services": ["nett-alta"]}))[0],
            (await call(session, app, "POST", base, "ola", {"text": "   "}))[0],
            (await call(session, app, "POST", base, "ola", {"text": ""}))[0],
            (await call(session, app, "POST", base, "ola", {"text": "x", "by": "kari"}))[0],
            (await call(session, app, "POST", f"{base}/{note['id']}", "ola", {}))[0],
            (await call(session, app, "POST", f"/api/v1/sla/alta/notes/{note['id']}", "ola",
                        {"resolved": True}))[0],
            (await call(session, app, "DELETE", f"{base}/{note['id']}", "ola"))[0]]
        assert [404, 400, 400, 400, 400, 400, 404, 403] == refused
        status, text = await call(session, app, "POST", f"{base}/{note['id']}", "ola", {
            "text": "Reparert. Vi følger med en time til.", "resolved": True})
        assert 200 == status, text
        status, text = await call(session, app, "POST", f"{base}/{note['id']}", "ola",
                                  {"text": "for sent"})
        assert 409 == status
        status, text = await call(session, app, "GET", base, "per")
        (read,) = json.loads(text)["notes"]
        assert [u["text"] for u in read["updates"]] == ["Reparert. Vi følger med en time til."]
        assert read["resolved_at"] is not None
        status, page = await call(session, app, "GET", "/sla/loppa", "per")
        assert "Fiberbrudd mellom Øksfjord og Alta" in page
        assert "Løst</span>: Nettverk Loppa rådhus" in page
        assert 404 == (await call(session, app, "GET", base, "liv"))[0]
        status, own = await call(session, app, "GET", "/api/v1/sla/alta/notes", "liv")
        assert (200, []) == (status, json.loads(own)["notes"])
        assert "Fiberbrudd" not in (await call(session, app, "GET", "/sla/alta", "liv"))[1]
        status, _ = await call(session, app, "DELETE", f"{base}/{note['id']}", "kari")
        assert 200 == status
        assert [] == json.loads((await call(session, app, "GET", base, "per"))[1])["notes"]
        status, audit = await call(session, app, "GET", "/api/v1/audit", "kari")
    entries = [(e["actor"], e["action"]) for e in json.loads(audit)["audit"]
               if e["target"] == f"status_note/{note['id']}"]
    assert sorted(entries) == [("kari", "delete_status_note"), ("ola", "create_status_note"),
                               ("ola", "update_status_note")]


async def test_an_observation_of_a_closed_month_changes_no_reported_figure(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A month's figures close (here 60 s after it ends): a report sent stays true. An
    outage of last month that arrives now is kept aside and named in that month's
    report, not counted; the same source's next, current observation is counted."""
    for user, token in TOKENS.items():
        monkeypatch.setenv(f"SLA_TOKEN_{user.upper()}", token)
    with Mosquitto(tmp_path / "broker") as broker:
        path = estate(tmp_path, broker.port, free_port())
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        raw["engine"]["sla_closed_after"] = 60
        path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
        app = await start_engine(load_config(path), "alta")
        try:
            await wait_ready(app.url)
            now = datetime.now(OSLO)
            this_month = datetime(now.year, now.month, 1, tzinfo=OSLO)
            last_month = (this_month - timedelta(days=1)).strftime("%Y-%m")
            late_ts = this_month.timestamp() - 7200  # last month's last evening
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="late-test")
            client.connect("127.0.0.1", broker.port)
            client.loop_start()
            for seq, ts, state in ((1, late_ts, "down"), (2, now.timestamp() - 30, "up")):
                body = {"v": 1, "ts": ts, "src": "poller-late", "seq": seq, "floor": 1,
                        "device": "loppa-sw1", "state": state}
                client.publish("driftsvakt/v1/alta/loppa/loppa-sw1/state/poller-late",
                               json.dumps(body), qos=1).wait_for_publish(5)
            client.loop_stop()
            client.disconnect()
            async with aiohttp.ClientSession() as session:
                for _ in range(100):
                    status, text = await call(session, app, "GET",
                                              f"/api/v1/sla/loppa?month={last_month}", "kari")
                    late = json.loads(text)["late_observations"]
                    if late:
                        break
                    await asyncio.sleep(0.1)
                assert 200 == status
                assert [("device:loppa-sw1", "poller-late", "down")] == [
                    (o["component"], o["src"], o["state"]) for o in late]
                nett = next(s for s in json.loads(text)["services"]
                            if s["service"] == "nett-loppa")
                assert 0 == nett["downtime_minutes"]
                _, html = await call(session, app, "GET",
                                     f"/api/v1/sla/loppa?month={last_month}&format=html",
                                     "kari")
                assert "1 observasjon av denne perioden kom etter" in html
            runs = await app.engine.store.recent_sla_runs(0)
            assert [("device:loppa-sw1", "poller-late", "up")] == [
                (r[0], r[1], r[4]) for r in runs if r[1] == "poller-late"]
        finally:
            await app.stop()


async def test_the_portal_says_how_the_services_are_now_and_what_is_planned(
        engine: tuple[EngineApp, Config, Mosquitto]) -> None:
    """Both mail servers down now: E-post is down since the first report, at Loppa and
    at Alta (they share it); Loppa's own window tomorrow is listed by name for Loppa
    and not at all for Alta."""
    app, _, broker = engine
    await wait_ready(app.url)
    async with aiohttp.ClientSession() as session:
        down_at = time.time() - 120
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="status-test")
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        for seq, (device, ts) in enumerate(
                [(d, t) for t in (down_at, down_at + 60) for d in ("loppa-mail1",
                                                                   "loppa-mail2")], 1):
            body = {"v": 1, "ts": ts, "src": "poller-status", "seq": seq, "floor": 1,
                    "device": device, "state": "down"}
            client.publish(f"driftsvakt/v1/alta/loppa/{device}/state/poller-status",
                           json.dumps(body), qos=1).wait_for_publish(5)
        client.loop_stop()
        client.disconnect()
        tomorrow = datetime.now(ZoneInfo("UTC")) + timedelta(days=1)
        status, _ = await call(session, app, "POST", "/api/v1/maintenance", "kari", {
            "name": "Oppgradering av fagsystemet", "devices": ["loppa-web"],
            "starts_at": tomorrow.isoformat(),
            "ends_at": (tomorrow + timedelta(hours=2)).isoformat()})
        assert 201 == status
        for _ in range(100):
            status, page = await call(session, app, "GET", "/sla/loppa", "per")
            if 'data-state="down"><td>E-post' in page:
                break
            await asyncio.sleep(0.1)
        assert 200 == status
        assert 'data-state="down"><td>E-post' in page
        since = datetime.fromtimestamp(down_at, OSLO).strftime("%d.%m.%Y %H:%M")
        assert f"Nede</span></td>\n        <td>{since}</td>" in page
        assert "Oppgradering av fagsystemet" in page
        status, alta = await call(session, app, "GET", "/sla/alta", "liv")
        assert 'data-state="down"><td>E-post' in alta
        assert "Oppgradering av fagsystemet" not in alta
        assert "Ikke noe planlagt vedlikehold" in alta
