"""Fixtures on the real embedded engine (chDB) in a temporary data directory.

chDB serves one data directory per process, so each test module shares one directory (held open
by an anchor connection) and each test gets its own database in it, with the migrations applied.
Tests that need a second owner or no owner at all run the other side in a child process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from warehouse.base import WarehouseUnavailable
from warehouse.chdb_driver import ChdbWarehouse
from warehouse.migrate import apply_migrations

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def chdb_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The module's chDB data directory, held open until the module ends.

    Module scope, not session: the engine is released between modules, so other rooms' tests in
    the same pytest process can open their own data directories.
    """
    path = tmp_path_factory.mktemp("chdb")
    try:
        anchor = ChdbWarehouse(path, database="anchor")
    except WarehouseUnavailable as exc:
        pytest.fail(
            f"cannot open a chDB directory for the warehouse tests: {exc}\n"
            "chDB serves one data directory per process: an earlier test left another one open "
            "(close its warehouse), or run `pytest tests/warehouse` on its own.",
            pytrace=False,
        )
    yield path
    anchor.close()


@pytest.fixture
def fresh_db(chdb_dir: Path) -> Iterator[ChdbWarehouse]:
    """A warehouse on an empty, uniquely named database (no tables yet)."""
    wh = ChdbWarehouse(chdb_dir, database=f"t_{uuid.uuid4().hex[:10]}")
    yield wh
    wh.execute(f"DROP DATABASE IF EXISTS {wh.database} SYNC")
    wh.close()


@pytest.fixture
def wh(fresh_db: ChdbWarehouse) -> ChdbWarehouse:
    """A warehouse with every migration applied."""
    apply_migrations(fresh_db)
    return fresh_db


def run_child(code: str, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh Python process (its own chDB engine) from the repository root."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
