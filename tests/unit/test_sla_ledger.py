"""SLA arithmetic to the second: hand-computed values, and a per-second oracle.

Times are written in Europe/Oslo local time. Devices are observed every 60 s and an
observation stands for 180 s (three intervals), unless a test says otherwise.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.events import DeviceTopic, StateEvent
from monitor.officehours import Schedule
from monitor.sla.compute import CorrectionSpan, ServiceResult, service_result
from monitor.sla.ledger import Ledger, Run
from monitor.sla.report import closed_before, leaf_timelines, month_period
from monitor.sla.settings import Depends, ServicePolicy, ServiceSpec
from monitor.state import State
from tests.sla_oracle import Obs, leaves_of, oracle

OSLO = ZoneInfo("Europe/Oslo")
OFFICE = Schedule.from_text({"mon-fri": ["07:00-16:00"]})


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=OSLO).timestamp()


def spec(depends: Depends, *, sid: str = "svc", target: float = 99.5,
         policy: ServicePolicy | None = None) -> ServiceSpec:
    return ServiceSpec(id=sid, name=sid, municipalities=["alta"], target=target,
                       depends=depends, policy=policy or ServicePolicy())


def polled(component: str, start: float, end: float, *, down: Sequence[tuple[float, float]] = (),
           every: float = 60.0, src: str = "poller", validity: float = 180.0
           ) -> list[tuple[str, str, float, str, float]]:
    """Observations every ``every`` s over [start, end): down within ``down``."""
    out = []
    t = start
    while t < end:
        state = "down" if any(a <= t < b for a, b in down) else "up"
        out.append((component, src, t, state, validity))
        t += every
    return out


def compute(service: ServiceSpec, observations: Sequence[tuple[str, str, float, str, float]],
            start: float, end: float, *, services: Mapping[str, ServiceSpec] | None = None,
            maintenance: Mapping[str, Sequence[tuple[float, float]]] | None = None,
            corrections: Sequence[CorrectionSpan] = (), schedule: Schedule | None = None,
            now: float | None = None, ledger: Ledger | None = None) -> ServiceResult:
    services = dict(services or {}) | {service.id: service}
    leaves = leaves_of(service, services)
    ledger = ledger or Ledger(dict.fromkeys(leaves, 180.0))
    for component, src, ts, state, validity in observations:
        ledger.observe(component, src, ts, state, validity)
    runs: dict[str, dict[str, list[Run]]] = {ref: {} for ref in leaves}
    for (component, src), rs in ledger.runs.items():
        runs[component][src] = rs
    stretches = {ref: [(a, b, ("planned",)) for a, b in spans]
                 for ref, spans in (maintenance or {}).items()}
    now = end if now is None else now
    until = min(end, now)
    return service_result(service, services, leaf_timelines(runs, start, until), stretches,
                          corrections, schedule, start, end, now)


# -- 24/7 basics ---------------------------------------------------------------------------


def test_an_outage_counts_from_the_first_down_to_the_first_up_observation() -> None:
    a, b = at("2026-10-05T00:00"), at("2026-10-06T00:00")
    down = [(at("2026-10-05T10:00"), at("2026-10-05T10:30"))]
    r = compute(spec(Depends(all=["device:sw1"])), polled("device:sw1", a, b, down=down),
                a, b)
    assert r.seconds["down"] == 1800
    assert r.seconds["up"] == 86400 - 1800
    assert r.counted_down == 1800
    assert r.achieved == pytest.approx(1 - 1800 / 86400)
    assert r.met is False  # 97.9 % < 99.5 %
    assert len(r.incidents) == 1
    incident = r.incidents[0]
    assert (incident.start, incident.end, incident.seconds) == (down[0][0], down[0][1], 1800)
    assert incident.causes == ("device:sw1 down",)


def test_silence_after_the_last_observation_is_unknown_once_it_stops_standing() -> None:
    a, b = at("2026-10-05T00:00"), at("2026-10-05T02:00")
    observations = polled("device:sw1", a, at("2026-10-05T01:00"))  # then the poller stops
    observations += polled("device:sw1", at("2026-10-05T01:30"), b)
    r = compute(spec(Depends(all=["device:sw1"])), observations, a, b)
    # the last observation at 00:59 stands until 01:02; unknown until 01:30
    assert r.seconds["unknown"] == 28 * 60
    assert r.seconds["up"] == 7200 - 28 * 60
    assert r.counted_down == 0
    assert r.achieved == 1.0
    assert [(u.start, u.end) for u in r.unknown] == [(at("2026-10-05T01:02"),
                                                       at("2026-10-05T01:30"))]


def test_unknown_can_count_as_down_by_policy() -> None:
    a, b = at("2026-10-05T00:00"), at("2026-10-05T02:00")
    observations = polled("device:sw1", a, at("2026-10-05T01:00"))
    r = compute(spec(Depends(all=["device:sw1"]), policy=ServicePolicy(unknown="down")),
                observations, a, b)
    assert r.counted_down == 58 * 60
    assert r.counted_up == 62 * 60


# -- dependencies: all, any, k of n, nested ------------------------------------------------


def test_two_mail_servers_any_is_down_only_when_both_are() -> None:
    a, b = at("2026-10-05T00:00"), at("2026-10-05T04:00")
    obs = polled("device:mail1", a, b, down=[(at("2026-10-05T01:00"), at("2026-10-05T03:00"))])
    obs += polled("device:mail2", a, b, down=[(at("2026-10-05T02:00"), at("2026-10-05T02:20"))])
    any_of = compute(spec(Depends(any=["device:mail1", "device:mail2"])), obs, a, b)
    assert any_of.seconds["down"] == 1200
    assert any_of.seconds["degraded"] == 7200 - 1200
    assert any_of.counted_up == 14400 - 1200  # degraded counts as up by default
    assert any_of.incidents[0].causes == ("device:mail1 down", "device:mail2 down")
    all_of = compute(spec(Depends(all=["device:mail1", "device:mail2"])), obs, a, b)
    assert all_of.seconds["down"] == 7200
    strict = compute(spec(Depends(any=["device:mail1", "device:mail2"]),
                          policy=ServicePolicy(degraded="down")), obs, a, b)
    assert strict.counted_down == 7200


def test_two_of_three_and_unknown_members() -> None:
    a, b = at("2026-10-05T00:00"), at("2026-10-05T03:00")
    obs = polled("device:n1", a, b, down=[(at("2026-10-05T00:30"), at("2026-10-05T02:00"))])
    obs += polled("device:n2", a, b, down=[(at("2026-10-05T01:00"), at("2026-10-05T01:10"))])
    obs += polled("device:n3", a, at("2026-10-05T01:30"))  # its poller stops at 01:30
    r = compute(spec(Depends(at_least=2, of=["device:n1", "device:n2", "device:n3"])), obs,
                a, b)
    # 00:00-00:30 up; 00:30-01:00 degraded; 01:00-01:10 down (1 of 3 up);
    # 01:10-01:32 degraded; 01:32-02:00 n1 down, n2 up, n3 unknown: unknown;
    # 02:00-03:00 n1, n2 up: degraded (n3 unknown does not degrade; n1, n2 up suffice) -> up
    assert r.seconds["down"] == 600
    assert r.seconds["unknown"] == 28 * 60
    assert r.seconds["degraded"] == 30 * 60 + 22 * 60
    assert r.seconds["up"] == 30 * 60 + 60 * 60


def test_a_service_can_rest_on_other_services() -> None:
    a, b = at("2026-10-05T00:00"), at("2026-10-05T02:00")
    net = spec(Depends(all=["device:core"]), sid="nett")
    app = spec(Depends(all=["service:nett", "check:fag-http"]), sid="fag")
    obs = polled("device:core", a, b, down=[(at("2026-10-05T00:10"), at("2026-10-05T00:20"))])
    obs += polled("check:fag-http", a, b,
                  down=[(at("2026-10-05T01:00"), at("2026-10-05T01:05"))])
    r = compute(app, obs, a, b, services={"nett": net})
    assert r.seconds["down"] == 900
    assert [i.causes for i in r.incidents] == [("device:core down",), ("check:fag-http down",)]


# -- maintenance, corrections and service hours ---------------------------------------------


def test_maintenance_overlapping_downtime_and_the_edges_of_service_hours() -> None:
    day = "2026-10-07"  # a Wednesday
    a, b = at(f"{day}T00:00"), at("2026-10-08T00:00")
    down = [(at(f"{day}T06:00"), at(f"{day}T08:00")), (at(f"{day}T15:00"), at(f"{day}T17:00"))]
    window = [(at(f"{day}T07:30"), at(f"{day}T15:30"))]
    r = compute(spec(Depends(all=["device:srv"])), polled("device:srv", a, b, down=down), a, b,
                maintenance={"device:srv": window}, schedule=OFFICE)
    # in hours: down 07:00-07:30 and 15:30-16:00; maintenance 07:30-08:00, 15:00-15:30
    assert r.seconds["service_hours"] == 9 * 3600
    assert r.seconds["down"] == 3600
    assert r.seconds["maintenance"] == 3600
    assert r.seconds["up"] == 7 * 3600
    assert r.achieved == pytest.approx(7 / 8)
    assert [(m.start, m.end, m.detail) for m in r.maintenance] == [
        (at(f"{day}T07:30"), at(f"{day}T08:00"), ("planned",)),
        (at(f"{day}T15:00"), at(f"{day}T15:30"), ("planned",))]
    zabbix = compute(spec(Depends(all=["device:srv"]), policy=ServicePolicy(maintenance="up")),
                     polled("device:srv", a, b, down=down), a, b,
                     maintenance={"device:srv": window}, schedule=OFFICE)
    assert zabbix.achieved == pytest.approx(8 / 9)
    honest = compute(spec(Depends(all=["device:srv"]),
                          policy=ServicePolicy(maintenance="ignored")),
                     polled("device:srv", a, b, down=down), a, b,
                     maintenance={"device:srv": window}, schedule=OFFICE)
    assert honest.achieved == pytest.approx(7 / 9)


def test_maintenance_on_one_of_two_redundant_servers_is_not_degradation() -> None:
    a, b = at("2026-10-05T00:00"), at("2026-10-05T02:00")
    obs = polled("device:mail1", a, b, down=[(at("2026-10-05T00:30"), at("2026-10-05T01:00"))])
    obs += polled("device:mail2", a, b)
    r = compute(spec(Depends(any=["device:mail1", "device:mail2"])), obs, a, b,
                maintenance={"device:mail1": [(at("2026-10-05T00:25"),
                                               at("2026-10-05T01:05"))]})
    assert r.seconds["up"] == 7200
    assert r.seconds["maintenance"] == 0


def test_office_hours_across_midnight_and_weekends() -> None:
    night = Schedule.from_text({"mon-fri": ["22:00-06:00"]}, public_holidays=False)
    a, b = at("2026-10-09T00:00"), at("2026-10-12T12:00")  # Friday 00:00 to Monday noon
    down = [(at("2026-10-10T01:00"), at("2026-10-10T05:00")),  # Saturday night: Friday's
            (at("2026-10-11T01:00"), at("2026-10-11T02:00"))]  # Sunday night: closed
    r = compute(spec(Depends(all=["device:batch"])),
                polled("device:batch", a, b, down=down), a, b, schedule=night)
    # open: Fri 00:00-06:00 (Thursday's night), Fri 22:00-Sat 06:00, Mon 00:00-06:00 (none:
    # Sunday is closed), so 6 h + 8 h
    assert r.seconds["service_hours"] == 14 * 3600
    assert r.seconds["down"] == 4 * 3600
    assert len(r.incidents) == 1


def test_weekend_outage_exact() -> None:
    a, b = at("2026-10-09T00:00"), at("2026-10-13T00:00")  # Friday to Tuesday 00:00
    down = [(at("2026-10-09T15:00"), at("2026-10-12T08:00"))]
    r = compute(spec(Depends(all=["device:srv"])), polled("device:srv", a, b, down=down),
                a, b, schedule=OFFICE)
    assert r.seconds["service_hours"] == 2 * 9 * 3600
    assert r.seconds["down"] == 2 * 3600  # Friday 15-16 and Monday 07-08
    assert len(r.incidents) == 1
    assert r.incidents[0].seconds == 7200
    assert r.incidents[0].start == at("2026-10-09T15:00")


def test_easter_2026_and_17_may_2027_are_closed() -> None:
    april = month_period("2026-04")
    r = compute(spec(Depends(all=["device:srv"])),
                polled("device:srv", april.start, april.end, every=600, validity=1800),
                april.start, april.end, schedule=OFFICE)
    # 22 weekdays, less Maundy Thursday, Good Friday and Easter Monday: 19 x 9 h
    assert r.scheduled == 19 * 9 * 3600
    assert r.seconds["service_hours"] == 19 * 9 * 3600
    may17 = at("2027-05-17T00:00")
    r = compute(spec(Depends(all=["device:srv"])),
                polled("device:srv", may17, may17 + 86400, down=[(may17, may17 + 86400)]),
                may17, may17 + 86400, schedule=OFFICE)
    assert r.seconds["service_hours"] == 0
    assert r.achieved is None
    assert r.met is None
    assert r.incidents == []


@pytest.mark.parametrize(("day", "hours"), [("2026-03-29", 23), ("2026-10-25", 25)])
def test_dst_days_have_23_and_25_hours(day: str, hours: int) -> None:
    a = at(f"{day}T00:00")
    end = datetime.combine(date.fromordinal(date.fromisoformat(day).toordinal() + 1),
                           datetime.min.time(), OSLO).timestamp()
    r = compute(spec(Depends(all=["device:srv"])),
                polled("device:srv", a, end, down=[(a, end)]), a, end)
    assert r.seconds["down"] == hours * 3600
    assert r.incidents[0].seconds == hours * 3600


def test_months_are_oslo_months_and_dst_months_are_an_hour_short_or_long() -> None:
    october, march = month_period("2026-10"), month_period("2026-03")
    assert october.end - october.start == 31 * 86400 + 3600
    assert march.end - march.start == 31 * 86400 - 3600
    assert october.start == datetime(2026, 10, 1, tzinfo=OSLO).timestamp()


def test_an_outage_across_a_month_boundary_counts_in_each_month() -> None:
    obs = polled("device:srv", at("2026-10-31T22:00"), at("2026-11-01T02:00"),
                 down=[(at("2026-10-31T23:30"), at("2026-11-01T00:30"))])
    october, november = month_period("2026-10"), month_period("2026-11")
    svc = spec(Depends(all=["device:srv"]))
    late_oct = compute(svc, obs, at("2026-10-31T22:00"), october.end)
    early_nov = compute(svc, obs, november.start, at("2026-11-01T02:00"))
    assert late_oct.seconds["down"] == 1800
    assert early_nov.seconds["down"] == 1800


def test_corrections_reclassify_downtime_and_never_up_time() -> None:
    a, b = at("2026-10-05T00:00"), at("2026-10-05T04:00")
    down = [(at("2026-10-05T01:00"), at("2026-10-05T02:00"))]
    fix = CorrectionSpan("c-1", at("2026-10-05T00:30"), at("2026-10-05T01:30"), "excluded")
    r = compute(spec(Depends(all=["device:srv"])), polled("device:srv", a, b, down=down),
                a, b, corrections=[fix])
    assert r.seconds["excluded"] == 1800
    assert r.seconds["down"] == 1800
    assert r.seconds["up"] == 3 * 3600
    assert [(c.start, c.end, c.detail) for c in r.corrected] == [
        (at("2026-10-05T01:00"), at("2026-10-05T01:30"), ("c-1",))]


def test_blips_under_the_limit_count_as_up() -> None:
    a, b = at("2026-10-05T00:00"), at("2026-10-05T02:00")
    down = [(at("2026-10-05T00:10"), at("2026-10-05T00:11")),
            (at("2026-10-05T01:00"), at("2026-10-05T01:05"))]
    r = compute(spec(Depends(all=["device:srv"]),
                     policy=ServicePolicy(ignore_blips_under=120)),
                polled("device:srv", a, b, down=down), a, b)
    assert r.blips_ignored == 1
    assert r.counted_down == 300
    assert len(r.incidents) == 1


def test_error_budget_and_burn_rate_in_a_month_under_way() -> None:
    month = month_period("2026-11")
    now = month.start + 10 * 86400
    r = compute(spec(Depends(all=["device:srv"]), target=99.9),
                polled("device:srv", month.start, now,
                       down=[(month.start + 86400, month.start + 86400 + 1320)]),
                month.start, month.end, now=now)
    assert r.scheduled == 30 * 86400
    assert r.budget_allowed == pytest.approx(0.001 * 30 * 86400)  # 2592 s
    assert r.counted_down == 1320  # 22 minutes
    assert r.budget_remaining == pytest.approx(2592 - 1320)
    assert r.burn_rate == pytest.approx(1320 / (2592 / 3))  # a third of the month gone


# -- late, duplicate and out-of-order events --------------------------------------------------


def test_late_duplicate_and_interleaved_events_give_the_same_ledger() -> None:
    a, b = at("2026-10-05T00:00"), at("2026-10-05T03:00")
    poller = polled("device:srv", a, b, down=[(at("2026-10-05T01:00"), at("2026-10-05T01:20"))])
    agent = polled("device:srv", a, b, src="agent", every=30, validity=90,
                   down=[(at("2026-10-05T02:00"), at("2026-10-05T02:30"))])
    in_order = compute(spec(Depends(all=["device:srv"])), sorted(poller + agent,
                                                                 key=lambda o: o[2]), a, b)
    # the agent's outbox is replayed after the poller's whole stretch, and part of it
    # twice; each source's events stay in that source's own order
    late = poller + agent + agent[100:]
    result = compute(spec(Depends(all=["device:srv"])), late, a, b)
    assert result.seconds == in_order.seconds
    assert result.incidents == in_order.incidents
    # any source seeing it up makes it up: neither outage shows
    assert in_order.seconds["down"] == 0


# -- the per-second oracle ------------------------------------------------------------------


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, object]:
    span = 3 * 3600
    start = int(at("2026-10-02T14:00"))  # a Friday afternoon into the evening
    n_leaves = draw(st.integers(1, 3))
    leaves = [f"device:d{i}" for i in range(n_leaves)]
    observations: list[Obs] = []
    seq = 0
    rng = random.Random(draw(st.integers(0, 2**32)))  # the timeline's details
    for leaf in leaves:
        for src in draw(st.lists(st.sampled_from(["p", "q"]), min_size=1, max_size=2,
                                 unique=True)):
            t = start + rng.randrange(300)
            every = rng.choice([60, 90, 300])
            validity = rng.choice([every, 2 * every, 3 * every])
            state = "up"
            while t < start + span:
                if rng.randrange(10) == 0:
                    state = rng.choice(["up", "down", "unknown"])
                seq += 1
                observations.append(Obs(leaf, f"{leaf}/{src}", seq, t, state, validity))
                t += every if rng.randrange(15) else rng.randrange(1, 1500)
    kind = draw(st.sampled_from(["all", "any", "k"]))
    if kind == "all":
        depends = Depends(all=leaves)
    elif kind == "any":
        depends = Depends(any=leaves)
    else:
        depends = Depends(at_least=draw(st.integers(1, n_leaves)), of=leaves)
    policy = ServicePolicy(
        degraded=draw(st.sampled_from(["up", "down"])),
        ignore_blips_under=draw(st.sampled_from([0, 120, 400])),
        maintenance=draw(st.sampled_from(["excluded", "up", "ignored"])),
        unknown=draw(st.sampled_from(["excluded", "up", "down"])))
    maintenance: dict[str, list[tuple[int, int]]] = {}
    for leaf in leaves:
        if draw(st.booleans()):
            s = start + draw(st.integers(0, span))
            maintenance[leaf] = [(s, s + draw(st.integers(60, 3600)))]
    corrections = []
    if draw(st.booleans()):
        s = start + draw(st.integers(0, span))
        corrections.append((s, s + draw(st.integers(60, 3600)),
                            draw(st.sampled_from(["maintenance", "excluded"]))))
    schedule = draw(st.sampled_from([None, OFFICE]))
    return {"spec": spec(depends, policy=policy), "observations": observations,
            "maintenance": maintenance, "corrections": corrections, "schedule": schedule,
            "start": start, "end": start + span, "seed": draw(st.integers(0, 2**32))}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_the_ledger_equals_a_per_second_oracle(case: dict[str, object]) -> None:
    service = case["spec"]
    assert isinstance(service, ServiceSpec)
    observations = list(case["observations"])  # type: ignore[call-overload]
    start, end = int(case["start"]), int(case["end"])  # type: ignore[call-overload]
    maintenance = case["maintenance"]
    corrections = case["corrections"]
    schedule = case["schedule"]
    assert isinstance(maintenance, dict)
    assert isinstance(corrections, list)
    assert schedule is None or isinstance(schedule, Schedule)
    expected = oracle(service, {}, observations, maintenance, corrections, schedule,
                      start, end)
    # arrival: sources interleaved at random, each in its own order, some twice
    rng = random.Random(int(case["seed"]))  # type: ignore[call-overload]
    by_src: dict[str, list[Obs]] = {}
    for o in observations:
        by_src.setdefault(o.src, []).append(o)
    queues = [list(v) for v in by_src.values()]
    arrival: list[Obs] = []
    while queues:
        q = rng.choice(queues)
        arrival.append(q[0])
        if rng.random() < 0.1:
            arrival.append(q[0])  # delivered twice
        del q[0]
        queues = [q for q in queues if q]
    got = compute(service, [(o.component, o.src, o.ts, o.state, o.validity) for o in arrival],
                  start, end,
                  maintenance={k: list(v) for k, v in maintenance.items()},
                  corrections=[CorrectionSpan(f"c{i}", a, b, k)
                               for i, (a, b, k) in enumerate(corrections)],
                  schedule=schedule)
    assert got.seconds == expected.seconds
    assert got.counted_up == expected.counted_up
    assert got.counted_down == expected.counted_down
    assert len(got.incidents) == expected.incidents


@pytest.mark.parametrize(("now", "closed_after", "want"), [
    # 3 Dec 12:00 Oslo, closing 3 days after the month: November still open
    ("2026-12-03T12:00:00+01:00", 3 * 86400, "2026-11-01T00:00:00+01:00"),
    # 5 Dec: November closed
    ("2026-12-05T00:00:00+01:00", 3 * 86400, "2026-12-01T00:00:00+01:00"),
    # into January: December of the year before
    ("2027-01-02T12:00:00+01:00", 3 * 86400, "2026-12-01T00:00:00+01:00"),
    # summer time now, winter time at the start of the month before
    ("2026-04-02T12:00:00+02:00", 3 * 86400, "2026-03-01T00:00:00+01:00"),
    # an hour after midnight on the 1st, closing after an hour: the last one closed
    ("2026-12-01T01:00:00+01:00", 3600, "2026-12-01T00:00:00+01:00"),
    # closing after 90 days: on 3 Dec, August is the last closed month (September's
    # end, 1 Oct, is 63 days back)
    ("2026-12-03T12:00:00+01:00", 90 * 86400, "2026-09-01T00:00:00+02:00"),
])
def test_a_month_closes_its_closed_after_past_its_end(now: str, closed_after: float,
                                                      want: str) -> None:
    assert datetime.fromisoformat(want).timestamp() == closed_before(
        datetime.fromisoformat(now).timestamp(), closed_after)


def test_an_observation_of_a_closed_month_is_kept_aside_not_counted() -> None:
    ledger = Ledger({"device:sw1": 180.0}, closed_before=1_000.0)
    topic = DeviceTopic("alta", "loppa", "sw1", "state")
    for seq, ts in ((1, 990.0), (2, 1_010.0)):
        event = StateEvent(v=1, ts=ts, src="snmp-alta", seq=seq, floor=1, device="sw1",
                           state="down")
        ledger.on_event(topic, event, State())
    assert [("device:sw1", "snmp-alta", 1_010.0, 1_010.0, "down", 180.0)] == ledger.changes()
    (late,) = ledger.late_changes()
    assert ("device:sw1", "snmp-alta", 990.0, "down") == late[:4]
    assert 1 == ledger.counts["closed_month"]
    assert [] == ledger.late_changes()
