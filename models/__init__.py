"""The shared records that cross Kafka, their wire codec and the topic names.

Nothing outside ``collectors/`` sees a vendor payload: everything on a topic is one of the
records defined here, encoded by :mod:`models.codec`.
"""

from models.codec import DecodeFailure, RecordCodec, dead_letter_for, decode_batch, encode
from models.records import (
    SCHEMA_VERSION,
    Alert,
    DeadLetter,
    FaultEvent,
    InterfaceRate,
    RatedUsage,
    Record,
    TelemetrySample,
    UsageRecord,
)
from models.topics import TOPICS, Topic

__all__ = [
    "SCHEMA_VERSION",
    "TOPICS",
    "Alert",
    "DeadLetter",
    "DecodeFailure",
    "FaultEvent",
    "InterfaceRate",
    "RatedUsage",
    "Record",
    "RecordCodec",
    "TelemetrySample",
    "Topic",
    "UsageRecord",
    "dead_letter_for",
    "decode_batch",
    "encode",
]
