"""faust's Kafka transport with a consumer that never hands on messages fetched before a seek.

faust's consumer reads in a loop: it fetches a batch (``getmany``) and then feeds the batch's messages
one by one to the streams, awaiting each. A seek can happen in between: when a rebalance's recovery
completes, faust seeks every partition back to its committed offset (``perform_seek``) and sets its
"read offset" there. The rest of a batch fetched *before* that seek still arrives afterwards, and
faust's bookkeeping takes those messages at face value:

* the first of them is ahead of the committed offset, so faust records the offsets in between as a
  "gap" (meant for offsets that do not exist, such as transaction markers) and treats them as acked:
  its next commit moves past records no stream has processed since the restart (records lost);
* it then moves the read offset up to that message, so the messages fetched again from the committed
  offset are below it and are dropped without being acked: the committed offset never moves again
  and the stream stalls with a lag that never drains. The same happens when the seek comes while faust
  is still handing on a message fetched before it: faust then sets the read offset to that message's
  offset, over the seek's.

The crash test (``tests/integration/test_recovery.py``: SIGKILL, restart, every record counted once)
saw both, about once in five runs, with the worker's own log showing the gap and the dropped
messages right after the seek. This consumer discards, before faust sees them, the messages of a
partition that come from a fetch begun before that partition's latest seek, and seeks the partition
back to the same offset so that they are fetched again, in order; it puts the seek's read offset back
when faust overwrote it with a message handed on across the seek. It also forgets the acks recorded
for a partition at or past the offset it is sought to: those messages are read again from there, and
an ack left over from before (faust acks the messages it skips during a rebalance) would otherwise
let a commit pass messages that are yet to be processed.

Register it by using ``ossbss://host:port`` as the faust broker URL (``streams.app`` does).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

from faust.transport import drivers
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message

log = logging.getLogger("ossbss.streams.consumer")

SCHEME = "ossbss"


class SeekSafeConsumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer, minus the stale messages of a batch that straddles a seek."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._seeks = 0  # counts seeks; a fetch remembers the count when it starts
        self._sought: dict[TP, tuple[int, int]] = {}  # partition -> (count at its latest seek, offset)
        self.stale_discarded = 0

    def _sought_to(self, tp: TP, offset: int | None) -> None:
        if not self.app.topics.acks_enabled_for(tp.topic):
            return  # a table's changelog: faust's recovery keeps its own offsets
        self._seeks += 1
        if offset is None or offset < 0:
            # No committed offset: the fetcher starts where auto.offset.reset says, there is no
            # offset to return to, and nothing was read before.
            self._sought.pop(tp, None)
            return
        self._sought[tp] = (self._seeks, offset)
        # Acks at or past the offset are of messages that will be read again from there.
        acked = self._acked.get(tp)
        if acked:
            kept = [o for o in acked if o < offset]
            dropped = set(acked).difference(kept)
            acked[:] = kept
            self._acked_index[tp].difference_update(dropped)
        gap = self._gap.get(tp)
        if gap:
            gap.chop(offset, max(offset + 1, gap.end()))

    async def seek_to_committed(self) -> Mapping[TP, int]:
        offsets = await super().seek_to_committed()
        for tp, offset in offsets.items():
            self._sought_to(tp, offset)
        return offsets

    async def seek(self, partition: TP, offset: int) -> None:
        await super().seek(partition, offset)
        self._sought_to(partition, offset)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        for tp in revoked:
            self._sought.pop(tp, None)
        await super().on_partitions_revoked(revoked)

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:
        began = self._seeks
        reseek: dict[TP, int] = {}
        async for tp, message in super().getmany(timeout):
            sought = self._sought.get(tp)
            if sought is not None and sought[0] > began:
                # Fetched before the partition's latest seek: faust would take it as a gap or a new
                # read offset (see the module docstring). Drop it; it is fetched again after the seek.
                reseek[tp] = sought[1]
                self.stale_discarded += 1
                continue
            seeks = self._seeks
            yield tp, message
            # faust has handed the message on and set its read offset to the message's offset. If the
            # partition was sought meanwhile (faust's hand-over waits while a stream's buffer is full),
            # that overwrote the seek's read offset: put it back, or faust drops as already read the
            # messages fetched again from the seek's offset, and its commits stop there.
            sought = self._sought.get(tp)
            if sought is not None and sought[0] > seeks:
                self._read_offset[tp] = sought[1] or None
        for tp, offset in reseek.items():
            # The fetcher may have moved past the offset with the batch just discarded: back to it.
            if self._sought.get(tp, (0, -1))[1] == offset and tp in self.assignment():
                await self._seek(tp, offset)
                log.info("streams: discarded messages of %s fetched before its seek; reading again from %d", tp, offset)


class Transport(faust_aiokafka.Transport):
    """The aiokafka transport with :class:`SeekSafeConsumer`."""

    Consumer = SeekSafeConsumer


drivers.TRANSPORTS.aliases[SCHEME] = f"{__name__}:Transport"
