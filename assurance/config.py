"""The ``assurance:`` section of the configuration: detection thresholds, alert timing and outputs.

Every setting has a default that serves the local run. Secrets (webhook and ticket signing keys) are
never written in the file: an output names the environment variable or the file that holds its key.

    assurance:
      anomaly_threshold: 0.0         # 0: the detector's tuned default
      utilisation_alert_pct: 90
      alertmanager_url: http://127.0.0.1:9093
      webhooks:
        - url: https://noc.example.net/hooks/ossbss
          secret_env: OSSBSS_WEBHOOK_SECRET
      tickets:
        - url: https://example.service-now.com/api/now/table/incident
          template: servicenow        # or jira, or a path to a JSON template
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ossbss.config import ConfigError, build_section


@dataclass(frozen=True)
class OutputConfig:
    """One HTTP output: a signed webhook or a ticket system."""

    url: str = ""
    secret_env: str = ""  # the signing key is read from this environment variable ...
    secret_file: str = ""  # ... or from this file (first line)
    template: str = ""  # tickets only: servicenow, jira or a path to the JSON template that opens a ticket
    resolve_template: str = ""  # tickets with a template file: the JSON template that resolves it
    resolve_url: str = ""  # tickets: where resolutions go ({fingerprint}, {device}, {name}); default: url
    max_attempts: int = 5

    def secret(self, key: str) -> str:
        if self.secret_env:
            value = os.environ.get(self.secret_env)
            if value is None:
                raise ConfigError(f"{key}.secret_env", f"the environment variable {self.secret_env} is not set")
            return value
        if self.secret_file:
            try:
                return Path(self.secret_file).read_text().splitlines()[0].strip()
            except (OSError, IndexError) as exc:
                raise ConfigError(f"{key}.secret_file", f"cannot read a key from {self.secret_file}: {exc}") from None
        return ""

    def validate(self, key: str) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"{key}.url", "must be an http:// or https:// URL")
        if self.max_attempts < 1:
            raise ConfigError(f"{key}.max_attempts", "must be >= 1")
        self.secret(key)  # fail at start, not at the first alert


@dataclass(frozen=True)
class AssuranceConfig:
    enabled: bool = True  # `ossbss up` runs the assurance worker
    group_id: str = "ossbss-assurance"
    notify_group_id: str = "ossbss-notify"
    # Findings scoring at or above this open an anomaly alert; 0 keeps the detector's tuned default.
    anomaly_threshold: float = 0.0
    # Fault prediction from leading indicators (a model trained on simulator scenarios).
    predict_faults: bool = True
    utilisation_alert_pct: float = 90.0
    # A capacity alert opens when an interface is forecast to saturate within this many days.
    capacity_alert_days: float = 14.0
    # Alert timing (seconds of event time). A link alert resolves once the link has stayed up
    # `link_resolve_after_s`; anomaly and utilisation alerts once `anomaly_resolve_after_s` of windows
    # were normal; a failure prediction lapses `prediction_hold_s` after it was last made. A condition
    # changing `flap_threshold` times within `flap_window_s` is one flapping alert, which ends after
    # `flap_stable_s` without a change.
    link_resolve_after_s: float = 30.0
    anomaly_resolve_after_s: float = 180.0
    prediction_hold_s: float = 1800.0
    flap_threshold: int = 6
    flap_window_s: float = 300.0
    flap_stable_s: float = 600.0
    # Detector and alert state is written to Kafka this often (and on shutdown), with the offsets
    # it reflects, so a restarted worker resumes from it instead of relearning from zero.
    checkpoint_interval_s: float = 30.0
    alertmanager_url: str = ""
    # Alertmanager forgets a firing alert that is not posted again within its resolve_timeout.
    alertmanager_resend_s: float = 60.0
    # The worker's own metrics (windows, fault events, alerts, dead letters, checkpoints, alert latency,
    # per-output deliveries) for Prometheus on metrics_host:metrics_port/metrics (0: not served).
    metrics_port: int = 9465
    metrics_host: str = "127.0.0.1"
    webhooks: list[dict[str, Any]] = field(default_factory=list)
    tickets: list[dict[str, Any]] = field(default_factory=list)

    def webhook_outputs(self) -> list[OutputConfig]:
        return [_output(item, f"assurance.webhooks[{i}]") for i, item in enumerate(self.webhooks)]

    def ticket_outputs(self) -> list[OutputConfig]:
        outputs = [_output(item, f"assurance.tickets[{i}]") for i, item in enumerate(self.tickets)]
        for i, out in enumerate(outputs):
            if not out.template:
                raise ConfigError(f"assurance.tickets[{i}].template", "is required (servicenow, jira or a file)")
        return outputs

    def validate(self) -> AssuranceConfig:
        if not 0.0 <= self.anomaly_threshold <= 1.0:
            raise ConfigError("assurance.anomaly_threshold", "must be between 0 and 1")
        if not 0 < self.utilisation_alert_pct <= 100:
            raise ConfigError("assurance.utilisation_alert_pct", "must be in (0, 100]")
        for name in ("link_resolve_after_s", "anomaly_resolve_after_s", "prediction_hold_s", "capacity_alert_days"):
            if getattr(self, name) < 0:
                raise ConfigError(f"assurance.{name}", "must be >= 0")
        for name in ("flap_window_s", "flap_stable_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"assurance.{name}", "must be > 0")
        if self.flap_threshold < 2:
            raise ConfigError("assurance.flap_threshold", "must be >= 2")
        for name in ("checkpoint_interval_s", "alertmanager_resend_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"assurance.{name}", "must be > 0")
        if not 0 <= self.metrics_port <= 65535:
            raise ConfigError("assurance.metrics_port", "must be a TCP port (0 turns the endpoint off)")
        if self.alertmanager_url and not self.alertmanager_url.startswith(("http://", "https://")):
            raise ConfigError("assurance.alertmanager_url", "must be an http:// or https:// URL")
        self.webhook_outputs()
        self.ticket_outputs()
        return self


def _output(item: Any, key: str) -> OutputConfig:
    out: OutputConfig = build_section(OutputConfig, item, key)
    out.validate(key)
    return out


def assurance_config(extra: dict[str, Any]) -> AssuranceConfig:
    """The validated ``assurance:`` section of a loaded configuration (defaults when absent)."""
    section: AssuranceConfig = build_section(AssuranceConfig, extra.get("assurance") or {}, "assurance")
    for name in ("webhooks", "tickets"):
        if not isinstance(getattr(section, name), list):
            raise ConfigError(f"assurance.{name}", "must be a list of outputs, each with a `url`")
    return section.validate()
