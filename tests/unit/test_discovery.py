"""Discovery's class rules, one by one, on hand-made answers; and the proposal's ids."""

from __future__ import annotations

import pytest
import yaml

from collectors.snmp.client import Value
from collectors.snmp.discovery import (
    DOT1D_BASE_NUM_PORTS,
    HR_SYSTEM_UPTIME,
    IP_FORWARDING,
    SYS_DESCR,
    SYS_OBJECT_ID,
    SYS_SERVICES,
    UPS_IDENT_MODEL,
    Found,
    Scan,
    classify,
    proposal,
)


def _n(v: float) -> Value:
    return Value(v, "", "Integer32")


def _t(v: str) -> Value:
    return Value(None, v, "OctetString")


@pytest.mark.parametrize(("values", "expected"), [
    ({SYS_OBJECT_ID: _t("1.3.6.1.4.1.25461.2.3.18"), DOT1D_BASE_NUM_PORTS: _n(8)},
     ("firewall", "sysObjectID 1.3.6.1.4.1.25461.2.3.18 (a firewall maker)")),
    ({SYS_OBJECT_ID: _t("1.3.6.1.4.1.534.1"), HR_SYSTEM_UPTIME: _n(5)},
     ("ups", "sysObjectID 1.3.6.1.4.1.534.1 (a UPS maker's tree)")),
    # 1.3.6.1.4.1.5340 is not under Eaton's 534
    ({SYS_OBJECT_ID: _t("1.3.6.1.4.1.5340.1"), SYS_SERVICES: _n(72)},
     (None, "no rule placed it: choose its class")),
    ({UPS_IDENT_MODEL: _t("Smart-UPS"), DOT1D_BASE_NUM_PORTS: _n(1)},
     ("ups", "UPS-MIB answers")),
    ({SYS_DESCR: _t("Cisco AIR-AP1242AG Aironet"), DOT1D_BASE_NUM_PORTS: _n(2)},
     ("ap", "sysDescr names an access point")),
    ({DOT1D_BASE_NUM_PORTS: _n(0), IP_FORWARDING: _n(1)}, ("router", "ipForwarding: forwarding")),
    ({HR_SYSTEM_UPTIME: _n(1), IP_FORWARDING: _n(1)}, ("server", "HOST-RESOURCES answers")),
    ({SYS_SERVICES: _n(78)}, ("router", "sysServices 78: layer 3")),  # 2+4+8+64
    ({SYS_SERVICES: _n(3)}, ("switch", "sysServices 3: layer 2")),  # 1+2
    ({SYS_SERVICES: _n(72)}, (None, "no rule placed it: choose its class")),  # 8+64
])
def test_the_first_rule_that_holds_decides(values: dict[str, Value],
                                           expected: tuple[str | None, str]) -> None:
    assert expected == classify(values)


def test_ids_come_from_sysname_and_never_collide() -> None:
    found = [Found("10.0.0.9", "SW-Hall.kommune.local", "", "", "switch", "r"),
             Found("10.0.0.3", "sw-hall", "", "", "switch", "r"),
             Found("10.0.0.4", "10.0.0.4", "x", "", None, "no rule placed it")]
    text = proposal(Scan(found, 254, 1.0), "10.0.0.0/24", "hall", "p", {"sw-hall"})
    devices = yaml.safe_load(text)["devices"]
    # by address: .3 first; both want "sw-hall", which the estate holds already
    assert [("sw-hall-2", "10.0.0.3"), ("sw-hall-3", "10.0.0.9")] == [
        (d["id"], d["address"]) for d in devices]
    assert "  # 10.0.0.4 ('x'): no rule placed it" in text  # unplaced: a comment
