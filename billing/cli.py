"""``ossbss invoice``: run billing for a period."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

INVOICE_EPILOG = """\
examples:
  ossbss invoice --period 2026-11 --dry-run     show what would be invoiced
  ossbss invoice --period 2026-11               issue the invoices into the ledger (var/billing.sqlite)

Running a period again issues only what is new; invoices whose usage changed after they were issued
(rerating) are listed, since they need a credit note rather than a silent change.
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "invoice",
        help="run billing for a period: rated usage -> invoices in the ledger",
        description="Sum the period's rated usage per account, currency and service in the warehouse (exact "
        "decimals), round per currency and write one invoice per account and currency to the ledger.",
        epilog=INVOICE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--period", required=True, metavar="YYYY-MM", help="calendar month to bill (UTC)")
    parser.add_argument("--ledger", metavar="FILE", help="SQLite ledger file (default: VAR_DIR/billing.sqlite)")
    parser.add_argument("--warehouse", metavar="URL", help="warehouse URL (default: warehouse.url from the config)")
    parser.add_argument("--dry-run", action="store_true", help="compute and print, write nothing")
    parser.add_argument("--show", type=int, default=10, metavar="N", help="print the N largest invoices (default 10)")
    parser.set_defaults(func=run_invoice)


def run_invoice(args: argparse.Namespace) -> int:
    from billing.ledger import Ledger
    from billing.run import BillingError, billing_run
    from ossbss.commands import _load
    from warehouse.base import WarehouseError
    from warehouse.endpoint import run_readonly_query

    config = _load(args)
    url = args.warehouse or config.warehouse.url
    ledger = Ledger(Path(args.ledger) if args.ledger else config.var_path / "billing.sqlite")
    started = time.monotonic()
    try:
        result = billing_run(lambda sql: run_readonly_query(url, sql), ledger, args.period, dry_run=args.dry_run)
    except BillingError as exc:
        print(f"ossbss: {exc}", file=sys.stderr)
        return 2
    except WarehouseError as exc:
        print(f"ossbss: cannot read rated usage: {exc}", file=sys.stderr)
        return 1
    finally:
        ledger.close()
    elapsed = time.monotonic() - started
    verb = "would issue" if args.dry_run else "issued"
    new = len(result.invoices) - result.already_issued
    print(
        f"period {result.period}: {len(result.invoices):,} invoice(s) from "
        f"{sum(i.records for i in result.invoices):,} rated records in {elapsed:.1f}s; {verb} {new:,}, "
        f"{result.already_issued:,} already issued"
    )
    for currency, total in sorted(result.totals_by_currency().items()):
        print(f"  total {currency}: {total}")
    for inv in sorted(result.invoices, key=lambda i: i.total, reverse=True)[: args.show]:
        print(f"  {inv.id:40} {inv.total:>14} {inv.currency}  ({inv.records:,} records)")
    for inv_id, before, now in result.changed_since_issue:
        print(
            f"  CHANGED since issue: {inv_id} issued {before}, usage now totals {now}: needs a credit note",
            file=sys.stderr,
        )
    return 0
