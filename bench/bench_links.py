"""The links worked out by the engine (monitor.links) on the example estate.

    python -m bench.bench_links

The example estate (deploy/examples/vest-finnmark: 3,388 devices, 159 switches,
routers and firewalls) with every parent taken out but the tree's top: every device
is placed by the links alone. Each switch and router reports, as its LLDP table, the
parent and every child the estate declared (PCs included, as if every NIC spoke
LLDP: the worst case, 3,381 links). Measured, each the median of several runs:

- the whole walk with every table in (an engine starting with its store);
- one switch's table arriving again unchanged (every ``topology.interval``, for each
  switch: the cost the engine pays most);
- a cable moved (an access switch gets a link to another distribution switch): the
  walk, and the rules taking the new parents (what hangs below is looked at again).

Printed with the machine.
"""

from __future__ import annotations

import dataclasses
import statistics
import tempfile
import textwrap
import time
from pathlib import Path

from bench.common import EXAMPLE, machine
from monitor.config import Config, Device, load_config
from monitor.events import Neighbour
from monitor.fields import DeviceClass
from monitor.links import Links, LinkView
from monitor.rules.evaluator import RuleEngine
from monitor.rules.inventory import Inventory
from monitor.rules.model import load_rules

RUNS = 7
NETWORK: list[DeviceClass] = ["switch", "router", "firewall"]


def _estate() -> tuple[Config, dict[str, list[Neighbour]], list[str]]:
    config = load_config(EXAMPLE)
    devices = config.devices
    children: dict[str, list[str]] = {}
    for d in devices.values():
        for p in d.uplinks:
            children.setdefault(p, []).append(d.id)
    roots = sorted(d for d in children if not devices[d].uplinks)
    tables: dict[str, list[Neighbour]] = {}
    for d in devices.values():
        if d.device_class not in NETWORK:
            continue
        rows = [Neighbour("lldp", f"to-{c}", devices[c].name, "uplink")
                for c in children.get(d.id, [])]
        rows += [Neighbour("lldp", "uplink", devices[p].name, f"to-{d.id}")
                 for p in d.uplinks]
        tables[d.id] = rows
    bare: dict[str, Device] = {i: dataclasses.replace(d, parent=None, parents=[])
                               for i, d in devices.items()}
    object.__setattr__(config, "devices", bare)
    object.__setattr__(config, "topology", dataclasses.replace(
        config.topology, roots=roots, classes=NETWORK))
    return config, tables, roots


def _ms(values: list[float]) -> str:
    return (f"{statistics.median(values) * 1000:.2f} ms (min {min(values) * 1000:.2f}, "
            f"max {max(values) * 1000:.2f})")


def main() -> None:
    config, tables, roots = _estate()
    rows = sum(len(t) for t in tables.values())
    now = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        rules_file = Path(tmp) / "rules.yaml"
        rules_file.write_text(textwrap.dedent("""
            rules:
              - {name: DeviceDown, kind: state, severity: critical, states: [down], for: 2m}
              - {name: InterfaceDown, kind: state, subject: interface, severity: warning,
                 states: [down]}
            """), encoding="utf-8")
        rules = RuleEngine(load_rules(rules_file), Inventory.from_config(config), started=now)

    def put_in_force(view: LinkView, at: float) -> None:
        rules.links_changed(view.parents, view.ports, at)

    links = Links(config, clock=lambda: now)
    links.put_in_force = put_in_force
    for device, table in tables.items():
        links.take(device, table, now)
    cold = []
    for _ in range(RUNS):
        links.view = LinkView()  # as at start: everything placed anew
        started = time.perf_counter()
        links.refresh(now)
        cold.append(time.perf_counter() - started)
    placed = len(links.view.parents)
    again = []
    switches = sorted(tables)
    for device in switches[:RUNS * 10]:
        started = time.perf_counter()
        links.take(device, tables[device], now + 1)
        links.changes()
        again.append(time.perf_counter() - started)
    # a cable moved: an access switch gets a link to another distribution switch (the
    # old link is kept until forget_after: it hangs on both for that long)
    moving = next(d for d in switches if links.view.parents.get(d)
                  and links.view.parents[d][0] not in roots and d not in roots)
    old = links.view.parents[moving][0]
    def depth(device: str) -> int:
        return len(list(rules.inventory.ancestors(device)))

    others = [d for d in switches if d not in (moving, old) and depth(d) == depth(old)]
    moved = []
    for turn, there in enumerate(others[:RUNS]):
        at = now + 2 + turn
        links.take(there, [*tables[there], Neighbour(
            "lldp", f"to-{moving}", config.devices[moving].name, "uplink")], at)
        links.take(moving, [*tables[moving], Neighbour(
            "lldp", f"uplink-{turn}", config.devices[there].name, f"to-{moving}")], at)
        started = time.perf_counter()
        links.changes()
        moved.append(time.perf_counter() - started)
    assert len(rules.inventory.uplinks(moving)[0]) == 1 + len(moved)
    print(f"bench_links — {machine()}")
    print(f"  estate: {len(config.devices)} devices, {len(tables)} switches and routers "
          f"reporting {rows} rows; {placed} devices placed by the links alone")
    print(f"  the whole walk, every table in:       {_ms(cold)}")
    print(f"  one switch's table again, unchanged:  {_ms(again)}")
    print(f"  a cable moved, with the rules:        {_ms(moved)}")


if __name__ == "__main__":
    main()
