"""The import map reads as the data flow: nothing imports upward.

Layers, lowest first: the contract and shared types (events, fields, secrets,
yamlmodel, rows, officehours, logging, and linkmap: the walk over neighbour tables
the poller and the engine share), the MQTT client and the small HTTP base
(mqtt, web); the collectors; the engine's store; its features (state, ingest,
rules, notify, sla, metrics, ...); the composition root (app, cli); the demo (demo/) apart. The
host agent, which runs on every PC, imports the contract and nothing of the engine.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FOUNDATION = {"monitor.events", "monitor.fields", "monitor.secrets", "monitor.yamlmodel",
              "monitor.rows", "monitor.officehours", "monitor.logging", "monitor.enrolment",
              "monitor.linkmap"}
ENGINE_FEATURES = ("monitor.app", "monitor.engine", "monitor.ingest", "monitor.state",
                   "monitor.rules", "monitor.notify", "monitor.sla", "monitor.store",
                   "monitor.web.api", "monitor.web.console", "monitor.web.auth", "monitor.metrics",
                   "monitor.exposition", "monitor.supervisor", "monitor.startup", "demo")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Module -> the driftsvakt modules it imports (at any depth in the file)."""
    graph: dict[str, set[str]] = {}
    for package in ("monitor", "collectors", "demo"):
        for path in sorted((ROOT / package).rglob("*.py")):
            found: set[str] = set()
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    found.add(node.module)
                elif isinstance(node, ast.Import):
                    found.update(alias.name for alias in node.names)
            graph[_module_name(path)] = {m for m in found
                                         if m.split(".")[0] in ("monitor", "collectors",
                                                                "demo")}
    return graph


def _under(module: str, prefixes: tuple[str, ...] | set[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


GRAPH = _imports()


@pytest.mark.parametrize("module", sorted(FOUNDATION))
def test_the_foundation_imports_only_the_foundation(module: str) -> None:
    assert set() == {m for m in GRAPH[module] if m not in FOUNDATION}


def test_the_store_imports_no_feature() -> None:
    upward = {(module, imported) for module, imports in GRAPH.items()
              if _under(module, ("monitor.store",)) for imported in imports
              if not _under(imported, ("monitor.store",)) and imported not in FOUNDATION}
    assert set() == upward


def test_collectors_import_nothing_of_the_engine() -> None:
    upward = {(module, imported) for module, imports in GRAPH.items()
              if module.startswith("collectors") for imported in imports
              if _under(imported, ENGINE_FEATURES)}
    assert set() == upward


def test_only_the_composition_root_wires_the_web_routes() -> None:
    """HTTP lives in monitor.web: the features serve it, they do not import it."""
    users = {module for module, imports in GRAPH.items()
             if not _under(module, ("monitor.web", "demo"))
             and any(_under(m, ("monitor.web",)) and m != "monitor.web" for m in imports)}
    assert {"monitor.app"} == users


def test_production_code_does_not_import_the_demo() -> None:
    """The demo's simulators stand in for the estate; only its own command loads it."""
    users = {module for module, imports in GRAPH.items()
             if not _under(module, ("demo",)) and any(_under(m, ("demo",)) for m in imports)}
    assert {"monitor.cli"} == users


def test_the_agent_loads_neither_jinja2_nor_engine_code() -> None:
    """What the `driftsvakt agent` command loads, in a fresh interpreter: the modules
    it imports on its way to running, with its settings parsed."""
    probe = (
        "import sys, json, argparse\n"
        "import monitor.cli\n"
        "from collectors.agent.settings import load_settings\n"
        "import collectors.agent.run\n"
        "parser = monitor.cli.build_parser()\n"
        "args = parser.parse_args(['agent', '--location', 'alta', '--municipality', 'loppa',"
        " '--device', 'pc0042', '--class', 'pc', '--broker-port', '1883', '--outbox',"
        " 'x.db'])\n"
        "load_settings(args)\n"
        "print(json.dumps(sorted(sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    loaded = set(json.loads(out))
    forbidden = {m for m in loaded if _under(m, ("jinja2", "monitor.config", "aiohttp",
                                                 "prometheus_client", *ENGINE_FEATURES))}
    assert set() == forbidden
    assert {"collectors.agent.run", "monitor.events", "monitor.fields"} <= loaded


SETTINGS = {"monitor.config", "monitor.notify.settings", "monitor.sla.settings",
            "monitor.rules.matchers"}
PACKAGES = {"monitor", "monitor.notify", "monitor.sla", "monitor.rules"}


@pytest.mark.parametrize("service", ["collectors.snmp.service", "collectors.traps.service",
                                     "collectors.checks.service"])
def test_collectors_load_only_the_contract_and_the_settings(service: str) -> None:
    """What a collector loads of ours, in a fresh interpreter: the contract, the shared
    types, the MQTT client, the small HTTP base and the settings (whose template check
    loads Jinja2 only when a template is written), nothing of the engine."""
    probe = (f"import sys, json, {service}\n"
             "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
             "('monitor', 'collectors'))))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    ours = {m for m in json.loads(out) if m.startswith("monitor")}
    allowed = FOUNDATION | SETTINGS | PACKAGES | {"monitor.mqtt", "monitor.web"}
    assert set() == ours - allowed
