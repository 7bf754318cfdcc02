"""Anomalies in 1-minute interface rates: what the assurance worker calls with each batch of windows.

:class:`InterfaceAnomalies` keeps, per interface (``device``/``if_index``), one seasonal baseline per
metric in a :class:`~assurance.detectors.SeriesBank` (see :data:`METRICS`: traffic and utilisation learn
a daily profile; errors, discards and packet sizes, which have none, a plain robust level), and one
shared :class:`~assurance.detectors.IsolationForestDetector` over each window's vector of signed z
(traffic and packet size, in and out) against the interface's own baselines: standardised, so one forest
serves interfaces of any speed, and it finds a combination of moderate deviations that no single
baseline calls anomalous. A forest per interface would cost about a megabyte each.

On the labelled scenarios of :mod:`assurance.anomaly_eval` the baselines find nearly everything; the
forest, at its tuned threshold, adds no event there (its scores saturate: an isolation tree cannot tell
a point just outside its training range from one far outside). It is kept for mixes those scenarios do
not model and can be switched off with ``multivariate=False``.

A window is learned once: a re-emitted window (same interface and ``window_start_ms``, higher
``revision``) or a late one older than the newest learned window of its interface is scored against
the current state but not learned again. Windows with ``samples == 0`` carry no measurement and are
skipped.

>>> from models.records import InterfaceRate
>>> detector = InterfaceAnomalies(AnomalyConfig(warmup=30, multivariate=False))
>>> def window(minute, errors=0):
...     return InterfaceRate(id=f"r1/1/{minute}", device="r1", if_index=1, window_start_ms=60_000 * minute,
...                          samples=6, in_bps_avg=5e6 + 1e4 * (minute % 3), out_bps_avg=1e6, in_errors=errors)
>>> sum(len(detector.observe([window(m)])) for m in range(120))
0
>>> [(f.metric, f.value) for f in detector.observe([window(120, errors=400)])]
[('in_errors', 400.0)]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from operator import attrgetter
from typing import Any, NamedTuple, Self

import msgspec
import numpy as np

from assurance.detectors import (
    DAY_MS,
    BaselineConfig,
    DetectorError,
    ForestConfig,
    IsolationForestDetector,
    SeriesBank,
)
from models.records import InterfaceRate


class AnomalyFinding(msgspec.Struct, frozen=True, kw_only=True):
    """One metric of one window that scored at or above the threshold.

    ``metric`` is a baseline metric (``in_bps``, ``in_errors``, ...; ``value`` and ``expected`` in its
    units) or ``multivariate`` (``value`` is the forest's anomaly score, ``expected`` its median on the
    training points).
    """

    device: str
    if_index: int
    if_name: str
    window_start_ms: int
    metric: str
    value: float
    expected: float
    score: float


class MetricSpec(NamedTuple):
    name: str
    transform: str
    min_scale: float
    seasonal: bool


# Traffic in signed log space (noise is relative; floor: a 5 % scale), utilisation in percentage points
# (floor: 2 points, so a busy link's shape matters and a near-idle link's jitter does not), counts in log
# space with a floor that keeps a handful of errors quiet and tens loud, and the average packet size each
# way (bytes per packet: very steady on a link, so a flood of small packets moves it when bits barely move).
METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("in_bps", "slog", 0.05, True),
    MetricSpec("out_bps", "slog", 0.05, True),
    MetricSpec("in_util", "identity", 2.0, True),
    MetricSpec("out_util", "identity", 2.0, True),
    MetricSpec("in_errors", "slog", 0.35, False),
    MetricSpec("out_errors", "slog", 0.35, False),
    MetricSpec("in_discards", "slog", 0.35, False),
    MetricSpec("out_discards", "slog", 0.35, False),
    MetricSpec("in_packet_size", "slog", 0.02, False),
    MetricSpec("out_packet_size", "slog", 0.02, False),
)
_FOREST_Z = ("in_bps", "out_bps", "in_packet_size", "out_packet_size")
_Z_LIMIT = 30.0  # forest features: a z beyond this is simply "very far"
_TRAIN_Z_LIMIT = 8.0


@dataclass(frozen=True)
class AnomalyConfig:
    """Settings of :class:`InterfaceAnomalies`; the defaults are the ones tuned in ``assurance.anomaly_eval``."""

    threshold: float = 0.9
    season_ms: int = DAY_MS
    slots: int = 24
    warmup: int = 60
    multivariate: bool = True
    multivariate_threshold: float = 0.8
    forest: ForestConfig = field(
        default_factory=lambda: ForestConfig(capacity=4096, horizon=200_000, min_fit=512, refit_every=50_000)
    )

    def __post_init__(self) -> None:
        for name in ("threshold", "multivariate_threshold"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise DetectorError(f"{name} must be in (0, 1], got {value}")

    def baseline(self, spec: MetricSpec) -> BaselineConfig:
        return BaselineConfig(
            season_ms=self.season_ms,
            slots=self.slots if spec.seasonal else 1,
            transform=spec.transform,
            min_scale=spec.min_scale,
            warmup=self.warmup,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AnomalyConfig:
        return cls(**{**data, "forest": ForestConfig(**data["forest"])})


_FIELDS = attrgetter(
    "window_start_ms",
    "in_bps_avg",
    "out_bps_avg",
    "in_util_pct_avg",
    "out_util_pct_avg",
    "in_errors",
    "out_errors",
    "in_discards",
    "out_discards",
    "in_pps_avg",
    "out_pps_avg",
)


def _packet_size(bps: np.ndarray, pps: np.ndarray) -> np.ndarray:
    """Average packet size in bytes (NaN without packets: nothing to learn)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(pps > 0, bps / 8.0 / pps, np.nan)


class InterfaceAnomalies:
    """Online anomaly scoring of :class:`~models.records.InterfaceRate` windows, many interfaces at once."""

    def __init__(self, config: AnomalyConfig | None = None) -> None:
        self.config = config or AnomalyConfig()
        self.banks = {spec.name: SeriesBank(self.config.baseline(spec)) for spec in METRICS}
        self.forest = IsolationForestDetector(self.config.forest)
        self._rows: dict[tuple[str, int], int] = {}
        self._last_window: list[int] = []  # newest learned window_start_ms per row
        self.windows_learned = 0
        self.windows_rescored = 0

    def __len__(self) -> int:
        return len(self._rows)

    def observe(self, rates: Sequence[InterfaceRate]) -> list[AnomalyFinding]:
        """Score a batch of windows (then learn the new ones); findings in input order."""
        rows_index, last_window = self._rows, self._last_window
        kept: list[InterfaceRate] = []
        rows: list[int] = []
        learn: list[bool] = []
        for rate in rates:  # the one loop per window: which series, and is this window new for it
            if rate.samples == 0:
                continue
            key = (rate.device, rate.if_index)
            row = rows_index.get(key)
            if row is None:
                row = rows_index[key] = len(last_window)
                last_window.append(-1)
            window = rate.window_start_ms
            is_new = window > last_window[row]
            if is_new:
                last_window[row] = window
            kept.append(rate)
            rows.append(row)
            learn.append(is_new)
        if not kept:
            return []
        table = np.array([_FIELDS(rate) for rate in kept], dtype=np.float64)  # None (no speed) becomes NaN
        # One column per metric, in METRICS order: the eight measured ones, then the packet sizes.
        values = np.column_stack(
            [
                table[:, 1:9],
                _packet_size(table[:, 1], table[:, 9]),
                _packet_size(table[:, 2], table[:, 10]),
            ]
        )
        row_array = np.array(rows, dtype=np.int64)
        learn_mask = np.array(learn, dtype=bool)
        ts = table[:, 0].astype(np.int64)
        for bank in self.banks.values():
            bank.reserve(len(last_window))
        count = len(kept)
        scores = np.zeros((count, len(METRICS) + 1))
        expected = np.full((count, len(METRICS)), np.nan)
        z = np.zeros((count, len(METRICS)))
        # Re-emitted windows first, against the state before this batch: they are never learned twice.
        for subset, learning in ((~learn_mask, False), (learn_mask, True)):
            if not subset.any():
                continue
            for column, spec in enumerate(METRICS):
                bank = self.banks[spec.name]
                run = bank.update_rows if learning else bank.score_rows
                out = run(row_array[subset], ts[subset], values[subset, column])
                scores[subset, column] = out.score
                expected[subset, column] = out.expected
                z[subset, column] = out.z
        forest_raw = np.full(count, np.nan)
        if self.config.multivariate:
            scores[:, -1], forest_raw = self._forest_scores(z, row_array, learn_mask)
        self.windows_learned += int(learn_mask.sum())
        self.windows_rescored += int(count - learn_mask.sum())
        return self._findings(kept, values, scores, expected, forest_raw)

    def _forest_scores(self, z: np.ndarray, rows: np.ndarray, learn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Forest scores of the windows whose interface is past its warm-up; the new ones are then learned."""
        names = [spec.name for spec in METRICS]
        features = np.clip(z[:, [names.index(name) for name in _FOREST_Z]], -_Z_LIMIT, _Z_LIMIT)
        warm = self.banks["in_bps"].learned[rows] > self.config.warmup
        scores, raw = np.zeros(rows.shape[0]), np.full(rows.shape[0], np.nan)
        if warm.any():
            scores[warm], raw[warm] = self.forest.explain_many(features[warm])
            # The forest learns usual windows: ones already extreme on a feature stay out of its reservoir, or
            # a few hundred of them would form a cluster of their own that no longer looks isolated.
            trainable = warm & learn & (np.abs(features).max(axis=1) <= _TRAIN_Z_LIMIT)
            if trainable.any():
                self.forest.learn_many(features[trainable])
        return scores, raw

    def _findings(
        self,
        kept: list[InterfaceRate],
        values: np.ndarray,
        scores: np.ndarray,
        expected: np.ndarray,
        forest_raw: np.ndarray,
    ) -> list[AnomalyFinding]:
        cfg = self.config
        flagged = scores[:, :-1] >= cfg.threshold
        forest_flagged = scores[:, -1] >= cfg.multivariate_threshold
        findings: list[AnomalyFinding] = []
        for position in np.flatnonzero(flagged.any(axis=1) | forest_flagged).tolist():
            rate = kept[position]
            for column in np.flatnonzero(flagged[position]).tolist():
                findings.append(
                    AnomalyFinding(
                        device=rate.device,
                        if_index=rate.if_index,
                        if_name=rate.if_name,
                        window_start_ms=rate.window_start_ms,
                        metric=METRICS[column].name,
                        value=float(values[position, column]),
                        expected=float(expected[position, column]),
                        score=float(scores[position, column]),
                    )
                )
            if forest_flagged[position]:
                findings.append(
                    AnomalyFinding(
                        device=rate.device,
                        if_index=rate.if_index,
                        if_name=rate.if_name,
                        window_start_ms=rate.window_start_ms,
                        metric="multivariate",
                        value=float(forest_raw[position]),
                        expected=self.forest.center,
                        score=float(scores[position, -1]),
                    )
                )
        return findings

    def snapshot(self) -> bytes:
        """Everything needed to go on after a restart: config, interfaces, last windows, banks, forest."""
        state = {
            "config": self.config.to_dict(),
            "keys": [[device, if_index] for device, if_index in self._rows],
            "last_window": self._last_window,
            "banks": {name: bank.snapshot() for name, bank in self.banks.items()},
            "forest": self.forest.snapshot(),
            "windows_learned": self.windows_learned,
            "windows_rescored": self.windows_rescored,
        }
        return msgspec.msgpack.encode(state)

    @classmethod
    def restore(cls, data: bytes, config: AnomalyConfig | None = None) -> Self:
        """Rebuild from :meth:`snapshot`; a ``config`` given here may change the thresholds, nothing else."""
        try:
            state = msgspec.msgpack.decode(data)
            saved = AnomalyConfig.from_dict(state["config"])
            if config is not None:  # thresholds may change; what shaped the learned state may not
                saved = replace(
                    config, season_ms=saved.season_ms, slots=saved.slots, warmup=saved.warmup, forest=saved.forest
                )
            detector = cls(saved)
            detector._rows = {(str(device), int(if_index)): row for row, (device, if_index) in enumerate(state["keys"])}
            detector._last_window = [int(w) for w in state["last_window"]]
            detector.banks = {spec.name: SeriesBank.restore(state["banks"][spec.name]) for spec in METRICS}
            detector.forest = IsolationForestDetector.restore(state["forest"])
            detector.windows_learned = int(state["windows_learned"])
            detector.windows_rescored = int(state["windows_rescored"])
        except (msgspec.DecodeError, KeyError, TypeError, ValueError) as exc:
            raise DetectorError(f"not an InterfaceAnomalies snapshot: {exc}") from exc
        return detector


__all__ = ["METRICS", "AnomalyConfig", "AnomalyFinding", "InterfaceAnomalies", "MetricSpec"]
