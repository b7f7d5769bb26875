"""Rules in a running engine, with real mosquitto: restarts, the API, live reload.

The engine runs as a child process and is SIGKILLed while an alert is pending and
while it fires; after each restart the alert fires at the right time, exactly once
(the store's alert log has one ``firing``), and acknowledgements and silences are
intact. A broken rule file is refused by a live reload (SIGHUP and ``POST /-/reload``)
and the old rules go on evaluating.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from tests.estate import DEVICES, SERVER, write_estate
from tests.servers import Mosquitto, free_port, free_udp_port, wait_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FOR_SECONDS = 8.0
RULES = f"""
rules:
  - name: HotServer
    kind: threshold
    severity: critical
    select: {{metric: cpu_usage_ratio, class: [server]}}
    value: 0.9
    clear: 0.8
    for: {FOR_SECONDS:g}s
    annotations:
      summary: "CPU {{{{ (value * 100) | round | int }}}} % on {{{{ device_name }}}}"
  - name: SwitchDown
    kind: state
    severity: critical
    select: {{class: [switch]}}
    states: [down]
"""
TOKENS = {"ola": "ola-operator-token", "kari": "kari-admin-token", "liv": "liv-viewer-token"}


class Rig:
    def __init__(self, tmp: Path, broker: Mosquitto,
                 extra: dict[str, Any] | None = None) -> None:
        self.tmp = tmp
        self.http_port = free_port()
        config = write_estate(tmp, broker.port, self.http_port)
        estate = yaml.safe_load(config.read_text(encoding="utf-8"))
        (tmp / "rules").mkdir()
        self.rules = tmp / "rules" / "test.yaml"
        self.rules.write_text(RULES, encoding="utf-8")
        estate["engine"]["rules"] = str(tmp / "rules")
        estate["municipalities"].append({"id": "alta", "name": "Alta kommune"})
        estate["users"] = [
            {"id": "ola", "role": "operator", "token": {"env": "TOKEN_OLA"}},
            {"id": "kari", "role": "admin", "token": {"env": "TOKEN_KARI"}},
            {"id": "liv", "role": "viewer", "municipality": "alta",
             "token": {"env": "TOKEN_LIV"}},
        ]
        estate.update(extra or {})
        config.write_text(yaml.safe_dump(estate, allow_unicode=True), encoding="utf-8")
        self.config = config
        self.store = tmp / "engine-alta.db"
        self.env = {**os.environ, "PYTHONPATH": str(ROOT),
                    **{f"TOKEN_{k.upper()}": v for k, v in TOKENS.items()}}
        self.engine: subprocess.Popen[bytes] | None = None
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="rules-test",
                                  protocol=mqtt.MQTTv5)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        self.seq = 0

    def start(self) -> None:
        log = open(self.tmp / "engine.log", "ab")  # noqa: SIM115 - the child owns it
        self.engine = subprocess.Popen(
            [sys.executable, "-m", "monitor.cli", "--log-json", "engine", "--config",
             str(self.config), "--location", "alta", "--http-port", str(self.http_port)],
            stdout=log, stderr=log, env=self.env, cwd=ROOT)
        wait_port(self.http_port, timeout=30)
        deadline = time.monotonic() + 20  # subscribed: nothing published from now is lost
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/readyz",
                                            timeout=2):
                    return
            except (urllib.error.HTTPError, OSError):
                time.sleep(0.1)
        raise AssertionError("engine not ready after 20 s")

    def kill(self) -> None:
        assert self.engine is not None
        os.kill(self.engine.pid, signal.SIGKILL)
        self.engine.wait()

    def publish(self, device: str, stream: str, **body: Any) -> None:
        self.seq += 1
        payload = {"v": 1, "ts": body.pop("ts", time.time()), "src": "rules-test",
                   "seq": self.seq, "device": device, **body}
        info = self.client.publish(f"driftsvakt/v1/alta/loppa/{device}/{stream}/rules-test",
                                   json.dumps(payload), qos=1)
        info.wait_for_publish(5)

    def api(self, method: str, path: str, who: str | None = "ola",
            body: dict[str, Any] | None = None) -> tuple[int, Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}{path}", method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {TOKENS[who]}"} if who else {})
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def alert(self, name: str) -> dict[str, Any] | None:
        _, body = self.api("GET", f"/api/v1/alerts?alertname={name}")
        return body["alerts"][0] if body["alerts"] else None

    def wait_for(self, name: str, state: str, timeout: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                found = self.alert(name)
            except OSError:
                found = None
            if found is not None and found["state"] == state:
                return found
            time.sleep(0.2)
        raise AssertionError(f"{name} not {state} after {timeout} s; last: {found}")

    def log_states(self, fingerprint: str) -> list[str]:
        with sqlite3.connect(f"file:{self.store}?mode=ro", uri=True, timeout=5) as db:
            rows = db.execute("SELECT state FROM alert_log WHERE fingerprint = ? ORDER BY id",
                              (fingerprint,)).fetchall()
        return [str(r[0]) for r in rows]

    def close(self) -> None:
        if self.engine is not None and self.engine.poll() is None:
            self.engine.send_signal(signal.SIGTERM)
            try:
                self.engine.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    with Mosquitto(tmp_path / "broker") as broker:
        rig = Rig(tmp_path, broker)
        try:
            yield rig
        finally:
            rig.close()


def test_restarts_during_pending_and_firing_fire_once_and_keep_acks(rig: Rig) -> None:
    rig.start()
    started = time.time()
    rig.publish(SERVER, "metrics", ts=started, samples=[{"name": "cpu_usage_ratio",
                                                         "value": 0.95}])
    pending = rig.wait_for("HotServer", "pending")
    assert started == pending["active_since"]
    time.sleep(2)
    rig.kill()  # during the pending for:
    rig.start()
    assert "pending" == rig.wait_for("HotServer", "pending")["state"]
    firing = rig.wait_for("HotServer", "firing", timeout=FOR_SECONDS + 10)
    assert started + FOR_SECONDS <= firing["fired_at"] < started + FOR_SECONDS + 3
    assert "CPU 95 % on Fagsystem Loppa" == firing["annotations"]["summary"]
    rig.publish(SERVER, "metrics", samples=[{"name": "cpu_usage_ratio", "value": 0.97}])

    status, acked = rig.api("POST", f"/api/v1/alerts/{firing['id']}/ack",
                            body={"comment": "looking at the batch job"})
    assert (200, "acknowledged", "ola") == (status, acked["state"], acked["acknowledged"]["by"])
    now = time.time()
    status, silence = rig.api("POST", "/api/v1/silences", body={
        "matchers": ['alertname="SwitchDown"', f'device="{DEVICES[3]}"'],
        "starts_at": _iso(now - 1), "ends_at": _iso(now + 3600), "comment": "replaced"})
    assert 201 == status, silence
    time.sleep(1.5)  # let a tick write its evaluation time
    rig.kill()  # while firing
    rig.start()
    after = rig.wait_for("HotServer", "acknowledged")
    assert (firing["fired_at"], "looking at the batch job") == (
        after["fired_at"], after["acknowledged"]["comment"])
    _, silences = rig.api("GET", "/api/v1/silences")
    assert [silence["id"]] == [s["id"] for s in silences["silences"]]
    # the silence, restored, still works on the alert it was made for
    rig.publish(DEVICES[3], "state", state="down")
    assert "suppressed" == rig.wait_for("SwitchDown", "suppressed")["state"]

    rig.publish(SERVER, "metrics", samples=[{"name": "cpu_usage_ratio", "value": 0.5}])
    deadline = time.monotonic() + 10
    while rig.alert("HotServer") is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert rig.alert("HotServer") is None
    while len(rig.log_states(firing["id"])) < 4 and time.monotonic() < deadline:
        time.sleep(0.1)  # the API shows memory; the log is written with the batch
    assert ["pending", "firing", "acknowledged", "resolved"] == rig.log_states(firing["id"])
    _, audit = rig.api("GET", "/api/v1/audit", who="kari")
    assert [("ola", "create_silence"), ("ola", "acknowledge")] == [
        (a["actor"], a["action"]) for a in audit["audit"]]


def test_roles_and_viewer_scope(rig: Rig) -> None:
    rig.start()
    rig.publish(DEVICES[0], "state", state="down")
    alert = rig.wait_for("SwitchDown", "firing")
    assert (401, 401) == (rig.api("GET", "/api/v1/alerts", who=None)[0],
                          _raw_status(rig, "/api/v1/alerts", "not-a-token"))
    # the viewer of Alta sees nothing of Loppa, and may not acknowledge: it is told
    # nothing, not even that the route is for others
    assert 0 == rig.api("GET", "/api/v1/alerts", who="liv")[1]["count"]
    assert 404 == rig.api("POST", f"/api/v1/alerts/{alert['id']}/ack", who="liv", body={})[0]
    assert 403 == rig.api("POST", "/-/reload", who="ola")[0]
    assert 400 == rig.api("POST", "/api/v1/silences", body={
        "matchers": ['device=~"(a+)+\\1"'], "starts_at": _iso(time.time()),
        "ends_at": _iso(time.time() + 60), "comment": "x"})[0]
    status, window = rig.api("POST", "/api/v1/maintenance", who="kari", body={
        "name": "Bytte av kjernesvitsj", "starts_at": _iso(time.time() - 10),
        "ends_at": _iso(time.time() + 3600), "devices": [DEVICES[0]]})
    assert 201 == status, window
    assert "maintenance:" + window["id"] == rig.api(
        "GET", f"/api/v1/alerts/{alert['id']}")[1]["suppressed"]


def test_broken_reload_is_refused_and_old_rules_keep_running(rig: Rig) -> None:
    rig.start()
    rig.rules.write_text(RULES.replace("value: 0.9", "value: ninety") + "\n  - name: bad\n",
                         encoding="utf-8")
    status, body = rig.api("POST", "/-/reload", who="kari")
    assert 400 == status
    assert any("test.yaml:" in p and "value" in p for p in body["problems"]), body
    assert rig.engine is not None
    os.kill(rig.engine.pid, signal.SIGHUP)  # the same refusal by signal
    time.sleep(0.5)
    rig.publish(DEVICES[1], "state", state="down")
    assert "firing" == rig.wait_for("SwitchDown", "firing")["state"]
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{rig.http_port}/metrics",
                                     timeout=5).read().decode()
    assert "driftsvakt_rules_last_reload_success 0.0" in metrics
    assert "driftsvakt_rules_loaded 2.0" in metrics
    assert ('driftsvakt_alerts{alertname="SwitchDown",location="alta",municipality="loppa",'
            'severity="critical",state="firing"} 1.0') in metrics
    rig.rules.write_text(RULES.split("  - name: SwitchDown")[0], encoding="utf-8")
    assert (200, True) == (rig.api("POST", "/-/reload", who="kari")[0], True)
    # SwitchDown is gone: its alert resolves; the remaining rule keeps its name
    deadline = time.monotonic() + 5
    while rig.alert("SwitchDown") is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert rig.alert("SwitchDown") is None


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(ts))


def _raw_status(rig: Rig, path: str, token: str) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{rig.http_port}{path}",
                                     headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_store_backup_while_the_engine_runs(rig: Rig) -> None:
    """`driftsvakt store backup` copies the live store; the copy has what the engine
    wrote, and the engine goes on."""
    rig.start()
    rig.publish(DEVICES[0], "state", state="down")
    rig.wait_for("SwitchDown", "firing")
    target = rig.tmp / "backup" / "engine-alta.db"
    result = subprocess.run([sys.executable, "-m", "monitor.cli", "store", "backup",
                             "--config", str(rig.config), "--location", "alta", str(target)],
                            capture_output=True, text=True, env=rig.env, cwd=ROOT, check=False)
    assert 0 == result.returncode, result.stderr
    assert "1 alert" in result.stdout
    with sqlite3.connect(target) as db:
        assert [("ok",)] == db.execute("PRAGMA integrity_check").fetchall()
        (state,) = db.execute("SELECT state FROM alert").fetchone()
        assert "firing" == state
    again = subprocess.run([sys.executable, "-m", "monitor.cli", "store", "backup",
                            "--config", str(rig.config), "--location", "alta", str(target)],
                           capture_output=True, text=True, env=rig.env, cwd=ROOT, check=False)
    assert (1, True) == (again.returncode, "never overwrites" in again.stderr)
    rig.publish(DEVICES[1], "state", state="down")  # the engine is still at work
    assert "firing" == rig.wait_for("SwitchDown", "firing")["state"]


TRAP_RULES = """
rules:
  - name: LinkDownTrap
    kind: trap
    severity: warning
    trap_oid: 1.3.6.1.6.3.1.1.5.3
    identify_by: {ifindex: 1.3.6.1.2.1.2.2.1.1}
    resolve_oid: 1.3.6.1.6.3.1.1.5.4
    resolve_after: 1h
"""


def test_a_real_trap_raises_and_clears_an_alert(tmp_path: Path) -> None:
    """snmptrap → `collect traps` → mosquitto → engine: linkDown raises the alert for
    that ifIndex, linkUp for it resolves it."""
    with Mosquitto(tmp_path / "broker") as broker:
        rig = Rig(tmp_path, broker, {"traps": {
            "host": "127.0.0.1", "communities": [{"env": "DV_TRAP_COMMUNITY"}]}})
        rig.rules.write_text(TRAP_RULES, encoding="utf-8")
        port = free_udp_port()
        receiver = None
        try:
            rig.start()
            log = open(tmp_path / "traps.log", "ab")  # noqa: SIM115 - the child owns it
            receiver = subprocess.Popen(
                [sys.executable, "-m", "monitor.cli", "--log-json", "collect", "traps",
                 "--config", str(rig.config), "--location", "alta", "--port", str(port)],
                env={**rig.env, "DV_TRAP_COMMUNITY": "trap-community"}, cwd=ROOT,
                stdout=log, stderr=log)

            def trap(oid: str) -> None:
                subprocess.run(["snmptrap", "-v2c", "-c", "trap-community",
                                "--clientaddr=127.0.1.3", f"127.0.0.1:{port}", "", oid,
                                "1.3.6.1.2.1.2.2.1.1.7", "i", "7"],
                               check=True, capture_output=True)

            deadline = time.monotonic() + 20
            while rig.alert("LinkDownTrap") is None and time.monotonic() < deadline:
                trap("1.3.6.1.6.3.1.1.5.3")  # until the receiver is up
                time.sleep(0.5)
            alert = rig.wait_for("LinkDownTrap", "firing")
            assert (DEVICES[2], "7") == (alert["labels"]["device"], alert["labels"]["ifindex"])
            trap("1.3.6.1.6.3.1.1.5.4")
            deadline = time.monotonic() + 10
            while rig.alert("LinkDownTrap") is not None and time.monotonic() < deadline:
                time.sleep(0.2)
            assert rig.alert("LinkDownTrap") is None
            while len(rig.log_states(alert["id"])) < 3 and time.monotonic() < deadline:
                time.sleep(0.1)  # the API shows memory; the log is written with the batch
            assert ["pending", "firing", "resolved"] == rig.log_states(alert["id"])
        finally:
            if receiver is not None:
                receiver.send_signal(signal.SIGTERM)
                receiver.wait(15)
            rig.close()
