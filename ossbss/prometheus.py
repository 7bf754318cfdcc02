"""The Prometheus text format on ``/metrics``, served from a thread: for the sink and the assurance worker."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger("ossbss.metrics")


def gauge_text(samples: Iterable[tuple[str, Mapping[str, str], float]]) -> str:
    """``(name, labels, value)`` samples as Prometheus gauges, one ``# TYPE`` line per name."""
    lines: list[str] = []
    seen: set[str] = set()
    for name, labels, value in samples:
        if name not in seen:
            lines.append(f"# TYPE {name} gauge")
            seen.add(name)
        rendered = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
        lines.append(f"{name}{{{rendered}}} {value:g}")
    return "\n".join(lines) + "\n"


def serve_metrics(render: Callable[[], str], host: str, port: int) -> ThreadingHTTPServer | None:
    """Serve ``render()`` on ``http://host:port/metrics`` until ``shutdown()``; None if the port is taken."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/metrics":
                self.send_error(404, "try /metrics")
                return
            body = render().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as exc:
        log.warning("Prometheus metrics not served: port %s: %s", port, exc)
        return None
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
