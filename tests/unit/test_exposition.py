"""The device series' text: valid for Prometheus's parser, escaped, every series of a
name whatever its label keys, consistent under concurrent scrapes."""

from __future__ import annotations

import asyncio

from prometheus_client.parser import text_string_to_metric_families

from monitor.exposition import SeriesExposition
from monitor.state import DeviceStatus, SeriesValue, State


def labels_of(device: str, location: str, municipality: str) -> list[str]:
    return [location, municipality, "rådhus", device, "switch"]


def state() -> State:
    s = State()
    s.devices["sw1"] = DeviceStatus("alta", "loppa", 1.0)
    s.series[("sw1", "if_in_octets", (("ifname", 'Gi1/0/1 "uplink"\\x\n'),))] = \
        SeriesValue(1.5e12, 1.0, "counter64")
    s.series[("sw1", "if_in_octets", (("ifname", "Gi1/0/2"),))] = \
        SeriesValue(12.0, 1.0, "counter64")
    s.series[("sw1", "cpu_usage_ratio", ())] = SeriesValue(0.25, 1.0, "gauge")
    s.series[("sw1", "cpu_usage_ratio", (("core", "0"),))] = SeriesValue(0.5, 1.0, "gauge")
    return s


async def test_text_parses_with_labels_escaped_and_counters_named() -> None:
    st = state()
    exposition = SeriesExposition(st, labels_of)
    text = (await exposition.render()).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    octets = families["driftsvakt_if_in_octets"]
    assert "counter" == octets.type
    by_port = {s.labels["ifname"]: (s.name, s.value) for s in octets.samples}
    assert {'Gi1/0/1 "uplink"\\x\n': ("driftsvakt_if_in_octets_total", 1.5e12),
            "Gi1/0/2": ("driftsvakt_if_in_octets_total", 12.0)} == by_port
    base = {"location": "alta", "municipality": "loppa", "site": "rådhus", "device": "sw1",
            "class": "switch"}
    # one series without 'core' and one with it: both shown (an alias on one port
    # only, or ifXTable on one switch only, is the same case)
    assert [(base, 0.25), ({**base, "core": "0"}, 0.5)] == [
        (s.labels, s.value) for s in families["driftsvakt_cpu_usage_ratio"].samples]
    # values move, texts stay: the second scrape shows the new value
    st.series[("sw1", "cpu_usage_ratio", ())].value = 0.75
    again = {f.name: f for f in text_string_to_metric_families(
        (await exposition.render()).decode())}
    assert 0.75 == again["driftsvakt_cpu_usage_ratio"].samples[0].value


async def test_concurrent_scrapes_take_turns() -> None:
    st = state()
    for i in range(20_000):
        st.series[("sw1", "if_out_octets", (("ifname", f"p{i}"),))] = \
            SeriesValue(float(i), 1.0, "counter64")
    exposition = SeriesExposition(st, labels_of)
    first, second = await asyncio.gather(exposition.render(), exposition.render())
    assert first == second
    assert 20_002 == first.count(b"\ndriftsvakt_if_out_octets_total{") + \
        first.count(b"\ndriftsvakt_if_in_octets_total{")


async def test_a_counter64_beyond_53_bits_is_exact_in_state_and_text() -> None:
    """Two readings of a counter near 2**64, one second apart, 999 octets apart: the
    engine's rate is 999 (as floats both round to a multiple of 2048, and the rate to
    0 or 2048) and the text shows the reading's digits."""
    from monitor.events import DeviceTopic, MetricsEvent, Sample

    st = State()
    topic = DeviceTopic("alta", "loppa", "sw1", "metrics", "snmp-alta")
    for seq, (ts, value) in enumerate(((10.0, 2**64 - 1000), (11.0, 2**64 - 1)), 1):
        st.apply(topic, MetricsEvent(v=1, ts=ts, src="snmp-alta", seq=seq, device="sw1",
                                     samples=[Sample(name="if_in_octets", value=value,
                                                     labels={"ifname": "Hu1"},
                                                     kind="counter64")]))
    held = st.series[("sw1", "if_in_octets", (("ifname", "Hu1"),))]
    assert (18446744073709551615, 999.0) == (held.value, held.rate)
    text = (await SeriesExposition(st, labels_of).render()).decode()
    assert ('driftsvakt_if_in_octets_total{location="alta",municipality="loppa",'
            'site="rådhus",device="sw1",class="switch",ifname="Hu1"} '
            '18446744073709551615') in text.splitlines()
