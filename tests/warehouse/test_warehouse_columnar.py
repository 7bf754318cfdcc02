"""ClickHouse types to Arrow and JSON values back to Python: the exactness of the insert and read paths."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest

from warehouse.base import BatchError
from warehouse.columnar import arrow_type, dedup_token, split_type, to_arrow_table
from warehouse.values import decode_rows, decoder_for, to_json_value


@pytest.mark.parametrize(
    ("ch_type", "expected"),
    [
        ("LowCardinality(String)", pa.string()),
        ("Nullable(UInt64)", pa.uint64()),
        ("Decimal(18, 6)", pa.decimal128(18, 6)),
        ("Decimal64(4)", pa.decimal128(18, 4)),
        ("DateTime64(3, 'UTC')", pa.timestamp("ms", tz="UTC")),
        ("DateTime('Europe/Amsterdam')", pa.timestamp("s", tz="Europe/Amsterdam")),
        ("Map(LowCardinality(String), String)", pa.map_(pa.string(), pa.string())),
        ("Array(Float64)", pa.list_(pa.float64())),
        ("Nullable(DateTime64(3, 'UTC'))", pa.timestamp("ms", tz="UTC")),
    ],
)
def test_arrow_types(ch_type: str, expected: pa.DataType) -> None:
    assert arrow_type(ch_type) == expected


def test_split_type_respects_nesting_and_quotes() -> None:
    assert split_type("Map(String, Decimal(18, 6))") == ("Map", ["String", "Decimal(18, 6)"])
    assert split_type("Enum8('a,b' = 1, 'c' = 2)") == ("Enum8", ["'a,b' = 1", "'c' = 2"])


def test_to_arrow_table_is_exact_for_money_and_time() -> None:
    schema = {"amount": "Decimal(18, 6)", "ts": "DateTime64(3, 'UTC')", "n": "Nullable(UInt64)"}
    table = to_arrow_table(
        "t",
        {
            "amount": ["0.1", Decimal("999999999999.999999"), 3],
            "ts": np.array([0, 1, 2]),
            "n": [2**64 - 1, None, 0],
        },
        schema,
    )
    assert table.column("amount").to_pylist() == [Decimal("0.1"), Decimal("999999999999.999999"), Decimal(3)]
    assert table.column("ts").to_pylist()[1] == datetime(1970, 1, 1, 0, 0, 0, 1000, tzinfo=UTC)
    assert table.column("n").to_pylist() == [2**64 - 1, None, 0]
    with pytest.raises(BatchError, match="not a decimal"):
        to_arrow_table("t", {"amount": ["ten"]}, schema)


def test_decoders_restore_exact_values() -> None:
    types = [
        "Decimal(38, 6)",
        "DateTime64(3, 'UTC')",
        "UInt64",
        "Nullable(Date)",
        "Float64",
        "Map(String, Decimal(9, 2))",
    ]
    rows = [
        [
            Decimal("17"),
            "2026-01-01 00:00:00.250",
            "18446744073709551615",
            "2026-02-03",
            Decimal("0.1"),
            {"a": Decimal("1.5")},
        ]
    ]
    assert decode_rows(types, rows) == [
        [
            Decimal("17.000000"),
            datetime(2026, 1, 1, 0, 0, 0, 250000, tzinfo=UTC),
            2**64 - 1,
            date(2026, 2, 3),
            0.1,
            {"a": Decimal("1.50")},
        ]
    ]
    assert decoder_for("Nullable(Decimal(18, 6))")(None) is None


def test_json_values_round_trip_through_decoders() -> None:
    values = [Decimal("0.000001"), datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC), date(2026, 1, 2)]
    types = ["Decimal(18, 6)", "DateTime64(3, 'UTC')", "Date"]
    encoded = [to_json_value(v) for v in values]
    assert decode_rows(types, [encoded]) == [values]


def test_dedup_token_follows_ids_and_versions() -> None:
    base = {"id": ["a", "b"], "rating_version": [1, 1]}
    assert dedup_token("rated_usage", base) == dedup_token("rated_usage", {**base, "amount": ["9", "9"]})
    assert dedup_token("rated_usage", base) != dedup_token("rated_usage", {**base, "rating_version": [1, 2]})
    assert dedup_token("rated_usage", base) != dedup_token("usage_records", base)
    assert dedup_token("rated_usage", base) != dedup_token("rated_usage", {"id": ["a\x00b"], "rating_version": [1]})
    assert dedup_token("pipeline_metrics", {"value": [1.0]}) is None
