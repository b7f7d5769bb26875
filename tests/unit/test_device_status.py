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
