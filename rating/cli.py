"""``ossbss rate``: rate a usage file against a catalog offline, or rerate a rated file.

    ossbss rate --catalog plans.yaml --input usage.csv --output rated.csv
    ossbss rate --rerate --catalog new-plans.yaml --input rated.csv --period 2024-06 --dry-run

Exit codes: 0 every record rated; 1 some lines were bad or refused; 2 the command could not run
(unreadable catalog or input, invalid options).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

from models.records import RatedUsage, UsageRecord
from rating.catalog import load_catalog
from rating.engine import rate_usage
from rating.errors import CatalogError
from rating.rerate import rerate
from rating.state import RatingState
from rating.usage_files import USAGE_COLUMNS, UsageFile, rated_row, read_usage, write_rated

EPILOG = f"""\
input columns (CSV header or JSON Lines keys):
  {", ".join(USAGE_COLUMNS)}
  id, account      required; the id makes rating idempotent
  service          required by the record model (e.g. internet, national)
  start, end       ISO-8601 (2024-06-01T10:00:00Z, an offset, or none for UTC) or epoch ms;
                   start_ms / end_ms are accepted too; end defaults to start
  bytes_up/down    whole bytes, default 0
  duration_s       whole seconds; empty means end - start
  destination      dialled number, for per-destination (zone) charges
  event_type       data (default), voice, sms, ... as the catalog's charges filter them

output (--output, CSV or .jsonl): the usage columns with start_ms/end_ms, then plan, plan_version,
rating_version, quantity, unit, amount (exact decimal), currency, rated_at_ms, breakdown (JSON).

rerating (--rerate): give --input a file written by `ossbss rate --output` (it carries the usage
and the previous rating); every row is rated again with --catalog from a fresh allowance state, and
the accounts whose totals move are listed. Rows that changed are written to --output with
rating_version + 1 (the warehouse keeps the highest version per id). --period YYYY-MM keeps the
rows starting in that UTC month; rerate whole months, so allowances are reallocated correctly.
Without --input, --rerate --period YYYY-MM reads the month's usage and rated rows from the warehouse
(through the running pipeline's endpoint, or the embedded engine directly), prints the differences
per account and, without --dry-run, publishes the new versions to Kafka usage.rated for the sink.
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "rate",
        help="rate a usage file against a catalog (offline), or rerate a rated file",
        description="Rate a usage file (CSV or JSON Lines) against a price catalog with no service running; "
        "print a summary, refusals and bad lines.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--catalog", help="catalog YAML (default: the embedded rating/catalog.yaml)")
    parser.add_argument("--input", "-i", help="usage file: .csv, or .jsonl for JSON Lines")
    parser.add_argument("--output", "-o", help="write rated rows here (.csv or .jsonl)")
    parser.add_argument("--state", help="allowance state file: loaded if present, saved after rating")
    parser.add_argument(
        "--engine", choices=("auto", "kernel", "reference"), default="auto", help="force one implementation"
    )
    parser.add_argument("--rated-at", type=int, help="rated_at_ms to stamp (default: now)")
    parser.add_argument(
        "--warehouse", metavar="URL", help="with --rerate and no --input: the warehouse (default: warehouse.url)"
    )
    parser.add_argument("--show", type=int, default=20, help="how many bad or refused lines to print (default 20)")
    parser.add_argument("--rerate", action="store_true", help="rerate a file written by `ossbss rate --output`")
    parser.add_argument("--period", help="with --rerate: only rows starting in this UTC month, YYYY-MM")
    parser.add_argument("--dry-run", action="store_true", help="with --rerate: report differences, write nothing")
    parser.set_defaults(func=run_rate)


def run_rate(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    if args.rerate:
        return _run_rerate(args, out)
    if not args.input:
        print("ossbss rate: --input is required", file=out)
        return 2
    try:
        catalog = load_catalog(args.catalog)
        usage = read_usage(args.input)
    except CatalogError as exc:
        print(f"catalog error: {exc}", file=out)
        return 2
    except OSError as exc:
        print(f"cannot read {args.input}: {exc.strerror}", file=out)
        return 2
    state = _load_state(args.state)
    rated_at = args.rated_at if args.rated_at is not None else int(time.time() * 1000)
    started = time.perf_counter()
    result = rate_usage(usage.records, catalog, rated_at_ms=rated_at, state=state, engine=args.engine)
    elapsed = time.perf_counter() - started
    refused = [(usage.lines[index], usage.records[index].id, reason) for index, reason in result.failures]
    _print_problems(usage, refused, args.show, out)
    totals: dict[str, Decimal] = {}
    for row in result.rated:
        totals[row.currency] = totals.get(row.currency, Decimal(0)) + row.amount
    lines_read = len(usage.records) + len(usage.bad)
    print(f"records: {lines_read} lines, {len(usage.records)} usage records", file=out)
    print(f"rated: {len(result.rated)} in {elapsed:.3f} s", file=out)
    print(f"refused: {len(refused)}", file=out)
    for reason, count in Counter(_reason_kind(reason) for _, _, reason in refused).most_common():
        print(f"  {count:>8}  {reason}", file=out)
    print(f"bad lines: {len(usage.bad)}", file=out)
    for currency, total in sorted(totals.items()):
        print(f"total {currency}: {total}", file=out)
    if args.output:
        by_id = {record.id: record for record in usage.records}
        write_rated(args.output, [rated_row(by_id[row.id], row) for row in result.rated])
        print(f"wrote {len(result.rated)} rated rows to {args.output}", file=out)
    if args.state:
        Path(args.state).write_bytes(state.to_bytes())
    return 0 if not refused and not usage.bad else 1


def _run_rerate(args: argparse.Namespace, out: TextIO) -> int:
    if not args.input:
        return _rerate_from_warehouse(args, out)
    if not args.dry_run and not args.output:
        print("ossbss rate --rerate: give --output for the new rows, or --dry-run", file=out)
        return 2
    try:
        catalog = load_catalog(args.catalog)
        rated_file = read_usage(args.input, with_previous=True)
        month = _month_bounds(args.period) if args.period else None
    except CatalogError as exc:
        print(f"catalog error: {exc}", file=out)
        return 2
    except OSError as exc:
        print(f"cannot read {args.input}: {exc.strerror}", file=out)
        return 2
    except ValueError as exc:
        print(f"--period: {exc}", file=out)
        return 2
    pairs = [
        (record, previous)
        for record, previous in zip(rated_file.records, rated_file.previous, strict=True)
        if month is None or month[0] <= record.start_ms < month[1]
    ]
    records: list[UsageRecord] = [record for record, _ in pairs]
    previous = [row for _, row in pairs if row is not None]
    rated_at = args.rated_at if args.rated_at is not None else int(time.time() * 1000)
    result = rerate(records, previous, catalog, rated_at_ms=rated_at, engine=args.engine)
    _print_problems(rated_file, [], args.show, out)
    _print_rerate(args, records, result, out)
    if args.dry_run:
        print("dry run: nothing written", file=out)
    else:
        by_id = {record.id: record for record in records}
        write_rated(args.output, [rated_row(by_id[row.id], row) for row in result.rows])
        print(f"wrote {len(result.rows)} rerated rows to {args.output}", file=out)
    return 0 if not result.refused and not rated_file.bad else 1


def _print_rerate(args: argparse.Namespace, records: list[UsageRecord], result: Any, out: TextIO) -> None:
    print(f"records: {len(records)}{f' in {args.period}' if args.period else ''}", file=out)
    print(f"changed: {len(result.rows)}, unchanged: {result.unchanged}", file=out)
    print(f"refused by the new catalog: {len(result.refused)}", file=out)
    for record_id, reason in result.refused[: args.show]:
        print(f"  {record_id}: {reason}", file=out)
    print(f"accounts with differences: {len(result.differences)}", file=out)
    for diff in result.differences[: max(args.show, 0)]:
        sign = "+" if diff.delta >= 0 else ""
        print(
            f"  {diff.account} {diff.currency}: {diff.previous} -> {diff.current} ({sign}{diff.delta}), "
            f"{diff.changed_records} records",
            file=out,
        )


def _rerate_from_warehouse(args: argparse.Namespace, out: TextIO) -> int:
    """Rerate a month straight from the warehouse; new versions go to Kafka ``usage.rated``, where the
    sink lands them and ``rated_usage`` keeps the highest ``rating_version`` per id."""
    from ossbss.commands import _bootstrap_or_exit, _load
    from warehouse.base import WarehouseError
    from warehouse.endpoint import run_readonly_query

    if not args.period:
        print("ossbss rate --rerate: give --period YYYY-MM (or --input RATED.csv to rerate a file)", file=out)
        return 2
    try:
        catalog = load_catalog(args.catalog)
        start, end = _month_bounds(args.period)
    except CatalogError as exc:
        print(f"catalog error: {exc}", file=out)
        return 2
    except ValueError as exc:
        print(f"--period: {exc}", file=out)
        return 2
    config = _load(args)
    url = args.warehouse or config.warehouse.url
    where = f"toUnixTimestamp64Milli(start) >= {start} AND toUnixTimestamp64Milli(start) < {end}"
    try:
        usage_rows = run_readonly_query(
            url,
            "SELECT id, account, service, toUnixTimestamp64Milli(start), toUnixTimestamp64Milli(end), bytes_up, "
            f"bytes_down, duration_s, destination, event_type FROM usage_records FINAL WHERE {where}",
        ).rows
        rated_rows = run_readonly_query(
            url,
            "SELECT id, account, service, toUnixTimestamp64Milli(start), toUnixTimestamp64Milli(end), "
            "toString(quantity), unit, toString(amount), currency, plan, plan_version, rating_version, "
            f"toUnixTimestamp64Milli(rated_at), breakdown FROM rated_usage FINAL WHERE {where}",
        ).rows
    except WarehouseError as exc:
        print(f"ossbss rate --rerate: cannot read the warehouse {url}: {exc}", file=out)
        return 1
    records = [
        UsageRecord(
            id=str(r[0]),
            account=str(r[1]),
            service=str(r[2]),
            start_ms=int(r[3]),
            end_ms=int(r[4]),
            bytes_up=int(r[5]),
            bytes_down=int(r[6]),
            duration_s=None if r[7] is None else int(r[7]),
            destination=str(r[8]),
            event_type=str(r[9]),
        )
        for r in usage_rows
    ]
    previous = [
        RatedUsage(
            id=str(r[0]),
            account=str(r[1]),
            service=str(r[2]),
            start_ms=int(r[3]),
            end_ms=int(r[4]),
            quantity=Decimal(r[5]),
            unit=str(r[6]),
            amount=Decimal(r[7]),
            currency=str(r[8]),
            plan=str(r[9]),
            plan_version=int(r[10]),
            rating_version=int(r[11]),
            rated_at_ms=int(r[12]),
            breakdown=str(r[13]),
        )
        for r in rated_rows
    ]
    rated_at = args.rated_at if args.rated_at is not None else int(time.time() * 1000)
    result = rerate(records, previous, catalog, rated_at_ms=rated_at, engine=args.engine)
    print(f"warehouse {url}: {len(previous)} rated of {len(records)} usage records", file=out)
    _print_rerate(args, records, result, out)
    was_rated = {row.id for row in previous}
    newly_refused = [rid for rid, _ in result.refused if rid in was_rated]
    if newly_refused:
        print(
            f"  {len(newly_refused)} of them were rated before: their old rows stay until you fix the catalog", file=out
        )
    if args.dry_run:
        print("dry run: nothing written", file=out)
        return 0 if not newly_refused else 1
    from collectors.publish import RecordPublisher
    from models.topics import USAGE_RATED
    from ossbss.kafkautil import ensure_topics

    bootstrap = _bootstrap_or_exit(config)
    client_config = config.kafka.client_config(bootstrap)
    # A keyed, batched topic: created with the pipeline's partition count when it does not exist yet.
    ensure_topics(client_config, config.kafka.partitions, [USAGE_RATED.name])
    publisher = RecordPublisher(bootstrap, **client_config)
    publisher.publish(USAGE_RATED.name, result.rows, key=lambda row: row.account)  # type: ignore[attr-defined]
    publisher.flush()
    print(
        f"published {len(result.rows)} rerated rows to {USAGE_RATED.name} on {bootstrap}; the sink writes them to "
        "rated_usage, where the highest rating_version of each id counts",
        file=out,
    )
    return 0 if not newly_refused else 1


def _print_problems(usage: UsageFile, refused: list[tuple[int, str, str]], show: int, out: TextIO) -> None:
    for bad in usage.bad[:show]:
        print(f"bad line {bad.line}: {bad.reason}", file=out)
    if len(usage.bad) > show:
        print(f"... and {len(usage.bad) - show} more bad lines", file=out)
    for line, record_id, reason in refused[:show]:
        print(f"refused line {line} ({record_id}): {reason}", file=out)
    if len(refused) > show:
        print(f"... and {len(refused) - show} more refused records", file=out)


def _reason_kind(reason: str) -> str:
    """A reason without its per-record details, so the summary groups alike refusals."""
    return reason.split(" at 20")[0].split(" for account ")[0]


def _month_bounds(period: str) -> tuple[int, int]:
    try:
        first = dt.datetime.strptime(period, "%Y-%m").replace(tzinfo=dt.UTC)
    except ValueError:
        raise ValueError(f"expected YYYY-MM, not {period!r}") from None
    after = first.replace(year=first.year + first.month // 12, month=first.month % 12 + 1)
    return int(first.timestamp() * 1000), int(after.timestamp() * 1000)


def _load_state(path: str | None) -> RatingState:
    if path and Path(path).exists():
        return RatingState.from_bytes(Path(path).read_bytes())
    return RatingState()


__all__ = ["register", "run_rate"]
