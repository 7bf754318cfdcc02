"""Online anomaly detectors: one small interface, a scalar seasonal baseline, its vectorised bank, a forest.

Every detector follows :class:`Detector` (River's ``learn_one``/``score_one`` split): ``score`` never
learns, ``learn`` never scores, ``update`` scores a point and then learns it, so a point is never
judged against a state that has already seen it (no look-ahead). ``snapshot()`` returns bytes and
``restore(bytes)`` rebuilds the detector, so a restarted worker goes on where it stopped.

:class:`SeasonalBaseline` (one series, pure Python) and :class:`SeriesBank` (many series in numpy
arrays) run the same model, so the bank's scores equal the scalar detector's; the tests hold them to it.

The model, per series, in a transformed space ``y = T(x)`` (``slog``: ``sign(x) * log1p(|x|)``, so
traffic noise is relative and an error count of 0 is simply 0; or ``identity``):

* a seasonal profile: ``slots`` levels over one season (``season_ms``, a day by default), read with
  linear interpolation between slot centres so a morning ramp does not become a step; a slot not yet
  visited reads as the series' global level, and a young slot learns as a running mean;
* a fast offset ``o`` (EWMA of ``y - profile``): today running 20 % above the usual day, or a level
  shift that has settled, is followed within minutes;
* a scale ``d`` (EWMA of the absolute residual), floored by ``min_scale`` so a series that is always 0
  never divides by zero while a jump from 0 to 500 errors/min still stands out;
* expected ``= profile + o``, robust z ``= (y - expected) / max(1.2533 * d, min_scale)``, and the score
  ``z^p / (z^p + z_mid^p)``: 0 at z = 0, 0.5 at ``z_mid``, smooth and monotone towards 1, multiplied by
  ``(learned / warmup)^2`` during the warm-up;
* learning clips the residual at ``clip_z`` scales, so one spike barely moves the model while a lasting
  shift is absorbed over tens of points.

:class:`IsolationForestDetector` scores vectors with scikit-learn's ``IsolationForest``, trained on a
rolling reservoir of recent points and refitted every ``refit_every`` learned points.
"""

from __future__ import annotations

import io
import json
import math
import pickle
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, NamedTuple, Protocol, Self, runtime_checkable

import msgspec
import numpy as np
from sklearn.ensemble import IsolationForest

DAY_MS = 86_400_000
MAD_TO_SIGMA = 1.2533  # mean absolute deviation of a normal distribution is sigma * sqrt(2 / pi)
Z_CAP = 1e6  # keeps z ** power finite when the scale is at its floor
LARGE_BATCH = 4096  # rows from which scikit-learn scores a forest faster than CompiledForest


def squash(z: np.ndarray, z_mid: float, power: float) -> np.ndarray:
    """The score curve used by every detector: ``|z|^p / (|z|^p + z_mid^p)``."""
    magnitude = np.minimum(np.abs(z), Z_CAP) ** power
    return magnitude / (magnitude + z_mid**power)


class DetectorError(ValueError):
    """A detector was given an unusable configuration or snapshot."""


@runtime_checkable
class Detector(Protocol):
    """What every detector does; ``x`` is a number for univariate detectors, a vector for multivariate."""

    def learn(self, ts_ms: int, x: Any) -> None: ...

    def score(self, ts_ms: int, x: Any) -> float: ...

    def update(self, ts_ms: int, x: Any) -> float: ...

    def snapshot(self) -> bytes: ...

    @classmethod
    def restore(cls, data: bytes) -> Self: ...


@dataclass(frozen=True)
class BaselineConfig:
    """Settings of the seasonal baseline (shared by :class:`SeasonalBaseline` and :class:`SeriesBank`)."""

    season_ms: int = DAY_MS
    slots: int = 24  # 1 turns the season off: a plain robust EWMA
    transform: str = "slog"  # "slog" (signed log1p) or "identity"
    min_scale: float = 0.05  # floor of the scale, in transformed units
    slot_alpha: float = 0.03  # learning rate of a slot level per (weighted) visit, once the slot is no longer young
    offset_alpha: float = 0.1
    scale_alpha: float = 0.02
    global_alpha: float = 0.01
    warmup: int = 60  # points before scores reach full strength
    clip_z: float = 4.0
    z_mid: float = 6.0
    power: float = 4.0

    def __post_init__(self) -> None:
        if self.season_ms <= 0 or self.slots < 1:
            raise DetectorError(f"season_ms and slots must be positive, got {self.season_ms} and {self.slots}")
        if self.transform not in ("slog", "identity"):
            raise DetectorError(f"transform must be 'slog' or 'identity', got {self.transform!r}")
        for name in ("slot_alpha", "offset_alpha", "scale_alpha", "global_alpha"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise DetectorError(f"{name} must be in (0, 1], got {value}")
        if min(self.min_scale, self.z_mid, self.power, self.clip_z) <= 0 or self.warmup < 0:
            raise DetectorError("min_scale, z_mid, power and clip_z must be positive, warmup >= 0")

    @property
    def slot_ms(self) -> float:
        return self.season_ms / self.slots

    def forward(self, x: float) -> float:
        if self.transform == "slog":
            return math.copysign(math.log1p(abs(x)), x)
        return x

    def inverse(self, y: float) -> float:
        if self.transform == "slog":
            return math.copysign(math.expm1(abs(y)), y)
        return y

    def forward_array(self, x: np.ndarray) -> np.ndarray:
        if self.transform == "slog":
            return np.sign(x) * np.log1p(np.abs(x))
        return x.astype(np.float64, copy=True)

    def inverse_array(self, y: np.ndarray) -> np.ndarray:
        if self.transform == "slog":
            return np.sign(y) * np.expm1(np.abs(y))
        return y


class _SlotRead(NamedTuple):
    first: int
    second: int
    weight_second: float


def _slot_read(config: BaselineConfig, ts_ms: int) -> _SlotRead:
    if config.slots == 1:
        return _SlotRead(0, 0, 0.0)
    position = (ts_ms % config.season_ms) / config.slot_ms - 0.5  # slot levels sit at slot centres
    below = math.floor(position)
    return _SlotRead(below % config.slots, (below + 1) % config.slots, position - below)


class BaselineScore(NamedTuple):
    score: float
    expected: float  # in the series' own units
    z: float  # signed robust z of the point


class SeasonalBaseline:
    """The seasonal baseline for one series, in plain Python (the reference for :class:`SeriesBank`).

    >>> detector = SeasonalBaseline(BaselineConfig(slots=1, warmup=10))
    >>> quiet = [detector.update(60_000 * i, 100.0 + (i % 3)) for i in range(60)]
    >>> max(quiet) < 0.1, detector.update(60_000 * 60, 900.0) > 0.9
    (True, True)
    """

    def __init__(self, config: BaselineConfig | None = None) -> None:
        self.config = config or BaselineConfig()
        self.learned = 0
        self.global_level = 0.0
        self.offset = 0.0
        self.scale = 0.0
        self.levels = [0.0] * self.config.slots
        self.visits = [0.0] * self.config.slots

    def _read(self, ts_ms: int, y: float) -> tuple[_SlotRead, float, float, float]:
        read = _slot_read(self.config, ts_ms)
        global_level = y if self.learned == 0 else self.global_level
        first = self.levels[read.first] if self.visits[read.first] > 0 else global_level
        second = self.levels[read.second] if self.visits[read.second] > 0 else global_level
        return read, first, second, global_level

    def explain(self, ts_ms: int, x: float) -> BaselineScore:
        """Score ``x`` without learning it, with the expected value and the signed z."""
        cfg = self.config
        y = cfg.forward(float(x))
        if not math.isfinite(y):
            return BaselineScore(0.0, math.nan, 0.0)
        read, first, second, _ = self._read(ts_ms, y)
        expected = (1.0 - read.weight_second) * first + read.weight_second * second + self.offset
        z = (y - expected) / max(MAD_TO_SIGMA * self.scale, cfg.min_scale)
        warm = 1.0 if cfg.warmup == 0 else min(self.learned / cfg.warmup, 1.0) ** 2
        magnitude = min(abs(z), Z_CAP) ** cfg.power
        score = warm * magnitude / (magnitude + cfg.z_mid**cfg.power)
        return BaselineScore(score, cfg.inverse(expected), z)

    def score(self, ts_ms: int, x: float) -> float:
        return self.explain(ts_ms, x).score

    def learn(self, ts_ms: int, x: float) -> None:
        cfg = self.config
        y = cfg.forward(float(x))
        if not math.isfinite(y):
            return
        read, first, second, global_level = self._read(ts_ms, y)
        profile = (1.0 - read.weight_second) * first + read.weight_second * second
        residual = y - (profile + self.offset)
        sigma = max(MAD_TO_SIGMA * self.scale, cfg.min_scale)
        if self.learned >= cfg.warmup:
            residual = min(max(residual, -cfg.clip_z * sigma), cfg.clip_z * sigma)
        clipped = profile + self.offset + residual
        early = 1.0 / (self.learned + 1)
        self.scale += max(cfg.scale_alpha, early) * (abs(residual) - self.scale)
        self.global_level = global_level + max(cfg.global_alpha, early) * (clipped - global_level)
        self.offset += cfg.offset_alpha * (clipped - profile - self.offset)
        error = clipped - profile
        if cfg.slots == 1:
            self._learn_slot(0, 1.0, first, error)
        else:
            self._learn_slot(read.first, 1.0 - read.weight_second, first, error)
            self._learn_slot(read.second, read.weight_second, second, error)
        self.learned += 1

    def _learn_slot(self, slot: int, weight: float, level: float, error: float) -> None:
        rate = max(self.config.slot_alpha, 1.0 / (self.visits[slot] + 1.0))
        self.levels[slot] = level + rate * weight * error
        self.visits[slot] += weight

    def update(self, ts_ms: int, x: float) -> float:
        score = self.score(ts_ms, x)
        self.learn(ts_ms, x)
        return score

    def snapshot(self) -> bytes:
        state = {
            "config": asdict(self.config),
            "learned": self.learned,
            "global_level": self.global_level,
            "offset": self.offset,
            "scale": self.scale,
            "levels": self.levels,
            "visits": self.visits,
        }
        return msgspec.msgpack.encode(state)

    @classmethod
    def restore(cls, data: bytes) -> Self:
        try:
            state = msgspec.msgpack.decode(data)
            detector = cls(BaselineConfig(**state["config"]))
            detector.learned = int(state["learned"])
            detector.global_level = float(state["global_level"])
            detector.offset = float(state["offset"])
            detector.scale = float(state["scale"])
            detector.levels = [float(v) for v in state["levels"]]
            detector.visits = [float(v) for v in state["visits"]]
        except (msgspec.DecodeError, KeyError, TypeError) as exc:
            raise DetectorError(f"not a SeasonalBaseline snapshot: {exc}") from exc
        if len(detector.levels) != detector.config.slots or len(detector.visits) != detector.config.slots:
            raise DetectorError("SeasonalBaseline snapshot has the wrong number of slots")
        return detector


class BankOutput(NamedTuple):
    """Per input point, in input order: score in [0, 1], expected value (series units), signed robust z."""

    score: np.ndarray
    expected: np.ndarray
    z: np.ndarray


_BANK_FLOATS = ("global_level", "offset", "scale")


class SeriesBank:
    """The seasonal baseline for many series at once, its state in numpy arrays (series key -> row).

    ``update`` takes a batch of points of any series, in any mix: each point is scored before it is
    learned, and the points of one series are applied in their input order (a key may appear several
    times in a batch). The batch is split into rounds (the k-th point of every series in round k), so
    the numpy work per round covers every series at once and a batch costs one round per point of its
    busiest series.

    >>> bank = SeriesBank(BaselineConfig(slots=1, warmup=10))
    >>> for minute in range(60):
    ...     _ = bank.update(["r1/1", "r1/2"], np.full(2, 60_000 * minute), np.array([100.0, 5.0]) + minute % 3)
    >>> scores = bank.update(["r1/1", "r1/2"], np.full(2, 3_600_000), np.array([101.0, 400.0]))
    >>> bool(scores[0] < 0.1), bool(scores[1] > 0.9)
    (True, True)
    """

    def __init__(self, config: BaselineConfig | None = None, capacity: int = 64) -> None:
        self.config = config or BaselineConfig()
        self.keys: list[str] = []
        self._index: dict[str, int] = {}
        self._size = 0
        capacity = max(capacity, 1)
        self.learned = np.zeros(capacity, dtype=np.int64)
        self.global_level = np.zeros(capacity)
        self.offset = np.zeros(capacity)
        self.scale = np.zeros(capacity)
        self.levels = np.zeros((capacity, self.config.slots))
        self.visits = np.zeros((capacity, self.config.slots))

    def __len__(self) -> int:
        return self._size

    def _grow(self, needed: int) -> None:
        capacity = self.learned.shape[0]
        if needed <= capacity:
            return
        new_capacity = max(needed, 2 * capacity)

        def widen(array: np.ndarray) -> np.ndarray:
            grown = np.zeros((new_capacity, *array.shape[1:]), dtype=array.dtype)
            grown[:capacity] = array
            return grown

        self.learned = widen(self.learned)
        self.global_level = widen(self.global_level)
        self.offset = widen(self.offset)
        self.scale = widen(self.scale)
        self.levels = widen(self.levels)
        self.visits = widen(self.visits)

    def rows(self, keys: Iterable[str]) -> np.ndarray:
        """Row of each key, adding the keys not seen before."""
        index = self._index
        keys = keys if isinstance(keys, Sequence) else list(keys)
        found = [index.get(key, -1) for key in keys]
        if -1 in found:
            for position, row in enumerate(found):
                if row == -1:
                    key = keys[position]
                    row = index.get(key, -1)
                    if row == -1:
                        row = len(self.keys)
                        index[key] = row
                        self.keys.append(key)
                    found[position] = row
            self.reserve(len(self.keys))
        return np.asarray(found, dtype=np.int64)

    def reserve(self, size: int) -> None:
        """Make rows ``0 .. size - 1`` usable (for callers that keep their own key -> row map)."""
        self._grow(size)
        self._size = max(self._size, size)

    def update(self, keys: Sequence[str], ts_ms: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Score every point, then learn it; scores in input order."""
        return self.update_rows(self.rows(keys), ts_ms, values).score

    def score(self, keys: Sequence[str], ts_ms: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Score without learning (keys never seen score 0 and are not added)."""
        rows = np.asarray([self._index.get(key, -1) for key in keys], dtype=np.int64)
        known = rows >= 0
        scores = np.zeros(rows.shape[0])
        if known.any():
            ts = np.asarray(ts_ms, dtype=np.int64)[known]
            scores[known] = self.score_rows(rows[known], ts, np.asarray(values, dtype=np.float64)[known]).score
        return scores

    def update_rows(self, rows: np.ndarray, ts_ms: np.ndarray, values: np.ndarray) -> BankOutput:
        """:meth:`update` by row number (rows from :meth:`rows` or within :meth:`reserve`)."""
        return self._run(rows, ts_ms, values, learn=True)

    def score_rows(self, rows: np.ndarray, ts_ms: np.ndarray, values: np.ndarray) -> BankOutput:
        """:meth:`score` by row number: every point against the current state, nothing learned."""
        return self._run(rows, ts_ms, values, learn=False)

    def _run(self, rows: np.ndarray, ts_ms: np.ndarray, values: np.ndarray, *, learn: bool) -> BankOutput:
        rows = np.asarray(rows, dtype=np.int64)
        ts_ms = np.asarray(ts_ms, dtype=np.int64)
        values = np.asarray(values, dtype=np.float64)
        count = rows.shape[0]
        if ts_ms.shape != (count,) or values.shape != (count,):
            raise DetectorError(f"rows, ts_ms and values must have one entry per point ({count})")
        out = BankOutput(np.zeros(count), np.full(count, np.nan), np.zeros(count))
        if count == 0:
            return out
        if rows.min() < 0 or rows.max() >= self._size:
            raise DetectorError("row out of range: map keys with rows() or reserve() first")
        if not learn:
            self._round(np.arange(count), rows, ts_ms, values, out, learn=False)
            return out
        order = np.argsort(rows, kind="stable")
        ordered = rows[order]
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        if starts.shape[0] == count:  # every series once: a single round
            self._round(np.arange(count), rows, ts_ms, values, out, learn=True)
            return out
        group_sizes = np.diff(np.r_[starts, count])
        rank = np.arange(count) - np.repeat(starts, group_sizes)
        by_round = order[np.argsort(rank, kind="stable")]
        bounds = np.r_[0, np.cumsum(np.bincount(rank))]
        for begin, end in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            self._round(by_round[begin:end], rows, ts_ms, values, out, learn=True)
        return out

    def _round(
        self,
        positions: np.ndarray,
        all_rows: np.ndarray,
        all_ts: np.ndarray,
        all_values: np.ndarray,
        out: BankOutput,
        *,
        learn: bool,
    ) -> None:
        """Score (and learn) the points at ``positions``; each row appears at most once when learning."""
        cfg = self.config
        y = cfg.forward_array(all_values[positions])
        finite = np.isfinite(y)
        if not finite.all():
            positions, y = positions[finite], y[finite]
        rows, ts = all_rows[positions], all_ts[positions]
        learned = self.learned[rows]
        global_level = np.where(learned == 0, y, self.global_level[rows])
        offset, scale = self.offset[rows], self.scale[rows]
        if cfg.slots == 1:
            first_slot = np.zeros(rows.shape[0], dtype=np.int64)
            second_slot = first_slot
            weight_second = np.zeros(rows.shape[0])
        else:
            position = (ts % cfg.season_ms) / cfg.slot_ms - 0.5
            below = np.floor(position)
            weight_second = position - below
            first_slot = below.astype(np.int64) % cfg.slots
            second_slot = (first_slot + 1) % cfg.slots
        first = np.where(self.visits[rows, first_slot] > 0, self.levels[rows, first_slot], global_level)
        second = np.where(self.visits[rows, second_slot] > 0, self.levels[rows, second_slot], global_level)
        profile = (1.0 - weight_second) * first + weight_second * second
        expected = profile + offset
        residual = y - expected
        sigma = np.maximum(MAD_TO_SIGMA * scale, cfg.min_scale)
        z = residual / sigma
        warm = np.ones(rows.shape[0]) if cfg.warmup == 0 else np.minimum(learned / cfg.warmup, 1.0) ** 2
        out.score[positions] = warm * squash(z, cfg.z_mid, cfg.power)
        out.expected[positions] = cfg.inverse_array(expected)
        out.z[positions] = z
        if not learn:
            return
        limit = cfg.clip_z * sigma
        residual = np.where(learned >= cfg.warmup, np.clip(residual, -limit, limit), residual)
        clipped = expected + residual
        early = 1.0 / (learned + 1)
        self.scale[rows] = scale + np.maximum(cfg.scale_alpha, early) * (np.abs(residual) - scale)
        self.global_level[rows] = global_level + np.maximum(cfg.global_alpha, early) * (clipped - global_level)
        self.offset[rows] = offset + cfg.offset_alpha * (clipped - profile - offset)
        error = clipped - profile
        self._learn_slots(rows, first_slot, 1.0 - weight_second, first, error)
        if cfg.slots > 1:
            self._learn_slots(rows, second_slot, weight_second, second, error)
        self.learned[rows] = learned + 1

    def _learn_slots(
        self, rows: np.ndarray, slots: np.ndarray, weight: np.ndarray, level: np.ndarray, error: np.ndarray
    ) -> None:
        visits = self.visits[rows, slots]
        rate = np.maximum(self.config.slot_alpha, 1.0 / (visits + 1.0))
        self.levels[rows, slots] = level + rate * weight * error
        self.visits[rows, slots] = visits + weight

    def snapshot(self) -> bytes:
        """The config, keys and state arrays as an ``.npz`` (no pickle)."""
        size = self._size
        buffer = io.BytesIO()
        np.savez(
            buffer,
            config=np.array(json.dumps(asdict(self.config))),
            keys=np.array(self.keys, dtype=np.str_),
            size=np.array(size),
            learned=self.learned[:size],
            levels=self.levels[:size],
            visits=self.visits[:size],
            **{name: getattr(self, name)[:size] for name in _BANK_FLOATS},
        )
        return buffer.getvalue()

    @classmethod
    def restore(cls, data: bytes) -> Self:
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as archive:
                config = BaselineConfig(**json.loads(str(archive["config"])))
                size = int(archive["size"])
                bank = cls(config, capacity=size)
                bank.keys = [str(key) for key in archive["keys"]]
                bank._index = {key: row for row, key in enumerate(bank.keys)}
                bank.reserve(size)
                bank.learned[:size] = archive["learned"]
                bank.levels[:size] = archive["levels"]
                bank.visits[:size] = archive["visits"]
                for name in _BANK_FLOATS:
                    getattr(bank, name)[:size] = archive[name]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DetectorError(f"not a SeriesBank snapshot: {exc}") from exc
        return bank


@dataclass(frozen=True)
class ForestConfig:
    """Settings of :class:`IsolationForestDetector`."""

    capacity: int = 2048  # points kept in the reservoir
    horizon: int = 20_000  # once full, a learned point enters with probability capacity / horizon
    min_fit: int = 128  # learned points before the first fit
    refit_every: int = 1024  # learned points between fits
    n_estimators: int = 50
    max_samples: int = 256
    calibration_quantile: float = 0.999
    z_mid: float = 1.0
    power: float = 4.0
    seed: int = 7

    def __post_init__(self) -> None:
        if self.capacity < 2 or self.min_fit < 2 or self.refit_every < 1 or self.n_estimators < 1:
            raise DetectorError("capacity and min_fit must be >= 2, refit_every and n_estimators >= 1")
        if self.horizon < self.capacity:
            raise DetectorError(f"horizon ({self.horizon}) must be at least capacity ({self.capacity})")
        if not 0.5 < self.calibration_quantile < 1.0:
            raise DetectorError("calibration_quantile must be in (0.5, 1)")


def average_path_length(samples: np.ndarray) -> np.ndarray:
    """Expected path length of an unsuccessful search in a binary search tree of ``samples`` keys."""
    samples = np.asarray(samples, dtype=np.float64)
    safe = np.maximum(samples, 2.0)
    general = 2.0 * (np.log(safe - 1.0) + np.euler_gamma) - 2.0 * (safe - 1.0) / safe
    return np.where(samples <= 1, 0.0, np.where(samples == 2, 1.0, general))


class CompiledForest:
    """A fitted ``IsolationForest`` flattened into arrays and walked for every tree at once.

    scikit-learn scores tree by tree, which costs milliseconds per call whatever the batch size; here
    every point descends every tree in one numpy step per level (faster below a few thousand rows,
    slower above, so the detector picks by batch size). ``anomaly_scores`` equals
    ``-forest.score_samples(X)`` (the tests compare them): inputs compared as float32, as the trees were
    grown, and each leaf worth its depth plus the average path length of the points it still holds.
    """

    def __init__(self, forest: IsolationForest, chunk: int = 16_384) -> None:
        self.chunk = chunk
        features_in = int(forest.n_features_in_)
        left, right, feature, threshold, leaf_value, roots = [], [], [], [], [], []
        base, deepest = 0, 0
        for tree, used in zip(forest.estimators_, forest.estimators_features_, strict=True):
            structure = tree.tree_
            count = int(structure.node_count)
            children_left = structure.children_left.astype(np.int64)
            children_right = structure.children_right.astype(np.int64)
            leaf = children_left < 0
            depth = np.zeros(count, dtype=np.int64)
            frontier = np.array([0])
            while frontier.size:  # level by level: children sit one level below their parent
                inner = frontier[~leaf[frontier]]
                children = np.concatenate([children_left[inner], children_right[inner]])
                depth[children] = np.concatenate([depth[inner], depth[inner]]) + 1
                frontier = children
            deepest = max(deepest, int(depth.max()))
            node_feature = np.where(leaf, 0, structure.feature).astype(np.int64)
            if len(used) != features_in:  # the tree was grown on a subset of the columns
                node_feature = np.asarray(used, dtype=np.int64)[node_feature]
            own = np.arange(count, dtype=np.int64) + base
            left.append(np.where(leaf, own, children_left + base))  # a leaf points at itself
            right.append(np.where(leaf, own, children_right + base))
            feature.append(node_feature)
            threshold.append(structure.threshold.astype(np.float64))
            leaf_value.append(depth + average_path_length(structure.n_node_samples))
            roots.append(base)
            base += count
        self.left, self.right = np.concatenate(left), np.concatenate(right)
        self.feature, self.threshold = np.concatenate(feature), np.concatenate(threshold)
        self.leaf_value = np.concatenate(leaf_value)
        self.roots = np.asarray(roots, dtype=np.int64)
        self.levels = deepest
        self.denominator = len(roots) * float(average_path_length(np.array([forest._max_samples]))[0])

    def anomaly_scores(self, x: np.ndarray) -> np.ndarray:
        """The isolation score ``s`` in (0, 1] of each row (higher: easier to isolate)."""
        x = np.asarray(x, dtype=np.float32).astype(np.float64)
        scores = np.empty(x.shape[0])
        for begin in range(0, x.shape[0], self.chunk):
            block = x[begin : begin + self.chunk]
            node = np.broadcast_to(self.roots, (block.shape[0], self.roots.shape[0]))
            row = np.arange(block.shape[0])[:, None]
            for _ in range(self.levels):
                go_left = block[row, self.feature[node]] <= self.threshold[node]
                node = np.where(go_left, self.left[node], self.right[node])
            depths = self.leaf_value[node].sum(axis=1)
            scores[begin : begin + block.shape[0]] = 2.0 ** (-depths / self.denominator)
        return scores


@dataclass
class _ForestState:
    dims: int | None = None
    reservoir: np.ndarray | None = None
    filled: int = 0
    learned: int = 0
    since_fit: int = 0
    fits: int = 0
    forest: IsolationForest | None = None
    compiled: CompiledForest | None = None
    center: float = 0.0
    spread: float = 1.0
    rng_state: dict[str, Any] = field(default_factory=dict)


class IsolationForestDetector:
    """Vectors scored by an ``IsolationForest`` refitted on a rolling reservoir of recently learned points.

    The reservoir keeps ``capacity`` points; once full, each learned point replaces a random one with
    probability ``capacity / horizon``, so it spans roughly the last ``horizon`` points. Scores: the
    forest's anomaly score ``s`` (``-score_samples``) as ``z = (s - median) / (q - median)`` against the
    training points' median and ``calibration_quantile``, squashed like the baseline's z; 0 before the
    first fit. ``learn_many``/``score_many``/``update_many`` are the batch forms (one forest call per batch).
    """

    def __init__(self, config: ForestConfig | None = None) -> None:
        self.config = config or ForestConfig()
        self._state = _ForestState()
        self._rng = np.random.default_rng(self.config.seed)

    @property
    def fits(self) -> int:
        return self._state.fits

    def _matrix(self, x: Any) -> np.ndarray:
        matrix = np.atleast_2d(np.asarray(x, dtype=np.float64))
        if matrix.ndim != 2:
            raise DetectorError(f"expected vectors, got an array of shape {matrix.shape}")
        dims = self._state.dims
        if dims is None:
            self._state.dims = matrix.shape[1]
        elif matrix.shape[1] != dims:
            raise DetectorError(f"expected vectors of {dims} features, got {matrix.shape[1]}")
        return np.nan_to_num(matrix, nan=0.0, posinf=1e12, neginf=-1e12)

    def raw_scores(self, x: Any) -> np.ndarray:
        """The forest's anomaly score ``s`` in (0, 1] per vector (NaN before the first fit)."""
        matrix = self._matrix(x)
        state = self._state
        if state.compiled is None or state.forest is None:
            return np.full(matrix.shape[0], np.nan)
        if matrix.shape[0] >= LARGE_BATCH:  # the same scores; scikit-learn's per-tree loop wins on big batches
            return -state.forest.score_samples(matrix)
        return state.compiled.anomaly_scores(matrix)

    @property
    def center(self) -> float:
        """Median anomaly score ``s`` of the points of the last fit (what a normal point looks like)."""
        return self._state.center

    def explain_many(self, x: Any) -> tuple[np.ndarray, np.ndarray]:
        """Scores in [0, 1] and the forest's raw anomaly scores ``s``, without learning."""
        cfg, state = self.config, self._state
        raw = self.raw_scores(x)
        if state.forest is None:
            return np.zeros(raw.shape[0]), raw
        return squash(np.maximum((raw - state.center) / state.spread, 0.0), cfg.z_mid, cfg.power), raw

    def score_many(self, x: Any) -> np.ndarray:
        return self.explain_many(x)[0]

    def learn_many(self, x: Any) -> None:
        cfg, state = self.config, self._state
        matrix = self._matrix(x)
        if state.reservoir is None:
            state.reservoir = np.zeros((cfg.capacity, matrix.shape[1]))
        room = min(cfg.capacity - state.filled, matrix.shape[0])
        if room > 0:
            state.reservoir[state.filled : state.filled + room] = matrix[:room]
            state.filled += room
        rest = matrix[room:]
        if rest.shape[0]:
            accepted = self._rng.random(rest.shape[0]) < cfg.capacity / cfg.horizon
            targets = np.asarray(self._rng.integers(0, cfg.capacity, size=rest.shape[0]))
            # On contested slots numpy keeps one of the writes, the same one every run.
            state.reservoir[targets[accepted]] = rest[accepted]
        state.learned += matrix.shape[0]
        state.since_fit += matrix.shape[0]
        due = state.since_fit >= cfg.refit_every if state.forest is not None else state.learned >= cfg.min_fit
        if due:
            self._fit()

    def _fit(self) -> None:
        cfg, state = self.config, self._state
        assert state.reservoir is not None
        training = state.reservoir[: state.filled]
        forest = IsolationForest(
            n_estimators=cfg.n_estimators,
            max_samples=min(cfg.max_samples, training.shape[0]),
            random_state=cfg.seed + state.fits,
            n_jobs=1,
        ).fit(training)
        compiled = CompiledForest(forest)
        train_scores = compiled.anomaly_scores(training)
        center = float(np.median(train_scores))
        state.forest, state.compiled = forest, compiled
        state.center = center
        state.spread = max(float(np.quantile(train_scores, cfg.calibration_quantile)) - center, 1e-3)
        state.fits += 1
        state.since_fit = 0

    def update_many(self, x: Any) -> np.ndarray:
        scores = self.score_many(x)
        self.learn_many(x)
        return scores

    def learn(self, ts_ms: int, x: Any) -> None:
        self.learn_many(np.asarray(x, dtype=np.float64).reshape(1, -1))

    def score(self, ts_ms: int, x: Any) -> float:
        return float(self.score_many(np.asarray(x, dtype=np.float64).reshape(1, -1))[0])

    def update(self, ts_ms: int, x: Any) -> float:
        return float(self.update_many(np.asarray(x, dtype=np.float64).reshape(1, -1))[0])

    def snapshot(self) -> bytes:
        # The fitted forest has no portable form but pickle; restore only snapshots this detector wrote.
        self._state.rng_state = dict(self._rng.bit_generator.state)
        state = replace(self._state, compiled=None)  # rebuilt from the forest on restore
        return pickle.dumps({"config": asdict(self.config), "state": state}, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def restore(cls, data: bytes) -> Self:
        try:
            payload = pickle.loads(data)
            detector = cls(ForestConfig(**payload["config"]))
            state = payload["state"]
        except (pickle.UnpicklingError, EOFError, KeyError, TypeError) as exc:
            raise DetectorError(f"not an IsolationForestDetector snapshot: {exc}") from exc
        if not isinstance(state, _ForestState):
            raise DetectorError("not an IsolationForestDetector snapshot")
        if state.forest is not None:
            state.compiled = CompiledForest(state.forest)
        detector._state = state
        detector._rng.bit_generator.state = state.rng_state
        return detector


__all__ = [
    "DAY_MS",
    "BankOutput",
    "BaselineConfig",
    "BaselineScore",
    "CompiledForest",
    "Detector",
    "DetectorError",
    "ForestConfig",
    "IsolationForestDetector",
    "SeasonalBaseline",
    "SeriesBank",
    "average_path_length",
    "squash",
]
