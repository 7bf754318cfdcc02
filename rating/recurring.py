"""Recurring flat fees (``model: flat``): what an account owes for holding its plan in a month.

Billing calls :func:`recurring_fees` per account and month. A fee is prorated by the share of the
month (in the plan's local time) that the account was on that plan version, rounded once with the
plan's rounding mode; with ``prorate: false`` the version in force when the account's month began
charges the full amount.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from rating.calendar import next_period_first_day, period_first_day
from rating.catalog import Catalog, Plan
from rating.money import from_minor_units, minor_units, round_up_needed


@dataclass(frozen=True)
class RecurringFee:
    account: str
    period: str
    plan: str
    plan_version: int
    charge: str
    amount: Decimal
    currency: str
    from_ms: int  # the share of the period this fee covers
    until_ms: int


def recurring_fees(catalog: Catalog, account: str, period: str) -> list[RecurringFee]:
    """Flat fees of ``account`` for the month ``period`` (``"2024-05"``), one per plan version and charge."""
    first, after = period_first_day(period), next_period_first_day(period)
    starts, indexes = catalog.account_timeline(account)
    fees: list[RecurringFee] = []
    charged_full: set[tuple[str, str]] = set()
    for k, plan_index in enumerate(indexes):
        if plan_index < 0:
            continue
        plan = catalog.plans[plan_index]
        month_start, month_end = plan.clock.day_start(first), plan.clock.day_start(after)
        piece_end = starts[k + 1] if k + 1 < len(starts) else month_end
        low, high = max(starts[k], month_start), min(piece_end, month_end)
        if low >= high:
            continue
        for charge in plan.recurring:
            if charge.prorate:
                amount = _prorated(charge.amount, Fraction(high - low, month_end - month_start), plan)
            elif (plan.name, charge.name) in charged_full:
                continue
            else:
                amount = charge.amount.quantize(Decimal(1).scaleb(-plan.precision))
                charged_full.add((plan.name, charge.name))
            fees.append(
                RecurringFee(account, period, plan.name, plan.version, charge.name, amount, plan.currency, low, high)
            )
    return fees


def _prorated(amount: Decimal, share: Fraction, plan: Plan) -> Decimal:
    precision = plan.precision
    exact = Fraction(minor_units(amount, precision)) * share
    whole, remainder = divmod(exact.numerator, exact.denominator)
    if round_up_needed(whole, remainder, exact.denominator, plan.rounding):
        whole += 1
    return from_minor_units(whole, precision)


def month_of(moment: dt.date) -> str:
    return f"{moment.year:04d}-{moment.month:02d}"


__all__ = ["RecurringFee", "month_of", "recurring_fees"]
