"""SNMP poller: GETBULK walks of IF-MIB ifTable and IF-X-MIB ifXTable into TelemetrySample records.

Config (YAML, ``type: snmp``)::

    - type: snmp
      name: core                 # label for stats and logs
      interval_s: 30             # per-target poll interval (a target may override)
      timeout_s: 2
      retries: 1
      max_repetitions: 25
      backoff_max_s: 300         # a failing target is retried at interval, 2x, 4x ... up to this
      counters: auto             # auto | hc | c32: 64-bit HC counters, 32-bit ifTable ones, or probe
      backend: native            # native (fast BER codec) | pysnmp (pysnmp 7 asyncio API)
      extra_oids: []             # scalars (ending .0) fetched with GET, others walked; CLI shows them
      targets:
        - host: 10.0.0.1
          port: 161
          name: edge-1           # device name in records (default host, or host:port)
          version: "2c"
          community_env: SNMP_COMMUNITY   # or community_file, or community (plain, e.g. "public")
        - host: 10.0.0.2
          version: "3"
          user: ossbss
          auth_proto: SHA256              # MD5 SHA SHA224 SHA256 SHA384 SHA512
          auth_key_env: SNMP_AUTH_KEY     # or auth_key_file
          priv_proto: AES                 # AES AES192 AES256 (pysnmp backend also DES 3DES)
          priv_key_env: SNMP_PRIV_KEY     # or priv_key_file
          context: ""                     # SNMPv3 context name

A walk requests every wanted column in one GETBULK (non-repeaters carry sysUpTime and sysName) and
continues each column from its last OID until it leaves the column. With ``counters: auto`` the
first poll asks for both counter sets; later polls ask only for what the agent answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from collectors.base import (
    Collector,
    CollectorConfig,
    CollectorConfigError,
    RecordSink,
    Secret,
    TargetError,
    TargetProtocolError,
    read_secret,
    register_collector,
    validate_targets,
)
from collectors.snmp_client import (
    TOO_BIG,
    Credentials,
    NativeSession,
    PysnmpSession,
    SnmpEndpoint,
    SnmpErrorStatus,
    SnmpSession,
    resolve,
)
from collectors.snmp_wire import (
    END_OF_MIB_VIEW,
    NO_SUCH_INSTANCE,
    NO_SUCH_OBJECT,
    OCTET_STRING,
    TIMETICKS,
    VarBind,
    oid_content,
    oid_str,
    oid_tuple,
    suffix_str,
    value_text,
)
from models.codec import dead_letter_for
from models.records import DeadLetter, Record, TelemetrySample
from models.topics import TELEMETRY_SAMPLES

IF_TABLE = "1.3.6.1.2.1.2.2.1"
IF_X_TABLE = "1.3.6.1.2.1.31.1.1.1"
SYS_UPTIME = "1.3.6.1.2.1.1.3"
SYS_NAME = "1.3.6.1.2.1.1.5"


@dataclass(frozen=True)
class Column:
    """One table column we walk: ``field`` is the key in a row, ``group`` when it is asked for."""

    field: str
    oid: str
    group: Literal["base", "c32", "hc"]

    @property
    def prefix(self) -> bytes:
        return oid_content(self.oid)


COLUMNS: tuple[Column, ...] = (
    Column("ifDescr", f"{IF_TABLE}.2", "base"),
    Column("ifSpeed", f"{IF_TABLE}.5", "base"),
    Column("ifOperStatus", f"{IF_TABLE}.8", "base"),
    Column("ifInOctets", f"{IF_TABLE}.10", "c32"),
    Column("ifInUcastPkts", f"{IF_TABLE}.11", "c32"),
    Column("ifInNUcastPkts", f"{IF_TABLE}.12", "c32"),
    Column("ifInDiscards", f"{IF_TABLE}.13", "base"),
    Column("ifInErrors", f"{IF_TABLE}.14", "base"),
    Column("ifOutOctets", f"{IF_TABLE}.16", "c32"),
    Column("ifOutUcastPkts", f"{IF_TABLE}.17", "c32"),
    Column("ifOutNUcastPkts", f"{IF_TABLE}.18", "c32"),
    Column("ifOutDiscards", f"{IF_TABLE}.19", "base"),
    Column("ifOutErrors", f"{IF_TABLE}.20", "base"),
    Column("ifName", f"{IF_X_TABLE}.1", "base"),
    Column("ifHCInOctets", f"{IF_X_TABLE}.6", "hc"),
    Column("ifHCInUcastPkts", f"{IF_X_TABLE}.7", "hc"),
    Column("ifHCInMulticastPkts", f"{IF_X_TABLE}.8", "hc"),
    Column("ifHCInBroadcastPkts", f"{IF_X_TABLE}.9", "hc"),
    Column("ifHCOutOctets", f"{IF_X_TABLE}.10", "hc"),
    Column("ifHCOutUcastPkts", f"{IF_X_TABLE}.11", "hc"),
    Column("ifHCOutMulticastPkts", f"{IF_X_TABLE}.12", "hc"),
    Column("ifHCOutBroadcastPkts", f"{IF_X_TABLE}.13", "hc"),
    Column("ifHighSpeed", f"{IF_X_TABLE}.15", "base"),
)

CounterMode = Literal["auto", "hc", "c32"]


# --------------------------------------------------------------------------------------------- config


class SnmpTargetConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    host: str
    port: int = 161
    name: str = ""
    version: Literal["2c", "3"] = "2c"
    community: str = ""
    community_env: str = ""
    community_file: str = ""
    user: str = ""
    auth_proto: str = ""
    auth_key_env: str = ""
    auth_key_file: str = ""
    priv_proto: str = ""
    priv_key_env: str = ""
    priv_key_file: str = ""
    context: str = ""
    interval_s: float | None = None
    timeout_s: float | None = None
    retries: int | None = None
    max_repetitions: int | None = None

    @property
    def device(self) -> str:
        return self.name or (self.host if self.port == 161 else f"{self.host}:{self.port}")

    def credentials(self, key: str) -> Credentials:
        """Read this target's secrets (env or file) into :class:`Credentials`; errors name the key."""
        if self.version == "2c":
            if self.community_env or self.community_file:
                community = read_secret(f"{key}.community", self.community_env, self.community_file)
            else:
                community = Secret(self.community or "public")
            return Credentials(version="2c", community=community)
        auth_key = priv_key = None
        if self.auth_proto:
            auth_key = read_secret(f"{key}.auth_key_env", self.auth_key_env, self.auth_key_file)
        if self.priv_proto:
            priv_key = read_secret(f"{key}.priv_key_env", self.priv_key_env, self.priv_key_file)
        return Credentials(
            version="3",
            user=self.user,
            auth_proto=self.auth_proto,
            auth_key=auth_key,
            priv_proto=self.priv_proto,
            priv_key=priv_key,
            context=self.context,
        )

    def validate(self, key: str) -> None:
        if not 0 < self.port < 65536:
            raise CollectorConfigError(f"{key}.port", f"must be 1..65535, not {self.port}")
        if self.version == "3":
            if not self.user:
                raise CollectorConfigError(f"{key}.user", "is required for SNMPv3")
            if self.priv_proto and not self.auth_proto:
                raise CollectorConfigError(f"{key}.priv_proto", "privacy needs auth_proto too (authPriv)")
            for proto, env, file, name in (
                (self.auth_proto, self.auth_key_env, self.auth_key_file, "auth_key"),
                (self.priv_proto, self.priv_key_env, self.priv_key_file, "priv_key"),
            ):
                if proto and not (env or file):
                    raise CollectorConfigError(f"{key}.{name}_env", f"set {name}_env or {name}_file")
        elif sum(bool(x) for x in (self.community, self.community_env, self.community_file)) > 1:
            raise CollectorConfigError(f"{key}.community", "set only one of community, community_env, community_file")
        for name in ("interval_s", "timeout_s"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise CollectorConfigError(f"{key}.{name}", "must be > 0")
        if self.max_repetitions is not None and not 1 <= self.max_repetitions <= 500:
            raise CollectorConfigError(f"{key}.max_repetitions", "must be 1..500")


class SnmpConfig(CollectorConfig, frozen=True, kw_only=True):
    type: str = "snmp"
    interval_s: float = 30.0
    timeout_s: float = 2.0
    retries: int = 1
    max_repetitions: int = 25
    backoff_max_s: float = 300.0
    max_in_flight: int = 256
    counters: CounterMode = "auto"
    backend: Literal["native", "pysnmp"] = "native"
    spread_start: bool = True
    extra_oids: list[str] = []
    targets: list[SnmpTargetConfig] = []

    def validate(self, key: str) -> None:
        for name in ("interval_s", "timeout_s", "backoff_max_s"):
            if getattr(self, name) <= 0:
                raise CollectorConfigError(f"{key}.{name}", "must be > 0")
        if self.retries < 0:
            raise CollectorConfigError(f"{key}.retries", "must be >= 0")
        if not 1 <= self.max_repetitions <= 500:
            raise CollectorConfigError(f"{key}.max_repetitions", "must be 1..500")
        if self.max_in_flight < 1:
            raise CollectorConfigError(f"{key}.max_in_flight", "must be >= 1")
        for i, oid in enumerate(self.extra_oids):
            try:
                oid_content(oid)
            except ValueError:
                raise CollectorConfigError(f"{key}.extra_oids[{i}]", f"not a numeric OID: {oid!r}") from None
        validate_targets(self.targets, key)


# --------------------------------------------------------------------------------------------- walking


@dataclass
class PollResult:
    """One poll of one target."""

    device: str
    ts_ms: int
    samples: list[TelemetrySample]
    dead_letters: list[DeadLetter] = field(default_factory=list)
    uptime_ticks: int | None = None
    sys_name: str = ""
    varbinds: int = 0
    requests: int = 0
    duration_s: float = 0.0
    extra: dict[str, str] = field(default_factory=dict)


@dataclass
class TableWalk:
    """The outcome of walking columns: rows keyed by index suffix, plus the non-repeater var-binds."""

    rows: dict[bytes, dict[str, Any]]
    scalars: list[VarBind]
    varbinds: int
    requests: int
    first_response_ms: int


async def walk_columns(
    session: SnmpSession,
    columns: Sequence[Column],
    max_repetitions: int,
    non_repeaters: Sequence[str] = (),
    max_rows: int = 100_000,
) -> TableWalk:
    """Walk ``columns`` side by side with GETBULK until each leaves its column."""
    prefixes = [c.prefix for c in columns]
    fields = [c.field for c in columns]
    plens = [len(p) for p in prefixes]
    last = list(prefixes)  # next request continues each column from here
    active = list(range(len(columns)))
    nonrep = [oid_content(o) for o in non_repeaters]
    rows: dict[bytes, dict[str, Any]] = {}
    scalars: list[VarBind] = []
    total = requests = 0
    first_ms = 0
    reps = max_repetitions
    while active:
        try:
            vbs = await session.get_bulk(nonrep, [last[c] for c in active], reps)
        except SnmpErrorStatus as exc:
            if exc.code == TOO_BIG and reps > 1:
                reps = max(1, reps // 2)  # the agent cannot fit the answer in one message: ask for less
                continue
            raise
        requests += 1
        if not first_ms:
            first_ms = time.time_ns() // 1_000_000
        total += len(vbs)
        if nonrep:
            scalars, vbs = vbs[: len(nonrep)], vbs[len(nonrep) :]
            nonrep = []
        width = len(active)
        finished: set[int] = set()
        progressed = False
        for i, (oid, tag, value) in enumerate(vbs):
            col = active[i % width]
            if col in finished:
                continue
            plen = plens[col]
            if tag == END_OF_MIB_VIEW or len(oid) <= plen or oid[:plen] != prefixes[col]:
                finished.add(col)
                continue
            previous = last[col]
            if oid <= previous and oid_tuple(oid) <= oid_tuple(previous):
                raise TargetProtocolError(session.name, f"OID not increasing: {oid_str(oid)} after {oid_str(previous)}")
            last[col] = oid
            progressed = True
            if tag in (NO_SUCH_OBJECT, NO_SUCH_INSTANCE):
                continue
            row = rows.get(oid[plen:])
            if row is None:
                if len(rows) >= max_rows:
                    raise TargetProtocolError(session.name, f"more than {max_rows} rows: stopping the walk")
                row = rows[oid[plen:]] = {}
            row[fields[col]] = value
        if not vbs or (not progressed and not finished):
            raise TargetProtocolError(session.name, "GETBULK response made no progress")
        active = [c for c in active if c not in finished]
    return TableWalk(rows, scalars, total, requests, first_ms)


def _index(suffix: bytes) -> int | None:
    """ifIndex from a row's index suffix: exactly one sub-identifier."""
    acc = 0
    for i, byte in enumerate(suffix):
        acc = (acc << 7) | (byte & 0x7F)
        if not byte & 0x80:
            return acc if i == len(suffix) - 1 else None
    return None


_COUNTER_FIELDS_HC = (
    ("in_octets", "ifHCInOctets"),
    ("out_octets", "ifHCOutOctets"),
    ("in_ucast_pkts", "ifHCInUcastPkts"),
    ("out_ucast_pkts", "ifHCOutUcastPkts"),
)
_COUNTER_FIELDS_32 = (
    ("in_octets", "ifInOctets"),
    ("out_octets", "ifOutOctets"),
    ("in_ucast_pkts", "ifInUcastPkts"),
    ("out_ucast_pkts", "ifOutUcastPkts"),
    ("in_nucast_pkts", "ifInNUcastPkts"),
    ("out_nucast_pkts", "ifOutNUcastPkts"),
)
_ERROR_FIELDS = (
    ("in_errors", "ifInErrors"),
    ("out_errors", "ifOutErrors"),
    ("in_discards", "ifInDiscards"),
    ("out_discards", "ifOutDiscards"),
)
_MAX = {32: 2**32 - 1, 64: 2**64 - 1}
_GAUGE32_MAX = 2**32 - 1


def samples_from_rows(
    device: str,
    ts_ms: int,
    rows: dict[bytes, dict[str, Any]],
    uptime_ticks: int | None,
    source: str = "snmp",
) -> tuple[list[TelemetrySample], list[tuple[int | None, str, dict[str, Any]]]]:
    """Pure: turn walked rows into samples; rows that cannot be trusted come back as (index, reason, row)."""
    samples: list[TelemetrySample] = []
    rejected: list[tuple[int | None, str, dict[str, Any]]] = []
    for suffix, row in rows.items():
        if_index = _index(suffix)
        if if_index is None:
            rejected.append((None, f"row index {suffix_str(suffix)} is not a single ifIndex", row))
            continue
        hc = "ifHCInOctets" in row or "ifHCOutOctets" in row
        bits: Literal[32, 64] = 64 if hc else 32
        values: dict[str, Any] = {}
        problem = ""
        for attr, column in _COUNTER_FIELDS_HC if hc else _COUNTER_FIELDS_32:
            problem = problem or _counter(values, attr, row.get(column), _MAX[bits], column)
        if hc:
            for attr, mcast, bcast in (
                ("in_nucast_pkts", "ifHCInMulticastPkts", "ifHCInBroadcastPkts"),
                ("out_nucast_pkts", "ifHCOutMulticastPkts", "ifHCOutBroadcastPkts"),
            ):
                m, b = row.get(mcast), row.get(bcast)
                if isinstance(m, int) and isinstance(b, int):
                    values[attr] = (m + b) & _MAX[64]
        for attr, column in _ERROR_FIELDS:
            problem = problem or _counter(values, attr, row.get(column), _MAX[32], column)
        if problem:
            rejected.append((if_index, problem, row))
            continue
        oper = row.get("ifOperStatus")
        name = row.get("ifName") or row.get("ifDescr") or b""
        samples.append(
            TelemetrySample(
                id=TelemetrySample.make_id(device, if_index, ts_ms),
                device=device,
                if_index=if_index,
                ts_ms=ts_ms,
                if_name=_text(name),
                speed_bps=_speed(row.get("ifSpeed"), row.get("ifHighSpeed")),
                oper_status=oper if isinstance(oper, int) and 1 <= oper <= 7 else None,
                counter_bits=bits,
                uptime_ticks=uptime_ticks,
                source=source,
                **values,
            )
        )
    samples.sort(key=lambda s: s.if_index)
    return samples, rejected


def _counter(values: dict[str, Any], attr: str, value: Any, limit: int, column: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= limit:
        return f"{column} is not a counter: {value!r}"
    values[attr] = value
    return ""


def _speed(if_speed: Any, high_speed: Any) -> int | None:
    """ifSpeed is exact below 4.29 Gb/s; above that it saturates and ifHighSpeed (Mb/s) takes over."""
    has_high = isinstance(high_speed, int) and high_speed >= 0
    if isinstance(if_speed, int) and 0 <= if_speed < _GAUGE32_MAX and not (if_speed == 0 and has_high):
        return if_speed
    if has_high:
        return int(high_speed) * 1_000_000
    return if_speed if isinstance(if_speed, int) and if_speed >= 0 else None


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace").rstrip("\x00")
    return str(value)


# --------------------------------------------------------------------------------------------- targets


@dataclass
class TargetState:
    config: SnmpTargetConfig
    key: str
    device: str
    interval_s: float
    timeout_s: float
    retries: int
    max_repetitions: int
    credentials: Credentials
    mode: CounterMode
    session: SnmpSession | None = None
    failures: int = 0
    polls: int = 0
    last_error: str = ""
    last_uptime: int | None = None


def columns_for(mode: CounterMode) -> list[Column]:
    groups = {"auto": ("base", "c32", "hc"), "hc": ("base", "hc"), "c32": ("base", "c32")}[mode]
    return [c for c in COLUMNS if c.group in groups]


@register_collector("snmp")
class SnmpCollector(Collector[SnmpConfig]):
    """Polls every target on its own schedule; a slow or dead target never delays the others."""

    config_type = SnmpConfig

    def __init__(self, config: SnmpConfig, sink: RecordSink, **context: Any) -> None:
        super().__init__(config, sink, **context)
        key = self.config_key
        self.endpoint = SnmpEndpoint()
        self.endpoint.on_malformed = self._on_malformed
        self.targets: list[TargetState] = []
        for i, target in enumerate(config.targets):
            tkey = f"{key}.targets[{i}]"
            self.targets.append(
                TargetState(
                    config=target,
                    key=tkey,
                    device=target.device,
                    interval_s=target.interval_s or config.interval_s,
                    timeout_s=target.timeout_s or config.timeout_s,
                    retries=config.retries if target.retries is None else target.retries,
                    max_repetitions=target.max_repetitions or config.max_repetitions,
                    credentials=target.credentials(tkey),
                    mode=config.counters,
                )
            )
        self._in_flight = asyncio.Semaphore(config.max_in_flight)
        self.last_results: dict[str, PollResult] = {}
        self.last_errors: dict[str, str] = {}

    def _on_malformed(self, data: bytes, addr: tuple[str, int], reason: str) -> None:
        self.dead_letter(dead_letter_for(data, topic=f"snmp://{addr[0]}:{addr[1]}", stage="snmp-poll", reason=reason))

    async def _session(self, state: TargetState) -> SnmpSession:
        if state.session is None:
            target = state.config
            if self.config.backend == "pysnmp":
                state.session = PysnmpSession(
                    state.device, target.host, target.port, state.credentials, state.timeout_s, state.retries
                )
            else:
                addr, family = await resolve(target.host, target.port)
                state.session = NativeSession(
                    state.device,
                    self.endpoint,
                    addr,
                    family,
                    state.credentials,
                    state.timeout_s,
                    state.retries,
                )
        return state.session

    async def poll(self, state: TargetState) -> PollResult:
        """Poll one target once; raises :class:`TargetError` (never a third-party error)."""
        started = time.perf_counter()
        session = await self._session(state)
        requests_before = session.requests
        async with self._in_flight:
            walk = await walk_columns(session, columns_for(state.mode), state.max_repetitions, (SYS_UPTIME, SYS_NAME))
            extra = await self._extras(session, state) if self.config.extra_oids else {}
        uptime: int | None = None
        sys_name = ""
        for oid, tag, value in walk.scalars:
            text = oid_str(oid)
            if text == f"{SYS_UPTIME}.0" and tag == TIMETICKS:
                uptime = value
            elif text == f"{SYS_NAME}.0" and tag == OCTET_STRING:
                sys_name = _text(value)
        ts_ms = walk.first_response_ms or time.time_ns() // 1_000_000
        samples, rejected = samples_from_rows(state.device, ts_ms, walk.rows, uptime)
        letters = [
            dead_letter_for(
                msgspec.json.encode({k: _jsonable(v) for k, v in row.items()}),
                topic=f"snmp://{state.device}",
                stage="snmp-poll",
                reason=f"ifIndex {idx}: {reason}" if idx is not None else reason,
            )
            for idx, reason, row in rejected
        ]
        state.mode = self._next_mode(state.mode, walk.rows)
        state.polls += 1
        state.last_uptime = uptime
        return PollResult(
            device=state.device,
            ts_ms=ts_ms,
            samples=samples,
            dead_letters=letters,
            uptime_ticks=uptime,
            sys_name=sys_name,
            varbinds=walk.varbinds,
            requests=session.requests - requests_before,
            duration_s=time.perf_counter() - started,
            extra=extra,
        )

    def _next_mode(self, mode: CounterMode, rows: dict[bytes, dict[str, Any]]) -> CounterMode:
        """With ``counters: auto``, stop asking for the counter set the agent does not need."""
        if self.config.counters != "auto" or not rows:
            return mode
        with_hc = sum(1 for row in rows.values() if "ifHCInOctets" in row)
        if with_hc == len(rows):
            return "hc"
        if with_hc == 0 and mode != "hc":
            return "c32"
        return "auto"

    async def _extras(self, session: SnmpSession, state: TargetState) -> dict[str, str]:
        scalars = [o for o in self.config.extra_oids if o.endswith(".0")]
        tables = [o for o in self.config.extra_oids if not o.endswith(".0")]
        extra: dict[str, str] = {}
        if scalars:
            for oid, tag, value in await session.get([oid_content(o) for o in scalars]):
                extra[oid_str(oid)] = value_text(tag, value)
        if tables:
            walk = await walk_columns(session, [Column(o, o, "base") for o in tables], state.max_repetitions)
            for suffix, row in walk.rows.items():
                for column, value in row.items():
                    tag = OCTET_STRING if isinstance(value, bytes) else 0x02
                    extra[f"{column}.{suffix_str(suffix)}"] = value_text(tag, value)
        return extra

    def _record(self, state: TargetState, result: PollResult) -> None:
        self.emit(TELEMETRY_SAMPLES, result.samples)
        for letter in result.dead_letters:
            self.dead_letter(letter)
        self.stats.polls += 1
        state.failures = 0
        state.last_error = ""
        self.last_results[state.device] = result
        self.last_errors.pop(state.device, None)

    def _failed(self, state: TargetState, exc: TargetError) -> None:
        state.failures += 1
        state.last_error = str(exc)
        self.last_errors[state.device] = str(exc)
        self.stats.count_error(f"{type(exc).__name__}: {exc.reason}")

    async def collect_once(self) -> list[Record]:
        """Poll every target once, concurrently; failures are in ``last_errors``."""
        results = await asyncio.gather(*(self._poll_guarded(s) for s in self.targets))
        records: list[Record] = []
        for result in results:
            if result is not None:
                records.extend(result.samples)
        return records

    async def _poll_guarded(self, state: TargetState) -> PollResult | None:
        try:
            result = await self.poll(state)
        except TargetError as exc:
            self._failed(state, exc)
            return None
        self._record(state, result)
        return result

    def backoff_s(self, state: TargetState) -> float:
        """Delay before the next poll: the interval, doubled per consecutive failure, capped."""
        if not state.failures:
            return state.interval_s
        return min(self.config.backoff_max_s, state.interval_s * 2 ** min(state.failures - 1, 16))

    async def _target_loop(self, state: TargetState, stop: asyncio.Event) -> None:
        if self.config.spread_start:  # spread targets across the first interval so polls do not burst
            offset = (zlib.crc32(state.device.encode()) % 1000) / 1000 * state.interval_s
            if await _wait(stop, offset):
                return
        while not stop.is_set():
            started = time.monotonic()
            await self._poll_guarded(state)
            delay = self.backoff_s(state)
            if await _wait(stop, max(0.0, delay - (time.monotonic() - started))):
                return

    async def run(self, stop: asyncio.Event) -> None:
        tasks = [asyncio.create_task(self._target_loop(s, stop), name=f"snmp:{s.device}") for s in self.targets]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.close()

    async def close(self) -> None:
        for state in self.targets:
            if state.session is not None:
                await state.session.close()
                state.session = None
        self.endpoint.close()
        await asyncio.sleep(0)  # let the transports' close callbacks run before the loop may end


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` unless ``stop`` is set first; True when stopping."""
    if seconds <= 0:
        return stop.is_set()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


__all__ = [
    "COLUMNS",
    "IF_TABLE",
    "IF_X_TABLE",
    "Column",
    "PollResult",
    "SnmpCollector",
    "SnmpConfig",
    "SnmpTargetConfig",
    "TableWalk",
    "columns_for",
    "samples_from_rows",
    "walk_columns",
]
