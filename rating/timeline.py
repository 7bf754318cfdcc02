"""Vectorised tariff time: band segments and allowance periods for many records at once.

Band edges come from :meth:`rating.calendar.BandSchedule.day_intervals` (the same edges the
reference walks), laid end to end for every local day the batch touches, so a record is located
with one binary search and split only when it crosses an edge.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from rating.calendar import DAY_MS, BandSchedule, LocalClock

_EPOCH_DAY = dt.date(1970, 1, 1)


@dataclass(frozen=True)
class BandTimeline:
    """Contiguous-where-needed band intervals, sorted by start; equal neighbours merged."""

    starts: np.ndarray
    ends: np.ndarray
    bands: np.ndarray


def _days_touched(start_ms: np.ndarray, end_ms: np.ndarray) -> np.ndarray:
    """UTC day numbers covering every record, widened by a day each side for the local offset."""
    first = start_ms // DAY_MS
    last = end_ms // DAY_MS
    days = [first, last]
    long = np.flatnonzero(last - first > 1)
    if long.size:  # records longer than a day need every day in between
        lengths = last[long] - first[long] + 1
        offsets = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        days.append(np.repeat(first[long], lengths) + offsets)
    unique = np.unique(np.concatenate(days))
    return np.unique(np.concatenate([unique - 1, unique, unique + 1]))


def band_timeline(schedule: BandSchedule, start_ms: np.ndarray, end_ms: np.ndarray) -> BandTimeline:
    starts: list[int] = []
    ends: list[int] = []
    bands: list[int] = []
    for day_number in _days_touched(start_ms, end_ms).tolist():
        for start, end, band in schedule.day_intervals(_EPOCH_DAY + dt.timedelta(days=day_number)):
            starts.append(start)
            ends.append(end)
            bands.append(band)
    s, e, b = (np.array(x, dtype=np.int64) for x in (starts, ends, bands))
    # merge an interval into the previous one when they touch and share the band (midnight, same band)
    keep = np.ones(s.shape[0], dtype=bool)
    keep[1:] = ~((s[1:] == e[:-1]) & (b[1:] == b[:-1]))
    group_last = np.append(np.flatnonzero(keep)[1:] - 1, s.shape[0] - 1)
    return BandTimeline(s[keep], e[group_last], b[keep])


@dataclass(frozen=True)
class Segments:
    """Segments of many records, sorted by row: band and end instant; ``first[row]`` is its first segment."""

    row: np.ndarray
    band: np.ndarray
    end: np.ndarray
    first: np.ndarray

    @property
    def single(self) -> bool:
        return self.row.shape[0] == self.first.shape[0]


def band_segments(schedule: BandSchedule, start_ms: np.ndarray, end_ms: np.ndarray, split_at_edges: bool) -> Segments:
    """Locate every record on the band timeline; with ``split_at_edges`` a crossing record gets one
    segment per band interval it overlaps, else one segment at the band of its start."""
    count = start_ms.shape[0]
    rows = np.arange(count, dtype=np.int64)
    if count == 0:
        return Segments(rows, rows, rows, rows)
    timeline = band_timeline(schedule, start_ms, end_ms)
    first_interval = np.searchsorted(timeline.starts, start_ms, side="right") - 1
    if not split_at_edges:
        return Segments(rows, timeline.bands[first_interval], end_ms, rows)
    last_instant = np.where(end_ms > start_ms, end_ms - 1, start_ms)
    last_interval = np.searchsorted(timeline.starts, last_instant, side="right") - 1
    counts = last_interval - first_interval + 1
    if int(counts.max()) == 1:
        return Segments(rows, timeline.bands[first_interval], end_ms, rows)
    first_seg = np.cumsum(counts) - counts
    seg_row = np.repeat(rows, counts)
    interval = first_interval[seg_row] + (np.arange(seg_row.shape[0], dtype=np.int64) - first_seg[seg_row])
    seg_end = np.minimum(timeline.ends[interval], end_ms[seg_row])
    return Segments(seg_row, timeline.bands[interval], seg_end, first_seg)


def apportion_many(billed: np.ndarray, start_ms: np.ndarray, end_ms: np.ndarray, segments: Segments) -> np.ndarray:
    """Share each record's billed units across its segments by time (cumulative floors), exactly."""
    if segments.single:
        return billed.copy()
    row = segments.row
    span = (end_ms - start_ms)[row]
    elapsed = segments.end - start_ms[row]
    total = billed[row]
    safe_span = np.maximum(span, 1)
    # billed * elapsed must fit int64; rows where it might not are done with Python integers
    risky = total > (2**62) // safe_span
    cumulative = np.where(risky, 0, total * elapsed // safe_span)
    cumulative = np.where(span == 0, total, cumulative)  # an instant record is one whole segment
    for index in np.flatnonzero(risky).tolist():
        cumulative[index] = int(total[index]) * int(elapsed[index]) // int(span[index])
    previous = np.empty_like(cumulative)
    previous[0] = 0
    previous[1:] = cumulative[:-1]
    previous[segments.first] = 0
    return cumulative - previous


@dataclass(frozen=True)
class Periods:
    """Allowance period of each record: ``code`` indexes ``labels`` (``"2024-05"`` or ``"2024-05-17"``)."""

    code: np.ndarray
    labels: list[str]


def periods_of(clock: LocalClock, kind: str, start_ms: np.ndarray) -> Periods:
    """Local month (or day) of each instant, by the same edges as :func:`rating.calendar.period_key`."""
    if start_ms.shape[0] == 0:
        return Periods(np.zeros(0, dtype=np.int64), [])
    extremes = np.array([start_ms.min(), start_ms.max()])  # a batch spans a few periods: take them all
    if kind == "month":
        first_month, last_month = extremes.astype("datetime64[ms]").astype("datetime64[M]").astype(np.int64).tolist()
        if last_month - first_month <= 48:
            candidates = list(range(first_month - 1, last_month + 2))
        else:  # spread far apart: only the months that hold a record, and their neighbours
            months = np.unique(start_ms.astype("datetime64[ms]").astype("datetime64[M]").astype(np.int64))
            candidates = np.unique(np.concatenate([months - 1, months, months + 1])).tolist()
        firsts = [dt.date(1970 + m // 12, m % 12 + 1, 1) for m in candidates]
        labels = [f"{d.year:04d}-{d.month:02d}" for d in firsts]
    else:
        first_day, last_day = (extremes // DAY_MS).tolist()
        if last_day - first_day <= 400:
            candidates = list(range(first_day - 1, last_day + 2))
        else:
            days = np.unique(start_ms // DAY_MS)
            candidates = np.unique(np.concatenate([days - 1, days, days + 1])).tolist()
        firsts = [_EPOCH_DAY + dt.timedelta(days=d) for d in candidates]
        labels = [d.isoformat() for d in firsts]
    edges = np.array([clock.day_start(d) for d in firsts], dtype=np.int64)
    code = np.searchsorted(edges, start_ms, side="right") - 1
    return Periods(code, labels)


__all__ = ["BandTimeline", "Periods", "Segments", "apportion_many", "band_segments", "band_timeline", "periods_of"]
