"""Local read-only SQL endpoint: how other processes read an embedded warehouse that one process owns.

chDB lets one process open a data directory. The owner (the running pipeline) calls :func:`serve_sql`,
which answers read-only SQL over HTTP on 127.0.0.1 (a free port) from a background thread, and
writes where to find it to a small JSON state file under the data directory (removed on stop).
Anyone else calls :func:`run_readonly_query`: it asks the endpoint when the state file names a live
one, and otherwise opens the data directory itself, read-only.

Protocol: ``POST /query`` with ``{"sql": ...}`` and ``Authorization: Bearer <token>`` answers
``{"columns", "types", "rows"}`` (decimals as strings, timestamps ISO, decoded back by column type)
or ``{"error": <class name>, "message": ...}`` with status 400 or 503. The random token lives only
in the state file (mode 0600): only users who can read the data directory can query.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from warehouse.base import (
    BatchError,
    MigrationError,
    QueryError,
    QueryResult,
    ReadOnlyViolation,
    Warehouse,
    WarehouseError,
    WarehouseUnavailable,
)
from warehouse.format import OutputFormat, format_result
from warehouse.urls import parse_warehouse_url
from warehouse.values import decode_rows, to_json_value

STATE_FILE_NAME = "sql-endpoint.json"
MAX_SQL_BYTES = 1 << 20

log = logging.getLogger(__name__)

_ERRORS: dict[str, type[WarehouseError]] = {
    cls.__name__: cls
    for cls in (
        WarehouseError,
        WarehouseUnavailable,
        QueryError,
        ReadOnlyViolation,
        BatchError,
        MigrationError,
    )
}


class EndpointUnreachable(WarehouseUnavailable):
    """No live endpoint answers at the address in the state file (none running, or it died)."""


def endpoint_state_file(data_dir: str | Path) -> Path:
    """Where the owner of ``data_dir`` announces its endpoint."""
    return Path(data_dir) / STATE_FILE_NAME


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    warehouse: Warehouse
    token: str

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up mid-answer is not worth a traceback on the owner's stderr.
        log.debug("sql endpoint: error while answering %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("sql endpoint: " + format, *args)

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _authorised(self) -> bool:
        given = self.headers.get("Authorization", "")
        return secrets.compare_digest(given, f"Bearer {self.server.token}")

    def do_GET(self) -> None:
        if self.path != "/health":
            self._reply(404, {"error": "NotFound", "message": self.path})
        elif not self._authorised():
            self._reply(401, {"error": "Unauthorized", "message": "bad or missing token"})
        else:
            self._reply(200, {"ok": True, "database": self.server.warehouse.database})

    def do_POST(self) -> None:
        if self.path != "/query":
            self._reply(404, {"error": "NotFound", "message": self.path})
            return
        if not self._authorised():
            self._reply(401, {"error": "Unauthorized", "message": "bad or missing token"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_SQL_BYTES:
            self._reply(413, {"error": "QueryError", "message": f"SQL larger than {MAX_SQL_BYTES} bytes"})
            return
        try:
            sql = json.loads(self.rfile.read(length))["sql"]
            if not isinstance(sql, str):
                raise TypeError("sql must be a string")
        except (ValueError, KeyError, TypeError) as exc:
            self._reply(400, {"error": "QueryError", "message": f"bad request: {exc}"})
            return
        try:
            result = self.server.warehouse.query(sql, readonly=True)
        except WarehouseUnavailable as exc:
            self._reply(503, {"error": type(exc).__name__, "message": str(exc)})
            return
        except WarehouseError as exc:
            self._reply(400, {"error": type(exc).__name__, "message": str(exc)})
            return
        self._reply(
            200,
            {
                "columns": result.columns,
                "types": result.types,
                "rows": [[to_json_value(v) for v in row] for row in result.rows],
            },
        )


class SqlEndpoint:
    """A running endpoint; :meth:`stop` shuts it down and removes its state file."""

    def __init__(self, warehouse: Warehouse, state_file: Path) -> None:
        self.state_file = state_file
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.warehouse = warehouse
        self._server.token = secrets.token_urlsafe(32)
        self._thread = threading.Thread(target=self._server.serve_forever, name="sql-endpoint", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> SqlEndpoint:
        self._thread.start()
        state = {
            "host": "127.0.0.1",
            "port": self.port,
            "pid": os.getpid(),
            "token": self._server.token,
            "database": self._server.warehouse.database,
            "started_at": time.time(),
        }
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_name(f".{self.state_file.name}.{os.getpid()}")
        # Written 0600 then renamed, so a reader never sees a half-written file or a readable token.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(state, fh)
        os.replace(tmp, self.state_file)
        log.info("read-only SQL endpoint on 127.0.0.1:%d (state in %s)", self.port, self.state_file)
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        try:
            # Remove the file only if it is still ours (a newer owner may have replaced it).
            if json.loads(self.state_file.read_text()).get("token") == self._server.token:
                self.state_file.unlink()
        except (OSError, ValueError):
            pass

    def __enter__(self) -> SqlEndpoint:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def serve_sql(warehouse: Warehouse, state_file: str | Path) -> SqlEndpoint:
    """Serve read-only SQL on ``warehouse`` from a background thread; returns the started endpoint."""
    return SqlEndpoint(warehouse, Path(state_file)).start()


def _read_state(state_file: Path) -> dict[str, Any]:
    try:
        state = json.loads(state_file.read_text())
        return {"host": str(state["host"]), "port": int(state["port"]), "token": str(state["token"])}
    except FileNotFoundError:
        raise EndpointUnreachable(f"no SQL endpoint state file at {state_file}") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EndpointUnreachable(f"unreadable SQL endpoint state file {state_file}: {exc}") from None


def _served_database(state_file: Path) -> str | None:
    try:
        database = json.loads(state_file.read_text()).get("database")
    except (OSError, ValueError, AttributeError):
        return None
    return str(database) if database else None


def fetch_via_endpoint(state_file: str | Path, sql: str, *, timeout: float = 300.0) -> QueryResult:
    """Run read-only ``sql`` through the endpoint announced in ``state_file``."""
    state = _read_state(Path(state_file))
    request = urllib.request.Request(
        f"http://{state['host']}:{state['port']}/query",
        data=json.dumps({"sql": sql}).encode("utf-8"),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {state['token']}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            error = json.loads(exc.read())
        except ValueError:
            raise EndpointUnreachable(f"SQL endpoint answered HTTP {exc.code} without a JSON body") from None
        cls = _ERRORS.get(str(error.get("error")), EndpointUnreachable)
        message = str(error.get("message", ""))
        if cls is EndpointUnreachable:
            # Not a warehouse answer (bad token, wrong path): not the endpoint we were told about.
            raise EndpointUnreachable(f"SQL endpoint answered HTTP {exc.code}: {message}") from None
        if issubclass(cls, QueryError):
            raise cls(message, sql=sql) from None
        raise cls(message) from None
    except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError) as exc:
        raise EndpointUnreachable(f"SQL endpoint at {state['host']}:{state['port']} unreachable: {exc}") from None
    types = [str(t) for t in body["types"]]
    return QueryResult(columns=list(body["columns"]), types=types, rows=decode_rows(types, body["rows"]))


def query_via_endpoint(state_file: str | Path, sql: str, fmt: OutputFormat = "table") -> str:
    """Run read-only ``sql`` through the endpoint and format the result (table, csv or json)."""
    return format_result(fetch_via_endpoint(state_file, sql), fmt)


def run_readonly_query(url_or_path: str, sql: str, *, wait_for_owner: float = 5.0) -> QueryResult:
    """Run read-only ``sql`` on the warehouse at ``url_or_path``, wherever it is served from.

    A server URL is queried directly. An embedded directory is queried through its owner's endpoint
    when one runs, else opened here read-only. If the directory is locked but no endpoint is
    announced yet (an owner starting up), the state file is awaited for ``wait_for_owner`` seconds.
    """
    parsed = parse_warehouse_url(url_or_path)
    if parsed.driver == "clickhouse":
        from warehouse.server_driver import ClickHouseServerWarehouse

        server = ClickHouseServerWarehouse(parsed)
        try:
            return server.query(sql, readonly=True)
        finally:
            server.close()
    assert parsed.path is not None  # the parser always sets it for chdb
    if not parsed.path.is_dir():
        raise WarehouseUnavailable(f"no warehouse at {parsed.path}: the directory does not exist")
    state_file = endpoint_state_file(parsed.path)
    deadline = time.monotonic() + wait_for_owner
    while True:
        if state_file.exists():
            served = _served_database(state_file)
            if served is not None and served != parsed.database:
                raise QueryError(
                    f"the process owning {parsed.path} serves database {served!r}, not {parsed.database!r}",
                    sql=sql,
                )
            try:
                return fetch_via_endpoint(state_file, sql)
            except EndpointUnreachable:
                pass  # a stale file left by an owner that died; try opening the directory ourselves
        # Imported only now: a reader served by the endpoint never loads the engine.
        from warehouse.chdb_driver import ChdbWarehouse

        try:
            local = ChdbWarehouse(parsed.path, database=parsed.database, readonly=True)
        except WarehouseUnavailable:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)
            continue
        try:
            return local.query(sql, readonly=True)
        finally:
            local.close()


__all__ = [
    "STATE_FILE_NAME",
    "EndpointUnreachable",
    "SqlEndpoint",
    "endpoint_state_file",
    "fetch_via_endpoint",
    "query_via_endpoint",
    "run_readonly_query",
    "serve_sql",
]
