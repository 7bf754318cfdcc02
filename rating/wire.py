"""The columnar edge to the wire: rated records as bytes, straight from the kernel's columns.

:func:`wire_from_columns` gives, for each rated row, exactly the bytes that
``models.codec.encode(rated)`` gives for the :class:`~models.records.RatedUsage` that
:func:`rating.engine.rated_from_columns` would build, without building it: no ``RatedUsage``,
``LineDetail`` or ``Decimal`` per record. The stream agent sends these bytes; the object path stays
the definition (the tests hold the two byte-identical, failures included).

How the text is made, a batch at a time:

- the wire JSON is the ``RatedUsage`` fields in declaration order, those at their default omitted
  (``v``, ``plan_version`` 1, ``rating_version`` 1, ``rated_at_ms`` 0), money as a string; the
  layout is checked against :class:`~models.records.RatedUsage` at import;
- amounts are exact integers of minor units, written at the plan's precision with integer
  arithmetic (what ``str(Decimal(minor).scaleb(-precision))`` writes);
- quantities are written as :func:`rating.units.display_quantity` writes them: whole and
  power-of-ten quotients directly, anything else through that function itself;
- each distinct (number, divisor or precision) of the batch is formatted once: a line's billed
  quantity and its part's quantity, or a line's amount and its record's, are often the same;
- the breakdown is a JSON document inside a JSON string. JSON string escaping maps each character
  on its own, so ``escape(a + b) == escape(a) + escape(b)``: every constant piece (charge, model,
  unit, rate labels, prices, fees) is escaped twice once per catalog, and numbers need no escaping;
- ``id``, ``account`` and ``service`` go in as they are when a whole column is printable ASCII
  without ``"`` or ``\\``, and through msgspec's own encoder otherwise.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np
import pandas as pd

from models.codec import encode
from models.records import SCHEMA_VERSION, RatedUsage, UsageRecord
from rating.catalog import Catalog
from rating.charges import UsageCharge
from rating.columns import UsageColumns, records_to_columns, to_columns
from rating.engine import SMALL_BATCH, Engine, rate_columns
from rating.kernel import collector_paused
from rating.reference import rate_reference
from rating.state import RatingState
from rating.units import display_quantity

# The layout written below: RatedUsage's fields in this order, those at their default omitted
# (omit_defaults=True). A change of the record type must be made here too: refuse to run until it is.
_FIELDS = (
    "id", "v", "account", "service", "start_ms", "end_ms", "quantity", "unit", "amount", "currency", "plan",
    "plan_version", "rating_version", "rated_at_ms", "breakdown",
)  # fmt: skip
_DEFAULTS = dict(
    zip(
        RatedUsage.__struct_fields__[-len(RatedUsage.__struct_defaults__) :],
        RatedUsage.__struct_defaults__,
        strict=True,
    )
)
if (
    RatedUsage.__struct_fields__ != _FIELDS
    or not RatedUsage.__struct_config__.omit_defaults
    or {name: _DEFAULTS.get(name) for name in ("v", "plan_version", "rating_version", "rated_at_ms")}
    != {"v": SCHEMA_VERSION, "plan_version": 1, "rating_version": 1, "rated_at_ms": 0}
):  # pragma: no cover - guards the hand-written layout against a change of models.records
    raise ImportError("models.records.RatedUsage changed its wire layout: update rating.wire to match")

_json = msgspec.json.Encoder()  # for strings only: the escaping of models.codec's encoder
_POWERS_OF_TEN = {10**k: k for k in range(1, 10)}  # as units.display_quantity


@dataclass
class WireResult:
    """Rated records on the wire, and the refused inputs.

    ``values[i]`` is the encoded rated record of input row ``rows[i]`` and ``keys[i]`` its Kafka key
    (the account, UTF-8); ``failures`` are ``(input row, reason)`` as in :class:`RatingResult`.
    """

    keys: list[bytes] = field(default_factory=list)
    values: list[bytes] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    failures: list[tuple[int, str]] = field(default_factory=list)


def escaped(text: str) -> str:
    """``text`` as it appears inside a JSON string literal, exactly as msgspec writes it (no quotes)."""
    return _json.encode(text).decode()[1:-1]


def escaped_column(values: Sequence[Any]) -> Sequence[str]:
    """:func:`escaped` of each value; one check over the column when none needs escaping."""
    try:
        joined = "".join(values)
    except TypeError:
        raise TypeError("id, account and service must be str (RatedUsage's types)") from None
    # printable ASCII (0x20-0x7e) other than the quote and the backslash is written as it is
    if joined.isascii() and joined.isprintable() and '"' not in joined and "\\" not in joined:
        return values
    return [escaped(value) for value in values]


_POW10 = 10 ** np.arange(19, dtype=np.int64)  # every power of ten an int64 holds


def decimal_texts(whole: np.ndarray, fraction: np.ndarray, places: np.ndarray, negative: np.ndarray) -> list[str]:
    """``f"{'-' if negative else ''}{whole}.{fraction:0{places}d}"`` for each row, written a digit column
    at a time into one byte matrix instead of a format per number (``whole`` and ``fraction`` are
    non-negative int64, ``1 <= places <= 18`` and ``fraction < 10**places``); trailing NUL bytes of a
    row are not part of its text."""
    n = whole.shape[0]
    if not n:
        return []
    digits = 1 + np.searchsorted(_POW10[1:], whole, side="right")  # 1 for 0
    dot = negative + digits
    width = int((dot + 1 + places).max())
    text = np.zeros(n * width, dtype=np.uint8)  # row-major: row r's text at r * width
    start = np.arange(0, n * width, width, dtype=np.int64)
    text[start[negative]] = ord("-")
    dot += start
    text[dot] = ord(".")

    def write(values: np.ndarray, count: np.ndarray, last: np.ndarray) -> None:
        # `count` digits of each value, its last one at `last`: a digit column at a time, from the right
        rest, fewest = values.copy(), int(count.min())
        for k in range(int(count.max())):
            rest, digit = np.divmod(rest, 10)
            if k < fewest:
                text[last - k] = 48 + digit
            else:
                has = count > k
                text[last[has] - k] = 48 + digit[has]

    write(whole, digits, dot - 1)
    write(fraction, places, dot + places)
    return list(map(bytes.decode, text.view(f"S{width}").tolist()))


def quantity_texts(quantities: np.ndarray, divisor: int) -> list[str]:
    """``str(display_quantity(q, divisor))`` for each ``q``, directly where that is plain digits."""
    if divisor == 1:
        return list(map(str, quantities.tolist()))
    whole, rest = np.divmod(quantities, divisor)
    fraction = rest != 0
    if not fraction.any():
        return list(map(str, whole.tolist()))
    texts = np.empty(quantities.shape[0], dtype=object)
    wholes = np.flatnonzero(~fraction)
    texts[wholes] = _objects(list(map(str, whole[wholes].tolist())))
    if divisor in _POWERS_OF_TEN:
        # The exact quotient, trailing zeros dropped; Decimal writes below 1e-6 with an exponent
        # (1E-7): those are left to display_quantity below.
        plain = np.flatnonzero(fraction & ((whole > 0) | (rest * 1_000_000 >= divisor)))
        places = np.full(plain.shape[0], _POWERS_OF_TEN[divisor], dtype=np.int64)
        decimals = rest[plain]
        while True:  # trailing zeros dropped, a decimal at a time (never all: no fraction is 0)
            zero = decimals % 10 == 0
            if not zero.any():
                break
            decimals = np.where(zero, decimals // 10, decimals)
            places -= zero
        texts[plain] = _objects(decimal_texts(whole[plain], decimals, places, np.zeros(plain.shape[0], dtype=bool)))
        fraction[plain] = False
    for index in np.flatnonzero(fraction).tolist():
        texts[index] = str(display_quantity(int(quantities[index]), divisor))
    result: list[str] = texts.tolist()
    return result


def amount_texts(amounts: np.ndarray, precision: int) -> list[str]:
    """``str(from_minor_units(a, precision))`` for each ``a``: exactly ``precision`` decimals, no exponent."""
    if precision == 0:
        return list(map(str, amounts.tolist()))
    whole, fraction = np.divmod(np.abs(amounts), 10**precision)
    return decimal_texts(whole, fraction, np.full(amounts.shape[0], precision, dtype=np.int64), amounts < 0)


def _format_distinct(
    values: np.ndarray, keys: np.ndarray, key_values: tuple[int, ...], formatter: Callable[[np.ndarray, int], list[str]]
) -> np.ndarray:
    """``formatter`` over each distinct (value, key) once, spread back to every position (object array).
    ``key_values`` holds every value ``keys`` may take (a catalog's divisors or precisions)."""
    texts = np.empty(values.shape[0], dtype=object)
    for key in key_values:
        where = np.flatnonzero(keys == key)
        if where.shape[0] == values.shape[0]:
            codes, distinct = pd.factorize(values)
            texts[:] = _objects(formatter(distinct, key))[codes]
            break
        if where.shape[0]:
            codes, distinct = pd.factorize(values[where])
            texts[where] = _objects(formatter(distinct, key))[codes]
    return texts


@dataclass(frozen=True)
class _CatalogText:
    """The catalog's constant text, escaped for the wire once. Charges are numbered across plans
    (``slot = charge_base[plan] + charge``) and their rates likewise (``rate_base[slot] + rate``)."""

    charge_base: np.ndarray
    precision: np.ndarray  # per plan
    precisions: tuple[int, ...]  # distinct, of every plan
    divisors: tuple[int, ...]  # distinct, of every unit and rate
    plan_fields: list[str]  # per plan: ","currency":...,"plan":...[,"plan_version":n]
    head: np.ndarray  # per slot: {\"charge\":...,\"billed\":\"   (first line of a record)
    next_head: np.ndarray  # per slot: the same after a comma      (its other lines)
    unit_size: np.ndarray
    unit: np.ndarray  # the unit as the record's ``unit`` field (escaped, no quotes)
    has_free: np.ndarray
    after_billed: np.ndarray  # \",\"free\":\"  or  \",\"parts\":[
    after_free: np.ndarray  # \",\"parts\":[  or  nothing
    connect_fee: np.ndarray  # ,\"connect_fee\":\"0.05\"
    minimum: np.ndarray
    rate_base: np.ndarray
    rate: np.ndarray  # per rate slot: {\"rate\":...,\"quantity\":\"
    next_rate: np.ndarray  # the same after a comma
    price: np.ndarray  # \",\"price\":\"0.10\"}
    divisor: np.ndarray


def _objects(values: list[str]) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def _compile(catalog: Catalog) -> _CatalogText:
    def name(text: str) -> str:
        return _json.encode(text).decode()

    charges: list[UsageCharge] = [charge for plan in catalog.plans for charge in plan.charges]
    rates = [(charge, rate) for charge in charges for rate in charge.rates]
    free, parts = escaped('","free":"'), escaped('","parts":[')
    head = [
        escaped(f'{{"charge":{name(c.name)},"model":{name(c.model)},"unit":{name(c.unit)},"billed":"') for c in charges
    ]
    rate = [escaped(f'{{"rate":{name(r.label)},"quantity":"') for _, r in rates]
    return _CatalogText(
        charge_base=np.cumsum([0] + [len(plan.charges) for plan in catalog.plans])[:-1].astype(np.int64),
        precision=np.array([plan.precision for plan in catalog.plans], dtype=np.int64),
        precisions=tuple(sorted({plan.precision for plan in catalog.plans})),
        divisors=tuple(sorted({c.unit_size for c in charges} | {r.divisor for _, r in rates})),
        plan_fields=[
            f'","currency":{name(plan.currency)},"plan":{name(plan.name)}'
            + (f',"plan_version":{plan.version}' if plan.version != 1 else "")
            for plan in catalog.plans
        ],
        head=_objects(head),
        next_head=_objects(["," + text for text in head]),
        unit_size=np.array([c.unit_size for c in charges], dtype=np.int64),
        unit=_objects([escaped(c.unit) for c in charges]),
        has_free=np.array([c.included is not None for c in charges], dtype=bool),
        after_billed=_objects([free if c.included is not None else parts for c in charges]),
        after_free=_objects([parts if c.included is not None else "" for c in charges]),
        connect_fee=_objects([escaped(f',"connect_fee":"{c.connect_fee}"') for c in charges]),
        minimum=_objects([escaped(f',"minimum":"{c.minimum}"') for c in charges]),
        rate_base=np.cumsum([0] + [len(c.rates) for c in charges])[:-1].astype(np.int64),
        rate=_objects(rate),
        next_rate=_objects(["," + text for text in rate]),
        price=_objects([escaped(f'","price":"{r.price}"}}') for _, r in rates]),
        divisor=np.array([r.divisor for _, r in rates], dtype=np.int64),
    )


_COMPILED: weakref.WeakKeyDictionary[Catalog, _CatalogText] = weakref.WeakKeyDictionary()


def _catalog_text(catalog: Catalog) -> _CatalogText:
    found = _COMPILED.get(catalog)
    if found is None:
        found = _COMPILED[catalog] = _compile(catalog)
    return found


_AMOUNT = escaped(',"amount":"')
_LINE_END = escaped('"}')
_BREAKDOWN = ',"breakdown":"' + escaped('{"lines":[')
_RECORD_END = escaped("]}") + '"}'


def wire_from_columns(
    columns: Mapping[str, Any] | UsageColumns,
    result: Mapping[str, np.ndarray],
    catalog: Catalog,
    *,
    rated_at_ms: int = 0,
    rating_version: int = 1,
) -> WireResult:
    """:func:`rate_columns` output as wire bytes: ``encode(r)`` for each ``r`` that
    :func:`rated_from_columns` returns for the same arguments, in the same order, same failures."""
    with collector_paused():
        return _wire_from_columns(to_columns(columns), result, catalog, rated_at_ms, rating_version)


def _wire_from_columns(
    batch: UsageColumns, result: Mapping[str, np.ndarray], catalog: Catalog, rated_at_ms: int, rating_version: int
) -> WireResult:
    text = _catalog_text(catalog)
    output = WireResult()
    rated = np.asarray(result["rated"], dtype=bool)
    rows = np.flatnonzero(rated)
    if rows.shape[0] < rated.shape[0]:
        reasons = result["reason"]
        output.failures = [(row, str(reasons[row])) for row in np.flatnonzero(~rated).tolist()]
    if not rows.shape[0]:
        return output

    # The lines of the rated rows, in row order (the kernel sorts lines by row, a row's in charge order).
    line_row = result["line_row"]
    kept = np.flatnonzero(rated[line_row])
    row_of_line = line_row[kept]
    first = np.ones(kept.shape[0], dtype=bool)  # the first line of its record
    first[1:] = row_of_line[1:] != row_of_line[:-1]
    first_line = np.flatnonzero(first)
    if first_line.shape[0] != rows.shape[0]:
        raise ValueError("a rated row without a charge line")  # rated_from_columns cannot build it either
    plan_of_row = result["plan_index"][rows].astype(np.int64)
    line_count = np.diff(np.append(first_line, kept.shape[0]))
    plan_of_line = np.repeat(plan_of_row, line_count)
    slot = text.charge_base[plan_of_line] + result["line_charge"][kept]

    # Parts of those lines, each with the line's position in `kept`.
    part_line = result["part_line"]
    position = np.full(line_row.shape[0] + 1, -1, dtype=np.int64)
    position[kept] = np.arange(kept.shape[0])
    part_kept = position[part_line]
    parts = np.flatnonzero(part_kept >= 0)
    line_of_part = part_kept[parts]
    rate_slot = text.rate_base[slot[line_of_part]] + result["part_rate"][parts]
    first_part = np.ones(parts.shape[0], dtype=bool)
    first_part[1:] = line_of_part[1:] != line_of_part[:-1]

    # Numbers: billed and free quantities of lines, part quantities; line and record amounts.
    line_billed = result["line_billed"][kept]
    with_free = np.flatnonzero(text.has_free[slot])
    quantities = _format_distinct(
        np.concatenate([line_billed, result["line_free"][kept][with_free], result["part_qty"][parts]]),
        np.concatenate([text.unit_size[slot], text.unit_size[slot][with_free], text.divisor[rate_slot]]),
        text.divisors,
        quantity_texts,
    )
    billed = quantities[: kept.shape[0]]
    free = np.full(kept.shape[0], "", dtype=object)
    free[with_free] = quantities[kept.shape[0] : kept.shape[0] + with_free.shape[0]]
    part_quantity = quantities[kept.shape[0] + with_free.shape[0] :]
    line_amount = result["line_amount"][kept].astype(np.int64)
    total = np.add.reduceat(line_amount, first_line) if kept.shape[0] else line_amount
    amounts = _format_distinct(
        np.concatenate([line_amount, total]),
        np.concatenate([text.precision[plan_of_line], text.precision[plan_of_row]]),
        text.precisions,
        amount_texts,
    )

    # Parts, then lines, then records: each a format over aligned columns.
    part_texts = [
        f"{opening}{quantity}{price}"
        for opening, quantity, price in zip(
            np.where(first_part, text.rate[rate_slot], text.next_rate[rate_slot]).tolist(),
            part_quantity.tolist(),
            text.price[rate_slot].tolist(),
            strict=True,
        )
    ]
    part_count = np.bincount(line_of_part, minlength=kept.shape[0])
    line_parts = np.full(kept.shape[0], "", dtype=object)
    single = part_count[line_of_part] == 1
    line_parts[line_of_part[single]] = _objects(part_texts)[single]
    part_start = np.cumsum(part_count) - part_count
    for line in np.flatnonzero(part_count > 1).tolist():
        start = int(part_start[line])
        line_parts[line] = "".join(part_texts[start : start + int(part_count[line])])
    fee = np.where(result["line_fee"][kept], text.connect_fee[slot], "")
    minimum = np.where(result["line_minimum"][kept], text.minimum[slot], "")
    line_texts = [
        f"{head}{billed_}{after_billed}{free_}{after_free}{parts_}]{fee_}{minimum_}{_AMOUNT}{amount}{_LINE_END}"
        for head, billed_, after_billed, free_, after_free, parts_, fee_, minimum_, amount in zip(
            np.where(first, text.head[slot], text.next_head[slot]).tolist(),
            billed.tolist(),
            text.after_billed[slot].tolist(),
            free.tolist(),
            text.after_free[slot].tolist(),
            line_parts.tolist(),
            fee.tolist(),
            minimum.tolist(),
            amounts[: kept.shape[0]].tolist(),
            strict=True,
        )
    ]
    breakdowns = _objects(line_texts)[first_line]
    for n in np.flatnonzero(line_count > 1).tolist():
        start = int(first_line[n])
        breakdowns[n] = "".join(line_texts[start : start + int(line_count[n])])

    tail = ""
    if rating_version != 1:
        tail += f',"rating_version":{rating_version}'
    if rated_at_ms != 0:
        tail += f',"rated_at_ms":{rated_at_ms}'
    plan_text = _objects([fields + tail + _BREAKDOWN for fields in text.plan_fields])[plan_of_row]
    accounts = batch.account[rows].tolist()
    output.values = [
        f'{{"id":"{id_}","account":"{account}","service":"{service}","start_ms":{start},"end_ms":{end},'
        f'"quantity":"{quantity}","unit":"{unit}","amount":"{amount}{plan}{breakdown}{_RECORD_END}'.encode()
        for id_, account, service, start, end, quantity, unit, amount, plan, breakdown in zip(
            escaped_column(batch.id[rows].tolist()),
            escaped_column(accounts),
            escaped_column(batch.service[rows].tolist()),
            batch.start_ms[rows].tolist(),
            batch.end_ms[rows].tolist(),
            billed[first_line].tolist(),
            text.unit[slot[first_line]].tolist(),
            amounts[kept.shape[0] :].tolist(),
            plan_text.tolist(),
            breakdowns.tolist(),
            strict=True,
        )
    ]
    output.keys = [account.encode() for account in accounts]
    output.rows = rows.tolist()
    return output


def rate_usage_wire(
    records: Sequence[UsageRecord],
    catalog: Catalog,
    *,
    rated_at_ms: int = 0,
    state: RatingState | None = None,
    engine: Engine = "auto",
) -> WireResult:
    """:func:`rating.engine.rate_usage` with the rated records as wire bytes (see :class:`WireResult`):
    same engines, same allowance state, same failures; ``values`` are ``encode`` of its ``rated``."""
    state = state if state is not None else RatingState()
    if engine == "reference" or (engine == "auto" and len(records) < SMALL_BATCH):
        reference = rate_reference(records, catalog, rated_at_ms=rated_at_ms, state=state)
        refused = {row for row, _ in reference.failures}
        return WireResult(
            keys=[rated.account.encode() for rated in reference.rated],
            values=[encode(rated) for rated in reference.rated],
            rows=[row for row in range(len(records)) if row not in refused],
            failures=reference.failures,
        )
    with collector_paused():
        columns = records_to_columns(records)
        result = rate_columns(columns, catalog, state=state)
        return _wire_from_columns(columns, result, catalog, rated_at_ms, 1)


__all__ = [
    "WireResult",
    "amount_texts",
    "escaped",
    "escaped_column",
    "quantity_texts",
    "rate_usage_wire",
    "wire_from_columns",
]
