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

import numpy as np
import pandas as pd

from rating.catalog import Catalog, Plan
from rating.charges import LineArrays, Pricing, UsageCharge
from rating.charges.allowance import free_units_many, take_free_many
from rating.charges.fees import connect_fee_applies_many, minimum_applies_many
from rating.columns import UsageColumns
from rating.money import AMOUNT_SCALE, INT64_SAFE, MAX_AMOUNT, minor_units, round_up_mask, scaled_multiplier
from rating.refusals import amount_too_large, no_charge
from rating.state import PeriodCounters, RatingState
from rating.timeline import Segments, apportion_many, band_segments, periods_of
from rating.units import MAX_QUANTITY, MAX_SPAN_MS

MAX_PARTS_PER_LINE = 2**16  # bounds the remainder sum: parts * L must stay below INT64_SAFE


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


def _resolve_plans(
    catalog: Catalog, account_codes: np.ndarray, accounts: np.ndarray, start_ms: np.ndarray
) -> np.ndarray:
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
    if size == 0:
        nothing = np.zeros(0, dtype=np.int64)
        return _assemble(0, nothing.astype(bool), nothing, nothing, {}, nothing, [])
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

    groups = _line_groups(columns, catalog, compiled_plans, plan_index, active, refused, reasons)
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

    priced: list[tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]] = []
    total = np.zeros(size, dtype=np.int64)
    over_limit = np.zeros(size, dtype=bool)
    for group in groups:
        lines, parts, amount = _price_group(columns, catalog.plans[group.plan_index], group)
        limit = compiled_plans[group.plan_index].limit_minor  # type: ignore[union-attr]
        over_limit[group.rows[amount >= limit]] = True
        total[group.rows] = np.minimum(total[group.rows] + np.minimum(amount, limit), limit)
        priced.append((lines, parts))
    limit_of_plan = np.array([c.limit_minor if c is not None else 0 for c in compiled_plans] + [0], dtype=np.int64)
    over_limit |= active & ~refused & (total >= limit_of_plan[plan_index])
    for row in np.flatnonzero(over_limit).tolist():
        reasons[row] = amount_too_large(catalog.plans[int(plan_index[row])])
    refused |= over_limit
    refused[fallback] = False
    precision = np.array([p.precision for p in catalog.plans] + [AMOUNT_SCALE], dtype=np.int64)[plan_index]
    scaled = total * (10 ** (AMOUNT_SCALE - precision))
    rated = ~refused & active
    return _assemble(size, refused, plan_index, np.where(rated, scaled, 0), reasons, fallback, priced)


def _line_groups(
    columns: UsageColumns,
    catalog: Catalog,
    compiled_plans: list[CompiledPlan | None],
    plan_index: np.ndarray,
    active: np.ndarray,
    refused: np.ndarray,
    reasons: dict[int, str],
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
            reason = no_charge(plan, str(columns.event_type[first]), str(columns.service[first]))
            reasons.update(dict.fromkeys(order[start:end].tolist(), reason))
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
            by_counter.setdefault(group.compiled.charge.counter, []).append(group)
    for name, members in by_counter.items():
        labels: dict[str, int] = {}
        period_parts = []
        for group in members:  # each member keeps its own clock and period kind, as the reference does
            charge = group.compiled.charge
            periods = periods_of(catalog.plans[group.plan_index].clock, charge.period, columns.start_ms[group.rows])
            remap = np.array([labels.setdefault(label, len(labels)) for label in periods.labels], dtype=np.int64)
            period_parts.append(remap[periods.code])
        rows = np.concatenate([g.rows for g in members])
        counted = _CountedRows(
            rows=rows,
            billed=np.concatenate([g.billed for g in members]),
            saturation=np.concatenate([np.full(g.rows.shape[0], g.compiled.charge.counter_cap() + 1) for g in members]),
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

    Duplicate ids inside the batch are rare, so the vector pass assumes there are none and checks
    afterwards, while writing the state: a key where an id turns out to repeat is rolled back and
    walked row by row like the reference (as are keys that mix allowances or risk int64 sums).
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
    applied_of_key = [c.applied.get(name) for c in counters]
    stored = np.full(rows.shape[0], -1, dtype=np.int64)
    check = np.flatnonzero(fast & np.array([bool(a) for a in applied_of_key], dtype=bool)[key])
    if check.size:  # replays: ids this counter already applied in an earlier batch
        stored[check] = [
            applied_of_key[k].get(record_id, -1)
            for k, record_id in zip(key[check].tolist(), ids[check].tolist(), strict=True)
        ]
    replay = stored >= 0
    new = fast & ~replay
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

    # write back, in event order: the positions worth remembering for replays, then each key's use
    remember = new & (position < sat)
    remembered = order[remember[order]]
    remembered_keys = key[remembered]
    repeated = np.zeros(key_count, dtype=bool)
    inserted: dict[int, list[str]] = {}
    if remembered.size:
        cuts = np.flatnonzero(remembered_keys[1:] != remembered_keys[:-1]) + 1
        lows = [0, *cuts.tolist()]
        highs = [*cuts.tolist(), remembered.shape[0]]
        id_list = ids[remembered].tolist()
        position_list = position[remembered].tolist()
        for k, low, high in zip(remembered_keys[lows].tolist(), lows, highs, strict=True):
            applied = applied_of_key[k]
            if applied is None:
                applied = applied_of_key[k] = counters[k].applied[name] = {}
            size_before = len(applied)
            chunk = id_list[low:high]
            applied.update(zip(chunk, position_list[low:high], strict=True))
            inserted[k] = chunk
            if len(applied) - size_before < high - low:  # an id twice among the remembered rows
                repeated[k] = True
    beyond = np.flatnonzero(new & ~remember & (per_key[key] > 1))
    if beyond.size:  # an id first remembered, then seen again past saturation
        for i, k in zip(beyond.tolist(), key[beyond].tolist(), strict=True):
            applied = applied_of_key[k]
            if applied is not None and ids[i] in applied:
                repeated[k] = True
    for k in np.flatnonzero(repeated).tolist():  # undo this key's optimistic pass; the walk below redoes it
        applied = applied_of_key[k]
        assert applied is not None
        for record_id in inserted.get(k, ()):
            applied.pop(record_id, None)
    totals = np.zeros(key_count, dtype=np.int64)
    np.add.at(totals, key[new], np.minimum(billed[new], sat[new]))
    keys_with_new = np.flatnonzero((np.bincount(key[new], minlength=key_count) > 0) & ~repeated)
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
        applied = period_counters.applied.get(name)
        if applied is not None and record_id in applied:
            position[i] = applied[record_id]
            continue
        sat = int(counted.saturation[i])
        current = period_counters.used.get(name, 0)
        period_counters.used[name] = min(sat, current + int(counted.billed[i]))
        if current < sat:
            period_counters.applied.setdefault(name, {})[record_id] = current
        position[i] = current
        state.mark_changed(*key_names[k])


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
    numerators = compiled.numerators
    numerator = numerators[part_rate] if numerators.shape[0] > 1 else int(numerators[0])
    limit = MAX_AMOUNT * 10**plan.precision
    largest_qty = int(part_qty.max(initial=0))
    if largest_qty * int(numerators.max(initial=0)) < INT64_SAFE:  # the usual case: products fit
        product = part_qty * numerator
        whole = product // denominator
        remainder = product - whole * denominator
    else:  # split qty = high * L + low so each product stays in int64; cap parts that reach the limit
        numerator = numerators[part_rate]
        high = part_qty // denominator
        low = part_qty - high * denominator
        safe_high = limit // np.maximum(numerator, 1)
        product = low * numerator
        carry = product // denominator
        remainder = product - carry * denominator
        whole = np.where((high > safe_high) & (numerator > 0), limit, high * numerator) + carry
    if part_row.shape[0] == rows and (rows == 0 or int(part_row[-1]) == rows - 1):  # one part per row
        return whole, remainder
    if rows == 0:
        return whole[:0], remainder[:0]
    starts = np.searchsorted(part_row, np.arange(rows))
    whole_sum = np.add.reduceat(whole, starts)
    if int(whole.max(initial=0)) >= INT64_SAFE // max(part_row.shape[0], 1):
        # int64 sums are exact below 2**62; a row whose float shadow sum gets there is over the limit anyway
        whole_sum = np.where(np.add.reduceat(whole.astype(np.float64), starts) >= INT64_SAFE, limit, whole_sum)
    remainder_sum = np.add.reduceat(remainder, starts)
    carry = remainder_sum // denominator
    return whole_sum + carry, remainder_sum - carry * denominator


def _assemble(
    size: int,
    refused: np.ndarray,
    plan_index: np.ndarray,
    amount_scaled: np.ndarray,
    reasons: dict[int, str],
    fallback: np.ndarray,
    priced: list[tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]],
) -> KernelOutput:
    """Lay the groups' lines out by (row, charge) and their parts after them, by counting, not sorting.

    Groups come in (plan, charge) order and a row has one plan, so placing each group's lines after
    the ones its rows already have keeps every row's lines in charge order.
    """
    keep_row = ~refused
    kept_of_group = []
    line_count = np.zeros(size, dtype=np.int64)
    for lines, _ in priced:
        keep = keep_row[lines[0]]
        kept = None if keep.all() else np.flatnonzero(keep)  # None: every row of the group is kept
        kept_of_group.append(kept)
        line_count[lines[0] if kept is None else lines[0][kept]] += 1
    line_offset = np.cumsum(line_count) - line_count
    total_lines = int(line_offset[-1] + line_count[-1]) if size else 0
    placed = line_offset.copy()
    line_cols = [np.empty(total_lines, dtype=np.int64) for _ in range(5)] + [
        np.empty(total_lines, dtype=bool) for _ in range(2)
    ]
    part_count = np.zeros(total_lines, dtype=np.int64)
    slots_of_group = []
    for (lines, parts), kept in zip(priced, kept_of_group, strict=True):
        rows = lines[0] if kept is None else lines[0][kept]
        slot = placed[rows]
        placed[rows] += 1
        for column, values in zip(line_cols, lines, strict=True):
            column[slot] = values if kept is None else values[kept]
        if kept is None:
            slot_of_local = slot
        else:
            slot_of_local = np.full(lines[0].shape[0], -1, dtype=np.int64)
            slot_of_local[kept] = slot
        slots_of_group.append(slot_of_local)
        local_row, _, qty = parts
        counted = (qty > 0) & (slot_of_local[local_row] >= 0)
        per_local = np.bincount(local_row[counted], minlength=lines[0].shape[0])
        part_count[slot] = per_local if kept is None else per_local[kept]
    part_offset = np.cumsum(part_count) - part_count
    total_parts = int(part_count.sum())
    part_cols = [np.empty(total_parts, dtype=np.int64) for _ in range(3)]
    for (_, parts), slot_of_local in zip(priced, slots_of_group, strict=True):
        local_row, rate, qty = parts
        slot = slot_of_local[local_row]
        index = np.flatnonzero((qty > 0) & (slot >= 0))
        line_slot = slot[index]
        # rank of a part within its line: parts of a line are contiguous and in model order
        first_of_line = np.ones(index.shape[0], dtype=bool)
        first_of_line[1:] = line_slot[1:] != line_slot[:-1]
        run_start = np.maximum.accumulate(np.where(first_of_line, np.arange(index.shape[0]), 0))
        target = part_offset[line_slot] + (np.arange(index.shape[0]) - run_start)
        part_cols[0][target] = line_slot
        part_cols[1][target] = rate[index]
        part_cols[2][target] = qty[index]
    return KernelOutput(
        refused=refused,
        plan_index=np.where(refused, -1, plan_index),
        amount_scaled=amount_scaled,
        reasons=reasons,
        fallback=fallback,
        line_row=line_cols[0],
        line_charge=line_cols[1],
        line_billed=line_cols[2],
        line_free=line_cols[3],
        line_amount=line_cols[4],
        line_fee=line_cols[5],
        line_minimum=line_cols[6],
        part_line=part_cols[0],
        part_rate=part_cols[1],
        part_qty=part_cols[2],
    )


__all__ = ["CompiledCharge", "CompiledPlan", "KernelOutput", "compile_plan", "rate_kernel"]
