"""The contract every charge model implements, and the shapes it works on.

A usage charge turns one record into *parts*: ``(rate index, quantity)`` pairs, where the rate says
the price per ``divisor`` base units. The engine does everything else the same way for every model
(meter, billing increments, tariff-time split, allowance, connect fee, minimum, rounding), once in
the per-record reference and once vectorised, so a model only says how its quantity meets its rates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

import numpy as np

from rating.calendar import BandSchedule, LocalClock
from rating.errors import CatalogError
from rating.units import Dimension, Increments, parse_quantity


@dataclass(frozen=True)
class Rate:
    """``price`` for every ``divisor`` base units (``divisor`` 1 for a fee or a price per block)."""

    label: str
    price: Decimal
    divisor: int


@dataclass(frozen=True)
class LineQuantities:
    """What the reference hands a model for one record and one charge (all in base units)."""

    billed: int  # after billing increments
    free: int  # taken from the allowance
    chargeable: int  # billed - free
    position: int  # units already counted this period before this record (period-scoped tiers)
    selector: int  # model-specific choice made from the record (the zone), 0 when unused
    segments: tuple[tuple[int, int], ...]  # (band index, chargeable units) in time order


@dataclass(frozen=True)
class LineArrays:
    """The same as :class:`LineQuantities` for many records at once (int64 arrays)."""

    billed: np.ndarray
    free: np.ndarray
    chargeable: np.ndarray
    position: np.ndarray
    selector: np.ndarray
    seg_row: np.ndarray  # segments sorted by row; row indexes the arrays above
    seg_band: np.ndarray
    seg_qty: np.ndarray

    @property
    def size(self) -> int:
        return int(self.billed.shape[0])


@dataclass(frozen=True)
class PartArrays:
    """Parts for many records: ``row`` (sorted), ``rate`` index and quantity; zero quantities allowed."""

    row: np.ndarray
    rate: np.ndarray
    qty: np.ndarray


class Pricing:
    """Model-specific pricing of one charge. Subclasses set ``rates`` and implement the two ``parts``."""

    uses_bands: bool = False  # split records at tariff-time edges (time of day)
    uses_position: bool = False  # priced by the period-to-date position (period tiers)
    rates: tuple[Rate, ...] = ()
    bands: BandSchedule | None = None

    def counter_cap(self) -> int | None:
        """Period position after which the price no longer depends on the position (None: unused)."""
        return None

    def select(self, destination: str) -> int | None:
        """Choose among the model's rate groups from the record (None refuses it); default: one group."""
        return 0

    def select_many(self, destinations: np.ndarray) -> np.ndarray:
        """Vectorised :meth:`select`, -1 where nothing matches."""
        return np.zeros(destinations.shape[0], dtype=np.int64)

    def refusal(self, destination: str) -> str:
        return f"no rate matches destination {destination!r}"

    def reference_parts(self, line: LineQuantities) -> list[tuple[int, int]]:
        raise NotImplementedError

    def kernel_parts(self, lines: LineArrays) -> PartArrays:
        raise NotImplementedError


@dataclass(frozen=True, eq=False)
class UsageCharge:
    """One usage charge of a plan: what it meters, how it bills, and its model's pricing."""

    name: str
    model: str
    unit: str
    unit_size: int
    meter: str
    pricing: Pricing
    event_types: frozenset[str] | None = None  # None: any
    services: frozenset[str] | None = None
    increments: Increments = field(default_factory=Increments)
    included: int | None = None  # free base units per period (allowance), shared by charges of this name
    period: str = "month"
    connect_fee: Decimal = Decimal(0)
    minimum: Decimal = Decimal(0)
    split: str = "proportional"  # how a record crossing a band edge is priced: proportional | start
    bands: BandSchedule | None = None
    counter: str = ""  # allowance counter in the state: "<plan>/<charge>" unless the catalog names one

    @property
    def rates(self) -> tuple[Rate, ...]:
        return self.pricing.rates

    @property
    def has_counter(self) -> bool:
        return self.included is not None or self.pricing.uses_position

    def counter_cap(self) -> int:
        """Position beyond which nothing about the price changes, so state need not remember records."""
        if self.included is not None:
            return self.included
        return self.pricing.counter_cap() or 0

    def applies_to(self, event_type: str, service: str) -> bool:
        return (self.event_types is None or event_type in self.event_types) and (
            self.services is None or service in self.services
        )


@dataclass(frozen=True)
class RecurringCharge:
    """A flat fee per period (subscription fee), billed per subscription and not per usage record."""

    name: str
    amount: Decimal
    period: str = "month"
    prorate: bool = True


@dataclass
class ParseContext:
    """What a model's parser needs from its plan: money rules, units, clock and calendars."""

    plan_where: str
    precision: int
    clock: LocalClock
    calendars: dict[str, Any]
    unit: str = ""
    unit_size: int = 1
    dimension: Dimension = Dimension.DATA

    def money(self, value: Any, where: str) -> Decimal:
        return parse_money(value, where)

    def fee(self, value: Any, where: str) -> Decimal:
        """A fixed amount (connect fee, minimum, tier fee): at most ``precision`` decimals, so exact."""
        amount = parse_money(value, where)
        if amount.as_tuple().exponent < -self.precision:  # type: ignore[operator]
            raise CatalogError(where, f"{amount} has more decimals than the plan's precision ({self.precision})")
        return amount

    def quantity(self, value: Any, where: str) -> int:
        return parse_quantity(value, self.unit, self.dimension, where)


def parse_money(value: Any, where: str) -> Decimal:
    """A price or amount: a quoted decimal string (or an int), finite, non-negative; never a float."""
    if isinstance(value, float):
        raise CatalogError(where, f"write money as a quoted string, not a float: {value!r}")
    if value is None or isinstance(value, bool):
        raise CatalogError(where, "missing amount")
    try:
        result = Decimal(str(value).strip())
    except ArithmeticError:
        raise CatalogError(where, f"not a decimal amount: {value!r}") from None
    if not result.is_finite() or result < 0:
        raise CatalogError(where, f"must be a finite, non-negative amount: {value!r}")
    return result


class ChargeModel(Protocol):
    """A charge model registered by name; ``parse`` reads its own fields of a charge entry."""

    name: str
    usage: bool  # False for recurring fees, which never price a usage record

    def parse(self, raw: dict[str, Any], ctx: ParseContext, where: str) -> Any: ...


__all__ = [
    "ChargeModel",
    "LineArrays",
    "LineQuantities",
    "ParseContext",
    "PartArrays",
    "Pricing",
    "Rate",
    "RecurringCharge",
    "UsageCharge",
    "parse_money",
]
