"""Who is on call: rotations in layers, with overrides, in local time.

A layer's members take turns; the turn passes at ``handover`` local wall time (daily,
or weekly on a weekday), so a handover at 08:00 stays at 08:00 across both DST
switches. A layer may hold only in office hours or only after them (by an office-hours
calendar, holidays included). The highest layer with someone on call wins; an
override (a swapped shift) wins over all layers.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo

import icalendar

from monitor.notify.settings import Layer, Person, ScheduleSettings
from monitor.officehours import Schedule

__all__ = ["OnCall", "Shift"]

WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

Shift = tuple[datetime, datetime, str]


class _Rotation:
    def __init__(self, layer: Layer, zone: ZoneInfo) -> None:
        self.layer = layer
        self.zone = zone
        day, _, clock = layer.handover.rpartition(" ")
        hour, minute = (int(x) for x in clock.split(":"))
        self.at = time(hour, minute)
        self.weekday = WEEKDAYS.index(day) if day else None
        first = date.fromisoformat(layer.start)
        if layer.rotation == "weekly" and self.weekday is not None:
            first += timedelta(days=(self.weekday - first.weekday()) % 7)
        self.anchor = first

    def _handover_on(self, day: date) -> datetime:
        return datetime.combine(day, self.at, self.zone)

    def last_handover(self, at: datetime) -> datetime:
        local = at.astimezone(self.zone)
        day = local.date()
        if self.layer.rotation == "weekly" and self.weekday is not None:
            day -= timedelta(days=(day.weekday() - self.weekday) % 7)
            step = 7
        elif self.layer.rotation == "weekly":
            day -= timedelta(days=(day - self.anchor).days % 7)
            step = 7
        else:
            step = 1
        candidate = self._handover_on(day)
        if candidate > at:
            candidate = self._handover_on(day - timedelta(days=step))
        return candidate

    def next_handover(self, at: datetime) -> datetime:
        last = self.last_handover(at)
        step = 7 if self.layer.rotation == "weekly" else 1
        return self._handover_on(last.astimezone(self.zone).date() + timedelta(days=step))

    def who(self, at: datetime) -> str | None:
        last = self.last_handover(at)
        days = (last.astimezone(self.zone).date() - self.anchor).days
        if days < 0:
            return None
        turns = days // 7 if self.layer.rotation == "weekly" else days
        return self.layer.members[turns % len(self.layer.members)]


# how far an export looks back for the start of the shift under way, and ahead for
# the end of its last
ICAL_LOOKBACK: Final = timedelta(days=370)
ICAL_LOOKAHEAD: Final = timedelta(days=35)


class OnCall:
    def __init__(self, settings: ScheduleSettings, calendar: Schedule | None = None) -> None:
        self.settings = settings
        self.zone = ZoneInfo(settings.timezone)
        self.calendar = calendar
        self.rotations = [_Rotation(layer, self.zone) for layer in settings.layers]
        self.overrides = [(datetime.fromisoformat(o.start), datetime.fromisoformat(o.end),
                           o.who) for o in settings.overrides]

    def who(self, at: datetime) -> str | None:
        """Who is on call at ``at`` (an aware datetime), or None."""
        for start, end, who in self.overrides:
            if start <= at < end:
                return who
        for rotation in reversed(self.rotations):
            only = rotation.layer.only
            if only != "always":
                is_open = self.calendar.is_open(at) if self.calendar else \
                    at.astimezone(self.zone).weekday() < 5 and \
                    time(7) <= at.astimezone(self.zone).time() < time(16)
                if is_open != (only == "office_hours"):
                    continue
            found = rotation.who(at)
            if found is not None:
                return found
        return None

    def _boundaries(self, start: datetime, end: datetime) -> Iterator[datetime]:
        for rotation in self.rotations:
            at = rotation.next_handover(start)
            while at < end:
                yield at
                at = rotation.next_handover(at)
        for o_start, o_end, _ in self.overrides:
            yield from (t for t in (o_start, o_end) if start < t < end)
        if self.calendar is not None and any(r.layer.only != "always"
                                             for r in self.rotations):
            for o_start, o_end in self.calendar.open_intervals(start, end):
                yield from (t for t in (o_start, o_end) if start < t < end)

    def shifts(self, start: datetime, end: datetime) -> list[Shift]:
        """The shifts (start, end, who) covering [start, end), merged where unchanged."""
        points = sorted({start, *self._boundaries(start, end), end})
        out: list[Shift] = []
        for a, b in itertools.pairwise(points):
            who = self.who(a)
            if who is None:
                continue
            if out and out[-1][2] == who and out[-1][1] == a:
                out[-1] = (out[-1][0], b, who)
            else:
                out.append((a, b, who))
        return out

    def next_change(self, at: datetime, horizon: timedelta = timedelta(days=60)
                    ) -> tuple[datetime, str | None] | None:
        now = self.who(at)
        for point in sorted(set(self._boundaries(at, at + horizon))):
            who = self.who(point)
            if who != now:
                return point, who
        return None

    def ical(self, start: datetime, end: datetime, people: dict[str, Person]) -> bytes:
        """The schedule's shifts as an iCalendar file (RFC 5545), one event per shift,
        with the zone's VTIMEZONE. A shift under way at ``start`` keeps its real start
        (looked for up to a year back), and the last its real end, so each shift has
        the same UID and times in every export and a subscribed calendar keeps one
        event per shift."""
        cal = icalendar.Calendar()
        cal.add("prodid", "-//driftsvakt//on-call//NO")
        cal.add("version", "2.0")
        cal.add("x-wr-calname", f"Vakt: {self.settings.id}")
        shifts = [s for s in self.shifts(start - ICAL_LOOKBACK, end + ICAL_LOOKAHEAD)
                  if s[1] > start and s[0] < end]
        for shift_start, shift_end, who in shifts:
            event = icalendar.Event()
            person = people.get(who)
            event.add("uid", f"{self.settings.id}-{who}-{int(shift_start.timestamp())}"
                             "@driftsvakt")
            event.add("summary", f"Vakt: {person.name if person else who}")
            event.add("dtstart", shift_start.astimezone(self.zone))
            event.add("dtend", shift_end.astimezone(self.zone))
            event.add("dtstamp", shift_start)
            cal.add_component(event)
        cal.add_missing_timezones()
        return bytes(cal.to_ical())
