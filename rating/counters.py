"""Allowance counters, vectorised: the period-to-date position of every counted row of a batch.

Rows sharing a counter (charges of one name across a plan's versions, or a named bundle) are
sorted by (account, period, start, id) and a running sum per (account, period) gives each row the
units used before it, saturated just past the point where prices stop depending on it. Replayed
ids take the position stored when they were first applied. Keys that mix allowances, repeat an id
inside the batch or could overflow int64 are walked row by row exactly like the reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from rating.catalog import Catalog
from rating.charges import UsageCharge
from rating.columns import UsageColumns
from rating.money import INT64_SAFE
from rating.state import PeriodCounters, RatingState
from rating.timeline import periods_of


class CountedGroup(Protocol):
    """A kernel line group as the counters see it: its rows, billed units, and where positions go."""

    plan_index: int
    rows: np.ndarray
    billed: np.ndarray
    position: np.ndarray

    @property
    def charge(self) -> UsageCharge: ...


def allowance_positions(
    columns: UsageColumns,
    catalog: Catalog,
    groups: Sequence[CountedGroup],
    account_codes: np.ndarray,
    state: RatingState,
) -> None:
    """Period-to-date position of every counted row, consuming allowance in (start, id) order."""
    by_counter: dict[str, list[CountedGroup]] = {}
    for group in groups:
        if group.charge.has_counter and group.rows.size:
            by_counter.setdefault(group.charge.counter, []).append(group)
    for name, members in by_counter.items():
        labels: dict[str, int] = {}
        period_parts = []
        for group in members:  # each member keeps its own clock and period kind, as the reference does
            charge = group.charge
            periods = periods_of(catalog.plans[group.plan_index].clock, charge.period, columns.start_ms[group.rows])
            remap = np.array([labels.setdefault(label, len(labels)) for label in periods.labels], dtype=np.int64)
            period_parts.append(remap[periods.code])
        rows = np.concatenate([g.rows for g in members])
        counted = _CountedRows(
            rows=rows,
            billed=np.concatenate([g.billed for g in members]),
            saturation=np.concatenate([np.full(g.rows.shape[0], g.charge.counter_cap() + 1) for g in members]),
            key_raw=account_codes[rows] * max(len(labels), 1) + np.concatenate(period_parts),
            period_labels=list(labels),
            period_code=np.concatenate(period_parts),
        )
        positions = _counter_positions(name, columns, counted, state)
        offset = 0
        for group in members:
            group.position = positions[offset : offset + group.rows.shape[0]]
            offset += group.rows.shape[0]


@dataclass(frozen=True)
class _CountedRows:
    """Rows of every charge line sharing one counter."""

    rows: np.ndarray
    billed: np.ndarray
    saturation: np.ndarray  # counter cap + 1: past it the price no longer depends on the position
    key_raw: np.ndarray  # (account, period) as one integer
    period_labels: list[str]
    period_code: np.ndarray


def _event_order(columns: UsageColumns, rows: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Indexes into ``rows`` sorted by (key, start, id, input order), as the reference walks them."""
    start = columns.start_ms[rows]
    low = int(start.min(initial=0))
    span = int(start.max(initial=0)) - low + 1
    if (int(key.max(initial=0)) + 1) * span < INT64_SAFE:  # one int64 sort key: (key, start)
        order = np.argsort(key * span + (start - low), kind="stable")
    else:
        order = np.lexsort((start, key))
    sorted_key, sorted_start = key[order], start[order]
    same = (sorted_key[1:] == sorted_key[:-1]) & (sorted_start[1:] == sorted_start[:-1])
    if same.any():  # ties on (key, start): order those few by (id, input row) in Python
        tie_starts = np.flatnonzero(same & ~np.concatenate([[False], same[:-1]]))
        for tie in tie_starts.tolist():
            end = tie + 1
            while end < same.shape[0] and same[end]:
                end += 1
            block = order[tie : end + 1]
            ids = columns.id[rows[block]]
            order[tie : end + 1] = block[sorted(range(block.shape[0]), key=lambda i: (ids[i], rows[block[i]]))]
    return order


def _counter_positions(name: str, columns: UsageColumns, counted: _CountedRows, state: RatingState) -> np.ndarray:
    """Positions of one counter's rows: a running sum per (account, period) in event order.

    Keys where an id repeats inside the batch, keys that mix allowances (a plan version changing
    mid-period) and keys whose sums could leave int64 are walked row by row, like the reference.
    """
    rows, billed, saturation = counted.rows, counted.billed, counted.saturation
    key, key_values = pd.factorize(counted.key_raw)
    key = key.astype(np.int64)
    key_count = len(key_values)
    order = _event_order(columns, rows, key)
    # factorize numbers keys by first appearance, so a key's first row is where the running max grows
    running_max = np.maximum.accumulate(key)
    first_row_of_key = np.flatnonzero(np.concatenate([[True], running_max[1:] > running_max[:-1]]))
    labels = counted.period_labels
    key_names = list(
        zip(
            columns.account[rows[first_row_of_key]].tolist(),
            [labels[p] for p in counted.period_code[first_row_of_key].tolist()],
            strict=True,
        )
    )
    counters = state.periods(key_names)
    used0 = np.array([c.used.get(name, 0) for c in counters], dtype=np.int64)
    if int(saturation.min()) == int(saturation.max()):  # one allowance for every row: the usual case
        key_sat_low = key_sat_high = np.full(key_count, int(saturation[0]), dtype=np.int64)
    else:
        key_sat_low = np.full(key_count, np.iinfo(np.int64).max, dtype=np.int64)
        key_sat_high = np.zeros(key_count, dtype=np.int64)
        np.minimum.at(key_sat_low, key, saturation)
        np.maximum.at(key_sat_high, key, saturation)
    per_key = np.bincount(key, minlength=key_count)
    # keys mixing allowances (a plan version changing mid-period) or risking int64 sums walk row by row
    slow_key = (key_sat_low != key_sat_high) | (
        per_key.astype(np.float64) * (key_sat_high + 1) + used0 >= float(INT64_SAFE)
    )
    position = np.zeros(rows.shape[0], dtype=np.int64)
    fast = ~slow_key[key]
    sat = key_sat_high[key]
    ids = columns.id[rows]
    has_applied = np.array([bool(c.applied_ids.get(name)) for c in counters], dtype=bool)
    stored = np.full(rows.shape[0], -1, dtype=np.int64)
    check = np.flatnonzero(fast & has_applied[key])
    if check.size:  # replays: ids this counter already applied in an earlier batch
        check_keys = key[check].tolist()
        index_of = {k: counters[k].index(name) for k in set(check_keys)}
        stored[check] = [index_of[k].get(i, -1) for k, i in zip(check_keys, ids[check].tolist(), strict=True)]
    replay = stored >= 0
    new = fast & ~replay
    # an id twice among this batch's new rows of a key: those keys are walked row by row below
    repeated = np.zeros(key_count, dtype=bool)
    new_rows = np.flatnonzero(new)
    new_ids = ids[new_rows].tolist()
    if len(set(new_ids)) < len(new_ids):
        seen: set[tuple[int, str]] = set()
        for k, record_id in zip(key[new_rows].tolist(), new_ids, strict=True):
            if (k, record_id) in seen:
                repeated[k] = True
            seen.add((k, record_id))
        new &= ~repeated[key]
    contribution = np.where(new, np.minimum(billed, sat), 0)[order]
    running = np.cumsum(contribution)
    before = running - contribution
    key_sorted = key[order]
    group_start = np.ones(order.shape[0], dtype=bool)
    group_start[1:] = key_sorted[1:] != key_sorted[:-1]
    start_index = np.maximum.accumulate(np.where(group_start, np.arange(order.shape[0]), 0))
    exclusive = before - before[start_index]  # int64 wrap-around cancels: per-key sums fit (checked above)
    position[order] = np.minimum(sat[order], used0[key_sorted] + exclusive)
    position = np.where(replay, stored, position)

    # write back, in event order: the records worth remembering for replays, then each key's use
    remembered = order[(new & (position < sat))[order]]
    if remembered.size:
        remembered_keys = key[remembered]
        cuts = np.flatnonzero(remembered_keys[1:] != remembered_keys[:-1]) + 1
        lows = [0, *cuts.tolist()]
        highs = [*cuts.tolist(), remembered.shape[0]]
        id_list = ids[remembered].tolist()
        position_list = position[remembered].tolist()
        for k, low, high in zip(remembered_keys[lows].tolist(), lows, highs, strict=True):
            period_counters = counters[k]
            if name in period_counters.applied_ids:
                period_counters.remember(name, id_list[low:high], position_list[low:high])
            else:  # the common first write of a period: hand over the slices
                period_counters.applied_ids[name] = id_list[low:high]
                period_counters.applied_at[name] = position_list[low:high]
    # each key's total is its running sum at its last row in event order
    group_end = np.append(np.flatnonzero(group_start[1:]), order.shape[0] - 1) if order.size else group_start[:0]
    totals = np.zeros(key_count, dtype=np.int64)
    totals[key_sorted[group_end]] = (exclusive + contribution)[group_end]
    keys_with_new = np.flatnonzero(np.bincount(key[new], minlength=key_count) > 0)
    new_used = np.minimum(key_sat_high, used0 + totals)[keys_with_new].tolist()
    for k, value in zip(keys_with_new.tolist(), new_used, strict=True):
        counters[k].used[name] = value
    state.mark_changed_many([key_names[k] for k in keys_with_new.tolist()])
    walk = slow_key | repeated
    if walk.any():
        _sequential_positions(
            name, columns, counted, key, counters, key_names, order[walk[key[order]]], state, position
        )
    return position


def _sequential_positions(
    name: str,
    columns: UsageColumns,
    counted: _CountedRows,
    key: np.ndarray,
    counters: list[PeriodCounters],
    key_names: list[tuple[str, str]],
    order: np.ndarray,
    state: RatingState,
    position: np.ndarray,
) -> None:
    """The reference's counter walk, row by row, for the keys the vector path leaves alone."""
    for i in order.tolist():
        k = int(key[i])
        period_counters = counters[k]
        record_id = str(columns.id[counted.rows[i]])
        applied_at = period_counters.position_of(name, record_id)
        if applied_at is not None:
            position[i] = applied_at
            continue
        sat = int(counted.saturation[i])
        current = period_counters.used.get(name, 0)
        period_counters.used[name] = min(sat, current + int(counted.billed[i]))
        if current < sat:
            period_counters.remember(name, [record_id], [current])
        position[i] = current
        state.mark_changed(*key_names[k])


__all__ = ["CountedGroup", "allowance_positions"]
