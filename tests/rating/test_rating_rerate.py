"""Rerating with a new catalog, recurring flat fees, the columnar API and the reference fallback."""

from __future__ import annotations

import json
from decimal import Decimal

import numpy as np
import pytest

from rating import (
    RatingState,
    decimal_amounts,
    load_catalog,
    rate_columns,
    rate_usage,
    rated_from_columns,
    recurring_fees,
    rerate,
)
from rating.catalog import EXAMPLE_CATALOG
from rating.columns import records_to_columns
from rating.kernel import compile_plan
from tests.rating.ratingkit import one_plan, rate_both, usage

MB = 10**6
DATA = {"name": "d", "model": "per_unit", "unit": "MB", "price": "0.01", "included": "100 MB"}


def test_rerate_returns_changed_rows_with_the_next_version_and_account_differences() -> None:
    old = one_plan(DATA)
    new = one_plan({**DATA, "price": "0.02", "included": "50 MB"})
    usage_rows = [
        usage("a", bytes_down=60 * MB, start="2024-06-03T10:00:00Z"),
        usage("b", bytes_down=60 * MB, start="2024-06-04T10:00:00Z"),
        usage("c", bytes_down=10 * MB, start="2024-06-05T10:00:00Z", account="A-2"),
    ]
    before = rate_usage(usage_rows, old).rated  # a 0.00, b 0.20, c 0.00
    bumped = [type(r)(**{**{f: getattr(r, f) for f in r.__struct_fields__}, "rating_version": 3}) for r in before[:1]]
    result = rerate(usage_rows, before + bumped, new, rated_at_ms=99)
    by_id = {row.id: row for row in result.rows}
    assert by_id["a"].amount == Decimal("0.20")  # 50 free, 10 MB * 0.02
    assert by_id["a"].rating_version == 4  # the highest previous version wins
    assert by_id["b"].amount == Decimal("1.20") and by_id["b"].rating_version == 2
    assert "c" not in by_id and result.unchanged == 1  # still inside the allowance: unchanged, not rewritten
    assert [(d.account, d.previous, d.current, d.delta, d.changed_records) for d in result.differences] == [
        ("A-1", Decimal("0.20"), Decimal("1.40"), Decimal("1.20"), 2)
    ]
    assert all(row.rated_at_ms == 99 for row in result.rows)


def test_rerate_reports_newly_refused_and_missing_usage() -> None:
    old = one_plan(DATA)
    rated = rate_usage([usage("a", bytes_down=MB), usage("z", bytes_down=MB)], old).rated
    new = one_plan({**DATA, "event_type": "voice"})
    result = rerate([usage("a", bytes_down=MB)], rated, new)
    assert result.refused == [("a", "no charge of plan 'p v1' applies to event_type 'data', service 'svc'")]
    assert result.missing_usage == ["z"]


def test_recurring_flat_fees_prorated_by_subscription_and_version() -> None:
    from rating import parse_catalog

    doc = {
        "timezone": "UTC",
        "precision": 2,
        "plans": [
            {
                "name": "p",
                "version": 1,
                "effective_from": "2024-01-01",
                "charges": [
                    {"name": "fee", "model": "flat", "amount": "30.00"},
                    {"name": "d", "model": "per_unit", "unit": "GB", "price": "1"},
                ],
            },
            {
                "name": "p",
                "version": 2,
                "effective_from": "2024-06-16",
                "charges": [
                    {"name": "fee", "model": "flat", "amount": "60.00"},
                    {"name": "d", "model": "per_unit", "unit": "GB", "price": "1"},
                ],
            },
            {
                "name": "q",
                "charges": [
                    {"name": "fee", "model": "flat", "amount": "10.00", "prorate": False},
                    {"name": "d", "model": "per_unit", "unit": "GB", "price": "1"},
                ],
            },
        ],
        "subscriptions": [
            {"account": "A-1", "plan": "p", "from": "2024-06-11"},
            {"account": "B-1", "plan": "q", "from": "2024-06-20"},
        ],
    }
    catalog = parse_catalog(doc)
    fees = recurring_fees(catalog, "A-1", "2024-06")
    # 5 days of June on v1 (11th-15th) = 5/30 * 30.00, then 15 days on v2 = 15/30 * 60.00
    assert [(f.plan_version, f.amount) for f in fees] == [(1, Decimal("5.00")), (2, Decimal("30.00"))]
    assert [f.amount for f in recurring_fees(catalog, "B-1", "2024-06")] == [Decimal("10.00")]
    assert recurring_fees(catalog, "A-1", "2024-05") == []
    assert recurring_fees(catalog, "C-1", "2024-06") == []


def test_rate_columns_and_conversion_at_the_edge() -> None:
    catalog = load_catalog(EXAMPLE_CATALOG)
    records = [
        usage("a", account="HOME-1", bytes_down=150 * 10**9),  # 50 GB over 100 GB included, 1 MB steps
        usage("b", account="MOB-2", event_type="sms", service="national"),
        usage("c", account="NOBODY"),
    ]
    columns = records_to_columns(records)
    result = rate_columns(columns, catalog, state=RatingState())
    assert result["rated"].tolist() == [True, True, False]
    assert result["amount_scaled"].dtype == np.int64
    assert decimal_amounts(result)[:2] == [Decimal("25.000000"), Decimal("0.080000")]
    assert result["reason"][2].startswith("no active subscription for account 'NOBODY'")
    assert result["currency"].tolist()[:2] == ["EUR", "EUR"] and result["plan"][1] == "mobile"
    edge = rated_from_columns(columns, result, catalog, rated_at_ms=7)
    assert edge.rated == rate_usage(records, catalog, rated_at_ms=7, engine="reference").rated
    plain = {
        "id": ["x"],
        "account": ["HOME-1"],
        "start_ms": [1717408800000],
        "end_ms": [1717408800000],
        "bytes_down": [10**9],
    }
    assert rate_columns(plain, catalog)["amount_scaled"].tolist() == [0]  # inside the allowance


def test_a_plan_the_kernel_cannot_hold_falls_back_to_the_reference() -> None:
    awkward = {"name": "d", "model": "per_unit", "unit": "KiB", "price": "0.12345678901234567891", "event_type": "data"}
    catalog = one_plan(awkward, DATA | {"name": "e", "event_type": "sms", "unit": "event", "included": 5}, precision=6)
    assert compile_plan(catalog.plans[0]) is None
    result, _ = rate_both([usage("a", bytes_down=123_456_789), usage("b", event_type="sms")], catalog)
    assert result.rated[0].amount == Decimal("14884.354250")  # 120563.270... KiB * 0.1234567890...
    assert json.loads(result.rated[1].breakdown)["lines"][0]["free"] == "1"


@pytest.mark.parametrize("engine", ["kernel", "reference", "auto"])
def test_every_engine_refuses_too_long_and_too_large_records(engine: str) -> None:
    catalog = one_plan({"name": "v", "model": "per_unit", "unit": "minute", "price": "0.01"})
    long = usage("l", seconds=401 * 86_400, event_type="voice", duration_s=10)
    huge = usage("h", seconds=1, event_type="voice", duration_s=10**17)
    result = rate_usage([long, huge], catalog, engine=engine)  # type: ignore[arg-type]
    assert [index for index, _ in result.failures] == [0, 1]
    assert "more than the 400 days" in result.failures[0][1]
    assert "exceeds the rating limit" in result.failures[1][1]


def test_columnar_rows_a_record_would_reject_are_refused_not_raised() -> None:
    catalog = load_catalog()
    columns = {
        "id": ["ok", "backwards", "negative"],
        "account": ["ACC-1", "ACC-1", "ACC-1"],
        "start_ms": [1717408800000, 1717408800000, 1717408800000],
        "end_ms": [1717408800000, 1717408700000, 1717408800000],
        "bytes_down": [10**9, 1, -5],
    }
    result = rate_columns(columns, catalog)
    assert result["rated"].tolist() == [True, False, False]
    assert result["reason"].tolist()[1:] == ["end_ms is before start_ms", "bytes_down out of range"]


def test_columns_must_be_whole_numbers() -> None:
    from rating import ColumnsError

    with pytest.raises(ColumnsError, match="start_ms"):
        rate_columns({"id": ["a"], "account": ["A"], "start_ms": [1.5], "end_ms": [2]}, load_catalog())
