"""Office hours at exact datetimes: holidays, DST switches, midnight, and silence."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.officehours import ALWAYS, Schedule, classify_silence, parse_interval

OSLO = ZoneInfo("Europe/Oslo")
OFFICE = Schedule.from_text({"mon-fri": ["07:00-16:00"]},
                            closed_days=frozenset({date(2026, 12, 24)}))


def oslo(*args: int) -> datetime:
    return datetime(*args, tzinfo=OSLO)  # type: ignore[arg-type,misc]


@pytest.mark.parametrize(("at", "open_"), [
    (oslo(2026, 3, 31, 10, 0), True),     # an ordinary Tuesday
    (oslo(2026, 3, 31, 6, 59), False),
    (oslo(2026, 3, 31, 16, 0), False),    # end is exclusive
    (oslo(2026, 4, 2, 10, 0), False),     # Maundy Thursday (skjærtorsdag)
    (oslo(2026, 4, 3, 10, 0), False),     # Good Friday
    (oslo(2026, 4, 6, 10, 0), False),     # Easter Monday
    (oslo(2026, 4, 7, 10, 0), True),
    (oslo(2026, 5, 1, 10, 0), False),     # 1 May
    (oslo(2026, 5, 14, 10, 0), False),    # Ascension Day
    (oslo(2026, 5, 15, 10, 0), True),
    (oslo(2027, 5, 17, 10, 0), False),    # 17 May on a Monday
    (oslo(2026, 5, 25, 10, 0), False),    # Whit Monday
    (oslo(2026, 12, 24, 10, 0), False),   # an extra closed day
    (oslo(2026, 12, 25, 10, 0), False),   # Christmas Day
    (oslo(2026, 12, 28, 10, 0), True),
    (oslo(2026, 3, 28, 10, 0), False),    # a Saturday
    (datetime(2026, 3, 30, 5, 30, tzinfo=UTC), True),   # 07:30 CEST, the Monday after DST
    (datetime(2026, 3, 27, 5, 30, tzinfo=UTC), False),  # 06:30 CET, the Friday before
    (datetime(2026, 10, 26, 6, 30, tzinfo=UTC), True),  # 07:30 CET, after the autumn switch
])
def test_is_open_at_exact_datetimes(at: datetime, open_: bool) -> None:
    """Office hours follow Oslo wall-clock time and close on every Norwegian holiday."""
    assert open_ == OFFICE.is_open(at)


def test_dst_days_have_23_and_25_hours() -> None:
    """A 24/7 schedule counts the spring DST day as 23 h and the autumn one as 25 h."""
    assert 23 * 3600 == ALWAYS.open_seconds(oslo(2026, 3, 29), oslo(2026, 3, 30))
    assert 25 * 3600 == ALWAYS.open_seconds(oslo(2026, 10, 25), oslo(2026, 10, 26))
    assert 24 * 3600 == ALWAYS.open_seconds(oslo(2026, 10, 26), oslo(2026, 10, 27))


def test_office_seconds_in_easter_week() -> None:
    """Mon 30 Mar to Mon 6 Apr 2026: Mon-Wed open (3 x 9 h); Thu-Mon holidays."""
    assert 3 * 9 * 3600 == OFFICE.open_seconds(oslo(2026, 3, 30), oslo(2026, 4, 7))


def test_interval_past_midnight_belongs_to_its_first_day() -> None:
    """22:00-06:00 on Fridays: open Saturday 03:00, not Saturday night."""
    night = Schedule.from_text({"fri": ["22:00-06:00"]}, public_holidays=False)
    assert night.is_open(oslo(2026, 3, 27, 23, 0))
    assert night.is_open(oslo(2026, 3, 28, 3, 0))
    assert not night.is_open(oslo(2026, 3, 28, 23, 0))
    assert 8 * 3600 == night.open_seconds(oslo(2026, 3, 27), oslo(2026, 3, 30))


@pytest.mark.parametrize("bad", ["7-16", "07:00-07:00", "25:00-26:00", "07:00-24:30"])
def test_bad_intervals_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match=r"HH:MM|not a valid|empty"):
        parse_interval(bad)


GRACE = timedelta(minutes=30)
EVERY = timedelta(minutes=3)


@pytest.mark.parametrize(("cls", "last_seen", "now", "verdict"), [
    ("pc", oslo(2026, 3, 31, 10, 0), oslo(2026, 3, 31, 10, 2), "up"),
    ("pc", oslo(2026, 3, 31, 16, 5), oslo(2026, 3, 31, 22, 0), "off"),   # evening
    ("pc", oslo(2026, 4, 1, 15, 0), oslo(2026, 4, 2, 10, 0), "off"),     # Maundy Thursday
    ("pc", oslo(2026, 3, 30, 15, 0), oslo(2026, 3, 31, 7, 20), "off"),   # in the grace
    ("pc", oslo(2026, 3, 30, 15, 0), oslo(2026, 3, 31, 7, 30), "down"),  # grace is over
    ("pc", oslo(2026, 3, 31, 9, 0), oslo(2026, 3, 31, 9, 29), "off"),    # quiet for 29 min
    ("pc", oslo(2026, 3, 31, 9, 0), oslo(2026, 3, 31, 9, 30), "down"),
    ("server", oslo(2026, 4, 1, 15, 0), oslo(2026, 4, 2, 10, 0), "down"),  # 24/7
    ("switch", None, oslo(2026, 3, 28, 3, 0), "down"),
    ("pc", None, oslo(2026, 3, 28, 3, 0), "off"),
])
def test_classify_silence(cls: str, last_seen: datetime | None, now: datetime,
                          verdict: str) -> None:
    """A silent PC is off outside office hours and down only after the grace period."""
    assert verdict == classify_silence(cls, last_seen, now, expected_every=EVERY,
                                       hours=OFFICE, grace=GRACE)


@given(st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2030, 12, 31),
                    timezones=st.just(UTC)),
       st.integers(min_value=1, max_value=14 * 24 * 60))
def test_open_seconds_agree_with_is_open(start: datetime, minutes: int) -> None:
    """Sampling is_open each minute agrees with open_seconds to within a minute per
    boundary crossed (the schedule's edges are whole minutes)."""
    start = start.replace(second=0, microsecond=0)
    end = start + timedelta(minutes=minutes)
    sampled = sum(OFFICE.is_open(start + timedelta(minutes=m)) for m in range(minutes)) * 60
    exact = OFFICE.open_seconds(start, end)
    assert sampled == exact
