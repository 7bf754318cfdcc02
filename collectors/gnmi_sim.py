"""A gNMI target that simulates a router: OpenConfig interface state and counters for N interfaces.

It is a real gRPC ``gnmi.gNMI`` service (Capabilities, Get, Set, Subscribe with STREAM SAMPLE /
ON_CHANGE / TARGET_DEFINED, ONCE and POLL), over TLS (optionally requiring client certificates) or
plaintext. Counters grow by a traffic pattern (``constant``, ``sine``, ``bursty``) at a configured
mean utilisation; faults can be injected in-process (:meth:`SimDevice.inject`) or over gNMI Set:

* ``/interfaces/interface[name=X]/config/enabled`` = false -> admin and oper DOWN (true -> UP)
* ``/sim/fault`` = JSON ``{"kind": "link_down"|"error_burst"|"saturation", "interface": "Ethernet3",
  "duration_s": 30, "errors_per_s": 500}`` -> a fault for a while (labelled scenarios for assurance)

Run standalone: ``python -m collectors.gnmi_sim --port 50051 --interfaces 48 [--tls-dir DIR]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import ipaddress
import json
import math
import random
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from pygnmi.spec.v080 import gnmi_pb2, gnmi_pb2_grpc

from collectors.gnmi_paths import (
    PathError,
    PathT,
    decode_value,
    from_proto,
    matches,
    to_proto,
    typed,
)

OC_SPEEDS = {
    1_000_000_000: "SPEED_1GB",
    10_000_000_000: "SPEED_10GB",
    25_000_000_000: "SPEED_25GB",
    40_000_000_000: "SPEED_40GB",
    100_000_000_000: "SPEED_100GB",
    400_000_000_000: "SPEED_400GB",
}
AVG_PACKET_BYTES = 800
FAULT_KINDS = ("link_down", "error_burst", "saturation")


@dataclass
class Fault:
    kind: str
    until: float  # monotonic deadline; inf for "until cleared"
    errors_per_s: float = 0.0


@dataclass
class SimInterface:
    """One interface: its counters (floats, reported as integers) and the faults acting on it."""

    name: str
    index: int
    speed_bps: int
    pattern: str = "constant"
    utilisation: float = 0.3
    enabled: bool = True
    seed: int = 0
    counters: dict[str, float] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    carrier_transitions: int = 0
    _was_up: bool = True

    def __post_init__(self) -> None:
        rng = random.Random(f"{self.name}/{self.seed}")
        for name in ("in-octets", "out-octets"):
            self.counters[name] = float(rng.randrange(0, 2**40))
        for name in ("in-unicast-pkts", "out-unicast-pkts", "in-multicast-pkts", "out-multicast-pkts"):
            self.counters[name] = float(rng.randrange(0, 2**30))
        for name in (
            "in-broadcast-pkts",
            "out-broadcast-pkts",
            "in-errors",
            "out-errors",
            "in-discards",
            "out-discards",
        ):
            self.counters[name] = float(rng.randrange(0, 1000))

    @property
    def up(self) -> bool:
        return self.enabled and not any(f.kind == "link_down" for f in self.faults)

    def utilisation_at(self, t: float) -> float:
        if any(f.kind == "saturation" for f in self.faults):
            return 1.0
        if self.pattern == "sine":  # a compressed day: one period every 10 minutes
            return self.utilisation * (1 + 0.6 * math.sin(2 * math.pi * (t + self.index * 37) / 600))
        if self.pattern == "bursty":  # a new random level each second, stable within the second
            level = random.Random(f"{self.name}/{int(t)}/{self.seed}").random()
            return min(1.0, self.utilisation * (0.3 + 1.4 * level))
        return self.utilisation

    def advance(self, t0: float, t1: float, now_mono: float) -> None:
        """Grow counters over [t0, t1] (wall-clock seconds), evaluating the rate at the midpoint."""
        self.faults = [f for f in self.faults if f.until > now_mono]
        up = self.up
        if up != self._was_up:
            self.carrier_transitions += 1
            self._was_up = up
        seconds = max(0.0, t1 - t0)
        if not up or not seconds:
            return
        util = max(0.0, min(1.0, self.utilisation_at((t0 + t1) / 2)))
        in_bytes = self.speed_bps * util * seconds / 8
        out_bytes = in_bytes * 0.6
        c = self.counters
        c["in-octets"] += in_bytes
        c["out-octets"] += out_bytes
        for direction, octets in (("in", in_bytes), ("out", out_bytes)):
            packets = octets / AVG_PACKET_BYTES
            c[f"{direction}-unicast-pkts"] += packets * 0.97
            c[f"{direction}-multicast-pkts"] += packets * 0.02
            c[f"{direction}-broadcast-pkts"] += packets * 0.01
        for fault in self.faults:
            if fault.kind == "error_burst":
                c["in-errors"] += fault.errors_per_s * seconds
            if fault.kind == "saturation":
                c["out-discards"] += out_bytes / AVG_PACKET_BYTES * 0.01

    def leaves(self) -> list[tuple[PathT, Any]]:
        base: PathT = (("interfaces", ()), ("interface", (("name", self.name),)))
        state = (*base, ("state", ()))
        out: list[tuple[PathT, Any]] = [
            ((*state, ("name", ())), self.name),
            ((*state, ("ifindex", ())), self.index),
            ((*state, ("admin-status", ())), "UP" if self.enabled else "DOWN"),
            ((*state, ("oper-status", ())), "UP" if self.up else "DOWN"),
            ((*state, ("description", ())), f"sim port {self.index}"),
        ]
        counters = (*state, ("counters", ()))
        out += [((*counters, (name, ())), int(value)) for name, value in self.counters.items()]
        out.append(((*counters, ("carrier-transitions", ())), self.carrier_transitions))
        speed = OC_SPEEDS.get(self.speed_bps, "SPEED_UNKNOWN")
        out.append(((*base, ("ethernet", ()), ("state", ()), ("port-speed", ())), f"openconfig-if-ethernet:{speed}"))
        return out


class SimDevice:
    """N interfaces with a traffic pattern; thread-safe (the gRPC loop and test code both touch it)."""

    def __init__(
        self,
        interfaces: int = 8,
        pattern: str = "constant",
        utilisation: float = 0.3,
        speeds: tuple[int, ...] = (10_000_000_000, 1_000_000_000, 100_000_000_000),
        name_prefix: str = "Ethernet",
        seed: int = 0,
    ) -> None:
        self.interfaces = {
            f"{name_prefix}{i}": SimInterface(
                f"{name_prefix}{i}", i, speeds[(i - 1) % len(speeds)], pattern, utilisation, seed=seed
            )
            for i in range(1, interfaces + 1)
        }
        self._lock = threading.Lock()
        self._wall = time.time()

    def advance(self) -> float:
        with self._lock:
            now = time.time()
            mono = time.monotonic()
            for iface in self.interfaces.values():
                iface.advance(self._wall, now, mono)
            self._wall = now
            return now

    def leaves(self) -> list[tuple[PathT, Any]]:
        self.advance()
        with self._lock:
            out: list[tuple[PathT, Any]] = []
            for iface in self.interfaces.values():
                out.extend(iface.leaves())
            return out

    def _iface(self, name: str) -> SimInterface:
        iface = self.interfaces.get(name)
        if iface is None:
            raise KeyError(f"no interface {name!r}")
        return iface

    def inject(self, kind: str, interface: str, duration_s: float | None = None, errors_per_s: float = 500.0) -> None:
        """Start a fault on ``interface`` for ``duration_s`` (None: until :meth:`clear`)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r} (known: {', '.join(FAULT_KINDS)})")
        self.advance()  # counters up to now grow under the old conditions
        with self._lock:
            until = time.monotonic() + duration_s if duration_s else math.inf
            self._iface(interface).faults.append(Fault(kind, until, errors_per_s))

    def clear(self, interface: str) -> None:
        self.advance()
        with self._lock:
            self._iface(interface).faults.clear()

    def set_enabled(self, interface: str, enabled: bool) -> None:
        self.advance()
        with self._lock:
            self._iface(interface).enabled = enabled


# --------------------------------------------------------------------------------------------- service


@dataclass
class _Sub:
    path: PathT
    mode: int
    interval_s: float
    suppress_redundant: bool
    next_due: float = 0.0
    last: dict[PathT, Any] = field(default_factory=dict)


KNOWN_ROOTS = ("interfaces",)
TICK_S = 0.05


class GnmiService(gnmi_pb2_grpc.gNMIServicer):
    """The gNMI RPCs over a :class:`SimDevice` (method names are the gRPC service's, hence CamelCase)."""

    def __init__(self, device: SimDevice, target: str = "sim") -> None:
        self.device = device
        self.target = target
        self.subscribe_calls = 0

    async def Capabilities(self, request: Any, context: Any) -> Any:
        return gnmi_pb2.CapabilityResponse(
            supported_models=[
                gnmi_pb2.ModelData(
                    name="openconfig-interfaces", organization="OpenConfig working group", version="3.0.0"
                ),
                gnmi_pb2.ModelData(
                    name="openconfig-if-ethernet", organization="OpenConfig working group", version="2.13.0"
                ),
            ],
            supported_encodings=[gnmi_pb2.JSON, gnmi_pb2.JSON_IETF, gnmi_pb2.PROTO],
            gNMI_version="0.8.0",
        )

    async def Get(self, request: Any, context: Any) -> Any:
        prefix = from_proto(request.prefix)
        leaves = self.device.leaves()
        now_ns = time.time_ns()
        notifications = []
        for path in request.path:
            pattern = prefix + from_proto(path)
            if not self._known(pattern):
                await context.abort(grpc.StatusCode.NOT_FOUND, f"path not found: {pattern}")
            notifications += self._notifications([(p, v) for p, v in leaves if matches(pattern, p)], now_ns)
        return gnmi_pb2.GetResponse(notification=notifications)

    async def Set(self, request: Any, context: Any) -> Any:
        prefix = from_proto(request.prefix)
        results = []
        for op, items in (
            (gnmi_pb2.UpdateResult.REPLACE, request.replace),
            (gnmi_pb2.UpdateResult.UPDATE, request.update),
        ):
            for update in items:
                path = prefix + from_proto(update.path)
                try:
                    self._apply(path, decode_value(update.val))
                except (KeyError, ValueError, TypeError, PathError) as exc:
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
                results.append(gnmi_pb2.UpdateResult(path=update.path, op=op))
        return gnmi_pb2.SetResponse(prefix=request.prefix, response=results, timestamp=time.time_ns())

    def _apply(self, path: PathT, value: Any) -> None:
        names = [name for name, _ in path]
        if names == ["sim", "fault"]:
            if not isinstance(value, dict):
                raise ValueError("/sim/fault takes a JSON object")
            if value.get("kind") == "clear":
                self.device.clear(str(value["interface"]))
                return
            self.device.inject(
                str(value["kind"]),
                str(value["interface"]),
                float(value["duration_s"]) if value.get("duration_s") else None,
                float(value.get("errors_per_s", 500.0)),
            )
            return
        if names[:2] == ["interfaces", "interface"] and names[2:] == ["config", "enabled"]:
            name = dict(path[1][1]).get("name")
            if not name or not isinstance(value, bool):
                raise ValueError("config/enabled needs interface[name=...] and a boolean")
            self.device.set_enabled(name, value)
            return
        raise ValueError(f"path is not settable here: {'/'.join(names)}")

    def _known(self, pattern: PathT) -> bool:
        return not pattern or pattern[0][0] in KNOWN_ROOTS

    def _notifications(self, leaves: list[tuple[PathT, Any]], now_ns: int) -> list[Any]:
        """One notification per interface, prefix ``interfaces/interface[name=X]``, relative leaf paths."""
        grouped: dict[PathT, list[Any]] = {}
        for path, value in leaves:
            head, rest = path[:2], path[2:]
            grouped.setdefault(head, []).append(gnmi_pb2.Update(path=to_proto(rest), val=typed(value)))
        return [
            gnmi_pb2.Notification(timestamp=now_ns, prefix=to_proto(head, target=self.target), update=updates)
            for head, updates in grouped.items()
        ]

    async def Subscribe(self, request_iterator: Any, context: Any) -> AsyncIterator[Any]:
        self.subscribe_calls += 1
        try:
            first = await request_iterator.__anext__()
        except StopAsyncIteration:
            return
        if not first.HasField("subscribe"):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first request must be a SubscriptionList")
        slist = first.subscribe
        prefix = from_proto(slist.prefix)
        subs: list[_Sub] = []
        for s in slist.subscription:
            path = prefix + from_proto(s.path)
            if not self._known(path):
                await context.abort(grpc.StatusCode.NOT_FOUND, f"path not found: {path}")
            interval = s.sample_interval / 1e9 if s.sample_interval else 1.0
            mode = s.mode if s.mode != gnmi_pb2.TARGET_DEFINED else gnmi_pb2.SAMPLE
            subs.append(_Sub(path, mode, max(interval, 0.05), s.suppress_redundant))
        if not subs:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no subscriptions")

        def matched() -> list[tuple[PathT, Any]]:
            return [(p, v) for p, v in self.device.leaves() if any(matches(s.path, p) for s in subs)]

        def full() -> list[Any]:
            leaves = matched()
            for sub in subs:
                sub.last.update((p, v) for p, v in leaves if matches(sub.path, p))
            notes = self._notifications(leaves, time.time_ns())
            return [gnmi_pb2.SubscribeResponse(update=n) for n in notes]

        if slist.mode == gnmi_pb2.SubscriptionList.ONCE:
            for response in full():
                yield response
            yield gnmi_pb2.SubscribeResponse(sync_response=True)
            return
        if slist.mode == gnmi_pb2.SubscriptionList.POLL:
            for response in full():
                yield response
            yield gnmi_pb2.SubscribeResponse(sync_response=True)
            async for request in request_iterator:
                if request.HasField("poll"):
                    for response in full():
                        yield response
                    yield gnmi_pb2.SubscribeResponse(sync_response=True)
            return
        # STREAM
        start = time.monotonic()
        if not slist.updates_only:
            for response in full():
                yield response
        yield gnmi_pb2.SubscribeResponse(sync_response=True)
        for sub in subs:
            sub.next_due = start + sub.interval_s
        while True:
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            leaves = self.device.leaves()
            out: list[tuple[PathT, Any]] = []
            for sub in subs:
                if sub.mode == gnmi_pb2.SAMPLE:
                    if now < sub.next_due:
                        continue
                    sub.next_due += sub.interval_s * max(1, math.ceil((now - sub.next_due) / sub.interval_s))
                    for p, v in leaves:
                        if matches(sub.path, p) and not (sub.suppress_redundant and sub.last.get(p) == v):
                            out.append((p, v))
                            sub.last[p] = v
                else:  # ON_CHANGE
                    for p, v in leaves:
                        if matches(sub.path, p) and sub.last.get(p, _MISSING) != v:
                            out.append((p, v))
                            sub.last[p] = v
            if out:
                for note in self._notifications(list(dict(out).items()), time.time_ns()):
                    yield gnmi_pb2.SubscribeResponse(update=note)


_MISSING = object()


# --------------------------------------------------------------------------------------------- server


@dataclass
class TlsFiles:
    """PEM paths: the server's certificate and key, and a CA whose client certificates are required."""

    cert: Path
    key: Path
    client_ca: Path | None = None


class GnmiSimulator:
    """The gRPC server around a :class:`GnmiService`, in the caller's event loop."""

    def __init__(
        self,
        device: SimDevice | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: TlsFiles | None = None,
    ) -> None:
        self.device = device or SimDevice()
        self.service = GnmiService(self.device)
        self.host, self.port, self.tls = host, port, tls
        self._server: grpc.aio.Server | None = None

    async def start(self) -> int:
        server = grpc.aio.server()
        gnmi_pb2_grpc.add_gNMIServicer_to_server(self.service, server)
        address = f"{self.host}:{self.port}"
        if self.tls is not None:
            ca = self.tls.client_ca.read_bytes() if self.tls.client_ca else None
            creds = grpc.ssl_server_credentials(
                [(self.tls.key.read_bytes(), self.tls.cert.read_bytes())],
                root_certificates=ca,
                require_client_auth=ca is not None,
            )
            self.port = server.add_secure_port(address, creds)
        else:
            self.port = server.add_insecure_port(address)
        if not self.port:
            raise OSError(f"cannot bind gNMI simulator to {address}")
        await server.start()
        self._server = server
        return self.port

    async def stop(self, grace: float | None = None) -> None:
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None

    async def wait(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()


class GnmiSimThread:
    """The simulator in a background thread with its own event loop (for synchronous callers)."""

    def __init__(self, simulator: GnmiSimulator) -> None:
        self.simulator = simulator
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="gnmi-sim", daemon=True)

    @property
    def address(self) -> str:
        return f"{self.simulator.host}:{self.simulator.port}"

    def start(self) -> GnmiSimThread:
        if not self._thread.is_alive():
            self._thread.start()
        asyncio.run_coroutine_threadsafe(self.simulator.start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.simulator.stop(0), self._loop).result(10)

    def close(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


# --------------------------------------------------------------------------------------------- test PKI


@dataclass
class PkiFiles:
    """PEM files of a throwaway CA, a server certificate (localhost, 127.0.0.1) and a client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_test_pki(directory: Path, hosts: tuple[str, ...] = ("localhost", "127.0.0.1")) -> PkiFiles:
    """Generate a self-signed CA and leaf certificates with the ``cryptography`` package (tests, demos)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, cn),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ossbss test"),
            ]
        )

    def write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        path.chmod(0o600)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name("ossbss test CA"))
        .issuer_name(name("ossbss test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(cn: str, usage: Any, sans: list[x509.GeneralName]) -> tuple[bytes, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM), key

    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    server_pem, server_key = leaf(hosts[0], ExtendedKeyUsageOID.SERVER_AUTH, sans)
    client_pem, client_key = leaf("ossbss-collector", ExtendedKeyUsageOID.CLIENT_AUTH, [])
    pki = PkiFiles(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
    )
    pki.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    pki.server_cert.write_bytes(server_pem)
    write_key(server_key, pki.server_key)
    pki.client_cert.write_bytes(client_pem)
    write_key(client_key, pki.client_key)
    return pki


# --------------------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m collectors.gnmi_sim", description="Run the gNMI device simulator.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=50051)
    parser.add_argument("--interfaces", type=int, default=8)
    parser.add_argument("--pattern", choices=("constant", "sine", "bursty"), default="constant")
    parser.add_argument("--utilisation", type=float, default=0.3)
    parser.add_argument("--tls-cert", type=Path, help="server certificate (PEM); omit for plaintext")
    parser.add_argument("--tls-key", type=Path, help="server key (PEM)")
    parser.add_argument("--client-ca", type=Path, help="require client certificates signed by this CA")
    args = parser.parse_args(argv)
    tls = TlsFiles(args.tls_cert, args.tls_key, args.client_ca) if args.tls_cert and args.tls_key else None
    device = SimDevice(args.interfaces, args.pattern, args.utilisation)

    async def serve() -> None:
        sim = GnmiSimulator(device, args.host, args.port, tls)
        port = await sim.start()
        print(json.dumps({"listening": f"{args.host}:{port}", "tls": tls is not None}), flush=True)
        await sim.wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return 0


__all__ = [
    "FAULT_KINDS",
    "GnmiService",
    "GnmiSimThread",
    "GnmiSimulator",
    "PkiFiles",
    "SimDevice",
    "SimInterface",
    "TlsFiles",
    "main",
    "make_test_pki",
]

if __name__ == "__main__":
    raise SystemExit(main())
