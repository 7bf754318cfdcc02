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

import contextlib
import gc
import itertools
import math
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from rating.catalog import Catalog, Plan
from rating.charges import LineArrays, Pricing, UsageCharge
from rating.charges.allowance import free_units_many, take_free_many
from rating.charges.fees import connect_fee_applies_many, minimum_applies_many
from rating.columns import UsageColumns
from rating.counters import allowance_positions
from rating.money import AMOUNT_SCALE, INT64_SAFE, MAX_AMOUNT, minor_units, round_up_mask, scaled_multiplier
from rating.refusals import amount_too_large, no_charge
from rating.state import RatingState
from rating.timeline import Segments, apportion_many, band_segments
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
    line_start: np.ndarray  # per row, its first line (where it would be when it has none)


def factorize_text(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes (int64, numbered by first appearance) and distinct values of a text column.

    Arrow's dictionary encoding hashes the strings' bytes in C++, a good deal quicker than pandas on
    a column of a million Python strings; a column it cannot take (not all strings, or missing
    values) goes to pandas.
    """
    import pyarrow as pa

    try:
        encoded = pa.array(values, type=pa.string()).dictionary_encode()
    except pa.ArrowException:
        encoded = None
    if not isinstance(encoded, pa.DictionaryArray) or encoded.null_count:
        codes, uniques = pd.factorize(values)
        return codes.astype(np.int64), np.asarray(uniques, dtype=object)
    return (
        encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64),
        encoded.dictionary.to_numpy(zero_copy_only=False).astype(object, copy=False),
    )


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
    """Plan index per row from its account's timeline (a handful of change points, shared by the
    accounts of one subscription)."""
    numbers, table = catalog.timeline_numbers(accounts.tolist())
    local = np.array(numbers, dtype=np.int64)
    if len(table) <= 4096:  # the usual few subscriptions: lay the whole table out
        timelines = table
    else:  # per-account subscriptions by the thousand: only the timelines of this batch
        used, local = np.unique(local, return_inverse=True)
        timelines = [table[number] for number in used.tolist()]
    counts = np.array([len(t[0]) for t in timelines], dtype=np.int64)
    offsets = np.cumsum(counts) - counts
    all_starts = np.array(list(itertools.chain.from_iterable(t[0] for t in timelines)), dtype=np.int64)
    all_indexes = np.array(list(itertools.chain.from_iterable(t[1] for t in timelines)), dtype=np.int64)
    row_timeline = local.reshape(-1)[account_codes]
    base = offsets[row_timeline]
    position = base
    if int(counts.max(initial=1)) > 1:
        row_counts = counts[row_timeline]
        last = all_starts.shape[0] - 1
        for step in range(1, int(counts.max())):  # walk forward while the next change has begun
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

    @property
    def charge(self) -> UsageCharge:
        return self.compiled.charge

    def keep(self, mask: np.ndarray) -> None:
        self.rows, self.quantity, self.selector = self.rows[mask], self.quantity[mask], self.selector[mask]


def _selects(pricing: Pricing) -> bool:
    return type(pricing).select_many is not Pricing.select_many


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a batch builds many small containers, and file what the
    batch built under the oldest generation when it is done.

    Nothing built here forms a cycle. With the collector running, its passes over the growing young
    generation would cost as much as the batch; and once it resumes, the first young collection would
    still walk every container the batch built (the allowance state: a list of ids and one of
    positions per counter of each account and period, hundreds of thousands of objects). What
    survives a batch is long-lived state, or results that die by reference count, so it goes straight
    to the oldest generation: ``gc.freeze()`` then ``gc.unfreeze()`` splice the generations into it
    without a pass. The young generations are collected on entry, so only what the batch allocated
    moves. A process that froze objects itself (``gc.freeze()`` before forking workers, say) keeps
    them frozen: then the batch's objects are left in the young generation. Nested uses (and callers
    that keep the collector off) leave the collector as it was.
    """
    was_enabled = gc.isenabled()
    splice = was_enabled and gc.get_freeze_count() == 0
    if splice:
        gc.collect(1)
    gc.disable()
    try:
        yield
    finally:
        if splice:
            gc.freeze()
            gc.unfreeze()
        if was_enabled:
            gc.enable()


def rate_kernel(columns: UsageColumns, catalog: Catalog, state: RatingState) -> KernelOutput:
    """Rate a columnar batch; rows of plans that :func:`compile_plan` refuses come back in ``fallback``."""
    with collector_paused():
        return _rate_kernel(columns, catalog, state)


def _rate_kernel(columns: UsageColumns, catalog: Catalog, state: RatingState) -> KernelOutput:
    size = columns.size
    if size == 0:
        nothing = np.zeros(0, dtype=np.int64)
        return _assemble(0, nothing.astype(bool), nothing, nothing, {}, nothing, [])
    reasons = columns.invalid_rows()
    refused = np.zeros(size, dtype=bool)
    if reasons:
        refused[np.fromiter(reasons, dtype=np.int64, count=len(reasons))] = True
    refused |= (columns.end_ms - columns.start_ms) > MAX_SPAN_MS
    account_codes, accounts = factorize_text(columns.account)
    plan_index = _resolve_plans(catalog, account_codes, accounts, columns.start_ms)
    no_plan = np.flatnonzero(~refused & (plan_index < 0))  # the reasons precheck would give
    if no_plan.size:
        found = catalog.refusals(
            [str(a) for a in columns.account[no_plan].tolist()], columns.start_ms[no_plan].tolist()
        )
        reasons.update(zip(no_plan.tolist(), found, strict=True))
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
    allowance_positions(columns, catalog, groups, account_codes, state)

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
    """Rows per (plan, charge) from one stable sort by (plan, event type, service), where the service
    is looked at only for the (plan, event type) pairs whose charges tell services apart."""
    type_codes, types = pd.factorize(columns.event_type)
    type_count = max(len(types), 1)
    plan_type = plan_index * type_count + type_codes
    by_service = np.array(
        [
            any(c.services is not None and (c.event_types is None or t in c.event_types) for c in plan.charges)
            for plan in catalog.plans
            for t in types.tolist()
        ]
        + [False],
        dtype=bool,
    )
    rows = np.flatnonzero(active)
    service_codes = np.zeros(columns.size, dtype=np.int64)  # 0: the service does not change the charges
    need = rows[by_service[plan_type[rows]]]
    service_count = 1
    if need.size:
        codes, services = pd.factorize(columns.service[need])
        service_codes[need] = codes + 1
        service_count += len(services)
    key = plan_type * service_count + service_codes
    active_keys = key[rows]
    if int(active_keys.max(initial=0)) < 2**15:  # the usual case: numpy sorts int16 by radix, stably
        small = active_keys.astype(np.int16)
        order = rows[np.argsort(small, kind="stable")]
        counts = np.bincount(small, minlength=1)
        ends = np.cumsum(counts)[counts > 0]
        starts = ends - counts[counts > 0]
    else:
        order = rows[np.argsort(active_keys, kind="stable")]
        sorted_keys = key[order]
        bounds = np.flatnonzero(np.diff(sorted_keys)) + 1
        starts = np.concatenate([[0], bounds]) if order.size else np.zeros(0, dtype=np.int64)
        ends = np.concatenate([bounds, [order.size]]) if order.size else np.zeros(0, dtype=np.int64)
    pieces: dict[tuple[int, int], list[np.ndarray]] = {}
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        first = int(order[start])
        plan = catalog.plans[int(plan_index[first])]
        applicable = plan.charges_for(str(columns.event_type[first]), str(columns.service[first]))
        if not applicable:  # each refused row's reason names its own service
            block = order[start:end]
            refused[block] = True
            event_type = str(columns.event_type[first])
            said: dict[str, str] = {}
            for row, service in zip(block.tolist(), columns.service[block].tolist(), strict=True):
                text = str(service)
                reason = said.get(text)
                if reason is None:
                    reason = said[text] = no_charge(plan, event_type, text)
                reasons[row] = reason
            continue
        for charge_index in applicable:
            pieces.setdefault((int(plan_index[first]), charge_index), []).append(order[start:end])
    groups = []
    for (plan_at, charge_index), parts in sorted(pieces.items()):
        compiled = compiled_plans[plan_at]
        assert compiled is not None
        groups.append(_Group(plan_at, charge_index, compiled.charges[charge_index], np.concatenate(parts)))
    return groups


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
    """Lay the kept rows' lines out by (row, charge) and each line's parts after them, in model order.

    Groups come in (plan, charge) order and a row has one plan, so a stable sort of all lines by row
    keeps every row's lines in charge order; a group's rows come in a few ascending runs, which the
    stable sort (a merge of runs) makes cheap. Parts follow their lines the same way.
    """
    keep_row = ~refused
    line_pieces: list[list[np.ndarray]] = [[] for _ in range(7)]
    part_pieces: list[list[np.ndarray]] = [[] for _ in range(3)]
    placed = 0
    for lines, (local_row, rate, qty) in priced:
        count = lines[0].shape[0]
        keep = keep_row[lines[0]]
        if keep.all():
            for pieces, values in zip(line_pieces, lines, strict=True):
                pieces.append(values)
            line_of_local = np.arange(placed, placed + count, dtype=np.int64)
            chosen = qty > 0
        else:
            kept = np.flatnonzero(keep)
            for pieces, values in zip(line_pieces, lines, strict=True):
                pieces.append(values[kept])
            line_of_local = np.full(count, -1, dtype=np.int64)
            line_of_local[kept] = np.arange(placed, placed + kept.shape[0], dtype=np.int64)
            count = kept.shape[0]
            chosen = (qty > 0) & keep[local_row]
        placed += count
        part_pieces[0].append(line_of_local[local_row[chosen]])
        part_pieces[1].append(rate[chosen])
        part_pieces[2].append(qty[chosen])
    empty = np.zeros(0, dtype=np.int64)
    line_rows = np.concatenate(line_pieces[0]) if line_pieces[0] else empty
    line_order = np.argsort(line_rows, kind="stable")
    slot = np.empty(line_order.shape[0], dtype=np.int64)  # where each line, in group order, goes
    slot[line_order] = np.arange(line_order.shape[0], dtype=np.int64)
    line_cols = [line_rows[line_order]]
    for pieces, dtype in zip(line_pieces[1:], (np.int64,) * 4 + (bool,) * 2, strict=True):
        column = np.empty(line_order.shape[0], dtype=dtype)
        placed = 0
        for values in pieces:  # straight from each group's arrays to their places
            column[slot[placed : placed + values.shape[0]]] = values
            placed += values.shape[0]
        line_cols.append(column)
    part_all = [np.concatenate(pieces) if pieces else empty for pieces in part_pieces]
    part_line = slot[part_all[0]]
    part_order = np.argsort(part_line, kind="stable")  # a line's parts stay in model order
    line_count = np.bincount(line_cols[0], minlength=size)
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
        part_line=part_line[part_order],
        part_rate=part_all[1][part_order],
        part_qty=part_all[2][part_order],
        line_start=np.cumsum(line_count) - line_count,
    )


__all__ = ["CompiledCharge", "CompiledPlan", "KernelOutput", "collector_paused", "compile_plan", "rate_kernel"]
