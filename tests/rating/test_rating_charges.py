"""Every charge model, table-driven, with amounts computed by hand (see the comment on each row)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from rating import load_catalog, rate_usage
from tests.rating.ratingkit import amounts, one_plan, rate_both, rate_one, usage

GB = 10**9
MB = 10**6


PER_UNIT = [
    # (charge fields, record fields, expected)
    ({"unit": "GB", "price": "0.50"}, {"bytes_down": 3 * GB // 2}, "0.75"),  # 1.5 GB * 0.50
    ({"unit": "MB", "price": "0.01"}, {"bytes_down": 2_500_001}, "0.03"),  # 2.500001 MB * 0.01 = 0.02500001 -> up
    ({"unit": "GB", "price": "0.50", "meter": "bytes_up"}, {"bytes_up": GB, "bytes_down": GB}, "0.50"),  # up only
    ({"unit": "event", "price": "0.08"}, {"event_type": "sms"}, "0.08"),  # one message
    ({"unit": "minute", "price": "0.10"}, {"event_type": "voice", "seconds": 90}, "0.15"),  # 1.5 min, per second
    ({"unit": "minute", "price": "0.10", "increments": "60/60"}, {"event_type": "voice", "seconds": 61}, "0.20"),
    ({"unit": "minute", "price": "0.10", "increments": "30/6"}, {"event_type": "voice", "seconds": 31}, "0.06"),
    ({"unit": "minute", "price": "0.10", "increments": "30/6"}, {"event_type": "voice", "seconds": 10}, "0.05"),
    ({"unit": "minute", "price": "0.10", "increments": "1/1"}, {"event_type": "voice", "seconds": 0}, "0.00"),
    ({"unit": "minute", "price": "0.10", "increments": "60/60"}, {"seconds": 0, "event_type": "voice"}, "0.00"),
]


@pytest.mark.parametrize(("charge", "record", "expected"), PER_UNIT)
def test_per_unit(charge: dict, record: dict, expected: str) -> None:
    catalog = one_plan({"name": "c", "model": "per_unit", **charge})
    assert rate_one(usage(**record), catalog).amount == Decimal(expected)


def test_data_rounded_up_to_whole_megabytes_per_record() -> None:
    catalog = one_plan(
        {"name": "d", "model": "per_unit", "unit": "GB", "price": "0.50", "increments": "1 MB"}, precision=6
    )
    rated = rate_one(usage(bytes_down=1), catalog)
    assert rated.amount == Decimal("0.000500")  # 1 byte billed as 1 MB = 0.001 GB * 0.50
    assert str(rated.quantity) == "0.001"


def test_duration_from_timestamps_when_unknown() -> None:
    catalog = one_plan({"name": "v", "model": "per_unit", "unit": "minute", "price": "0.10", "increments": "60/60"})
    record = usage(seconds=61, event_type="voice", duration_s=None)
    assert rate_one(record, catalog).amount == Decimal("0.20")  # 61 s from start/end -> 2 whole minutes


GRADUATED = [
    # tiers: first 1 GB at 1.00, up to 5 GB at 0.50, beyond at 0.20
    (GB // 2, "0.50", "0.50"),  # 0.5 GB in tier 1
    (GB, "1.00", "1.00"),  # exactly at the tier edge: all in tier 1, no tier 2 fee
    (GB + 1, "1.00", "1.30"),  # one byte into tier 2 enters it: fee 0.30, 1e-9 GB * 0.50 rounds away
    (6 * GB, "3.20", "3.50"),  # 1.00 + 4 * 0.50 + 1 * 0.20 (+ 0.30 fee)
    (0, "0.00", "0.00"),
]


@pytest.mark.parametrize(("quantity", "expected", "expected_with_fee"), GRADUATED)
def test_graduated_per_record(quantity: int, expected: str, expected_with_fee: str) -> None:
    tiers = [{"up_to": "1 GB", "price": "1.00"}, {"up_to": "5 GB", "price": "0.50"}, {"price": "0.20"}]
    plain = one_plan({"name": "d", "model": "graduated", "unit": "GB", "tiers": tiers})
    assert rate_one(usage(bytes_down=quantity), plain).amount == Decimal(expected)
    tiers[1]["flat_fee"] = "0.30"
    with_fee = one_plan({"name": "d", "model": "graduated", "unit": "GB", "tiers": tiers})
    assert rate_one(usage(bytes_down=quantity), with_fee).amount == Decimal(expected_with_fee)


def test_graduated_per_period_prices_the_running_total() -> None:
    tiers = [{"up_to": "1 GB", "price": "0"}, {"price": "1.00", "flat_fee": "0.10"}]
    catalog = one_plan({"name": "d", "model": "graduated", "unit": "GB", "scope": "period", "tiers": tiers})
    records = [
        usage("a", bytes_down=600 * MB, start="2024-06-03T10:00:00Z"),  # 0.6 GB: free
        usage("b", bytes_down=600 * MB, start="2024-06-04T10:00:00Z"),  # 0.4 free, 0.2 GB * 1.00 + fee 0.10
        usage("c", bytes_down=100 * MB, start="2024-06-05T10:00:00Z"),  # 0.1 GB * 1.00, tier already entered
        usage("d", bytes_down=600 * MB, start="2024-07-01T00:00:00Z"),  # a new month: free again
    ]
    assert amounts(records, catalog) == [Decimal("0.00"), Decimal("0.30"), Decimal("0.10"), Decimal("0.00")]


VOLUME = [
    # unit MB, 4 decimals: up to 10 MB at 0.05, up to 100 MB at 0.03, beyond at 0.01 plus a 0.50 flat fee
    (10 * MB, "0.5000"),  # exactly at the edge: tier 1 (bounds are inclusive)
    (10 * MB + 1, "0.3000"),  # 10.000001 MB all at 0.03 = 0.30000003
    (150 * MB, "2.0000"),  # 150 * 0.01 + 0.50
    (0, "0.0000"),  # nothing used: no fee
]


@pytest.mark.parametrize(("quantity", "expected"), VOLUME)
def test_volume(quantity: int, expected: str) -> None:
    tiers = [{"up_to": 10, "price": "0.05"}, {"up_to": 100, "price": "0.03"}, {"price": "0.01", "flat_fee": "0.50"}]
    catalog = one_plan({"name": "d", "model": "volume", "unit": "MB", "tiers": tiers}, precision=4)
    assert str(rate_one(usage(bytes_down=quantity), catalog).amount) == expected


PACKAGE = [(1, "1.00"), (100 * MB, "1.00"), (100 * MB + 1, "2.00"), (0, "0.00"), (250 * MB, "3.00")]


@pytest.mark.parametrize(("quantity", "expected"), PACKAGE)
def test_package_per_started_block(quantity: int, expected: str) -> None:
    catalog = one_plan({"name": "d", "model": "package", "unit": "MB", "block": "100 MB", "price": "1.00"})
    assert str(rate_one(usage(bytes_down=quantity), catalog).amount) == expected


BANDS = [
    {"name": "holiday", "holidays": True, "price": "0.02"},
    {"name": "weekend", "days": ["sat", "sun"], "price": "0.03"},
    {"name": "peak", "days": ["mon", "tue", "wed", "thu", "fri"], "hours": ["08:00-20:00"], "price": "0.12"},
    {"name": "offpeak", "price": "0.05"},
]

TIME_OF_DAY = [
    # (start, seconds, split, expected) -- 2024-06-03 is a Monday, 2024-06-07 a Friday; per minute, 60/60
    ("2024-06-03T10:00:00Z", 600, "proportional", "1.20"),  # 10 peak minutes
    ("2024-06-03T19:59:00Z", 120, "proportional", "0.17"),  # 1 peak + 1 off-peak minute
    ("2024-06-03T19:58:00Z", 180, "proportional", "0.29"),  # 2 peak + 1 off-peak
    ("2024-06-07T23:30:00Z", 3600, "proportional", "2.40"),  # Friday off-peak 30 min + Saturday 30 min at midnight
    ("2024-06-07T23:30:00Z", 3600, "start", "3.00"),  # split: start prices the hour at Friday off-peak
    ("2024-12-25T10:00:00Z", 600, "proportional", "0.20"),  # a holiday Wednesday: the holiday band wins
    ("2024-06-03T07:59:30Z", 60, "proportional", "0.09"),  # 0.5 * 0.05 + 0.5 * 0.12 = 0.085 -> half up
    ("2024-06-03T19:59:50Z", 30, "proportional", "0.07"),  # billed 60 s: 20 s peak (10/30 of it), 40 s off-peak
    ("2024-06-08T10:00:00Z", 600, "proportional", "0.30"),  # Saturday
]


@pytest.mark.parametrize(("start", "seconds", "split", "expected"), TIME_OF_DAY)
def test_time_of_day(start: str, seconds: int, split: str, expected: str) -> None:
    charge = {
        "name": "v",
        "model": "time_of_day",
        "unit": "minute",
        "increments": "60/60",
        "calendar": "hol",
        "split": split,
        "bands": BANDS,
    }
    catalog = one_plan(charge)
    assert str(rate_one(usage(start=start, seconds=seconds, event_type="voice"), catalog).amount) == expected


def test_time_of_day_split_is_recorded_in_the_breakdown() -> None:
    charge = {"name": "v", "model": "time_of_day", "unit": "minute", "increments": "60/60", "bands": BANDS}
    rated = rate_one(usage(start="2024-06-07T23:30:00Z", seconds=3600, event_type="voice"), one_plan(charge))
    line = json.loads(rated.breakdown)["lines"][0]
    assert [(p["rate"], p["quantity"]) for p in line["parts"]] == [("offpeak", "30"), ("weekend", "30")]
    assert line["billed"] == "60"


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        ("2024-03-30T17:30:00Z", "6.00"),  # winter: 20:00 in Paris is 19:00 UTC, the hour is all day rate
        ("2024-03-31T17:30:00Z", "4.50"),  # summer time from that morning: 20:00 is 18:00 UTC, half at night
    ],
)
def test_bands_follow_the_plan_time_zone_across_daylight_saving(start: str, expected: str) -> None:
    bands = [{"name": "day", "hours": ["08:00-20:00"], "price": "0.10"}, {"name": "night", "price": "0.05"}]
    catalog = one_plan({"name": "v", "model": "time_of_day", "unit": "minute", "bands": bands}, timezone="Europe/Paris")
    assert str(rate_one(usage(start=start, seconds=3600, event_type="voice"), catalog).amount) == expected


ZONES = [
    {"name": "uk", "prefixes": ["44"], "price": "0.20"},
    {"name": "uk-mobile", "prefixes": ["447"], "price": "0.35"},
    {"name": "us", "prefixes": ["1"], "price": "0.15"},
]


@pytest.mark.parametrize(
    ("destination", "seconds", "expected"),
    [
        ("+447700900123", 61, "0.70"),  # longest prefix 447: 2 minutes * 0.35
        ("+442079460000", 60, "0.20"),  # 44
        ("15555550100", 30, "0.15"),  # no '+': still matched on digits; 60/60 bills a minute
        ("+1-555", 60, "0.15"),  # digits stop at the first non-digit: "1"
    ],
)
def test_zone_longest_prefix(destination: str, seconds: int, expected: str) -> None:
    catalog = one_plan({"name": "v", "model": "zone", "unit": "minute", "increments": "60/60", "zones": ZONES})
    record = usage(destination=destination, seconds=seconds, event_type="voice")
    assert str(rate_one(record, catalog).amount) == expected


def test_zone_without_match_is_refused_with_the_destination() -> None:
    catalog = one_plan({"name": "v", "model": "zone", "unit": "minute", "zones": ZONES})
    result, _ = rate_both([usage(destination="+33612345678", seconds=60, event_type="voice")], catalog)
    assert result.rated == []
    assert result.failures == [(0, "charge 'v' of plan 'p v1': no zone matches destination '+33612345678'")]


def test_zone_prices_per_band() -> None:
    charge = {
        "name": "v",
        "model": "zone",
        "unit": "minute",
        "increments": "60/60",
        "bands": [{"name": "peak", "hours": ["08:00-20:00"]}, {"name": "offpeak"}],
        "zones": [{"name": "uk", "prefixes": ["44"], "prices": {"peak": "0.20", "offpeak": "0.10"}}],
    }
    record = usage(start="2024-06-03T19:59:00Z", seconds=120, destination="+4420", event_type="voice")
    assert rate_one(record, one_plan(charge)).amount == Decimal("0.30")  # 1 min * 0.20 + 1 min * 0.10


FEES = [
    # connect 0.05, minimum 0.10, 0.02 per minute, 60/60
    (61, "0.10"),  # 2 * 0.02 + 0.05 = 0.09 < minimum
    (600, "0.25"),  # 10 * 0.02 + 0.05
    (0, "0.00"),  # unanswered: no connect fee, no minimum
]


@pytest.mark.parametrize(("seconds", "expected"), FEES)
def test_connect_fee_and_minimum(seconds: int, expected: str) -> None:
    charge = {
        "name": "v",
        "model": "per_unit",
        "unit": "minute",
        "price": "0.02",
        "increments": "60/60",
        "connect_fee": "0.05",
        "minimum": "0.10",
    }
    rated = rate_one(usage(seconds=seconds, event_type="voice"), one_plan(charge))
    assert str(rated.amount) == expected
    line = json.loads(rated.breakdown)["lines"][0]
    assert ("minimum" in line) == (seconds == 61)
    assert ("connect_fee" in line) == (seconds > 0)


def test_several_charges_make_several_lines_and_filters_choose_them() -> None:
    catalog = one_plan(
        {"name": "up", "model": "per_unit", "unit": "GB", "price": "0.10", "meter": "bytes_up", "event_type": "data"},
        {"name": "down", "model": "per_unit", "unit": "GB", "price": "0.05", "meter": "bytes_down"},
        {"name": "sms", "model": "per_unit", "unit": "event", "price": "0.08", "event_type": "sms"},
    )
    rated = rate_one(usage(bytes_up=2 * GB, bytes_down=10 * GB), catalog)
    assert rated.amount == Decimal("0.70")  # 2 * 0.10 + 10 * 0.05
    assert (rated.quantity, rated.unit) == (Decimal(2), "GB")  # from the first line
    assert [line["charge"] for line in json.loads(rated.breakdown)["lines"]] == ["up", "down"]
    result, _ = rate_both(
        [usage(event_type="voice", seconds=5)],
        one_plan({"name": "sms", "model": "per_unit", "unit": "event", "price": "1", "event_type": "sms"}),
    )
    assert result.failures == [(0, "no charge of plan 'p v1' applies to event_type 'voice', service 'svc'")]


def test_currency_per_plan() -> None:
    catalog = one_plan({"name": "d", "model": "per_unit", "unit": "GB", "price": "1"}, currency="USD")
    assert rate_one(usage(bytes_down=GB), catalog).currency == "USD"


def test_embedded_default_catalog_still_rates_data_flat() -> None:
    result = rate_usage([usage(account="ACC-1", bytes_up=GB // 2, bytes_down=GB)], load_catalog())
    assert result.rated[0].amount == Decimal("0.750000")
    assert (result.rated[0].plan, result.rated[0].unit, result.rated[0].quantity) == ("data-flat", "GB", Decimal("1.5"))
