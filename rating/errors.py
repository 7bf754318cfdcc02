"""Errors of the rating package.

RatingError                 root of everything this package raises
+-- CatalogError            the catalog is invalid; ``where`` names the plan and field
+-- ColumnsError            a columnar batch lacks a column or has the wrong shape; ``column``
"""

from __future__ import annotations


class RatingError(Exception):
    """Root of the rating package's errors."""


class CatalogError(RatingError, ValueError):
    """The catalog is invalid; ``where`` names the plan and field (``plans[2] (mobile).charges[0].price``)."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


class ColumnsError(RatingError, ValueError):
    """A columnar batch handed to :func:`rating.rate_columns` is malformed; ``column`` names the column."""

    def __init__(self, column: str, message: str) -> None:
        super().__init__(f"column {column!r}: {message}")
        self.column = column


__all__ = ["CatalogError", "ColumnsError", "RatingError"]
