"""Host agent pieces that need no broker: readings, services, identity, settings."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from collectors.agent.host import (
    SystemdServices,
    WindowsServices,
    host_samples,
    parse_systemctl_show,
)
from collectors.agent.settings import AgentSettings, DeviceMapping, load_settings
from monitor.yamlmodel import Problems


def test_host_reading_has_every_kind_of_sample() -> None:
    """A real reading of this machine: CPU, memory, a filesystem, network, uptime."""
    samples = host_samples(["python3", "no-such-process-xyz"])
    names = {s.name for s in samples}
    assert {"cpu_usage_ratio", "memory_used_ratio", "memory_total_bytes", "swap_total_bytes",
            "filesystem_size_bytes", "filesystem_used_bytes", "network_receive_bytes",
            "uptime_seconds", "boot_time_seconds", "process_running", "load1"} <= names
    running = {s.labels["process"]: s.value for s in samples if s.name == "process_running"}
    assert 0.0 == running["no-such-process-xyz"]
    assert all(0.0 <= s.value <= 1.0 for s in samples if s.name.endswith("_ratio"))
    assert any(s.labels.get("interface") == "lo" for s in samples)


def test_filesystem_used_ratio_is_what_df_shows() -> None:
    """The ratio the shipped DiskFull rules read, from statvfs by hand: used over what
    users may fill (blocks used plus blocks available to them), as df's Use%."""
    import os

    ratios = {s.labels["mountpoint"]: s.value for s in host_samples([])
              if s.name == "filesystem_used_ratio"}
    assert ratios, "no filesystem_used_ratio"
    mountpoint, ratio = next(iter(ratios.items()))
    st = os.statvfs(mountpoint)
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    expected = used / (used + st.f_bavail * st.f_frsize)
    assert expected == pytest.approx(ratio, abs=0.01)  # the disk moves between readings


def test_systemctl_show_blocks_map_to_units_in_order() -> None:
    """One block per unit, in the order asked; only ActiveState=active is running."""
    text = ("Id=ssh.service\nActiveState=active\n\n"
            "Id=nginx.service\nActiveState=failed\n\n"
            "Id=nope.service\nActiveState=inactive\n")
    assert {"ssh.service": True, "nginx.service": False, "nope.service": False} == (
        parse_systemctl_show(text, ["ssh.service", "nginx.service", "nope.service"]))


async def test_missing_systemctl_reports_services_down() -> None:
    """No systemctl (a container, a PC without systemd): every watched unit is down."""
    source = SystemdServices(systemctl="/nonexistent/systemctl")
    assert {"ssh.service": False} == await source.states(["ssh.service"])


class FakeWinService:
    def __init__(self, status: str) -> None:
        self._status = status

    def status(self) -> str:
        return self._status


async def test_windows_services_through_a_fake_psutil_lookup() -> None:
    """The Windows path, with psutil.win_service_get replaced by a fake (no Windows
    runs here): running is up; stopped, paused and unknown services are down."""
    table = {"Spooler": "running", "wuauserv": "stopped", "W32Time": "paused"}

    def lookup(name: str) -> FakeWinService:
        if name not in table:
            raise OSError(f"no such service {name}")
        return FakeWinService(table[name])

    source = WindowsServices(lookup)
    assert {"Spooler": True, "wuauserv": False, "W32Time": False, "Missing": False} == (
        await source.states(["Spooler", "wuauserv", "W32Time", "Missing"]))


@pytest.mark.parametrize(("hostname", "mapping", "device"), [
    ("ALTA-PC0042.kommune.no", [], "alta-pc0042"),
    ("web_01", [], "web-01"),
    ("ws-4711", [DeviceMapping(r"ws-(\d+)", r"hasvik-pc\1")], "hasvik-pc4711"),
    ("other", [DeviceMapping(r"ws-(\d+)", r"hasvik-pc\1")], "other"),
])
def test_device_id_from_host_name(hostname: str, mapping: list[DeviceMapping],
                                  device: str) -> None:
    """Without a configured id, the host name becomes the device id (or its mapping)."""
    settings = AgentSettings(location="alta", municipality="hasvik", device_map=mapping)
    assert device == settings.device_id(hostname)


def _args(**kw: object) -> argparse.Namespace:
    base = dict.fromkeys(["config", "location", "municipality", "device", "device_class",
                          "interval", "outbox", "broker_host", "broker_port"])
    base.update(kw)
    return argparse.Namespace(**base)


def test_settings_file_then_environment_then_flags(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Flags beat the environment, which beats the file; the default interval follows
    the class (60 s for PCs)."""
    path = tmp_path / "agent.yaml"
    path.write_text("location: alta\nmunicipality: alta\nclass: server\n"
                    "broker: {location: alta, host: 127.0.0.1, port: 1883}\n"
                    "watch: {services: [ssh.service]}\n", encoding="utf-8")
    monkeypatch.setenv("DRIFTSVAKT_AGENT_CLASS", "pc")
    monkeypatch.setenv("DRIFTSVAKT_AGENT_MUNICIPALITY", "loppa")
    settings = load_settings(_args(config=str(path), municipality="hasvik", broker_port=1884))
    assert ("hasvik", "pc", 60.0, 1884, ["ssh.service"]) == (
        settings.municipality, settings.device_class, settings.every,
        settings.broker.port if settings.broker else None, settings.watch.services)


def test_settings_errors_name_the_line(tmp_path: Path) -> None:
    """A broken agent.yaml is reported with file, line and key, like the engine's config."""
    path = tmp_path / "agent.yaml"
    path.write_text("location: alta\nmunicipality: alta\nclass: laptop\nintervall: 5\n",
                    encoding="utf-8")
    with pytest.raises(Problems) as caught:
        load_settings(_args(config=str(path)))
    text = str(caught.value)
    assert "agent.yaml:3: class: expected one of 'server', 'pc'" in text
    assert "agent.yaml:4: intervall: unknown key (did you mean 'interval'?)" in text
