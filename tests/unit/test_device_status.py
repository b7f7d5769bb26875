"""Device status at scrape time: reported failures, silence, and office hours for PCs."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from monitor.config import Config, load_config
from monitor.metrics import DeviceClassifier
from monitor.state import DeviceStatus

OSLO = ZoneInfo("Europe/Oslo")


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    path: Path = tmp_path_factory.mktemp("cfg") / "estate.yaml"
    path.write_text(yaml.safe_dump({
        "locations": [{"id": "alta", "name": "Alta"}],
        "municipalities": [{"id": "alta", "name": "Alta", "office_hours": "kontor"}],
        "office_hours": [{"id": "kontor", "weekly": {"mon-fri": ["07:00-16:00"]},
                          "grace": 1800}],
        "sites": [{"id": "radhus", "name": "Rådhus", "location": "alta",
                   "municipality": "alta"}],
        "devices": [{"id": "pc1", "name": "PC", "class": "pc", "site": "radhus"},
                    {"id": "srv1", "name": "Server", "class": "server", "site": "radhus"}],
    }), encoding="utf-8")
    return load_config(path)


def ts(*args: int) -> float:
    return datetime(*args, tzinfo=OSLO).timestamp()  # type: ignore[arg-type,misc]


@pytest.mark.parametrize(("device", "cls", "status", "now", "want"), [
    # heard within 3 intervals of 60 s: up
    ("srv1", "server", DeviceStatus("alta", "alta", ts(2026, 3, 31, 10, 0)),
     (2026, 3, 31, 10, 2), "up"),
    # a server silent for 4 intervals: down, even at night
    ("srv1", "server", DeviceStatus("alta", "alta", ts(2026, 3, 31, 22, 0)),
     (2026, 3, 31, 22, 4), "down"),
    # a reported failure wins over recent metrics
    ("srv1", "server", DeviceStatus("alta", "alta", ts(2026, 3, 31, 10, 0), "auth_error",
                                    ts(2026, 3, 31, 10, 0)), (2026, 3, 31, 10, 0), "auth_error"),
    # a PC silent in the evening: off
    ("pc1", "pc", DeviceStatus("alta", "alta", ts(2026, 3, 31, 16, 5), interval=60),
     (2026, 3, 31, 22, 0), "off"),
    # a PC that shut down cleanly in office hours: off during the grace, then down
    ("pc1", "pc", DeviceStatus("alta", "alta", ts(2026, 3, 31, 11, 0), "stopping",
                               ts(2026, 3, 31, 11, 0)), (2026, 3, 31, 11, 29), "off"),
    ("pc1", "pc", DeviceStatus("alta", "alta", ts(2026, 3, 31, 11, 0), "stopping",
                               ts(2026, 3, 31, 11, 0)), (2026, 3, 31, 11, 30), "down"),
    # on Maundy Thursday the office is closed
    ("pc1", "pc", DeviceStatus("alta", "alta", ts(2026, 4, 1, 15, 0)),
     (2026, 4, 2, 10, 0), "off"),
])
def test_device_status(config: Config, device: str, cls: str, status: DeviceStatus,
                       now: tuple[int, ...], want: str) -> None:
    """Each case: the status the scrape reports for the device at that instant."""
    classify = DeviceClassifier(config, datetime(*now, tzinfo=OSLO))  # type: ignore[arg-type,misc]
    assert want == classify(device, cls, status)


def test_series_past_the_cap_are_refused_and_counted_per_device() -> None:
    """Cap 3: a device's first three series are kept and updated; the next five new
    ones are refused and counted for that device only; another device has its own."""
    from monitor.events import DeviceTopic, MetricsEvent, Sample
    from monitor.state import State

    state = State(max_series_per_device=3)
    topic = DeviceTopic("alta", "loppa", "sw1", "metrics")
    for seq, names in enumerate((["a", "b"], ["a", "c", "d", "e"], ["b", "f", "g", "h"]), 1):
        state.apply(topic, MetricsEvent(v=1, ts=float(seq), src="s", seq=seq, device="sw1",
                                        samples=[Sample(name=n, value=float(seq))
                                                 for n in names]))
    other = DeviceTopic("alta", "loppa", "sw2", "metrics")
    state.apply(other, MetricsEvent(v=1, ts=1.0, src="s", seq=4, device="sw2",
                                    samples=[Sample(name="z", value=1.0)]))
    kept = {(device, name): v.value for (device, name, _), v in state.series.items()}
    assert {("sw1", "a"): 2.0, ("sw1", "b"): 3.0, ("sw1", "c"): 2.0,
            ("sw2", "z"): 1.0} == kept
    assert {"sw1": 5} == state.series_refused


@pytest.mark.parametrize(("device", "now", "want"), [
    ("pc1", (2026, 3, 31, 22, 0), "off"),  # a Tuesday evening: as any silent PC
    ("pc1", (2026, 3, 31, 7, 20), "off"),  # in the grace after opening
    ("pc1", (2026, 3, 31, 10, 0), "unknown"),  # office hours: nothing to say yet
    ("srv1", (2026, 3, 31, 22, 0), "unknown"),  # a server is never "off"
])
def test_a_device_never_heard_of(config: Config, device: str, now: tuple[int, ...],
                                 want: str) -> None:
    """No event at all since the engine has a store: what the console says of it."""
    from monitor.web.console import _never_heard

    classify = DeviceClassifier(config, datetime(*now, tzinfo=OSLO))  # type: ignore[arg-type,misc]
    assert want == _never_heard(classify, config.devices[device])


def _one_site(tmp_path: Path, devices: list[dict[str, object]]) -> Path:
    """An estate of one site with ``devices`` on it."""
    path = tmp_path / "estate.yaml"
    path.write_text(yaml.safe_dump({
        "locations": [{"id": "alta", "name": "Alta"}],
        "municipalities": [{"id": "alta", "name": "Alta"}],
        "sites": [{"id": "s", "name": "S", "location": "alta", "municipality": "alta"}],
        "devices": devices}), encoding="utf-8")
    return path


def test_behind_a_down_parent_a_down_device_is_unreachable(tmp_path: Path) -> None:
    """core ← dist ← acc ← srv, and a PC on acc: with dist down, what would be down
    behind it is unreachable, at any depth; dist itself stays down; a device behind it
    that still answers is up; an off PC stays off; a silent parent counts as down."""
    path = _one_site(tmp_path, [
        {"id": "core", "name": "core", "class": "switch", "site": "s"},
        {"id": "dist", "name": "dist", "class": "switch", "site": "s", "parent": "core"},
        {"id": "acc", "name": "acc", "class": "switch", "site": "s", "parent": "dist"},
        {"id": "srv", "name": "srv", "class": "server", "site": "s", "parent": "acc"},
        {"id": "ap", "name": "ap", "class": "ap", "site": "s", "parent": "acc"},
        {"id": "pc", "name": "pc", "class": "pc", "site": "s", "parent": "acc"},
    ])
    cfg = load_config(path)
    now = ts(2026, 3, 31, 22, 0)  # evening: a silent PC is off
    heard = now - 30
    devices = {
        "core": DeviceStatus("alta", "alta", heard, "up", heard),
        "dist": DeviceStatus("alta", "alta", heard, "down", heard),
        "acc": DeviceStatus("alta", "alta", heard, "down", heard),
        "srv": DeviceStatus("alta", "alta", now - 3600),  # silent for an hour
        "ap": DeviceStatus("alta", "alta", heard, "up", heard),
        "pc": DeviceStatus("alta", "alta", now - 3600),
    }
    classify = DeviceClassifier(cfg, datetime.fromtimestamp(now, OSLO), devices)
    got = {d: classify(d, cfg.devices[d].device_class, s) for d, s in devices.items()}
    assert got == {"core": "up", "dist": "down", "acc": "unreachable", "srv": "unreachable",
                   "ap": "up", "pc": "off"}
    # without the statuses of the others, a device is judged alone
    alone = DeviceClassifier(cfg, datetime.fromtimestamp(now, OSLO))
    assert alone("acc", "switch", devices["acc"]) == "down"
    # the parent silent rather than reporting down: still down, so acc is unreachable
    devices["dist"] = DeviceStatus("alta", "alta", now - 3600)
    classify = DeviceClassifier(cfg, datetime.fromtimestamp(now, OSLO), devices)
    assert (classify("dist", "switch", devices["dist"]),
            classify("acc", "switch", devices["acc"])) == ("down", "unreachable")


def test_behind_a_redundant_pair_only_both_sides_down_cut_off(tmp_path: Path) -> None:
    """dist hangs on a core pair (parents: either reaches it), acc on dist, and a
    server needs both cores (parents_needed: 2): with core1 down dist's own failure is
    down, the server is unreachable; with both down dist is unreachable too."""
    path = _one_site(tmp_path, [
        {"id": "core1", "name": "core1", "class": "switch", "site": "s"},
        {"id": "core2", "name": "core2", "class": "switch", "site": "s"},
        {"id": "dist", "name": "dist", "class": "switch", "site": "s",
         "parents": ["core1", "core2"]},
        {"id": "acc", "name": "acc", "class": "switch", "site": "s", "parent": "dist"},
        {"id": "srv", "name": "srv", "class": "server", "site": "s",
         "parents": ["core1", "core2"], "parents_needed": 2},
    ])
    cfg = load_config(path)
    now = ts(2026, 3, 31, 12, 0)
    heard = now - 30

    def status(state: str) -> DeviceStatus:
        return DeviceStatus("alta", "alta", heard, state, heard)

    devices = {"core1": status("down"), "core2": status("up"), "dist": status("down"),
               "acc": status("down"), "srv": status("down")}
    classify = DeviceClassifier(cfg, datetime.fromtimestamp(now, OSLO), devices)
    got = {d: classify(d, cfg.devices[d].device_class, s) for d, s in devices.items()}
    assert got == {"core1": "down", "core2": "up", "dist": "down", "acc": "unreachable",
                   "srv": "unreachable"}
    devices["core2"] = status("down")
    classify = DeviceClassifier(cfg, datetime.fromtimestamp(now, OSLO), devices)
    assert "unreachable" == classify("dist", "switch", devices["dist"])


@pytest.mark.parametrize(("device", "problem"), [
    ({"parent": "core1", "parents": ["core1", "core2"]},
     "parents: give either parent or parents, not both"),
    ({"parents": ["core1", "nowhere"]}, "parents[1]: unknown parent device 'nowhere'"),
    ({"parents": ["core1"], "parents_needed": 2}, "parents_needed: 2 of 1 parent(s)"),
])
def test_redundant_parents_are_checked(tmp_path: Path, device: dict[str, object],
                                       problem: str) -> None:
    path = _one_site(tmp_path, [{"id": "core1", "name": "c1", "class": "switch", "site": "s"},
                {"id": "core2", "name": "c2", "class": "switch", "site": "s"},
                {"id": "dist", "name": "d", "class": "switch", "site": "s", **device}])
    from monitor.yamlmodel import Problems
    with pytest.raises(Problems) as caught:
        load_config(path)
    assert [f"devices[2].{problem}"] == [f"{p.key}: {p.message}"
                                         for p in caught.value.problems]


def test_a_parent_cycle_through_a_pair_is_named(tmp_path: Path) -> None:
    path = _one_site(tmp_path, [{"id": "a", "name": "a", "class": "switch", "site": "s"},
                {"id": "b", "name": "b", "class": "switch", "site": "s",
                 "parents": ["a", "c"]},
                {"id": "c", "name": "c", "class": "switch", "site": "s", "parent": "b"}])
    from monitor.yamlmodel import Problems
    with pytest.raises(Problems) as caught:
        load_config(path)
    assert ["devices[1].parent: parent cycle: b -> c -> b"] == [
        f"{p.key}: {p.message}" for p in caught.value.problems]
