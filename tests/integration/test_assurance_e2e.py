"""Faults on simulated routers become alerts, end to end, on the real services.

gNMI simulators (real gRPC targets) are streamed by the gNMI collector into a real Kafka broker; the
assurance service (worker + outputs) turns oper-status changes into alerts on ``assurance.alerts``,
posts them to a real Prometheus Alertmanager and to a signed webhook, and the sink writes their full
history into ClickHouse (chDB). Checked:

* a link taken down on a simulator becomes an ``InterfaceDown`` alert at the webhook (signature
  verified) and in Alertmanager, and Alertmanager's own notification goes out;
* the link coming back resolves it in both places;
* a link flapping fifty times opens one alert, not fifty, and it resolves once the link is stable;
* every state change is a row of ``alerts`` in ClickHouse, and the latest one per alert is resolved;
* a restarted service resumes from its checkpoint: no alert is opened twice.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from assurance.config import assurance_config
from assurance.receiver import WebhookReceiver
from assurance.service import AssuranceService
from collectors.fleet import GnmiFleet
from ossbss.config import KafkaConfig, SinkConfig
from ossbss.kafkautil import ensure_topics
from ossbss.localstack.alertmanager import AlertmanagerStackError, LocalAlertmanager
from ossbss.localstack.kafka import free_port
from warehouse import open_warehouse
from warehouse.migrate import apply_migrations
from warehouse.sink import DEFAULT_ROUTES, WarehouseSink

pytestmark = pytest.mark.integration

SECRET = "e2e-webhook-secret"
DEVICE = "e2e-{unique}-0000"


@dataclass
class Stack:
    fleet: GnmiFleet
    service: AssuranceService
    webhook: WebhookReceiver
    am_notifications: WebhookReceiver
    alertmanager: LocalAlertmanager
    sink: WarehouseSink
    warehouse: Any
    settings: dict[str, Any]
    client: dict[str, Any]

    @property
    def device(self) -> str:
        return self.fleet.device_name(0)


def am_alerts(am: LocalAlertmanager, device: str) -> list[dict[str, Any]]:
    query = f"filter=device%3D%22{device}%22&active=true&silenced=true&inhibited=true&unprocessed=true"
    with urllib.request.urlopen(f"{am.url}/api/v2/alerts?{query}", timeout=5) as resp:
        return json.loads(resp.read())


def wait(predicate: Any, what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def interface_alerts(stack: Stack, if_index: int, name: str = "InterfaceDown") -> list[dict[str, Any]]:
    return [
        a
        for _, a in stack.webhook.alerts()
        if a["device"] == stack.device and a["if_index"] == if_index and a["name"] == name
    ]


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory, monkeypatch_module: Any) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("assurance-e2e")
    unique = root.name.replace("_", "-")
    client = KafkaConfig().client_config(kafka_bootstrap)
    ensure_topics(client, 4)
    monkeypatch_module.setenv("OSSBSS_E2E_WEBHOOK_SECRET", SECRET)
    webhook = WebhookReceiver(SECRET).start()
    am_notifications = WebhookReceiver().start()
    alertmanager = LocalAlertmanager(root / "alertmanager", am_notifications.url)
    try:
        alertmanager.start()
    except AlertmanagerStackError as exc:
        pytest.fail(f"{exc}\nRun scripts/install-system-deps.sh (Debian prometheus-alertmanager).", pytrace=False)
    settings = {
        "group_id": f"assurance-{unique}",
        "alertmanager_url": alertmanager.url,
        "alertmanager_resend_s": 5,
        "webhooks": [{"url": webhook.url, "secret_env": "OSSBSS_E2E_WEBHOOK_SECRET"}],
        "link_resolve_after_s": 2,
        "flap_threshold": 6,
        "flap_window_s": 120,
        "flap_stable_s": 6,
        "checkpoint_interval_s": 2,
        "predict_faults": False,
        "metrics_port": free_port(),
    }
    config = assurance_config({"assurance": settings})
    warehouse = open_warehouse(f"chdb://{root}/clickhouse")
    apply_migrations(warehouse)
    routes = tuple(r for r in DEFAULT_ROUTES if r.table == "alerts")
    sink = WarehouseSink(
        client, warehouse, SinkConfig(group_id=f"sink-{unique}", flush_interval_s=0.5, metrics_port=0), routes
    )
    sink_thread = threading.Thread(target=sink.run, daemon=True)
    sink_thread.start()
    service = AssuranceService(client, config).start()
    fleet = GnmiFleet(kafka_bootstrap, client, devices=1, interfaces=8, interval_s=1.0, name_prefix=f"e2e-{unique}")
    fleet.start()
    stack = Stack(fleet, service, webhook, am_notifications, alertmanager, sink, warehouse, settings, client)
    wait(lambda: fleet.records > 0, "the gNMI collector to stream the simulator")
    try:
        yield stack
    finally:
        fleet.stop()
        stack.service.stop()
        sink.stop()
        sink_thread.join(30)
        warehouse.close()
        alertmanager.stop()
        webhook.stop()
        am_notifications.stop()


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_link_down_becomes_an_alert_in_alertmanager_and_a_signed_webhook(stack: Stack) -> None:
    sim = stack.fleet.devices[0]
    sim.inject("link_down", "Ethernet2")
    firing = wait(lambda: [a for a in interface_alerts(stack, 2) if a["status"] == "firing"], "the webhook alert")
    assert firing[0]["severity"] == "critical"
    assert stack.webhook.refused == 0
    active = wait(lambda: am_alerts(stack.alertmanager, stack.device), "the alert in Alertmanager")
    labels = active[0]["labels"]
    assert labels["alertname"] == "InterfaceDown"
    assert labels["ifIndex"] == "2"
    assert labels["fingerprint"] == firing[0]["fingerprint"]
    wait(
        lambda: any(
            a["status"] == "firing" and a["labels"].get("ifIndex") == "2"
            for r in stack.am_notifications.received
            for a in r.body.get("alerts", [])
        ),
        "Alertmanager's own notification of the firing alert",
    )

    sim.clear("Ethernet2")
    resolved = wait(lambda: [a for a in interface_alerts(stack, 2) if a["status"] == "resolved"], "the resolution")
    assert resolved[0]["fingerprint"] == firing[0]["fingerprint"]
    assert resolved[0]["ends_ms"] >= firing[0]["starts_ms"]
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.service.metrics_port}/metrics", timeout=5) as resp:
        metrics = resp.read().decode()
    assert 'ossbss_alert_output_sent{group="' in metrics and "ossbss_assurance_alert_latency_seconds" in metrics
    alert_changes = [line for line in metrics.splitlines() if line.startswith("ossbss_assurance_alert_changes{")]
    assert float(alert_changes[0].rsplit(" ", 1)[1]) >= 2
    wait(lambda: not am_alerts(stack.alertmanager, stack.device), "Alertmanager to show the alert resolved")
    wait(
        lambda: any(
            r.body.get("status") == "resolved" and any(a["labels"].get("ifIndex") == "2" for a in r.body["alerts"])
            for r in stack.am_notifications.received
        ),
        "Alertmanager's resolved notification",
    )


def test_a_flapping_link_opens_one_alert_not_fifty(stack: Stack) -> None:
    sim = stack.fleet.devices[0]
    for _ in range(50):
        sim.set_enabled("Ethernet3", False)
        time.sleep(0.12)
        sim.set_enabled("Ethernet3", True)
        time.sleep(0.12)
    wait(
        lambda: [a for a in interface_alerts(stack, 3) if a["status"] == "resolved"],
        "the flapping alert to resolve once the link is stable",
        timeout=90,
    )
    records = interface_alerts(stack, 3)
    episodes = {(a["fingerprint"], a["starts_ms"]) for a in records}
    assert len(episodes) == 1, records
    assert any(a["labels"].get("flapping") == "true" for a in records), records
    opened = [a for a in records if a["status"] == "firing" and a["id"].endswith(":1")]
    assert len(opened) == 1


def test_every_state_change_is_in_clickhouse(stack: Stack) -> None:
    def rows() -> list[tuple[Any, ...]]:
        return stack.warehouse.query(
            "SELECT fingerprint, count(), argMax(status, (updated, id)) FROM alerts FINAL "
            f"WHERE device = '{stack.device}' AND name = 'InterfaceDown' GROUP BY fingerprint ORDER BY fingerprint"
        ).rows

    expected = {a["fingerprint"] for _, a in stack.webhook.alerts() if a["device"] == stack.device}
    wait(lambda: {r[0] for r in rows() if r[2] == "resolved"} == expected, "every alert resolved in ClickHouse")
    history = {r[0]: r[1] for r in rows()}
    assert all(history[f] >= 2 for f in expected), history  # opened and resolved, at least


def test_a_restarted_service_does_not_open_alerts_again(stack: Stack) -> None:
    sim = stack.fleet.devices[0]
    sim.inject("link_down", "Ethernet5")
    wait(lambda: [a for a in interface_alerts(stack, 5) if a["status"] == "firing"], "the alert before the restart")
    time.sleep(stack.settings["checkpoint_interval_s"] * 2)
    stack.service.stop()
    restored_config = assurance_config({"assurance": stack.settings})
    stack.service = AssuranceService(stack.client, restored_config).start()
    wait(lambda: stack.service.worker.stats.restored > 0, "the new service to resume from its checkpoint")
    sim.clear("Ethernet5")
    wait(lambda: [a for a in interface_alerts(stack, 5) if a["status"] == "resolved"], "the resolution after restart")
    firing_ids = [a["id"] for a in interface_alerts(stack, 5) if a["status"] == "firing"]
    assert len(set(firing_ids)) == 1, firing_ids
    assert len({a["starts_ms"] for a in interface_alerts(stack, 5)}) == 1
