"""Tiered, graduated: each tier prices only the units that fall inside it (first 10 GB at 0.50, then 0.30).

``scope: record`` tiers each record's own quantity; ``scope: period`` tiers the running total of the
period (account, month), so the marginal price of a record depends on what came before it in event
time: the engine hands the model the period-to-date ``position`` from the allowance state.
A tier may carry a ``flat_fee``, charged once when the units enter that tier.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rating.charges.base import LineArrays, LineQuantities, ParseContext, PartArrays, Pricing, Rate
from rating.errors import CatalogError

UNBOUNDED = np.iinfo(np.int64).max
MAX_TIERS = 1000


@dataclass(frozen=True)
class Tiers:
    """Tier bounds in base units, ``lower[k] < upper[k]``, the last upper unbounded; rate indexes."""

    lower: tuple[int, ...]
    upper: tuple[int, ...]
    unit_rate: tuple[int, ...]
    fee_rate: tuple[int, ...]  # -1 when the tier has no flat fee
    rates: tuple[Rate, ...]


def parse_tiers(raw: dict[str, Any], ctx: ParseContext, where: str) -> Tiers:
    """``tiers: [{up_to: "10 GB" | 10, price, flat_fee?}, ..., {price}]``; ``up_to`` is inclusive."""
    items = raw.get("tiers")
    if not isinstance(items, list) or not items or len(items) > MAX_TIERS:
        raise CatalogError(f"{where}.tiers", f"needs a list of 1 to {MAX_TIERS} tiers")
    lower: list[int] = []
    upper: list[int] = []
    unit_rate: list[int] = []
    fee_rate: list[int] = []
    rates: list[Rate] = []
    previous = 0
    for k, item in enumerate(items):
        twhere = f"{where}.tiers[{k}]"
        if not isinstance(item, dict):
            raise CatalogError(twhere, "a tier is a mapping with 'price' and 'up_to'")
        last = k == len(items) - 1
        if item.get("up_to") is None:
            if not last:
                raise CatalogError(f"{twhere}.up_to", "only the last tier may be unbounded")
            bound = int(UNBOUNDED)
        else:
            if last:
                raise CatalogError(f"{twhere}.up_to", "the last tier must be unbounded (no 'up_to')")
            bound = ctx.quantity(item["up_to"], f"{twhere}.up_to")
            if bound <= previous:
                raise CatalogError(f"{twhere}.up_to", "tier bounds must increase")
        lower.append(previous)
        upper.append(bound)
        unit_rate.append(len(rates))
        rates.append(Rate(f"tier {k + 1}", ctx.money(item.get("price"), f"{twhere}.price"), ctx.unit_size))
        if item.get("flat_fee") is not None:
            fee_rate.append(len(rates))
            rates.append(Rate(f"tier {k + 1} flat fee", ctx.fee(item["flat_fee"], f"{twhere}.flat_fee"), 1))
        else:
            fee_rate.append(-1)
        previous = bound
    return Tiers(tuple(lower), tuple(upper), tuple(unit_rate), tuple(fee_rate), tuple(rates))


class GraduatedPricing(Pricing):
    def __init__(self, tiers: Tiers, per_period: bool) -> None:
        self.tiers = tiers
        self.rates = tiers.rates
        self.per_period = per_period
        self.uses_position = per_period
        self._lower = np.array(tiers.lower, dtype=np.int64)
        self._upper = np.array(tiers.upper, dtype=np.int64)

    def counter_cap(self) -> int | None:
        return self.tiers.lower[-1] if self.per_period else None

    def _span(self, line: LineQuantities) -> tuple[int, int]:
        if self.per_period:
            return line.position, line.position + line.chargeable
        return 0, line.chargeable

    def reference_parts(self, line: LineQuantities) -> list[tuple[int, int]]:
        start, end = self._span(line)
        parts: list[tuple[int, int]] = []
        for k, (low, high) in enumerate(zip(self.tiers.lower, self.tiers.upper, strict=True)):
            parts.append((self.tiers.unit_rate[k], max(0, min(end, high) - max(start, low))))
            if self.tiers.fee_rate[k] >= 0:
                parts.append((self.tiers.fee_rate[k], 1 if start <= low < end else 0))
        return parts

    def kernel_parts(self, lines: LineArrays) -> PartArrays:
        start = lines.position if self.per_period else np.zeros_like(lines.chargeable)
        end = start + lines.chargeable
        columns_rate: list[int] = []
        columns_qty: list[np.ndarray] = []
        for k in range(len(self.tiers.lower)):
            low, high = self._lower[k], self._upper[k]
            columns_rate.append(self.tiers.unit_rate[k])
            columns_qty.append(np.maximum(0, np.minimum(end, high) - np.maximum(start, low)))
            if self.tiers.fee_rate[k] >= 0:
                columns_rate.append(self.tiers.fee_rate[k])
                columns_qty.append(((start <= low) & (low < end)).astype(np.int64))
        width = len(columns_rate)
        rows = np.repeat(np.arange(lines.size, dtype=np.int64), width)
        rates = np.tile(np.array(columns_rate, dtype=np.int64), lines.size)
        return PartArrays(rows, rates, np.stack(columns_qty, axis=1).reshape(-1))


class GraduatedModel:
    name = "graduated"
    usage = True

    def parse(self, raw: dict[str, Any], ctx: ParseContext, where: str) -> GraduatedPricing:
        """``tiers`` (see :func:`parse_tiers`) and ``scope``: ``record`` (default) or ``period``."""
        scope = str(raw.get("scope", "record"))
        if scope not in ("record", "period"):
            raise CatalogError(f"{where}.scope", f"'record' or 'period', not {scope!r}")
        return GraduatedPricing(parse_tiers(raw, ctx, where), scope == "period")


MODEL = GraduatedModel()

__all__ = ["MODEL", "UNBOUNDED", "GraduatedModel", "GraduatedPricing", "Tiers", "parse_tiers"]
