"""Rerating: price a period again under a new catalog and say what changed, per account.

Give it the usage records of whole (account, period) sets and the rows rated before; every record is
rated again from a fresh allowance state in event-time order (so allowances are reallocated as if
the new catalog had always applied). A row whose outcome changed comes back with
``rating_version`` one above the previous row's, which the warehouse's ``rated_usage``
ReplacingMergeTree keeps in place of the old one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from models.records import RatedUsage, UsageRecord
from rating.catalog import Catalog
from rating.engine import Engine, rate_usage
from rating.state import RatingState

_COMPARED = ("amount", "currency", "plan", "plan_version", "quantity", "unit", "breakdown")


@dataclass(frozen=True)
class AccountDifference:
    """Totals of one account and currency before and after rerating."""

    account: str
    currency: str
    previous: Decimal
    current: Decimal
    changed_records: int

    @property
    def delta(self) -> Decimal:
        return self.current - self.previous


@dataclass
class RerateResult:
    rows: list[RatedUsage] = field(default_factory=list)  # new versions to write
    differences: list[AccountDifference] = field(default_factory=list)  # accounts whose totals moved
    refused: list[tuple[str, str]] = field(default_factory=list)  # (id, reason): the new catalog refuses them
    missing_usage: list[str] = field(default_factory=list)  # rated before, but no usage record was given
    unchanged: int = 0


def _same(before: RatedUsage, after: RatedUsage) -> bool:
    return all(getattr(before, name) == getattr(after, name) for name in _COMPARED) and (
        str(before.amount) == str(after.amount)
    )


def rerate(
    usage: Sequence[UsageRecord],
    previous: Sequence[RatedUsage],
    catalog: Catalog,
    *,
    rated_at_ms: int = 0,
    include_unchanged: bool = False,
    engine: Engine = "auto",
) -> RerateResult:
    """Rate ``usage`` again with ``catalog`` and compare with ``previous`` (the latest version per id wins)."""
    latest: dict[str, RatedUsage] = {}
    for row in previous:
        if row.id not in latest or row.rating_version > latest[row.id].rating_version:
            latest[row.id] = row
    outcome = rate_usage(usage, catalog, rated_at_ms=rated_at_ms, state=RatingState(), engine=engine)
    result = RerateResult()
    totals: dict[tuple[str, str], list[Decimal]] = {}
    changed: dict[tuple[str, str], int] = {}
    seen: set[str] = set()

    def add(account: str, currency: str, slot: int, amount: Decimal) -> None:
        totals.setdefault((account, currency), [Decimal(0), Decimal(0)])[slot] += amount

    for row in outcome.rated:
        seen.add(row.id)
        before = latest.get(row.id)
        add(row.account, row.currency, 1, row.amount)
        if before is not None:
            add(before.account, before.currency, 0, before.amount)
        if before is not None and _same(before, row):
            result.unchanged += 1
            if not include_unchanged:
                continue
        else:
            changed[(row.account, row.currency)] = changed.get((row.account, row.currency), 0) + 1
        version = before.rating_version + 1 if before is not None else 1
        result.rows.append(_with_version(row, version))
    for index, reason in outcome.failures:
        record = usage[index]
        seen.add(record.id)
        result.refused.append((record.id, reason))
        before = latest.get(record.id)
        if before is not None:
            add(before.account, before.currency, 0, before.amount)
            add(before.account, before.currency, 1, Decimal(0))
            changed[(before.account, before.currency)] = changed.get((before.account, before.currency), 0) + 1
    result.missing_usage = sorted(set(latest) - seen)
    for (account, currency), (before_total, after_total) in sorted(totals.items()):
        if before_total != after_total or changed.get((account, currency)):
            result.differences.append(
                AccountDifference(account, currency, before_total, after_total, changed.get((account, currency), 0))
            )
    return result


def _with_version(row: RatedUsage, version: int) -> RatedUsage:
    fields = {name: getattr(row, name) for name in row.__struct_fields__}
    fields["rating_version"] = version
    return RatedUsage(**fields)


__all__ = ["AccountDifference", "RerateResult", "rerate"]
