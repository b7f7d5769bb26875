"""Agents registering into a running engine on the example estate.

    python -m bench.bench_registration

The example estate (deploy/examples/vest-finnmark: 7 municipalities, 3,388 devices)
with an enrolment token per municipality and a placement rule per site (a /24 each),
Loppa and Hasvik approving each agent, the others accepting; an engine of Alta with a
real mosquitto. 2,000 new agents register at once (a morning's roll-out, or the PCs
of a region after a power cut), each its own source with a valid proof, published
200 in flight from one client: the time the engine's ingest spent on them (its batch
histogram), and the wall time from the first publish until the engine holds every
registration and every accepted agent is a device of the estate (one publishing
client on the same two cores is most of that); then the same
2,000 again (the agents restarting: each placed anew, nothing changes); then a
reload of the estate's files with the registered agents in it. Three runs of each,
new agents each run; medians printed with the machine.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import aiomqtt
import msgspec
import yaml

from bench.common import example_estate, machine
from monitor.app import EngineApp, start_engine
from monitor.config import load_config
from monitor.enrolment import proof
from tests.servers import Mosquitto

AGENTS = 2000
RUNS = 3
APPROVING = ("loppa", "hasvik")


def _enrolment(estate: Path, sites: list[tuple[str, str]]) -> None:
    municipalities = sorted({m for _, m in sites})
    (estate / "enrolment.yaml").write_text(yaml.safe_dump({"enrolment": {
        "tokens": [{"municipality": m, "token": {"env": f"BENCH_TOKEN_{m.upper()}"},
                    "policy": "approve" if m in APPROVING else "accept"}
                   for m in municipalities],
        "placement": [{"subnet": f"10.{100 + i // 250}.{i % 250}.0/24", "site": site}
                      for i, (site, _) in enumerate(sites)]}}), encoding="utf-8")


def _registrations(run: str, sites: list[tuple[str, str]], secrets: dict[str, str],
                   seq: int) -> list[tuple[str, bytes]]:
    """Each agent's registration as its ``seq``-th event (a restarted agent's outbox
    goes on counting)."""
    out = []
    for n in range(AGENTS):
        i = n % len(sites)
        m = sites[i][1]
        device, machine_id = f"{run}-pc{n}", f"{run}-machine-{n}"
        body = {"v": 1, "ts": time.time(), "src": device, "seq": seq, "device": device,
                "hostname": f"{device}.{m}.kommune.no", "os": "Windows-10-10.0.19045",
                "machine_id": machine_id, "addresses": [f"10.{100 + i // 250}.{i % 250}.7"],
                "proof": proof(secrets[m], m, device, machine_id)}
        out.append((f"driftsvakt/v1/alta/{m}/{device}/register/{device}",
                    msgspec.json.encode(body)))
    return out


def _busy(app: EngineApp) -> float:
    """Seconds the engine spent applying batches so far (its batch histogram's sum)."""
    for family in app.engine.metrics.batch_seconds.collect():
        for sample in family.samples:
            if sample.name.endswith("_sum"):
                return float(sample.value)
    raise AssertionError("no batch histogram")


async def _register(app: EngineApp, port: int, messages: list[tuple[str, bytes]],
                    again: bool) -> float:
    agents = app.estate.agents
    assert agents is not None
    busy_before = _busy(app)
    devices = [t.split("/")[4] for t, _ in messages]
    seen = {d: agents.rows[d].changed for d in devices} if again else {}
    started = time.perf_counter()
    async with aiomqtt.Client("127.0.0.1", port, max_queued_outgoing_messages=0) as client:
        for start in range(0, len(messages), 200):  # 200 in flight, as many agents would be
            await asyncio.gather(*(client.publish(t, p, qos=1)
                                   for t, p in messages[start:start + 200]))
    sent = time.perf_counter() - started
    for _ in range(1200):  # at most two minutes
        rows = agents.rows
        done = all(d in rows and rows[d].changed != seen.get(d) for d in devices)
        accepted = [d for d in devices if d in rows and rows[d].status == "accepted"]
        if done and all(d in app.estate.config.devices for d in accepted):
            took = time.perf_counter() - started
            busy = _busy(app) - busy_before
            print(f"    {len(messages)} published in {sent:.2f} s, all taken in {took:.2f} s; "
                  f"the engine's ingest busy {busy:.2f} s "
                  f"({busy / len(messages) * 1000:.2f} ms a registration)")
            return busy
        await asyncio.sleep(0.05)
    raise AssertionError("registrations not all taken within two minutes")


async def main() -> None:
    import logging
    import os

    logging.getLogger("mqtt").setLevel(logging.ERROR)  # 200 publishes in flight is meant

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        with Mosquitto(tmp / "broker") as broker:
            estate = example_estate(tmp, broker.port)
            base = load_config(estate)
            sites = [(s.id, s.municipality) for s in base.sites.values()]
            secrets = {m: f"bench-{m}-secret" for m in base.municipalities}
            for m, secret in secrets.items():
                os.environ[f"BENCH_TOKEN_{m.upper()}"] = secret
            _enrolment(estate, sites)
            config = load_config(estate)
            app = await start_engine(config, "alta", http_port=0)
            first, again, reloads = [], [], []
            try:
                for _ in range(600):  # subscribed: nothing published from now is lost
                    if app.engine.connected:
                        break
                    await asyncio.sleep(0.05)
                print(f"bench_registration: {len(config.devices)} devices in the estate, "
                      f"{len(sites)} sites, {AGENTS} agents a run; {machine()}")
                for run in range(RUNS):
                    messages = _registrations(f"r{run}", sites, secrets, 1)
                    first.append(await _register(app, broker.port, messages, again=False))
                    messages = _registrations(f"r{run}", sites, secrets, 2)
                    again.append(await _register(app, broker.port, messages, again=True))
                    change = await app.estate.reload("bench")
                    assert change.reloaded, change.problems[:3]
                    assert not change.removed, change.removed[:3]
                    reloads.append(change.seconds)
                agents = app.estate.agents
                assert agents is not None
                held = sum(1 for r in agents.rows.values() if r.status == "pending")
                joined = len(agents.in_force)
            finally:
                await app.stop()

    def line(what: str, values: list[float]) -> str:
        rate = AGENTS / statistics.median(values)
        return (f"  {what:<34} engine busy, median {statistics.median(values):.2f} s "
                f"({', '.join(f'{v:.2f}' for v in values)}): {rate:,.0f} registrations/s")
    print(line("2,000 new agents register:", first))
    print(line("the same 2,000 again (restarts):", again))
    print(f"  {'reload, with the agents in it:':<34} median "
          f"{statistics.median(reloads):.2f} s ({', '.join(f'{v:.2f}' for v in reloads)}); "
          f"{joined} agents accepted into the estate, {held} held for approval")


if __name__ == "__main__":
    asyncio.run(main())
