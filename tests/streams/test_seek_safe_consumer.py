"""The stream worker's consumer drops what it fetched before a seek (streams.consumer).

faust's own fetch loop is replaced here by a batch the test controls (the thing under test is what
our consumer lets through, what it seeks back to and which acks it forgets); the whole consumer runs
against the real broker in tests/integration/test_recovery.py, which failed about once in five runs
without it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import faust
import pytest
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message

from streams.consumer import SCHEME, SeekSafeConsumer

INPUT = "usage.records"
OTHER = "telemetry.samples"


def message(topic: str, partition: int, offset: int) -> Message:
    return Message(topic, partition, offset, 0.0, 0, None, b"k", b"v", None, tp=TP(topic, partition))


@pytest.fixture
def consumer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SeekSafeConsumer:
    # Never connected: the fetches below are the test's. The worker's input topics are the acked ones
    # (faust registers them when its agents subscribe, which needs a running worker).
    app = faust.App("seek-safe-test", broker=f"{SCHEME}://127.0.0.1:1", datadir=str(tmp_path), web_enabled=False)
    made = app.consumer
    assert isinstance(made, SeekSafeConsumer)
    monkeypatch.setattr(app.topics, "acks_enabled_for", lambda topic: topic in (INPUT, OTHER))
    sought: list[tuple[TP, int]] = []

    async def record_seek(partition: TP, offset: int) -> None:
        sought.append((partition, offset))

    monkeypatch.setattr(made, "_seek", record_seek)
    monkeypatch.setattr(made, "assignment", lambda: {TP(INPUT, 0), TP(INPUT, 1), TP(OTHER, 0)})
    made.test_sought = sought  # type: ignore[attr-defined]
    return made


def fetch_returning(
    monkeypatch: pytest.MonkeyPatch, batch: list[Message], during: Callable[[int], Any] | None = None
) -> None:
    """faust's fetch yields ``batch``; ``during(i)`` runs before the i-th message is handed on."""

    async def getmany(self: Any, timeout: float) -> AsyncIterator[tuple[TP, Message]]:
        for index, msg in enumerate(batch):
            if during is not None:
                await during(index)
            yield msg.tp, msg

    monkeypatch.setattr(faust_aiokafka.Consumer, "getmany", getmany)


async def drain(consumer: SeekSafeConsumer) -> list[tuple[str, int, int]]:
    return [(tp.topic, tp.partition, msg.offset) async for tp, msg in consumer.getmany(timeout=0.1)]


def test_messages_fetched_before_a_seek_are_dropped_and_read_again(consumer, monkeypatch) -> None:
    batch = [message(INPUT, 0, 50), message(INPUT, 1, 7), message(INPUT, 0, 51), message(INPUT, 1, 8)]

    async def seek_partition_0_after_the_second(index: int) -> None:
        if index == 2:  # a recovery seeks partition 0 back to its committed offset 40 mid-batch
            consumer._sought_to(TP(INPUT, 0), 40)

    fetch_returning(monkeypatch, batch, seek_partition_0_after_the_second)
    got = asyncio.run(drain(consumer))
    # Partition 0's offset 51 came from the fetch begun before the seek: not handed on; partition 1
    # was not sought and goes on.
    assert got == [(INPUT, 0, 50), (INPUT, 1, 7), (INPUT, 1, 8)]
    assert consumer.test_sought == [(TP(INPUT, 0), 40)]  # read again from the seek's offset
    assert consumer.stale_discarded == 1

    # The next fetch began after the seek: everything is handed on, nothing sought again.
    fetch_returning(monkeypatch, [message(INPUT, 0, 40), message(INPUT, 0, 41)])
    assert asyncio.run(drain(consumer)) == [(INPUT, 0, 40), (INPUT, 0, 41)]
    assert consumer.test_sought == [(TP(INPUT, 0), 40)]


def test_a_seek_forgets_the_acks_at_or_past_its_offset(consumer) -> None:
    tp = TP(INPUT, 0)
    consumer._acked[tp].extend([38, 39, 41, 42])
    consumer._acked_index[tp].update([38, 39, 41, 42])
    consumer._gap[tp].addi(43, 60)
    consumer._sought_to(tp, 40)
    assert consumer._acked[tp] == [38, 39]
    assert consumer._acked_index[tp] == {38, 39}
    assert not consumer._gap[tp]  # the gap began past the offset: those offsets are read again


def test_no_committed_offset_or_a_changelog_is_not_filtered(consumer, monkeypatch) -> None:
    batch = [message(INPUT, 0, 0), message(INPUT, 0, 1), message("ossbss-streams-rating-state-changelog", 0, 5)]

    async def seek_mid_batch(index: int) -> None:
        if index == 1:
            consumer._sought_to(TP(INPUT, 0), -1)  # nothing committed yet: nowhere to go back to
            consumer._sought_to(TP("ossbss-streams-rating-state-changelog", 0), 0)  # recovery's own

    fetch_returning(monkeypatch, batch, seek_mid_batch)
    assert [offset for _, _, offset in asyncio.run(drain(consumer))] == [0, 1, 5]
    assert consumer.test_sought == []


def test_a_seek_while_a_message_is_handed_on_keeps_its_read_offset(consumer, monkeypatch) -> None:
    tp = TP(INPUT, 0)
    fetch_returning(monkeypatch, [message(INPUT, 0, 60), message(INPUT, 0, 61)])

    async def hand_on() -> list[int]:
        got = []
        async for partition, msg in consumer.getmany(timeout=0.1):
            got.append(msg.offset)
            if msg.offset == 60:
                # faust's hand-over of offset 60 waited; the partition was sought to 40 meanwhile, and
                # faust then records 60 as its read offset (as its fetch loop does after each message).
                consumer._sought_to(tp, 40)
                consumer._read_offset[partition] = msg.offset
        return got

    # 61 was fetched before the seek: dropped; 60's read offset gave way to the seek's.
    assert asyncio.run(hand_on()) == [60]
    assert consumer._read_offset[tp] == 40
    assert consumer.test_sought == [(tp, 40)]
