"""Assurance: anomaly detection, fault prediction, alert lifecycle and alert outputs.

Not built yet (see the assurance issue). What exists today: ``models.records.Alert`` and the
``assurance.alerts`` topic, the ClickHouse ``alerts`` table and its sink route, and the fault events
(SNMP traps, gNMI oper-status) that the collectors already produce on ``telemetry.faults``.

Anomaly detection: ``assurance.detectors`` (the detector interface; the seasonal baseline, its
vectorised ``SeriesBank`` and the isolation forest), ``assurance.anomaly`` (``InterfaceAnomalies``,
which the worker calls with each batch of ``InterfaceRate`` windows), ``assurance.anomaly_eval``
(labelled scenarios, precision/recall/F1) and ``assurance.detect_cli`` (``ossbss detect`` on a CSV).
"""
