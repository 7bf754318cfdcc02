"""Alert lifecycle: signals and fault events in, alert state changes out.

:class:`AlertEngine` is a deterministic state machine driven by event time: nothing inside reads a
clock. Callers pass ``ts_ms`` with every input and call :meth:`AlertEngine.tick` with the current
event time (a watermark) so timers fire. Given the same inputs, ticks and config, it emits the same
records with the same ids.

Inputs
    :class:`Signal` — a condition reported by another stage (``firing`` True while it holds), and
    :class:`~models.records.FaultEvent` — traps and oper-status changes, mapped by :meth:`AlertEngine.fault`:

    ============================== ========================================================================
    fault kind                     effect
    ============================== ========================================================================
    ``linkDown``                   ``InterfaceDown`` (critical) fires for (device, if_index)
    ``linkUp``                     ``InterfaceDown`` of (device, if_index) clears
    ``operStatus``                 varbind ``oper_status``: DOWN/LOWER_LAYER_DOWN/NOT_PRESENT fire
                                   ``InterfaceDown``, UP/DORMANT clear it, TESTING/UNKNOWN are ignored
    ``coldStart`` / ``warmStart``  ``DeviceRestarted`` (warning, resolves on its own after
                                   ``auto_resolve_ms``) and clears every device-level alert of the device
    ``authenticationFailure``      ``AuthenticationFailure`` (minor, resolves on its own)
    anything else                  ``DeviceTrap`` labelled ``trap=<kind or trap OID>`` (severity from
                                   ``EngineConfig.trap_severity``, resolves on its own)
    ============================== ========================================================================

    A ``linkDown``/``linkUp`` without an ifIndex becomes a ``DeviceTrap``. ``DeviceDown`` is a
    :class:`Signal` from whoever decides reachability (the poller): ``Signal(name="DeviceDown", ...)``.

Fingerprint
    ``sha256`` of the canonical JSON ``[name, device, if_index, sorted identifying labels]``, first 16 hex
    digits. ``Signal.labels`` are all identifying (like Prometheus labels); ``summary`` and ``value`` are not.

Lifecycle of one fingerprint (an *episode* runs from open to resolve)
    * pending: the condition fires; the alert opens once it has held ``for_ms`` (0: at once).
      ``starts_ms`` is when the condition started, ``updated_ms`` when the alert opened.
    * firing: repeated firing inputs emit nothing unless something material changes: severity,
      summary, the ``flapping`` label or the ``suppressed`` label; then an update record is emitted.
    * resolving: the condition clears; the alert resolves once it has stayed clear ``resolve_after_ms``
      (a re-fire within that time keeps the same alert). ``ends_ms`` is when the condition cleared,
      ``updated_ms`` when the engine decided. Rules with ``auto_resolve_ms`` (traps with no clearing
      trap) resolve that long after the last firing input, ``ends_ms`` being that time.

Flap suppression
    Every change of the condition is recorded (the last ``flap_threshold`` times). When
    ``flap_threshold`` changes fall within ``flap_window_ms`` the fingerprint is *flapping*: its alert
    opens at once if it was not open (``starts_ms`` = the first change in the window, never before the
    end of the previous episode), carries the label ``flapping="true"``, and stays firing however the
    condition moves. It ends once the condition has not changed for ``flap_stable_ms``: the alert
    resolves if the condition is then clear (``ends_ms`` = the last change), else it stays firing and
    loses the label. With ``resolve_after_ms`` longer than the bounce, a link going down and up fifty
    times in a few minutes is one alert: firing, firing+flapping, resolved.

Correlation (device down suppresses interface alerts)
    While an alert whose name is in ``EngineConfig.device_alerts`` (``DeviceDown``) is open for a
    device, every alert of that device that has an ``if_index`` is *suppressed*: its records carry
    ``suppressed="true"`` and ``suppressed_by=<fingerprint of the device alert>``, and the outputs
    (:class:`assurance.outputs.AlertDispatcher`) do not send them. Precisely:

    * an interface alert opening while its device is down is emitted with ``suppressed``;
    * an interface alert already open when the device goes down gets an update with ``suppressed``
      (not sent: receivers keep it firing, which it is);
    * when the device alert resolves, interface alerts still open get an update without the label
      (sent: for those opened while suppressed, this is their first announcement);
    * a resolved record carries ``suppressed`` only if no earlier record of its episode was sent
      unsuppressed, so receivers always see the resolution of what they saw firing.

    Device-level alerts are never suppressed. Interface alerts that opened before the device alert
    stay announced (nothing is retracted). Suppression follows event time, not arrival or tick order:
    an interface transition due before the device change sees the old state; at the same millisecond
    the device change comes first.

Ids and restarts
    Every emitted record has ``id = "<fingerprint>:<starts_ms>:<n>"``, ``n`` counting the episode's
    records from 1. :meth:`AlertEngine.snapshot`/:meth:`AlertEngine.restore` carry all state, so a
    restarted worker neither re-opens open alerts nor reuses an id. Inputs are idempotent on their id
    (``FaultEvent.id``; ``Signal.id`` or, when empty, fingerprint + ts_ms + firing): the engine remembers
    the last ``max_seen_ids`` ids (kept in the snapshot), and ignores an input older than the latest one
    already applied to its fingerprint (counted as ``stale``).

Example:

>>> engine = AlertEngine()
>>> down = FaultEvent(id="e1", device="r1", ts_ms=1_000, kind="linkDown", if_index=3)
>>> [(a.name, a.status, a.severity) for a in engine.fault(down)]
[('InterfaceDown', 'firing', 'critical')]
>>> engine.fault(down)  # the same event again: nothing new
[]
>>> up = FaultEvent(id="e2", device="r1", ts_ms=5_000, kind="linkUp", if_index=3)
>>> engine.fault(up)  # clear, but resolve_after_ms (30 s) has not passed
[]
>>> [(a.status, a.ends_ms, a.updated_ms) for a in engine.tick(40_000)]
[('resolved', 5000, 35000)]
"""

from __future__ import annotations

import hashlib
import heapq
import json
import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args

import msgspec

from models.records import Alert, FaultEvent

Severity = Literal["critical", "major", "minor", "warning", "info"]
SEVERITIES: tuple[str, ...] = get_args(Severity)

INTERFACE_DOWN = "InterfaceDown"
DEVICE_DOWN = "DeviceDown"
DEVICE_RESTARTED = "DeviceRestarted"
AUTHENTICATION_FAILURE = "AuthenticationFailure"
DEVICE_TRAP = "DeviceTrap"

# Labels the engine sets on records; they change within an alert's life, so they never identify it
# (a signal's labels with these names are dropped) and outputs treat them as annotations.
FLAPPING_LABEL = "flapping"
SUPPRESSED_LABEL = "suppressed"
SUPPRESSED_BY_LABEL = "suppressed_by"
VALUE_LABEL = "value"
VOLATILE_LABELS: frozenset[str] = frozenset({FLAPPING_LABEL, SUPPRESSED_LABEL, SUPPRESSED_BY_LABEL, VALUE_LABEL})

SNAPSHOT_VERSION = 1

_OPER_DOWN = frozenset({"DOWN", "LOWER_LAYER_DOWN", "NOT_PRESENT", "2", "6", "7"})
_OPER_UP = frozenset({"UP", "DORMANT", "1", "5"})
# IF-MIB ifDescr and ifName columns: a trap's var-binds may name the interface.
_IF_NAME_PREFIXES = ("1.3.6.1.2.1.31.1.1.1.1.", "1.3.6.1.2.1.2.2.1.2.")


class AlertConfigError(ValueError):
    """An invalid engine setting; ``key`` names it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


class Signal(msgspec.Struct, frozen=True, kw_only=True):
    """A condition on a device or interface, as seen at ``ts_ms``: ``firing`` while it holds.

    ``labels`` identify the alert together with name, device and if_index; ``summary`` and ``value``
    describe it. ``id`` makes the input idempotent (empty: derived from fingerprint, ts_ms and firing).
    """

    name: str
    device: str
    ts_ms: int
    firing: bool
    severity: Severity = "warning"
    if_index: int | None = None
    summary: str = ""
    labels: dict[str, str] = {}
    value: float | None = None
    id: str = ""


@dataclass(frozen=True)
class AlertRule:
    """Timing of one alert name. All durations in milliseconds of event time."""

    for_ms: int = 0  # the condition must hold this long before the alert opens
    resolve_after_ms: int = 0  # ... and stay clear this long before it resolves
    auto_resolve_ms: int = 0  # > 0: resolves this long after the last firing input (traps without a clear)
    flap_detection: bool = True

    def validate(self, prefix: str) -> None:
        for name in ("for_ms", "resolve_after_ms", "auto_resolve_ms"):
            if getattr(self, name) < 0:
                raise AlertConfigError(f"{prefix}.{name}", "must be >= 0")


DEFAULT_RULES: Mapping[str, AlertRule] = {
    INTERFACE_DOWN: AlertRule(resolve_after_ms=30_000),
    DEVICE_DOWN: AlertRule(resolve_after_ms=30_000),
    DEVICE_RESTARTED: AlertRule(auto_resolve_ms=300_000, flap_detection=False),
    AUTHENTICATION_FAILURE: AlertRule(auto_resolve_ms=300_000, flap_detection=False),
    DEVICE_TRAP: AlertRule(auto_resolve_ms=300_000, flap_detection=False),
}


@dataclass(frozen=True)
class EngineConfig:
    """Settings of :class:`AlertEngine`; :meth:`validate` names the offending field."""

    rules: Mapping[str, AlertRule] = field(default_factory=lambda: dict(DEFAULT_RULES))
    default_rule: AlertRule = AlertRule()  # for names not in ``rules``
    flap_window_ms: int = 300_000
    flap_threshold: int = 6  # condition changes within the window that make a fingerprint flapping
    flap_stable_ms: int = 600_000  # no change for this long ends flapping
    device_alerts: frozenset[str] = frozenset({DEVICE_DOWN})  # while open, suppress the device's interface alerts
    trap_severity: Mapping[str, Severity] = field(default_factory=lambda: {"egpNeighborLoss": "major"})
    unknown_trap_severity: Severity = "info"
    forget_after_ms: int = 3_600_000  # a resolved fingerprint's state is dropped after this long idle
    max_seen_ids: int = 100_000  # recent input ids remembered for idempotence

    def validate(self) -> EngineConfig:
        for name, rule in self.rules.items():
            rule.validate(f"rules.{name}")
        self.default_rule.validate("default_rule")
        if self.flap_threshold < 2:
            raise AlertConfigError("flap_threshold", "must be >= 2")
        for name in ("flap_window_ms", "flap_stable_ms", "forget_after_ms", "max_seen_ids"):
            if getattr(self, name) <= 0:
                raise AlertConfigError(name, "must be > 0")
        if self.forget_after_ms < self.flap_window_ms:
            raise AlertConfigError("forget_after_ms", "must be >= flap_window_ms (flap history lives in the state)")
        for kind, severity in self.trap_severity.items():
            if severity not in SEVERITIES:
                raise AlertConfigError(f"trap_severity.{kind}", f"unknown severity {severity!r}")
        if self.unknown_trap_severity not in SEVERITIES:
            raise AlertConfigError("unknown_trap_severity", f"unknown severity {self.unknown_trap_severity!r}")
        return self

    def rule(self, name: str) -> AlertRule:
        return self.rules.get(name, self.default_rule)


def fingerprint(name: str, device: str, if_index: int | None, labels: Mapping[str, str]) -> str:
    """Stable identity of an alert (the same in every process and release)."""
    canonical = json.dumps([name, device, if_index, sorted(labels.items())], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class _Track(msgspec.Struct, kw_only=True):
    """State of one fingerprint. Lives in the snapshot, so every field is plain data."""

    fingerprint: str
    name: str
    device: str
    if_index: int | None
    labels: dict[str, str]
    severity: str = "warning"
    summary: str = ""
    value: float | None = None
    cond: bool = False  # the condition as last reported
    cond_since: int = 0  # when it last changed
    last_ts: int = 0  # latest input applied (older inputs are stale)
    clock: int = 0  # the track has been advanced to this time
    last_fire_ts: int = 0
    open: bool = False
    starts_ms: int = 0
    seq: int = 0  # records emitted in the current episode
    last_ends_ms: int = 0  # end of the previous episode
    flips: list[int] = []  # times of the last condition changes (at most flap_threshold)
    flapping: bool = False
    announced: bool = False  # a record of this episode went out unsuppressed
    last: Alert | None = None  # the last record of the open episode
    deadline: int | None = None


class _Snapshot(msgspec.Struct):
    version: int
    tracks: list[_Track]
    seen: list[str]
    stats: dict[str, int]


@dataclass(frozen=True, slots=True)
class _Input:
    name: str
    device: str
    if_index: int | None
    labels: dict[str, str]
    firing: bool
    ts_ms: int
    severity: str = "warning"
    summary: str = ""
    value: float | None = None


class AlertEngine:
    """Deterministic alert state machine; see the module docstring for the exact semantics."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = (config or EngineConfig()).validate()
        self._reset()

    def _reset(self) -> None:
        self._tracks: dict[str, _Track] = {}
        self._heap: list[tuple[int, int, str]] = []  # (deadline, 0 device-level / 1 other, fingerprint)
        self._interfaces: dict[str, set[str]] = {}  # device -> fingerprints of its interface alerts
        self._device_level: dict[str, set[str]] = {}  # device -> fingerprints of its device-level alerts
        self._down: dict[str, set[str]] = {}  # device -> open device-level alerts (suppressing)
        self._seen: set[str] = set()
        self._seen_order: deque[str] = deque()
        self.stats: dict[str, int] = dict.fromkeys(
            ("inputs", "duplicates", "stale", "ignored", "emitted", "opened", "resolved", "updated", "forgotten"), 0
        )

    # ------------------------------------------------------------------ inputs

    def signal(self, s: Signal) -> list[Alert]:
        """Apply one signal; returns the records it caused (often none)."""
        if s.severity not in SEVERITIES:
            raise ValueError(f"Signal.severity: unknown severity {s.severity!r}")
        labels = {k: v for k, v in s.labels.items() if k not in VOLATILE_LABELS}
        inp = _Input(s.name, s.device, s.if_index, labels, s.firing, s.ts_ms, s.severity, s.summary, s.value)
        key = s.id or f"signal:{fingerprint(s.name, s.device, s.if_index, labels)}:{s.ts_ms}:{int(s.firing)}"
        return self._run(key, [inp])

    def fault(self, ev: FaultEvent) -> list[Alert]:
        """Apply one fault event (trap, inform, oper-status change); see the mapping in the module docstring."""
        return self._run(ev.id, self._fault_inputs(ev))

    def tick(self, now_ms: int) -> list[Alert]:
        """Fire every timer due at or before ``now_ms`` (opens after ``for_ms``, resolves, flap ends)."""
        out: list[Alert] = []
        while self._heap and self._heap[0][0] <= now_ms:
            due, _, fp = heapq.heappop(self._heap)
            track = self._tracks.get(fp)
            if track is None or track.deadline != due:
                continue  # superseded entry
            track.deadline = None
            self._advance(track, due, out)
            self._schedule(track)
        return out

    # ------------------------------------------------------------------ state

    def open_alerts(self) -> list[Alert]:
        """The latest record of every open alert (to seed outputs that re-send firing alerts)."""
        return [t.last for t in sorted(self._tracks.values(), key=lambda t: t.fingerprint) if t.open and t.last]

    def snapshot(self) -> bytes:
        """All state as bytes (msgpack); :meth:`restore` continues exactly where this left off."""
        tracks = [self._tracks[fp] for fp in sorted(self._tracks)]
        return msgspec.msgpack.encode(_Snapshot(SNAPSHOT_VERSION, tracks, list(self._seen_order), dict(self.stats)))

    def restore(self, data: bytes) -> None:
        """Replace the state with a snapshot taken by :meth:`snapshot` (raises ``ValueError`` if unusable)."""
        try:
            snap = msgspec.msgpack.decode(data, type=_Snapshot)
        except msgspec.DecodeError as exc:
            raise ValueError(f"not an alert engine snapshot: {exc}") from exc
        if snap.version != SNAPSHOT_VERSION:
            raise ValueError(f"alert engine snapshot version {snap.version}, expected {SNAPSHOT_VERSION}")
        self._reset()
        for track in snap.tracks:
            track.deadline = None  # the timer heap is rebuilt below
            self._register(track)
            if track.open and self._is_device_level(track):
                self._down.setdefault(track.device, set()).add(track.fingerprint)
            self._schedule(track)
        for key in snap.seen[-self.config.max_seen_ids :]:
            self._remember(key)
        self.stats.update(snap.stats)

    def __len__(self) -> int:
        return len(self._tracks)

    # ------------------------------------------------------------------ mapping faults

    def _fault_inputs(self, ev: FaultEvent) -> list[_Input]:
        kind = ev.kind
        if kind == "operStatus" and ev.if_index is not None:
            status = ev.varbinds.get("oper_status", "").upper()
            if status in _OPER_DOWN:
                kind = "linkDown"
            elif status in _OPER_UP:
                kind = "linkUp"
            else:
                return []
        if kind in ("linkDown", "linkUp") and ev.if_index is not None:
            label = _interface_label(ev)
            summary = f"interface {label} on {ev.device} is down"
            firing = kind == "linkDown"
            return [_Input(INTERFACE_DOWN, ev.device, ev.if_index, {}, firing, ev.ts_ms, "critical", summary)]
        if kind in ("coldStart", "warmStart"):
            restarted = _Input(
                DEVICE_RESTARTED, ev.device, None, {}, True, ev.ts_ms, "warning", f"{ev.device} restarted ({kind})"
            )
            clears = [
                _Input(t.name, t.device, None, t.labels, False, ev.ts_ms)
                for t in (self._tracks[fp] for fp in sorted(self._device_level.get(ev.device, ())))
            ]
            return [restarted, *clears]
        if kind == "authenticationFailure":
            summary = f"SNMP authentication failure reported by {ev.device}"
            return [_Input(AUTHENTICATION_FAILURE, ev.device, None, {}, True, ev.ts_ms, "minor", summary)]
        trap = kind if kind not in ("trap", "inform") or not ev.trap_oid else ev.trap_oid
        severity = self.config.trap_severity.get(kind, self.config.unknown_trap_severity)
        summary = f"{ev.device} sent {trap}"
        return [_Input(DEVICE_TRAP, ev.device, None, {"trap": trap}, True, ev.ts_ms, severity, summary)]

    # ------------------------------------------------------------------ machinery

    def _run(self, key: str, inputs: list[_Input]) -> list[Alert]:
        if key in self._seen:
            self.stats["duplicates"] += 1
            return []
        self._remember(key)
        self.stats["inputs"] += 1
        out: list[Alert] = []
        if not inputs:
            self.stats["ignored"] += 1
        for inp in inputs:
            self._apply(inp, out)
        return out

    def _remember(self, key: str) -> None:
        self._seen.add(key)
        self._seen_order.append(key)
        while len(self._seen_order) > self.config.max_seen_ids:
            self._seen.discard(self._seen_order.popleft())

    def _register(self, track: _Track) -> None:
        self._tracks[track.fingerprint] = track
        if self._is_device_level(track):
            self._device_level.setdefault(track.device, set()).add(track.fingerprint)
        elif track.if_index is not None:
            self._interfaces.setdefault(track.device, set()).add(track.fingerprint)

    def _forget(self, track: _Track) -> None:
        del self._tracks[track.fingerprint]
        for index in (self._device_level, self._interfaces):
            members = index.get(track.device)
            if members is not None:
                members.discard(track.fingerprint)
                if not members:
                    del index[track.device]
        self.stats["forgotten"] += 1

    def _apply(self, inp: _Input, out: list[Alert]) -> None:
        fp = fingerprint(inp.name, inp.device, inp.if_index, inp.labels)
        track = self._tracks.get(fp)
        if track is not None and inp.ts_ms < track.last_ts:
            self.stats["stale"] += 1
            return
        if inp.if_index is not None:
            # device-level timers due up to this input decide whether it is suppressed
            for dfp in sorted(self._device_level.get(inp.device, ())):
                device_track = self._tracks[dfp]
                self._advance(device_track, inp.ts_ms, out)
                self._schedule(device_track)
        if track is not None:
            self._advance(track, inp.ts_ms, out)  # its own timers first; this may forget it
            self._schedule(track)
            track = self._tracks.get(fp)
        if track is None:
            if not inp.firing:
                self.stats["ignored"] += 1  # a clear for an alert we hold no state for: nothing to resolve
                return
            track = _Track(
                fingerprint=fp,
                name=inp.name,
                device=inp.device,
                if_index=inp.if_index,
                labels=dict(inp.labels),
                cond_since=inp.ts_ms,
                last_ts=inp.ts_ms,
                clock=inp.ts_ms,
            )
            self._register(track)
        ts = track.clock
        track.last_ts = ts
        rule = self.config.rule(track.name)
        if inp.firing:
            track.last_fire_ts = ts
            track.severity = inp.severity
            track.summary = inp.summary or track.summary
            track.value = inp.value
        if inp.firing != track.cond:
            track.cond = inp.firing
            track.cond_since = ts
            if rule.flap_detection:
                self._record_flip(track, ts)
        if track.flapping and not track.open:
            self._open(track, ts, max(track.flips[0], track.last_ends_ms), out)
        elif track.open and self._material_change(track):
            self._emit(track, "firing", ts, out)
            self.stats["updated"] += 1
        self._advance(track, ts, out)
        self._schedule(track)

    def _record_flip(self, track: _Track, ts: int) -> None:
        track.flips.append(ts)
        threshold = self.config.flap_threshold
        if len(track.flips) > threshold:
            del track.flips[: len(track.flips) - threshold]
        if len(track.flips) == threshold and ts - track.flips[0] <= self.config.flap_window_ms:
            track.flapping = True

    def _due(self, track: _Track) -> tuple[int, str] | None:
        """The next timer of a track: (time, action)."""
        rule = self.config.rule(track.name)
        if not track.open:
            if track.cond:
                return track.cond_since + rule.for_ms, "open"
            return max(track.last_ts, track.cond_since) + self.config.forget_after_ms, "forget"
        if track.flapping:
            return track.cond_since + self.config.flap_stable_ms, "unflap" if track.cond else "resolve"
        if not track.cond:
            return track.cond_since + rule.resolve_after_ms, "resolve"
        if rule.auto_resolve_ms:
            return track.last_fire_ts + rule.auto_resolve_ms, "expire"
        return None

    def _advance(self, track: _Track, until: int, out: list[Alert]) -> None:
        """Run the track's timers due at or before ``until``, in order, then set its clock."""
        while self._tracks.get(track.fingerprint) is track:
            due = self._due(track)
            if due is None or due[0] > until:
                break
            at, action = due
            at = max(at, track.clock)
            track.clock = at
            if action == "open":
                self._open(track, at, track.cond_since, out)
            elif action == "resolve":
                self._resolve(track, at, track.cond_since, out)
            elif action == "expire":
                self._resolve(track, at, at, out)
                track.cond = False
                track.cond_since = at
            elif action == "unflap":
                track.flapping = False
                track.flips.clear()
                self._emit(track, "firing", at, out)
                self.stats["updated"] += 1
            else:
                self._forget(track)
        track.clock = max(track.clock, until)

    def _schedule(self, track: _Track) -> None:
        if self._tracks.get(track.fingerprint) is not track:
            return
        due = self._due(track)
        deadline = None if due is None else max(due[0], track.clock)
        if deadline != track.deadline:
            track.deadline = deadline
            if deadline is not None:
                heapq.heappush(self._heap, (deadline, 0 if self._is_device_level(track) else 1, track.fingerprint))

    def _is_device_level(self, track: _Track) -> bool:
        return track.if_index is None and track.name in self.config.device_alerts

    def _open(self, track: _Track, at: int, starts_ms: int, out: list[Alert]) -> None:
        device_level = self._is_device_level(track)
        if device_level:
            self._settle_interfaces(track.device, at - 1, out)
        starts_ms = min(max(starts_ms, track.last_ends_ms), at)
        if starts_ms != track.starts_ms:
            track.seq = 0  # a new episode numbers its records from 1 (equal starts continue: ids stay unique)
        track.open = True
        track.starts_ms = starts_ms
        track.announced = False
        self._emit(track, "firing", at, out)
        self.stats["opened"] += 1
        if device_level:
            self._down.setdefault(track.device, set()).add(track.fingerprint)
            self._resuppress(track.device, at, out)

    def _resolve(self, track: _Track, at: int, ends_ms: int, out: list[Alert]) -> None:
        if self._is_device_level(track):
            self._settle_interfaces(track.device, at - 1, out)
        ends_ms = max(ends_ms, track.starts_ms)
        self._emit(track, "resolved", at, out, ends_ms)
        self.stats["resolved"] += 1
        track.open = False
        track.last = None
        track.last_ends_ms = ends_ms
        if track.flapping:
            track.flapping = False
            track.flips.clear()
        down = self._down.get(track.device)
        if down is not None and track.fingerprint in down:
            down.discard(track.fingerprint)
            if not down:
                del self._down[track.device]
            self._resuppress(track.device, at, out)

    def _settle_interfaces(self, device: str, until: int, out: list[Alert]) -> None:
        """Run the device's interface timers due up to ``until`` under the device state they were due in."""
        for fp in sorted(self._interfaces.get(device, ())):
            track = self._tracks.get(fp)
            if track is not None:
                self._advance(track, until, out)
                self._schedule(track)

    def _resuppress(self, device: str, at: int, out: list[Alert]) -> None:
        """The device's down state changed at ``at``: re-announce its open interface alerts if that matters.

        At equal times a device-level change comes first: interface timers due at ``at`` see the new state.
        """
        for fp in sorted(self._interfaces.get(device, ())):
            track = self._tracks.get(fp)
            if track is None:
                continue
            self._advance(track, at, out)
            if self._tracks.get(fp) is track and track.open and self._material_change(track):
                self._emit(track, "firing", track.clock, out)
                self.stats["updated"] += 1
            self._schedule(track)

    def _suppressor(self, track: _Track) -> str:
        if track.if_index is None:
            return ""
        down = self._down.get(track.device)
        return min(down) if down else ""

    def _material_change(self, track: _Track) -> bool:
        last = track.last
        if last is None:
            return True
        return (
            last.severity != track.severity
            or last.summary != track.summary
            or (FLAPPING_LABEL in last.labels) != track.flapping
            or (SUPPRESSED_LABEL in last.labels) != bool(self._suppressor(track))
        )

    def _emit(
        self, track: _Track, status: Literal["firing", "resolved"], at: int, out: list[Alert], ends: int | None = None
    ) -> None:
        track.seq += 1
        labels = dict(track.labels)
        if track.flapping:
            labels[FLAPPING_LABEL] = "true"
        suppressor = self._suppressor(track)
        if suppressor and (status == "firing" or not track.announced):
            labels[SUPPRESSED_LABEL] = "true"
            labels[SUPPRESSED_BY_LABEL] = suppressor
        else:
            track.announced = True
        if track.value is not None and math.isfinite(track.value):
            labels[VALUE_LABEL] = f"{track.value:g}"
        alert = Alert(
            id=f"{track.fingerprint}:{track.starts_ms}:{track.seq}",
            fingerprint=track.fingerprint,
            name=track.name,
            status=status,
            severity=track.severity,  # type: ignore[arg-type]  # validated on input
            device=track.device,
            if_index=track.if_index,
            summary=track.summary,
            starts_ms=track.starts_ms,
            ends_ms=ends,
            updated_ms=at,
            labels=labels,
        )
        track.last = alert
        out.append(alert)
        self.stats["emitted"] += 1


def _interface_label(ev: FaultEvent) -> str:
    name = ev.varbinds.get("interface", "")
    if not name:
        for oid, value in ev.varbinds.items():
            if oid.startswith(_IF_NAME_PREFIXES) and value:
                name = value
                break
    return f"{name} (ifIndex {ev.if_index})" if name else f"ifIndex {ev.if_index}"


def replay(engine: AlertEngine, inputs: Iterable[Signal | FaultEvent]) -> list[Alert]:
    """Feed inputs in order, first ticking the timers due before each input's time; returns every record
    emitted. Timers due at exactly an input's time run after it (at their own time, on a later tick), as
    when the engine is not ticked at all: an input at a time comes before other alerts' timers at that
    time (a device coming up at 20 s unsuppresses an interface alert due to open at 20 s)."""
    out: list[Alert] = []
    for item in inputs:
        out.extend(engine.tick(item.ts_ms - 1))
        out.extend(engine.signal(item) if isinstance(item, Signal) else engine.fault(item))
    return out


__all__ = [
    "AUTHENTICATION_FAILURE",
    "DEFAULT_RULES",
    "DEVICE_DOWN",
    "DEVICE_RESTARTED",
    "DEVICE_TRAP",
    "FLAPPING_LABEL",
    "INTERFACE_DOWN",
    "SEVERITIES",
    "SUPPRESSED_BY_LABEL",
    "SUPPRESSED_LABEL",
    "VALUE_LABEL",
    "VOLATILE_LABELS",
    "AlertConfigError",
    "AlertEngine",
    "AlertRule",
    "EngineConfig",
    "Signal",
    "fingerprint",
    "replay",
]
