"""Configuration: one YAML file plus environment variables for secrets, validated at start.

Every setting has a default that serves the local run, so ``ossbss up`` works with no file at all.
Errors name the offending key (``streams.allowed_lateness_s: must be >= 0``). Secrets are read from
the environment (``OSSBSS_KAFKA_PASSWORD``, ``OSSBSS_CLICKHOUSE_PASSWORD``) and never printed.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]


class ConfigError(ValueError):
    """The configuration is invalid; ``key`` is the dotted path of the offending setting."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


@dataclass(frozen=True)
class KafkaConfig:
    bootstrap_servers: str = ""  # empty: `ossbss up` starts a local broker under var/kafka
    partitions: int = 4
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = ""
    sasl_username: str = ""

    @property
    def sasl_password(self) -> str:
        return os.environ.get("OSSBSS_KAFKA_PASSWORD", "")

    def client_config(self, bootstrap_servers: str = "") -> dict[str, Any]:
        """librdkafka settings shared by every producer and consumer (secrets included, never logged).

        ``bootstrap_servers`` is the broker actually in use, when it was found at run time (a local one).
        """
        conf: dict[str, Any] = {"bootstrap.servers": bootstrap_servers or self.bootstrap_servers}
        if self.security_protocol != "PLAINTEXT":
            conf["security.protocol"] = self.security_protocol
        if self.sasl_mechanism:
            conf.update(
                {
                    "sasl.mechanism": self.sasl_mechanism,
                    "sasl.username": self.sasl_username,
                    "sasl.password": self.sasl_password,
                }
            )
        return conf

    def validate(self) -> None:
        if self.partitions < 1:
            raise ConfigError("kafka.partitions", "must be >= 1")


@dataclass(frozen=True)
class WarehouseConfig:
    url: str = "chdb://var/clickhouse"  # or clickhouse://user@host:8123/ossbss (password from env)
    samples_ttl_days: int = 7

    def validate(self) -> None:
        if not self.url.startswith(("chdb://", "clickhouse://", "clickhouses://")):
            raise ConfigError("warehouse.url", "must start with chdb://, clickhouse:// or clickhouses://")
        if self.samples_ttl_days < 1:
            raise ConfigError("warehouse.samples_ttl_days", "must be >= 1")


@dataclass(frozen=True)
class StreamsConfig:
    app_id: str = "ossbss-streams"
    allowed_lateness_s: float = 10.0
    # A partition that saw nothing for this long has its open windows emitted (they are re-emitted
    # with a higher revision if late samples still arrive within the allowed lateness).
    idle_close_s: float = 5.0
    # Messages per processing batch (faust's take counts messages; one of a batched topic holds up to
    # 1000 records), or what arrived within batch_within_s. Under a backlog a batch is taken as soon as
    # this many are buffered; faust buffers at most 4096 messages a stream (stream_buffer_maxsize), so
    # the former 5000 was never reached and every batch first waited out batch_within_s.
    batch_size: int = 500
    batch_within_s: float = 0.25
    # A clock this far ahead of ours is a broken device or file, not the future: dead-lettered,
    # since one such timestamp would push the watermark ahead and make every honest sample late.
    max_future_skew_s: float = 300.0
    # Usage that started longer ago than this is refused (stale files, wrong units in timestamps).
    max_usage_age_days: float = 400.0
    # Stream worker processes `ossbss up` starts (one consumer group: they share the input partitions).
    # A worker is one Python process, so one core at most: on a machine with more cores, more workers
    # (at most kafka.partitions, or the extra ones own nothing).
    workers: int = 1

    def validate(self) -> None:
        if self.max_future_skew_s < 0:
            raise ConfigError("streams.max_future_skew_s", "must be >= 0")
        if self.max_usage_age_days <= 0:
            raise ConfigError("streams.max_usage_age_days", "must be > 0")
        if self.allowed_lateness_s < 0:
            raise ConfigError("streams.allowed_lateness_s", "must be >= 0")
        if self.idle_close_s <= 0:
            raise ConfigError("streams.idle_close_s", "must be > 0")
        if self.batch_size < 1:
            raise ConfigError("streams.batch_size", "must be >= 1")
        if self.workers < 1:
            raise ConfigError("streams.workers", "must be >= 1")


@dataclass(frozen=True)
class SinkConfig:
    group_id: str = "ossbss-sink"
    batch_size: int = 50_000  # messages (a batched topic's message holds up to 1000 records)
    # ... or this many bytes of messages: under a backlog of batched messages the message count is never
    # reached, and without a byte bound every flush waited out flush_interval_s gathering.
    batch_bytes: int = 64 * 1024 * 1024
    flush_interval_s: float = 0.5
    max_retry_backoff_s: float = 30.0
    # The pipeline's own metrics: written to ClickHouse pipeline_metrics every interval, and served
    # for Prometheus on 127.0.0.1:metrics_port/metrics (0: not served).
    metrics_interval_s: float = 10.0
    metrics_port: int = 9464
    metrics_host: str = "127.0.0.1"

    def validate(self) -> None:
        if self.metrics_interval_s <= 0:
            raise ConfigError("sink.metrics_interval_s", "must be > 0")
        if not 0 <= self.metrics_port <= 65535:
            raise ConfigError("sink.metrics_port", "must be a TCP port (0 turns the endpoint off)")
        if self.batch_size < 1:
            raise ConfigError("sink.batch_size", "must be >= 1")
        if self.batch_bytes < 1:
            raise ConfigError("sink.batch_bytes", "must be >= 1")
        if self.flush_interval_s <= 0:
            raise ConfigError("sink.flush_interval_s", "must be > 0")


@dataclass(frozen=True)
class SimulatorConfig:
    devices: int = 10
    interfaces: int = 8
    interval_s: float = 5.0
    in_bps: int = 100_000_000
    out_bps: int = 40_000_000
    speed_bps: int = 1_000_000_000
    counter_bits: int = 64
    # Also run this many gNMI simulators (real gRPC gNMI targets) and stream them with the gNMI
    # collector, so `ossbss up` exercises the same path as a real router; 0 turns them off.
    gnmi_devices: int = 2
    # Take one gNMI simulator link down every this many seconds, for `gnmi_link_fault_s`, so the
    # assurance loop shows in a local run (an InterfaceDown alert opens and resolves); 0: never.
    gnmi_link_fault_every_s: float = 20.0
    gnmi_link_fault_s: float = 8.0

    def validate(self) -> None:
        for name in ("devices", "interfaces"):
            if getattr(self, name) < 1:
                raise ConfigError(f"simulator.{name}", "must be >= 1")
        if self.interval_s <= 0:
            raise ConfigError("simulator.interval_s", "must be > 0")
        if self.gnmi_devices < 0:
            raise ConfigError("simulator.gnmi_devices", "must be >= 0")
        if self.gnmi_link_fault_every_s < 0:
            raise ConfigError("simulator.gnmi_link_fault_every_s", "must be >= 0 (0: no injected faults)")
        if self.gnmi_link_fault_s <= 0:
            raise ConfigError("simulator.gnmi_link_fault_s", "must be > 0")
        if self.counter_bits not in (32, 64):
            raise ConfigError("simulator.counter_bits", "must be 32 or 64")


@dataclass(frozen=True)
class UsageGeneratorConfig:
    records_per_s: float = 200.0
    accounts: int = 100
    # Every Nth generated record is deliberately bad (malformed, unknown account, ...) so the
    # dead-letter path is exercised; 0 turns that off.
    bad_every: int = 50
    seed: int = 7

    def validate(self) -> None:
        if self.records_per_s <= 0:
            raise ConfigError("usage.records_per_s", "must be > 0")
        if self.accounts < 1:
            raise ConfigError("usage.accounts", "must be >= 1")
        if self.bad_every < 0:
            raise ConfigError("usage.bad_every", "must be >= 0")


@dataclass(frozen=True)
class RatingConfig:
    catalog: str = ""  # empty: the embedded default catalog (rating/catalog.yaml)


@dataclass(frozen=True)
class Config:
    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    warehouse: WarehouseConfig = field(default_factory=WarehouseConfig)
    streams: StreamsConfig = field(default_factory=StreamsConfig)
    sink: SinkConfig = field(default_factory=SinkConfig)
    simulator: SimulatorConfig = field(default_factory=SimulatorConfig)
    usage: UsageGeneratorConfig = field(default_factory=UsageGeneratorConfig)
    rating: RatingConfig = field(default_factory=RatingConfig)
    var_dir: str = "var"
    # Sections owned by rooms that parse them themselves (collectors inventory, assurance, billing).
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def var_path(self) -> Path:
        path = Path(self.var_dir)
        return path if path.is_absolute() else Path.cwd() / path

    def validate(self) -> Config:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if hasattr(value, "validate"):
                value.validate()
        if self.streams.workers > self.kafka.partitions:
            raise ConfigError(
                "streams.workers",
                f"must be <= kafka.partitions ({self.kafka.partitions}): a worker beyond that owns no partition",
            )
        return self


def _key(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def build_section(cls: type, data: Any, prefix: str) -> Any:
    """A frozen dataclass from a YAML mapping; rooms use it for their own sections (``assurance:``)."""
    if not isinstance(data, dict):
        raise ConfigError(prefix or "config", f"must be a mapping, not {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(_key(prefix, sorted(unknown)[0]), f"unknown setting (known: {', '.join(sorted(known))})")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, _key(prefix, name))
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, key: str) -> Any:
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return build_section(hint, value or {}, key)
    if isinstance(hint, types.GenericAlias) or hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"must be true or false, not {value!r}")
        return value
    if hint in (int, float):
        if isinstance(value, bool) or not isinstance(value, int | float) or (hint is int and value != int(value)):
            raise ConfigError(key, f"must be a{'n integer' if hint is int else ' number'}, not {value!r}")
        return hint(value)
    if hint is str:
        if not isinstance(value, str | int | float):
            raise ConfigError(key, f"must be a string, not {value!r}")
        return str(value)
    return value


ROOM_SECTIONS = ("collectors", "assurance", "billing", "dashboards")


def parse_config(doc: dict[str, Any] | None) -> Config:
    """Build and validate a :class:`Config` from a parsed YAML mapping."""
    doc = dict(doc or {})
    extra = {name: doc.pop(name) for name in ROOM_SECTIONS if name in doc}
    config: Config = build_section(Config, doc, "")
    return dataclasses.replace(config, extra=extra).validate()


def config_to_mapping(config: Config) -> dict[str, Any]:
    """The inverse of :func:`parse_config` (secrets are not part of a config, so none are written)."""
    doc = dataclasses.asdict(config)
    doc.update(doc.pop("extra"))
    return doc


def write_config(config: Config, path: Path) -> Path:
    """Write the effective configuration, so a child process runs with exactly the same settings."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config_to_mapping(config), sort_keys=False))
    return path


def load_config(path: str | Path | None = None) -> Config:
    """Load ``path``, else ``./ossbss.yaml`` when present, else the defaults."""
    if path is None:
        candidate = Path("ossbss.yaml")
        if not candidate.exists():
            return Config().validate()
        path = candidate
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read config file: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), f"invalid YAML: {exc}") from None
    return parse_config(doc)
