"""InterfaceAnomalies on batches of InterfaceRate windows, the labelled scenarios and how they are counted."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from assurance.anomaly import METRICS, AnomalyConfig, AnomalyFinding, InterfaceAnomalies
from assurance.anomaly_eval import (
    ANOMALY_KINDS,
    HELD_OUT_SEED,
    TUNING_SEED,
    InjectedAnomaly,
    Scenario,
    count_events,
    evaluate_anomalies,
    make_scenario,
)
from models.records import InterfaceRate

MINUTE = 60_000
QUICK = AnomalyConfig(warmup=30, season_ms=120 * MINUTE, multivariate=False)


def window(
    minute: int,
    *,
    device: str = "edge1",
    if_index: int = 1,
    bps: float | None = None,
    errors: int = 0,
    samples: int = 6,
    revision: int = 1,
) -> InterfaceRate:
    wave = 1 + 0.4 * math.sin(2 * math.pi * minute / 120) + 0.02 * ((minute * 7919) % 5 - 2)
    in_bps = 4e8 * wave if bps is None else bps
    return InterfaceRate(
        id=InterfaceRate.make_id(device, if_index, minute * MINUTE),
        device=device,
        if_index=if_index,
        window_start_ms=minute * MINUTE,
        if_name=f"xe-0/0/{if_index}",
        samples=samples,
        in_bps_avg=in_bps,
        out_bps_avg=in_bps / 4,
        in_util_pct_avg=in_bps / 1e8,
        out_util_pct_avg=in_bps / 4e8,
        in_errors=errors,
        in_pps_avg=in_bps / 8 / 900,
        out_pps_avg=in_bps / 4 / 8 / 400,
        speed_bps=10_000_000_000,
        revision=revision,
    )


def history(detector: InterfaceAnomalies, minutes: int, interfaces: int = 3) -> list[AnomalyFinding]:
    findings: list[AnomalyFinding] = []
    for minute in range(minutes):
        findings += detector.observe([window(minute, if_index=i) for i in range(1, interfaces + 1)])
    return findings


def test_quiet_history_has_no_findings_and_an_error_burst_and_a_spike_are_found() -> None:
    detector = InterfaceAnomalies(QUICK)
    assert history(detector, 360) == []
    findings = detector.observe(
        [window(360, if_index=1, errors=300), window(360, if_index=2, bps=5e9), window(360, if_index=3)]
    )
    by_metric = {(f.if_index, f.metric): f for f in findings}
    assert (1, "in_errors") in by_metric and (2, "in_bps") in by_metric
    assert not any(f.if_index == 3 for f in findings)
    burst = by_metric[(1, "in_errors")]
    assert burst.value == 300.0 and burst.expected < 1.0 and burst.score >= QUICK.threshold
    spike = by_metric[(2, "in_bps")]
    assert spike.device == "edge1" and spike.if_name == "xe-0/0/2" and spike.window_start_ms == 360 * MINUTE
    assert 2e8 < spike.expected < 7e8


def test_threshold_is_configurable() -> None:
    strict = InterfaceAnomalies(AnomalyConfig(warmup=30, season_ms=120 * MINUTE, multivariate=False, threshold=1.0))
    lenient = InterfaceAnomalies(AnomalyConfig(warmup=30, season_ms=120 * MINUTE, multivariate=False, threshold=0.3))
    history(strict, 240)
    history(lenient, 240)
    probe = [window(240, if_index=1, bps=1.3e9)]
    assert strict.observe(probe) == []
    assert {f.metric for f in lenient.observe(probe)} >= {"in_bps"}


def test_windows_without_samples_are_skipped() -> None:
    detector = InterfaceAnomalies(QUICK)
    history(detector, 200)
    learned = detector.windows_learned
    assert detector.observe([window(200, if_index=1, bps=0.0, samples=0)]) == []
    assert detector.windows_learned == learned


def test_a_reemitted_window_is_scored_but_not_learned_twice() -> None:
    once, twice = InterfaceAnomalies(QUICK), InterfaceAnomalies(QUICK)
    history(once, 120)
    history(twice, 120)
    for minute in range(120, 180):
        once.observe([window(minute, if_index=i) for i in (1, 2, 3)])
        batch = [window(minute, if_index=i) for i in (1, 2, 3)]
        if minute % 3 == 0:  # a revision of the previous window arrives with this minute's batch
            batch.append(window(minute - 1, if_index=2, bps=9e8, revision=2))
        twice.observe(batch)
    assert twice.windows_learned == once.windows_learned
    assert twice.windows_rescored == 20
    for name in once.banks:
        assert once.banks[name].snapshot() == twice.banks[name].snapshot()


def test_a_late_window_is_scored_against_the_state_before_the_batch() -> None:
    detector = InterfaceAnomalies(QUICK)
    history(detector, 200)
    revised = window(199, if_index=1, bps=6e9, revision=2)
    findings = detector.observe([revised, window(200, if_index=1, bps=6e9)])
    flagged = {(f.window_start_ms, f.metric) for f in findings}
    assert (199 * MINUTE, "in_bps") in flagged and (200 * MINUTE, "in_bps") in flagged


def test_snapshot_restore_mid_stream_gives_identical_findings() -> None:
    config = AnomalyConfig(warmup=30, season_ms=120 * MINUTE, threshold=0.3)
    detector = InterfaceAnomalies(config)
    history(detector, 300, interfaces=4)
    restored = InterfaceAnomalies.restore(detector.snapshot())
    assert len(restored) == 4 and restored.windows_learned == detector.windows_learned
    for minute in range(300, 420):
        bps = 3e9 if minute in (330, 331, 400) else None
        batch = [window(minute, if_index=i, bps=bps if i == 2 else None, errors=50 * (minute == 350)) for i in range(4)]
        assert restored.observe(batch) == detector.observe(batch)


def test_restore_keeps_the_learned_shape_but_takes_new_thresholds() -> None:
    detector = InterfaceAnomalies(QUICK)
    history(detector, 100)
    restored = InterfaceAnomalies.restore(detector.snapshot(), AnomalyConfig(threshold=0.6, slots=6))
    assert restored.config.threshold == 0.6 and restored.config.slots == QUICK.slots


def test_baseline_findings_do_not_depend_on_batching() -> None:
    minute_by_minute, hourly = InterfaceAnomalies(QUICK), InterfaceAnomalies(QUICK)
    windows = [[window(m, if_index=i, errors=80 * (m == 300 and i == 2)) for i in (1, 2)] for m in range(360)]
    one: list[AnomalyFinding] = []
    for batch in windows:
        one += minute_by_minute.observe(batch)
    many: list[AnomalyFinding] = []
    for begin in range(0, 360, 60):
        many += hourly.observe([w for batch in windows[begin : begin + 60] for w in batch])
    assert one == many and any(f.metric == "in_errors" for f in one)


def test_findings_cover_only_known_metrics() -> None:
    config = AnomalyConfig(warmup=30, season_ms=120 * MINUTE, threshold=0.05, multivariate_threshold=0.05)
    detector = InterfaceAnomalies(config)
    findings = history(detector, 300, interfaces=2) + detector.observe([window(300, bps=8e9)])
    metrics = {f.metric for f in findings}
    assert metrics <= {spec.name for spec in METRICS} | {"multivariate"}
    assert all(f.score >= 0.05 and math.isfinite(f.value) for f in findings)


# --- scenarios and counting ---------------------------------------------------------------------------


def test_scenarios_are_deterministic_and_labelled() -> None:
    first, again, other = (make_scenario(seed, 8, 3 * 240, 240) for seed in (TUNING_SEED, TUNING_SEED, 99))
    for name, values in first.columns.items():
        np.testing.assert_array_equal(values, again.columns[name])
    assert first.anomalies == again.anomalies and first.anomalies != other.anomalies
    assert all(a.start >= first.day_points and a.kind in ANOMALY_KINDS for a in first.anomalies)
    by_series: dict[int, list[InjectedAnomaly]] = {}
    for anomaly in first.anomalies:
        by_series.setdefault(anomaly.series, []).append(anomaly)
    for spans in by_series.values():  # never overlapping, with quiet time between
        assert all(later.start - earlier.end > 90 for earlier, later in itertools.pairwise(spans))
    assert (first.samples == 0).any() and first.reemitted.any()


def tiny_scenario(anomalies: list[InjectedAnomaly], points: int = 40) -> Scenario:
    zeros = np.zeros((2, points))
    return Scenario(0, 10, {"in_bps": zeros}, zeros.astype(int), zeros.astype(bool), np.ones(2), anomalies)


@pytest.mark.parametrize(
    ("flags", "detected", "false_positives"),
    [
        ([], 0, 0),
        ([(0, 12)], 1, 0),  # inside the span
        ([(0, 20)], 1, 0),  # within the tolerance (3) after the end (17)
        ([(0, 21)], 0, 1),  # past the tolerance: a false positive, and the anomaly is missed
        ([(0, 5), (0, 6), (0, 7)], 0, 1),  # consecutive stray minutes are one event
        ([(0, 5), (0, 7)], 0, 2),  # a gap splits them
        ([(1, 12), (1, 30)], 1, 1),  # the other series: its own anomaly at 30, the flag at 12 is stray
        ([(0, 10), (0, 11), (1, 30), (1, 31), (1, 38)], 2, 1),
    ],
)
def test_event_counting(flags: list[tuple[int, int]], detected: int, false_positives: int) -> None:
    scenario = tiny_scenario([InjectedAnomaly(0, "spike", 10, 17), InjectedAnomaly(1, "drop", 30, 33)])
    flagged = np.zeros((2, 40), dtype=bool)
    for series, minute in flags:
        flagged[series, minute] = True
    got_detected, got_false, by_kind = count_events(scenario, flagged, tolerance=3)
    assert (got_detected, got_false) == (detected, false_positives)
    assert sum(total for _, total in by_kind.values()) == 2


def test_held_out_scenario_meets_the_f1_target() -> None:
    # Compressed days (6 hours) keep this quick; the full-size figure comes from `python -m assurance.anomaly_eval`.
    report = evaluate_anomalies(HELD_OUT_SEED, series=16, points=4 * 360, day_points=360)
    assert report.injected >= 40 and report.points_scored > 16 * 4 * 360
    assert report.f1 >= 0.8, report.summary()
    assert report.precision >= 0.8 and report.recall >= 0.8
    assert set(report.recall_by_kind) <= set(ANOMALY_KINDS)
