"""Wire codec: JSON through msgspec (typed, validating, and fast: one compiled decoder per record type).

A decode never raises for bad input: it returns the records it accepted and a
:class:`DecodeFailure` for each value it refused, with the reason, ready to become a dead letter.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Generic, TypeVar

import msgspec

from models.records import SCHEMA_VERSION, DeadLetter, InterfaceRate, RatedUsage, Record, TelemetrySample, UsageRecord

R = TypeVar("R", bound=Record)

# Larger values are refused before decoding: a device or file cannot make a stage allocate without bound.
MAX_RECORD_BYTES = 256 * 1024
# A dead letter keeps at most this much of the refused payload, so it always fits a Kafka message;
# the reason then says so, and the original stays on its topic at the recorded partition and offset.
MAX_DEAD_LETTER_PAYLOAD = 128 * 1024
# Dead letters carry a payload as well as their own fields: their decoder allows more.
MAX_DEAD_LETTER_BYTES = 4 * MAX_DEAD_LETTER_PAYLOAD

_encoder = msgspec.json.Encoder(decimal_format="string")

# Record types whose topic carries one JSON array of records per message (one device poll), so a
# stream stage pays the per-message cost once per poll instead of once per interface.
BATCHED_RECORD_TYPES: frozenset[type] = frozenset({TelemetrySample, InterfaceRate, UsageRecord, RatedUsage})


def encode(record: Record) -> bytes:
    """Encode one record to its wire form."""
    return _encoder.encode(record)


def encode_many(records: Sequence[Record]) -> bytes:
    """Encode records as one batched message (a JSON array)."""
    return _encoder.encode(records)


@dataclass(frozen=True, slots=True)
class DecodeFailure:
    """A value that could not be decoded: its position in the batch and why.

    For a batched message (a JSON array of records) ``element`` is the position of the bad record in
    the array and ``payload`` its bytes; the other records of the message are still accepted.
    """

    index: int
    reason: str
    element: int = -1
    payload: bytes | None = None


# A batched message (one device poll: a JSON array of samples) may be this large.
MAX_BATCH_MESSAGE_BYTES = 8 * 1024 * 1024


_raw_elements = msgspec.json.Decoder(list[msgspec.Raw])


def unchecked_struct(record_type: type[Record]) -> type[msgspec.Struct]:
    """A struct with ``record_type``'s fields, types, constraints and defaults, but no ``__post_init__``
    and ``Decimal`` fields as ``str`` (the decimal text kept as sent): msgspec applies every constraint it
    holds (required fields, lengths, ranges), and the checks ``__post_init__`` makes are left to the caller,
    who makes them over whole columns. Encodes exactly as ``record_type`` does (same field order, defaults
    omitted) when it has no ``Decimal`` field. A Python call per record less, and no garbage-collector
    tracking (the fields are strings and numbers): decoding a 1000-sample poll takes about half the time."""
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for info in msgspec.structs.fields(record_type):
        wire_type = str if info.type is Decimal else info.type
        if info.required:
            fields.append((info.name, wire_type))
        elif info.default_factory is not msgspec.NODEFAULT:
            fields.append((info.name, wire_type, msgspec.field(default_factory=info.default_factory)))
        else:
            fields.append((info.name, wire_type, info.default))
    # Named as the record type: a refusal's reason names the type ("invalid TelemetrySample: ...").
    return msgspec.defstruct(
        record_type.__name__, fields, kw_only=True, frozen=True, omit_defaults=True, gc=False, module=__name__
    )


def elements_fit(value: bytes, max_bytes: int) -> bool:
    """Whether every element of a batched message (a JSON array) is within ``max_bytes``; the elements are
    only split out when the message as a whole exceeds it (a smaller message cannot hold a larger one)."""
    return len(value) <= max_bytes or max(map(len, _raw_elements.decode(value)), default=0) <= max_bytes


class RecordCodec(Generic[R]):
    """Decoder for one record type, compiled once."""

    def __init__(self, record_type: type[R], max_bytes: int = MAX_RECORD_BYTES, *, batched: bool = False) -> None:
        self.record_type = record_type
        self.max_bytes = max_bytes
        self.batched = batched
        self._decoder = msgspec.json.Decoder(record_type)
        self._list_decoder: msgspec.json.Decoder[list[R]] = msgspec.json.Decoder(list[record_type])  # type: ignore[valid-type]

    def decode_message(self, value: bytes | None) -> tuple[list[R], list[DecodeFailure]]:
        """Decode one message: a record, or (when ``batched``) a JSON array of records.

        Raises ``ValueError`` when the message as a whole is unusable; a bad element of an array is
        returned as a failure (with its element position and bytes) and the rest are kept.
        """
        if not (self.batched and value is not None and value[:1] == b"["):
            return [self.decode(value)], []
        if len(value) > MAX_BATCH_MESSAGE_BYTES:
            raise ValueError(f"oversized message: {len(value)} bytes > {MAX_BATCH_MESSAGE_BYTES}")
        # Fast path: the whole array in one call, accepted when every element is within the record
        # limit (checked on the raw elements only when the message as a whole exceeds it). Only when
        # that fails are the elements taken one by one, to keep the good ones and say which is bad.
        try:
            whole = self._list_decoder.decode(value)
        except (msgspec.ValidationError, msgspec.DecodeError):
            whole = None
        # (max over a list rather than all() over a generator: that was a few % of a worker's CPU)
        if (
            whole is not None
            and max([r.v for r in whole], default=0) <= SCHEMA_VERSION
            and elements_fit(value, self.max_bytes)
        ):
            return whole, []
        return self.decode_elements(value)

    def decode_elements(self, value: bytes) -> tuple[list[R], list[DecodeFailure]]:
        """A batched message element by element: the good records, and each bad one with its reason."""
        try:
            elements = _raw_elements.decode(value)
        except msgspec.DecodeError as exc:
            raise ValueError(f"malformed JSON: {exc}") from None
        records: list[R] = []
        failures: list[DecodeFailure] = []
        for position, element in enumerate(elements):
            raw = bytes(element)
            try:
                records.append(self.decode(raw))
            except ValueError as exc:
                failures.append(DecodeFailure(-1, f"element {position}: {exc}", position, raw))
        return records, failures

    def decode(self, value: bytes | None) -> R:
        """Decode one value; raises ``ValueError`` with the reason when it is not a valid record."""
        if value is None:
            raise ValueError("empty message (null value)")
        if len(value) > self.max_bytes:
            raise ValueError(f"oversized message: {len(value)} bytes > {self.max_bytes}")
        try:
            record = self._decoder.decode(value)
        except msgspec.ValidationError as exc:
            raise ValueError(f"invalid {self.record_type.__name__}: {exc}") from None
        except msgspec.DecodeError as exc:
            raise ValueError(f"malformed JSON: {exc}") from None
        if record.v > SCHEMA_VERSION:
            raise ValueError(f"unsupported schema version {record.v} (this build reads <= {SCHEMA_VERSION})")
        return record

    def decode_batch(self, values: Sequence[bytes | None]) -> tuple[list[R], list[int], list[DecodeFailure]]:
        """Decode many values: (records, their indexes in ``values``, failures)."""
        records: list[R] = []
        kept: list[int] = []
        failures: list[DecodeFailure] = []
        if self.batched:
            for i, value in enumerate(values):
                try:
                    got, bad = self.decode_message(value)
                except ValueError as exc:
                    failures.append(DecodeFailure(i, str(exc)))
                    continue
                records.extend(got)
                kept.extend([i] * len(got))
                failures.extend(DecodeFailure(i, f.reason, f.element, f.payload) for f in bad)
            return records, kept, failures
        decode = self.decode
        for i, value in enumerate(values):
            try:
                records.append(decode(value))
                kept.append(i)
            except ValueError as exc:
                failures.append(DecodeFailure(i, str(exc)))
        return records, kept, failures


_codecs: dict[type, RecordCodec] = {}


def codec_for(record_type: type[R]) -> RecordCodec[R]:
    """The shared codec of a record type (dead letters get a larger size limit than other records;
    telemetry samples may come batched, one JSON array per device poll)."""
    codec = _codecs.get(record_type)
    if codec is None:
        limit = MAX_DEAD_LETTER_BYTES if record_type is DeadLetter else MAX_RECORD_BYTES
        codec = _codecs[record_type] = RecordCodec(
            record_type, max_bytes=limit, batched=record_type in BATCHED_RECORD_TYPES
        )
    return codec


def decode_batch(
    record_type: type[R], values: Sequence[bytes | None]
) -> tuple[list[R], list[int], list[DecodeFailure]]:
    """Decode ``values`` as ``record_type`` with a cached codec."""
    return codec_for(record_type).decode_batch(values)


def dead_letter_for(
    payload: bytes | None,
    *,
    topic: str,
    stage: str,
    reason: str,
    partition: int = -1,
    offset: int = -1,
    element: int = -1,
) -> DeadLetter:
    """Wrap a refused payload with its origin and reason; the id is stable so a replay does not duplicate it."""
    raw = payload or b""
    if len(raw) > MAX_DEAD_LETTER_PAYLOAD:
        reason = (
            f"{reason} (payload truncated to its first {MAX_DEAD_LETTER_PAYLOAD} of {len(raw)} bytes, "
            f"blake2b {_digest(raw)})"
        )
        raw = raw[:MAX_DEAD_LETTER_PAYLOAD]
    try:
        text, encoding = raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(raw).decode("ascii"), "base64"
    if offset >= 0:
        dl_id = f"{topic}/{partition}/{offset}/{stage}" + (f"/{element}" if element >= 0 else "")
    else:
        dl_id = f"{topic}/{stage}/{_digest(raw)}/{_digest(reason.encode())}"
    return DeadLetter(
        id=dl_id,
        topic=topic,
        partition=partition,
        offset=offset,
        stage=stage,
        reason=reason,
        payload=text,
        payload_encoding=encoding,  # type: ignore[arg-type]
        ts_ms=int(time.time() * 1000),
    )


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=10).hexdigest()
