"""Prometheus Alertmanager from Debian's ``prometheus-alertmanager`` package, for development and tests.

``LocalAlertmanager(data_dir, webhook_url).start()`` writes a configuration that routes every alert to
one webhook receiver (``send_resolved: true``) with short group timings, starts the binary on a free
loopback port with clustering off and its storage under ``data_dir``, and waits until ``/-/ready``
answers. ``stop()`` sends SIGTERM, then SIGKILL after a timeout.

Run as a script: ``python -m ossbss.localstack.alertmanager --webhook URL [--port N] [--data-dir DIR]``
(runs in the foreground until Ctrl-C).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import yaml

from ossbss.localstack.kafka import free_port

DEBIAN_BINARY = "/usr/bin/prometheus-alertmanager"
INSTALL_HINT = "install it with `scripts/install-system-deps.sh` (Debian package prometheus-alertmanager)"


class AlertmanagerStackError(RuntimeError):
    """The local Alertmanager could not be found or started; the message says what to do."""


def find_binary() -> str:
    """The Alertmanager binary: ``$OSSBSS_ALERTMANAGER_BIN``, Debian's, or ``alertmanager`` on PATH."""
    explicit = os.environ.get("OSSBSS_ALERTMANAGER_BIN", "")
    candidates = [explicit] if explicit else [DEBIAN_BINARY, "prometheus-alertmanager", "alertmanager"]
    for candidate in candidates:
        found = candidate if os.path.isabs(candidate) and os.access(candidate, os.X_OK) else shutil.which(candidate)
        if found:
            return found
    raise AlertmanagerStackError(
        f"the Alertmanager binary was not found (looked for {', '.join(candidates)}); {INSTALL_HINT}"
    )


@dataclass
class LocalAlertmanager:
    """One Alertmanager on loopback: API at :attr:`url`, notifications to ``webhook_url``."""

    data_dir: Path
    webhook_url: str
    port: int = 0
    group_wait: str = "1s"
    group_interval: str = "1s"
    repeat_interval: str = "1h"
    resolve_timeout: str = "1m"
    binary: str = ""

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        self.port = self.port or free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "alertmanager.log"

    def config(self) -> dict[str, object]:
        return {
            "global": {"resolve_timeout": self.resolve_timeout},
            "route": {
                "receiver": "ossbss-webhook",
                # one notification group per alert, so each state change is notified on its own
                "group_by": ["..."],
                "group_wait": self.group_wait,
                "group_interval": self.group_interval,
                "repeat_interval": self.repeat_interval,
            },
            "receivers": [
                {
                    "name": "ossbss-webhook",
                    "webhook_configs": [{"url": self.webhook_url, "send_resolved": True, "max_alerts": 0}],
                }
            ],
        }

    def _write_config(self) -> Path:
        path = self.data_dir / "alertmanager.yml"
        path.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        return path

    def command(self) -> list[str]:
        binary = self.binary or find_binary()
        return [
            binary,
            f"--config.file={self.data_dir / 'alertmanager.yml'}",
            f"--storage.path={self.data_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",  # empty: no gossip port, no HA mode
            "--log.level=info",
        ]

    def start(self, timeout: float = 30.0) -> LocalAlertmanager:
        """Write the config, start the binary and wait until ``/-/ready`` answers 200."""
        command = self.command()
        (self.data_dir / "data").mkdir(parents=True, exist_ok=True)
        self._write_config()
        with open(self.log_file, "ab") as out:
            self._proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                tail = self.log_file.read_text(errors="replace")[-2000:]
                raise AlertmanagerStackError(
                    f"Alertmanager exited with {self._proc.returncode} during start; {self.log_file}:\n{tail}"
                )
            if self.ready():
                return self
            time.sleep(0.1)
        self.stop()
        raise AlertmanagerStackError(f"Alertmanager was not ready within {timeout:.0f}s; see {self.log_file}")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as resp:
                return int(resp.status) == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, timeout: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def __enter__(self) -> LocalAlertmanager:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ossbss.localstack.alertmanager", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--webhook", required=True, help="URL Alertmanager notifies (webhook receiver)")
    parser.add_argument("--port", type=int, default=9093, help="API port on 127.0.0.1 (default 9093)")
    parser.add_argument("--data-dir", default="", help="config and storage directory (default: a temporary one)")
    args = parser.parse_args(argv)
    data_dir = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="ossbss-alertmanager-"))
    manager = LocalAlertmanager(data_dir, args.webhook, port=args.port)
    try:
        manager.start()
    except AlertmanagerStackError as exc:
        print(f"ossbss: {exc}", file=sys.stderr)
        return 1
    print(f"Alertmanager at {manager.url} (notifying {args.webhook}); data in {data_dir}; Ctrl-C stops it")
    try:
        while manager._proc is not None and manager._proc.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        manager.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["DEBIAN_BINARY", "AlertmanagerStackError", "LocalAlertmanager", "find_binary"]
