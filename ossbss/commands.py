"""Core verbs: ``up`` (run the pipeline locally) and ``sql`` (read-only SQL on the warehouse)."""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import signal
import sys
import threading
import time
from typing import Any

from ossbss.config import ConfigError, load_config

UP_EPILOG = """\
examples:
  ossbss up                      run until Ctrl-C, then drain and print a summary
  ossbss up --duration 60        run the simulators for 60 s, drain, print a summary, stop
  ossbss up --fresh              wipe var/ (local Kafka and ClickHouse data) before starting

While it runs, `ossbss sql "SELECT ..."` in another terminal queries the live warehouse.
"""

SQL_EPILOG = """\
examples:
  ossbss sql "SELECT count() FROM rated_usage"
  ossbss sql "SELECT device, if_index, avg(in_bps_avg) FROM interface_rates_1m FINAL GROUP BY 1, 2" --format csv
  ossbss sql "SELECT account, sum(amount) FROM rated_usage FINAL GROUP BY account" --format json

Only read-only statements run. While `ossbss up` is running, the query is answered by the running
pipeline (it owns the embedded ClickHouse); otherwise the warehouse is opened directly.
"""


def register(subparsers: Any) -> None:
    up = subparsers.add_parser(
        "up",
        help="run the whole pipeline locally on simulated devices and usage (embedded defaults)",
        description="Start Kafka, the warehouse, the stream worker, the sink and the simulators; show progress; "
        "on stop (after --duration, or Ctrl-C) drain every record into ClickHouse and print a summary.",
        epilog=UP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    up.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="run the simulators this long, then drain and stop (default: until Ctrl-C)",
    )
    up.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="stream worker processes to start, sharing the partitions (default: streams.workers, 1); "
        "one core each, at most kafka.partitions",
    )
    up.add_argument("--fresh", action="store_true", help="delete var/ data (Kafka, ClickHouse, state) before starting")
    up.add_argument("--keep-kafka", action="store_true", help="leave the local Kafka broker running afterwards")
    up.add_argument(
        "--drain-timeout",
        type=float,
        default=180.0,
        metavar="SECONDS",
        help="how long to wait for the pipeline to drain at the end (default: 180)",
    )
    up.set_defaults(func=run_up)

    sql = subparsers.add_parser(
        "sql",
        help="run read-only SQL on the warehouse and print the result",
        description="Run a read-only SQL query on the ClickHouse warehouse and print a table, CSV or JSON.",
        epilog=SQL_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sql.add_argument("query", help="the SQL query (SELECT, SHOW, DESCRIBE, EXPLAIN)")
    sql.add_argument("--format", choices=["table", "csv", "json"], default="table", help="output format")
    sql.add_argument("--warehouse", metavar="URL", help="warehouse URL (default: warehouse.url from the config)")
    sql.set_defaults(func=run_sql)

    worker = subparsers.add_parser(
        "worker",
        help="run one pipeline component in the foreground (for production and scale-out)",
        description="Run one component against the configured Kafka and warehouse until SIGTERM. Run N copies of "
        "a component to share its topics' partitions (same consumer group).",
    )
    worker.add_argument(
        "component",
        choices=["collectors", "streams", "sink", "assurance"],
        help="collectors: the SNMP, trap, gNMI and usage-file collectors of the config's `collectors:` section; "
        "streams: the faust-streaming worker (rates, windows, rating); "
        "sink: Kafka -> ClickHouse batched, idempotent writer; "
        "assurance: anomaly detection, fault prediction and alerts, with the notifier that sends them "
        "(webhooks, Alertmanager, tickets) as configured in the `assurance:` section",
    )
    worker.add_argument("--loglevel", default="warn", choices=["crit", "error", "warn", "info", "debug"])
    worker.set_defaults(func=run_worker)

    migrate = subparsers.add_parser(
        "migrate",
        help="apply the warehouse migrations (ClickHouse schema) and exit",
        description="Apply warehouse/migrations/*.sql in order, recording each in schema_migrations; re-running is "
        "a no-op. Also applies warehouse.samples_ttl_days.",
    )
    migrate.set_defaults(func=run_migrate)


def _load(args: argparse.Namespace):
    try:
        return load_config(args.config)
    except ConfigError as exc:
        print(f"ossbss: invalid configuration: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def run_up(args: argparse.Namespace) -> int:
    from ossbss.pipeline import LocalPipeline, PipelineError

    config = _load(args)
    if args.workers is not None:
        try:
            config = dataclasses.replace(
                config, streams=dataclasses.replace(config.streams, workers=args.workers)
            ).validate()
        except ConfigError as exc:
            print(f"ossbss: --workers {args.workers}: {exc}", file=sys.stderr)
            return 2
    if args.fresh and config.var_path.exists():
        for name in ("kafka", "clickhouse", "streams"):
            target = config.var_path / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    pipeline = LocalPipeline(config, args.config)
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    started = time.monotonic()
    tty = sys.stderr.isatty()

    def show(phase: str) -> None:
        line = pipeline.progress_line(time.monotonic() - started, phase)
        print(("\r" + line) if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)

    try:
        pipeline.start()
        pipeline.say(
            f"running: {config.simulator.devices} devices x {config.simulator.interfaces} interfaces every "
            f"{config.simulator.interval_s:g}s, {config.usage.records_per_s:g} usage records/s"
            + (f" for {args.duration:g}s" if args.duration else " until Ctrl-C")
        )
        started = time.monotonic()
        pipeline.start_generators()
        last = 0.0
        while not stop.is_set():
            elapsed = time.monotonic() - started
            if args.duration is not None and elapsed >= args.duration:
                break
            pipeline.check_alive()
            if elapsed - last >= (1.0 if tty else 5.0):
                show("running")
                last = elapsed
            stop.wait(0.2)
        if tty:
            print(file=sys.stderr)
        pipeline.say("stopping the simulators and draining the pipeline ...")
        pipeline.stop_generators()
        ticks = [0.0]

        def tick() -> None:
            if time.monotonic() - ticks[0] >= (1.0 if tty else 5.0):
                show("draining")
                ticks[0] = time.monotonic()

        drained = pipeline.drain(timeout=args.drain_timeout, on_tick=tick)
        if tty:
            print(file=sys.stderr)
        if not drained:
            pipeline.say(
                f"the pipeline did not drain within {args.drain_timeout:g}s ({pipeline.drain_status}); "
                f"the summary may be partial; see {pipeline.var / 'log'} for the worker's log"
            )
        summary = pipeline.summarise(time.monotonic() - started, drained)
        print_summary(summary, pipeline.run_id)
        return 0 if (drained and summary.usage_accounted) else 1
    except PipelineError as exc:
        print(f"\nossbss: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, previous)
        pipeline.stop(keep_kafka=args.keep_kafka)


def print_summary(summary: Any, run_id: str) -> None:
    g = summary.generated
    out = sys.stdout
    print(f"\nrun {run_id}: {summary.seconds:.0f}s", file=out)
    print(
        f"  telemetry samples produced : {g.samples:,} simulated + {g.gnmi_samples:,} records streamed over gNMI",
        file=out,
    )
    print(f"  usage records produced     : {g.usage:,} ({g.usage_bad:,} deliberately bad)", file=out)
    print(f"  usage rated (this run)     : {summary.usage_rated:,}", file=out)
    print(f"  usage dead-lettered        : {summary.usage_dead_letters:,}", file=out)
    verdict = "OK" if summary.usage_accounted else "MISMATCH"
    print(f"  rated + dead-lettered == produced: {verdict}", file=out)
    if summary.rates_in_bps_avg is not None:
        print(
            f"  average inbound rate of the simulated routers: {summary.rates_in_bps_avg / 1e6:,.3f} Mbit/s",
            file=out,
        )
    print("  rows in ClickHouse (all runs):", file=out)
    for table, n in summary.table_rows.items():
        print(f"    {table:20} {n:,}", file=out)
    if g.link_faults or summary.alerts_by_name:
        print(f"  gNMI links taken down      : {g.link_faults:,} (simulator.gnmi_link_fault_every_s)", file=out)
        print(
            "  alerts (all runs)          : "
            + (
                ", ".join(
                    f"{name} {opened:,} opened / {resolved:,} resolved"
                    for name, opened, resolved in summary.alerts_by_name
                )
                or "none yet"
            ),
            file=out,
        )
    if summary.dead_letters_by_reason:
        print("  dead letters by reason (all runs):", file=out)
        for stage, reason, n in summary.dead_letters_by_reason:
            print(f"    {n:6,}  [{stage}] {reason[:100]}", file=out)
    print('\nquery it: ossbss sql "SELECT count() FROM rated_usage"', file=out)


def run_sql(args: argparse.Namespace) -> int:
    from warehouse.base import QueryError, WarehouseError
    from warehouse.endpoint import run_readonly_query
    from warehouse.format import format_result

    config = _load(args)
    url = args.warehouse or config.warehouse.url
    try:
        result = run_readonly_query(url, args.query)
    except QueryError as exc:
        print(f"ossbss: query refused: {exc}", file=sys.stderr)
        return 1
    except WarehouseError as exc:
        print(f"ossbss: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(format_result(result, args.format))
    return 0


def _bootstrap_or_exit(config: Any) -> str:
    if not config.kafka.bootstrap_servers:
        from ossbss.localstack.kafka import running_broker

        found = running_broker(config.var_path / "kafka")
        if found:
            return found
        print(
            "ossbss: kafka.bootstrap_servers is not set and no local broker is running; set it in the config, "
            "or start one with `python -m ossbss.localstack.kafka start`",
            file=sys.stderr,
        )
        raise SystemExit(2)
    return str(config.kafka.bootstrap_servers)


def run_worker(args: argparse.Namespace) -> int:
    config = _load(args)
    bootstrap = _bootstrap_or_exit(config)
    if args.component == "collectors":
        return run_collectors_worker(config, bootstrap)
    if args.component == "assurance":
        from assurance.service import run_assurance_worker

        return run_assurance_worker(config, bootstrap)
    if args.component == "streams":
        import faust

        from streams.app import create_app, tune_gc_for_streaming

        app = create_app(config, bootstrap)
        tune_gc_for_streaming()
        faust.Worker(app, loglevel=args.loglevel, quiet=True).execute_from_commandline()
        return 0
    from ossbss.kafkautil import ensure_topics
    from ossbss.pipeline import metrics_for
    from warehouse import open_warehouse
    from warehouse.endpoint import endpoint_state_file, serve_sql
    from warehouse.migrate import apply_migrations
    from warehouse.sink import WarehouseSink
    from warehouse.urls import parse_warehouse_url

    client = config.kafka.client_config(bootstrap)
    ensure_topics(client, config.kafka.partitions)
    wh = open_warehouse(config.warehouse.url)
    apply_migrations(wh, telemetry_ttl_days=config.warehouse.samples_ttl_days)
    parsed = parse_warehouse_url(config.warehouse.url)
    endpoint = serve_sql(wh, endpoint_state_file(parsed.path)) if parsed.driver == "chdb" and parsed.path else None
    sink = WarehouseSink(client, wh, config.sink)
    metrics = metrics_for(sink, wh, client, config).start()
    if metrics.port:
        print(
            f"ossbss: Prometheus metrics on http://{config.sink.metrics_host}:{metrics.port}/metrics", file=sys.stderr
        )
    signal.signal(signal.SIGTERM, lambda *_: sink.stop())
    signal.signal(signal.SIGINT, lambda *_: sink.stop())
    print(f"ossbss: sink consuming from {bootstrap} into {config.warehouse.url}", file=sys.stderr)
    try:
        sink.run()
    finally:
        metrics.stop()
        if endpoint is not None:
            endpoint.stop()
        wh.close()
    return 0


def run_migrate(args: argparse.Namespace) -> int:
    from warehouse import open_warehouse
    from warehouse.base import WarehouseError
    from warehouse.migrate import apply_migrations

    config = _load(args)
    try:
        wh = open_warehouse(config.warehouse.url)
        applied = apply_migrations(wh, telemetry_ttl_days=config.warehouse.samples_ttl_days)
        wh.close()
    except WarehouseError as exc:
        print(f"ossbss: migration failed: {exc}", file=sys.stderr)
        return 1
    print(f"ossbss: applied {len(applied)} migration(s){': ' + ', '.join(applied) if applied else ''}")
    return 0


def run_collectors_worker(config: Any, bootstrap: str) -> int:
    """Run the configured collectors until SIGTERM/Ctrl-C, with a status line every 30 s."""
    import asyncio

    from collectors.base import CollectorConfigError, PublisherSink, build_collector, parse_collectors, run_collectors
    from collectors.publish import RecordPublisher

    client = config.kafka.client_config(bootstrap)
    try:
        configs = parse_collectors(config.extra.get("collectors"))
    except CollectorConfigError as exc:
        print(f"ossbss: invalid configuration: {exc}", file=sys.stderr)
        return 2
    if not configs:
        print("ossbss: no `collectors:` in the configuration; see collectors/example.yaml", file=sys.stderr)
        return 2
    sink = PublisherSink(RecordPublisher(bootstrap, **client))
    try:
        collectors = [
            build_collector(c, sink, config_key=f"collectors[{i}]", kafka=client) for i, c in enumerate(configs)
        ]
    except CollectorConfigError as exc:
        print(f"ossbss: {exc}", file=sys.stderr)
        return 2

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

        async def report() -> None:
            while not stop.is_set():
                await asyncio.sleep(30)
                for collector, cfg in zip(collectors, configs, strict=True):
                    st = collector.stats
                    line = (
                        f"ossbss: {cfg.name or cfg.type}: {st.records:,} records, {st.polls:,} polls, "
                        f"{st.errors:,} errors, {st.dead_letters:,} dead letters"
                    )
                    print(line + (f" (last error: {st.last_error})" if st.last_error else ""), file=sys.stderr)

        reporter = asyncio.create_task(report())
        try:
            await run_collectors(collectors, stop)
        finally:
            reporter.cancel()

    print(f"ossbss: running {len(collectors)} collector(s) into {bootstrap}", file=sys.stderr)
    asyncio.run(main())
    sink.flush()
    return 0
