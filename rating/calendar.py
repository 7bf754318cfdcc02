"""Tariff time: time bands (peak, off-peak, weekend, holiday) in a plan's local time, and periods.

Everything here works on UTC epoch milliseconds and converts wall-clock edges with one function,
:meth:`LocalClock.wall_to_utc_ms`, so the per-record reference and the vectorised kernel agree on
every edge, including daylight-saving days (an edge inside a skipped hour collapses onto the jump).
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rating.errors import CatalogError

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_MS = 86_400_000
MAX_EDGES_PER_DAY = 96  # keeps a 400-day record under the kernel's bound on parts per line
_EPOCH_DAY = dt.date(1970, 1, 1)
_HHMM = re.compile(r"^([01][0-9]|2[0-4]):([0-5][0-9])$")


@dataclass(frozen=True, eq=False)
class LocalClock:
    """Wall-clock conversions for one time zone, with per-day results cached."""

    timezone: str
    _zone: dt.tzinfo = field(init=False, repr=False)
    _day_start_cache: dict[dt.date, int] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        try:
            zone: dt.tzinfo = dt.UTC if self.timezone == "UTC" else ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise CatalogError("timezone", f"unknown time zone {self.timezone!r}") from None
        object.__setattr__(self, "_zone", zone)

    def wall_to_utc_ms(self, day: dt.date, minute: int) -> int:
        """UTC ms of the wall-clock time ``minute`` minutes after local midnight of ``day`` (fold 0)."""
        if self._zone is dt.UTC:
            return (day - _EPOCH_DAY).days * DAY_MS + minute * 60_000
        wall = dt.datetime(day.year, day.month, day.day, tzinfo=self._zone) + dt.timedelta(minutes=minute)
        return int(wall.timestamp()) * 1000

    def day_start(self, day: dt.date) -> int:
        cached = self._day_start_cache.get(day)
        if cached is None:
            cached = self.wall_to_utc_ms(day, 0)
            self._day_start_cache[day] = cached
        return cached

    def local_day(self, t_ms: int) -> dt.date:
        """The local date whose [midnight, next midnight) holds ``t_ms``, by the same edges as the kernel."""
        if self._zone is dt.UTC:
            return _EPOCH_DAY + dt.timedelta(days=t_ms // DAY_MS)
        day = dt.datetime.fromtimestamp(t_ms // 1000, self._zone).date()
        while t_ms < self.day_start(day):
            day -= dt.timedelta(days=1)
        while t_ms >= self.day_start(day + dt.timedelta(days=1)):
            day += dt.timedelta(days=1)
        return day


@dataclass(frozen=True)
class TimeBand:
    """A named tariff band: which weekdays, which wall-clock windows, and whether holidays count."""

    name: str
    days: frozenset[int] = frozenset(range(7))  # 0 = Monday
    windows: tuple[tuple[int, int], ...] = ((0, 1440),)  # minutes of the day, [from, to)
    holidays: bool | None = None  # True: only on holidays, False: never on holidays, None: either

    @property
    def is_default(self) -> bool:
        return self.days == frozenset(range(7)) and self.windows == ((0, 1440),) and self.holidays is None

    def matches(self, weekday: int, is_holiday: bool, minute: int) -> bool:
        if weekday not in self.days:
            return False
        if self.holidays is not None and self.holidays != is_holiday:
            return False
        return any(start <= minute < end for start, end in self.windows)


@dataclass(frozen=True, eq=False)
class BandSchedule:
    """Ordered bands (first match wins, the last one is the default), a clock and a holiday calendar."""

    bands: tuple[TimeBand, ...]
    clock: LocalClock
    holidays: frozenset[dt.date] = frozenset()
    _edges: tuple[int, ...] = field(init=False, repr=False)
    _day_cache: dict[dt.date, tuple[tuple[int, int, int], ...]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        edges = {0, 1440}
        for band in self.bands:
            for start, end in band.windows:
                edges.update((start, end))
        object.__setattr__(self, "_edges", tuple(sorted(edges)))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(band.name for band in self.bands)

    def band_at(self, weekday: int, is_holiday: bool, minute: int) -> int:
        for index, band in enumerate(self.bands):
            if band.matches(weekday, is_holiday, minute):
                return index
        return len(self.bands) - 1  # unreachable: validation requires a default last band

    def day_intervals(self, day: dt.date) -> tuple[tuple[int, int, int], ...]:
        """``(utc_start_ms, utc_end_ms, band_index)`` covering the local ``day``, adjacent bands merged."""
        cached = self._day_cache.get(day)
        if cached is not None:
            return cached
        weekday, is_holiday = day.weekday(), day in self.holidays
        intervals: list[list[int]] = []
        previous_utc = self.clock.day_start(day)
        for start_minute, end_minute in itertools.pairwise(self._edges):
            band = self.band_at(weekday, is_holiday, start_minute)
            end_utc = (
                self.clock.day_start(day + dt.timedelta(days=1))
                if end_minute == 1440
                else self.clock.wall_to_utc_ms(day, end_minute)
            )
            end_utc = max(end_utc, previous_utc)  # an edge inside a skipped DST hour collapses onto the jump
            if end_utc == previous_utc:
                continue
            if intervals and intervals[-1][2] == band:
                intervals[-1][1] = end_utc
            else:
                intervals.append([previous_utc, end_utc, band])
            previous_utc = end_utc
        result = tuple((start, end, band) for start, end, band in intervals)
        self._day_cache[day] = result
        return result


def parse_time_of_day(value: Any, where: str) -> int:
    """``"08:00"`` to minutes after midnight; ``"24:00"`` is the end of the day."""
    match = _HHMM.match(str(value))
    if not match or (match.group(1) == "24" and match.group(2) != "00"):
        raise CatalogError(where, f"expected a wall-clock time 'HH:MM' (00:00 to 24:00), not {value!r}")
    return int(match.group(1)) * 60 + int(match.group(2))


def parse_band(raw: Any, where: str) -> TimeBand:
    """One band: ``{name, days: [mon, ...], hours: ["08:00-20:00", ...] | from/to, holidays: bool}``."""
    if not isinstance(raw, dict) or not raw.get("name"):
        raise CatalogError(where, "a band needs a 'name'")
    name = str(raw["name"])
    days_raw = raw.get("days")
    days = frozenset(range(7))
    if days_raw is not None:
        if isinstance(days_raw, str):
            days_raw = [days_raw]
        try:
            days = frozenset(DAY_NAMES.index(str(day).lower()[:3]) for day in days_raw)
        except ValueError:
            raise CatalogError(f"{where}.days", f"days are among {list(DAY_NAMES)}, not {days_raw!r}") from None
        if not days:
            raise CatalogError(f"{where}.days", "an empty list of days never matches")
    windows: list[tuple[int, int]] = []
    hours = raw.get("hours")
    if "from" in raw or "to" in raw:
        hours = [f"{raw.get('from', '00:00')}-{raw.get('to', '24:00')}"]
    if hours is not None:
        for k, text in enumerate([hours] if isinstance(hours, str) else hours):
            start_text, _, end_text = str(text).partition("-")
            start = parse_time_of_day(start_text.strip(), f"{where}.hours[{k}]")
            end = parse_time_of_day(end_text.strip(), f"{where}.hours[{k}]")
            if start >= end:
                raise CatalogError(
                    f"{where}.hours[{k}]",
                    f"{text!r} ends before it starts; split a window across midnight into two",
                )
            windows.append((start, end))
    holidays = raw.get("holidays")
    if holidays is not None and not isinstance(holidays, bool):
        raise CatalogError(f"{where}.holidays", f"true or false, not {holidays!r}")
    return TimeBand(name, days, tuple(windows) or ((0, 1440),), holidays)


def parse_bands(raw: Any, clock: LocalClock, holidays: frozenset[dt.date], where: str) -> BandSchedule:
    if not isinstance(raw, list) or not raw:
        raise CatalogError(where, "needs a non-empty list of bands")
    bands = tuple(parse_band(item, f"{where}[{i}]") for i, item in enumerate(raw))
    names = [band.name for band in bands]
    for name in names:
        if names.count(name) > 1:
            raise CatalogError(where, f"band {name!r} is defined twice")
    if not bands[-1].is_default:
        raise CatalogError(
            f"{where}[{len(bands) - 1}]",
            "the last band must be the default (no days, hours or holidays) so every instant has a rate",
        )
    schedule = BandSchedule(bands, clock, holidays)
    if len(schedule._edges) > MAX_EDGES_PER_DAY:
        raise CatalogError(where, f"more than {MAX_EDGES_PER_DAY} distinct band edges in a day")
    return schedule


def parse_holidays(raw: Any, where: str) -> frozenset[dt.date]:
    """A calendar: a list of ISO dates, or ``{holidays: [...]}``."""
    items = raw.get("holidays") if isinstance(raw, dict) else raw
    if not isinstance(items, list):
        raise CatalogError(where, "a calendar is a list of ISO dates (or {holidays: [...]})")
    days = set()
    for i, item in enumerate(items):
        try:
            days.add(item if isinstance(item, dt.date) else dt.date.fromisoformat(str(item)))
        except ValueError:
            raise CatalogError(f"{where}[{i}]", f"not an ISO date: {item!r}") from None
    return frozenset(days)


__all__ = [
    "DAY_MS",
    "DAY_NAMES",
    "BandSchedule",
    "LocalClock",
    "TimeBand",
    "parse_band",
    "parse_bands",
    "parse_holidays",
    "parse_time_of_day",
]


PERIOD_KINDS = ("month", "day")


def period_key(clock: LocalClock, t_ms: int, kind: str) -> str:
    """The allowance period holding ``t_ms`` in local time: ``"2024-05"`` (month) or ``"2024-05-17"`` (day)."""
    day = clock.local_day(t_ms)
    return f"{day.year:04d}-{day.month:02d}" if kind == "month" else day.isoformat()


def period_first_day(key: str) -> dt.date:
    """First local day of a period key made by :func:`period_key`."""
    return dt.date.fromisoformat(key if len(key) == 10 else f"{key}-01")


def next_period_first_day(key: str) -> dt.date:
    first = period_first_day(key)
    if len(key) == 10:
        return first + dt.timedelta(days=1)
    return dt.date(first.year + first.month // 12, first.month % 12 + 1, 1)


__all__ += ["PERIOD_KINDS", "next_period_first_day", "period_first_day", "period_key"]
