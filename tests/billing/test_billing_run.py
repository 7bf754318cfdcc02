"""Billing run on the real embedded ClickHouse: exact totals, idempotent re-runs, rerating detected."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from billing import Ledger, billing_run, period_bounds
from billing.run import BillingError, build_invoices
from models.records import RatedUsage
from warehouse import open_warehouse
from warehouse.migrate import apply_migrations
from warehouse.rows import columns_for

NOV = int(dt.datetime(2026, 11, 3, tzinfo=dt.UTC).timestamp() * 1000)
DEC = int(dt.datetime(2026, 12, 1, tzinfo=dt.UTC).timestamp() * 1000)


def rated(
    i: int,
    account: str,
    amount: str,
    *,
    start: int = NOV,
    version: int = 1,
    currency: str = "EUR",
    service: str = "data",
) -> RatedUsage:
    return RatedUsage(
        id=f"u{i}",
        account=account,
        service=service,
        start_ms=start,
        end_ms=start + 1000,
        quantity=Decimal("1.5"),
        unit="GB",
        amount=Decimal(amount),
        currency=currency,
        plan="p",
        rating_version=version,
    )


@pytest.fixture
def warehouse(tmp_path):
    wh = open_warehouse(f"chdb://{tmp_path}/ch")
    apply_migrations(wh)
    yield wh
    wh.close()


def insert(wh, records):
    wh.insert_columns("rated_usage", columns_for("rated_usage", records))


def test_period_bounds():
    start, end = period_bounds("2026-12")
    assert (start.month, end.year, end.month) == (12, 2027, 1)
    with pytest.raises(BillingError):
        period_bounds("2026/12")


def test_build_invoices_rounds_half_even_per_line_and_total():
    rows = [
        ["A", "EUR", "data", "GB", "3", 2, "1.005000"],  # -> 1.00 (half-even)
        ["A", "EUR", "voice", "MIN", "10", 1, "2.015000"],  # -> 2.02
        ["B", "JPY", "data", "GB", "1", 1, "10.5"],  # zero minor units -> 10
    ]
    a, b = build_invoices("2026-11", rows)
    assert a.total == Decimal("3.02") and a.records == 3 and len(a.lines) == 2
    assert b.total == Decimal("10") and b.currency == "JPY"


def test_billing_run_exact_and_idempotent(warehouse, tmp_path):
    records = [rated(i, f"ACC-{i % 3}", "0.333333") for i in range(30)]
    records.append(rated(100, "ACC-0", "5.000000", start=DEC))  # next period: not billed
    records.append(rated(101, "ACC-9", "1.000000", currency="USD"))
    insert(warehouse, records)
    insert(warehouse, records[:10])  # a replayed batch must not double anything
    ledger = Ledger(tmp_path / "ledger.sqlite")
    result = billing_run(warehouse.query, ledger, "2026-11")
    totals = {inv.account: inv.total for inv in result.invoices}
    assert totals == {
        "ACC-0": Decimal("3.33"),
        "ACC-1": Decimal("3.33"),
        "ACC-2": Decimal("3.33"),
        "ACC-9": Decimal("1.00"),
    }
    assert result.written == 4
    assert result.totals_by_currency() == {"EUR": Decimal("9.99"), "USD": Decimal("1.00")}
    again = billing_run(warehouse.query, ledger, "2026-11")
    assert again.written == 0 and again.already_issued == 4 and not again.changed_since_issue
    # A rerating after issue (higher rating_version replaces the row) is reported, not silently applied.
    insert(warehouse, [rated(0, "ACC-0", "10.000000", version=2)])
    third = billing_run(warehouse.query, ledger, "2026-11")
    assert third.written == 0
    assert third.changed_since_issue == [("INV-2026-11-EUR-ACC-0", Decimal("3.33"), Decimal("13.00"))]
    ledger.close()


def test_dry_run_writes_nothing(warehouse, tmp_path):
    insert(warehouse, [rated(1, "ACC-1", "2.500000")])
    ledger = Ledger(tmp_path / "ledger.sqlite")
    result = billing_run(warehouse.query, ledger, "2026-11", dry_run=True)
    assert len(result.invoices) == 1 and result.written == 0
    assert ledger.existing("2026-11") == {}
