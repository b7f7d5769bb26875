"""The collector outbox on a real SQLite file: numbering, bounds, acknowledgement."""

from __future__ import annotations

import asyncio
from pathlib import Path

from collectors.common.outbox import Outbox


async def test_seqs_are_durable_ordered_and_never_reused(tmp_path: Path) -> None:
    """Concurrent puts get consecutive seqs; after a reopen numbering continues even
    when every row was acknowledged and deleted."""
    path = tmp_path / "outbox.db"
    async with await Outbox.open(path) as outbox:
        seqs = await asyncio.gather(*(outbox.put("t", b'{"k":%d}' % i) for i in range(10)))
        assert list(range(1, 11)) == seqs
        assert 10 == outbox.rows
        assert 6 == await outbox.acknowledge(6)
        assert (4, 7) == (outbox.rows, outbox.first_seq)
    async with await Outbox.open(path) as outbox:
        assert (4, 7, 10) == (outbox.rows, outbox.first_seq, outbox.last_seq)
        assert [7, 8, 9, 10] == [r.seq for r in await outbox.read(1, 100)]
        assert b'{"k":6}' == (await outbox.read(7, 1))[0].body
        await outbox.acknowledge(10)
    async with await Outbox.open(path) as outbox:
        assert (0, 11) == (outbox.rows, outbox.first_seq)
        assert 11 == await outbox.put("t", b"{}")


async def test_full_outbox_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    """Bounded by rows: the oldest go first, counted; what is left is the newest."""
    async with await Outbox.open(tmp_path / "o.db", max_rows=5) as outbox:
        for i in range(8):
            await outbox.put("t", b"{}")
            assert min(i + 1, 5) == outbox.rows
        assert (3, 4, 8) == (outbox.dropped, outbox.first_seq, outbox.last_seq)
        assert [4, 5, 6, 7, 8] == [r.seq for r in await outbox.read(1, 100)]


async def test_old_rows_expire_by_age(tmp_path: Path) -> None:
    """Bounded by age: rows older than max_age are dropped and counted."""
    async with await Outbox.open(tmp_path / "o.db", max_age=3600) as outbox:
        for _ in range(3):
            await outbox.put("t", b"{}")
        created = (await outbox.read(1, 1))[0].created
        assert 0 == await outbox.expire(now=created + 3599)
        assert 3 == await outbox.expire(now=created + 3601)
        assert (0, 3, 4) == (outbox.rows, outbox.dropped, outbox.first_seq)


async def test_acknowledging_below_the_floor_is_a_no_op(tmp_path: Path) -> None:
    """A late or repeated acknowledgement deletes nothing and moves nothing back."""
    async with await Outbox.open(tmp_path / "o.db") as outbox:
        for _ in range(4):
            await outbox.put("t", b"{}")
        assert 3 == await outbox.acknowledge(3)
        assert 0 == await outbox.acknowledge(2)
        assert (1, 4) == (outbox.rows, outbox.first_seq)


async def test_a_cancelled_acknowledgement_keeps_the_count_true(tmp_path: Path) -> None:
    """The publisher's ack task is cancelled when its connection drops, possibly while the
    DELETE runs: the rows it deleted must still be counted, or ``drained`` never returns."""
    async with await Outbox.open(tmp_path / "o.db") as outbox:
        await asyncio.gather(*(outbox.put("t", b"{}") for _ in range(2000)))
        for step in range(5):
            ack = asyncio.create_task(outbox.acknowledge(400 * (step + 1)))
            for _ in range(step + 1):
                await asyncio.sleep(0)  # let the DELETE reach the database thread
            ack.cancel()
            await asyncio.gather(ack, return_exceptions=True)
            async with outbox._lock:
                pass  # the shielded DELETE finishes and counts
            async with outbox._db.execute("SELECT COUNT(*) FROM outbox") as cur:
                row = await cur.fetchone()
            assert row is not None
            assert row[0] == outbox.rows
        await outbox.acknowledge(2000)
        await asyncio.wait_for(outbox.drained(), 5)


async def test_a_full_disk_loses_only_what_could_not_be_written(tmp_path: Path) -> None:
    """On a real full tmpfs: puts fail with SQLite's own reason (not a ROLLBACK error),
    each loss counted; counters and rows stay exactly what was committed; writing
    resumes by itself when space returns, numbering straight on."""
    from collectors.common.outbox import OutboxWriteFailed
    from tests.fulldisk import fill, small_tmpfs

    with small_tmpfs(tmp_path / "disk") as disk:
        async with await Outbox.open(disk / "outbox.db") as outbox:
            body = b'{"pad":"%s"}' % (b"x" * 1000)
            stored = [await outbox.put("t", body) for _ in range(20)]
            assert list(range(1, 21)) == stored
            filler = fill(disk)
            failed: list[OutboxWriteFailed] = []
            for _ in range(200):  # WAL frames are appended: the first new page fails
                try:
                    stored.append(await outbox.put("t", body))
                except OutboxWriteFailed as exc:
                    failed.append(exc)
                    if len(failed) == 3:
                        break
            assert 3 == len(failed)
            assert "database or disk is full" in str(failed[0].cause)
            kept = len(stored)
            assert (kept, 1, kept, 3, 3) == (outbox.rows, outbox.first_seq, outbox.last_seq,
                                             outbox.dropped, outbox.write_failures)
            assert stored == [r.seq for r in await outbox.read(1, 1000)]
            filler.unlink()
            assert kept + 1 == await outbox.put("t", body)
            assert (kept + 1, kept + 1, 3) == (outbox.rows, outbox.last_seq, outbox.dropped)
        async with await Outbox.open(disk / "outbox.db") as outbox:
            assert (kept + 1, 1, kept + 1) == (outbox.rows, outbox.first_seq, outbox.last_seq)
