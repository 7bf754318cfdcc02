"""Counters to rates, and rates to 1-minute event-time windows: pure functions over a device's state.

State is a plain JSON-able dict per device (so it can live in a changelog-backed table)::

    {"<if_index>": {
        "name": "ge-0/0/1", "speed": 1000000000,
        "s": [[ts_ms, uptime, in_oct, out_oct, in_err, out_err, in_disc, out_disc, bits], ...],  # recent samples
        "w": {"<window_start_ms>": {"r": revision_emitted, "d": dirty, "p": {"<ts_ms>": point}}},
    }}

A point is the rate over the interval that ends at ``ts_ms`` (from the previous sample):
``[dt_s, in_bits, out_bits, in_err, out_err, in_disc, out_disc]`` (deltas, not yet divided by time).

Every update is keyed by sample timestamp, so applying the same sample twice changes nothing: a replay
after a crash, or a duplicated sample, cannot double-count. A sample arriving out of order (within
the allowed lateness) is slotted in and the rates around it are recomputed.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from models.records import InterfaceRate, TelemetrySample

WINDOW_MS = 60_000
COUNTER32 = 2**32
COUNTER64 = 2**64
# A negative delta on a 64-bit counter is a wrap only when the previous value was this high;
# otherwise the agent reset its counters (a real 64-bit wrap takes decades even at 100 Gbit/s).
WRAP64_FLOOR = 2**63
# Rates above the interface speed by this factor are treated as a counter reset, not traffic.
PLAUSIBLE_SPEED_FACTOR = 1.5

# Sample vector layout in state.
TS, UPTIME, IN_OCT, OUT_OCT, IN_ERR, OUT_ERR, IN_DISC, OUT_DISC, BITS, IN_PKTS, OUT_PKTS, OPER = range(12)
# Point layout: [dt_s, in_bits, out_bits, in_err, out_err, in_disc, out_disc, in_pkts, out_pkts,
#                oper_changed (0/1), oper_status (0: unknown)]
P_IN_PKTS, P_OUT_PKTS, P_OPER_CHANGED, P_OPER = 7, 8, 9, 10


@dataclass
class ApplyStats:
    """What happened to a device's batch: counts for metrics, late samples for the dead-letter topic."""

    applied: int = 0
    duplicates: int = 0
    resets: int = 0
    wraps: int = 0
    late: list[TelemetrySample] = field(default_factory=list)


def window_start(ts_ms: int) -> int:
    return ts_ms - ts_ms % WINDOW_MS


def counter_delta(prev: int | None, cur: int | None, bits: int) -> tuple[int | None, bool]:
    """Increase of a counter between two reads: (delta or None when it reset, wrapped?)."""
    if prev is None or cur is None:
        return None, False
    delta = cur - prev
    if delta >= 0:
        return delta, False
    if bits == 32:
        return delta + COUNTER32, True
    if prev >= WRAP64_FLOOR:
        return delta + COUNTER64, True
    return None, False


def _vector(sample: TelemetrySample) -> list[Any]:
    return [
        sample.ts_ms,
        -1 if sample.uptime_ticks is None else sample.uptime_ticks,
        sample.in_octets,
        sample.out_octets,
        sample.in_errors,
        sample.out_errors,
        sample.in_discards,
        sample.out_discards,
        sample.counter_bits,
        _packets(sample.in_ucast_pkts, sample.in_nucast_pkts),
        _packets(sample.out_ucast_pkts, sample.out_nucast_pkts),
        sample.oper_status or 0,
    ]


def _packets(unicast: int | None, non_unicast: int | None) -> int | None:
    """Unicast plus non-unicast packets (None when the agent reports no unicast counter)."""
    if unicast is None:
        return None
    return unicast + (non_unicast or 0)


def _col(vector: list[Any], col: int) -> Any:
    # State written by an older build has shorter vectors: a missing column is an absent counter.
    return vector[col] if len(vector) > col else None


def interval_point(prev: list[Any], cur: list[Any], speed_bps: int | None) -> tuple[list[float] | None, bool]:
    """Rate point for the interval prev -> cur, or None when the counters reset in between.

    Written for the hot path: the usual interval (every counter grew) costs a few subtractions; only a
    counter that went down takes the slow path through :func:`counter_delta`.
    """
    dt_ms = cur[TS] - prev[TS]
    if dt_ms <= 0:
        return None, False
    if cur[UPTIME] >= 0 and prev[UPTIME] >= 0 and cur[UPTIME] < prev[UPTIME]:
        return None, False  # sysUpTime went back: the agent restarted and its counters began again
    dt_s = dt_ms / 1000.0
    bits = cur[BITS]
    wrapped = False
    point: list[float] = [dt_s, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    limit = speed_bps * PLAUSIBLE_SPEED_FACTOR * dt_s / 8 if speed_bps else None
    for slot, col in ((1, IN_OCT), (2, OUT_OCT)):
        p, c = prev[col], cur[col]
        if p is None or c is None:
            continue
        d = c - p
        if d < 0:
            d, w = counter_delta(p, c, bits)
            if d is None:
                return None, False
            wrapped |= w
        if limit is not None and d > limit:
            return None, False  # faster than the line can carry: a reset that looked like a wrap
        point[slot] = d * 8.0
    for slot, col in ((3, IN_ERR), (4, OUT_ERR), (5, IN_DISC), (6, OUT_DISC)):
        p, c = prev[col], cur[col]
        if p is None or c is None:
            continue
        d = c - p
        if d < 0:
            # IF-MIB errors and discards are Counter32 even where the octet counters are 64-bit.
            d, _ = counter_delta(p, c, 32 if p < COUNTER32 else bits)
        point[slot] = float(d or 0)
    for slot, col in ((P_IN_PKTS, IN_PKTS), (P_OUT_PKTS, OUT_PKTS)):
        p, c = _col(prev, col), _col(cur, col)
        if p is None or c is None:
            continue
        d = c - p
        if d < 0:
            d, _ = counter_delta(p, c, bits)
        point[slot] = float(d or 0)
    p_oper, c_oper = _col(prev, OPER) or 0, _col(cur, OPER) or 0
    point[P_OPER] = float(c_oper)
    point[P_OPER_CHANGED] = 1.0 if p_oper and c_oper and p_oper != c_oper else 0.0
    return point, wrapped


def apply_samples(
    device_state: dict[str, Any],
    samples: Iterable[TelemetrySample],
    *,
    watermark_ms: int,
    allowed_lateness_ms: int,
) -> ApplyStats:
    """Fold a device's samples into its state (in place); samples older than the lateness bound are returned late."""
    stats = ApplyStats()
    cutoff = watermark_ms - allowed_lateness_ms
    touched: set[str] = set()
    for sample in sorted(samples, key=lambda s: s.ts_ms):
        if sample.ts_ms < cutoff:
            stats.late.append(sample)
            continue
        key = str(sample.if_index)
        iface = device_state.get(key)
        if iface is None:
            iface = device_state[key] = {"name": sample.if_name, "speed": sample.speed_bps, "s": [], "w": {}}
        if sample.if_name:
            iface["name"] = sample.if_name
        if sample.speed_bps:
            iface["speed"] = sample.speed_bps
        history: list[list[Any]] = iface["s"]
        if not history or history[-1][TS] < sample.ts_ms:
            pos = len(history)  # the usual case: the newest sample so far
        else:
            stamps = [row[TS] for row in history]
            pos = bisect.bisect_left(stamps, sample.ts_ms)
            if stamps[pos] == sample.ts_ms:
                stats.duplicates += 1
                continue
        vector = _vector(sample)
        history.insert(pos, vector)
        stats.applied += 1
        touched.add(key)
        # The new sample closes the interval from its predecessor, and opens the one to its successor.
        for idx in (pos, pos + 1):
            if 1 <= idx < len(history):
                _set_point(iface, history[idx - 1], history[idx], stats)
    for key in touched:
        _prune(device_state[key], cutoff)
    return stats


def _set_point(iface: dict[str, Any], prev: list[Any], cur: list[Any], stats: ApplyStats) -> None:
    point, wrapped = interval_point(prev, cur, iface.get("speed"))
    windows = iface["w"]
    wkey = str(window_start(cur[TS]))
    window = windows.get(wkey)
    if point is None:
        stats.resets += 1
        if window is not None and window["p"].pop(str(cur[TS]), None) is not None:
            window["d"] = True
        return
    stats.wraps += int(wrapped)
    if window is None:
        window = windows[wkey] = {"r": 0, "d": True, "p": {}}
    window["p"][str(cur[TS])] = point
    window["d"] = True


def _prune(iface: dict[str, Any], cutoff: int) -> None:
    """Drop history no later sample can need: keep everything after the cutoff, and one sample before it."""
    history = iface["s"]
    stamps = [row[TS] for row in history]
    first_kept = max(bisect.bisect_left(stamps, cutoff) - 1, 0)
    if first_kept:
        del history[:first_kept]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q
    lo, hi = math.floor(rank), math.ceil(rank)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


def aggregate_window(device: str, if_index: int, iface: dict[str, Any], wstart: int, revision: int) -> InterfaceRate:
    """Summarise a window's points: time-weighted averages, max and p95 of the per-interval rates."""
    by_ts = iface["w"][str(wstart)]["p"]
    points = list(by_ts.values())
    total_s = sum(p[0] for p in points)
    # Points from state written by an older build are shorter: pad them as "not reported".
    points = [p if len(p) > P_OPER else [*p, *[0.0] * (P_OPER + 1 - len(p))] for p in points]
    newest = by_ts[max(by_ts, key=int)]
    last_oper = int(newest[P_OPER]) if len(newest) > P_OPER else 0
    in_rates = [p[1] / p[0] for p in points]
    out_rates = [p[2] / p[0] for p in points]
    in_avg = sum(p[1] for p in points) / total_s
    out_avg = sum(p[2] for p in points) / total_s
    speed = iface.get("speed") or None
    return InterfaceRate(
        id=InterfaceRate.make_id(device, if_index, wstart),
        device=device,
        if_index=if_index,
        window_start_ms=wstart,
        if_name=iface.get("name") or "",
        samples=len(points),
        in_bps_avg=in_avg,
        in_bps_max=max(in_rates),
        in_bps_p95=_percentile(in_rates, 0.95),
        out_bps_avg=out_avg,
        out_bps_max=max(out_rates),
        out_bps_p95=_percentile(out_rates, 0.95),
        in_util_pct_avg=in_avg / speed * 100 if speed else None,
        out_util_pct_avg=out_avg / speed * 100 if speed else None,
        in_errors=int(sum(p[3] for p in points)),
        out_errors=int(sum(p[4] for p in points)),
        in_discards=int(sum(p[5] for p in points)),
        out_discards=int(sum(p[6] for p in points)),
        speed_bps=speed,
        in_pps_avg=sum(p[P_IN_PKTS] for p in points) / total_s,
        out_pps_avg=sum(p[P_OUT_PKTS] for p in points) / total_s,
        oper_status_changes=int(sum(p[P_OPER_CHANGED] for p in points)),
        oper_status=last_oper or None,
        revision=revision,
    )


def emit_windows(
    device: str,
    device_state: dict[str, Any],
    *,
    watermark_ms: int,
    allowed_lateness_ms: int,
    flush_open: bool = False,
) -> list[InterfaceRate]:
    """Windows ready to publish. Closed windows (end + lateness <= watermark) are emitted and dropped;
    with ``flush_open`` the still-open windows that changed are emitted too and kept, so a later
    emission of the same window carries a higher revision and replaces this one in the warehouse."""
    out: list[InterfaceRate] = []
    for key, iface in device_state.items():
        windows = iface["w"]
        for wkey in sorted(windows, key=int):
            window = windows[wkey]
            wstart = int(wkey)
            closed = wstart + WINDOW_MS + allowed_lateness_ms <= watermark_ms
            if not (closed or flush_open):
                continue
            if window["d"] and window["p"]:
                window["r"] += 1
                window["d"] = False
                out.append(aggregate_window(device, int(key), iface, wstart, window["r"]))
            if closed:
                del windows[wkey]
    return out


def device_watermark(device_state: dict[str, Any]) -> int:
    """A device's event-time watermark: the newest sample it has sent (0 before its first)."""
    return max((iface["s"][-1][TS] for iface in device_state.values() if iface["s"]), default=0)


__all__ = [
    "WINDOW_MS",
    "ApplyStats",
    "aggregate_window",
    "apply_samples",
    "counter_delta",
    "device_watermark",
    "emit_windows",
    "interval_point",
    "window_start",
]
