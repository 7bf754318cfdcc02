"""The collector contract: config base, registry by ``type`` name, sinks, secrets and the error tree.

A collector turns vendor data (SNMP var-binds, gNMI notifications, usage files) into ``models``
records and hands them to a :class:`RecordSink`. Config sections are parsed once, at start, into a
frozen typed model; an error names the offending key (``collectors[0].targets[1].port``)::

    CollectorError                      root of every error raised by this package
    ├── CollectorConfigError(key)       a setting is missing or invalid
    │   └── SecretError(key, source)    a secret's env var or file is missing or empty
    └── TargetError(target)             one device or source failed; the others carry on
        ├── TargetTimeout(timeout_s, attempts)
        ├── TargetAuthError(reason)     SNMPv3 report (unknown user, wrong digest, ...), TLS refused
        └── TargetProtocolError(reason) the peer answered something that is not valid protocol

Third-party errors (pysnmp, grpc, OS) are converted into these at the adapter boundary.
"""

from __future__ import annotations

import asyncio
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import msgspec

from models.records import DeadLetter, Record
from models.topics import DEAD_LETTERS, Topic


class CollectorError(Exception):
    """Root of the collectors' errors."""


class CollectorConfigError(CollectorError, ValueError):
    """A setting is invalid; ``key`` is its dotted path, ``reason`` says what is wrong."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


class SecretError(CollectorConfigError):
    """A secret could not be read; ``source`` names the env var or file (never the value)."""

    def __init__(self, key: str, source: str, reason: str) -> None:
        super().__init__(key, f"{reason} ({source})")
        self.source = source


class TargetError(CollectorError):
    """One target failed; ``target`` is its name (device or path)."""

    def __init__(self, target: str, reason: str) -> None:
        super().__init__(f"{target}: {reason}")
        self.target = target
        self.reason = reason


class TargetTimeout(TargetError):
    """No answer after ``attempts`` tries of ``timeout_s`` each."""

    def __init__(self, target: str, timeout_s: float, attempts: int) -> None:
        super().__init__(target, f"no response after {attempts} attempt(s) of {timeout_s:g}s")
        self.timeout_s = timeout_s
        self.attempts = attempts


class TargetAuthError(TargetError):
    """The target refused our credentials or security level."""


class TargetProtocolError(TargetError):
    """The target answered with something that is not valid protocol."""


class Secret:
    """A secret value that never shows itself in ``repr``, ``str`` or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


def read_secret(key: str, env: str = "", file: str = "", environ: Mapping[str, str] | None = None) -> Secret:
    """Read a secret from an environment variable or a file (first line, stripped); never from config text."""
    environ = os.environ if environ is None else environ
    if env:
        value = environ.get(env)
        if not value:
            raise SecretError(key, f"env {env}", "environment variable is not set or empty")
        return Secret(value)
    if file:
        try:
            text = Path(file).read_text().strip()
        except OSError as exc:
            raise SecretError(key, f"file {file}", f"cannot read: {exc.strerror}") from None
        if not text:
            raise SecretError(key, f"file {file}", "file is empty")
        return Secret(text.splitlines()[0])
    raise SecretError(key, "none", "set an _env or _file source")


class CollectorConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Settings shared by every collector. ``type`` selects the implementation, ``name`` labels it."""

    type: str
    name: str = ""

    def validate(self, key: str) -> None:
        """Checks that need more than types (ranges, exclusive options); raise CollectorConfigError."""


class RecordSink(Protocol):
    """Where collectors put records: a Kafka publisher in a run, a list in tests and the CLI."""

    def emit(self, topic: Topic, records: Sequence[Record]) -> None: ...

    def flush(self) -> None:
        """Block until everything emitted so far is durable (delivered to Kafka); raise if not."""
        ...


def record_key(topic: Topic) -> Callable[[Record], str]:
    """The Kafka key of a record on ``topic``: the attribute the topic names (device, account, ...)."""
    attr = topic.key
    return lambda record: str(getattr(record, attr, "") or "")


class ListSink:
    """Keeps every record in memory, per topic name (tests, the CLI's one-shot collection)."""

    def __init__(self) -> None:
        self.by_topic: dict[str, list[Record]] = {}

    def emit(self, topic: Topic, records: Sequence[Record]) -> None:
        self.by_topic.setdefault(topic.name, []).extend(records)

    def records(self, topic: Topic) -> list[Record]:
        return self.by_topic.get(topic.name, [])

    def flush(self) -> None:
        return None


class PublisherSink:
    """Produces records through a :class:`collectors.publish.RecordPublisher` (keyed by the topic's key)."""

    def __init__(self, publisher: Any) -> None:
        self.publisher = publisher
        self._keys: dict[str, Callable[[Record], str]] = {}

    def emit(self, topic: Topic, records: Sequence[Record]) -> None:
        key = self._keys.get(topic.name)
        if key is None:
            key = self._keys[topic.name] = record_key(topic)
        self.publisher.publish(topic.name, records, key)
        self.publisher.poll()  # serve delivery reports so the producer queue never stalls

    def flush(self) -> None:
        self.publisher.flush()


@dataclass
class CollectorStats:
    """Counters a collector keeps; ``ossbss up`` shows them as progress."""

    records: int = 0
    dead_letters: int = 0
    errors: int = 0
    polls: int = 0
    last_error: str = ""
    by_reason: dict[str, int] = field(default_factory=dict)

    def count_error(self, reason: str) -> None:
        self.errors += 1
        self.last_error = reason
        kind = reason.split(":", 1)[0][:60]
        self.by_reason[kind] = self.by_reason.get(kind, 0) + 1


C = TypeVar("C", bound=CollectorConfig)


class Collector(ABC, Generic[C]):
    """A running collector. ``run`` until ``stop`` is set; ``collect_once`` for one-shot collection."""

    type_name: ClassVar[str]
    config_type: ClassVar[type[CollectorConfig]]

    def __init__(
        self, config: C, sink: RecordSink, *, config_key: str = "", kafka: Mapping[str, Any] | None = None
    ) -> None:
        self.config = config
        self.sink = sink
        self.stats = CollectorStats()
        # dotted path of this collector's section, so errors found at start name the setting
        self.config_key = config_key or f"collectors.{config.name or self.type_name}"
        # librdkafka client settings (bootstrap, SASL) for collectors that consume from Kafka
        self.kafka = dict(kafka or {})

    @property
    def name(self) -> str:
        return self.config.name or self.type_name

    @abstractmethod
    async def run(self, stop: asyncio.Event) -> None:
        """Collect until ``stop`` is set; never raise for a single target's failure."""

    @abstractmethod
    async def collect_once(self) -> list[Record]:
        """Collect one round from every target, emit the records and return them."""

    def emit(self, topic: Topic, records: Sequence[Record]) -> None:
        if records:
            self.sink.emit(topic, records)
            self.stats.records += len(records)

    def dead_letter(self, letter: DeadLetter) -> None:
        self.sink.emit(DEAD_LETTERS, [letter])
        self.stats.dead_letters += 1


_REGISTRY: dict[str, type[Collector[Any]]] = {}

# Modules whose import registers the built-in collectors, by type name.
_BUILTIN_MODULES = {
    "snmp": "collectors.snmp",
    "snmp_traps": "collectors.traps",
    "gnmi": "collectors.gnmi",
    "usage_files": "collectors.usage",
    "usage_kafka": "collectors.usage",
}

K = TypeVar("K", bound=type[Collector[Any]])


def register_collector(type_name: str) -> Callable[[K], K]:
    """Class decorator: make ``type: <type_name>`` in the config select this collector."""

    def register(cls: K) -> K:
        existing = _REGISTRY.get(type_name)
        if existing is not None and existing is not cls:
            raise CollectorError(f"collector type {type_name!r} registered twice")
        cls.type_name = type_name
        _REGISTRY[type_name] = cls
        return cls

    return register


def collector_class(type_name: str, key: str = "type") -> type[Collector[Any]]:
    """The class registered for ``type_name``, importing the built-in module that defines it."""
    if type_name not in _REGISTRY and type_name in _BUILTIN_MODULES:
        import importlib

        importlib.import_module(_BUILTIN_MODULES[type_name])
    cls = _REGISTRY.get(type_name)
    if cls is None:
        known = sorted(set(_REGISTRY) | set(_BUILTIN_MODULES))
        raise CollectorConfigError(key, f"unknown collector type {type_name!r} (known: {', '.join(known)})")
    return cls


def parse_collector_config(data: Mapping[str, Any], key: str = "collectors[0]") -> CollectorConfig:
    """Validate one config mapping into the typed config of the collector its ``type`` names."""
    if not isinstance(data, Mapping):
        raise CollectorConfigError(key, f"must be a mapping, not {type(data).__name__}")
    type_name = data.get("type")
    if not isinstance(type_name, str):
        raise CollectorConfigError(f"{key}.type", "is required (one of: snmp, snmp_traps, gnmi, usage_files, ...)")
    cls = collector_class(type_name, f"{key}.type")
    config = convert_config(cls.config_type, data, key)
    config.validate(key)
    return config


def convert_config(config_type: type[C], data: Mapping[str, Any], key: str) -> C:
    """msgspec conversion with errors that name the key (``key.targets[1].port``)."""
    try:
        return msgspec.convert(dict(data), config_type, strict=False)
    except msgspec.ValidationError as exc:
        message = str(exc)
        reason, _, where = message.rpartition(" - at `$")
        if reason and where.endswith("`"):
            return _raise(f"{key}{where[:-1]}", reason)
        return _raise(key, message)


def _raise(key: str, reason: str) -> Any:
    raise CollectorConfigError(key, reason)


def validate_targets(targets: Sequence[Any], key: str) -> None:
    """Validate each target of a collector (``target.validate(key)``) and refuse a device name used twice."""
    seen: set[str] = set()
    for i, target in enumerate(targets):
        target.validate(f"{key}.targets[{i}]")
        if target.device in seen:
            raise CollectorConfigError(f"{key}.targets[{i}].name", f"device name {target.device!r} used twice")
        seen.add(target.device)


def parse_collectors(section: Any, key: str = "collectors") -> list[CollectorConfig]:
    """Parse the YAML ``collectors:`` list (each item has a ``type``) once, at start."""
    if section is None:
        return []
    if not isinstance(section, list):
        raise CollectorConfigError(key, "must be a list of collector settings, each with a `type`")
    configs = [parse_collector_config(item, f"{key}[{i}]") for i, item in enumerate(section)]
    names = [c.name for c in configs if c.name]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise CollectorConfigError(key, f"collector name {duplicate!r} used twice")
    return configs


def build_collector(
    config: CollectorConfig, sink: RecordSink, *, config_key: str = "", kafka: Mapping[str, Any] | None = None
) -> Collector[Any]:
    """Instantiate the collector for a parsed config; secrets are read here (errors name the key)."""
    return collector_class(config.type)(config, sink, config_key=config_key, kafka=kafka)


async def run_collectors(collectors: Sequence[Collector[Any]], stop: asyncio.Event) -> None:
    """Run every collector until ``stop`` is set; one that crashes is recorded and the others go on."""

    async def guarded(collector: Collector[Any]) -> None:
        try:
            await collector.run(stop)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug in one collector must not take the pipeline down
            collector.stats.count_error(f"collector crashed: {type(exc).__name__}: {exc}")

    await asyncio.gather(*(guarded(c) for c in collectors))


def now_ms() -> int:
    return time.time_ns() // 1_000_000


__all__ = [
    "Collector",
    "CollectorConfig",
    "CollectorConfigError",
    "CollectorError",
    "CollectorStats",
    "ListSink",
    "PublisherSink",
    "RecordSink",
    "Secret",
    "SecretError",
    "TargetAuthError",
    "TargetError",
    "TargetProtocolError",
    "TargetTimeout",
    "build_collector",
    "collector_class",
    "convert_config",
    "now_ms",
    "parse_collector_config",
    "parse_collectors",
    "read_secret",
    "record_key",
    "register_collector",
    "run_collectors",
    "validate_targets",
]
