"""The pipeline's own metrics: consumer lag, records in and out, dead letters, batch latency.

A :class:`PipelineMetrics` reporter samples the sink's counters and the consumer groups' lag every
``interval_s``; it writes each sample to ClickHouse ``pipeline_metrics`` (for the Pipeline health
dashboard) and serves the latest values in the Prometheus text format on ``/metrics``.
Metric names (shared with the dashboard): ``consumer_lag`` (gauge, per group and topic),
``records_in`` and ``records_out`` (records since the previous sample, per topic or table),
``dead_letters`` (since the previous sample), ``batch_latency_ms`` (last flush).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from http.server import ThreadingHTTPServer
from typing import Any

from ossbss.kafkautil import LagProbe
from ossbss.prometheus import gauge_text, serve_metrics
from warehouse.base import Warehouse, WarehouseError
from warehouse.rows import PipelineMetric, columns_for
from warehouse.sink import WarehouseSink

log = logging.getLogger("ossbss.metrics")


class PipelineMetrics:
    def __init__(
        self,
        sink: WarehouseSink,
        warehouse: Warehouse,
        client_config: dict[str, Any],
        groups: dict[str, list[str]],
        *,
        interval_s: float = 10.0,
        port: int = 0,
        host: str = "127.0.0.1",
        worker: str = "",
    ) -> None:
        self.sink = sink
        self.warehouse = warehouse
        self.client_config = client_config
        self.groups = groups  # consumer group -> topics whose lag is reported
        self.interval_s = interval_s
        self.worker = worker or socket.gethostname()
        self.latest: list[PipelineMetric] = []
        self._previous_in: dict[str, int] = {}
        self._previous_out: dict[str, int] = {}
        self._previous_dead = 0
        # One lag probe per group for the reporter's life (a new client per sample cost the broker about
        # 40 ms each time, see LagProbe); the lock lets a caller's sample() run beside the loop's.
        self._probes: dict[str, LagProbe] = {}
        self._probes_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="pipeline-metrics", daemon=True)
        self._server: ThreadingHTTPServer | None = None
        if port:
            self._serve(host, port)

    @property
    def port(self) -> int | None:
        return self._server.server_address[1] if self._server else None

    def start(self) -> PipelineMetrics:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval_s + 5)
        with self._probes_lock:
            for probe in self._probes.values():
                probe.close()
            self._probes.clear()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sample()
            except Exception as exc:  # metrics never take the pipeline down
                log.warning("pipeline metrics: %s", exc)

    def sample(self) -> list[PipelineMetric]:
        """Take one sample of every metric, write it to ClickHouse and keep it for /metrics."""
        now = int(time.time() * 1000)
        stats = self.sink.stats
        out: list[PipelineMetric] = []

        def add(stage: str, metric: str, value: float, **labels: str) -> None:
            out.append(
                PipelineMetric(ts_ms=now, worker=self.worker, stage=stage, metric=metric, value=value, labels=labels)
            )

        for topic, total in list(stats.consumed.items()):
            add("sink", "records_in", total - self._previous_in.get(topic, 0), topic=topic)
            self._previous_in[topic] = total
        for table, total in list(stats.rows.items()):
            add("sink", "records_out", total - self._previous_out.get(table, 0), table=table)
            self._previous_out[table] = total
        add("sink", "dead_letters", stats.dead_letters - self._previous_dead)
        self._previous_dead = stats.dead_letters
        add("sink", "batch_latency_ms", stats.last_batch_ms)
        for group, topics in self.groups.items():
            for topic, lag in self._lag(group, topics).items():
                add(group, "consumer_lag", lag, group=group, topic=topic)
        self.latest = out
        try:
            self.warehouse.insert_columns("pipeline_metrics", columns_for("pipeline_metrics", out))
        except WarehouseError as exc:
            log.warning("pipeline metrics not written to ClickHouse: %s", exc)
        return out

    def _lag(self, group: str, topics: list[str]) -> dict[str, int]:
        with self._probes_lock:
            probe = self._probes.get(group)
            if probe is None:
                probe = self._probes[group] = LagProbe(self.client_config, group)
            return probe.lag(topics)

    def prometheus_text(self) -> str:
        # Every value is a sampled gauge (the *_in/_out ones count records since the last sample).
        return gauge_text(
            (f"ossbss_{m.metric}", {"worker": self.worker, "stage": m.stage, **m.labels}, m.value) for m in self.latest
        )

    def _serve(self, host: str, port: int) -> None:
        self._server = serve_metrics(self.prometheus_text, host, port)
