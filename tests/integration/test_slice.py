"""The whole slice on the real broker and the real engine: simulator and usage generator -> Kafka ->
faust-streaming worker -> Kafka -> sink -> ClickHouse (chDB), checked with exact counts and amounts."""

from __future__ import annotations

import dataclasses
import time
from decimal import Decimal

import pytest
from confluent_kafka import Producer

from models.records import UsageRecord
from ossbss.config import Config
from ossbss.localstack.kafka import free_port
from ossbss.pipeline import LocalPipeline
from rating import load_catalog, rate_usage

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def finished_run(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory, request):
    var = tmp_path_factory.mktemp("slice")
    unique = var.name.replace("_", "-")
    base = Config()
    config = dataclasses.replace(
        base,
        var_dir=str(var),
        kafka=dataclasses.replace(base.kafka, bootstrap_servers=kafka_bootstrap, partitions=4),
        warehouse=dataclasses.replace(base.warehouse, url=f"chdb://{var}/clickhouse"),
        streams=dataclasses.replace(base.streams, app_id=f"slice-{unique}", idle_close_s=2.0, allowed_lateness_s=5.0),
        sink=dataclasses.replace(
            base.sink, group_id=f"sink-{unique}", flush_interval_s=0.5, metrics_port=free_port(), metrics_interval_s=2.0
        ),
        simulator=dataclasses.replace(
            base.simulator, devices=3, interfaces=4, interval_s=2.0, in_bps=100_000_000, out_bps=40_000_000
        ),
        usage=dataclasses.replace(base.usage, records_per_s=300, accounts=25, bad_every=20),
    )
    # Topics are shared by the session's broker: name them uniquely for this test.
    pipeline = LocalPipeline(config, None)
    pipeline.start()
    try:
        pipeline.start_generators()
        time.sleep(12)
        pipeline.corpus = produce_bad_corpus(kafka_bootstrap, unique)  # type: ignore[attr-defined]
        time.sleep(13)
        pipeline.stop_generators()
        drained = pipeline.drain(timeout=120)
        summary = pipeline.summarise(0, drained)
        yield pipeline, summary, drained
    finally:
        pipeline.stop()


def produce_bad_corpus(bootstrap: str, marker: str) -> list[tuple[str, int, int, str]]:
    """Send one of each kind of bad input; returns (topic, partition, offset, expected reason) per record."""
    now = int(time.time() * 1000)
    sample = (
        '{{"id":"corpus-{m}-{n}","device":"sim-router-0000","if_index":99,"ts_ms":{ts},'
        '"in_octets":{oct},"source":"corpus"}}'
    )
    usage = (
        '{{"id":"corpus-{m}-{n}","account":"ACC-00001","service":"data","start_ms":{start},'
        '"end_ms":{end},"bytes_up":{up},"bytes_down":1}}'
    )
    cases = [
        ("telemetry.samples", b"not json at all", "malformed JSON"),
        ("telemetry.samples", b"\x00\xff\xfe binary garbage \x81", "malformed JSON"),
        ("telemetry.samples", b'{"id":"corpus-x","if_index":1,"ts_ms":1}', "missing required field `device`"),
        ("telemetry.samples", sample.format(m=marker, n=1, ts=now, oct=-5).encode(), "`$.in_octets`"),
        ("telemetry.samples", sample.format(m=marker, n=2, ts=now, oct="NaN").encode(), "malformed JSON"),
        (
            "telemetry.samples",
            sample.format(m=marker, n=3, ts=now, oct=2**70).encode(),
            "exceeds a 64-bit counter",
        ),
        ("telemetry.samples", sample.format(m=marker, n=4, ts=now, oct='"12"').encode(), "Expected `int"),
        ("telemetry.samples", b'{"id":"' + b"x" * 300_000 + b'"}', "oversized message"),
        (
            "telemetry.samples",
            sample.format(m=marker, n=5, ts=now - 3_600_000, oct=5).encode(),
            "late sample",
        ),
        (
            "telemetry.samples",
            sample.format(m=marker, n=6, ts=now + 86_400_000, oct=5).encode(),
            "timestamp in the future",
        ),
        (
            "usage.records",
            usage.format(m=marker, n=7, start=978_307_200_000, end=978_307_260_000, up=1).encode(),
            "older than the accepted",
        ),
        (
            "usage.records",
            usage.format(m=marker, n=8, start=now + 86_400_000, end=now + 86_460_000, up=1).encode(),
            "in the future",
        ),
        (
            "usage.records",
            usage.format(m=marker, n=9, start=now, end=now, up='"lots"').encode(),
            "Expected `int`",
        ),
        (
            "usage.records",
            usage.format(m=marker, n=10, start=now, end=now, up=10**16).encode(),
            "`$.bytes_up`",
        ),
        ("usage.records", b"", "malformed JSON"),
    ]
    delivered: list[tuple[str, int, int, str]] = []
    producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 2_000_000})
    for topic, value, reason in cases:

        def record(err, msg, reason=reason):
            assert err is None, err
            delivered.append((msg.topic(), msg.partition(), msg.offset(), reason))

        producer.produce(topic, value, b"sim-router-0000", on_delivery=record)
    # A valid usage record sent twice (a duplicate id): rated once.
    dup = usage.format(m=marker, n="dup", start=now - 1000, end=now, up=10**9).encode()
    producer.produce("usage.records", dup, b"ACC-00001")
    producer.produce("usage.records", dup, b"ACC-00001")
    assert producer.flush(30) == 0
    assert len(delivered) == len(cases)
    return delivered


def test_pipeline_drains(finished_run):
    pipeline, summary, drained = finished_run
    assert drained, pipeline.drain_status
    assert summary.generated.usage > 5000 and summary.generated.samples > 100


def test_every_usage_record_is_rated_or_dead_lettered_exactly_once(finished_run):
    pipeline, summary, _ = finished_run
    g = summary.generated
    assert summary.usage_dead_letters == g.usage_bad
    assert summary.usage_rated == g.usage - g.usage_bad
    assert summary.usage_accounted
    # No duplicates even without FINAL: each id landed once.
    rows = pipeline.warehouse.query(
        f"SELECT count(), uniqExact(id) FROM rated_usage WHERE startsWith(id, '{pipeline.run_id}')"
    ).rows
    assert rows[0][0] == rows[0][1] == summary.usage_rated


def test_amounts_equal_the_reference_to_the_last_decimal(finished_run):
    pipeline, _, _ = finished_run
    wh = pipeline.warehouse
    # Rebuild the usage records from what the warehouse stored and rate them again, independently.
    usage_rows = wh.query(
        "SELECT id, account, service, toUnixTimestamp64Milli(start), toUnixTimestamp64Milli(end), bytes_up, "
        f"bytes_down FROM usage_records FINAL WHERE startsWith(id, '{pipeline.run_id}')"
    ).rows
    records = [
        UsageRecord(
            id=r[0],
            account=r[1],
            service=r[2],
            start_ms=int(r[3]),
            end_ms=int(r[4]),
            bytes_up=int(r[5]),
            bytes_down=int(r[6]),
        )
        for r in usage_rows
    ]
    expected = rate_usage(records, load_catalog())
    expected_total = sum((r.amount for r in expected.rated), Decimal(0))
    stored = wh.query(
        f"SELECT toString(sum(amount)), count() FROM rated_usage FINAL WHERE startsWith(id, '{pipeline.run_id}')"
    ).rows
    assert Decimal(stored[0][0]) == expected_total
    assert int(stored[0][1]) == len(expected.rated)
    # Unknown accounts are in usage_records (they are valid records) but were refused by rating.
    assert len(expected.failures) == sum(1 for r in records if r.account.startswith("UNKNOWN"))


def test_interface_rates_match_the_simulator_within_one_percent(finished_run):
    pipeline, _, _ = finished_run
    rows = pipeline.warehouse.query(
        "SELECT device, if_index, window_start, in_bps_avg, out_bps_avg, samples, in_pps_avg, oper_status "
        "FROM interface_rates_1m FINAL "
        "WHERE startsWith(device, 'sim-router-')"
    ).rows
    assert len(rows) >= 12  # 3 devices x 4 interfaces, at least one window each
    for device, if_index, _, in_bps, out_bps, samples, in_pps, oper_status in rows:
        assert samples >= 1
        # The simulator counts one unicast packet per 1000 octets.
        assert in_pps == pytest.approx(100_000_000 / 8 / 1000, rel=0.01), (device, if_index)
        assert oper_status == 1
        assert in_bps == pytest.approx(100_000_000, rel=0.01), (device, if_index)
        assert out_bps == pytest.approx(40_000_000, rel=0.01), (device, if_index)


def test_samples_land_once(finished_run):
    pipeline, summary, _ = finished_run
    rows = pipeline.warehouse.query("SELECT count(), uniqExact(id) FROM telemetry_samples WHERE source = 'sim'").rows
    assert rows[0][0] == rows[0][1] == summary.generated.samples


def test_dead_letters_carry_reasons(finished_run):
    pipeline, _, _ = finished_run
    rows = pipeline.warehouse.query(
        "SELECT stage, reason FROM dead_letters FINAL WHERE topic = 'usage.records' "
        f"AND position(payload, '{pipeline.run_id}') > 0"
    ).rows
    reasons = " | ".join(r[1] for r in rows)
    for expected in (
        "malformed JSON",
        "missing required field `account`",
        "`$.bytes_up`",
        "end_ms is before start_ms",
        "no active subscription for account",
    ):
        assert expected in reasons
    assert {r[0] for r in rows} == {"rating"}


def test_sql_verb_reads_the_same_numbers(finished_run, capsys):
    # While the pipeline owns the engine, `ossbss sql` is answered through its local endpoint.
    pipeline, summary, _ = finished_run
    from ossbss.cli import main

    url = pipeline.config.warehouse.url
    code = main(
        [
            "sql",
            "--warehouse",
            url,
            "--format",
            "csv",
            f"SELECT count() FROM rated_usage FINAL WHERE startsWith(id, '{pipeline.run_id}')",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == str(summary.usage_rated)


def test_each_bad_input_is_dead_lettered_with_its_reason(finished_run):
    pipeline, _, _ = finished_run
    for topic, partition, offset, reason in pipeline.corpus:
        rows = pipeline.warehouse.query(
            f"SELECT stage, reason FROM dead_letters FINAL WHERE topic = '{topic}' AND partition = {partition} "
            f"AND offset = {offset}"
        ).rows
        assert len(rows) == 1, (topic, offset, reason)
        assert reason in rows[0][1], (rows[0][1], reason)


def test_duplicate_usage_id_is_rated_once(finished_run):
    pipeline, _, _ = finished_run
    marker = pipeline.config.streams.app_id.removeprefix("slice-")
    rows = pipeline.warehouse.query(
        f"SELECT count(), toString(sum(amount)) FROM rated_usage FINAL WHERE id = 'corpus-{marker}-dup'"
    ).rows
    assert rows[0][0] == 1 and Decimal(rows[0][1]) == Decimal("0.500000")


def test_pipeline_metrics_reach_clickhouse_and_prometheus(finished_run):
    import urllib.request

    pipeline, _, _ = finished_run
    sampled = pipeline.metrics.sample()
    names = {m.metric for m in sampled}
    assert {"records_in", "records_out", "dead_letters", "batch_latency_ms", "consumer_lag"} <= names
    lag = [m for m in sampled if m.metric == "consumer_lag"]
    assert {m.labels["group"] for m in lag} == {pipeline.config.sink.group_id, pipeline.config.streams.app_id}
    assert all(m.value == 0 for m in lag)  # drained
    rows = pipeline.warehouse.query(
        "SELECT metric, sum(value) FROM pipeline_metrics WHERE metric = 'records_out' GROUP BY metric"
    ).rows
    assert rows and rows[0][1] > 0  # the periodic samples during the run counted the rows written
    with urllib.request.urlopen(f"http://127.0.0.1:{pipeline.metrics.port}/metrics", timeout=5) as response:
        text = response.read().decode()
    assert "# TYPE ossbss_consumer_lag gauge" in text and 'topic="telemetry.samples"' in text


def test_gnmi_simulators_are_streamed_by_the_gnmi_collector(finished_run):
    # `ossbss up` also runs real gNMI targets (gRPC) and the real gNMI collector: their samples land
    # like SNMP ones and get rates and windows of their own.
    pipeline, summary, _ = finished_run
    assert summary.generated.gnmi_samples > 0
    rows = pipeline.warehouse.query(
        "SELECT count(), uniqExact(device) FROM telemetry_samples "
        "WHERE source = 'gnmi' AND startsWith(device, 'gnmi-sim-')"
    ).rows
    # The collector's records are samples, plus the link changes `up` injects (fault events).
    faults = pipeline.warehouse.query(
        "SELECT count() FROM fault_events FINAL WHERE source = 'gnmi' AND startsWith(device, 'gnmi-sim-')"
    ).rows
    assert rows[0][0] + faults[0][0] == summary.generated.gnmi_samples and rows[0][1] == 2
    # `up` takes one link down at a time: a window inside such a fault has no traffic (at most two windows
    # per fault, when it crosses a minute boundary); every other window carries the simulated traffic.
    rates = pipeline.warehouse.query(
        "SELECT count(), countIf(in_bps_avg = 0) FROM interface_rates_1m FINAL WHERE startsWith(device, 'gnmi-sim-')"
    ).rows
    assert rates[0][0] >= 2 * 4 and rates[0][1] <= 2 * summary.generated.link_faults
