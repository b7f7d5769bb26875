"""The links in force (monitor.links): switches' neighbour tables give parents to the
devices with none declared, and ports to watch; the rules take them. The network is
drawn below; every expected parent, port and alert is read off the drawing.

::

    core ─ Gi1/0/1 ═ Gi0/49 ─ dist ─ Gi0/1 ═ Gi0/24 ─ acc1 ─ Gi0/5 ═ eth0 ─ pc7 (a PC)
     │                         ├─── Gi0/2 ═ Gi0/24 ─ acc2   (declared under core: wrong)
     │                         └─── Gi0/3 ═ eno1 ─── srv    (a server; reports nothing)
     └ Gi1/0/48 ═ xe-0/0/1 ─ the provider's router (not in the estate)

No parent is declared but acc2's; ``topology.roots`` is core. acc2 reports no table.
"""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import yaml

from monitor.config import Config, load_config
from monitor.events import (
    DeviceTopic,
    Event,
    MetricsEvent,
    Neighbour,
    NeighboursEvent,
    Rejected,
    Sample,
    StateEvent,
)
from monitor.links import Links, LinkView
from monitor.rules.evaluator import RuleEngine
from monitor.rules.inventory import Inventory
from monitor.rules.model import load_rules
from monitor.state import State

T0 = 1_800_000_000.0
FORGET = 3600.0

TABLES = {
    "core": [Neighbour("lldp", "Gi1/0/1", "dist.kommune.local", "Gi0/49"),
             Neighbour("lldp", "Gi1/0/48", "isp-gw", "xe-0/0/1")],
    "dist": [Neighbour("lldp", "Gi0/49", "core", "Gi1/0/1"),
             Neighbour("cdp", "Gi0/1", "ACC1(FOC1234)", "Gi0/24"),
             Neighbour("cdp", "Gi0/2", "acc2", "Gi0/24"),
             Neighbour("lldp", "Gi0/3", "srv.kommune.local", "eno1")],
    "acc1": [Neighbour("lldp", "Gi0/24", "dist", "Gi0/1"),
             Neighbour("lldp", "Gi0/5", "pc7", "eth0")],
}

RULES = """
rules:
  - name: DeviceDown
    kind: state
    severity: critical
    states: [down]
    for: 1m
  - name: InterfaceDown
    kind: state
    subject: interface
    severity: warning
    states: [down]
"""


def _config(tmp: Path, parents: dict[str, str] | None = None,
            roots: list[str] | None = None) -> Config:
    declared = parents or {"acc2": "core"}
    classes = {"core": "switch", "dist": "switch", "acc1": "switch", "acc2": "switch",
               "srv": "server", "pc7": "pc"}
    tmp.mkdir(exist_ok=True)
    path = tmp / "estate.yaml"
    path.write_text(yaml.safe_dump({
        "locations": [{"id": "alta", "name": "Alta"}],
        "municipalities": [{"id": "alta", "name": "Alta"}],
        "sites": [{"id": "s", "name": "S", "location": "alta", "municipality": "alta"}],
        "devices": [{"id": d, "name": d.upper(), "class": c, "site": "s",
                     "address": f"10.0.0.{i}",
                     **({"parent": declared[d]} if d in declared else {})}
                    for i, (d, c) in enumerate(classes.items(), 1)],
        "topology": {"roots": ["core"] if roots is None else roots,
                     "forget_after": FORGET}}),
        encoding="utf-8")
    return load_config(path)


class Rig:
    """Links and the rules wired as the engine wires them (monitor.app)."""

    def __init__(self, tmp: Path, parents: dict[str, str] | None = None,
                 roots: list[str] | None = None) -> None:
        self.config = _config(tmp, parents, roots)
        self.now = T0
        self.links = Links(self.config, clock=lambda: self.now)
        (tmp / "rules.yaml").write_text(textwrap.dedent(RULES), encoding="utf-8")
        self.rules = RuleEngine(load_rules(tmp / "rules.yaml"),
                                Inventory.from_config(self.config), started=T0)
        self.links.put_in_force = self.put_in_force
        self.state = State()
        self.seq = 0

    def put_in_force(self, view: LinkView, now: float) -> None:
        self.rules.links_changed(view.parents, view.ports, now)

    def send(self, event: Event) -> None:
        topic = DeviceTopic("alta", "alta", event.device, "x")
        self.state.apply(topic, event)
        self.links.on_event(topic, event, self.state)
        self.rules.on_event(topic, event, self.state)

    def base(self, device: str, at: float) -> dict[str, object]:
        self.seq += 1
        self.now = T0 + at
        return {"v": 1, "ts": T0 + at, "src": "t", "seq": self.seq, "device": device}

    def tables(self, at: float, tables: dict[str, list[Neighbour]] | None = None) -> None:
        for device, rows in (TABLES if tables is None else tables).items():
            self.send(NeighboursEvent(**self.base(device, at), neighbours=rows))  # type: ignore[arg-type]
        self.links.changes()  # the batch's end

    def state_of(self, device: str, at: float, state: str) -> None:
        self.send(StateEvent(**self.base(device, at), state=state))  # type: ignore[arg-type]

    def firing(self, at: float) -> set[tuple[str, str]]:
        self.rules.tick(T0 + at, self.state)
        return {(a.rule, a.device or "") for a in self.rules.alerts.values()
                if a.state == "firing"}


def test_parents_and_ports_from_the_tables(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.tables(0)
    view = rig.links.view
    assert {"dist": ("core",), "acc1": ("dist",), "srv": ("dist",), "pc7": ("acc1",)} == \
        view.parents
    # declared wins: acc2 stays under core, the cabling's dist reported as differing
    inventory = rig.rules.inventory
    assert (("core",), 1) == inventory.uplinks("acc2")
    assert ("differs", ["dist"]) == (view.report.placements["acc2"].verdict,
                                     view.report.placements["acc2"].parents)
    # ports between switches, and each device's own port to its parent; not the
    # switch's ports to the PC, the server or the provider
    assert {"core": frozenset({"Gi1/0/1"}), "dist": frozenset({"Gi0/49", "Gi0/1", "Gi0/2"}),
            "acc1": frozenset({"Gi0/24"})} == view.ports
    assert ["acc1", "pc7", "srv"] == sorted(inventory.descendants("dist"))  # not acc2
    assert {"acc1", "pc7", "srv"} == set(inventory.dependents("dist"))


def test_behind_a_failed_switch_unreachable_by_the_links(tmp_path: Path) -> None:
    """dist fails and takes acc1, the PC and the server with it: one page, for dist,
    saying 3 behind it (acc1, srv, pc7); without the tables, four pages."""
    for with_links in (False, True):
        rig = Rig(tmp_path / str(with_links))
        for device in ("core", "dist", "acc1", "acc2", "srv", "pc7"):
            rig.state_of(device, 0, "up")
        if with_links:
            rig.tables(1)
        for device in ("acc1", "srv", "pc7", "dist"):
            rig.state_of(device, 10, "down")
        fired = rig.firing(75)
        if with_links:
            assert {("DeviceDown", "dist")} == fired
            (alert,) = [a for a in rig.rules.alerts.values() if a.state == "firing"]
            assert 3 == alert.behind
            assert "unreachable" == rig.rules.topology.effective_state("acc1")
        else:
            assert {("DeviceDown", d) for d in ("dist", "acc1", "srv", "pc7")} == fired


def test_tables_that_come_after_the_failure_still_count(tmp_path: Path) -> None:
    """The poller reads the tables after the devices went down (a restart): acc1's
    pending DeviceDown goes when the links put it behind dist."""
    rig = Rig(tmp_path)
    for device in ("core", "dist", "acc1"):
        rig.state_of(device, 0, "up")
    rig.state_of("acc1", 10, "down")
    rig.state_of("dist", 10, "down")
    rig.tables(30)
    assert {("DeviceDown", "dist")} == rig.firing(75)


def test_a_failed_switch_keeps_its_links_until_forget_after(tmp_path: Path) -> None:
    """dist fails: core's next table no longer has it, and dist's cannot be read. Its
    links are kept, so acc1 stays unreachable, until they are FORGET old."""
    rig = Rig(tmp_path)
    rig.tables(0)
    for device in ("core", "dist", "acc1"):
        rig.state_of(device, 1, "up")
    rig.state_of("dist", 10, "down")
    rig.state_of("acc1", 10, "down")
    rig.tables(900, {"core": [TABLES["core"][1]]})  # the provider only
    assert ("dist",) == rig.rules.inventory.uplinks("acc1")[0]
    assert "unreachable" == rig.rules.topology.effective_state("acc1")
    rig.now = T0 + FORGET + 1  # dist's and acc1's tables, read at 0, are forgotten
    rig.links.refresh(rig.now)
    assert "dist" not in rig.links.view.parents
    assert ((), 1) == rig.rules.inventory.uplinks("acc1")
    assert "down" == rig.rules.topology.effective_state("acc1")


def test_the_ports_the_links_show_are_watched(tmp_path: Path) -> None:
    """acc1's uplink, down when the engine first hears of it, fires; its port to the
    PC, down as well, does not (a PC switched off is no news)."""
    rig = Rig(tmp_path)
    rig.tables(0)
    for ifname in ("Gi0/24", "Gi0/5"):
        rig.send(MetricsEvent(**rig.base("acc1", 5), samples=[  # type: ignore[arg-type]
            Sample("if_admin_status", 1, {"ifname": ifname}),
            Sample("if_oper_status", 2, {"ifname": ifname})]))
    assert [{"ifname": "Gi0/24"}] == [
        {k: v for k, v in a.labels.items() if k == "ifname"}
        for a in rig.rules.alerts.values() if a.state == "firing"]


def test_a_proposal_that_would_close_a_loop_is_left_out(tmp_path: Path) -> None:
    """core declared under dist (the estate says so), while the walk from core puts dist
    under core: the declared parent wins and dist gets none from the links."""
    rig = Rig(tmp_path, {"core": "dist"})
    rig.tables(0)
    assert "dist" not in rig.links.view.parents
    assert (("dist",), 1) == rig.rules.inventory.uplinks("core")
    assert ((), 1) == rig.rules.inventory.uplinks("dist")
    assert ("acc1",) == rig.rules.inventory.uplinks("pc7")[0]  # the rest as drawn


def test_what_the_store_keeps_gives_the_same_links(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    for device, rows in TABLES.items():
        rig.send(NeighboursEvent(**rig.base(device, 0), neighbours=rows))  # type: ignore[arg-type]
    stored = rig.links.changes()
    assert ["acc1", "core", "dist"] == [d for d, _, _ in stored]
    again = Links(rig.config, clock=lambda: T0 + 1)
    again.load([(d, body) for d, body, _ in stored])
    assert rig.links.view == again.refresh(T0 + 1)
    assert [] == rig.links.changes()  # nothing new: nothing to write


def test_only_the_estates_network_gear_speaks_of_links(tmp_path: Path) -> None:
    """The server, the PC and a registered agent are refused, each saying why; a
    switch's table passes, and other streams pass untouched."""
    rig = Rig(tmp_path)
    rig.links.registered = lambda device: device == "acc2"
    topic = DeviceTopic("alta", "alta", "x", "neighbours")

    def why(device: str) -> str | None:
        event = NeighboursEvent(**rig.base(device, 0), neighbours=[])  # type: ignore[arg-type]
        try:
            rig.links.check(topic, event)
        except Rejected as exc:
            return f"{exc.reason}: {exc.detail}"
        return None

    assert None is why("dist")
    assert "topology: 'srv' is a server, not one of topology.classes (switch, router)" == \
        why("srv")
    assert "topology: 'pc7' is a pc, not one of topology.classes (switch, router)" == why("pc7")
    assert ("topology: 'acc2' is not a device of the estate's files: its neighbour tables "
            "are not taken") == why("acc2")
    assert ("topology: 'nobody' is not a device of the estate's files: its neighbour tables "
            "are not taken") == why("nobody")
    rig.links.check(topic, StateEvent(**rig.base("srv", 0), state="down"))  # type: ignore[arg-type]


def test_a_neighbours_new_address_is_matched_again(tmp_path: Path) -> None:
    """The same CDP row (same ports, same name) now giving pc7's address: the link is
    matched anew though no row was added or removed."""
    rig = Rig(tmp_path)
    row = Neighbour("cdp", "Gi0/7", "SEP00AABBCC", "Port 1", "10.0.0.99")
    core = TABLES["core"][:1]
    rig.tables(0, {"core": core, "dist": [TABLES["dist"][0], row]})
    assert "pc7" not in rig.links.view.parents
    moved = Neighbour("cdp", "Gi0/7", "SEP00AABBCC", "Port 1", "10.0.0.6")
    rig.tables(60, {"core": core, "dist": [TABLES["dist"][0], moved]})
    assert ("dist",) == rig.links.view.parents["pc7"]


def test_discovery_off_leaves_only_the_declared_parents(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.tables(0)
    assert rig.links.view.parents
    object.__setattr__(rig.config, "topology",
                       dataclasses.replace(rig.config.topology, discover=False))
    rig.links.estate_changed()  # a reload that turned it off
    assert {} == rig.links.view.parents
    assert ((), 1) == rig.rules.inventory.uplinks("acc1")
    assert (("core",), 1) == rig.rules.inventory.uplinks("acc2")  # declared


def test_without_roots_the_walk_starts_at_the_top_of_the_declared_tree(
        tmp_path: Path) -> None:
    """No roots given; the estate declares dist under core, and pc7 under acc1 (and
    nothing above acc1). Both core and acc1 have declared children and no parent, but
    only core has network gear below it: the walk starts there, and acc1 hangs on dist
    as cabled — not dist on acc1."""
    rig = Rig(tmp_path, {"dist": "core", "pc7": "acc1"}, roots=[])
    rig.tables(0)
    assert {"acc1": ("dist",), "acc2": ("dist",), "srv": ("dist",)} == rig.links.view.parents
    assert "agrees" == rig.links.view.report.placements["dist"].verdict
