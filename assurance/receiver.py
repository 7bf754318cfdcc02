"""A webhook receiver that checks ossbss signatures: for trying a configuration, tests and benchmarks.

``WebhookReceiver(secret).start()`` listens on a loopback port (``url``) and accepts POSTs whose
``X-Ossbss-Signature`` verifies (401 otherwise, counted in ``refused``). Each accepted delivery is
kept with the time it arrived; a delivery id seen before is acknowledged and not kept twice, as a
real receiver should. Alertmanager's own notifications (unsigned) are accepted when no secret is set.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from assurance.outputs import DELIVERY_HEADER, verify_signature


@dataclass
class Received:
    at: float  # time.time() when it arrived
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def alerts(self) -> list[dict[str, Any]]:
        return list(self.body.get("alerts", []))


class WebhookReceiver:
    def __init__(self, secret: str = "", host: str = "127.0.0.1", port: int = 0) -> None:
        self.secret = secret
        self.received: list[Received] = []
        self.refused = 0
        self.duplicates = 0
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                headers = {k: v for k, v in self.headers.items()}
                status = receiver._accept(body, headers)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook-receiver", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/hook"

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _accept(self, body: bytes, headers: dict[str, str]) -> int:
        if self.secret and not verify_signature(self.secret, body, headers):
            with self._lock:
                self.refused += 1
            return 401
        try:
            doc = json.loads(body)
        except ValueError:
            return 400
        delivery = {k.lower(): v for k, v in headers.items()}.get(DELIVERY_HEADER.lower(), "")
        with self._changed:
            if delivery and delivery in self._seen:
                self.duplicates += 1
                return 200
            if delivery:
                self._seen.add(delivery)
            self.received.append(Received(time.time(), doc, headers))
            self._changed.notify_all()
        return 200

    def alerts(self) -> list[tuple[float, dict[str, Any]]]:
        """Every alert received so far, with its arrival time, in arrival order."""
        with self._lock:
            return [(r.at, a) for r in self.received for a in r.alerts]

    def wait_for(self, predicate: Any, timeout: float = 30.0) -> Any:
        """Wait until ``predicate(alerts())`` is truthy and return its value; raise TimeoutError."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                self._lock.release()
                try:
                    value = predicate(self.alerts())
                finally:
                    self._lock.acquire()
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"the webhook receiver did not get the expected alerts within {timeout:.0f} s")
                self._changed.wait(min(remaining, 0.5))
