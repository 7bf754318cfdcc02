"""Property: the vectorised kernel returns exactly what the per-record reference returns.

Random batches over the example catalog (every model), with random precision, rounding mode and
time zone per plan, records around daylight-saving days, holidays, month ends and band edges,
long and instant records, huge quantities, garbage destinations and repeated ids; two batches in
a row share the allowance state, so replays across batches are covered too.
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.records import UsageRecord
from rating import RatingState, parse_catalog, rate_columns, rate_reference, rate_usage
from rating.catalog import EXAMPLE_CATALOG
from rating.columns import records_to_columns

EXAMPLE = yaml.safe_load(EXAMPLE_CATALOG.read_text())
MODES = ["ROUND_HALF_EVEN", "ROUND_HALF_UP", "ROUND_HALF_DOWN", "ROUND_UP", "ROUND_DOWN", "ROUND_05UP"]
ZONES = ["UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe"]
HOUR = 3_600_000
ANCHORS = [
    int(dt.datetime.fromisoformat(text + "+00:00").timestamp() * 1000)
    for text in [
        "2024-03-31T01:00",  # Europe DST starts
        "2024-10-27T01:00",  # Europe DST ends
        "2024-03-10T07:00",  # US DST starts
        "2024-04-06T15:00",  # Lord Howe: a half-hour shift
        "2024-06-30T22:00",  # month end
        "2024-06-28T19:59",  # Friday evening, peak edge
        "2024-07-14T10:00",  # a holiday
        "2024-12-31T23:00",  # year end
        "2024-01-01T00:00",  # plans take effect
        "2024-06-30T23:59",
    ]
]

plans_variant = st.lists(
    st.tuples(st.integers(2, 6), st.sampled_from(MODES), st.sampled_from(ZONES)), min_size=4, max_size=4
)


@st.composite
def records(draw: st.DrawFn, count: int) -> list[UsageRecord]:
    result = []
    for _ in range(count):
        start = draw(st.sampled_from(ANCHORS)) + draw(st.integers(-3 * HOUR, 3 * HOUR))
        length = draw(st.sampled_from([0, 1, 999, 30_000, 61_000, HOUR, 26 * HOUR, 80 * HOUR, 401 * 86_400_000]))
        event = draw(st.sampled_from(["data", "voice", "sms", "video"]))
        big = draw(st.booleans()) and draw(st.booleans()) and draw(st.booleans())
        result.append(
            UsageRecord(
                id=f"r{draw(st.integers(0, 12))}",
                account=draw(st.sampled_from(["HOME-1", "HOME-2", "MOB-0001", "MOB-2", "MOB-3", "IOT-3", "X-1"])),
                service=draw(st.sampled_from(["national", "international", "internet"])),
                start_ms=start,
                end_ms=start + length,
                bytes_up=draw(st.integers(0, 10**15 if big else 3 * 10**9)),
                bytes_down=draw(st.integers(0, 10**15 if big else 3 * 10**9)),
                duration_s=draw(st.none() | st.integers(0, 10**17 if big else 100_000)),
                destination=draw(st.sampled_from(["+447700", "+4420", "1555", "+33", "", "+", "abc", "+1x", "447"]))
                + draw(st.text("0123456789", max_size=12)),
                event_type=event,
            )
        )
    return result


def catalog_for(variant: list[tuple[int, str, str]]) -> Any:
    doc = copy.deepcopy(EXAMPLE)
    for plan, (precision, rounding, zone) in zip(doc["plans"], variant, strict=False):
        plan.update(precision=min(precision, 6), rounding=rounding, timezone=zone)
    return parse_catalog(doc)


def assert_same(records_: list[UsageRecord], catalog: Any, ref_state: RatingState, ker_state: RatingState) -> None:
    expected = rate_reference(records_, catalog, rated_at_ms=5, state=ref_state)
    actual = rate_usage(records_, catalog, rated_at_ms=5, state=ker_state, engine="kernel")
    assert actual.failures == expected.failures
    assert actual.rated == expected.rated
    assert [str(r.amount) for r in actual.rated] == [str(r.amount) for r in expected.rated]
    assert ker_state.snapshot() == ref_state.snapshot()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(variant=plans_variant, first=st.integers(0, 40).flatmap(records), second=st.integers(0, 40).flatmap(records))
def test_kernel_equals_reference(
    variant: list[tuple[int, str, str]], first: list[UsageRecord], second: list[UsageRecord]
) -> None:
    catalog = catalog_for(variant)
    ref_state, ker_state = RatingState(), RatingState()
    assert_same(first, catalog, ref_state, ker_state)
    assert_same(second + first[:5], catalog, ref_state, ker_state)  # later batch, with replays


@settings(max_examples=30, deadline=None)
@given(batch=st.integers(1, 60).flatmap(records))
def test_columnar_amounts_equal_record_amounts(batch: list[UsageRecord]) -> None:
    catalog = catalog_for([(2, "ROUND_HALF_EVEN", "UTC")] * 4)
    columns = rate_columns(records_to_columns(batch), catalog)
    expected = rate_reference(batch, catalog)
    rated_ids = [batch[i].id for i in range(len(batch)) if columns["rated"][i]]
    assert rated_ids == [r.id for r in expected.rated]
    scaled = [int(v) for v, ok in zip(columns["amount_scaled"], columns["rated"], strict=True) if ok]
    assert scaled == [int(r.amount.scaleb(6)) for r in expected.rated]


def test_kernel_equals_reference_on_a_synthetic_month() -> None:
    from bench.bench_rating import as_records, check_identical, synthetic_usage
    from rating import load_catalog
    from rating.columns import to_columns

    records_ = as_records(to_columns(synthetic_usage(4_000, seed=3, accounts=300)), 4_000)
    check_identical(records_, load_catalog(EXAMPLE_CATALOG))


def test_kernel_equals_reference_with_thousands_of_per_account_subscriptions() -> None:
    """Accounts on their own subscriptions, each starting an hour after the last: thousands of distinct
    plan timelines, more than the kernel lays out whole, so it takes only those of the batch."""
    doc = copy.deepcopy(EXAMPLE)
    first = ANCHORS[8]  # 2024-01-01
    doc["subscriptions"] = [
        {"account": f"SOLO-{n}", "plan": "mobile", "from": dt.datetime.fromtimestamp(first / 1000 + n * 3600, dt.UTC)}
        for n in range(4_300)
    ]
    catalog = parse_catalog(doc)
    batch = []
    for n in range(8_600):
        start = first + (n % 4_300) * HOUR + (n % 3 - 1) * HOUR // 2  # before, at and after the account's start
        batch.append(
            UsageRecord(
                id=f"t{n}",
                account=f"SOLO-{n % 4_300}",
                service="national",
                start_ms=start,
                end_ms=start + 90_000,
                duration_s=90,
                event_type="voice",
            )
        )
    assert_same(batch, catalog, RatingState(), RatingState())
    assert len(catalog.timeline_numbers([f"SOLO-{n}" for n in range(4_300)])[1]) > 4_096
