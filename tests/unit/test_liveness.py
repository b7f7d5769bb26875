"""Liveness: arrival order, not the sender's clock; silence over three intervals."""

from __future__ import annotations

from monitor.events import ComponentStatus
from monitor.liveness import Liveness

KEY = ("alta", "snmp", "snmp-alta")
ENGINE = ("hammerfest", "engine", "hammerfest")


def status(state: str, ts: float, component: str = "snmp", instance: str = "snmp-alta",
           interval: float | None = 30.0) -> ComponentStatus:
    return ComponentStatus(status=state, ts=ts, component=component,  # type: ignore[arg-type]
                           instance=instance, interval=interval)


def test_a_will_built_before_the_online_still_wins_when_it_arrives_after() -> None:
    live = Liveness("alta", ["alta", "hammerfest"])
    online = live.heard(KEY, status("online", 1000.5), now=1001.0, retained=False)
    will = live.heard(KEY, status("offline", 1000.0), now=1001.0, retained=False)
    assert will.ts > online.ts  # stamped in the order heard, in the same instant too
    assert (1001.0, 1001.000001) == (online.ts, will.ts)


def test_silence_for_three_intervals_is_offline_and_only_while_listening() -> None:
    live = Liveness("alta", ["alta"])
    live.heard(KEY, status("online", 1000.0), now=1000.0, retained=False)
    assert [] == live.sweep(2000.0)  # not connected: silence proves nothing
    live.listening(1010.0)
    assert [] == live.sweep(1100.0)  # 90 s after we started listening: at the bound
    [(key, offline)] = live.sweep(1100.5)
    assert (KEY, "offline", 1100.5) == (key, offline.status, offline.ts)
    assert [] == live.sweep(1200.0)  # said once


def test_a_status_without_interval_gets_thirty_seconds() -> None:
    live = Liveness("alta", ["alta"])
    live.listening(0.0)
    live.heard(KEY, status("online", 10.0, interval=None), now=10.0, retained=False)
    assert [] == live.sweep(100.0)
    assert 1 == len(live.sweep(100.1))


def test_a_stale_retained_online_counts_from_its_own_time() -> None:
    live = Liveness("alta", ["alta"])
    live.listening(5000.0)
    live.heard(KEY, status("online", 4000.0), now=5000.0, retained=True)
    # heard "at 4000", but silence counts from when we listened: 5000 + 90
    assert [] == live.sweep(5090.0)
    assert 1 == len(live.sweep(5090.1))
    # a sender whose clock is ahead counts as heard now, not in the future
    live.heard(KEY, status("online", 9999.0), now=5100.0, retained=True)
    assert 1 == len(live.sweep(5190.1))


def test_a_location_is_unreachable_without_engine_and_events_for_15_s() -> None:
    live = Liveness("alta", ["alta", "hammerfest"])
    live.listening(0.0)
    live.heard(ENGINE, status("online", 1.0, "engine", "hammerfest", 5.0), now=1.0,
               retained=False)
    [(key, up)] = live.sweep(2.0)
    assert (("hammerfest", "location", "hammerfest"), "online") == (key, up.status)
    live.heard_from("hammerfest", 10.0)  # an event
    # the engine is silent after 1 + 15 s; the event keeps the location reachable
    [(key, engine_off)] = live.sweep(16.5)
    assert (ENGINE, "offline") == (key, engine_off.status)
    assert [] == live.sweep(25.0)
    [(key, gone)] = live.sweep(25.5)
    assert (("hammerfest", "location", "hammerfest"), "offline") == (key, gone.status)
    live.heard_from("hammerfest", 30.0)
    [(_, back)] = live.sweep(30.0)
    assert "online" == back.status


def test_nothing_ever_heard_from_a_location_is_reported_after_15_s_of_listening() -> None:
    live = Liveness("alta", ["alta", "hammerfest"])
    live.listening(100.0)
    assert [] == live.sweep(115.0)
    [(key, gone)] = live.sweep(115.5)
    assert (("hammerfest", "location", "hammerfest"), "offline") == (key, gone.status)
