"""What a collector counted and could not pass on reaches Prometheus: its status's
counters as driftsvakt_collector_counted_total, by collector and kind."""

from __future__ import annotations

from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry, generate_latest

from monitor.config import load_config
from monitor.events import ComponentStatus
from monitor.metrics import StateCollector
from monitor.state import State


def test_a_collectors_counters_are_exposed(tmp_path: Path) -> None:
    path = tmp_path / "estate.yaml"
    path.write_text(yaml.safe_dump({
        "locations": [{"id": "alta", "name": "Alta"}],
        "municipalities": [{"id": "alta", "name": "Alta"}],
        "sites": [], "devices": []}), encoding="utf-8")
    state = State()
    state.apply_component("alta", "traps", "traps-alta", ComponentStatus(
        status="online", ts=1.0, component="traps", instance="traps-alta",
        counters={"trap_socket_drops": 243, "trap_not_snmp": 5}))
    registry = CollectorRegistry()
    registry.register(StateCollector(state, load_config(path), clock=lambda: 2.0))
    text = generate_latest(registry).decode()
    assert ('driftsvakt_collector_counted_total{component="traps",instance="traps-alta",'
            'location="alta",what="trap_socket_drops"} 243.0') in text
    assert ('driftsvakt_collector_counted_total{component="traps",instance="traps-alta",'
            'location="alta",what="trap_not_snmp"} 5.0') in text
