"""Alert outputs against real local HTTP receivers: signatures, retries, dead letters, tickets, the dispatcher."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from assurance.outputs import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    AlertDispatcher,
    AlertmanagerClient,
    FailedDelivery,
    OutputConfigError,
    Secret,
    TemplateError,
    TicketSink,
    TicketTemplate,
    TicketTemplates,
    WebhookSender,
    sign,
    signed_headers,
    verify_signature,
)
from models.records import Alert

SECRET = "s3cret-for-tests"
T0 = 1_700_000_000_000


def alert(n: int = 1, status: str = "firing", **kw: Any) -> Alert:
    fields: dict[str, Any] = {
        "id": f"fp{n}:{T0}:1",
        "fingerprint": f"fp{n}",
        "name": "InterfaceDown",
        "status": status,
        "severity": "critical",
        "device": "r1",
        "if_index": n,
        "summary": f"interface {n} on r1 is down",
        "starts_ms": T0,
        "updated_ms": T0,
    }
    if status == "resolved":
        fields.update(ends_ms=T0 + 5000, updated_ms=T0 + 35000, id=f"fp{n}:{T0}:2")
    fields.update(kw)
    return Alert(**fields)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Receiver:
    """A real HTTP server on a free loopback port recording every request.

    ``statuses`` are answered in order (then ``default``); ``verify`` answers 401 to a bad signature;
    ``gate`` (an Event) holds every answer until it is set.
    """

    def __init__(
        self,
        statuses: list[int] | None = None,
        default: int = 200,
        *,
        verify: bool = False,
        gate: asyncio.Event | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.statuses = list(statuses or [])
        self.default = default
        self.verify = verify
        self.gate = gate
        self.headers = headers or {}
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.verdicts: list[bool] = []
        self.arrived = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append((request.method, request.path_qs, dict(request.headers), body))
        self.arrived.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.verify:
            ok = verify_signature(SECRET, body, request.headers)
            self.verdicts.append(ok)
            if not ok:
                return web.Response(status=401, text="bad signature")
        status = self.statuses.pop(0) if self.statuses else self.default
        return web.Response(status=status, text="ok" if status < 300 else "failing on purpose", headers=self.headers)

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.gate is not None:
            self.gate.set()
        assert self._runner is not None
        await self._runner.cleanup()

    def bodies(self) -> list[Any]:
        return [json.loads(body) for _, _, _, body in self.requests]


def run(coro: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(coro(), 60))


async def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


# ---------------------------------------------------------------------- signatures and secrets


def test_signature_verification_table() -> None:
    body = b'{"alerts":[]}'
    now = 1_800_000_000
    good = signed_headers(SECRET, body, now)
    cases: list[tuple[str, Any, bytes, dict[str, str], float, bool]] = [
        ("valid", SECRET, body, good, now, True),
        ("valid, header names in another case", SECRET, body, {k.lower(): v for k, v in good.items()}, now, True),
        ("tampered body", SECRET, body + b" ", good, now, False),
        ("tampered timestamp", SECRET, body, {**good, TIMESTAMP_HEADER: str(now + 1)}, now, False),
        ("wrong secret", "other", body, good, now, False),
        ("too old: replayed after the tolerance", SECRET, body, good, now + 301, False),
        ("too far ahead", SECRET, body, good, now - 301, False),
        ("within tolerance", SECRET, body, good, now + 299, True),
        ("rotation: any of the secrets", ["old", SECRET], body, good, now, True),
        (
            "rotation: several signatures",
            SECRET,
            body,
            {**good, SIGNATURE_HEADER: "sha256=00," + good[SIGNATURE_HEADER]},
            now,
            True,
        ),
        ("no signature", SECRET, body, {TIMESTAMP_HEADER: str(now)}, now, False),
        ("no timestamp", SECRET, body, {SIGNATURE_HEADER: good[SIGNATURE_HEADER]}, now, False),
        ("garbage timestamp", SECRET, body, {**good, TIMESTAMP_HEADER: "soon"}, now, False),
    ]
    for label, secret, b, headers, at, expected in cases:
        assert verify_signature(secret, b, headers, now=at) is expected, label


def test_signed_material_is_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    body = b'{"x":"\xc3\xa9"}'
    expected = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign(SECRET, body, 1_700_000_000) == f"sha256={expected}"
    assert signed_headers(SECRET, body, 1)[DELIVERY_HEADER] == hashlib.sha256(body).hexdigest()[:32]


def test_secret_never_shows_and_loads_from_env_and_files(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = Secret("hunter2")
    assert "hunter2" not in repr(secret) and "hunter2" not in str(secret) and "hunter2" not in f"{secret}"
    monkeypatch.setenv("OSSBSS_TEST_WEBHOOK_SECRET", "from-env")
    assert Secret.from_env("OSSBSS_TEST_WEBHOOK_SECRET").reveal() == b"from-env"
    path = tmp_path / "secret"
    path.write_text("from-file\n")
    assert Secret.from_file(path).reveal() == b"from-file"
    with pytest.raises(OutputConfigError) as err:
        Secret.from_env("OSSBSS_TEST_UNSET_SECRET")
    assert err.value.key == "OSSBSS_TEST_UNSET_SECRET"
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(OutputConfigError, match="empty"):
        Secret.from_file(tmp_path / "empty")
    assert "hunter2" not in repr(WebhookSender("http://127.0.0.1:1/", secret).__dict__)


# ---------------------------------------------------------------------- webhook


def test_webhook_posts_signed_alerts_that_a_receiver_verifies() -> None:
    async def main() -> None:
        async with Receiver(verify=True) as rx:
            sender = WebhookSender(f"{rx.url}/hooks/alerts", Secret(SECRET), backoff_s=0.01)
            (delivery,) = await sender.send([alert(1), alert(2, "resolved")])
            await sender.close()
        assert delivery.ok and delivery.attempts == 1 and delivery.alerts == 2
        assert rx.verdicts == [True]
        method, path, headers, _ = rx.requests[0]
        assert (method, path, headers["Content-Type"]) == ("POST", "/hooks/alerts", "application/json")
        payload = rx.bodies()[0]
        assert payload["version"] == 1 and payload["source"] == "ossbss"
        first, second = payload["alerts"]
        assert first["severity"] == "critical" and first["if_index"] == 1 and first["ends_ms"] is None
        assert (second["status"], second["ends_ms"]) == ("resolved", T0 + 5000)

    run(main)


def test_receiver_refuses_a_tampered_request() -> None:
    async def main() -> None:
        async with Receiver(verify=True) as rx, aiohttp.ClientSession() as http:
            body = WebhookSender.body([alert()])
            headers = signed_headers(SECRET, body, int(time.time()))
            tampered = body.replace(b'"critical"', b'"info"')
            async with http.post(rx.url, data=tampered, headers=headers) as resp:
                assert resp.status == 401
            async with http.post(rx.url, data=body, headers=headers) as resp:
                assert resp.status == 200
        assert rx.verdicts == [False, True]

    run(main)


def test_webhook_retries_after_500s_then_succeeds() -> None:
    async def main() -> None:
        dead: list[FailedDelivery] = []
        async with Receiver([500, 503, 429], verify=True) as rx:
            sender = WebhookSender(rx.url, SECRET, max_attempts=5, backoff_s=0.01, dead_letter=dead.append)
            (delivery,) = await sender.send([alert()])
            await sender.close()
        assert delivery.ok and delivery.attempts == 4 and delivery.status == 200
        assert dead == []
        assert rx.verdicts == [True] * 4  # every attempt is signed afresh
        assert len({body for *_, body in rx.requests}) == 1  # the same body each time ...
        assert len({h[DELIVERY_HEADER] for _, _, h, _ in rx.requests}) == 1  # ... and the same delivery id

    run(main)


def test_webhook_dead_letters_after_n_failures() -> None:
    async def main() -> None:
        dead: list[FailedDelivery] = []
        async with Receiver(default=500) as rx:
            sender = WebhookSender(rx.url, SECRET, max_attempts=3, backoff_s=0.01, dead_letter=dead.append)
            alerts = [alert(1), alert(2)]
            (delivery,) = await sender.send(alerts)
            await sender.close()
        assert not delivery.ok and delivery.attempts == 3 and len(rx.requests) == 3
        (failure,) = dead
        assert failure.reason == "HTTP 500: failing on purpose"
        assert failure.body == rx.requests[0][3] == WebhookSender.body(alerts)
        assert (failure.output, failure.attempts, failure.alert_ids) == ("webhook", 3, (alerts[0].id, alerts[1].id))
        record = failure.to_dead_letter(ts_ms=T0)
        assert record.topic == "assurance.alerts" and record.stage == "alert-output:webhook"
        assert json.loads(record.payload)["alerts"][1]["id"] == alerts[1].id
        assert "HTTP 500" in record.reason and "3 attempts" in record.reason

    run(main)


def test_webhook_dead_letters_when_the_connection_is_refused() -> None:
    async def main() -> None:
        dead: list[FailedDelivery] = []
        url = f"http://user:pw@127.0.0.1:{free_port()}/hook"
        sender = WebhookSender(url, SECRET, max_attempts=2, backoff_s=0.01, dead_letter=dead.append)
        (delivery,) = await sender.send([alert()])
        await sender.close()
        assert not delivery.ok and delivery.status is None and delivery.attempts == 2
        (failure,) = dead
        assert failure.reason.startswith("ClientConnectorError")
        assert "pw" not in failure.url and "pw" not in failure.to_dead_letter(T0).reason

    run(main)


def test_client_errors_are_not_retried() -> None:
    async def main() -> None:
        dead: list[FailedDelivery] = []
        async with Receiver(default=400) as rx:
            sender = WebhookSender(rx.url, SECRET, max_attempts=5, backoff_s=0.01, dead_letter=dead.append)
            (delivery,) = await sender.send([alert()])
            await sender.close()
        assert not delivery.ok and delivery.attempts == 1 and len(rx.requests) == 1
        assert dead[0].reason.startswith("HTTP 400")

    run(main)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"url": "ftp://x/"}, "url"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"backoff_s": -1}, "backoff_s"),
    ],
)
def test_webhook_config_errors_name_the_field(kwargs: dict[str, Any], key: str) -> None:
    args = {"url": "http://127.0.0.1:1/", "secret": SECRET, **kwargs}
    with pytest.raises(OutputConfigError) as err:
        WebhookSender(**args)
    assert err.value.key == key


# ---------------------------------------------------------------------- tickets

AWKWARD = 'he said "down" \\ back\nslash\ttab \u00e9t\u00e9 \U0001f525 ${summary} $$ </script>'


def test_ticket_template_escapes_awkward_values() -> None:
    template = TicketTemplate(
        '{"title": "[${severity}] ${summary}", "${device}": ["${labels.site}", "$${literal}"],'
        ' "n": 3, "flag": true, "none": null, "nested": {"k": "${name}/${if_index}/${ends}"}}'
    )
    a = alert(summary=AWKWARD, device='r"1', labels={"site": 'Z\u00fcrich\n"HQ"'})
    body = template.render(a)
    doc = json.loads(body)
    assert doc == {
        "title": f"[critical] {AWKWARD}",  # substituted once: a value's own ${...} stays as it is
        'r"1': ['Z\u00fcrich\n"HQ"', "${literal}"],
        "n": 3,
        "flag": True,
        "none": None,
        "nested": {"k": "InterfaceDown/1/"},
    }
    assert b"\n" not in body  # newlines inside values are escaped


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": "${nope}"}', "unknown placeholder"),
        ('{"a": "${summary"}', "unterminated"),
        ('{"a": "${}"}', "unknown placeholder"),
        ('{"a": ', "not valid JSON"),
    ],
)
def test_template_errors(text: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        TicketTemplate(text)


@pytest.mark.parametrize("name", ["servicenow", "jira"])
def test_builtin_templates_render_valid_json(name: str) -> None:
    templates = TicketTemplates.builtin(name)
    firing = alert(summary=AWKWARD)
    resolved = alert(status="resolved", summary=AWKWARD)
    opened = json.loads(templates.open.render(firing))
    closed = json.loads(templates.resolve.render(resolved))
    plain = json.dumps(
        [templates.open.render(alert()).decode(), templates.resolve.render(alert(status="resolved")).decode()]
    )
    assert "fp1" in plain and "${" not in plain  # every placeholder of the shipped templates is known
    if name == "servicenow":
        assert opened["correlation_id"] == "fp1" and opened["urgency"] == "1"
        assert opened["short_description"] == f"[critical] InterfaceDown on r1: {AWKWARD}"
        assert closed["state"] == "6" and closed["close_notes"].startswith("Cleared at 2023-11-14T22:13:25.000Z")
    else:
        assert opened["fields"]["priority"] == {"name": "Highest"}
        assert "alert-fp1" in opened["fields"]["labels"]
        assert closed["jql"] == 'labels = "alert-fp1" AND statusCategory != Done'


def test_ticket_sink_opens_once_and_resolves() -> None:
    async def main() -> None:
        async with Receiver(verify=True) as rx:
            sink = TicketSink(
                f"{rx.url}/api/now/table/incident",
                "servicenow",
                resolve_url=f"{rx.url}/api/resolve/{{fingerprint}}",
                secret=SECRET,
                backoff_s=0.01,
            )
            first = await sink.send([alert(1), alert(1, updated_ms=T0 + 1, severity="major")])
            second = await sink.send([alert(1, "resolved")])
            await sink.close()
        assert [d.ok for d in first + second] == [True, True]  # the firing update made no request
        assert [(m, p) for m, p, _, _ in rx.requests] == [
            ("POST", "/api/now/table/incident"),
            ("POST", "/api/resolve/fp1"),
        ]
        assert rx.verdicts == [True, True]
        opened, resolved = rx.bodies()
        assert opened["correlation_id"] == resolved["correlation_id"] == "fp1"
        assert resolved["state"] == "6"

    run(main)


# ---------------------------------------------------------------------- Alertmanager payloads


def test_alertmanager_payload_and_label_changes() -> None:
    async def main() -> None:
        async with Receiver() as rx:
            am = AlertmanagerClient(rx.url, backoff_s=0.01, generator_url="http://grafana/d/a?var-fp={fingerprint}")
            flapping = alert(1, labels={"flapping": "true", "site": "ams"})
            await am.send([flapping])
            await am.send([alert(1, severity="major", labels={"site": "ams"}, id="fp1:x:2")])
            await am.resend_firing()
            await am.send([alert(1, "resolved", severity="major", labels={"site": "ams"})])
            assert await am.resend_firing() == []  # nothing firing any more
            await am.close()
        assert {p for _, p, _, _ in rx.requests} == {"/api/v2/alerts"}
        first, escalated, resent, resolved = rx.bodies()
        (posted,) = first
        assert posted["labels"] == {
            "alertname": "InterfaceDown",
            "severity": "critical",
            "fingerprint": "fp1",
            "device": "r1",
            "ifIndex": "1",
            "site": "ams",
        }
        assert posted["annotations"] == {
            "flapping": "true",
            "summary": "interface 1 on r1 is down",
            "ossbss_id": flapping.id,
        }
        assert posted["startsAt"] == "2023-11-14T22:13:20.000Z" and posted["endsAt"] > posted["startsAt"]
        assert posted["generatorURL"] == "http://grafana/d/a?var-fp=fp1"
        # the severity changed: the old label set is resolved, the new one posted
        assert [p["labels"]["severity"] for p in escalated] == ["critical", "major"]
        assert escalated[0]["endsAt"] < escalated[1]["endsAt"]  # the old set ends now, the new one later
        assert [p["labels"]["severity"] for p in resent] == ["major"]
        (closing,) = resolved
        assert closing["endsAt"] == "2023-11-14T22:13:25.000Z"  # the resolution time

    run(main)


# ---------------------------------------------------------------------- dispatcher


def test_dispatcher_isolates_slow_and_broken_outputs() -> None:
    async def main() -> None:
        dead: list[FailedDelivery] = []
        gate = asyncio.Event()
        async with Receiver() as good, Receiver(gate=gate) as slow:
            outputs = [
                WebhookSender(good.url, SECRET, name="good", backoff_s=0.01),
                WebhookSender(slow.url, SECRET, name="slow", backoff_s=0.01, timeout_s=30),
                WebhookSender(
                    f"http://127.0.0.1:{free_port()}/", SECRET, name="broken", max_attempts=2, backoff_s=0.01
                ),
            ]
            dispatcher = AlertDispatcher(outputs, queue_size=10, batch_max=1, dead_letter=dead.append)
            await dispatcher.start()
            suppressed = alert(9, labels={"suppressed": "true", "suppressed_by": "dd"})
            assert dispatcher.submit([alert(1), alert(2), suppressed, alert(3)]) == 9  # 3 alerts x 3 outputs
            # the good output delivers everything while the slow one is still stuck on its first request
            await wait_for(lambda: dispatcher.stats["good"].sent == 3 and dispatcher.stats["broken"].failed == 3)
            assert dispatcher.stats["slow"].sent == 0 and len(slow.requests) == 1
            assert dispatcher.suppressed == 1
            assert {f.output for f in dead} == {"broken"} and len(dead) == 3
            gate.set()
            assert await dispatcher.drain(timeout_s=30)
            assert dispatcher.stats["slow"].sent == 3
            await dispatcher.stop()
        ids = [a["id"] for body in good.bodies() for a in body["alerts"]]
        assert ids == [alert(n).id for n in (1, 2, 3)]

    run(main)


def test_dispatcher_dead_letters_what_does_not_fit_its_queue() -> None:
    async def main() -> None:
        dead: list[FailedDelivery] = []
        gate = asyncio.Event()
        async with Receiver(gate=gate) as slow:
            dispatcher = AlertDispatcher(
                [WebhookSender(slow.url, SECRET, name="slow", timeout_s=30)], queue_size=2, dead_letter=dead.append
            )
            await dispatcher.start()
            dispatcher.submit([alert(1)])
            await slow.arrived.wait()  # the worker holds alert 1; the queue is empty again
            assert dispatcher.submit([alert(n) for n in (2, 3, 4, 5)]) == 2
            assert dispatcher.stats["slow"].dropped == 2
            assert [f.reason for f in dead] == ["queue full (2 alerts waiting for output slow)"] * 2
            assert [f.alert_ids for f in dead] == [(alert(4).id,), (alert(5).id,)]
            gate.set()
            await dispatcher.stop(drain=True)
        sent = [a["id"] for body in slow.bodies() for a in body["alerts"]]
        assert sent == [alert(n).id for n in (1, 2, 3)]

    run(main)


def test_dispatcher_resends_firing_alerts_to_alertmanager() -> None:
    async def main() -> None:
        async with Receiver() as rx:
            am = AlertmanagerClient(rx.url, resend_interval_s=0.05, firing_ttl_s=10)
            async with AlertDispatcher([am]) as dispatcher:
                dispatcher.submit([alert(1), alert(2)])
                await wait_for(lambda: dispatcher.stats["alertmanager"].resends >= 2)
                dispatcher.submit([alert(2, "resolved")])
                await dispatcher.drain()
                resends_before = dispatcher.stats["alertmanager"].resends
                await wait_for(lambda: dispatcher.stats["alertmanager"].resends >= resends_before + 1)
        bodies = rx.bodies()
        assert {tuple(sorted(p["labels"]["fingerprint"] for p in b)) for b in bodies[1:3]} == {("fp1", "fp2")}
        assert [p["labels"]["fingerprint"] for p in bodies[-1]] == ["fp1"]  # fp2 resolved: no longer re-sent

    run(main)


def test_failed_resends_are_counted_not_dead_lettered() -> None:
    async def main() -> None:
        dead: list[FailedDelivery] = []
        am = AlertmanagerClient(f"http://127.0.0.1:{free_port()}", max_attempts=1, resend_interval_s=0.05)
        async with AlertDispatcher([am], dead_letter=dead.append) as dispatcher:
            dispatcher.submit([alert(1)])
            await wait_for(lambda: dispatcher.stats["alertmanager"].resend_failures >= 2)
            assert dispatcher.stats["alertmanager"].failed == 1
        assert [f.alert_ids for f in dead] == [(alert(1).id,)]  # the first delivery only
        assert [a.id for a in am.firing] == [alert(1).id]  # still firing: the next round would send it

    run(main)
