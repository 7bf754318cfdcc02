"""Flat recurring: a fixed fee per period for holding the subscription (a monthly plan fee).

It never prices a usage record; :func:`rating.recurring.recurring_charges` bills it per account and
period, prorated by the days the subscription was active when ``prorate`` is true.
"""

from __future__ import annotations

from typing import Any

from rating.charges.base import ParseContext, RecurringCharge
from rating.errors import CatalogError


class FlatModel:
    name = "flat"
    usage = False

    def parse(self, raw: dict[str, Any], ctx: ParseContext, where: str) -> RecurringCharge:
        """``amount`` per ``period`` (month), ``prorate`` (default true)."""
        amount = ctx.fee(raw.get("amount", raw.get("price")), f"{where}.amount")
        period = str(raw.get("period", "month"))
        if period != "month":
            raise CatalogError(f"{where}.period", f"flat fees are monthly, not {period!r}")
        prorate = raw.get("prorate", True)
        if not isinstance(prorate, bool):
            raise CatalogError(f"{where}.prorate", f"true or false, not {prorate!r}")
        return RecurringCharge(str(raw.get("name") or "subscription"), amount, period, prorate)


MODEL = FlatModel()

__all__ = ["MODEL", "FlatModel"]
