"""Reading the example estate again in a running engine (SIGHUP, ``POST /-/reload``).

    python -m bench.bench_reload

The example estate (deploy/examples/vest-finnmark: 7 municipalities, 3,388 devices),
an engine of Alta on it, with a real mosquitto. Every device Alta watches has
reported its state once (each a state event through the broker, so the rules and
the state hold all of them). Timed, from the call to the estate in force and
committed, median of 5 each: a reload of the unchanged estate, and one that adds a
site of 50 switches and removes 10 PCs (and back, alternately). The example's
notifications are left out: nothing is sent from a benchmark. Printed with the
machine.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import aiomqtt
import yaml

from bench.common import example_estate, machine
from monitor.app import start_engine
from monitor.config import load_config
from tests.servers import Mosquitto

RUNS = 5


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        with Mosquitto(tmp / "broker") as broker:
            estate = example_estate(tmp, broker.port)
            config = load_config(estate)
            app = await start_engine(config, "alta", http_port=0)
            try:
                ours = [d for d in config.devices if config.location_of(d) == "alta"]
                async with aiomqtt.Client("127.0.0.1", broker.port) as client:
                    for seq, device in enumerate(ours, 1):
                        m = config.municipality_of(device)
                        await client.publish(
                            f"driftsvakt/v1/alta/{m}/{device}/state/bench-reload",
                            f'{{"v":1,"ts":{time.time()},"src":"bench-reload","seq":{seq},'
                            f'"device":"{device}","state":"up"}}', qos=1)
                for _ in range(300):  # at most a minute for the engine to hold them all
                    if len(app.engine.ingest.state.devices) >= len(ours):
                        break
                    await asyncio.sleep(0.2)
                print(f"bench_reload: {len(config.devices)} devices in the estate, "
                      f"{len(app.engine.ingest.state.devices)} with state in Alta's engine; "
                      f"{machine()}")
                same, blocked = [], []
                for _ in range(RUNS):
                    change = await app.estate.reload("bench")
                    same.append(change.seconds)
                    blocked.append(change.blocking)
                pcs = [d for d in ours if config.devices[d].device_class == "pc"][:10]
                extra = estate / "bench-site.yaml"
                timed = []
                for run in range(RUNS * 2):
                    if run % 2 == 0:
                        extra.write_text(yaml.safe_dump({
                            "sites": [{"id": "bench-site", "name": "Bench",
                                       "location": "alta", "municipality": "alta"}],
                            "devices": [{"id": f"bench-sw{i}", "name": f"bench-sw{i}",
                                         "class": "switch", "site": "bench-site"}
                                        for i in range(50)]}), encoding="utf-8")
                        pcs_file = estate / "pcs.yaml"
                        kept = yaml.safe_load(pcs_file.read_text(encoding="utf-8"))
                        backup = pcs_file.read_text(encoding="utf-8")
                        kept["devices"] = [d for d in kept["devices"] if d["id"] not in pcs]
                        pcs_file.write_text(yaml.safe_dump(kept, allow_unicode=True),
                                            encoding="utf-8")
                    else:
                        extra.unlink()
                        (estate / "pcs.yaml").write_text(backup, encoding="utf-8")
                    change = await app.estate.reload("bench")
                    assert change.reloaded, change.problems[:3]
                    if run % 2 == 0:
                        assert (len(change.added), len(change.removed)) == (50, 10)
                        timed.append(change.seconds)
                        blocked.append(change.blocking)
            finally:
                await app.stop()
    print(f"  unchanged estate:          median {statistics.median(same) * 1000:.0f} ms "
          f"({', '.join(f'{s * 1000:.0f}' for s in same)})")
    print(f"  +50 devices, -10 devices:  median {statistics.median(timed) * 1000:.0f} ms "
          f"({', '.join(f'{s * 1000:.0f}' for s in timed)})")
    print(f"  of which the event loop was held (the one step), all 10: median "
          f"{statistics.median(blocked) * 1000:.0f} ms, at most {max(blocked) * 1000:.0f} ms")


if __name__ == "__main__":
    asyncio.run(main())
