"""The faust-streaming app: two agents, each a thin adapter around a pure batch function.

* ``interface_rates``: ``telemetry.samples`` -> counters to rates -> 1-minute windows ->
  ``telemetry.rates.1m``. Per-device state lives in a changelog-backed table, so a restarted worker
  resumes where it stopped; updates are keyed by sample timestamp, so a replay changes nothing.
* ``rate_usage``: ``usage.records`` -> rating engine -> ``usage.rated``.

Anything a stage cannot accept goes to ``ossbss.deadletter`` with the reason. Outputs are sent through
the app's producer, which faust flushes before it commits input offsets: an input is never committed
before what it produced is on the broker (at-least-once, made exact downstream by record ids).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import faust
import msgspec
from confluent_kafka import Producer

from collectors.publish import producer_config
from models.codec import RecordCodec, codec_for, dead_letter_for, encode, encode_many
from models.records import TelemetrySample, UsageRecord
from models.topics import DEAD_LETTERS, INTERFACE_RATES_1M, TELEMETRY_SAMPLES, USAGE_RATED, USAGE_RECORDS
from ossbss.config import Config
from rating import load_catalog, rate_usage
from rating.state import RatingState, split_state_key
from streams.rates import apply_samples, device_watermark, emit_windows

log = logging.getLogger("ossbss.streams")


class OutputProducer:
    """librdkafka producer for a stage's outputs; ``flush`` waits for delivery off the event loop."""

    def __init__(self, client_config: dict[str, Any]) -> None:
        self._producer = Producer(
            producer_config(client_config["bootstrap.servers"], **client_config, **{"linger.ms": 5})
        )
        self._failed = 0
        self._error = ""

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self._failed += 1
            self._error = str(err)

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        while True:
            try:
                self._producer.produce(topic, value, key, on_delivery=self._delivered)
                return
            except BufferError:
                self._producer.poll(0.05)  # the local queue is full: serve delivery reports to make room

    async def flush(self, timeout: float = 120.0) -> None:
        loop = asyncio.get_running_loop()
        remaining = await loop.run_in_executor(None, self._producer.flush, timeout)
        if remaining or self._failed:
            failed, self._failed = self._failed + remaining, 0
            # Raising stops the agent before its inputs are acked: they are processed again after restart.
            raise RuntimeError(f"{failed} output record(s) not delivered to Kafka: {self._error or 'timed out'}")


class StreamStats:
    """Counters of the app, logged periodically."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = defaultdict(int)

    def add(self, name: str, n: int = 1) -> None:
        self.counts[name] += n


class DeviceStates:
    """Per-device rate state: decoded once and cached here, written back to the changelog-backed table
    as msgpack after each batch that changed it, so a restarted worker recovers it from Kafka."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self.cache: dict[str, dict[str, Any]] = {}
        # When (monotonic clock) each device last sent samples: idle devices get their windows flushed.
        self.last_seen: dict[str, float] = {}
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder(dict[str, Any])

    def get(self, device: str) -> dict[str, Any]:
        state = self.cache.get(device)
        if state is None:
            raw = self.table.get(device.encode())
            state = self.cache[device] = self._decoder.decode(raw) if raw else {}
        return state

    def put(self, device: str, state: dict[str, Any]) -> None:
        self.table[device.encode()] = self._encoder.encode(state)

    def idle(self, now: float, idle_s: float) -> list[str]:
        """Devices silent for ``idle_s`` since their last samples (each reported once per silence)."""
        gone = [d for d, seen in self.last_seen.items() if now - seen >= idle_s]
        for device in gone:
            del self.last_seen[device]
        return gone

    def clear(self) -> None:
        self.cache.clear()
        self.last_seen.clear()


def tune_gc_for_streaming() -> None:
    """Python's cyclic GC, at its default thresholds, walks the whole (large, long-lived) window state
    every few hundred allocations; the stream state has no cycles to collect in the hot path, so
    collect far less often, and move what exists at start out of the young generations."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(200_000, 50, 100)


def create_app(config: Config, bootstrap_servers: str) -> faust.App:
    partitions = config.kafka.partitions
    lateness_ms = int(config.streams.allowed_lateness_s * 1000)
    future_ms = int(config.streams.max_future_skew_s * 1000)
    max_usage_age_ms = int(config.streams.max_usage_age_days * 86_400_000)
    datadir = config.var_path / "streams"
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        config.streams.app_id,
        broker=f"kafka://{bootstrap_servers}",
        store="memory://",
        value_serializer="raw",
        key_serializer="raw",
        web_enabled=False,
        topic_partitions=partitions,
        topic_replication_factor=1,
        table_standby_replicas=0,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_max_request_size=8 * 1024 * 1024,
        broker_commit_interval=1.0,
        # A worker that dies (SIGKILL, lost host) is noticed after this long and its partitions move:
        # faust's default of 60 s would stall a restarted worker's recovery for a minute.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=3.0,
        datadir=str(datadir),
    )
    samples_topic = app.topic(TELEMETRY_SAMPLES.name, key_type=bytes, value_type=bytes, partitions=partitions)
    usage_topic = app.topic(USAGE_RECORDS.name, key_type=bytes, value_type=bytes, partitions=partitions)
    # Keyed by device like the samples topic; the changelog partition is chosen by the same murmur2
    # partitioner, so a device's state recovers on the worker that owns the device's samples.
    interface_state = app.Table(
        "interface-state",
        default=None,
        # Keys and values are bytes, so faust stores them as they are ("raw") in the changelog and on
        # recovery: the key bytes are the topic's key bytes (same partition), the values msgpack.
        key_type=bytes,
        value_type=bytes,
        partitions=partitions,
        use_partitioner=True,
    )
    # Allowance state of the rating engine, keyed by account like the usage topic (one value holds all
    # of an account's periods), so it recovers on the worker that owns the account's usage.
    rating_table = app.Table(
        "rating-state",
        default=None,
        key_type=bytes,
        value_type=bytes,
        partitions=partitions,
        use_partitioner=True,
    )
    sample_codec = codec_for(TelemetrySample)
    usage_codec = codec_for(UsageRecord)
    catalog = load_catalog(config.rating.catalog or None)
    stats = StreamStats()
    states = DeviceStates(interface_state)
    periods_codec = msgspec.msgpack.Decoder(dict[str, bytes])
    periods_encoder = msgspec.msgpack.Encoder()

    def load_allowances(account: str, period: str) -> bytes | None:
        raw = rating_table.get(account.encode())
        return periods_codec.decode(raw).get(period) if raw else None

    rating_state = [RatingState(loader=load_allowances)]

    def save_allowances() -> None:
        # Written before the rated records are produced; faust flushes both before it commits.
        by_account: dict[str, dict[str, bytes]] = defaultdict(dict)
        for key, blob in rating_state[0].take_changes().items():
            account, period = split_state_key(key)
            by_account[account][period] = blob
        for account, periods in by_account.items():
            raw = rating_table.get(account.encode())
            merged = periods_codec.decode(raw) if raw else {}
            merged.update(periods)
            rating_table[account.encode()] = periods_encoder.encode(merged)

    async def forget_cached_states(*args: Any, **kwargs: Any) -> None:
        # Another worker may own these devices and accounts now; reread them when they come back.
        states.clear()
        rating_state[0] = RatingState(loader=load_allowances)

    app.on_partitions_revoked.connect(forget_cached_states)

    # Outputs go through librdkafka (a few µs per message, against tens for faust's own producer).
    # Each batch ends by waiting for their delivery, before the batch's state is written and before
    # faust may ack and commit its input offsets: nothing is committed whose outputs are not on Kafka,
    # and no state says "emitted" for an output that was lost.
    outputs = OutputProducer(config.kafka.client_config(bootstrap_servers))

    def dead_letter(
        value: bytes | None, topic: str, partition: int, offset: int, stage: str, reason: str, element: int = -1
    ) -> None:
        dl = dead_letter_for(
            value, topic=topic, stage=stage, reason=reason, partition=partition, offset=offset, element=element
        )
        outputs.send(DEAD_LETTERS.name, topic.encode(), encode(dl))
        stats.add(f"deadletter.{stage}")

    def decode_events(events: list[Any], codec: RecordCodec, stage: str) -> Iterator[tuple[Any, list[Any]]]:
        """(message, its records) for each event; whole messages or elements that fail are dead-lettered."""
        for event in events:
            msg = event.message
            try:
                records, bad_elements = codec.decode_message(msg.value)
            except ValueError as exc:
                dead_letter(msg.value, msg.topic, msg.partition, msg.offset, stage, str(exc))
                continue
            for failure in bad_elements:
                dead_letter(
                    failure.payload,
                    msg.topic,
                    msg.partition,
                    msg.offset,
                    stage,
                    failure.reason,
                    element=failure.element,
                )
            yield msg, records

    def publish_windows(device: str, state: dict[str, Any], watermark: int, flush_open: bool) -> int:
        windows = emit_windows(
            device, state, watermark_ms=watermark, allowed_lateness_ms=lateness_ms, flush_open=flush_open
        )
        # One message per device emission (a JSON array), like the samples that produced it.
        for start in range(0, len(windows), 1000):
            outputs.send(INTERFACE_RATES_1M.name, device.encode(), encode_many(windows[start : start + 1000]))
        return len(windows)

    @app.agent(samples_topic)
    async def interface_rates(stream: Any) -> None:  # a faust Stream (its stubs lack take_events)
        async for events in stream.take_events(config.streams.batch_size, within=config.streams.batch_within_s):
            by_device: dict[str, list[TelemetrySample]] = defaultdict(list)
            origin: dict[str, tuple[int, int, int]] = {}
            horizon = int(time.time() * 1000) + future_ms
            for msg, samples in decode_events(events, sample_codec, "interface_rates"):
                for position, sample in enumerate(samples):
                    if sample.ts_ms > horizon:
                        dead_letter(
                            encode(sample),
                            msg.topic,
                            msg.partition,
                            msg.offset,
                            "interface_rates",
                            f"timestamp in the future: ts_ms {sample.ts_ms} is more than "
                            f"{future_ms // 1000}s ahead of this worker's clock",
                            element=position if len(samples) > 1 else -1,
                        )
                        continue
                    by_device[sample.device].append(sample)
                    origin[sample.id] = (msg.partition, msg.offset, position if len(samples) > 1 else -1)
            now = time.monotonic()
            changed: list[tuple[str, dict[str, Any]]] = []
            for device, samples in by_device.items():
                state = states.get(device)
                # Event time is per device: each device is its own source with its own clock and poll
                # schedule, so one device's backlog never makes another device's samples late.
                watermark = device_watermark(state)
                result = apply_samples(state, samples, watermark_ms=watermark, allowed_lateness_ms=lateness_ms)
                for late in result.late:
                    part, off, position = origin[late.id]
                    dead_letter(
                        encode(late),
                        TELEMETRY_SAMPLES.name,
                        part,
                        off,
                        "interface_rates",
                        f"late sample: ts_ms {late.ts_ms} is older than the device's watermark {watermark} minus "
                        f"the allowed lateness {lateness_ms} ms",
                        element=position,
                    )
                stats.add("samples.applied", result.applied)
                stats.add("samples.duplicate", result.duplicates)
                stats.add("counters.reset", result.resets)
                stats.add("counters.wrap", result.wraps)
                publish_windows(device, state, device_watermark(state), flush_open=False)
                changed.append((device, state))
                states.last_seen[device] = now
            await outputs.flush()
            for device, state in changed:
                states.put(device, state)

    @app.timer(1.0)
    async def flush_idle_windows() -> None:
        # A device silent for idle_close_s emits its open windows, so dashboards see the last minute
        # even when it stops; late samples still within the lateness re-emit them with a higher revision.
        emitted = []
        for device in states.idle(time.monotonic(), config.streams.idle_close_s):
            state = states.get(device)
            if publish_windows(device, state, device_watermark(state), flush_open=True):
                emitted.append((device, state))
        if emitted:
            await outputs.flush()
            for device, state in emitted:
                states.put(device, state)

    @app.agent(usage_topic)
    async def rate_usage_agent(stream: Any) -> None:  # a faust Stream (its stubs lack take_events)
        async for events in stream.take_events(config.streams.batch_size, within=config.streams.batch_within_s):
            records: list[UsageRecord] = []
            # Where each record came from: (message, position in a batched message or -1).
            origins: list[tuple[Any, int]] = []
            now_ms = int(time.time() * 1000)
            for msg, received in decode_events(events, usage_codec, "rating"):
                batched = msg.value[:1] == b"["
                for position, record in enumerate(received):
                    element = position if batched else -1
                    reason = usage_time_problem(record, now_ms)
                    if reason:
                        payload = encode(record) if batched else msg.value
                        dead_letter(payload, msg.topic, msg.partition, msg.offset, "rating", reason, element=element)
                        continue
                    records.append(record)
                    origins.append((msg, element))
            if not records:
                continue
            result = rate_usage(records, catalog, rated_at_ms=now_ms, state=rating_state[0])
            for index, reason in result.failures:
                msg, element = origins[index]
                payload = encode(records[index]) if element >= 0 else msg.value
                dead_letter(payload, msg.topic, msg.partition, msg.offset, "rating", reason, element=element)
            for rated in result.rated:
                outputs.send(USAGE_RATED.name, rated.account.encode(), encode(rated))
            await outputs.flush()
            save_allowances()
            stats.add("usage.rated", len(result.rated))

    def usage_time_problem(record: UsageRecord, now_ms: int) -> str:
        if record.start_ms > now_ms + future_ms:
            return (
                f"start_ms {record.start_ms} is in the future (more than {future_ms // 1000}s ahead of this "
                "worker's clock)"
            )
        if record.start_ms < now_ms - max_usage_age_ms:
            return f"start_ms {record.start_ms} is older than the accepted {config.streams.max_usage_age_days:g} days"
        return ""

    @app.timer(10.0)
    async def log_stats() -> None:
        if stats.counts:
            log.info("streams: %s", dict(stats.counts))

    return app
