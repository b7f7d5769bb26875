"""`driftsvakt demo` as a user runs it: serves demo devices within 30 s, stops on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.servers import free_port_pair

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _metrics(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            return str(resp.read().decode())
    except OSError:
        return ""


def _device_status_lines(port: int) -> int:
    return sum(1 for line in _metrics(port).splitlines()
               if line.startswith("driftsvakt_device_status{"))


def _polled_over_snmp(text: str) -> set[str]:
    """Device classes seen with what only the simulated SNMP agents serve: a 24th port
    (switches), ports named by ifDescr (firewalls: no ifXTable), UPS-MIB's source."""
    found = set()
    for line in text.splitlines():
        if line.startswith("driftsvakt_if_in_octets_total{"):
            if 'class="switch"' in line and 'ifname="Gi1/0/24"' in line:
                found.add("switch")
            if 'class="firewall"' in line and 'ifname="GigabitEthernet1/0/1"' in line:
                found.add("firewall")
        elif line.startswith("driftsvakt_ups_output_source{") and 'class="ups"' in line:
            found.add("ups")
    return found


def _signed_in(port: int) -> None:
    """The demo's operator signs in at /login with its token; the console, the Problems
    page and a device page answer; without signing in, /login is where one is sent."""
    base = f"http://127.0.0.1:{port}"
    login = urllib.request.Request(base + "/login", data=b"token=demo-vakt", method="POST")

    class _Stay(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    opener = urllib.request.build_opener(_Stay)
    with pytest.raises(urllib.error.HTTPError) as signed:
        opener.open(login, timeout=10)
    assert (signed.value.code, signed.value.headers["Location"]) == (303, "/")
    cookie = signed.value.headers["Set-Cookie"].split(";")[0]
    for path in ("/", "/problems", "/search?q=alta"):
        request = urllib.request.Request(base + path, headers={"Cookie": cookie})
        with urllib.request.urlopen(request, timeout=20) as resp:
            assert resp.status == 200, path
            assert "Driftsvakt" in resp.read().decode()
    with pytest.raises(urllib.error.HTTPError) as refused:
        opener.open(base + "/problems", timeout=10)
    assert (refused.value.code, refused.value.headers["Location"]) == (303, "/login")


@pytest.mark.parametrize("broker", ["mosquitto", "amqtt"])
def test_demo_serves_devices_and_stops_on_sigint(tmp_path: Path, broker: str) -> None:
    """Both engines serve demo devices within 30 s, and all 3,388 with a status (PCs
    outside office hours as off) within 90 s (here 30-35 s with mosquitto, 35-55 s with
    amqtt, which runs in the demo's own process); switches, firewalls and UPSes come from
    the real poller over SNMP; SIGINT stops everything, exit 0."""
    port = free_port_pair()  # the second engine takes port + 1
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor.cli", "--log-json", "demo", "--http-port", str(port),
         "--broker", broker, "--workdir", str(tmp_path / "demo")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    try:
        started = time.monotonic()
        deadline = started + 90
        counts = (0, 0)
        first_seen: float | None = None
        while time.monotonic() < deadline:
            counts = (_device_status_lines(port), _device_status_lines(port + 1))
            if first_seen is None and min(counts) > 0:
                first_seen = time.monotonic() - started
            if min(counts) >= 3388:
                break
            # Not faster: each look renders both engines' /metrics (7 MB) in the demo's
            # one process, which the demo's own work shares a core with.
            time.sleep(2.0)
        if counts != (3388, 3388) or first_seen is None or first_seen > 30:
            os.kill(proc.pid, signal.SIGINT)
            _, err = proc.communicate(timeout=20)
            pytest.fail(f"device statuses {counts} after 90 s, the first after {first_seen} s;"
                        " demo said:\n" + err.decode(errors="replace")[-6000:])
        # the network gear is polled over real SNMP, every 30 s, from the first poll on
        polled: set[str] = set()
        while time.monotonic() < deadline + 30 and polled != {"switch", "firewall", "ups"}:
            polled = _polled_over_snmp(_metrics(port))
            time.sleep(2.0)
        assert {"switch", "firewall", "ups"} == polled
        # Hasvik's 11 switches below its core have no declared parent in the demo: the
        # LLDP their simulated agents announce places each (the example estate's
        # network.yaml, counted by hand: 2 at the town hall, 3 distribution switches
        # under the sites' routers, 6 access switches under those), and no declared
        # parent of the others differs from the cabling
        wanted = ('driftsvakt_topology_placements{verdict="proposed"} 11.0',
                  'driftsvakt_topology_placements{verdict="differs"} 0.0')
        placed: list[str] = []
        while time.monotonic() < deadline + 60:
            placed = [line for line in _metrics(port).splitlines()
                      if line.startswith("driftsvakt_topology_placements{")]
            if all(w in placed for w in wanted):
                break
            time.sleep(2.0)
        assert all(w in placed for w in wanted), placed
        # the console and the workbench, signed in as the banner says
        _signed_in(port)
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=20)
        assert 0 == proc.returncode, err.decode()[-3000:]
        assert b"driftsvakt demo is running" in out
        banner = out.decode()
        assert f"http://127.0.0.1:{port}/problems" in banner
        assert "/login with the token demo-vakt (operator)" in banner
        assert "switches have no declared parent: LLDP places them" in banner
        assert b"demo_stopped" in err
    finally:
        if proc.poll() is None:
            # Ctrl-C first: the demo stops the brokers it started in sessions of their
            # own, which a SIGKILL of the demo alone would leave running
            os.kill(proc.pid, signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
