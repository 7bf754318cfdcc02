"""``ossbss collect``: one-shot collection from a device or a usage file, printed as JSON lines.

For operators checking a target: no Kafka, no config file. Secrets are read from environment
variables or files named on the command line (``--auth-key-env VAR``), never given by value.
Exit codes: 0 everything collected, 1 a target failed or a file has bad lines, 2 invalid options.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from collectors.base import CollectorConfigError, ListSink, build_collector, parse_collector_config
from models.records import Record
from models.topics import DEAD_LETTERS, FAULT_EVENTS

_encoder = msgspec.json.Encoder(decimal_format="string")


def _print_records(records: Sequence[Record], out: Any = None) -> None:
    stream = out or sys.stdout
    for record in records:
        stream.write(_encoder.encode(record).decode() + "\n")
    stream.flush()


def _target(value: str, default_port: int) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or value.endswith("]"):  # no port given (or a bare [v6] address)
        return value.strip("[]"), default_port
    if not port.isdigit():
        raise argparse.ArgumentTypeError(f"bad port in {value!r}")
    return host.strip("[]"), int(port)


def register(subparsers: Any) -> None:
    collect = subparsers.add_parser(
        "collect",
        help="one-shot collection from a device or a usage file (printed as JSON lines)",
        description="Collect once from an SNMP agent, a gNMI target, a trap port or a usage file, and print "
        "the records as JSON lines. Secrets come from environment variables or files, never the command line.",
    )
    kinds = collect.add_subparsers(dest="collect_kind", metavar="KIND", required=True)

    snmp = kinds.add_parser("snmp", help="poll IF-MIB/IF-X-MIB interface counters with GETBULK")
    snmp.add_argument("--target", required=True, help="HOST[:PORT] of the agent (port 161 by default)")
    snmp.add_argument("--name", default="", help="device name in the records (default: the target)")
    snmp.add_argument("--snmp-version", choices=("2c", "3"), help="default: 3 when --user is given, else 2c")
    snmp.add_argument("--community", default="", help="v2c community (default public; prefer --community-env)")
    snmp.add_argument("--community-env", default="", help="environment variable holding the community")
    snmp.add_argument("--user", default="", help="SNMPv3 user name")
    snmp.add_argument("--auth-proto", default="", help="MD5 SHA SHA224 SHA256 SHA384 SHA512")
    snmp.add_argument("--auth-key-env", default="", help="environment variable holding the auth passphrase")
    snmp.add_argument("--auth-key-file", default="", help="file holding the auth passphrase")
    snmp.add_argument("--priv-proto", default="", help="AES AES192 AES256 (DES/3DES with --backend pysnmp)")
    snmp.add_argument("--priv-key-env", default="", help="environment variable holding the privacy passphrase")
    snmp.add_argument("--priv-key-file", default="", help="file holding the privacy passphrase")
    snmp.add_argument("--context", default="", help="SNMPv3 context name")
    snmp.add_argument("--timeout", type=float, default=2.0, help="seconds per attempt (default 2)")
    snmp.add_argument("--retries", type=int, default=1, help="retries after a timeout (default 1)")
    snmp.add_argument("--max-repetitions", type=int, default=25, help="GETBULK max-repetitions (default 25)")
    snmp.add_argument("--counters", choices=("auto", "hc", "c32"), default="auto", help="counter set (default auto)")
    snmp.add_argument("--backend", choices=("native", "pysnmp"), default="native")
    snmp.add_argument("--extra-oid", action="append", default=[], help="also fetch this OID (repeatable)")
    snmp.add_argument("--once", action="store_true", help="poll once and exit (default: poll every --interval)")
    snmp.add_argument("--interval", type=float, default=10.0, help="seconds between polls without --once")
    snmp.set_defaults(func=collect_snmp)

    gnmi = kinds.add_parser("gnmi", help="subscribe to OpenConfig interface counters over gNMI")
    gnmi.add_argument("--target", required=True, help="HOST:PORT of the gNMI target")
    gnmi.add_argument("--name", default="", help="device name in the records (default: the target)")
    gnmi.add_argument("--insecure", action="store_true", help="plaintext gRPC (no TLS)")
    gnmi.add_argument("--ca", default="", help="CA certificate (PEM) to verify the target")
    gnmi.add_argument("--cert", default="", help="client certificate (PEM)")
    gnmi.add_argument("--key", default="", help="client key (PEM)")
    gnmi.add_argument("--server-name", default="", help="TLS name to verify instead of the target host")
    gnmi.add_argument("--username-env", default="", help="environment variable holding the gNMI username")
    gnmi.add_argument("--password-env", default="", help="environment variable holding the gNMI password")
    gnmi.add_argument("--path", action="append", default=[], help="subscription path (repeatable)")
    gnmi.add_argument("--encoding", choices=("json", "json_ietf", "proto", "ascii"), default="json_ietf")
    gnmi.add_argument("--sample-interval", type=float, default=10.0, help="SAMPLE interval in seconds")
    gnmi.add_argument("--once", action="store_true", help="a ONCE subscription, print and exit")
    gnmi.add_argument("--duration", type=float, default=0.0, help="without --once: stream this long (0: until ^C)")
    gnmi.add_argument("--capabilities", action="store_true", help="print the target's Capabilities and exit")
    gnmi.set_defaults(func=collect_gnmi)

    usage = kinds.add_parser("usage", help="read a usage file (CSV or JSON lines)")
    usage.add_argument("file", type=Path, help="the usage file")
    usage.add_argument("--check", action="store_true", help="only validate: report each bad line and a summary")
    usage.add_argument("--max-age-days", type=float, default=400.0, help="refuse older usage (default 400)")
    usage.add_argument("--max-future-s", type=float, default=86400.0, help="refuse usage this far ahead")
    usage.set_defaults(func=collect_usage)

    traps = kinds.add_parser("traps", help="listen for SNMP traps/informs and print them as FaultEvents")
    traps.add_argument("--listen", default="0.0.0.0:9162", help="HOST:PORT to listen on (default 0.0.0.0:9162)")
    traps.add_argument("--community", action="append", default=[], help="accepted community (repeatable)")
    traps.add_argument("--user", default="", help="SNMPv3 user")
    traps.add_argument("--auth-proto", default="")
    traps.add_argument("--auth-key-env", default="")
    traps.add_argument("--priv-proto", default="")
    traps.add_argument("--priv-key-env", default="")
    traps.add_argument("--duration", type=float, default=0.0, help="listen this long (0: until ^C)")
    traps.set_defaults(func=collect_traps)


def _fail(message: str, code: int = 2) -> int:
    print(f"ossbss collect: {message}", file=sys.stderr)
    return code


def collect_snmp(args: argparse.Namespace) -> int:
    host, port = _target(args.target, 161)
    version = args.snmp_version or ("3" if args.user else "2c")
    target: dict[str, Any] = {"host": host, "port": port, "version": version}
    if args.name:
        target["name"] = args.name
    if version == "3":
        target.update(user=args.user, context=args.context)
        for proto, env, file, name in (
            (args.auth_proto, args.auth_key_env, args.auth_key_file, "auth"),
            (args.priv_proto, args.priv_key_env, args.priv_key_file, "priv"),
        ):
            if proto:
                target.update({f"{name}_proto": proto, f"{name}_key_env": env, f"{name}_key_file": file})
    elif args.community_env:
        target["community_env"] = args.community_env
    else:
        target["community"] = args.community or "public"
    section = {
        "type": "snmp",
        "name": "cli",
        "timeout_s": args.timeout,
        "retries": args.retries,
        "max_repetitions": args.max_repetitions,
        "counters": args.counters,
        "backend": args.backend,
        "extra_oids": args.extra_oid,
        "spread_start": False,
        "targets": [target],
    }
    try:
        config = parse_collector_config(section, "collect snmp")
        sink = ListSink()
        collector: Any = build_collector(config, sink, config_key="collect snmp")
    except CollectorConfigError as exc:
        return _fail(str(exc))

    async def poll_loop() -> int:
        status = 0
        try:
            while True:
                records = await collector.collect_once()
                _print_records(records)
                for result in collector.last_results.values():
                    if result.extra:
                        print(_encoder.encode({"device": result.device, "extra": result.extra}).decode())
                _print_letters(sink)
                for error in collector.last_errors.values():
                    print(f"ossbss collect: {error}", file=sys.stderr)
                    status = 1
                if args.once:
                    return status
                await asyncio.sleep(args.interval)
        finally:
            await collector.close()

    return asyncio.run(poll_loop())


def _print_letters(sink: ListSink) -> None:
    letters = sink.records(DEAD_LETTERS)
    for letter in letters:
        print(f"ossbss collect: dead letter: {getattr(letter, 'reason', '')}", file=sys.stderr)
    letters.clear()


def collect_gnmi(args: argparse.Namespace) -> int:
    target: dict[str, Any] = {"address": args.target, "insecure": args.insecure}
    for flag, key in (("name", "name"), ("ca", "tls_ca"), ("cert", "tls_cert"), ("key", "tls_key")):
        if getattr(args, flag):
            target[key] = getattr(args, flag)
    if args.server_name:
        target["tls_server_name"] = args.server_name
    if args.username_env:
        target.update(username_env=args.username_env, password_env=args.password_env)
    section: dict[str, Any] = {"type": "gnmi", "name": "cli", "encoding": args.encoding, "targets": [target]}
    if args.path:
        section["subscriptions"] = [
            {"path": p, "mode": "sample", "sample_interval_s": args.sample_interval} for p in args.path
        ]
    else:
        section["subscriptions"] = [
            {
                "path": "/interfaces/interface/state/counters",
                "mode": "sample",
                "sample_interval_s": args.sample_interval,
            },
            {"path": "/interfaces/interface/state/oper-status", "mode": "on_change"},
            {"path": "/interfaces/interface/state/ifindex", "mode": "on_change"},
        ]
    try:
        config = parse_collector_config(section, "collect gnmi")
        sink = ListSink()
        collector: Any = build_collector(config, sink, config_key="collect gnmi")
    except CollectorConfigError as exc:
        return _fail(str(exc))

    async def run() -> int:
        if args.capabilities:
            from collectors.base import TargetError

            try:
                caps = await collector.capabilities(collector.targets[0])
            except TargetError as exc:
                return _fail(str(exc), 1)
            print(_encoder.encode(caps).decode())
            return 0
        if args.once:
            records = await collector.collect_once()
            _print_records(records)
            _print_records(sink.records(FAULT_EVENTS))
            _print_letters(sink)
            for error in collector.last_errors.values():
                print(f"ossbss collect: {error}", file=sys.stderr)
            return 1 if collector.last_errors else 0
        printer = _StreamPrinter(sink)
        stop = asyncio.Event()
        task = asyncio.create_task(collector.run(stop))
        started = asyncio.get_running_loop().time()
        try:
            while not task.done():
                await asyncio.sleep(0.2)
                printer.drain()
                if args.duration and asyncio.get_running_loop().time() - started >= args.duration:
                    break
        finally:
            stop.set()
            await task
            printer.drain()
        return 0

    return asyncio.run(run())


class _StreamPrinter:
    """Prints what a running collector put in its ListSink since the last drain."""

    def __init__(self, sink: ListSink) -> None:
        self.sink = sink

    def drain(self) -> None:
        for name in list(self.sink.by_topic):
            records = self.sink.by_topic[name]
            if name == DEAD_LETTERS.name:
                for letter in records:
                    print(f"ossbss collect: dead letter: {getattr(letter, 'reason', '')}", file=sys.stderr)
            else:
                _print_records(records)
            records.clear()


def collect_usage(args: argparse.Namespace) -> int:
    from collectors.usage import UsageLimits, check_file

    path: Path = args.file
    if not path.is_file():
        return _fail(f"no such file: {path}")
    try:
        result = check_file(path, UsageLimits(args.max_age_days, args.max_future_s))
    except OSError as exc:
        return _fail(f"cannot read {path}: {exc.strerror}", 1)
    for letter in result.dead_letters:
        print(f"{path}: {letter.reason}", file=sys.stdout if args.check else sys.stderr)
    if args.check:
        print(f"{path}: {result.lines} lines, {len(result.records)} valid, {result.bad} bad (sha256 {result.sha256})")
    else:
        _print_records(result.records)
    return 1 if result.bad else 0


def collect_traps(args: argparse.Namespace) -> int:
    host, port = _target(args.listen, 9162)
    section: dict[str, Any] = {"type": "snmp_traps", "name": "cli", "host": host, "port": port}
    if args.community:
        section["communities"] = args.community
    if args.user:
        user: dict[str, Any] = {"user": args.user}
        if args.auth_proto:
            user.update(auth_proto=args.auth_proto, auth_key_env=args.auth_key_env)
        if args.priv_proto:
            user.update(priv_proto=args.priv_proto, priv_key_env=args.priv_key_env)
        section["users"] = [user]
    try:
        config = parse_collector_config(section, "collect traps")
        sink = ListSink()
        collector: Any = build_collector(config, sink, config_key="collect traps")
    except CollectorConfigError as exc:
        return _fail(str(exc))

    async def run() -> int:
        try:
            bound = await collector.start()
        except OSError as exc:
            return _fail(f"cannot listen on {host}:{port}: {exc.strerror}", 1)
        print(f"ossbss collect: listening for traps on {bound[0]}:{bound[1]}", file=sys.stderr)
        printer = _StreamPrinter(sink)
        started = asyncio.get_running_loop().time()
        try:
            while not args.duration or asyncio.get_running_loop().time() - started < args.duration:
                await asyncio.sleep(0.2)
                printer.drain()
        finally:
            collector.close()
            await asyncio.sleep(0)  # let the socket close before the loop ends
            printer.drain()
        return 0

    return asyncio.run(run())


__all__ = ["collect_gnmi", "collect_snmp", "collect_traps", "collect_usage", "register"]
