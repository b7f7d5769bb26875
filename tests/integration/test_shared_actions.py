"""Operator actions shared between the engines (driftsvakt/v1/_ops/): what one engine
stores is handed on once; what the peer did is applied here as if taken here, with
its actor and an audit entry, and never handed on again. The rules, store and
notifications are real (one engine in this process); the peer is its payloads."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import trustme

from monitor.rules.service import OperatorAction
from monitor.rules.suppress import Maintenance, Silence
from monitor.sla.notes import NoteUpdate, StatusNote, notes_of
from monitor.sla.report import Correction
from tests.estate import DEVICES
from tests.integration.test_notify import Rig, ca  # noqa: F401 - the fixture


async def _sharing_rig(tmp_path: Path, authority: trustme.CA
                       ) -> tuple[Rig, list[tuple[str, OperatorAction]]]:
    """A started engine rig, and what it hands its peer, as it hands it."""
    rig = Rig(tmp_path, {}, authority)
    await rig.start()
    shared: list[tuple[str, OperatorAction]] = []
    rig.rules.replicate = lambda key, body: shared.append(
        (key, msgspec.json.decode(body, type=OperatorAction)))
    return rig, shared


def _at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


async def test_peer_actions_apply_once_with_their_actor_and_are_not_shared_again(
        tmp_path: Path, ca: trustme.CA) -> None:  # noqa: F811
    rig, shared = await _sharing_rig(tmp_path, ca)
    try:
        await rig.down(DEVICES[0])
        (alert,) = rig.rules.current()
        now = time.time()
        peer = [
            OperatorAction(kind="acknowledge", key=alert.fingerprint, actor="per", at=now,
                           comment="ser på det"),
            OperatorAction(kind="silence", key="s-peer1", actor="per", at=now,
                           silence=Silence(matchers=[f'device="{DEVICES[1]}"'],
                                           starts_at=_at(now - 60), ends_at=_at(now + 600),
                                           comment="bytte", id="s-peer1")),
            OperatorAction(kind="maintenance", key="m-peer1", actor="per", at=now,
                           maintenance=Maintenance(name="Oppgradering", starts_at=_at(now),
                                                   ends_at=_at(now + 3600),
                                                   devices=[DEVICES[2]], id="m-peer1")),
        ]
        for action in peer + peer:  # the same twice: the second changes nothing
            rig.rules.apply_peer(msgspec.json.encode(action))
        await rig.rules.tick(time.time())
        (acked,) = rig.rules.current()
        assert ("per", "ser på det") == (acked.ack_by, acked.ack_comment)
        assert "s-peer1" in rig.rules.engine.silences
        assert "m-peer1" in rig.rules.engine.maintenance
        audit = [(actor, action) for _, actor, action, _, _ in await rig.store.audit_log()]
        assert sorted(audit) == sorted([("per", "acknowledge"), ("per", "create_silence"),
                                        ("per", "create_maintenance")])
        assert [] == shared  # not handed on again
        # the peer ends them; then one of ours is shared, under its own entry
        for action in (OperatorAction(kind="expire_silence", key="s-peer1", actor="per",
                                      at=now + 1),
                       OperatorAction(kind="delete_maintenance", key="m-peer1", actor="per",
                                      at=now + 1)):
            rig.rules.apply_peer(msgspec.json.encode(action))
        await rig.rules.tick(time.time())
        assert {} == rig.rules.engine.silences
        assert {} == rig.rules.engine.maintenance
        await rig.rules.expire_silence("no-such", "kari")  # nothing: nothing shared
        await rig.rules.add_silence(Silence(matchers=['device="x"'], starts_at=_at(now),
                                            ends_at=_at(now + 60), comment="c", id="s-ours"),
                                    "kari")
        assert [("silence/s-ours", "silence", "kari")] == [
            (key, a.kind, a.actor) for key, a in shared]
        rig.rules.apply_peer(b'{"kind": "format_disk"}')  # refused, logged, nothing else
        await rig.rules.tick(time.time())
    finally:
        await rig.stop()


async def test_sla_corrections_made_at_either_location_hold_at_both(
        tmp_path: Path, ca: trustme.CA) -> None:  # noqa: F811
    """A correction the peer made is stored once with its actor and audit entry; one
    the peer deleted is deleted here; one deleted here never comes back from an old
    entry; ours are shared under one entry per correction."""
    rig, shared = await _sharing_rig(tmp_path, ca)
    now = time.time()

    def correction(cid: str) -> Correction:
        return Correction(service="epost", starts_at=_at(now - 7200), ends_at=_at(now - 3600),
                          classify_as="excluded", comment="strømbrudd i kommunen", id=cid,
                          created_by="per", created_at=_at(now))

    async def held() -> list[str]:
        return sorted(msgspec.json.decode(b, type=Correction).id
                      for b in await rig.store.corrections())

    try:
        made = OperatorAction(kind="correction", key="c-peer1", actor="per", at=now,
                              correction=correction("c-peer1"))
        for _ in range(2):  # the same twice: stored once
            rig.rules.apply_peer(msgspec.json.encode(made))
        await rig.rules.tick(time.time())
        assert ["c-peer1"] == await held()
        audit = [(actor, action, target) for _, actor, action, target, _ in
                 await rig.store.audit_log()]
        assert [("per", "create_sla_correction", "sla_correction/c-peer1")] == audit
        rig.rules.apply_peer(msgspec.json.encode(OperatorAction(
            kind="delete_correction", key="c-peer1", actor="per", at=now + 1)))
        await rig.rules.tick(time.time())
        assert [] == await held()
        rig.rules.apply_peer(msgspec.json.encode(made))  # an old entry: not brought back
        await rig.rules.tick(time.time())
        assert [] == await held()
        assert [] == shared
        await rig.rules.add_correction(correction("c-ours"), "kari")
        await rig.rules.delete_correction("c-ours", "kari")
        assert [("correction/c-ours", "correction"), ("correction/c-ours",
                                                      "delete_correction")] == [
            (key, a.kind) for key, a in shared]
    finally:
        await rig.stop()


async def test_status_notes_take_the_later_version_at_both_locations(
        tmp_path: Path, ca: trustme.CA) -> None:  # noqa: F811
    """A note the peer posted is stored with its actor; the peer's later version (an
    update) replaces it, an older one arriving after does not; one deleted at either
    location stays deleted; ours are shared under one entry per note."""
    rig, shared = await _sharing_rig(tmp_path, ca)
    now = time.time()

    def version(changed: float, updates: list[str]) -> OperatorAction:
        note = StatusNote(municipality="loppa", text="Treg e-post", id="n-peer1",
                          created_by="per", created_at=_at(now), changed=changed,
                          updates=[NoteUpdate(at=_at(changed), text=t, by="per")
                                   for t in updates])
        return OperatorAction(kind="note", key=note.id, actor="per", at=changed, note=note)

    async def held() -> list[list[str]]:
        return [[u.text for u in n.updates] for n in await notes_of(rig.store, "loppa")]

    try:
        first, second = version(now, []), version(now + 5, ["Løst"])
        for action in (first, first, second, first):  # repeated, then an older one late
            rig.rules.apply_peer(msgspec.json.encode(action))
            await rig.rules.tick(time.time())
        assert [["Løst"]] == await held()
        audit = [(actor, action) for _, actor, action, target, _ in
                 await rig.store.audit_log() if target == "status_note/n-peer1"]
        assert sorted(audit) == [("per", "create_status_note"), ("per", "update_status_note")]
        rig.rules.apply_peer(msgspec.json.encode(OperatorAction(
            kind="delete_note", key="n-peer1", actor="per", at=now + 6)))
        await rig.rules.tick(time.time())
        rig.rules.apply_peer(msgspec.json.encode(version(now + 9, ["igjen"])))
        await rig.rules.tick(time.time())
        assert [] == await held()
        assert [] == shared
        ours = version(now, []).note
        assert ours is not None
        ours.id = "n-ours"
        await rig.rules.put_note(ours, "ola", created=True)
        await rig.rules.delete_note("n-ours", "kari")
        assert [("note/n-ours", "note"), ("note/n-ours", "delete_note")] == [
            (key, a.kind) for key, a in shared]
    finally:
        await rig.stop()
