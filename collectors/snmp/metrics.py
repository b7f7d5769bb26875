"""The SNMP poller's own metrics: poll durations, errors by kind, timeouts, devices in
backoff, varbinds, requests and retries on the wire. Counters are read from the
poller's stats at scrape time; durations go into a histogram as polls finish."""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterator
from typing import Final

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from collectors.snmp.client import ErrorKind
from collectors.snmp.community import RequesterStats

__all__ = ["ERROR_KINDS", "PollerMetrics"]

ERROR_KINDS: Final = typing.get_args(ErrorKind)  # zeros, not missing series


class _StatsCollector(Collector):
    def __init__(self, read: Callable[[], tuple[object, RequesterStats, int, str]]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        stats, wire, backoff, location = self.read()
        labels = ["location"]
        polls = CounterMetricFamily("driftsvakt_snmp_polls", "Polls finished", labels=labels)
        polls.add_metric([location], float(stats.polls))  # type: ignore[attr-defined]
        errors = CounterMetricFamily("driftsvakt_snmp_poll_errors",
                                     "Polls that failed, by kind (timeout: the device is "
                                     "down or unreachable)", labels=[*labels, "kind"])
        counted = stats.errors  # type: ignore[attr-defined]
        for kind in sorted({*ERROR_KINDS, *counted}):
            errors.add_metric([location, kind], float(counted.get(kind, 0)))
        overruns = CounterMetricFamily("driftsvakt_snmp_poll_overruns",
                                       "Polls skipped because the previous one overran its "
                                       "interval", labels=labels)
        overruns.add_metric([location], float(stats.overruns))  # type: ignore[attr-defined]
        varbinds = CounterMetricFamily("driftsvakt_snmp_varbinds", "Varbinds received",
                                       labels=labels)
        varbinds.add_metric([location], float(stats.varbinds))  # type: ignore[attr-defined]
        sent = CounterMetricFamily("driftsvakt_snmp_requests", "SNMP requests sent (v2c "
                                   "fast path)", labels=labels)
        sent.add_metric([location], float(wire.sent))
        retries = CounterMetricFamily("driftsvakt_snmp_retries", "Requests sent again after "
                                      "a timeout", labels=labels)
        retries.add_metric([location], float(wire.retries))
        bad = CounterMetricFamily("driftsvakt_snmp_responses_malformed",
                                  "Responses that did not decode", labels=labels)
        bad.add_metric([location], float(wire.malformed))
        waiting = GaugeMetricFamily("driftsvakt_snmp_devices_in_backoff",
                                    "Devices polled less often after repeated timeouts",
                                    labels=labels)
        waiting.add_metric([location], float(backoff))
        tables = CounterMetricFamily("driftsvakt_snmp_neighbour_reads",
                                     "LLDP and CDP neighbour tables read (topology.interval), "
                                     "by outcome", labels=[*labels, "outcome"])
        tables.add_metric([location, "ok"], float(stats.neighbour_reads))  # type: ignore[attr-defined]
        tables.add_metric([location, "error"], float(stats.neighbour_errors))  # type: ignore[attr-defined]
        yield from (polls, errors, overruns, varbinds, sent, retries, bad, waiting, tables)


class PollerMetrics:
    def __init__(self, read: Callable[[], tuple[object, RequesterStats, int, str]],
                 registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.poll_seconds = Histogram(
            "driftsvakt_snmp_poll_duration_seconds", "Duration of one device's poll",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry)
        self.registry.register(_StatsCollector(read))
