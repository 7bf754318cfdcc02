"""Usage records (CDR/IPDR/accounting) from files dropped in a directory, or from a Kafka topic of raw JSON.

File formats: CSV with a header line, or JSON lines (one object per line). Columns / keys:

=============  ========  =====================================================================
column         required  meaning
=============  ========  =====================================================================
id             yes       the record's unique id: kept, so re-ingesting a file doubles nothing
account        yes       billing account
service        yes       service identifier (plan lookup key)
start          yes       ISO-8601 (``2025-01-31T10:00:00Z``; naive means UTC) or epoch milliseconds
end            yes       same forms; not before ``start``
bytes_up       no        integer octets, 0..10^15 (default 0)
bytes_down     no        integer octets, 0..10^15 (default 0)
duration_s     no        integer seconds >= 0
destination    no        called number, APN, host... (<= 256 characters)
event_type     no        ``data`` (default), ``voice``, ``sms``... (<= 64 characters)
=============  ========  =====================================================================

Config (YAML)::

    - type: usage_files
      directory: var/usage/incoming
      patterns: ["*.csv", "*.jsonl", "*.ndjson", "*.json"]
      poll_interval_s: 2
      min_age_s: 1.0          # a file must be unchanged this long (its writer is done)
      done_dir: ""            # move ingested files here ("" leaves them; the ledger skips them)
      ledger: ""              # default <directory>/.ossbss-ingested.jsonl (sha256 of each file ingested)
      max_age_days: 400       # older usage is refused (dead-lettered), and so is usage ...
      max_future_s: 86400     # ... from further in the future than this
      batch_size: 5000
    - type: usage_kafka
      topic: usage.raw        # raw usage JSON, one object per message
      group_id: ossbss-usage-ingest

Bad lines become DeadLetter records naming the file, line number and reason; the good lines go on.
Flush order for a file: produce its records, flush the producer (delivered), then append the file's
checksum to the ledger. A crash in between re-ingests the file, which the id makes harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from collectors.base import (
    Collector,
    CollectorConfig,
    CollectorConfigError,
    RecordSink,
    register_collector,
)
from models.codec import MAX_RECORD_BYTES, dead_letter_for
from models.records import DeadLetter, Record, UsageRecord
from models.topics import USAGE_RECORDS

COLUMNS = (
    "id",
    "account",
    "service",
    "start",
    "end",
    "bytes_up",
    "bytes_down",
    "duration_s",
    "destination",
    "event_type",
)
REQUIRED = ("id", "account", "service", "start", "end")
MAX_BYTES = 10**15
MAX_EPOCH_MS = 32503680000000
STAGE_FILES = "usage-files"
STAGE_KAFKA = "usage-kafka"


class UsageError(ValueError):
    """One usage row is invalid; the message is the reason written into the dead letter."""


@dataclass(frozen=True)
class UsageLimits:
    """Plausibility window for timestamps; ``now_ms`` 0 means the wall clock at check time."""

    max_age_days: float = 400.0
    max_future_s: float = 86400.0
    now_ms: int = 0


DEFAULT_LIMITS = UsageLimits()


def parse_time(value: Any, column: str) -> int:
    """Epoch ms from epoch-ms digits or ISO-8601 text (naive means UTC)."""
    if isinstance(value, bool):
        raise UsageError(f"{column}: not a timestamp: {value!r}")
    if isinstance(value, int):
        ms = value
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")) or value != int(value):
            raise UsageError(f"{column}: not a whole number of milliseconds: {value!r}")
        ms = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            raise UsageError(f"{column}: is empty")
        if text.isdigit():
            ms = int(text)
        else:
            try:
                parsed = datetime.fromisoformat(text)
            except ValueError:
                raise UsageError(f"{column}: not ISO-8601 or epoch milliseconds: {text[:40]!r}") from None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            ms = int(parsed.timestamp() * 1000)
    else:
        raise UsageError(f"{column}: not a timestamp: {type(value).__name__}")
    if not 0 <= ms <= MAX_EPOCH_MS:
        raise UsageError(f"{column}: out of range: {ms}")
    return ms


def _count(value: Any, column: str, limit: int) -> int:
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        raise UsageError(f"{column}: not an integer: {value!r}")
    if isinstance(value, str):
        text = value.strip()
        if not (text.isdigit() or (text.startswith("-") and text[1:].isdigit())):
            raise UsageError(f"{column}: not an integer: {text[:40]!r}")
        number = int(text)
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and value == value and abs(value) < 2**53 and value == int(value):
        number = int(value)
    else:
        raise UsageError(f"{column}: not an integer: {value!r}")
    if number < 0:
        raise UsageError(f"{column}: negative: {number}")
    if number > limit:
        raise UsageError(f"{column}: too large: {number} > {limit}")
    return number


def _text(value: Any, column: str, max_len: int, required: bool) -> str:
    if value is None:
        text = ""
    elif isinstance(value, str):
        text = value.strip()
    elif isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
    else:
        raise UsageError(f"{column}: must be text, not {type(value).__name__}")
    if required and not text:
        raise UsageError(f"{column}: is required")
    if len(text) > max_len:
        raise UsageError(f"{column}: longer than {max_len} characters")
    return text


def usage_record(row: Mapping[str, Any], source: str, limits: UsageLimits = DEFAULT_LIMITS) -> UsageRecord:
    """Pure: validate one row (CSV fields or a JSON object) into a UsageRecord, or raise UsageError."""
    missing = [c for c in REQUIRED if row.get(c) in (None, "")]
    if missing:
        raise UsageError(f"missing {', '.join(missing)}")
    start = parse_time(row["start"], "start")
    end = parse_time(row["end"], "end")
    if end < start:
        raise UsageError("end is before start")
    now = limits.now_ms or time.time_ns() // 1_000_000
    if limits.max_age_days and start < now - limits.max_age_days * 86_400_000:
        raise UsageError(f"start is more than {limits.max_age_days:g} days in the past")
    if end > now + limits.max_future_s * 1000:
        raise UsageError(f"end is more than {limits.max_future_s:g}s in the future")
    duration = row.get("duration_s")
    return UsageRecord(
        id=_text(row["id"], "id", 256, True),
        account=_text(row["account"], "account", 256, True),
        service=_text(row["service"], "service", 256, True),
        start_ms=start,
        end_ms=end,
        bytes_up=_count(row.get("bytes_up"), "bytes_up", MAX_BYTES),
        bytes_down=_count(row.get("bytes_down"), "bytes_down", MAX_BYTES),
        duration_s=None if duration in (None, "") else _count(duration, "duration_s", 10**9),
        destination=_text(row.get("destination"), "destination", 256, False),
        event_type=_text(row.get("event_type"), "event_type", 64, False) or "data",
        source=source,
    )


@dataclass
class FileResult:
    """What ingesting (or checking) one file produced."""

    path: str
    sha256: str = ""
    records: list[UsageRecord] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    lines: int = 0
    skipped: bool = False  # already in the ledger

    @property
    def bad(self) -> int:
        return len(self.dead_letters)


_json_decode = msgspec.json.Decoder().decode


def read_rows(path: Path) -> Iterator[tuple[int, str, Mapping[str, Any] | None, str]]:
    """(line number, line text, row or None, reason) for each non-empty line; CSV or JSON lines by content."""
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
        header: list[str] | None = None
        is_json: bool | None = None
        for number, line in enumerate(f, start=1):
            text = line.rstrip("\r\n")
            if not text.strip():
                continue
            if is_json is None:
                is_json = text.lstrip().startswith("{") or path.suffix in (".jsonl", ".ndjson", ".json")
            if len(text) > MAX_RECORD_BYTES:
                yield number, text[:1000], None, f"line longer than {MAX_RECORD_BYTES} bytes"
                continue
            if is_json:
                try:
                    obj = _json_decode(text.encode("utf-8", "surrogateescape"))
                except msgspec.DecodeError as exc:
                    yield number, text, None, f"malformed JSON: {exc}"
                    continue
                if not isinstance(obj, dict):
                    yield number, text, None, f"a JSON line must be an object, not {type(obj).__name__}"
                    continue
                yield number, text, obj, ""
                continue
            fields = next(csv.reader([text]))
            if header is None:
                header = [h.strip().lower() for h in fields]
                missing = [c for c in REQUIRED if c not in header]
                if missing:
                    yield (
                        number,
                        text,
                        None,
                        f"CSV header lacks {', '.join(missing)} (columns: {', '.join(COLUMNS)})",
                    )
                    return
                continue
            if len(fields) != len(header):
                yield number, text, None, f"{len(fields)} fields where the header has {len(header)}"
                continue
            yield number, text, dict(zip(header, fields, strict=True)), ""


def check_file(path: Path, limits: UsageLimits = DEFAULT_LIMITS, source: str = "") -> FileResult:
    """Pure over one file's content: records for good lines, dead letters for bad ones (with line numbers)."""
    result = FileResult(str(path))
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    result.sha256 = digest.hexdigest()
    topic = f"file://{path.name}"
    src = source or f"file:{path.name}"
    seen: dict[str, int] = {}
    for number, text, row, reason in read_rows(path):
        result.lines += 1
        record: UsageRecord | None = None
        if row is not None:
            try:
                record = usage_record(row, src, limits)
            except UsageError as exc:
                reason = str(exc)
            except (ValueError, TypeError) as exc:
                reason = f"invalid: {exc}"
        if record is not None and record.id in seen:
            reason, record = f"duplicate id {record.id!r} (first on line {seen[record.id]})", None
        if record is None:
            payload = text.encode("utf-8", "surrogateescape")
            result.dead_letters.append(
                dead_letter_for(
                    payload, topic=topic, stage=STAGE_FILES, reason=f"line {number}: {reason}", offset=number
                )
            )
            continue
        seen[record.id] = number
        result.records.append(record)
    return result


class Ledger:
    """sha256 of every file already ingested, one JSON line each, appended after delivery."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.digests: set[str] = set()
        if path.exists():
            for line in path.read_text().splitlines():
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    self.digests.add(json.loads(line)["sha256"])

    def __contains__(self, digest: str) -> bool:
        return digest in self.digests

    def add(self, result: FileResult) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        entry = {
            "sha256": result.sha256,
            "path": result.path,
            "records": len(result.records),
            "dead_letters": result.bad,
            "ingested_ms": time.time_ns() // 1_000_000,
        }
        with open(self.path, "a") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())  # the ledger entry is the promise "this file is done"
        self.digests.add(result.sha256)


class UsageFilesConfig(CollectorConfig, frozen=True, kw_only=True):
    type: str = "usage_files"
    directory: str = "var/usage/incoming"
    patterns: list[str] = msgspec.field(default_factory=lambda: ["*.csv", "*.jsonl", "*.ndjson", "*.json"])
    poll_interval_s: float = 2.0
    min_age_s: float = 1.0
    done_dir: str = ""
    ledger: str = ""
    max_age_days: float = 400.0
    max_future_s: float = 86400.0
    batch_size: int = 5000

    def validate(self, key: str) -> None:
        if self.poll_interval_s <= 0:
            raise CollectorConfigError(f"{key}.poll_interval_s", "must be > 0")
        if self.min_age_s < 0 or self.max_age_days < 0 or self.max_future_s < 0:
            raise CollectorConfigError(key, "min_age_s, max_age_days and max_future_s must be >= 0")
        if self.batch_size < 1:
            raise CollectorConfigError(f"{key}.batch_size", "must be >= 1")
        if not self.patterns:
            raise CollectorConfigError(f"{key}.patterns", "must list at least one glob")

    @property
    def limits(self) -> UsageLimits:
        return UsageLimits(self.max_age_days, self.max_future_s)


@register_collector("usage_files")
class UsageFilesCollector(Collector[UsageFilesConfig]):
    """Watches a directory; each new file is validated, produced, flushed, then recorded in the ledger."""

    config_type = UsageFilesConfig

    def __init__(self, config: UsageFilesConfig, sink: RecordSink, **context: Any) -> None:
        super().__init__(config, sink, **context)
        self.directory = Path(config.directory)
        self.ledger = Ledger(Path(config.ledger) if config.ledger else self.directory / ".ossbss-ingested.jsonl")
        self.files_ingested = 0
        self.files_skipped = 0

    def candidates(self) -> list[Path]:
        """Files ready to ingest: matching a pattern, not hidden or partial, unchanged for min_age_s."""
        if not self.directory.is_dir():
            return []
        now = time.time()
        found: set[Path] = set()
        for pattern in self.config.patterns:
            for path in self.directory.glob(pattern):
                if path.name.startswith(".") or path.suffix in (".tmp", ".part") or not path.is_file():
                    continue
                with contextlib.suppress(OSError):
                    if now - path.stat().st_mtime >= self.config.min_age_s:
                        found.add(path)
        return sorted(found, key=lambda p: (p.stat().st_mtime, p.name))

    def ingest_file(self, path: Path) -> FileResult:
        """Validate, emit in batches, flush, then ledger; an already-ingested file is skipped."""
        result = check_file(path, self.config.limits)
        if result.sha256 in self.ledger:
            self.files_skipped += 1
            return FileResult(str(path), result.sha256, skipped=True)
        size = self.config.batch_size
        for i in range(0, len(result.records), size):
            self.emit(USAGE_RECORDS, result.records[i : i + size])
        for letter in result.dead_letters:
            self.dead_letter(letter)
        self.sink.flush()  # delivered before the ledger says "done"
        self.ledger.add(result)
        self.files_ingested += 1
        if self.config.done_dir:
            done = Path(self.config.done_dir)
            done.mkdir(parents=True, exist_ok=True)
            shutil.move(str(path), done / path.name)
        return result

    async def collect_once(self) -> list[Record]:
        records: list[Record] = []
        for path in self.candidates():
            try:
                result = await asyncio.to_thread(self.ingest_file, path)
            except OSError as exc:
                self.stats.count_error(f"cannot read {path.name}: {exc.strerror}")
                continue
            records.extend(result.records)
        self.stats.polls += 1
        return records

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.collect_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.config.poll_interval_s)


class UsageKafkaConfig(CollectorConfig, frozen=True, kw_only=True):
    type: str = "usage_kafka"
    topic: str = "usage.raw"
    group_id: str = "ossbss-usage-ingest"
    bootstrap_servers: str = ""  # default: the pipeline's Kafka
    batch_size: int = 5000
    max_age_days: float = 400.0
    max_future_s: float = 86400.0

    def validate(self, key: str) -> None:
        if not self.topic:
            raise CollectorConfigError(f"{key}.topic", "is required")
        if self.batch_size < 1:
            raise CollectorConfigError(f"{key}.batch_size", "must be >= 1")


def records_from_messages(
    messages: list[tuple[str, int, int, bytes | None]], limits: UsageLimits
) -> tuple[list[UsageRecord], list[DeadLetter]]:
    """Pure: (topic, partition, offset, value) raw usage JSON -> records and dead letters."""
    records: list[UsageRecord] = []
    letters: list[DeadLetter] = []
    for topic, partition, offset, value in messages:
        reason = ""
        if value is None:
            reason = "empty message (null value)"
        elif len(value) > MAX_RECORD_BYTES:
            reason = f"oversized message: {len(value)} bytes"
        else:
            try:
                obj = _json_decode(value)
                if not isinstance(obj, dict):
                    raise UsageError(f"a usage message must be a JSON object, not {type(obj).__name__}")
                records.append(usage_record(obj, f"kafka:{topic}", limits))
                continue
            except msgspec.DecodeError as exc:
                reason = f"malformed JSON: {exc}"
            except (UsageError, ValueError, TypeError) as exc:
                reason = str(exc)
        letters.append(
            dead_letter_for(value, topic=topic, stage=STAGE_KAFKA, reason=reason, partition=partition, offset=offset)
        )
    return records, letters


@register_collector("usage_kafka")
class UsageKafkaCollector(Collector[UsageKafkaConfig]):
    """Consumes raw usage JSON, produces UsageRecords; offsets are committed only after delivery."""

    config_type = UsageKafkaConfig

    def __init__(self, config: UsageKafkaConfig, sink: RecordSink, **context: Any) -> None:
        super().__init__(config, sink, **context)
        self._consumer: Any = None
        self.limits = UsageLimits(config.max_age_days, config.max_future_s)

    def _open(self) -> Any:
        if self._consumer is None:
            from confluent_kafka import Consumer

            settings = dict(self.kafka)
            if self.config.bootstrap_servers:
                settings["bootstrap.servers"] = self.config.bootstrap_servers
            if not settings.get("bootstrap.servers"):
                raise CollectorConfigError(f"{self.config_key}.bootstrap_servers", "no Kafka bootstrap servers")
            settings.update(
                {
                    "group.id": self.config.group_id,
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                }
            )
            self._consumer = Consumer(settings)
            self._consumer.subscribe([self.config.topic])
        return self._consumer

    def consume_batch(self, timeout: float = 1.0) -> int:
        """One batch: consume, convert, emit, flush the sink, then commit. Returns messages handled."""
        consumer = self._open()
        messages = consumer.consume(num_messages=self.config.batch_size, timeout=timeout)
        raw = []
        for message in messages:
            if message.error() is not None:
                self.stats.count_error(f"consume error: {message.error()}")
                continue
            raw.append((message.topic(), message.partition(), message.offset(), message.value()))
        if not raw:
            return 0
        records, letters = records_from_messages(raw, self.limits)
        self.emit(USAGE_RECORDS, records)
        for letter in letters:
            self.dead_letter(letter)
        self.sink.flush()  # delivered before the offsets move
        consumer.commit(asynchronous=False)
        self.stats.polls += 1
        return len(raw)

    async def collect_once(self) -> list[Record]:
        await asyncio.to_thread(self.consume_batch)
        return []

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                await asyncio.to_thread(self.consume_batch, 0.5)
        finally:
            self.close()

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


__all__ = [
    "COLUMNS",
    "REQUIRED",
    "FileResult",
    "Ledger",
    "UsageError",
    "UsageFilesCollector",
    "UsageFilesConfig",
    "UsageKafkaCollector",
    "UsageKafkaConfig",
    "UsageLimits",
    "check_file",
    "parse_time",
    "read_rows",
    "records_from_messages",
    "usage_record",
]
