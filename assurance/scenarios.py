"""Labelled failure scenarios for fault prediction, shaped like the gNMI simulator's faults.

Each scenario is one interface: a series of 1-minute :class:`~models.records.InterfaceRate` windows
with diurnal traffic and noise, plus the :class:`~models.records.FaultEvent` records (link traps, RMON
threshold traps) the collectors would produce. Some interfaces fail at a known time with one of the
simulator's fault kinds (``collectors.gnmi_sim.FAULT_KINDS``):

* ``link_down``  the link goes down and stays down; before it, flaps come closer together
  (linkDown/linkUp traps, ``oper_status_changes``) and, often, optics degrade (errors grow);
* ``error_burst`` a sustained storm of input errors (>= ``FAILED_ERRORS_PER_MIN``); before it,
  errors (and often discards) grow, with RMON ``risingAlarm`` traps;
* ``saturation`` the link runs at line rate and drops 1 % of packets; before it, utilisation creeps
  up faster than the daily cycle, bursts reach line rate and congestion discards appear.

Leading indicators vary in strength (0.2-1.0) and lead (10-90 min before the failure); a tenth of the
failures are sudden (no precursor at all), so no predictor can catch every one. Healthy interfaces
carry confusers: a one-off error burst, a busy-but-healthy link (peaks near line rate, discards at
the busy hour), a single flap, an optic with a steady elevated error rate. Generation is vectorised
per interface and deterministic for a seed.

Scoring (:func:`score_predictions`): a failing interface is caught (a true positive) when a prediction
was made between ``horizon`` and one minute before its failure; every other prediction (on a healthy
interface, earlier than the horizon, in the last minute or after the failure) is a false positive;
further predictions inside the window of an interface already caught are duplicates and count as
neither. Lead time is the failure time minus the first prediction inside the window.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from models.records import FaultEvent, InterfaceRate

__all__ = [
    "AVG_PACKET_BYTES",
    "FAILED_ERRORS_PER_MIN",
    "FAILED_UTILISATION",
    "FAILURE_KINDS",
    "RISING_ALARM_OID",
    "CapacityScenario",
    "CapacitySet",
    "FaultScore",
    "Scenario",
    "ScenarioSet",
    "capacity_scenarios",
    "generate_scenarios",
    "score_predictions",
]

# Same kinds as collectors.gnmi_sim.FAULT_KINDS (not imported: that module pulls in grpc).
FAILURE_KINDS = ("link_down", "error_burst", "saturation")
# A minute is "failed" when the link is down at its end, errors reach this rate, or utilisation this level.
FAILED_ERRORS_PER_MIN = 6000.0  # 100 errors/s; the simulator's error_burst default is 500/s
FAILED_UTILISATION = 0.98
AVG_PACKET_BYTES = 800  # as the simulator
RISING_ALARM_OID = "1.3.6.1.2.1.16.0.1"  # RMON-MIB risingAlarm: an error-counter threshold crossed
AUTH_FAILURE_OID = "1.3.6.1.6.3.1.1.5.5"
SPEEDS = (10_000_000_000, 1_000_000_000, 100_000_000_000)  # as the simulator's default
INTERFACES_PER_DEVICE = 8
DEFAULT_START_MS = 1_717_200_000_000  # 2024-06-01T00:00:00Z
MINUTE_MS = 60_000
DAY_MINUTES = 1440
HEALTHY_UTIL_CAP = 0.95  # a healthy link's minute average never reaches FAILED_UTILISATION


@dataclass(frozen=True)
class Scenario:
    """One interface's labels: when it fails (None: healthy), how, and what led up to it."""

    device: str
    if_index: int
    if_name: str
    speed_bps: int
    failure_ms: int | None = None
    failure_kind: str | None = None
    precursor_lead_s: int | None = None  # how long before the failure the leading indicators start
    precursor_strength: float = 0.0  # 0: a sudden failure
    confusers: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, int]:
        return (self.device, self.if_index)


@dataclass
class ScenarioSet:
    """Interfaces observed over the same minutes: per-minute columns of shape (interfaces, minutes).

    Columns: ``in_util``/``out_util`` (fractions of line rate), ``in_bps``/``out_bps``,
    ``in_bps_max``/``out_bps_max``, ``in_pps``/``out_pps``, ``in_errors``/``out_errors``,
    ``in_discards``/``out_discards``, ``oper_changes`` and ``oper_status`` (1 up, 2 down).
    """

    start_ms: int
    minutes: int
    scenarios: list[Scenario]
    columns: dict[str, np.ndarray]
    faults: list[FaultEvent]
    seed: int = 0
    _faults_by_minute: dict[int, list[FaultEvent]] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.scenarios)

    @property
    def failing(self) -> list[Scenario]:
        return [s for s in self.scenarios if s.failure_ms is not None]

    def labels(self) -> dict[tuple[str, int], int | None]:
        """Failure time (epoch ms) per interface, None for a healthy one."""
        return {s.key: s.failure_ms for s in self.scenarios}

    def minute_ms(self, minute: int) -> int:
        return self.start_ms + minute * MINUTE_MS

    def faults_at(self, minute: int) -> list[FaultEvent]:
        """Fault events whose timestamp falls in ``minute``."""
        if self._faults_by_minute is None:
            grouped: dict[int, list[FaultEvent]] = {}
            for event in self.faults:
                grouped.setdefault((event.ts_ms - self.start_ms) // MINUTE_MS, []).append(event)
            self._faults_by_minute = grouped
        return self._faults_by_minute.get(minute, [])

    def rate(self, index: int, minute: int) -> InterfaceRate:
        """The 1-minute window of interface ``index`` at ``minute``, as the stream stage emits it."""
        s = self.scenarios[index]
        c = self.columns
        window_start = self.minute_ms(minute)
        in_bps = float(c["in_bps"][index, minute])
        in_max = float(c["in_bps_max"][index, minute])
        out_bps = float(c["out_bps"][index, minute])
        out_max = float(c["out_bps_max"][index, minute])
        return InterfaceRate(
            id=InterfaceRate.make_id(s.device, s.if_index, window_start),
            device=s.device,
            if_index=s.if_index,
            window_start_ms=window_start,
            if_name=s.if_name,
            samples=6,
            in_bps_avg=in_bps,
            in_bps_max=in_max,
            in_bps_p95=in_bps + 0.8 * (in_max - in_bps),
            out_bps_avg=out_bps,
            out_bps_max=out_max,
            out_bps_p95=out_bps + 0.8 * (out_max - out_bps),
            in_util_pct_avg=float(c["in_util"][index, minute]) * 100.0,
            out_util_pct_avg=float(c["out_util"][index, minute]) * 100.0,
            in_errors=int(c["in_errors"][index, minute]),
            out_errors=int(c["out_errors"][index, minute]),
            in_discards=int(c["in_discards"][index, minute]),
            out_discards=int(c["out_discards"][index, minute]),
            speed_bps=s.speed_bps,
            in_pps_avg=float(c["in_pps"][index, minute]),
            out_pps_avg=float(c["out_pps"][index, minute]),
            oper_status_changes=int(c["oper_changes"][index, minute]),
            oper_status=int(c["oper_status"][index, minute]),
        )

    def rates_at(self, minute: int) -> list[InterfaceRate]:
        return [self.rate(i, minute) for i in range(len(self.scenarios))]

    def interface_rates(self, index: int) -> list[InterfaceRate]:
        return [self.rate(index, m) for m in range(self.minutes)]

    def replay(self) -> Iterator[tuple[int, list[InterfaceRate], list[FaultEvent]]]:
        """Minute by minute, in time order: (minute, every interface's window, the minute's fault events)."""
        for minute in range(self.minutes):
            yield minute, self.rates_at(minute), self.faults_at(minute)

    def subset(self, indices: Sequence[int]) -> ScenarioSet:
        """The same minutes for a subset of the interfaces (their fault events follow them)."""
        picked = [self.scenarios[i] for i in indices]
        keys = {s.key for s in picked}
        devices = {s.device for s in picked}
        faults = [
            f for f in self.faults if (f.device, f.if_index) in keys or (f.if_index is None and f.device in devices)
        ]
        rows = np.asarray(indices, dtype=np.intp)
        return ScenarioSet(
            start_ms=self.start_ms,
            minutes=self.minutes,
            scenarios=picked,
            columns={name: values[rows] for name, values in self.columns.items()},
            faults=faults,
            seed=self.seed,
        )


def _ar1(shocks: np.ndarray, phi: float) -> np.ndarray:
    """AR(1) noise x[t] = phi * x[t-1] + shocks[t], as a convolution truncated where phi**k < 1e-6."""
    kernel = phi ** np.arange(max(1, int(np.ceil(np.log(1e-6) / np.log(phi)))))
    return np.convolve(shocks, kernel)[: len(shocks)]


@dataclass
class _Series:
    """One interface's columns while it is being generated (1-D arrays over the minutes)."""

    util: np.ndarray
    out_ratio: float
    burstiness: np.ndarray
    errors: np.ndarray
    discards: np.ndarray
    oper_changes: np.ndarray
    oper_status: np.ndarray
    link_up_fraction: np.ndarray  # share of the minute the link carried traffic


class _Generator:
    def __init__(self, seed: int, start_ms: int, minutes: int) -> None:
        self.seed = seed
        self.start_ms = start_ms
        self.minutes = minutes
        self.t = np.arange(minutes, dtype=np.float64)
        self.faults: list[FaultEvent] = []

    def event(
        self, rng: np.random.Generator, s: Scenario, minute: int, kind: str, trap_oid: str = "", offset_s: float = -1
    ) -> int:
        offset_ms = int(rng.uniform(0, 59_000)) if offset_s < 0 else int(offset_s * 1000)
        ts = self.start_ms + minute * MINUTE_MS + offset_ms
        self.faults.append(
            FaultEvent(
                id=f"{s.device}/sim/{s.if_index}/{ts}/{kind}",
                device=s.device,
                ts_ms=ts,
                kind=kind,
                trap_oid=trap_oid,
                if_index=s.if_index,
                varbinds={"interface": s.if_name},
                source="sim",
            )
        )
        return ts

    def traffic(self, rng: np.random.Generator, busy: bool) -> _Series:
        n = self.minutes
        day_offset = rng.uniform(0, DAY_MINUTES)
        amplitude = rng.uniform(0.15, 0.5)
        if busy:  # the busy hour reaches 80-93 % without ever saturating
            peak = rng.uniform(0.8, 0.93)
            base = peak / (1 + amplitude)
        else:
            base = rng.uniform(0.05, 0.5)
        diurnal = base * (1 + amplitude * np.sin(2 * np.pi * (self.t + day_offset) / DAY_MINUTES))
        noise = _ar1(rng.normal(0.0, rng.uniform(0.01, 0.03), n), 0.8)
        util = np.clip(diurnal * (1 + noise), 0.0, HEALTHY_UTIL_CAP)
        background = 0.0 if rng.random() < 0.7 else rng.uniform(0.2, 3.0)  # errors/min on a clean vs dusty optic
        return _Series(
            util=util,
            out_ratio=rng.uniform(0.3, 0.9),
            burstiness=np.full(n, rng.uniform(0.03, 0.25)),
            errors=rng.poisson(background, n).astype(np.float64),
            discards=rng.poisson(rng.uniform(0.0, 2.0), n).astype(np.float64),
            oper_changes=np.zeros(n),
            oper_status=np.ones(n),
            link_up_fraction=np.ones(n),
        )

    def flap(self, rng: np.random.Generator, s: Scenario, series: _Series, minute: int) -> None:
        """The link goes down for a few seconds and comes back within the minute."""
        down_s = rng.uniform(2.0, 20.0)
        start_s = rng.uniform(0.0, 59.0 - down_s)
        series.link_up_fraction[minute] = min(series.link_up_fraction[minute], 1 - down_s / 60)
        counted = rng.random() < 0.75  # a sample falls inside the down time
        trapped = rng.random() < 0.85  # the traps (or gNMI on-change updates) arrive
        if not counted and not trapped:
            counted = True
        if counted:
            series.oper_changes[minute] += 2
        if trapped:
            self.event(rng, s, minute, "linkDown", "1.3.6.1.6.3.1.1.5.3", offset_s=start_s)
            self.event(rng, s, minute, "linkUp", "1.3.6.1.6.3.1.1.5.4", offset_s=start_s + down_s)

    def rising_alarms(self, rng: np.random.Generator, s: Scenario, errors: np.ndarray, until: int) -> None:
        """RMON sends risingAlarm when a minute's errors cross 100, at most once per 10 minutes."""
        last = -(10**9)
        for minute in np.flatnonzero(errors[:until] >= 100):
            if minute - last >= 10:
                self.event(rng, s, int(minute), "trap", RISING_ALARM_OID)
                last = int(minute)

    def confuse(self, rng: np.random.Generator, s: Scenario, series: _Series, kind: str, before: int) -> None:
        if kind == "error_burst_once":
            length = int(rng.integers(1, 5))
            at = int(rng.integers(0, max(1, before - length)))
            level = rng.uniform(100.0, 4000.0)
            series.errors[at : at + length] += rng.poisson(level, length)
            if rng.random() < 0.4:
                series.discards[at : at + length] += rng.poisson(level * 0.1, length)
        elif kind == "single_flap":
            self.flap(rng, s, series, int(rng.integers(0, before)))
        elif kind == "noisy_optic":  # errors ramp up to a steady elevated rate and stay there, no failure
            at = int(rng.integers(0, before))
            ramp = max(1.0, rng.uniform(10.0, 60.0))
            level = rng.uniform(20.0, 300.0)
            shape = np.clip((self.t[at:before] - at) / ramp, 0.0, 1.0)
            series.errors[at:before] += rng.poisson(level * shape)

    def precursor(
        self, rng: np.random.Generator, s: Scenario, series: _Series, kind: str, fail: int, lead: int, strength: float
    ) -> None:
        onset = max(0, fail - lead)
        progress = np.zeros(self.minutes)
        progress[onset:fail] = (self.t[onset:fail] - onset + 1) / (fail - onset)
        power = rng.uniform(1.0, 3.0)  # how late the indicators accelerate
        intensity = progress**power
        if kind == "link_down":
            flaps = 1 + int(rng.poisson(1 + 5 * strength))
            minutes = np.unique(onset + np.floor((fail - onset) * np.sqrt(rng.random(flaps))).astype(int))
            for minute in minutes[minutes < fail]:
                self.flap(rng, s, series, int(minute))
            if rng.random() < 0.6:  # a degrading optic also corrupts frames
                series.errors += rng.poisson(strength * 800.0 * intensity)
        elif kind == "error_burst":
            series.errors += rng.poisson(strength * 1500.0 * intensity)
            if rng.random() < 0.5:
                series.discards += rng.poisson(strength * 200.0 * intensity)
        elif kind == "saturation":
            start_level = series.util[onset]
            target = start_level + strength * (0.96 - start_level)
            series.util = np.minimum(series.util + max(0.0, target - start_level) * intensity, 0.965)
            series.burstiness = series.burstiness * (1 + intensity)

    def failure(self, rng: np.random.Generator, s: Scenario, series: _Series, kind: str, fail: int) -> int:
        """Apply the failure from minute ``fail`` to the end; return its exact time (epoch ms)."""
        offset_s = rng.uniform(0.0, 20.0)  # early enough in the minute that the minute shows it
        if kind == "link_down":
            series.oper_status[fail:] = 2
            series.oper_changes[fail] += 1
            series.link_up_fraction[fail:] = 0.0
            series.link_up_fraction[fail] = offset_s / 60
            series.errors[fail:] = 0
            series.discards[fail:] = 0
            return self.event(rng, s, fail, "linkDown", "1.3.6.1.6.3.1.1.5.3", offset_s=offset_s)
        span = self.minutes - fail
        if kind == "error_burst":
            per_s = rng.uniform(200.0, 1000.0)
            series.errors[fail:] = rng.poisson(per_s * 60, span)
            series.errors[fail] = rng.poisson(per_s * (60 - offset_s))
            series.discards[fail:] += rng.poisson(per_s * 3, span)
            self.event(rng, s, fail, "trap", RISING_ALARM_OID, offset_s=offset_s + 1)
        else:  # saturation: line rate, 1 % of packets dropped (as the simulator)
            series.util[fail:] = rng.uniform(0.985, 1.0, span)
            series.burstiness[fail:] = 0.0
        return self.start_ms + fail * MINUTE_MS + int(offset_s * 1000)

    def columns(self, s: Scenario, series: _Series, rng: np.random.Generator) -> dict[str, np.ndarray]:
        speed = float(s.speed_bps)
        up = series.link_up_fraction
        in_util = series.util * up
        out_util = np.minimum(series.util * series.out_ratio, 1.0) * up
        peak_factor = 1 + np.abs(rng.normal(0.0, 1.0, self.minutes)) * series.burstiness
        in_peak = np.minimum(series.util * peak_factor, 1.0) * (up > 0)
        in_pps = in_util * speed / 8 / AVG_PACKET_BYTES
        out_pps = out_util * speed / 8 / AVG_PACKET_BYTES
        packets = (in_pps + out_pps) * 60
        # Queues drop a little from 80 % busy and 1 % of the packets at line rate (the simulator's saturation).
        drop_share = np.where(series.util >= FAILED_UTILISATION, 0.01, 1e-5 * np.clip((series.util - 0.8) / 0.15, 0, 1))
        congestion = rng.poisson(packets * drop_share).astype(np.float64)
        in_share = rng.uniform(0.6, 0.95)
        errors = series.errors
        in_errors = np.floor(errors * in_share)
        discards = series.discards + congestion
        return {
            "in_util": in_util,
            "out_util": out_util,
            "in_bps": in_util * speed,
            "out_bps": out_util * speed,
            "in_bps_max": in_peak * speed,
            "out_bps_max": np.minimum(out_util * peak_factor, 1.0) * speed,
            "in_pps": in_pps,
            "out_pps": out_pps,
            "in_errors": in_errors,
            "out_errors": errors - in_errors,
            "in_discards": np.floor(discards * 0.3),
            "out_discards": discards - np.floor(discards * 0.3),
            "oper_changes": series.oper_changes,
            "oper_status": series.oper_status,
        }


def generate_scenarios(
    n_interfaces: int = 240,
    hours: float = 6.0,
    seed: int = 0,
    *,
    failing_fraction: float = 0.3,
    sudden_fraction: float = 0.1,
    start_ms: int = DEFAULT_START_MS,
) -> ScenarioSet:
    """``n_interfaces`` interfaces over ``hours`` of 1-minute windows; deterministic for ``seed``.

    A ``failing_fraction`` of them fail (kinds in turn), at a minute drawn between 90 minutes after the
    start and 15 minutes before the end; ``sudden_fraction`` of the failures have no precursor.

    >>> s = generate_scenarios(16, hours=3, seed=1)
    >>> len(s), s.minutes, s.columns["in_util"].shape
    (16, 180, (16, 180))
    >>> sum(1 for x in s.scenarios if x.failure_ms is not None)
    5
    """
    minutes = round(hours * 60)
    if minutes < 120:
        raise ValueError("hours: scenarios need at least 2 hours (90 minutes of history before a failure)")
    if n_interfaces < 1:
        raise ValueError("n_interfaces: must be >= 1")
    start_ms -= start_ms % MINUTE_MS
    master = np.random.default_rng(seed)
    n_failing = round(n_interfaces * failing_fraction)
    failing = set(master.permutation(n_interfaces)[:n_failing].tolist())
    kinds = {i: FAILURE_KINDS[k % len(FAILURE_KINDS)] for k, i in enumerate(sorted(failing))}
    gen = _Generator(seed, start_ms, minutes)
    scenarios: list[Scenario] = []
    columns: dict[str, list[np.ndarray]] = {}
    for index, stream in enumerate(np.random.SeedSequence(seed).spawn(n_interfaces)):
        rng = np.random.default_rng(stream)
        device = f"sim-r{index // INTERFACES_PER_DEVICE:03d}"
        if_index = index % INTERFACES_PER_DEVICE + 1
        base = Scenario(device, if_index, f"Ethernet{if_index}", SPEEDS[int(rng.integers(0, len(SPEEDS)))])
        confusers = []
        healthy = index not in failing
        odds = {"error_burst_once": 0.3, "busy": 0.25, "single_flap": 0.25, "noisy_optic": 0.1}
        for name, p in odds.items():
            if rng.random() < (p if healthy else p / 3):
                confusers.append(name)
        series = gen.traffic(rng, busy="busy" in confusers)
        fail = minutes
        if not healthy:
            fail = int(rng.integers(90, minutes - 15))
        for name in confusers:
            if name != "busy":
                gen.confuse(rng, base, series, name, before=max(1, fail - 40) if not healthy else minutes)
        scenario = Scenario(**{**base.__dict__, "confusers": tuple(confusers)})
        if not healthy:
            kind = kinds[index]
            sudden = rng.random() < sudden_fraction
            lead = int(rng.integers(10, 91))
            strength = 0.0 if sudden else float(rng.uniform(0.2, 1.0))
            if not sudden:
                gen.precursor(rng, base, series, kind, fail, lead, strength)
            gen.rising_alarms(rng, base, series.errors, fail)
            failure_ms = gen.failure(rng, base, series, kind, fail)
            scenario = Scenario(
                **{
                    **scenario.__dict__,
                    "failure_ms": failure_ms,
                    "failure_kind": kind,
                    "precursor_lead_s": None if sudden else lead * 60,
                    "precursor_strength": strength,
                },
            )
        else:
            gen.rising_alarms(rng, base, series.errors, minutes)
        if rng.random() < 0.05:  # a device-level trap unrelated to the interface
            gen.faults.append(
                FaultEvent(
                    id=f"{device}/sim/auth/{index}",
                    device=device,
                    ts_ms=start_ms + int(rng.integers(0, minutes)) * MINUTE_MS,
                    kind="authenticationFailure",
                    trap_oid=AUTH_FAILURE_OID,
                    source="sim",
                )
            )
        scenarios.append(scenario)
        for name, values in gen.columns(scenario, series, rng).items():
            columns.setdefault(name, []).append(values)
    faults = sorted(gen.faults, key=lambda f: (f.ts_ms, f.id))
    return ScenarioSet(
        start_ms=start_ms,
        minutes=minutes,
        scenarios=scenarios,
        columns={name: np.vstack(values) for name, values in columns.items()},
        faults=faults,
        seed=seed,
    )


@dataclass(frozen=True)
class FaultScore:
    """How predictions fared against the labels of a scenario set."""

    precision: float
    recall: float
    median_lead_s: float | None
    caught: int  # true positives: failing interfaces warned in time
    false_positives: int
    missed: int
    failing: int
    healthy: int
    healthy_alerted: int  # healthy interfaces with at least one false positive
    leads_s: tuple[float, ...] = ()

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "precision": self.precision,
            "recall": self.recall,
            "median_lead_s": self.median_lead_s,
            "caught": self.caught,
            "false_positives": self.false_positives,
            "missed": self.missed,
            "failing": self.failing,
            "healthy": self.healthy,
            "healthy_alerted": self.healthy_alerted,
        }


def score_predictions(
    scenarios: ScenarioSet, predictions: Iterable[tuple[str, int, int]], horizon_s: float
) -> FaultScore:
    """Score ``(device, if_index, made_at_ms)`` predictions; ``made_at_ms`` is when the prediction existed
    (the end of the window it was computed from)."""
    labels = scenarios.labels()
    first_in_window: dict[tuple[str, int], int] = {}
    false_positives = 0
    alerted_healthy: set[tuple[str, int]] = set()
    horizon_ms = horizon_s * 1000
    for device, if_index, made_at in predictions:
        key = (device, if_index)
        if key not in labels:
            raise KeyError(f"prediction for an interface not in the scenarios: {device}/{if_index}")
        failure = labels[key]
        lead = None if failure is None else failure - made_at
        if lead is not None and MINUTE_MS <= lead <= horizon_ms:
            first_in_window[key] = max(first_in_window.get(key, 0), lead)
        else:
            false_positives += 1
            if failure is None:
                alerted_healthy.add(key)
    failing = sum(1 for v in labels.values() if v is not None)
    caught = len(first_in_window)
    leads = tuple(sorted(float(v) / 1000 for v in first_in_window.values()))
    return FaultScore(
        precision=caught / (caught + false_positives) if caught + false_positives else 0.0,
        recall=caught / failing if failing else 0.0,
        median_lead_s=float(np.median(leads)) if leads else None,
        caught=caught,
        false_positives=false_positives,
        missed=failing - caught,
        failing=failing,
        healthy=len(labels) - failing,
        healthy_alerted=len(alerted_healthy),
        leads_s=leads,
    )


# ---------------------------------------------------------------------------------------- capacity


@dataclass(frozen=True)
class CapacityScenario:
    """One interface whose busy-hour level grows linearly (or not); the truth a forecast is scored on."""

    device: str
    if_index: int
    speed_bps: int
    level_start: float  # the daily peak level at the start (fraction of line rate)
    growth_per_day: float  # change of that level per day (fraction of line rate)
    p95_factor: float  # the 95th percentile of the day's 5-minute means, as a share of the peak level

    def saturation_ms(self, start_ms: int, saturation: float = 1.0) -> int | None:
        """When the trend of the daily 95th percentile reaches ``saturation``; None if it never grows."""
        if self.growth_per_day <= 0:
            return None
        days = (saturation / self.p95_factor - self.level_start) / self.growth_per_day
        return start_ms + int(days * 86_400_000)


@dataclass
class CapacitySet:
    start_ms: int
    days: int
    step_minutes: int
    scenarios: list[CapacityScenario]
    util: np.ndarray  # (interfaces, steps): each step's utilisation, fraction of line rate

    def rates_for_day(self, day: int) -> list[InterfaceRate]:
        """The windows of ``day`` (one per step), interface by interface, in time order."""
        per_day = DAY_MINUTES // self.step_minutes
        out: list[InterfaceRate] = []
        for step in range(day * per_day, (day + 1) * per_day):
            window_start = self.start_ms + step * self.step_minutes * MINUTE_MS
            for i, s in enumerate(self.scenarios):
                pct = float(self.util[i, step]) * 100.0
                bps = float(self.util[i, step]) * s.speed_bps
                out.append(
                    InterfaceRate(
                        id=InterfaceRate.make_id(s.device, s.if_index, window_start),
                        device=s.device,
                        if_index=s.if_index,
                        window_start_ms=window_start,
                        in_bps_avg=bps,
                        in_bps_max=bps,
                        in_util_pct_avg=pct,
                        out_util_pct_avg=pct * 0.5,
                        speed_bps=s.speed_bps,
                        oper_status=1,
                    )
                )
        return out


def capacity_scenarios(
    n_interfaces: int = 40, days: int = 21, seed: int = 0, *, step_minutes: int = 5, start_ms: int = DEFAULT_START_MS
) -> CapacitySet:
    """Interfaces with a daily cycle whose peak level grows linearly (two thirds of them) or stays flat or
    declines; multiplicative noise. The truth per interface is the day its 95th-percentile trend crosses
    line rate (:meth:`CapacityScenario.saturation_ms`)."""
    if DAY_MINUTES % step_minutes:
        raise ValueError("step_minutes: must divide a day")
    rng = np.random.default_rng(seed)
    per_day = DAY_MINUTES // step_minutes
    steps = days * per_day
    t_days = np.arange(steps) * step_minutes / DAY_MINUTES
    tod = t_days - np.floor(t_days)
    # Busy evening, quiet night: the shape peaks at 1.0 around 21:00.
    shape = 0.35 + 0.65 * (0.5 * (1 + np.cos(2 * np.pi * (tod - 0.875)))) ** 2
    p95_factor = float(np.quantile(shape[:per_day], 0.95, method="inverted_cdf"))
    scenarios: list[CapacityScenario] = []
    rows: list[np.ndarray] = []
    for i in range(n_interfaces):
        level = rng.uniform(0.3, 0.6)
        kind = i % 3
        # Two in three grow by 0.5-3 points of line rate a day; the others stay flat or decline.
        growth = rng.uniform(0.005, 0.03) if kind != 2 else rng.choice([0.0, -rng.uniform(0.002, 0.01)])
        noise = 1 + _ar1(rng.normal(0.0, 0.02, steps), 0.7)
        util = np.clip((level + growth * t_days) * shape * noise, 0.0, 1.0)
        scenarios.append(
            CapacityScenario(
                device=f"cap-r{i // INTERFACES_PER_DEVICE:03d}",
                if_index=i % INTERFACES_PER_DEVICE + 1,
                speed_bps=SPEEDS[i % len(SPEEDS)],
                level_start=level,
                growth_per_day=float(growth),
                p95_factor=p95_factor,
            )
        )
        rows.append(util)
    return CapacitySet(
        start_ms=start_ms - start_ms % 86_400_000,
        days=days,
        step_minutes=step_minutes,
        scenarios=scenarios,
        util=np.vstack(rows),
    )
