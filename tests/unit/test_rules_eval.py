"""Every rule kind and every lifecycle transition, on a fake clock with exact times."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from monitor.events import (
    CheckEvent,
    ComponentStatus,
    DeviceTopic,
    Event,
    HeartbeatEvent,
    MetricsEvent,
    Sample,
    StateEvent,
    TrapEvent,
    Varbind,
)
from monitor.officehours import Schedule
from monitor.rules.evaluator import RuleEngine
from monitor.rules.inventory import DeviceInfo, Inventory
from monitor.rules.model import load_rules
from monitor.rules.suppress import Maintenance, Recurrence, Silence
from monitor.state import State

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC).timestamp()  # a Monday, 13:00 in Oslo

INVENTORY = Inventory.from_list([
    DeviceInfo("core", "Core", "switch", "rh", "Rådhus", "alta", "alta"),
    DeviceInfo("dist", "Dist", "switch", "rh", "Rådhus", "alta", "alta", parent="core"),
    *(DeviceInfo(f"acc{i}", f"Access {i}", "switch", "rh", "Rådhus", "alta", "alta",
                 parent="dist") for i in range(3)),
    DeviceInfo("srv", "Server", "server", "rh", "Rådhus", "alta", "alta", parent="acc0",
               tags=frozenset({"sql"})),
    DeviceInfo("pc1", "PC", "pc", "rh", "Rådhus", "alta", "alta", parent="acc1"),
    DeviceInfo("ups", "UPS", "ups", "rh", "Rådhus", "alta", "alta", parent="acc2"),
    DeviceInfo("ups0", "Room UPS", "ups", "rh", "Rådhus", "alta", "alta"),  # no network parent
    DeviceInfo("edge", "Edge", "switch", "rh", "Rådhus", "alta", "alta",
               watch=frozenset({"Te1/1/1"})),
])


class Harness:
    """The engine's ingest path in miniature: apply to state, then evaluate."""

    def __init__(self, tmp_path: Path, rules: str, inventory: Inventory | None = None,
                 **kwargs: Any) -> None:
        path = tmp_path / "rules.yaml"
        path.write_text(textwrap.dedent(rules))
        self.rules = load_rules(path)
        self.state = State()
        self.engine = RuleEngine(self.rules, inventory or INVENTORY, started=T0, **kwargs)
        self.seq = 0

    def send(self, event: Event) -> None:
        topic = DeviceTopic("alta", "alta", event.device, "x")
        self.state.apply(topic, event)
        self.engine.on_event(topic, event, self.state)

    def base(self, device: str, at: float) -> dict[str, Any]:
        self.seq += 1
        return {"v": 1, "ts": T0 + at, "src": "test", "seq": self.seq, "device": device}

    def sample(self, device: str, at: float, name: str, value: float,
               kind: str = "gauge", **labels: str) -> None:
        self.send(MetricsEvent(**self.base(device, at),
                               samples=[Sample(name, value, labels, kind)]))  # type: ignore[arg-type]

    def samples(self, device: str, at: float, samples: list[Sample]) -> None:
        self.send(MetricsEvent(**self.base(device, at), samples=samples))

    def state_of(self, device: str, at: float, state: str) -> None:
        self.send(StateEvent(**self.base(device, at), state=state))  # type: ignore[arg-type]

    def tick(self, at: float) -> None:
        self.engine.tick(T0 + at, self.state)

    def shown(self) -> dict[tuple[str, str], str]:
        """(alertname, device) -> state shown, for alerts not resolved."""
        return {(a.rule, a.device or a.labels.get("instance", "")): a.shown_state()
                for a in self.engine.alerts.values() if a.state != "resolved"}

    def log(self) -> list[tuple[float, str]]:
        return [(t.ts - T0, t.state) for t in self.engine.log]

    def only(self) -> Any:
        (alert,) = self.engine.alerts.values()
        return alert


CPU = """
rules:
  - name: HighCpu
    kind: threshold
    severity: warning
    select: {metric: cpu_usage_ratio, class: [server]}
    op: ">"
    value: 0.9
    clear: 0.8
    for: 5m
    annotations:
      summary: "CPU {{ (value * 100) | round | int }} % on {{ device_name }} ({{ site_name }})"
"""


def test_threshold_pending_then_firing_at_the_for_then_held_by_hysteresis(tmp_path: Path) -> None:
    h = Harness(tmp_path, CPU)
    h.sample("srv", 0, "cpu_usage_ratio", 0.95)
    assert {("HighCpu", "srv"): "pending"} == h.shown()
    h.tick(299)
    assert "pending" == h.only().state
    h.tick(300)
    alert = h.only()
    assert ("firing", T0 + 300) == (alert.state, alert.fired_at)
    assert "CPU 95 % on Server (Rådhus)" == alert.annotations["summary"]
    h.sample("srv", 360, "cpu_usage_ratio", 0.85)  # below 0.9 but above clear: holds
    assert "firing" == h.only().state
    h.sample("srv", 420, "cpu_usage_ratio", 0.79)
    assert ("resolved", T0 + 420) == (h.only().state, h.only().resolved_at)
    assert [(0, "pending"), (300, "firing"), (420, "resolved")] == h.log()


def test_threshold_that_clears_before_its_for_is_dropped_unseen(tmp_path: Path) -> None:
    h = Harness(tmp_path, CPU)
    h.sample("srv", 0, "cpu_usage_ratio", 0.95)
    h.sample("srv", 120, "cpu_usage_ratio", 0.5)
    h.tick(600)
    assert {} == h.engine.alerts
    assert [(0, "pending"), (120, "dropped")] == h.log()


def test_threshold_fires_on_a_later_sample_once_for_has_passed(tmp_path: Path) -> None:
    h = Harness(tmp_path, CPU)
    for at in range(0, 361, 60):
        h.sample("srv", at, "cpu_usage_ratio", 0.97)
    assert ("firing", T0 + 300) == (h.only().state, h.only().fired_at)


def test_late_sample_is_ignored_by_rules(tmp_path: Path) -> None:
    h = Harness(tmp_path, CPU.replace("for: 5m", "for: 0s"))
    h.sample("srv", 100, "cpu_usage_ratio", 0.95)
    h.sample("srv", 50, "cpu_usage_ratio", 0.1)  # older than what was seen: no effect
    assert "firing" == h.only().state


def test_selector_class_tags_and_labels(tmp_path: Path) -> None:
    h = Harness(tmp_path, """
    rules:
      - name: DiskFull
        kind: threshold
        severity: major
        select:
          metric: filesystem_used_ratio
          tags: [sql]
          labels: ['mountpoint=~"/(var|srv)(/.*)?"', 'fstype!="tmpfs"']
        value: 0.9
    """)
    def fs(mountpoint: str, fstype: str, value: float = 0.95) -> Sample:
        return Sample("filesystem_used_ratio", value, {"mountpoint": mountpoint, "fstype": fstype})
    h.samples("srv", 0, [fs("/", "ext4"), fs("/var/lib", "ext4"), fs("/srv", "tmpfs")])
    h.samples("pc1", 0, [fs("/var", "ext4", 0.99)])
    (alert,) = h.engine.alerts.values()
    assert ("srv", "/var/lib", "major") == (alert.device, alert.labels["mountpoint"],
                                            alert.severity)


RATE = """
rules:
  - name: InterfaceErrors
    kind: rate
    severity: warning
    select: {metric: if_in_errors}
    value: 10
    clear: 5
  - name: InterfaceSaturated
    kind: rate
    severity: warning
    select: {metric: if_in_octets}
    scale: 8
    percent_of: if_speed_bps
    value: 90
"""


@pytest.mark.parametrize(("before", "after", "kind", "seconds", "fires", "value"), [
    (1000, 1200, "counter32", 10, True, 20.0),
    (2**32 - 100, 100, "counter32", 10, True, 20.0),        # 32-bit wrap
    (2**32 - 100, 100, "counter64", 10, False, None),       # a 64-bit counter going back: reset
    (2**32 - 10, 2**31, "counter32", 10, False, None),      # more than half the range: reset
    (1000, 1040, "counter32", 10, False, None),              # 4/s
])
def test_rate_is_wrap_and_reset_safe(tmp_path: Path, before: int, after: int, kind: str,
                                     seconds: int, fires: bool, value: float | None) -> None:
    h = Harness(tmp_path, RATE)
    h.sample("acc0", 0, "if_in_errors", before, kind, ifname="Gi1/0/1")
    h.sample("acc0", seconds, "if_in_errors", after, kind, ifname="Gi1/0/1")
    alerts = list(h.engine.alerts.values())
    assert fires == bool(alerts)
    if fires:
        assert value == alerts[0].value
        assert "Gi1/0/1" == alerts[0].labels["ifname"]


def test_no_rate_across_a_reboot(tmp_path: Path) -> None:
    h = Harness(tmp_path, RATE)
    h.samples("acc0", 0, [Sample("sys_uptime_seconds", 5000.0),
                          Sample("if_in_errors", 9000, {"ifname": "x"}, "counter32")])
    h.samples("acc0", 60, [Sample("sys_uptime_seconds", 30.0),  # rebooted: counters restarted
                           Sample("if_in_errors", 9000 + 2**31 + 5, {"ifname": "x"}, "counter32")])
    assert {} == h.engine.alerts


def test_utilisation_as_percent_of_interface_speed(tmp_path: Path) -> None:
    h = Harness(tmp_path, RATE)
    speed = Sample("if_speed_bps", 1e9, {"ifname": "Te1"})
    h.samples("core", 0, [speed, Sample("if_in_octets", 0, {"ifname": "Te1"}, "counter64")])
    # 118.75 MB in 1 s = 950 Mbit/s = 95 % of 1 Gbit/s
    h.samples("core", 1, [speed, Sample("if_in_octets", 118_750_000, {"ifname": "Te1"},
                                        "counter64")])
    assert pytest.approx(95.0) == h.only().value
    h.samples("core", 2, [speed, Sample("if_in_octets", 118_750_000 + 100_000_000,
                                        {"ifname": "Te1"}, "counter64")])
    assert "resolved" == h.only().state  # 80 % < 90 and no clear given: clears at 90


def test_rate_hysteresis_holds_between_clear_and_value(tmp_path: Path) -> None:
    h = Harness(tmp_path, RATE)
    for at, total in ((0, 0), (10, 200), (20, 270), (30, 310)):  # 20/s, 7/s, 4/s
        h.sample("acc0", at, "if_in_errors", total, "counter32", ifname="x")
        if at == 20:
            assert "firing" == h.only().state
    assert ("resolved", T0 + 30) == (h.only().state, h.only().resolved_at)


ABSENCE = """
rules:
  - name: NoData
    kind: absence
    severity: major
    select: {class: [server, pc]}
    missed: 3
"""


def test_absence_fires_after_missed_intervals(tmp_path: Path) -> None:
    h = Harness(tmp_path, ABSENCE)
    h.send(HeartbeatEvent(**h.base("srv", 0), interval=30))
    h.tick(90)
    assert ("NoData", "srv") not in h.shown()
    h.tick(95)
    assert "firing" == h.shown()[("NoData", "srv")]
    h.send(HeartbeatEvent(**h.base("srv", 100), interval=30))
    h.tick(101)
    assert ("NoData", "srv") not in h.shown()


@pytest.mark.parametrize(("at_utc", "expected"), [
    (datetime(2026, 11, 23, 12, 0, tzinfo=UTC), True),    # Monday 13:00 Oslo, office open
    (datetime(2026, 11, 23, 20, 0, tzinfo=UTC), False),   # Monday 21:00: off, not down
    (datetime(2026, 12, 25, 12, 0, tzinfo=UTC), False),   # Christmas Day: a holiday
])
def test_absence_of_a_pc_follows_office_hours(tmp_path: Path, at_utc: datetime,
                                              expected: bool) -> None:
    hours = Schedule.from_text({"mon-fri": ["07:00-16:00"]})
    h = Harness(tmp_path, ABSENCE, hours_for=lambda _d: (hours, 1800.0))
    now = at_utc.timestamp() - T0
    h.send(HeartbeatEvent(**h.base("pc1", now - 4 * 3600), interval=60))
    h.tick(now)
    assert expected == (("NoData", "pc1") in h.shown())


DOWN = """
rules:
  - name: DeviceDown
    kind: state
    severity: critical
    select: {class: [switch, server, ups]}
    states: [down]
    for: 1m
    annotations:
      summary: "{{ device_name }} is down{% if behind %}; {{ behind }} devices behind it{% endif %}"
  - name: NoData
    kind: absence
    severity: major
    select: {class: [server]}
"""


def test_topology_one_alert_for_the_switch_none_behind_it(tmp_path: Path) -> None:
    h = Harness(tmp_path, DOWN)
    everything = ["core", "dist", "acc0", "acc1", "acc2", "srv", "ups"]
    for device in everything:
        h.state_of(device, 0, "up")
    # the children are polled first, then the distribution switch; the server has only
    # an agent, which falls silent
    for device in ("acc0", "acc1", "acc2", "ups", "dist"):
        h.state_of(device, 10, "down")
    h.tick(170)
    assert {("DeviceDown", "dist"): "firing"} == h.shown()
    alert = next(iter(h.engine.alerts.values()))
    assert (6, "Dist is down; 6 devices behind it") == (alert.behind, alert.annotations["summary"])
    # the server's silence (3 x 60 s after its last word at 0) is the switch's fault
    h.tick(185)
    assert {("DeviceDown", "dist"): "firing", ("NoData", "srv"): "suppressed"} == h.shown()
    assert "topology" == next(a for a in h.engine.alerts.values() if a.rule == "NoData").suppressed
    # the switch comes back, then its children: everything settles
    h.state_of("dist", 600, "up")
    for device in ("acc0", "acc1", "acc2", "ups"):
        h.state_of(device, 620, "up")
    h.send(HeartbeatEvent(**h.base("srv", 620), interval=60))
    h.tick(700)
    assert {} == h.shown()
    fired = [a.rule + ":" + (a.device or "") for a in h.engine.alerts.values() if a.fired_at]
    assert ["DeviceDown:dist", "NoData:srv"] == sorted(fired)


def test_children_still_down_when_their_parent_returns_page_nobody_before_their_for(
        tmp_path: Path) -> None:
    """The switch answers again at 600 s; what is behind it was last polled down (at
    10 s) and is re-polled 40 s later: their DeviceDown counts its 1 m from the parent's
    return, not from 10 s, so nothing behind the switch fires; one still down after
    that does."""
    h = Harness(tmp_path, DOWN)
    for device in ("core", "dist", "acc0", "acc1", "acc2", "srv", "ups"):
        h.state_of(device, 0, "up")
    for device in ("acc0", "acc1", "acc2", "ups", "dist"):
        h.state_of(device, 10, "down")
    h.tick(300)
    h.state_of("dist", 600, "up")
    for at in (601, 620, 639):
        h.tick(at)
        assert "pending" == h.shown()[("DeviceDown", "acc0")]
        assert [] == [k for k, v in h.shown().items() if v == "firing"], at
    for device in ("acc0", "acc1", "ups"):
        h.state_of(device, 640, "up")
    h.send(HeartbeatEvent(**h.base("srv", 640), interval=60))  # its agent is back too
    h.tick(650)
    assert not [k for k, v in h.shown().items() if v == "firing"]
    h.tick(661)  # acc2 stays down: a minute after the parent came back, its own alert
    assert {("DeviceDown", "acc2"): "firing"} == {
        k: v for k, v in h.shown().items() if v == "firing"}


def _pair() -> Inventory:
    """A redundant core pair; a distribution switch on both (either reaches it), its
    access switch, and a server that needs both (parents_needed 2)."""
    def info(d: str, name: str, **kw: Any) -> DeviceInfo:
        return DeviceInfo(d, name, "switch", "rh", "Rådhus", "alta", "alta", **kw)
    return Inventory.from_list([
        info("core1", "Core 1"), info("core2", "Core 2"),
        info("dist", "Dist", parents=("core1", "core2")),
        info("acc", "Access", parent="dist"),
        info("lag", "Both", parents=("core1", "core2"), needed=2)])


def test_redundant_parents_one_side_down(tmp_path: Path) -> None:
    """One core of the pair down: what hangs on both is still reached through the
    other, so a failure of its own pages (it is down, not unreachable), and the core
    alone cuts off nothing but what needs both."""
    h = Harness(tmp_path, DOWN, _pair())
    for device in ("core1", "core2", "dist", "acc", "lag"):
        h.state_of(device, 0, "up")
    h.state_of("core1", 10, "down")
    h.state_of("dist", 10, "down")
    h.state_of("lag", 10, "down")
    h.state_of("acc", 10, "down")
    assert ("down", "down", "unreachable", "unreachable") == tuple(
        h.engine.topology.effective_state(d) for d in ("core1", "dist", "acc", "lag"))
    h.tick(75)
    assert {("DeviceDown", "core1"): "firing", ("DeviceDown", "dist"): "firing"} == {
        k: v for k, v in h.shown().items() if v == "firing"}
    core1 = next(a for a in h.engine.alerts.values() if a.device == "core1")
    assert (1, "Core 1 is down; 1 devices behind it") == (core1.behind,
                                                          core1.annotations["summary"])
    assert ["acc"] == h.engine.inventory.dependents("dist")


def test_redundant_parents_both_sides_down(tmp_path: Path) -> None:
    """Both cores down: everything behind them is unreachable and pages nobody; each
    core alone cuts off only what needs both."""
    h = Harness(tmp_path, DOWN, _pair())
    for device in ("core1", "core2", "dist", "acc", "lag"):
        h.state_of(device, 0, "up")
    for device in ("core1", "core2", "dist", "acc", "lag"):
        h.state_of(device, 10, "down")
    assert dict.fromkeys(("dist", "acc", "lag"), "unreachable") == {
        d: h.engine.topology.effective_state(d) for d in ("dist", "acc", "lag")}
    h.tick(75)
    assert {("DeviceDown", "core1"): "firing", ("DeviceDown", "core2"): "firing"} == {
        k: v for k, v in h.shown().items() if v == "firing"}
    # core2 comes back: dist is reached again and its own state counts; acc is behind
    # dist, lag still needs core1
    h.state_of("core2", 100, "up")
    assert ("down", "unreachable", "unreachable") == tuple(
        h.engine.topology.effective_state(d) for d in ("dist", "acc", "lag"))


def test_a_device_down_on_its_own_alerts(tmp_path: Path) -> None:
    h = Harness(tmp_path, DOWN)
    h.state_of("acc1", 0, "down")
    h.tick(60)
    assert {("DeviceDown", "acc1"): "firing"} == h.shown()
    assert "Access 1 is down; 1 devices behind it" == h.only().annotations["summary"]


INTERFACE_DOWN = """
    rules:
      - name: InterfaceDown
        kind: state
        subject: interface
        severity: warning
        states: [down]
    """


def test_interface_down_while_admin_up(tmp_path: Path) -> None:
    h = Harness(tmp_path, INTERFACE_DOWN)
    def poll(at: float, oper: int, admin: int, ifname: str = "Gi1") -> None:
        h.samples("acc0", at, [Sample("if_admin_status", admin, {"ifname": ifname}),
                               Sample("if_oper_status", oper, {"ifname": ifname})])
    poll(0, 1, 1)
    poll(60, 2, 2)   # shut down by an operator: no alert
    assert {} == h.shown()
    poll(120, 2, 1)
    assert {("InterfaceDown", "acc0"): "firing"} == h.shown()
    poll(180, 1, 1)
    assert {} == h.shown()


def test_check_failed_and_certificate_days(tmp_path: Path) -> None:
    h = Harness(tmp_path, """
    rules:
      - name: CheckFailed
        kind: state
        subject: check
        severity: major
        states: [failed]
        for: 2m
      - name: CertificateExpiring
        kind: threshold
        subject: check
        severity: warning
        select: {metric: days_left, labels: ['check_kind="tls"']}
        op: "<"
        value: 21
    """)
    def check(at: float, ok: bool, days: float) -> None:
        h.send(CheckEvent(**h.base("srv", at), check="web-tls", kind="tls", ok=ok,
                          latency=0.01, values={"days_left": days}))
    check(0, False, 30)
    check(60, False, 20.5)
    assert {("CheckFailed", "srv"): "pending",
            ("CertificateExpiring", "srv"): "firing"} == h.shown()
    check(120, False, 20.4)
    assert "firing" == h.shown()[("CheckFailed", "srv")]
    check(180, True, 364)
    assert {} == h.shown()


TRAP = """
rules:
  - name: LinkDown
    kind: trap
    severity: warning
    trap_oid: 1.3.6.1.6.3.1.1.5.3
    identify_by: {ifindex: 1.3.6.1.2.1.2.2.1.1}
    resolve_oid: 1.3.6.1.6.3.1.1.5.4
    resolve_after: 1h
"""


def _trap(h: Harness, at: float, oid: str, ifindex: str) -> None:
    h.send(TrapEvent(**h.base("acc0", at), trap_oid=oid, agent_addr="127.0.0.1",
                     varbinds=[Varbind(f"1.3.6.1.2.1.2.2.1.1.{ifindex}", "Integer", ifindex)]))


def test_trap_raises_and_the_matching_trap_resolves(tmp_path: Path) -> None:
    h = Harness(tmp_path, TRAP)
    _trap(h, 0, "1.3.6.1.6.3.1.1.5.3", "7")
    _trap(h, 5, "1.3.6.1.6.3.1.1.5.3", "8")
    assert 2 == sum(1 for a in h.engine.alerts.values() if a.state == "firing")
    _trap(h, 30, "1.3.6.1.6.3.1.1.5.4", "7")  # linkUp for ifIndex 7 only
    states = {a.labels["ifindex"]: a.state for a in h.engine.alerts.values()}
    assert {"7": "resolved", "8": "firing"} == states
    h.tick(5 + 3599)
    assert "firing" == h.engine.alerts[next(a.fingerprint for a in h.engine.alerts.values()
                                            if a.labels["ifindex"] == "8")].state
    h.tick(5 + 3600)  # no linkUp within resolve_after: resolved by time
    assert {"7": "resolved", "8": "resolved"} == {
        a.labels["ifindex"]: a.state for a in h.engine.alerts.values()}


def test_a_watched_interface_down_from_the_start_matters(tmp_path: Path) -> None:
    """An uplink the estate says to watch is down when the engine first hears of it:
    it fires; a port beside it, down as long as the engine has known it, without an
    alias, does not (most access ports are so)."""
    h = Harness(tmp_path, INTERFACE_DOWN)
    for ifname in ("Te1/1/1", "Gi1/0/7"):
        h.samples("edge", 0, [Sample("if_admin_status", 1, {"ifname": ifname}),
                              Sample("if_oper_status", 2, {"ifname": ifname})])
    assert [{"ifname": "Te1/1/1"}] == [
        {k: v for k, v in a.labels.items() if k == "ifname"}
        for a in h.engine.alerts.values() if a.state == "firing"]


def test_flapping_is_flagged_and_settles(tmp_path: Path) -> None:
    h = Harness(tmp_path, """
    rules:
      - name: InterfaceDown
        kind: state
        subject: interface
        severity: warning
        states: [down]
        flapping: {changes: 4, window: 10m, settle: 1}
    """)
    uplink = {"ifname": "Gi1", "ifalias": "uplink"}  # watched from the first sample
    for i in range(6):  # down/up every 30 s
        h.samples("acc0", i * 30, [Sample("if_admin_status", 1, uplink),
                                   Sample("if_oper_status", 2 if i % 2 == 0 else 1,
                                          uplink)])
    alert = h.engine.alerts[next(iter(h.engine.alerts))]
    assert (True, "resolved") == (alert.flapping, alert.state)  # the 5th change flagged it
    h.tick(120 + 600 - 1)
    assert alert.flapping  # the changes at 120 and 150 are still in the window: 2 > 1
    h.tick(120 + 600 + 1)
    assert not alert.flapping
    assert "settled" in [s for _, s in h.log()]


def test_silence_maintenance_and_inhibition(tmp_path: Path) -> None:
    h = Harness(tmp_path, DOWN + """
inhibit:
  - source: ['alertname="DeviceDown"', 'class="switch"']
    target: ['alertname="UpsOnBattery"']
    equal: [site]
""".replace("inhibit:", "  - name: UpsOnBattery\n    kind: threshold\n    severity: major\n"
            "    select: {metric: ups_on_battery}\n    value: 0.5\ninhibit:"))
    h.sample("ups0", 0, "ups_on_battery", 1)
    assert {("UpsOnBattery", "ups0"): "firing"} == h.shown()
    h.state_of("core", 0, "down")
    h.tick(60)
    # the core switch of the same site is down: the UPS alert is inhibited
    assert {("DeviceDown", "core"): "firing", ("UpsOnBattery", "ups0"): "suppressed"} == h.shown()
    ups = next(a for a in h.engine.alerts.values() if a.rule == "UpsOnBattery")
    assert "inhibited" == ups.suppressed
    start = datetime.fromtimestamp(T0 + 100, UTC)
    h.engine.add_silence(Silence(matchers=['alertname="DeviceDown"', 'device="core"'],
                                 starts_at=start, ends_at=datetime.fromtimestamp(T0 + 200, UTC),
                                 comment="replacing the PSU", id="s1", created_by="kari"),
                         T0 + 99)
    h.tick(100)
    core = next(a for a in h.engine.alerts.values() if a.rule == "DeviceDown")
    assert "silence:s1" == core.suppressed
    h.tick(200)
    assert core.suppressed is None
    # a weekly window on Mondays 13:00-15:00 Oslo covers T0 + 300 (Monday 13:05)
    window = Maintenance(name="patching", starts_at=datetime(2026, 1, 1, tzinfo=UTC),
                         recurrence=Recurrence(every="weekly", days=["mon"], at="13:00",
                                               duration="2h"),
                         sites=["rh"], id="m1")
    h.engine.add_maintenance(window, T0 + 300)
    assert "maintenance:m1" == core.suppressed
    h.tick(2 * 3600)  # 15:00 Oslo: over
    assert core.suppressed is None


def test_acknowledgement_is_held_until_resolved(tmp_path: Path) -> None:
    h = Harness(tmp_path, DOWN)
    h.state_of("acc1", 0, "down")
    h.tick(60)
    alert = h.engine.acknowledge(h.only().fingerprint, "ola", "on my way", T0 + 70)
    assert "acknowledged" == alert.shown_state()
    h.state_of("acc1", 100, "up")
    assert ("resolved", "ola") == (alert.state, alert.ack_by)
    h.state_of("acc1", 200, "down")
    h.tick(260)
    again = next(a for a in h.engine.alerts.values() if a.rule == "DeviceDown")
    assert ("firing", None) == (again.state, again.ack_by)  # a new episode


def test_restore_continues_a_pending_for_within_the_outage_tolerance(tmp_path: Path) -> None:
    h = Harness(tmp_path, CPU)
    h.sample("srv", 0, "cpu_usage_ratio", 0.95)
    (kept,) = h.engine.alerts.values()
    # a new engine (restart at 120 s, last evaluation at 100 s)
    fresh = Harness(tmp_path, CPU)
    fresh.engine.restore([kept], last_eval=T0 + 100, now=T0 + 120)
    fresh.tick(299)
    assert "pending" == fresh.only().state
    fresh.tick(300)
    assert ("firing", T0 + 300) == (fresh.only().state, fresh.only().fired_at)
    fresh.sample("srv", 310, "cpu_usage_ratio", 0.96)  # the series continues: same alert
    assert 1 == len(fresh.engine.alerts)


def test_restore_after_a_long_outage_restarts_the_for(tmp_path: Path) -> None:
    h = Harness(tmp_path, CPU)
    h.sample("srv", 0, "cpu_usage_ratio", 0.95)
    (kept,) = h.engine.alerts.values()
    fresh = Harness(tmp_path, CPU)
    fresh.engine.restore([kept], last_eval=T0 + 100, now=T0 + 7200)
    fresh.tick(7200 + 299)
    assert "pending" == fresh.only().state
    fresh.tick(7200 + 300)
    assert "firing" == fresh.only().state


def test_component_offline_and_outbox_dropping(tmp_path: Path) -> None:
    h = Harness(tmp_path, """
    rules:
      - name: CollectorOffline
        kind: state
        subject: component
        severity: major
        select: {component: [snmp, traps, checks]}
        states: [offline]
        for: 1m
      - name: OutboxDropping
        kind: rate
        subject: component
        severity: major
        select: {metric: outbox_dropped}
        value: 0
    """)
    def status(at: float, state: str, dropped: int) -> None:
        h.engine.on_component("alta", "snmp", "snmp-alta", ComponentStatus(
            status=state, ts=T0 + at, component="snmp", instance="snmp-alta",  # type: ignore[arg-type]
            outbox_rows=10, outbox_dropped=dropped))
    status(0, "online", 0)
    status(30, "online", 0)
    assert {} == h.shown()
    status(60, "online", 500)
    assert {("OutboxDropping", "snmp-alta"): "firing"} == h.shown()
    status(90, "offline", 500)
    h.tick(150)
    assert "firing" == h.shown()[("CollectorOffline", "snmp-alta")]
    status(160, "online", 500)
    assert {} == h.shown()


def test_reload_carries_alerts_over_by_fingerprint(tmp_path: Path) -> None:
    h = Harness(tmp_path, DOWN)
    h.state_of("acc1", 0, "down")
    h.tick(60)
    fp = h.only().fingerprint
    (tmp_path / "rules.yaml").write_text(textwrap.dedent(DOWN).replace("for: 1m", "for: 3m"))
    h.engine.load(load_rules(tmp_path / "rules.yaml"), T0 + 70)
    h.state_of("acc1", 90, "down")
    assert ("firing", T0 + 60) == (h.engine.alerts[fp].state, h.engine.alerts[fp].fired_at)
    h.engine.load(load_rules(tmp_path / "rules.yaml").__class__((), (), "empty"), T0 + 100)
    assert ("resolved", T0 + 100) == (h.engine.alerts[fp].state, h.engine.alerts[fp].resolved_at)


def test_a_device_that_moves_municipality_takes_its_alert_along_afresh(
        tmp_path: Path) -> None:
    """acc1's DeviceDown fires in Alta; the estate moves it to a Loppa site. The alert
    with Alta's labels (who sees it, who is told) resolves as moved; the next report of
    acc1 down raises it again under Loppa's, and fires after its own 1 m. acc2's alert,
    on a device that did not move, carries over untouched."""
    h = Harness(tmp_path, DOWN, Inventory.from_list(INVENTORY.devices.values()))  # its own
    for device in ("acc1", "acc2"):
        h.state_of(device, 0, "down")
    h.tick(61)
    assert {("DeviceDown", "acc1"): "firing", ("DeviceDown", "acc2"): "firing"} == h.shown()
    moved = Inventory.from_list([
        DeviceInfo(d.id, d.name, d.device_class, "sk", "Skolen", "loppa", "alta",
                   parent=d.parent) if d.id == "acc1" else d
        for d in INVENTORY.devices.values()])
    assert 1 == h.engine.estate_changed(moved, [], T0 + 100)
    old = next(a for a in h.engine.alerts.values() if a.device == "acc1")
    assert ("resolved", "moved", "alta") == (old.state, old.ended_by,
                                             old.labels["municipality"])
    assert {("DeviceDown", "acc2"): "firing"} == h.shown()
    h.state_of("acc1", 110, "down")
    again = next(a for a in h.engine.alerts.values() if a.device == "acc1")
    assert ("pending", "loppa", "sk") == (again.state, again.labels["municipality"],
                                          again.labels["site"])
    h.tick(171)
    assert {("DeviceDown", "acc1"): "firing", ("DeviceDown", "acc2"): "firing"} == h.shown()
