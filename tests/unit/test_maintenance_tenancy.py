"""A maintenance window as one municipality's readers may see it: their part only,
and its name and comment only when the window is theirs alone."""

from __future__ import annotations

from datetime import UTC, datetime

from monitor.rules.suppress import SHARED_WINDOW, Maintenance

DEVICES = {"alta-core": "alta", "hf-dc01": "hammerfest", "hf-sw1": "hammerfest"}
SITES = {"alta-radhus": "alta", "hf-radhus": "hammerfest"}


def window(**fields: object) -> Maintenance:
    return Maintenance(name="Bytte av kjerne i Hammerfest", comment="Teknikeren kommer kl 22",
                       starts_at=datetime(2026, 12, 3, 21, tzinfo=UTC),
                       ends_at=datetime(2026, 12, 3, 23, tzinfo=UTC), id="m-1",
                       created_by="kari", **fields)  # type: ignore[arg-type]


def test_a_shared_window_shows_each_its_own_part_and_no_more() -> None:
    shared = window(devices=["alta-core", "hf-dc01"], sites=["hf-radhus"])
    alta = shared.part_of("alta", DEVICES, SITES)
    assert alta is not None
    assert (alta.devices, alta.sites, alta.name, alta.comment, alta.created_by) == (
        ["alta-core"], [], SHARED_WINDOW, "", "")
    hammerfest = shared.part_of("hammerfest", DEVICES, SITES)
    assert hammerfest is not None
    assert (hammerfest.devices, hammerfest.sites, hammerfest.name) == (
        ["hf-dc01"], ["hf-radhus"], SHARED_WINDOW)


def test_a_window_of_one_municipality_is_shown_whole_to_it_and_not_at_all_to_others(
) -> None:
    own = window(devices=["hf-dc01", "hf-sw1"], municipalities=["hammerfest"])
    seen = own.part_of("hammerfest", DEVICES, SITES)
    assert seen is not None
    assert (seen.name, seen.comment, seen.devices) == (
        "Bytte av kjerne i Hammerfest", "Teknikeren kommer kl 22", ["hf-dc01", "hf-sw1"])
    assert own.part_of("alta", DEVICES, SITES) is None


def test_a_window_by_tag_is_never_shown_by_name() -> None:
    tagged = window(tags=["core"], municipalities=["alta"])
    seen = tagged.part_of("alta", DEVICES, SITES)
    assert seen is not None
    assert (seen.name, seen.tags) == (SHARED_WINDOW, [])
