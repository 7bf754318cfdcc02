"""A billing run: rated usage of a period -> one invoice per account and currency.

The heavy part (summing millions of rated rows) runs in ClickHouse, exactly: ``sum`` over
``Decimal(18, 6)`` is decimal arithmetic, and the sums travel as strings. Python only rounds each
invoice total to the currency's minor unit (half-even, per line and per invoice) and writes the ledger.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal

from billing.ledger import Invoice, InvoiceLine, Ledger
from warehouse.base import QueryResult

# ISO 4217 minor units for the currencies a catalog is likely to use; others default to 2.
MINOR_UNITS = {"JPY": 0, "KRW": 0, "BHD": 3, "KWD": 3, "OMR": 3, "TND": 3}

Query = Callable[[str], QueryResult]


class BillingError(ValueError):
    """The billing run cannot proceed; the message says why and what to do."""


@dataclass
class BillingResult:
    period: str
    invoices: list[Invoice] = field(default_factory=list)
    already_issued: int = 0
    # Issued invoices whose usage changed since (rerating): (invoice id, issued total, total now).
    changed_since_issue: list[tuple[str, Decimal, Decimal]] = field(default_factory=list)
    written: int = 0

    def totals_by_currency(self) -> dict[str, Decimal]:
        totals: dict[str, Decimal] = defaultdict(Decimal)
        for inv in self.invoices:
            totals[inv.currency] += inv.total
        return dict(totals)


def period_bounds(period: str) -> tuple[dt.datetime, dt.datetime]:
    """``YYYY-MM`` -> [first instant of the month, first instant of the next) in UTC."""
    try:
        start = dt.datetime.strptime(period, "%Y-%m").replace(tzinfo=dt.UTC)
    except ValueError:
        raise BillingError(f"period must be YYYY-MM, not {period!r}") from None
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return start, end


def _round(amount: Decimal, currency: str) -> Decimal:
    return amount.quantize(Decimal(1).scaleb(-MINOR_UNITS.get(currency, 2)), rounding=ROUND_HALF_EVEN)


def usage_sql(period: str) -> str:
    start, end = period_bounds(period)
    fmt = "%Y-%m-%d %H:%M:%S"
    # FINAL: a rerated record counts once, at its latest rating_version.
    return (
        "SELECT account, currency, service, unit, toString(sum(quantity)), count(), toString(sum(amount)) "
        "FROM rated_usage FINAL "
        f"WHERE start >= toDateTime64('{start.strftime(fmt)}', 3, 'UTC') "
        f"AND start < toDateTime64('{end.strftime(fmt)}', 3, 'UTC') "
        "GROUP BY account, currency, service, unit ORDER BY account, currency, service, unit"
    )


def build_invoices(period: str, rows: list[list]) -> list[Invoice]:
    """Group the per-service sums into invoices (pure: no I/O)."""
    grouped: dict[tuple[str, str], list[InvoiceLine]] = defaultdict(list)
    for account, currency, service, unit, quantity, records, amount in rows:
        grouped[(str(account), str(currency))].append(
            InvoiceLine(
                str(service),
                str(unit),
                Decimal(str(quantity)),
                int(records),
                _round(Decimal(str(amount)), str(currency)),
            )
        )
    invoices = []
    for (account, currency), lines in sorted(grouped.items()):
        subtotal = sum((ln.amount for ln in lines), Decimal(0))
        invoices.append(
            Invoice(
                id=Invoice.make_id(account, period, currency),
                account=account,
                period=period,
                currency=currency,
                subtotal=subtotal,
                total=_round(subtotal, currency),
                records=sum(ln.records for ln in lines),
                lines=tuple(lines),
            )
        )
    return invoices


def billing_run(query: Query, ledger: Ledger, period: str, *, dry_run: bool = False) -> BillingResult:
    """Invoice ``period``: read the sums from the warehouse, skip what was issued, write the rest."""
    result = BillingResult(period=period)
    invoices = build_invoices(period, query(usage_sql(period)).rows)
    issued = ledger.existing(period)
    new = []
    for inv in invoices:
        before = issued.get(inv.id)
        if before is None:
            new.append(inv)
            continue
        result.already_issued += 1
        if before.total != inv.total:
            result.changed_since_issue.append((inv.id, before.total, inv.total))
    result.invoices = invoices
    if not dry_run:
        result.written = ledger.issue(new)
    return result
