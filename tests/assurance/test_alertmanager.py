"""Against a real Prometheus Alertmanager (Debian's binary), started on free ports for this module.

The alert engine's records go through the dispatcher and ``AlertmanagerClient`` to Alertmanager's v2 API;
Alertmanager's own webhook notifications (firing, then resolved) reach a local aiohttp receiver. Without
the binary these tests fail with the command that installs it.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
from aiohttp import web

from assurance.lifecycle import INTERFACE_DOWN, AlertEngine, AlertRule, EngineConfig
from assurance.outputs import AlertDispatcher, AlertmanagerClient
from models.records import Alert, FaultEvent
from ossbss.localstack.alertmanager import AlertmanagerStackError, LocalAlertmanager
from ossbss.localstack.kafka import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalAlertmanager, int]]:
    """A running Alertmanager and the port its webhook notifications go to."""
    hook_port = free_port()
    manager = LocalAlertmanager(tmp_path_factory.mktemp("alertmanager"), f"http://127.0.0.1:{hook_port}/notify")
    try:
        manager.start()
    except AlertmanagerStackError as exc:
        pytest.fail(f"cannot start the test Alertmanager: {exc}", pytrace=False)
    yield manager, hook_port
    manager.stop()


class NotificationReceiver:
    """Alertmanager's webhook target: a real aiohttp server on the port the config names."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.notifications: list[dict[str, Any]] = []
        self._runner: web.AppRunner | None = None

    async def _notify(self, request: web.Request) -> web.Response:
        self.notifications.append(json.loads(await request.read()))
        return web.Response(text="ok")

    async def __aenter__(self) -> NotificationReceiver:
        app = web.Application()
        app.router.add_post("/notify", self._notify)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        await web.SockSite(self._runner, sock).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    def states(self, device: str) -> list[tuple[str, str]]:
        """(alert status, fingerprint label) of every notified alert of ``device``, in order."""
        return [
            (a["status"], a["labels"].get("fingerprint", ""))
            for n in self.notifications
            for a in n["alerts"]
            if a["labels"].get("device") == device
        ]


async def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"Alertmanager: {what} did not happen within {timeout:.0f}s")
        await asyncio.sleep(0.1)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def test_alert_lifecycle_through_a_real_alertmanager(alertmanager: tuple[LocalAlertmanager, int]) -> None:
    manager, hook_port = alertmanager
    device = f"edge-{uuid.uuid4().hex[:6]}"
    engine = AlertEngine(EngineConfig(rules={INTERFACE_DOWN: AlertRule()}))
    start = now_ms()
    (opened,) = engine.fault(
        FaultEvent(id=f"{device}-1", device=device, ts_ms=start - 2000, kind="linkDown", if_index=3)
    )
    (closed,) = engine.fault(FaultEvent(id=f"{device}-2", device=device, ts_ms=start - 1000, kind="linkUp", if_index=3))
    assert (opened.status, closed.status) == ("firing", "resolved")

    async def main() -> None:
        async with NotificationReceiver(hook_port) as receiver:
            client = AlertmanagerClient(
                manager.url, backoff_s=0.05, generator_url="http://ossbss.local/a/{fingerprint}"
            )
            async with AlertDispatcher([client]) as dispatcher:
                dispatcher.submit([opened])
                assert await dispatcher.drain()
                assert dispatcher.stats["alertmanager"].sent == 1
                active = await client.alerts(filters=[f'device="{device}"'])
                assert len(active) == 1
                (am_alert,) = active
                assert am_alert["status"]["state"] == "active"
                assert am_alert["labels"] == {
                    "alertname": "InterfaceDown",
                    "device": device,
                    "ifIndex": "3",
                    "severity": "critical",
                    "fingerprint": opened.fingerprint,
                }
                assert am_alert["annotations"]["summary"] == opened.summary
                assert am_alert["generatorURL"] == f"http://ossbss.local/a/{opened.fingerprint}"
                await wait_for(lambda: receiver.states(device), "the firing notification")
                assert receiver.states(device)[0] == ("firing", opened.fingerprint)

                dispatcher.submit([closed])
                assert await dispatcher.drain()
                remaining = await client.alerts(filters=[f'device="{device}"'])
                assert [a["status"]["state"] for a in remaining if a["status"]["state"] == "active"] == []
                await wait_for(
                    lambda: ("resolved", opened.fingerprint) in receiver.states(device), "the resolved notification"
                )
                resolved = [
                    a for n in receiver.notifications for a in n["alerts"] if a["labels"].get("device") == device
                ][-1]
                ends = datetime.fromisoformat(resolved["endsAt"])
                assert resolved["status"] == "resolved" and round(ends.timestamp() * 1000) == closed.ends_ms
                assert dispatcher.stats["alertmanager"].sent == 2 and dispatcher.stats["alertmanager"].failed == 0

    asyncio.run(asyncio.wait_for(main(), 90))


def test_escalation_keeps_one_active_alert_in_alertmanager(alertmanager: tuple[LocalAlertmanager, int]) -> None:
    manager, _ = alertmanager
    device = f"core-{uuid.uuid4().hex[:6]}"
    base = now_ms() - 10_000
    common: dict[str, Any] = {
        "fingerprint": f"fp-{device}",
        "name": "HighUtilisation",
        "status": "firing",
        "device": device,
        "if_index": 1,
        "starts_ms": base,
    }
    warning = Alert(id=f"fp-{device}:{base}:1", severity="warning", summary="busy", updated_ms=base, **common)
    major = Alert(id=f"fp-{device}:{base}:2", severity="major", summary="very busy", updated_ms=base + 5000, **common)

    async def main() -> None:
        client = AlertmanagerClient(manager.url, backoff_s=0.05)
        try:
            assert (await client.send([warning]))[0].ok
            assert (await client.send([major]))[0].ok
            states = {
                (a["labels"]["severity"], a["status"]["state"])
                for a in await client.alerts(filters=[f'device="{device}"'])
            }
            assert states == {("major", "active")}  # the warning label set was resolved by the escalation
            assert (await client.resend_firing())[0].ok
            (still,) = await client.alerts(filters=[f'device="{device}"'])
            assert still["annotations"]["summary"] == "very busy"
        finally:
            await client.close()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_missing_binary_names_the_install_script(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("OSSBSS_ALERTMANAGER_BIN", str(tmp_path / "no-such-alertmanager"))
    with pytest.raises(AlertmanagerStackError, match=r"scripts/install-system-deps\.sh"):
        LocalAlertmanager(tmp_path, "http://127.0.0.1:1/").start()
