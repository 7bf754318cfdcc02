"""Crash recovery on the real broker and engine: the stream worker is killed with SIGKILL mid-run and
restarted; every sample must still be counted exactly once in interface_rates_1m (no window loses or
doubles an interval), and every usage record rated exactly once."""

from __future__ import annotations

import signal
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from ossbss.localstack.kafka import KafkaBroker
from ossbss.pipeline import LocalPipeline
from streams.rates import window_start

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def crashed_run(tmp_path_factory: pytest.TempPathFactory, stream_worker_config):
    root: Path = tmp_path_factory.mktemp("recovery")
    # A broker of its own: this test owns the default topic names from the first record on.
    broker = KafkaBroker(root / "kafka").start()
    config = stream_worker_config(root, broker.bootstrap_servers, devices=4, records_per_s=200)
    pipeline = LocalPipeline(config, None)
    pipeline.start()
    try:
        pipeline.start_generators()
        time.sleep(14)
        assert pipeline.worker is not None
        pipeline.worker.send_signal(signal.SIGKILL)  # no shutdown, no final commit, no flush
        pipeline.worker.wait()
        time.sleep(3)
        pipeline._start_worker()
        time.sleep(16)
        pipeline.stop_generators()
        drained = pipeline.drain(timeout=180)
        summary = pipeline.summarise(0, drained)
        yield pipeline, summary, drained
    finally:
        pipeline.stop()
        broker.stop()


def test_drains_after_the_crash(crashed_run):
    pipeline, _, drained = crashed_run
    if not drained:  # say what the restarted worker was doing
        log = Path(pipeline.worker_log).read_text(errors="replace").splitlines()[-40:]
        pytest.fail(f"{pipeline.drain_status}\nlast lines of {pipeline.worker_log}:\n" + "\n".join(log))


def test_every_interval_is_in_exactly_one_window_once(crashed_run):
    pipeline, summary, _ = crashed_run
    wh = pipeline.warehouse
    stamps = wh.query(
        "SELECT device, if_index, groupArray(toUnixTimestamp64Milli(ts)) FROM "
        "(SELECT DISTINCT device, if_index, ts FROM telemetry_samples ORDER BY ts) GROUP BY device, if_index"
    ).rows
    assert sum(len(r[2]) for r in stamps) == summary.generated.samples
    expected: dict[tuple[str, int, int], int] = Counter()
    for device, if_index, ts_list in stamps:
        for ts in sorted(ts_list)[1:]:  # the first sample of an interface opens no interval
            expected[(device, int(if_index), window_start(int(ts)))] += 1
    rows = wh.query(
        "SELECT device, if_index, toUnixTimestamp64Milli(window_start), samples, in_bps_avg, out_bps_avg "
        "FROM interface_rates_1m FINAL"
    ).rows
    got = {(r[0], int(r[1]), int(r[2])): int(r[3]) for r in rows}
    assert got == dict(expected)
    for r in rows:
        assert r[4] == pytest.approx(100_000_000, rel=0.01)
        assert r[5] == pytest.approx(40_000_000, rel=0.01)


def test_no_sample_was_dead_lettered(crashed_run):
    pipeline, _, _ = crashed_run
    rows = pipeline.warehouse.query("SELECT count() FROM dead_letters FINAL WHERE topic = 'telemetry.samples'").rows
    assert rows[0][0] == 0


def test_every_usage_record_rated_once(crashed_run):
    pipeline, summary, _ = crashed_run
    assert summary.usage_rated == summary.generated.usage
    rows = pipeline.warehouse.query("SELECT count(), uniqExact(id) FROM rated_usage FINAL").rows
    assert rows[0][0] == rows[0][1] == summary.generated.usage
    by_revision = defaultdict(int)
    for (rev,) in pipeline.warehouse.query("SELECT revision FROM interface_rates_1m").rows:
        by_revision[int(rev)] += 1
    assert by_revision  # windows were written (some more than once: replays and idle flushes)
