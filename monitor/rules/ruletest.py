"""``driftsvakt rules test``: rule unit tests in YAML, modelled on ``promtool test rules``.

A test file names rule files, a small estate, and tests. Each test gives input
series per device in a compact notation, one value per ``interval``::

    values: "0.5 0.95x6 _ 0.7"     # 0.5, then 0.95 seven times, nothing, 0.7
    values: "100+50x4"             # 100 150 200 250 300 (a counter)
    states: "up downx5 up"          # device states, one per interval

and the alerts expected at given times. Everything is fed through the same
:class:`~monitor.rules.evaluator.RuleEngine` as in the engine, on a fake clock.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Final, Literal

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
from monitor.fields import DeviceClass, Duration, parse_duration
from monitor.rules.evaluator import RuleEngine
from monitor.rules.inventory import DeviceInfo, Inventory
from monitor.rules.model import RuleSet, load_rules
from monitor.state import State
from monitor.yamlmodel import Check, Problem, Problems, convert, is_missing, load_documents

__all__ = ["Failure", "expand", "run_file"]

EPOCH: Final = 1_800_000_000.0  # a fixed start, so that test times are exact
_TOKEN: Final = re.compile(
    r"^(?P<start>-?\d+(?:\.\d+)?(?:e[+-]?\d+)?|_|[a-z_]+)"
    r"(?:(?P<sign>[+-])(?P<step>\d+(?:\.\d+)?(?:e[+-]?\d+)?))?"
    r"(?:x(?P<times>\d+))?$")


def expand(text: str) -> list[float | str | None]:
    """Expand the series notation; ``None`` is a missing value. Raises ValueError."""
    out: list[float | str | None] = []
    for token in text.split():
        found = _TOKEN.match(token)
        if found is None:
            raise ValueError(f"{token!r} is not a value, a+bxN, axN or _")
        start, sign, step, times = found.group("start", "sign", "step", "times")
        count = int(times) + 1 if times is not None else 1
        if count > 100_000:
            raise ValueError(f"{token!r} repeats more than 100000 times")
        if start == "_" or start.isalpha() or "_" in start:
            if sign:
                raise ValueError(f"{token!r}: only numbers take +/-")
            value: str | None = None if start == "_" else start
            out.extend([value] * count)
            continue
        first = float(start)
        delta = float(step or 0) * (-1 if sign == "-" else 1)
        out.extend(first + i * delta for i in range(count))
    return out


def _instant(text: str) -> str | None:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return f"{text!r} is not an ISO 8601 time like 2027-01-15T09:00:00+01:00"
    return None if value.tzinfo else f"{text!r} needs a UTC offset (+01:00)"


SeriesText = Annotated[str, Check.parses(expand)]


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    id: str
    device_class: DeviceClass = field(metadata={"key": "class"})
    site: str = "site"
    municipality: str = "municipality"
    location: str = "location"
    name: str | None = None
    parent: str | None = None
    tags: list[str] = field(default_factory=list)
    interval: float | None = None


@dataclass(frozen=True, slots=True)
class InputSpec:
    """One input stream: a metric series, device states, a check, a component, or traps."""

    device: str | None = None
    metric: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    kind: Literal["gauge", "counter32", "counter64", "counter"] = "gauge"
    values: SeriesText | None = None
    states: SeriesText | None = None
    heartbeat: SeriesText | None = None
    check: str | None = None
    check_kind: Literal["icmp", "tcp", "http", "tls", "dns"] = "tcp"
    ok: SeriesText | None = None
    check_values: dict[str, SeriesText] = field(default_factory=dict)
    component: str | None = None
    instance: str | None = None
    location: str = "location"
    status: SeriesText | None = None
    dropped: SeriesText | None = None  # a component's outbox_dropped counter
    trap: str | None = None
    at: Duration = "0s"
    varbinds: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        given = [k for k in ("metric", "states", "heartbeat", "check", "component", "trap")
                 if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("an input is one of: metric (with values), states, heartbeat, "
                             "check (with ok), component (with status), trap")
        if given[0] != "component" and self.device is None:
            raise ValueError("this input needs 'device'")
        if self.metric is not None and self.values is None:
            raise ValueError("a metric input needs 'values'")


@dataclass(frozen=True, slots=True)
class ExpectedAlert:
    labels: dict[str, str] = field(default_factory=dict)
    state: Literal["pending", "firing", "acknowledged", "suppressed"] = "firing"
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Expectation:
    at: Duration
    alertname: str | None = None
    alerts: list[ExpectedAlert] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class TestSpec:
    name: str
    input: list[InputSpec]
    expect: list[Expectation]
    interval: Duration = "1m"
    start: Annotated[str, Check(_instant)] | None = None  # ISO 8601 with offset


@dataclass(frozen=True, slots=True)
class TestFile:
    rule_files: list[str]
    tests: list[TestSpec]
    devices: list[DeviceSpec] = field(default_factory=list)


@dataclass(slots=True)
class Coverage:
    """Which rules a test file shows firing, and which it shows staying quiet."""

    fired: set[str] = field(default_factory=set)
    quiet: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class Failure:
    file: str
    test: str
    at: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.test!r} at {self.at}: {self.message}"


def run_file(path: str | Path) -> tuple[int, list[Failure], RuleSet, Coverage]:
    """Run every test of one file; return (tests run, failures, rules, coverage).
    Raises Problems when the test file or its rule files are broken."""
    (doc,) = load_documents(Path(path))
    spec = convert(doc, doc.root, TestFile) if doc.root is not None else None
    if doc.problems or spec is None or is_missing(spec):
        raise Problems(doc.problems or [Problem(str(path), 0, "", "empty test file")])
    base = Path(path).parent
    rulesets = [load_rules(base / name) for name in spec.rule_files]
    rules = RuleSet(tuple(r for rs in rulesets for r in rs.rules),
                    tuple(i for rs in rulesets for i in rs.inhibitions),
                    ", ".join(spec.rule_files))
    inventory = Inventory.from_list(
        DeviceInfo(d.id, d.name or d.id, d.device_class, d.site, d.site, d.municipality,
                   d.location, frozenset(d.tags), d.parent, d.interval) for d in spec.devices)
    failures: list[Failure] = []
    for test in spec.tests:
        failures += _run_test(str(path), test, rules, inventory)
    return len(spec.tests), failures, rules, _coverage(spec.tests, {r.name for r in rules.rules})


def _coverage(tests: list[TestSpec], names: set[str]) -> Coverage:
    """Which rules the tests see fire, and which they see quiet."""
    coverage = Coverage()
    for e in (e for test in tests for e in test.expect):
        if not e.alerts:
            coverage.quiet |= {e.alertname} if e.alertname else names
        coverage.fired |= {a.labels.get("alertname", e.alertname or "") for a in e.alerts
                           if a.state == "firing"}
    return coverage


def _start(test: TestSpec) -> float:
    return datetime.fromisoformat(test.start).timestamp() if test.start else EPOCH


TestItem = Event | tuple[str, str, str, ComponentStatus]


class _Feed:
    """A test's input series as events, numbered as one source would number them."""

    def __init__(self, test: TestSpec) -> None:
        self.step = parse_duration(test.interval)
        self.epoch = _start(test)
        self.seq = 0

    def base(self, device: str, t: float) -> dict[str, Any]:
        self.seq += 1
        return {"v": 1, "ts": self.epoch + t, "src": "ruletest", "seq": self.seq,
                "device": device}

    def events(self, spec: InputSpec) -> Iterator[tuple[float, TestItem]]:
        device = spec.device or ""
        if spec.trap is not None:
            t = parse_duration(spec.at)
            yield t, TrapEvent(**self.base(device, t), trap_oid=spec.trap, agent_addr="test",
                               varbinds=[Varbind(oid, "OctetString", value)
                                         for oid, value in spec.varbinds.items()])
        elif spec.metric is not None and spec.values is not None:
            yield from self._metrics(spec, device, spec.metric, spec.values)
        elif spec.states is not None:
            for t, v in self._series(spec.states):
                if isinstance(v, str):
                    yield t, StateEvent(**self.base(device, t), state=v)  # type: ignore[arg-type]
        elif spec.heartbeat is not None:
            for t, v in self._series(spec.heartbeat):
                if v is not None:
                    yield t, HeartbeatEvent(**self.base(device, t), interval=self.step)
        elif spec.check is not None:
            yield from self._checks(spec, device, spec.check)
        elif spec.component is not None:
            yield from self._statuses(spec, spec.component)

    def _series(self, text: str) -> Iterator[tuple[float, float | str | None]]:
        for i, v in enumerate(expand(text)):
            yield i * self.step, v

    def _metrics(self, spec: InputSpec, device: str, metric: str, values: str
                 ) -> Iterator[tuple[float, TestItem]]:
        for t, v in self._series(values):
            if isinstance(v, float):
                yield t, MetricsEvent(**self.base(device, t), samples=[
                    Sample(metric, v, spec.labels, spec.kind)])

    def _checks(self, spec: InputSpec, device: str, check: str
                ) -> Iterator[tuple[float, TestItem]]:
        extra = {k: expand(v) for k, v in spec.check_values.items()}
        for i, ok in enumerate(expand(spec.ok or "")):
            if ok is None:
                continue
            values = {k: float(vs[i]) for k, vs in extra.items()  # type: ignore[arg-type]
                      if i < len(vs) and isinstance(vs[i], float)}
            yield i * self.step, CheckEvent(**self.base(device, i * self.step), check=check,
                                            kind=spec.check_kind, ok=bool(ok), latency=0.01,
                                            values=values)

    def _statuses(self, spec: InputSpec, component: str) -> Iterator[tuple[float, TestItem]]:
        instance = spec.instance or component
        dropped = expand(spec.dropped or "")
        for i, v in enumerate(expand(spec.status or "")):
            if not isinstance(v, str):
                continue
            count = dropped[i] if i < len(dropped) else None
            status = ComponentStatus(status=v, ts=self.epoch + i * self.step,  # type: ignore[arg-type]
                                     component=component, instance=instance,
                                     outbox_dropped=int(count)
                                     if isinstance(count, float) else None)
            yield i * self.step, (spec.location, component, instance, status)


def _events(test: TestSpec) -> list[tuple[float, TestItem]]:
    feed = _Feed(test)
    out = [item for spec in test.input for item in feed.events(spec)]
    out.sort(key=lambda item: item[0])
    return out


def _run_test(file: str, test: TestSpec, rules: RuleSet, inventory: Inventory
              ) -> list[Failure]:
    try:
        events = _events(test)
    except ValueError as exc:  # e.g. a state word that is not a state
        return [Failure(file, test.name, "-", str(exc))]
    state = State()
    epoch = _start(test)
    engine = RuleEngine(rules, inventory, started=epoch)
    checks = sorted(test.expect, key=lambda e: parse_duration(e.at))
    step = parse_duration(test.interval)
    end = max([parse_duration(e.at) for e in checks] + [0.0])
    times = sorted({*(i * step for i in range(int(end // step) + 1)),
                    *(parse_duration(e.at) for e in checks)})
    failures: list[Failure] = []
    pending = list(events)
    for t in times:
        while pending and pending[0][0] <= t:
            _, item = pending.pop(0)
            if isinstance(item, tuple):
                location, component, instance, status = item
                engine.on_component(location, component, instance, status)
            else:
                topic = DeviceTopic("location", "municipality", item.device, "test")
                state.apply(topic, item)
                engine.on_event(topic, item, state)
        engine.tick(epoch + t, state)
        for expectation in (e for e in checks if parse_duration(e.at) == t):
            failures += _compare(file, test.name, expectation, engine)
    return failures


def _compare(file: str, test: str, expectation: Expectation, engine: RuleEngine
             ) -> list[Failure]:
    actual = [a for a in engine.alerts.values() if a.state != "resolved"
              and (expectation.alertname is None or a.rule == expectation.alertname)]
    unmatched = list(actual)
    problems = []
    for want in expectation.alerts:
        found = next((a for a in unmatched
                      if all(a.labels.get(k) == v for k, v in want.labels.items())), None)
        if found is None:
            problems.append(f"expected an alert with {want.labels}, none found")
            continue
        unmatched.remove(found)
        if found.shown_state() != want.state:
            problems.append(f"{found.rule} {want.labels}: state {found.shown_state()}, "
                            f"expected {want.state}")
        for key, text in want.annotations.items():
            if found.annotations.get(key) != text:
                problems.append(f"{found.rule} annotation {key}: "
                                f"{found.annotations.get(key)!r}, expected {text!r}")
    for extra in unmatched:
        labels = {k: v for k, v in extra.labels.items() if k in ("alertname", "device")}
        problems.append(f"unexpected alert {labels} ({extra.shown_state()})")
    return [Failure(file, test, expectation.at, p) for p in problems]
