"""Capacity forecast on hand-made series whose answer is known, and on generated trends."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest

import assurance.capacity
from assurance.capacity import (
    CapacityForecaster,
    evaluate_capacity,
    interface_utilisation_pct,
    theil_sen,
)
from assurance.scenarios import capacity_scenarios
from models.records import InterfaceRate

DAY_MS = 86_400_000
STEP_MS = 300_000  # 5-minute windows: the forecaster takes any window length
T0 = 1_717_200_000_000  # 2024-06-01T00:00:00Z


def _rate(ms: int, pct: float | None, *, if_index: int = 1, bps: float = 0.0) -> InterfaceRate:
    return InterfaceRate(
        id=f"r1/{if_index}/{ms}",
        device="r1",
        if_index=if_index,
        window_start_ms=ms,
        in_util_pct_avg=pct,
        in_bps_avg=bps,
        speed_bps=10**9,
    )


def _feed(forecaster: CapacityForecaster, days: float, util_at, if_index: int = 1) -> list:
    """Windows every 5 minutes for ``days`` days, plus the first window after them (closing the last day)."""
    out = []
    for k in range(int(days * 288) + 1):
        ms = T0 + k * STEP_MS
        out += forecaster.observe([_rate(ms, util_at(k * STEP_MS / DAY_MS), if_index=if_index)])
    return out


@pytest.mark.parametrize("seen_days", [3, 5, 7])
def test_linear_ramp_to_full_in_n_days(seen_days: int) -> None:
    """50 % -> 100 % over 10 days: after ``seen_days`` days, saturation is 10 - seen_days days away."""
    forecaster = CapacityForecaster()
    _feed(forecaster, seen_days, lambda day: 50 + 5 * day)
    forecast = forecaster.forecast("r1", 1)
    assert forecast is not None
    assert forecast.seconds_to_saturation is not None
    assert forecast.seconds_to_saturation / 86_400 == pytest.approx(10 - seen_days, abs=0.05)
    assert forecast.slope_pct_per_day == pytest.approx(5.0, abs=1e-3)
    assert forecast.current_util_pct == pytest.approx(50 + 5 * seen_days, abs=0.3)
    assert forecast.projected_util_pct == pytest.approx(forecast.current_util_pct + 5 * 30, abs=1e-3)
    assert forecast.days == seen_days


def test_daily_cycle_with_noise_and_growth() -> None:
    """A busy evening peak at 60 % growing 2 points a day, with noise; the truth is where the daily 95th
    percentile (the peak level times the 95th percentile of the daily shape) reaches 100 %."""
    rng = np.random.default_rng(4)

    def shape(day: float) -> float:
        return 0.3 + 0.7 * max(0.0, math.cos(2 * math.pi * (day % 1 - 0.85))) ** 2

    forecaster = CapacityForecaster()
    _feed(forecaster, 10, lambda day: (60 + 2 * day) * shape(day) * (1 + rng.normal(0, 0.02)))
    forecast = forecaster.forecast("r1", 1)
    p95_share = float(np.percentile([shape(k / 288) for k in range(288)], 95))
    truth_days = (100 / p95_share - 60) / 2 - 10
    assert forecast is not None and forecast.seconds_to_saturation is not None
    assert forecast.seconds_to_saturation / 86_400 == pytest.approx(truth_days, rel=0.1)
    assert forecast.slope_pct_per_day == pytest.approx(2.0 * p95_share, rel=0.1)


@pytest.mark.parametrize(
    ("name", "util_at"),
    [("flat", lambda day: 60.0), ("declining", lambda day: 80 - 2 * day)],
)
def test_no_saturation_time_when_not_trending_up(name: str, util_at) -> None:
    forecaster = CapacityForecaster()
    _feed(forecaster, 6, util_at)
    forecast = forecaster.forecast("r1", 1)
    assert forecast is not None and forecast.seconds_to_saturation is None, name


def test_noisy_flat_series_is_not_a_trend() -> None:
    rng = np.random.default_rng(11)
    forecaster = CapacityForecaster()
    for if_index in range(1, 9):
        _feed(forecaster, 8, lambda day: 55 + rng.normal(0, 3), if_index=if_index)
    forecasts = forecaster.forecast_all()
    assert len(forecasts) == 8
    assert sum(f.seconds_to_saturation is not None for f in forecasts) <= 1


def test_forecasts_come_when_days_close_and_need_min_days() -> None:
    forecaster = CapacityForecaster(min_days=3)
    emitted = _feed(forecaster, 5, lambda day: 50 + 5 * day)
    # Days close at the first window of days 1..5; forecasts need 3 closed days: at days 3, 4 and 5.
    assert [f.days for f in emitted] == [3, 4, 5]
    assert [f.window_start_ms // DAY_MS - T0 // DAY_MS for f in emitted] == [3, 4, 5]
    assert CapacityForecaster().forecast("nope", 1) is None


def test_an_odd_day_does_not_bend_the_trend() -> None:
    def util(day: float) -> float:
        return 95.0 if 2 <= day < 3 else 50 + 1 * day  # one day of a big event

    forecaster = CapacityForecaster()
    _feed(forecaster, 8, util)
    forecast = forecaster.forecast("r1", 1)
    assert forecast is not None
    assert forecast.slope_pct_per_day == pytest.approx(1.0, abs=0.05)


def test_theil_sen_ignores_an_outlier() -> None:
    x = np.arange(6, dtype=float)
    y = 10 + 2 * x
    y[4] = 100
    slope, intercept, tau = theil_sen(x, y)
    assert slope == pytest.approx(2.0) and intercept == pytest.approx(10.0)
    assert tau > 0.5
    assert theil_sen(np.zeros(3), np.ones(3)) == (0.0, 1.0, 0.0)


def test_utilisation_from_percent_or_bits() -> None:
    assert interface_utilisation_pct(_rate(T0, 42.0)) == 42.0
    assert interface_utilisation_pct(_rate(T0, None, bps=2.5e8)) == pytest.approx(25.0)
    unknown = InterfaceRate(id="x", device="r1", if_index=1, window_start_ms=T0, in_bps_avg=5.0)
    assert interface_utilisation_pct(unknown) is None


def test_late_windows_for_a_closed_day_are_ignored_and_sparse_days_skipped() -> None:
    forecaster = CapacityForecaster(min_days=2)
    _feed(forecaster, 3, lambda day: 40.0)
    before = forecaster.forecast("r1", 1)
    forecaster.observe([_rate(T0 + STEP_MS, 99.0)])  # day 0, long closed
    assert forecaster.forecast("r1", 1) == before
    sparse = CapacityForecaster(min_days=2)
    for day in range(4):  # two hours a day: below the 50 % coverage a day needs
        sparse.observe([_rate(T0 + day * DAY_MS + k * STEP_MS, 50.0) for k in range(24)])
    assert sparse.forecast("r1", 1) is None


def test_snapshot_restore_keeps_the_days() -> None:
    forecaster = CapacityForecaster()
    _feed(forecaster, 4.5, lambda day: 50 + 5 * day)
    restored = CapacityForecaster()
    restored.restore(forecaster.snapshot())
    rest = [_rate(T0 + (4 * 288 + 144 + k) * STEP_MS, 50 + 5 * (4.5 + k / 288)) for k in range(1, 200)]
    assert forecaster.observe(rest) == restored.observe(rest)
    assert forecaster.forecast("r1", 1) == restored.forecast("r1", 1) is not None


def test_generated_trends_are_forecast_within_a_few_percent() -> None:
    scenarios = capacity_scenarios(12, days=10, seed=5)
    score = evaluate_capacity(scenarios, observe_days=7)
    assert score.growing == 8 and score.flat == 4
    assert score.forecast == score.growing
    assert score.median_rel_error is not None and score.median_rel_error < 0.1
    assert score.false_trends == 0
    with pytest.raises(ValueError):
        evaluate_capacity(scenarios, observe_days=10)


def test_docstring_examples() -> None:
    assert doctest.testmod(assurance.capacity).failed == 0
