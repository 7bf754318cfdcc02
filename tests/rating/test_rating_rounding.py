"""Rounding of half cents under every rounding mode, per plan, with exact sums before rounding."""

from __future__ import annotations

import pytest

from tests.rating.ratingkit import one_plan, rate_one, usage

# (price of one SMS, mode, expected at 2 decimals)
HALF_CENTS = [
    ("0.005", "ROUND_HALF_EVEN", "0.00"),
    ("0.005", "ROUND_HALF_UP", "0.01"),
    ("0.005", "ROUND_HALF_DOWN", "0.00"),
    ("0.005", "ROUND_UP", "0.01"),
    ("0.005", "ROUND_DOWN", "0.00"),
    ("0.005", "ROUND_CEILING", "0.01"),
    ("0.005", "ROUND_FLOOR", "0.00"),
    ("0.005", "ROUND_05UP", "0.01"),  # truncated 0.00 ends in 0: away from zero
    ("0.015", "ROUND_HALF_EVEN", "0.02"),  # to the even cent
    ("0.015", "ROUND_HALF_UP", "0.02"),
    ("0.015", "ROUND_HALF_DOWN", "0.01"),
    ("0.015", "ROUND_UP", "0.02"),
    ("0.015", "ROUND_DOWN", "0.01"),
    ("0.015", "ROUND_CEILING", "0.02"),
    ("0.015", "ROUND_FLOOR", "0.01"),
    ("0.015", "ROUND_05UP", "0.01"),  # truncated 0.01 ends in 1: toward zero
    ("0.025", "ROUND_HALF_EVEN", "0.02"),
    ("0.025", "ROUND_HALF_UP", "0.03"),
    ("0.025", "ROUND_HALF_DOWN", "0.02"),
    ("0.055", "ROUND_05UP", "0.06"),  # truncated 0.05 ends in 5: away
    ("0.0051", "ROUND_HALF_EVEN", "0.01"),  # above half
    ("0.0051", "ROUND_HALF_DOWN", "0.01"),
    ("0.0049", "ROUND_HALF_UP", "0.00"),  # below half
    ("0.0001", "ROUND_UP", "0.01"),  # any remainder rounds up
    ("0.0099", "ROUND_DOWN", "0.00"),
]


@pytest.mark.parametrize(("price", "mode", "expected"), HALF_CENTS)
def test_half_cents(price: str, mode: str, expected: str) -> None:
    catalog = one_plan({"name": "sms", "model": "per_unit", "unit": "event", "price": price}, rounding=mode)
    assert str(rate_one(usage(event_type="sms"), catalog).amount) == expected


@pytest.mark.parametrize(("mode", "expected"), [("ROUND_HALF_EVEN", "0.02"), ("ROUND_DOWN", "0.01")])
def test_parts_are_summed_exactly_then_rounded_once(mode: str, expected: str) -> None:
    # 30 s at 0.01/min (0.005) + 30 s at 0.02/min (0.01): 0.015 exactly, rounded once
    bands = [{"name": "peak", "hours": ["08:00-20:00"], "price": "0.02"}, {"name": "offpeak", "price": "0.01"}]
    catalog = one_plan({"name": "v", "model": "time_of_day", "unit": "minute", "bands": bands}, rounding=mode)
    assert (
        str(rate_one(usage(start="2024-06-03T07:59:30Z", seconds=60, event_type="voice"), catalog).amount) == expected
    )


@pytest.mark.parametrize(("precision", "expected"), [(0, "1"), (2, "0.67"), (4, "0.6667"), (6, "0.666667")])
def test_precision_per_plan_with_non_terminating_quotients(precision: int, expected: str) -> None:
    # 40 s at 1.00 per minute = 0.6666...: no decimal rounding of an intermediate ever leaks in
    catalog = one_plan({"name": "v", "model": "per_unit", "unit": "minute", "price": "1.00"}, precision=precision)
    assert str(rate_one(usage(seconds=40, event_type="voice"), catalog).amount) == expected
