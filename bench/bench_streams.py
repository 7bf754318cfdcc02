"""End-to-end stream throughput: Kafka -> counters to rates and 1-minute windows -> ClickHouse.

``pipeline_rates``: samples/s from a backlog of device polls on ``telemetry.samples`` until every
sample has been through the faust worker (rates, windows, state) and the sink (samples and rate
windows in the embedded ClickHouse). One worker, one sink, on a broker started for the benchmark.
Baseline, in the same run on the same broker and engine: raw consume of the same messages with
confluent-kafka, decode, and bulk insert of the same sample rows into ClickHouse.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

from confluent_kafka import Consumer

from bench import BenchResult, benchmark
from collectors.publish import RecordPublisher
from collectors.simulate import DeviceSimulator
from models.codec import codec_for
from models.records import TelemetrySample
from models.topics import INTERFACE_RATES_1M, TELEMETRY_SAMPLES
from ossbss.config import Config
from ossbss.kafkautil import committed_lag
from ossbss.localstack.kafka import KafkaBroker
from ossbss.pipeline import LocalPipeline
from streams.rates import window_start
from warehouse.rows import columns_for

BASELINE_TOPIC = "bench.baseline.samples"


def _probe(bootstrap: str, pipeline: LocalPipeline, timeout: float = 120.0) -> None:
    """One sample of a probe device, waited for in ClickHouse: the worker and the sink are running."""
    probe = TelemetrySample(id="probe/1/1", device="probe", if_index=1, ts_ms=int(time.time() * 1000) - 3_600_000)
    publisher = RecordPublisher(bootstrap, partitioner="murmur2_random")
    publisher.publish(TELEMETRY_SAMPLES.name, [probe], key=lambda r: "probe")
    publisher.flush()
    deadline = time.monotonic() + timeout
    assert pipeline.warehouse is not None
    while time.monotonic() < deadline:
        pipeline.check_alive()
        if pipeline.warehouse.query("SELECT count() FROM telemetry_samples WHERE device = 'probe'").rows[0][0]:
            return
        time.sleep(0.2)
    raise RuntimeError("the probe sample did not reach ClickHouse: the worker or the sink is not running")


def _produce_backlog(bootstrap: str, devices: int, interfaces: int, polls: int, topic: str) -> tuple[int, int]:
    """Polls every 10 s, all produced up front; returns (samples, expected rate windows)."""
    now = int(time.time() * 1000)
    start = now - now % 60_000 - 60_000 * ((polls * 10) // 60 + 1)
    sim = DeviceSimulator(devices, interfaces, 100_000_000, 40_000_000, 10**9, start)
    publisher = RecordPublisher(bootstrap, partitioner="murmur2_random")
    count = 0
    stamps = [start + k * 10_000 for k in range(polls)]
    for ts in stamps:
        count += publisher.publish(topic, sim.poll(ts), key=lambda r: r.device)  # type: ignore[attr-defined]
    publisher.flush()
    # A window exists for every minute that holds a poll after an interface's first one.
    windows = len({window_start(ts) for ts in stamps[1:]}) * devices * interfaces
    return count, windows


def _baseline(bootstrap: str, warehouse, samples: int) -> float:
    """Raw consume + decode + bulk insert of the same rows; returns seconds."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-raw-{time.time_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([BASELINE_TOPIC])
    codec = codec_for(TelemetrySample)
    seen = 0
    started = time.perf_counter()
    while seen < samples:
        messages = consumer.consume(2000, timeout=1.0)
        if not messages:
            continue
        rows, _, _ = codec.decode_batch([m.value() for m in messages if m.error() is None])
        warehouse.insert_columns("telemetry_samples", columns_for("telemetry_samples", rows))
        seen += len(rows)
    elapsed = time.perf_counter() - started
    consumer.close()
    return elapsed


@benchmark("pipeline_rates", "Kafka -> rates + 1-minute windows -> ClickHouse, samples/s, one worker")
def pipeline_rates(quick: bool) -> BenchResult:
    devices, interfaces, polls = (200, 48, 6) if quick else (1000, 48, 12)
    with tempfile.TemporaryDirectory(prefix="ossbss-bench-") as tmp:
        root = Path(tmp)
        broker = KafkaBroker(root / "kafka").start()
        try:
            base = Config()
            config = dataclasses.replace(
                base,
                var_dir=str(root / "var"),
                kafka=dataclasses.replace(base.kafka, bootstrap_servers=broker.bootstrap_servers),
                warehouse=dataclasses.replace(base.warehouse, url=f"chdb://{root}/clickhouse"),
                streams=dataclasses.replace(base.streams, idle_close_s=1.0),
            )
            pipeline = LocalPipeline(config, None)
            pipeline.say = lambda text: None  # type: ignore[method-assign]
            from ossbss.kafkautil import ensure_topics

            client = {"bootstrap.servers": broker.bootstrap_servers}
            ensure_topics(client, config.kafka.partitions)
            pipeline.bootstrap = broker.bootstrap_servers
            pipeline.client_config = client
            pipeline._start_warehouse()
            assert pipeline.warehouse is not None
            # Baseline first, on its own copy of the backlog in a topic of its own.
            samples, windows = _produce_backlog(broker.bootstrap_servers, devices, interfaces, polls, BASELINE_TOPIC)
            baseline_s = _baseline(broker.bootstrap_servers, pipeline.warehouse, samples)
            pipeline.warehouse.execute("TRUNCATE TABLE telemetry_samples")
            # Start the worker and the sink (untimed) and wait until a probe sample went all the way through.
            pipeline._start_worker()
            pipeline._start_sink()
            _probe(broker.bootstrap_servers, pipeline)
            started = time.perf_counter()
            _produce_backlog(broker.bootstrap_servers, devices, interfaces, polls, TELEMETRY_SAMPLES.name)
            topics = [TELEMETRY_SAMPLES.name, INTERFACE_RATES_1M.name]
            while True:
                pipeline.check_alive()
                lag = committed_lag(client, config.sink.group_id, topics)
                worker_lag = committed_lag(client, config.streams.app_id, [TELEMETRY_SAMPLES.name])
                if sum(lag.values()) == 0 and sum(worker_lag.values()) == 0:
                    rows = pipeline.warehouse.query("SELECT count() FROM interface_rates_1m FINAL").rows[0][0]
                    if int(rows) >= windows:
                        break
                time.sleep(0.2)
            elapsed = time.perf_counter() - started
            stored = pipeline.warehouse.query("SELECT count() FROM telemetry_samples WHERE device != 'probe'").rows[0][
                0
            ]
            pipeline.stop()
        finally:
            broker.stop()
    value = samples / elapsed
    baseline = samples / baseline_s
    return BenchResult(
        value=value,
        unit="samples/s",
        baseline=baseline,
        ratio=value / baseline,
        params={
            "devices": devices,
            "interfaces": interfaces,
            "polls": polls,
            "samples": samples,
            "windows": windows,
            "samples_stored": int(stored),
            "seconds": round(elapsed, 2),
            "baseline_seconds": round(baseline_s, 2),
        },
    )
