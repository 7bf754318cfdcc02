"""Counters to rates and 1-minute windows: wraps, resets, duplicates, disorder, lateness, revisions."""

from __future__ import annotations

import itertools

import pytest

from models.records import TelemetrySample
from streams.rates import (
    WINDOW_MS,
    apply_samples,
    counter_delta,
    emit_windows,
    window_start,
)

T0 = 1_700_000_040_000  # a minute boundary
assert T0 % WINDOW_MS == 0


def sample(
    ts: int,
    in_oct: int,
    out_oct: int = 0,
    *,
    bits: int = 64,
    uptime: int | None = None,
    in_err: int = 0,
    speed: int | None = 10**9,
    if_index: int = 1,
) -> TelemetrySample:
    return TelemetrySample(
        id=TelemetrySample.make_id("r1", if_index, ts),
        device="r1",
        if_index=if_index,
        ts_ms=ts,
        in_octets=in_oct,
        out_octets=out_oct,
        in_errors=in_err,
        out_errors=0,
        in_discards=0,
        out_discards=0,
        counter_bits=bits,
        uptime_ticks=uptime,
        speed_bps=speed,  # type: ignore[arg-type]
    )


def steady(bps: int, start: int, count: int, step_ms: int = 10_000, offset: int = 0, bits: int = 64):
    out = []
    for k in range(count):
        ts = start + k * step_ms
        octets = offset + bps * (ts - start) // 8000
        out.append(sample(ts, octets % (2**bits), bits=bits))
    return out


@pytest.mark.parametrize(
    ("prev", "cur", "bits", "expected"),
    [
        (100, 250, 64, (150, False)),
        (2**32 - 100, 50, 32, (150, True)),  # 32-bit wrap
        (2**64 - 10, 5, 64, (15, True)),  # 64-bit wrap near the top
        (5_000_000, 10, 64, (None, False)),  # far from the top: a reset, not a wrap
        (None, 10, 64, (None, False)),
    ],
)
def test_counter_delta(prev, cur, bits, expected):
    assert counter_delta(prev, cur, bits) == expected


def test_steady_rate_is_exact_and_windowed():
    state: dict = {}
    stats = apply_samples(state, steady(100_000_000, T0, 13), watermark_ms=0, allowed_lateness_ms=5_000)
    assert stats.applied == 13 and stats.resets == 0
    # Only windows whose end + lateness the watermark has passed are closed.
    rates = emit_windows("r1", state, watermark_ms=T0 + 2 * WINDOW_MS + 5_000, allowed_lateness_ms=5_000)
    assert [r.window_start_ms for r in rates] == [T0, T0 + WINDOW_MS]
    assert rates[1].samples == 6
    first = rates[0]
    # The window holds the intervals ending at T0+10s .. T0+50s (five of them).
    assert first.samples == 5
    assert first.in_bps_avg == pytest.approx(100_000_000)
    assert first.in_bps_max == pytest.approx(100_000_000)
    assert first.in_util_pct_avg == pytest.approx(10.0)
    assert first.revision == 1
    assert first.id == f"r1/1/{T0}"


def test_32bit_wrap_gives_the_true_rate():
    samples = steady(100_000_000, T0, 6, offset=2**32 - 200_000_000, bits=32)
    assert any(b.in_octets < a.in_octets for a, b in itertools.pairwise(samples))  # it does wrap
    state: dict = {}
    stats = apply_samples(state, samples, watermark_ms=0, allowed_lateness_ms=0)
    assert stats.wraps == 1 and stats.resets == 0
    [rate] = emit_windows("r1", state, watermark_ms=T0 + 10 * WINDOW_MS, allowed_lateness_ms=0)
    assert rate.in_bps_avg == pytest.approx(100_000_000)
    assert rate.in_bps_max == pytest.approx(100_000_000)


def test_reset_by_uptime_is_skipped_not_an_absurd_rate():
    samples = [
        sample(T0, 1_000_000, uptime=5000),
        sample(T0 + 10_000, 126_000_000, uptime=6000),  # 100 Mbit/s
        sample(T0 + 20_000, 1_000, uptime=100),  # agent restarted: counters from zero
        sample(T0 + 30_000, 125_001_000, uptime=1100),  # 100 Mbit/s again
    ]
    state: dict = {}
    stats = apply_samples(state, samples, watermark_ms=0, allowed_lateness_ms=0)
    assert stats.resets == 1
    [rate] = emit_windows("r1", state, watermark_ms=T0 + 10 * WINDOW_MS, allowed_lateness_ms=0)
    assert rate.samples == 2
    assert rate.in_bps_max == pytest.approx(100_000_000)


def test_64bit_drop_without_uptime_is_a_reset():
    samples = [sample(T0, 10**12), sample(T0 + 10_000, 10**12 + 125_000_000), sample(T0 + 20_000, 42)]
    state: dict = {}
    stats = apply_samples(state, samples, watermark_ms=0, allowed_lateness_ms=0)
    assert stats.resets == 1 and stats.wraps == 0
    [rate] = emit_windows("r1", state, watermark_ms=T0 + 10 * WINDOW_MS, allowed_lateness_ms=0)
    assert rate.in_bps_max == pytest.approx(100_000_000)


def test_implausible_rate_above_line_speed_is_dropped():
    samples = [sample(T0, 0, speed=10**6), sample(T0 + 10_000, 10**12, speed=10**6)]
    state: dict = {}
    stats = apply_samples(state, samples, watermark_ms=0, allowed_lateness_ms=0)
    assert stats.resets == 1
    assert emit_windows("r1", state, watermark_ms=T0 + 10 * WINDOW_MS, allowed_lateness_ms=0) == []


def test_duplicates_and_replays_change_nothing():
    samples = steady(80_000_000, T0, 6)
    once: dict = {}
    apply_samples(once, samples, watermark_ms=0, allowed_lateness_ms=60_000)
    twice: dict = {}
    apply_samples(twice, samples, watermark_ms=0, allowed_lateness_ms=60_000)
    stats = apply_samples(twice, samples + samples[:2], watermark_ms=0, allowed_lateness_ms=60_000)
    assert stats.duplicates == 8 and stats.applied == 0
    assert once == twice


def test_out_of_order_within_lateness_gives_the_same_windows_as_in_order():
    samples = steady(50_000_000, T0, 7)
    ordered: dict = {}
    apply_samples(ordered, samples, watermark_ms=0, allowed_lateness_ms=30_000)
    shuffled: dict = {}
    apply_samples(shuffled, [samples[i] for i in (0, 1, 3, 4)], watermark_ms=0, allowed_lateness_ms=30_000)
    apply_samples(shuffled, [samples[i] for i in (6, 2, 5)], watermark_ms=samples[4].ts_ms, allowed_lateness_ms=30_000)
    wm = T0 + 5 * WINDOW_MS
    a = emit_windows("r1", ordered, watermark_ms=wm, allowed_lateness_ms=30_000)
    b = emit_windows("r1", shuffled, watermark_ms=wm, allowed_lateness_ms=30_000)
    assert a == b
    assert a[0].in_bps_avg == pytest.approx(50_000_000)


def test_late_samples_are_returned_for_dead_lettering():
    state: dict = {}
    apply_samples(state, steady(1_000_000, T0, 3), watermark_ms=0, allowed_lateness_ms=5_000)
    late = sample(T0 - 60_000, 5)
    stats = apply_samples(state, [late], watermark_ms=T0 + 20_000, allowed_lateness_ms=5_000)
    assert stats.late == [late] and stats.applied == 0


def test_open_window_flush_then_late_data_reemits_with_higher_revision():
    samples = steady(100_000_000, T0, 4)  # T0 .. T0+30s: one open window
    state: dict = {}
    apply_samples(state, samples[:3], watermark_ms=0, allowed_lateness_ms=60_000)
    [first] = emit_windows("r1", state, watermark_ms=samples[2].ts_ms, allowed_lateness_ms=60_000, flush_open=True)
    assert first.revision == 1 and first.samples == 2
    # Nothing changed: flushing again emits nothing.
    assert emit_windows("r1", state, watermark_ms=samples[2].ts_ms, allowed_lateness_ms=60_000, flush_open=True) == []
    apply_samples(state, samples[3:], watermark_ms=samples[2].ts_ms, allowed_lateness_ms=60_000)
    [second] = emit_windows("r1", state, watermark_ms=T0 + 3 * WINDOW_MS, allowed_lateness_ms=60_000)
    assert second.revision == 2 and second.samples == 3 and second.id == first.id
    assert state["1"]["w"] == {}  # closed windows leave the state


def test_window_start():
    assert window_start(T0 + 59_999) == T0
    assert window_start(T0 + 60_000) == T0 + WINDOW_MS


def test_errors_are_summed_per_window():
    samples = [sample(T0 + k * 10_000, k * 1000, in_err=k * 3) for k in range(4)]
    state: dict = {}
    apply_samples(state, samples, watermark_ms=0, allowed_lateness_ms=0)
    [rate] = emit_windows("r1", state, watermark_ms=T0 + 10 * WINDOW_MS, allowed_lateness_ms=0)
    assert rate.in_errors == 9


def test_error_counters_wrap_as_counter32_even_with_64bit_octets():
    # IF-MIB ifInErrors is a Counter32 while ifHCInOctets is a Counter64: the sample says 64 bits.
    a = sample(T0, 1000, in_err=2**32 - 5)
    b = sample(T0 + 10_000, 125_001_000, in_err=7)
    state: dict = {}
    apply_samples(state, [a, b], watermark_ms=0, allowed_lateness_ms=0)
    [rate] = emit_windows("r1", state, watermark_ms=T0 + 10 * WINDOW_MS, allowed_lateness_ms=0)
    assert rate.in_errors == 12
    assert rate.in_bps_avg == pytest.approx(100_000_000)


def test_packet_rates_and_oper_status_changes():
    def with_pkts(ts, octets, ucast, nucast, oper):
        base = sample(ts, octets)
        replaced = ("in_ucast_pkts", "in_nucast_pkts", "oper_status")
        return TelemetrySample(
            **{f: getattr(base, f) for f in base.__struct_fields__ if f not in replaced},
            in_ucast_pkts=ucast,
            in_nucast_pkts=nucast,
            oper_status=oper,
        )

    samples = [
        with_pkts(T0, 0, 0, 0, 1),
        with_pkts(T0 + 10_000, 1000, 9_000, 1_000, 1),  # 1000 pps
        with_pkts(T0 + 20_000, 2000, 18_000, 2_000, 2),  # went down
        with_pkts(T0 + 30_000, 3000, 27_000, 3_000, 1),  # and up again
    ]
    state: dict = {}
    apply_samples(state, samples, watermark_ms=0, allowed_lateness_ms=0)
    [rate] = emit_windows("r1", state, watermark_ms=T0 + 10 * WINDOW_MS, allowed_lateness_ms=0)
    assert rate.in_pps_avg == pytest.approx(1000.0)
    assert rate.out_pps_avg == 0.0  # not reported by this agent
    assert rate.oper_status_changes == 2 and rate.oper_status == 1


def test_state_from_an_older_build_still_works():
    # Vectors and points written before packet counters existed are shorter: they must not break.
    state: dict = {}
    apply_samples(state, steady(100_000_000, T0, 3), watermark_ms=0, allowed_lateness_ms=60_000)
    iface = state["1"]
    iface["s"] = [row[:9] for row in iface["s"]]
    for window in iface["w"].values():
        window["p"] = {ts: p[:7] for ts, p in window["p"].items()}
    apply_samples(state, steady(100_000_000, T0, 6)[3:], watermark_ms=T0 + 20_000, allowed_lateness_ms=60_000)
    [rate] = emit_windows("r1", state, watermark_ms=T0 + 10 * WINDOW_MS, allowed_lateness_ms=0)
    assert rate.samples == 5 and rate.in_bps_avg == pytest.approx(100_000_000)
