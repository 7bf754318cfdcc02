"""`ossbss rate --rerate --period` against the real warehouse (chDB) and the real broker."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from confluent_kafka import Consumer

from models.codec import codec_for
from models.records import RatedUsage, UsageRecord
from ossbss.cli import main
from rating import load_catalog, rate_usage
from warehouse import open_warehouse
from warehouse.migrate import apply_migrations
from warehouse.rows import columns_for

pytestmark = pytest.mark.integration

START = int(dt.datetime(2026, 11, 5, tzinfo=dt.UTC).timestamp() * 1000)


def test_rerate_a_month_from_the_warehouse(kafka_bootstrap: str, tmp_path: Path, capsys) -> None:
    tag = uuid.uuid4().hex[:8]
    url = f"chdb://{tmp_path}/clickhouse"
    usage = [
        UsageRecord(
            id=f"{tag}-{i}",
            account=f"ACC-{i % 3:05d}",
            service="data",
            start_ms=START + i,
            end_ms=START + i,
            bytes_up=10**9,
            bytes_down=i * 10**8,
        )
        for i in range(12)
    ]
    rated = rate_usage(usage, load_catalog(), rated_at_ms=START).rated
    wh = open_warehouse(url)
    apply_migrations(wh)
    wh.insert_columns("usage_records", columns_for("usage_records", usage))
    wh.insert_columns("rated_usage", columns_for("rated_usage", rated))
    wh.close()  # the CLI opens the embedded engine itself (one owner per directory)
    new_catalog = tmp_path / "new.yaml"
    doc = yaml.safe_load((Path(__file__).parents[2] / "rating" / "catalog.yaml").read_text())
    doc["plans"][0]["charges"][0]["price"] = "1.00"  # the price doubles
    new_catalog.write_text(yaml.safe_dump(doc))
    config = tmp_path / "ossbss.yaml"
    config.write_text(yaml.safe_dump({"kafka": {"bootstrap_servers": kafka_bootstrap}, "warehouse": {"url": url}}))

    args = ["-c", str(config), "rate", "--rerate", "--period", "2026-11", "--catalog", str(new_catalog)]
    assert main([*args, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "12 rated of 12 usage records" in out and "changed: 12" in out and "dry run: nothing written" in out
    before = sum((r.amount for r in rated), Decimal(0))
    assert "accounts with differences: 3" in out

    assert main(args) == 0
    assert "published 12 rerated rows to usage.rated" in capsys.readouterr().out
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"t-{tag}", "auto.offset.reset": "earliest"})
    consumer.subscribe(["usage.rated"])
    codec = codec_for(RatedUsage)
    found: dict[str, RatedUsage] = {}
    for _ in range(30):
        for msg in consumer.consume(1000, timeout=1.0):
            if msg.error() is None and tag.encode() in (msg.value() or b""):
                found.update((r.id, r) for r in codec.decode_message(msg.value())[0])
        if len(found) == 12:
            break
    consumer.close()
    assert len(found) == 12
    assert all(r.rating_version == 2 for r in found.values())
    assert sum((r.amount for r in found.values()), Decimal(0)) == before * 2
