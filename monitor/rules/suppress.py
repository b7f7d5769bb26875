"""Silences and maintenance windows: why an alert that fires does not notify.

A silence mutes alerts whose labels match its matchers between two instants
(Alertmanager's model). A maintenance window mutes everything about the devices it
covers — by device, site, municipality or tag — once or on a weekly or monthly
recurrence in local time (Europe/Oslo unless told), and the SLA ledger excludes the
same windows. Both arrive through the API as JSON and are checked strictly.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Final, Literal
from zoneinfo import ZoneInfo

import msgspec

from monitor.fields import parse_duration
from monitor.rules.inventory import DeviceInfo
from monitor.rules.matchers import Matcher, MatcherError, parse_matcher

__all__ = ["Maintenance", "Recurrence", "Silence", "SpecError"]

WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
Text = Annotated[str, msgspec.Meta(max_length=2000)]
Id = Annotated[str, msgspec.Meta(pattern="^[a-z0-9][a-z0-9-]{0,62}$")]


class SpecError(ValueError):
    """A silence or maintenance window that cannot be accepted, and why."""


def _aware(value: datetime, what: str) -> float:
    if value.tzinfo is None:
        raise SpecError(f"{what} needs a time zone (e.g. 2026-11-23T22:00:00+01:00)")
    return value.timestamp()


class Silence(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    matchers: Annotated[list[str], msgspec.Meta(min_length=1, max_length=50)]
    starts_at: datetime
    ends_at: datetime
    comment: Text
    id: str = ""
    created_by: str = ""

    def compile(self) -> tuple[tuple[Matcher, ...], float, float]:
        try:
            matchers = tuple(parse_matcher(m) for m in self.matchers)
        except MatcherError as exc:
            raise SpecError(str(exc)) from None
        start, end = _aware(self.starts_at, "starts_at"), _aware(self.ends_at, "ends_at")
        if end <= start:
            raise SpecError("ends_at must be after starts_at")
        if all(m.matches({}) for m in matchers):
            raise SpecError("the matchers match every alert; name at least one label value")
        return matchers, start, end


class Recurrence(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``weekly`` on ``days``, or ``monthly`` on ``monthday`` or the ``nth`` of ``days``
    (nth -1 is the last), starting ``at`` local time and lasting ``duration``."""

    every: Literal["weekly", "monthly"]
    at: Annotated[str, msgspec.Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    duration: str
    days: list[Weekday] = []
    monthday: Annotated[int, msgspec.Meta(ge=1, le=31)] | None = None
    nth: Annotated[int, msgspec.Meta(ge=-1, le=5)] | None = None
    timezone: str = "Europe/Oslo"

    def check(self) -> None:
        try:
            seconds = parse_duration(self.duration)
        except ValueError as exc:
            raise SpecError(f"recurrence.duration: {exc}") from None
        if not 0 < seconds <= 7 * 86400:
            raise SpecError("recurrence.duration must be between 1 s and 7 days")
        if self.every == "weekly" and not self.days:
            raise SpecError("a weekly recurrence needs 'days'")
        if self.every == "monthly":
            if (self.monthday is None) == (self.nth is None):
                raise SpecError("a monthly recurrence takes 'monthday' or 'nth' with 'days'")
            if self.nth is not None and (len(self.days) != 1 or self.nth == 0):
                raise SpecError("'nth' takes exactly one day, e.g. nth: 1, days: [tue]")
        try:
            ZoneInfo(self.timezone)
        except (KeyError, ValueError):
            raise SpecError(f"unknown time zone {self.timezone!r}") from None

    def _on(self, day: date) -> bool:
        weekday = WEEKDAYS[day.weekday()]
        if self.every == "weekly":
            return weekday in self.days
        if self.monthday is not None:
            return day.day == self.monthday
        if weekday not in self.days or self.nth is None:
            return False
        if self.nth > 0:
            return (day.day - 1) // 7 + 1 == self.nth
        return (day + timedelta(days=7)).month != day.month  # the last such day

    def window_at(self, now: float) -> tuple[float, float] | None:
        """The occurrence (start, end) that covers ``now``, if one does."""
        zone = ZoneInfo(self.timezone)
        length = parse_duration(self.duration)
        local_now = datetime.fromtimestamp(now, zone)
        hour, minute = (int(x) for x in self.at.split(":"))
        day = (local_now - timedelta(seconds=length)).date()
        while day <= local_now.date():
            if self._on(day):
                start = datetime.combine(day, time(hour, minute), zone).timestamp()
                if start <= now < start + length:
                    return start, start + length
            day += timedelta(days=1)
        return None

    def occurrences(self, start: float, end: float) -> list[tuple[float, float]]:
        """Every occurrence that overlaps [start, end), in order."""
        zone = ZoneInfo(self.timezone)
        length = parse_duration(self.duration)
        hour, minute = (int(x) for x in self.at.split(":"))
        day = datetime.fromtimestamp(start - length, zone).date()
        last = datetime.fromtimestamp(end, zone).date()
        out: list[tuple[float, float]] = []
        while day <= last:
            if self._on(day):
                begin = datetime.combine(day, time(hour, minute), zone).timestamp()
                if begin < end and begin + length > start:
                    out.append((begin, begin + length))
            day += timedelta(days=1)
        return out


# what a municipality's reader is shown of a window that also concerns others
SHARED_WINDOW: Final = "Planlagt vedlikehold"


class Maintenance(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    starts_at: datetime
    ends_at: datetime | None = None
    recurrence: Recurrence | None = None
    devices: list[str] = []
    sites: list[str] = []
    municipalities: list[str] = []
    tags: list[str] = []
    comment: Text = ""
    id: str = ""
    created_by: str = ""

    def check(self) -> None:
        start = _aware(self.starts_at, "starts_at")
        if self.ends_at is not None and _aware(self.ends_at, "ends_at") <= start:
            raise SpecError("ends_at must be after starts_at")
        if self.recurrence is None and self.ends_at is None:
            raise SpecError("a one-off window needs ends_at")
        if self.recurrence is not None:
            self.recurrence.check()
        if not (self.devices or self.sites or self.municipalities or self.tags):
            raise SpecError("say what is under maintenance: devices, sites, municipalities "
                            "or tags")

    def only_of(self, municipality: str, device_municipality: Mapping[str, str],
                site_municipality: Mapping[str, str]) -> bool:
        """Does the window concern ``municipality`` alone (its devices, its sites, it)?
        Only then may that municipality's readers see its name and comment."""
        return (not self.tags and set(self.municipalities) <= {municipality}
                and all(device_municipality.get(d) == municipality for d in self.devices)
                and all(site_municipality.get(s) == municipality for s in self.sites))

    def part_of(self, municipality: str, device_municipality: Mapping[str, str],
                site_municipality: Mapping[str, str]) -> Maintenance | None:
        """The window as ``municipality``'s readers may see it: their devices, sites and
        municipality only, and the name and comment only if it is theirs alone; None
        when it does not concern them."""
        devices = [d for d in self.devices if device_municipality.get(d) == municipality]
        sites = [x for x in self.sites if site_municipality.get(x) == municipality]
        own = [m for m in self.municipalities if m == municipality]
        if not (devices or sites or own):
            return None
        alone = self.only_of(municipality, device_municipality, site_municipality)
        return msgspec.structs.replace(
            self, devices=devices, sites=sites, municipalities=own, tags=[],
            name=self.name if alone else SHARED_WINDOW, comment=self.comment if alone else "",
            created_by=self.created_by if alone else "")

    def covers(self, device: DeviceInfo) -> bool:
        return (device.id in self.devices or device.site in self.sites
                or device.municipality in self.municipalities
                or any(tag in device.tags for tag in self.tags))

    def window_at(self, now: float) -> tuple[float, float] | None:
        """The stretch of this window that covers ``now``, if any."""
        start = self.starts_at.timestamp()
        end = self.ends_at.timestamp() if self.ends_at is not None else float("inf")
        if not start <= now < end:
            return None
        if self.recurrence is None:
            return start, end
        found = self.recurrence.window_at(now)
        if found is None:
            return None
        return max(found[0], start), min(found[1], end)

    def intervals(self, start: float, end: float, deleted_at: float | None = None
                  ) -> list[tuple[float, float]]:
        """The stretches of [start, end) this window covered; a window deleted early
        ended when it was deleted (one deleted before it began never happened)."""
        first = self.starts_at.timestamp()
        stop = self.ends_at.timestamp() if self.ends_at is not None else float("inf")
        if deleted_at is not None:
            stop = min(stop, deleted_at)
        lo, hi = max(start, first), min(end, stop)
        if lo >= hi:
            return []
        if self.recurrence is None:
            return [(lo, hi)]
        return [(max(a, lo), min(b, hi)) for a, b in self.recurrence.occurrences(lo, hi)
                if max(a, lo) < min(b, hi)]

    def active(self, now: float) -> bool:
        return self.window_at(now) is not None


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)
