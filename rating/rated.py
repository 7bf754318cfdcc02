"""What rating produces: the batch result, each charge line, and the JSON breakdown of a rated record.

Both engines (the per-record reference and the vectorised kernel) describe a record with the same
:class:`LineDetail` values and turn them into a :class:`RatedUsage` with :func:`rated_record`, so
their output is byte-for-byte comparable.

Breakdown (``RatedUsage.breakdown``), one entry per charge line that applied::

    {"lines": [{"charge": "voice", "model": "time_of_day", "unit": "minute", "billed": "3",
                "free": "1", "parts": [{"rate": "peak", "quantity": "1.5", "price": "0.10"}, ...],
                "connect_fee": "0.05", "minimum": "0.10", "amount": "0.20"}]}

``billed`` is the metered quantity after billing increments, ``free`` what the allowance covered
(present when the charge has one), ``parts`` the chargeable quantity per rate (zero parts are left
out), ``connect_fee``/``minimum`` appear only when they were applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import NamedTuple

import msgspec

from models.records import RatedUsage, UsageRecord
from rating.catalog import Plan
from rating.charges import UsageCharge
from rating.units import display_quantity


@dataclass
class RatingResult:
    """Rated records, and for each refused input its index and the reason (to be dead-lettered)."""

    rated: list[RatedUsage] = field(default_factory=list)
    failures: list[tuple[int, str]] = field(default_factory=list)


@dataclass(frozen=True)
class LineDetail:
    """How one charge priced one record; ``parts`` are ``(rate index, quantity)`` with quantity > 0."""

    charge: UsageCharge
    billed: int
    free: int
    parts: tuple[tuple[int, int], ...]
    connect_fee: bool
    minimum: bool
    amount: Decimal


def breakdown_json(lines: list[LineDetail]) -> str:
    entries = []
    for line in lines:
        charge = line.charge
        entry: dict[str, object] = {
            "charge": charge.name,
            "model": charge.model,
            "unit": charge.unit,
            "billed": str(display_quantity(line.billed, charge.unit_size)),
        }
        if charge.included is not None:
            entry["free"] = str(display_quantity(line.free, charge.unit_size))
        entry["parts"] = [
            {
                "rate": charge.rates[rate].label,
                "quantity": str(display_quantity(qty, charge.rates[rate].divisor)),
                "price": str(charge.rates[rate].price),
            }
            for rate, qty in line.parts
        ]
        if line.connect_fee:
            entry["connect_fee"] = str(charge.connect_fee)
        if line.minimum:
            entry["minimum"] = str(charge.minimum)
        entry["amount"] = str(line.amount)
        entries.append(entry)
    return msgspec.json.encode({"lines": entries}).decode()


def rated_record(
    record: UsageRecord | RecordKeys, plan: Plan, lines: list[LineDetail], *, rated_at_ms: int, rating_version: int = 1
) -> RatedUsage:
    """The rated record: amount is the sum of the (rounded) lines; quantity and unit from the first line."""
    amount = lines[0].amount
    for line in lines[1:]:
        amount += line.amount
    first = lines[0]
    return RatedUsage(
        id=record.id,
        account=record.account,
        service=record.service,
        start_ms=record.start_ms,
        end_ms=record.end_ms,
        quantity=display_quantity(first.billed, first.charge.unit_size),
        unit=first.charge.unit,
        amount=amount,
        currency=plan.currency,
        plan=plan.name,
        plan_version=plan.version,
        rating_version=rating_version,
        rated_at_ms=rated_at_ms,
        breakdown=breakdown_json(lines),
    )


class RecordKeys(NamedTuple):
    """The fields of a usage record that a rated record repeats."""

    id: str
    account: str
    service: str
    start_ms: int
    end_ms: int


__all__ = ["LineDetail", "RatingResult", "RecordKeys", "breakdown_json", "rated_record"]
