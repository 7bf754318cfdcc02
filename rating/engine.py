"""Rating: usage records to rated usage against the catalog. A pure function over a batch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import msgspec

from models.records import RatedUsage, UsageRecord
from rating.catalog import UNIT_BYTES, Catalog


@dataclass
class RatingResult:
    """Rated records, and for each refused input its index and the reason (to be dead-lettered)."""

    rated: list[RatedUsage] = field(default_factory=list)
    failures: list[tuple[int, str]] = field(default_factory=list)


def rate_usage(records: Sequence[UsageRecord], catalog: Catalog, *, rated_at_ms: int = 0) -> RatingResult:
    """Price each record with the plan in force for its account at its start time.

    A record with no plan is refused with a reason, never charged zero.
    """
    result = RatingResult()
    quantum = Decimal(1).scaleb(-catalog.scale)
    for i, rec in enumerate(records):
        plan = catalog.plan_for(rec.account, rec.start_ms)
        if plan is None:
            result.failures.append((i, f"no active plan for account {rec.account!r} at start_ms {rec.start_ms}"))
            continue
        total_bytes = rec.bytes_up + rec.bytes_down
        amount = Decimal(0)
        parts = []
        quantity = Decimal(0)
        unit = ""
        for charge in plan.charges:
            quantity = Decimal(total_bytes) / UNIT_BYTES[charge.unit]
            unit = charge.unit
            line = (quantity * charge.price).quantize(quantum, rounding=plan.rounding)
            amount += line
            parts.append({"model": charge.model, "unit": charge.unit, "quantity": str(quantity),
                          "price": str(charge.price), "amount": str(line)})
        result.rated.append(
            RatedUsage(
                id=rec.id,
                account=rec.account,
                service=rec.service,
                start_ms=rec.start_ms,
                end_ms=rec.end_ms,
                quantity=quantity,
                unit=unit,
                amount=amount,
                currency=plan.currency,
                plan=plan.name,
                plan_version=plan.version,
                rated_at_ms=rated_at_ms,
                breakdown=msgspec.json.encode(parts).decode(),
            )
        )
    return result
