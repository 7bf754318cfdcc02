"""Driver selection by URL, secrets kept out of logs, and the server driver without a server.

No ClickHouse server runs on the development machine (Debian's is from 2018, there is no Docker, and
no PyPI package ships a modern server binary), so the server driver is tested here only up to the
network: URL parsing, lazy connection, and the mapping of a refused connection. Its queries and
inserts are untested against a real server.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from warehouse import open_warehouse
from warehouse.base import WarehouseUnavailable
from warehouse.server_driver import ClickHouseServerWarehouse
from warehouse.urls import PASSWORD_ENV, WarehouseURLError, parse_warehouse_url


def test_chdb_urls() -> None:
    assert parse_warehouse_url("chdb:///srv/ossbss/ch").path == Path("/srv/ossbss/ch")
    assert parse_warehouse_url("chdb://").path == Path("var/clickhouse")
    assert parse_warehouse_url("chdb://var/ch").path == Path("var/ch")
    assert parse_warehouse_url("/data/ch").path == Path("/data/ch")
    parsed = parse_warehouse_url("chdb:///x?database=lab")
    assert (parsed.driver, parsed.database) == ("chdb", "lab")
    assert parse_warehouse_url("chdb://").database == "ossbss"


def test_server_urls_with_password_from_url_or_environment() -> None:
    parsed = parse_warehouse_url("clickhouse://ossbss:s3cr%40t@ch.example:9000/metrics", environ={})
    assert (parsed.driver, parsed.host, parsed.port, parsed.user, parsed.database) == (
        "clickhouse",
        "ch.example",
        9000,
        "ossbss",
        "metrics",
    )
    assert parsed.password == "s3cr@t" and not parsed.secure
    tls = parse_warehouse_url("clickhouses://reader@ch.example", environ={PASSWORD_ENV: "from-env"})
    assert (tls.secure, tls.port, tls.password, tls.database, tls.user) == (
        True,
        8443,
        "from-env",
        "ossbss",
        "reader",
    )
    assert parse_warehouse_url("clickhouse://h", environ={}).user == "default"


def test_secrets_never_appear_in_repr_or_redacted_form() -> None:
    parsed = parse_warehouse_url("clickhouse://u:topsecret@h:8123/db", environ={})
    assert "topsecret" not in repr(parsed)
    assert "topsecret" not in parsed.redacted()
    assert parsed.redacted() == "clickhouse://u:***@h:8123/db"
    assert "topsecret" not in repr(ClickHouseServerWarehouse(parsed))


@pytest.mark.parametrize(
    "url", ["mysql://h/db", "clickhouse:///db", "clickhouse://h:notaport/db", "clickhouse://h/a/b"]
)
def test_bad_urls_are_refused_with_a_reason(url: str) -> None:
    with pytest.raises(WarehouseURLError):
        parse_warehouse_url(url)


def test_server_driver_connects_lazily_and_maps_a_refused_connection() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free once closed: nothing listens there
    wh = open_warehouse(f"clickhouse://u:pw@127.0.0.1:{port}/lab", connect_timeout=2)
    assert isinstance(wh, ClickHouseServerWarehouse) and wh.database == "lab"
    with pytest.raises(WarehouseUnavailable) as caught:
        wh.query("SELECT 1")
    assert "pw@" not in str(caught.value)
    wh.close()


def test_open_warehouse_database_option_overrides_the_url() -> None:
    wh = open_warehouse("clickhouse://h:1/a", database="b")
    assert wh.database == "b"
