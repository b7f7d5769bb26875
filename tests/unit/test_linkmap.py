"""Parents proposed from neighbour tables, on a hand-drawn network: the expected
placements are read off the drawing, not computed."""

from __future__ import annotations

from pathlib import Path

import yaml

from monitor.config import load_config
from monitor.events import Neighbour
from monitor.linkmap import propose

#   core ── Gi1/0/1 ─ Gi0/49 ── dist1 ── Gi0/1 ─ Gi0/24 ── acc1 ── Gi0/5 ─ eth0 ── ap
#    │                            └───── Gi0/2 ─ Gi0/24 ──┐
#    └─ Gi1/0/2 ─ Gi0/49 ── dist2 ── Gi0/4 ─ Gi0/23 ───── acc2   (two uplinks)
#                            └────── Gi0/3 ─ Gi0/24 ── acc3     (declared under dist1)
#    core Gi1/0/48 ── the provider's router (not in the estate)


def _config(tmp: Path):  # type: ignore[no-untyped-def]
    parents = {"core": None, "dist1": "core", "dist2": "core", "acc1": "dist1",
               "acc2": None, "acc3": "dist1", "ap": "acc1"}
    path = tmp / "estate.yaml"
    path.write_text(yaml.safe_dump({
        "locations": [{"id": "alta", "name": "Alta"}],
        "municipalities": [{"id": "alta", "name": "Alta"}],
        "sites": [{"id": "s", "name": "S", "location": "alta", "municipality": "alta"}],
        "devices": [{"id": d, "name": d.upper(), "class": "ap" if d == "ap" else "switch",
                     "site": "s", "address": f"10.0.0.{i}",
                     **({"parent": p} if p else {})}
                    for i, (d, p) in enumerate(parents.items(), 1)]}), encoding="utf-8")
    return load_config(path)


def test_parents_and_uplinks_from_both_ends(tmp_path: Path) -> None:
    config = _config(tmp_path)
    seen = {
        "core": [Neighbour("lldp", "Gi1/0/1", "DIST1.kommune.local", "Gi0/49"),
                 Neighbour("cdp", "Gi1/0/2", "dist2(SSI1234)", "Gi0/49"),
                 Neighbour("lldp", "Gi1/0/48", "isp-gw", "xe-0/0/1")],
        "dist1": [Neighbour("lldp", "Gi0/49", "core", "Gi1/0/1"),
                  Neighbour("lldp", "Gi0/1", "acc1", "Gi0/24"),
                  Neighbour("cdp", "Gi0/2", "sw-ukjent", "Gi0/24", address="10.0.0.5")],
        "dist2": [Neighbour("cdp", "Gi0/49", "core", "Gi1/0/2"),
                  Neighbour("cdp", "Gi0/3", "acc3", "Gi0/24"),
                  Neighbour("cdp", "Gi0/4", "acc2", "Gi0/23")],
        "acc1": [Neighbour("lldp", "Gi0/24", "dist1", "Gi0/1"),
                 Neighbour("lldp", "Gi0/5", "ap", "eth0")],
    }
    report = propose(config.devices, seen)
    got = {d: (p.parents, p.uplinks, p.verdict) for d, p in report.placements.items()}
    assert got == {
        "dist1": (["core"], ["Gi0/49"], "agrees"),
        "dist2": (["core"], ["Gi0/49"], "agrees"),
        "acc1": (["dist1"], ["Gi0/24"], "agrees"),
        # not asked itself: its ports as its parents saw them; found by address at dist1
        "acc2": (["dist1", "dist2"], ["Gi0/24", "Gi0/23"], "proposed"),
        "acc3": (["dist2"], ["Gi0/24"], "differs"),
        "ap": (["acc1"], ["eth0"], "agrees"),
    }
    assert [(link.device, link.port, link.other) for link in report.links
            if not link.known] == [("core", "Gi1/0/48", "isp-gw")]
    text = report.text()
    assert "acc2: parent dist1 (uplink Gi0/24), dist2 (uplink Gi0/23) — none declared: " \
           "proposed" in text
    assert "acc3: parent dist2 (uplink Gi0/24) — declared dist1: differs" in text
