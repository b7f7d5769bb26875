"""One poll by the real poller of a recording served by snmpsim, for the recording tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest
import yaml

from collectors.common.publisher import Emitter
from collectors.snmp.modules import load_modules
from collectors.snmp.poller import SnmpPoller
from monitor.config import load_config
from monitor.events import Sample
from tests.servers import snmpsim, snmpsim_binary

__all__ = ["OWN_RECORDINGS", "SHARED_RECORDINGS", "own_recordings", "poll_recording",
           "shared_recordings"]

# the recordings of real devices beside the project (shared/testdata/snmprec)
SHARED_RECORDINGS: Final = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "snmprec"


# recordings of this project's own, written from the MIBs (tests/data/snmprec)
OWN_RECORDINGS: Final = Path(__file__).resolve().parent / "data" / "snmprec"


def shared_recordings(factory: pytest.TempPathFactory) -> Iterator[int]:
    """snmpsim serving the shared recordings (one community per recording) for a
    module fixture; the module is skipped where they or snmpsim are not there."""
    yield from _served(SHARED_RECORDINGS, factory, "apc-8641")


def own_recordings(factory: pytest.TempPathFactory) -> Iterator[int]:
    """snmpsim serving tests/data/snmprec, for a module fixture."""
    yield from _served(OWN_RECORDINGS, factory, "ups-unknowns")


def _served(data: Path, factory: pytest.TempPathFactory, probe: str) -> Iterator[int]:
    if not data.is_dir():
        pytest.skip(f"no recordings at {data}")
    if snmpsim_binary() is None:
        pytest.skip("snmpsim is not installed (the test extras install it)")
    with snmpsim(data, factory.mktemp("snmpsim-cache"), probe) as port:
        yield port


async def poll_recording(port: int, name: str, device_class: str, tmp_path: Path,
                         monkeypatch: pytest.MonkeyPatch, own_modules: str | None = None
                         ) -> list[Sample]:
    """The samples of one poll of the recording ``name`` (snmpsim's community) as a
    device of ``device_class``; ``own_modules``: a site's module directory."""
    monkeypatch.setenv("DV_REC_COMMUNITY", name)
    path = tmp_path / "estate.yaml"
    path.write_text(yaml.safe_dump({
        "locations": [{"id": "alta", "name": "Alta"}],
        "municipalities": [{"id": "alta", "name": "Alta"}],
        "sites": [{"id": "dc", "name": "DC", "location": "alta", "municipality": "alta"}],
        "snmp_profiles": [{"id": "rec", "version": "2c", "port": port, "timeout": 10,
                           "retries": 1, "community": {"env": "DV_REC_COMMUNITY"}}],
        "devices": [{"id": "dev", "name": name, "class": device_class, "site": "dc",
                     "address": "127.0.0.1", "snmp_profile": "rec"}],
        **({"poller": {"modules": [own_modules]}} if own_modules else {}),
    }), encoding="utf-8")
    config = load_config(path)

    class Discard(Emitter):
        async def emit(self, *args: Any, **kwargs: Any) -> int:
            return 0

    poller = SnmpPoller(config, "alta", Discard(), load_modules(extra=config.module_dirs()))
    return list(await poller.poll(config.devices["dev"]))
