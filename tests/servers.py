"""Real servers for tests: mosquitto on a free loopback port, started and stopped by PID.

Nothing here is a fake: the broker is Debian's mosquitto, run with a config the test
writes; a TcpLink only relays bytes between two real servers, and can be cut. Only
processes started here are ever signalled, and only by their own PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp

__all__ = [
    "Mosquitto",
    "Snmpd",
    "TcpLink",
    "free_port",
    "free_port_pair",
    "free_udp_port",
    "mosquitto_binary",
    "snmpsim",
    "snmpsim_binary",
    "wait_port",
    "wait_ready",
]


def _ephemeral_floor() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_HANDED_OUT: set[int] = set()


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_pair() -> int:
    """A port p with p and p + 1 free, below the kernel's ephemeral range.

    A server started a moment later on a port the kernel would also hand out as the
    source port of an outgoing connection can lose it to that connection (seen: the
    demo's second engine on p + 1 against a client socket of the demo's own). Ports
    below the ephemeral range are only ever taken by listeners.
    """
    top = _ephemeral_floor() - 2
    for _ in range(1000):
        port = random.randrange(10_000, top)
        if {port, port + 1} & _HANDED_OUT:
            continue
        if _bindable(port) and _bindable(port + 1):
            _HANDED_OUT.update((port, port + 1))
            return port
    raise RuntimeError("no two adjacent free ports below the ephemeral range")


def free_port() -> int:
    """A free TCP port below the ephemeral range (see :func:`free_port_pair`), never one
    handed out before in this process."""
    top = _ephemeral_floor()
    for _ in range(1000):
        port = random.randrange(10_000, top)
        if port not in _HANDED_OUT and _bindable(port):
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError("no free port below the ephemeral range")


def wait_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s")


def _passwd_binary() -> str:
    found = shutil.which("mosquitto_passwd") or next(
        (p for p in ("/usr/bin/mosquitto_passwd", "/usr/sbin/mosquitto_passwd")
         if os.path.exists(p)), None)
    if found is None:
        raise RuntimeError("mosquitto_passwd is not installed (package mosquitto)")
    return found


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/bin/mosquitto") if os.path.exists(p)), None)


class Mosquitto:
    """One mosquitto process on 127.0.0.1:``port`` with a config written into ``workdir``."""

    def __init__(self, workdir: Path, port: int | None = None, extra: str = "",
                 acl: str | None = None, tls: tuple[Path, Path] | None = None,
                 users: dict[str, str] | None = None, password_file: Path | None = None,
                 acl_file: Path | None = None) -> None:
        """``users`` are hashed into a password file here; ``password_file`` and
        ``acl_file`` are used as they are (say, as ``driftsvakt broker-auth`` wrote them)."""
        binary = mosquitto_binary()
        if binary is None:
            raise RuntimeError("mosquitto is not installed (the test command installs it)")
        self.binary = binary
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {'false' if users or password_file else 'true'}",
            "persistence false",
            "max_queued_messages 100000",
            "max_inflight_messages 0",
            f"log_dest file {self.workdir / 'mosquitto.log'}",
            "log_type error",
            "log_type warning",
        ]
        if os.geteuid() == 0:
            # As root, mosquitto switches to its own user and then cannot read files in
            # the test's private temporary directory: stay the user that started it.
            lines.append("user root")
        if tls is not None:
            lines += [f"certfile {tls[0]}", f"keyfile {tls[1]}"]
        if users:
            passwd = self.workdir / "passwd"
            passwd.touch()
            for user, password in users.items():
                subprocess.run([_passwd_binary(), "-b", str(passwd), user, password],
                               check=True, capture_output=True)
            lines.append(f"password_file {passwd}")
        if acl is not None:
            written = self.workdir / "acl"
            written.write_text(acl, encoding="utf-8")
            lines.append(f"acl_file {written}")
        if password_file is not None:
            lines.append(f"password_file {password_file}")
        if acl_file is not None:
            lines.append(f"acl_file {acl_file}")
        self.conf = self.workdir / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")

    def start(self) -> Mosquitto:
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_port(self.port)
        except TimeoutError:
            self.stop()
            log = (self.workdir / "mosquitto.log")
            stderr = self.proc.stderr.read().decode(errors="replace") if self.proc and \
                self.proc.stderr else ""
            raise RuntimeError("mosquitto did not start: " + stderr + (
                log.read_text() if log.exists() else "")) from None
        return self

    def kill(self) -> None:
        """SIGKILL, as a crash: no chance to save or say goodbye."""
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def snmpsim_binary() -> str | None:
    """snmpsim's command responder, from the test extras (in this interpreter's bin)."""
    found = shutil.which("snmpsim-command-responder") or str(
        Path(sys.executable).parent / "snmpsim-command-responder")
    return found if os.path.exists(found) else None


@contextlib.contextmanager
def snmpsim(data: Path, cache: Path, community: str) -> Iterator[int]:
    """snmpsim serving the recordings in ``data`` on a free loopback UDP port, once it
    answers a GET with ``community`` (a recording's name); yields the port."""
    binary = snmpsim_binary()
    assert binary is not None, "snmpsim is not installed (the test command installs it)"
    port = free_udp_port()
    proc = subprocess.Popen([binary, f"--data-dir={data}", f"--cache-dir={cache}",
                             f"--agent-udpv4-endpoint=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "SNMPSIM_ALLOW_ROOT": "true"})
    try:
        deadline = time.monotonic() + 60
        while subprocess.run(["snmpget", "-v2c", "-c", community, "-t", "1", "-r", "0",
                              f"127.0.0.1:{port}", "1.3.6.1.2.1.1.3.0"],
                             capture_output=True, check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError("snmpsim did not answer within 60 s")
            time.sleep(0.5)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


class Snmpd:
    """net-snmp's snmpd on 127.0.0.1:``port`` (UDP), with a v2c community and a v3
    authPriv user (SHA-256, AES-128) from the config this writes."""

    COMMUNITY = "dv-test-public"
    USER, AUTH_KEY, PRIV_KEY = "dvuser", "auth-key-123", "priv-key-123"

    def __init__(self, workdir: Path, port: int | None = None,
                 addresses: tuple[str, ...] = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
                 ) -> None:
        binary = shutil.which("snmpd") or "/usr/sbin/snmpd"
        self.addresses = addresses
        if not os.path.exists(binary):
            raise RuntimeError("snmpd is not installed (the test command installs it)")
        self.binary = binary
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_udp_port()
        self.conf = workdir / "snmpd.conf"
        self.conf.write_text(
            f"rocommunity {self.COMMUNITY} 127.0.0.1\n"
            f"createUser {self.USER} SHA-256 {self.AUTH_KEY} AES {self.PRIV_KEY}\n"
            f"rouser {self.USER} priv\n"
            "maxGetbulkResponses 250\n"
            "sysName driftsvakt-test-agent\n"
            "sysLocation Alta rådhus, serverrom\n", encoding="utf-8")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Snmpd:
        env = {**os.environ, "SNMP_PERSISTENT_DIR": str(self.workdir / "persist")}
        self.proc = subprocess.Popen(
            [self.binary, "-f", "-Lf", str(self.workdir / "snmpd.log"), "-C", "-c",
             str(self.conf), "-I", "-smux",
             ",".join(f"udp:{a}:{self.port}" for a in self.addresses)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            probe = subprocess.run(["snmpget", "-v2c", "-c", self.COMMUNITY, "-t", "0.3",
                                    "-r", "0", f"127.0.0.1:{self.port}", "1.3.6.1.2.1.1.5.0"],
                                   capture_output=True, check=False)
            if probe.returncode == 0:
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("snmpd did not answer within 10 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None

    def bulkwalk(self, oid: str) -> dict[str, str]:
        """net-snmp's own snmpbulkwalk of ``oid``: numeric OID -> value text."""
        out = subprocess.run(["snmpbulkwalk", "-v2c", "-c", self.COMMUNITY, "-On", "-Oe",
                              "-Oq", "-Ot", f"127.0.0.1:{self.port}", oid],
                             capture_output=True, text=True, check=True).stdout
        found = {}
        for line in out.splitlines():
            key, _, value = line.partition(" ")
            found[key.lstrip(".")] = value.strip().strip('"')
        return found


class TcpLink:
    """A TCP relay on 127.0.0.1 that can be cut: the link between two locations.

    Cutting closes every relayed connection and stops listening, so new connections are
    refused until the link is restored; both ends see the link go, as with a WAN whose
    far side is unreachable."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        # below the ephemeral range: while the link is cut, a client's outgoing
        # connection could take an ephemeral port, and the restored link not get it
        # back (seen: the storm test's 240 agents reconnecting through a cut link)
        self.port = free_port()
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._flowing = threading.Event()
        self._flowing.set()
        self.listener: socket.socket | None = None
        self.restore()

    def freeze(self) -> None:
        """Stop carrying bytes but keep every connection open: a WAN that silently
        drops everything, which neither end notices until its keepalive runs out."""
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.port = int(listener.getsockname()[1])
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                server = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)  # the 5 s were for connecting: an idle link stays up
            with self._lock:
                self._open |= {client, server}
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                self._flowing.wait()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            src.close()

    def cut(self) -> None:
        if self.listener is not None:
            with contextlib.suppress(OSError):
                self.listener.shutdown(socket.SHUT_RDWR)
            self.listener.close()
            self.listener = None
        with self._lock:
            for s in self._open:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            self._open.clear()
        self._flowing.set()  # held bytes go nowhere: their sockets are shut

    def close(self) -> None:
        self.cut()


async def wait_ready(url: str, timeout: float = 10.0) -> None:
    """Until the engine at ``url`` answers /readyz 200 (subscribed: what is published
    before that is not kept for it); an engine process still starting refuses first."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            with contextlib.suppress(aiohttp.ClientConnectorError):
                async with http.get(f"{url}/readyz") as resp:
                    if resp.status == 200:
                        return
            if time.monotonic() > deadline:
                raise AssertionError(f"engine not ready after {timeout} s")
            await asyncio.sleep(0.05)
