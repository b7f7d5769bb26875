"""The engine's store and a collector's outbox hold live acknowledgement links and the
estate's events: only their owner may read them, whatever the umask, their -wal and
-shm files included, and a store left readable by an older version is tightened."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from collectors.common.outbox import Outbox
from monitor.store.db import Store


def _modes(path: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode)
            for p in sorted(path.parent.glob(path.name + "*"))}


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


async def test_store_and_outbox_files_are_the_owners_only(tmp_path: Path,
                                                          open_umask: None) -> None:
    store_path = tmp_path / "engine-alta.db"
    async with await Store.open(store_path) as store:
        await store.audit("kari", "test", "x", b"{}")
        assert _modes(store_path) == {"engine-alta.db": 0o600, "engine-alta.db-shm": 0o600,
                                      "engine-alta.db-wal": 0o600}
    box_path = tmp_path / "outbox" / "snmp-alta.db"
    outbox = await Outbox.open(box_path)
    try:
        await outbox.put("driftsvakt/v1/alta/alta/sw1/state", b"{}")
        assert set(_modes(box_path).values()) == {0o600}
        assert len(_modes(box_path)) == 3
    finally:
        await outbox.close()


async def test_a_readable_store_is_tightened(tmp_path: Path, open_umask: None) -> None:
    path = tmp_path / "old.db"
    path.touch(mode=0o644)
    path.chmod(0o644)
    async with await Store.open(path):
        pass
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
