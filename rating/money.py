"""Exact money: rounding modes, and prices as integer ratios for the vectorised kernel.

An amount is ``whole + remainder / denominator`` minor units at the plan's precision. The kernel
keeps both parts as int64 so nothing is ever approximated; rounding is decided from the remainder,
exactly as :meth:`decimal.Decimal.quantize` decides it.
"""

from __future__ import annotations

from decimal import (
    ROUND_05UP,
    ROUND_CEILING,
    ROUND_DOWN,
    ROUND_FLOOR,
    ROUND_HALF_DOWN,
    ROUND_HALF_EVEN,
    ROUND_HALF_UP,
    ROUND_UP,
    Decimal,
)
from fractions import Fraction

import numpy as np

ROUNDING_MODES = frozenset(
    {ROUND_HALF_EVEN, ROUND_HALF_UP, ROUND_HALF_DOWN, ROUND_UP, ROUND_DOWN, ROUND_CEILING, ROUND_FLOOR, ROUND_05UP}
)
AMOUNT_SCALE = 6  # decimals of amounts on the wire and in ClickHouse (Decimal(18, 6))
MAX_PRECISION = AMOUNT_SCALE
MAX_AMOUNT = 10**12  # an amount must stay below this to fit Decimal(18, 6); larger is refused
INT64_SAFE = 2**62  # products are kept below this so a sum of two never overflows int64


def scaled_multiplier(price: Decimal, divisor: int, precision: int) -> Fraction:
    """Minor units (at ``precision`` decimals) charged per base unit: ``price * 10**precision / divisor``."""
    return Fraction(price) * 10**precision / divisor


def round_up_needed(whole: int, remainder: int, denominator: int, mode: str) -> bool:
    """Whether ``whole + remainder/denominator`` (non-negative, ``0 <= remainder < denominator``) rounds up."""
    if remainder == 0:
        return False
    if mode in (ROUND_DOWN, ROUND_FLOOR):
        return False
    if mode in (ROUND_UP, ROUND_CEILING):
        return True
    twice = 2 * remainder
    if mode == ROUND_HALF_UP:
        return twice >= denominator
    if mode == ROUND_HALF_DOWN:
        return twice > denominator
    if mode == ROUND_HALF_EVEN:
        return twice > denominator or (twice == denominator and whole % 2 == 1)
    if mode == ROUND_05UP:
        return whole % 10 in (0, 5)
    raise ValueError(f"unknown rounding mode {mode!r}")


def round_up_mask(whole: np.ndarray, remainder: np.ndarray, denominator: int, mode: str) -> np.ndarray:
    """Vectorised :func:`round_up_needed` over int64 arrays (amounts are never negative)."""
    if mode in (ROUND_DOWN, ROUND_FLOOR):
        return np.zeros(whole.shape, dtype=bool)
    if mode in (ROUND_UP, ROUND_CEILING):
        return remainder > 0
    twice = 2 * remainder
    if mode == ROUND_HALF_UP:
        return (twice >= denominator) & (remainder > 0)
    if mode == ROUND_HALF_DOWN:
        return twice > denominator
    if mode == ROUND_HALF_EVEN:
        return (twice > denominator) | ((twice == denominator) & (whole % 2 == 1))
    if mode == ROUND_05UP:
        last = whole % 10
        return (remainder > 0) & ((last == 0) | (last == 5))
    raise ValueError(f"unknown rounding mode {mode!r}")


def minor_units(amount: Decimal, precision: int) -> int:
    """An amount with at most ``precision`` decimals as an integer count of minor units."""
    scaled = amount.scaleb(precision)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{amount} has more than {precision} decimals")
    return int(scaled)


def from_minor_units(value: int, precision: int) -> Decimal:
    """The exact inverse of :func:`minor_units`: ``Decimal`` with exactly ``precision`` decimals."""
    return Decimal(value).scaleb(-precision)


__all__ = [
    "AMOUNT_SCALE",
    "INT64_SAFE",
    "MAX_AMOUNT",
    "MAX_PRECISION",
    "ROUNDING_MODES",
    "from_minor_units",
    "minor_units",
    "round_up_mask",
    "round_up_needed",
    "scaled_multiplier",
]
