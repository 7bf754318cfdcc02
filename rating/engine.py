"""Rating: usage to rated usage against the catalog. Pure functions over a batch, no I/O.

Two entry points share one kernel:

- :func:`rate_usage` takes and returns records;
- :func:`rate_columns` takes and returns columns (numpy arrays), for bulk work and benchmarks,
  with amounts as int64 scaled by ``10**AMOUNT_SCALE``; convert to records only at the edge with
  :func:`rated_from_columns`, or straight to the bytes on the wire with
  :func:`rating.wire.wire_from_columns` (what the stream agent sends, through
  :func:`rating.wire.rate_usage_wire`: the same records, without building them as objects).

Both price with the vectorised kernel and hand any plan the kernel cannot hold in int64 to the
per-record reference, which defines the results; the two agree exactly (tests hold them to it).
Pass a :class:`~rating.state.RatingState` to carry allowances across batches (see its docstring
for how to persist it); without one each call starts every allowance afresh.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal

import numpy as np

from models.records import UsageRecord
from rating.catalog import Catalog
from rating.columns import UsageColumns, records_to_columns, to_columns
from rating.kernel import collector_paused, rate_kernel
from rating.money import AMOUNT_SCALE, from_minor_units, minor_units
from rating.rated import LineDetail, RatingResult, RecordKeys, rated_record
from rating.reference import precheck, rate_record, rate_reference
from rating.state import RatingState

Engine = Literal["auto", "kernel", "reference"]
SMALL_BATCH = 32  # below this many records the reference is quicker than setting up arrays

LINE_COLUMNS = ("line_row", "line_charge", "line_billed", "line_free", "line_amount", "line_fee", "line_minimum")
PART_COLUMNS = ("part_line", "part_rate", "part_qty")


def rate_usage(
    records: Sequence[UsageRecord],
    catalog: Catalog,
    *,
    rated_at_ms: int = 0,
    state: RatingState | None = None,
    engine: Engine = "auto",
) -> RatingResult:
    """Price each record with the plan version in force for its account at its start time.

    A record with no plan (or no applicable charge, no zone, ...) is refused with a reason, never
    charged zero. ``state`` carries allowances between calls; ``engine`` forces one implementation.
    """
    state = state if state is not None else RatingState()
    if engine == "reference" or (engine == "auto" and len(records) < SMALL_BATCH):
        return rate_reference(records, catalog, rated_at_ms=rated_at_ms, state=state)
    with collector_paused():  # many small objects, no cycles: see collector_paused
        columns = records_to_columns(records)
        result = rate_columns(columns, catalog, state=state)
        return rated_from_columns(columns, result, catalog, rated_at_ms=rated_at_ms)


def rate_columns(
    columns: Mapping[str, Any] | UsageColumns, catalog: Catalog, *, state: RatingState | None = None
) -> dict[str, np.ndarray]:
    """Rate a columnar batch (see :mod:`rating.columns`); returns arrays, one row per input row:

    ``rated`` (bool), ``reason`` (str or None), ``plan_index``, ``plan``, ``plan_version``,
    ``currency``, ``amount_scaled`` (int64, amount * 10**AMOUNT_SCALE), ``quantity_base`` and
    ``unit``/``unit_size`` (first charge line), and the line table (``line_row``, ``line_charge``,
    ``line_billed``, ``line_free``, ``line_amount`` in minor units at the plan's precision,
    ``line_fee``, ``line_minimum``) and part table (``part_line``, ``part_rate``, ``part_qty``)
    that :func:`rated_from_columns` turns into breakdowns.
    """
    batch = to_columns(columns)
    state = state if state is not None else RatingState()
    output = rate_kernel(batch, catalog, state)
    size = batch.size
    refused, plan_index, amount_scaled = output.refused, output.plan_index, output.amount_scaled  # ours to change
    reasons: dict[int, str] = dict(output.reasons)
    lines = {name: getattr(output, name) for name in LINE_COLUMNS}
    parts = {name: getattr(output, name) for name in PART_COLUMNS}
    first_line = output.line_start
    if output.fallback.size:
        _rate_fallback(
            batch, output.fallback, catalog, state, refused, plan_index, amount_scaled, reasons, lines, parts
        )
        first_line = np.searchsorted(lines["line_row"], np.arange(size))
    for row in np.flatnonzero(refused).tolist():
        if row not in reasons:
            checked = precheck(batch.record(row), catalog)
            reasons[row] = checked if isinstance(checked, str) else "refused"
    plans = catalog.plans
    lookup_plan = np.array([p.name for p in plans] + [None], dtype=object)
    lookup_version = np.array([p.version for p in plans] + [0], dtype=np.int64)
    lookup_currency = np.array([p.currency for p in plans] + [None], dtype=object)
    reason = np.full(size, None, dtype=object)
    for row, text in reasons.items():
        reason[row] = text
    has_line = ~refused & (plan_index >= 0)
    first_line = np.minimum(first_line, max(lines["line_row"].shape[0] - 1, 0))
    quantity = np.where(has_line, lines["line_billed"][first_line] if lines["line_row"].size else 0, 0)
    unit, unit_size = _first_units(catalog, plan_index, lines["line_charge"], first_line, has_line)
    return {
        "rated": ~refused,
        "reason": reason,
        "plan_index": plan_index,
        "plan": lookup_plan[plan_index],
        "plan_version": lookup_version[plan_index],
        "currency": lookup_currency[plan_index],
        "amount_scaled": np.where(refused, 0, amount_scaled),
        "quantity_base": quantity,
        "unit": unit,
        "unit_size": unit_size,
        **lines,
        **parts,
    }


def _first_units(
    catalog: Catalog, plan_index: np.ndarray, line_charge: np.ndarray, first_line: np.ndarray, has_line: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Unit of the first charge line of each row, through a (plan, charge) lookup table."""
    width = max((len(p.charges) for p in catalog.plans), default=1) or 1
    names = np.full((len(catalog.plans) + 1) * width, None, dtype=object)
    sizes = np.zeros((len(catalog.plans) + 1) * width, dtype=np.int64)
    for p, plan in enumerate(catalog.plans):
        for c, charge in enumerate(plan.charges):
            names[p * width + c] = charge.unit
            sizes[p * width + c] = charge.unit_size
    charge_at = line_charge[first_line] if line_charge.size else np.zeros_like(first_line)
    slot = np.where(has_line, plan_index * width + charge_at, len(catalog.plans) * width)
    return names[slot], sizes[slot]


def _rate_fallback(
    batch: UsageColumns,
    rows: np.ndarray,
    catalog: Catalog,
    state: RatingState,
    refused: np.ndarray,
    plan_index: np.ndarray,
    amount_scaled: np.ndarray,
    reasons: dict[int, str],
    lines: dict[str, np.ndarray],
    parts: dict[str, np.ndarray],
) -> None:
    """Rate the rows the kernel handed back with the reference, and merge them into the tables."""
    records = {row: batch.record(row) for row in rows.tolist()}
    new_lines: list[tuple[int, int, int, int, int, bool, bool]] = []
    new_parts: list[tuple[int, int, int, int]] = []  # (row, charge, rate, qty)
    for row in sorted(records, key=lambda r: (records[r].start_ms, records[r].id)):
        outcome = rate_record(records[row], catalog, state)
        if isinstance(outcome, str):
            refused[row] = True
            reasons[row] = outcome
            plan_index[row] = -1
            continue
        plan, details = outcome
        total = 0
        for detail in details:
            charge_index = next(i for i, c in enumerate(plan.charges) if c is detail.charge)
            minor = minor_units(detail.amount, plan.precision)
            total += minor
            new_lines.append((row, charge_index, detail.billed, detail.free, minor, detail.connect_fee, detail.minimum))
            new_parts.extend((row, charge_index, rate, qty) for rate, qty in detail.parts)
        amount_scaled[row] = total * 10 ** (AMOUNT_SCALE - plan.precision)
    if not new_lines:
        return
    old_keys = list(zip(lines["line_row"].tolist(), lines["line_charge"].tolist(), strict=True))
    old_parts_by_line: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for line, rate, qty in zip(*(parts[name].tolist() for name in PART_COLUMNS), strict=True):
        old_parts_by_line.setdefault(old_keys[line], []).append((rate, qty))
    for row, charge_index, rate, qty in new_parts:
        old_parts_by_line.setdefault((row, charge_index), []).append((rate, qty))
    merged = [tuple(values) for values in zip(*(lines[name].tolist() for name in LINE_COLUMNS), strict=True)]
    merged.extend(new_lines)
    merged.sort(key=lambda line: (line[0], line[1]))
    for index, name in enumerate(LINE_COLUMNS):
        dtype = bool if name in ("line_fee", "line_minimum") else np.int64
        lines[name] = np.array([line[index] for line in merged], dtype=dtype)
    part_rows = [
        (line_id, rate, qty)
        for line_id, line in enumerate(merged)
        for rate, qty in old_parts_by_line.get((int(line[0]), int(line[1])), [])
    ]
    for index, name in enumerate(PART_COLUMNS):
        parts[name] = np.array([p[index] for p in part_rows], dtype=np.int64)


def rated_from_columns(
    columns: Mapping[str, Any] | UsageColumns,
    result: Mapping[str, np.ndarray],
    catalog: Catalog,
    *,
    rated_at_ms: int = 0,
    rating_version: int = 1,
) -> RatingResult:
    """Turn :func:`rate_columns` output into rated records and failures (the edge of the kernel)."""
    with collector_paused():
        return _rated_from_columns(to_columns(columns), result, catalog, rated_at_ms, rating_version)


def _rated_from_columns(
    batch: UsageColumns, result: Mapping[str, np.ndarray], catalog: Catalog, rated_at_ms: int, rating_version: int
) -> RatingResult:
    size = batch.size
    rated_mask = result["rated"].tolist()
    plan_index = result["plan_index"].tolist()
    line_row = result["line_row"]
    line_start = np.searchsorted(line_row, np.arange(size + 1)).tolist()
    part_start = np.searchsorted(result["part_line"], np.arange(line_row.shape[0] + 1)).tolist()
    line_charge = result["line_charge"].tolist()
    line_billed = result["line_billed"].tolist()
    line_free = result["line_free"].tolist()
    line_amount = result["line_amount"].tolist()
    line_fee = result["line_fee"].tolist()
    line_minimum = result["line_minimum"].tolist()
    part_rate = result["part_rate"].tolist()
    part_qty = result["part_qty"].tolist()
    ids, accounts, services = batch.id.tolist(), batch.account.tolist(), batch.service.tolist()
    starts, ends = batch.start_ms.tolist(), batch.end_ms.tolist()
    output = RatingResult()
    for row in range(size):
        if not rated_mask[row]:
            output.failures.append((row, str(result["reason"][row])))
            continue
        plan = catalog.plans[plan_index[row]]
        details = []
        for line in range(line_start[row], line_start[row + 1]):
            low, high = part_start[line], part_start[line + 1]
            details.append(
                LineDetail(
                    charge=plan.charges[line_charge[line]],
                    billed=line_billed[line],
                    free=line_free[line],
                    parts=tuple(zip(part_rate[low:high], part_qty[low:high], strict=True)),
                    connect_fee=line_fee[line],
                    minimum=line_minimum[line],
                    amount=from_minor_units(line_amount[line], plan.precision),
                )
            )
        keys = RecordKeys(ids[row], accounts[row], services[row], starts[row], ends[row])
        output.rated.append(rated_record(keys, plan, details, rated_at_ms=rated_at_ms, rating_version=rating_version))
    return output


def decimal_amounts(result: Mapping[str, np.ndarray]) -> list[Decimal]:
    """The ``amount_scaled`` column of :func:`rate_columns` as exact ``Decimal`` values."""
    return [from_minor_units(value, AMOUNT_SCALE) for value in result["amount_scaled"].tolist()]


__all__ = [
    "AMOUNT_SCALE",
    "SMALL_BATCH",
    "Engine",
    "RatingResult",
    "decimal_amounts",
    "rate_columns",
    "rate_usage",
    "rated_from_columns",
]
