"""The per-record reference: a straightforward ``Decimal`` loop that defines what a charge is.

Records are taken one at a time in event-time order (start, then id) so allowances are consumed in
that order; each charge line is computed exactly in ``Decimal`` and rounded once with the plan's
mode. The vectorised kernel (:mod:`rating.kernel`) must return exactly what this returns.

Per record and charge line:

1. meter the record (bytes, duration, events) and apply the billing increments: ``billed``;
2. split it across tariff-time bands when the charge has bands (proportionally to time, or all at
   the band of the start);
3. take the allowance: ``free`` units from the earliest segments, from the period counter;
4. the model turns the rest into parts (rate, quantity);
5. amount = sum(quantity * price / divisor) + connect fee, rounded to the plan's precision,
   then raised to the minimum when something was chargeable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Context, Decimal

from models.records import UsageRecord
from rating import refusals
from rating.calendar import period_key
from rating.catalog import Catalog, Plan
from rating.charges import LineQuantities, UsageCharge
from rating.charges.allowance import free_units, take_free
from rating.charges.fees import connect_fee_applies, minimum_applies
from rating.money import MAX_AMOUNT, minor_units
from rating.rated import LineDetail, RatingResult, rated_record
from rating.state import RatingState
from rating.units import MAX_QUANTITY, MAX_SPAN_MS

_EXACT = Context(prec=80)  # wide enough that every product and the one division per line are exact


def metered(record: UsageRecord, meter: str) -> int:
    """The raw quantity of ``record`` that ``meter`` counts, in base units."""
    if meter == "bytes":
        return record.bytes_up + record.bytes_down
    if meter == "bytes_up":
        return record.bytes_up
    if meter == "bytes_down":
        return record.bytes_down
    if meter == "duration":
        if record.duration_s is not None:
            return record.duration_s
        return -(-(record.end_ms - record.start_ms) // 1000)
    return 1  # events


def band_at(charge: UsageCharge, t_ms: int) -> tuple[int, int]:
    """(band index, end of that band's interval) at instant ``t_ms``."""
    assert charge.bands is not None
    day = charge.bands.clock.local_day(t_ms)
    for start, end, band in charge.bands.day_intervals(day):
        if start <= t_ms < end:
            return band, end
    raise AssertionError(f"no band interval holds {t_ms}")  # day intervals tile the day


def time_segments(charge: UsageCharge, start_ms: int, end_ms: int) -> list[tuple[int, int]]:
    """(band, segment end ms) in time order, adjacent equal bands merged; one segment at the start
    band when the record has no length or the charge's split rule is ``start``."""
    if end_ms <= start_ms or charge.split == "start":
        return [(band_at(charge, start_ms)[0], end_ms)]
    segments: list[tuple[int, int]] = []
    t = start_ms
    while t < end_ms:
        band, interval_end = band_at(charge, t)
        t = min(end_ms, interval_end)
        if segments and segments[-1][0] == band:
            segments[-1] = (band, t)
        else:
            segments.append((band, t))
    return segments


def apportion(billed: int, start_ms: int, end_ms: int, segments: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Share ``billed`` units across segments by time: cumulative floors, so the shares sum exactly."""
    if len(segments) == 1:
        return [(segments[0][0], billed)]
    span = end_ms - start_ms
    shares = []
    previous = 0
    for band, seg_end in segments:
        cumulative = billed * (seg_end - start_ms) // span
        shares.append((band, cumulative - previous))
        previous = cumulative
    return shares


def line_amount(plan: Plan, charge: UsageCharge, parts: list[tuple[int, int]], fee: bool) -> Decimal:
    """Exact sum of the parts (one division by the common divisor) plus the fee, rounded once."""
    divisor = 1
    for rate_index, _ in parts:
        rate_divisor = charge.rates[rate_index].divisor
        divisor = math.lcm(divisor, rate_divisor)
    numerator = Decimal(0)
    for rate_index, qty in parts:
        rate = charge.rates[rate_index]
        numerator = _EXACT.add(numerator, _EXACT.multiply(Decimal(qty * (divisor // rate.divisor)), rate.price))
    exact = _EXACT.divide(numerator, Decimal(divisor))
    if fee:
        exact = _EXACT.add(exact, charge.connect_fee)
    return exact.quantize(Decimal(1).scaleb(-plan.precision), rounding=plan.rounding, context=_EXACT)


def _position(state: RatingState, record: UsageRecord, plan: Plan, charge: UsageCharge, billed: int) -> int:
    """Period-to-date position before this record, consuming ``billed`` unless the id was applied."""
    period = period_key(plan.clock, record.start_ms, charge.period)
    counters = state.period(record.account, period)
    applied_at = counters.position_of(charge.counter, record.id)
    if applied_at is not None:
        return applied_at
    saturation = charge.counter_cap() + 1  # past this the price no longer depends on the position
    position = counters.used.get(charge.counter, 0)
    counters.used[charge.counter] = min(saturation, position + billed)
    if position < saturation:
        counters.remember(charge.counter, [record.id], [position])
    state.mark_changed(record.account, period)
    return position


Prepared = tuple[Plan, list[tuple[UsageCharge, int, int]]]


def precheck(record: UsageRecord, catalog: Catalog) -> Prepared | str:
    """Everything that can refuse a record before it is priced: its plan, and per charge line the
    metered quantity and model selector (the zone); or the first reason to refuse it."""
    if record.end_ms - record.start_ms > MAX_SPAN_MS:
        return refusals.span_too_long(record.end_ms - record.start_ms)
    plan = catalog.plan_for(record.account, record.start_ms)
    if plan is None:
        return catalog.refusal(record.account, record.start_ms)
    charge_indexes = plan.charges_for(record.event_type, record.service)
    if not charge_indexes:
        return refusals.no_charge(plan, record.event_type, record.service)
    prepared = []
    for index in charge_indexes:
        charge = plan.charges[index]
        quantity = metered(record, charge.meter)
        if quantity > MAX_QUANTITY:
            return refusals.quantity_too_large(charge, quantity)
        selector = charge.pricing.select(record.destination)
        if selector is None:
            return refusals.no_rate(plan, charge, record.destination)
        prepared.append((charge, quantity, selector))
    return plan, prepared


def rate_record(record: UsageRecord, catalog: Catalog, state: RatingState) -> tuple[Plan, list[LineDetail]] | str:
    """Rate one record: its plan and lines, or the reason it is refused."""
    checked = precheck(record, catalog)  # every refusal is decided before any allowance is touched
    if isinstance(checked, str):
        return checked
    plan, prepared = checked
    lines = []
    for charge, quantity, selector in prepared:
        billed = charge.increments.billed(quantity)
        if charge.bands is not None:
            segments = apportion(
                billed, record.start_ms, record.end_ms, time_segments(charge, record.start_ms, record.end_ms)
            )
        else:
            segments = [(0, billed)]
        position = _position(state, record, plan, charge, billed) if charge.has_counter else 0
        free = free_units(charge.included, position, billed)
        chargeable_segments = take_free(segments, free)
        line = LineQuantities(billed, free, billed - free, position, selector, chargeable_segments)
        parts = [(rate, qty) for rate, qty in charge.pricing.reference_parts(line) if qty > 0]
        fee = connect_fee_applies(quantity) and charge.connect_fee > 0
        amount = line_amount(plan, charge, parts, fee)
        minimum = minimum_applies(
            minor_units(amount, plan.precision), minor_units(charge.minimum, plan.precision), line.chargeable
        )
        if minimum:
            amount = charge.minimum.quantize(amount)
        lines.append(LineDetail(charge, billed, free, tuple(parts), fee, minimum, amount))
    if sum(line.amount for line in lines) >= MAX_AMOUNT:
        return refusals.amount_too_large(plan)
    return plan, lines


def rate_reference(
    records: Sequence[UsageRecord], catalog: Catalog, *, rated_at_ms: int = 0, state: RatingState | None = None
) -> RatingResult:
    """Rate a batch one record at a time, in event-time order; results come back in input order."""
    state = state if state is not None else RatingState()
    outcomes: list[tuple[Plan, list[LineDetail]] | str | None] = [None] * len(records)
    for index in sorted(range(len(records)), key=lambda i: (records[i].start_ms, records[i].id)):
        outcomes[index] = rate_record(records[index], catalog, state)
    result = RatingResult()
    for index, outcome in enumerate(outcomes):
        if isinstance(outcome, str):
            result.failures.append((index, outcome))
        elif outcome is not None:
            plan, lines = outcome
            result.rated.append(rated_record(records[index], plan, lines, rated_at_ms=rated_at_ms))
    return result


__all__ = [
    "Prepared",
    "apportion",
    "band_at",
    "line_amount",
    "metered",
    "precheck",
    "rate_record",
    "rate_reference",
    "time_segments",
]
