"""Who is on call at exact instants: handovers, both DST switches, overrides, holidays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import icalendar
import pytest

from monitor.notify.oncall import OnCall
from monitor.notify.settings import Layer, Override, Person, ScheduleSettings
from monitor.officehours import Schedule

WEEKLY = Layer(members=["ola", "kari", "per"], rotation="weekly", handover="mon 08:00",
               start="2026-01-05")
NIGHTS = Layer(members=["anne", "bjorn"], rotation="daily", handover="16:00",
               start="2026-01-01", only="after_hours")
CALENDAR = Schedule.from_text({"mon-fri": ["07:00-16:00"]})  # with Norwegian holidays


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(("at", "who"), [
    (utc(2026, 1, 5, 6, 59), None),            # before the first handover (08:00 CET)
    (utc(2026, 1, 5, 7, 0), "ola"),
    (utc(2026, 1, 12, 6, 59), "ola"),
    (utc(2026, 1, 12, 7, 0), "kari"),
    (utc(2026, 3, 30, 5, 59), "per"),           # the Monday after spring forward:
    (utc(2026, 3, 30, 6, 0), "ola"),            # 08:00 CEST is 06:00 UTC
    (utc(2026, 10, 26, 6, 59), "per"),          # the Monday after fall back:
    (utc(2026, 10, 26, 7, 0), "ola"),           # 08:00 CET is 07:00 UTC
    (utc(2026, 2, 17, 12, 0), "per"),           # an override in ola's week
    (utc(2026, 2, 18, 7, 0), "ola"),            # the override has ended
])
def test_weekly_rotation_with_override(at: datetime, who: str | None) -> None:
    oncall = OnCall(ScheduleSettings(
        id="beredskap", layers=[WEEKLY],
        overrides=[Override("per", "2026-02-17T08:00:00+01:00", "2026-02-18T08:00:00+01:00")]))
    assert who == oncall.who(at)


@pytest.mark.parametrize(("at", "who"), [
    (utc(2026, 5, 13, 10, 0), "ola"),           # Wednesday 12:00 CEST: office hours, layer 1
    (utc(2026, 5, 13, 15, 0), "anne"),          # Wednesday 17:00: after hours, the night layer
    (utc(2026, 5, 14, 10, 0), "anne"),          # Ascension Day 12:00: a holiday, still anne's
    (utc(2026, 5, 14, 14, 0), "bjorn"),         # ... until 16:00
    (utc(2026, 5, 15, 4, 30), "bjorn"),         # Friday 06:30: before office hours
    (utc(2026, 5, 15, 5, 0), "ola"),            # Friday 07:00: office hours again
])
def test_layers_follow_office_hours_and_holidays(at: datetime, who: str) -> None:
    oncall = OnCall(ScheduleSettings(id="b", layers=[WEEKLY, NIGHTS]), CALENDAR)
    assert who == oncall.who(at)


def test_now_next_and_shifts_across_dst() -> None:
    oncall = OnCall(ScheduleSettings(id="beredskap", layers=[WEEKLY]))
    assert (utc(2026, 3, 30, 6, 0), "ola") == oncall.next_change(utc(2026, 3, 30, 5, 0))
    shifts = oncall.shifts(utc(2026, 3, 23, 7, 0), utc(2026, 4, 13, 6, 0))
    assert [(utc(2026, 3, 23, 7, 0), utc(2026, 3, 30, 6, 0), "per"),  # 167 h: one lost
            (utc(2026, 3, 30, 6, 0), utc(2026, 4, 6, 6, 0), "ola"),
            (utc(2026, 4, 6, 6, 0), utc(2026, 4, 13, 6, 0), "kari")] == shifts
    assert timedelta(hours=167) == shifts[0][1] - shifts[0][0]


def test_ical_export() -> None:
    oncall = OnCall(ScheduleSettings(id="beredskap", layers=[WEEKLY]))
    text = oncall.ical(utc(2026, 1, 5, 7, 0), utc(2026, 1, 26, 7, 0),
                       {"ola": Person("ola", "Ola Nordmann")})
    cal = icalendar.Calendar.from_ical(text)
    events = list(cal.walk("VEVENT"))
    assert ["Vakt: Ola Nordmann", "Vakt: kari", "Vakt: per"] == [str(e["summary"])
                                                                for e in events]
    assert datetime(2026, 1, 12, 8, 0) == events[1].decoded("dtstart").replace(tzinfo=None)
    assert "Europe/Oslo" == str(events[1]["dtstart"].params["TZID"])


def test_ical_exports_are_stable_and_carry_their_timezone() -> None:
    """Two exports, made a day and a half apart, as a subscribed calendar fetches
    them: the shift under way keeps its real start (Monday 08:00, not the moment of
    the export), every shift keeps its UID, and the file carries Europe/Oslo's
    VTIMEZONE (standard and daylight time), so a client imports them without
    duplicates."""
    oncall = OnCall(ScheduleSettings(id="beredskap", layers=[WEEKLY]))
    people = {"ola": Person("ola", "Ola Nordmann")}
    first = icalendar.Calendar.from_ical(oncall.ical(
        utc(2026, 1, 14, 9, 17), utc(2026, 2, 4, 9, 17), people))
    second = icalendar.Calendar.from_ical(oncall.ical(
        utc(2026, 1, 15, 21, 3), utc(2026, 2, 5, 21, 3), people))

    def events(cal: icalendar.Calendar) -> dict[str, tuple[datetime, datetime]]:
        return {str(e["uid"]): (e.decoded("dtstart"), e.decoded("dtend"))
                for e in cal.walk("VEVENT")}

    a, b = events(first), events(second)
    # the shift under way at both exports: handed over Monday 12 January, 08:00 local
    current = [uid for uid, (start, end) in a.items()
               if start <= datetime(2026, 1, 14, 9, 17, tzinfo=UTC) < end]
    assert len(current) == 1
    assert a[current[0]][0] == datetime(2026, 1, 12, 8, 0, tzinfo=ZoneInfo("Europe/Oslo"))
    assert b[current[0]] == a[current[0]]
    both = a.keys() & b.keys()
    assert {uid: a[uid] for uid in both} == {uid: b[uid] for uid in both}
    assert len(a) == len(b) == 4  # the current week and the three after it
    (zone,) = first.walk("VTIMEZONE")
    assert str(zone["tzid"]) == "Europe/Oslo"
    assert {c.name for c in zone.subcomponents} == {"STANDARD", "DAYLIGHT"}
