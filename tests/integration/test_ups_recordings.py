"""UPSes as they answer when they do not know, through snmpsim and the real poller.

The recordings in tests/data/snmprec are written from UPS-MIB (RFC 1628) for the cases
the shared recordings do not hold: a UPS on battery that reports its charge and
minutes remaining as -1 (unknown), its battery status as 1 (unknown) and 0 s on
battery (some report the time only after a while), with the MIB's 0.1 V, 0.1 Hz and
0.1 A units; and a UPS network card that answers SNMP with no UPS-MIB at all.
Expected values are read from those files and the MIB by hand.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.snmp_poll import own_recordings, poll_recording

pytestmark = pytest.mark.integration



@pytest.fixture(scope="module")
def snmpsim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    yield from own_recordings(tmp_path_factory)


async def _poll(port: int, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                own_modules: str | None = None) -> dict[tuple[str, str | None], float]:
    """One poll of ``name`` as a UPS: its UPS-MIB (and site module) samples by (name,
    line)."""
    return {(s.name, s.labels.get("line")): s.value
            for s in await poll_recording(port, name, "ups", tmp_path, monkeypatch, own_modules)
            if s.name.startswith(("ups_", "acme_"))}


async def test_unknowns_send_nothing_and_the_output_source_says_battery(
        snmpsim: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """-1 charge and minutes and battery status 1 become no sample (no "battery at -1 %"
    alert can follow); output source 5 is on battery with 0 s on battery; 0.1 units
    are scaled."""
    got = await _poll(snmpsim, "ups-unknowns", tmp_path, monkeypatch)
    assert {
        ("ups_seconds_on_battery", None): 0.0,  # .1.2.2.0 = 0
        ("ups_battery_voltage_volts", None): 218.4,  # .1.2.5.0 = 2184 x 0.1 V
        ("ups_battery_temperature_celsius", None): 23.0,  # .1.2.7.0
        ("ups_output_source", None): 5.0,  # .1.4.1.0 = 5, battery
        ("ups_on_battery", None): 1.0,  # by the output source alone
        ("ups_output_frequency_hertz", None): 49.9,  # .1.4.2.0 = 499 x 0.1 Hz
        ("ups_input_frequency_hertz", "1"): 0.0,  # mains gone
        ("ups_input_voltage_volts", "1"): 0.0,
        ("ups_output_voltage_volts", "1"): 230.0,  # .1.4.4.1.2.1, in volts
        ("ups_output_current_amperes", "1"): 4.1,  # .1.4.4.1.3.1 = 41 x 0.1 A
        ("ups_output_power_watts", "1"): 820.0,
        ("ups_output_load_percent", "1"): 27.0,
    } == got


async def test_a_ups_without_ups_mib_sends_no_power_data(
        snmpsim: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """It answers (the device is up) but sends no ups_ sample: UpsNoPowerData, an
    absence rule on ups_output_source, says so (rules/tests/power.test.yaml)."""
    assert {} == await _poll(snmpsim, "ups-no-ups-mib", tmp_path, monkeypatch)


async def test_a_sites_own_module_reads_its_vendors_oids(
        snmpsim: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A module in the site's own directory (poller.modules), for the vendor the
    recording's sysObjectID names, is read beside UPS-MIB: .99999.5.1.0 = 27."""
    (tmp_path / "modules").mkdir()
    (tmp_path / "modules" / "acme.yaml").write_text(
        "name: acme_ups\nclasses: [ups]\nvendors: [1.3.6.1.4.1.99999.1]\nscalars:\n"
        "  - {name: acme_load_percent, oid: 1.3.6.1.4.1.99999.5.1.0}\n", encoding="utf-8")
    got = await _poll(snmpsim, "ups-unknowns", tmp_path, monkeypatch, "modules")
    assert 27.0 == got[("acme_load_percent", None)]
    assert 5.0 == got[("ups_output_source", None)]
    assert {} == await _poll(snmpsim, "ups-no-ups-mib", tmp_path, monkeypatch, "modules")


async def test_an_eaton_card_with_xups_mib_only_fills_the_ups_metrics(
        snmpsim: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Eaton 93E recording's XUPS-MIB lines without its UPS-MIB (tests/data/snmprec/
    eaton-xups-only.snmprec; sysObjectID 705.1, MGE's, now Eaton's): read into the
    UPS-MIB metrics in UPS-MIB's units, values from the recording by hand."""
    got = await _poll(snmpsim, "eaton-xups-only", tmp_path, monkeypatch)
    assert {
        ("ups_estimated_minutes_remaining", None): 1092.25,  # .534.1.2.1.0 = 65535 s
        ("ups_battery_voltage_volts", None): 521.0,  # .534.1.2.2.0, volts
        ("ups_estimated_charge_remaining_percent", None): 100.0,  # .534.1.2.4.0
        ("ups_input_frequency_hertz", None): 50.0,  # .534.1.3.1.0 = 500 x 0.1 Hz
        ("ups_output_load_percent", None): 21.0,  # .534.1.4.1.0, the whole output
        ("ups_output_frequency_hertz", None): 49.0,  # .534.1.4.2.0 = 490
        ("ups_output_source", None): 3.0,  # .534.1.4.5.0 = 3, normal
        ("ups_on_battery", None): 0.0,
        ("ups_input_voltage_volts", "1"): 227.0,  # .534.1.3.4.1.2.1..3
        ("ups_input_voltage_volts", "2"): 227.0,
        ("ups_input_voltage_volts", "3"): 233.0,
        ("ups_output_voltage_volts", "1"): 220.0,  # .534.1.4.4.1.2.1..3
        ("ups_output_voltage_volts", "2"): 220.0,
        ("ups_output_voltage_volts", "3"): 220.0,
        ("ups_output_current_amperes", "1"): 27.0,  # .534.1.4.4.1.3, amperes
        ("ups_output_current_amperes", "2"): 18.0,
        ("ups_output_current_amperes", "3"): 15.0,
        ("ups_output_power_watts", "1"): 5100.0,  # .534.1.4.4.1.4
        ("ups_output_power_watts", "2"): 3600.0,
        ("ups_output_power_watts", "3"): 2700.0,
    } == got
