"""Capacity forecast: how long until an interface's busy hour reaches line rate.

Per interface and UTC day, utilisation (the busier direction) is averaged into 5-minute slots; when
the day is over its 95th percentile of 5-minute means (the usual capacity-planning and burstable-
billing figure) becomes one point, placed at the centre of the slots that reached it (the busy hour).
Over the trailing days (28 by default) a Theil-Sen line (the median of pairwise slopes: a few odd
days do not bend it) gives the trend; when it rises (slope above ``min_slope_pct_per_day`` and
Kendall's tau >= ``min_tau``) the time to saturation is where the line crosses ``saturation_pct``.
Otherwise ``seconds_to_saturation`` is None: the interface is not trending up.

State per interface is bounded: one day of slots (1.7 KiB) and at most ``trailing_days`` points.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec
import numpy as np

from assurance.scenarios import CapacitySet
from models.records import InterfaceRate, Record

__all__ = [
    "CapacityForecast",
    "CapacityForecaster",
    "CapacityScore",
    "evaluate_capacity",
    "interface_utilisation_pct",
    "theil_sen",
]

DAY_MS = 86_400_000
SLOT_MS = 300_000  # 5 minutes
SLOTS = DAY_MS // SLOT_MS


class CapacityForecast(Record, frozen=True, kw_only=True):
    """The utilisation trend of one interface and when it reaches ``saturation_pct`` (None: not rising)."""

    device: str
    if_index: int
    if_name: str = ""
    window_start_ms: int  # the newest window the forecast has seen
    seconds_to_saturation: float | None
    current_util_pct: float  # the trend's daily 95th percentile now
    projected_util_pct: float  # ... ``projection_s`` from now
    projection_s: int
    slope_pct_per_day: float
    days: int  # daily points in the fit
    saturation_pct: float = 100.0
    last_day_p95_pct: float = 0.0


def interface_utilisation_pct(rate: InterfaceRate) -> float | None:
    """The busier direction's average utilisation of a window, in percent (None when unknown)."""
    utils = [u for u in (rate.in_util_pct_avg, rate.out_util_pct_avg) if u is not None]
    if utils:
        return max(utils)
    if rate.speed_bps:
        return max(rate.in_bps_avg, rate.out_bps_avg) / rate.speed_bps * 100.0
    return None


def theil_sen(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Slope, intercept (median of ``y - slope * x``) and Kendall's tau of the points.

    >>> theil_sen(np.array([0.0, 1, 2, 3, 4]), np.array([1.0, 3, 5, 7, 70]))
    (2.0, 1.0, 1.0)
    """
    i, j = np.triu_indices(len(x), k=1)
    dx = x[j] - x[i]
    keep = dx != 0
    if not keep.any():
        return 0.0, float(np.median(y)), 0.0
    slopes = (y[j] - y[i])[keep] / dx[keep]
    slope = float(np.median(slopes))
    intercept = float(np.median(y - slope * x))
    tau = float(np.sign(slopes).sum() / len(slopes))
    return slope, intercept, tau


@dataclass(slots=True)
class _Interface:
    if_name: str
    day: int = -1  # the UTC day the slots belong to
    sums: np.ndarray = field(default_factory=lambda: np.zeros(SLOTS, dtype=np.float32))
    counts: np.ndarray = field(default_factory=lambda: np.zeros(SLOTS, dtype=np.uint16))
    points: deque[tuple[int, float]] = field(default_factory=deque)  # (busy time ms, day p95 pct)
    newest_ms: int = 0


class _InterfaceState(msgspec.Struct, array_like=True):
    device: str
    if_index: int
    if_name: str
    day: int
    sums: bytes
    counts: bytes
    points: list[tuple[int, float]]
    newest_ms: int


class CapacityForecaster:
    """Feed 1-minute (or coarser) windows; each interface gets a :class:`CapacityForecast` when one of
    its days closes (and on demand with :meth:`forecast`)."""

    def __init__(
        self,
        *,
        saturation_pct: float = 100.0,
        trailing_days: int = 28,
        min_days: int = 3,
        projection_days: float = 30.0,
        min_coverage: float = 0.5,
        min_slope_pct_per_day: float = 0.05,
        min_tau: float = 0.4,
    ) -> None:
        if min_days < 2:
            raise ValueError("min_days: a trend needs at least 2 days")
        if trailing_days < min_days:
            raise ValueError("trailing_days: must be >= min_days")
        self.saturation_pct = saturation_pct
        self.trailing_days = trailing_days
        self.min_days = min_days
        self.projection_s = int(projection_days * 86_400)
        self.min_coverage = min_coverage
        self.min_slope = min_slope_pct_per_day
        self.min_tau = min_tau
        self._interfaces: dict[tuple[str, int], _Interface] = {}

    def __len__(self) -> int:
        return len(self._interfaces)

    def _close_day(self, state: _Interface) -> None:
        """Turn the finished day's slots into one point (if enough of the day was seen)."""
        seen = state.counts > 0
        if seen.mean() >= self.min_coverage:
            means = state.sums[seen] / state.counts[seen]
            p95 = float(np.percentile(means, 95))
            busy = np.flatnonzero(seen)[means >= p95]
            busy_ms = state.day * DAY_MS + int(busy.mean() * SLOT_MS) + SLOT_MS // 2
            state.points.append((busy_ms, p95))
            while len(state.points) > self.trailing_days:
                state.points.popleft()
        state.sums[:] = 0.0
        state.counts[:] = 0

    def observe(self, rates: Sequence[InterfaceRate]) -> list[CapacityForecast]:
        """Add windows (any order within a day; windows of an already closed day are ignored)."""
        closed: set[tuple[str, int]] = set()
        for rate in rates:
            util = interface_utilisation_pct(rate)
            if util is None or not np.isfinite(util):
                continue
            key = (rate.device, rate.if_index)
            state = self._interfaces.get(key)
            if state is None:
                state = self._interfaces[key] = _Interface(rate.if_name)
            day, offset = divmod(rate.window_start_ms, DAY_MS)
            if day > state.day:
                if state.day >= 0:
                    self._close_day(state)
                    closed.add(key)
                state.day = day
            elif day < state.day:
                continue
            slot = offset // SLOT_MS
            state.sums[slot] += util
            state.counts[slot] = min(int(state.counts[slot]) + 1, 65535)
            state.newest_ms = max(state.newest_ms, rate.window_start_ms)
        out = []
        for key in closed:
            forecast = self.forecast(*key)
            if forecast is not None:
                out.append(forecast)
        return out

    def forecast(self, device: str, if_index: int) -> CapacityForecast | None:
        """The forecast from the closed days so far; None until ``min_days`` days have points."""
        state = self._interfaces.get((device, if_index))
        if state is None or len(state.points) < self.min_days:
            return None
        points = np.array(state.points, dtype=np.float64)
        x_days = (points[:, 0] - points[0, 0]) / DAY_MS
        slope, intercept, tau = theil_sen(x_days, points[:, 1])
        now_ms = state.newest_ms + 60_000
        now_days = (now_ms - points[0, 0]) / DAY_MS
        current = intercept + slope * now_days
        projected = current + slope * self.projection_s / 86_400
        seconds: float | None = None
        if slope > self.min_slope and tau >= self.min_tau:
            seconds = max(0.0, (self.saturation_pct - current) / slope * 86_400)
        return CapacityForecast(
            id=f"{device}/{if_index}/{state.newest_ms}/capacity",
            device=device,
            if_index=if_index,
            if_name=state.if_name,
            window_start_ms=state.newest_ms,
            seconds_to_saturation=seconds,
            current_util_pct=round(current, 3),
            projected_util_pct=round(projected, 3),
            projection_s=self.projection_s,
            slope_pct_per_day=round(slope, 4),
            days=len(points),
            saturation_pct=self.saturation_pct,
            last_day_p95_pct=round(float(points[-1, 1]), 3),
        )

    def forecast_all(self) -> list[CapacityForecast]:
        out = []
        for device, if_index in self._interfaces:
            forecast = self.forecast(device, if_index)
            if forecast is not None:
                out.append(forecast)
        return out

    def snapshot(self) -> bytes:
        """The forecaster's state (days of points: worth keeping across restarts), msgpack."""
        return msgspec.msgpack.encode(
            [
                _InterfaceState(
                    device,
                    if_index,
                    s.if_name,
                    s.day,
                    s.sums.tobytes(),
                    s.counts.tobytes(),
                    list(s.points),
                    s.newest_ms,
                )
                for (device, if_index), s in self._interfaces.items()
            ]
        )

    def restore(self, data: bytes) -> None:
        """Replace the state with a :meth:`snapshot`."""
        states = msgspec.msgpack.decode(data, type=list[_InterfaceState])
        interfaces: dict[tuple[str, int], _Interface] = {}
        for s in states:
            sums = np.frombuffer(s.sums, dtype=np.float32)
            counts = np.frombuffer(s.counts, dtype=np.uint16)
            if len(sums) != SLOTS or len(counts) != SLOTS:
                raise ValueError(f"snapshot of another slot layout for {s.device}/{s.if_index}")
            interfaces[(s.device, s.if_index)] = _Interface(
                s.if_name,
                s.day,
                sums.copy(),
                counts.copy(),
                deque(s.points[-self.trailing_days :]),
                s.newest_ms,
            )
        self._interfaces = interfaces


@dataclass(frozen=True)
class CapacityScore:
    """Forecasts against the known trends of :func:`assurance.scenarios.capacity_scenarios`."""

    growing: int  # interfaces whose trend rises
    forecast: int  # ... of which got a time to saturation
    median_abs_error_days: float | None
    median_rel_error: float | None  # |forecast - truth| / truth
    flat: int  # interfaces not rising
    false_trends: int  # ... of which were given a time to saturation anyway

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "growing": self.growing,
            "forecast": self.forecast,
            "median_abs_error_days": self.median_abs_error_days,
            "median_rel_error": self.median_rel_error,
            "flat": self.flat,
            "false_trends": self.false_trends,
        }


def evaluate_capacity(
    scenarios: CapacitySet, observe_days: int, forecaster: CapacityForecaster | None = None
) -> CapacityScore:
    """Feed the first ``observe_days`` days (and the first window after them, which closes the last
    day), then compare each forecast with the truth."""
    if not 0 < observe_days < scenarios.days:
        raise ValueError(f"observe_days: must be between 1 and {scenarios.days - 1}")
    forecaster = forecaster or CapacityForecaster()
    for day in range(observe_days):
        forecaster.observe(scenarios.rates_for_day(day))
    forecaster.observe(scenarios.rates_for_day(observe_days)[: len(scenarios.scenarios)])
    now_ms = scenarios.start_ms + observe_days * DAY_MS + 60_000
    errors_days: list[float] = []
    relative: list[float] = []
    growing = forecast_count = flat = false_trends = 0
    for s in scenarios.scenarios:
        forecast = forecaster.forecast(s.device, s.if_index)
        seconds = None if forecast is None else forecast.seconds_to_saturation
        truth_ms = s.saturation_ms(scenarios.start_ms, forecaster.saturation_pct / 100.0)
        if truth_ms is None:
            flat += 1
            false_trends += seconds is not None
            continue
        growing += 1
        if seconds is None:
            continue
        forecast_count += 1
        truth_s = max(0.0, (truth_ms - now_ms) / 1000)
        errors_days.append(abs(seconds - truth_s) / 86_400)
        if truth_s > 0:
            relative.append(abs(seconds - truth_s) / truth_s)
    return CapacityScore(
        growing=growing,
        forecast=forecast_count,
        median_abs_error_days=float(np.median(errors_days)) if errors_days else None,
        median_rel_error=float(np.median(relative)) if relative else None,
        flat=flat,
        false_trends=false_trends,
    )
