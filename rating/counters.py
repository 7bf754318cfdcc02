"""Allowance counters, vectorised: the period-to-date position of every counted row of a batch.

Every counted row of a batch belongs to one *run*: a counter (charges of one name across a plan's
versions, or a named bundle) of one (account, period). All runs are laid out by one sort on
(account, period, counter, start) with ties broken by (id, input row), as the reference walks
them, and one running sum gives each row the units its run used before it, saturated just past
the point where prices stop depending on it. The state is read and written once per run, not per
row. Replayed ids take the position stored when they were first applied. Runs that mix
allowances, repeat an id inside the batch or could overflow int64 are walked row by row exactly
like the reference.
"""

from __future__ import annotations

import itertools
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
    members = [group for group in groups if group.charge.has_counter and group.rows.size]
    if not members:
        return
    names: dict[str, int] = {}
    labels: dict[str, int] = {}
    period_parts, counter_parts, saturation_parts = [], [], []
    for group in members:  # each member keeps its own clock and period kind, as the reference does
        charge = group.charge
        count = group.rows.shape[0]
        periods = periods_of(catalog.plans[group.plan_index].clock, charge.period, columns.start_ms[group.rows])
        remap = np.array([labels.setdefault(label, len(labels)) for label in periods.labels], dtype=np.int64)
        period_parts.append(remap[periods.code])
        counter_parts.append(np.full(count, names.setdefault(charge.counter, len(names)), dtype=np.int64))
        saturation_parts.append(np.full(count, charge.counter_cap() + 1, dtype=np.int64))
    rows = np.concatenate([group.rows for group in members])
    period_code = np.concatenate(period_parts)
    counted = _CountedRows(
        rows=rows,
        billed=np.concatenate([group.billed for group in members]),
        saturation=np.concatenate(saturation_parts),
        counter=np.concatenate(counter_parts),
        key_raw=account_codes[rows] * max(len(labels), 1) + period_code,
        period_code=period_code,
        period_labels=list(labels),
        names=list(names),
    )
    positions = _positions(columns, counted, state)
    offset = 0
    for group in members:
        group.position = positions[offset : offset + group.rows.shape[0]]
        offset += group.rows.shape[0]


@dataclass(frozen=True)
class _CountedRows:
    """Every counted row of a batch, whatever its counter."""

    rows: np.ndarray
    billed: np.ndarray
    saturation: np.ndarray  # counter cap + 1: past it the price no longer depends on the position
    counter: np.ndarray  # index into names
    key_raw: np.ndarray  # (account, period) as one integer
    period_code: np.ndarray  # index into period_labels
    period_labels: list[str]
    names: list[str]


@dataclass(frozen=True)
class _Runs:
    """The runs (one counter of one account and period) of the counted rows, in event order.

    Runs are numbered in sort order, so the runs of one state entry (account, period) are adjacent
    and entries are numbered in the same order.
    """

    order: np.ndarray  # counted rows in event order, run after run
    run_sorted: np.ndarray  # run of each row of ``order``
    run: np.ndarray  # run of each counted row
    starts: np.ndarray  # first index into ``order`` of each run
    sizes: np.ndarray
    entry: np.ndarray  # state entry (account, period) of each run
    counter: np.ndarray  # counter of each run: an index into names
    entry_row: np.ndarray  # a counted row of each entry, to name it


def _event_order(columns: UsageColumns, rows: np.ndarray, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indexes into ``rows`` sorted by (key, start, id, input order), as the reference walks them, and
    the keys in that order."""
    start = columns.start_ms[rows]
    low = int(start.min(initial=0))
    span = int(start.max(initial=0)) - low + 1
    if (int(key.max(initial=0)) + 1) * span < INT64_SAFE:  # one int64 sort key: (key, start)
        composite = key * span
        composite += start
        composite -= low
        order = np.argsort(composite)  # ties are ordered below: no need for a stable sort
        sorted_composite = composite[order]
        same = sorted_composite[1:] == sorted_composite[:-1]
        sorted_key = sorted_composite // span
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
    return order, sorted_key


def _runs(columns: UsageColumns, counted: _CountedRows) -> _Runs:
    """One sort of the counted rows by (account, period, counter, start, id) lays out every run."""
    width = len(counted.names)
    run_raw = counted.key_raw * width + counted.counter
    order, sorted_raw = _event_order(columns, counted.rows, run_raw)
    first = np.ones(order.shape[0], dtype=bool)
    first[1:] = sorted_raw[1:] != sorted_raw[:-1]
    starts = np.flatnonzero(first)
    run_sorted = np.cumsum(first) - 1
    run = np.empty(order.shape[0], dtype=np.int64)
    run[order] = run_sorted
    key_of_run = sorted_raw[starts] // width
    first_of_entry = np.ones(starts.shape[0], dtype=bool)
    first_of_entry[1:] = key_of_run[1:] != key_of_run[:-1]
    return _Runs(
        order=order,
        run_sorted=run_sorted,
        run=run,
        starts=starts,
        sizes=np.diff(np.append(starts, order.shape[0])),
        entry=np.cumsum(first_of_entry) - 1,
        counter=sorted_raw[starts] % width,
        entry_row=order[starts[first_of_entry]],
    )


def _positions(columns: UsageColumns, counted: _CountedRows, state: RatingState) -> np.ndarray:
    """Positions of the counted rows: a running sum per run in event order.

    Runs where an id repeats inside the batch, runs that mix allowances (a plan version changing
    mid-period) and runs whose sums could leave int64 are walked row by row, like the reference.
    """
    rows, billed, saturation = counted.rows, counted.billed, counted.saturation
    runs = _runs(columns, counted)
    run, order, run_sorted = runs.run, runs.order, runs.run_sorted
    labels = counted.period_labels
    entry_names = list(
        zip(
            columns.account[rows[runs.entry_row]].tolist(),
            [labels[p] for p in counted.period_code[runs.entry_row].tolist()],
            strict=True,
        )
    )
    entries = state.lookup(entry_names)  # None: an entry this batch creates
    used0, has_applied = _use_before(entries, runs, counted.names)

    sat_sorted = saturation[order]
    if int(saturation.min()) == int(saturation.max()):  # one allowance for every row
        sat_low = sat_high = np.full(runs.starts.shape[0], int(saturation[0]), dtype=np.int64)
    else:
        sat_low = np.minimum.reduceat(sat_sorted, runs.starts)
        sat_high = np.maximum.reduceat(sat_sorted, runs.starts)
    # runs mixing allowances (a plan version changing mid-period) or risking int64 sums walk row by row
    slow = (sat_low != sat_high) | (runs.sizes.astype(np.float64) * (sat_high + 1) + used0 >= float(INT64_SAFE))
    fast = ~slow[run]
    stored = _replayed(columns, counted, runs, entries, fast & has_applied[run])  # -1: not a replay
    new = fast if stored is None else fast & (stored < 0)
    repeated = _repeated_runs(columns, counted, run, new)  # walked row by row below
    if repeated.any():
        new = new & ~repeated[run]

    # in event order: each new row's contribution, and the use of its run before it
    new_sorted = new[order]
    contribution = billed[order]
    np.minimum(contribution, sat_sorted, out=contribution)
    contribution *= new_sorted
    exclusive = np.cumsum(contribution)
    exclusive -= contribution
    exclusive -= exclusive[runs.starts][run_sorted]  # int64 wrap-around cancels: run sums fit (checked)
    position_sorted = used0[run_sorted]
    position_sorted += exclusive
    np.minimum(position_sorted, sat_sorted, out=position_sorted)
    position = np.empty(rows.shape[0], dtype=np.int64)
    position[order] = position_sorted
    if stored is not None:
        position = np.where(stored >= 0, stored, position)

    written = _write_back(
        columns, counted, runs, entries, new_sorted, position_sorted, sat_sorted, exclusive + contribution, used0
    )
    _hand_over(state, entries, entry_names, runs, written)
    walk = slow | repeated
    if walk.any():
        _sequential_positions(
            columns,
            counted,
            runs,
            entries,  # type: ignore[arg-type]
            entry_names,
            order[walk[run_sorted]],
            state,
            position,
        )
    return position


def _use_before(entries: list[PeriodCounters | None], runs: _Runs, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per run, the use its counter had before this batch and whether it remembers records (for
    replays); nothing when the entry is new, so a batch of new periods reads nothing."""
    used0 = np.zeros(runs.starts.shape[0], dtype=np.int64)
    has_applied = np.zeros(runs.starts.shape[0], dtype=bool)
    if all(entry is None for entry in entries):
        return used0, has_applied
    known_entry = np.array([entry is not None for entry in entries], dtype=bool)
    known = np.flatnonzero(known_entry[runs.entry])
    pairs = list(zip(runs.entry[known].tolist(), [names[c] for c in runs.counter[known].tolist()], strict=True))
    used0[known] = [entries[e].used.get(name, 0) for e, name in pairs]
    has_applied[known] = [entries[e].has_applied(name) for e, name in pairs]
    return used0, has_applied


def _replayed(
    columns: UsageColumns,
    counted: _CountedRows,
    runs: _Runs,
    entries: list[PeriodCounters | None],
    candidates: np.ndarray,
) -> np.ndarray | None:
    """The position stored for each counted row whose id its run already applied in an earlier batch
    (-1 for the others), or None when no row can be one."""
    check = np.flatnonzero(candidates)
    if not check.size:
        return None
    check_runs = runs.run[check].tolist()
    index_of = {
        r: entries[int(runs.entry[r])].index(counted.names[int(runs.counter[r])])  # type: ignore[union-attr]
        for r in set(check_runs)
    }
    check_ids = columns.id[counted.rows[check]].tolist()
    stored = np.full(counted.rows.shape[0], -1, dtype=np.int64)
    stored[check] = [index_of[r].get(i, -1) for r, i in zip(check_runs, check_ids, strict=True)]
    return stored


def _hand_over(
    state: RatingState,
    entries: list[PeriodCounters | None],
    entry_names: list[tuple[str, str]],
    runs: _Runs,
    written: _Written,
) -> None:
    """Give the state the entries this batch created, and note the entries it changed."""
    if len(written.made) == len(entries):  # a batch of new periods only: every entry built and changed
        state.adopt(entry_names, entries)  # type: ignore[arg-type]
        state.mark_changed_many(entry_names)
        return
    built = set(written.made)
    made = [e for e, entry in enumerate(entries) if entry is None or e in built]
    for e in made:  # entries only walked row by row still need their counters
        if entries[e] is None:
            entries[e] = PeriodCounters()
    state.adopt([entry_names[e] for e in made], [entries[e] for e in made])  # type: ignore[misc]
    changed = np.zeros(len(entries), dtype=bool)
    changed[runs.entry[written.runs]] = True
    state.mark_changed_many(list(itertools.compress(entry_names, changed.tolist())))


def _repeated_runs(columns: UsageColumns, counted: _CountedRows, run: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Runs in which an id occurs twice among the new rows. Usually none, and one pass over the ids,
    in input order, proves it: distinct hashes mean distinct ids; otherwise (a repeat, or a rare
    collision) the ids are compared exactly."""
    repeated = np.zeros(int(run.max(initial=-1)) + 1, dtype=bool)
    marked = np.zeros(columns.size, dtype=bool)
    marked[counted.rows[new]] = True  # a row counted by two counters is one record, not a repeat
    distinct = itertools.compress(columns.id.tolist(), marked.tolist())
    hashes = np.fromiter(map(hash, distinct), dtype=np.int64, count=int(np.count_nonzero(marked)))
    if not pd.Series(hashes).duplicated().any():
        return repeated
    new_rows = np.flatnonzero(new)
    seen: set[tuple[int, object]] = set()
    for r, record_id in zip(run[new_rows].tolist(), columns.id[counted.rows[new_rows]].tolist(), strict=True):
        if (r, record_id) in seen:
            repeated[r] = True
        seen.add((r, record_id))
    return repeated


@dataclass(frozen=True)
class _Written:
    runs: np.ndarray  # runs whose use this batch wrote
    made: list[int]  # entries it built


def _write_back(
    columns: UsageColumns,
    counted: _CountedRows,
    runs: _Runs,
    entries: list[PeriodCounters | None],
    new_sorted: np.ndarray,
    position_sorted: np.ndarray,
    sat_sorted: np.ndarray,
    inclusive: np.ndarray,
    used0: np.ndarray,
) -> _Written:
    """Store each run's use and, in event order, its new records below saturation with their positions.

    Arrays are in event order (indexed like ``runs.order``). New rows below saturation are a prefix
    of a run's new rows (positions only grow). An entry the state did not have is built whole.
    """
    run_count = runs.starts.shape[0]
    at = np.flatnonzero(new_sorted & (position_sorted < sat_sorted))  # remembered, run after run
    first = np.zeros(run_count, dtype=np.int64)  # per run, where its remembered rows start in ``at``
    count = np.zeros(run_count, dtype=np.int64)
    if at.size:
        remembered_runs = runs.run_sorted[at]
        starts = np.flatnonzero(np.concatenate([[True], remembered_runs[1:] != remembered_runs[:-1]]))
        first[remembered_runs[starts]] = starts
        count[remembered_runs[starts]] = np.diff(np.append(starts, at.shape[0]))
    id_list = columns.id[counted.rows[runs.order[at]]].tolist()
    position_list = position_sorted[at].tolist()

    with_new = np.flatnonzero(np.bincount(runs.run_sorted[new_sorted], minlength=run_count) > 0)
    last = runs.starts[with_new] + runs.sizes[with_new] - 1
    used = np.minimum(sat_sorted[last], used0[with_new] + inclusive[last])  # a fast run has one saturation
    names = counted.names
    made: list[int] = []
    targets = zip(
        runs.entry[with_new].tolist(),
        [names[c] for c in runs.counter[with_new].tolist()],
        used.tolist(),
        first[with_new].tolist(),
        (first[with_new] + count[with_new]).tolist(),
        strict=True,
    )
    for e, name, value, low, high in targets:
        entry = entries[e]
        if entry is None:  # the common first write of a period: build the entry whole
            if high > low:
                ids, positions = {name: id_list[low:high]}, {name: position_list[low:high]}
            else:
                ids, positions = {}, {}
            entries[e] = PeriodCounters(used={name: value}, applied_ids=ids, applied_at=positions)
            made.append(e)
            continue
        entry.used[name] = value
        if high == low:
            continue
        if name in entry.applied_ids:
            entry.remember(name, id_list[low:high], position_list[low:high])
        else:
            entry.applied_ids[name] = id_list[low:high]
            entry.applied_at[name] = position_list[low:high]
    return _Written(with_new, made)


def _sequential_positions(
    columns: UsageColumns,
    counted: _CountedRows,
    runs: _Runs,
    entries: list[PeriodCounters],
    key_names: list[tuple[str, str]],
    order: np.ndarray,
    state: RatingState,
    position: np.ndarray,
) -> None:
    """The reference's counter walk, row by row, for the runs the vector path leaves alone."""
    for i in order.tolist():
        r = int(runs.run[i])
        k = int(runs.entry[r])
        name = counted.names[int(runs.counter[r])]
        period_counters = entries[k]
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
