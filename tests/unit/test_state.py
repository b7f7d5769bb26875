"""The live picture's arithmetic: a counter's rate between its last two samples."""

from __future__ import annotations

from monitor.events import MetricsEvent, Sample, parse_device_topic
from monitor.state import State

TOPIC = parse_device_topic("driftsvakt/v1/alta/loppa/sw1/metrics")


def _apply(state: State, ts: float, value: float, kind: str = "counter64") -> None:
    state.apply(TOPIC, MetricsEvent(
        v=1, src="t", seq=int(ts), ts=ts, device="sw1",
        samples=[Sample(name="if_in_octets", value=value, kind=kind,  # type: ignore[arg-type]
                        labels={"ifindex": "1"})]))


def test_a_counters_rate_is_taken_between_its_last_two_samples() -> None:
    state = State()
    key = ("sw1", "if_in_octets", (("ifindex", "1"),))
    _apply(state, 1000.0, 5_000.0)
    assert state.series[key].rate is None  # one sample: no rate yet
    _apply(state, 1060.0, 65_000.0)
    assert state.series[key].rate == 1000.0  # 60,000 octets in 60 s
    _apply(state, 1030.0, 1.0)  # late: older than what is held, changes nothing
    assert (state.series[key].value, state.series[key].rate) == (65_000.0, 1000.0)
    _apply(state, 1090.0, 10.0)  # went back: a wrap or a reset, no rate
    assert state.series[key].rate is None
    _apply(state, 1100.0, 2_010.0)
    assert state.series[key].rate == 200.0


def test_a_gauge_has_no_rate() -> None:
    state = State()
    _apply(state, 1000.0, 1.0, "gauge")
    _apply(state, 1060.0, 61.0, "gauge")
    assert state.series[("sw1", "if_in_octets", (("ifindex", "1"),))].rate is None
