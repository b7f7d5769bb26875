"""Two locations in network namespaces of the test's own, joined by a link that
nftables can cut, each with its broker started from the shipped deploy configs.

::

    root namespace: the test and the notification sink
      ├── 198.18.1.1 ═ veth ═ 198.18.1.2  alta: mosquitto (deploy/mosquitto/alta.conf
      │                                    and its bridge), engine, collectors
      └── 198.18.2.1 ═ veth ═ 198.18.2.2  hammerfest: mosquitto (hammerfest.conf), ...
    alta 198.18.0.1 ═══════ the link ═══════ 198.18.0.2 hammerfest

198.18.0.0/15 is the range set aside for network benchmarks (RFC 2544): nothing real
lives there. Each broker listens on the shipped port 8883 in its own namespace; the
bridge dials ``broker-hammerfest.vest-finnmark.example``, which the namespace's own
hosts file (``/etc/netns/NAME/hosts``, mounted by ``ip netns exec``) names. The shipped
configs are used as they are but for file locations (and ``user root``: mosquitto run
as root would switch to its own user and not read the test's files). Cutting the link
drops every packet on it in both namespaces; nothing outside the namespaces is
touched. Needs root, ``ip`` and ``nft``; everything is deleted afterwards.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import trustme

from tests.servers import _passwd_binary, mosquitto_binary

__all__ = ["BROKER_USERS", "Bed", "Location", "bed_available", "two_locations"]

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy" / "mosquitto"
PEER_NAME = "broker-hammerfest.vest-finnmark.example"
BROKER_USERS = ("engine-alta", "engine-hammerfest", "collector-alta", "collector-hammerfest",
                "readonly", "bridge-alta")
_NFT_CUT = """table inet dvcut {{
    chain in {{ type filter hook input priority 0; iifname "{0}" drop; }}
    chain out {{ type filter hook output priority 0; oifname "{0}" drop; }}
}}
"""


def bed_available() -> str | None:
    """Why the bed cannot run here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return f"{tool} is not installed (the test command installs it)"
    if mosquitto_binary() is None:
        return "mosquitto is not installed"
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@dataclass
class Location:
    """One location's namespace and the processes the test started in it."""

    id: str
    netns: str
    address: str  # where the test reaches it (its end of the veth to the root namespace)
    host_address: str  # the root namespace's end: the sink listens here
    link_if: str  # its end of the link to the other location
    workdir: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def argv(self, command: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *command]

    def start(self, command: Sequence[str], log: str, env: dict[str, str] | None = None
              ) -> subprocess.Popen[bytes]:
        """A process in the namespace (stopped by its PID when the bed goes)."""
        with (self.workdir / log).open("ab") as out:
            proc = subprocess.Popen(self.argv(command), stdout=out, stderr=subprocess.STDOUT,
                                    cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT),
                                                   **(env or {})})
        self.procs.append(proc)
        return proc

    def python(self, args: Sequence[str], log: str, env: dict[str, str] | None = None
               ) -> subprocess.Popen[bytes]:
        return self.start([sys.executable, *args], log, env)

    def nft(self, ruleset: str | None) -> None:
        """Load ``ruleset`` in the namespace, or flush it (None)."""
        if ruleset is None:
            subprocess.run(self.argv(["nft", "flush", "ruleset"]), check=True, timeout=10)
        else:
            subprocess.run(self.argv(["nft", "-f", "-"]), input=ruleset.encode(), check=True,
                           timeout=10)

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.procs.clear()


@dataclass
class Bed:
    alta: Location
    hammerfest: Location
    workdir: Path
    ca: Path  # the CA that signed both brokers' certificate

    @property
    def locations(self) -> tuple[Location, Location]:
        return (self.alta, self.hammerfest)

    def password_file(self, user: str) -> Path:
        return self.workdir / "secrets" / user

    def cut(self) -> None:
        """Every packet on the link dropped, both ways, at both ends: to the brokers and
        engines the other location is silent, as behind a dead WAN."""
        for loc in self.locations:
            loc.nft(_NFT_CUT.format(loc.link_if))

    def heal(self) -> None:
        for loc in self.locations:
            loc.nft(None)

    def start_broker(self, loc: Location) -> subprocess.Popen[bytes]:
        binary = mosquitto_binary()
        assert binary is not None
        proc = loc.start([binary, "-c", str(self._install(loc))], f"mosquitto-{loc.id}.out")
        _wait_listening(loc, 8883)
        return proc

    def _install(self, loc: Location) -> Path:
        """The shipped config of ``loc`` with its files moved into the bed."""
        base = loc.workdir / "mosquitto"
        for sub in ("db", "d"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        moves = (("/etc/mosquitto/certs/", f"{self.workdir}/certs/"),
                 ("/etc/mosquitto/driftsvakt.passwd", f"{self.workdir}/passwd"),
                 ("/etc/mosquitto/driftsvakt.acl", str(DEPLOY / "driftsvakt.acl")),
                 ("/var/lib/mosquitto/", f"{base}/db/"),
                 ("/etc/mosquitto/driftsvakt.d", f"{base}/d"))

        def moved(text: str) -> str:
            for old, new in moves:
                text = text.replace(old, new)
            return text

        text = moved((DEPLOY / f"{loc.id}.conf").read_text(encoding="utf-8"))
        text += f"\nuser root\nlog_dest file {loc.workdir}/mosquitto.log\n"
        shipped_d = DEPLOY / f"{loc.id}.d"
        if shipped_d.is_dir():
            for conf in shipped_d.glob("*.conf"):
                bridge = moved(conf.read_text(encoding="utf-8"))
                bridge = bridge.replace("remote_password change-me",
                                        "remote_password pw-bridge-alta")
                (base / "d" / conf.name).write_text(bridge, encoding="utf-8")
        path = base / f"{loc.id}.conf"
        path.write_text(text, encoding="utf-8")
        return path


def _wait_listening(loc: Location, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(loc.argv(["ss", "-Hltn", f"sport = :{port}"]), capture_output=True,
                             text=True, check=False).stdout
        if out.strip():
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port} in {loc.netns} after {timeout} s")


def _certificates(workdir: Path) -> Path:
    """One CA; a broker certificate that both brokers use, valid for every name they
    are reached by (the bridge's host name, their addresses, loopback)."""
    certs = workdir / "certs"
    certs.mkdir(parents=True)
    ca = trustme.CA()
    cert = ca.issue_cert(PEER_NAME, "broker-alta.vest-finnmark.example", "127.0.0.1",
                         "198.18.1.2", "198.18.2.2")
    cert.private_key_pem.write_to_path(str(certs / "broker.key"))
    cert.cert_chain_pems[0].write_to_path(str(certs / "broker.crt"))
    ca.cert_pem.write_to_path(str(certs / "ca.crt"))
    return certs / "ca.crt"


def _passwords(workdir: Path) -> None:
    passwd = workdir / "passwd"
    passwd.touch()
    secrets = workdir / "secrets"
    secrets.mkdir()
    for user in BROKER_USERS:
        subprocess.run([_passwd_binary(), "-b", str(passwd), user, f"pw-{user}"], check=True,
                       capture_output=True)
        (secrets / user).write_text(f"pw-{user}\n", encoding="utf-8")


@contextmanager
def two_locations(workdir: Path) -> Iterator[Bed]:
    """The two namespaces, their links and files; brokers are started by the test
    (:meth:`Bed.start_broker`). Everything is removed on exit, whatever happened."""
    tag = f"{os.getpid() % 100000}"
    names = {"alta": f"dva{tag}", "hammerfest": f"dvh{tag}"}
    made: list[str] = []
    outside_ends: list[str] = []
    hosts_dirs: list[Path] = []
    workdir.mkdir(parents=True, exist_ok=True)
    ca = _certificates(workdir)
    _passwords(workdir)
    locations = []
    try:
        for n, (loc_id, netns) in enumerate(names.items(), 1):
            _ip("netns", "add", netns)
            made.append(netns)
            _ip("-n", netns, "link", "set", "lo", "up")
            outside, inside = f"dv{tag}r{n}", f"dv{tag}i{n}"
            if Path(f"/sys/class/net/{outside}").exists():
                raise RuntimeError(f"{outside} is left from an earlier bed: ip link del it")
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            outside_ends.append(outside)
            _ip("link", "set", inside, "netns", netns)
            _ip("addr", "add", f"198.18.{n}.1/30", "dev", outside)
            _ip("link", "set", outside, "up")
            _ip("-n", netns, "addr", "add", f"198.18.{n}.2/30", "dev", inside)
            _ip("-n", netns, "link", "set", inside, "up")
            hosts = Path("/etc/netns") / netns
            hosts.mkdir(parents=True, exist_ok=True)
            hosts_dirs.append(hosts)
            (hosts / "hosts").write_text(
                f"127.0.0.1 localhost\n198.18.0.2 {PEER_NAME}\n"
                "198.18.0.1 broker-alta.vest-finnmark.example\n", encoding="utf-8")
            loc_dir = workdir / loc_id
            loc_dir.mkdir()
            locations.append(Location(loc_id, netns, f"198.18.{n}.2", f"198.18.{n}.1",
                                      f"dv{tag}l{n}", loc_dir))
        alta, hammerfest = locations
        _ip("-n", alta.netns, "link", "add", alta.link_if, "type", "veth", "peer", "name",
            hammerfest.link_if)
        _ip("-n", alta.netns, "link", "set", hammerfest.link_if, "netns", hammerfest.netns)
        for n, loc in enumerate(locations, 1):
            _ip("-n", loc.netns, "addr", "add", f"198.18.0.{n}/30", "dev", loc.link_if)
            _ip("-n", loc.netns, "link", "set", loc.link_if, "up")
        yield Bed(alta, hammerfest, workdir, ca)
    finally:
        for loc in locations:
            loc.stop_all()
        # The root namespace's ends first, at once: a namespace goes some time after
        # ``ip netns del``, and its veth with it, and the next bed's addresses would
        # meanwhile be routed to the old one.
        for end in outside_ends:
            subprocess.run(["ip", "link", "del", end], check=False, capture_output=True)
        for netns in made:
            subprocess.run(["ip", "netns", "del", netns], check=False, capture_output=True)
        for hosts in hosts_dirs:
            shutil.rmtree(hosts, ignore_errors=True)
