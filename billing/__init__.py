"""Billing: turns rated usage into invoices in a relational ledger (SQLite locally, PostgreSQL in production)."""

from billing.ledger import Invoice, InvoiceLine, Ledger
from billing.run import BillingResult, billing_run, period_bounds

__all__ = ["BillingResult", "Invoice", "InvoiceLine", "Ledger", "billing_run", "period_bounds"]
