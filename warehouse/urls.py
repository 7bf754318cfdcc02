"""Warehouse URLs: ``chdb:///path/to/dir`` (embedded) or ``clickhouse[s]://user:pass@host:port/db`` (server).

The password may also come from ``OSSBSS_CLICKHOUSE_PASSWORD``; it is kept out of ``repr`` and of
:meth:`WarehouseURL.redacted`, so logging a URL never leaks it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlsplit

DEFAULT_DATABASE = "ossbss"
DEFAULT_CHDB_PATH = "var/clickhouse"
PASSWORD_ENV = "OSSBSS_CLICKHOUSE_PASSWORD"

Driver = Literal["chdb", "clickhouse"]


class WarehouseURLError(ValueError):
    """The URL names no known driver or is malformed; the message names the part at fault."""


@dataclass(frozen=True)
class WarehouseURL:
    """A parsed warehouse URL."""

    driver: Driver
    database: str = DEFAULT_DATABASE
    path: Path | None = None  # chdb only: the data directory
    host: str = "localhost"
    port: int = 8123
    user: str = "default"
    password: str = field(default="", repr=False)
    secure: bool = False
    options: dict[str, str] = field(default_factory=dict)

    def redacted(self) -> str:
        """The URL with any password replaced, safe to log."""
        if self.driver == "chdb":
            return f"chdb://{self.path}?database={self.database}"
        scheme = "clickhouses" if self.secure else "clickhouse"
        secret = ":***" if self.password else ""
        return f"{scheme}://{self.user}{secret}@{self.host}:{self.port}/{self.database}"


def parse_warehouse_url(url: str, *, environ: dict[str, str] | None = None) -> WarehouseURL:
    """Parse a warehouse URL; a bare filesystem path means an embedded chDB directory."""
    env = os.environ if environ is None else environ
    if "://" not in url:
        # A plain path is the embedded engine's data directory.
        return WarehouseURL(driver="chdb", path=Path(url or DEFAULT_CHDB_PATH))
    parts = urlsplit(url)
    options = dict(parse_qsl(parts.query))
    database = options.pop("database", "") or DEFAULT_DATABASE
    if parts.scheme == "chdb":
        # chdb://var/x reads as a relative path (the "host" is its first segment); chdb:///x is absolute.
        raw_path = unquote(parts.netloc + parts.path)
        return WarehouseURL(driver="chdb", path=Path(raw_path or DEFAULT_CHDB_PATH), database=database, options=options)
    if parts.scheme in ("clickhouse", "clickhouses"):
        secure = parts.scheme == "clickhouses"
        if not parts.hostname:
            raise WarehouseURLError("clickhouse URL has no host")
        try:
            port = parts.port or (8443 if secure else 8123)
        except ValueError as exc:
            raise WarehouseURLError(f"clickhouse URL has a bad port: {exc}") from None
        path_db = unquote(parts.path.lstrip("/"))
        if "/" in path_db:
            raise WarehouseURLError(f"clickhouse URL path must be one database name, got {path_db!r}")
        password = unquote(parts.password) if parts.password is not None else env.get(PASSWORD_ENV, "")
        return WarehouseURL(
            driver="clickhouse",
            database=path_db or database,
            host=parts.hostname,
            port=port,
            user=unquote(parts.username) if parts.username else "default",
            password=password,
            secure=secure,
            options=options,
        )
    raise WarehouseURLError(f"unknown warehouse scheme {parts.scheme!r}; use chdb://, clickhouse:// or clickhouses://")


__all__ = [
    "DEFAULT_CHDB_PATH",
    "DEFAULT_DATABASE",
    "PASSWORD_ENV",
    "WarehouseURL",
    "WarehouseURLError",
    "parse_warehouse_url",
]
