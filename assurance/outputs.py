"""Alert outputs: signed webhooks, Prometheus Alertmanager (v2 API), ticket systems, and the dispatcher.

Every output has ``name``, ``dead_letter`` (a callback or None), ``async send(alerts) -> list[Delivery]``
and ``async close()``. ``send`` never raises for a delivery failure: it retries, and when it gives up it
calls its ``dead_letter`` callback with a :class:`FailedDelivery` (the reason and the exact body) and
returns a failed :class:`Delivery`. :meth:`FailedDelivery.to_dead_letter` turns it into the
``DeadLetter`` record the caller produces to Kafka.

Retries (all HTTP outputs): connection errors, timeouts, HTTP 5xx, 408 and 429 are retried up to
``max_attempts`` times in all, waiting ``backoff_s * 2**(n-1)`` (capped at ``max_backoff_s``) with
jitter: half of it fixed, half random. A ``Retry-After`` in seconds lengthens the wait (up to the cap).
Other statuses (4xx, redirects) are not retried: the payload goes straight to the dead letter.

Signing (webhooks, and ticket sinks given a secret). Each attempt carries::

    X-Ossbss-Timestamp: <Unix time in whole seconds, when the attempt was made>
    X-Ossbss-Signature: sha256=<hex HMAC-SHA256(secret, <timestamp> + "." + <body bytes>)>
    X-Ossbss-Delivery:  <first 32 hex digits of SHA-256(body)>, the same for every retry of a body

The signed material is exactly the ASCII timestamp, one ``.`` and the raw request body. Receivers check
with :func:`verify_signature`, which also refuses a timestamp more than ``tolerance_s`` (300 s) from
their clock, so a captured request cannot be replayed later; within that window a receiver drops a
``X-Ossbss-Delivery`` it has already accepted. ``X-Ossbss-Signature`` may list several signatures
separated by commas (key rotation); one valid signature is enough.

Secrets come from the environment or files (:class:`Secret`) and never appear in a repr, a log or an error.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import importlib.resources
import json
import logging
import os
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import aiohttp
import msgspec
import yarl

from assurance.lifecycle import SUPPRESSED_LABEL, VOLATILE_LABELS
from models.records import Alert, DeadLetter
from models.topics import ALERTS

log = logging.getLogger("ossbss.assurance.outputs")

SIGNATURE_HEADER = "X-Ossbss-Signature"
TIMESTAMP_HEADER = "X-Ossbss-Timestamp"
DELIVERY_HEADER = "X-Ossbss-Delivery"
SIGNATURE_TOLERANCE_S = 300
USER_AGENT = "ossbss-alerts/1"
WEBHOOK_PAYLOAD_VERSION = 1

_RETRY_STATUSES = frozenset({408, 429})
_REASON_BODY_CHARS = 300


class OutputError(Exception):
    """Root of the errors of this module."""


class OutputConfigError(OutputError, ValueError):
    """An invalid output setting; ``key`` names it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


class TemplateError(OutputConfigError):
    """A ticket template that is not valid JSON or names an unknown placeholder."""


class OutputUnavailable(OutputError):
    """A read (``AlertmanagerClient.alerts``) failed after its retries; ``reason`` says why."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason


# ---------------------------------------------------------------------- secrets and signatures


class Secret:
    """A secret value that never shows in ``repr``/``str`` (so never in logs or tracebacks)."""

    __slots__ = ("_value",)

    def __init__(self, value: str | bytes) -> None:
        raw = value.encode() if isinstance(value, str) else bytes(value)
        if not raw:
            raise OutputConfigError("secret", "is empty")
        self._value = raw

    @classmethod
    def from_env(cls, name: str) -> Secret:
        """The value of environment variable ``name`` (must be set and non-empty)."""
        value = os.environ.get(name, "")
        if not value:
            raise OutputConfigError(name, "environment variable is not set or empty")
        return cls(value)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Secret:
        """The content of a file (for example a mounted Docker/Kubernetes secret), trailing newline removed."""
        try:
            raw = Path(path).read_bytes().rstrip(b"\r\n")
        except OSError as exc:
            raise OutputConfigError(str(path), f"cannot read secret file: {exc.strerror}") from None
        if not raw:
            raise OutputConfigError(str(path), "secret file is empty")
        return cls(raw)

    @classmethod
    def of(cls, value: Secret | str | bytes) -> Secret:
        return value if isinstance(value, Secret) else cls(value)

    def reveal(self) -> bytes:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


def sign(secret: Secret | str | bytes, body: bytes, timestamp: int) -> str:
    """``sha256=<hex>`` over ``<timestamp>.<body>`` (see the module docstring)."""
    key = Secret.of(secret).reveal()
    return "sha256=" + hmac.new(key, str(int(timestamp)).encode() + b"." + body, hashlib.sha256).hexdigest()


def delivery_id(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:32]


def signed_headers(secret: Secret | str | bytes, body: bytes, timestamp: int) -> dict[str, str]:
    return {
        TIMESTAMP_HEADER: str(int(timestamp)),
        SIGNATURE_HEADER: sign(secret, body, timestamp),
        DELIVERY_HEADER: delivery_id(body),
    }


def verify_signature(
    secret: Secret | str | bytes | Sequence[Secret | str | bytes],
    body: bytes,
    headers: Mapping[str, str],
    *,
    tolerance_s: float = SIGNATURE_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """True when ``headers`` carry a valid signature of ``body`` made within ``tolerance_s`` of ``now``.

    ``secret`` may be a list (accept any, for key rotation). Header names are matched case-insensitively.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    stamp = lowered.get(TIMESTAMP_HEADER.lower(), "")
    signatures = [s.strip() for s in lowered.get(SIGNATURE_HEADER.lower(), "").split(",") if s.strip()]
    if not stamp.isdigit() or not signatures:
        return False
    timestamp = int(stamp)
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    secrets = [secret] if isinstance(secret, Secret | str | bytes) else list(secret)
    for candidate in secrets:
        expected = sign(candidate, body, timestamp)
        if any(hmac.compare_digest(expected, s) for s in signatures):
            return True
    return False


# ---------------------------------------------------------------------- deliveries and dead letters


@dataclass(frozen=True, slots=True)
class FailedDelivery:
    """A payload an output gave up on: what the dead letter carries."""

    output: str
    url: str  # credentials removed
    reason: str
    body: bytes
    attempts: int
    alert_ids: tuple[str, ...] = ()

    def to_dead_letter(self, ts_ms: int) -> DeadLetter:
        """The ``DeadLetter`` record for the dead-letter topic (the id is stable for the same output and body)."""
        try:
            payload, encoding = self.body.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            payload, encoding = base64.b64encode(self.body).decode(), "base64"
        return DeadLetter(
            id=f"alert-output/{self.output}/{delivery_id(self.body)}",
            topic=ALERTS.name,
            stage=f"alert-output:{self.output}",
            reason=f"{self.reason} ({self.url}, {self.attempts} attempts)",
            payload=payload,
            payload_encoding=encoding,  # type: ignore[arg-type]
            ts_ms=ts_ms,
        )


@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome of one request: ``alerts`` is how many alerts it carried."""

    ok: bool
    alerts: int
    attempts: int
    status: int | None = None
    failure: FailedDelivery | None = None


DeadLetterCallback = Callable[[FailedDelivery], None]


@runtime_checkable
class AlertOutput(Protocol):
    """What :class:`AlertDispatcher` needs of an output."""

    name: str
    dead_letter: DeadLetterCallback | None

    async def send(self, alerts: Sequence[Alert]) -> list[Delivery]: ...

    async def close(self) -> None: ...


@runtime_checkable
class ResendingOutput(AlertOutput, Protocol):
    """An output whose receiver forgets firing alerts unless they are re-sent (Alertmanager)."""

    resend_interval_s: float

    async def resend_firing(self) -> list[Delivery]: ...


def _safe_url(url: str | yarl.URL) -> str:
    u = yarl.URL(url)
    return str(u.with_user(None)) if u.user or u.password else str(u)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    backoff_s: float = 0.2
    max_backoff_s: float = 30.0
    timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise OutputConfigError("max_attempts", "must be >= 1")
        if self.timeout_s <= 0:
            raise OutputConfigError("timeout_s", "must be > 0")
        for name in ("backoff_s", "max_backoff_s"):
            if getattr(self, name) < 0:
                raise OutputConfigError(name, "must be >= 0")

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Wait after failed attempt ``attempt`` (1-based): exponential, half fixed and half random."""
        base = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
        wait = base / 2 + random.uniform(0, base / 2)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_backoff_s))
        return wait


@dataclass(frozen=True, slots=True)
class _Outcome:
    ok: bool
    status: int | None
    body: bytes
    reason: str
    attempts: int


class HttpOutput:
    """Shared HTTP machinery: a lazily created session, retries, signing, dead letters."""

    def __init__(
        self,
        name: str,
        *,
        secret: Secret | str | bytes | None = None,
        max_attempts: int = 5,
        backoff_s: float = 0.2,
        timeout_s: float = 5.0,
        max_backoff_s: float = 30.0,
        dead_letter: DeadLetterCallback | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.name = name
        self.policy = RetryPolicy(max_attempts, backoff_s, max_backoff_s, timeout_s)
        self._secret = None if secret is None else Secret.of(secret)
        self.dead_letter = dead_letter
        self._session = session
        self._own_session = session is None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"

    async def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.policy.timeout_s), headers={"User-Agent": USER_AGENT}
            )
            self._own_session = True
        return self._session

    async def close(self) -> None:
        if self._session is not None and self._own_session and not self._session.closed:
            await self._session.close()
        self._session = None

    async def __aenter__(self) -> HttpOutput:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _request(self, method: str, url: str | yarl.URL, body: bytes | None, *, sign: bool = True) -> _Outcome:
        """One logical request with retries; never raises for network or HTTP errors."""
        session = await self._client()
        reason = ""
        status: int | None = None
        attempt = 0
        for attempt in range(1, self.policy.max_attempts + 1):
            headers = {"Content-Type": "application/json"} if body is not None else {}
            if sign and self._secret is not None and body is not None:
                headers.update(signed_headers(self._secret, body, int(time.time())))
            retry_after: float | None = None
            try:
                async with session.request(
                    method,
                    url,
                    data=body,
                    headers=headers,
                    allow_redirects=False,
                    raise_for_status=False,
                    timeout=aiohttp.ClientTimeout(total=self.policy.timeout_s),
                ) as resp:
                    status = resp.status
                    content = await resp.read()
                    if 200 <= status < 300:
                        return _Outcome(True, status, content, "", attempt)
                    text = content[:_REASON_BODY_CHARS].decode("utf-8", "replace").strip()
                    reason = f"HTTP {status}" + (f": {text}" if text else "")
                    if status not in _RETRY_STATUSES and status < 500:
                        break
                    with contextlib.suppress(ValueError):
                        retry_after = float(resp.headers.get("Retry-After", ""))
            except (aiohttp.ClientError, TimeoutError) as exc:
                status = None
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if attempt < self.policy.max_attempts:
                await asyncio.sleep(self.policy.delay(attempt, retry_after))
        return _Outcome(False, status, b"", reason, attempt)

    async def _deliver(
        self,
        method: str,
        url: str | yarl.URL,
        body: bytes,
        alerts: Sequence[Alert],
        *,
        sign: bool = True,
        dead_letter: bool = True,
    ) -> Delivery:
        """Send with retries; on failure log, and (unless ``dead_letter`` is False) call the dead-letter callback."""
        outcome = await self._request(method, url, body, sign=sign)
        if outcome.ok:
            return Delivery(True, len(alerts), outcome.attempts, outcome.status)
        failure = FailedDelivery(
            output=self.name,
            url=_safe_url(url),
            reason=outcome.reason,
            body=body,
            attempts=outcome.attempts,
            alert_ids=tuple(a.id for a in alerts),
        )
        log.warning(
            "alert output %s gave up on %d alert(s) after %d attempts: %s",
            self.name,
            len(alerts),
            outcome.attempts,
            outcome.reason,
        )
        if dead_letter and self.dead_letter is not None:
            _call_dead_letter(self.dead_letter, failure)
        return Delivery(False, len(alerts), outcome.attempts, outcome.status, failure)


def _call_dead_letter(callback: DeadLetterCallback, failure: FailedDelivery) -> None:
    try:
        callback(failure)
    except Exception:  # a broken callback must not stop the outputs
        log.exception("dead-letter callback failed for output %s", failure.output)


def _check_url_template(key: str, template: str) -> None:
    """A URL template may only use {fingerprint}, {device} and {name}."""
    try:
        template.format(fingerprint="f", device="d", name="n")
    except (KeyError, IndexError, ValueError) as exc:
        known = "{fingerprint} {device} {name}"
        raise OutputConfigError(key, f"bad URL template (placeholders: {known}): {exc!r}") from None


def alert_payload(alert: Alert) -> dict[str, Any]:
    """Every field of an alert, defaults included (receivers should not need to know the defaults)."""
    return msgspec.structs.asdict(alert)


def _rfc3339(ms: int) -> str:
    seconds, millis = divmod(ms, 1000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{millis:03d}Z"


# ---------------------------------------------------------------------- webhook


class WebhookSender(HttpOutput):
    """POSTs alerts as signed JSON: ``{"version": 1, "source": "ossbss", "alerts": [<alert>, ...]}``."""

    def __init__(
        self,
        url: str,
        secret: Secret | str | bytes,
        *,
        max_attempts: int = 5,
        backoff_s: float = 0.2,
        timeout_s: float = 5.0,
        max_backoff_s: float = 30.0,
        dead_letter: DeadLetterCallback | None = None,
        name: str = "webhook",
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        super().__init__(
            name,
            secret=secret,
            max_attempts=max_attempts,
            backoff_s=backoff_s,
            timeout_s=timeout_s,
            max_backoff_s=max_backoff_s,
            dead_letter=dead_letter,
            session=session,
        )
        self.url = yarl.URL(url)
        if self.url.scheme not in ("http", "https"):
            raise OutputConfigError("url", f"webhook URL must be http(s), got {_safe_url(url)!r}")

    @staticmethod
    def body(alerts: Sequence[Alert]) -> bytes:
        return msgspec.json.encode(
            {
                "version": WEBHOOK_PAYLOAD_VERSION,
                "source": "ossbss",
                "alerts": [alert_payload(a) for a in alerts],
            }
        )

    async def send(self, alerts: Sequence[Alert]) -> list[Delivery]:
        if not alerts:
            return []
        return [await self._deliver("POST", self.url, self.body(alerts), alerts)]


# ---------------------------------------------------------------------- Alertmanager

_LABEL_NAME_BAD = re.compile(r"[^A-Za-z0-9_]")


def _label_name(name: str) -> str:
    cleaned = _LABEL_NAME_BAD.sub("_", name)
    return cleaned if cleaned and not cleaned[0].isdigit() else f"_{cleaned}"


class AlertmanagerClient(HttpOutput):
    """Posts alerts to Alertmanager's v2 API and reads them back.

    Labels: ``alertname``, ``device``, ``ifIndex``, ``severity``, ``fingerprint`` (ossbss's) and the
    alert's identifying labels; the volatile ones (``flapping``, ``suppressed``, ``value``) go to the
    annotations with ``summary`` and ``ossbss_id``, so they never change Alertmanager's identity of the alert.

    Firing alerts are posted with ``endsAt = now + firing_ttl_s`` (like Prometheus), so Alertmanager
    drops them by itself if ossbss stops; the client keeps the firing set and :meth:`resend_firing`
    re-posts it (the dispatcher calls it every ``resend_interval_s``, which must be well below
    ``firing_ttl_s``). A resolved alert is posted with ``endsAt`` = its ``ends_ms`` (the resolution
    time). When an alert's label set changes (severity escalation), the old set is resolved in the same
    request. After a restart, :meth:`seed_firing` with ``AlertEngine.open_alerts()`` restores the set.
    """

    def __init__(
        self,
        base_url: str,
        *,
        max_attempts: int = 5,
        backoff_s: float = 0.2,
        timeout_s: float = 5.0,
        max_backoff_s: float = 30.0,
        resend_interval_s: float = 60.0,
        firing_ttl_s: float | None = None,
        generator_url: str = "",
        dead_letter: DeadLetterCallback | None = None,
        name: str = "alertmanager",
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        super().__init__(
            name,
            max_attempts=max_attempts,
            backoff_s=backoff_s,
            timeout_s=timeout_s,
            max_backoff_s=max_backoff_s,
            dead_letter=dead_letter,
            session=session,
        )
        self.base_url = yarl.URL(base_url.rstrip("/"))
        if self.base_url.scheme not in ("http", "https"):
            raise OutputConfigError("base_url", f"must be http(s), got {_safe_url(base_url)!r}")
        if resend_interval_s <= 0:
            raise OutputConfigError("resend_interval_s", "must be > 0")
        self.resend_interval_s = resend_interval_s
        self.firing_ttl_s = 4 * resend_interval_s if firing_ttl_s is None else firing_ttl_s
        if self.firing_ttl_s <= resend_interval_s:
            raise OutputConfigError("firing_ttl_s", "must be longer than resend_interval_s")
        _check_url_template("generator_url", generator_url)
        self.generator_url = generator_url
        self._firing: dict[str, Alert] = {}
        self._posted: dict[str, dict[str, str]] = {}  # fingerprint -> label set last posted as firing

    @property
    def alerts_url(self) -> yarl.URL:
        return self.base_url / "api" / "v2" / "alerts"

    @property
    def firing(self) -> list[Alert]:
        return list(self._firing.values())

    def labels(self, alert: Alert) -> dict[str, str]:
        labels = {_label_name(k): v for k, v in alert.labels.items() if k not in VOLATILE_LABELS and v}
        labels.update(alertname=alert.name, severity=alert.severity, fingerprint=alert.fingerprint)
        if alert.device:
            labels["device"] = alert.device
        if alert.if_index is not None:
            labels["ifIndex"] = str(alert.if_index)
        return labels

    def to_alertmanager(self, alert: Alert, now_ms: int) -> dict[str, Any]:
        """The v2 ``postableAlert`` for one alert state (firing: ``endsAt`` is now + ``firing_ttl_s``)."""
        annotations = {k: v for k, v in alert.labels.items() if k in VOLATILE_LABELS and v}
        if alert.summary:
            annotations["summary"] = alert.summary
        annotations["ossbss_id"] = alert.id
        if alert.status == "resolved":
            ends = alert.ends_ms if alert.ends_ms is not None else alert.updated_ms
        else:
            ends = max(now_ms, alert.starts_ms) + int(self.firing_ttl_s * 1000)
        posted: dict[str, Any] = {
            "labels": self.labels(alert),
            "annotations": annotations,
            "startsAt": _rfc3339(alert.starts_ms),
            "endsAt": _rfc3339(max(ends, alert.starts_ms)),
        }
        if self.generator_url:
            posted["generatorURL"] = self.generator_url.format(
                fingerprint=alert.fingerprint, device=alert.device, name=alert.name
            )
        return posted

    def seed_firing(self, alerts: Iterable[Alert]) -> None:
        """Take over the firing set after a restart (pass ``AlertEngine.open_alerts()``)."""
        for alert in alerts:
            if alert.status == "firing" and SUPPRESSED_LABEL not in alert.labels:
                self._firing[alert.fingerprint] = alert
                self._posted[alert.fingerprint] = self.labels(alert)

    def _postable(self, alerts: Sequence[Alert], now_ms: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for alert in alerts:
            item = self.to_alertmanager(alert, now_ms)
            previous = self._posted.get(alert.fingerprint)
            if previous is not None and previous != item["labels"]:
                # the old label set is another alert for Alertmanager: resolve it now
                stale = {**item, "labels": previous, "endsAt": _rfc3339(max(now_ms, alert.starts_ms))}
                out.append(stale)
            if alert.status == "firing":
                self._firing[alert.fingerprint] = alert
                self._posted[alert.fingerprint] = item["labels"]
            else:
                self._firing.pop(alert.fingerprint, None)
                self._posted.pop(alert.fingerprint, None)
            out.append(item)
        return out

    async def send(self, alerts: Sequence[Alert]) -> list[Delivery]:
        if not alerts:
            return []
        body = msgspec.json.encode(self._postable(alerts, int(time.time() * 1000)))
        return [await self._deliver("POST", self.alerts_url, body, alerts, sign=False)]

    async def resend_firing(self) -> list[Delivery]:
        """Re-post every firing alert with a fresh ``endsAt``, so Alertmanager keeps them active.

        A failed re-send is logged and reported but not dead-lettered: it is state, not an event, and the
        next round sends it again (the first delivery of each alert was dead-lettered if it failed).
        """
        alerts = list(self._firing.values())
        if not alerts:
            return []
        now_ms = int(time.time() * 1000)
        body = msgspec.json.encode([self.to_alertmanager(a, now_ms) for a in alerts])
        return [await self._deliver("POST", self.alerts_url, body, alerts, sign=False, dead_letter=False)]

    async def alerts(
        self,
        *,
        active: bool = True,
        silenced: bool = True,
        inhibited: bool = True,
        unprocessed: bool = True,
        filters: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        """``GET /api/v2/alerts`` (gettableAlerts); ``filters`` are matchers such as ``'device="r1"'``."""
        query: list[tuple[str, str]] = [
            ("active", str(active).lower()),
            ("silenced", str(silenced).lower()),
            ("inhibited", str(inhibited).lower()),
            ("unprocessed", str(unprocessed).lower()),
        ]
        query += [("filter", f) for f in filters]
        outcome = await self._request("GET", self.alerts_url.with_query(query), None)
        if not outcome.ok:
            raise OutputUnavailable(_safe_url(self.alerts_url), outcome.reason)
        result = json.loads(outcome.body)
        if not isinstance(result, list):
            raise OutputUnavailable(_safe_url(self.alerts_url), "answer is not a JSON array of alerts")
        return result


# ---------------------------------------------------------------------- ticket systems

_PLACEHOLDER = re.compile(r"\$(?:\{([^{}]*)\}|\$)")
_PLACEHOLDER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|labels\.[^\s{}$]+")
_SEVERITY_PRIORITY = {"critical": 1, "major": 2, "minor": 3, "warning": 4, "info": 5}
_SEVERITY_URGENCY = {"critical": 1, "major": 2, "minor": 3, "warning": 3, "info": 3}
_JIRA_PRIORITY = {"critical": "Highest", "major": "High", "minor": "Medium", "warning": "Low", "info": "Lowest"}
PLACEHOLDERS: frozenset[str] = frozenset(
    {
        "id",
        "fingerprint",
        "name",
        "status",
        "severity",
        "device",
        "if_index",
        "summary",
        "description",
        "starts",
        "ends",
        "updated",
        "starts_ms",
        "ends_ms",
        "updated_ms",
        "priority",
        "urgency",
        "priority_name",
    }
)
BUILTIN_TEMPLATES = ("servicenow", "jira")


def template_values(alert: Alert) -> dict[str, str]:
    """The placeholder values for one alert (``labels.<name>`` is looked up separately)."""
    where = f"{alert.device} ifIndex {alert.if_index}" if alert.if_index is not None else alert.device
    label_lines = "".join(f"\n  {k}: {v}" for k, v in sorted(alert.labels.items()))
    description = (
        f"{alert.summary or alert.name}\n\nalert: {alert.name}\nseverity: {alert.severity}\ndevice: {where}\n"
        f"since: {_rfc3339(alert.starts_ms)}\n"
        + (f"until: {_rfc3339(alert.ends_ms)}\n" if alert.ends_ms is not None else "")
        + f"fingerprint: {alert.fingerprint}"
        + (f"\nlabels:{label_lines}" if label_lines else "")
    )
    return {
        "id": alert.id,
        "fingerprint": alert.fingerprint,
        "name": alert.name,
        "status": alert.status,
        "severity": alert.severity,
        "device": alert.device,
        "if_index": "" if alert.if_index is None else str(alert.if_index),
        "summary": alert.summary,
        "description": description,
        "starts": _rfc3339(alert.starts_ms),
        "ends": "" if alert.ends_ms is None else _rfc3339(alert.ends_ms),
        "updated": _rfc3339(alert.updated_ms),
        "starts_ms": str(alert.starts_ms),
        "ends_ms": "" if alert.ends_ms is None else str(alert.ends_ms),
        "updated_ms": str(alert.updated_ms),
        "priority": str(_SEVERITY_PRIORITY[alert.severity]),
        "urgency": str(_SEVERITY_URGENCY[alert.severity]),
        "priority_name": _JIRA_PRIORITY[alert.severity],
    }


_Part = str | tuple[str]  # a literal, or (placeholder name,)


def _compile_text(text: str, where: str) -> list[_Part] | str:
    """A string with placeholders as parts; a plain string stays a string."""
    parts: list[_Part] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(text):
        if m.start() > pos:
            parts.append(text[pos : m.start()])
        name = m.group(1)
        if name is None:
            parts.append("$")
        else:
            if not _PLACEHOLDER_NAME.fullmatch(name) or (name not in PLACEHOLDERS and not name.startswith("labels.")):
                known = ", ".join(sorted(PLACEHOLDERS))
                raise TemplateError(where, f"unknown placeholder ${{{name}}}; known: {known}, labels.<name>")
            parts.append((name,))
        pos = m.end()
    if pos < len(text):
        parts.append(text[pos:])
    for part in parts:
        if isinstance(part, str) and "${" in part and part != "$":
            raise TemplateError(where, "unterminated placeholder '${' (write '$$' for a literal '$')")
    if len(parts) == 1 and isinstance(parts[0], str):
        return parts[0]
    return parts


def _compile_tree(node: Any, where: str) -> Any:
    if isinstance(node, str):
        return _compile_text(node, where)
    if isinstance(node, list):
        return ("list", [_compile_tree(v, f"{where}[{i}]") for i, v in enumerate(node)])
    if isinstance(node, dict):
        return ("dict", [(_compile_text(k, f"{where}.{k}"), _compile_tree(v, f"{where}.{k}")) for k, v in node.items()])
    return ("value", node)  # numbers, booleans, null: kept as they are


def _render_text(compiled: list[_Part] | str, values: Mapping[str, str], labels: Mapping[str, str]) -> str:
    if isinstance(compiled, str):
        return compiled
    out: list[str] = []
    for part in compiled:
        if isinstance(part, str):
            out.append(part)
        else:
            name = part[0]
            out.append(labels.get(name[7:], "") if name.startswith("labels.") else values[name])
    return "".join(out)


def _render_tree(node: Any, values: Mapping[str, str], labels: Mapping[str, str]) -> Any:
    if isinstance(node, str | list):
        return _render_text(node, values, labels)
    kind, content = node
    if kind == "list":
        return [_render_tree(v, values, labels) for v in content]
    if kind == "dict":
        return {_render_text(k, values, labels): _render_tree(v, values, labels) for k, v in content}
    return content


class TicketTemplate:
    """A JSON document whose strings may hold ``${placeholder}``s (``$$`` is a literal ``$``).

    The template is parsed as JSON once; placeholders are substituted inside string values and keys, and
    the result is encoded as JSON again, so any value (quotes, backslashes, newlines, unicode) comes out
    correctly escaped. Placeholders: ``PLACEHOLDERS`` plus ``${labels.<name>}`` (empty when absent).
    ``priority`` is 1 (critical) .. 5 (info); ``urgency`` 1..3 (ServiceNow); ``priority_name`` Jira's
    Highest..Lowest; ``description`` a multi-line text of the alert; times are RFC 3339 UTC.
    """

    def __init__(self, text: str, *, source: str = "template") -> None:
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TemplateError(source, f"not valid JSON: {exc}") from None
        self.source = source
        self._compiled = _compile_tree(document, source)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> TicketTemplate:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise TemplateError(str(path), f"cannot read template: {exc.strerror}") from None
        return cls(text, source=str(path))

    def render(self, alert: Alert) -> bytes:
        return msgspec.json.encode(_render_tree(self._compiled, template_values(alert), alert.labels))


@dataclass(frozen=True)
class TicketTemplates:
    """The payloads for opening and for resolving a ticket."""

    open: TicketTemplate
    resolve: TicketTemplate

    @classmethod
    def builtin(cls, name: str) -> TicketTemplates:
        """``servicenow`` (an incident, Table API style) or ``jira`` (an issue, REST v2 style)."""
        if name not in BUILTIN_TEMPLATES:
            raise OutputConfigError("template", f"unknown built-in template {name!r}; known: {BUILTIN_TEMPLATES}")
        folder = importlib.resources.files("assurance") / "templates"
        return cls(
            TicketTemplate((folder / f"{name}.open.json").read_text(encoding="utf-8"), source=f"{name}.open.json"),
            TicketTemplate(
                (folder / f"{name}.resolve.json").read_text(encoding="utf-8"), source=f"{name}.resolve.json"
            ),
        )

    @classmethod
    def from_files(cls, open_path: str | os.PathLike[str], resolve_path: str | os.PathLike[str]) -> TicketTemplates:
        return cls(TicketTemplate.from_file(open_path), TicketTemplate.from_file(resolve_path))


class TicketSink(HttpOutput):
    """Opens a ticket when an alert starts firing and resolves it when the alert resolves.

    One request per alert. A firing update of an alert already ticketed sends nothing (ticket systems
    hold their own state); :meth:`seed_open` takes over the open set after a restart. ``resolve_url``
    (default: ``url``) may hold ``{fingerprint}``, ``{device}`` and ``{name}``, substituted URL-quoted.
    Signed like the webhook when ``secret`` is given.
    """

    def __init__(
        self,
        url: str,
        template: TicketTemplates | str,
        *,
        resolve_url: str = "",
        method: str = "POST",
        resolve_method: str = "POST",
        secret: Secret | str | bytes | None = None,
        max_attempts: int = 5,
        backoff_s: float = 0.2,
        timeout_s: float = 5.0,
        max_backoff_s: float = 30.0,
        dead_letter: DeadLetterCallback | None = None,
        name: str = "tickets",
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        super().__init__(
            name,
            secret=secret,
            max_attempts=max_attempts,
            backoff_s=backoff_s,
            timeout_s=timeout_s,
            max_backoff_s=max_backoff_s,
            dead_letter=dead_letter,
            session=session,
        )
        self.templates = TicketTemplates.builtin(template) if isinstance(template, str) else template
        self.url = url
        self.resolve_url = resolve_url or url
        for key, value in (("url", self.url), ("resolve_url", self.resolve_url)):
            _check_url_template(key, value)
            if yarl.URL(value).scheme not in ("http", "https"):
                raise OutputConfigError(key, f"must be http(s), got {_safe_url(value)!r}")
        self.method = method.upper()
        self.resolve_method = resolve_method.upper()
        self._open: set[str] = set()

    def seed_open(self, alerts: Iterable[Alert]) -> None:
        """Alerts that already have a ticket (after a restart: ``AlertEngine.open_alerts()``)."""
        self._open.update(a.fingerprint for a in alerts if a.status == "firing" and SUPPRESSED_LABEL not in a.labels)

    def _url(self, template: str, alert: Alert) -> yarl.URL:
        from urllib.parse import quote

        return yarl.URL(
            template.format(
                fingerprint=quote(alert.fingerprint, safe=""),
                device=quote(alert.device, safe=""),
                name=quote(alert.name, safe=""),
            ),
            encoded=True,
        )

    async def send(self, alerts: Sequence[Alert]) -> list[Delivery]:
        deliveries: list[Delivery] = []
        for alert in alerts:
            if alert.status == "firing":
                if alert.fingerprint in self._open:
                    continue
                body = self.templates.open.render(alert)
                delivery = await self._deliver(self.method, self._url(self.url, alert), body, [alert])
                if delivery.ok:
                    self._open.add(alert.fingerprint)
            else:
                body = self.templates.resolve.render(alert)
                delivery = await self._deliver(self.resolve_method, self._url(self.resolve_url, alert), body, [alert])
                self._open.discard(alert.fingerprint)
            deliveries.append(delivery)
        return deliveries


# ---------------------------------------------------------------------- dispatcher


@dataclass
class OutputStats:
    sent: int = 0  # alerts delivered
    failed: int = 0  # alerts given up on (dead-lettered)
    dropped: int = 0  # alerts refused because the output's queue was full (dead-lettered)
    resends: int = 0  # resend_firing rounds
    resend_failures: int = 0  # rounds that did not reach the receiver (logged, not dead-lettered)


_RESEND = object()


@dataclass
class _Lane:
    output: AlertOutput
    queue: asyncio.Queue[Any]
    stats: OutputStats = field(default_factory=OutputStats)
    resend_pending: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class AlertDispatcher:
    """Fans alerts out to outputs, each with its own bounded queue and worker task.

    :meth:`submit` never waits: a slow or broken output fills only its own queue, and an alert that
    does not fit is dead-lettered (reason ``queue full``) and counted as ``dropped``. Records with the
    label ``suppressed`` are not sent (``send_suppressed=True`` sends them). Each worker sends up to
    ``batch_max`` queued alerts per call; for outputs with ``resend_firing`` it also queues a resend every
    ``resend_interval_s``, so re-sends and sends of the same output never overlap or reorder.
    A failure is dead-lettered by the output's own callback, else by the dispatcher's.
    """

    def __init__(
        self,
        outputs: Sequence[AlertOutput],
        *,
        queue_size: int = 1000,
        batch_max: int = 100,
        dead_letter: DeadLetterCallback | None = None,
        send_suppressed: bool = False,
    ) -> None:
        if queue_size < 1:
            raise OutputConfigError("queue_size", "must be >= 1")
        if batch_max < 1:
            raise OutputConfigError("batch_max", "must be >= 1")
        names = [o.name for o in outputs]
        if len(set(names)) != len(names):
            raise OutputConfigError("outputs", f"output names must be unique, got {names}")
        self.queue_size = queue_size
        self.batch_max = batch_max
        self.dead_letter = dead_letter
        self.send_suppressed = send_suppressed
        self.suppressed = 0
        self._outputs = list(outputs)
        self._lanes: dict[str, _Lane] = {}
        self._started = False

    @property
    def stats(self) -> dict[str, OutputStats]:
        return {name: lane.stats for name, lane in self._lanes.items()}

    def queued(self) -> dict[str, int]:
        return {name: lane.queue.qsize() for name, lane in self._lanes.items()}

    async def start(self) -> None:
        """Start one worker per output (and its resend timer); call inside the running event loop."""
        if self._started:
            return
        for output in self._outputs:
            lane = _Lane(output, asyncio.Queue(self.queue_size))
            lane.tasks.append(asyncio.create_task(self._work(lane), name=f"alert-output-{output.name}"))
            if isinstance(output, ResendingOutput):
                lane.tasks.append(asyncio.create_task(self._resend_timer(lane), name=f"alert-resend-{output.name}"))
            self._lanes[output.name] = lane
        self._started = True

    def submit(self, alerts: Iterable[Alert]) -> int:
        """Queue alerts for every output without waiting; returns how many (alert, output) pairs were queued."""
        if not self._started:
            raise OutputError("AlertDispatcher.submit before start()")
        queued = 0
        for alert in alerts:
            if SUPPRESSED_LABEL in alert.labels and not self.send_suppressed:
                self.suppressed += 1
                continue
            for lane in self._lanes.values():
                try:
                    lane.queue.put_nowait(alert)
                    queued += 1
                except asyncio.QueueFull:
                    lane.stats.dropped += 1
                    failure = FailedDelivery(
                        output=lane.output.name,
                        url="",
                        reason=f"queue full ({self.queue_size} alerts waiting for output {lane.output.name})",
                        body=WebhookSender.body([alert]),
                        attempts=0,
                        alert_ids=(alert.id,),
                    )
                    self._dead_letter(lane.output, failure)
        return queued

    async def drain(self, timeout_s: float = 30.0) -> bool:
        """Wait until every queued alert has been handled; False if that took longer than ``timeout_s``."""
        try:
            await asyncio.wait_for(asyncio.gather(*(lane.queue.join() for lane in self._lanes.values())), timeout_s)
            return True
        except TimeoutError:
            return False

    async def stop(self, *, drain: bool = True, timeout_s: float = 10.0) -> None:
        """Optionally drain, then stop the workers and close the outputs."""
        if drain and self._started:
            await self.drain(timeout_s)
        for lane in self._lanes.values():
            for task in lane.tasks:
                task.cancel()
            for task in lane.tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for output in self._outputs:
            try:
                await output.close()
            except Exception:
                log.exception("closing alert output %s failed", output.name)
        self._lanes.clear()
        self._started = False

    async def __aenter__(self) -> AlertDispatcher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _dead_letter(self, output: AlertOutput, failure: FailedDelivery) -> None:
        callback = output.dead_letter or self.dead_letter
        if callback is None:
            log.error("alert output %s: no dead-letter callback for %s", output.name, failure.reason)
            return
        _call_dead_letter(callback, failure)

    async def _resend_timer(self, lane: _Lane) -> None:
        output = lane.output
        assert isinstance(output, ResendingOutput)
        while True:
            await asyncio.sleep(output.resend_interval_s)
            if not lane.resend_pending and not lane.queue.full():
                lane.resend_pending = True
                lane.queue.put_nowait(_RESEND)

    async def _work(self, lane: _Lane) -> None:
        output = lane.output
        while True:
            batch = [await lane.queue.get()]
            while len(batch) < self.batch_max and not lane.queue.empty():
                batch.append(lane.queue.get_nowait())
            alerts = [item for item in batch if item is not _RESEND]
            resend = len(alerts) != len(batch)
            try:
                if alerts:
                    self._account(lane, await self._send(output, alerts))
                if resend:
                    lane.resend_pending = False
                    lane.stats.resends += 1
                    assert isinstance(output, ResendingOutput)
                    await self._resend(lane, output)
            finally:
                for _ in batch:
                    lane.queue.task_done()

    async def _send(self, output: AlertOutput, alerts: list[Alert]) -> list[Delivery]:
        try:
            return await output.send(alerts)
        except Exception as exc:  # a bug in an output must not stop its worker
            log.exception("alert output %s raised", output.name)
            failure = FailedDelivery(
                output=output.name,
                url="",
                reason=f"output raised {type(exc).__name__}: {exc}",
                body=WebhookSender.body(alerts),
                attempts=0,
                alert_ids=tuple(a.id for a in alerts),
            )
            self._dead_letter(output, failure)
            return [Delivery(False, len(alerts), 0, None, None)]

    async def _resend(self, lane: _Lane, output: ResendingOutput) -> None:
        try:
            deliveries = await output.resend_firing()
        except Exception:
            log.exception("alert output %s failed to re-send firing alerts", output.name)
            deliveries = [Delivery(False, 0, 0)]
        if not all(d.ok for d in deliveries):
            lane.stats.resend_failures += 1

    def _account(self, lane: _Lane, deliveries: list[Delivery]) -> None:
        for d in deliveries:
            if d.ok:
                lane.stats.sent += d.alerts
            else:
                lane.stats.failed += d.alerts
                if d.failure is not None and lane.output.dead_letter is None:
                    self._dead_letter(lane.output, d.failure)


__all__ = [
    "BUILTIN_TEMPLATES",
    "DELIVERY_HEADER",
    "PLACEHOLDERS",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "AlertDispatcher",
    "AlertOutput",
    "AlertmanagerClient",
    "DeadLetterCallback",
    "Delivery",
    "FailedDelivery",
    "HttpOutput",
    "OutputConfigError",
    "OutputError",
    "OutputStats",
    "OutputUnavailable",
    "ResendingOutput",
    "RetryPolicy",
    "Secret",
    "TemplateError",
    "TicketSink",
    "TicketTemplate",
    "TicketTemplates",
    "WebhookSender",
    "alert_payload",
    "delivery_id",
    "sign",
    "signed_headers",
    "template_values",
    "verify_signature",
]
