"""Allowance state: how much of each period counter an account has used, and which records did it.

Keyed by ``(account, period)``; inside, one counter per allowance (``used`` base units, saturated
just past the point where the price stops depending on it) and, per counter, the records applied
and the position each started at. A record id seen again is priced from its stored position and consumes
nothing, so a replay after a crash gives the same amounts (idempotent on record id).

How a caller persists it (the stream agent, for instance)::

    state = RatingState(loader=lambda account, period: table.get(state_key(account, period)))
    result = rate_usage(batch, catalog, rated_at_ms=now, state=state)
    for key, blob in state.take_changes().items():   # only the periods this batch touched
        table[key] = blob                             # e.g. a faust Table (changelog-backed)
    # then produce the rated records and commit offsets

Writing the state before the rated records are produced is safe: a replay of the batch finds
its ids and prices them identically. ``drop_periods_before("2024-01")`` trims old periods.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import msgspec


class PeriodCounters(msgspec.Struct, kw_only=True, dict=True):
    """Counters of one (account, period).

    ``used[counter]`` is the units used (saturated); ``applied_ids[counter]`` and
    ``applied_at[counter]`` list, in event order, the records applied below saturation and the
    position each one started at. A lookup index is built from them on first use and kept in step.
    """

    used: dict[str, int] = {}
    applied_ids: dict[str, list[str]] = {}
    applied_at: dict[str, list[int]] = {}

    def index(self, counter: str) -> dict[str, int]:
        """Record id -> position for ``counter``, built from the lists on first use and kept in step."""
        indexes: dict[str, dict[str, int]] | None = self.__dict__.get("_indexes")
        if indexes is None:
            indexes = self.__dict__["_indexes"] = {}
        found = indexes.get(counter)
        if found is None:
            ids = self.applied_ids.get(counter, ())
            found = indexes[counter] = dict(zip(ids, self.applied_at.get(counter, ()), strict=True))
        return found

    def position_of(self, counter: str, record_id: str) -> int | None:
        """The position ``record_id`` was applied at, if this counter applied it."""
        if counter not in self.applied_ids:
            return None
        return self.index(counter).get(record_id)

    def has_applied(self, counter: str) -> bool:
        return bool(self.applied_ids.get(counter))

    def remember(self, counter: str, record_ids: list[str], positions: list[int]) -> None:
        """Record that these (distinct, new) ids were applied at these positions, in event order."""
        ids = self.applied_ids.get(counter)
        if ids is None:
            self.applied_ids[counter] = list(record_ids)
            self.applied_at[counter] = list(positions)
            return
        ids.extend(record_ids)
        self.applied_at[counter].extend(positions)
        index = self.__dict__.get("_indexes", {}).get(counter)
        if index is not None:
            index.update(zip(record_ids, positions, strict=True))


Loader = Callable[[str, str], "bytes | PeriodCounters | None"]
_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(PeriodCounters)


def state_key(account: str, period: str) -> str:
    """A flat string key for external stores: ``"2024-05:ACC-1"`` (a period never holds ':')."""
    return f"{period}:{account}"


def split_state_key(key: str) -> tuple[str, str]:
    period, _, account = key.partition(":")
    return account, period


class RatingState:
    """In-memory allowance state with optional lazy loading and change tracking."""

    def __init__(self, loader: Loader | None = None) -> None:
        self._periods: dict[tuple[str, str], PeriodCounters] = {}
        self._changed: set[tuple[str, str]] = set()
        self._loader = loader

    def period(self, account: str, period: str) -> PeriodCounters:
        """The counters of ``(account, period)``, loaded or created on first use."""
        key = (account, period)
        counters = self._periods.get(key)
        if counters is None:
            counters = self._load(account, period) or PeriodCounters()
            self._periods[key] = counters
        return counters

    def periods(self, keys: list[tuple[str, str]]) -> list[PeriodCounters]:
        """:meth:`period` for many keys at once."""
        found = self.lookup(keys)
        missing = [index for index, counters in enumerate(found) if counters is None]
        if missing:
            made = [PeriodCounters() for _ in missing]
            self.adopt([keys[index] for index in missing], made)
            for index, counters in zip(missing, made, strict=True):
                found[index] = counters
        return found  # type: ignore[return-value]

    def lookup(self, keys: list[tuple[str, str]]) -> list[PeriodCounters | None]:
        """The counters of many keys, from memory or the loader; None where neither has them (the
        kernel's bulk path: it builds those whole, then hands them over with :meth:`adopt`)."""
        found = list(map(self._periods.get, keys))
        if self._loader is not None and None in found:
            for index, counters in enumerate(found):
                if counters is None:
                    found[index] = self.peek(*keys[index])
        return found

    def adopt(self, keys: list[tuple[str, str]], counters: list[PeriodCounters]) -> None:
        """Take ``counters`` as the state of ``keys`` (neither in memory nor loadable, see :meth:`lookup`)."""
        self._periods.update(zip(keys, counters, strict=True))

    def peek(self, account: str, period: str) -> PeriodCounters | None:
        """The counters if known (loading them if a loader is set), without creating them."""
        key = (account, period)
        counters = self._periods.get(key)
        if counters is None:
            counters = self._load(account, period)
            if counters is not None:
                self._periods[key] = counters
        return counters

    def _load(self, account: str, period: str) -> PeriodCounters | None:
        if self._loader is None:
            return None
        loaded = self._loader(account, period)
        if loaded is None or isinstance(loaded, PeriodCounters):
            return loaded
        return _DECODER.decode(loaded)

    def mark_changed(self, account: str, period: str) -> None:
        self._changed.add((account, period))

    def mark_changed_many(self, keys: list[tuple[str, str]]) -> None:
        self._changed.update(keys)

    def used(self, account: str, period: str, counter: str) -> int:
        counters = self.peek(account, period)
        return 0 if counters is None else counters.used.get(counter, 0)

    def take_changes(self) -> dict[str, bytes]:
        """Encoded counters of every period changed since the last call, by :func:`state_key`."""
        changes = {
            state_key(account, period): _ENCODER.encode(self._periods[(account, period)])
            for account, period in sorted(self._changed)
        }
        self._changed.clear()
        return changes

    def items(self) -> Iterator[tuple[tuple[str, str], PeriodCounters]]:
        return iter(self._periods.items())

    def drop_periods_before(self, period: str) -> int:
        """Forget periods that sort before ``period`` (``"2024-05"``); returns how many were dropped."""
        old = [key for key in self._periods if key[1] < period]
        for key in old:
            del self._periods[key]
            self._changed.discard(key)
        return len(old)

    def to_bytes(self) -> bytes:
        """The whole state, for a snapshot file."""
        return _ENCODER.encode({state_key(*key): value for key, value in self._periods.items()})

    @classmethod
    def from_bytes(cls, blob: bytes, loader: Loader | None = None) -> RatingState:
        state = cls(loader)
        decoded = msgspec.msgpack.decode(blob, type=dict[str, PeriodCounters])
        state._periods = {split_state_key(key): value for key, value in decoded.items()}
        return state

    def copy(self) -> RatingState:
        return RatingState.from_bytes(self.to_bytes(), self._loader)

    def snapshot(self) -> dict[str, PeriodCounters]:
        """A comparable plain copy (tests compare a reference run's state with a kernel run's)."""
        return msgspec.msgpack.decode(self.to_bytes(), type=dict[str, PeriodCounters])


__all__ = ["Loader", "PeriodCounters", "RatingState", "split_state_key", "state_key"]
