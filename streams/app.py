"""The faust-streaming app: two agents, each a thin adapter around a pure batch function.

* ``interface_rates``: ``telemetry.samples`` -> counters to rates -> 1-minute windows ->
  ``telemetry.rates.1m``. Per-device state lives in a changelog-backed table, so a restarted worker
  resumes where it stopped; updates are keyed by sample timestamp, so a replay changes nothing.
* ``rate_usage``: ``usage.records`` -> rating engine -> ``usage.rated``.

Anything a stage cannot accept goes to ``ossbss.deadletter`` with the reason. Outputs (and the rate
state's changelog) are sent through a librdkafka producer whose delivery each batch awaits before faust
may ack and commit its inputs; the allowance table's changelog goes through faust's producer, which
faust flushes before it commits: an input is never committed before what it produced is on the broker
(at-least-once, made exact downstream by record ids). faust runs with the consumer of
``streams.consumer``, which keeps messages fetched before a seek away from the streams.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from itertools import groupby, repeat
from operator import attrgetter
from typing import Any, cast

import faust
import msgspec
from confluent_kafka import Producer

from collectors.publish import MAX_GROUP, KeyPartitions, grouped_by_partition, partition_count, producer_config
from models.codec import DecodeFailure, RecordCodec, codec_for, dead_letter_for, encode, encode_many, unchecked_struct
from models.records import TelemetrySample, UsageRecord
from models.topics import DEAD_LETTERS, INTERFACE_RATES_1M, TELEMETRY_SAMPLES, USAGE_RATED, USAGE_RECORDS
from ossbss.config import Config
from rating import load_catalog
from rating.state import RatingState, split_state_key
from rating.wire import rate_usage_wire
from streams.consumer import SCHEME as SEEK_SAFE_SCHEME
from streams.rates import CounterOverflow, DeviceState, apply_batch, decode_state, encode_state, flush_windows

log = logging.getLogger("ossbss.streams")


class OutputProducer:
    """librdkafka producer for a stage's outputs; ``flush`` waits for delivery off the event loop."""

    def __init__(self, client_config: dict[str, Any]) -> None:
        self._producer = Producer(
            producer_config(client_config["bootstrap.servers"], **client_config, **{"linger.ms": 5})
        )
        self._failed = 0
        self._error = ""
        self._partition_counts: dict[str, int] = {}

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self._failed += 1
            self._error = str(err)

    def send(self, topic: str, key: bytes, value: bytes, partition: int = -1) -> None:
        while True:
            try:
                self._producer.produce(topic, value, key, partition=partition, on_delivery=self._delivered)
                return
            except BufferError:
                self._producer.poll(0.05)  # the local queue is full: serve delivery reports to make room

    def partitions(self, topic: str) -> int:
        """How many partitions ``topic`` has (asked of the broker once)."""
        return partition_count(self._producer, topic, self._partition_counts, timeout=30)

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
    """Per-device rate state: decoded once and cached here, written back after each batch that changed
    it (see ``streams.rates.encode_state``), so a restarted worker recovers it from Kafka. State written
    by an older build (a msgpack dict) is read and converted.

    A write goes to the table's local store and, through ``send``, to the table's changelog topic
    (keyed by device, on the partition Kafka's murmur2 gives the key, as faust's own write would): the
    same two effects as ``table[key] = value``, but the changelog travels through librdkafka instead of
    faust's Python producer, the largest single cost of the worker (over ``pipeline_rates`` its CPU fell
    from 12.5-12.9 to 9.2-10.4 core-seconds, the broker's from 9.9-11.5 to 8.5-9.2). faust still
    recovers the table from that topic on assignment. The caller waits for delivery before the batch's
    offsets may be committed, and before partitions are given up (``create_app``)."""

    def __init__(self, table: Any, send: Callable[[bytes, bytes], None]) -> None:
        self.table = table
        self._send = send
        self.cache: dict[str, DeviceState] = {}
        # When (monotonic clock) each device last sent samples: idle devices get their windows flushed.
        self.last_seen: dict[str, float] = {}

    def load(self, devices: Iterable[str]) -> None:
        """Bring these devices' states into the cache (from the table when not there yet)."""
        cache = self.cache
        for device in devices:
            if device not in cache:
                raw = self.table.get(device.encode())
                if raw:
                    cache[device] = decode_state(raw)

    def put(self, device: str) -> None:
        state = self.cache.get(device)
        if state is None:
            return  # forgotten meanwhile: the partitions were given up (the new owner has the last write)
        key, value = device.encode(), encode_state(state)
        self.table.data[key] = value  # the local store, without faust's changelog write ...
        self._send(key, value)  # ... which goes out here

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
        # faust's aiokafka transport with a consumer that drops what it fetched before a seek (see
        # streams.consumer: without it a restarted worker could skip or stall on records).
        broker=f"{SEEK_SAFE_SCHEME}://{bootstrap_servers}",
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
        # Up to 16 MiB a partition per fetch (faust's default is 1 MiB, about six batched messages): with
        # 1 MiB the worker's buffer refilled slowly after each batch, so the next batch was what arrived
        # in batch_within_s (228-460 messages), and the first one began 1.7 s after the backlog appeared.
        # Alternated with the default: pipeline_rates 100.8k, 98.9k, 98.3k, 77.4k against 89.8k, 94.8k,
        # 93.8k, 84.3k samples/s; usage_rating_e2e 78.2k and 82.1k against 68.5k and 74.3k records/s.
        # aiokafka's fetch_max_bytes (50 MB) still bounds a whole fetch.
        consumer_max_fetch_size=16 * 1024 * 1024,
        # What faust's own producer sends is the allowance table's changelog (one account's periods per
        # write). zstd (level 3 in aiokafka) shrinks it several times at ~0.8 GB/s; aiokafka's lz4 runs at
        # level 9, four times slower.
        producer_compression_type="zstd",
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
    device_of = attrgetter("device")
    # One decode per device poll, however many interfaces. The samples are first decoded without
    # TelemetrySample's per-sample __post_init__ (every other constraint applies): its one check, no
    # counter above 2**64 - 1, is made by apply_batch over whole columns, which raises CounterOverflow
    # before changing any state; the batch is then decoded again with the checked type, whose refusals
    # become the dead letters they always were. Without that call per sample, decoding a poll took
    # 1.2-1.4 instead of 1.5-2.2 us a sample on an offline harness of the worker's hot loop.
    # (typed as TelemetrySample: the struct has its fields, which is all the worker reads)
    unchecked = cast(type[TelemetrySample], unchecked_struct(TelemetrySample))
    decode_samples = RecordCodec(unchecked, batched=True).decode_message
    decode_checked_samples = codec_for(TelemetrySample).decode_message
    usage_codec = codec_for(UsageRecord)
    catalog = load_catalog(config.rating.catalog or None)
    stats = StreamStats()
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
        # faust has waited for the streams' in-flight events and flushed its own producer; the rate
        # state's changelog goes through ours (DeviceStates), so wait for it too: the partitions' next
        # owner recovers the table from that topic. (A timer's write may still be on its way.)
        await outputs.flush()
        # Another worker may own these devices and accounts now; reread them when they come back.
        states.clear()
        rating_state[0] = RatingState(loader=load_allowances)

    app.on_partitions_revoked.connect(forget_cached_states)

    # Outputs go through librdkafka (a few µs per message, against tens for faust's own producer), and
    # so does the rate state's changelog (DeviceStates). Each batch waits for its outputs' delivery,
    # then writes its state and waits for that too, before faust may ack and commit its input offsets:
    # nothing is committed whose outputs and state are not on Kafka, and no state says "emitted" for an
    # output that was lost.
    outputs = OutputProducer(config.kafka.client_config(bootstrap_servers))
    state_changelog = interface_state.changelog_topic.get_topic_name()
    states = DeviceStates(interface_state, lambda key, value: outputs.send(state_changelog, key, value))

    def dead_letter(
        value: bytes | None, topic: str, partition: int, offset: int, stage: str, reason: str, element: int = -1
    ) -> None:
        dl = dead_letter_for(
            value, topic=topic, stage=stage, reason=reason, partition=partition, offset=offset, element=element
        )
        outputs.send(DEAD_LETTERS.name, topic.encode(), encode(dl))
        stats.add(f"deadletter.{stage}")

    def decode_events(
        events: list[Any],
        decode: Callable[[bytes | None], tuple[list[Any], list[DecodeFailure]]],
        stage: str,
        refuse: Callable[..., None] = dead_letter,
    ) -> Iterator[tuple[Any, list[Any]]]:
        """(message, its records) for each event; whole messages or elements that fail are dead-lettered
        (``refuse``, with :func:`dead_letter`'s arguments)."""
        for event in events:
            msg = event.message
            try:
                records, bad_elements = decode(msg.value)
            except ValueError as exc:
                refuse(msg.value, msg.topic, msg.partition, msg.offset, stage, str(exc))
                continue
            for failure in bad_elements:
                refuse(
                    failure.payload,
                    msg.topic,
                    msg.partition,
                    msg.offset,
                    stage,
                    failure.reason,
                    element=failure.element,
                )
            yield msg, records

    key_partitions = KeyPartitions()

    def rated_partition() -> Callable[[bytes], int]:
        return key_partitions.table(outputs.partitions(USAGE_RATED.name))

    async def publish_and_save(windows: Mapping[str, list[Any]], devices: Iterable[str]) -> None:
        """Send the windows and wait for their delivery, then write the devices' states and wait for those."""
        for device, emitted in windows.items():
            # One message per device emission (a JSON array), like the samples that produced it.
            for start in range(0, len(emitted), MAX_GROUP):
                chunk = encode_many(emitted[start : start + MAX_GROUP])
                outputs.send(INTERFACE_RATES_1M.name, device.encode(), chunk)
        await outputs.flush()  # the windows first: no state may say "emitted" for a window that was lost
        for device in devices:
            states.put(device)
        await outputs.flush()  # then the states, before faust may commit the batch's offsets

    Refusal = tuple[bytes | None, str, int, int, str, str, int]  # dead_letter's arguments

    def collect_samples(
        events: list[Any], decode: Callable[[bytes | None], tuple[list[Any], list[DecodeFailure]]], horizon: int
    ) -> tuple[dict[str, list[TelemetrySample]], list[tuple[Any, list[TelemetrySample]]], list[Refusal]]:
        """The batch's samples by device, each message with its samples, and the dead letters to send
        (kept, not sent: the batch may be decoded again)."""
        by_device: dict[str, list[TelemetrySample]] = defaultdict(list)
        received: list[tuple[Any, list[TelemetrySample]]] = []
        refused: list[Refusal] = []

        def refuse(
            value: bytes | None, topic: str, partition: int, offset: int, stage: str, reason: str, element: int = -1
        ) -> None:
            refused.append((value, topic, partition, offset, stage, reason, element))

        for msg, samples in decode_events(events, decode, "interface_rates", refuse):
            received.append((msg, samples))
            if not samples:
                continue
            # The usual message (device polls, each device's samples together) has nothing ahead of the
            # clock and is split into its devices' runs; only one that does is looked at sample by sample.
            if max([sample.ts_ms for sample in samples]) <= horizon:
                for device, run in groupby(samples, key=device_of):
                    by_device[device].extend(run)
                continue
            for position, sample in enumerate(samples):
                if sample.ts_ms > horizon:
                    refuse(
                        encode(sample),
                        msg.topic,
                        msg.partition,
                        msg.offset,
                        "interface_rates",
                        f"timestamp in the future: ts_ms {sample.ts_ms} is more than "
                        f"{future_ms // 1000}s ahead of this worker's clock",
                        position if len(samples) > 1 else -1,
                    )
                    continue
                by_device[sample.device].append(sample)
        return by_device, received, refused

    @app.agent(samples_topic)
    async def interface_rates(stream: Any) -> None:  # a faust Stream (its stubs lack take_events)
        async for events in stream.take_events(config.streams.batch_size, within=config.streams.batch_within_s):
            horizon = int(time.time() * 1000) + future_ms
            by_device, received, refused = collect_samples(events, decode_samples, horizon)
            states.load(by_device)
            # Event time is per device: each device is its own source with its own clock and poll
            # schedule, so one device's backlog never makes another device's samples late.
            try:
                result = apply_batch(states.cache, by_device, allowed_lateness_ms=lateness_ms)
            except CounterOverflow:  # nothing changed: the batch again, through the checked decoder
                by_device, received, refused = collect_samples(events, decode_checked_samples, horizon)
                states.load(by_device)
                result = apply_batch(states.cache, by_device, allowed_lateness_ms=lateness_ms)
            for args in refused:
                dead_letter(*args)
            if result.late:
                late_by_sample = {id(sample): watermark for sample, watermark in result.late}
                for msg, samples in received:
                    for position, sample in enumerate(samples):
                        watermark = late_by_sample.get(id(sample))
                        if watermark is None:
                            continue
                        dead_letter(
                            encode(sample),
                            TELEMETRY_SAMPLES.name,
                            msg.partition,
                            msg.offset,
                            "interface_rates",
                            f"late sample: ts_ms {sample.ts_ms} is older than the device's watermark {watermark} "
                            f"minus the allowed lateness {lateness_ms} ms",
                            element=position if len(samples) > 1 else -1,
                        )
            stats.add("samples.applied", result.applied)
            stats.add("samples.duplicate", result.duplicates)
            stats.add("counters.reset", result.resets)
            stats.add("counters.wrap", result.wraps)
            stats.add("devices.exact_path", result.exact_path)
            now = time.monotonic()
            for device in by_device:
                states.last_seen[device] = now
            await publish_and_save(result.windows, by_device)

    # Checked four times per idle_close_s (at most once a second): a device's windows close between
    # idle_close_s and 1.25 idle_close_s after its last samples (with a 1 s tick and idle_close_s = 1, as
    # in the benchmarks, that was 1-2 s).
    @app.timer(min(1.0, config.streams.idle_close_s / 4))
    async def flush_idle_windows() -> None:
        # A device silent for idle_close_s emits its open windows, so dashboards see the last minute
        # even when it stops; late samples still within the lateness re-emit them with a higher revision.
        idle = states.idle(time.monotonic(), config.streams.idle_close_s)
        if not idle:
            return
        states.load(idle)
        emitted = flush_windows(states.cache, idle, allowed_lateness_ms=lateness_ms, flush_open=True)
        if emitted:
            await publish_and_save(emitted, emitted)

    @app.agent(usage_topic)
    async def rate_usage_agent(stream: Any) -> None:  # a faust Stream (its stubs lack take_events)
        async for events in stream.take_events(config.streams.batch_size, within=config.streams.batch_within_s):
            records: list[UsageRecord] = []
            # Where each record came from: (message, position in a batched message or -1).
            origins: list[tuple[Any, int]] = []
            now_ms = int(time.time() * 1000)
            earliest, latest = now_ms - max_usage_age_ms, now_ms + future_ms
            for msg, received in decode_events(events, usage_codec.decode_message, "rating"):
                batched = msg.value[:1] == b"["
                if not received:
                    continue
                starts = [record.start_ms for record in received]
                if earliest <= min(starts) and max(starts) <= latest:  # the usual message: all of it in time
                    records.extend(received)
                    origins.extend(zip(repeat(msg), range(len(received))) if batched else [(msg, -1)])
                    continue
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
            # The rated records come out of the kernel's columns as wire bytes (no RatedUsage objects):
            # exactly encode(rated) of rate_usage's records, keyed by account.
            result = rate_usage_wire(records, catalog, rated_at_ms=now_ms, state=rating_state[0])
            for index, reason in result.failures:
                msg, element = origins[index]
                payload = encode(records[index]) if element >= 0 else msg.value
                dead_letter(payload, msg.topic, msg.partition, msg.offset, "rating", reason, element=element)
            # Batched per partition (a JSON array, each record on its own account's partition): one
            # message per partition and batch instead of one per record, for the broker and the sink.
            for partition, key, value in grouped_by_partition(result.keys, result.values, rated_partition()):
                outputs.send(USAGE_RATED.name, key, value, partition)
            await outputs.flush()
            save_allowances()
            stats.add("usage.rated", len(result.values))

    def usage_time_problem(record: UsageRecord, now_ms: int) -> str:
        if record.start_ms > now_ms + future_ms:
            return (
                f"start_ms {record.start_ms} is in the future (more than {future_ms // 1000}s ahead of this "
                "worker's clock)"
            )
        if record.start_ms < now_ms - max_usage_age_ms:
            return f"start_ms {record.start_ms} is older than the accepted {config.streams.max_usage_age_days:g} days"
        return ""

    paused_ticks: dict[Any, int] = {}

    @app.timer(10.0)
    async def log_stats() -> None:
        if stats.counts:
            log.info("streams: %s", dict(stats.counts))
        # faust pauses an input partition while its stream buffer is full and resumes it when it drains;
        # one paused for 30 s or more means that stream is stuck (the crash test once saw the usage
        # stream stop after a restart): say which, at a level the worker's log keeps. (Changelog
        # partitions stay paused after recovery by design: they are not inputs.)
        inputs = (TELEMETRY_SAMPLES.name, USAGE_RECORDS.name)
        paused = {tp for tp in getattr(app.consumer, "_paused_partitions", ()) if tp.topic in inputs}
        for tp in list(paused_ticks):
            if tp not in paused:
                del paused_ticks[tp]
        stuck = []
        for tp in paused:
            paused_ticks[tp] = paused_ticks.get(tp, 0) + 1
            if paused_ticks[tp] >= 3:
                stuck.append(f"{tp.topic}/{tp.partition}")
        if stuck:
            log.warning("streams: partitions paused for 30 s or more: %s", ", ".join(sorted(stuck)))

    @app.task
    async def drop_debug_logging() -> None:
        # faust's worker lowers the root logger to DEBUG for its startup spinner and leaves it there:
        # every debug call in faust and aiokafka then builds a record that the handlers throw away
        # (about 5% of the worker's time under load). Raise it back to what the handlers let through.
        root = logging.getLogger()
        levels = [h.level for h in root.handlers if type(h).__name__ != "SpinnerHandler"]
        if levels:
            root.setLevel(max(root.level, min(levels)))

    return app
