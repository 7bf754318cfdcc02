"""Assurance: anomaly detection, fault prediction, capacity forecast, the alert lifecycle and its outputs.

Anomaly detection: ``assurance.detectors`` (the detector interface; the seasonal baseline, its
vectorised ``SeriesBank`` and the isolation forest), ``assurance.anomaly`` (``InterfaceAnomalies``,
which the worker calls with each batch of ``InterfaceRate`` windows), ``assurance.anomaly_eval``
(labelled scenarios, precision/recall/F1) and ``assurance.detect_cli`` (``ossbss detect`` on a CSV).

Fault prediction and capacity: ``assurance.scenarios`` (labelled failure scenarios shaped like the gNMI
simulator's faults), ``assurance.predict`` (features, ``FaultModel``, the online ``RiskTracker``),
``assurance.capacity`` (time to saturation) and ``assurance.cli`` (``ossbss assurance train|evaluate``).

Alerts: ``assurance.lifecycle`` (``AlertEngine``: dedup, hysteresis, flapping, correlation),
``assurance.rules`` (one partition's detectors and rules to alert signals), ``assurance.worker``
(Kafka in and out, checkpoints), ``assurance.outputs`` (signed webhooks, Alertmanager, tickets, the
dispatcher), ``assurance.service`` (``ossbss worker assurance``) and ``assurance.receiver`` (a
signature-checking webhook receiver for trying a configuration).
"""
