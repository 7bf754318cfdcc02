"""Included allowances: the first N units of a period are free, consumed in event-time order.

Any usage charge may carry ``included: "10 GB"`` (per ``period``, default month). The period-to-date
position comes from :class:`rating.state.RatingState`; free units are taken from the start of the
record, so when a record crosses a tariff-time edge the earliest segments are the free ones.
"""

from __future__ import annotations

import numpy as np


def free_units(included: int | None, position: int, billed: int) -> int:
    """Units of this record covered by the allowance, given ``position`` units already used."""
    if included is None:
        return 0
    return max(0, min(billed, included - position))


def take_free(segments: list[tuple[int, int]], free: int) -> tuple[tuple[int, int], ...]:
    """Remove ``free`` units from the earliest segments; returns (band, chargeable units) per segment."""
    result = []
    for band, qty in segments:
        taken = min(qty, free)
        free -= taken
        result.append((band, qty - taken))
    return tuple(result)


def free_units_many(included: int | None, position: np.ndarray, billed: np.ndarray) -> np.ndarray:
    """Vectorised :func:`free_units`."""
    if included is None:
        return np.zeros_like(billed)
    return np.clip(included - position, 0, billed)


def take_free_many(seg_row: np.ndarray, seg_qty: np.ndarray, row_first_seg: np.ndarray, free: np.ndarray) -> np.ndarray:
    """Vectorised :func:`take_free`: chargeable units per segment (segments sorted by row)."""
    if seg_row.shape[0] == free.shape[0]:  # one segment per row: the common case
        return seg_qty - free
    # int64 wrap-around in the running sum cancels in the difference: per-row sums fit, so it is exact
    running = np.cumsum(seg_qty)
    before = running - seg_qty - (running - seg_qty)[row_first_seg][seg_row]
    return seg_qty - np.clip(free[seg_row] - before, 0, seg_qty)


__all__ = ["free_units", "free_units_many", "take_free", "take_free_many"]
