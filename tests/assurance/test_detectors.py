"""Every detector against one contract (bounded scores, no look-ahead, snapshot/restore, spikes stand out,
determinism), then what each one promises on its own: the bank equals the scalar baseline point for
point, counts behave, the compiled forest equals scikit-learn's."""

from __future__ import annotations

import doctest
import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest

from assurance import anomaly, detectors
from assurance.detectors import (
    BaselineConfig,
    CompiledForest,
    Detector,
    DetectorError,
    ForestConfig,
    IsolationForestDetector,
    SeasonalBaseline,
    SeriesBank,
)

MINUTE = 60_000
SEASON = 120 * MINUTE  # a compressed "day" of 120 points keeps the tests fast
SPIKE_AT = 420
POINTS = 480


def seasonal_values(seed: int = 3, points: int = POINTS, level: float = 2e6) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(points)
    values = level * (1 + 0.5 * np.sin(2 * np.pi * t / 120)) * np.exp(rng.normal(0, 0.05, points))
    values[SPIKE_AT] *= 8
    return values


def vector_values(seed: int = 3, points: int = POINTS) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 1, (points, 1))
    vectors = np.column_stack([base[:, 0], 0.8 * base[:, 0] + rng.normal(0, 0.3, points), rng.normal(0, 1, points)])
    vectors[SPIKE_AT] = [6.0, -6.0, 5.0]  # breaks the correlation and sits far out
    return vectors


class BankSeries:
    """Drives a SeriesBank through its batch API with one key, one point per call."""

    def __init__(self, bank: SeriesBank) -> None:
        self.bank = bank

    def update(self, ts_ms: int, x: float) -> float:
        return float(self.bank.update(["r1/1"], np.array([ts_ms]), np.array([x]))[0])

    def score(self, ts_ms: int, x: float) -> float:
        return float(self.bank.score(["r1/1"], np.array([ts_ms]), np.array([x]))[0])

    def snapshot(self) -> bytes:
        return self.bank.snapshot()

    def restored(self) -> BankSeries:
        return BankSeries(SeriesBank.restore(self.bank.snapshot()))


@dataclass
class Case:
    name: str
    make: Callable[[], Any]
    data: Callable[[], np.ndarray]
    restore: Callable[[Any], Any]


BASELINE = BaselineConfig(season_ms=SEASON, slots=12, warmup=30)
FOREST = ForestConfig(capacity=128, horizon=512, min_fit=64, refit_every=64, n_estimators=25, max_samples=64)

CASES = [
    Case(
        "seasonal_baseline",
        lambda: SeasonalBaseline(BASELINE),
        seasonal_values,
        lambda d: SeasonalBaseline.restore(d.snapshot()),
    ),
    Case(
        "flat_baseline",
        lambda: SeasonalBaseline(BaselineConfig(slots=1, warmup=30, transform="identity", min_scale=1.0)),
        lambda: seasonal_values(level=50.0),
        lambda d: SeasonalBaseline.restore(d.snapshot()),
    ),
    Case("series_bank", lambda: BankSeries(SeriesBank(BASELINE)), seasonal_values, lambda d: d.restored()),
    Case(
        "isolation_forest",
        lambda: IsolationForestDetector(FOREST),
        vector_values,
        lambda d: IsolationForestDetector.restore(d.snapshot()),
    ),
]


def run(detector: Any, data: np.ndarray, start: int = 0) -> list[float]:
    return [detector.update((start + i) * MINUTE, x) for i, x in enumerate(data)]


@pytest.fixture(params=CASES, ids=[case.name for case in CASES])
def case(request: pytest.FixtureRequest) -> Case:
    return request.param


def test_scores_are_finite_and_within_unit_interval(case: Case) -> None:
    scores = np.array(run(case.make(), case.data()))
    assert np.isfinite(scores).all()
    assert scores.min() >= 0.0 and scores.max() <= 1.0


def test_no_look_ahead_score_of_a_point_ignores_later_points(case: Case) -> None:
    data = case.data()
    full = run(case.make(), data)
    for cut in (50, 200, SPIKE_AT + 1):
        assert run(case.make(), data[:cut]) == full[:cut]


def test_score_does_not_learn(case: Case) -> None:
    data = case.data()
    probed, plain = case.make(), case.make()
    run(probed, data[:200])
    run(plain, data[:200])
    for i in range(200, 260):
        probed.score(i * MINUTE, data[i] * 3)  # a scoring that learned would shift the state
    assert run(probed, data[200:], start=200) == run(plain, data[200:], start=200)


def test_snapshot_restore_mid_series_gives_identical_scores(case: Case) -> None:
    data = case.data()
    detector = case.make()
    run(detector, data[:250])
    assert isinstance(detector.snapshot(), bytes)
    restored = case.restore(detector)
    assert run(restored, data[250:], start=250) == run(detector, data[250:], start=250)


def test_a_spike_after_a_stable_history_scores_above_normal_points(case: Case) -> None:
    scores = np.array(run(case.make(), case.data()))
    normal = np.delete(scores[200:], SPIKE_AT - 200)
    assert scores[SPIKE_AT] >= 0.5
    assert scores[SPIKE_AT] > np.quantile(normal, 0.99)
    assert scores[SPIKE_AT] > 2 * np.median(normal)


def test_deterministic(case: Case) -> None:
    data = case.data()
    assert run(case.make(), data) == run(case.make(), data)


def test_docstring_examples_run() -> None:
    for module in (detectors, anomaly):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_single_series_detectors_follow_the_protocol() -> None:
    assert isinstance(SeasonalBaseline(), Detector)
    assert isinstance(IsolationForestDetector(), Detector)


# --- the seasonal baseline and its bank ---------------------------------------------------------------


def test_bank_equals_scalar_baseline_with_interleaved_keys_and_repeats_in_a_batch() -> None:
    rng = np.random.default_rng(11)
    keys = [f"edge{k % 4}/{k % 3}" for k in rng.integers(0, 12, 3000)]
    ts = np.zeros(len(keys), dtype=np.int64)
    clock: dict[str, int] = {}
    for i, key in enumerate(keys):  # every series moves forward one minute per point, in input order
        clock[key] = clock.get(key, -1) + 1
        ts[i] = clock[key] * MINUTE
    values = 1e6 * (1.5 + np.sin(2 * np.pi * ts / SEASON)) * np.exp(rng.normal(0, 0.1, len(keys)))
    values[rng.integers(0, len(keys), 20)] *= 10
    values[rng.integers(0, len(keys), 5)] = np.nan

    scalars = {key: SeasonalBaseline(BASELINE) for key in set(keys)}
    expected = [scalars[k].update(int(t), float(v)) for k, t, v in zip(keys, ts, values, strict=True)]
    bank = SeriesBank(BASELINE, capacity=2)  # grows while running
    got: list[float] = []
    begin = 0
    while begin < len(keys):
        size = int(rng.integers(1, 400))  # uneven batches, most holding several points of one key
        got.extend(bank.update(keys[begin : begin + size], ts[begin : begin + size], values[begin : begin + size]))
        begin += size
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    assert sorted(bank.keys) == sorted(scalars)


def test_bank_batch_has_no_look_ahead_within_one_call() -> None:
    values = seasonal_values()
    keys = ["a"] * POINTS
    ts = np.arange(POINTS) * MINUTE
    whole = SeriesBank(BASELINE).update(keys, ts, values)
    part = SeriesBank(BASELINE).update(keys[:300], ts[:300], values[:300])
    np.testing.assert_array_equal(whole[:300], part)


def test_bank_output_reports_expected_value_and_signed_z() -> None:
    bank = SeriesBank(BaselineConfig(slots=1, warmup=10))
    rows = bank.rows(["up", "down"])
    for minute in range(100):
        bank.update_rows(rows, np.full(2, minute * MINUTE), np.array([1000.0, 1000.0]) + minute % 2)
    out = bank.score_rows(rows, np.full(2, 100 * MINUTE), np.array([5000.0, 100.0]))
    assert out.expected == pytest.approx([1000.5, 1000.5], rel=0.01)
    assert out.z[0] > 10 and out.z[1] < -10
    assert (out.score > 0.9).all()


def test_counts_that_are_always_zero_never_divide_by_zero_and_a_burst_stands_out() -> None:
    config = BaselineConfig(slots=1, warmup=30, min_scale=0.35)
    scalar, bank = SeasonalBaseline(config), SeriesBank(config)
    quiet = [scalar.update(m * MINUTE, 0.0) for m in range(200)]
    quiet_bank = [float(bank.update(["e"], np.array([m * MINUTE]), np.array([0.0]))[0]) for m in range(200)]
    assert quiet == [0.0] * 200 and quiet_bank == [0.0] * 200
    assert scalar.score(200 * MINUTE, 1.0) < 0.05  # one error is not an event
    assert scalar.score(200 * MINUTE, 500.0) > 0.95
    assert float(bank.score(["e"], np.array([200 * MINUTE]), np.array([500.0]))[0]) > 0.95


def test_scores_stay_low_during_warmup() -> None:
    detector = SeasonalBaseline(BaselineConfig(slots=1, warmup=60))
    scores = [detector.update(m * MINUTE, 100.0 * (1 + (m % 7))) for m in range(30)]
    assert max(scores) < 0.3


def test_a_lasting_level_shift_is_absorbed() -> None:
    detector = SeasonalBaseline(BaselineConfig(slots=1, warmup=30))
    rng = np.random.default_rng(5)
    for m in range(300):
        detector.update(m * MINUTE, 1e6 * math.exp(rng.normal(0, 0.05)))
    shifted = [detector.update(m * MINUTE, 3e6 * math.exp(rng.normal(0, 0.05))) for m in range(300, 700)]
    assert shifted[0] > 0.9
    assert max(shifted[-100:]) < 0.5


def test_bank_skips_nan_and_score_adds_nothing() -> None:
    bank = SeriesBank(BASELINE)
    bank.update(["a", "a"], np.array([0, MINUTE]), np.array([1.0, np.nan]))
    assert int(bank.learned[0]) == 1
    before = bank.snapshot()
    assert bank.score(["a", "new"], np.array([2, 2]) * MINUTE, np.array([5.0, 5.0]))[1] == 0.0
    assert bank.snapshot() == before and bank.keys == ["a"]


def test_bank_snapshot_has_no_pickle_and_rejects_garbage() -> None:
    bank = SeriesBank(BASELINE)
    bank.update(["a", "b"], np.array([0, 0]), np.array([1.0, 2.0]))
    with np.load(io.BytesIO(bank.snapshot()), allow_pickle=False) as archive:
        assert list(archive["keys"]) == ["a", "b"]
    with pytest.raises(DetectorError):
        SeriesBank.restore(b"not a snapshot")
    with pytest.raises(DetectorError):
        SeasonalBaseline.restore(b"\x00\x01")


def test_bank_rows_must_be_known() -> None:
    with pytest.raises(DetectorError, match="row out of range"):
        SeriesBank(BASELINE).update_rows(np.array([3]), np.array([0]), np.array([1.0]))


@pytest.mark.parametrize(
    "settings",
    [{"slots": 0}, {"transform": "log"}, {"offset_alpha": 0.0}, {"min_scale": 0.0}, {"warmup": -1}],
)
def test_baseline_config_rejects_bad_settings(settings: dict[str, Any]) -> None:
    with pytest.raises(DetectorError):
        BaselineConfig(**settings)


# --- the forest ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_features", [1.0, 0.6])
def test_compiled_forest_equals_scikit_learn(max_features: float) -> None:
    rng = np.random.default_rng(2)
    training = rng.standard_t(4, (600, 5))
    forest = IsolationForest(n_estimators=20, max_samples=128, max_features=max_features, random_state=1)
    forest.fit(training)
    probe = np.vstack([rng.normal(0, 2, (300, 5)), [[40.0, 0, 0, 0, 0]]])
    np.testing.assert_allclose(CompiledForest(forest).anomaly_scores(probe), -forest.score_samples(probe), rtol=1e-12)


def test_forest_scores_zero_until_first_fit_then_refits_every_refit_every_points() -> None:
    detector = IsolationForestDetector(FOREST)
    data = vector_values()
    early = [detector.update(i * MINUTE, data[i]) for i in range(FOREST.min_fit)]
    assert early == [0.0] * FOREST.min_fit and detector.fits == 1
    step = FOREST.refit_every
    detector.update_many(data[FOREST.min_fit : FOREST.min_fit + step - 1])
    assert detector.fits == 1
    detector.update_many(data[FOREST.min_fit + step - 1 : FOREST.min_fit + step])
    assert detector.fits == 2
    detector.update_many(data[FOREST.min_fit + step : FOREST.min_fit + 3 * step])  # one fit per batch at most
    assert detector.fits == 3


def test_forest_rejects_vectors_of_another_width() -> None:
    detector = IsolationForestDetector(FOREST)
    detector.learn(0, [1.0, 2.0, 3.0])
    with pytest.raises(DetectorError, match="3 features"):
        detector.score(0, [1.0, 2.0])
