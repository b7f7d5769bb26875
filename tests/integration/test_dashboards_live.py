"""Every dashboard panel shows data, and the same numbers with one engine or both:
`driftsvakt demo` feeds both engines, a real Prometheus scrapes them with the shipped
recording rules, a second one scrapes only the Alta engine, every query of every
panel and every recording rule returns something, and each answers the same in both
(both engines export every device: counted twice, "devices down" showed 28 for 14)."""

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


def _query(port: int, expr: str, at: float | None = None) -> list[Any]:
    params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode(params)
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


def _answer(port: int, expr: str, at: float) -> dict[str, float]:
    """An instant query's series, keyed by their labels without the scrape's."""
    out = {}
    for series in _query(port, expr, at):
        labels = {k: v for k, v in series["metric"].items() if k not in ("engine", "instance")}
        out[json.dumps(labels, sort_keys=True)] = float(series["value"][1])
    return out


def _counts(expr: str) -> bool:
    """Whether ``expr`` adds or counts series (where a series taken twice doubles it),
    and not rates (which over a Prometheus's first minutes differ by more than that)."""
    return (expr.startswith(("sum(", "sum by", "count(", "count by")) and "rate" not in expr) \
        or expr == "driftsvakt:devices:count"


def _disagreements(both: int, one: int, exprs: list[tuple[str, str]]) -> list[str]:
    """Where the Prometheus of both engines answers otherwise than that of one: a
    different set of series (a series taken twice shows up as two), or, for sums and
    counts, a value off by more than a quarter (doubled is off by a factor of two).
    Other values are not compared: the two Prometheus scrape a second or two apart,
    and rates over their first minutes differ by more than that."""
    at = time.time() - 3
    found = []
    for what, expr in exprs:
        a, b = _answer(both, expr, at), _answer(one, expr, at)
        if "topk" in expr:
            # which interfaces are the top 20 depends on rates the two take a few
            # seconds apart (near-ties swap); a series taken twice would still count
            if len(a) != len(b):
                found.append(f"{what}: {len(a)} series with both engines, {len(b)} with one")
            continue
        if set(a) != set(b):
            found.append(f"{what}: {len(a)} series with both engines, {len(b)} with one")
            continue
        if not _counts(expr):
            continue
        for key, value in a.items():
            other = b[key]
            if abs(value - other) > 1e-9 and not (
                    value * other > 0 and 0.75 <= value / other <= 1 / 0.75):
                found.append(f"{what} {key}: {value} with both engines, {other} with one")
    return found


def _prometheus(binary: str, tmp: Path, name: str, targets: list[tuple[int, str]],
                poller_port: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    engines = "".join(f"      - {{targets: ['127.0.0.1:{p}'], labels: {{engine: {e}}}}}\n"
                      for p, e in targets)
    config = tmp / f"{name}.yml"
    config.write_text(
        # 5 s: each engine's /metrics is 7 MB from the demo's one process, which also
        # runs the whole simulated estate; two Prometheus servers scraping every 2 s
        # kept it near the 2 s timeout on two cores
        "global: {scrape_interval: 5s, scrape_timeout: 5s, evaluation_interval: 5s}\n"
        f"rule_files: ['{RULES}/driftsvakt-recording.yml', "
        f"'{RULES}/driftsvakt-alerts.yml']\n"
        "scrape_configs:\n  - job_name: driftsvakt-engine\n    honor_labels: true\n"
        "    static_configs:\n" + engines +
        "  - job_name: driftsvakt-snmp\n    static_configs:\n"
        f"      - {{targets: ['127.0.0.1:{poller_port}'], labels: {{engine: alta}}}}\n",
        encoding="utf-8")
    proc = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp / (name + '-tsdb')}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=open(tmp / f"{name}.log", "wb"))  # noqa: SIM115
    wait_port(port, timeout=30)
    ready = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=5):
                return proc, port
        except OSError:
            if time.monotonic() > ready:
                raise
            time.sleep(0.5)


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
    prometheus = single = None
    try:
        wait_port(engine_port, timeout=30)
        wait_port(engine_port + 1, timeout=30)
        prometheus, port = _prometheus(promtool, tmp_path, "both", [
            (engine_port, "alta"), (engine_port + 1, "hammerfest")], poller_port)
        single, one = _prometheus(promtool, tmp_path, "one", [(engine_port, "alta")],
                                  poller_port)
        expressions = _panels()
        recording = re.findall(r"record: (\S+)", (RULES / "driftsvakt-recording.yml").read_text())
        empty: list[str] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            empty = [f"{uid}: {title} ({'both engines' if p == port else 'one'})"
                     for p in (port, one) for uid, title, exprs in expressions
                     if not any(_query(p, e) for e in exprs)]
            empty += [f"recording rule {name}" for name in recording if not _query(port, name)]
            if not empty:
                break
            time.sleep(3)
        assert [] == empty, "\n".join(empty)
        # the engines' own health is per engine by design; everything else is one answer
        compared = [(f"{uid}: {title}", e) for uid, title, exprs in expressions
                    if uid != "driftsvakt-health" or "component_up" in " ".join(exprs)
                    for e in exprs]
        compared += [(f"recording rule {name}", name) for name in recording
                     if "lag" not in name]
        differing: list[str] = []
        for _ in range(20):  # the second Prometheus's first rates may come later
            differing = _disagreements(port, one, compared)
            if not differing:
                break
            time.sleep(3)
        assert [] == differing, "\n".join(differing)
    finally:
        for proc in (prometheus, single, demo, poller):
            if proc is not None and proc.poll() is None:
                os.kill(proc.pid, signal.SIGINT if proc is demo else signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
        broker.stop()
        snmpd.stop()
