"""Scale-out on the real broker and engine: two stream workers in one consumer group share the
partitions, and every sample is still counted exactly once in interface_rates_1m."""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from pathlib import Path

import pytest

from ossbss.localstack.kafka import KafkaBroker
from ossbss.pipeline import LocalPipeline
from streams.rates import window_start

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def two_worker_run(tmp_path_factory: pytest.TempPathFactory, stream_worker_config):
    root: Path = tmp_path_factory.mktemp("scaleout")
    broker = KafkaBroker(root / "kafka").start()
    config = stream_worker_config(root, broker.bootstrap_servers, devices=8, records_per_s=100, partitions=4)
    config = dataclasses.replace(config, streams=dataclasses.replace(config.streams, workers=2))
    pipeline = LocalPipeline(config, None)
    try:
        pipeline.start()  # streams.workers = 2: the pipeline starts both
        pipeline.start_generators()  # traffic while the two join (and the group rebalances)
        members = pipeline.wait_for_workers(timeout=90)
        time.sleep(15)
        pipeline.stop_generators()
        drained = pipeline.drain(timeout=180)
        summary = pipeline.summarise(0, drained)
        yield pipeline, summary, drained, members
    finally:
        pipeline.stop()
        broker.stop()


def test_both_workers_own_partitions(two_worker_run):
    pipeline, _, drained, members = two_worker_run
    assert drained, pipeline.drain_status  # which stage did not catch up, and its lag per partition
    assert len(pipeline.workers) == 2 and all(w.poll() is None for w in pipeline.workers)
    assert len(members) == 2
    samples_partitions = [{p for t, p in m if t == "telemetry.samples"} for m in members]
    assert all(samples_partitions) and not (samples_partitions[0] & samples_partitions[1])
    assert samples_partitions[0] | samples_partitions[1] == {0, 1, 2, 3}


def test_every_interval_counted_once_across_workers(two_worker_run):
    pipeline, summary, _, _ = two_worker_run
    wh = pipeline.warehouse
    stamps = wh.query(
        "SELECT device, if_index, groupArray(toUnixTimestamp64Milli(ts)) FROM "
        "(SELECT DISTINCT device, if_index, ts FROM telemetry_samples) GROUP BY device, if_index"
    ).rows
    assert len(stamps) == 8 * 3
    expected: Counter = Counter()
    for device, if_index, ts_list in stamps:
        for ts in sorted(ts_list)[1:]:
            expected[(device, int(if_index), window_start(int(ts)))] += 1
    rows = wh.query(
        "SELECT device, if_index, toUnixTimestamp64Milli(window_start), samples FROM interface_rates_1m FINAL"
    ).rows
    assert {(r[0], int(r[1]), int(r[2])): int(r[3]) for r in rows} == dict(expected)
    assert summary.usage_rated == summary.generated.usage
