"""The deploy/prometheus files under promtool, and a real Prometheus scraping a real
engine: the exposition is what Prometheus accepts, gzip included."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.estate import DEVICES, SERVER
from tests.integration.test_rules_engine import Rig
from tests.servers import Mosquitto, free_port, wait_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "prometheus"


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed (the test command installs prometheus)")
    return found


def test_promtool_checks_the_config_and_runs_the_rule_tests() -> None:
    check = subprocess.run([_binary("promtool"), "check", "config",
                            str(DEPLOY / "prometheus.yml")], capture_output=True, text=True,
                           check=False)
    assert 0 == check.returncode, check.stdout + check.stderr
    tests = subprocess.run([_binary("promtool"), "test", "rules", "tests.yml"], cwd=DEPLOY,
                           capture_output=True, text=True, check=False)
    assert 0 == tests.returncode, tests.stdout + tests.stderr
    assert "SUCCESS" in tests.stdout


def _query(port: int, expr: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = json.loads(resp.read())
    assert "success" == body["status"], body
    return list(body["data"]["result"])


def test_a_real_prometheus_scrapes_the_engine(tmp_path: Path) -> None:
    with Mosquitto(tmp_path / "broker") as broker:
        rig = Rig(tmp_path, broker)
        prometheus = None
        try:
            rig.start()
            for i, device in enumerate(DEVICES[:3]):
                rig.publish(device, "metrics", samples=[
                    {"name": "if_in_octets", "value": 1e9 + i, "kind": "counter64",
                     "labels": {"ifname": f"Gi1/0/{p}"}} for p in range(1, 5)])
            rig.publish(SERVER, "metrics", samples=[{"name": "cpu_usage_ratio", "value": 0.42}])
            rig.publish(DEVICES[5], "state", state="down")
            port = free_port()
            config = tmp_path / "prometheus.yml"
            config.write_text(
                "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                f"rule_files: ['{DEPLOY}/rules/driftsvakt-recording.yml', "
                f"'{DEPLOY}/rules/driftsvakt-alerts.yml']\n"
                "scrape_configs:\n"
                "  - job_name: driftsvakt-engine\n"
                f"    static_configs: [{{targets: ['127.0.0.1:{rig.http_port}'], "
                "labels: {engine: alta}}]\n", encoding="utf-8")
            log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115 - the child owns it
            prometheus = subprocess.Popen(
                [_binary("prometheus"), f"--config.file={config}",
                 f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=log)
            wait_port(port, timeout=30)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if _query(port, 'driftsvakt_cpu_usage_ratio{device="loppa-srv1"}'):
                        break
                except OSError:
                    pass
                time.sleep(0.5)
            (up,) = _query(port, 'up{job="driftsvakt-engine"}')
            assert "1" == up["value"][1]
            (cpu,) = _query(port, "driftsvakt_cpu_usage_ratio")
            assert ({"municipality": "loppa", "site": "oksfjord", "class": "server"},
                    "0.42") == ({k: cpu["metric"][k] for k in ("municipality", "site", "class")},
                                cpu["value"][1])
            assert 12 == len(_query(port, "driftsvakt_if_in_octets_total"))
            (down,) = _query(port, 'driftsvakt_device_status{status="down"} == 1')
            assert DEVICES[5] == down["metric"]["device"]
            firing = _query(port, 'driftsvakt_alerts{state="firing"}')
            assert ["SwitchDown"] == [r["metric"]["alertname"] for r in firing]
            # the engine's own health rules see a healthy engine
            assert [] == _query(port, 'ALERTS{alertname="DriftsvaktEngineDown"}')
            # every dashboard query is PromQL this Prometheus accepts
            for path in sorted((ROOT / "dashboards").glob("*.json")):
                board = json.loads(path.read_text(encoding="utf-8"))
                for panel in board["panels"]:
                    for t in panel["targets"]:
                        expr = re.sub(r"\$(location|municipality|site|device)", ".*",
                                      t["expr"])
                        _query(port, expr)  # raises unless status is success
        finally:
            if prometheus is not None:
                os.kill(prometheus.pid, signal.SIGTERM)
                prometheus.wait(30)
            rig.close()
