"""What the assurance worker does with one partition's inputs: detectors and rules to alert signals.

Per 1-minute window of an interface (``InterfaceRate``), each rule below reports its condition to
the :class:`~assurance.lifecycle.AlertEngine` as a :class:`~assurance.lifecycle.Signal`, firing or
clear, at the window's end (event time). The engine owns timing, dedup, flapping and correlation.

==========================  ===========================================================  ===========
alert                       fires while                                                  severity
==========================  ===========================================================  ===========
``InterfaceDown``           a linkDown trap or gNMI oper-status DOWN (fault events)      critical
``InterfaceAnomaly``        any metric of the window scores >= the anomaly threshold      minor/major
``HighUtilisation``         in or out utilisation >= ``utilisation_alert_pct``           major
``InterfaceFailurePredicted`` the fault model predicts failure within its horizon        major
``CapacitySaturation``      the interface is forecast to saturate within N days          warning
==========================  ===========================================================  ===========

Signal ids are derived from the window (device, interface, start, revision), so a replay after a
restart is ignored by the engine. One instance per input partition; :meth:`snapshot` and
:meth:`restore` carry all of it (detectors, predictor, forecaster, engine).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import msgspec

from assurance.anomaly import AnomalyConfig, AnomalyFinding, InterfaceAnomalies
from assurance.capacity import CapacityForecaster
from assurance.config import AssuranceConfig
from assurance.lifecycle import DEFAULT_RULES, AlertEngine, AlertRule, EngineConfig, Severity, Signal
from assurance.predict import FaultModel, RiskTracker
from models.records import Alert, FaultEvent, InterfaceRate

WINDOW_MS = 60_000

ANOMALY = "InterfaceAnomaly"
HIGH_UTILISATION = "HighUtilisation"
FAILURE_PREDICTED = "InterfaceFailurePredicted"
CAPACITY = "CapacitySaturation"

_model_lock = threading.Lock()
_shared_model: FaultModel | None = None


def shared_fault_model() -> FaultModel:
    """The fault model, loaded from its per-user cache (or trained from the built-in scenarios and
    cached there) once per process."""
    global _shared_model
    with _model_lock:
        if _shared_model is None:
            _shared_model = FaultModel.default()
        return _shared_model


def _anomaly_config(config: AssuranceConfig) -> AnomalyConfig:
    return AnomalyConfig(threshold=config.anomaly_threshold or AnomalyConfig().threshold)


def engine_config(config: AssuranceConfig) -> EngineConfig:
    """Alert timing from the ``assurance:`` section (event-time milliseconds)."""
    link = AlertRule(resolve_after_ms=int(config.link_resolve_after_s * 1000))
    rules: dict[str, AlertRule] = {
        **DEFAULT_RULES,
        "InterfaceDown": link,
        "DeviceDown": link,
        ANOMALY: AlertRule(resolve_after_ms=int(config.anomaly_resolve_after_s * 1000)),
        HIGH_UTILISATION: AlertRule(resolve_after_ms=int(config.anomaly_resolve_after_s * 1000)),
        # A prediction is re-stated while the risk lasts; it lapses one horizon after the last one.
        FAILURE_PREDICTED: AlertRule(auto_resolve_ms=int(config.prediction_hold_s * 1000), flap_detection=False),
        CAPACITY: AlertRule(resolve_after_ms=3_600_000, flap_detection=False),
    }
    return EngineConfig(
        rules=rules,
        flap_threshold=config.flap_threshold,
        flap_window_ms=int(config.flap_window_s * 1000),
        flap_stable_ms=int(config.flap_stable_s * 1000),
        forget_after_ms=max(3_600_000, int(config.flap_window_s * 1000)),
    ).validate()


def _describe(findings: Sequence[AnomalyFinding]) -> str:
    """The unusual metrics by name (values change every window; an alert's summary should not)."""
    return ", ".join(sorted({f.metric for f in findings}))


def _window_signal(
    w: InterfaceRate, name: str, firing: bool, severity: Severity, summary: str, value: float | None
) -> Signal:
    """One rule's condition on one window, at the window's end (when it is known); idempotent by id."""
    return Signal(
        name=name,
        device=w.device,
        if_index=w.if_index,
        ts_ms=w.window_start_ms + WINDOW_MS,
        firing=firing,
        severity=severity,
        summary=f"{w.device} {w.if_name or w.if_index}: {summary}" if firing else "",
        value=value,
        id=f"{name}/{w.device}/{w.if_index}/{w.window_start_ms}/{w.revision}",
    )


class PartitionAssurance:
    def __init__(
        self,
        config: AssuranceConfig,
        *,
        partition: int = 0,
        anomalies: InterfaceAnomalies | None = None,
        risk: RiskTracker | None = None,
        capacity: CapacityForecaster | None = None,
        engine: AlertEngine | None = None,
    ) -> None:
        self.config = config
        self.partition = partition
        self.anomalies = anomalies or InterfaceAnomalies(_anomaly_config(config))
        self.risk = risk if risk is not None else (RiskTracker(shared_fault_model()) if config.predict_faults else None)
        self.capacity = capacity or CapacityForecaster()
        self.engine = engine or AlertEngine(engine_config(config))

    # -- inputs --------------------------------------------------------------------------------------

    def process(self, rates: Sequence[InterfaceRate], faults: Sequence[FaultEvent], now_ms: int) -> list[Alert]:
        alerts: list[Alert] = []
        for event in sorted(faults, key=lambda e: e.ts_ms):
            alerts += self.engine.fault(event)
        windows = [r for r in rates if r.samples > 0]
        if windows:
            for signal in self._signals(windows, faults):
                alerts += self.engine.signal(signal)
        alerts += self.engine.tick(now_ms)
        return alerts

    def tick(self, now_ms: int) -> list[Alert]:
        return self.engine.tick(now_ms)

    def _signals(self, windows: Sequence[InterfaceRate], faults: Sequence[FaultEvent]) -> list[Signal]:
        findings: dict[tuple[str, int, int], list[AnomalyFinding]] = defaultdict(list)
        for finding in self.anomalies.observe(windows):
            findings[(finding.device, finding.if_index, finding.window_start_ms)].append(finding)
        predicted = {}
        if self.risk is not None:
            for p in self.risk.observe(windows, faults):
                predicted[(p.device, p.if_index)] = p
        saturating = {(c.device, c.if_index): c for c in self.capacity.observe(windows)}
        limit_s = self.config.capacity_alert_days * 86_400
        signals: list[Signal] = []
        for w in sorted(windows, key=lambda r: r.window_start_ms):
            found = findings.get((w.device, w.if_index, w.window_start_ms), [])
            top = max((f.score for f in found), default=0.0)
            severity: Severity = "major" if top >= 0.95 else "minor"
            signals.append(_window_signal(w, ANOMALY, bool(found), severity, f"unusual {_describe(found)}", top))
            util = max(w.in_util_pct_avg or 0.0, w.out_util_pct_avg or 0.0)
            limit = self.config.utilisation_alert_pct
            busy = f"utilisation {util:.1f} % >= {limit:g} %"
            signals.append(_window_signal(w, HIGH_UTILISATION, util >= limit, "major", busy, util))
            prediction = predicted.get((w.device, w.if_index))
            if prediction is not None and prediction.window_start_ms == w.window_start_ms:
                why = f"p={prediction.probability:.2f}; {', '.join(prediction.reasons)}"
                likely = f"failure likely within {prediction.horizon_s / 60:.0f} min ({why})"
                signals.append(_window_signal(w, FAILURE_PREDICTED, True, "major", likely, prediction.probability))
            forecast = saturating.get((w.device, w.if_index))
            if forecast is not None:
                seconds = forecast.seconds_to_saturation
                soon = seconds is not None and seconds <= limit_s
                saturate = f"forecast to saturate in {(seconds or 0.0) / 86_400:.1f} days"
                signals.append(_window_signal(w, CAPACITY, soon, "warning", saturate, seconds))
        return signals

    # -- state ---------------------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        state: dict[str, Any] = {
            "v": 1,
            "anomalies": self.anomalies.snapshot(),
            "engine": self.engine.snapshot(),
            "capacity": self.capacity.snapshot(),
            "risk": self.risk.snapshot() if self.risk is not None else None,
        }
        return msgspec.msgpack.encode(state)

    @classmethod
    def restore(cls, config: AssuranceConfig, data: bytes, *, partition: int = 0) -> PartitionAssurance:
        state = msgspec.msgpack.decode(data)
        anomalies = InterfaceAnomalies.restore(state["anomalies"], _anomaly_config(config))
        restored = cls(config, partition=partition, anomalies=anomalies)
        restored.engine.restore(state["engine"])
        restored.capacity.restore(state["capacity"])
        if restored.risk is not None and state.get("risk"):
            restored.risk.restore(state["risk"])
        return restored
