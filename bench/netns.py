"""A network namespace of the benchmark's own with real interfaces, and snmpd in it.

A namespace with 24 veth pairs (both ends inside) gives net-snmp's snmpd 48 real
interfaces plus ``lo``: the interface table of a 48-port access switch, answered by a
real agent. All of 127.0.0.0/8 is local in the namespace, so every simulated switch
gets an address of its own while a few snmpd instances answer them all. Traffic never
leaves the namespace; it is deleted afterwards (needs root).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

__all__ = ["COMMUNITY", "Namespace", "namespace", "switch_address"]

COMMUNITY = "dv-bench"


def switch_address(i: int) -> str:
    """The loopback address of simulated switch ``i`` (0-based): 127.1.0.1 upwards."""
    return f"127.1.{i // 250}.{i % 250 + 1}"


class Namespace:
    def __init__(self, name: str, workdir: Path) -> None:
        self.name = name
        self.workdir = workdir
        self.procs: list[subprocess.Popen[bytes]] = []

    def argv(self, command: Sequence[str], core: int | None = None) -> list[str]:
        """``command`` run inside the namespace (pinned to ``core`` where taskset is)."""
        pin = ["taskset", "-c", str(core)] if core is not None and shutil.which("taskset") \
            else []
        return ["ip", "netns", "exec", self.name, *pin, *command]

    def start(self, command: Sequence[str], core: int | None = None,
              env: dict[str, str] | None = None, log: str | None = None
              ) -> subprocess.Popen[bytes]:
        """A long-running process in the namespace; stopped (by its PID) on exit."""
        out = open(self.workdir / log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
        proc = subprocess.Popen(self.argv(command, core), stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})})
        self.procs.append(proc)
        return proc

    def run(self, command: Sequence[str], core: int | None = None, timeout: float = 600
            ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(command, core), capture_output=True, text=True,
                              check=True, timeout=timeout)

    def snmpd(self, port: int, core: int | None = 1) -> subprocess.Popen[bytes]:
        """net-snmp's snmpd on UDP ``port`` of every address in the namespace, with
        ``maxGetbulkResponses 250`` so 4 columns × 48 ports fit one response."""
        binary = shutil.which("snmpd") or "/usr/sbin/snmpd"
        home = self.workdir / f"snmpd-{port}"
        home.mkdir(parents=True, exist_ok=True)
        conf = home / "snmpd.conf"
        conf.write_text(f"rocommunity {COMMUNITY} 127.0.0.0/8\nmaxGetbulkResponses 250\n"
                        "sysName bench-switch\n", encoding="utf-8")
        proc = self.start([binary, "-f", "-Lf", str(home / "snmpd.log"), "-C", "-c",
                           str(conf), "-I", "-smux", f"udp:0.0.0.0:{port}"], core,
                          env={"SNMP_PERSISTENT_DIR": str(home / "persist")})
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            probe = subprocess.run(self.argv(["snmpget", "-v2c", "-c", COMMUNITY, "-t", "0.3",
                                              "-r", "0", f"127.0.0.1:{port}",
                                              "1.3.6.1.2.1.1.5.0"]),
                                   capture_output=True, check=False)
            if probe.returncode == 0:
                return proc
            time.sleep(0.1)
        raise RuntimeError(f"snmpd on port {port} in {self.name} did not answer in 10 s")

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.procs.clear()


@contextmanager
def namespace(workdir: Path, veth_pairs: int = 24) -> Iterator[Namespace]:
    if os.geteuid() != 0:
        raise SystemExit("this benchmark makes a network namespace: run it as root")
    name = f"dvbench{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    ns = Namespace(name, workdir)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        for i in range(veth_pairs):
            subprocess.run(["ip", "-n", name, "link", "add", f"sw{i}a", "type", "veth",
                            "peer", "name", f"sw{i}b"], check=True)
            for end in ("a", "b"):
                subprocess.run(["ip", "-n", name, "link", "set", f"sw{i}{end}", "up"],
                               check=True)
        yield ns
    finally:
        ns.stop_all()
        subprocess.run(["ip", "netns", "del", name], check=False)
