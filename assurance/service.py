"""``ossbss worker assurance``: the assurance worker and the outputs its alerts go to, in one process.

The worker (a thread) produces every alert state change to ``assurance.alerts``; once the broker has
them it hands them to an :class:`~assurance.outputs.AlertDispatcher` running on an asyncio loop in a
second thread, which sends them to the configured webhooks, Alertmanager and ticket systems without
ever blocking the worker. An output that gives up dead-letters the payload to ``ossbss.deadletter``.

Delivery to outputs is at least once: after a crash the worker resumes from its last checkpoint and
emits the alerts since then again, with the same ids (receivers deduplicate on ``id`` or on the
``X-Ossbss-Delivery`` header). A restored partition's open alerts seed Alertmanager's firing set and
the ticket sinks' open set, so nothing is announced twice and Alertmanager keeps them alive.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from http.server import ThreadingHTTPServer
from typing import Any

from assurance.config import AssuranceConfig, assurance_config
from assurance.outputs import (
    AlertDispatcher,
    AlertmanagerClient,
    AlertOutput,
    FailedDelivery,
    Secret,
    TicketSink,
    TicketTemplates,
    WebhookSender,
)
from assurance.rules import PartitionAssurance, shared_fault_model
from assurance.worker import AssuranceWorker
from models.records import Alert
from ossbss.prometheus import gauge_text, serve_metrics

log = logging.getLogger("ossbss.assurance")

BUILTIN_TEMPLATES = ("servicenow", "jira")


def build_outputs(config: AssuranceConfig) -> list[AlertOutput]:
    """The outputs named in the ``assurance:`` section (secrets read now, never logged)."""
    outputs: list[AlertOutput] = []
    if config.alertmanager_url:
        outputs.append(AlertmanagerClient(config.alertmanager_url, resend_interval_s=config.alertmanager_resend_s))
    for i, hook in enumerate(config.webhook_outputs()):
        secret = hook.secret(f"assurance.webhooks[{i}]")
        if not secret:
            raise ValueError(f"assurance.webhooks[{i}]: a webhook needs secret_env or secret_file (it is signed)")
        outputs.append(WebhookSender(hook.url, Secret.of(secret), max_attempts=hook.max_attempts, name=f"webhook-{i}"))
    for i, ticket in enumerate(config.ticket_outputs()):
        secret = ticket.secret(f"assurance.tickets[{i}]")
        if ticket.template in BUILTIN_TEMPLATES:
            templates = TicketTemplates.builtin(ticket.template)
        else:
            templates = TicketTemplates.from_files(ticket.template, ticket.resolve_template or ticket.template)
        outputs.append(
            TicketSink(
                ticket.url,
                templates,
                resolve_url=ticket.resolve_url,
                secret=Secret.of(secret) if secret else None,
                max_attempts=ticket.max_attempts,
                name=f"tickets-{i}",
            )
        )
    return outputs


class AssuranceService:
    """The worker thread and the output loop thread; :meth:`start`, :meth:`stop`."""

    def __init__(self, client_config: dict[str, Any], config: AssuranceConfig) -> None:
        self.config = config
        self.outputs = build_outputs(config)
        self.worker = AssuranceWorker(client_config, config, on_alerts=self._dispatch, on_restored=self._restored)
        self.dispatcher = AlertDispatcher(self.outputs, dead_letter=self._output_failed)
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self._run_loop, name="alert-outputs", daemon=True)
        self._worker_thread = threading.Thread(target=self._run_worker, name="assurance", daemon=True)
        self._started = threading.Event()
        self.error: BaseException | None = None
        self.metrics_server: ThreadingHTTPServer | None = None

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self.dispatcher.start())
        self._started.set()
        self._loop.run_forever()

    def _run_worker(self) -> None:
        try:
            self.worker.run()
        except BaseException as exc:  # surfaced by `alive`, and the process exits non-zero
            self.error = exc
            log.exception("assurance worker stopped")

    def start(self) -> AssuranceService:
        self._loop_thread.start()
        self._started.wait(10)
        self._worker_thread.start()
        if self.config.metrics_port:
            host, port = self.config.metrics_host, self.config.metrics_port
            self.metrics_server = serve_metrics(self.prometheus_text, host, port)
        return self

    @property
    def metrics_port(self) -> int | None:
        server = self.metrics_server
        return server.server_address[1] if server is not None else None

    def prometheus_text(self) -> str:
        """The worker's counters and the outputs' deliveries, as Prometheus gauges."""
        st = self.worker.stats
        group = {"group": self.config.group_id}
        samples: list[tuple[str, dict[str, str], float]] = [
            ("ossbss_assurance_windows", group, st.rates),
            ("ossbss_assurance_fault_events", group, st.faults),
            ("ossbss_assurance_alert_changes", group, st.alerts),
            ("ossbss_assurance_dead_letters", group, st.dead_letters),
            ("ossbss_assurance_checkpoints", group, st.checkpoints),
            ("ossbss_assurance_partitions", group, len(self.worker.partitions)),
        ]
        latencies = sorted(st.alert_latency_s)
        if latencies:
            for q in (0.5, 0.99):
                value = latencies[min(len(latencies) - 1, int(q * len(latencies)))]
                samples.append(("ossbss_assurance_alert_latency_seconds", {**group, "quantile": f"{q:g}"}, value))
        for name, out in self.dispatcher.stats.items():
            labels = {**group, "output": name}
            samples += [
                ("ossbss_alert_output_sent", labels, out.sent),
                ("ossbss_alert_output_failed", labels, out.failed),
                ("ossbss_alert_output_dropped", labels, out.dropped),
            ]
        return gauge_text(samples)

    @property
    def alive(self) -> bool:
        return self._worker_thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        self._worker_thread.join(timeout)

    def stop(self, drain_s: float = 10.0) -> None:
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
            self.metrics_server.server_close()
            self.metrics_server = None
        self.worker.stop()
        self._worker_thread.join(60)
        if self._loop_thread.is_alive():
            future = asyncio.run_coroutine_threadsafe(self.dispatcher.stop(drain=True, timeout_s=drain_s), self._loop)
            try:
                future.result(drain_s + 10)
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._loop_thread.join(10)

    # -- callbacks (worker thread) -----------------------------------------------------------------

    def _dispatch(self, alerts: list[Alert]) -> None:
        if self.outputs:
            self._loop.call_soon_threadsafe(self.dispatcher.submit, alerts)

    def _restored(self, state: PartitionAssurance) -> None:
        open_alerts = state.engine.open_alerts()

        def seed() -> None:
            for output in self.outputs:
                if isinstance(output, AlertmanagerClient):
                    output.seed_firing(open_alerts)
                elif isinstance(output, TicketSink):
                    output.seed_open(open_alerts)

        self._loop.call_soon_threadsafe(seed)

    def _output_failed(self, failure: FailedDelivery) -> None:
        log.warning("alert output %s gave up: %s", failure.output, failure.reason)
        self.worker.publish_dead_letters([failure.to_dead_letter(int(time.time() * 1000))])


def describe_outputs(outputs: Sequence[AlertOutput]) -> str:
    return ", ".join(o.name for o in outputs) or "none (alerts go to Kafka and ClickHouse only)"


def run_assurance_worker(config: Any, bootstrap: str) -> int:
    """Run until SIGTERM/Ctrl-C, with a status line every 30 s."""
    from ossbss.config import ConfigError
    from ossbss.kafkautil import KafkaUnavailable, ensure_topics

    try:
        section = assurance_config(config.extra)
        if section.predict_faults:
            print("ossbss: loading the fault model (trained on simulator scenarios on first use) ...", file=sys.stderr)
            shared_fault_model()
        service = AssuranceService(config.kafka.client_config(bootstrap), section)
    except (ConfigError, ValueError) as exc:
        print(f"ossbss: invalid configuration: {exc}", file=sys.stderr)
        return 2
    try:
        ensure_topics(config.kafka.client_config(bootstrap), config.kafka.partitions)
    except KafkaUnavailable as exc:
        print(f"ossbss: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(
        f"ossbss: assurance worker on {bootstrap} (group {section.group_id}); outputs: "
        f"{describe_outputs(service.outputs)}",
        file=sys.stderr,
        flush=True,
    )
    service.start()
    if service.metrics_port:
        print(
            f"ossbss: assurance metrics on http://{section.metrics_host}:{service.metrics_port}/metrics",
            file=sys.stderr,
            flush=True,
        )
    last = time.monotonic()
    while not stop.wait(1.0) and service.alive:
        if time.monotonic() - last >= 30:
            last = time.monotonic()
            st = service.worker.stats
            print(
                f"ossbss: assurance: {st.rates:,} windows, {st.faults:,} fault events, {st.alerts:,} alert changes, "
                f"{st.dead_letters:,} dead letters, {st.checkpoints:,} checkpoints",
                file=sys.stderr,
                flush=True,
            )
    service.stop()
    if service.error is not None:
        print(f"ossbss: the assurance worker failed: {service.error}", file=sys.stderr)
        return 1
    return 0
