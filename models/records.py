"""Record types. Every record has an ``id`` (stages are idempotent on it) and a schema version ``v``.

Timestamps are integer epoch milliseconds (UTC) on the wire; money is ``Decimal`` (encoded as a
JSON string, so no float ever touches an amount).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

import msgspec

SCHEMA_VERSION = 1

NonNegInt = Annotated[int, msgspec.Meta(ge=0)]
# msgspec decodes integers up to 2**64 - 1 (a Counter64's range) and refuses wider ones.
Counter = Annotated[int, msgspec.Meta(ge=0)]
EpochMs = Annotated[int, msgspec.Meta(ge=0, le=32503680000000)]  # up to year 3000
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
RecordId = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class Record(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Base of every record on a topic."""

    id: RecordId
    v: int = SCHEMA_VERSION


class TelemetrySample(Record, frozen=True, kw_only=True):
    """One poll (or one gNMI notification set) of one interface's counters."""

    device: Name
    if_index: NonNegInt
    ts_ms: EpochMs
    if_name: str = ""
    in_octets: Counter | None = None
    out_octets: Counter | None = None
    in_ucast_pkts: Counter | None = None
    out_ucast_pkts: Counter | None = None
    in_nucast_pkts: Counter | None = None
    out_nucast_pkts: Counter | None = None
    in_errors: Counter | None = None
    out_errors: Counter | None = None
    in_discards: Counter | None = None
    out_discards: Counter | None = None
    speed_bps: Counter | None = None
    oper_status: Annotated[int, msgspec.Meta(ge=1, le=7)] | None = None
    # 32 for Counter32 (ifInOctets), 64 for Counter64 (ifHCInOctets): decides the wrap modulus.
    counter_bits: Literal[32, 64] = 64
    # sysUpTime in hundredths of a second; going backwards means the agent restarted (counter reset).
    uptime_ticks: NonNegInt | None = None
    source: str = "sim"

    def __post_init__(self) -> None:
        # Runs for every decoded sample (in the worker and the sink): one max() over the counters, which
        # costs a third of the field-by-field loop (that loop was 38 % of decoding a poll); the loop only
        # runs to name the counter when one is over. msgspec cannot bound an int beyond int64 itself.
        if (
            max(
                self.in_octets or 0,
                self.out_octets or 0,
                self.in_ucast_pkts or 0,
                self.out_ucast_pkts or 0,
                self.in_nucast_pkts or 0,
                self.out_nucast_pkts or 0,
                self.in_errors or 0,
                self.out_errors or 0,
                self.in_discards or 0,
                self.out_discards or 0,
            )
            > _COUNTER64_MAX
        ):
            for name in _COUNTER_FIELDS:
                value = getattr(self, name)
                if value is not None and value > _COUNTER64_MAX:
                    raise ValueError(f"{name} {value} exceeds a 64-bit counter")

    @staticmethod
    def make_id(device: str, if_index: int, ts_ms: int) -> str:
        return f"{device}/{if_index}/{ts_ms}"


_COUNTER64_MAX = 2**64 - 1
_COUNTER_FIELDS = tuple(
    name for name in TelemetrySample.__struct_fields__ if name.endswith(("_octets", "_pkts", "_errors", "_discards"))
)


class FaultEvent(Record, frozen=True, kw_only=True):
    """A trap, inform or oper-status change reported by a device."""

    device: Name
    ts_ms: EpochMs
    kind: str
    trap_oid: str = ""
    if_index: NonNegInt | None = None
    varbinds: dict[str, str] = {}
    source: str = "snmp-trap"


class UsageRecord(Record, frozen=True, kw_only=True):
    """A usage record (CDR/IPDR/accounting): who used which service, when, and how much."""

    account: Name
    service: Name
    start_ms: EpochMs
    end_ms: EpochMs
    bytes_up: Annotated[int, msgspec.Meta(ge=0, le=10**15)] = 0
    bytes_down: Annotated[int, msgspec.Meta(ge=0, le=10**15)] = 0
    duration_s: Annotated[int, msgspec.Meta(ge=0)] | None = None
    destination: str = ""
    event_type: str = "data"
    source: str = ""

    def __post_init__(self) -> None:
        if self.end_ms < self.start_ms:
            raise ValueError("end_ms is before start_ms")


class RatedUsage(Record, frozen=True, kw_only=True):
    """A usage record priced by a plan. ``id`` is the usage record's id; ``rating_version`` grows on rerating."""

    account: Name
    service: Name
    start_ms: EpochMs
    end_ms: EpochMs
    quantity: Decimal
    unit: str
    amount: Decimal
    currency: Annotated[str, msgspec.Meta(min_length=3, max_length=3)]
    plan: str
    plan_version: int = 1
    rating_version: int = 1
    rated_at_ms: EpochMs = 0
    breakdown: str = ""


class InterfaceRate(Record, frozen=True, kw_only=True):
    """Per-interface rates aggregated over a 1-minute event-time window.

    ``id`` is ``device/if_index/window_start_ms``; ``revision`` grows when a window is re-emitted
    (late data within the allowed lateness), and the warehouse keeps the highest revision.
    """

    device: Name
    if_index: NonNegInt
    window_start_ms: EpochMs
    if_name: str = ""
    samples: NonNegInt = 0
    in_bps_avg: float = 0.0
    in_bps_max: float = 0.0
    in_bps_p95: float = 0.0
    out_bps_avg: float = 0.0
    out_bps_max: float = 0.0
    out_bps_p95: float = 0.0
    in_util_pct_avg: float | None = None
    out_util_pct_avg: float | None = None
    in_errors: NonNegInt = 0
    out_errors: NonNegInt = 0
    in_discards: NonNegInt = 0
    out_discards: NonNegInt = 0
    speed_bps: NonNegInt | None = None
    # Unicast + non-unicast packets per second, time-weighted over the window.
    in_pps_avg: float = 0.0
    out_pps_avg: float = 0.0
    # How often ifOperStatus changed between consecutive samples of the window, and its last value.
    oper_status_changes: NonNegInt = 0
    oper_status: Annotated[int, msgspec.Meta(ge=1, le=7)] | None = None
    revision: NonNegInt = 1

    @staticmethod
    def make_id(device: str, if_index: int, window_start_ms: int) -> str:
        return f"{device}/{if_index}/{window_start_ms}"


class Alert(Record, frozen=True, kw_only=True):
    """One state of an alert: ``id`` identifies this state change, ``fingerprint`` the alert itself."""

    fingerprint: str
    name: str
    status: Literal["firing", "resolved"]
    severity: Literal["critical", "major", "minor", "warning", "info"] = "warning"
    device: str = ""
    if_index: int | None = None
    summary: str = ""
    starts_ms: EpochMs = 0
    ends_ms: EpochMs | None = None
    updated_ms: EpochMs = 0
    labels: dict[str, str] = {}


class DeadLetter(Record, frozen=True, kw_only=True):
    """A record that a stage could not accept, with where it came from and why.

    ``payload`` holds the original bytes: as text when they are UTF-8, else base64
    (``payload_encoding`` says which), so nothing is lost.
    """

    topic: str
    partition: int = -1
    offset: int = -1
    stage: str
    reason: str
    payload: str
    payload_encoding: Literal["utf-8", "base64"] = "utf-8"
    ts_ms: EpochMs = 0
