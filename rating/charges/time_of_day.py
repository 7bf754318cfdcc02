"""Time of day and day of week: a price per band (peak, off-peak, weekend, holiday) in local time.

Bands are tried in order and the first that matches an instant wins; the last band is the default.
A record crossing a band edge is split per the charge's ``split`` rule (see the engine).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from rating.calendar import BandSchedule, parse_bands
from rating.charges.base import LineArrays, LineQuantities, ParseContext, PartArrays, Pricing, Rate
from rating.errors import CatalogError


class TimeOfDayPricing(Pricing):
    uses_bands = True

    def __init__(self, bands: BandSchedule, rates: tuple[Rate, ...]) -> None:
        self.bands = bands
        self.rates = rates

    def reference_parts(self, line: LineQuantities) -> list[tuple[int, int]]:
        return list(line.segments)

    def kernel_parts(self, lines: LineArrays) -> PartArrays:
        return PartArrays(lines.seg_row, lines.seg_band, lines.seg_qty)


def band_schedule(raw: dict[str, Any], ctx: ParseContext, where: str) -> BandSchedule:
    """The bands of a charge with its holiday calendar (``calendar: NAME`` from the catalog)."""
    calendar_name = raw.get("calendar")
    holidays: frozenset[dt.date] = frozenset()
    if calendar_name is not None:
        if calendar_name not in ctx.calendars:
            raise CatalogError(f"{where}.calendar", f"unknown calendar {calendar_name!r}")
        holidays = ctx.calendars[calendar_name]
    return parse_bands(raw.get("bands"), ctx.clock, holidays, f"{where}.bands")


class TimeOfDayModel:
    name = "time_of_day"
    usage = True

    def parse(self, raw: dict[str, Any], ctx: ParseContext, where: str) -> TimeOfDayPricing:
        """``bands``: ``[{name, days, hours | from/to, holidays, price}, ...]``, last one the default."""
        schedule = band_schedule(raw, ctx, where)
        rates = tuple(
            Rate(band.name, ctx.money(item.get("price"), f"{where}.bands[{i}].price"), ctx.unit_size)
            for i, (band, item) in enumerate(zip(schedule.bands, raw["bands"], strict=True))
        )
        return TimeOfDayPricing(schedule, rates)


MODEL = TimeOfDayModel()

__all__ = ["MODEL", "TimeOfDayModel", "TimeOfDayPricing", "band_schedule"]
