"""Output formats for ``ossbss sql``: aligned table, CSV, JSON; exact decimals everywhere."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from warehouse.base import QueryResult
from warehouse.format import format_result

RESULT = QueryResult(
    columns=["account", "amount", "at", "note"],
    types=["String", "Decimal(18, 6)", "DateTime64(3, 'UTC')", "Nullable(String)"],
    rows=[
        ["acct-1", Decimal("0.100001"), datetime(2026, 1, 1, 12, 0, 0, 123000, tzinfo=UTC), None],
        ["a2", Decimal("1234567.5"), datetime(2026, 1, 1, tzinfo=UTC), "x,y"],
    ],
)


def test_table_aligns_columns_and_right_aligns_numbers() -> None:
    text = format_result(RESULT, "table")
    assert text.splitlines() == [
        "account     amount  at                       note",
        "-------  ---------  -----------------------  ----",
        "acct-1    0.100001  2026-01-01 12:00:00.123  NULL",
        "a2       1234567.5  2026-01-01 00:00:00      x,y",
        "(2 rows)",
    ]


def test_csv_quotes_and_leaves_null_empty() -> None:
    assert format_result(RESULT, "csv") == (
        'account,amount,at,note\nacct-1,0.100001,2026-01-01 12:00:00.123,\na2,1234567.5,2026-01-01 00:00:00,"x,y"\n'
    )


def test_json_keeps_money_as_exact_strings() -> None:
    rows = json.loads(format_result(RESULT, "json"))
    assert rows[0] == {
        "account": "acct-1",
        "amount": "0.100001",
        "at": "2026-01-01T12:00:00.123000+00:00",
        "note": None,
    }


def test_empty_result_and_unknown_format() -> None:
    empty = QueryResult(columns=["n"], types=["UInt8"])
    assert format_result(empty, "table") == "n\n-\n(0 rows)\n"
    with pytest.raises(ValueError, match="xml"):
        format_result(empty, "xml")  # type: ignore[arg-type]
