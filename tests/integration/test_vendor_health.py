"""Juniper, Huawei and H3C health, through snmpsim and the real poller. No recording
of such gear is in shared/testdata: these three are written from the MIBs
(JUNIPER-MIB jnxOperatingTable, HUAWEI-ENTITY-EXTENT-MIB hwEntityStateTable,
HH3C-ENTITY-EXT-MIB hh3cEntityExtStateTable with ENTITY-MIB's names) as such devices
answer — including the zeros they give for a component without a sensor or CPU —
and the expected samples are read off those rows by hand."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.snmp_poll import own_recordings, poll_recording

pytestmark = pytest.mark.integration

HEALTH = ("device_sensor_state", "device_temperature_celsius", "device_cpu_1min_percent",
          "device_memory_used_percent")


@pytest.fixture(scope="module")
def snmpsim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    yield from own_recordings(tmp_path_factory)


async def _health(port: int, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                  ) -> dict[tuple[str, str], float]:
    return {(s.name, s.labels["sensor_name"]): s.value
            for s in await poll_recording(port, name, "router", tmp_path, monkeypatch)
            if s.name in HEALTH}


async def test_juniper_components(snmpsim: int, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """PEM 0 down (6) is critical, a fan at full speed (5) a warning; the fans' and
    power supplies' temperature and CPU of 0 send nothing."""
    assert {
        ("device_sensor_state", "PEM 0"): 2, ("device_sensor_state", "PEM 1"): 0,
        ("device_sensor_state", "Top Fan Tray Fan 1"): 1,
        ("device_sensor_state", "FPC: MPC7E 3D 40XGE @ 0/*/*"): 0,
        ("device_sensor_state", "Routing Engine 0"): 0,
        ("device_temperature_celsius", "FPC: MPC7E 3D 40XGE @ 0/*/*"): 45,
        ("device_temperature_celsius", "Routing Engine 0"): 38,
        ("device_cpu_1min_percent", "FPC: MPC7E 3D 40XGE @ 0/*/*"): 21,
        ("device_cpu_1min_percent", "Routing Engine 0"): 7,
    } == await _health(snmpsim, "juniper-mx-health", tmp_path, monkeypatch)


async def test_huawei_entities(snmpsim: int, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    assert {
        ("device_cpu_1min_percent", "MPU Board 0"): 12,
        ("device_memory_used_percent", "MPU Board 0"): 43,
        ("device_temperature_celsius", "MPU Board 0"): 41,
        ("device_temperature_celsius", "PWR 1"): 33,
    } == await _health(snmpsim, "huawei-s5720-health", tmp_path, monkeypatch)


async def test_h3c_entities(snmpsim: int, tmp_path: Path,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Fan 1 reports fanError (41): critical; the power supply's notSupported (1)
    sends nothing."""
    assert {
        ("device_cpu_1min_percent", "Board 1"): 9,
        ("device_memory_used_percent", "Board 1"): 57,
        ("device_temperature_celsius", "Board 1"): 36,
        ("device_sensor_state", "Chassis"): 0, ("device_sensor_state", "Board 1"): 0,
        ("device_sensor_state", "Fan 1"): 2,
    } == await _health(snmpsim, "h3c-s5130-health", tmp_path, monkeypatch)
