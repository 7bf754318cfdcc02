"""How the sink gathers a batch: a message count, a byte budget or a time limit, whichever comes first."""

from __future__ import annotations

import time
from typing import Any

import pytest
from confluent_kafka import Message

from ossbss.config import ConfigError, SinkConfig
from warehouse.sink import DEFAULT_ROUTES, WarehouseSink

PAYLOAD = b"[" + b",".join([b'{"id":"x"}'] * 100) + b"]"  # a batched message's worth of bytes


class Backlog:
    """Stands in for the consumer over a topic with a large backlog: every call returns what it asks for."""

    def __init__(self) -> None:
        self.offset = 0
        self.calls = 0

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Message]:
        self.calls += 1
        got = [
            Message(topic="telemetry.samples", value=PAYLOAD, partition=0, offset=self.offset + i)
            for i in range(min(num_messages, 50))
        ]
        self.offset += len(got)
        return got


def gather(config: SinkConfig) -> tuple[list[Any], float]:
    # Nothing listens on port 1: the consumer is replaced before any use, and flush only records.
    sink = WarehouseSink({"bootstrap.servers": "127.0.0.1:1"}, None, config, DEFAULT_ROUTES)  # type: ignore[arg-type]
    sink.consumer = Backlog()  # type: ignore[assignment]
    flushed: list[Any] = []
    sink.flush = flushed.extend  # type: ignore[method-assign]
    started = time.monotonic()
    sink.poll_batch()
    return flushed, time.monotonic() - started


def test_a_byte_budget_ends_the_gathering_long_before_the_interval() -> None:
    budget = 20 * len(PAYLOAD)
    flushed, took = gather(SinkConfig(batch_size=50_000, batch_bytes=budget, flush_interval_s=30.0, metrics_port=0))
    assert budget <= sum(len(m) for m in flushed) < budget + 50 * len(PAYLOAD)  # one consume call past it at most
    assert took < 10.0  # not the 30 s interval


def test_the_message_count_still_bounds_a_batch() -> None:
    flushed, took = gather(SinkConfig(batch_size=120, batch_bytes=2**40, flush_interval_s=30.0, metrics_port=0))
    assert len(flushed) == 120
    assert took < 10.0


def test_a_non_positive_byte_budget_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"sink\.batch_bytes"):
        SinkConfig(batch_bytes=0).validate()
