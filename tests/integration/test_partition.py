"""A 120 s partition between the locations, both sides publishing, on the shipped
broker configs in network namespaces (tests/netbed.py).

Each location runs its broker from deploy/mosquitto (TLS, passwords, the ACL, Alta's
bridge to Hammerfest), its engine and a producer as real processes in its own
namespace; nftables drops everything on the link between them for 120 s. Throughout,
the producers send 100 events/s each and a poller per location reports two devices
every 5 s, one of which goes down 10 s into the partition and comes back after it.
After the heal the test asserts, with the numbers printed:

- both engines complete: every event of both locations applied exactly once at each;
- both engines' SLA ledgers equal, run for run, and their alert logs equal, alert
  for alert and transition for transition, to the time (both are kept by event time);
- within 60 s of the heal (and prints how long each engine took to have what the
  other location had at the heal);
- each side raised the other location unreachable during the partition;
- each device's outage notified once and resolved once, by its own location.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from collectors.common.outbox import Outbox
from collectors.common.publisher import Publisher
from monitor.fields import Broker
from tests.estate import write_estate
from tests.integration.test_liveness import DEVICE_RULE, Sink
from tests.netbed import Bed, Location, bed_available, two_locations
from tests.servers import free_port, wait_port

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(bed_available() is not None,
                                 reason=str(bed_available()))]

ROOT = Path(__file__).resolve().parents[2]
PRE, PARTITION, POST = 15.0, 120.0, 10.0
RATE = 100.0  # events/s per producer
TOTAL = int(RATE * (PRE + PARTITION + POST))
HTTP_PORT = 8080  # each engine in its own namespace
REPORT = 5.0  # the pollers' interval
# location -> (device kept up, device that fails 10 s into the partition)
WATCHED = {"alta": ("loppa-sw1", "loppa-sw2"), "hammerfest": ("hf-sw1", "hf-sw2")}
MUNICIPALITY = {"alta": "loppa", "hammerfest": "hasvik"}


def estate(bed: Bed) -> tuple[Path, Path]:
    """The estate twice: as the engines read it and as the collectors do (each logs in
    to its location's broker as itself)."""
    directory = bed.workdir / "estate"
    estate = yaml.safe_load(write_estate(directory, 8883).read_text(encoding="utf-8"))
    estate["municipalities"].append({"id": "hasvik", "name": "Hasvik kommune"})
    estate["sites"].append({"id": "breivikbotn", "name": "Breivikbotn", "location": "hammerfest",
                            "municipality": "hasvik"})
    estate["devices"] += [{"id": d, "name": d, "class": "switch", "site": "breivikbotn",
                           "address": f"127.0.2.{i}"}
                          for i, d in enumerate(WATCHED["hammerfest"], 1)]
    estate["services"] = [
        {"id": f"nett-{m}", "name": f"Nett {m}", "municipalities": [m], "target": 99.5,
         "depends": {"all": [f"device:{d}" for d in WATCHED[loc]]}}
        for loc, m in MUNICIPALITY.items()]
    rules = directory / "rules"
    rules.mkdir()
    shutil.copy(ROOT / "rules" / "driftsvakt.yaml", rules / "driftsvakt.yaml")
    (rules / "devices.yaml").write_text(DEVICE_RULE, encoding="utf-8")
    estate["engine"].update({"rules": str(rules), "http_host": "0.0.0.0",
                             "http_port": HTTP_PORT})
    estate["outbox"]["wait_for"] = ["alta", "hammerfest"]
    estate["notifications"] = {
        "receivers": [{"id": "hook", "language": "en",
                       "webhook": {"url": {"env": "DV_TEST_HOOK"}}}],
        "route": {"receiver": "hook", "group_wait": "0s", "group_interval": "1s",
                  "group_by": ["alertname", "device"]},
    }
    paths = []
    for role in ("engine", "collector"):
        estate["brokers"] = [
            {"location": loc, "host": "127.0.0.1", "port": 8883, "tls_ca": str(bed.ca),
             "username": f"{role}-{loc}",
             "password": {"file": str(bed.password_file(f"{role}-{loc}"))}}
            for loc in WATCHED]
        path = directory / f"{role}.yaml"
        path.write_text(yaml.safe_dump(estate, allow_unicode=True), encoding="utf-8")
        paths.append(path)
    return paths[0], paths[1]


@pytest.fixture
def bed(tmp_path: Path) -> Iterator[Bed]:
    with two_locations(tmp_path / "bed") as made:
        yield made


@contextlib.asynccontextmanager
async def bed_sink(bed: Bed) -> AsyncIterator[Sink]:
    """The webhook, on the root namespace's end of each location's veth."""
    receiver = Sink(free_port())
    app = web.Application()
    app.router.add_post("/{engine}", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        for loc in bed.locations:
            await web.TCPSite(runner, loc.host_address, receiver.port).start()
        yield receiver
    finally:
        await runner.cleanup()


@pytest.fixture
async def sink(bed: Bed) -> AsyncIterator[Sink]:
    async with bed_sink(bed) as receiver:
        yield receiver


def start_engine(loc: Location, config: Path, sink_port: int) -> subprocess.Popen[bytes]:
    """``driftsvakt engine`` in the location's namespace, notifying the sink."""
    return loc.python(["-m", "monitor.cli", "--log-json", "engine", "--config", str(config),
                       "--location", loc.id], "engine.log",
                      env={"DV_TEST_HOOK": f"http://{loc.host_address}:{sink_port}/{loc.id}"})


def start_producer(loc: Location, config: Path, total: int, rate: float
                   ) -> subprocess.Popen[bytes]:
    """``total`` events at ``rate`` from producer-LOCATION, on the real publisher."""
    return loc.python(["-m", "tests.integration.producer", str(config), loc.id,
                       f"producer-{loc.id}", str(total), str(loc.workdir / "producer.db"),
                       str(rate)], "producer.log")


class Poller:
    """A location's poller, in the test's process, on the real publisher and outbox,
    reaching its broker through the location's veth (the link is not in the way)."""

    def __init__(self, bed: Bed, loc: Location) -> None:
        self.loc = loc
        self.broker = Broker(location=loc.id, host=loc.address, port=8883,
                             username=f"collector-{loc.id}", tls_ca=str(bed.ca))
        self.outbox_path = bed.workdir / f"poller-{loc.id}.db"
        self.failing = False
        self.sent = 0

    async def run(self, until: asyncio.Event) -> None:
        outbox = await Outbox.open(self.outbox_path)
        publisher = Publisher(broker=self.broker, location=self.loc.id, component="poller",
                              instance=f"poller-{self.loc.id}", outbox=outbox,
                              password=f"pw-collector-{self.loc.id}",
                              wait_for=list(WATCHED), ack_timeout=2.0)
        runner = asyncio.create_task(publisher.run())
        kept, failing = WATCHED[self.loc.id]
        municipality = MUNICIPALITY[self.loc.id]
        while not until.is_set():
            now = time.time()
            await publisher.state(municipality, kept, now, "up")
            await publisher.state(municipality, failing, now,
                                  "down" if self.failing else "up")
            self.sent += 2
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(until.wait(), REPORT)
        await asyncio.wait_for(outbox.drained(), 60)
        publisher.stop()
        await asyncio.wait_for(runner, 10)
        await outbox.close()


def _rows(store: Path, query: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5) as db:
        return db.execute(query).fetchall()


def progress(store: Path) -> dict[str, tuple[int, int]]:
    return {src: (applied, events) for src, applied, events in
            _rows(store, "SELECT src, applied, events FROM source_progress")}


def _alert_history(store: Path) -> list[tuple[str, str, str, float]]:
    """Device alerts' transitions, in order: (rule, device, state, when)."""
    rows = _rows(store, "SELECT a.rule, a.body, l.state, l.ts FROM alert_log l JOIN alert a "
                        "ON a.fingerprint = l.fingerprint ORDER BY l.fingerprint, l.ts")
    history = []
    for rule, body, state, ts in rows:
        device = json.loads(body)["labels"].get("device")
        if device is not None:
            history.append((rule, device, state, ts))
    return history


def _unreachable_raised(store: Path) -> list[str]:
    rows = _rows(store, "SELECT a.body FROM alert_log l JOIN alert a "
                        "ON a.fingerprint = l.fingerprint WHERE a.rule = 'LocationUnreachable' "
                        "AND l.state = 'firing'")
    return sorted({json.loads(body)["labels"]["instance"] for (body,) in rows})


async def _wait_procs(procs: list[subprocess.Popen[bytes]], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while any(p.poll() is None for p in procs):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.2)
    return True


async def test_a_120_s_partition_with_both_sides_publishing(bed: Bed, sink: Sink) -> None:
    engine_conf, collector_conf = estate(bed)
    stores = {loc: bed.workdir / "estate" / f"engine-{loc}.db" for loc in WATCHED}
    for loc in (bed.hammerfest, bed.alta):  # Alta's bridge dials Hammerfest
        bed.start_broker(loc)
    engines = {loc.id: start_engine(loc, engine_conf, sink.port) for loc in bed.locations}
    for loc in bed.locations:
        await asyncio.to_thread(wait_port, HTTP_PORT, 60, loc.address)
    producers = [start_producer(loc, collector_conf, TOTAL, RATE) for loc in bed.locations]
    pollers = [Poller(bed, loc) for loc in bed.locations]
    stop_polling = asyncio.Event()
    polling = [asyncio.create_task(p.run(stop_polling)) for p in pollers]
    try:
        await asyncio.sleep(PRE)
        bed.cut()
        cut_at = time.monotonic()
        own_at_cut = _own_progress(stores)
        await asyncio.sleep(10)
        for poller in pollers:
            poller.failing = True
        await asyncio.sleep(48)
        own_gain = {loc: n - own_at_cut[loc] for loc, n in _own_progress(stores).items()}
        await asyncio.sleep(PARTITION - 58)
        bed.heal()
        healed_at = time.monotonic()
        caught_up = asyncio.create_task(catch_up(stores, healed_at))
        await asyncio.sleep(5)
        for poller in pollers:
            poller.failing = False
        await asyncio.sleep(REPORT + 1)
        stop_polling.set()
        assert await _wait_procs(producers, POST + 90), _logs(bed)
        assert [0, 0] == [p.returncode for p in producers], _logs(bed)
        await asyncio.wait_for(asyncio.gather(*polling), 90)
        complete_at = time.monotonic()
        lag = await asyncio.wait_for(caught_up, 60)
        want = {"producer-alta": (TOTAL, TOTAL), "producer-hammerfest": (TOTAL, TOTAL),
                **{f"poller-{p.loc.id}": (p.sent, p.sent) for p in pollers}}
        await asyncio.sleep(3)  # the engines' last tick: resolutions, notification log
    finally:
        stop_polling.set()
        for engine in engines.values():
            engine.terminate()
        for engine in engines.values():
            engine.wait(timeout=20)
    print(f"\neach engine had what the other location's producer sent before the heal "
          f"{lag['alta']:.1f} s (Alta) and {lag['hammerfest']:.1f} s (Hammerfest) after it")
    print(f"partition {healed_at - cut_at:.0f} s; every event at both engines "
          f"{complete_at - healed_at:.1f} s after the heal; {TOTAL:,} events per producer, "
          f"{pollers[0].sent + pollers[1].sent} poller events")
    # Each engine's own location is not held back by the peer it cannot hear: 58 s into
    # the partition its own producer's events are there up to the last 5 s (before, a
    # peer heard from within 60 s held the send window, and a full window stalled the
    # local engine until then).
    print(f"own producer's events at its own engine 58 s into the partition: {own_gain}")
    assert all(gain >= RATE * (58 - 5) for gain in own_gain.values()), own_gain
    for where, store in stores.items():
        got = {src: v for src, v in progress(store).items() if src in want}
        assert want == got, (where, got)
    alta, hammerfest = (_rows(s, "SELECT component, src, start, last, state, validity "
                                 "FROM sla_run ORDER BY component, src, start")
                        for s in stores.values())
    assert alta == hammerfest
    assert {r[0] for r in alta} == {f"device:{d}" for pair in WATCHED.values() for d in pair}
    assert _alert_history(stores["alta"]) == _alert_history(stores["hammerfest"])
    assert sorted(h[:3] for h in _alert_history(stores["alta"])) == sorted(
        ("DeviceDown", failing, state) for _, failing in WATCHED.values()
        for state in ("pending", "firing", "resolved"))
    print(f"SLA ledger: {len(alta)} runs, equal; alert log: "
          f"{len(_alert_history(stores['alta']))} device transitions, equal")
    assert ["hammerfest"] == _unreachable_raised(stores["alta"])
    assert ["alta"] == _unreachable_raised(stores["hammerfest"])
    for own, (_, failing) in WATCHED.items():
        other = "hammerfest" if own == "alta" else "alta"
        assert 1 == len(sink.sent(own, "DeviceDown", failing)), sink.received
        assert 0 == len(sink.sent(other, "DeviceDown", failing)), sink.received
        assert 1 == len(_resolved(sink, own, failing)), sink.received
        assert 0 == len(_resolved(sink, other, failing)), sink.received
    assert complete_at - healed_at < 60, "catch-up took longer than the bound"


def _own_progress(stores: dict[str, Path]) -> dict[str, int]:
    return {loc: progress(store).get(f"producer-{loc}", (0, 0))[0]
            for loc, store in stores.items()}


async def catch_up(stores: dict[str, Path], healed_at: float) -> dict[str, float]:
    """How long after the heal each engine had the other location's producer's
    events up to where that location's own engine was at the heal."""
    at_heal = {loc: progress(store).get(f"producer-{loc}", (0, 0))[0]
               for loc, store in stores.items()}
    lag: dict[str, float] = {}
    while len(lag) < len(stores):
        for loc, store in stores.items():
            other = next(o for o in stores if o != loc)
            if loc not in lag and progress(store).get(
                    f"producer-{other}", (0, 0))[0] >= at_heal[other]:
                lag[loc] = time.monotonic() - healed_at
        await asyncio.sleep(0.2)
    return lag


def _resolved(sink: Sink, engine: str, device: str) -> list[float]:
    return [at for at, path, body in sink.received
            if path == f"/{engine}" and body["status"] == "resolved"
            and any(a.get("device") == device for a in body["alerts"])]


def _logs(bed: Bed) -> str:
    parts = []
    for loc in bed.locations:
        for name in ("engine.log", "producer.log", "mosquitto.log"):
            path = loc.workdir / name
            if path.exists():
                parts.append(f"--- {loc.id}/{name}\n"
                             + path.read_text(errors="replace")[-2500:])
    return "\n".join(parts)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-s"]))
