"""The poller's part of an estate reload, without a network: what it stops, starts
and keeps, and a reload refused whole when a secret it names cannot be read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from collectors.common.publisher import Emitter
from collectors.snmp.modules import load_modules
from collectors.snmp.poller import SnmpPoller
from monitor.config import Config, load_config


class _Discard(Emitter):
    async def emit(self, *args: Any, **kwargs: Any) -> int:
        return 0


def _config(tmp: Path, devices: dict[str, str], profile_env: str = "DV_COMMUNITY") -> Config:
    path = tmp / f"estate-{len(list(tmp.iterdir()))}.yaml"
    path.write_text(yaml.safe_dump({
        "locations": [{"id": "alta", "name": "Alta"}],
        "municipalities": [{"id": "alta", "name": "Alta"}],
        "sites": [{"id": "s", "name": "S", "location": "alta", "municipality": "alta"}],
        "snmp_profiles": [{"id": "p", "version": "2c", "community": {"env": profile_env}}],
        "devices": [{"id": d, "name": d, "class": "switch", "site": "s", "address": a,
                     "snmp_profile": "p"} for d, a in devices.items()]}), encoding="utf-8")
    return load_config(path)


async def test_what_stays_starts_and_ends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    monkeypatch.setenv("DV_COMMUNITY", "public")
    poller = SnmpPoller(_config(tmp_path, {"a": "127.0.0.1", "b": "127.0.0.2"}), "alta",
                        _Discard(), load_modules())
    kept = poller.sessions["a"]
    change = poller.reload(_config(tmp_path, {"a": "127.0.0.1", "b": "127.0.0.9",
                                              "c": "127.0.0.3"}))
    # b moved (a new address is a new device to poll), c is new, a is untouched
    assert {"devices": 3, "ended": 1, "started": 2} == change
    assert kept is poller.sessions["a"]
    assert ["a", "b", "c"] == sorted(d.id for d in poller.devices)
    assert {"a": [], "b": [], "c": []} == {d: poller.children.get(d, []) for d in "abc"}


async def test_a_secret_that_cannot_be_read_refuses_the_reload(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DV_COMMUNITY", "public")
    running = _config(tmp_path, {"a": "127.0.0.1"})
    poller = SnmpPoller(running, "alta", _Discard(), load_modules())
    monkeypatch.delenv("DV_NEW_COMMUNITY", raising=False)
    with pytest.raises(KeyError):
        poller.reload(_config(tmp_path, {"a": "127.0.0.1", "b": "127.0.0.2"},
                              profile_env="DV_NEW_COMMUNITY"))
    assert poller.config is running
    assert ["a"] == [d.id for d in poller.devices]
