"""A fleet of simulated gNMI routers streamed into Kafka by the real gNMI collector.

``ossbss up`` runs one to exercise the same path as a production router, and the assurance tests and
benchmarks use one to inject faults (``fleet.devices[i].inject("link_down", "Ethernet2")``) and watch
them become alerts. Each simulator is a real gRPC gNMI target on loopback; the collector subscribes
to counters (SAMPLE every ``interval_s``) and to oper-status (ON_CHANGE), so a link going down is a
``FaultEvent`` on ``telemetry.faults`` within a simulator tick.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from collectors.base import PublisherSink, build_collector, parse_collectors, run_collectors
from collectors.gnmi_sim import GnmiSimThread, GnmiSimulator, SimDevice
from collectors.publish import RecordPublisher


class GnmiFleet:
    def __init__(
        self,
        bootstrap: str,
        client_config: dict[str, Any],
        *,
        devices: int = 2,
        interfaces: int = 8,
        interval_s: float = 5.0,
        pattern: str = "constant",
        name_prefix: str = "gnmi-sim",
    ) -> None:
        self.bootstrap = bootstrap
        self.client_config = client_config
        self.count = devices
        self.interfaces = interfaces
        self.interval_s = interval_s
        self.pattern = pattern
        self.name_prefix = name_prefix
        self.devices: list[SimDevice] = []
        self._targets: list[GnmiSimThread] = []
        self._thread: threading.Thread | None = None
        self.collectors: list[Any] = []
        self.faults_injected = 0
        self._faults_stop = threading.Event()

    def device_name(self, i: int) -> str:
        return f"{self.name_prefix}-{i:04d}"

    def start(self) -> GnmiFleet:
        self.devices = [SimDevice(interfaces=self.interfaces, pattern=self.pattern, seed=i) for i in range(self.count)]
        self._targets = [GnmiSimThread(GnmiSimulator(device)).start() for device in self.devices]
        section = [
            {
                "type": "gnmi",
                "name": self.name_prefix,
                "mode": "stream",
                "subscriptions": [
                    {
                        "path": "/interfaces/interface/state/counters",
                        "mode": "sample",
                        "sample_interval_s": self.interval_s,
                    },
                    {"path": "/interfaces/interface/state/oper-status", "mode": "on_change"},
                    {"path": "/interfaces/interface/state/ifindex", "mode": "on_change"},
                ],
                "targets": [
                    {"address": t.address, "name": self.device_name(i), "insecure": True}
                    for i, t in enumerate(self._targets)
                ],
            }
        ]
        self.sink = PublisherSink(RecordPublisher(self.bootstrap, **self.client_config))
        self.collectors = [
            build_collector(c, self.sink, config_key="simulator.gnmi", kafka=self.client_config)
            for c in parse_collectors(section)
        ]
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(run_collectors(self.collectors, self._stop))

        self._thread = threading.Thread(target=run, name="gnmi-collector", daemon=True)
        self._thread.start()
        return self

    def inject_link_faults(self, every_s: float, down_s: float) -> None:
        """Every ``every_s``, take the next link (round robin over devices and interfaces) down for
        ``down_s``: a demo of the assurance loop (an alert opens, then resolves) in ``ossbss up``."""

        def run() -> None:
            n = 0
            while not self._faults_stop.wait(every_s):
                device = self.devices[n % self.count]
                interface = 1 + (n // self.count) % self.interfaces
                device.inject("link_down", f"Ethernet{interface}", duration_s=down_s)
                self.faults_injected += 1
                n += 1

        threading.Thread(target=run, name="gnmi-link-faults", daemon=True).start()

    @property
    def records(self) -> int:
        return sum(c.stats.records for c in self.collectors)

    def stop(self) -> None:
        self._faults_stop.set()
        if self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)
        self.sink.flush()
        for target in self._targets:
            target.stop()
        self._thread = None
