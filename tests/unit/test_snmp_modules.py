"""The shipped SNMP modules load, and a poll's values become the right samples."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from collectors.snmp.client import Value
from collectors.snmp.modules import load_modules, modules_for, scaled
from collectors.snmp.poller import samples_from
from monitor.config import load_config
from monitor.yamlmodel import Problems

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_modules_load_and_are_chosen_by_class_and_vendor() -> None:
    modules = load_modules()
    assert {"system", "if_mib", "host_resources", "ucd", "ups_mib", "apc_ups",
            "apc_pdu", "eaton_xups", "cisco_health", "hpe_health", "juniper_health",
            "huawei_health", "h3c_health"} == set(modules)
    assert ["system", "ups_mib"] == sorted(m.name for m in modules_for("ups", modules))
    # an APC UPS, once its sysObjectID is known (APC's enterprise 318), gets PowerNet-MIB
    assert ["apc_ups", "system", "ups_mib"] == sorted(
        m.name for m in modules_for("ups", modules, "1.3.6.1.4.1.318.1.3.2.12"))
    assert ["system", "ups_mib"] == sorted(  # another vendor's, or 3180: not APC
        m.name for m in modules_for("ups", modules, "1.3.6.1.4.1.3180.1"))
    assert ["apc_pdu", "system"] == sorted(
        m.name for m in modules_for("pdu", modules, "1.3.6.1.4.1.318.1.3.4.6"))
    assert ["host_resources", "if_mib", "system", "ucd"] == sorted(
        m.name for m in modules_for("server", modules))


def n(value: float, kind: str = "Counter64") -> Value:
    return Value(value, "", kind)


def t(text: str) -> Value:
    return Value(None, text, "OctetString")


def test_samples_use_ifname_and_fall_back_to_32_bit_counters() -> None:
    """ifName labels an interface where the device has it, ifDescr where not; with no
    64-bit column the 32-bit octets are used, typed counter32."""
    modules = [m for m in load_modules().values() if m.name in ("system", "if_mib")]
    scalars = {"1.3.6.1.2.1.1.3.0": n(123456, "TimeTicks"),
               "1.3.6.1.2.1.1.5.0": t("alta-core1")}
    columns = {
        "1.3.6.1.2.1.2.2.1.2": {"1": t("GigabitEthernet1/0/1"), "2": t("Vlan10")},
        "1.3.6.1.2.1.31.1.1.1.1": {"1": t("Gi1/0/1")},
        "1.3.6.1.2.1.2.2.1.10": {"1": n(4_000_000_000, "Counter32"), "2": n(7, "Counter32")},
        "1.3.6.1.2.1.2.2.1.8": {"1": n(1, "Integer32"), "2": n(2, "Integer32")},
    }
    samples = samples_from(modules, scalars, columns)
    got = {(s.name, tuple(sorted(s.labels.items())), s.kind): s.value for s in samples}
    assert 1234.56 == got[("sys_uptime_seconds", (), "gauge")]
    assert 1.0 == got[("snmp_system_info", (("sys_name", "alta-core1"),), "gauge")]
    assert 4e9 == got[("if_in_octets", (("ifindex", "1"), ("ifname", "Gi1/0/1")), "counter32")]
    assert 7.0 == got[("if_in_octets", (("ifindex", "2"), ("ifname", "Vlan10")), "counter32")]
    assert 2.0 == got[("if_oper_status", (("ifindex", "2"), ("ifname", "Vlan10")), "gauge")]
    assert 6 == len(samples)


def test_a_ups_that_does_not_know_sends_no_reading() -> None:
    """UPS-MIB lets a UPS say "unknown": -1 minutes and charge, battery status 1, an
    output source outside 1..7. None of those becomes a sample (a "battery at -1 %"
    alert would never clear); what the UPS does know still does."""
    ups = [load_modules()["ups_mib"]]
    scalars = {
        "1.3.6.1.2.1.33.1.2.1.0": n(1, "Integer32"),  # upsBatteryStatus: unknown
        "1.3.6.1.2.1.33.1.2.2.0": n(0, "Integer32"),
        "1.3.6.1.2.1.33.1.2.3.0": n(-1, "Integer32"),  # upsEstimatedMinutesRemaining
        "1.3.6.1.2.1.33.1.2.4.0": n(-1, "Integer32"),  # upsEstimatedChargeRemaining
        "1.3.6.1.2.1.33.1.2.7.0": n(31, "Integer32"),
        "1.3.6.1.2.1.33.1.4.1.0": n(0, "Integer32"),  # not a upsOutputSource value
    }
    got = {s.name: s.value for s in samples_from(ups, scalars, {})}
    assert {"ups_seconds_on_battery": 0.0, "ups_battery_temperature_celsius": 31.0} == got


def test_output_on_battery_is_read_from_the_output_source() -> None:
    ups = [load_modules()["ups_mib"]]
    got = {s.name: s.value for s in samples_from(
        ups, {"1.3.6.1.2.1.33.1.4.1.0": n(5, "Integer32")}, {})}
    assert {"ups_output_source": 5.0, "ups_on_battery": 1.0} == got


def test_an_apc_ups_reads_into_the_ups_mib_metrics() -> None:
    """PowerNet-MIB values from the MIB's definitions (no recording of such a UPS is at
    hand): on battery by upsBasicOutputStatus 3, 30 minutes left as 180,000 TimeTicks,
    battery low as upsBasicBatteryStatus 3; the shipped UPS rules then hold."""
    apc = [m for m in load_modules().values() if m.name == "apc_ups"]
    base = "1.3.6.1.4.1.318.1.1.1."
    scalars = {base + "4.1.1.0": n(3, "Integer32"), base + "2.2.3.0": n(180000, "TimeTicks"),
               base + "2.1.1.0": n(3, "Integer32"), base + "2.2.1.0": n(41, "Gauge32"),
               base + "2.1.2.0": n(12000, "TimeTicks"), base + "4.2.3.0": n(37, "Gauge32")}
    got = {s.name: s.value for s in samples_from(apc, scalars, {})}
    assert got == {"ups_on_battery": 1, "ups_output_source": 5, "ups_battery_status": 3,
                   "ups_estimated_charge_remaining_percent": 41,
                   "ups_estimated_minutes_remaining": pytest.approx(30.0),
                   "ups_seconds_on_battery": 120, "ups_output_load_percent": 37}


def test_tenths_and_hundredths_are_divided_to_the_value_the_mib_means() -> None:
    """41 tenths of an ampere is 4.1 A, not 4.1000000000000005 (41 x 0.1)."""
    assert [4.1, 49.9, 2.3, 40.0, 1.75, -0.5] == [
        scaled(41, 0.1), scaled(499, 0.1), scaled(230, 0.01), scaled(5, 8),
        scaled(7, 0.25), scaled(-5, 0.1)]


def test_a_sites_own_modules_add_and_replace_and_are_checked(tmp_path: Path) -> None:
    """poller.modules: a site's directory adds a vendor module and replaces a shipped
    one by name; `check config` loads it, and a broken one is reported by file, line
    and key."""
    own = tmp_path / "snmp-modules"
    own.mkdir()
    (own / "vendor.yaml").write_text(
        "name: acme_ups\nclasses: [ups]\nvendors: [1.3.6.1.4.1.99999]\nscalars:\n"
        "  - {name: acme_load_percent, oid: 1.3.6.1.4.1.99999.5.1.0}\n", encoding="utf-8")
    (own / "ucd.yaml").write_text("name: ucd\nclasses: [server]\n", encoding="utf-8")
    estate = tmp_path / "estate.yaml"
    estate.write_text(
        "locations: [{id: alta, name: Alta}]\nmunicipalities: [{id: alta, name: Alta}]\n"
        "poller: {modules: [snmp-modules]}\n", encoding="utf-8")
    config = load_config(estate)
    modules = load_modules(extra=config.module_dirs())
    assert ["acme_ups", "system", "ups_mib"] == sorted(
        m.name for m in modules_for("ups", modules, "1.3.6.1.4.1.99999.2"))
    assert ([], []) == (modules["ucd"].scalars, modules["ucd"].tables)  # replaced
    ok = subprocess.run([sys.executable, "-m", "monitor.cli", "check", "config", str(estate),
                         "--no-credentials"], capture_output=True, text=True, check=False,
                        cwd=ROOT)
    assert (0, "") == (ok.returncode, ok.stderr)
    (own / "broken.yaml").write_text("name: broken\nclasses: [ups]\nscalars:\n"
                                     "  - {name: x, oid: not-an-oid}\n", encoding="utf-8")
    bad = subprocess.run([sys.executable, "-m", "monitor.cli", "check", "config",
                          str(estate)], capture_output=True, text=True, check=False, cwd=ROOT)
    assert 1 == bad.returncode
    assert f"{own / 'broken.yaml'}:4: scalars[0].oid:" in bad.stderr, bad.stderr
    with pytest.raises(Problems, match="no such directory of SNMP modules"):
        load_modules(extra=[tmp_path / "nowhere"])


def test_a_vendor_module_only_fills_in_what_ups_mib_did_not_send() -> None:
    """An Eaton UPS answering UPS-MIB and XUPS-MIB: one series per metric, UPS-MIB's
    (charge 97 %, not XUPS's 100); XUPS's overall load, which UPS-MIB lacks here, is
    sent. Without UPS-MIB, XUPS-MIB's values are the metrics."""
    modules = modules_for("ups", load_modules(), "1.3.6.1.4.1.705.1")
    assert ["eaton_xups", "system", "ups_mib"] == sorted(m.name for m in modules)
    ups_mib = {"1.3.6.1.2.1.33.1.2.4.0": n(97, "Integer32"),
               "1.3.6.1.2.1.33.1.4.1.0": n(3, "Integer32")}
    xups = {"1.3.6.1.4.1.534.1.2.4.0": n(100, "Integer32"),
            "1.3.6.1.4.1.534.1.4.1.0": n(21, "Integer32"),
            "1.3.6.1.4.1.534.1.4.5.0": n(5, "Integer32")}
    both = samples_from(modules, {**ups_mib, **xups}, {})
    assert [("ups_estimated_charge_remaining_percent", 97.0), ("ups_on_battery", 0.0),
            ("ups_output_load_percent", 21.0), ("ups_output_source", 3.0)] == sorted(
        (s.name, s.value) for s in both)
    alone = samples_from(modules, xups, {})
    assert [("ups_estimated_charge_remaining_percent", 100.0), ("ups_on_battery", 1.0),
            ("ups_output_load_percent", 21.0), ("ups_output_source", 5.0)] == sorted(
        (s.name, s.value) for s in alone)
