"""``alert_latency``: a fault on a simulated router to a signed webhook and an Alertmanager alert.

A real Kafka broker, a real Alertmanager (Debian's), gNMI simulators streamed by the gNMI collector,
and the assurance service (worker + outputs). Links are taken down one at a time (and brought back);
for each, the clock runs from the moment the simulator's link goes down to the moment the webhook
receiver has the ``InterfaceDown`` alert, and to the moment Alertmanager lists it. The target is
p99 <= 5 s. There is no baseline: the figure is an absolute latency (``ratio`` = target / p99).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from assurance.config import assurance_config
from assurance.receiver import WebhookReceiver
from assurance.service import AssuranceService
from bench import BenchResult, benchmark
from collectors.fleet import GnmiFleet
from ossbss.config import KafkaConfig
from ossbss.kafkautil import ensure_topics
from ossbss.localstack.alertmanager import LocalAlertmanager
from ossbss.localstack.kafka import KafkaBroker

TARGET_P99_S = 5.0
SECRET_ENV = "OSSBSS_BENCH_WEBHOOK_SECRET"


def _am_has(url: str, device: str, if_index: int) -> bool:
    query = f"filter=device%3D%22{device}%22&filter=ifIndex%3D%22{if_index}%22&active=true"
    with urllib.request.urlopen(f"{url}/api/v2/alerts?{query}", timeout=5) as resp:
        return bool(json.loads(resp.read()))


def _until(predicate: Any, timeout: float, what: str) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.time()
        time.sleep(0.01)
    raise TimeoutError(f"alert_latency: no {what} within {timeout:.0f} s")


@benchmark("alert_latency", "link down on a gNMI simulator -> signed webhook and Alertmanager alert, p99 seconds")
def alert_latency(quick: bool) -> BenchResult:
    faults = 10 if quick else 40
    devices, interfaces = 2, 8
    os.environ.setdefault(SECRET_ENV, "bench-secret")
    with tempfile.TemporaryDirectory(prefix="ossbss-bench-alerts-") as tmp:
        root = Path(tmp)
        broker = KafkaBroker(root / "kafka").start()
        webhook = WebhookReceiver(os.environ[SECRET_ENV]).start()
        am_sink = WebhookReceiver().start()
        alertmanager = LocalAlertmanager(root / "alertmanager", am_sink.url).start()
        client = KafkaConfig().client_config(broker.bootstrap_servers)
        service: AssuranceService | None = None
        fleet: GnmiFleet | None = None
        try:
            ensure_topics(client, 4)
            config = assurance_config(
                {
                    "assurance": {
                        "alertmanager_url": alertmanager.url,
                        "webhooks": [{"url": webhook.url, "secret_env": SECRET_ENV}],
                        "link_resolve_after_s": 0.5,
                        "predict_faults": False,
                    }
                }
            )
            service = AssuranceService(client, config).start()
            fleet = GnmiFleet(broker.bootstrap_servers, client, devices=devices, interfaces=interfaces, interval_s=1.0)
            fleet.start()
            _until(lambda: fleet is not None and fleet.records > 0, 60, "gNMI samples")
            time.sleep(2.0)  # let the worker join its group and reach the end of the topics
            to_webhook: list[float] = []
            to_alertmanager: list[float] = []
            for n in range(faults):
                d, i = n % devices, 1 + (n // devices) % interfaces
                device, name = fleet.device_name(d), f"Ethernet{i}"
                seen = len(webhook.alerts())

                def arrived(device: str = device, i: int = i, seen: int = seen) -> bool:
                    return any(
                        a["device"] == device and a["if_index"] == i and a["status"] == "firing"
                        for _, a in webhook.alerts()[seen:]
                    )

                started = time.time()
                fleet.devices[d].inject("link_down", name)
                to_webhook.append(_until(arrived, 30, "webhook alert") - started)
                to_alertmanager.append(
                    _until(lambda d=device, i=i: _am_has(alertmanager.url, d, i), 30, "Alertmanager alert") - started
                )
                fleet.devices[d].clear(name)
                time.sleep(0.2)
        finally:
            if fleet is not None:
                fleet.stop()
            if service is not None:
                service.stop()
            alertmanager.stop()
            webhook.stop()
            am_sink.stop()
            broker.stop()
    hook = np.array(to_webhook)
    am = np.array(to_alertmanager)
    p99 = float(np.percentile(hook, 99))
    return BenchResult.latency(
        p99,
        TARGET_P99_S,
        {
            "faults": faults,
            "webhook_p50_s": round(float(np.percentile(hook, 50)), 3),
            "webhook_p99_s": round(p99, 3),
            "webhook_max_s": round(float(hook.max()), 3),
            "alertmanager_p50_s": round(float(np.percentile(am, 50)), 3),
            "alertmanager_p99_s": round(float(np.percentile(am, 99)), 3),
            "path": "gNMI ON_CHANGE -> collector -> Kafka telemetry.faults -> assurance worker -> "
            "assurance.alerts -> dispatcher -> webhook (HMAC) / Alertmanager v2",
            "baseline_is": "the target (5 s), not a measurement",
        },
    )
