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
    timelines = [catalog.account_timeline(account) for account in accounts.tolist()]
    counts = np.fromiter((len(t[0]) for t in timelines), dtype=np.int64, count=len(timelines))
    offsets = np.cumsum(counts) - counts
    starts = list(itertools.chain.from_iterable(t[0] for t in timelines))
    indexes = list(itertools.chain.from_iterable(t[1] for t in timelines))
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

    @property
    def charge(self) -> UsageCharge:
        return self.compiled.charge

    def keep(self, mask: np.ndarray) -> None:
        self.rows, self.quantity, self.selector = self.rows[mask], self.quantity[mask], self.selector[mask]


def _selects(pricing: Pricing) -> bool:
    return type(pricing).select_many is not Pricing.select_many


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a batch builds many small containers (state entries).

    Nothing built here forms a cycle, and a pass over a growing heap in mid-batch costs as much as
    the batch; the collector resumes, as it was, when the batch is done.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
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
    account_codes, accounts = pd.factorize(columns.account)
    account_codes = account_codes.astype(np.int64)
    plan_index = _resolve_plans(catalog, account_codes, np.asarray(accounts, dtype=object), columns.start_ms)
    for row in np.flatnonzero(~refused & (plan_index < 0)).tolist():  # the reason precheck would give
        reasons[row] = catalog.refusal(str(columns.account[row]), int(columns.start_ms[row]))
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


__all__ = ["CompiledCharge", "CompiledPlan", "KernelOutput", "collector_paused", "compile_plan", "rate_kernel"]
