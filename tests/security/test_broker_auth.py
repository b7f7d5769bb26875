"""Identities per component: `driftsvakt broker-auth` writes the password file and ACL
from the estate; a real mosquitto enforces them. Each credential is tried against
what it must not do, and every refusal is the broker's MQTT v5 reason code 0x87 (not
authorised) on the PUBACK. The engine logs in with its own identity from the
config's ``logins``."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from monitor.app import start_engine
from monitor.brokerauth import mosquitto_hash
from monitor.config import load_config
from tests.estate import write_estate
from tests.integration.test_mosquitto_deploy import Client
from tests.servers import Mosquitto, free_port, wait_ready

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
OK, NOT_AUTHORISED = "accepted", "0x87"  # 0x00 or 0x10 (no subscribers) is accepted
V1 = "driftsvakt/v1"
ENROL_SECRET = "loppa-enrolment-secret"


def _estate(tmp: Path) -> Path:
    path = write_estate(tmp / "estate", free_port())
    estate = yaml.safe_load(path.read_text(encoding="utf-8"))
    estate["municipalities"].append({"id": "hasvik", "name": "Hasvik kommune"})
    estate["sites"].append({"id": "breivikbotn", "name": "Breivikbotn",
                            "location": "hammerfest", "municipality": "hasvik"})
    estate["devices"].append({"id": "hasvik-pc1", "name": "hasvik-pc1", "class": "pc",
                              "site": "breivikbotn"})
    (tmp / "loppa.token").write_text(ENROL_SECRET + "\n", encoding="utf-8")
    estate["enrolment"] = {"tokens": [{"municipality": "loppa",
                                       "token": {"file": str(tmp / "loppa.token")}}]}
    path.write_text(yaml.safe_dump(estate, allow_unicode=True), encoding="utf-8")
    return path


def _broker_auth(config: Path, out: Path, *rotate: str) -> str:
    args = [a for user in rotate for a in ("--rotate", user)]
    done = subprocess.run([sys.executable, "-m", "monitor.cli", "broker-auth", "--config",
                           str(config), "--out", str(out), *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=60, check=False)
    assert 0 == done.returncode, done.stderr
    return done.stdout


def _secret(out: Path, user: str) -> str:
    if user == "enrol-loppa":  # the token's secret, from the estate, not a generated one
        return ENROL_SECRET
    return (out / "secrets" / user).read_text(encoding="utf-8").strip()


@pytest.fixture
def generated(tmp_path: Path) -> Iterator[tuple[Path, Path, Mosquitto]]:
    config = _estate(tmp_path)
    out = tmp_path / "auth"
    print(_broker_auth(config, out))
    broker = Mosquitto(tmp_path / "broker", password_file=out / "driftsvakt.passwd",
                       acl_file=out / "driftsvakt.acl").start()
    try:
        yield config, out, broker
    finally:
        broker.stop()


def _code(client: Client) -> int:
    """The CONNACK's reason code (-1 if none came)."""
    return -1 if client.code is None else int(client.code.value)


def _as(broker: Mosquitto, out: Path, user: str) -> Client:
    client = Client(broker.port, None, user, _secret(out, user))
    assert 0 == _code(client), user
    return client


# (identity, topic, the broker's answer); a device topic's last level names the
# source, and only that source's identity may publish there
CASES = [
    ("agent-loppa-srv1", f"{V1}/alta/loppa/loppa-srv1/metrics/loppa-srv1", OK),
    ("agent-loppa-srv1", f"{V1}/_sys/alta/agent/loppa-srv1", OK),
    ("agent-loppa-srv1", f"{V1}/alta/loppa/loppa-srv1/metrics/snmp-alta", NOT_AUTHORISED),
    ("agent-loppa-srv1", f"{V1}/alta/loppa/loppa-srv1/state", NOT_AUTHORISED),  # no source
    ("agent-loppa-srv1", f"{V1}/alta/loppa/loppa-sw1/state/loppa-srv1", NOT_AUTHORISED),
    ("agent-loppa-srv1", f"{V1}/hammerfest/hasvik/hasvik-pc1/state/hasvik-pc1",
     NOT_AUTHORISED),
    ("agent-loppa-srv1", f"{V1}/hammerfest/loppa/loppa-srv1/state/loppa-srv1",
     NOT_AUTHORISED),
    ("agent-loppa-srv1", f"{V1}/_sys/alta/engine/alta", NOT_AUTHORISED),
    ("agent-loppa-srv1", f"{V1}/_sys/hammerfest/engine/hammerfest", NOT_AUTHORISED),
    ("agent-loppa-srv1", f"{V1}/_sys/alta/agent/hasvik-pc1", NOT_AUTHORISED),
    ("agent-loppa-srv1", f"{V1}/_ack/alta/loppa-srv1", NOT_AUTHORISED),
    ("agent-loppa-srv1", f"{V1}/_nflog/alta/x", NOT_AUTHORISED),
    ("agent-loppa-srv1", f"{V1}/_ops/alta/x", NOT_AUTHORISED),
    ("agent-hasvik-pc1", f"{V1}/hammerfest/hasvik/hasvik-pc1/metrics/hasvik-pc1", OK),
    ("agent-hasvik-pc1", f"{V1}/alta/loppa/loppa-srv1/state/loppa-srv1", NOT_AUTHORISED),
    ("snmp-alta", f"{V1}/alta/loppa/loppa-sw1/metrics/snmp-alta", OK),
    ("snmp-alta", f"{V1}/_sys/alta/snmp/snmp-alta", OK),
    ("snmp-alta", f"{V1}/alta/loppa/loppa-srv1/metrics/loppa-srv1", NOT_AUTHORISED),
    ("snmp-alta", f"{V1}/alta/loppa/loppa-sw1/trap/traps-alta", NOT_AUTHORISED),
    ("snmp-alta", f"{V1}/alta/loppa/loppa-sw1/metrics", NOT_AUTHORISED),
    ("snmp-alta", f"{V1}/hammerfest/hasvik/hasvik-pc1/state/snmp-alta", NOT_AUTHORISED),
    ("snmp-alta", f"{V1}/_sys/alta/engine/alta", NOT_AUTHORISED),
    ("snmp-alta", f"{V1}/_sys/alta/traps/traps-alta", NOT_AUTHORISED),
    ("snmp-alta", f"{V1}/_ack/alta/snmp-alta", NOT_AUTHORISED),
    ("traps-hammerfest", f"{V1}/alta/loppa/loppa-sw1/trap/traps-hammerfest", NOT_AUTHORISED),
    ("engine-alta", f"{V1}/_ack/alta/snmp-alta", OK),
    ("engine-alta", f"{V1}/_ack/hammerfest/snmp-alta", NOT_AUTHORISED),
    ("engine-alta", f"{V1}/_sys/hammerfest/engine/hammerfest", NOT_AUTHORISED),
    ("engine-alta", f"{V1}/alta/loppa/loppa-sw1/state/engine-alta", NOT_AUTHORISED),
    ("readonly", f"{V1}/alta/loppa/loppa-sw1/state/readonly", NOT_AUTHORISED),
    # Loppa's enrolment identity (every agent installed with Loppa's token): devices
    # the files do not declare, in Loppa, on the device's own source
    ("enrol-loppa", f"{V1}/alta/loppa/lop-pc7/register/lop-pc7", OK),
    ("enrol-loppa", f"{V1}/hammerfest/loppa/lop-pc7/metrics/lop-pc7", OK),
    ("enrol-loppa", f"{V1}/_sys/alta/agent/lop-pc7", OK),
    ("enrol-loppa", f"{V1}/alta/loppa/loppa-srv1/metrics/loppa-srv1", NOT_AUTHORISED),
    ("enrol-loppa", f"{V1}/alta/loppa/loppa-sw1/state/lop-pc7", NOT_AUTHORISED),
    ("enrol-loppa", f"{V1}/alta/loppa/lop-pc7/metrics/snmp-alta", NOT_AUTHORISED),
    ("enrol-loppa", f"{V1}/alta/loppa/lop-pc7/metrics/traps-hammerfest", NOT_AUTHORISED),
    ("enrol-loppa", f"{V1}/alta/loppa/lop-pc7/metrics/loppa-srv1", NOT_AUTHORISED),
    ("enrol-loppa", f"{V1}/hammerfest/hasvik/hv-pc1/register/hv-pc1", NOT_AUTHORISED),
    ("enrol-loppa", f"{V1}/_sys/alta/agent/loppa-srv1", NOT_AUTHORISED),
    ("enrol-loppa", f"{V1}/_sys/hammerfest/agent/hasvik-pc1", NOT_AUTHORISED),
    ("enrol-loppa", f"{V1}/_sys/alta/engine/alta", NOT_AUTHORISED),
    ("enrol-loppa", f"{V1}/_ack/alta/lop-pc7", NOT_AUTHORISED),
    ("enrol-loppa", f"{V1}/_ops/alta/x", NOT_AUTHORISED),
]


def test_each_identity_publishes_only_its_own(generated: tuple[Path, Path, Mosquitto]
                                              ) -> None:
    _, out, broker = generated
    clients = {user: _as(broker, out, user) for user in dict.fromkeys(c[0] for c in CASES)}
    got = []
    for user, topic, _ in CASES:
        code = clients[user].publish(topic)
        got.append((user, topic, OK if 0 <= code < 0x80 else f"0x{code:02x}"))
    for client in clients.values():
        client.close()
    assert CASES == got


def test_a_wrong_password_and_a_rotated_one_are_refused(
        generated: tuple[Path, Path, Mosquitto]) -> None:
    config, out, broker = generated
    others = {u: _secret(out, u) for u in ("agent-hasvik-pc1", "engine-alta")}
    bad = Client(broker.port, None, "agent-loppa-srv1", "not-the-password")
    assert 0 != _code(bad)
    bad.close()
    old = _secret(out, "agent-loppa-srv1")
    assert "new passwords for 1" in _broker_auth(config, out, "agent-loppa-srv1")
    assert old != _secret(out, "agent-loppa-srv1")
    assert others == {u: _secret(out, u) for u in others}  # the others keep theirs
    broker.stop()
    broker.start()
    stale = Client(broker.port, None, "agent-loppa-srv1", old)
    assert 0 != _code(stale)
    stale.close()
    _as(broker, out, "agent-loppa-srv1").close()
    mode = os.stat(out / "secrets" / "engine-alta").st_mode & 0o777
    assert 0o600 == mode


def test_the_hash_is_mosquittos_own(tmp_path: Path) -> None:
    """Checked against mosquitto_passwd's output for the same password and salt: the
    test reads the salt from its line and hashes again."""
    passwd = tmp_path / "passwd"
    passwd.touch()
    subprocess.run(["mosquitto_passwd", "-b", str(passwd), "kari", "hemmelig"], check=True,
                   capture_output=True)
    line = passwd.read_text(encoding="utf-8").strip()
    user, entry = line.split(":", 1)
    _, kind, iterations, salt, _ = entry.split("$")
    assert ("kari", "7", "101") == (user, kind, iterations)
    assert entry == mosquitto_hash("hemmelig", base64.b64decode(salt))


async def test_the_engine_logs_in_as_itself(generated: tuple[Path, Path, Mosquitto],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    config_path, out, broker = generated
    estate = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    for entry in estate["brokers"]:
        entry["port"] = broker.port
        entry["logins"] = [{"component": "engine", "username": f"engine-{entry['location']}",
                            "password": {"file": str(out / "secrets" /
                                                     f"engine-{entry['location']}")}}]
    config_path.write_text(yaml.safe_dump(estate), encoding="utf-8")
    app = await start_engine(load_config(config_path), "alta", http_port=0)
    try:
        await wait_ready(app.url)
    finally:
        await app.stop()
