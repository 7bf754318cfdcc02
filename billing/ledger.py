"""The billing ledger: invoices and their lines, in SQLite (money stored as exact decimal text).

An invoice is identified by (account, period, currency): issuing a period twice changes nothing, and
the ledger refuses to silently overwrite an issued invoice whose amounts would change (rerating after
issue needs a credit note, which is reported to the caller instead).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS invoices (
    id TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    period TEXT NOT NULL,
    currency TEXT NOT NULL,
    subtotal TEXT NOT NULL,
    total TEXT NOT NULL,
    records INTEGER NOT NULL,
    status TEXT NOT NULL,
    issued_at_ms INTEGER NOT NULL,
    UNIQUE (account, period, currency)
);
CREATE TABLE IF NOT EXISTS invoice_lines (
    invoice_id TEXT NOT NULL REFERENCES invoices(id),
    line_no INTEGER NOT NULL,
    service TEXT NOT NULL,
    unit TEXT NOT NULL,
    quantity TEXT NOT NULL,
    records INTEGER NOT NULL,
    amount TEXT NOT NULL,
    PRIMARY KEY (invoice_id, line_no)
);
CREATE INDEX IF NOT EXISTS invoices_period ON invoices(period);
"""


@dataclass(frozen=True)
class InvoiceLine:
    service: str
    unit: str
    quantity: Decimal
    records: int
    amount: Decimal


@dataclass(frozen=True)
class Invoice:
    id: str
    account: str
    period: str
    currency: str
    subtotal: Decimal  # sum of the lines at full precision
    total: Decimal  # rounded to the currency's minor unit
    records: int
    lines: tuple[InvoiceLine, ...] = field(default=())
    status: str = "issued"

    @staticmethod
    def make_id(account: str, period: str, currency: str) -> str:
        return f"INV-{period}-{currency}-{account}"


class Ledger:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path)
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def existing(self, period: str) -> dict[str, Invoice]:
        rows = self.db.execute(
            "SELECT id, account, period, currency, subtotal, total, records, status FROM invoices WHERE period = ?",
            (period,),
        ).fetchall()
        return {
            r[0]: Invoice(r[0], r[1], r[2], r[3], Decimal(r[4]), Decimal(r[5]), int(r[6]), status=r[7]) for r in rows
        }

    def issue(self, invoices: Iterable[Invoice]) -> int:
        """Insert invoices and their lines in one transaction; returns how many were written."""
        now = int(time.time() * 1000)
        count = 0
        with self.db:
            for inv in invoices:
                self.db.execute(
                    "INSERT INTO invoices (id, account, period, currency, subtotal, total, records, status, "
                    "issued_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        inv.id,
                        inv.account,
                        inv.period,
                        inv.currency,
                        str(inv.subtotal),
                        str(inv.total),
                        inv.records,
                        inv.status,
                        now,
                    ),
                )
                self.db.executemany(
                    "INSERT INTO invoice_lines (invoice_id, line_no, service, unit, quantity, records, amount) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        (inv.id, n, ln.service, ln.unit, str(ln.quantity), ln.records, str(ln.amount))
                        for n, ln in enumerate(inv.lines, start=1)
                    ],
                )
                count += 1
        return count

    def lines(self, invoice_id: str) -> list[InvoiceLine]:
        rows = self.db.execute(
            "SELECT service, unit, quantity, records, amount FROM invoice_lines WHERE invoice_id = ? ORDER BY line_no",
            (invoice_id,),
        ).fetchall()
        return [InvoiceLine(r[0], r[1], Decimal(r[2]), int(r[3]), Decimal(r[4])) for r in rows]
