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

The functions over that dict are the reference. The worker runs the batch kernel further down
(:func:`apply_batch`, :func:`flush_windows`) on a compact form of the same state (:class:`RateState`:
numpy tables, stored as raw bytes), which computes a whole batch of devices at once in numpy and
gives the same windows, counts and state; a device whose batch needs a sample slotted in between
retained ones goes through the reference functions for that batch. State in the dict form (written
by an older build) is read and converted.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat
from operator import attrgetter
from typing import Any

import msgspec
import numpy as np

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


# --------------------------------------------------------------------------------------------------
# The batch kernel: the same semantics as apply_samples/emit_windows, for a whole batch of devices at once.
# --------------------------------------------------------------------------------------------------
#
# A device's state is a RateState: its interfaces (slots: if_index, name, speed) and three small
# numpy tables, each sorted by (slot, time):
#
# * ``hist``: the retained samples (what the reference keeps in ``"s"``), counters as uint64 with a
#   presence mask, so 64-bit wraps are exact modular arithmetic;
# * ``pts``: the rate points of the open windows (``"w"[...]["p"]``), the same 11 floats;
# * ``win``: the open windows with their emitted revision and dirty flag.
#
# A batch is decoded to columns once, the states of every device in it are concatenated (a slot
# becomes a global slot: the device's base + its slot), and deltas, wraps, resets, plausibility,
# windows and aggregates are computed over all of them in numpy. The usual case, every sample newer
# than its interface's newest (or an exact duplicate of a retained one), takes this path. A device
# whose batch has a sample to slot in between retained ones (out of order), or values outside what the
# vector code handles exactly (a 32-bit counter read above 2**32, packets summing past 2**64), takes
# the reference functions above for that batch, through its dict form, and comes back afterwards.

# Vector columns held as the compact history's eight counters, in this order.
_VECTOR_COUNTERS = (IN_OCT, OUT_OCT, IN_ERR, OUT_ERR, IN_DISC, OUT_DISC, IN_PKTS, OUT_PKTS)
_N_POINT = P_OPER + 1

# Rows are padded to a multiple of 8 bytes: row gathers then run on a (rows, words) uint64 view,
# several times faster than numpy's gather of structured rows.
_HIST = np.dtype(
    [
        ("ts", "<i8"),
        ("up", "<i8"),  # -1: no sysUpTime
        ("c", "<u8", (8,)),
        ("slot", "<i4"),
        ("has", "?", (8,)),
        ("bits", "u1"),
        ("oper", "u1"),
        ("pad", "u1", (2,)),
    ]
)
_PTS = np.dtype([("ts", "<i8"), ("v", "<f8", (_N_POINT,)), ("slot", "<i4"), ("pad", "u1", (4,))])
_WIN = np.dtype([("start", "<i8"), ("rev", "<i8"), ("slot", "<i4"), ("dirty", "?"), ("pad", "u1", (3,))])

_U64_WRAP32 = np.uint64(COUNTER32)
_TOP_BIT = np.uint64(WRAP64_FLOOR)
_INT64_MAX = 2**63 - 1
_UINT64_MAX = 2**64 - 1
# A window key: global slot and minute, in one int64 (a minute of year 3000 needs 30 bits).
_MINUTE_BITS = 30


def _rows(table: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``table[index]`` (an index array or a mask) for a table of one of the row types above."""
    words = table.dtype.itemsize // 8
    if not table.flags.c_contiguous:
        table = np.ascontiguousarray(table)
    as_words = table.view(np.uint64).reshape(len(table), words)
    picked = as_words[index] if index.dtype == bool else np.take(as_words, index, axis=0)
    return picked.view(table.dtype).reshape(len(picked))


def _cat(dtype: np.dtype, tables: Sequence[np.ndarray]) -> np.ndarray:
    """Tables of one row type end to end (as bytes: numpy's concatenate of structured arrays is slow)."""
    return np.frombuffer(bytearray().join([np.ascontiguousarray(t).data for t in tables]), dtype=dtype)


def _append_in_order(
    table: np.ndarray, groups: np.ndarray, new: np.ndarray, new_groups: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``table`` (rows sorted by (group, ts)) with ``new`` (sorted the same way) merged in, its groups, and
    which rows are new; or None when that order does not hold (a new row not later than every old row of
    its group, or either input out of order): the caller sorts instead.

    In the vector path every applied sample, and every point made from one, is newer than anything its
    interface retains, so the merge is a binary search per new row and two row scatters, not a sort of
    the whole retained state (which a batch otherwise pays for, however few samples it brings)."""
    if bool(np.any(new_groups[1:] < new_groups[:-1])):
        return None  # (the positions below are distinct only for new rows in group order)
    size = len(table) + len(new)
    is_new = np.zeros(size, dtype=bool)
    is_new[np.searchsorted(groups, new_groups, side="right") + np.arange(len(new))] = True
    merged_groups = np.empty(size, dtype=np.int64)
    merged_groups[is_new] = new_groups
    merged_groups[~is_new] = groups
    merged = np.empty(size, dtype=table.dtype)
    words = table.dtype.itemsize // 8
    merged_words = merged.view(np.uint64).reshape(size, words)
    merged_words[is_new] = np.ascontiguousarray(new).view(np.uint64).reshape(len(new), words)
    merged_words[~is_new] = np.ascontiguousarray(table).view(np.uint64).reshape(len(table), words)
    ts = merged["ts"]
    same = merged_groups[1:] == merged_groups[:-1]
    if bool(np.any(merged_groups[1:] < merged_groups[:-1])) or bool(np.any(same & (ts[1:] <= ts[:-1]))):
        return None
    return merged, merged_groups, is_new


def _merged(
    table: np.ndarray, groups: np.ndarray, new: np.ndarray, new_groups: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``table`` and ``new`` as one table sorted by (group, ts), its groups, and which rows are new: by
    :func:`_append_in_order` when its order holds, else by a stable sort of both (new rows keep their
    order among themselves either way)."""
    merged = _append_in_order(table, groups, new, new_groups)
    if merged is not None:
        return merged
    both = _cat(table.dtype, [table, new])
    both_groups = np.concatenate([groups, new_groups])
    is_new = np.r_[np.zeros(len(table), dtype=bool), np.ones(len(new), dtype=bool)]
    order = np.lexsort((both["ts"], both_groups))
    return _rows(both, order), both_groups[order], is_new[order]


class RateState:
    """A device's rate state in compact form (see the kernel notes above)."""

    __slots__ = ("hist", "ifx", "names", "pts", "slot_of", "speeds", "watermark", "win")

    def __init__(
        self,
        ifx: list[int] | None = None,
        names: list[str] | None = None,
        speeds: list[int] | None = None,
        hist: np.ndarray | None = None,
        pts: np.ndarray | None = None,
        win: np.ndarray | None = None,
        watermark: int = 0,
    ) -> None:
        self.ifx: list[int] = ifx if ifx is not None else []
        self.names: list[str] = names if names is not None else []
        self.speeds: list[int] = speeds if speeds is not None else []  # 0: not reported
        self.slot_of = {if_index: slot for slot, if_index in enumerate(self.ifx)}
        self.hist = hist if hist is not None else np.zeros(0, _HIST)
        self.pts = pts if pts is not None else np.zeros(0, _PTS)
        self.win = win if win is not None else np.zeros(0, _WIN)
        self.watermark = watermark  # the newest sample applied (0 before the first)

    def add_slot(self, if_index: int) -> int:
        slot = self.slot_of[if_index] = len(self.ifx)
        self.ifx.append(if_index)
        self.names.append("")
        self.speeds.append(0)
        return slot


DeviceState = RateState | dict[str, Any]


@dataclass
class BatchResult:
    """What a batch did: counts, late samples (with their device's watermark), windows to publish."""

    applied: int = 0
    duplicates: int = 0
    resets: int = 0
    wraps: int = 0
    late: list[tuple[TelemetrySample, int]] = field(default_factory=list)
    windows: dict[str, list[InterfaceRate]] = field(default_factory=dict)
    # Devices that went through the exact per-sample path (out of order, unusual values, or old state).
    exact_path: int = 0


# -- conversions to and from the reference dict form ------------------------------------------------


def to_legacy(state: RateState) -> dict[str, Any]:
    """The reference (dict) form of a compact state."""
    out: dict[str, Any] = {}
    ifaces = []
    for slot, if_index in enumerate(state.ifx):
        iface: dict[str, Any] = {"name": state.names[slot], "speed": state.speeds[slot] or None, "s": [], "w": {}}
        out[str(if_index)] = iface
        ifaces.append(iface)
    hist = state.hist
    for slot, ts, up, counters, has, bits, oper in zip(
        hist["slot"].tolist(),
        hist["ts"].tolist(),
        hist["up"].tolist(),
        hist["c"].tolist(),
        hist["has"].tolist(),
        hist["bits"].tolist(),
        hist["oper"].tolist(),
        strict=True,
    ):
        c = [v if h else None for v, h in zip(counters, has, strict=True)]
        ifaces[slot]["s"].append([ts, up, c[0], c[1], c[2], c[3], c[4], c[5], bits, c[6], c[7], oper])
    for slot, start, rev, dirty in zip(
        state.win["slot"].tolist(),
        state.win["start"].tolist(),
        state.win["rev"].tolist(),
        state.win["dirty"].tolist(),
        strict=True,
    ):
        ifaces[slot]["w"][str(start)] = {"r": rev, "d": dirty, "p": {}}
    for slot, ts, point in zip(
        state.pts["slot"].tolist(), state.pts["ts"].tolist(), state.pts["v"].tolist(), strict=True
    ):
        ifaces[slot]["w"][str(window_start(ts))]["p"][str(ts)] = point
    return out


def from_legacy(legacy: dict[str, Any]) -> RateState | None:
    """The compact form of a reference (dict) state, or None when a value does not fit it."""
    state = RateState()
    hist: dict[str, list[Any]] = {name: [] for name in ("slot", "ts", "up", "c", "has", "bits", "oper")}
    win: dict[str, list[Any]] = {name: [] for name in ("slot", "start", "rev", "dirty")}
    pts: dict[str, list[Any]] = {name: [] for name in ("slot", "ts", "v")}
    for key, iface in legacy.items():
        if int(key) > _INT64_MAX:
            return None
        slot = state.add_slot(int(key))
        state.names[slot] = iface.get("name") or ""
        state.speeds[slot] = iface.get("speed") or 0
        for vector in iface["s"]:
            counters = [_col(vector, col) for col in _VECTOR_COUNTERS]
            if vector[UPTIME] > _INT64_MAX or any(c is not None and (c < 0 or c >= COUNTER64) for c in counters):
                return None
            hist["slot"].append(slot)
            hist["ts"].append(vector[TS])
            hist["up"].append(vector[UPTIME])
            hist["c"].append([0 if c is None else c for c in counters])
            hist["has"].append([c is not None for c in counters])
            hist["bits"].append(vector[BITS])
            hist["oper"].append(_col(vector, OPER) or 0)
        for wkey, window in sorted(iface["w"].items(), key=lambda item: int(item[0])):
            win["slot"].append(slot)
            win["start"].append(int(wkey))
            win["rev"].append(window["r"])
            win["dirty"].append(bool(window["d"]))
            for tkey, point in sorted(window["p"].items(), key=lambda item: int(item[0])):
                pts["slot"].append(slot)
                pts["ts"].append(int(tkey))
                pts["v"].append([*point, *[0.0] * (_N_POINT - len(point))])
    state.hist, state.win, state.pts = (
        _table(dtype, columns) for dtype, columns in ((_HIST, hist), (_WIN, win), (_PTS, pts))
    )
    state.watermark = device_watermark(legacy)
    return state


def _table(dtype: np.dtype, columns: dict[str, list[Any]]) -> np.ndarray:
    table = np.zeros(len(columns["slot"]), dtype)
    if len(table):
        for name, values in columns.items():
            table[name] = np.array(values, dtype=dtype[name].base)
    return table


# -- the wire form ------------------------------------------------------------------------------------

_STATE_MAGIC = b"\x00RS1"  # a msgpack map (the reference form) never starts with a zero byte


class _StateMeta(msgspec.Struct, array_like=True):
    ifx: list[int]
    names: list[str]
    speeds: list[int]
    watermark: int
    n_hist: int
    n_pts: int
    n_win: int


_meta_encoder = msgspec.msgpack.Encoder()
_meta_decoder = msgspec.msgpack.Decoder(_StateMeta)
_legacy_decoder = msgspec.msgpack.Decoder(dict[str, Any])


def encode_state(state: DeviceState) -> bytes:
    """A device state as bytes for the changelog. The compact form is a small msgpack header and the
    three tables' raw bytes; afterwards the state's tables are views into the returned bytes, so a
    cached state holds no more memory than its changelog value."""
    if isinstance(state, dict):
        return _meta_encoder.encode(state)
    meta = _meta_encoder.encode(
        _StateMeta(
            state.ifx, state.names, state.speeds, state.watermark, len(state.hist), len(state.pts), len(state.win)
        )
    )
    tables = [np.ascontiguousarray(t) for t in (state.hist, state.pts, state.win)]
    pad = b"\x00" * (-len(meta) % 8)  # the tables start 8-aligned
    raw = b"".join((_STATE_MAGIC, len(meta).to_bytes(4, "little"), meta, pad, *(t.data for t in tables)))
    _bind_tables(state, raw, 8 + len(meta) + len(pad))
    return raw


def decode_state(raw: bytes) -> DeviceState:
    """A device state from its changelog bytes (either form; the reference form is converted when it fits)."""
    if raw[:4] != _STATE_MAGIC:
        legacy = _legacy_decoder.decode(raw)
        return from_legacy(legacy) or legacy
    size = int.from_bytes(raw[4:8], "little")
    meta = _meta_decoder.decode(memoryview(raw)[8 : 8 + size])
    state = RateState(meta.ifx, meta.names, meta.speeds, watermark=meta.watermark)
    state.hist = np.zeros(meta.n_hist, _HIST)
    state.pts = np.zeros(meta.n_pts, _PTS)
    state.win = np.zeros(meta.n_win, _WIN)
    _bind_tables(state, raw, 8 + size + (-size % 8))
    return state


def _bind_tables(state: RateState, raw: bytes, offset: int) -> None:
    """Point the state's tables (their lengths already right) at their bytes in ``raw`` (read-only views)."""
    for name, dtype in (("hist", _HIST), ("pts", _PTS), ("win", _WIN)):
        count = len(getattr(state, name))
        setattr(state, name, np.frombuffer(raw, dtype=dtype, count=count, offset=offset))
        offset += count * dtype.itemsize


# -- the batch ----------------------------------------------------------------------------------------


def apply_batch(
    states: MutableMapping[str, DeviceState],
    samples_by_device: Mapping[str, Sequence[TelemetrySample]],
    *,
    allowed_lateness_ms: int,
) -> BatchResult:
    """Fold a batch into the devices' states (replaced in ``states``) and emit the windows it closed.

    Equivalent, device by device, to ``apply_samples`` with the device's watermark followed by
    ``emit_windows`` with its new watermark (closed windows only)."""
    result = BatchResult()
    fast: list[tuple[str, RateState, Sequence[TelemetrySample]]] = []
    exact: list[tuple[str, Sequence[TelemetrySample]]] = []
    for device, samples in samples_by_device.items():
        state = states.get(device)
        if state is None:
            state = states[device] = RateState()
        if isinstance(state, RateState):
            fast.append((device, state, samples))
        else:
            exact.append((device, samples))
    for _, samples in exact:  # the vector path checks its own, before changing anything
        _check_counters(samples)
    if fast:
        fallback = _apply_fast(fast, allowed_lateness_ms, result)
        exact.extend((device, samples_by_device[device]) for device in fallback)
    for device, samples in exact:
        _apply_exact(states, device, samples, allowed_lateness_ms, result)
    return result


def flush_windows(
    states: MutableMapping[str, DeviceState],
    devices: Iterable[str],
    *,
    allowed_lateness_ms: int,
    flush_open: bool = True,
) -> dict[str, list[InterfaceRate]]:
    """``emit_windows`` for these devices at their own watermarks (by default with the open windows)."""
    out: dict[str, list[InterfaceRate]] = {}
    compact: list[tuple[str, RateState]] = []
    for device in devices:
        state = states.get(device)
        if state is None:
            continue
        if isinstance(state, RateState):
            compact.append((device, state))
        else:
            out[device] = emit_windows(
                device,
                state,
                watermark_ms=device_watermark(state),
                allowed_lateness_ms=allowed_lateness_ms,
                flush_open=flush_open,
            )
    if compact:
        frame = _Frame([device for device, _ in compact], [state for _, state in compact])
        emitted = _emit(frame, allowed_lateness_ms, flush_open)
        # Only states whose windows changed are replaced (as copies: the caller writes back only
        # those that emitted, so the others must not hold on to this frame's tables).
        frame.store(only=frame.changed, copy=True)
        out.update(emitted)
    return out


def state_watermark(state: DeviceState) -> int:
    """``device_watermark`` of either form."""
    return state.watermark if isinstance(state, RateState) else device_watermark(state)


def _apply_exact(
    states: MutableMapping[str, DeviceState],
    device: str,
    samples: Sequence[TelemetrySample],
    lateness: int,
    result: BatchResult,
) -> None:
    """The reference functions, on the device's dict form; back to the compact form when it fits."""
    state = states[device]
    legacy = to_legacy(state) if isinstance(state, RateState) else state
    watermark = device_watermark(legacy)
    stats = apply_samples(legacy, samples, watermark_ms=watermark, allowed_lateness_ms=lateness)
    result.applied += stats.applied
    result.duplicates += stats.duplicates
    result.resets += stats.resets
    result.wraps += stats.wraps
    result.late.extend((sample, watermark) for sample in stats.late)
    result.exact_path += 1
    windows = emit_windows(
        device, legacy, watermark_ms=device_watermark(legacy), allowed_lateness_ms=lateness, flush_open=False
    )
    if windows:
        result.windows[device] = windows
    states[device] = from_legacy(legacy) or legacy


class _Frame:
    """The states of several devices concatenated: global slot = the device's base + its slot."""

    def __init__(self, devices: list[str], states: list[RateState]) -> None:
        self.devices = devices
        self.states = states
        nslots = np.array([len(s.ifx) for s in states], dtype=np.int64)
        self.bases = np.zeros(len(states), dtype=np.int64)
        np.cumsum(nslots[:-1], out=self.bases[1:])
        self.ends = self.bases + nslots
        self.dev_of_g = np.repeat(np.arange(len(states)), nslots)
        self.hist, self.hg = self._concat([s.hist for s in states], _HIST)
        self.pts, self.pg = self._concat([s.pts for s in states], _PTS)
        self.win, self.wg = self._concat([s.win for s in states], _WIN)
        self.watermarks = np.array([s.watermark for s in states], dtype=np.int64)
        self.changed = np.zeros(len(states), dtype=bool)  # set by _emit: devices whose windows changed
        self.kept: np.ndarray | None = None  # set by select: the devices still in the frame

    def _concat(self, tables: list[np.ndarray], dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
        if not tables:
            return np.zeros(0, dtype), np.zeros(0, dtype=np.int64)
        table = _cat(dtype, tables)
        sizes = np.array([len(t) for t in tables], dtype=np.int64)
        return table, table["slot"].astype(np.int64) + np.repeat(self.bases, sizes)

    def select(self, keep_devices: np.ndarray) -> None:
        """Drop the devices not in ``keep_devices`` (a mask) from the concatenated tables."""
        for table, gslot in (("hist", "hg"), ("pts", "pg"), ("win", "wg")):
            mask = keep_devices[self.dev_of_g[getattr(self, gslot)]]
            setattr(self, table, _rows(getattr(self, table), mask))
            setattr(self, gslot, getattr(self, gslot)[mask])
        self.kept = keep_devices

    def store(self, only: np.ndarray | None = None, copy: bool = False) -> None:
        """Split the tables back into the devices' states (each sorted by global slot): all of them, or
        those in ``only``; as views into the frame's tables (``encode_state`` rebinds them), or copies."""
        kept = self.kept
        if only is not None:
            kept = only if kept is None else kept & only
        bounds = [
            (np.searchsorted(gslot, self.bases).tolist(), np.searchsorted(gslot, self.ends).tolist())
            for gslot in (self.hg, self.pg, self.wg)
        ]
        (hs, he), (ps, pe), (ws, we) = bounds
        watermarks = self.watermarks.tolist()
        for i, state in enumerate(self.states):
            if kept is not None and not kept[i]:
                continue
            state.hist = self.hist[hs[i] : he[i]]
            state.pts = self.pts[ps[i] : pe[i]]
            state.win = self.win[ws[i] : we[i]]
            if copy:
                state.hist, state.pts, state.win = state.hist.copy(), state.pts.copy(), state.win.copy()
            state.watermark = watermarks[i]


def _column(values: list[Any], dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """A column of optional numbers as ``dtype`` (None -> 0) and its presence mask."""
    if values and values[0] is None and values.count(None) == len(values):  # a counter the devices do not report
        return np.zeros(len(values), dtype=dtype), np.zeros(len(values), dtype=bool)
    try:
        return np.array(values, dtype=dtype), np.ones(len(values), dtype=bool)
    except TypeError:  # some are None
        present = np.array([v is not None for v in values], dtype=bool)
        objects = np.array(values, dtype=object)
        objects[~present] = 0
        return objects.astype(dtype), present


def _field(samples: Sequence[Any], name: str, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """Field ``name`` of every sample as :func:`_column` makes it: read straight into the array when no value
    is None (about 15 ns a value less than a list first, then the array), else through a list."""
    try:
        return np.fromiter(map(attrgetter(name), samples), dtype, len(samples)), np.ones(len(samples), dtype=bool)
    except TypeError:  # a None (a float column reads it as NaN, with no error)
        return _column(list(map(attrgetter(name), samples)), dtype)


def _uint64_or_flag(samples: Sequence[Any], name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Like :func:`_field` for uint64, for a field with no upper bound: (values, present, too large)."""
    try:
        column, present = _field(samples, name, np.uint64)
        return column, present, np.zeros(len(samples), dtype=bool)
    except OverflowError:
        values: list[int | None] = list(map(attrgetter(name), samples))
        big = np.array([v is not None and v > _UINT64_MAX for v in values], dtype=bool)
        column, present = _column([None if v is not None and v > _UINT64_MAX else v for v in values], np.uint64)
        return column, present | big, big


_sample_fields_of = attrgetter("ts_ms", "counter_bits", "oper_status", "uptime_ticks", "speed_bps")


def _sample_columns(
    samples: list[TelemetrySample],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The samples' other numbers: time (int64), counter width (uint8), sysUpTime as :func:`_uint64_or_flag`
    gives it (values, present, too large), oper status (uint8, None -> 0) and speed (float64, None -> NaN).
    In one pass when none is None and all fit uint64, as :func:`_counter_columns` reads the counters."""
    n = len(samples)
    try:
        both = np.fromiter(chain.from_iterable(map(_sample_fields_of, samples)), np.uint64, n * 5).reshape(n, 5)
    except (TypeError, OverflowError):  # a None, or a number past 64 bits: field by field
        uptime, has_uptime, huge = _uint64_or_flag(samples, "uptime_ticks")
        return (
            np.fromiter(map(attrgetter("ts_ms"), samples), np.int64, n),
            np.fromiter(map(attrgetter("counter_bits"), samples), np.uint8, n),
            uptime,
            has_uptime,
            huge,
            _field(samples, "oper_status", np.uint8)[0],
            _field(samples, "speed_bps", np.float64)[0],
        )
    none = np.zeros(n, dtype=bool)
    return (
        both[:, 0].astype(np.int64),  # (EpochMs: at most year 3000)
        both[:, 1].astype(np.uint8),  # (32 or 64)
        both[:, 3].copy(),
        ~none,
        none,
        both[:, 2].astype(np.uint8),  # (1 to 7)
        both[:, 4].astype(np.float64),  # rounded as float(int) rounds
    )


class CounterOverflow(ValueError):
    """A sample's counter is above 2**64 - 1: samples decoded without ``TelemetrySample``'s own check
    (:func:`models.codec.unchecked_struct`) meet it here, before any state has changed."""


# The counters the state holds, in its order; the packets are unicast here, non-unicast added after.
_COUNTER_FIELDS = (
    "in_octets",
    "out_octets",
    "in_errors",
    "out_errors",
    "in_discards",
    "out_discards",
    "in_ucast_pkts",
    "out_ucast_pkts",
)
_counters_of = attrgetter(*_COUNTER_FIELDS)


def _counter_columns(samples: list[TelemetrySample]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The eight counters of the state (octets, errors, discards, then packets as unicast + non-unicast)
    as uint64 with their presence, and the rows whose packet sum passes 2**64 (the exact path's).

    When every sample has all eight (the usual poll), they are read in one pass, each sample's eight
    together straight into the array's row: 35 ns a value, against 55 reading the samples once per
    counter (every pass over a large batch's objects misses the caches again)."""
    n = len(samples)
    bad_row = np.zeros(n, dtype=bool)
    try:
        try:
            counters = np.fromiter(chain.from_iterable(map(_counters_of, samples)), np.uint64, n * 8).reshape(n, 8)
            present = np.ones((n, 8), dtype=bool)
        except TypeError:  # a counter is None somewhere: one counter at a time
            counters = np.zeros((n, 8), dtype=np.uint64)
            present = np.zeros((n, 8), dtype=bool)
            for k, name in enumerate(_COUNTER_FIELDS):
                counters[:, k], present[:, k] = _field(samples, name, np.uint64)
        for k, name in ((6, "in_nucast_pkts"), (7, "out_nucast_pkts")):
            unicast = counters[:, k]
            total = unicast + _field(samples, name, np.uint64)[0]
            bad_row |= total < unicast  # past 2**64: the exact path sums Python ints
            counters[:, k] = total
    except OverflowError:  # a conversion to uint64 met a larger integer
        raise CounterOverflow("a counter is above 2**64 - 1 (a 64-bit counter's range)") from None
    return counters, present, bad_row


def _check_counters(samples: Sequence[TelemetrySample]) -> None:
    """:class:`CounterOverflow` when a counter of one of ``samples`` is above 2**64 - 1 (the exact path's
    samples: the vector path finds it converting its columns), by ``TelemetrySample``'s own check."""
    for sample in samples:
        try:
            TelemetrySample.__post_init__(sample)  # (it reads the fields; any struct with them will do)
        except ValueError as exc:
            raise CounterOverflow(f"sample {sample.id}: {exc}") from None


def _ffill_index(valid: np.ndarray) -> np.ndarray:
    """For each position, the last position at or before it where ``valid`` holds (0 when none)."""
    idx = np.where(valid, np.arange(len(valid)), 0)
    np.maximum.accumulate(idx, out=idx)
    return idx


def _apply_fast(
    group: list[tuple[str, RateState, Sequence[TelemetrySample]]], lateness: int, result: BatchResult
) -> list[str]:
    """The vector path for these devices; returns the devices it left to the exact path."""
    ndev = len(group)
    kept: list[TelemetrySample] = [sample for _, _, samples in group for sample in samples]
    # First, before any state changes: the counters (CounterOverflow when one is above 2**64 - 1).
    counters, present, bad_row = _counter_columns(kept)
    counts = np.array([len(samples) for _, _, samples in group], dtype=np.int64)
    row_dev = np.repeat(np.arange(ndev), counts)
    ts, bits, uptime_u, has_uptime, huge, oper, speed = _sample_columns(kept)
    # Older than the device's watermark minus the lateness (the watermark before this batch): late.
    watermarks = [state.watermark for _, state, _ in group]
    is_late = ts < (np.array(watermarks, dtype=np.int64) - lateness)[row_dev]
    late: list[list[tuple[TelemetrySample, int]]] = [[] for _ in range(ndev)]
    if is_late.any():
        for r in np.flatnonzero(is_late).tolist():
            di = int(row_dev[r])
            late[di].append((kept[r], watermarks[di]))
        keep = ~is_late
        kept = [sample for sample, k in zip(kept, keep.tolist(), strict=True) if k]
        row_dev, ts, bits, oper, speed = row_dev[keep], ts[keep], bits[keep], oper[keep], speed[keep]
        uptime_u, has_uptime, huge = uptime_u[keep], has_uptime[keep], huge[keep]
        counters, present, bad_row = counters[keep], present[keep], bad_row[keep]
        counts = np.bincount(row_dev, minlength=ndev)
    # Each sample's interface slot in its device's state (new interfaces get one, in order of arrival).
    if_indexes = [sample.if_index for sample in kept]
    slots: list[int] = []
    odd_index = np.zeros(ndev, dtype=bool)
    start = 0
    for di, count in enumerate(counts.tolist()):
        state = group[di][1]
        mine = if_indexes[start : start + count]
        part = [*map(state.slot_of.get, mine, repeat(-1))]
        if -1 in part:  # a device's first samples: one new slot per new interface, then look them up again
            for if_index in dict.fromkeys(i for i, slot in zip(mine, part, strict=True) if slot == -1):
                state.add_slot(if_index)
                odd_index[di] |= if_index > _INT64_MAX  # the compact form holds it as int64
            part = [*map(state.slot_of.__getitem__, mine)]
        slots += part
        start += count
    frame = _Frame([device for device, _, _ in group], [state for _, state, _ in group])
    n = len(kept)
    g = frame.bases[row_dev] + np.array(slots, dtype=np.int64)
    bad_row |= huge | (uptime_u > np.uint64(_INT64_MAX))
    uptime = np.where(has_uptime, uptime_u.astype(np.int64), -1)
    speed[speed == 0] = math.nan  # no speed: no plausibility limit

    # Each global slot's newest retained sample.
    nglobal = int(frame.ends[-1]) if ndev else 0
    last_ts = np.full(nglobal, -1, dtype=np.int64)
    hist, hg = frame.hist, frame.hg
    if len(hist):
        is_last = np.r_[hg[1:] != hg[:-1], True]
        last_ts[hg[is_last]] = hist["ts"][is_last]

    # Devices the vector path cannot take exactly.
    bad_dev = odd_index.copy()
    bad_dev[row_dev[bad_row]] = True
    older = ts <= last_ts[g]
    if older.any():
        # Not newer than the interface's newest: fine when it is a duplicate of a retained sample.
        rows = np.flatnonzero(older)
        involved = np.isin(hg, g[rows])
        retained = set(zip(hg[involved].tolist(), hist["ts"][involved].tolist(), strict=True))
        for r, gs, t in zip(rows.tolist(), g[rows].tolist(), ts[rows].tolist(), strict=True):
            if (gs, t) not in retained:
                bad_dev[row_dev[r]] = True
    is32 = bits == 32
    if is32.any():
        # 32-bit counters read above 2**32 (or packet sums above 2**33): garbage the exact path keeps as it is.
        def big(c: np.ndarray, has: np.ndarray) -> np.ndarray:
            return (((c[:, :6] >= COUNTER32) & has[:, :6]).any(axis=1)) | (
                ((c[:, 6:] >= 2 * COUNTER32) & has[:, 6:]).any(axis=1)
            )

        dev32 = np.zeros(ndev, dtype=bool)
        dev32[row_dev[is32]] = True
        dev_big = np.zeros(ndev, dtype=bool)
        dev_big[row_dev[big(counters, present)]] = True
        if len(hist):
            dev_big[frame.dev_of_g[hg[big(hist["c"], hist["has"])]]] = True
        bad_dev |= dev32 & dev_big
    fallback: list[str] = []
    if bad_dev.any():
        fallback = [group[i][0] for i in np.flatnonzero(bad_dev).tolist()]
        keep = ~bad_dev[row_dev]
        kept = [s for s, k in zip(kept, keep.tolist(), strict=True) if k]
        row_dev, g, ts, counters, present = row_dev[keep], g[keep], ts[keep], counters[keep], present[keep]
        uptime, bits, oper, speed, older = uptime[keep], bits[keep], oper[keep], speed[keep], older[keep]
        frame.select(~bad_dev)
        hist, hg = frame.hist, frame.hg
        n = len(kept)
    for di in range(ndev):
        if not bad_dev[di]:
            result.late.extend(late[di])

    # Processing order: by interface, then time (ties: arrival), like the reference's stable sort.
    order = np.lexsort((ts, g))
    g_s, ts_s = g[order], ts[order]
    first = np.r_[True, g_s[1:] != g_s[:-1]] if n else np.zeros(0, dtype=bool)
    dup_in_batch = ~first & np.r_[False, ts_s[1:] == ts_s[:-1]] if n else first
    applied = ~older[order] & ~dup_in_batch
    result.applied += int(applied.sum())
    result.duplicates += n - int(applied.sum())

    # Names and speeds: the last non-empty value in processing order wins; a point's plausibility
    # limit uses the speed known when it is computed (the newest non-zero one so far).
    state_speed = np.array([v or 0 for st in frame.states for v in st.speeds], dtype=np.float64)
    state_speed[state_speed == 0] = math.nan
    spd_s = speed[order]
    own_speed = ~np.isnan(spd_s)
    seeded = spd_s.copy()
    seeded[first & ~own_speed] = state_speed[g_s[first & ~own_speed]]
    speed_src = _ffill_index(own_speed | first)
    speed_eff = seeded[speed_src]
    if n:
        last = np.r_[g_s[1:] != g_s[:-1], True]
        g_last = g_s[last]
        src = speed_src[last]
        # Compared as floats first; equal floats above 2**53 may still be different integers.
        differs = own_speed[src] & ((spd_s[src] != state_speed[g_last]) | (spd_s[src] > 2.0**53))
        for gs, j in zip(g_last[differs].tolist(), order[src[differs]].tolist(), strict=True):
            di = int(frame.dev_of_g[gs])
            frame.states[di].speeds[gs - int(frame.bases[di])] = kept[j].speed_bps or 0
        names = np.fromiter(map(attrgetter("if_name"), kept), object, n)
        named = np.not_equal(names, "")[order]
        name_src = _ffill_index(named | first)[last]
        state_names = np.array([nm for st in frame.states for nm in st.names], dtype=object)
        new_names = names[order[name_src]]
        differs = named[name_src] & np.not_equal(new_names, state_names[g_last])
        for gs, name in zip(g_last[differs].tolist(), new_names[differs].tolist(), strict=True):
            di = int(frame.dev_of_g[gs])
            frame.states[di].names[gs - int(frame.bases[di])] = name

    # The new samples join the retained ones; each closes the interval from its predecessor.
    rows = order[applied]
    new = np.zeros(len(rows), dtype=_HIST)
    new_g = g[rows]
    new["slot"] = new_g - frame.bases[row_dev[rows]]
    new["ts"] = ts[rows]
    new["up"] = uptime[rows]
    new["c"] = counters[rows]
    new["has"] = present[rows]
    new["bits"] = bits[rows]
    new["oper"] = oper[rows]
    chain, chain_g, is_new = _merged(hist, hg, new, new_g)
    chain_speed = np.full(len(chain), math.nan)
    chain_speed[is_new] = speed_eff[applied]  # new rows keep their order in the merge
    pair = np.flatnonzero(is_new[1:] & (chain_g[1:] == chain_g[:-1])) + 1
    values, ok, wrapped = _interval_points(_rows(chain, pair - 1), _rows(chain, pair), chain_speed[pair])
    result.resets += int((~ok).sum())
    result.wraps += int(wrapped.sum())

    # Retained samples of the interfaces that got one: everything from the cutoff on, and one before.
    cutoff_g = (frame.watermarks - lateness)[frame.dev_of_g]
    touched = np.zeros(nglobal, dtype=bool)
    touched[new_g] = True
    if len(chain):
        at_or_after = chain["ts"] >= cutoff_g[chain_g]
        same_next = chain_g[1:] == chain_g[:-1]
        keep_rows = (
            ~touched[chain_g] | at_or_after | np.r_[same_next & at_or_after[1:], False] | np.r_[~same_next, True]
        )
        frame.hist, frame.hg = _rows(chain, keep_rows), chain_g[keep_rows]
    if len(new):
        np.maximum.at(frame.watermarks, row_dev[rows], new["ts"])

    # New points go into their windows (created dirty, or made dirty).
    good = pair[ok]
    pts_new = np.zeros(len(good), dtype=_PTS)
    pts_new["slot"] = chain["slot"][good]
    pts_new["ts"] = chain["ts"][good]
    pts_new["v"] = values[ok]
    pts_g = chain_g[good]
    if len(pts_new):
        frame.pts, frame.pg, _ = _merged(frame.pts, frame.pg, pts_new, pts_g)
        point_keys = (pts_g << _MINUTE_BITS) + pts_new["ts"] // WINDOW_MS
        if bool(np.all(point_keys[1:] >= point_keys[:-1])):  # the usual case: they come in table order
            new_keys = point_keys[np.r_[True, point_keys[1:] != point_keys[:-1]]]
        else:
            new_keys = np.unique(point_keys)
        win_new = np.zeros(len(new_keys), dtype=_WIN)
        win_g = new_keys >> _MINUTE_BITS
        win_new["slot"] = win_g - frame.bases[frame.dev_of_g[win_g]]
        win_new["start"] = (new_keys & ((1 << _MINUTE_BITS) - 1)) * WINDOW_MS
        win_new["dirty"] = True
        all_win = _cat(_WIN, [frame.win, win_new])
        all_wg = np.concatenate([frame.wg, win_g])
        keys = (all_wg << _MINUTE_BITS) + all_win["start"] // WINDOW_MS
        worder = np.argsort(keys, kind="stable")  # an existing window sorts before its new twin
        all_win, all_wg, keys = _rows(all_win, worder), all_wg[worder], keys[worder]
        twin = keys[1:] == keys[:-1]
        all_win["dirty"][:-1] |= twin
        keep_win = np.r_[True, ~twin]
        frame.win, frame.wg = _rows(all_win, keep_win), all_wg[keep_win]

    result.windows.update(_emit(frame, lateness, flush_open=False))
    frame.store()
    return fallback


def _gt_exact(d: np.ndarray, limit: np.ndarray) -> np.ndarray:
    """``d > limit`` as Python compares an int with a float (exactly), False where limit is NaN."""
    floor = np.floor(limit)
    usable = floor < float(COUNTER64)  # False for NaN too
    bound = np.where(usable, floor, 0.0).astype(np.uint64)
    return usable & (d > bound)


def _interval_points(prev: np.ndarray, cur: np.ndarray, speed: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`interval_point` over arrays of pairs: (points, not a reset, wrapped and not a reset).

    Counters are taken counter by counter, so the pairs' counters are first transposed to one
    contiguous row per counter (a column of the rows' ``(n, 8)`` block is read with a 64-byte stride,
    a cache line a value, and each counter is read several times); the points are built the same way,
    one row per point value, and returned transposed."""
    n = len(cur)
    values = np.zeros((_N_POINT, n), dtype=np.float64)
    if not n:
        return values.T, np.zeros(0, dtype=bool), np.zeros(0, dtype=bool)
    dt_s = (cur["ts"] - prev["ts"]) / 1000.0
    values[0] = dt_s
    ok = ~((cur["up"] >= 0) & (prev["up"] >= 0) & (cur["up"] < prev["up"]))
    bits32 = cur["bits"] == 32
    limit = speed * PLAUSIBLE_SPEED_FACTOR * dt_s / 8
    p, c = np.ascontiguousarray(prev["c"].T), np.ascontiguousarray(cur["c"].T)
    both = np.ascontiguousarray((prev["has"] & cur["has"]).T)
    went_down = (c < p) & both
    delta = c - p  # modulo 2**64: exact whenever the true delta is one
    wrapped = np.zeros(n, dtype=bool)
    for k in (0, 1):  # octets
        down = went_down[k]
        reset64 = down & ~bits32 & (p[k] < _TOP_BIT)
        d = np.where(down & bits32, delta[k] + _U64_WRAP32, delta[k])
        ok &= ~reset64 & ~(both[k] & _gt_exact(d, limit))
        wrapped |= down & ~reset64
        values[1 + k] = np.where(both[k], d.astype(np.float64) * 8.0, 0.0)
    for k in (2, 3, 4, 5):  # errors and discards: Counter32 unless the previous read says otherwise
        down = went_down[k]
        as32 = bits32 | (p[k] < _U64_WRAP32)
        d = np.where(down & as32, delta[k] + _U64_WRAP32, delta[k])
        d = np.where(down & ~as32 & (p[k] < _TOP_BIT), np.uint64(0), d)
        values[1 + k] = np.where(both[k], d.astype(np.float64), 0.0)
    for k, slot in ((6, P_IN_PKTS), (7, P_OUT_PKTS)):
        down = went_down[k]
        # 32-bit sums stay below 2**33 (checked before): signed arithmetic, as the reference's ints.
        d32 = c[k].astype(np.int64) - p[k].astype(np.int64)
        d32 = np.where(d32 < 0, d32 + COUNTER32, d32).astype(np.float64)
        d64 = np.where(down & (p[k] < _TOP_BIT), np.uint64(0), delta[k]).astype(np.float64)
        values[slot] = np.where(both[k], np.where(bits32, d32, d64), 0.0)
    p_oper, c_oper = prev["oper"], cur["oper"]
    values[P_OPER] = c_oper
    values[P_OPER_CHANGED] = (p_oper != 0) & (c_oper != 0) & (p_oper != c_oper)
    return values.T, ok, wrapped & ok


def _emit(frame: _Frame, lateness: int, flush_open: bool) -> dict[str, list[InterfaceRate]]:
    """``emit_windows`` over the frame's windows (each device at its own watermark); updates the frame."""
    win, wg, pts, pg = frame.win, frame.wg, frame.pts, frame.pg
    out: dict[str, list[InterfaceRate]] = {}
    frame.changed = np.zeros(len(frame.states), dtype=bool)
    if not len(win):
        return out
    wkeys = (wg << _MINUTE_BITS) + win["start"] // WINDOW_MS
    pkeys = (pg << _MINUTE_BITS) + pts["ts"] // WINDOW_MS
    left = np.searchsorted(pkeys, wkeys, "left")
    count = np.searchsorted(pkeys, wkeys, "right") - left
    closed = win["start"] + WINDOW_MS + lateness <= frame.watermarks[frame.dev_of_g[wg]]
    emit = (closed | flush_open) & win["dirty"] & (count > 0)
    frame.changed[frame.dev_of_g[wg[emit | closed]]] = True
    if emit.any():
        win = win.copy()
        win["rev"] += emit
        win["dirty"] &= ~emit
        e = np.flatnonzero(emit)
        device_index, rates = _aggregate(frame, _rows(win, e), wg[e], left[e], count[e])
        # The windows follow their global slots (the table's order), so each device's come together.
        if bool(np.all(device_index[1:] >= device_index[:-1])):
            bounds = (np.flatnonzero(device_index[1:] != device_index[:-1]) + 1).tolist()
            for first, end in zip([0, *bounds], [*bounds, len(rates)], strict=True):
                out[frame.devices[int(device_index[first])]] = rates[first:end]
        else:
            for di, rate in zip(device_index.tolist(), rates, strict=True):
                out.setdefault(frame.devices[di], []).append(rate)
    if closed.any():
        # Closed windows leave the state with their points (each point's window is in the table).
        keep_pts = ~closed[np.searchsorted(wkeys, pkeys)]
        frame.pts, frame.pg = _rows(pts, keep_pts), pg[keep_pts]
        win, wg = _rows(win, ~closed), wg[~closed]
    frame.win, frame.wg = win, wg
    return out


def _aggregate(
    frame: _Frame, win: np.ndarray, wg: np.ndarray, left: np.ndarray, count: np.ndarray
) -> tuple[np.ndarray, list[InterfaceRate]]:
    """:func:`aggregate_window` for many windows: the same sums, in the same (time) order. Returns each
    window's device (its index in the frame) and the windows.

    Every field is first made a column (numbers converted in numpy, the per-window lookups in one
    comprehension each), then the windows are built by one comprehension over the columns: building
    them one at a time, with the lookups and conversions in the loop, took about 4 us a window."""
    width = int(count.max())
    k = np.arange(width)
    valid = k[None, :] < count[:, None]
    idx = np.where(valid, left[:, None] + k[None, :], left[:, None])
    v = np.where(valid[:, :, None], _rows(frame.pts, idx.reshape(-1))["v"].reshape(*idx.shape, _N_POINT), 0.0)
    sums = v[:, 0, :].copy()
    for j in range(1, width):  # one addition at a time, as Python's sum
        sums += v[:, j, :]
    dt = np.where(valid, v[:, :, 0], 1.0)
    rank = (count - 1) * 0.95
    lo = np.floor(rank).astype(np.int64)
    hi = np.ceil(rank).astype(np.int64)
    rows = np.arange(len(win))

    def stats(col: int) -> tuple[list[float], list[float]]:
        rates = v[:, :, col] / dt
        top = np.where(valid, rates, -np.inf).max(axis=1)
        ordered = np.sort(np.where(valid, rates, np.inf), axis=1)
        low, high = ordered[rows, lo], ordered[rows, hi]
        return top.tolist(), (low + (high - low) * (rank - lo)).tolist()

    in_max, in_p95 = stats(1)
    out_max, out_p95 = stats(2)
    total = sums[:, 0]
    in_avg, out_avg = sums[:, 1] / total, sums[:, 2] / total
    in_pps = (sums[:, P_IN_PKTS] / total).tolist()
    out_pps = (sums[:, P_OUT_PKTS] / total).tolist()
    # Counts as int() makes them of the float sums (exact below 2**63, where a cast to int64 is too).
    counted = sums[:, [3, 4, 5, 6, P_OPER_CHANGED]]
    if bool((counted < 2.0**63).all()):
        in_err, out_err, in_disc, out_disc, oper_changes = counted.T.astype(np.int64).tolist()
    else:
        in_err, out_err, in_disc, out_disc, oper_changes = ([int(x) for x in col] for col in counted.T.tolist())
    last_oper = v[rows, count - 1, P_OPER].astype(np.int64)
    oper = last_oper.astype(object)
    oper[last_oper == 0] = None
    device_index = frame.dev_of_g[wg]
    states, devices = frame.states, frame.devices
    where = list(zip(device_index.tolist(), (wg - frame.bases[device_index]).tolist(), strict=True))
    device = [devices[di] for di, _ in where]
    if_index = [states[di].ifx[slot] for di, slot in where]
    name = [states[di].names[slot] or "" for di, slot in where]
    speed = [states[di].speeds[slot] or None for di, slot in where]
    # in_avg / speed * 100 as Python computes it (the int speed rounded to a float first), None without one.
    speed_f = np.array([s or math.nan for s in speed], dtype=np.float64)
    has_speed = ~np.isnan(speed_f)
    in_util, out_util = (in_avg / speed_f * 100).astype(object), (out_avg / speed_f * 100).astype(object)
    in_util[~has_speed] = None
    out_util[~has_speed] = None
    start = win["start"].tolist()
    ids = [f"{d}/{i}/{s}" for d, i, s in zip(device, if_index, start, strict=True)]  # InterfaceRate.make_id
    columns = (
        ids, device, if_index, start, name, count.tolist(), in_avg.tolist(), in_max, in_p95, out_avg.tolist(),
        out_max, out_p95, in_util.tolist(), out_util.tolist(), in_err, out_err, in_disc, out_disc, speed,
        in_pps, out_pps, oper_changes, oper.tolist(), win["rev"].tolist(),
    )  # fmt: skip
    rates = [
        InterfaceRate(
            id=i,
            device=d,
            if_index=x,
            window_start_ms=s,
            if_name=nm,
            samples=n,
            in_bps_avg=ia,
            in_bps_max=imx,
            in_bps_p95=ip,
            out_bps_avg=oa,
            out_bps_max=omx,
            out_bps_p95=op,
            in_util_pct_avg=iu,
            out_util_pct_avg=ou,
            in_errors=ie,
            out_errors=oe,
            in_discards=idc,
            out_discards=odc,
            speed_bps=sp,
            in_pps_avg=ipp,
            out_pps_avg=opp,
            oper_status_changes=oc,
            oper_status=os_,
            revision=rv,
        )
        for (
            i, d, x, s, nm, n, ia, imx, ip, oa, omx, op, iu, ou, ie, oe, idc, odc, sp, ipp, opp, oc, os_, rv
        ) in zip(*columns, strict=True)
    ]  # fmt: skip
    return device_index, rates


__all__ = [
    "WINDOW_MS",
    "ApplyStats",
    "BatchResult",
    "DeviceState",
    "RateState",
    "aggregate_window",
    "apply_batch",
    "apply_samples",
    "counter_delta",
    "decode_state",
    "device_watermark",
    "emit_windows",
    "encode_state",
    "flush_windows",
    "from_legacy",
    "interval_point",
    "state_watermark",
    "to_legacy",
    "window_start",
]
