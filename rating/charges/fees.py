"""Per-record fees of a usage charge: a ``connect_fee`` added to every record with usage, and a
``minimum`` that a record with chargeable usage is never rated below (after rounding).

Both are fixed amounts with at most the plan's precision, so they are exact in minor units.
"""

from __future__ import annotations

import numpy as np


def connect_fee_applies(metered: int) -> bool:
    """A connect fee is charged once per record that carries usage (an answered call, a session)."""
    return metered > 0


def minimum_applies(rounded_minor: int, minimum_minor: int, chargeable: int) -> bool:
    """The minimum replaces a smaller amount, but only when something was chargeable (not all free)."""
    return chargeable > 0 and rounded_minor < minimum_minor


def connect_fee_applies_many(metered: np.ndarray) -> np.ndarray:
    return metered > 0


def minimum_applies_many(rounded_minor: np.ndarray, minimum_minor: int, chargeable: np.ndarray) -> np.ndarray:
    return (chargeable > 0) & (rounded_minor < minimum_minor)


__all__ = ["connect_fee_applies", "connect_fee_applies_many", "minimum_applies", "minimum_applies_many"]
