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

import weakref
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


class LineDetail(NamedTuple):
    """How one charge priced one record; ``parts`` are ``(rate index, quantity)`` with quantity > 0."""

    charge: UsageCharge
    billed: int
    free: int
    parts: tuple[tuple[int, int], ...]
    connect_fee: bool
    minimum: bool
    amount: Decimal


@dataclass(frozen=True)
class _Fragments:
    """A charge's constant JSON pieces, escaped once, so a breakdown is built by concatenation."""

    head: str  # {"charge":...,"model":...,"unit":...,"billed":"
    rates: tuple[str, ...]  # {"rate":...,"quantity":"   per rate
    prices: tuple[str, ...]  # ","price":"0.10"}           per rate
    connect_fee: str
    minimum: str


_FRAGMENTS: weakref.WeakKeyDictionary[UsageCharge, _Fragments] = weakref.WeakKeyDictionary()


def _fragments(charge: UsageCharge) -> _Fragments:
    found = _FRAGMENTS.get(charge)
    if found is None:
        text = msgspec.json.encode
        found = _Fragments(
            head=f'{{"charge":{text(charge.name).decode()},"model":{text(charge.model).decode()},'
            f'"unit":{text(charge.unit).decode()},"billed":"',
            rates=tuple(f'{{"rate":{text(rate.label).decode()},"quantity":"' for rate in charge.rates),
            prices=tuple(f'","price":"{rate.price}"}}' for rate in charge.rates),
            connect_fee=f',"connect_fee":"{charge.connect_fee}"',
            minimum=f',"minimum":"{charge.minimum}"',
        )
        _FRAGMENTS[charge] = found
    return found


_LINE_CACHE: dict[LineDetail, str] = {}
_LINE_CACHE_SIZE = 65_536


def breakdown_json(lines: list[LineDetail]) -> str:
    """The JSON breakdown of a rated record (format in the module docstring)."""
    if len(lines) == 1:  # one line, often seen before (an SMS, a whole-minute call): reuse its text
        cached = _LINE_CACHE.get(lines[0])
        if cached is None:
            cached = _lines_json(lines)
            if len(_LINE_CACHE) >= _LINE_CACHE_SIZE:
                _LINE_CACHE.clear()
            _LINE_CACHE[lines[0]] = cached
        return cached
    return _lines_json(lines)


def _lines_json(lines: list[LineDetail]) -> str:
    entries = []
    for line in lines:
        charge = line.charge
        pieces = _fragments(charge)
        entry = pieces.head + str(display_quantity(line.billed, charge.unit_size)) + '"'
        if charge.included is not None:
            entry += ',"free":"' + str(display_quantity(line.free, charge.unit_size)) + '"'
        entry += ',"parts":[' + ",".join(
            pieces.rates[rate] + str(display_quantity(qty, charge.rates[rate].divisor)) + pieces.prices[rate]
            for rate, qty in line.parts
        )
        entry += "]"
        if line.connect_fee:
            entry += pieces.connect_fee
        if line.minimum:
            entry += pieces.minimum
        entries.append(entry + ',"amount":"' + str(line.amount) + '"}')
    return '{"lines":[' + ",".join(entries) + "]}"


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
