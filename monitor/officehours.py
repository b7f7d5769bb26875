"""Office hours and service hours: when a municipality's PCs are expected to be on.

A :class:`Schedule` is a weekly pattern of wall-clock intervals in one time zone
(Europe/Oslo), minus Norwegian public holidays (from the ``holidays`` package) and
extra closed days. Intervals may run past midnight ("22:00-06:00"): the part after
midnight belongs to the day it started on, so it is closed when that day is.

Everything here is pure: times in, answers out. ``classify_silence`` is the rule the
rules and SLA code use for a device that has gone quiet: a PC outside office hours
is ``off``, not down; within them it is down only after a grace period; servers and
network gear keep no office hours.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Final, Literal, Protocol
from zoneinfo import ZoneInfo

__all__ = [
    "ALWAYS",
    "OSLO",
    "OpenPeriods",
    "Schedule",
    "SilenceVerdict",
    "classify_silence",
    "norwegian_holidays",
    "parse_interval",
]

OSLO: Final = "Europe/Oslo"
WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_INTERVAL_RE: Final = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")
MINUTES_PER_DAY: Final = 1440


def parse_interval(text: str) -> tuple[int, int]:
    """'07:30-16:00' -> (450, 960) minutes; '22:00-06:00' -> (1320, 1800); '00:00-24:00'
    is the whole day. Raises ValueError with the reason."""
    match = _INTERVAL_RE.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not HH:MM-HH:MM")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2 != 0):
        raise ValueError(f"{text!r} is not a valid time range")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if end == start:
        raise ValueError(f"{text!r} is empty")
    if end < start:
        end += MINUTES_PER_DAY  # runs past midnight
    return start, end


@lru_cache(maxsize=64)
def norwegian_holidays(year: int) -> frozenset[date]:
    """Norwegian public holidays of ``year`` (Sundays are closed by the weekly pattern)."""
    import holidays as holidays_lib  # imported on first use: the host agent never needs it

    return frozenset(holidays_lib.country_holidays("NO", years=year).keys())


@dataclass(frozen=True, slots=True)
class Schedule:
    """Weekly open intervals (minutes after local midnight) per weekday, 0 = Monday."""

    weekly: tuple[tuple[tuple[int, int], ...], ...]
    timezone: str = OSLO
    public_holidays: bool = True
    closed_days: frozenset[date] = field(default_factory=frozenset)

    @classmethod
    def from_text(cls, weekly: dict[str, list[str]], *, timezone: str = OSLO,
                  public_holidays: bool = True, closed_days: frozenset[date] = frozenset()
                  ) -> Schedule:
        """Build from ``{"mon": ["07:00-16:00"], ...}``; "mon-fri" names a range of days."""
        days: list[list[tuple[int, int]]] = [[] for _ in WEEKDAYS]
        for key, intervals in weekly.items():
            for day in _expand_days(key):
                days[day].extend(parse_interval(i) for i in intervals)
        ZoneInfo(timezone)  # fail early on an unknown zone
        return cls(tuple(tuple(sorted(d)) for d in days), timezone, public_holidays,
                   closed_days)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def is_closed_day(self, day: date) -> bool:
        return day in self.closed_days or (
            self.public_holidays and day in norwegian_holidays(day.year))

    def is_open(self, at: datetime) -> bool:
        """Is ``at`` (timezone-aware) within the schedule?"""
        local = at.astimezone(self.tz)
        minute = local.hour * 60 + local.minute + local.second / 60
        today = local.date()
        for day, offset in ((today, 0), (today - timedelta(days=1), MINUTES_PER_DAY)):
            if self.is_closed_day(day):
                continue
            for start, end in self.weekly[day.weekday()]:
                if start <= minute + offset < end:
                    return True
        return False

    def open_intervals(self, start: datetime, end: datetime) -> Iterator[tuple[datetime,
                                                                                 datetime]]:
        """The open periods within [start, end), as UTC datetimes, in order, merged."""
        tz = self.tz
        first = start.astimezone(tz).date() - timedelta(days=1)
        last = end.astimezone(tz).date()
        pending: tuple[datetime, datetime] | None = None
        day = first
        while day <= last:
            if not self.is_closed_day(day):
                midnight = datetime.combine(day, time(0), tzinfo=tz)
                for s, e in self.weekly[day.weekday()]:
                    a = _wall(midnight, s, tz).astimezone(UTC)
                    b = _wall(midnight, e, tz).astimezone(UTC)
                    a, b = max(a, start.astimezone(UTC)), min(b, end.astimezone(UTC))
                    if a >= b:
                        continue
                    if pending and a <= pending[1]:
                        pending = (pending[0], max(b, pending[1]))
                    else:
                        if pending:
                            yield pending
                        pending = (a, b)
            day += timedelta(days=1)
        if pending:
            yield pending

    def open_seconds(self, start: datetime, end: datetime) -> float:
        return sum((b - a).total_seconds() for a, b in self.open_intervals(start, end))

    def period_start(self, at: datetime) -> datetime | None:
        """When the open period containing ``at`` began (UTC), or None if closed."""
        if not self.is_open(at):
            return None
        for a, b in self.open_intervals(at - timedelta(days=2), at + timedelta(seconds=1)):
            if a <= at.astimezone(UTC) < b:
                return a
        return None


def _wall(midnight: datetime, minutes: int, tz: ZoneInfo) -> datetime:
    """Local wall-clock time ``minutes`` after ``midnight`` (may be on a later day)."""
    days, minute = divmod(minutes, MINUTES_PER_DAY)
    day = midnight.date() + timedelta(days=days)
    return datetime.combine(day, time(minute // 60, minute % 60), tzinfo=tz)


def _expand_days(key: str) -> list[int]:
    key = key.strip().lower()
    if "-" in key:
        a, b = key.split("-", 1)
        i, j = WEEKDAYS.index(a), WEEKDAYS.index(b)
        if j < i:
            raise ValueError(f"day range {key!r} runs backwards")
        return list(range(i, j + 1))
    return [WEEKDAYS.index(key)]


ALWAYS: Final = Schedule(tuple(((0, MINUTES_PER_DAY),) for _ in WEEKDAYS),
                         public_holidays=False)

SilenceVerdict = Literal["up", "off", "down"]


class OpenPeriods(Protocol):
    """What classify_silence needs of a schedule."""

    def period_start(self, at: datetime) -> datetime | None: ...

OFFICE_CLASSES: Final = frozenset({"pc"})


def classify_silence(device_class: str, last_seen: datetime | None, now: datetime, *,
                     expected_every: timedelta, hours: OpenPeriods, grace: timedelta
                     ) -> SilenceVerdict:
    """What a device's silence means at ``now``.

    ``up``: heard from within ``expected_every``. Otherwise a device of a 24/7 class is
    ``down``. A PC is ``off`` outside office hours, and within them until ``grace`` has
    passed since the later of the office opening and when it was last heard from.
    """
    if last_seen is not None and now - last_seen <= expected_every:
        return "up"
    if device_class not in OFFICE_CLASSES:
        return "down"
    opened = hours.period_start(now)
    if opened is None:
        return "off"
    since = max(opened, last_seen) if last_seen is not None else opened
    return "down" if now - since >= grace else "off"
