"""The local pipeline behind ``ossbss up``: every component, started in order, drained and stopped.

Start order: Kafka (a local broker under ``var/kafka`` unless ``kafka.bootstrap_servers`` is set),
topics, the warehouse (migrations applied) and its SQL endpoint, the stream workers
(``streams.workers`` faust-streaming processes in one consumer group), the sink (a thread of this
process, which owns the embedded ClickHouse), then the simulated device and usage generator. On stop:
the generators stop first, then the pipeline is drained (every produced record processed and in
ClickHouse), then everything stops in reverse order.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from confluent_kafka import KafkaException

from collectors.publish import RecordPublisher
from collectors.simulate import DeviceSimulator, UsageGenerator
from models.topics import TELEMETRY_SAMPLES, USAGE_RECORDS
from ossbss.config import Config, write_config
from ossbss.kafkautil import LagProbe, ensure_topics, group_assignment
from ossbss.localstack.kafka import KafkaBroker, free_port, port_open, running_broker
from ossbss.metrics import PipelineMetrics
from warehouse import open_warehouse
from warehouse.base import Warehouse
from warehouse.endpoint import SqlEndpoint
from warehouse.sink import DEFAULT_ROUTES, WarehouseSink


class PipelineError(RuntimeError):
    """A component failed to start or stopped unexpectedly; the message says which and where to look."""


@dataclass
class GeneratorCounts:
    samples: int = 0
    usage: int = 0
    usage_bad: int = 0
    gnmi_samples: int = 0
    link_faults: int = 0


@dataclass
class RunSummary:
    seconds: float
    generated: GeneratorCounts
    table_rows: dict[str, int] = field(default_factory=dict)
    usage_rated: int = 0
    usage_dead_letters: int = 0
    dead_letters_by_reason: list[tuple[str, str, int]] = field(default_factory=list)
    alerts_by_name: list[tuple[str, int, int]] = field(default_factory=list)
    rates_in_bps_avg: float | None = None
    drained: bool = True

    @property
    def usage_accounted(self) -> bool:
        return self.usage_rated + self.usage_dead_letters == self.generated.usage


class LocalPipeline:
    def __init__(self, config: Config, config_path: str | None, out: TextIO = sys.stderr) -> None:
        self.config = config
        self.config_path = config_path
        self.out = out
        self.var = config.var_path
        self.broker: KafkaBroker | None = None
        self.bootstrap = config.kafka.bootstrap_servers
        # The stream worker processes (streams.workers of them) and their logs, in start order.
        self.workers: list[subprocess.Popen[bytes]] = []
        self.worker_logs: list[Path] = []
        self.assurance: subprocess.Popen[bytes] | None = None
        self.warehouse: Warehouse | None = None
        self.sink: WarehouseSink | None = None
        self.sink_thread: threading.Thread | None = None
        self.endpoint: SqlEndpoint | None = None
        self.metrics: PipelineMetrics | None = None
        self.counts = GeneratorCounts()
        self._stop_generators = threading.Event()
        self._generator_error: BaseException | None = None
        self.run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self.drain_status = ""

    @property
    def worker(self) -> subprocess.Popen[bytes] | None:
        """The first stream worker."""
        return self.workers[0] if self.workers else None

    @property
    def worker_log(self) -> Path:
        """The first stream worker's log."""
        return self.worker_logs[0] if self.worker_logs else self.var / "log" / "streams.log"

    def say(self, text: str) -> None:
        print(f"ossbss: {text}", file=self.out, flush=True)

    # -- start ---------------------------------------------------------------------------------------

    def start(self) -> None:
        self.var.mkdir(parents=True, exist_ok=True)
        (self.var / "log").mkdir(exist_ok=True)
        self._start_kafka()
        self.client_config = self.config.kafka.client_config(self.bootstrap)
        ensure_topics(self.client_config, self.config.kafka.partitions)
        self._start_warehouse()
        self._start_workers()
        self._start_assurance()
        self._start_sink()

    def _start_kafka(self) -> None:
        if self.bootstrap:
            self.say(f"using Kafka at {self.bootstrap}")
            return
        data_dir = self.var / "kafka"
        existing = running_broker(data_dir)
        if existing:
            self.bootstrap = existing
            self.say(f"using the local Kafka broker already running at {existing}")
            return
        port = 9092 if not port_open("127.0.0.1", 9092) else free_port()
        self.say(f"starting Apache Kafka (KRaft, one node) on 127.0.0.1:{port}, data in {data_dir} ...")
        started = time.monotonic()
        self.broker = KafkaBroker(data_dir, port=port, partitions=self.config.kafka.partitions).start()
        self.bootstrap = self.broker.bootstrap_servers
        self.say(f"Kafka is up ({time.monotonic() - started:.1f}s)")

    def _start_warehouse(self) -> None:
        from warehouse.endpoint import endpoint_state_file, serve_sql
        from warehouse.migrate import apply_migrations
        from warehouse.urls import parse_warehouse_url

        url = self.config.warehouse.url
        self.say(f"opening the warehouse {url} and applying migrations ...")
        self.warehouse = open_warehouse(url)
        applied = apply_migrations(self.warehouse, telemetry_ttl_days=self.config.warehouse.samples_ttl_days)
        if applied:
            self.say(f"applied migrations: {', '.join(applied)}")
        parsed = parse_warehouse_url(url)
        if parsed.driver == "chdb" and parsed.path is not None:
            # This process owns the embedded engine: answer `ossbss sql` from other processes.
            self.endpoint = serve_sql(self.warehouse, endpoint_state_file(parsed.path))

    def _start_workers(self) -> None:
        count = self.config.streams.workers
        if count > 1:
            self.say(f"starting {count} stream workers (one consumer group: they share the partitions)")
        for index in range(count):
            self._start_worker(index)

    def _start_worker(self, index: int = 0) -> None:
        """Start stream worker ``index`` (0: the first; its log is streams.log, the others' streams-N.log),
        replacing that worker's process when it ran before (a restart after a crash)."""
        # The worker gets the effective configuration, whatever file or overrides it came from.
        effective = write_config(self.config, self.var / "effective-config.yaml")
        cmd = [sys.executable, "-m", "streams", "--bootstrap", self.bootstrap, "--loglevel", "warn"]
        cmd += ["--config", str(effective)]
        log_path = self.var / "log" / ("streams.log" if index == 0 else f"streams-{index + 1}.log")
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.say(f"starting the stream worker (faust-streaming), log in {log_path}")
        with open(log_path, "ab") as log_file:
            process = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT)
        if index < len(self.workers):
            self.workers[index], self.worker_logs[index] = process, log_path
        else:
            self.workers.append(process)
            self.worker_logs.append(log_path)

    def wait_for_workers(self, timeout: float = 120.0) -> list[set[tuple[str, int]]]:
        """Wait until every stream worker owns partitions of a stable consumer group (the rebalances of
        their start are over); returns each member's (topic, partition)s."""
        deadline = time.monotonic() + timeout
        members: list[set[tuple[str, int]]] = []
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                stable, members = group_assignment(self.client_config, self.config.streams.app_id)
            except KafkaException:  # the group's coordinator is still loading or moving: ask again
                stable = False
            if stable and len([m for m in members if m]) == len(self.workers):
                return members
            time.sleep(0.5)
        raise PipelineError(
            f"the {len(self.workers)} stream worker(s) did not all join the consumer group "
            f"{self.config.streams.app_id!r} within {timeout:g}s (members with partitions: "
            f"{len([m for m in members if m])}); see {self.var / 'log'}"
        )

    def _start_assurance(self) -> None:
        from assurance.config import assurance_config

        if not assurance_config(self.config.extra).enabled:
            return
        effective = self.var / "effective-config.yaml"
        cmd = [sys.executable, "-m", "ossbss.cli", "--config", str(effective), "worker", "assurance"]
        log_path = self.var / "log" / "assurance.log"
        self.say(f"starting the assurance worker (anomalies, fault prediction, alerts), log in {log_path}")
        with open(log_path, "ab") as log_file:
            self.assurance = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT)
        self.assurance_log = log_path

    def _start_sink(self) -> None:
        assert self.warehouse is not None
        self.sink = WarehouseSink(self.client_config, self.warehouse, self.config.sink, DEFAULT_ROUTES)
        self.sink_thread = threading.Thread(target=self.sink.run, name="sink", daemon=True)
        self.sink_thread.start()
        self.metrics = metrics_for(self.sink, self.warehouse, self.client_config, self.config).start()

    # -- generators -----------------------------------------------------------------------------------

    def start_generators(self) -> None:
        thread = threading.Thread(target=self._generate, name="generators", daemon=True)
        thread.start()
        self._generator_thread = thread
        if self.config.simulator.gnmi_devices:
            self._start_gnmi()

    def _start_gnmi(self) -> None:
        """gNMI simulators (real gRPC targets) streamed by the real gNMI collector into Kafka."""
        from collectors.fleet import GnmiFleet

        sim = self.config.simulator
        self.gnmi_fleet: GnmiFleet | None = GnmiFleet(
            self.bootstrap,
            self.client_config,
            devices=sim.gnmi_devices,
            interfaces=sim.interfaces,
            interval_s=sim.interval_s,
        ).start()
        if sim.gnmi_link_fault_every_s and self.gnmi_fleet is not None:
            self.gnmi_fleet.inject_link_faults(sim.gnmi_link_fault_every_s, sim.gnmi_link_fault_s)

    @property
    def gnmi_records(self) -> int:
        fleet = getattr(self, "gnmi_fleet", None)
        return fleet.records if fleet is not None else 0

    def _stop_gnmi(self) -> None:
        fleet = getattr(self, "gnmi_fleet", None)
        if fleet is None:
            return
        fleet.stop()
        self.counts.gnmi_samples = fleet.records
        self.counts.link_faults = fleet.faults_injected
        self.gnmi_fleet = None

    def _generate(self) -> None:
        try:
            self._generate_loop()
        except BaseException as exc:
            self._generator_error = exc

    def _generate_loop(self) -> None:
        sim_cfg, usage_cfg = self.config.simulator, self.config.usage
        publisher = RecordPublisher(self.bootstrap, **self.client_config)
        now_ms = int(time.time() * 1000)
        interval_ms = int(sim_cfg.interval_s * 1000)
        sim = DeviceSimulator(
            devices=sim_cfg.devices,
            interfaces=sim_cfg.interfaces,
            in_bps=sim_cfg.in_bps,
            out_bps=sim_cfg.out_bps,
            speed_bps=sim_cfg.speed_bps,
            start_ms=now_ms - now_ms % interval_ms - interval_ms,
            counter_bits=sim_cfg.counter_bits,
            counter_offset=2**32 - sim_cfg.in_bps if sim_cfg.counter_bits == 32 else 0,
        )
        usage = UsageGenerator(usage_cfg.accounts, usage_cfg.bad_every, usage_cfg.seed, self.run_id)
        next_poll = sim.start_ms + interval_ms
        started = time.monotonic()
        usage_due = 0.0
        while not self._stop_generators.is_set():
            now_ms = int(time.time() * 1000)
            if now_ms >= next_poll:
                self.counts.samples += publisher.publish(
                    TELEMETRY_SAMPLES.name,
                    sim.poll(next_poll),
                    key=lambda r: r.device,  # type: ignore[attr-defined]
                )
                next_poll += interval_ms
            target = (time.monotonic() - started) * usage_cfg.records_per_s
            batch = int(target - usage_due)
            if batch > 0:
                for item in usage.generate(batch, now_ms):
                    publisher.produce_raw(USAGE_RECORDS.name, item.value, item.key)
                    self.counts.usage += 1
                    self.counts.usage_bad += 0 if item.valid else 1
                usage_due += batch
            publisher.poll()
            self._stop_generators.wait(0.05)
        publisher.flush()

    # -- progress, drain, stop ---------------------------------------------------------------------------

    def check_alive(self) -> None:
        for process, log_path in zip(self.workers, self.worker_logs, strict=True):
            if process.poll() is not None:
                raise PipelineError(f"the stream worker exited with code {process.returncode}; see {log_path}")
        if self.assurance is not None and self.assurance.poll() is not None:
            raise PipelineError(
                f"the assurance worker exited with code {self.assurance.returncode}; see {self.assurance_log}"
            )
        if self.sink_thread is not None and not self.sink_thread.is_alive():
            raise PipelineError("the warehouse sink stopped unexpectedly; see the messages above")
        if self._generator_error is not None:
            raise PipelineError(f"the simulators failed: {self._generator_error}")

    def progress_line(self, elapsed: float, phase: str) -> str:
        assert self.sink is not None
        rows = self.sink.stats.rows
        return (
            f"[{elapsed:5.0f}s] {phase:8} samples {self.counts.samples + self.gnmi_records:,}  "
            f"usage {self.counts.usage:,}  "
            f"| rated {rows.get('rated_usage', 0):,}  rates {rows.get('interface_rates_1m', 0):,}  "
            f"dead letters {rows.get('dead_letters', 0):,}  rows in ClickHouse {sum(rows.values()):,}"
        )

    def stop_generators(self) -> None:
        self._stop_gnmi()
        self._stop_generators.set()
        thread = getattr(self, "_generator_thread", None)
        if thread is not None:
            thread.join(timeout=60)

    def drain(self, timeout: float = 120.0, on_tick=None) -> bool:
        """Wait until every produced record went through the worker and the sink, and windows were emitted."""
        deadline = time.monotonic() + timeout
        worker_topics = [TELEMETRY_SAMPLES.name, USAGE_RECORDS.name]
        sink_topics = [r.topic for r in DEFAULT_ROUTES]
        stage = "worker"
        quiet_since: float | None = None
        # One lag probe per group for the whole drain, not new clients every half second (see LagProbe).
        worker_probe = LagProbe(self.client_config, self.config.streams.app_id)
        sink_probe = LagProbe(self.client_config, self.config.sink.group_id)
        try:
            while time.monotonic() < deadline:
                self.check_alive()
                if on_tick:
                    on_tick()
                if stage == "worker":
                    lag = worker_probe.lag(worker_topics)
                    self.drain_status = f"waiting for the stream worker to commit; records not yet committed: {lag}"
                    if sum(lag.values()) == 0:
                        stage = "windows"
                        windows_due = time.monotonic() + self.config.streams.idle_close_s + 2.0
                elif stage == "windows":
                    self.drain_status = "waiting for the idle windows to be emitted"
                    if time.monotonic() >= windows_due:
                        stage = "sink"
                else:
                    lag = sink_probe.lag(sink_topics)
                    self.drain_status = f"waiting for the sink to commit; records not yet in ClickHouse: {lag}"
                    if sum(lag.values()) == 0:
                        # Stay caught up for a moment: the worker may still emit a last window or dead letter.
                        quiet_since = quiet_since or time.monotonic()
                        if time.monotonic() - quiet_since >= 2.0:
                            return True
                    else:
                        quiet_since = None
                time.sleep(0.5)
            return False
        finally:
            worker_probe.close()
            sink_probe.close()

    def stop(self, keep_kafka: bool = False) -> None:
        processes = [*self.workers, self.assurance]
        for process in processes:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            if process is None:
                continue
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.metrics is not None:
            self.metrics.stop()
        if self.sink is not None:
            self.sink.stop()
        if self.sink_thread is not None:
            self.sink_thread.join(timeout=60)
        if self.endpoint is not None:
            with contextlib.suppress(Exception):
                self.endpoint.stop()
        if self.warehouse is not None:
            self.warehouse.close()  # the embedded engine serves one directory per process: release it
        if self.broker is not None and not keep_kafka:
            self.say("stopping Kafka ...")
            self.broker.stop()

    def summarise(self, seconds: float, drained: bool) -> RunSummary:
        assert self.warehouse is not None
        summary = RunSummary(seconds=seconds, generated=self.counts, drained=drained)
        for route in DEFAULT_ROUTES:
            table = route.table
            summary.table_rows[table] = _scalar(self.warehouse, f"SELECT count() FROM {table} FINAL")
        # This run's usage: its ids start with the run id (the warehouse may hold earlier runs too).
        summary.usage_rated = _scalar(
            self.warehouse, f"SELECT count() FROM rated_usage FINAL WHERE startsWith(id, '{self.run_id}')"
        )
        summary.usage_dead_letters = _scalar(
            self.warehouse,
            f"SELECT count() FROM dead_letters FINAL WHERE topic = '{USAGE_RECORDS.name}' "
            f"AND position(payload, '{self.run_id}') > 0",
        )
        rows = self.warehouse.query(
            # Reasons grouped by their wording: quoted values, timestamps and long numbers become '...'.
            "SELECT stage, replaceRegexpAll(reason, "
            "'''[^'']*''|[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z?|[0-9]{5,}', '...') "
            "AS kind, count() AS n FROM dead_letters FINAL GROUP BY stage, kind ORDER BY n DESC LIMIT 10"
        ).rows
        summary.dead_letters_by_reason = [(str(r[0]), str(r[1]), int(r[2])) for r in rows]
        rows = self.warehouse.query(
            "SELECT name, countIf(status = 'firing' AND endsWith(id, ':1')), countIf(status = 'resolved') "
            "FROM alerts FINAL GROUP BY name ORDER BY name"
        ).rows
        summary.alerts_by_name = [(str(r[0]), int(r[1]), int(r[2])) for r in rows]
        avg = self.warehouse.query(
            "SELECT avg(in_bps_avg) FROM interface_rates_1m FINAL WHERE startsWith(device, 'sim-router-')"
        ).rows
        summary.rates_in_bps_avg = float(avg[0][0]) if avg and avg[0][0] is not None else None
        return summary


def metrics_for(sink: WarehouseSink, warehouse: Warehouse, client_config: dict, config: Config) -> PipelineMetrics:
    """The metrics reporter of a sink: its own counters, and the lag of the sink and the stream worker."""
    return PipelineMetrics(
        sink,
        warehouse,
        client_config,
        {
            config.sink.group_id: [r.topic for r in DEFAULT_ROUTES],
            config.streams.app_id: [TELEMETRY_SAMPLES.name, USAGE_RECORDS.name],
        },
        interval_s=config.sink.metrics_interval_s,
        port=config.sink.metrics_port,
        host=config.sink.metrics_host,
    )


def _scalar(warehouse: Warehouse, sql: str) -> int:
    rows = warehouse.query(sql).rows
    return int(rows[0][0]) if rows else 0
