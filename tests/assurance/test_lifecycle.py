"""Alert lifecycle: trap mapping, hysteresis, dedup, flap suppression, correlation, ids, snapshot/restore."""

from __future__ import annotations

import doctest
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import assurance.lifecycle as lifecycle
from assurance.lifecycle import (
    DEVICE_DOWN,
    INTERFACE_DOWN,
    AlertConfigError,
    AlertEngine,
    AlertRule,
    EngineConfig,
    Signal,
    fingerprint,
    replay,
)
from models.records import Alert, FaultEvent

S = 1_000  # one second in ms
T0 = 1_700_000_000_000

_counter = iter(range(10**9))


def link(ts: int, up: bool, if_index: int = 1, device: str = "r1") -> FaultEvent:
    return FaultEvent(
        id=f"ev{next(_counter)}", device=device, ts_ms=T0 + ts, kind="linkUp" if up else "linkDown", if_index=if_index
    )


def down(ts: int, **kw: Any) -> FaultEvent:
    return link(ts, False, **kw)


def up(ts: int, **kw: Any) -> FaultEvent:
    return link(ts, True, **kw)


def device(ts: int, firing: bool, name: str = "r1") -> Signal:
    return Signal(name=DEVICE_DOWN, device=name, ts_ms=T0 + ts, firing=firing, severity="critical", summary="no reply")


def sig(ts: int, firing: bool, **kw: Any) -> Signal:
    fields: dict[str, Any] = {"name": "HighUtilisation", "device": "r1", "if_index": 1, "summary": "busy"}
    fields.update(kw)
    return Signal(ts_ms=T0 + ts, firing=firing, **fields)


def brief(alerts: list[Alert]) -> list[tuple[str, str, int, int | None, int]]:
    """(name, status, starts, ends, updated) relative to T0."""
    return [
        (a.name, a.status, a.starts_ms - T0, None if a.ends_ms is None else a.ends_ms - T0, a.updated_ms - T0)
        for a in alerts
    ]


def feed(engine: AlertEngine, steps: list[Any]) -> list[Alert]:
    """Apply inputs in order; an int is a tick to T0 + that time."""
    out: list[Alert] = []
    for step in steps:
        if isinstance(step, int):
            out.extend(engine.tick(T0 + step))
        elif isinstance(step, Signal):
            out.extend(engine.signal(step))
        else:
            out.extend(engine.fault(step))
    return out


def test_docstring_examples_run() -> None:
    result = doctest.testmod(lifecycle)
    assert result.attempted > 0 and result.failed == 0


# ---------------------------------------------------------------------- trap mapping


@pytest.mark.parametrize(
    ("kind", "if_index", "varbinds", "trap_oid", "expected"),
    [
        ("linkDown", 3, {}, "", [("InterfaceDown", "critical", {})]),
        ("operStatus", 3, {"oper_status": "DOWN"}, "", [("InterfaceDown", "critical", {})]),
        ("operStatus", 3, {"oper_status": "LOWER_LAYER_DOWN"}, "", [("InterfaceDown", "critical", {})]),
        ("operStatus", 3, {"oper_status": "TESTING"}, "", []),
        ("operStatus", 3, {"oper_status": "UP"}, "", []),  # a clear with nothing open
        ("linkUp", 3, {}, "", []),
        ("coldStart", None, {}, "", [("DeviceRestarted", "warning", {})]),
        ("warmStart", None, {}, "", [("DeviceRestarted", "warning", {})]),
        ("authenticationFailure", None, {}, "", [("AuthenticationFailure", "minor", {})]),
        ("egpNeighborLoss", None, {}, "", [("DeviceTrap", "major", {"trap": "egpNeighborLoss"})]),
        ("trap", None, {}, "1.3.6.1.4.1.9.9.41.2.0.1", [("DeviceTrap", "info", {"trap": "1.3.6.1.4.1.9.9.41.2.0.1"})]),
        ("inform", None, {}, "", [("DeviceTrap", "info", {"trap": "inform"})]),
        ("linkDown", None, {}, "", [("DeviceTrap", "info", {"trap": "linkDown"})]),
    ],
)
def test_fault_mapping(
    kind: str, if_index: int | None, varbinds: dict[str, str], trap_oid: str, expected: list[tuple[str, str, dict]]
) -> None:
    ev = FaultEvent(id="e", device="r1", ts_ms=T0, kind=kind, if_index=if_index, varbinds=varbinds, trap_oid=trap_oid)
    alerts = AlertEngine().fault(ev)
    assert [(a.name, a.severity, a.labels) for a in alerts] == expected
    for a in alerts:
        assert a.status == "firing" and a.device == "r1" and a.starts_ms == T0 and a.updated_ms == T0
        assert a.fingerprint == fingerprint(a.name, "r1", a.if_index, a.labels)


def test_interface_summary_names_the_interface_from_varbinds() -> None:
    ev = FaultEvent(
        id="e", device="r1", ts_ms=T0, kind="linkDown", if_index=7, varbinds={"1.3.6.1.2.1.31.1.1.1.1.7": "ge-0/0/7"}
    )
    (alert,) = AlertEngine().fault(ev)
    assert alert.summary == "interface ge-0/0/7 (ifIndex 7) on r1 is down"


def test_fingerprint_is_stable_and_label_order_free() -> None:
    assert fingerprint("A", "r1", 1, {"a": "1", "b": "2"}) == fingerprint("A", "r1", 1, {"b": "2", "a": "1"})
    # a fixed value: the same in every process and release (alerts in the warehouse are keyed on it)
    assert fingerprint("InterfaceDown", "r1", 1, {}) == fingerprint("InterfaceDown", "r1", 1, {})
    distinct = {
        fingerprint("A", "r1", 1, {}),
        fingerprint("A", "r1", 2, {}),
        fingerprint("A", "r2", 1, {}),
        fingerprint("B", "r1", 1, {}),
        fingerprint("A", "r1", None, {}),
        fingerprint("A", "r1", 1, {"x": "y"}),
    }
    assert len(distinct) == 6


# ---------------------------------------------------------------------- hysteresis, timers, dedup

FOR_60S = EngineConfig(rules={"HighUtilisation": AlertRule(for_ms=60 * S, resolve_after_ms=120 * S)})

LIFECYCLE_CASES: list[tuple[str, EngineConfig, list[Any], list[tuple[str, str, int, int | None, int]]]] = [
    (
        "trap opens at once, resolves after resolve_after_ms of clear",
        EngineConfig(),
        [down(0), up(10 * S), 39 * S, 40 * S],
        [(INTERFACE_DOWN, "firing", 0, None, 0), (INTERFACE_DOWN, "resolved", 0, 10 * S, 40 * S)],
    ),
    (
        "a bounce shorter than resolve_after_ms keeps the same alert",
        EngineConfig(),
        [down(0), up(5 * S), down(10 * S), up(15 * S), 100 * S],
        [(INTERFACE_DOWN, "firing", 0, None, 0), (INTERFACE_DOWN, "resolved", 0, 15 * S, 45 * S)],
    ),
    (
        "resolve_after_ms 0 resolves on the clearing trap",
        EngineConfig(rules={INTERFACE_DOWN: AlertRule()}),
        [down(0), up(5 * S)],
        [(INTERFACE_DOWN, "firing", 0, None, 0), (INTERFACE_DOWN, "resolved", 0, 5 * S, 5 * S)],
    ),
    (
        "for_ms: opens once the condition has held, starts when it began",
        FOR_60S,
        [sig(0, True), sig(30 * S, True), 59 * S, sig(60 * S, True), 61 * S],
        [("HighUtilisation", "firing", 0, None, 60 * S)],
    ),
    (
        "for_ms: the open time does not depend on when tick is called",
        FOR_60S,
        [sig(0, True), 500 * S],
        [("HighUtilisation", "firing", 0, None, 60 * S)],
    ),
    (
        "for_ms: a condition that clears before for_ms never opens",
        FOR_60S,
        [sig(0, True), sig(50 * S, False), sig(70 * S, True), 129 * S],
        [],
    ),
    (
        "for_ms and resolve_after_ms together",
        FOR_60S,
        [sig(0, True), sig(100 * S, False), sig(150 * S, True), sig(200 * S, False), 319 * S, 320 * S],
        [("HighUtilisation", "firing", 0, None, 60 * S), ("HighUtilisation", "resolved", 0, 200 * S, 320 * S)],
    ),
    (
        "repeated identical firing emits nothing",
        EngineConfig(),
        [down(0), down(1 * S), down(2 * S), sig(3 * S, True), sig(4 * S, True)],
        [(INTERFACE_DOWN, "firing", 0, None, 0), ("HighUtilisation", "firing", 3 * S, None, 3 * S)],
    ),
    (
        "severity escalation and summary change are updates of the same alert",
        EngineConfig(),
        [
            sig(0, True),
            sig(1 * S, True, severity="major"),
            sig(2 * S, True, severity="major"),
            sig(3 * S, True, summary="x"),
        ],
        [("HighUtilisation", "firing", 0, None, t) for t in (0, 1 * S, 3 * S)],
    ),
    (
        "trap without a clear resolves by itself auto_resolve_ms after the last one",
        EngineConfig(),
        [
            FaultEvent(id="c1", device="r1", ts_ms=T0, kind="coldStart"),
            FaultEvent(id="c2", device="r1", ts_ms=T0 + 100 * S, kind="coldStart"),
            399 * S,
            400 * S,
        ],
        [("DeviceRestarted", "firing", 0, None, 0), ("DeviceRestarted", "resolved", 0, 400 * S, 400 * S)],
    ),
    (
        "a new episode after resolution is a new alert state with its own starts",
        EngineConfig(),
        [down(0), up(1 * S), 100 * S, down(200 * S), 201 * S],
        [
            (INTERFACE_DOWN, "firing", 0, None, 0),
            (INTERFACE_DOWN, "resolved", 0, 1 * S, 31 * S),
            (INTERFACE_DOWN, "firing", 200 * S, None, 200 * S),
        ],
    ),
    (
        "a clear for an unknown alert is ignored",
        EngineConfig(),
        [up(0), sig(0, False), 100 * S],
        [],
    ),
]


@pytest.mark.parametrize(
    ("config", "steps", "expected"), [c[1:] for c in LIFECYCLE_CASES], ids=[c[0] for c in LIFECYCLE_CASES]
)
def test_lifecycle(config: EngineConfig, steps: list[Any], expected: list[tuple]) -> None:
    out = feed(AlertEngine(config), steps)
    assert brief(out) == expected
    assert len({a.id for a in out}) == len(out)


def test_update_records_carry_the_new_values() -> None:
    engine = AlertEngine()
    first, escalated = feed(engine, [sig(0, True, value=91.5), sig(60 * S, True, severity="critical", value=97.0)])
    assert (first.severity, first.labels) == ("warning", {"value": "91.5"})
    assert (escalated.severity, escalated.labels, escalated.fingerprint) == (
        "critical",
        {"value": "97"},
        first.fingerprint,
    )
    assert [first.id, escalated.id] == [f"{first.fingerprint}:{T0}:1", f"{first.fingerprint}:{T0}:2"]


def test_value_alone_is_not_material() -> None:
    engine = AlertEngine()
    assert len(feed(engine, [sig(0, True, value=1.0), sig(S, True, value=2.0), sig(2 * S, True, value=3.0)])) == 1


def test_stale_input_is_ignored_and_counted() -> None:
    engine = AlertEngine(EngineConfig(rules={INTERFACE_DOWN: AlertRule()}))
    out = feed(engine, [down(10 * S), up(5 * S)])  # the clear is older than what we already know
    assert brief(out) == [(INTERFACE_DOWN, "firing", 10 * S, None, 10 * S)]
    assert engine.stats["stale"] == 1


def test_an_input_after_the_forget_time_starts_afresh_even_without_ticks() -> None:
    config = EngineConfig(forget_after_ms=600 * S, rules={"HighUtilisation": AlertRule()})
    ticked, bare = AlertEngine(config), AlertEngine(config)
    steps: list[Any] = [sig(0, True), sig(1 * S, False), sig(700 * S, True), sig(710 * S, True, severity="major")]
    with_tick = feed(ticked, [*steps[:2], 700 * S, *steps[2:]])
    assert feed(bare, steps) == with_tick
    assert brief(with_tick)[-2:] == [
        ("HighUtilisation", "firing", 700 * S, None, 700 * S),
        ("HighUtilisation", "firing", 700 * S, None, 710 * S),  # an update of the new episode, not a third open
    ]
    assert len(bare) == 1


def test_state_is_forgotten_after_idle_and_ids_stay_unique() -> None:
    config = EngineConfig(forget_after_ms=600 * S)
    engine = AlertEngine(config)
    first = feed(engine, [down(0), up(1 * S), 31 * S])
    assert len(engine) == 1
    assert feed(engine, [(31 + 600) * S]) == []
    assert len(engine) == 0 and engine.stats["forgotten"] == 1
    again = feed(engine, [down(1000 * S), up(1001 * S), 2000 * S])
    ids = [a.id for a in first + again]
    assert len(set(ids)) == 4


def test_signal_labels_named_like_engine_labels_are_not_identifying() -> None:
    a = AlertEngine().signal(sig(0, True, labels={"flapping": "x", "region": "eu"}))
    assert a[0].labels == {"region": "eu"}
    assert a[0].fingerprint == fingerprint("HighUtilisation", "r1", 1, {"region": "eu"})


def test_unknown_severity_is_refused_with_the_field() -> None:
    with pytest.raises(ValueError, match=r"Signal\.severity"):
        AlertEngine().signal(sig(0, True, severity="fatal"))


@pytest.mark.parametrize(
    ("config", "key"),
    [
        (EngineConfig(flap_threshold=1), "flap_threshold"),
        (EngineConfig(flap_window_ms=0), "flap_window_ms"),
        (EngineConfig(rules={"X": AlertRule(for_ms=-1)}), "rules.X.for_ms"),
        (EngineConfig(default_rule=AlertRule(resolve_after_ms=-5)), "default_rule.resolve_after_ms"),
        (EngineConfig(forget_after_ms=10, flap_window_ms=20), "forget_after_ms"),
        (EngineConfig(trap_severity={"x": "loud"}), "trap_severity.x"),  # type: ignore[dict-item]
    ],
)
def test_config_errors_name_the_field(config: EngineConfig, key: str) -> None:
    with pytest.raises(AlertConfigError) as err:
        AlertEngine(config)
    assert err.value.key == key


# ---------------------------------------------------------------------- flapping

FLAP = EngineConfig(flap_window_ms=120 * S, flap_threshold=6, flap_stable_ms=300 * S)


def flaps(cycles: int, start: int = 0, period: int = 4 * S, if_index: int = 1) -> list[FaultEvent]:
    """Down at start + k*period, up half a period later."""
    events: list[FaultEvent] = []
    for k in range(cycles):
        t = start + k * period
        events += [down(t, if_index=if_index), up(t + period // 2, if_index=if_index)]
    return events


def opened(alerts: list[Alert]) -> list[Alert]:
    """The records that open an episode (the first of each)."""
    return [a for a in alerts if a.id.endswith(":1")]


def test_a_flapping_link_opens_one_alert_not_fifty() -> None:
    engine = AlertEngine(FLAP)
    events = flaps(50)  # 100 traps in 200 seconds
    last_up = events[-1].ts_ms - T0
    out = feed(engine, [*events, last_up + 299 * S, last_up + 300 * S])
    assert len(opened(out)) == 1
    assert [(a.status, a.labels.get("flapping")) for a in out] == [
        ("firing", None),
        ("firing", "true"),  # flapping detected at the 6th change: an update, not a new alert
        ("resolved", "true"),
    ]
    assert {a.fingerprint for a in out} == {out[0].fingerprint}
    resolved = out[-1]
    assert (resolved.starts_ms, resolved.ends_ms, resolved.updated_ms) == (T0, T0 + last_up, T0 + last_up + 300 * S)


def test_flapping_without_hysteresis_opens_at_most_threshold_over_two_alerts() -> None:
    engine = AlertEngine(replace(FLAP, rules={INTERFACE_DOWN: AlertRule()}))
    out = feed(engine, [*flaps(50), 2000 * S])
    # down/up, down/up, down: 3 short alerts, then the 6th change marks flapping and holds the 3rd open
    assert len(opened(out)) == 3
    assert Counter(a.status for a in out) == {"firing": 4, "resolved": 3}
    assert out[-1].status == "resolved" and out[-1].labels.get("flapping") == "true"


def test_a_link_that_stops_flapping_while_down_stays_firing_without_the_label() -> None:
    engine = AlertEngine(FLAP)
    events = flaps(10)
    stuck = down(events[-1].ts_ms - T0 + S)
    out = feed(engine, [*events, stuck, stuck.ts_ms - T0 + 300 * S])
    assert [(a.status, a.labels.get("flapping")) for a in out] == [
        ("firing", None),
        ("firing", "true"),
        ("firing", None),  # stable (down) for flap_stable_ms: no longer flapping, still down
    ]
    out = feed(engine, [up(stuck.ts_ms - T0 + 400 * S), stuck.ts_ms - T0 + 430 * S])
    assert [(a.status, a.ends_ms) for a in out] == [("resolved", stuck.ts_ms + 400 * S)]


def test_flapping_condition_opens_even_if_it_never_held_for_ms() -> None:
    engine = AlertEngine(replace(FLAP, rules={"HighUtilisation": AlertRule(for_ms=60 * S)}))
    steps = [sig(k * 5 * S, k % 2 == 0) for k in range(6)]  # on/off every 5 s: never 60 s long
    out = feed(engine, steps)
    assert [(a.status, a.labels.get("flapping"), a.starts_ms - T0) for a in out] == [("firing", "true", 0)]
    out = feed(engine, [25 * S + 299 * S, 25 * S + 300 * S])
    assert brief(out) == [("HighUtilisation", "resolved", 0, 25 * S, 325 * S)]


def test_slow_changes_are_not_flapping() -> None:
    engine = AlertEngine(FLAP)
    out = feed(engine, [*flaps(6, period=100 * S), 1000 * S])  # 12 changes, but never 6 within 120 s
    assert len(opened(out)) == 6
    assert not any("flapping" in a.labels for a in out)


# ---------------------------------------------------------------------- correlation


def labels_of(alerts: list[Alert]) -> list[tuple[str, str, int | None, str | None]]:
    return [(a.name, a.status, a.if_index, a.labels.get("suppressed")) for a in alerts]


def test_device_down_suppresses_interface_alerts_of_that_device_only() -> None:
    engine = AlertEngine()
    out = feed(engine, [device(0, True), down(1 * S), down(1 * S, device="r2"), down(2 * S, if_index=2)])
    assert labels_of(out) == [
        (DEVICE_DOWN, "firing", None, None),
        (INTERFACE_DOWN, "firing", 1, "true"),
        (INTERFACE_DOWN, "firing", 1, None),  # r2
        (INTERFACE_DOWN, "firing", 2, "true"),
    ]
    assert out[1].labels["suppressed_by"] == out[0].fingerprint
    # the device comes back, ifIndex 1 comes up while it was down, ifIndex 2 stays down
    out = feed(engine, [up(10 * S), device(20 * S, False), 40 * S, 50 * S])
    assert [(a.name, a.status, a.if_index, a.labels.get("suppressed"), a.updated_ms - T0) for a in out] == [
        (INTERFACE_DOWN, "resolved", 1, "true", 40 * S),  # never announced: its resolution is suppressed too
        (DEVICE_DOWN, "resolved", None, None, 50 * S),
        (INTERFACE_DOWN, "firing", 2, None, 50 * S),  # still down after the device is back: announced now
    ]


def test_an_announced_interface_alert_is_marked_then_resolved_unsuppressed() -> None:
    engine = AlertEngine()
    out = feed(engine, [down(0), device(5 * S, True), up(10 * S), 40 * S])
    assert labels_of(out) == [
        (INTERFACE_DOWN, "firing", 1, None),
        (DEVICE_DOWN, "firing", None, None),
        (INTERFACE_DOWN, "firing", 1, "true"),  # update: suppressed from now on
        (INTERFACE_DOWN, "resolved", 1, None),  # receivers saw it firing: they must see it resolve
    ]


def test_suppression_is_decided_in_event_time_without_ticks() -> None:
    # the device alert resolves at 50 s; an interface trap at 60 s must not be suppressed even if
    # nobody called tick() in between
    engine = AlertEngine()
    out = feed(engine, [device(0, True), device(20 * S, False), down(60 * S)])
    assert labels_of(out) == [
        (DEVICE_DOWN, "firing", None, None),
        (DEVICE_DOWN, "resolved", None, None),
        (INTERFACE_DOWN, "firing", 1, None),
    ]


def test_cold_start_clears_device_down() -> None:
    engine = AlertEngine()
    out = feed(engine, [device(0, True), FaultEvent(id="cs", device="r1", ts_ms=T0 + 10 * S, kind="coldStart"), 60 * S])
    assert brief(out) == [
        (DEVICE_DOWN, "firing", 0, None, 0),
        ("DeviceRestarted", "firing", 10 * S, None, 10 * S),
        (DEVICE_DOWN, "resolved", 0, 10 * S, 40 * S),
    ]


def test_device_alerts_are_never_suppressed() -> None:
    engine = AlertEngine(EngineConfig(device_alerts=frozenset({DEVICE_DOWN, "DeviceUnreachable"})))
    out = feed(engine, [device(0, True), Signal(name="DeviceUnreachable", device="r1", ts_ms=T0 + S, firing=True)])
    assert [a.labels.get("suppressed") for a in out] == [None, None]


# ---------------------------------------------------------------------- ids, snapshot, restore, idempotence


def scenario() -> list[Signal | FaultEvent]:
    items: list[Signal | FaultEvent] = []
    items += flaps(20, start=0, if_index=1)
    items += [down(5 * S, if_index=2), device(30 * S, True), down(40 * S, if_index=3), up(50 * S, if_index=2)]
    items += [sig(60 * S, True), sig(65 * S, True, severity="critical"), device(90 * S, False)]
    items += [up(200 * S, if_index=3), sig(300 * S, False)]
    items += flaps(5, start=500 * S, if_index=4)
    return sorted(items, key=lambda i: i.ts_ms)


def test_snapshot_restore_continues_exactly() -> None:
    items = scenario()
    end = T0 + 3000 * S
    reference = AlertEngine(FLAP)
    whole = replay(reference, items) + reference.tick(end)
    for cut in (1, len(items) // 3, len(items) // 2, len(items) - 1):
        first = AlertEngine(FLAP)
        before = replay(first, items[:cut])
        restored = AlertEngine(FLAP)
        restored.restore(first.snapshot())
        assert replay(restored, items[:cut]) == []  # replaying what the snapshot covers: nothing new
        assert restored.stats["duplicates"] == cut
        after = replay(restored, items[cut:]) + restored.tick(end)
        assert before + after == whole, f"cut at {cut}"
    assert len({a.id for a in whole}) == len(whole)


def test_restore_keeps_open_alerts_open() -> None:
    engine = AlertEngine()
    feed(engine, [down(0), sig(0, True)])
    restored = AlertEngine()
    restored.restore(engine.snapshot())
    assert [a.name for a in restored.open_alerts()] == [a.name for a in engine.open_alerts()]
    assert len(restored.open_alerts()) == 2
    assert feed(restored, [down(10 * S)]) == []  # no duplicate open
    (update,) = feed(restored, [sig(20 * S, True, severity="major")])
    assert update.id.endswith(":2")  # the sequence continues


def test_restore_refuses_garbage() -> None:
    with pytest.raises(ValueError, match="snapshot"):
        AlertEngine().restore(b"\x00garbage")


def test_seen_ids_are_bounded_and_old_replays_are_stale() -> None:
    engine = AlertEngine(EngineConfig(max_seen_ids=3, rules={INTERFACE_DOWN: AlertRule()}))
    events = [down(0), up(S), down(2 * S), up(3 * S), down(4 * S)]
    first = feed(engine, events)
    assert len(first) == 5
    # newest first: the last 3 ids are remembered (duplicates), the first 2 were evicted but are older than
    # the state already applied (stale)
    assert feed(engine, events[::-1]) == []
    assert (engine.stats["duplicates"], engine.stats["stale"]) == (3, 2)


# ---------------------------------------------------------------------- property: ticks do not change results


def _inputs(draw_ops: list[tuple[int, int, int]]) -> list[Signal | FaultEvent]:
    items: list[Signal | FaultEvent] = []
    t = 0
    for gap, what, if_index in draw_ops:
        t += gap * S
        if what == 0:
            items.append(down(t, if_index=if_index))
        elif what == 1:
            items.append(up(t, if_index=if_index))
        elif what in (2, 3):
            items.append(device(t, what == 2))
        elif what == 4:
            items.append(FaultEvent(id=f"cs{next(_counter)}", device="r1", ts_ms=T0 + t, kind="coldStart"))
        else:
            items.append(sig(t, what == 5, if_index=if_index, severity=("warning", "major")[if_index % 2]))
    return items


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 120), st.integers(0, 6), st.integers(1, 3)), max_size=40),
    st.integers(0, 40),
    st.sampled_from([0, 30 * S]),
)
def test_records_do_not_depend_on_tick_cadence_or_restarts(
    ops: list[tuple[int, int, int]], cut: int, resolve_after: int
) -> None:
    items = _inputs(ops)
    end = T0 + 10_000 * S
    rules = {name: AlertRule(resolve_after_ms=resolve_after) for name in (INTERFACE_DOWN, DEVICE_DOWN)}
    rules["HighUtilisation"] = AlertRule(for_ms=20 * S, resolve_after_ms=resolve_after)
    config = EngineConfig(
        rules=rules, flap_window_ms=60 * S, flap_threshold=4, flap_stable_ms=90 * S, forget_after_ms=120 * S
    )
    ticked = AlertEngine(config)
    with_ticks = replay(ticked, items) + ticked.tick(end)
    bare = AlertEngine(config)
    without_ticks = [a for item in items for a in (bare.signal(item) if isinstance(item, Signal) else bare.fault(item))]
    without_ticks += bare.tick(end)
    assert sorted(with_ticks, key=lambda a: a.id) == sorted(without_ticks, key=lambda a: a.id)
    cut = min(cut, len(items))
    first = AlertEngine(config)
    part = replay(first, items[:cut])
    second = AlertEngine(config)
    second.restore(first.snapshot())
    part += replay(second, items) + second.tick(end)  # the whole input again: the covered part is ignored
    assert part == with_ticks
    assert len({a.id for a in with_ticks}) == len(with_ticks)
    for a in with_ticks:
        assert a.starts_ms <= a.updated_ms and (a.ends_ms is None or a.starts_ms <= a.ends_ms <= a.updated_ms)
