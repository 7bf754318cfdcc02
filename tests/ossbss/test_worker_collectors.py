"""`ossbss worker collectors` runs the configured collectors against the real broker until SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid

import pytest
import yaml
from confluent_kafka import Consumer, KafkaException, TopicPartition

from models.codec import codec_for
from models.records import UsageRecord
from ossbss.config import Config
from ossbss.kafkautil import ensure_topics

pytestmark = pytest.mark.integration


def _end_offset(consumer: Consumer, topic: str, partition: int) -> int:
    """The partition's end offset, once it has a leader (a topic just created may not have one yet)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return int(consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=5)[1])
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_worker_collectors_ingests_a_dropped_usage_file(kafka_bootstrap, tmp_path):
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    config = {
        "var_dir": str(tmp_path / "var"),
        "kafka": {"bootstrap_servers": kafka_bootstrap},
        "collectors": [
            {
                "type": "usage_files",
                "name": "cdr-files",
                "directory": str(incoming),
                "patterns": ["*.csv"],
                "poll_interval_s": 0.5,
                "min_age_s": 0,
                "done_dir": str(tmp_path / "done"),
                "ledger": str(tmp_path / "ledger.jsonl"),
            }
        ],
    }
    config_file = tmp_path / "ossbss.yaml"
    config_file.write_text(yaml.safe_dump(config))
    tag = uuid.uuid4().hex[:8]
    # Read only what arrives from now on: the session's broker may already hold millions of usage
    # records from other tests, which a consumer from the earliest offset would first have to scan
    # (this test failed so, now and then, only after other tests had run).
    ensure_topics({"bootstrap.servers": kafka_bootstrap}, Config().kafka.partitions)  # as the worker would
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"t-{tag}", "enable.auto.commit": False})
    partitions = consumer.list_topics("usage.records", timeout=10).topics["usage.records"].partitions
    consumer.assign([TopicPartition("usage.records", p, _end_offset(consumer, "usage.records", p)) for p in partitions])
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    rows = [f"{tag}-{i},ACC-00001,data,{now},{now},{i * 1000},{i * 2000},,," for i in range(1, 6)]
    worker = subprocess.Popen(
        [sys.executable, "-m", "ossbss.cli", "-c", str(config_file), "worker", "collectors"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        (incoming / "cdr.csv.part").write_text(
            "id,account,service,start,end,bytes_up,bytes_down,duration_s,destination,event_type\n"
            + "\n".join(rows)
            + "\nbroken,line\n"
        )
        (incoming / "cdr.csv.part").rename(incoming / "cdr.csv")
        found: dict[str, UsageRecord] = {}
        deadline = time.monotonic() + 60
        codec = codec_for(UsageRecord)
        while len(found) < 5 and time.monotonic() < deadline:
            for msg in consumer.consume(500, timeout=1.0):
                if msg.error() is None and tag.encode() in (msg.value() or b""):
                    records, _ = codec.decode_message(msg.value())
                    found.update((r.id, r) for r in records if r.id.startswith(tag))
        consumer.close()
    finally:
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=30)
    # (the worker's own output says what it did, should the records not have arrived)
    assert sorted(found) == sorted(f"{tag}-{i}" for i in range(1, 6)), output
    assert found[f"{tag}-3"].bytes_down == 6000
    assert worker.returncode == 0, output
    assert "running 1 collector(s)" in output


def test_worker_collectors_without_config_says_what_to_do(kafka_bootstrap, tmp_path):
    config_file = tmp_path / "ossbss.yaml"
    config_file.write_text(yaml.safe_dump({"kafka": {"bootstrap_servers": kafka_bootstrap}}))
    done = subprocess.run(
        [sys.executable, "-m", "ossbss.cli", "-c", str(config_file), "worker", "collectors"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "collectors/example.yaml" in done.stderr
