"""Allowances: consumed in event-time order, exhausted mid-record, idempotent on record id, persisted."""

from __future__ import annotations

import json
from decimal import Decimal

from rating import PeriodCounters, RatingState, rate_usage, state_key
from tests.rating.ratingkit import amounts, one_plan, rate_both, usage

MB = 10**6
DATA = {"name": "d", "model": "per_unit", "unit": "MB", "price": "0.01", "included": "100 MB"}


def test_allowance_exhausted_mid_record() -> None:
    catalog = one_plan(DATA)
    records = [
        usage("r1", bytes_down=60 * MB, start="2024-06-03T10:00:00Z"),  # 60 of 100 MB free
        usage("r2", bytes_down=60 * MB, start="2024-06-04T10:00:00Z"),  # 40 free, 20 MB * 0.01
        usage("r3", bytes_down=10 * MB, start="2024-06-05T10:00:00Z"),  # all chargeable
    ]
    result, state = rate_both(records, catalog)
    assert [r.amount for r in result.rated] == [Decimal("0.00"), Decimal("0.20"), Decimal("0.10")]
    line = json.loads(result.rated[1].breakdown)["lines"][0]
    assert (line["billed"], line["free"], line["parts"][0]["quantity"]) == ("60", "40", "20")
    assert state.used("A-1", "2024-06", "p/d") == 100 * MB + 1  # saturated just past the allowance


def test_allowance_follows_event_time_not_arrival_order() -> None:
    catalog = one_plan(DATA)
    early = usage("early", bytes_down=80 * MB, start="2024-06-03T10:00:00Z")
    late = usage("late", bytes_down=80 * MB, start="2024-06-20T10:00:00Z")
    assert amounts([late, early], catalog) == [Decimal("0.60"), Decimal("0.00")]


def test_allowance_renews_each_month_and_is_per_account() -> None:
    catalog = one_plan(DATA)
    records = [
        usage("a", bytes_down=150 * MB, start="2024-06-30T23:00:00Z"),  # 50 MB over in June
        usage("b", bytes_down=150 * MB, start="2024-07-01T00:00:00Z"),  # July's allowance
        usage("c", bytes_down=150 * MB, start="2024-06-10T00:00:00Z", account="A-2"),  # another account
    ]
    assert amounts(records, catalog) == [Decimal("0.50"), Decimal("0.50"), Decimal("0.50")]


def test_replayed_record_does_not_consume_twice_and_prices_the_same() -> None:
    catalog = one_plan(DATA)
    first, state = rate_both(
        [usage("r1", bytes_down=60 * MB), usage("r2", bytes_down=60 * MB, start="2024-06-04T10:00:00Z")], catalog
    )
    replay, state = rate_both(
        [
            usage("r2", bytes_down=60 * MB, start="2024-06-04T10:00:00Z"),  # replayed after a crash
            usage("r3", bytes_down=10 * MB, start="2024-06-05T10:00:00Z"),
        ],
        catalog,
        state,
    )
    assert replay.rated[0] == first.rated[1]
    assert replay.rated[1].amount == Decimal("0.10")
    again, _ = rate_both([usage("r1", bytes_down=60 * MB)], catalog, state)
    assert again.rated[0] == first.rated[0]


def test_duplicate_ids_inside_one_batch_consume_once() -> None:
    catalog = one_plan(DATA)
    records = [
        usage("r1", bytes_down=60 * MB),
        usage("r1", bytes_down=60 * MB),
        usage("r2", bytes_down=60 * MB, start="2024-06-04T10:00:00Z"),
    ]
    result, _ = rate_both(records, catalog)
    assert [r.amount for r in result.rated] == [Decimal("0.00"), Decimal("0.00"), Decimal("0.20")]


def test_free_units_come_off_the_earliest_time_segments() -> None:
    bands = [{"name": "peak", "hours": ["08:00-20:00"], "price": "0.12"}, {"name": "offpeak", "price": "0.05"}]
    charge = {
        "name": "v",
        "model": "time_of_day",
        "unit": "minute",
        "increments": "60/60",
        "included": "2 minute",
        "bands": bands,
    }
    # 19:59 -> 20:02: 1 peak minute then 2 off-peak; the 2 free minutes are the peak one and the first off-peak
    rated = rate_both([usage(start="2024-06-03T19:59:00Z", seconds=180, event_type="voice")], one_plan(charge))[0]
    line = json.loads(rated.rated[0].breakdown)["lines"][0]
    assert line["parts"] == [{"rate": "offpeak", "quantity": "1", "price": "0.05"}]
    assert rated.rated[0].amount == Decimal("0.05")


def test_connect_fee_applies_to_a_call_inside_the_allowance_but_not_the_minimum() -> None:
    charge = {
        "name": "v",
        "model": "per_unit",
        "unit": "minute",
        "price": "0.02",
        "increments": "60/60",
        "connect_fee": "0.05",
        "minimum": "0.10",
        "included": "10 minute",
    }
    assert amounts([usage(seconds=61, event_type="voice")], one_plan(charge)) == [Decimal("0.05")]


def test_state_persists_per_key_and_reloads_through_a_loader() -> None:
    catalog = one_plan(DATA)
    state = RatingState()
    rate_usage([usage("r1", bytes_down=60 * MB)], catalog, state=state)
    store = state.take_changes()
    assert list(store) == [state_key("A-1", "2024-06")]
    assert state.take_changes() == {}  # nothing changed since
    reloaded = RatingState(loader=lambda account, period: store.get(state_key(account, period)))
    result = rate_usage([usage("r2", bytes_down=60 * MB, start="2024-06-04T10:00:00Z")], catalog, state=reloaded)
    assert result.rated[0].amount == Decimal("0.20")
    snapshot = RatingState.from_bytes(reloaded.to_bytes()).snapshot()
    assert snapshot["2024-06:A-1"] == PeriodCounters(
        used={"p/d": 100 * MB + 1}, applied_ids={"p/d": ["r1", "r2"]}, applied_at={"p/d": [0, 60 * MB]}
    )
    assert reloaded.drop_periods_before("2024-07") == 1


def test_versions_of_a_plan_share_the_counter_and_a_named_counter_shares_a_bundle() -> None:
    from rating import parse_catalog

    doc = {
        "timezone": "UTC",
        "precision": 2,
        "plans": [
            {"name": "p", "version": 1, "effective_from": "2024-01-01", "charges": [{**DATA}]},
            {"name": "p", "version": 2, "effective_from": "2024-06-15", "charges": [{**DATA, "included": "200 MB"}]},
            {
                "name": "q",
                "effective_from": "2024-01-01",
                "charges": [
                    {
                        "name": "nat",
                        "model": "per_unit",
                        "unit": "minute",
                        "price": "0.10",
                        "service": "national",
                        "included": "10 minute",
                        "counter": "minutes",
                    },
                    {
                        "name": "intl",
                        "model": "per_unit",
                        "unit": "minute",
                        "price": "0.30",
                        "service": "international",
                        "included": "10 minute",
                        "counter": "minutes",
                    },
                ],
            },
        ],
        "subscriptions": [{"account_prefix": "A-", "plan": "p"}, {"account_prefix": "B-", "plan": "q"}],
    }
    catalog = parse_catalog(doc)
    records = [
        usage("a", bytes_down=80 * MB, start="2024-06-10T00:00:00Z"),  # v1: 80 of 100 free
        usage("b", bytes_down=80 * MB, start="2024-06-20T00:00:00Z"),  # v2: 200 MB allowance, 80 used: free
        usage("c", bytes_down=80 * MB, start="2024-06-21T00:00:00Z"),  # 160 -> 240: 40 MB over
        usage("n", seconds=480, event_type="voice", service="national", account="B-1"),  # 8 of 10 bundle minutes
        usage(
            "i", seconds=300, event_type="voice", service="international", account="B-1", start="2024-06-03T11:00:00Z"
        ),  # 2 free, 3 * 0.30
    ]
    assert amounts(records, catalog) == [
        Decimal("0.00"),
        Decimal("0.00"),
        Decimal("0.40"),
        Decimal("0.00"),
        Decimal("0.90"),
    ]
