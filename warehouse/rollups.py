"""Interface-rate roll-ups (5 minutes, 1 hour): refreshable views defined in migration 005.

The engine refreshes them on its own schedule (every minute and every 5 minutes). Call
:func:`refresh_rollups` to bring them up to date now, for instance after a backfill, before a
report, or in tests. Read the roll-up tables with ``FINAL``: a window recomputed after late data is
appended as a newer row that replaces the older one on merge.
"""

from __future__ import annotations

from warehouse.base import Warehouse

ROLLUP_VIEWS = ("interface_rates_5m_refresh", "interface_rates_1h_refresh")


def refresh_rollups(warehouse: Warehouse, *, wait: bool = True) -> None:
    """Start a refresh of every roll-up view; with ``wait``, return when all have finished."""
    for view in ROLLUP_VIEWS:
        warehouse.execute(f"SYSTEM REFRESH VIEW {view}")
    if wait:
        for view in ROLLUP_VIEWS:
            # Raises the refresh's own error if it failed.
            warehouse.execute(f"SYSTEM WAIT VIEW {view}")


__all__ = ["ROLLUP_VIEWS", "refresh_rollups"]
