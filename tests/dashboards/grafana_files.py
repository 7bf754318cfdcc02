"""Helpers shared by the deployment-file tests: where the files are, how to read them, and the
table names the warehouse migrations create."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
GRAFANA_DIR = REPO_ROOT / "dashboards" / "grafana"
DASHBOARD_DIR = GRAFANA_DIR / "dashboards"
DATASOURCE_FILE = GRAFANA_DIR / "provisioning" / "datasources" / "clickhouse.yaml"
DASHBOARD_PROVIDER_FILE = GRAFANA_DIR / "provisioning" / "dashboards" / "ossbss.yaml"
MIGRATIONS_DIR = REPO_ROOT / "warehouse" / "migrations"
CLICKHOUSE_PLUGIN = "grafana-clickhouse-datasource"

_CREATED = re.compile(
    r"\bCREATE\s+(?:OR\s+REPLACE\s+)?(?:TABLE|(?:MATERIALIZED\s+)?VIEW|DICTIONARY)\s+(?:IF\s+NOT\s+EXISTS\s+)?"
    r"(?:`?\w+`?\.)?`?(\w+)`?",
    re.IGNORECASE,
)
_SQL_COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)
_STRING_LITERAL = re.compile(r"'(?:[^'\\]|\\.)*'")
# A table after FROM or JOIN: a plain name, a database-qualified one, or a Grafana variable.
_TABLE_REF = re.compile(r"\b(?:FROM|JOIN)\s+(\$\{\w+\}|\$\w+|`?[A-Za-z_][\w.]*`?)", re.IGNORECASE)


@dataclass(frozen=True)
class DashboardTarget:
    """One SQL query of one panel."""

    file: str
    dashboard: dict[str, Any]
    panel: dict[str, Any]
    target: dict[str, Any]

    @property
    def sql(self) -> str:
        return str(self.target.get("rawSql", ""))

    @property
    def label(self) -> str:
        panel = f"panel {self.panel.get('id')} ({self.panel.get('title')!r})"
        return f"{self.file} {panel} query {self.target.get('refId')}"


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARD_DIR.glob("*.json"))


def load_dashboard(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)


def iter_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for panel in panels:
        yield panel
        yield from iter_panels(panel.get("panels") or [])


def iter_targets() -> Iterator[DashboardTarget]:
    for path in dashboard_files():
        dashboard = load_dashboard(path)
        for panel in iter_panels(dashboard.get("panels", [])):
            for target in panel.get("targets") or []:
                yield DashboardTarget(path.name, dashboard, panel, target)


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def provisioned_datasource_uid() -> str:
    (source,) = [ds for ds in load_yaml(DATASOURCE_FILE)["datasources"] if ds["type"] == CLICKHOUSE_PLUGIN]
    return str(source["uid"])


def strip_sql_literals(sql: str) -> str:
    """``sql`` without comments and string literals, so words inside them are not taken for SQL."""
    return _STRING_LITERAL.sub("''", _SQL_COMMENT.sub(" ", sql))


def table_references(sql: str) -> set[str]:
    """Names after FROM / JOIN (subqueries, which start with a parenthesis, are not names)."""
    return {match.strip("`") for match in _TABLE_REF.findall(strip_sql_literals(sql))}


def migration_tables() -> set[str]:
    """Tables and views created by the warehouse migrations."""
    names: set[str] = set()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        text = _SQL_COMMENT.sub(" ", path.read_text(encoding="utf-8"))
        names.update(_CREATED.findall(text))
    return names
