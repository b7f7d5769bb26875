"""Routing, grouping, the notification log and escalation, on a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor.events import DeviceTopic, StateEvent
from monitor.notify.dispatch import Dispatcher, Flush, build_routes
from monitor.notify.escalation import Escalator
from monitor.notify.oncall import OnCall
from monitor.notify.settings import (
    EscalationSettings,
    Layer,
    RouteSettings,
    ScheduleSettings,
    StepSettings,
)
from monitor.notify.templates import DEFAULTS, alert_view, render
from monitor.officehours import Schedule
from monitor.rules.alerts import Alert
from monitor.rules.evaluator import RuleEngine
from monitor.rules.inventory import DeviceInfo, Inventory
from monitor.rules.model import load_rules
from monitor.state import State

T0 = datetime(2026, 11, 24, 22, 0, tzinfo=UTC).timestamp()  # Tuesday 23:00 in Oslo


def alert(fp: str, site: str = "rh", severity: str = "critical", state: str = "firing",
          **extra: str) -> Alert:
    labels = {"alertname": "DeviceDown", "device": fp, "site": site, "severity": severity,
              **extra}
    return Alert(fp, "DeviceDown", severity, labels, state, T0)  # type: ignore[arg-type]


def dispatcher(route: RouteSettings) -> Dispatcher:
    return Dispatcher(build_routes(route, {}))


def whom(flushes: list[Flush]) -> list[tuple[str | None, list[str], list[str]]]:
    return [(f.route.receiver or f.route.escalation, sorted(a.fingerprint for a in f.firing),
             sorted(a.fingerprint for a in f.resolved)) for f in flushes]


def test_group_wait_interval_and_repeat() -> None:
    d = dispatcher(RouteSettings(receiver="drift", group_by=["site"], group_wait="30s",
                                 group_interval="5m", repeat_interval="4h"))
    d.update(alert("sw1"), T0)
    assert [] == d.due(T0 + 29)
    d.update(alert("sw2"), T0 + 10)
    assert [("drift", ["sw1", "sw2"], [])] == whom(d.due(T0 + 30))
    d.update(alert("sw3"), T0 + 40)
    assert [] == d.due(T0 + 329)                       # group_interval not yet passed
    assert [("drift", ["sw1", "sw2", "sw3"], [])] == whom(d.due(T0 + 330))
    assert [] == d.due(T0 + 630)                       # nothing new: not sent again
    resolved = alert("sw2", state="resolved")
    d.update(resolved, T0 + 700)
    assert [("drift", ["sw1", "sw3"], ["sw2"])] == whom(d.due(T0 + 930))
    assert [] == d.due(T0 + 330 + 4 * 3600 - 1)
    assert [] == d.due(T0 + 930 + 4 * 3600 - 300)  # repeat_interval counts from the last
    assert [("drift", ["sw1", "sw3"], [])] == whom(d.due(T0 + 930 + 4 * 3600))


def test_the_all_clear_comes_after_group_wait_not_group_interval() -> None:
    """Two switches of a site down, announced at 30 s; the first comes back at 100 s
    (the group still fires: its resolution waits for group_interval, at 330 s); the
    second at 400 s: the group is clear, announced at 430 s, not at 630 s."""
    d = dispatcher(RouteSettings(receiver="drift", group_by=["site"], group_wait="30s",
                                 group_interval="5m"))
    d.update(alert("sw1"), T0)
    d.update(alert("sw2"), T0 + 5)
    assert [("drift", ["sw1", "sw2"], [])] == whom(d.due(T0 + 30))
    d.update(alert("sw1", state="resolved"), T0 + 100)
    assert [] == d.due(T0 + 130)
    assert [("drift", ["sw2"], ["sw1"])] == whom(d.due(T0 + 330))
    d.update(alert("sw2", state="resolved"), T0 + 400)
    assert [] == d.due(T0 + 429)
    assert [("drift", [], ["sw2"])] == whom(d.due(T0 + 430))
    assert {} == d.groups


def test_resolved_is_announced_only_if_firing_was() -> None:
    d = dispatcher(RouteSettings(receiver="drift", group_wait="30s"))
    d.update(alert("sw1"), T0)
    d.update(alert("sw1", state="resolved"), T0 + 5)
    assert [] == d.due(T0 + 30)                        # fired and cleared within group_wait
    assert {} == d.groups


def test_suppressed_acknowledged_and_flapping_alerts_are_not_sent() -> None:
    d = dispatcher(RouteSettings(receiver="drift", group_wait="0s"))
    quiet = [alert("a"), alert("b"), alert("c")]
    quiet[0].suppressed = "topology"
    quiet[1].ack_by = "ola"
    quiet[2].flapping = True
    for a in quiet:
        d.update(a, T0)
    assert [] == d.due(T0)


def test_routing_tree_continue_and_after_hours() -> None:
    tree = RouteSettings(receiver="epost", group_by=["alertname"], group_wait="0s", routes=[
        RouteSettings(matchers=['severity="critical"'], receiver="teams", continue_=True),
        RouteSettings(matchers=['severity="critical"'], escalation="beredskap",
                      active="after_hours"),
        RouteSettings(matchers=['severity="warning"'], receiver="teams"),
    ])
    root = build_routes(tree, {"kontortid": Schedule.from_text({"mon-fri": ["07:00-16:00"]})})
    night, day = Dispatcher(root), Dispatcher(root)
    night.update(alert("sw1"), T0)                           # Tuesday 23:00
    day.update(alert("sw1"), T0 - 10 * 3600)                 # Tuesday 13:00
    assert [("teams", ["sw1"], []), ("beredskap", ["sw1"], [])] == whom(night.due(T0))
    assert [("teams", ["sw1"], [])] == whom(day.due(T0))
    low = Dispatcher(root)
    low.update(alert("sw9", severity="info"), T0)
    assert [("epost", ["sw9"], [])] == whom(low.due(T0))     # no child matched: the root


def test_a_storm_behind_a_core_switch_is_one_message(tmp_path: Path) -> None:
    """300 devices at a site report down with their core switch: one alert, one message."""
    devices = [DeviceInfo("core", "Kjernesvitsj", "switch", "rh", "Rådhus", "alta", "alta")]
    devices += [DeviceInfo(f"d{i}", f"D{i}", "server" if i % 3 else "switch", "rh",
                           "Rådhus", "alta", "alta", parent="core") for i in range(300)]
    rules = load_rules(Path(__file__).resolve().parents[2] / "rules" / "devices.yaml")
    engine = RuleEngine(rules, Inventory.from_list(devices), started=T0)
    state = State()
    d = dispatcher(RouteSettings(receiver="drift", group_by=["site"], group_wait="30s"))
    for i, dev in enumerate(["core", *(f"d{i}" for i in range(300))]):
        event = StateEvent(v=1, ts=T0 + (5 if dev == "core" else i % 10), src="snmp", seq=i + 1,
                           device=dev, state="down")
        topic = DeviceTopic("alta", "alta", dev, "state")
        state.apply(topic, event)
        engine.on_event(topic, event, state)
    sent: list[Flush] = []
    for at in range(0, 600, 1):
        engine.tick(T0 + at, state)
        for changed in engine.take_changes()[0]:
            d.update(changed, T0 + at)
        sent += d.due(T0 + at)
    assert 1 == len(sent)
    (only,) = sent[0].firing
    assert ("core", 300) == (only.device, only.behind)


def test_the_page_names_the_municipalities_behind_a_down_switch() -> None:
    """A centre switch with 2 devices of Hasvik and 3 of Loppa behind it (one through
    another): the message counts 5 and names both, the larger first."""
    devices = [DeviceInfo("core", "Kjerne", "switch", "dc", "Datasenteret", "loppa", "alta")]
    devices += [DeviceInfo(f"h{i}", f"H{i}", "switch", "h", "H", "hasvik", "alta",
                           parent="core") for i in range(2)]
    devices += [DeviceInfo("l0", "L0", "switch", "l", "L", "loppa", "alta", parent="core")]
    devices += [DeviceInfo(f"l{i}", f"L{i}", "ap", "l", "L", "loppa", "alta", parent="l0")
                for i in (1, 2)]
    inventory = Inventory.from_list(devices)
    down = alert("core")
    down.behind = inventory.behind("core")
    names = {"hasvik": "Hasvik kommune", "loppa": "Loppa kommune"}
    view = alert_view(down, "https://x", {}, {}, None, "nb", names,
                      inventory.behind_by_municipality("core"))
    assert "Loppa kommune 3, Hasvik kommune 2" == view["behind_in"]
    body = render(DEFAULTS["nb"]["body"], {"firing": [view], "resolved": []})
    assert "5 enheter bak denne er utilgjengelige (Loppa kommune 3, Hasvik kommune 2)" in body


def test_escalation_steps_ack_and_resolved_notices() -> None:
    policy = EscalationSettings(id="beredskap", repeat=1, repeat_after="30m", steps=[
        StepSettings(after="0m", schedule="vakt", via=["sms"]),
        StepSettings(after="15m", people=["teamleder"], via=["sms", "epost"]),
    ])
    vakt = OnCall(ScheduleSettings(id="vakt", layers=[Layer(members=["ola", "kari"],
                                                            rotation="weekly",
                                                            handover="mon 08:00")]))
    root = build_routes(RouteSettings(escalation="beredskap", group_wait="0s"), {})
    d = Dispatcher(root)
    esc = Escalator({"beredskap": policy}, {"vakt": vakt})
    fire = alert("sw1")
    d.update(fire, T0)
    (flush,) = d.due(T0)
    pages = esc.flush(flush, T0)
    assert [("ola", "sms", 0)] == [(p.person, p.receiver, p.step) for p in pages]  # ola's week

    def not_acked(_: list[str]) -> bool:
        return False

    assert [] == esc.tick(T0 + 15 * 60 - 1, not_acked)
    second = esc.tick(T0 + 15 * 60, not_acked)
    assert [("teamleder", "sms", 1), ("teamleder", "epost", 1)] == [
        (p.person, p.receiver, p.step) for p in second]
    # the chain runs once more 30 minutes after its last step
    assert [] == esc.tick(T0 + 45 * 60 - 1, not_acked)
    assert [("ola", "sms", 0)] == [(p.person, p.receiver, p.step)
                                   for p in esc.tick(T0 + 45 * 60, not_acked)]
    assert 2 == len(esc.tick(T0 + 60 * 60, not_acked))       # the team lead again
    assert [] == esc.tick(T0 + 5 * 3600, not_acked)          # repeat: 1, no third round
    resolved = alert("sw1", state="resolved")
    d.update(resolved, T0 + 6000)
    (done,) = d.due(T0 + 6000 + 300)
    notices = esc.flush(done, T0 + 6300)
    assert {("ola", "sms"), ("teamleder", "sms"), ("teamleder", "epost")} == {
        (p.person, p.receiver) for p in notices}
    assert all(p.resolved_notice for p in notices)


def test_acknowledgement_stops_the_chain() -> None:
    policy = EscalationSettings(id="b", steps=[StepSettings(after="0m", people=["ola"],
                                                            via=["sms"]),
                                               StepSettings(after="10m", people=["kari"],
                                                            via=["sms"])])
    root = build_routes(RouteSettings(escalation="b", group_wait="0s"), {})
    d = Dispatcher(root)
    esc = Escalator({"b": policy}, {})
    d.update(alert("sw1"), T0)
    (flush,) = d.due(T0)
    assert 1 == len(esc.flush(flush, T0))
    assert [] == esc.tick(T0 + 600, lambda fps: fps == ["sw1"])  # acknowledged at 9 min
    assert [] == esc.tick(T0 + 3600, lambda fps: False)          # stopped for good


@pytest.mark.parametrize("why", ["resolved", "acknowledged"])
def test_whoever_was_paged_hears_the_resolution(why: str) -> None:
    """Paged at once; the alert resolves (or is acknowledged) and the tick stops the
    steps before the group's resolved flush comes: the person paged still gets the
    resolved notice, exactly once, and nobody else is paged."""
    policy = EscalationSettings(id="b", steps=[StepSettings(after="0m", people=["ola"],
                                                            via=["sms"]),
                                               StepSettings(after="10m", people=["kari"],
                                                            via=["sms"])])
    d = Dispatcher(build_routes(RouteSettings(escalation="b", group_wait="0s",
                                              group_interval="5m"), {}))
    esc = Escalator({"b": policy}, {})
    d.update(alert("sw1"), T0)
    (flush,) = d.due(T0)
    assert [("ola", 0)] == [(p.person, p.step) for p in esc.flush(flush, T0)]
    # at 2 min: resolved (which the service's check counts as done), or acknowledged
    assert [] == esc.tick(T0 + 120, lambda fps: fps == ["sw1"])
    d.update(alert("sw1", state="resolved") if why == "resolved" else alert("sw1"), T0 + 130)
    if why == "acknowledged":
        assert [] == esc.tick(T0 + 900, lambda fps: True)  # kari is never paged
        d.update(alert("sw1", state="resolved"), T0 + 1000)
    (done,) = [f for at in range(int(T0), int(T0) + 1400) for f in d.due(float(at))
               if not f.firing]
    notices = esc.flush(done, T0 + 1400)
    assert [("ola", "sms", True)] == [(p.person, p.receiver, p.resolved_notice)
                                      for p in notices]
    assert [] == esc.flush(done, T0 + 1500)  # once


def test_a_failing_receiver_template_falls_back_to_the_default() -> None:
    from monitor.notify.service import NotifyService

    context: dict[str, object] = {"firing": [], "resolved": []}
    assert "default 0" == NotifyService._render("hook", "{{ no_such_name }}",
                                                "default {{ firing | length }}", context)
    assert "own 0" == NotifyService._render("hook", "own {{ firing | length }}",
                                            "default", context)


def test_a_retired_alert_is_not_announced_as_recovered() -> None:
    """A device taken out of the estate while its alert fired: the all-clear says the
    alert ended because the device left, in the subject and in every line."""
    gone, well = alert("sw-gammel"), alert("sw-frisk")
    for a in (gone, well):
        a.state, a.resolved_at = "resolved", 1_780_000_000.0
    gone.ended_by = "retired"
    views = [alert_view(a, "https://x", {}, {}, None, "nb") for a in (gone, well)]
    only_gone = {"firing": [], "resolved": views[:1]}
    assert render(DEFAULTS["nb"]["subject"], only_gone).startswith("[AVVIKLET] ")
    assert render(DEFAULTS["en"]["subject"], {"firing": [], "resolved": [
        alert_view(gone, "https://x", {}, {}, None)]}).startswith("[RETIRED] ")
    assert render(DEFAULTS["nb"]["subject"], {"firing": [], "resolved": views}
                  ).startswith("[OK] ")  # one of them did recover
    body = render(DEFAULTS["nb"]["body"], {"firing": [], "resolved": views})
    assert "er avsluttet fordi enheten er tatt ut av overvåkingen, ikke fordi den er " \
           "frisk" in body
    assert (1, 1) == (body.count("AVVIKLET"), body.count("LØST"))
    assert "AVVIKLET: " in render(DEFAULTS["nb"]["sms"], only_gone)


def test_an_alert_of_a_device_that_moved_says_so() -> None:
    """A device moved to another municipality while its alert fired: the old place is
    told it ended because the device moved, in the subject and the lines."""
    moved, gone = alert("sw-flyttet"), alert("sw-gammel")
    for a in (moved, gone):
        a.state, a.resolved_at = "resolved", 1_780_000_000.0
    moved.ended_by, gone.ended_by = "moved", "retired"
    nb = [alert_view(a, "https://x", {}, {}, None, "nb") for a in (moved, gone)]
    en = [alert_view(a, "https://x", {}, {}, None) for a in (moved, gone)]
    assert render(DEFAULTS["nb"]["subject"], {"firing": [], "resolved": nb[:1]}
                  ).startswith("[FLYTTET] ")
    assert render(DEFAULTS["en"]["subject"], {"firing": [], "resolved": en[:1]}
                  ).startswith("[MOVED] ")
    assert render(DEFAULTS["nb"]["subject"], {"firing": [], "resolved": nb}
                  ).startswith("[AVVIKLET] ")  # one left the estate, neither recovered
    body = render(DEFAULTS["nb"]["body"], {"firing": [], "resolved": nb})
    assert "er avsluttet her fordi enheten er flyttet til en annen lokasjon eller kommune" \
        in body
    assert (1, 1, 0) == (body.count("FLYTTET"), body.count("AVVIKLET"), body.count("LØST"))
    assert "ended here because the device moved" in render(
        DEFAULTS["en"]["body"], {"firing": [], "resolved": en[:1]})
    assert "FLYTTET: " in render(DEFAULTS["nb"]["sms"], {"firing": [], "resolved": nb[:1]})
    assert "MOVED: " in render(DEFAULTS["en"]["sms"], {"firing": [], "resolved": en[:1]})
