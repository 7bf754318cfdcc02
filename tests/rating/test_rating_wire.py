"""The columnar wire edge (rating.wire) against the object path it replaces in the stream agent.

For random batches over several catalogs (the example catalog with random precision, rounding and
time zone per plan, the default catalog, and a catalog of odd units, currencies, precisions and
names that need escaping), the bytes the wire edge gives must be exactly ``encode(rated)`` of
the records ``rate_usage``/``rated_from_columns`` build, with the same keys, the same failures
(indexes and reasons) and the same allowance state afterwards.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from decimal import Decimal

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.codec import encode
from models.records import UsageRecord
from rating import RatingState, load_catalog, parse_catalog, rate_columns, rate_usage, rated_from_columns
from rating.catalog import EXAMPLE_CATALOG, Catalog
from rating.columns import records_to_columns
from rating.money import from_minor_units
from rating.units import display_quantity
from rating.wire import (
    amount_texts,
    decimal_texts,
    escaped,
    escaped_column,
    quantity_texts,
    rate_usage_wire,
    wire_from_columns,
)

EXAMPLE = yaml.safe_load(EXAMPLE_CATALOG.read_text())
MODES = ["ROUND_HALF_EVEN", "ROUND_HALF_UP", "ROUND_HALF_DOWN", "ROUND_UP", "ROUND_DOWN", "ROUND_05UP"]
ZONES = ["UTC", "Europe/Paris", "America/New_York"]
HOUR = 3_600_000
JUNE = int(dt.datetime(2024, 6, 28, 19, 0, tzinfo=dt.UTC).timestamp() * 1000)  # a Friday, near 20:00
ANCHORS = [JUNE, JUNE + 2 * 86_400_000, JUNE + 16 * 86_400_000, JUNE + 2 * HOUR]  # + weekend, 14 July

# Odd units (TB and GiB are not powers of ten below 10**9, hours and minutes divide seconds), a
# precision of 0 and of 6, three currencies, plan versions above 1, and names that need escaping
# once in the breakdown and twice on the wire.
ODD = {
    "currency": "GBP",
    "timezone": "UTC",
    "precision": 3,
    "plans": [
        {
            "name": 'odd "plan" \\ ü',
            "version": 3,
            "effective_from": "2024-01-01",
            "currency": "JPY",
            "precision": 0,
            "rounding": "ROUND_HALF_UP",
            "charges": [
                {
                    "name": 'data "TB"',
                    "model": "per_unit",
                    "event_type": "data",
                    "unit": "TB",
                    "price": "1234.5",
                    "connect_fee": "3",
                    "minimum": "10",
                },
                {"name": "data\tGiB", "model": "per_unit", "event_type": "data", "unit": "GiB", "price": "0.7"},
                {
                    "name": "voice ☎",
                    "model": "time_of_day",
                    "event_type": "voice",
                    "unit": "hour",
                    "included": "1 hour",
                    "bands": [
                        {"name": 'peak "day"', "days": ["mon", "tue", "wed", "thu", "fri"], "hours": ["08:00-20:00"],
                         "price": "120"},
                        {"name": "off\\peak \U0001f319", "price": "60"},
                    ],
                },
                {"name": "sms", "model": "package", "event_type": "sms", "unit": "event", "block": 7, "price": "5"},
            ],
        },
        {
            "name": "tiny",
            "version": 1,
            "effective_from": "2024-01-01",
            "currency": "USD",
            "precision": 6,
            "charges": [
                {"name": "bytes", "model": "per_unit", "event_type": "data", "unit": "GB", "price": "0.000001"},
                {"name": "up", "model": "per_unit", "event_type": "data", "meter": "bytes_up", "unit": "KiB",
                 "price": "0.0001", "minimum": "0.000002"},
                {"name": "voice", "model": "per_unit", "event_type": "voice", "unit": "minute", "price": "0.013",
                 "increments": "1/1", "connect_fee": "0.000001"},
            ],
        },
        {
            "name": "tiny",
            "version": 2,
            "effective_from": "2024-06-29",
            "currency": "GBP",
            "charges": [{"name": "bytes", "model": "per_unit", "event_type": "data", "unit": "MB", "price": "0"}],
        },
    ],
    "subscriptions": [
        {"account_prefix": "W-", "plan": 'odd "plan" \\ ü', "from": "2024-01-01"},
        {"account_prefix": "T-", "plan": "tiny", "from": "2024-01-01"},
    ],
}  # fmt: skip

ACCOUNTS = ["HOME-1", "HOME-2", "MOB-0001", "MOB-2", "IOT-3", "ACC-1", 'ACC-"q"', "W-1", "W-é\\", "T-1", "X-1"]
SERVICES = ["national", "international", "internet", "data", 'sv"c', "é"]
ODD_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=6)


def example_catalog(variant: list[tuple[int, str, str]]) -> Catalog:
    doc = copy.deepcopy(EXAMPLE)
    for plan, (precision, rounding, zone) in zip(doc["plans"], variant, strict=False):
        plan.update(precision=precision, rounding=rounding, timezone=zone)
    return parse_catalog(doc)


CATALOGS = st.one_of(
    st.lists(st.tuples(st.integers(2, 6), st.sampled_from(MODES), st.sampled_from(ZONES)), min_size=4, max_size=4).map(
        example_catalog
    ),
    st.just("default"),
    st.just("odd"),
)


@st.composite
def usage_batch(draw: st.DrawFn, max_size: int = 60) -> list[UsageRecord]:
    batch = []
    for _ in range(draw(st.integers(0, max_size))):
        start = draw(st.sampled_from(ANCHORS)) + draw(st.integers(-3 * HOUR, 3 * HOUR))
        length = draw(st.sampled_from([0, 1, 999, 30_000, 61_000, HOUR, 26 * HOUR]))
        tiny = draw(st.booleans())  # a few bytes of a GB: quantities Decimal writes with an exponent
        size = st.integers(0, 120) if tiny else st.integers(0, 3 * 10**9)
        strange = draw(st.integers(0, 9)) == 0
        batch.append(
            UsageRecord(
                id=draw(ODD_TEXT) if strange else f"r{draw(st.integers(0, 15))}",
                account=draw(st.sampled_from(ACCOUNTS)) + (draw(ODD_TEXT) if strange else ""),
                service=draw(ODD_TEXT) if strange and draw(st.booleans()) else draw(st.sampled_from(SERVICES)),
                start_ms=start,
                end_ms=start + length,
                bytes_up=draw(size),
                bytes_down=draw(size),
                duration_s=draw(st.none() | st.integers(0, 20_000)),
                destination=draw(st.sampled_from(["+447700", "+4420", "1555", "+33", "", "abc"]))
                + draw(st.text("0123456789", max_size=8)),
                event_type=draw(st.sampled_from(["data", "voice", "sms", "video"])),
            )
        )
    return batch


def resolve(catalog: Catalog | str) -> Catalog:
    if catalog == "default":
        return load_catalog()
    if catalog == "odd":
        return parse_catalog(copy.deepcopy(ODD))
    assert isinstance(catalog, Catalog)
    return catalog


def assert_wire_equals_objects(
    records: list[UsageRecord], catalog: Catalog, rated_at_ms: int, object_state: RatingState, wire_state: RatingState
) -> None:
    expected = rate_usage(records, catalog, rated_at_ms=rated_at_ms, state=object_state, engine="kernel")
    actual = rate_usage_wire(records, catalog, rated_at_ms=rated_at_ms, state=wire_state, engine="kernel")
    assert actual.failures == expected.failures
    assert len(actual.values) == len(expected.rated)
    for value, rated in zip(actual.values, expected.rated, strict=True):
        assert value == encode(rated)
    assert actual.keys == [rated.account.encode() for rated in expected.rated]
    refused = {row for row, _ in expected.failures}
    assert actual.rows == [row for row in range(len(records)) if row not in refused]
    assert wire_state.snapshot() == object_state.snapshot()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    catalog=CATALOGS, first=usage_batch(), second=usage_batch(), rated_at_ms=st.sampled_from([0, 1, 1_719_000_000_000])
)
def test_wire_bytes_equal_encoded_rated_records(
    catalog: Catalog | str, first: list[UsageRecord], second: list[UsageRecord], rated_at_ms: int
) -> None:
    resolved = resolve(catalog)
    object_state, wire_state = RatingState(), RatingState()
    assert_wire_equals_objects(first, resolved, rated_at_ms, object_state, wire_state)
    # a later batch on the same allowances, with replays of the first
    assert_wire_equals_objects(second + first[:5], resolved, rated_at_ms, object_state, wire_state)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    catalog=CATALOGS,
    batch=usage_batch(),
    rated_at_ms=st.sampled_from([0, 7]),
    rating_version=st.sampled_from([1, 2, 40]),
)
def test_wire_from_columns_equals_rated_from_columns(
    catalog: Catalog | str, batch: list[UsageRecord], rated_at_ms: int, rating_version: int
) -> None:
    resolved = resolve(catalog)
    columns = records_to_columns(batch)
    result = rate_columns(columns, resolved, state=RatingState())
    expected = rated_from_columns(columns, result, resolved, rated_at_ms=rated_at_ms, rating_version=rating_version)
    actual = wire_from_columns(columns, result, resolved, rated_at_ms=rated_at_ms, rating_version=rating_version)
    assert actual.failures == expected.failures
    assert actual.values == [encode(rated) for rated in expected.rated]


def test_the_property_covers_what_it_claims() -> None:
    """One fixed batch that has every feature the property is about, so a generator change cannot
    silently drop one: multi-line and multi-part breakdowns, allowances, connect fees, minimums,
    zero amounts, exponent quantities, three currencies and precisions 0, 2, 4 and 6, refusals."""
    records = []
    for n in range(400):
        start = ANCHORS[n % 4] + (n % 7 - 3) * HOUR // 2
        event = ["data", "voice", "sms", "data", "voice"][n % 5]  # every event at every anchor
        records.append(
            UsageRecord(
                id=f"r{n}",
                account=["MOB-0001", "HOME-1", "IOT-3", "W-1", "T-1", "ACC-1", "X-1"][n % 7],
                service=["national", "international", "internet"][n % 3],
                start_ms=start,
                end_ms=start + [0, 61_000, 2 * HOUR, 999][n % 4],
                bytes_up=[0, 7, 3 * 10**6, 2 * 10**9][n % 4],
                bytes_down=[0, 13, 10**8, 10**12][n // 4 % 4],
                duration_s=[None, 95, 40][n % 3],
                destination=["+447700", "+1555", "+33"][n % 3],
                event_type=event,
            )
        )
    seen: dict[str, bool] = {}
    for catalog in [load_catalog(EXAMPLE_CATALOG), resolve("default"), resolve("odd")]:
        expected = rate_usage(records, catalog, rated_at_ms=1, state=RatingState(), engine="kernel")
        assert_wire_equals_objects(records, catalog, 1, RatingState(), RatingState())
        for rated in expected.rated:
            lines = json.loads(rated.breakdown)["lines"]
            seen["multi-line"] = seen.get("multi-line", False) or len(lines) > 1
            seen["multi-part"] = seen.get("multi-part", False) or any(len(line["parts"]) > 1 for line in lines)
            seen["free"] = seen.get("free", False) or any(line.get("free", "0") != "0" for line in lines)
            seen["fee"] = seen.get("fee", False) or any("connect_fee" in line for line in lines)
            seen["minimum"] = seen.get("minimum", False) or any("minimum" in line for line in lines)
            seen["zero"] = seen.get("zero", False) or rated.amount == 0
            seen["exponent"] = seen.get("exponent", False) or "E" in str(rated.quantity)
            seen[f"currency {rated.currency}"] = True
            seen[f"precision {-int(rated.amount.as_tuple().exponent)}"] = True
        seen["refused"] = seen.get("refused", False) or bool(expected.failures)
    assert all(seen.values()), seen
    for feature in ["multi-line", "multi-part", "free", "fee", "minimum", "zero", "exponent", "refused"]:
        assert feature in seen
    assert {"currency EUR", "currency USD", "currency JPY", "currency GBP"} <= seen.keys()
    assert {"precision 0", "precision 2", "precision 4", "precision 6"} <= seen.keys()


def test_small_batches_take_the_reference_like_rate_usage() -> None:
    catalog = load_catalog(EXAMPLE_CATALOG)
    records = [
        UsageRecord(id=f"s{n}", account=acc, service="internet", start_ms=JUNE, end_ms=JUNE + 1000, bytes_down=n * MB)
        for n, acc in enumerate(["HOME-1", "X-1", "MOB-2", "IOT-3"])
    ]
    expected = rate_usage(records, catalog, rated_at_ms=3)
    actual = rate_usage_wire(records, catalog, rated_at_ms=3)
    assert actual.failures == expected.failures == [(1, expected.failures[0][1])]
    assert actual.values == [encode(rated) for rated in expected.rated]
    assert actual.keys == [b"HOME-1", b"MOB-2", b"IOT-3"]
    assert actual.rows == [0, 2, 3]


MB = 10**6


@pytest.mark.parametrize("divisor", [1, 10, 1000, 10**6, 10**9, 10**12, 60, 3600, 2**10, 2**20, 2**30, 7, 100, 10**8])
def test_quantity_texts_write_what_display_quantity_writes(divisor: int) -> None:
    rng = np.random.default_rng(divisor)
    values = np.unique(
        np.concatenate(
            [
                np.arange(0, min(3 * divisor + 2, 20_000)),  # every remainder, for the small divisors
                rng.integers(0, 10**16, 400),
                rng.integers(0, 100, 50),
                divisor * rng.integers(0, 10**6, 50),
                [10**16, 10**16 - 1, 1, divisor - 1, divisor + 1],
            ]
        )[:50_000]
    ).astype(np.int64)
    texts = quantity_texts(values, divisor)
    assert texts == [str(display_quantity(value, divisor)) for value in values.tolist()]


@pytest.mark.parametrize("precision", range(7))
def test_amount_texts_write_what_decimal_writes(precision: int) -> None:
    rng = np.random.default_rng(precision)
    values = np.concatenate(
        [np.arange(-25, 1200), rng.integers(-(10**18), 10**18, 2000), [10**18 - 1, -(10**18) + 1]]
    ).astype(np.int64)
    texts = amount_texts(values, precision)
    assert texts == [str(from_minor_units(value, precision)) for value in values.tolist()]
    assert all("E" not in text for text in texts)
    assert str(Decimal(5).scaleb(-precision)) == amount_texts(np.array([5]), precision)[0]


def test_decimal_texts_write_what_a_format_writes_row_by_row() -> None:
    rng = np.random.default_rng(11)
    n = 5000
    places = rng.integers(1, 19, n)
    spread = rng.integers(0, 2**63 - 1, n - 5) >> rng.integers(0, 63, n - 5)  # every number of digits
    whole = np.concatenate([[0, 0, 2**63 - 1, 10**18, 9], spread])
    fraction = rng.integers(0, 2**62, n) % (10 ** places.astype(object)).astype(np.int64)
    negative = rng.random(n) < 0.3
    texts = decimal_texts(whole, fraction, places, negative)
    want = [
        f"{'-' if minus else ''}{w}.{f:0{p}d}"
        for w, f, p, minus in zip(whole.tolist(), fraction.tolist(), places.tolist(), negative.tolist(), strict=True)
    ]
    assert texts == want
    assert decimal_texts(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, bool)) == []


@given(st.lists(st.text(), max_size=20))
def test_escaped_columns_are_msgspec_string_contents(values: list[str]) -> None:
    expected = [encode_string(value) for value in values]
    assert list(escaped_column(values)) == expected
    assert [escaped(value) for value in values] == expected


def test_escaped_columns_of_every_ascii_character() -> None:
    every = [chr(code) for code in range(128)]
    assert list(escaped_column(every)) == [encode_string(value) for value in every]
    plain = [chr(code) for code in range(32, 127) if chr(code) not in '"\\']
    assert escaped_column(plain) is plain  # taken as they are, in one check
    with pytest.raises(TypeError):
        escaped_column(["a", 5])


def encode_string(value: str) -> str:
    from models.codec import _encoder

    return _encoder.encode(value).decode()[1:-1]


def test_empty_and_all_refused_batches() -> None:
    catalog = load_catalog(EXAMPLE_CATALOG)
    assert rate_usage_wire([], catalog, engine="kernel").values == []
    refused = [
        UsageRecord(id=f"x{n}", account="NOPE", service="internet", start_ms=JUNE, end_ms=JUNE) for n in range(40)
    ]
    result = rate_usage_wire(refused, catalog)
    assert result.values == result.keys == result.rows == []
    assert result.failures == rate_usage(refused, catalog).failures
    assert [row for row, _ in result.failures] == list(range(40))
