"""Kafka topic names and how each is keyed. Other rooms import names from here, never spell them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topic:
    name: str
    key: str
    description: str
    # True: each message is a JSON array of records sharing the key (one device poll), not one record.
    batched: bool = False


TELEMETRY_SAMPLES = Topic(
    "telemetry.samples",
    "device",
    "interface counter samples (SNMP, gNMI, simulator), one array per device poll",
    batched=True,
)
FAULT_EVENTS = Topic("telemetry.faults", "device", "traps, informs and oper-status changes")
INTERFACE_RATES_1M = Topic(
    "telemetry.rates.1m",
    "device",
    "per-interface rates over 1-minute windows, one array per device emission",
    batched=True,
)
USAGE_RECORDS = Topic(
    "usage.records",
    "account",
    "usage records as ingested (CDR/IPDR/accounting), batched per partition",
    batched=True,
)
USAGE_RATED = Topic(
    "usage.rated", "account", "usage records priced by the rating engine, batched per partition", batched=True
)
ALERTS = Topic("assurance.alerts", "fingerprint", "alert state changes (firing, resolved)")
# Not in TOPICS: one partition, compacted, created by the assurance worker with a large message limit.
ASSURANCE_CHECKPOINTS = Topic(
    "assurance.checkpoints", "group/partition", "assurance state snapshots with the input offsets they reflect"
)
DEAD_LETTERS = Topic("ossbss.deadletter", "topic", "records a stage could not accept, with the reason")

TOPICS: tuple[Topic, ...] = (
    TELEMETRY_SAMPLES,
    FAULT_EVENTS,
    INTERFACE_RATES_1M,
    USAGE_RECORDS,
    USAGE_RATED,
    ALERTS,
    DEAD_LETTERS,
)

BATCHED_TOPICS: frozenset[str] = frozenset(t.name for t in TOPICS if t.batched)

__all__ = [
    "ALERTS",
    "ASSURANCE_CHECKPOINTS",
    "BATCHED_TOPICS",
    "DEAD_LETTERS",
    "FAULT_EVENTS",
    "INTERFACE_RATES_1M",
    "TELEMETRY_SAMPLES",
    "TOPICS",
    "USAGE_RATED",
    "USAGE_RECORDS",
    "Topic",
]
