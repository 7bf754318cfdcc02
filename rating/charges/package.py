"""Package: a price per started block of N units (EUR 1 per 100 MB or part of it)."""

from __future__ import annotations

from typing import Any

import numpy as np

from rating.charges.base import LineArrays, LineQuantities, ParseContext, PartArrays, Pricing, Rate
from rating.errors import CatalogError


class PackagePricing(Pricing):
    def __init__(self, block: int, rate: Rate) -> None:
        self.block = block
        self.rates = (rate,)

    def reference_parts(self, line: LineQuantities) -> list[tuple[int, int]]:
        return [(0, -(-line.chargeable // self.block))]

    def kernel_parts(self, lines: LineArrays) -> PartArrays:
        rows = np.arange(lines.size, dtype=np.int64)
        return PartArrays(rows, np.zeros_like(rows), -(-lines.chargeable // self.block))


class PackageModel:
    name = "package"
    usage = True

    def parse(self, raw: dict[str, Any], ctx: ParseContext, where: str) -> PackagePricing:
        """``block``: units per package (``"100 MB"``, or a number of ``unit``); ``price``: per package."""
        block = ctx.quantity(raw.get("block"), f"{where}.block")
        if block < 1:
            raise CatalogError(f"{where}.block", "a package holds at least one base unit")
        price = ctx.money(raw.get("price"), f"{where}.price")
        label = f"per block of {raw.get('block')}" + ("" if isinstance(raw.get("block"), str) else f" {ctx.unit}")
        return PackagePricing(block, Rate(label, price, 1))


MODEL = PackageModel()

__all__ = ["MODEL", "PackageModel", "PackagePricing"]
