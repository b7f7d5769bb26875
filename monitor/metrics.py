"""Prometheus metrics of the engine, on a registry that is passed in (never the global).

Self metrics (events, rejections, lag, batches) are ordinary counters and histograms.
Series derived from state — device up, last seen, the latest samples, component
status — are produced at scrape time by :class:`StateCollector` from :class:`State`,
so they cost nothing on the ingest path.
"""

from __future__ import annotations

import time
import typing
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from monitor.config import DEFAULT_GRACE, DEFAULT_OFFICE_HOURS, Config
from monitor.events import DEVICE_LABELS, STREAMS, RejectReason
from monitor.fields import at_time
from monitor.officehours import ALWAYS, OpenPeriods, Schedule, classify_silence
from monitor.rules.topology import Uplinks, cut_off
from monitor.state import DeviceStatus, State

__all__ = ["DeviceClassifier", "EngineMetrics", "StateCollector"]

_LAG_BUCKETS: Final = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
UP_STATES: Final = frozenset({"up", "online"})
DOWN_STATES: Final = frozenset({"down", "offline", "stopping", "auth_error", "unreachable"})


class EngineMetrics:
    """Self metrics of one engine; implements ``monitor.ingest.IngestCounters``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter("driftsvakt_events_applied_total",
                              "Events applied to state, by stream", ["stream"], registry=registry)
        self.samples = Counter("driftsvakt_samples_applied_total",
                               "Samples applied to state", registry=registry)
        self.rejected_total = Counter(
            "driftsvakt_events_rejected_total",
            "Payloads that failed to decode or validate (dead-lettered)", ["reason"],
            registry=registry)
        self.duplicates = Counter("driftsvakt_events_duplicate_total",
                                  "Events already applied, dropped by (src, seq)",
                                  registry=registry)
        self.gaps = Counter("driftsvakt_events_out_of_order_total",
                            "Events ahead of their source's next seq, held for resend",
                            registry=registry)
        self.skipped_total = Counter(
            "driftsvakt_events_skipped_total",
            "Seqs a source no longer holds (dropped from its outbox), given up on",
            registry=registry)
        self.lag = Histogram("driftsvakt_event_lag_seconds",
                             "From event time to processing", buckets=_LAG_BUCKETS,
                             registry=registry)
        self.batch_seconds = Histogram(
            "driftsvakt_ingest_batch_duration_seconds",
            "Decode, apply and commit of one batch",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=registry)
        self.batch_events = Histogram(
            "driftsvakt_ingest_batch_events", "Messages per ingest batch",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000), registry=registry)
        self.mqtt_connected = Gauge("driftsvakt_mqtt_connected",
                                    "1 while the engine is connected to its broker",
                                    registry=registry)
        self.acks_published = Counter("driftsvakt_acks_published_total",
                                      "End-to-end acknowledgements published", registry=registry)
        self.store_errors = Counter("driftsvakt_store_errors_total",
                                    "Failed store transactions", registry=registry)
        self.sign_ins = Counter(
            "driftsvakt_web_sign_ins_total", "Sign-ins at /login by how (token, password, "
            "directory, oidc) and outcome (ok, failed, throttled, unavailable)",
            ["how", "outcome"], registry=registry)
        for reason in typing.get_args(RejectReason):  # zeros, not missing series
            self.rejected_total.labels(reason)
        for how in ("token", "password", "directory", "oidc"):
            for outcome in ("ok", "failed", "throttled", "unavailable"):
                self.sign_ins.labels(how, outcome)
        # Children resolved once: .labels() costs a dict lookup and a lock per call.
        self._events_by_stream = {s: self.events.labels(s) for s in STREAMS}

    def applied(self, stream: str, samples: int, lag: float) -> None:
        self._events_by_stream[stream].inc()
        if samples:
            self.samples.inc(samples)
        self.lag.observe(max(lag, 0.0))

    def rejected(self, reason: str) -> None:
        self.rejected_total.labels(reason).inc()

    def duplicate(self) -> None:
        self.duplicates.inc()

    def gap(self) -> None:
        self.gaps.inc()

    def skipped(self, count: int) -> None:
        self.skipped_total.inc(count)


_DEVICE_LABELS: Final = list(DEVICE_LABELS)
SILENT_AFTER_INTERVALS: Final = 3.0
DEFAULT_INTERVAL: Final = 60.0


class DeviceClassifier:
    """A device's status at one instant, from its last report and the office hours.

    A device that reported a failure (down, unreachable, auth_error) has that status.
    Otherwise one heard from within three of its intervals is up; a silent one, or one
    whose agent said offline or stopping, is judged by ``classify_silence``: a PC is
    off outside office hours and during the grace period, everything else is down.
    A device that would be down while something on its path to the centre is down is
    *unreachable* (as monitor.rules.topology decides for the rules), when ``devices``
    (the engine's statuses, for the ancestors) is given. Office-hours answers and
    ancestors' verdicts are computed once per instant.
    """

    def __init__(self, config: Config, now: datetime,
                 devices: Mapping[str, DeviceStatus] | None = None,
                 uplinks: Uplinks | None = None) -> None:
        self.config = config
        self.now = now
        self.devices = devices
        self.uplinks = uplinks  # the rules' (declared parents, else the links'), if given
        self._hours: dict[str, tuple[OpenPeriods, float]] = {}
        self._verdicts: dict[str, str] = {}

    def __call__(self, device: str, device_class: str, status: DeviceStatus) -> str:
        verdict = self._own(device, device_class, status)
        if verdict == "down" and self.devices is not None and self._parent_down(device):
            return "unreachable"
        return verdict

    def _parent_down(self, device: str) -> bool:
        def declared(d: str) -> tuple[tuple[str, ...], int]:
            known = self.config.devices.get(d)
            if known is None:
                return (), 1
            return tuple(p for p in known.uplinks if p in self.config.devices), (
                known.parents_needed)

        return cut_off(device, self.uplinks or declared,
                       lambda d: self._verdict_of(d) in ("down", "unreachable"))

    def _verdict_of(self, device: str) -> str:
        found = self._verdicts.get(device)
        if found is None:
            assert self.devices is not None
            status = self.devices.get(device)
            found = "unknown" if status is None else self._own(
                device, self.config.devices[device].device_class, status)
            self._verdicts[device] = found
        return found

    def _own(self, device: str, device_class: str, status: DeviceStatus) -> str:
        if status.state in ("down", "unreachable", "auth_error"):
            return status.state
        every = status.interval or DEFAULT_INTERVAL
        last = at_time(status.last_seen) if status.last_seen else None
        if status.state in ("offline", "stopping"):
            last = at_time(status.state_since or 0.0)
            every = 0.0
        if device_class != "pc":
            return classify_silence(device_class, last, self.now,
                                    expected_every=timedelta(seconds=every *
                                                             SILENT_AFTER_INTERVALS),
                                    hours=ALWAYS, grace=timedelta(0))
        hours, grace = self._office_hours(device)
        return classify_silence("pc", last, self.now,
                                expected_every=timedelta(seconds=every *
                                                         SILENT_AFTER_INTERVALS),
                                hours=hours, grace=timedelta(seconds=grace))

    def _office_hours(self, device: str) -> tuple[OpenPeriods, float]:
        if device not in self.config.devices:
            return DEFAULT_OFFICE_HOURS, DEFAULT_GRACE
        site = self.config.devices[device].site
        found = self._hours.get(site)
        if found is None:
            schedule, grace = self.config.office_hours_for(device)
            found = self._hours[site] = (_CachedPeriods(schedule), grace)
        return found


class _CachedPeriods:
    """A schedule's period_start, remembered per instant (one scrape asks the same
    question for every PC of a site)."""

    def __init__(self, inner: Schedule) -> None:
        self._inner = inner
        self._cache: dict[datetime, datetime | None] = {}

    def period_start(self, at: datetime) -> datetime | None:
        if at not in self._cache:
            self._cache[at] = self._inner.period_start(at)
        return self._cache[at]


class StateCollector(Collector):
    """Device, check and component metrics, rendered from state at scrape time (the
    device series themselves: monitor.exposition)."""

    def __init__(self, state: State, config: Config,
                 clock: Callable[[], float] = time.time) -> None:
        self.state = state
        self.config = config
        self.clock = clock
        self.uplinks: Uplinks | None = None  # the rules' parents, once they run

    def device_labels(self, device: str, location: str, municipality: str) -> list[str]:
        known = self.config.devices.get(device)
        if known is None:
            return [location, municipality, "", device, "unknown"]
        return [location, municipality, known.site, device, known.device_class]

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("driftsvakt_device_up",
                               "1 when the device answers, 0 when it does not (by its last "
                               "reported state)", labels=_DEVICE_LABELS)
        seen = GaugeMetricFamily("driftsvakt_device_last_seen_timestamp_seconds",
                                 "Event time of the device's newest event",
                                 labels=_DEVICE_LABELS)
        verdict = GaugeMetricFamily(
            "driftsvakt_device_status",
            "1 for the device's status: up, down, off (a PC outside office hours or in "
            "its grace period), unreachable or auth_error", labels=[*_DEVICE_LABELS, "status"])
        refused = CounterMetricFamily(
            "driftsvakt_device_series_refused",
            "New series a device sent past engine.max_series_per_device, refused",
            labels=_DEVICE_LABELS)
        labels_of: dict[str, list[str]] = {}
        classify = DeviceClassifier(self.config, at_time(self.clock()), self.state.devices,
                                    self.uplinks)
        for device, status in self.state.devices.items():
            labels = self.device_labels(device, status.location, status.municipality)
            labels_of[device] = labels
            seen.add_metric(labels, status.last_seen)
            current = classify(device, labels[4], status)
            verdict.add_metric([*labels, current], 1.0)
            if current == "up":
                up.add_metric(labels, 1.0)
            elif current != "off":
                up.add_metric(labels, 0.0)
        for device, count in self.state.series_refused.items():
            if device in labels_of:
                refused.add_metric(labels_of[device], float(count))
        yield up
        yield seen
        yield verdict
        yield refused
        yield from self._checks(labels_of)
        component = GaugeMetricFamily(
            "driftsvakt_component_up", "1 while a collector or engine reports itself online",
            labels=["location", "component", "instance"])
        labels = ["location", "component", "instance"]
        rows = GaugeMetricFamily("driftsvakt_outbox_rows",
                                 "Events in a collector's outbox awaiting acknowledgement",
                                 labels=labels)
        dropped = CounterMetricFamily("driftsvakt_outbox_dropped",
                                      "Events a collector dropped from its full or old outbox",
                                      labels=labels)
        counted = CounterMetricFamily(
            "driftsvakt_collector_counted",
            "What a collector counted and could not pass on as events (what: e.g. "
            "trap_socket_drops, trap_unreadable), as its status last reported it",
            labels=[*labels, "what"])
        for (location, name, instance), reported in self.state.components.items():
            key = [location, name, instance]
            component.add_metric(key, 1.0 if reported.status == "online" else 0.0)
            for what, count in reported.counters.items():
                counted.add_metric([*key, what], float(count))
            if reported.outbox_rows is not None:
                rows.add_metric(key, float(reported.outbox_rows))
            if reported.outbox_dropped is not None:
                dropped.add_metric(key, float(reported.outbox_dropped))
        yield component
        yield rows
        yield dropped
        yield counted

    def _checks(self, labels_of: dict[str, list[str]]) -> Iterator[Metric]:
        labels = [*_DEVICE_LABELS, "check", "kind"]
        up = GaugeMetricFamily("driftsvakt_check_up", "1 when the check's last run passed",
                               labels=labels)
        latency = GaugeMetricFamily("driftsvakt_check_latency_seconds",
                                    "Response time of the check's last run", labels=labels)
        expiry = GaugeMetricFamily("driftsvakt_check_certificate_expiry_seconds",
                                   "Seconds until the certificate's notAfter", labels=labels)
        status = GaugeMetricFamily("driftsvakt_check_http_status_code",
                                   "HTTP status of the check's last run", labels=labels)
        for (device, check), event in self.state.checks.items():
            base = labels_of.get(device) or ["", "", "", device, "unknown"]
            key = [*base, check, event.kind]
            up.add_metric(key, 1.0 if event.ok else 0.0)
            if event.latency is not None:
                latency.add_metric(key, event.latency)
            if "expiry_seconds" in event.values:
                expiry.add_metric(key, event.values["expiry_seconds"])
            if "status" in event.values:
                status.add_metric(key, event.values["status"])
        yield from (up, latency, expiry, status)
