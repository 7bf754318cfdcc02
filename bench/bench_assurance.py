"""Assurance benchmarks.

* ``anomaly_scoring``: points/s through :class:`~assurance.detectors.SeriesBank` (each point scored,
  then learned), one batch per minute for many interfaces, as the worker feeds it. Baseline: the
  same model point by point in plain Python (:class:`~assurance.detectors.SeasonalBaseline`), on a
  sample of the same points; before timing, the bench checks that the two give the same scores. The
  full path (``InterfaceAnomalies.observe`` on ``InterfaceRate`` windows: every metric's baseline, the
  packet-size baselines and the forest) is measured too and reported in ``params``.
"""

from __future__ import annotations

import time

import numpy as np

from assurance.anomaly import METRICS, InterfaceAnomalies
from assurance.anomaly_eval import make_scenario
from assurance.detectors import BaselineConfig, SeasonalBaseline, SeriesBank
from bench import BenchResult, benchmark

MINUTE_MS = 60_000


def minute_values(series: int, minutes: int, seed: int = 7) -> np.ndarray:
    """Traffic-like values, shape ``(minutes, series)``: a daily wave per series with noise."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(1e6, 1e9, series)
    phase = rng.uniform(0, 2 * np.pi, series)
    t = np.arange(minutes)[:, None]
    wave = 1 + 0.5 * np.sin(2 * np.pi * t / 1440 + phase)
    return level * wave * np.exp(rng.normal(0, 0.05, (minutes, series)))


def check_bank_equals_scalar(config: BaselineConfig, values: np.ndarray) -> None:
    """The bank must give the scalar baseline's scores on the same points."""
    minutes, series = values.shape
    bank = SeriesBank(config)
    rows = bank.rows([f"check/{i}" for i in range(series)])
    scalars = [SeasonalBaseline(config) for _ in range(series)]
    for minute in range(minutes):
        got = bank.update_rows(rows, np.full(series, minute * MINUTE_MS), values[minute]).score
        want = [scalars[i].update(minute * MINUTE_MS, float(values[minute, i])) for i in range(series)]
        if not np.allclose(got, want, rtol=1e-12, atol=1e-12):
            raise AssertionError(f"bank and scalar baseline differ at minute {minute}")


def bank_rate(config: BaselineConfig, values: np.ndarray, warm_minutes: int) -> tuple[float, float]:
    """(points/s, seconds) over the minutes after ``warm_minutes``, one update per minute for every series."""
    minutes, series = values.shape
    bank = SeriesBank(config)
    rows = bank.rows([f"edge{i // 48:04d}/{i % 48}" for i in range(series)])
    for minute in range(warm_minutes):
        bank.update_rows(rows, np.full(series, minute * MINUTE_MS), values[minute])
    started = time.perf_counter()
    for minute in range(warm_minutes, minutes):
        bank.update_rows(rows, np.full(series, minute * MINUTE_MS), values[minute])
    seconds = time.perf_counter() - started
    return (minutes - warm_minutes) * series / seconds, seconds


def scalar_rate(config: BaselineConfig, values: np.ndarray) -> float:
    minutes, series = values.shape
    detectors = [SeasonalBaseline(config) for _ in range(series)]
    started = time.perf_counter()
    for minute in range(minutes):
        row = values[minute].tolist()
        for i, detector in enumerate(detectors):
            detector.update(minute * MINUTE_MS, row[i])
    return minutes * series / (time.perf_counter() - started)


def full_path_rate(interfaces: int, timed_minutes: int) -> tuple[float, int]:
    """(windows/s, forest fits) of ``InterfaceAnomalies.observe``, one batch per minute, past the warm-up.

    The first ``warmup + 2`` minutes run untimed, so the timed ones include the forest (scoring, learning
    and its refits), which only looks at interfaces past their warm-up.
    """
    detector = InterfaceAnomalies()
    warm_minutes = detector.config.warmup + 2
    scenario = make_scenario(11, interfaces, warm_minutes + timed_minutes + 61, day_points=warm_minutes)
    for minute in range(warm_minutes):
        detector.observe([scenario.window(s, minute) for s in range(interfaces)])
    batches = [
        [scenario.window(s, m) for s in range(interfaces)] for m in range(warm_minutes, warm_minutes + timed_minutes)
    ]
    started = time.perf_counter()
    for batch in batches:
        detector.observe(batch)
    seconds = time.perf_counter() - started
    return timed_minutes * interfaces / seconds, detector.forest.fits


@benchmark("anomaly_scoring", "seasonal baseline bank, points scored then learned per second, vs the scalar loop")
def anomaly_scoring(quick: bool) -> BenchResult:
    config = BaselineConfig()
    series = 10_000 if quick else 50_000
    minutes = 8 if quick else 20
    values = minute_values(series, minutes)
    check_bank_equals_scalar(config, minute_values(200, 90, seed=3))

    baseline = scalar_rate(config, values[:, : min(series, 2_000)])
    timings = [bank_rate(config, values, warm_minutes=2) for _ in range(1 if quick else 3)]
    rate = max(points_per_s for points_per_s, _ in timings)

    interfaces = 1_000 if quick else 5_000
    window_rate, fits = full_path_rate(interfaces, timed_minutes=6 if quick else 12)
    return BenchResult(
        value=rate,
        unit="points/s",
        baseline=baseline,
        ratio=rate / baseline,
        params={
            "series": series,
            "timed_minutes": minutes - 2,
            "runs": len(timings),
            "best_s": round(min(seconds for _, seconds in timings), 3),
            "slots": config.slots,
            "baseline": "SeasonalBaseline, per-point Python loop, on up to 2,000 of the series",
            "checked_equal_on": "200 series x 90 minutes",
            "full_path_interfaces": interfaces,
            "full_path_windows_per_s": round(window_rate),
            "full_path_metric_points_per_s": round(window_rate * len(METRICS)),
            "full_path_metrics": len(METRICS),
            "full_path_forest_fits": fits,
        },
    )


__all__ = ["anomaly_scoring", "minute_values"]
