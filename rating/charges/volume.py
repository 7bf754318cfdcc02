"""Volume: the whole quantity of a record at the price of the tier it falls into (inclusive bounds).

Volume pricing is per record only: over a period the price of earlier records would change with
later ones, which a real-time rater cannot do (billing can re-price a period in bulk instead).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rating.charges.base import LineArrays, LineQuantities, ParseContext, PartArrays, Pricing
from rating.charges.graduated import Tiers, parse_tiers
from rating.errors import CatalogError


class VolumePricing(Pricing):
    def __init__(self, tiers: Tiers) -> None:
        self.tiers = tiers
        self.rates = tiers.rates
        self._upper = np.array(tiers.upper, dtype=np.int64)
        self._unit_rate = np.array(tiers.unit_rate, dtype=np.int64)
        self._fee_rate = np.array(tiers.fee_rate, dtype=np.int64)
        self._has_fees = bool((self._fee_rate >= 0).any())

    def tier_of(self, quantity: int) -> int:
        for k, high in enumerate(self.tiers.upper):
            if quantity <= high:
                return k
        return len(self.tiers.upper) - 1

    def reference_parts(self, line: LineQuantities) -> list[tuple[int, int]]:
        tier = self.tier_of(line.chargeable)
        parts = [(self.tiers.unit_rate[tier], line.chargeable)]
        if self.tiers.fee_rate[tier] >= 0:
            parts.append((self.tiers.fee_rate[tier], 1 if line.chargeable > 0 else 0))
        return parts

    def kernel_parts(self, lines: LineArrays) -> PartArrays:
        tier = np.searchsorted(self._upper, lines.chargeable, side="left")
        rows = np.arange(lines.size, dtype=np.int64)
        if not self._has_fees:
            return PartArrays(rows, self._unit_rate[tier], lines.chargeable)
        fee_rate = self._fee_rate[tier]
        has_fee = fee_rate >= 0
        fee_qty = (has_fee & (lines.chargeable > 0)).astype(np.int64)
        # rows whose tier has no fee get a zero-quantity part on rate 0 so every row has two parts
        rates = np.stack([self._unit_rate[tier], np.where(has_fee, fee_rate, 0)], axis=1).reshape(-1)
        qty = np.stack([lines.chargeable, fee_qty], axis=1).reshape(-1)
        return PartArrays(np.repeat(rows, 2), rates, qty)


class VolumeModel:
    name = "volume"
    usage = True

    def parse(self, raw: dict[str, Any], ctx: ParseContext, where: str) -> VolumePricing:
        """``tiers`` as for graduated; ``scope`` may only be ``record``."""
        if str(raw.get("scope", "record")) != "record":
            raise CatalogError(f"{where}.scope", "volume pricing is per record only")
        return VolumePricing(parse_tiers(raw, ctx, where))


MODEL = VolumeModel()

__all__ = ["MODEL", "VolumeModel", "VolumePricing"]
