"""Switches made of network namespaces, cabled as a tree, each with net-snmp's snmpd
and lldpd (lldpd serving LLDP-MIB to snmpd as an AgentX subagent): a live topology
for `driftsvakt topology`.

::

    root namespace (the test)
      ├── 198.18.30.1 ═ veth ═ 198.18.30.2  core   (snmpd on :161, lldpd)
      ├── 198.18.30.5 ═ veth ═ 198.18.30.6  dist    "uplink" ═ "to-dist" on core
      └── ...                                acc1    "uplink" ═ "to-acc1" on dist

Each switch's management veth reaches the root namespace; LLDP runs only on the
cables between switches (lldpd -I), announcing the switch's name and its management
address, every second. 198.18.0.0/15 is the range set aside for network benchmarks
(RFC 2544): nothing real lives there. Needs root, ``ip``, ``lldpd`` and ``snmpd``;
every namespace and process is removed afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["COMMUNITY", "Switch", "lldp_available", "lldp_switches"]

COMMUNITY = "dv-lldp"
_SBIN = ("/usr/sbin", "/sbin", "/usr/bin")


def _tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    return next((f"{d}/{name}" for d in _SBIN if Path(f"{d}/{name}").exists()), None)


def lldp_available() -> str | None:
    """Why the switches cannot be made here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "lldpd", "lldpcli", "snmpd"):
        if _tool(tool) is None:
            return f"{tool} is not installed (the test command installs it)"
    return None


@dataclass(frozen=True, slots=True)
class Switch:
    name: str
    namespace: str
    address: str  # its management address, reached from the root namespace
    workdir: Path

    @property
    def control(self) -> Path:
        return self.workdir / "lldpd.sock"


def _ip(*args: str) -> None:
    subprocess.run([_tool("ip") or "ip", *args], check=True, capture_output=True, timeout=10)


def neighbours_seen(switch: Switch) -> set[str]:
    """The names of the switches this one hears over LLDP now."""
    done = subprocess.run([_tool("lldpcli") or "lldpcli", "-u", str(switch.control), "-f",
                           "json", "show", "neighbors"], capture_output=True, text=True,
                          timeout=10, check=False)
    if done.returncode != 0 or not done.stdout.strip():
        return set()
    found = json.loads(done.stdout).get("lldp", {}).get("interface", [])
    entries = found if isinstance(found, list) else [found]
    names: set[str] = set()
    for entry in entries:
        for port in (entry.values() if isinstance(entry, dict) else []):
            chassis = port.get("chassis", {}) if isinstance(port, dict) else {}
            names.update(chassis.keys())
    return names


@contextmanager
def lldp_switches(workdir: Path, parents: dict[str, str | None]) -> Iterator[dict[str, Switch]]:
    """One switch per name in ``parents``, each cabled to its parent (its port
    ``uplink`` to the parent's ``to-NAME``); yields them once every one hears every
    switch it is cabled to. Sockets and files live in a directory others may enter
    (lldpd's command runs as its own user, and a test's temporary directory is its
    owner's only); the logs are copied into ``workdir`` at the end."""
    tag = f"dvl{os.getpid() % 100000}"
    run = Path(tempfile.mkdtemp(prefix="dv-lldp-"))
    run.chmod(0o755)
    switches: dict[str, Switch] = {}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i, name in enumerate(parents):
            ns, root_end = f"{tag}-{name}", f"{tag}m{i}"
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("link", "add", root_end, "type", "veth", "peer", "name", "mgmt", "netns", ns)
            _ip("addr", "add", f"198.18.30.{4 * i + 1}/30", "dev", root_end)
            _ip("link", "set", root_end, "up")
            _ip("-n", ns, "addr", "add", f"198.18.30.{4 * i + 2}/30", "dev", "mgmt")
            _ip("-n", ns, "link", "set", "mgmt", "up")
            here = run / name
            here.mkdir()
            switches[name] = Switch(name, ns, f"198.18.30.{4 * i + 2}", here)
        for name, parent in parents.items():
            if parent is None:
                continue
            up, down = switches[parent], switches[name]
            _ip("-n", up.namespace, "link", "add", f"to-{name}", "type", "veth", "peer",
                "name", "uplink", "netns", down.namespace)
            _ip("-n", up.namespace, "link", "set", f"to-{name}", "up")
            _ip("-n", down.namespace, "link", "set", "uplink", "up")
        for switch in switches.values():
            procs += _start(switch)
        deadline = time.monotonic() + 30
        cabled = {n: {p for p in (parents[n],) if p} | {c for c, p in parents.items()
                                                          if p == n} for n in parents}
        while time.monotonic() < deadline:
            if all(cabled[n] <= neighbours_seen(s) for n, s in switches.items()):
                break
            time.sleep(0.3)
        else:
            raise RuntimeError("the switches did not all hear their neighbours over LLDP "
                               f"within 30 s (see {workdir}'s logs)")
        yield switches
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for i, switch in enumerate(switches.values()):
            subprocess.run([_tool("ip") or "ip", "netns", "del", switch.namespace],
                           capture_output=True, timeout=10, check=False)
            subprocess.run([_tool("ip") or "ip", "link", "del", f"{tag}m{i}"],
                           capture_output=True, timeout=10, check=False)
        for log in run.glob("*/*.log"):
            target = workdir / log.parent.name
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy(log, target / log.name)
        shutil.rmtree(run, ignore_errors=True)


def _start(switch: Switch) -> list[subprocess.Popen[bytes]]:
    """snmpd as the AgentX master, then lldpd as its subagent, in the namespace."""
    here, agentx = switch.workdir, switch.workdir / "agentx"
    (here / "snmpd.conf").write_text(
        f"agentAddress udp:{switch.address}:161\nrocommunity {COMMUNITY} default\n"
        f"master agentx\nagentXSocket {agentx}\n", encoding="utf-8")
    (here / "lldpd.conf").write_text(
        f"configure system hostname {switch.name}\nconfigure lldp tx-interval 1\n",
        encoding="utf-8")
    run = [_tool("ip") or "ip", "netns", "exec", switch.namespace]
    with (here / "snmpd.log").open("wb") as log:
        snmpd = subprocess.Popen([*run, _tool("snmpd") or "snmpd", "-f", "-Lo", "-C", "-c",
                                  str(here / "snmpd.conf"), "-p", str(here / "snmpd.pid")],
                                 stdout=log, stderr=subprocess.STDOUT)
    for _ in range(100):  # the master socket, before the subagent connects to it
        if agentx.exists():
            break
        time.sleep(0.05)
    with (here / "lldpd.log").open("wb") as log:
        lldpd = subprocess.Popen([*run, _tool("lldpd") or "lldpd", "-d", "-x", "-X",
                                  str(agentx), "-u", str(switch.control), "-I",
                                  "uplink,to-*", "-m", switch.address, "-O",
                                  str(here / "lldpd.conf")],
                                 stdout=log, stderr=subprocess.STDOUT)
    return [snmpd, lldpd]
