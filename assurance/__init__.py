"""Assurance: anomaly detection, fault prediction, alert lifecycle and alert outputs.

Not built yet (see the assurance issue). What exists today: ``models.records.Alert`` and the
``assurance.alerts`` topic, the ClickHouse ``alerts`` table and its sink route, and the fault events
(SNMP traps, gNMI oper-status) that the collectors already produce on ``telemetry.faults``.
"""
