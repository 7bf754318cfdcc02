"""Shared setup of the integration tests that run their own broker and stop, restart or add stream workers."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from ossbss.config import Config

ConfigBuilder = Callable[..., Config]


@pytest.fixture(scope="module")
def stream_worker_config() -> ConfigBuilder:
    """A builder of the pipeline configuration for a stream-worker test on its own broker: SNMP simulators
    polled every second, usage without deliberate bad records, short idle close and batches, a lateness
    that covers a worker restart, and no assurance worker (these tests keep the cores for the stream
    worker)."""

    def build(
        root: Path, bootstrap: str, *, devices: int, records_per_s: float, partitions: int | None = None
    ) -> Config:
        base = Config()
        kafka = dataclasses.replace(base.kafka, bootstrap_servers=bootstrap)
        if partitions is not None:
            kafka = dataclasses.replace(kafka, partitions=partitions)
        return dataclasses.replace(
            base,
            extra={"assurance": {"enabled": False}},
            var_dir=str(root / "var"),
            kafka=kafka,
            warehouse=dataclasses.replace(base.warehouse, url=f"chdb://{root}/clickhouse"),
            streams=dataclasses.replace(base.streams, idle_close_s=2.0, allowed_lateness_s=30.0, batch_within_s=0.2),
            sink=dataclasses.replace(base.sink, flush_interval_s=0.5, metrics_port=0),
            simulator=dataclasses.replace(
                base.simulator, devices=devices, interfaces=3, interval_s=1.0, gnmi_devices=0
            ),
            usage=dataclasses.replace(base.usage, records_per_s=records_per_s, bad_every=0),
        )

    return build
