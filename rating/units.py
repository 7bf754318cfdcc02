"""Units, meters and billing increments: how a usage record becomes a whole number of base units.

Every quantity inside the engine is an integer count of a *base unit*: bytes for data, seconds for
time, one per record for events. Units in the catalog (GB, minute, ...) are only a divisor of that.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from decimal import Context, Decimal, InvalidOperation
from enum import Enum
from typing import Any

from rating.errors import CatalogError


class Dimension(Enum):
    DATA = "data"
    TIME = "time"
    EVENTS = "events"


# unit name -> (dimension, size in base units); decimal data units as operators bill them, binary ones too
UNITS: dict[str, tuple[Dimension, int]] = {
    "B": (Dimension.DATA, 1),
    "KB": (Dimension.DATA, 10**3),
    "MB": (Dimension.DATA, 10**6),
    "GB": (Dimension.DATA, 10**9),
    "TB": (Dimension.DATA, 10**12),
    "KiB": (Dimension.DATA, 2**10),
    "MiB": (Dimension.DATA, 2**20),
    "GiB": (Dimension.DATA, 2**30),
    "second": (Dimension.TIME, 1),
    "minute": (Dimension.TIME, 60),
    "hour": (Dimension.TIME, 3600),
    "event": (Dimension.EVENTS, 1),
}
UNIT_ALIASES = {"s": "second", "sec": "second", "min": "minute", "h": "hour", "events": "event"}

# meter name -> dimension; a meter says which field(s) of a usage record are counted
METERS: dict[str, Dimension] = {
    "bytes": Dimension.DATA,  # bytes_up + bytes_down
    "bytes_up": Dimension.DATA,
    "bytes_down": Dimension.DATA,
    "duration": Dimension.TIME,  # duration_s, else the record's end - start rounded up to a second
    "events": Dimension.EVENTS,  # one per record (SMS, MMS, API call)
}
DEFAULT_METER = {Dimension.DATA: "bytes", Dimension.TIME: "duration", Dimension.EVENTS: "events"}

# a record whose metered quantity exceeds this many base units is refused (10 PB, or 317 million years)
MAX_QUANTITY = 10**16
# a record lasting longer than this is refused: sessions that long are split by interim accounting
MAX_SPAN_MS = 400 * 86_400_000

_QUANTITY = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*$")


def unit_of(name: Any, where: str) -> tuple[str, Dimension, int]:
    """Resolve a unit name (or alias) to (canonical name, dimension, size in base units)."""
    canonical = UNIT_ALIASES.get(str(name), str(name))
    if canonical not in UNITS:
        raise CatalogError(where, f"unknown unit {name!r} (known: {', '.join(UNITS)})")
    dimension, size = UNITS[canonical]
    return canonical, dimension, size


def parse_quantity(value: Any, default_unit: str, dimension: Dimension, where: str) -> int:
    """``10``, ``"10 GB"`` or ``"1.5 minute"`` to a whole number of base units of ``dimension``."""
    if isinstance(value, bool) or value is None:
        raise CatalogError(where, f"expected a quantity such as '10 GB', not {value!r}")
    if isinstance(value, float):
        raise CatalogError(where, f"write fractional quantities as a quoted string, not a float: {value!r}")
    match = _QUANTITY.match(str(value))
    if not match:
        raise CatalogError(where, f"expected a quantity such as '10 GB' or '60', not {value!r}")
    number_text, unit_text = match.groups()
    unit_name, unit_dimension, size = unit_of(unit_text or default_unit, where)
    if unit_dimension is not dimension:
        raise CatalogError(where, f"unit {unit_name!r} measures {unit_dimension.value}, not {dimension.value}")
    try:
        base = Decimal(number_text) * size
    except InvalidOperation:
        raise CatalogError(where, f"not a number: {number_text!r}") from None
    if base != base.to_integral_value():
        raise CatalogError(where, f"{value!r} is not a whole number of base units ({_BASE_NAME[dimension]})")
    return int(base)


_BASE_NAME = {Dimension.DATA: "bytes", Dimension.TIME: "seconds", Dimension.EVENTS: "events"}


@dataclass(frozen=True)
class Increments:
    """Billing increments: the first ``first`` units are billed whole, then blocks of ``step``.

    ``60/60`` bills whole minutes, ``30/6`` a 30-second minimum then 6-second steps, ``1/1`` per
    second; for data, ``1 KB`` rounds each record up to whole kilobytes.
    """

    first: int = 1
    step: int = 1

    def billed(self, quantity: int) -> int:
        """Base units billed for ``quantity`` metered units (0 stays 0)."""
        if quantity <= 0:
            return 0
        if quantity <= self.first:
            return self.first
        return self.first + -(-(quantity - self.first) // self.step) * self.step

    def describe(self) -> str:
        return f"{self.first}/{self.step}"


def parse_increments(value: Any, default_unit: str, dimension: Dimension, where: str) -> Increments:
    """``"60/60"``, ``"30/6"``, ``"1 MB"`` or ``{first: 60, step: 60}`` to :class:`Increments`."""
    if value is None:
        return Increments()
    if isinstance(value, dict):
        first_raw, step_raw = value.get("first"), value.get("step", value.get("first"))
    else:
        text = str(value)
        first_raw, _, step_raw = text.partition("/")
        step_raw = step_raw or first_raw
    # bare numbers in increments are base units (seconds, bytes), as operators write "60/60"
    base_unit = {Dimension.DATA: "B", Dimension.TIME: "second", Dimension.EVENTS: "event"}[dimension]
    first = parse_quantity(first_raw, base_unit, dimension, f"{where}.first")
    step = parse_quantity(step_raw, base_unit, dimension, f"{where}.step")
    if first < 1 or step < 1:
        raise CatalogError(where, f"increments must be at least one base unit, not {value!r}")
    return Increments(first, step)


@functools.lru_cache(maxsize=8192)  # calls repeat (whole minutes, one event, package counts)
def display_quantity(quantity: int, divisor: int) -> Decimal:
    """``quantity`` base units expressed in a unit of ``divisor`` base units, exact up to 9 decimals.

    Non-terminating quotients (seconds in minutes) are rounded half-even to 9 decimals: this is a
    display value; amounts are always computed from the exact integer quantity.
    """
    if divisor == 1:
        return Decimal(quantity)
    whole, rest = divmod(quantity, divisor)
    if rest == 0:
        return Decimal(whole)
    digits = _DECIMAL_DIGITS.get(divisor)
    if digits is not None:  # a power of ten: the exact quotient as text, trailing zeros dropped
        return Decimal(f"{whole}.{rest:0{digits}d}".rstrip("0"))
    value = _WIDE.divide(Decimal(quantity), Decimal(divisor))
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -9:
        value = value.quantize(_NANO)
    return value


_DECIMAL_DIGITS = {10**k: k for k in range(1, 10)}  # powers of ten up to 10**9 divide exactly within 9 decimals
_NANO = Decimal("1e-9")
_WIDE = Context(prec=60)  # wide enough that 1e16 / 2**30 is exact before the 9-decimal rounding

__all__ = [
    "DEFAULT_METER",
    "MAX_QUANTITY",
    "MAX_SPAN_MS",
    "METERS",
    "UNITS",
    "Dimension",
    "Increments",
    "display_quantity",
    "parse_increments",
    "parse_quantity",
    "unit_of",
]
