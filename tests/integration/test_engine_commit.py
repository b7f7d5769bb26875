"""A batch the engine has applied reaches its store even when the engine's session is
torn down mid-commit (the ack task failing on a broker disconnect cancels it).

Memory is ahead of the store otherwise: the events are never applied again (ingest has
their seqs), so their SLA observations and alert changes would be missing after a
restart. The engine here is real, on a real mosquitto; the batch is handed to it the
way its receive loop does, so the cancellation can land inside the transaction.
"""

from __future__ import annotations

import asyncio
import json
import time

import aiomqtt
import pytest

from monitor.app import EngineApp
from monitor.config import Config
from tests.integration.test_sla import engine  # noqa: F401 - the fixture
from tests.servers import Mosquitto

pytestmark = pytest.mark.integration


def _batch(src: str, count: int) -> list[aiomqtt.Message]:
    now = time.time()
    return [aiomqtt.Message(
        f"driftsvakt/v1/alta/loppa/loppa-sw1/state/{src}",
        json.dumps({"v": 1, "ts": now, "src": src, "seq": seq, "floor": 1,
                    "device": "loppa-sw1", "state": "up" if seq % 2 else "down"}).encode(),
        1, False, seq, None) for seq in range(1, count + 1)]


async def test_a_batch_cancelled_mid_commit_is_still_stored(
        engine: tuple[EngineApp, Config, Mosquitto]) -> None:  # noqa: F811
    app, _, _ = engine
    committed = 0
    for steps in range(1, 30):
        src = f"cancel-{steps}"
        apply = asyncio.create_task(app.engine._apply(_batch(src, 200)))
        for _ in range(steps):
            await asyncio.sleep(0)
        inside = app.store._tx.locked()
        apply.cancel()
        await asyncio.gather(apply, return_exceptions=True)
        await app.store.settled()  # a commit still running finishes first, and did not fail
        progress = await app.store.load_progress()
        assert 200 == progress.get(src), (steps, inside)
        committed += inside
    assert committed > 0  # the cancellation did land inside the transaction
