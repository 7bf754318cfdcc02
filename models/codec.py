"""Wire codec: JSON through msgspec (typed, validating, and fast: one compiled decoder per record type).

A decode never raises for bad input: it returns the records it accepted and a
:class:`DecodeFailure` for each value it refused, with the reason, ready to become a dead letter.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import msgspec

from models.records import SCHEMA_VERSION, DeadLetter, Record

R = TypeVar("R", bound=Record)

# Larger values are refused before decoding: a device or file cannot make a stage allocate without bound.
MAX_RECORD_BYTES = 256 * 1024
# A dead letter keeps at most this much of the refused payload, so it always fits a Kafka message;
# the reason then says so, and the original stays on its topic at the recorded partition and offset.
MAX_DEAD_LETTER_PAYLOAD = 128 * 1024
# Dead letters carry a payload as well as their own fields: their decoder allows more.
MAX_DEAD_LETTER_BYTES = 4 * MAX_DEAD_LETTER_PAYLOAD

_encoder = msgspec.json.Encoder(decimal_format="string")


def encode(record: Record) -> bytes:
    """Encode one record to its wire form."""
    return _encoder.encode(record)


@dataclass(frozen=True, slots=True)
class DecodeFailure:
    """A value that could not be decoded: its position in the batch and why."""

    index: int
    reason: str


class RecordCodec(Generic[R]):
    """Decoder for one record type, compiled once."""

    def __init__(self, record_type: type[R], max_bytes: int = MAX_RECORD_BYTES) -> None:
        self.record_type = record_type
        self.max_bytes = max_bytes
        self._decoder = msgspec.json.Decoder(record_type)

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
    """The shared codec of a record type (dead letters get a larger size limit than other records)."""
    codec = _codecs.get(record_type)
    if codec is None:
        limit = MAX_DEAD_LETTER_BYTES if record_type is DeadLetter else MAX_RECORD_BYTES
        codec = _codecs[record_type] = RecordCodec(record_type, max_bytes=limit)
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
        dl_id = f"{topic}/{partition}/{offset}/{stage}"
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
    import hashlib

    return hashlib.blake2b(data, digest_size=10).hexdigest()
