"""Fault prediction: will this interface fail within the horizon (30 minutes by default)?

Per interface a trailing window of the last ``WINDOW_MINUTES`` 1-minute windows (utilisation, bursts,
errors, discards, packets, oper-status changes, link and threshold traps) is turned into indicator
features (:func:`window_features`: levels, growth against the window's own baseline, slopes, counts of
flaps and traps). One function serves training (every minute of every scenario at once) and the
online :class:`RiskTracker` (one window per interface), so both see exactly the same numbers.

A gradient-boosted classifier (:class:`FaultModel`) learns "fails within the horizon" on labelled
scenarios (:mod:`assurance.scenarios`); its alert threshold and re-emission interval are chosen on
separate validation scenarios as the best recall at precision >= 0.7 + 0.05 (a margin for the scatter
between scenario sets) with a median lead >= 10 minutes. The tracker emits a :class:`FaultPrediction`
when the probability crosses the threshold, then stays quiet for that interface until the probability
falls below half the threshold or the re-emission interval has passed. An
interface already failed (link down, error storm, line rate) gets no prediction: that is an
incident, not a forecast.

The model file is a pickle: load only files you (or ``ossbss assurance train``) wrote.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import sklearn
from numpy.lib.stride_tricks import sliding_window_view
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import ThreadpoolController

from assurance.scenarios import (
    FAILED_ERRORS_PER_MIN,
    FAILED_UTILISATION,
    MINUTE_MS,
    FaultScore,
    ScenarioSet,
    generate_scenarios,
    score_predictions,
)
from models.records import FaultEvent, InterfaceRate, Record

__all__ = [
    "DEFAULT_HORIZON_S",
    "DEFAULT_MODEL_PATH",
    "FEATURE_NAMES",
    "WINDOW_MINUTES",
    "EmissionPolicy",
    "FaultModel",
    "FaultModelError",
    "FaultPrediction",
    "RiskTracker",
    "evaluate_tracker",
    "rate_row",
    "scenario_rows",
    "simulate_emissions",
    "window_features",
]

WINDOW_MINUTES = 60
DEFAULT_HORIZON_S = 1800


def _default_model_path() -> Path:
    """One cached model per user (training is deterministic): ``$OSSBSS_FAULT_MODEL``, else
    ``$XDG_CACHE_HOME/ossbss/fault_model.pkl``, else ``~/.cache/ossbss/fault_model.pkl``."""
    explicit = os.environ.get("OSSBSS_FAULT_MODEL")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ossbss" / "fault_model.pkl"


DEFAULT_MODEL_PATH = _default_model_path()
MODEL_FORMAT = 1
DEFAULT_TRAINING_INTERFACES = 1200
DEFAULT_VALIDATION_INTERFACES = 600
REEMIT_CHOICES = (10, 15, 20, 30)  # minutes; chosen on validation data with the threshold

# Columns of a window row.
PRESENT, UTIL, PEAK, ERRORS, DISCARDS, PACKETS, CHANGES, DOWN, LINK_DOWN, LINK_UP, TRAPS = range(11)
N_COLUMNS = 11
RATE_COLUMNS = slice(PRESENT, DOWN + 1)  # filled from an InterfaceRate; the rest from fault events

FEATURE_GROUPS: dict[str, tuple[str, ...]] = {
    "utilisation": (
        "util_now",
        "util_mean",
        "util_max",
        "util_slope15",
        "util_slope60",
        "util_rise",
        "peak_now",
        "peak_hi15",
        "util_eta15",
        "util_eta60",
    ),
    "errors": ("err_now", "err_base", "err_growth", "err_slope30", "err_elev30", "err_max", "err_ratio", "err_eta"),
    "discards": ("disc_now", "disc_base", "disc_growth", "disc_slope30", "disc_elev30", "disc_ratio"),
    "flaps": ("changes15", "changes60", "downs15", "downs60", "since_flap", "down_rows15"),
    "traps": ("traps15", "traps60"),
}
FEATURE_NAMES: tuple[str, ...] = ("history", *(name for names in FEATURE_GROUPS.values() for name in names))
_INDEX = {name: i for i, name in enumerate(FEATURE_NAMES)}


class FaultModelError(Exception):
    """A model file could not be used; ``path`` names it."""

    def __init__(self, path: str | os.PathLike[str], message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = str(path)


class FaultPrediction(Record, frozen=True, kw_only=True):
    """A warning: ``device``/``if_index`` is likely to fail within ``horizon_s`` (from ``window_start_ms``)."""

    device: str
    if_index: int
    if_name: str = ""
    window_start_ms: int
    probability: float
    horizon_s: int
    reasons: tuple[str, ...] = ()


# ------------------------------------------------------------------------------------- rows


def rate_row(rate: InterfaceRate) -> np.ndarray:
    """The rate columns (PRESENT .. DOWN) of one window row."""
    speed = rate.speed_bps or 0
    utils = [u for u in (rate.in_util_pct_avg, rate.out_util_pct_avg) if u is not None]
    if utils:
        util = max(utils) / 100.0
    elif speed:
        util = max(rate.in_bps_avg, rate.out_bps_avg) / speed
    else:
        util = 0.0
    peak = max(rate.in_bps_max, rate.out_bps_max) / speed if speed else util
    down = rate.oper_status is not None and rate.oper_status != 1
    return np.array(
        [
            1.0,
            min(util, 1.5),
            min(peak, 1.5),
            rate.in_errors + rate.out_errors,
            rate.in_discards + rate.out_discards,
            (rate.in_pps_avg + rate.out_pps_avg) * 60.0,
            rate.oper_status_changes,
            1.0 if down else 0.0,
        ],
        dtype=np.float32,
    )


def fault_column(event: FaultEvent) -> int | None:
    """Which count a fault event adds to; None for device-level events (no ``if_index``)."""
    if event.if_index is None:
        return None
    if event.kind == "linkDown":
        return LINK_DOWN
    if event.kind == "linkUp":
        return LINK_UP
    return TRAPS


def scenario_rows(scenarios: ScenarioSet) -> np.ndarray:
    """Window rows for every interface and minute, shape (interfaces, minutes, columns), float32.

    The same numbers :func:`rate_row` and the tracker's fault binning give for the replayed records.
    """
    c = scenarios.columns
    n, minutes = c["in_util"].shape
    rows = np.zeros((n, minutes, N_COLUMNS), dtype=np.float32)
    speeds = np.array([s.speed_bps for s in scenarios.scenarios], dtype=np.float64)[:, None]
    rows[..., PRESENT] = 1.0
    util = np.maximum(c["in_util"] * 100.0, c["out_util"] * 100.0) / 100.0
    rows[..., UTIL] = np.minimum(util, 1.5)
    rows[..., PEAK] = np.minimum(np.maximum(c["in_bps_max"], c["out_bps_max"]) / speeds, 1.5)
    rows[..., ERRORS] = c["in_errors"] + c["out_errors"]
    rows[..., DISCARDS] = c["in_discards"] + c["out_discards"]
    rows[..., PACKETS] = (c["in_pps"] + c["out_pps"]) * 60.0
    rows[..., CHANGES] = c["oper_changes"]
    rows[..., DOWN] = c["oper_status"] != 1
    position = {s.key: i for i, s in enumerate(scenarios.scenarios)}
    for event in scenarios.faults:
        column = fault_column(event)
        minute = (event.ts_ms - scenarios.start_ms) // MINUTE_MS
        index = position.get((event.device, event.if_index or 0))
        if column is not None and index is not None and 0 <= minute < minutes:
            rows[index, minute, column] += 1
    return rows


# --------------------------------------------------------------------------------- features


def _masked_mean(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    return (y * p).sum(-1) / np.maximum(p.sum(-1), 1.0)


def _slope(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Least-squares slope per minute of ``y`` over the present minutes (weights ``p``)."""
    t = np.arange(y.shape[-1], dtype=np.float64)
    n = p.sum(-1)
    st = (p * t).sum(-1)
    sy = (p * y).sum(-1)
    den = n * (p * t * t).sum(-1) - st * st
    num = n * (p * t * y).sum(-1) - st * sy
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def _eta(gap: np.ndarray, slope_per_minute: np.ndarray, cap: float = 240.0) -> np.ndarray:
    """Minutes to close ``gap`` at ``slope_per_minute``; ``cap`` when not closing."""
    rising = slope_per_minute > 0
    return np.where(rising, np.clip(gap / np.where(rising, slope_per_minute, 1.0), 0.0, cap), cap)


def _count_features(y: np.ndarray, p: np.ndarray, packets: np.ndarray, w: int) -> list[np.ndarray]:
    """Level now, baseline, growth, slope, elevated share, (max), ratio to packets of a counter column."""
    log = np.log1p(y)
    now = np.log1p(_masked_mean(y[..., w - 5 :], p[..., w - 5 :]))
    base = np.log1p(_masked_mean(y[..., : w - 15], p[..., : w - 15]))
    slope = _slope(log[..., w - 30 :], p[..., w - 30 :])
    elevated = _masked_mean((log[..., w - 30 :] > base[..., None] + 1.0).astype(np.float64), p[..., w - 30 :])
    ratio = np.log10((y[..., w - 5 :].sum(-1) + 1.0) / (packets[..., w - 5 :].sum(-1) + 1.0))
    return [now, base, now - base, slope, elevated, (log * p).max(-1), ratio]


def window_features(windows: np.ndarray) -> np.ndarray:
    """Indicator features of trailing windows: ``windows`` has shape (..., WINDOW_MINUTES, columns), the
    last row being the newest minute; the result has shape (..., len(FEATURE_NAMES))."""
    w = windows.shape[-2]
    if w != WINDOW_MINUTES:
        raise ValueError(f"windows must span {WINDOW_MINUTES} minutes, not {w}")

    def col(c: int) -> np.ndarray:
        return np.asarray(windows[..., c], dtype=np.float64)

    p = col(PRESENT)
    util, peak, packets = col(UTIL), col(PEAK), col(PACKETS)
    last5, last15 = slice(w - 5, w), slice(w - 15, w)
    util_now = _masked_mean(util[..., last5], p[..., last5])
    utilisation = [
        util_now,
        _masked_mean(util, p),
        (util * p).max(-1),
        _slope(util[..., last15], p[..., last15]) * 60,
        _slope(util, p) * 60,
        util_now - _masked_mean(util[..., :30], p[..., :30]),
        _masked_mean(peak[..., last5], p[..., last5]),
        _masked_mean((peak[..., last15] >= 0.97).astype(np.float64), p[..., last15]),
    ]
    errors = _count_features(col(ERRORS), p, packets, w)
    discards = _count_features(col(DISCARDS), p, packets, w)
    del discards[5]  # the max of discards adds nothing the level and growth do not say
    # Minutes until the trend reaches the failure level: timing, which the horizon label is about.
    utilisation += [
        _eta(FAILED_UTILISATION - util_now, utilisation[3] / 60),
        _eta(FAILED_UTILISATION - util_now, utilisation[4] / 60),
    ]
    errors.append(_eta(np.log1p(FAILED_ERRORS_PER_MIN) - errors[0], errors[3]))
    changes, link_down = col(CHANGES), col(LINK_DOWN)
    flapped = (changes > 0) | (link_down > 0)
    since_flap = np.where(flapped.any(-1), np.argmax(flapped[..., ::-1], axis=-1), w).astype(np.float64)
    flaps = [
        changes[..., last15].sum(-1),
        changes.sum(-1),
        link_down[..., last15].sum(-1),
        link_down.sum(-1),
        since_flap,
        col(DOWN)[..., last15].sum(-1),
    ]
    traps = col(TRAPS)
    trap_counts = [traps[..., last15].sum(-1), traps.sum(-1)]
    features = [p.sum(-1), *utilisation, *errors, *discards, *flaps, *trap_counts]
    return np.stack(features, axis=-1)


def failed_now(windows: np.ndarray) -> np.ndarray:
    """Whether the newest minute of each window shows a failure already (down, error storm, line rate)."""
    last = np.asarray(windows[..., -1, :], dtype=np.float64)
    return (last[..., PRESENT] > 0) & (
        (last[..., DOWN] > 0) | (last[..., ERRORS] >= FAILED_ERRORS_PER_MIN) | (last[..., UTIL] >= FAILED_UTILISATION)
    )


def _trailing_windows(rows: np.ndarray) -> np.ndarray:
    """A view (interfaces, minutes, WINDOW_MINUTES, columns): for each minute, the window ending there."""
    n, _, c = rows.shape
    padded = np.concatenate([np.zeros((n, WINDOW_MINUTES - 1, c), dtype=rows.dtype), rows], axis=1)
    return np.swapaxes(sliding_window_view(padded, WINDOW_MINUTES, axis=1), -1, -2)


def usable_minutes(rows: np.ndarray, min_history_minutes: int) -> tuple[np.ndarray, np.ndarray]:
    """Which (interface, minute) of ``rows`` the tracker would score (enough history, not failed), and
    which are failed; the same answers as :func:`window_features` and :func:`failed_now`, but cheap."""
    present = np.cumsum(rows[..., PRESENT], axis=1, dtype=np.float64)
    history = present.copy()
    history[:, WINDOW_MINUTES:] -= present[:, :-WINDOW_MINUTES]
    failed = failed_now(rows[..., None, :])
    return (history >= min_history_minutes) & ~failed, failed


def batch_features(rows: np.ndarray, select: np.ndarray, chunk: int = 32) -> np.ndarray:
    """Features of the windows ending at the selected (interface, minute) of ``rows`` (a bool mask of
    shape (interfaces, minutes)), in row-major order: shape (selected, len(FEATURE_NAMES))."""
    parts = []
    for start in range(0, rows.shape[0], chunk):
        picked = select[start : start + chunk]
        if picked.any():
            parts.append(window_features(_trailing_windows(rows[start : start + chunk])[picked]))
    return np.concatenate(parts) if parts else np.zeros((0, len(FEATURE_NAMES)))


# --------------------------------------------------------------------------------- emission


@dataclass(frozen=True)
class EmissionPolicy:
    """When a probability becomes a prediction: crossing ``threshold`` while armed; once emitted, the
    interface re-arms when the probability drops below ``rearm_ratio`` x threshold (or it fails), and a
    still-high probability is emitted again after ``reemit_minutes``."""

    threshold: float
    reemit_minutes: int = 30
    rearm_ratio: float = 0.5


def simulate_emissions(
    probabilities: np.ndarray, failed: np.ndarray, thresholds: Sequence[float] | np.ndarray, policy: EmissionPolicy
) -> np.ndarray:
    """The tracker's emission rule over whole series at once, for several thresholds.

    ``probabilities`` (interfaces, minutes) is NaN where no prediction is allowed (short history, failed);
    returns a bool mask (thresholds, interfaces, minutes) of the minutes that emit.
    """
    thr = np.asarray(thresholds, dtype=np.float64)[:, None]
    k, (n, minutes) = len(thr), probabilities.shape
    emitted = np.zeros((k, n, minutes), dtype=bool)
    armed = np.ones((k, n), dtype=bool)
    last = np.full((k, n), -(10**9))
    for t in range(minutes):
        p = probabilities[:, t]
        ok = ~np.isnan(p)
        p0 = np.where(ok, p, -1.0)
        emit = ok & (p0 >= thr) & (armed | (t - last >= policy.reemit_minutes))
        emitted[:, :, t] = emit
        last = np.where(emit, t, last)
        armed = (armed & ~emit) | (ok & (p0 < policy.rearm_ratio * thr)) | failed[:, t]
    return emitted


def _score_masks(emitted: np.ndarray, leads_ms: np.ndarray, healthy: np.ndarray, horizon_s: float) -> list[FaultScore]:
    """:func:`assurance.scenarios.score_predictions` for emission masks (thresholds, interfaces, minutes)."""
    in_window = (leads_ms >= MINUTE_MS) & (leads_ms <= horizon_s * 1000)
    failing = int((~healthy).sum())
    scores = []
    for mask in emitted:
        hits = mask & in_window
        caught_rows = hits.any(-1)
        false_positives = int((mask & ~in_window).sum())
        caught = int(caught_rows.sum())
        leads = np.sort(np.where(hits, leads_ms, -np.inf).max(-1)[caught_rows] / 1000)
        scores.append(
            FaultScore(
                precision=caught / (caught + false_positives) if caught + false_positives else 0.0,
                recall=caught / failing if failing else 0.0,
                median_lead_s=float(np.median(leads)) if len(leads) else None,
                caught=caught,
                false_positives=false_positives,
                missed=failing - caught,
                failing=failing,
                healthy=int(healthy.sum()),
                healthy_alerted=int((mask.any(-1) & healthy).sum()),
                leads_s=tuple(float(v) for v in leads),
            )
        )
    return scores


def _leads_ms(scenarios: ScenarioSet) -> tuple[np.ndarray, np.ndarray]:
    """Failure time minus prediction time (window end) per (interface, minute); NaN for healthy ones."""
    ends = scenarios.start_ms + (np.arange(scenarios.minutes) + 1) * MINUTE_MS
    failure = np.array([np.nan if s.failure_ms is None else s.failure_ms for s in scenarios.scenarios])
    return failure[:, None] - ends[None, :], np.isnan(failure)


# ------------------------------------------------------------------------------------ model


@dataclass
class FaultModel:
    """A classifier of "fails within ``horizon_s``" over :func:`window_features`, with its alert policy."""

    classifier: HistGradientBoostingClassifier
    horizon_s: int = DEFAULT_HORIZON_S
    threshold: float = 0.5
    reemit_minutes: int = 30
    min_history_minutes: int = 30
    healthy_medians: np.ndarray = field(default_factory=lambda: np.zeros(len(FEATURE_NAMES)))
    validation: dict[str, Any] = field(default_factory=dict)
    trained_on: dict[str, Any] = field(default_factory=dict)

    @property
    def policy(self) -> EmissionPolicy:
        return EmissionPolicy(self.threshold, self.reemit_minutes)

    # -- training

    @staticmethod
    def training_rows(
        scenarios: ScenarioSet,
        horizon_s: float,
        min_history_minutes: int,
        negative_share: float = 1.0,
        random_state: int = 0,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Features, labels and healthy flags of the minutes a prediction could be made at.

        Skipped: minutes with less history than ``min_history_minutes``, minutes already failed, and the
        minute just before a failure (too late to warn, too early to call failed). Of the negative minutes
        a random ``negative_share`` is kept (neighbouring minutes say nearly the same thing).
        """
        rows = scenario_rows(scenarios)
        usable, _ = usable_minutes(rows, min_history_minutes)
        leads, healthy = _leads_ms(scenarios)
        usable &= healthy[:, None] | (leads >= MINUTE_MS)
        labels = ~healthy[:, None] & (leads >= MINUTE_MS) & (leads <= horizon_s * 1000)
        if negative_share < 1.0:
            keep = np.random.default_rng(random_state).random(usable.shape) < negative_share
            usable &= labels | keep
        features = batch_features(rows, usable)
        healthy_rows = np.broadcast_to(healthy[:, None], usable.shape)
        return features, labels[usable], healthy_rows[usable]

    @classmethod
    def train(
        cls,
        scenarios: ScenarioSet | Sequence[ScenarioSet],
        *,
        validation: ScenarioSet | None = None,
        horizon_s: int = DEFAULT_HORIZON_S,
        min_precision: float = 0.7,
        precision_margin: float = 0.05,
        min_history_minutes: int = 30,
        negative_share: float = 0.3,
        random_state: int = 0,
        progress: Callable[[str], None] | None = None,
    ) -> FaultModel:
        """Fit on ``scenarios``; choose the threshold and re-emission interval on ``validation`` (default:
        a quarter of the interfaces held out of the training set) for precision >= ``min_precision``
        plus ``precision_margin`` (held-out sets of 600 interfaces scatter by about that much)."""
        say = progress or (lambda _message: None)
        sets = [scenarios] if isinstance(scenarios, ScenarioSet) else list(scenarios)
        if not sets:
            raise ValueError("scenarios: nothing to train on")
        if validation is None:
            held = sets[0]
            cut = max(1, len(held) * 3 // 4)
            validation = held.subset(range(cut, len(held)))
            sets = [held.subset(range(cut)), *sets[1:]]
        started = time.perf_counter()
        parts = [
            cls.training_rows(s, horizon_s, min_history_minutes, negative_share, random_state + i)
            for i, s in enumerate(sets)
        ]
        x = np.concatenate([p[0] for p in parts])
        y = np.concatenate([p[1] for p in parts])
        healthy = np.concatenate([p[2] for p in parts])
        if not y.any() or y.all():
            raise ValueError("scenarios: training needs minutes both within and outside the horizon of a failure")
        say(
            f"features: {len(x)} minutes from {sum(len(s) for s in sets)} interfaces, "
            f"{int(y.sum())} within {horizon_s // 60} min of a failure ({time.perf_counter() - started:.1f} s)"
        )
        started = time.perf_counter()
        classifier = HistGradientBoostingClassifier(
            max_iter=100,
            learning_rate=0.1,
            max_leaf_nodes=31,
            min_samples_leaf=40,
            l2_regularization=1.0,
            early_stopping=False,
            random_state=random_state,
        )
        with _one_thread():
            classifier.fit(x, y)
        say(f"fitted gradient boosting ({classifier.n_iter_} trees) in {time.perf_counter() - started:.1f} s")
        quiet = healthy & ~y
        model = cls(
            classifier=classifier,
            horizon_s=int(horizon_s),
            min_history_minutes=min_history_minutes,
            healthy_medians=np.median(x[quiet] if quiet.any() else x, axis=0),
            trained_on={
                "seeds": [s.seed for s in sets],
                "interfaces": sum(len(s) for s in sets),
                "minutes": [s.minutes for s in sets],
                "validation_seed": validation.seed,
                "validation_interfaces": len(validation),
            },
        )
        started = time.perf_counter()
        policy, score = model.choose_policy(validation, min_precision + precision_margin)
        model.threshold, model.reemit_minutes = policy.threshold, policy.reemit_minutes
        model.validation = {
            **score.as_dict(),
            "threshold": model.threshold,
            "reemit_minutes": model.reemit_minutes,
            "min_precision": min_precision,
            "precision_margin": precision_margin,
        }
        say(
            f"threshold {model.threshold:.2f}, re-emit after {model.reemit_minutes} min, chosen on "
            f"{len(validation)} validation interfaces ({time.perf_counter() - started:.1f} s): "
            f"precision {score.precision:.2f}, recall {score.recall:.2f}, median lead {_minutes(score.median_lead_s)}"
        )
        return model

    def choose_policy(
        self, validation: ScenarioSet, min_precision: float = 0.75, min_lead_s: float = 600.0
    ) -> tuple[EmissionPolicy, FaultScore]:
        """The threshold and re-emission interval with the best recall at precision >= ``min_precision``
        and a median lead >= ``min_lead_s`` on ``validation`` (ties: longer median lead, then the higher
        threshold); if none qualifies, the most precise policy."""
        probabilities, failed = self.scenario_probabilities(validation)
        leads, healthy = _leads_ms(validation)
        thresholds = np.round(np.arange(0.30, 1.0, 0.01), 2)
        best: tuple[tuple[float, ...], EmissionPolicy, FaultScore] | None = None
        for reemit in REEMIT_CHOICES:
            policy = EmissionPolicy(0.0, reemit)
            emitted = simulate_emissions(probabilities, failed, thresholds, policy)
            for threshold, score in zip(thresholds, _score_masks(emitted, leads, healthy, self.horizon_s), strict=True):
                meets = score.precision >= min_precision and (score.median_lead_s or 0.0) >= min_lead_s
                rank = (
                    (1.0, score.recall, score.median_lead_s or 0.0, threshold)
                    if meets
                    else (0.0, score.precision, threshold, 0.0)
                )
                if best is None or rank > best[0]:
                    best = (rank, EmissionPolicy(float(threshold), reemit), score)
        assert best is not None
        return best[1], best[2]

    # -- scoring

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Probability of failing within the horizon, per row of ``features``."""
        if len(features) == 0:
            return np.zeros(0)
        with _one_thread():
            return np.asarray(self.classifier.predict_proba(features)[:, 1], dtype=np.float64)

    def scenario_probabilities(self, scenarios: ScenarioSet) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities (interfaces, minutes), NaN where the tracker would not predict; and failed flags."""
        rows = scenario_rows(scenarios)
        usable, failed = usable_minutes(rows, self.min_history_minutes)
        probabilities = np.full(usable.shape, np.nan)
        probabilities[usable] = self.predict_proba(batch_features(rows, usable))
        return probabilities, failed

    def evaluate(self, scenarios: ScenarioSet, policy: EmissionPolicy | None = None) -> FaultScore:
        """Score on ``scenarios`` in batch (the same emissions as replaying them through a tracker)."""
        probabilities, failed = self.scenario_probabilities(scenarios)
        leads, healthy = _leads_ms(scenarios)
        policy = policy or self.policy
        emitted = simulate_emissions(probabilities, failed, [policy.threshold], policy)
        return _score_masks(emitted, leads, healthy, self.horizon_s)[0]

    def explain(self, features: np.ndarray, limit: int = 3) -> list[tuple[str, ...]]:
        """Per row, the indicator groups that raise the probability most (each replaced by its healthy
        median, how much the probability drops), as short sentences with the measured values."""
        if len(features) == 0:
            return []
        base = self.predict_proba(features)
        groups = list(FEATURE_GROUPS)
        variants = np.repeat(features[:, None, :], len(groups), axis=1)
        for g, name in enumerate(groups):
            columns = [_INDEX[f] for f in FEATURE_GROUPS[name]]
            variants[:, g, columns] = self.healthy_medians[columns]
        drops = base[:, None] - self.predict_proba(variants.reshape(-1, features.shape[1])).reshape(len(features), -1)
        out = []
        for row, drop in zip(features, drops, strict=True):
            order = [g for g in np.argsort(-drop) if drop[g] > 0.02][:limit] or [int(np.argmax(drop))]
            out.append(tuple(_describe(groups[g], row) for g in order))
        return out

    # -- persistence

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the model (atomically: a reader never sees half a file)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": MODEL_FORMAT,
            "sklearn": sklearn.__version__,
            "features": FEATURE_NAMES,
            "window_minutes": WINDOW_MINUTES,
            "model": self,
        }
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                pickle.dump(payload, handle, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FaultModel:
        try:
            with open(path, "rb") as handle:
                payload = pickle.load(handle)
        except FileNotFoundError:
            raise FaultModelError(path, "no such model file (train one with `ossbss assurance train`)") from None
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError) as exc:
            raise FaultModelError(path, f"unreadable model file: {exc}") from exc
        if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
            raise FaultModelError(path, f"not a fault model of format {MODEL_FORMAT}")
        if payload.get("sklearn") != sklearn.__version__:
            raise FaultModelError(
                path, f"trained with scikit-learn {payload.get('sklearn')}, running {sklearn.__version__}: retrain"
            )
        if tuple(payload.get("features", ())) != FEATURE_NAMES or payload.get("window_minutes") != WINDOW_MINUTES:
            raise FaultModelError(path, "trained on other features: retrain")
        model = payload["model"]
        if not isinstance(model, cls):
            raise FaultModelError(path, "not a fault model")
        return model

    @classmethod
    def default(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        horizon_s: int = DEFAULT_HORIZON_S,
        progress: Callable[[str], None] | None = None,
    ) -> FaultModel:
        """The cached model at ``path`` (default :data:`DEFAULT_MODEL_PATH`, a per-user cache) if it is usable and has
        this horizon; otherwise one trained on the built-in scenarios (seed 0, validated on seed 1),
        cached there. Deterministic: the same scenarios and seeds give the same model."""
        target = Path(path) if path is not None else DEFAULT_MODEL_PATH
        try:
            model = cls.load(target)
            if model.horizon_s == horizon_s:
                return model
        except FaultModelError:
            pass
        model = cls.train(
            generate_scenarios(DEFAULT_TRAINING_INTERFACES, hours=6, seed=0),
            validation=generate_scenarios(DEFAULT_VALIDATION_INTERFACES, hours=6, seed=1),
            horizon_s=horizon_s,
            progress=progress,
        )
        try:
            model.save(target)
        except OSError as exc:  # a read-only tree still gets a working model, just not a cached one
            if progress:
                progress(f"could not cache the model at {target}: {exc}")
        return model


_THREADS = ThreadpoolController()


def _one_thread() -> Any:
    """Run scikit-learn's OpenMP loops on one thread: on a busy 2-core machine more threads only spin."""
    return _THREADS.limit(limits=1, user_api="openmp")


def _minutes(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f} min"


def _describe(group: str, row: np.ndarray) -> str:
    f = {name: float(row[_INDEX[name]]) for name in FEATURE_GROUPS[group]}
    if group == "errors":
        return f"errors rising: {np.expm1(f['err_now']):.0f}/min (before: {np.expm1(f['err_base']):.0f}/min)"
    if group == "discards":
        return f"discards rising: {np.expm1(f['disc_now']):.0f}/min (before: {np.expm1(f['disc_base']):.0f}/min)"
    if group == "flaps":
        flaps = max(f["downs60"], np.ceil(f["changes60"] / 2))
        return f"{flaps:.0f} link flaps in the last hour, the latest {f['since_flap']:.0f} min ago"
    if group == "utilisation":
        return (
            f"utilisation {f['util_now'] * 100:.0f}% ({f['util_slope60'] * 100:+.0f} points/h), "
            f"bursts at line rate {f['peak_hi15'] * 100:.0f}% of the last 15 min"
        )
    return f"{f['traps60']:.0f} threshold traps in the last hour"


# ---------------------------------------------------------------------------------- tracker


@dataclass(slots=True)
class _Track:
    if_name: str
    rows: np.ndarray  # (WINDOW_MINUTES, N_COLUMNS) float32; rows[-1] is minute `last`
    last: int = -1  # epoch minute of rows[-1]; -1 before the first window
    pending: dict[int, list[float]] = field(default_factory=dict)  # fault counts for minutes after `last`
    armed: bool = True
    last_emit: int = -(10**9)


class _TrackState(msgspec.Struct, array_like=True):
    device: str
    if_index: int
    if_name: str
    last: int
    rows: bytes
    pending: list[tuple[int, list[float]]]
    armed: bool
    last_emit: int


class _TrackerState(msgspec.Struct):
    version: int
    window: int
    columns: int
    newest: int
    tracks: list[_TrackState]


class RiskTracker:
    """Online fault prediction: feed 1-minute windows and fault events, get :class:`FaultPrediction` s.

    State per interface is bounded: the last ``WINDOW_MINUTES`` rows (2.6 KiB) plus a few fault counts
    waiting for their window; interfaces silent for ``idle_evict_minutes`` are forgotten. Each call
    scores every interface that got a new window, at its newest minute.
    """

    def __init__(
        self,
        model: FaultModel | None = None,
        *,
        threshold: float | None = None,
        reemit_minutes: int | None = None,
        idle_evict_minutes: int = 360,
    ) -> None:
        self.model = model if model is not None else FaultModel.default()
        self.policy = EmissionPolicy(
            self.model.threshold if threshold is None else threshold,
            self.model.reemit_minutes if reemit_minutes is None else reemit_minutes,
        )
        self.idle_evict_minutes = idle_evict_minutes
        self._tracks: dict[tuple[str, int], _Track] = {}
        self._newest = -1
        self._evicted_at = -1

    def __len__(self) -> int:
        return len(self._tracks)

    def _track(self, key: tuple[str, int], if_name: str = "") -> _Track:
        track = self._tracks.get(key)
        if track is None:
            track = self._tracks[key] = _Track(if_name, np.zeros((WINDOW_MINUTES, N_COLUMNS), dtype=np.float32))
        elif if_name and not track.if_name:
            track.if_name = if_name
        return track

    @staticmethod
    def _advance(track: _Track, minute: int) -> None:
        """Make ``minute`` the newest row, shifting older rows up and pulling in pending fault counts."""
        shift = minute - track.last if track.last >= 0 else WINDOW_MINUTES
        if shift >= WINDOW_MINUTES:
            track.rows[:] = 0.0
        else:
            track.rows[:-shift] = track.rows[shift:]
            track.rows[-shift:] = 0.0
        track.last = minute
        for pending_minute in [m for m in track.pending if m <= minute]:
            counts = track.pending.pop(pending_minute)
            age = minute - pending_minute
            if age < WINDOW_MINUTES:
                track.rows[WINDOW_MINUTES - 1 - age, LINK_DOWN:] += counts

    def _add_fault(self, event: FaultEvent) -> None:
        column = fault_column(event)
        if column is None or event.if_index is None:
            return
        track = self._track((event.device, event.if_index))
        minute = event.ts_ms // MINUTE_MS
        if track.last >= 0 and minute <= track.last:
            age = track.last - minute
            if age < WINDOW_MINUTES:
                track.rows[WINDOW_MINUTES - 1 - age, column] += 1.0
            return
        counts = track.pending.setdefault(minute, [0.0] * (N_COLUMNS - LINK_DOWN))
        counts[column - LINK_DOWN] += 1.0
        if len(track.pending) > WINDOW_MINUTES:  # events far ahead of any window: keep the nearest
            del track.pending[max(track.pending)]

    def _add_rate(self, rate: InterfaceRate) -> bool:
        track = self._track((rate.device, rate.if_index), rate.if_name)
        minute = rate.window_start_ms // MINUTE_MS
        if track.last < 0 or minute > track.last:
            self._advance(track, minute)
        age = track.last - minute
        if age >= WINDOW_MINUTES:
            return False  # older than the window: nothing to update
        track.rows[WINDOW_MINUTES - 1 - age, RATE_COLUMNS] = rate_row(rate)
        self._newest = max(self._newest, minute)
        return True

    def observe(self, rates: Sequence[InterfaceRate], faults: Sequence[FaultEvent] = ()) -> list[FaultPrediction]:
        """Add windows and fault events; return the predictions that fire now."""
        for event in faults:
            self._add_fault(event)
        touched: dict[tuple[str, int], _Track] = {}
        for rate in sorted(rates, key=lambda r: r.window_start_ms):
            if self._add_rate(rate):
                key = (rate.device, rate.if_index)
                touched[key] = self._tracks[key]
        self._evict_idle()
        if not touched:
            return []
        keys = list(touched)
        windows = np.stack([touched[k].rows for k in keys])
        features = window_features(windows)
        failed = failed_now(windows)
        eligible = (features[:, _INDEX["history"]] >= self.model.min_history_minutes) & ~failed
        probabilities = np.full(len(keys), np.nan)
        probabilities[eligible] = self.model.predict_proba(features[eligible])
        emitting: list[int] = []
        policy = self.policy
        for i, key in enumerate(keys):
            track = touched[key]
            if failed[i]:
                track.armed = True
                continue
            if not eligible[i]:
                continue
            p = probabilities[i]
            if p >= policy.threshold and (track.armed or track.last - track.last_emit >= policy.reemit_minutes):
                track.armed = False
                track.last_emit = track.last
                emitting.append(i)
            elif p < policy.rearm_ratio * policy.threshold:
                track.armed = True
        reasons = self.model.explain(features[emitting]) if emitting else []
        out = []
        for i, why in zip(emitting, reasons, strict=True):
            device, if_index = keys[i]
            track = touched[keys[i]]
            window_start = track.last * MINUTE_MS
            out.append(
                FaultPrediction(
                    id=f"{device}/{if_index}/{window_start}/fault-risk",
                    device=device,
                    if_index=if_index,
                    if_name=track.if_name,
                    window_start_ms=window_start,
                    probability=round(float(probabilities[i]), 4),
                    horizon_s=self.model.horizon_s,
                    reasons=why,
                )
            )
        return out

    def _evict_idle(self) -> None:
        if self._newest - self._evicted_at < 60:  # look once an hour of event time
            return
        self._evicted_at = self._newest
        horizon = self._newest - self.idle_evict_minutes
        for key in [k for k, t in self._tracks.items() if 0 <= t.last < horizon]:
            del self._tracks[key]

    def snapshot(self) -> bytes:
        """The tracker's state, to :meth:`restore` after a restart (msgpack)."""
        state = _TrackerState(
            version=1,
            window=WINDOW_MINUTES,
            columns=N_COLUMNS,
            newest=self._newest,
            tracks=[
                _TrackState(
                    device,
                    if_index,
                    t.if_name,
                    t.last,
                    t.rows.tobytes(),
                    sorted(t.pending.items()),
                    t.armed,
                    t.last_emit,
                )
                for (device, if_index), t in self._tracks.items()
            ],
        )
        return msgspec.msgpack.encode(state)

    def restore(self, data: bytes) -> None:
        """Replace the state with a :meth:`snapshot`."""
        state = msgspec.msgpack.decode(data, type=_TrackerState)
        if state.version != 1 or state.window != WINDOW_MINUTES or state.columns != N_COLUMNS:
            raise ValueError(f"snapshot of another layout (version {state.version}, window {state.window})")
        tracks: dict[tuple[str, int], _Track] = {}
        for s in state.tracks:
            rows = np.frombuffer(s.rows, dtype=np.float32).reshape(WINDOW_MINUTES, N_COLUMNS).copy()
            tracks[(s.device, s.if_index)] = _Track(
                s.if_name, rows, s.last, {m: list(c) for m, c in s.pending}, s.armed, s.last_emit
            )
        self._tracks = tracks
        self._newest = state.newest
        self._evicted_at = -1


def evaluate_tracker(
    tracker: RiskTracker, scenarios: ScenarioSet, on_minute: Callable[[int], None] | None = None
) -> tuple[FaultScore, list[FaultPrediction]]:
    """Replay ``scenarios`` minute by minute through ``tracker`` and score what it predicted."""
    predictions: list[FaultPrediction] = []
    for minute, rates, faults in scenarios.replay():
        predictions.extend(tracker.observe(rates, faults))
        if on_minute:
            on_minute(minute)
    made: Iterable[tuple[str, int, int]] = ((p.device, p.if_index, p.window_start_ms + MINUTE_MS) for p in predictions)
    return score_predictions(scenarios, made, tracker.model.horizon_s), predictions
