"""Every dashboard query runs on the real ClickHouse engine (chDB) over the migrated schema.

Grafana turns a panel's SQL into what ClickHouse runs in two steps: the browser side of the
ClickHouse plugin resolves ``$__conditionalAll(...)`` and the template variables (arrays joined as
``'a','b'``), then the plugin's backend expands its macros. :func:`expand_sql` does both the same
way (macro texts as in grafana-clickhouse-datasource 4.x ``pkg/macros/macros.go``), so a query that
ClickHouse would reject, or that reads a column the migrations do not create, fails here.

Variables are resolved as Grafana does: in dashboard order, each query variable by running its own
SQL, then either "All" or the first value it returned. Each panel runs under both choices and, where
the dashboard picks a rates table from the time range, on each of the three rates tables. Small
fixture rows are inserted first, so time series also have to return rows with a ``time`` column in
order, which is what the plugin needs to draw them.

The engine runs in a child process: chDB serves one data directory per process, and other test
modules keep their own open.
"""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.dashboards.grafana_files import (
    REPO_ROOT,
    DashboardTarget,
    dashboard_files,
    load_dashboard,
    migration_tables,
    table_references,
)

RANGE_S = 6 * 3600  # the panels run over the last 6 hours ...
INTERVAL_S = 60  # ... with Grafana's interval at one minute
RATES_TABLES = ("interface_rates_1m", "interface_rates_5m", "interface_rates_1h")
# Hidden variables whose value the test overrides with each of these tables, so all are checked.
TABLE_VARIABLES = {"rates_table": RATES_TABLES}
REPLY_TIMEOUT_S = 60.0

# Functions whose result changes when a ReplacingMergeTree row is still present in two copies.
_DUPLICATE_SENSITIVE = re.compile(r"\b(count|countIf|sum|sumIf|avg|avgIf|uniq\w*|quantile\w*)\s*\(", re.IGNORECASE)

FIXTURES = [
    # 1-minute rates: 2 devices x 3 interfaces x 90 minutes; ge-0/0/3 has no known speed.
    """
    INSERT INTO interface_rates_1m (id, device, if_index, window_start, if_name, samples,
        in_bps_avg, in_bps_max, in_bps_p95, out_bps_avg, out_bps_max, out_bps_p95,
        in_util_pct_avg, out_util_pct_avg, in_errors, out_errors, in_discards, out_discards,
        speed_bps, revision)
    SELECT concat(device, '/', toString(if_index), '/', toString(toUnixTimestamp64Milli(window_start))),
        device, if_index, window_start, concat('ge-0/0/', toString(if_index)), 12,
        1e8 * if_index, 1.5e8 * if_index, 1.2e8 * if_index, 4e7, 6e7, 5e7,
        multiIf(if_index = 3, NULL, device = 'router-1' AND if_index = 2, 95, 10), if(if_index = 3, NULL, 4),
        if(number % 7 = 0, 3, 0), 0, if(number % 11 = 0, 2, 0), 1,
        if(if_index = 3, NULL, 1000000000), 1
    FROM
    (
        SELECT number,
            concat('router-', toString(number % 2 + 1)) AS device,
            toUInt32(intDiv(number, 2) % 3 + 1) AS if_index,
            toDateTime64(toStartOfMinute(now()), 3, 'UTC') - toIntervalMinute(intDiv(number, 6) + 1) AS window_start
        FROM numbers(540)
    )
    """,
    """
    INSERT INTO telemetry_samples (id, device, if_index, ts, if_name, in_octets, out_octets, counter_bits, source)
    SELECT concat('s-', toString(number)), 'router-1', 1, now64(3, 'UTC') - toIntervalSecond(number * 5),
        'ge-0/0/1', number * 1000, number * 400, 64, 'fixture'
    FROM numbers(10)
    """,
    """
    INSERT INTO fault_events (id, device, ts, kind, trap_oid, if_index, varbinds, source)
    SELECT concat('f-', toString(number)), concat('router-', toString(number % 2 + 1)),
        now64(3, 'UTC') - toIntervalMinute(number * 9), ['linkDown', 'linkUp'][number % 2 + 1],
        '1.3.6.1.6.3.1.1.5.3', toUInt32(1), map('ifIndex', '1'), 'fixture'
    FROM numbers(20)
    """,
    """
    INSERT INTO usage_records (id, account, service, start, end, bytes_up, bytes_down, duration_s,
        destination, event_type, source)
    SELECT concat('u-', toString(number)), concat('acct-', toString(number % 5)),
        ['internet', 'voice'][number % 2 + 1], now64(3, 'UTC') - toIntervalMinute(number * 7),
        now64(3, 'UTC') - toIntervalMinute(number * 7) + toIntervalSecond(60),
        1000 * number, 5000 * number, NULL, '', 'data', 'fixture'
    FROM numbers(40)
    """,
    # Rated usage, and a rerating (rating_version 2) of the first five records.
    """
    INSERT INTO rated_usage (id, account, service, start, end, quantity, unit, amount, currency, plan,
        plan_version, rating_version, rated_at, breakdown)
    SELECT concat('u-', toString(number)), concat('acct-', toString(number % 5)),
        ['internet', 'voice'][number % 2 + 1], now64(3, 'UTC') - toIntervalMinute(number * 7),
        now64(3, 'UTC') - toIntervalMinute(number * 7) + toIntervalSecond(60),
        toDecimal128(6000 * number, 9), 'byte', toDecimal64(number, 6) / 4, if(number % 3 = 0, 'USD', 'EUR'),
        'data-basic', 1, 1, now64(3, 'UTC'), ''
    FROM numbers(40)
    """,
    """
    INSERT INTO rated_usage (id, account, service, start, end, quantity, unit, amount, currency, plan,
        plan_version, rating_version, rated_at, breakdown)
    SELECT id, account, service, start, end, quantity, unit, amount * 2, currency, plan, 2, 2, now64(3, 'UTC'), ''
    FROM rated_usage
    WHERE id IN ('u-0', 'u-1', 'u-2', 'u-3', 'u-4')
    """,
    """
    INSERT INTO dead_letters (id, topic, partition, offset, stage, reason, payload, payload_encoding, ts)
    SELECT concat('dl-', toString(number)),
        ['usage.records', 'telemetry.samples', 'usage.rated'][number % 3 + 1], 0, number,
        ['rating', 'interface_rates', 'sink'][number % 3 + 1],
        concat('start_ms ', toString(1700000000000 + number), ' is in the future'),
        '{"id": "broken"}', 'utf-8', now64(3, 'UTC') - toIntervalMinute(number * 5)
    FROM numbers(30)
    """,
    """
    INSERT INTO pipeline_metrics (ts, worker, stage, metric, value, labels)
    SELECT now64(3, 'UTC') - toIntervalSecond(number * 30), ['streams-1', 'sink-1'][number % 2 + 1],
        ['interface_rates', 'sink'][number % 2 + 1], metric, toFloat64(number % 50),
        map('topic', 'telemetry.samples')
    FROM numbers(240)
    ARRAY JOIN ['consumer_lag', 'records_in', 'records_out', 'batch_latency_ms'] AS metric
    """,
    """
    INSERT INTO alerts (id, fingerprint, name, status, severity, device, if_index, summary, starts, ends,
        updated, labels)
    SELECT id, fingerprint, name, status, severity, device, if_index, summary, starts, ends, updated, labels
    FROM
    (
        SELECT 'fp-1/firing' AS id, 'fp-1' AS fingerprint, 'InterfaceSaturated' AS name, 'firing' AS status,
            'major' AS severity, 'router-1' AS device, toNullable(toUInt32(2)) AS if_index,
            'ge-0/0/2 above 90 %' AS summary, now64(3, 'UTC') - INTERVAL 30 MINUTE AS starts,
            CAST(NULL AS Nullable(DateTime64(3, 'UTC'))) AS ends, starts AS updated,
            map('team', 'noc') AS labels
        UNION ALL
        SELECT 'fp-2/resolved', 'fp-2', 'InterfaceDown', 'resolved', 'critical', 'router-2',
            toNullable(toUInt32(1)), 'ge-0/0/1 down', now64(3, 'UTC') - INTERVAL 2 HOUR,
            now64(3, 'UTC') - INTERVAL 1 HOUR, now64(3, 'UTC') - INTERVAL 1 HOUR, map('team', 'noc')
    )
    """,
]

# Runs in the child: open a fresh chDB directory, migrate, load fixtures, fill the roll-ups, then
# answer one JSON-encoded query per stdin line with one JSON line (rows, or the engine's error).
_CHILD = r"""
import json, sys
from warehouse import open_warehouse
from warehouse.migrate import apply_migrations
from warehouse.rollups import refresh_rollups

wh = open_warehouse("chdb://" + sys.argv[1])
apply_migrations(wh)
for statement in json.loads(sys.stdin.readline()):
    wh.execute(statement)
refresh_rollups(wh)
engines = wh.query("SELECT name, engine FROM system.tables WHERE database = currentDatabase()").rows
print(json.dumps({"engines": {name: engine for name, engine in engines}}), flush=True)
for line in sys.stdin:
    sql = json.loads(line)
    try:
        result = wh.query(sql, readonly=True)
        reply = {"columns": result.columns, "types": result.types, "rows": result.rows[:200],
                 "row_count": len(result.rows)}
    except Exception as exc:
        reply = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(reply, default=str), flush=True)
wh.close()
"""


class Engine:
    """The child process's chDB engine, one query at a time."""

    def __init__(self, data_dir: Path, log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(data_dir)],
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        self._send(FIXTURES)
        self.engines: dict[str, str] = self._receive()["engines"]

    def _send(self, payload: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(payload) + "\n")
        self.proc.stdin.flush()

    def _receive(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], REPLY_TIMEOUT_S)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.proc.kill()
            self._log.flush()
            raise RuntimeError(
                "the chDB child process did not answer (is chdb installed in the project venv?):\n"
                + self.log_path.read_text()[-4000:]
            )
        return json.loads(line)

    def query(self, sql: str) -> dict[str, Any]:
        self._send(sql)
        return self._receive()

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    work = tmp_path_factory.mktemp("dashboards-chdb")
    try:
        eng = Engine(work / "clickhouse", work / "child.log")
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield eng
    eng.close()


# ---- Grafana's expansion of a query -------------------------------------------------------------


@dataclass
class Variable:
    """A resolved template variable: the values chosen, and whether that choice is "All"."""

    values: list[str]
    is_all: bool = False


@dataclass(frozen=True)
class TimeRange:
    start: int  # Unix seconds, as the plugin's macros use them
    end: int
    interval_s: int = INTERVAL_S


def _macro_args(sql: str, open_paren: int) -> tuple[list[str], int]:
    """Arguments of the call whose ``(`` is at ``open_paren`` (split on top-level commas), and its end."""
    depth, args, last = 0, [], open_paren + 1
    for index in range(open_paren, len(sql)):
        char = sql[index]
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                args.append(sql[last:index])
                return args, index + 1
        elif char == "," and depth == 1:
            args.append(sql[last:index])
            last = index + 1
    raise ValueError(f"unbalanced parentheses after position {open_paren}")


def apply_conditional_all(sql: str, variables: dict[str, Variable]) -> str:
    """``$__conditionalAll(condition, $var)``: the condition, or ``1=1`` when ``var`` is "All"."""
    macro = "$__conditionalAll("
    while (start := sql.rfind(macro)) != -1:
        args, end = _macro_args(sql, start + len(macro) - 1)
        if len(args) != 2:
            raise ValueError(f"$__conditionalAll takes 2 arguments, got {len(args)}: {sql[start:end]}")
        name = re.search(r"\$\{?(\w+)", args[1])
        if name is None or name.group(1) not in variables:
            raise ValueError(f"$__conditionalAll names no dashboard variable: {args[1]!r}")
        phrase = "1=1" if variables[name.group(1)].is_all else args[0]
        sql = sql[:start] + phrase + sql[end:]
    return sql


def _format(values: list[str], fmt: str | None) -> str:
    if fmt == "singlequote":
        return ",".join("'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'" for v in values)
    if fmt == "csv":
        return ",".join(values)
    if fmt not in (None, "raw"):
        raise ValueError(f"variable format {fmt!r} is not emulated by this test")
    # The plugin's own default: several values become 'a','b'; one value stays as it is.
    return "'" + "','".join(values) + "'" if len(values) > 1 else values[0]


_VARIABLE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\[\[(\w+)(?::(\w+))?\]\]|\$(?!__)(\w+)")


def substitute_variables(sql: str, variables: dict[str, Variable]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3) or match.group(5)
        fmt = match.group(2) or match.group(4)
        if name not in variables:
            raise ValueError(f"${name} is not a variable of this dashboard (defined before use)")
        return _format(variables[name].values, fmt)

    return _VARIABLE.sub(replace, sql)


def _macro_texts(time_range: TimeRange) -> dict[str, Callable[[list[str]], str]]:
    start, end, step = time_range.start, time_range.end, time_range.interval_s

    def one(args: list[str]) -> str:
        if len(args) != 1 or not re.fullmatch(r"\s*\w+\s*", args[0]):
            raise ValueError(f"expected one column name, got {args}")
        return args[0].strip()

    return {
        "timeFilter": lambda a: f"{one(a)} >= toDateTime({start}) AND {one(a)} <= toDateTime({end})",
        "timeFilter_ms": lambda a: (
            f"{one(a)} >= fromUnixTimestamp64Milli({start * 1000}) AND "
            f"{one(a)} <= fromUnixTimestamp64Milli({end * 1000})"
        ),
        "fromTime": lambda a: f"toDateTime({start})",
        "toTime": lambda a: f"toDateTime({end})",
        "fromTime_ms": lambda a: f"fromUnixTimestamp64Milli({start * 1000})",
        "toTime_ms": lambda a: f"fromUnixTimestamp64Milli({end * 1000})",
        "timeInterval": lambda a: f"toStartOfInterval(toDateTime({one(a)}), INTERVAL {step} second)",
        "timeInterval_ms": lambda a: (
            f"toStartOfInterval(toDateTime64({one(a)}, 3), INTERVAL {step * 1000} millisecond)"
        ),
        "interval_s": lambda a: str(step),
    }


_MACRO = re.compile(r"\$__(\w+)")


def apply_backend_macros(sql: str, time_range: TimeRange) -> str:
    texts = _macro_texts(time_range)
    out, pos = [], 0
    for match in _MACRO.finditer(sql):
        if match.start() < pos:
            continue
        name = match.group(1)
        if name not in texts:
            raise ValueError(f"unknown or unemulated macro $__{name}")
        args: list[str] = []
        end = match.end()
        if end < len(sql) and sql[end] == "(":
            args, end = _macro_args(sql, end)
        out.append(sql[pos : match.start()] + texts[name](args))
        pos = end
    return "".join(out) + sql[pos:]


def expand_sql(sql: str, variables: dict[str, Variable], time_range: TimeRange) -> str:
    """``sql`` as ClickHouse receives it from Grafana."""
    sql = apply_conditional_all(sql, variables)
    sql = substitute_variables(sql, variables)
    sql = apply_backend_macros(sql, time_range)
    if "$" in sql:
        raise ValueError(f"unexpanded $ left in the query:\n{sql}")
    return sql


# ---- scenarios ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """How the variables are set: "all" takes All wherever offered, "first" the first value."""

    choice: str
    overrides: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        return self.choice + "".join(f", {k}={v}" for k, v in self.overrides)


@dataclass
class Resolved:
    variables: dict[str, Variable] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def now_range(seconds: int = RANGE_S) -> TimeRange:
    end = int(time.time()) + 60  # a little ahead, so the newest fixture rows are inside
    return TimeRange(end - seconds, end)


def scenarios(dashboard: dict[str, Any]) -> list[Scenario]:
    names = {v["name"] for v in dashboard.get("templating", {}).get("list", [])}
    overrides: list[tuple[tuple[str, str], ...]] = [()]
    for name, tables in TABLE_VARIABLES.items():
        if name in names:
            overrides = [(*o, (name, table)) for o in overrides for table in tables]
    return [Scenario(choice, o) for choice in ("all", "first") for o in overrides]


def resolve_variables(dashboard: dict[str, Any], scenario: Scenario, engine: Engine, time_range: TimeRange) -> Resolved:
    resolved = Resolved()
    overrides = dict(scenario.overrides)
    for var in dashboard.get("templating", {}).get("list", []):
        name, kind = var["name"], var["type"]
        if kind == "custom":
            options = [part.strip() for part in str(var["query"]).split(",") if part.strip()]
            current = var.get("current", {}).get("value") or options[0]
            resolved.variables[name] = Variable([str(current)])
            continue
        if kind != "query":
            resolved.problems.append(f"variable {name}: type {kind!r} is not emulated by this test")
            continue
        sql = expand_sql(str(var["query"]), resolved.variables, time_range)
        reply = engine.query(sql)
        if "error" in reply:
            resolved.problems.append(f"variable {name} ({scenario}): {reply['error']}\n{sql}")
            continue
        options = [str(row[0]) for row in reply["rows"]]
        if name in overrides:
            resolved.variables[name] = Variable([overrides[name]])
        elif not options:
            resolved.problems.append(f"variable {name} ({scenario}) returned no values on the fixtures:\n{sql}")
        elif scenario.choice == "all" and var.get("includeAll"):
            resolved.variables[name] = Variable(options, is_all=True)
        else:
            resolved.variables[name] = Variable(options[:1])
    return resolved


Resolver = Callable[[str, dict[str, Any], Scenario], Resolved]


@pytest.fixture(scope="module")
def resolver(engine: Engine) -> Resolver:
    """Variables resolved once per dashboard and scenario, shared by that dashboard's panels."""
    cache: dict[tuple[str, Scenario], Resolved] = {}

    def resolved_for(file: str, dashboard: dict[str, Any], scenario: Scenario) -> Resolved:
        if (file, scenario) not in cache:
            cache[file, scenario] = resolve_variables(dashboard, scenario, engine, now_range())
        return cache[file, scenario]

    return resolved_for


# ---- checks ---------------------------------------------------------------------------------------


def check_result(target: DashboardTarget, reply: dict[str, Any]) -> list[str]:
    """What is wrong with a query's result for the panel that shows it."""
    problems = []
    rows, columns, types = reply["rows"], reply["columns"], reply["types"]
    if reply["row_count"] == 0:
        problems.append("returned no rows on the fixtures")
    if target.target.get("format") == 0:  # time series: time first, ascending, at least one number
        if not columns or columns[0] != "time" or not types[0].startswith("DateTime"):
            got = list(zip(columns, types, strict=True))
            problems.append(f"a time series needs a first DateTime column named time, got {got}")
        elif [row[0] for row in rows] != sorted(row[0] for row in rows):
            problems.append("time series rows are not in time order (ORDER BY time)")
        numeric = [t for t in types[1:] if re.match(r"(Nullable\()?(U?Int|Float|Decimal)", t)]
        if not numeric:
            problems.append(f"a time series needs a numeric value column, got {types}")
    return problems


def check_final(sql: str, engines: dict[str, str]) -> list[str]:
    """ReplacingMergeTree tables must be read FINAL when duplicates would change the numbers."""
    plain = re.sub(r"'(?:[^'\\]|\\.)*'", "''", sql)
    if not _DUPLICATE_SENSITIVE.search(plain):
        return []
    problems = []
    for table in table_references(sql):
        read_final = re.search(rf"\b(?:FROM|JOIN)\s+{re.escape(table)}\s+FINAL\b", plain, re.IGNORECASE)
        if "ReplacingMergeTree" in engines.get(table, "") and not read_final:
            problems.append(f"{table} is a ReplacingMergeTree: read it FINAL (a record may still be stored twice)")
    return problems


def test_every_panel_query_runs_on_clickhouse(
    dashboard_target: DashboardTarget, engine: Engine, resolver: Resolver
) -> None:
    known_tables = migration_tables()
    problems: list[str] = []
    for scenario in scenarios(dashboard_target.dashboard):
        resolved = resolver(dashboard_target.file, dashboard_target.dashboard, scenario)
        if resolved.problems:
            problems += resolved.problems
            continue
        try:
            sql = expand_sql(dashboard_target.sql, resolved.variables, now_range())
        except ValueError as exc:
            problems.append(f"[{scenario}] cannot expand: {exc}")
            continue
        unknown = table_references(sql) - known_tables
        if unknown:
            problems.append(f"[{scenario}] reads tables no migration creates: {sorted(unknown)}")
        problems += [f"[{scenario}] {p}" for p in check_final(sql, engine.engines)]
        reply = engine.query(sql)
        if "error" in reply:
            problems.append(f"[{scenario}] ClickHouse refused it: {reply['error'][:1500]}\n--- SQL ---\n{sql}")
            continue
        problems += [f"[{scenario}] {p}\n--- SQL ---\n{sql}" for p in check_result(dashboard_target, reply)]
    assert not problems, f"{dashboard_target.label}:\n" + "\n".join(dict.fromkeys(problems))


def test_every_variable_query_runs_and_returns_values(resolver: Resolver) -> None:
    problems = []
    for path in dashboard_files():
        dashboard = load_dashboard(path)
        for scenario in scenarios(dashboard):
            problems += [f"{path.name}: {p}" for p in resolver(path.name, dashboard, scenario).problems]
    assert not problems, "\n".join(dict.fromkeys(problems))


@pytest.mark.parametrize(
    ("range_s", "expected"),
    [
        (3600, "interface_rates_1m"),
        (6 * 3600, "interface_rates_1m"),
        (24 * 3600, "interface_rates_5m"),
        (3 * 86400, "interface_rates_5m"),
        (30 * 86400, "interface_rates_1h"),
    ],
)
def test_rates_table_follows_the_time_range(engine: Engine, range_s: int, expected: str) -> None:
    dashboard = load_dashboard(REPO_ROOT / "dashboards/grafana/dashboards/noc-interfaces.json")
    (var,) = [v for v in dashboard["templating"]["list"] if v["name"] == "rates_table"]
    reply = engine.query(expand_sql(var["query"], {}, now_range(range_s)))
    assert reply.get("rows") == [[expected]], reply
