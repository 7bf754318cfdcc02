"""Helpers for the rating tests: one-plan catalogs, usage records, and rating with both engines.

Every helper that rates runs the per-record reference and the vectorised kernel and asserts they
agree (records, refusals and allowance state), so each table-driven case also tests the kernel.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from models.records import RatedUsage, UsageRecord
from rating import Catalog, RatingResult, RatingState, parse_catalog, rate_reference, rate_usage


def iso_ms(text: str) -> int:
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)


def one_plan(*charges: dict[str, Any], **plan: Any) -> Catalog:
    """A catalog with plan 'p' (v1 from 2024-01-01, UTC, 2 decimals, half-up) for accounts 'A-*'."""
    calendars = plan.pop("calendars", {"hol": ["2024-12-25"]})
    doc = {
        "currency": "EUR",
        "timezone": plan.pop("timezone", "UTC"),
        "calendars": calendars,
        "plans": [
            {
                "name": "p",
                "version": 1,
                "effective_from": "2024-01-01",
                "precision": plan.pop("precision", 2),
                "rounding": plan.pop("rounding", "ROUND_HALF_UP"),
                "charges": list(charges),
                **plan,
            }
        ],
        "subscriptions": [{"account_prefix": "A-", "plan": "p", "from": "2024-01-01"}],
    }
    return parse_catalog(doc)


def usage(
    id: str = "r1",
    *,
    start: str = "2024-06-03T10:00:00Z",
    seconds: int = 0,
    account: str = "A-1",
    service: str = "svc",
    event_type: str = "data",
    bytes_down: int = 0,
    bytes_up: int = 0,
    duration_s: int | str | None = "auto",
    destination: str = "",
) -> UsageRecord:
    start_ms = iso_ms(start)
    return UsageRecord(
        id=id,
        account=account,
        service=service,
        start_ms=start_ms,
        end_ms=start_ms + seconds * 1000,
        bytes_up=bytes_up,
        bytes_down=bytes_down,
        duration_s=(seconds if event_type == "voice" else None) if duration_s == "auto" else duration_s,  # type: ignore[arg-type]
        destination=destination,
        event_type=event_type,
    )


def rate_both(
    records: list[UsageRecord], catalog: Catalog, state: RatingState | None = None
) -> tuple[RatingResult, RatingState]:
    """Rate with the reference and the kernel from copies of ``state``; assert equal; return one."""
    reference_state = state.copy() if state is not None else RatingState()
    kernel_state = state.copy() if state is not None else RatingState()
    expected = rate_reference(records, catalog, state=reference_state)
    actual = rate_usage(records, catalog, state=kernel_state, engine="kernel")
    assert actual.failures == expected.failures
    assert len(actual.rated) == len(expected.rated)
    for want, got in zip(expected.rated, actual.rated, strict=True):
        assert got == want, f"kernel {got} != reference {want}"
        assert str(got.amount) == str(want.amount)
    assert kernel_state.snapshot() == reference_state.snapshot()
    return expected, reference_state


def rate_one(record: UsageRecord, catalog: Catalog) -> RatedUsage:
    result, _ = rate_both([record], catalog)
    assert not result.failures, result.failures
    return result.rated[0]


def amounts(records: list[UsageRecord], catalog: Catalog, state: RatingState | None = None) -> list[Decimal]:
    result, _ = rate_both(records, catalog, state)
    assert not result.failures, result.failures
    by_id = {row.id: row.amount for row in result.rated}
    return [by_id[record.id] for record in records]


__all__ = ["amounts", "iso_ms", "one_plan", "rate_both", "rate_one", "usage"]
