"""Every dashboard panel shows data: `driftsvakt demo` feeds both engines, a real
Prometheus scrapes them with the shipped recording rules, and every query of every
panel and every recording rule returns something."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.servers import Mosquitto, Snmpd, free_port, free_port_pair, wait_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules"


def _query(port: int, expr: str) -> list[Any]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = json.loads(resp.read())
    assert "success" == body["status"], (expr, body)
    return list(body["data"]["result"])


def _panels() -> list[tuple[str, str, list[str]]]:
    out = []
    for path in sorted((ROOT / "dashboards").glob("*.json")):
        board = json.loads(path.read_text(encoding="utf-8"))
        for panel in board["panels"]:
            exprs = [re.sub(r"\$(location|municipality|site|device)", ".*", t["expr"])
                     for t in panel["targets"]]
            out.append((board["uid"], panel["title"], exprs))
    return out


def test_no_empty_panel(tmp_path: Path) -> None:
    promtool = shutil.which("prometheus")
    assert promtool is not None, "prometheus is not installed (the test command installs it)"
    # a real SNMP poller, for the poller panels: snmpd, a broker, `collect snmp`
    snmpd = Snmpd(tmp_path / "snmpd", addresses=("127.0.0.1",)).start()
    broker = Mosquitto(tmp_path / "broker").start()
    poller_port = free_port()
    estate = tmp_path / "poller.yaml"
    estate.write_text(json.dumps({
        "locations": [{"id": "alta", "name": "Alta"}],
        "municipalities": [{"id": "alta", "name": "Alta"}],
        "sites": [{"id": "dc", "name": "DC", "location": "alta", "municipality": "alta"}],
        "snmp_profiles": [{"id": "v2c", "version": "2c", "community": {"env": "DV_COMMUNITY"},
                           "port": snmpd.port, "timeout": 1, "retries": 0}],
        "devices": [{"id": "srv", "name": "srv", "class": "server", "site": "dc",
                     "address": "127.0.0.1", "snmp_profile": "v2c", "interval": 2}],
        "brokers": [{"location": "alta", "host": "127.0.0.1", "port": broker.port}],
        "outbox": {"directory": str(tmp_path / "outbox")}}), encoding="utf-8")
    poller = subprocess.Popen(
        [sys.executable, "-m", "monitor.cli", "collect", "snmp", "--config", str(estate),
         "--location", "alta", "--http-port", str(poller_port)], cwd=ROOT,
        env={**os.environ, "DV_COMMUNITY": Snmpd.COMMUNITY},
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "poller.log", "wb"))  # noqa: SIM115
    engine_port = free_port_pair()  # the demo's second engine takes engine_port + 1
    demo = subprocess.Popen(
        [sys.executable, "-m", "monitor.cli", "--log-json", "demo", "--http-port",
         str(engine_port), "--workdir", str(tmp_path / "demo")],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "demo.log", "wb"),  # noqa: SIM115
        cwd=ROOT)
    prometheus = None
    try:
        wait_port(engine_port, timeout=30)
        wait_port(engine_port + 1, timeout=30)
        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 2s, evaluation_interval: 2s}\n"
            f"rule_files: ['{RULES}/driftsvakt-recording.yml', "
            f"'{RULES}/driftsvakt-alerts.yml']\n"
            "scrape_configs:\n  - job_name: driftsvakt-engine\n    static_configs:\n"
            f"      - {{targets: ['127.0.0.1:{engine_port}'], labels: {{engine: alta}}}}\n"
            f"      - {{targets: ['127.0.0.1:{engine_port + 1}'], "
            "labels: {engine: hammerfest}}\n"
            "  - job_name: driftsvakt-snmp\n    static_configs:\n"
            f"      - {{targets: ['127.0.0.1:{poller_port}'], labels: {{engine: alta}}}}\n",
            encoding="utf-8")
        prometheus = subprocess.Popen(
            [promtool, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prometheus.log", "wb"))  # noqa: SIM115
        wait_port(port, timeout=30)
        ready = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=5):
                    break
            except OSError:
                if time.monotonic() > ready:
                    raise
                time.sleep(0.5)
        expressions = _panels()
        recording = re.findall(r"record: (\S+)", (RULES / "driftsvakt-recording.yml").read_text())
        empty: list[str] = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            empty = [f"{uid}: {title}" for uid, title, exprs in expressions
                     if not any(_query(port, e) for e in exprs)]
            empty += [f"recording rule {name}" for name in recording if not _query(port, name)]
            if not empty:
                break
            time.sleep(3)
        assert [] == empty, "\n".join(empty)
    finally:
        for proc in (prometheus, demo, poller):
            if proc is not None and proc.poll() is None:
                os.kill(proc.pid, signal.SIGINT if proc is demo else signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
        broker.stop()
        snmpd.stop()
