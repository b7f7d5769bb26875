"""What the host agent reads from its machine each cycle, as samples (psutil based).

:func:`host_samples` is the whole reading: CPU, load, memory, swap, every real
filesystem (size, used, inodes where the OS has them), network bytes per interface,
uptime and boot time, and the watch list of processes. Services are read by a
:class:`ServiceSource`: systemd units on Linux, Windows services through psutil on
Windows; both sit behind one small protocol so the Windows path is tested with a
fake on Linux.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable, Iterable
from typing import Final, Protocol

import psutil

from monitor.events import Sample

__all__ = [
    "SKIP_FS_TYPES",
    "ServiceSource",
    "SystemdServices",
    "WindowsServices",
    "host_samples",
    "service_source",
]

SKIP_FS_TYPES: Final = frozenset({
    "tmpfs", "devtmpfs", "overlay", "squashfs", "proc", "sysfs", "cgroup", "cgroup2",
    "devpts", "mqueue", "debugfs", "tracefs", "securityfs", "pstore", "bpf", "autofs",
    "configfs", "fusectl", "hugetlbfs", "ramfs", "nsfs", "binfmt_misc", "efivarfs",
})


def host_samples(processes: Iterable[str] = (), *, skip_fs: frozenset[str] = SKIP_FS_TYPES
                 ) -> list[Sample]:
    """One reading of this host. ``processes``: names to count (0 = not running)."""
    samples = [Sample(name="cpu_usage_ratio", value=psutil.cpu_percent(interval=None) / 100)]
    if hasattr(os, "getloadavg"):
        one, five, fifteen = os.getloadavg()
        samples += [Sample(name="load1", value=one), Sample(name="load5", value=five),
                    Sample(name="load15", value=fifteen)]
    mem = psutil.virtual_memory()
    samples += [
        Sample(name="memory_total_bytes", value=float(mem.total)),
        Sample(name="memory_available_bytes", value=float(mem.available)),
        Sample(name="memory_used_ratio", value=round(1 - mem.available / mem.total, 6)),
    ]
    swap = psutil.swap_memory()
    samples += [
        Sample(name="swap_total_bytes", value=float(swap.total)),
        Sample(name="swap_used_bytes", value=float(swap.used)),
    ]
    samples += _filesystems(skip_fs)
    for nic, io in psutil.net_io_counters(pernic=True).items():
        labels = {"interface": nic[:128]}
        samples += [
            Sample(name="network_receive_bytes", value=float(io.bytes_recv), labels=labels,
                   kind="counter64"),
            Sample(name="network_transmit_bytes", value=float(io.bytes_sent), labels=labels,
                   kind="counter64"),
            Sample(name="network_receive_errors", value=float(io.errin), labels=labels,
                   kind="counter64"),
            Sample(name="network_transmit_errors", value=float(io.errout), labels=labels,
                   kind="counter64"),
        ]
    boot = psutil.boot_time()
    samples += [Sample(name="boot_time_seconds", value=boot),
                Sample(name="uptime_seconds", value=round(time.time() - boot, 1))]
    wanted = set(processes)
    if wanted:
        counts = dict.fromkeys(wanted, 0)
        for proc in psutil.process_iter(["name"]):
            name = proc.info.get("name")
            if name in counts:
                counts[name] += 1
        samples += [Sample(name="process_running", value=float(n), labels={"process": p[:128]})
                    for p, n in sorted(counts.items())]
    return samples


def _filesystems(skip: frozenset[str]) -> list[Sample]:
    samples: list[Sample] = []
    seen: set[str] = set()
    for part in psutil.disk_partitions(all=False):
        if part.fstype in skip or part.device in seen:
            continue
        seen.add(part.device)
        try:
            usage = psutil.disk_usage(part.mountpoint)
        except OSError:
            continue  # a stale network mount, a CD drive without a disc
        labels = {"mountpoint": part.mountpoint[:128], "fstype": part.fstype[:32]}
        samples += [
            Sample(name="filesystem_size_bytes", value=float(usage.total), labels=labels),
            Sample(name="filesystem_used_bytes", value=float(usage.used), labels=labels),
            # as df shows it: of what users may fill (root's reserve left out); the
            # shipped DiskFull rules read this
            Sample(name="filesystem_used_ratio", value=round(usage.percent / 100, 6),
                   labels=labels),
        ]
        if hasattr(os, "statvfs"):
            try:
                st = os.statvfs(part.mountpoint)
            except OSError:
                continue
            if st.f_files:
                samples += [
                    Sample(name="filesystem_inodes_total", value=float(st.f_files),
                           labels=labels),
                    Sample(name="filesystem_inodes_used", value=float(st.f_files - st.f_ffree),
                           labels=labels),
                ]
    return samples


class ServiceSource(Protocol):
    """Tells whether each named service is running."""

    async def states(self, names: list[str]) -> dict[str, bool]: ...


class SystemdServices:
    """systemd units, read with one ``systemctl show`` for the whole watch list."""

    def __init__(self, systemctl: str = "systemctl", timeout: float = 5.0) -> None:
        self.systemctl = systemctl
        self.timeout = timeout

    async def states(self, names: list[str]) -> dict[str, bool]:
        if not names:
            return {}
        try:
            proc = await asyncio.create_subprocess_exec(
                self.systemctl, "show", "--property=Id,ActiveState", "--", *names,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
            out, _ = await asyncio.wait_for(proc.communicate(), self.timeout)
        except (OSError, TimeoutError):
            return dict.fromkeys(names, False)
        return parse_systemctl_show(out.decode(errors="replace"), names)


def parse_systemctl_show(text: str, names: list[str]) -> dict[str, bool]:
    """``systemctl show`` prints one block per unit, in the order asked, blank-separated."""
    states = dict.fromkeys(names, False)
    blocks = [b for b in text.strip().split("\n\n") if b.strip()]
    for name, block in zip(names, blocks, strict=False):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        states[name] = props.get("ActiveState") == "active"
    return states


class WinService(Protocol):
    def status(self) -> str: ...


class WindowsServices:
    """Windows services through psutil; ``lookup`` is ``psutil.win_service_get`` there."""

    def __init__(self, lookup: Callable[[str], WinService] | None = None) -> None:
        if lookup is None:
            lookup = psutil.win_service_get  # type: ignore[attr-defined,unused-ignore]
        self.lookup: Callable[[str], WinService] = lookup

    async def states(self, names: list[str]) -> dict[str, bool]:
        result: dict[str, bool] = {}
        for name in names:
            try:
                service = self.lookup(name)
                result[name] = service.status() == "running"
            except Exception:
                result[name] = False
        return result


def service_source() -> ServiceSource:
    return WindowsServices() if sys.platform == "win32" else SystemdServices()
