"""The reasons a record is refused, worded once so both engines give identical dead-letter reasons."""

from __future__ import annotations

from rating.catalog import Plan
from rating.charges import UsageCharge
from rating.money import MAX_AMOUNT
from rating.units import MAX_SPAN_MS


def span_too_long(span_ms: int) -> str:
    return f"record spans {span_ms} ms, more than the {MAX_SPAN_MS // 86_400_000} days a record may cover"


def no_charge(plan: Plan, event_type: str, service: str) -> str:
    return f"no charge of plan {plan.label!r} applies to event_type {event_type!r}, service {service!r}"


def quantity_too_large(charge: UsageCharge, quantity: int) -> str:
    return f"charge {charge.name!r}: metered {charge.meter} {quantity} exceeds the rating limit"


def no_rate(plan: Plan, charge: UsageCharge, destination: str) -> str:
    return f"charge {charge.name!r} of plan {plan.label!r}: {charge.pricing.refusal(destination)}"


def amount_too_large(plan: Plan) -> str:
    return f"amount under plan {plan.label!r} reaches {MAX_AMOUNT} {plan.currency}, beyond Decimal(18, 6)"


__all__ = ["amount_too_large", "no_charge", "no_rate", "quantity_too_large", "span_too_long"]
