"""The batch kernel against the per-sample reference: same windows, same counts, same late samples, same state.

Random device feeds (wraps of 32- and 64-bit counters, resets, missing counters, speed and name changes,
oper-status flaps, duplicates, disorder within and across batches, late samples, idle flushes) go through
``apply_samples``/``emit_windows`` on dict states and through ``apply_batch``/``flush_windows`` on compact
states; every emitted window must match, and so must the states themselves at the end.
"""

from __future__ import annotations

import math
import random
from typing import Any

import msgspec
import pytest

from models.codec import unchecked_struct
from models.records import InterfaceRate, TelemetrySample
from streams.rates import (
    WINDOW_MS,
    CounterOverflow,
    RateState,
    apply_batch,
    apply_samples,
    decode_state,
    device_watermark,
    emit_windows,
    encode_state,
    flush_windows,
    from_legacy,
    state_watermark,
    to_legacy,
)

T0 = 1_700_000_040_000
LATENESS = 15_000


def _feed(rng: random.Random, devices: int, interfaces: int, polls: int) -> list[TelemetrySample]:
    """Polls of every interface, in time order, with the awkward cases mixed in."""
    out = []
    for d in range(devices):
        device = f"dev-{d}"
        for i in range(1, interfaces + 1):
            bits = rng.choice((32, 64, 64))
            if bits == 32:
                octets = [rng.randrange(2**32), rng.randrange(2**32)]
            else:
                octets = [rng.choice((rng.randrange(2**40), 2**64 - rng.randrange(1, 2**34))) for _ in range(2)]
            errors = [rng.choice((0, rng.randrange(2**32), 2**32 - rng.randrange(1, 50))) for _ in range(4)]
            pkts = [rng.randrange(2**31) for _ in range(4)]
            speed = rng.choice((None, 0, 10**6, 10**8, 10**9))
            name = rng.choice(("", f"ge-0/0/{i}"))
            uptime = rng.choice((None, rng.randrange(10**6)))
            oper = rng.choice((None, 1, 1, 2))
            missing = rng.random() < 0.1
            ts = T0 + rng.randrange(0, 20_000)
            for _ in range(polls):
                ts += rng.choice((5_000, 10_000, 10_000, 15_000, 30_000))
                rate = rng.choice((0, 10**5, 10**7, 12 * 10**7, 10**9))  # octets/s (some above line speed)
                for k in range(2):
                    octets[k] = (octets[k] + rate * rng.randrange(5, 15)) % (2**bits)
                for k in range(4):
                    errors[k] = (errors[k] + rng.choice((0, 0, 3, 70))) % (2**32)
                for k in range(4):
                    pkts[k] = (pkts[k] + rng.randrange(10**6)) % (2**32)
                if uptime is not None:
                    uptime += 1000
                if rng.random() < 0.05:  # agent restart: counters from zero, uptime back
                    octets = [rng.randrange(10**6), rng.randrange(10**6)]
                    uptime = None if uptime is None else rng.randrange(100)
                if rng.random() < 0.05:
                    speed = rng.choice((None, 0, 10**6, 10**9))
                if rng.random() < 0.1:
                    name = rng.choice(("", f"ge-0/0/{i}", f"xe-0/0/{i}"))
                if rng.random() < 0.15:
                    oper = rng.choice((None, 1, 2, 7))
                if rng.random() < 0.03:
                    bits = 96 - bits  # the agent switched counter width: garbage the code must survive
                    octets = [o % (2**bits) for o in octets]
                absent = missing and rng.random() < 0.5
                out.append(
                    TelemetrySample(
                        id=TelemetrySample.make_id(device, i, ts),
                        device=device,
                        if_index=i,
                        ts_ms=ts,
                        if_name=name,
                        in_octets=None if absent else octets[0],
                        out_octets=octets[1],
                        in_errors=errors[0],
                        out_errors=None if absent else errors[1],
                        in_discards=errors[2],
                        out_discards=errors[3],
                        in_ucast_pkts=None if absent else pkts[0],
                        in_nucast_pkts=pkts[1],
                        out_ucast_pkts=pkts[2],
                        out_nucast_pkts=None if rng.random() < 0.2 else pkts[3],
                        speed_bps=speed,
                        oper_status=oper,
                        counter_bits=bits,  # type: ignore[arg-type]
                        uptime_ticks=uptime,
                    )
                )
    out.sort(key=lambda s: s.ts_ms)
    return out


def _batches(rng: random.Random, feed: list[TelemetrySample], disorder: float) -> list[list[TelemetrySample]]:
    """Cut into batches; some samples are delayed a few batches, duplicated, or far too old."""
    batches: list[list[TelemetrySample]] = []
    pos = 0
    delayed: list[tuple[int, TelemetrySample]] = []
    while pos < len(feed):
        size = rng.randrange(1, 40)
        batch = list(feed[pos : pos + size])
        pos += size
        ready = [s for when, s in delayed if when <= len(batches)]
        delayed = [(when, s) for when, s in delayed if when > len(batches)]
        kept = []
        for s in batch:
            if rng.random() < disorder:
                delayed.append((len(batches) + rng.randrange(1, 4), s))
            else:
                kept.append(s)
        kept += ready
        if rng.random() < 0.2 and feed[:pos]:
            kept += rng.sample(feed[:pos], min(3, pos))  # replays of earlier samples
        if rng.random() < 0.1:
            old = rng.choice(feed[:pos])
            kept.append(msgspec.structs.replace(old, ts_ms=old.ts_ms - 10 * WINDOW_MS, id=old.id + "-old"))
        if rng.random() < disorder:
            rng.shuffle(kept)
        batches.append(kept)
    batches.append([s for _, s in delayed])
    return batches


def _by_device(batch: list[TelemetrySample]) -> dict[str, list[TelemetrySample]]:
    out: dict[str, list[TelemetrySample]] = {}
    for s in batch:
        out.setdefault(s.device, []).append(s)
    return out


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return a == b or math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-9)


def _same_windows(got: list[InterfaceRate], want: list[InterfaceRate]) -> None:
    got = sorted(got, key=lambda r: (r.id, r.revision))
    want = sorted(want, key=lambda r: (r.id, r.revision))
    assert [(r.id, r.revision) for r in got] == [(r.id, r.revision) for r in want]
    for g, w in zip(got, want, strict=True):
        gd, wd = msgspec.structs.asdict(g), msgspec.structs.asdict(w)
        for key, value in wd.items():
            if isinstance(value, float) or isinstance(gd[key], float):
                assert _close(gd[key], value), (key, g, w)
            else:
                assert gd[key] == value, (key, g, w)


def _normalised(state: dict[str, Any]) -> dict[str, Any]:
    return {
        key: {**iface, "speed": iface["speed"] or None, "name": iface["name"] or ""} for key, iface in state.items()
    }


def _run(seed: int, disorder: float) -> int:
    rng = random.Random(seed)
    feed = _feed(rng, rng.randrange(1, 4), rng.randrange(1, 5), rng.randrange(2, 25))
    reference: dict[str, dict[str, Any]] = {}
    kernel: dict[str, Any] = {}
    exact_paths = 0
    for batch in _batches(rng, feed, disorder):
        by_device = _by_device(batch)
        want: dict[str, list[InterfaceRate]] = {}
        late: list[str] = []
        counts = [0, 0, 0, 0]
        before = {device: device_watermark(reference.get(device, {})) for device in by_device}
        for device, samples in by_device.items():
            state = reference.setdefault(device, {})
            stats = apply_samples(state, samples, watermark_ms=device_watermark(state), allowed_lateness_ms=LATENESS)
            late += [s.id for s in stats.late]
            counts = [
                a + b for a, b in zip(counts, (stats.applied, stats.duplicates, stats.resets, stats.wraps), strict=True)
            ]
            want[device] = emit_windows(
                device, state, watermark_ms=device_watermark(state), allowed_lateness_ms=LATENESS
            )
        result = apply_batch(kernel, by_device, allowed_lateness_ms=LATENESS)
        exact_paths += result.exact_path
        assert [result.applied, result.duplicates, result.resets, result.wraps] == counts
        assert sorted(s.id for s, _ in result.late) == sorted(late)
        for s, watermark in result.late:
            assert watermark == before[s.device]
        for device in by_device:
            _same_windows(result.windows.get(device, []), want[device])
            assert state_watermark(kernel[device]) == device_watermark(reference[device])
        if rng.random() < 0.3:  # an idle flush of some devices
            idle = [d for d in reference if rng.random() < 0.5]
            flushed = flush_windows(kernel, idle, allowed_lateness_ms=LATENESS)
            for device in idle:
                ref = emit_windows(
                    device,
                    reference[device],
                    watermark_ms=device_watermark(reference[device]),
                    allowed_lateness_ms=LATENESS,
                    flush_open=True,
                )
                _same_windows(flushed.get(device, []), ref)
        if rng.random() < 0.3:  # through the changelog and back
            kernel = {device: decode_state(encode_state(state)) for device, state in kernel.items()}
    for device, state in kernel.items():
        legacy = to_legacy(state) if isinstance(state, RateState) else state
        assert _normalised(legacy) == _normalised(reference[device])
    return exact_paths


@pytest.mark.parametrize("seed", range(60))
def test_kernel_matches_the_reference_in_order(seed):
    _run(seed, disorder=0.0)


@pytest.mark.parametrize("seed", range(60))
def test_kernel_matches_the_reference_with_disorder(seed):
    _run(1000 + seed, disorder=0.15)


def test_the_disorder_runs_do_take_the_exact_path():
    assert sum(_run(2000 + seed, disorder=0.15) for seed in range(10)) > 0


def test_legacy_state_round_trip_and_old_vectors():
    samples = [
        TelemetrySample(
            id=TelemetrySample.make_id("r1", 1, T0 + k * 10_000),
            device="r1",
            if_index=1,
            ts_ms=T0 + k * 10_000,
            in_octets=k * 125_000_000,
            out_octets=k * 1000,
            speed_bps=10**9,
        )
        for k in range(4)
    ]
    legacy: dict[str, Any] = {}
    apply_samples(legacy, samples[:3], watermark_ms=0, allowed_lateness_ms=60_000)
    # State written by an older build: shorter vectors and points.
    legacy["1"]["s"] = [row[:9] for row in legacy["1"]["s"]]
    for window in legacy["1"]["w"].values():
        window["p"] = {ts: p[:7] for ts, p in window["p"].items()}
    compact = decode_state(msgspec.msgpack.encode(legacy))
    assert isinstance(compact, RateState)
    assert compact.watermark == T0 + 20_000
    reference = msgspec.msgpack.decode(msgspec.msgpack.encode(legacy))
    apply_samples(reference, samples[3:], watermark_ms=T0 + 20_000, allowed_lateness_ms=60_000)
    states: dict[str, Any] = {"r1": compact}
    apply_batch(states, {"r1": samples[3:]}, allowed_lateness_ms=60_000)
    [got] = flush_windows(states, ["r1"], allowed_lateness_ms=60_000)["r1"]
    [want] = emit_windows("r1", reference, watermark_ms=T0 + 30_000, allowed_lateness_ms=60_000, flush_open=True)
    _same_windows([got], [want])
    assert got.samples == 3 and got.in_bps_avg == pytest.approx(100_000_000)


def test_values_the_compact_form_cannot_hold_stay_in_dict_form():
    legacy: dict[str, Any] = {
        "1": {"name": "", "speed": None, "s": [[T0, 2**63, 1, 1, 0, 0, 0, 0, 64, None, None, 0]], "w": {}}
    }
    assert from_legacy(legacy) is None
    state = decode_state(msgspec.msgpack.encode(legacy))
    assert isinstance(state, dict)
    # A dict state still works through the batch entry points.
    states: dict[str, Any] = {"r1": state}
    nxt = TelemetrySample(id="r1/1/x", device="r1", if_index=1, ts_ms=T0 + 10_000, in_octets=5, out_octets=5)
    result = apply_batch(states, {"r1": [nxt]}, allowed_lateness_ms=0)
    assert result.applied == 1 and result.exact_path == 1


def test_encoded_state_views_its_bytes_and_decodes_to_the_same_state():
    rng = random.Random(7)
    feed = _feed(rng, 1, 48, 6)
    states: dict[str, Any] = {}
    apply_batch(states, _by_device(feed), allowed_lateness_ms=LATENESS)
    state = states["dev-0"]
    raw = encode_state(state)
    assert state.hist.base is not None and not state.hist.flags.writeable
    again = decode_state(raw)
    assert isinstance(again, RateState)
    assert to_legacy(again) == to_legacy(state)


def test_numbers_past_64_bits_take_the_exact_path():
    def poll(ts: int, octets: int, if_index: int, uptime: int | None) -> TelemetrySample:
        return TelemetrySample(
            id=TelemetrySample.make_id("r1", if_index, ts),
            device="r1",
            if_index=if_index,
            ts_ms=ts,
            in_octets=octets,
            out_octets=octets,
            uptime_ticks=uptime,
        )

    for if_index, uptime in ((2**63 + 1, None), (1, 2**64 + 5)):
        samples = [poll(T0 + k * 10_000, k * 1000, if_index, None if uptime is None else uptime + k) for k in range(4)]
        reference: dict[str, Any] = {}
        apply_samples(reference, samples, watermark_ms=0, allowed_lateness_ms=0)
        want = emit_windows("r1", reference, watermark_ms=T0 + 10 * WINDOW_MS, allowed_lateness_ms=0, flush_open=True)
        states: dict[str, Any] = {}
        result = apply_batch(states, {"r1": samples}, allowed_lateness_ms=0)
        assert result.exact_path == 1 and result.applied == 4
        assert isinstance(states["r1"], dict)  # the compact form cannot hold it
        got = flush_windows(states, ["r1"], allowed_lateness_ms=0)["r1"]
        _same_windows(got, want)


_Unchecked = unchecked_struct(TelemetrySample)


@pytest.mark.parametrize("counter", ["in_octets", "out_discards", "in_ucast_pkts", "out_nucast_pkts"])
@pytest.mark.parametrize("path", ["vector", "exact"])
def test_a_counter_past_64_bits_is_refused_before_any_state_changes(counter, path):
    """Samples decoded without TelemetrySample's own check (the worker's decoder) meet it in apply_batch:
    CounterOverflow, and every state as it was, so the worker can decode the batch again, checked."""
    rng = random.Random(3)
    feed = _feed(rng, 2, 4, 3)
    states: dict[str, Any] = {}
    apply_batch(states, _by_device(feed), allowed_lateness_ms=LATENESS)
    if path == "exact":
        states["dev-1"] = to_legacy(states["dev-1"])
    before = {device: encode_state(state) for device, state in states.items()}
    later = T0 + 10 * WINDOW_MS
    batch = {
        device: [
            _Unchecked(id=f"{device}/{i}/{later}", device=device, if_index=i, ts_ms=later, in_octets=5, out_octets=5)
            for i in (1, 2, 99)  # 99: an interface the state does not know yet
        ]
        for device in ("dev-0", "dev-1")
    }
    bad = batch["dev-1"][1]
    batch["dev-1"][1] = _Unchecked(**{**msgspec.structs.asdict(bad), counter: 2**64})
    with pytest.raises(CounterOverflow):
        apply_batch(states, batch, allowed_lateness_ms=LATENESS)  # type: ignore[arg-type]
    assert {device: encode_state(state) for device, state in states.items()} == before
    # At the top of the range it is a counter like any other.
    batch["dev-1"][1] = _Unchecked(**{**msgspec.structs.asdict(bad), counter: 2**64 - 1})
    result = apply_batch(states, batch, allowed_lateness_ms=LATENESS)  # type: ignore[arg-type]
    assert result.applied == 6


def _rows_of(groups_ts: list[tuple[int, int]]) -> tuple[Any, Any]:
    import numpy as np

    from streams.rates import _PTS

    table = np.zeros(len(groups_ts), dtype=_PTS)
    table["ts"] = [ts for _, ts in groups_ts]
    table["v"][:, 0] = [ts * 0.5 for _, ts in groups_ts]  # a payload to follow the rows
    return table, np.array([g for g, _ in groups_ts], dtype=np.int64)


def test_new_rows_merge_in_after_each_groups_retained_rows():
    import numpy as np

    from streams.rates import _append_in_order

    old, old_g = _rows_of([(0, 10), (0, 20), (2, 5), (5, 1), (5, 2)])
    new, new_g = _rows_of([(0, 30), (1, 7), (2, 6), (2, 9), (6, 1)])
    merged = _append_in_order(old, old_g, new, new_g)
    assert merged is not None
    table, groups, is_new = merged
    expected = sorted([(0, 10), (0, 20), (2, 5), (5, 1), (5, 2), (0, 30), (1, 7), (2, 6), (2, 9), (6, 1)])
    assert list(zip(groups.tolist(), table["ts"].tolist(), strict=True)) == expected
    assert np.array_equal(table["v"][:, 0], table["ts"] * 0.5)
    assert is_new.tolist() == [False, False, True, True, False, True, True, False, False, True]


@pytest.mark.parametrize(
    "old_rows, new_rows",
    [
        ([(0, 10), (0, 20)], [(0, 15)]),  # a new row not after the group's retained ones
        ([(0, 10), (0, 20)], [(0, 20)]),  # nor at the same time
        ([(0, 10)], [(1, 9), (0, 30)]),  # new rows out of group order
        ([(1, 10), (0, 20)], [(2, 1)]),  # retained rows out of group order
        ([(0, 1), (0, 2), (0, 3), (5, 1)], [(5, 9), (0, 9)]),  # new rows out of order, far apart
    ],
)
def test_a_merge_out_of_order_is_refused(old_rows, new_rows):
    from streams.rates import _append_in_order

    old, old_g = _rows_of(old_rows)
    new, new_g = _rows_of(new_rows)
    assert _append_in_order(old, old_g, new, new_g) is None
