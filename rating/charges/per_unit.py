"""Per unit: every chargeable unit at one price (EUR 0.50 per GB, EUR 0.10 per SMS)."""

from __future__ import annotations

from typing import Any

import numpy as np

from rating.charges.base import LineArrays, LineQuantities, ParseContext, PartArrays, Pricing, Rate


class PerUnitPricing(Pricing):
    def __init__(self, rate: Rate) -> None:
        self.rates = (rate,)

    def reference_parts(self, line: LineQuantities) -> list[tuple[int, int]]:
        return [(0, line.chargeable)]

    def kernel_parts(self, lines: LineArrays) -> PartArrays:
        rows = np.arange(lines.size, dtype=np.int64)
        return PartArrays(rows, np.zeros_like(rows), lines.chargeable)


class PerUnitModel:
    name = "per_unit"
    usage = True

    def parse(self, raw: dict[str, Any], ctx: ParseContext, where: str) -> PerUnitPricing:
        """``price``: the price of one ``unit``."""
        price = ctx.money(raw.get("price"), f"{where}.price")
        return PerUnitPricing(Rate(f"per {ctx.unit}", price, ctx.unit_size))


MODEL = PerUnitModel()

__all__ = ["MODEL", "PerUnitModel", "PerUnitPricing"]
