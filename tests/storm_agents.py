"""Many host agents in one process, for the storm test: each the real agent with its own
publisher, outbox and MQTT connection. Those behind the core reach the broker through
a relay (tests.servers.TcpLink) that SIGUSR1 cuts and SIGUSR2 restores, as a dark core
would cut them off; SIGTERM stops every agent and exits 0.

The agents' host readings are this machine's, but for the CPU: all of them would read
the one machine the test keeps busy (HighCpu would go pending on every server and
fire after 5 minutes), so they report a host at 5 %.

    python -m tests.storm_agents PLAN.json

PLAN: {"broker_port": int, "outboxes": dir, "interval": seconds,
       "agents": [{"id", "municipality", "class", "behind_core": bool,
                   "enrol": {"secret", "hostname", "addresses", "machine_id", "dn"}}, ...]}

An agent with ``enrol`` logs in as its municipality's enrolment identity with the
token's secret and registers first with the facts given (each simulated host its own
name, addresses and AD object), as the real agent does with its host's.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import signal
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec

from collectors.agent import run as agent_run
from collectors.agent.enrol import HostFacts
from collectors.agent.host import host_samples
from collectors.agent.run import Agent
from collectors.agent.settings import AgentSettings
from collectors.common.outbox import Outbox
from collectors.common.publisher import Publisher
from monitor.events import Sample
from monitor.fields import Broker
from monitor.logging import configure_logging
from tests.servers import TcpLink


def quiet_host(processes: Iterable[str] = ()) -> list[Sample]:
    return [msgspec.structs.replace(s, value=0.05) if s.name == "cpu_usage_ratio" else s
            for s in host_samples(processes)]


class NoServices:
    async def states(self, names: list[str]) -> dict[str, bool]:
        return {}


async def run(plan: dict[str, Any]) -> int:
    agent_run.host_samples = quiet_host  # type: ignore[attr-defined,assignment]
    link = TcpLink(plan["broker_port"])
    direct = Broker(location="alta", host="127.0.0.1", port=plan["broker_port"])
    relay = Broker(location="alta", host="127.0.0.1", port=link.port)
    outboxes: list[Outbox] = []
    agents: list[tuple[Publisher, Agent]] = []
    for entry in plan["agents"]:
        way = relay if entry.get("behind_core") else direct
        enrol = entry.get("enrol")
        if enrol is not None:
            way = dataclasses.replace(way, username=f"enrol-{entry['municipality']}")
        box = await Outbox.open(Path(plan["outboxes"]) / f"{entry['id']}.db")
        outboxes.append(box)
        publisher = Publisher(broker=way, location="alta", component="agent",
                              instance=entry["id"], outbox=box,
                              password=enrol["secret"] if enrol else None)
        settings = AgentSettings(location="alta", municipality=entry["municipality"],
                                 device=entry["id"], device_class=entry["class"],
                                 interval=plan["interval"], broker=way)
        if enrol is not None:
            facts = HostFacts(hostname=enrol["hostname"], os="Windows-10-10.0.19045",
                              addresses=enrol["addresses"], machine_id=enrol["machine_id"],
                              dn=enrol.get("dn"))
            await agent_run.register(publisher, settings, entry["id"], enrol["secret"],
                                     facts)
        agents.append((publisher, Agent(settings, publisher, NoServices(), entry["id"])))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, link.cut)
    loop.add_signal_handler(signal.SIGUSR2, link.restore)
    tasks = [asyncio.create_task(w.run()) for pair in agents for w in pair]
    print("ready", flush=True)
    await stop.wait()
    for publisher, agent in agents:
        agent.stop()
        publisher.stop()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
    for box in outboxes:
        await box.close()
    link.close()
    return 0


def main() -> int:
    configure_logging("warning", json=False)
    plan = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    return asyncio.run(run(plan))


if __name__ == "__main__":
    sys.exit(main())
