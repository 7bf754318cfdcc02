"""The vectorised rating kernel: the reference's arithmetic over whole columns, in int64.

Money inside the kernel is ``whole + remainder / L`` minor units at the plan's precision, where L
is the common denominator of the charge's prices per base unit, so sums are exact and rounding is
decided exactly as ``Decimal.quantize`` decides it. Records are grouped by (plan version, charge);
each group is priced with a few numpy passes. Allowance positions come from a sort by
(account, period, start, id) and a running sum. Rows whose numbers could overflow the int64 path
take exact Python-integer detours, and a plan whose prices cannot be held in int64 at all is
handed back to the caller for the reference (see :func:`compile_plan`).
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import pandas as pd

from rating.catalog import Catalog, Plan
from rating.charges import LineArrays, Pricing, UsageCharge
from rating.charges.allowance import free_units_many, take_free_many
from rating.charges.fees import connect_fee_applies_many, minimum_applies_many
from rating.columns import UsageColumns
from rating.money import AMOUNT_SCALE, INT64_SAFE, MAX_AMOUNT, minor_units, round_up_mask, scaled_multiplier
from rating.state import RatingState
from rating.timeline import Segments, apportion_many, band_segments, periods_of
from rating.units import MAX_QUANTITY, MAX_SPAN_MS

MAX_PARTS_PER_LINE = 4096  # bounds the remainder sum: parts * L must stay below INT64_SAFE


@dataclass(frozen=True)
class CompiledCharge:
    """A charge's prices as integers: ``numerators[rate] / denominator`` minor units per base unit."""

    charge: UsageCharge
    denominator: int
    numerators: np.ndarray
    fee_minor: int
    minimum_minor: int


@dataclass(frozen=True)
class CompiledPlan:
    plan: Plan
    charges: tuple[CompiledCharge, ...]
    limit_minor: int  # MAX_AMOUNT in minor units at the plan's precision


_COMPILED: weakref.WeakKeyDictionary[Plan, CompiledPlan | None] = weakref.WeakKeyDictionary()


def compile_plan(plan: Plan) -> CompiledPlan | None:
    """Integer form of a plan, or None when a price cannot be held exactly in int64 (reference only)."""
    if plan in _COMPILED:
        return _COMPILED[plan]
    compiled_charges = []
    result: CompiledPlan | None = None
    for charge in plan.charges:
        multipliers = [scaled_multiplier(rate.price, rate.divisor, plan.precision) for rate in charge.rates]
        denominator = math.lcm(*(m.denominator for m in multipliers)) if multipliers else 1
        numerators = [int(m * denominator) for m in multipliers]
        if denominator * (max(numerators, default=0) + 1) >= INT64_SAFE or denominator * MAX_PARTS_PER_LINE >= (
            INT64_SAFE
        ):
            break
        compiled_charges.append(
            CompiledCharge(
                charge,
                denominator,
                np.array(numerators, dtype=np.int64),
                minor_units(charge.connect_fee, plan.precision),
                minor_units(charge.minimum, plan.precision),
            )
        )
    else:
        result = CompiledPlan(plan, tuple(compiled_charges), MAX_AMOUNT * 10**plan.precision)
    _COMPILED[plan] = result
    return result


@dataclass
class KernelOutput:
    """Per-row outcome and the line and part tables of rated rows (lines sorted by row, charge)."""

    refused: np.ndarray  # bool per row
    plan_index: np.ndarray  # int64 per row, -1 when refused
    amount_scaled: np.ndarray  # int64 per row at AMOUNT_SCALE decimals
    reasons: dict[int, str]  # refused rows whose reason is already known (others: ask precheck)
    fallback: np.ndarray  # rows of plans the kernel cannot price; the caller rates them with the reference
    line_row: np.ndarray
    line_charge: np.ndarray
    line_billed: np.ndarray
    line_free: np.ndarray
    line_amount: np.ndarray  # minor units at the plan's precision
    line_fee: np.ndarray
    line_minimum: np.ndarray
    part_line: np.ndarray
    part_rate: np.ndarray
    part_qty: np.ndarray


def _metered(columns: UsageColumns, rows: np.ndarray, meter: str) -> np.ndarray:
    if meter == "bytes":
        return columns.bytes_up[rows] + columns.bytes_down[rows]
    if meter == "bytes_up":
        return columns.bytes_up[rows]
    if meter == "bytes_down":
        return columns.bytes_down[rows]
    if meter == "duration":
        duration = columns.duration_s[rows]
        derived = -(-(columns.end_ms[rows] - columns.start_ms[rows]) // 1000)
        return np.where(duration >= 0, duration, derived)
    return np.ones(rows.shape[0], dtype=np.int64)


def _billed(charge: UsageCharge, quantity: np.ndarray) -> np.ndarray:
    first, step = charge.increments.first, charge.increments.step
    if first == 1 and step == 1:
        return quantity.copy()
    above = first + -(-(quantity - first) // step) * step
    return np.where(quantity <= 0, 0, np.where(quantity <= first, first, above))


def _resolve_plans(catalog: Catalog, account_codes: np.ndarray, accounts: np.ndarray, start_ms: np.ndarray) -> np.ndarray:
    """Plan index per row from each distinct account's timeline (a handful of change points)."""
    starts: list[int] = []
    indexes: list[int] = []
    offsets = np.empty(accounts.shape[0], dtype=np.int64)
    counts = np.empty(accounts.shape[0], dtype=np.int64)
    for code, account in enumerate(accounts.tolist()):
        timeline_starts, timeline_indexes = catalog.account_timeline(str(account))
        offsets[code] = len(starts)
        counts[code] = len(timeline_starts)
        starts.extend(timeline_starts)
        indexes.extend(timeline_indexes)
    all_starts = np.array(starts, dtype=np.int64)
    all_indexes = np.array(indexes, dtype=np.int64)
    base = offsets[account_codes]
    position = base.copy()
    row_counts = counts[account_codes]
    last = all_starts.shape[0] - 1
    for step in range(1, int(counts.max(initial=1))):  # walk forward while the next change has begun
        candidate = np.minimum(base + step, last)
        advance = (step < row_counts) & (all_starts[candidate] <= start_ms)
        position = np.where(advance, candidate, position)
    return all_indexes[position]


@dataclass
class _Group:
    """Rows of one (plan version, charge) line."""

    plan_index: int
    charge_index: int
    compiled: CompiledCharge
    rows: np.ndarray
    quantity: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    selector: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    billed: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    position: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def keep(self, mask: np.ndarray) -> None:
        self.rows, self.quantity, self.selector = self.rows[mask], self.quantity[mask], self.selector[mask]


def _selects(pricing: Pricing) -> bool:
    return type(pricing).select_many is not Pricing.select_many


def rate_kernel(columns: UsageColumns, catalog: Catalog, state: RatingState) -> KernelOutput:
    """Rate a columnar batch; rows of plans that :func:`compile_plan` refuses come back in ``fallback``."""
    size = columns.size
    reasons = columns.invalid_rows()
    refused = np.zeros(size, dtype=bool)
    if reasons:
        refused[np.fromiter(reasons, dtype=np.int64, count=len(reasons))] = True
    refused |= (columns.end_ms - columns.start_ms) > MAX_SPAN_MS
    account_codes, accounts = pd.factorize(columns.account)
    account_codes = account_codes.astype(np.int64)
    plan_index = _resolve_plans(catalog, account_codes, np.asarray(accounts, dtype=object), columns.start_ms)
    plan_index = np.where(refused, -1, plan_index)
    refused |= plan_index < 0
    compiled_plans = [compile_plan(plan) for plan in catalog.plans]
    kernel_plan = np.array([c is not None for c in compiled_plans] + [False], dtype=bool)
    fallback = np.flatnonzero(~refused & ~kernel_plan[plan_index])
    active = ~refused & kernel_plan[plan_index]

    groups = _line_groups(columns, catalog, compiled_plans, plan_index, active, refused)
    for group in groups:  # every refusal is decided before any allowance is touched
        charge = group.compiled.charge
        group.quantity = _metered(columns, group.rows, charge.meter)
        refused[group.rows[group.quantity > MAX_QUANTITY]] = True
        if _selects(charge.pricing):
            group.selector = charge.pricing.select_many(columns.destination[group.rows])
            refused[group.rows[group.selector < 0]] = True
        else:
            group.selector = np.zeros(group.rows.shape[0], dtype=np.int64)
    for group in groups:
        group.keep(~refused[group.rows])
        group.billed = _billed(group.compiled.charge, group.quantity)
        group.position = np.zeros(group.rows.shape[0], dtype=np.int64)
    _allowance_positions(columns, catalog, groups, account_codes, state)

    line_tables: list[tuple[np.ndarray, ...]] = []
    part_tables: list[tuple[np.ndarray, ...]] = []
    total = np.zeros(size, dtype=np.int64)
    over_limit = np.zeros(size, dtype=bool)
    line_count = 0
    for group in groups:
        lines, parts, amount = _price_group(columns, catalog.plans[group.plan_index], group)
        limit = compiled_plans[group.plan_index].limit_minor  # type: ignore[union-attr]
        over_limit[group.rows[amount >= limit]] = True
        total[group.rows] = np.minimum(total[group.rows] + np.minimum(amount, limit), limit)
        line_tables.append(lines)
        part_tables.append((parts[0] + line_count, parts[1], parts[2]))
        line_count += group.rows.shape[0]
    limit_per_row = np.array(
        [c.limit_minor if c is not None else 0 for c in compiled_plans] + [0], dtype=np.int64
    )[plan_index]
    over_limit |= active & ~refused & (total >= limit_per_row)
    for row in np.flatnonzero(over_limit).tolist():
        from rating.refusals import amount_too_large

        reasons[row] = amount_too_large(catalog.plans[int(plan_index[row])])
    refused |= over_limit
    refused[fallback] = False
    precision = np.array([p.precision for p in catalog.plans] + [AMOUNT_SCALE], dtype=np.int64)[plan_index]
    scaled = total * (10 ** (AMOUNT_SCALE - precision))
    rated = ~refused & active
    return _assemble(size, refused, plan_index, np.where(rated, scaled, 0), reasons, fallback, line_tables, part_tables)


def _line_groups(
    columns: UsageColumns,
    catalog: Catalog,
    compiled_plans: list[CompiledPlan | None],
    plan_index: np.ndarray,
    active: np.ndarray,
    refused: np.ndarray,
) -> list[_Group]:
    """Rows per (plan, charge) from one stable sort by (plan, event type, service)."""
    type_codes, types = pd.factorize(columns.event_type)
    service_codes, services = pd.factorize(columns.service)
    combo = type_codes.astype(np.int64) * max(len(services), 1) + service_codes
    key = plan_index * (max(len(types), 1) * max(len(services), 1)) + combo
    rows = np.flatnonzero(active)
    order = rows[np.argsort(key[rows], kind="stable")]
    sorted_keys = key[order]
    bounds = np.flatnonzero(np.diff(sorted_keys)) + 1
    starts = np.concatenate([[0], bounds]) if order.size else np.zeros(0, dtype=np.int64)
    ends = np.concatenate([bounds, [order.size]]) if order.size else np.zeros(0, dtype=np.int64)
    pieces: dict[tuple[int, int], list[np.ndarray]] = {}
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        first = int(order[start])
        plan = catalog.plans[int(plan_index[first])]
        applicable = plan.charges_for(str(columns.event_type[first]), str(columns.service[first]))
        if not applicable:
            refused[order[start:end]] = True
            continue
        for charge_index in applicable:
            pieces.setdefault((int(plan_index[first]), charge_index), []).append(order[start:end])
    groups = []
    for (plan_at, charge_index), parts in sorted(pieces.items()):
        compiled = compiled_plans[plan_at]
        assert compiled is not None
        groups.append(_Group(plan_at, charge_index, compiled.charges[charge_index], np.concatenate(parts)))
    return groups


def _allowance_positions(
    columns: UsageColumns, catalog: Catalog, groups: list[_Group], account_codes: np.ndarray, state: RatingState
) -> None:
    """Period-to-date position of every counted row, consuming allowance in (start, id) order."""
    by_counter: dict[str, list[_Group]] = {}
    for group in groups:
        if group.compiled.charge.has_counter and group.rows.size:
            by_counter.setdefault(group.compiled.charge.name, []).append(group)
    for name, members in by_counter.items():
        plans = [catalog.plans[g.plan_index] for g in members]
        charges = [g.compiled.charge for g in members]
        uniform = (
            len({c.counter_cap() for c in charges}) == 1
            and len({c.period for c in charges}) == 1
            and len({p.clock.timezone for p in plans}) == 1
        )
        labels: dict[str, int] = {}
        period_parts = []
        for group, plan, charge in zip(members, plans, charges, strict=True):
            periods = periods_of(plan.clock, charge.period, columns.start_ms[group.rows])
            remap = np.array([labels.setdefault(label, len(labels)) for label in periods.labels], dtype=np.int64)
            period_parts.append(remap[periods.code])
        rows = np.concatenate([g.rows for g in members])
        billed = np.concatenate([g.billed for g in members])
        saturation = np.concatenate([np.full(g.rows.shape[0], c.counter_cap() + 1) for g, c in zip(members, charges, strict=True)])
        period_code = np.concatenate(period_parts)
        label_list = list(labels)
        positions = _counter_positions(
            name, columns, rows, billed, saturation, account_codes[rows], period_code, label_list, state, uniform
        )
        offset = 0
        for group in members:
            group.position = positions[offset : offset + group.rows.shape[0]]
            offset += group.rows.shape[0]


def _event_order(columns: UsageColumns, rows: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Indexes into ``rows`` sorted by (key, start, id, input order), as the reference walks them."""
    start = columns.start_ms[rows]
    order = np.lexsort((rows, start, key))
    same = (key[order][1:] == key[order][:-1]) & (start[order][1:] == start[order][:-1])
    if same.any():  # ties on (key, start): order those few by id in Python
        tie_starts = np.flatnonzero(same & ~np.concatenate([[False], same[:-1]]))
        for tie in tie_starts.tolist():
            end = tie + 1
            while end < same.shape[0] and same[end]:
                end += 1
            block = order[tie : end + 1]
            ids = columns.id[rows[block]]
            order[tie : end + 1] = block[sorted(range(block.shape[0]), key=lambda i: (ids[i], rows[block[i]]))]
    return order


def _counter_positions(
    name: str,
    columns: UsageColumns,
    rows: np.ndarray,
    billed: np.ndarray,
    saturation: np.ndarray,
    account_code: np.ndarray,
    period_code: np.ndarray,
    period_labels: list[str],
    state: RatingState,
    uniform: bool,
) -> np.ndarray:
    key_raw = account_code * max(len(period_labels), 1) + period_code
    key, key_values = pd.factorize(key_raw)
    key = key.astype(np.int64)
    key_count = len(key_values)
    order = _event_order(columns, rows, key)
    first_row_of_key = np.full(key_count, -1, dtype=np.int64)
    first_row_of_key[key[::-1]] = np.arange(rows.shape[0] - 1, -1, -1)
    accounts = columns.account[rows[first_row_of_key]]
    counters = [
        state.period(str(accounts[k]), period_labels[int(period_code[first_row_of_key[k]])]) for k in range(key_count)
    ]
    sat = int(saturation[0])
    per_key = np.bincount(key, minlength=key_count)
    used0 = np.array([c.used.get(name, 0) for c in counters], dtype=np.int64)
    if not uniform or int(per_key.max()) * (sat + 1) + int(used0.max(initial=0)) >= INT64_SAFE:
        return _sequential_positions(name, columns, rows, billed, saturation, key, counters, order, state)

    ids = columns.id[rows]
    stored = np.full(rows.shape[0], -1, dtype=np.int64)
    applied_of_key = [c.applied.get(name) for c in counters]
    if any(applied_of_key):
        has_applied = np.array([bool(a) for a in applied_of_key], dtype=bool)
        for i in np.flatnonzero(has_applied[key]).tolist():
            found = applied_of_key[key[i]].get(ids[i])  # type: ignore[union-attr]
            if found is not None:
                stored[i] = found
    replay = stored >= 0
    duplicate_of = np.full(rows.shape[0], -1, dtype=np.int64)
    fresh = np.flatnonzero(~replay)
    if len(set(ids[fresh].tolist())) < fresh.shape[0]:  # an id twice in the batch: later ones replay the first
        first_seen: dict[tuple[int, str], int] = {}
        for i in order.tolist():
            marker = (int(key[i]), ids[i])
            if marker in first_seen:
                duplicate_of[i] = first_seen[marker]
            else:
                first_seen[marker] = i
    new = ~replay & (duplicate_of < 0)
    contribution = np.where(new, np.minimum(billed, sat), 0)[order]
    running = np.cumsum(contribution)
    before = running - contribution
    key_sorted = key[order]
    group_start = np.ones(order.shape[0], dtype=bool)
    group_start[1:] = key_sorted[1:] != key_sorted[:-1]
    start_index = np.maximum.accumulate(np.where(group_start, np.arange(order.shape[0]), 0))
    exclusive = before - before[start_index]
    position = np.empty(rows.shape[0], dtype=np.int64)
    position[order] = np.minimum(sat, used0[key_sorted] + exclusive)
    position = np.where(replay, stored, position)
    dup_rows = np.flatnonzero(duplicate_of >= 0)
    position[dup_rows] = position[duplicate_of[dup_rows]]

    # write back: saturated use per key, and positions worth remembering for replays
    totals = np.bincount(key, weights=None, minlength=key_count) * 0
    np.add.at(totals, key[new], np.minimum(billed[new], sat))
    keys_with_new = np.flatnonzero(np.bincount(key[new], minlength=key_count) > 0)
    for k in keys_with_new.tolist():
        counters[k].used[name] = int(min(sat, int(used0[k]) + int(totals[k])))
        state.mark_changed(str(accounts[k]), period_labels[int(period_code[first_row_of_key[k]])])
    remember = np.flatnonzero(new & (position < sat))
    if remember.size:
        remember = remember[np.argsort(key[remember], kind="stable")]
        remember_keys = key[remember]
        cuts = np.flatnonzero(np.diff(remember_keys)) + 1
        for chunk in np.split(remember, cuts):
            k = int(key[chunk[0]])
            applied = counters[k].applied.setdefault(name, {})
            applied.update(zip(ids[chunk].tolist(), position[chunk].tolist(), strict=True))
    return position


def _sequential_positions(
    name: str,
    columns: UsageColumns,
    rows: np.ndarray,
    billed: np.ndarray,
    saturation: np.ndarray,
    key: np.ndarray,
    counters: list,
    order: np.ndarray,
    state: RatingState,
) -> np.ndarray:
    """The reference's counter walk, row by row (mixed allowances across plan versions, huge sums)."""
    position = np.zeros(rows.shape[0], dtype=np.int64)
    for i in order.tolist():
        period_counters = counters[int(key[i])]
        record_id = str(columns.id[rows[i]])
        applied = period_counters.applied.get(name)
        if applied is not None and record_id in applied:
            position[i] = applied[record_id]
            continue
        sat = int(saturation[i])
        current = period_counters.used.get(name, 0)
        period_counters.used[name] = min(sat, current + int(billed[i]))
        if current < sat:
            period_counters.applied.setdefault(name, {})[record_id] = current
        position[i] = current
    for k in np.unique(key).tolist():
        first = int(rows[np.flatnonzero(key == k)[0]])
        state.mark_changed(str(columns.account[first]), _period_of(counters, state, k))
    return position


def _period_of(counters: list, state: RatingState, k: int) -> str:
    target = counters[k]
    for (account, period), value in state.items():
        if value is target:
            return period
    return ""


def _segments(columns: UsageColumns, group: _Group) -> tuple[Segments, np.ndarray]:
    charge = group.compiled.charge
    count = group.rows.shape[0]
    if charge.bands is None or count == 0:
        rows = np.arange(count, dtype=np.int64)
        return Segments(rows, np.zeros(count, dtype=np.int64), columns.end_ms[group.rows], rows), group.billed
    start, end = columns.start_ms[group.rows], columns.end_ms[group.rows]
    segments = band_segments(charge.bands, start, end, split_at_edges=charge.split == "proportional")
    return segments, apportion_many(group.billed, start, end, segments)


def _price_group(
    columns: UsageColumns, plan: Plan, group: _Group
) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...], np.ndarray]:
    compiled = group.compiled
    charge = compiled.charge
    count = group.rows.shape[0]
    segments, seg_qty = _segments(columns, group)
    free = free_units_many(charge.included, group.position, group.billed)
    seg_chargeable = take_free_many(segments.row, seg_qty, segments.first, free)
    chargeable = group.billed - free
    lines = LineArrays(
        group.billed, free, chargeable, group.position, group.selector, segments.row, segments.band, seg_chargeable
    )
    parts = charge.pricing.kernel_parts(lines)
    amount = _amounts(compiled, plan, parts.row, parts.rate, parts.qty, count)
    fee = connect_fee_applies_many(group.quantity) & (compiled.fee_minor > 0)
    whole, remainder = amount
    whole = whole + np.where(fee, compiled.fee_minor, 0)
    rounded = whole + round_up_mask(whole, remainder, compiled.denominator, plan.rounding)
    minimum = minimum_applies_many(rounded, compiled.minimum_minor, chargeable)
    rounded = np.where(minimum, compiled.minimum_minor, rounded)
    line_table = (
        group.rows,
        np.full(count, group.charge_index, dtype=np.int64),
        group.billed,
        free,
        rounded,
        fee,
        minimum,
    )
    return line_table, (parts.row, parts.rate, parts.qty), rounded


def _amounts(
    compiled: CompiledCharge, plan: Plan, part_row: np.ndarray, part_rate: np.ndarray, part_qty: np.ndarray, rows: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact sum per row of ``qty * numerator / L`` as (whole minor units, remainder over L)."""
    denominator = compiled.denominator
    numerator = compiled.numerators[part_rate]
    high, low = np.divmod(part_qty, denominator)
    limit = MAX_AMOUNT * 10**plan.precision
    # a part alone reaching the limit refuses the record anyway: cap it instead of overflowing
    safe_high = np.where(numerator > 0, limit // np.maximum(numerator, 1), high)
    whole = np.where(high > safe_high, limit, high * numerator)
    product = low * numerator
    carry, remainder = np.divmod(product, denominator)
    whole = whole + carry
    if part_row.shape[0] == rows and (rows == 0 or bool(np.all(part_row == np.arange(rows)))):
        return whole, remainder
    starts = np.searchsorted(part_row, np.arange(rows))
    whole_sum = np.add.reduceat(np.minimum(whole, limit), starts) if rows else whole[:0]
    remainder_sum = np.add.reduceat(remainder, starts) if rows else remainder[:0]
    carry, remainder_sum = np.divmod(remainder_sum, denominator)
    return whole_sum + carry, remainder_sum


def _assemble(
    size: int,
    refused: np.ndarray,
    plan_index: np.ndarray,
    amount_scaled: np.ndarray,
    reasons: dict[int, str],
    fallback: np.ndarray,
    line_tables: list[tuple[np.ndarray, ...]],
    part_tables: list[tuple[np.ndarray, ...]],
) -> KernelOutput:
    empty = np.zeros(0, dtype=np.int64)
    if line_tables:
        line_cols = [np.concatenate([t[i] for t in line_tables]) for i in range(7)]
        part_cols = [np.concatenate([t[i] for t in part_tables]) for i in range(3)]
    else:
        line_cols = [empty] * 5 + [empty.astype(bool)] * 2
        part_cols = [empty] * 3
    keep_line = ~refused[line_cols[0]]
    old_ids = np.flatnonzero(keep_line)
    order = old_ids[np.lexsort((line_cols[1][old_ids], line_cols[0][old_ids]))]
    new_id = np.full(line_cols[0].shape[0], -1, dtype=np.int64)
    new_id[order] = np.arange(order.shape[0])
    part_line = new_id[part_cols[0]]
    keep_part = (part_line >= 0) & (part_cols[2] > 0)
    part_order = np.flatnonzero(keep_part)
    part_order = part_order[np.argsort(part_line[part_order], kind="stable")]
    return KernelOutput(
        refused=refused,
        plan_index=np.where(refused, -1, plan_index),
        amount_scaled=amount_scaled,
        reasons=reasons,
        fallback=fallback,
        line_row=line_cols[0][order],
        line_charge=line_cols[1][order],
        line_billed=line_cols[2][order],
        line_free=line_cols[3][order],
        line_amount=line_cols[4][order],
        line_fee=line_cols[5][order],
        line_minimum=line_cols[6][order],
        part_line=part_line[part_order],
        part_rate=part_cols[1][part_order],
        part_qty=part_cols[2][part_order],
    )


__all__ = ["CompiledCharge", "CompiledPlan", "KernelOutput", "compile_plan", "rate_kernel"]
