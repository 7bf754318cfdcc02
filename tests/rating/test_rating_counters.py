"""Allowance counters of the kernel against the reference, on batches built to stress them.

Many records per (account, period) and counter, small allowances that run out mid-record, two
counters per account, a plan version changing mid-month (a period whose records see two
allowances), ids repeated inside a run, across counters and across batches, and state carried
over three batches, in memory or persisted and reloaded through a loader as the stream agent does.
And the garbage collector around a batch: paused, then resumed with what the batch built filed in
the oldest generation.
"""

from __future__ import annotations

import gc
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.records import UsageRecord
from rating import RatingState, parse_catalog, rate_reference, rate_usage
from rating.kernel import collector_paused
from rating.state import Loader, PeriodCounters, split_state_key
from tests.rating.ratingkit import iso_ms

MB = 10**6
JUNE = iso_ms("2024-06-01T00:00:00Z")
DAY = 86_400_000


def _charges(data_included: str) -> list[dict[str, Any]]:
    return [
        {"name": "data", "model": "per_unit", "event_type": "data", "unit": "MB", "price": "0.01",
         "included": data_included, "increments": "1 MB"},
        {"name": "voice", "model": "time_of_day", "event_type": "voice", "unit": "minute",
         "increments": "60/60", "included": "10 minute", "split": "proportional", "connect_fee": "0.05",
         "bands": [{"name": "peak", "days": ["mon", "tue", "wed", "thu", "fri"], "hours": ["08:00-20:00"],
                    "price": "0.12"}, {"name": "offpeak", "price": "0.05"}]},
        {"name": "bundle", "model": "per_unit", "event_type": "sms", "unit": "event", "price": "0.10",
         "included": "3 event", "counter": "shared-sms"},
        {"name": "mms", "model": "per_unit", "event_type": "mms", "unit": "event", "price": "0.30",
         "included": "2 event", "counter": "shared-sms"},
    ]  # fmt: skip


CATALOG = parse_catalog(
    {
        "currency": "EUR",
        "timezone": "Europe/Paris",
        "plans": [
            {"name": "p", "version": 1, "effective_from": "2024-01-01", "precision": 2,
             "rounding": "ROUND_HALF_UP", "charges": _charges("100 MB")},
            {"name": "p", "version": 2, "effective_from": "2024-06-15", "precision": 2,
             "rounding": "ROUND_HALF_UP", "charges": _charges("150 MB")},
        ],
        "subscriptions": [{"account_prefix": "A-", "plan": "p", "from": "2024-01-01"}],
    }
)  # fmt: skip


@st.composite
def batch(draw: st.DrawFn) -> list[UsageRecord]:
    records = []
    for index in range(draw(st.integers(0, 120))):
        start = JUNE + draw(st.sampled_from([-DAY, 0, 3 * DAY, 14 * DAY, 20 * DAY, 29 * DAY + 22 * 3_600_000]))
        start += draw(st.integers(0, 4 * 3_600_000))
        event = draw(st.sampled_from(["data", "data", "voice", "sms", "mms"]))
        seconds = draw(st.integers(0, 3_000)) if event == "voice" else draw(st.integers(0, 5))
        shared = draw(st.booleans()) and draw(st.booleans())  # a small pool of ids: repeats and replays
        records.append(
            UsageRecord(
                id=f"s{draw(st.integers(0, 15))}" if shared else f"u{draw(st.integers(0, 10**6))}-{index}",
                account=f"A-{draw(st.integers(1, 6))}",
                service="svc",
                start_ms=start,
                end_ms=start + seconds * 1000,
                bytes_down=draw(st.integers(0, 70 * MB)) if event == "data" else 0,
                duration_s=seconds if event == "voice" else None,
                event_type=event,
            )
        )
    return records


def _same(expected: Any, actual: Any) -> None:
    assert actual.failures == expected.failures
    assert actual.rated == expected.rated
    assert [str(r.amount) for r in actual.rated] == [str(r.amount) for r in expected.rated]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(batches=st.lists(batch(), min_size=1, max_size=3), replay=st.integers(0, 30))
def test_counters_equal_the_reference_across_batches(batches: list[list[UsageRecord]], replay: int) -> None:
    reference_state, kernel_state = RatingState(), RatingState()
    previous: list[UsageRecord] = []
    for records in batches:
        records = records + previous[:replay]  # a redelivered tail of the batch before
        _same(
            rate_reference(records, CATALOG, state=reference_state),
            rate_usage(records, CATALOG, state=kernel_state, engine="kernel"),
        )
        assert kernel_state.snapshot() == reference_state.snapshot()
        previous = records


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(batches=st.lists(batch(), min_size=2, max_size=3), replay=st.integers(0, 30))
def test_counters_persisted_between_batches_equal_the_reference(batches: list[list[UsageRecord]], replay: int) -> None:
    """A fresh state per batch that loads what the last batches saved (the stream agent's cycle)."""
    stores: dict[str, dict[tuple[str, str], bytes]] = {"reference": {}, "kernel": {}}
    previous: list[UsageRecord] = []
    for records in batches:
        records = records + previous[:replay]
        states = {name: RatingState(loader=_loader(store)) for name, store in stores.items()}
        _same(
            rate_reference(records, CATALOG, state=states["reference"]),
            rate_usage(records, CATALOG, state=states["kernel"], engine="kernel"),
        )
        for name, state in states.items():
            stores[name].update((split_state_key(key), blob) for key, blob in state.take_changes().items())
        previous = records
    assert stores["kernel"].keys() == stores["reference"].keys()
    for key, blob in stores["reference"].items():
        assert msgspec.msgpack.decode(stores["kernel"][key], type=PeriodCounters) == msgspec.msgpack.decode(
            blob, type=PeriodCounters
        )


def _loader(store: dict[tuple[str, str], bytes]) -> Loader:
    return lambda account, period: store.get((account, period))


def test_a_large_batch_with_every_kind_of_run_equals_the_reference() -> None:
    """Thousands of records: runs of one row and of hundreds, saturated and not, repeats and replays."""
    records = []
    for index in range(6_000):
        account = f"A-{index % 97 if index % 5 else index % 7}"
        event = ("data", "voice", "sms", "data", "mms")[index % 5]
        start = JUNE + (index * 7_919_000) % (32 * DAY) - DAY
        seconds = (index * 37) % 2_400 if event == "voice" else 0
        records.append(
            UsageRecord(
                id=f"r{index % 5_700}",  # the last 300 repeat earlier ids
                account=account,
                service="svc",
                start_ms=start,
                end_ms=start + seconds * 1000,
                bytes_down=(index * 1_234_567) % (60 * MB) if event == "data" else 0,
                duration_s=seconds if event == "voice" else None,
                event_type=event,
            )
        )
    reference_state, kernel_state = RatingState(), RatingState()
    for chunk in (records[:4_000], records[3_500:]):  # the second batch replays 500 records
        _same(
            rate_reference(chunk, CATALOG, state=reference_state),
            rate_usage(chunk, CATALOG, state=kernel_state, engine="kernel"),
        )
        assert kernel_state.snapshot() == reference_state.snapshot()


def test_the_collector_resumes_after_a_batch_with_what_it_built_in_the_oldest_generation() -> None:
    gc.collect()
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
        built = [[index] for index in range(5_000)]  # a batch's containers (state lists, say)
        with collector_paused():  # nested: leaves the collector as it found it
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    assert gc.get_count()[0] < 1_000  # not waiting in the young generation for a pass
    oldest = {id(item) for item in gc.get_objects(generation=2)}
    assert all(id(item) in oldest for item in built)


def test_the_collector_leaves_alone_what_the_process_froze() -> None:
    gc.collect()
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        assert frozen > 0
        with collector_paused():
            built = [[index] for index in range(1_000)]
        assert gc.get_freeze_count() == frozen
        assert gc.isenabled()
        young = {id(item) for generation in (0, 1) for item in gc.get_objects(generation=generation)}
        assert all(id(item) in young for item in built)  # left to the young collections
    finally:
        gc.unfreeze()
