"""SQL text helpers: split a script into statements, and gate what the read-only path accepts.

Neither is a SQL parser. :func:`split_statements` knows just enough lexing (quotes, comments) to find
the ``;`` that end statements, so migration files can hold several statements for drivers that run
one at a time. :func:`check_readonly_sql` is defence in depth in front of the engine's own
``readonly=1``: the embedded engine lets a read-only connection still write files
(``INTO OUTFILE``, ``INSERT INTO FUNCTION file(...)``) and read host files (``file()``), so the
read-only path also refuses anything but one plain read statement that touches no host resource.
"""

from __future__ import annotations

import re

from warehouse.base import ReadOnlyViolation

# First keywords of statements that only read.
READ_KEYWORDS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS"})

# Table functions that reach outside the warehouse (host files, network, other processes).
HOST_TABLE_FUNCTIONS = frozenset(
    {
        "file",
        "filecluster",
        "url",
        "urlcluster",
        "s3",
        "s3cluster",
        "gcs",
        "oss",
        "cosn",
        "azureblobstorage",
        "azureblobstoragecluster",
        "hdfs",
        "hdfscluster",
        "remote",
        "remotesecure",
        "cluster",
        "clusterallreplicas",
        "mysql",
        "postgresql",
        "mongodb",
        "redis",
        "sqlite",
        "jdbc",
        "odbc",
        "executable",
        "python",
        "input",
        "iceberg",
        "icebergs3",
        "icebergazure",
        "icebergazurecluster",
        "icebergs3cluster",
        "iceberglocal",
        "deltalake",
        "deltalakecluster",
        "hudi",
        "arrowflight",
        "ytsaurus",
    }
)

_FUNCTION_CALL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(")
_FIRST_WORD = re.compile(r"\s*\(*\s*([A-Za-z]+)")
_OUTFILE = re.compile(r"\bINTO\s+OUTFILE\b", re.IGNORECASE)


def _scan(sql: str) -> list[tuple[str, str]]:
    """Cut ``sql`` into (kind, text) tokens: ``code``, ``string``, ``ident``, ``comment``, ``semicolon``."""
    tokens: list[tuple[str, str]] = []
    i, n, start = 0, len(sql), 0

    def flush(end: int) -> None:
        if end > start:
            tokens.append(("code", sql[start:end]))

    while i < n:
        ch = sql[i]
        if ch in "'\"`":
            flush(i)
            j = i + 1
            while j < n:
                if sql[j] == "\\":
                    j += 2
                    continue
                if sql[j] == ch:
                    # A doubled quote is an escaped quote, not the end.
                    if j + 1 < n and sql[j + 1] == ch:
                        j += 2
                        continue
                    break
                j += 1
            tokens.append(("string" if ch == "'" else "ident", sql[i : j + 1]))
            i = start = j + 1
        elif sql.startswith("--", i) or ch == "#":
            flush(i)
            j = sql.find("\n", i)
            j = n if j < 0 else j
            tokens.append(("comment", sql[i:j]))
            i = start = j
        elif sql.startswith("/*", i):
            flush(i)
            j = sql.find("*/", i + 2)
            j = n if j < 0 else j + 2
            tokens.append(("comment", sql[i:j]))
            i = start = j
        elif ch == ";":
            flush(i)
            tokens.append(("semicolon", ";"))
            i = start = i + 1
        else:
            i += 1
    flush(n)
    return tokens


def split_statements(script: str) -> list[str]:
    """Split a script on the ``;`` that end statements; comments are kept, empty statements dropped."""
    statements: list[str] = []
    current: list[str] = []
    meaningful = False
    for kind, text in _scan(script):
        if kind == "semicolon":
            if meaningful:
                statements.append("".join(current).strip())
            current, meaningful = [], False
            continue
        current.append(text)
        if kind != "comment" and text.strip():
            meaningful = True
    if meaningful:
        statements.append("".join(current).strip())
    return statements


def code_only(sql: str) -> str:
    """The statement with comments removed and string literals blanked, for keyword checks."""
    parts: list[str] = []
    for kind, text in _scan(sql):
        if kind == "comment":
            parts.append(" ")
        elif kind == "string":
            parts.append("''")
        else:
            parts.append(text)
    return "".join(parts)


def check_readonly_sql(sql: str) -> str:
    """Return the single read statement in ``sql`` (trailing ``;`` removed) or raise ReadOnlyViolation."""
    statements = split_statements(sql)
    if len(statements) != 1:
        raise ReadOnlyViolation(f"expected exactly one statement, got {len(statements)}", sql=sql)
    statement = statements[0]
    code = code_only(statement)
    first = _FIRST_WORD.match(code)
    keyword = first.group(1).upper() if first else ""
    if keyword not in READ_KEYWORDS:
        raise ReadOnlyViolation(f"only read statements are allowed here, not {keyword or 'this'}", sql=sql)
    if _OUTFILE.search(code):
        raise ReadOnlyViolation("INTO OUTFILE writes a file; not allowed on the read-only path", sql=sql)
    for match in _FUNCTION_CALL.finditer(code):
        if match.group(1).lower() in HOST_TABLE_FUNCTIONS:
            raise ReadOnlyViolation(
                f"table function {match.group(1)}() reaches outside the warehouse; not allowed here", sql=sql
            )
    return statement


__all__ = ["HOST_TABLE_FUNCTIONS", "READ_KEYWORDS", "check_readonly_sql", "code_only", "split_statements"]
