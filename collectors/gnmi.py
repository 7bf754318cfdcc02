"""gNMI subscriber: OpenConfig interface counters and oper-status -> TelemetrySample and FaultEvent.

Config (YAML, ``type: gnmi``)::

    - type: gnmi
      name: dc-fabric
      mode: stream                 # stream | poll | once
      encoding: json_ietf          # json | json_ietf | proto | ascii
      poll_interval_s: 10          # for mode poll
      backoff_initial_s: 1         # reconnect after 1 s, 2 s, 4 s ... (with jitter) up to
      backoff_max_s: 60
      assemble_window_s: 0.2       # an interface's updates this close together form one sample
      subscriptions:               # the default, spelled out:
        - {path: /interfaces/interface/state/counters, mode: sample, sample_interval_s: 10}
        - {path: /interfaces/interface/state/oper-status, mode: on_change}
        - {path: /interfaces/interface/state/ifindex, mode: on_change}
      targets:
        - address: 10.0.0.1:57400
          name: spine-1            # device name in records (default: the address)
          insecure: false          # plaintext gRPC (lab only)
          tls_ca: /etc/ossbss/ca.pem           # verify the target (default: system roots)
          tls_cert: /etc/ossbss/client.pem     # client certificate, when the target wants one
          tls_key: /etc/ossbss/client.key
          tls_server_name: ""                  # name to verify instead of the address's host
          username_env: GNMI_USER              # gNMI metadata credentials, from env or files
          password_env: GNMI_PASSWORD

Updates are assembled per interface: all leaves with the same notification timestamp make one
TelemetrySample (``source="gnmi"``, 64-bit counters; ``in_nucast_pkts`` = multicast + broadcast).
``if_index`` comes from ``state/ifindex``; a target that never sends it gets a stable index derived
from the interface name (CRC-32). An oper-status change is also a FaultEvent (linkDown / linkUp).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import grpc
import msgspec
from pygnmi.spec.v080 import gnmi_pb2, gnmi_pb2_grpc

from collectors.base import (
    Collector,
    CollectorConfig,
    CollectorConfigError,
    RecordSink,
    TargetAuthError,
    TargetError,
    TargetProtocolError,
    TargetTimeout,
    read_secret,
    register_collector,
    validate_targets,
)
from collectors.gnmi_paths import PathError, PathT, decode_value, flatten, from_proto, parse_path, path_str, to_proto
from models.codec import dead_letter_for
from models.records import DeadLetter, FaultEvent, Record, TelemetrySample
from models.topics import FAULT_EVENTS, TELEMETRY_SAMPLES

ENCODINGS = {"json": gnmi_pb2.JSON, "json_ietf": gnmi_pb2.JSON_IETF, "proto": gnmi_pb2.PROTO, "ascii": gnmi_pb2.ASCII}
SUB_MODES = {"sample": gnmi_pb2.SAMPLE, "on_change": gnmi_pb2.ON_CHANGE, "target_defined": gnmi_pb2.TARGET_DEFINED}
LIST_MODES = {
    "stream": gnmi_pb2.SubscriptionList.STREAM,
    "once": gnmi_pb2.SubscriptionList.ONCE,
    "poll": gnmi_pb2.SubscriptionList.POLL,
}
OPER_STATUS = {
    "UP": 1,
    "DOWN": 2,
    "TESTING": 3,
    "UNKNOWN": 4,
    "DORMANT": 5,
    "NOT_PRESENT": 6,
    "LOWER_LAYER_DOWN": 7,
}
COUNTERS = {
    "in-octets": "in_octets",
    "out-octets": "out_octets",
    "in-unicast-pkts": "in_ucast_pkts",
    "out-unicast-pkts": "out_ucast_pkts",
    "in-errors": "in_errors",
    "out-errors": "out_errors",
    "in-discards": "in_discards",
    "out-discards": "out_discards",
}
NUCAST = {
    "in-multicast-pkts": "in",
    "in-broadcast-pkts": "in",
    "out-multicast-pkts": "out",
    "out-broadcast-pkts": "out",
}
SPEEDS = {
    "SPEED_10MB": 10**7,
    "SPEED_100MB": 10**8,
    "SPEED_1GB": 10**9,
    "SPEED_2500MB": 25 * 10**8,
    "SPEED_5GB": 5 * 10**9,
    "SPEED_10GB": 10**10,
    "SPEED_25GB": 25 * 10**9,
    "SPEED_40GB": 4 * 10**10,
    "SPEED_50GB": 5 * 10**10,
    "SPEED_100GB": 10**11,
    "SPEED_200GB": 2 * 10**11,
    "SPEED_400GB": 4 * 10**11,
    "SPEED_800GB": 8 * 10**11,
}
U64 = 2**64 - 1


class GnmiSubscription(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    path: str
    mode: Literal["sample", "on_change", "target_defined"] = "sample"
    sample_interval_s: float = 10.0
    suppress_redundant: bool = False
    heartbeat_interval_s: float = 0.0


DEFAULT_SUBSCRIPTIONS = (
    GnmiSubscription(path="/interfaces/interface/state/counters", mode="sample", sample_interval_s=10.0),
    GnmiSubscription(path="/interfaces/interface/state/oper-status", mode="on_change"),
    GnmiSubscription(path="/interfaces/interface/state/ifindex", mode="on_change"),
)


class GnmiTargetConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    address: str
    name: str = ""
    insecure: bool = False
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    tls_server_name: str = ""
    username_env: str = ""
    username_file: str = ""
    password_env: str = ""
    password_file: str = ""
    mode: Literal["stream", "poll", "once"] | None = None
    encoding: Literal["json", "json_ietf", "proto", "ascii"] | None = None
    subscriptions: list[GnmiSubscription] | None = None
    poll_interval_s: float | None = None

    @property
    def device(self) -> str:
        return self.name or self.address

    def validate(self, key: str) -> None:
        host, sep, port = self.address.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise CollectorConfigError(f"{key}.address", f"must be host:port, not {self.address!r}")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise CollectorConfigError(f"{key}.tls_cert", "tls_cert and tls_key go together")
        if self.insecure and (self.tls_ca or self.tls_cert):
            raise CollectorConfigError(f"{key}.insecure", "insecure (plaintext) excludes tls_* settings")
        for name in ("tls_ca", "tls_cert", "tls_key"):
            value = getattr(self, name)
            if value and not Path(value).is_file():
                raise CollectorConfigError(f"{key}.{name}", f"file not found: {value}")
        if self.poll_interval_s is not None and self.poll_interval_s <= 0:
            raise CollectorConfigError(f"{key}.poll_interval_s", "must be > 0")


class GnmiConfig(CollectorConfig, frozen=True, kw_only=True):
    type: str = "gnmi"
    mode: Literal["stream", "poll", "once"] = "stream"
    encoding: Literal["json", "json_ietf", "proto", "ascii"] = "json_ietf"
    subscriptions: list[GnmiSubscription] = msgspec.field(default_factory=lambda: list(DEFAULT_SUBSCRIPTIONS))
    poll_interval_s: float = 10.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    assemble_window_s: float = 0.2
    connect_timeout_s: float = 10.0
    targets: list[GnmiTargetConfig] = []

    def validate(self, key: str) -> None:
        for name in ("poll_interval_s", "backoff_initial_s", "backoff_max_s", "assemble_window_s", "connect_timeout_s"):
            if getattr(self, name) <= 0:
                raise CollectorConfigError(f"{key}.{name}", "must be > 0")
        for i, sub in enumerate(self.subscriptions):
            try:
                parse_path(sub.path)
            except PathError as exc:
                raise CollectorConfigError(f"{key}.subscriptions[{i}].path", str(exc)) from None
            if sub.mode == "sample" and sub.sample_interval_s <= 0:
                raise CollectorConfigError(f"{key}.subscriptions[{i}].sample_interval_s", "must be > 0")
        validate_targets(self.targets, key)


# --------------------------------------------------------------------------------------------- assembly


@dataclass
class _Pending:
    ts_ns: int
    arrival: float
    values: dict[str, int] = field(default_factory=dict)


@dataclass
class _Interface:
    if_index: int | None = None
    oper: int | None = None
    speed_bps: int | None = None
    pending: _Pending | None = None


class InterfaceAssembler:
    """Folds gNMI updates of one device into per-interface samples, and oper-status changes into events.

    Pure apart from the clock passed in: ``add`` takes a notification's leaves, ``flush`` returns the
    samples whose interface saw nothing new for ``window_s`` (or all of them, at a sync response).
    """

    def __init__(self, device: str, window_s: float = 0.2) -> None:
        self.device = device
        self.window_s = window_s
        self.interfaces: dict[str, _Interface] = {}
        self.rejected: list[tuple[str, str]] = []  # (path, reason) of leaves that made no sense

    def add(
        self, ts_ns: int, leaves: list[tuple[PathT, Any]], arrival: float
    ) -> tuple[list[TelemetrySample], list[FaultEvent]]:
        samples: list[TelemetrySample] = []
        events: list[FaultEvent] = []
        for path, value in leaves:
            if len(path) < 3 or path[0][0] != "interfaces" or path[1][0] != "interface":
                continue  # not an interface leaf (another model): ignored, not an error
            name = dict(path[1][1]).get("name")
            if not name:
                self.rejected.append((path_str(path), "interface without a name key"))
                continue
            iface = self.interfaces.setdefault(name, _Interface())
            rest = tuple(elem for elem, _ in path[2:])
            try:
                self._leaf(name, iface, rest, value, ts_ns, arrival, samples, events)
            except (TypeError, ValueError) as exc:
                self.rejected.append((path_str(path), str(exc)))
        return samples, events

    def _leaf(
        self,
        name: str,
        iface: _Interface,
        rest: tuple[str, ...],
        value: Any,
        ts_ns: int,
        arrival: float,
        samples: list[TelemetrySample],
        events: list[FaultEvent],
    ) -> None:
        if rest[:2] == ("state", "counters") and len(rest) == 3:
            leaf = rest[2]
            column = COUNTERS.get(leaf) or (leaf if leaf in NUCAST else None)
            if column is None:
                return  # carrier-transitions, last-clear...: not part of a sample
            count = _uint(value, leaf)
            pending = iface.pending
            if pending is not None and pending.ts_ns != ts_ns:
                sample = self._sample(name, iface)  # a new timestamp closes the previous sample
                if sample is not None:
                    samples.append(sample)
                pending = None
            if pending is None:
                pending = iface.pending = _Pending(ts_ns, arrival)
            pending.values[column] = count
            pending.arrival = arrival
        elif rest == ("state", "oper-status"):
            status = OPER_STATUS.get(str(value).upper().rsplit(":", 1)[-1])
            if status is None:
                raise ValueError(f"unknown oper-status {value!r}")
            previous, iface.oper = iface.oper, status
            if previous is not None and previous != status:
                events.append(self._oper_event(name, iface, previous, status, ts_ns))
        elif rest == ("state", "ifindex"):
            index = _uint(value, "ifindex")
            if index > 2**31 - 1:
                raise ValueError(f"ifindex out of range: {index}")
            iface.if_index = index
        elif rest in (("ethernet", "state", "port-speed"), ("ethernet", "state", "negotiated-port-speed")):
            speed = SPEEDS.get(str(value).rsplit(":", 1)[-1])
            if speed:
                iface.speed_bps = speed
        elif len(rest) == 2 and rest[0] == "state" and isinstance(value, dict):
            raise ValueError("unexpected container value")

    def _index(self, name: str, iface: _Interface) -> int:
        if iface.if_index is not None:
            return iface.if_index
        return zlib.crc32(name.encode()) & 0x7FFFFFFF  # stable across restarts when the target sends no ifindex

    def _sample(self, name: str, iface: _Interface) -> TelemetrySample | None:
        pending, iface.pending = iface.pending, None
        if pending is None or not pending.values:
            return None
        values = pending.values
        fields = {attr: values[attr] for attr in COUNTERS.values() if attr in values}
        for direction in ("in", "out"):
            parts = [values[k] for k, d in NUCAST.items() if d == direction and k in values]
            if len(parts) == 2:
                fields[f"{direction}_nucast_pkts"] = (parts[0] + parts[1]) & U64
        ts_ms = pending.ts_ns // 1_000_000 if pending.ts_ns > 0 else time.time_ns() // 1_000_000
        if_index = self._index(name, iface)
        return TelemetrySample(
            id=TelemetrySample.make_id(self.device, if_index, ts_ms),
            device=self.device,
            if_index=if_index,
            ts_ms=ts_ms,
            if_name=name,
            speed_bps=iface.speed_bps,
            oper_status=iface.oper,
            counter_bits=64,
            source="gnmi",
            **fields,
        )

    def _oper_event(self, name: str, iface: _Interface, previous: int, status: int, ts_ns: int) -> FaultEvent:
        names = {v: k for k, v in OPER_STATUS.items()}
        kind = "linkUp" if status == 1 else "linkDown" if status in (2, 7) else "operStatus"
        ts_ms = ts_ns // 1_000_000 if ts_ns > 0 else time.time_ns() // 1_000_000
        return FaultEvent(
            id=f"{self.device}/gnmi/{name}/{ts_ns}/{names[status]}",
            device=self.device,
            ts_ms=ts_ms,
            kind=kind,
            if_index=self._index(name, iface),
            varbinds={"interface": name, "oper_status": names[status], "previous": names[previous]},
            source="gnmi",
        )

    def flush(self, now: float | None = None) -> list[TelemetrySample]:
        """Samples of interfaces idle for the window (``now`` None: every pending one)."""
        out: list[TelemetrySample] = []
        for name, iface in self.interfaces.items():
            pending = iface.pending
            if pending is None or (now is not None and now - pending.arrival < self.window_s):
                continue
            sample = self._sample(name, iface)
            if sample is not None:
                out.append(sample)
        return out


def _uint(value: Any, leaf: str) -> int:
    """A counter from a typed value or JSON (JSON_IETF sends uint64 as a string)."""
    if isinstance(value, bool):
        raise ValueError(f"{leaf}: not a counter: {value!r}")
    if isinstance(value, int):
        number = value
    elif (isinstance(value, str) and value.isdigit()) or (
        isinstance(value, float) and value == value and 0 <= value < 2**64 and value == int(value)
    ):
        number = int(value)
    else:
        raise ValueError(f"{leaf}: not a counter: {value!r}")
    if not 0 <= number <= U64:
        raise ValueError(f"{leaf}: out of the 64-bit range: {number}")
    return number


def notification_leaves(note: Any) -> list[tuple[PathT, Any]]:
    """Absolute leaf paths and decoded values of a Notification (containers flattened)."""
    prefix = from_proto(note.prefix)
    out: list[tuple[PathT, Any]] = []
    for update in note.update:
        path = prefix + from_proto(update.path)
        value = decode_value(update.val)
        if isinstance(value, dict):
            out.extend(flatten(path, value))
        else:
            out.append((path, value))
    return out


# --------------------------------------------------------------------------------------------- client


@dataclass
class TargetState:
    config: GnmiTargetConfig
    key: str
    device: str
    mode: str
    encoding: str
    subscriptions: list[GnmiSubscription]
    poll_interval_s: float
    metadata: list[tuple[str, str]]
    assembler: InterfaceAssembler
    connected: bool = False
    synced: bool = False
    connects: int = 0
    reconnects: int = 0
    failures: int = 0
    last_error: str = ""
    responses: int = 0


@register_collector("gnmi")
class GnmiCollector(Collector[GnmiConfig]):
    """Subscribes to every target; reconnects with backoff when one goes away."""

    config_type = GnmiConfig

    def __init__(self, config: GnmiConfig, sink: RecordSink, **context: Any) -> None:
        super().__init__(config, sink, **context)
        self.targets: list[TargetState] = []
        for i, target in enumerate(config.targets):
            tkey = f"{self.config_key}.targets[{i}]"
            metadata: list[tuple[str, str]] = []
            if target.username_env or target.username_file:
                user = read_secret(f"{tkey}.username_env", target.username_env, target.username_file)
                password = read_secret(f"{tkey}.password_env", target.password_env, target.password_file)
                metadata = [("username", user.reveal()), ("password", password.reveal())]
            self.targets.append(
                TargetState(
                    config=target,
                    key=tkey,
                    device=target.device,
                    mode=target.mode or config.mode,
                    encoding=target.encoding or config.encoding,
                    subscriptions=list(target.subscriptions or config.subscriptions),
                    poll_interval_s=target.poll_interval_s or config.poll_interval_s,
                    metadata=metadata,
                    assembler=InterfaceAssembler(target.device, config.assemble_window_s),
                )
            )
        self.last_errors: dict[str, str] = {}
        self._collected: dict[str, list[TelemetrySample]] = {}  # samples gathered by collect_once

    # ------------------------------------------------------------------ channel

    def channel(self, state: TargetState) -> grpc.aio.Channel:
        target = state.config
        options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.enable_retries", 0),  # we reconnect ourselves, with our backoff
        ]
        if target.insecure:
            return grpc.aio.insecure_channel(target.address, options=options)
        if target.tls_server_name:
            options.append(("grpc.ssl_target_name_override", target.tls_server_name))
        try:
            creds = grpc.ssl_channel_credentials(
                root_certificates=Path(target.tls_ca).read_bytes() if target.tls_ca else None,
                private_key=Path(target.tls_key).read_bytes() if target.tls_key else None,
                certificate_chain=Path(target.tls_cert).read_bytes() if target.tls_cert else None,
            )
        except OSError as exc:
            raise TargetError(state.device, f"cannot read TLS files: {exc}") from None
        return grpc.aio.secure_channel(target.address, creds, options=options)

    def subscribe_request(self, state: TargetState, mode: str | None = None) -> Any:
        subs = [
            gnmi_pb2.Subscription(
                path=to_proto(parse_path(s.path)),
                mode=SUB_MODES[s.mode],
                sample_interval=int(s.sample_interval_s * 1e9) if s.mode == "sample" else 0,
                suppress_redundant=s.suppress_redundant,
                heartbeat_interval=int(s.heartbeat_interval_s * 1e9),
            )
            for s in state.subscriptions
        ]
        slist = gnmi_pb2.SubscriptionList(
            subscription=subs, mode=LIST_MODES[mode or state.mode], encoding=ENCODINGS[state.encoding]
        )
        return gnmi_pb2.SubscribeRequest(subscribe=slist)

    # ------------------------------------------------------------------ one subscription

    async def subscribe(self, state: TargetState, mode: str | None = None, stop: asyncio.Event | None = None) -> None:
        """Run one Subscribe call until it ends (ONCE), fails, or ``stop`` is set; raises TargetError."""
        mode = mode or state.mode
        request = self.subscribe_request(state, mode)
        finished = asyncio.Event()

        async def requests() -> AsyncIterator[Any]:
            yield request
            if mode == "poll":
                while not finished.is_set():
                    if await _wait(finished, state.poll_interval_s, stop):
                        return
                    yield gnmi_pb2.SubscribeRequest(poll=gnmi_pb2.Poll())
            else:  # keep the request stream open: some targets end the RPC when it half-closes
                await _wait(finished, None, stop)

        channel = self.channel(state)
        try:
            ready = asyncio.ensure_future(channel.channel_ready())
            if not await _wait_future(ready, self.config.connect_timeout_s, stop):
                if stop is not None and stop.is_set():
                    return  # stopping while the target is unreachable
                raise TargetTimeout(state.device, self.config.connect_timeout_s, 1)
            stub = gnmi_pb2_grpc.gNMIStub(channel)
            call = stub.Subscribe(requests(), metadata=state.metadata or None)
            state.connected = True
            state.connects += 1
            flusher = asyncio.create_task(self._flusher(state, finished))
            try:
                async for response in _until(call, stop):
                    self._on_response(state, response)
                    if mode == "once" and response.sync_response:
                        break
            finally:
                finished.set()
                flusher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await flusher
                call.cancel()
        except grpc.aio.AioRpcError as exc:
            raise _rpc_error(state.device, exc) from None
        finally:
            state.connected = False
            self._emit_samples(state, state.assembler.flush())
            await channel.close()

    def _on_response(self, state: TargetState, response: Any) -> None:
        state.responses += 1
        kind = response.WhichOneof("response")
        if kind == "sync_response":
            state.synced = True
            state.failures = 0  # a full sync means the target is healthy: reset the backoff
            self._emit_samples(state, state.assembler.flush())
            return
        if kind == "error":
            self.stats.count_error(f"target error: {response.error.message}")
            return
        if kind != "update":
            return
        note = response.update
        try:
            leaves = notification_leaves(note)
        except PathError as exc:
            self._reject(state, note, f"undecodable notification: {exc}")
            return
        samples, events = state.assembler.add(note.timestamp, leaves, time.monotonic())
        if state.assembler.rejected:
            reasons = "; ".join(f"{p}: {r}" for p, r in state.assembler.rejected[:5])
            state.assembler.rejected.clear()
            self._reject(state, note, f"bad leaves: {reasons}")
        self._emit_samples(state, samples)
        if events:
            self.emit(FAULT_EVENTS, events)

    def _emit_samples(self, state: TargetState, samples: list[TelemetrySample]) -> None:
        if samples:
            self.emit(TELEMETRY_SAMPLES, samples)
            state_samples = self._collected.get(state.device)
            if state_samples is not None:
                state_samples.extend(samples)

    def _reject(self, state: TargetState, note: Any, reason: str) -> None:
        self.stats.count_error(reason)
        letter: DeadLetter = dead_letter_for(
            note.SerializeToString(), topic=f"gnmi://{state.config.address}", stage="gnmi", reason=reason[:1000]
        )
        self.dead_letter(letter)

    async def _flusher(self, state: TargetState, finished: asyncio.Event) -> None:
        """Emit interfaces whose updates stopped arriving (targets that send one leaf per notification)."""
        while not finished.is_set():
            await asyncio.sleep(self.config.assemble_window_s / 2)
            if state.synced:  # before the first sync an ifindex may still be on its way
                self._emit_samples(state, state.assembler.flush(time.monotonic()))

    # ------------------------------------------------------------------ lifecycle

    def backoff_s(self, state: TargetState) -> float:
        base = min(self.config.backoff_max_s, self.config.backoff_initial_s * 2 ** min(state.failures, 16))
        return base * random.uniform(0.8, 1.2)  # jitter so many collectors do not reconnect in step

    async def _target_loop(self, state: TargetState, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.subscribe(state, stop=stop)
                if stop.is_set():
                    return
                reason = "target ended the subscription"
            except TargetError as exc:
                reason = exc.reason
            state.failures += 1
            state.reconnects += 1
            state.last_error = reason
            self.last_errors[state.device] = reason
            self.stats.count_error(f"{state.device}: {reason}")
            await _wait(stop, self.backoff_s(state), None)

    async def run(self, stop: asyncio.Event) -> None:
        tasks = [asyncio.create_task(self._target_loop(t, stop), name=f"gnmi:{t.device}") for t in self.targets]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def collect_once(self) -> list[Record]:
        """One ONCE subscription per target, concurrently; failures land in ``last_errors``."""
        self._collected = {t.device: [] for t in self.targets}

        async def once(state: TargetState) -> None:
            try:
                await self.subscribe(state, mode="once")
            except TargetError as exc:
                self.last_errors[state.device] = str(exc)
                self.stats.count_error(str(exc))

        await asyncio.gather(*(once(t) for t in self.targets))
        self.stats.polls += 1
        collected, self._collected = self._collected, {}
        return [s for samples in collected.values() for s in samples]

    async def capabilities(self, state: TargetState) -> dict[str, Any]:
        """The target's Capabilities answer (models, encodings, version) as plain data."""
        channel = self.channel(state)
        try:
            stub = gnmi_pb2_grpc.gNMIStub(channel)
            reply = await stub.Capabilities(
                gnmi_pb2.CapabilityRequest(), metadata=state.metadata or None, timeout=self.config.connect_timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            raise _rpc_error(state.device, exc) from None
        finally:
            await channel.close()
        return {
            "gnmi_version": reply.gNMI_version,
            "encodings": [gnmi_pb2.Encoding.Name(e) for e in reply.supported_encodings],
            "models": [f"{m.name}@{m.version}" for m in reply.supported_models],
        }


async def _until(call: Any, stop: asyncio.Event | None) -> AsyncIterator[Any]:
    """Iterate a streaming call, ending early when ``stop`` is set."""
    iterator = call.__aiter__()
    stop_task = asyncio.ensure_future(stop.wait()) if stop is not None else None
    try:
        while True:
            next_task = asyncio.ensure_future(iterator.__anext__())
            waiters: set[asyncio.Future[Any]] = {next_task}
            if stop_task is not None:
                waiters.add(stop_task)
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            if next_task not in done:
                next_task.cancel()
                return
            try:
                yield next_task.result()
            except StopAsyncIteration:
                return
    finally:
        if stop_task is not None:
            stop_task.cancel()


async def _wait(event: asyncio.Event, seconds: float | None, stop: asyncio.Event | None) -> bool:
    """Wait for ``event`` (or ``stop``) up to ``seconds``; True when one of them is set."""
    waiters = [asyncio.ensure_future(event.wait())]
    if stop is not None:
        waiters.append(asyncio.ensure_future(stop.wait()))
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    return event.is_set() or (stop is not None and stop.is_set())


async def _wait_future(future: asyncio.Future[Any], seconds: float, stop: asyncio.Event | None) -> bool:
    """Wait for ``future`` up to ``seconds`` or until ``stop``; True when it completed (it is cancelled if not)."""
    waiters: set[asyncio.Future[Any]] = {future}
    stopper = asyncio.ensure_future(stop.wait()) if stop is not None else None
    if stopper is not None:
        waiters.add(stopper)
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if stopper is not None:
            stopper.cancel()
    if future.done() and not future.cancelled():
        future.result()
        return True
    future.cancel()
    return False


def _rpc_error(device: str, exc: grpc.aio.AioRpcError) -> TargetError:
    code = exc.code()
    detail = f"{code.name}: {exc.details() or ''}".strip()
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return TargetAuthError(device, detail)
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNIMPLEMENTED):
        return TargetProtocolError(device, detail)
    return TargetError(device, detail)


__all__ = [
    "DEFAULT_SUBSCRIPTIONS",
    "GnmiCollector",
    "GnmiConfig",
    "GnmiSubscription",
    "GnmiTargetConfig",
    "InterfaceAssembler",
    "notification_leaves",
]
