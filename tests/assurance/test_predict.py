"""Fault prediction: labelled scenarios, window features, the model, the online tracker and the scoring."""

from __future__ import annotations

import doctest
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

import assurance.scenarios
from assurance.predict import (
    FEATURE_NAMES,
    N_COLUMNS,
    WINDOW_MINUTES,
    EmissionPolicy,
    FaultModel,
    FaultModelError,
    RiskTracker,
    evaluate_tracker,
    rate_row,
    scenario_rows,
    simulate_emissions,
    usable_minutes,
    window_features,
)
from assurance.scenarios import (
    FAILURE_KINDS,
    MINUTE_MS,
    Scenario,
    ScenarioSet,
    generate_scenarios,
    score_predictions,
)
from models.records import FaultEvent, InterfaceRate

F = {name: i for i, name in enumerate(FEATURE_NAMES)}
T0 = 1_717_200_000_000


@pytest.fixture(scope="module")
def model() -> FaultModel:
    """A small model (300 interfaces x 4 h, validated on 160): enough to learn the indicators."""
    return FaultModel.train(
        generate_scenarios(300, hours=4, seed=0), validation=generate_scenarios(160, hours=4, seed=1)
    )


@pytest.fixture(scope="module")
def held_out() -> ScenarioSet:
    return generate_scenarios(200, hours=4, seed=1000)


# ----------------------------------------------------------------------------------- scenarios


def test_scenarios_are_deterministic_and_labelled() -> None:
    a = generate_scenarios(64, hours=3, seed=5)
    b = generate_scenarios(64, hours=3, seed=5)
    c = generate_scenarios(64, hours=3, seed=6)
    assert a.scenarios == b.scenarios and a.faults == b.faults
    assert all(np.array_equal(a.columns[k], b.columns[k]) for k in a.columns)
    assert not np.array_equal(a.columns["in_errors"], c.columns["in_errors"])
    failing = a.failing
    assert len(failing) == round(64 * 0.3)
    assert {s.failure_kind for s in failing} == set(FAILURE_KINDS)
    for s in failing:
        assert s.failure_ms is not None
        minute = (s.failure_ms - a.start_ms) // MINUTE_MS
        assert 90 <= minute < a.minutes - 15
    assert all(s.failure_kind is None and s.precursor_lead_s is None for s in a.scenarios if s not in failing)
    assert a.labels()[failing[0].key] == failing[0].failure_ms


def test_docstring_examples() -> None:
    assert doctest.testmod(assurance.scenarios).failed == 0


def test_failure_kinds_are_the_simulators() -> None:
    from collectors.gnmi_sim import FAULT_KINDS

    assert tuple(FAULT_KINDS) == FAILURE_KINDS


def test_failure_rule_holds_from_the_failure_on_and_never_before() -> None:
    """Confusers (bursts, busy links, flaps, noisy optics) never look like a failure; failures always do."""
    scenarios = generate_scenarios(240, hours=4, seed=3)
    _, failed = usable_minutes(scenario_rows(scenarios), 30)
    for i, s in enumerate(scenarios.scenarios):
        if s.failure_ms is None:
            assert not failed[i].any(), s
        else:
            minute = (s.failure_ms - scenarios.start_ms) // MINUTE_MS
            assert not failed[i, :minute].any(), s
            assert failed[i, minute:].all(), s


def test_precursors_lead_up_to_the_failure() -> None:
    scenarios = generate_scenarios(400, hours=4, seed=4)
    rows = scenario_rows(scenarios)
    checked: defaultdict[str | None, int] = defaultdict(int)
    for i, s in enumerate(scenarios.scenarios):
        if s.failure_ms is None or s.precursor_strength < 0.5 or s.confusers:
            continue
        fail = (s.failure_ms - scenarios.start_ms) // MINUTE_MS
        before, early = rows[i, fail - 5 : fail], rows[i, :30]
        if s.failure_kind == "error_burst":
            assert before[:, 3].mean() > 10 * (early[:, 3].mean() + 1), s  # errors
        elif s.failure_kind == "link_down":
            assert s.precursor_lead_s is not None
            flaps = rows[i, fail - s.precursor_lead_s // 60 : fail]
            assert flaps[:, 6].sum() + flaps[:, 8].sum() > 0, s  # oper-status changes or linkDown traps
        else:
            assert before[:, 1].mean() > early[:, 1].mean() + 0.05, s  # utilisation crept up
        checked[s.failure_kind] += 1
    assert set(checked) == set(FAILURE_KINDS)


def test_replayed_records_give_the_batch_rows() -> None:
    scenarios = generate_scenarios(24, hours=3, seed=9)
    rows = scenario_rows(scenarios)
    for minute in (0, 61, 179):
        for i, rate in enumerate(scenarios.rates_at(minute)):
            assert np.allclose(rate_row(rate), rows[i, minute, :8], rtol=1e-6), (i, minute)


# ----------------------------------------------------------------------------------- features


def _window() -> np.ndarray:
    w = np.zeros((WINDOW_MINUTES, N_COLUMNS), dtype=np.float32)
    w[:, 0] = 1.0  # present
    w[:, 1] = 0.5  # utilisation
    w[:, 2] = 0.6  # bursts
    w[:, 5] = 1e6  # packets per minute
    return w


def test_window_features_of_a_hand_made_window() -> None:
    w = _window()
    t = np.arange(WINDOW_MINUTES)
    w[:, 3] = np.expm1(0.1 * t)  # errors: log1p grows 0.1 a minute
    w[-1, 1] = 0.9
    w[50, 6] = 2  # a flap seen in the samples 9 minutes ago
    w[55, 8] = 1  # and a linkDown trap 4 minutes ago
    w[[10, 58], 10] = 1  # two threshold traps
    f = window_features(w[None])[0]
    assert f[F["history"]] == WINDOW_MINUTES
    assert f[F["util_now"]] == pytest.approx((0.5 * 4 + 0.9) / 5)
    assert f[F["util_max"]] == pytest.approx(0.9)
    assert f[F["err_slope30"]] == pytest.approx(0.1, rel=1e-4)
    assert f[F["err_growth"]] > 2
    assert f[F["changes15"]] == 2 and f[F["downs15"]] == 1 and f[F["downs60"]] == 1
    assert f[F["since_flap"]] == 4
    assert f[F["traps15"]] == 1 and f[F["traps60"]] == 2
    quiet = window_features(_window()[None])[0]
    assert quiet[F["err_growth"]] == 0 and quiet[F["since_flap"]] == WINDOW_MINUTES
    assert quiet[F["util_slope60"]] == 0 and quiet[F["util_eta60"]] == 240


def test_window_features_count_only_present_minutes() -> None:
    w = _window()
    w[:40] = 0.0  # the interface was seen for 20 minutes only
    f = window_features(w[None])[0]
    assert f[F["history"]] == 20
    assert f[F["util_mean"]] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="60 minutes"):
        window_features(w[None, :30])


# ----------------------------------------------------------------------------------- scoring


def _labelled(failures: list[int | None]) -> ScenarioSet:
    scenarios = [
        Scenario("r1", i + 1, f"e{i + 1}", 10**9, failure_ms=None if f is None else T0 + f)
        for i, f in enumerate(failures)
    ]
    return ScenarioSet(start_ms=T0, minutes=0, scenarios=scenarios, columns={}, faults=[])


def test_score_predictions_counts_hits_false_alarms_and_leads() -> None:
    m = MINUTE_MS
    labels = _labelled([100 * m, 100 * m, 100 * m, None])
    predictions = [
        ("r1", 1, 80 * m),  # 20 min ahead: caught
        ("r1", 1, 90 * m),  # a duplicate inside the window: neither
        ("r1", 2, 60 * m),  # 40 min ahead: too early, false positive
        ("r1", 2, 100 * m - 30_000),  # 30 s ahead: too late, false positive
        ("r1", 3, 75 * m),  # 25 min ahead: caught
        ("r1", 3, 101 * m),  # after the failure: false positive
        ("r1", 4, 50 * m),  # healthy: false positive
    ]
    score = score_predictions(labels, [(d, i, T0 + at) for d, i, at in predictions], horizon_s=1800)
    assert (score.caught, score.false_positives, score.missed) == (2, 4, 1)
    assert score.precision == pytest.approx(2 / 6) and score.recall == pytest.approx(2 / 3)
    assert score.leads_s == (1200.0, 1500.0) and score.median_lead_s == 1350.0
    assert score.healthy_alerted == 1
    with pytest.raises(KeyError):
        score_predictions(labels, [("r9", 1, 0)], 1800)


# ----------------------------------------------------------------------------------- model and tracker


def test_model_catches_failures_on_held_out_scenarios(model: FaultModel, held_out: ScenarioSet) -> None:
    """A regression bound for the small test model (the CLI reports the full figures)."""
    score = model.evaluate(held_out)
    assert score.recall >= 0.65
    assert score.precision >= 0.55
    assert score.median_lead_s is not None and score.median_lead_s >= 8 * 60
    assert score.healthy_alerted <= 0.05 * score.healthy
    assert model.validation["precision"] >= 0.75  # chosen for 0.7 plus the margin


def test_tracker_emits_exactly_what_the_batch_path_predicts(model: FaultModel) -> None:
    scenarios = generate_scenarios(48, hours=4, seed=77)
    score, predictions = evaluate_tracker(RiskTracker(model), scenarios)
    online = {(p.device, p.if_index, (p.window_start_ms - scenarios.start_ms) // MINUTE_MS) for p in predictions}
    probabilities, failed = model.scenario_probabilities(scenarios)
    mask = simulate_emissions(probabilities, failed, [model.threshold], model.policy)[0]
    batch = {(*scenarios.scenarios[i].key, int(t)) for i, t in zip(*np.nonzero(mask), strict=True)}
    assert online == batch and online
    assert model.evaluate(scenarios) == score
    for p in predictions:
        assert p.probability >= model.threshold and p.horizon_s == 1800 and p.if_name.startswith("Ethernet")
        assert 1 <= len(p.reasons) <= 3


def test_reasons_name_the_indicator_that_led_up(model: FaultModel) -> None:
    scenarios = generate_scenarios(120, hours=4, seed=1001)
    _, predictions = evaluate_tracker(RiskTracker(model), scenarios)
    kinds = {s.key: s.failure_kind for s in scenarios.scenarios}
    words = {"error_burst": "errors", "link_down": "flaps", "saturation": "utilisation"}
    named = defaultdict(list)
    for p in predictions:
        kind = kinds[(p.device, p.if_index)]
        if kind is not None:
            named[kind].append(any(words[kind] in reason for reason in p.reasons))
    assert set(named) == set(FAILURE_KINDS)
    for kind, hits in named.items():
        assert sum(hits) >= 0.6 * len(hits), kind


def _rate(minute: int, *, errors: int = 0, oper_status: int = 1, if_index: int = 1) -> InterfaceRate:
    start = T0 + minute * MINUTE_MS
    return InterfaceRate(
        id=InterfaceRate.make_id("r1", if_index, start),
        device="r1",
        if_index=if_index,
        if_name=f"Ethernet{if_index}",
        window_start_ms=start,
        in_bps_avg=4e8,
        in_bps_max=5e8,
        in_util_pct_avg=40.0,
        out_util_pct_avg=20.0,
        in_pps_avg=6e4,
        in_errors=errors,
        speed_bps=10**9,
        oper_status=oper_status,
    )


def test_predictions_are_not_repeated_every_window(model: FaultModel) -> None:
    # Threshold 0: every scored window qualifies, so only the re-emission rule spaces predictions.
    tracker = RiskTracker(model, threshold=0.0, reemit_minutes=10)
    emitted = [m for m in range(90) if tracker.observe([_rate(m)])]
    assert emitted == [29, 39, 49, 59, 69, 79, 89]  # from 30 minutes of history on, every 10 minutes


def test_no_prediction_while_the_link_is_down(model: FaultModel) -> None:
    tracker = RiskTracker(model, threshold=0.0, reemit_minutes=1000)
    for minute in range(40):
        tracker.observe([_rate(minute)])
    assert not any(tracker.observe([_rate(m, oper_status=2)]) for m in range(40, 60))
    # Failing re-arms the interface: the first window after it comes back predicts again.
    assert tracker.observe([_rate(60)])


def test_fault_events_reach_the_window_whatever_the_order(model: FaultModel) -> None:
    """A trap before its window, one after it, one for another minute of the window: all counted."""
    early = RiskTracker(model, threshold=0.99)
    late = RiskTracker(model, threshold=0.99)
    traps = [
        FaultEvent(id=f"t{i}", device="r1", ts_ms=T0 + m * MINUTE_MS + 5_000, kind="linkDown", if_index=1)
        for i, m in enumerate((35, 38, 38))
    ]
    for minute in range(40):
        early.observe([_rate(minute)], [t for t in traps if (t.ts_ms - T0) // MINUTE_MS == minute])
        late.observe([_rate(minute)])
    late.observe([], traps)
    for tracker in (early, late):
        track = tracker._tracks[("r1", 1)]
        assert track.rows[:, 8].sum() == 3
        assert track.rows[WINDOW_MINUTES - 2, 8] == 2  # minute 38: the row before the newest (39)


def test_snapshot_restore_continues_exactly(model: FaultModel) -> None:
    scenarios = generate_scenarios(32, hours=3, seed=21)
    replay = list(scenarios.replay())
    straight = RiskTracker(model, threshold=0.3)
    first = RiskTracker(model, threshold=0.3)
    expected, got = [], []
    for minute, rates, faults in replay:
        expected += straight.observe(rates, faults)
        if minute < 100:
            got += first.observe(rates, faults)
    resumed = RiskTracker(model, threshold=0.3)
    resumed.restore(first.snapshot())
    assert len(resumed) == 32
    for _minute, rates, faults in replay[100:]:
        got += resumed.observe(rates, faults)
    assert got == expected and expected
    with pytest.raises(ValueError):
        resumed.restore(b"\x93\x01\x02\x03")


def test_state_stays_bounded(model: FaultModel) -> None:
    tracker = RiskTracker(model, threshold=0.99, idle_evict_minutes=120)
    for minute in range(300):
        rates = [_rate(minute, if_index=1)] + ([_rate(minute, if_index=2)] if minute < 50 else [])
        tracker.observe(rates)
    track = tracker._tracks[("r1", 1)]
    assert track.rows.shape == (WINDOW_MINUTES, N_COLUMNS)
    assert ("r1", 2) not in tracker._tracks  # silent for more than 120 minutes: forgotten
    future = [
        FaultEvent(id=f"f{i}", device="r1", ts_ms=T0 + (400 + i) * MINUTE_MS, kind="trap", if_index=1)
        for i in range(500)
    ]
    tracker.observe([], future)
    assert len(track.pending) <= WINDOW_MINUTES


def test_save_load_and_cached_default(model: FaultModel, tmp_path: Path) -> None:
    path = model.save(tmp_path / "m" / "fault_model.pkl")
    loaded = FaultModel.load(path)
    assert loaded.threshold == model.threshold and loaded.trained_on == model.trained_on
    scenarios = generate_scenarios(24, hours=3, seed=12)
    p1, _ = model.scenario_probabilities(scenarios)
    p2, _ = loaded.scenario_probabilities(scenarios)
    assert np.array_equal(p1, p2, equal_nan=True)
    assert FaultModel.default(path).trained_on == model.trained_on  # the cache, not a fresh training
    (tmp_path / "bad.pkl").write_bytes(b"not a pickle")
    with pytest.raises(FaultModelError, match=r"bad\.pkl"):
        FaultModel.load(tmp_path / "bad.pkl")
    with pytest.raises(FaultModelError, match="no such model"):
        FaultModel.load(tmp_path / "missing.pkl")


def test_emission_policy_rearms_below_half_the_threshold() -> None:
    p = np.array([[0.9, 0.8, 0.6, 0.9, 0.4, 0.9, np.nan, 0.9]])
    failed = np.array([[False] * 6 + [True, False]])
    mask = simulate_emissions(p, failed, [0.7], EmissionPolicy(0.7, reemit_minutes=100))[0, 0]
    # 0.9 emits; 0.8 and 0.9 stay quiet (never below 0.35); 0.4 is not below 0.35 either; a failure re-arms.
    assert mask.tolist() == [True, False, False, False, False, False, False, True]
    mask = simulate_emissions(p, failed, [0.7], EmissionPolicy(0.7, reemit_minutes=3))[0, 0]
    assert mask.tolist() == [True, False, False, True, False, False, False, True]
