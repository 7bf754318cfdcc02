"""Per destination: the longest matching number prefix picks a zone, the zone picks the price.

A destination is matched on its leading digits after an optional ``+`` (``+33612...`` -> ``33612``);
a prefix ``""`` is a catch-all. A zone may have one ``price`` or, with ``bands`` on the charge,
``prices`` per time band (``{peak: "0.10", offpeak: "0.05"}``). No match refuses the record.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rating.calendar import BandSchedule
from rating.charges.base import LineArrays, LineQuantities, ParseContext, PartArrays, Pricing, Rate
from rating.charges.time_of_day import band_schedule
from rating.errors import CatalogError

MAX_PREFIX_DIGITS = 18  # a prefix is read as an int64


def leading_digits(destination: str) -> str:
    """The digits a prefix is matched against: after one optional '+', up to the first non-digit."""
    text = destination[1:] if destination.startswith("+") else destination
    end = 0
    while end < len(text) and "0" <= text[end] <= "9":
        end += 1
    return text[:end]


class ZonePricing(Pricing):
    def __init__(
        self, zone_names: tuple[str, ...], prefixes: dict[str, int], bands: BandSchedule | None, rates: tuple[Rate, ...]
    ) -> None:
        self.zone_names = zone_names
        self.prefixes = prefixes  # prefix -> zone index
        self.bands = bands
        self.uses_bands = bands is not None
        self.band_count = len(bands.bands) if bands is not None else 1
        self.rates = rates
        self._lengths = sorted({len(p) for p in prefixes}, reverse=True)
        # per prefix length: sorted prefix values and their zones, for a vectorised search
        self._by_length: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for length in self._lengths:
            items = sorted((int(p) if p else 0, zone) for p, zone in prefixes.items() if len(p) == length)
            self._by_length[length] = (
                np.array([value for value, _ in items], dtype=np.int64),
                np.array([zone for _, zone in items], dtype=np.int64),
            )

    def select(self, destination: str) -> int | None:
        digits = leading_digits(destination)
        for length in self._lengths:
            if length <= len(digits):
                zone = self.prefixes.get(digits[:length])
                if zone is not None:
                    return zone
        return None

    def refusal(self, destination: str) -> str:
        return f"no zone matches destination {destination!r}"

    def select_many(self, destinations: np.ndarray) -> np.ndarray:
        count = destinations.shape[0]
        zone = np.full(count, -1, dtype=np.int64)
        width = max(self._lengths) if self._lengths else 0
        if count == 0:
            return zone
        if width == 0:  # only the catch-all prefix
            zone[:] = self.prefixes[""]
            return zone
        # code points of the first width+1 characters; a leading '+' shifts the digits by one
        chars = np.asarray(destinations, dtype=f"U{width + 1}").view(np.uint32).reshape(count, width + 1)
        plus = chars[:, 0] == ord("+")
        chars = np.where(plus[:, None], chars[:, 1:], chars[:, :width])
        is_digit = (chars >= ord("0")) & (chars <= ord("9"))
        run = np.cumprod(is_digit, axis=1).sum(axis=1)
        value = np.zeros(count, dtype=np.int64)
        values_at: dict[int, np.ndarray] = {0: value.copy()}
        for column in range(width):
            value = value * 10 + np.where(is_digit[:, column], chars[:, column].astype(np.int64) - ord("0"), 0)
            values_at[column + 1] = value
        for length in self._lengths:  # longest first: a row keeps the first zone it gets
            keys, zones = self._by_length[length]
            open_rows = (zone < 0) & (run >= length)
            candidates = values_at[length][open_rows]
            at = np.minimum(np.searchsorted(keys, candidates), keys.shape[0] - 1)
            found = keys[at] == candidates
            rows = np.flatnonzero(open_rows)[found]
            zone[rows] = zones[at[found]]
        return zone

    def reference_parts(self, line: LineQuantities) -> list[tuple[int, int]]:
        return [(line.selector * self.band_count + band, qty) for band, qty in line.segments]

    def kernel_parts(self, lines: LineArrays) -> PartArrays:
        rates = lines.selector[lines.seg_row] * self.band_count + lines.seg_band
        return PartArrays(lines.seg_row, rates, lines.seg_qty)


class ZoneModel:
    name = "zone"
    usage = True

    def parse(self, raw: dict[str, Any], ctx: ParseContext, where: str) -> ZonePricing:
        """``zones: [{name, prefixes: ["33", "3361"], price | prices: {band: price}}]``; optional ``bands``."""
        bands = band_schedule(raw, ctx, where) if raw.get("bands") is not None else None
        band_names = bands.names if bands is not None else ("",)
        items = raw.get("zones")
        if not isinstance(items, list) or not items:
            raise CatalogError(f"{where}.zones", "needs a non-empty list of zones")
        names: list[str] = []
        prefixes: dict[str, int] = {}
        rates: list[Rate] = []
        for z, item in enumerate(items):
            zwhere = f"{where}.zones[{z}]"
            if not isinstance(item, dict) or not item.get("name"):
                raise CatalogError(zwhere, "a zone needs a 'name'")
            name = str(item["name"])
            zone_prefixes = item.get("prefixes", item.get("prefix"))
            if isinstance(zone_prefixes, str | int):
                zone_prefixes = [zone_prefixes]
            if not isinstance(zone_prefixes, list) or not zone_prefixes:
                raise CatalogError(f"{zwhere}.prefixes", "a list of number prefixes ('' for any)")
            for prefix_raw in zone_prefixes:
                prefix = str(prefix_raw).lstrip("+")
                if not (prefix == "" or prefix.isdigit()) or len(prefix) > MAX_PREFIX_DIGITS:
                    raise CatalogError(f"{zwhere}.prefixes", f"{prefix_raw!r} is not a digit prefix")
                if prefix in prefixes:
                    raise CatalogError(f"{zwhere}.prefixes", f"prefix {prefix!r} already belongs to another zone")
                prefixes[prefix] = z
            if bands is None:
                price = ctx.money(item.get("price"), f"{zwhere}.price")
                rates.append(Rate(name, price, ctx.unit_size))
            else:
                prices = item.get("prices")
                if prices is None and item.get("price") is not None:
                    prices = dict.fromkeys(band_names, item["price"])
                if not isinstance(prices, dict) or set(prices) != set(band_names):
                    raise CatalogError(f"{zwhere}.prices", f"needs one price per band {list(band_names)}")
                for band in band_names:
                    rate_price = ctx.money(prices[band], f"{zwhere}.prices.{band}")
                    rates.append(Rate(f"{name}/{band}", rate_price, ctx.unit_size))
            names.append(name)
        return ZonePricing(tuple(names), prefixes, bands, tuple(rates))


MODEL = ZoneModel()

__all__ = ["MODEL", "ZoneModel", "ZonePricing", "leading_digits"]
