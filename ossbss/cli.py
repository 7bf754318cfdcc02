"""The ``ossbss`` command. Core verbs live here; each room may add its own through ``<room>/cli.py``.

A room CLI module exposes ``register(subparsers)``, which adds one or more verbs and sets
``func`` (called with the parsed args, returns an exit code) with ``parser.set_defaults(func=...)``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ossbss import __version__

# Room CLIs, imported when present; each adds its verbs.
ROOM_CLIS = ("ossbss.commands", "collectors.cli", "rating.cli", "billing.cli", "assurance.cli", "bench.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ossbss",
        description="Streaming OSS/BSS pipeline: telemetry and usage into Kafka, rates, rating and billing "
        "into ClickHouse.",
    )
    parser.add_argument("--version", action="version", version=f"ossbss {__version__}")
    parser.add_argument("-c", "--config", help="YAML config file (default: ./ossbss.yaml if present, else built-in)")
    subparsers = parser.add_subparsers(dest="verb", metavar="VERB")
    for module_name in ROOM_CLIS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):  # this room (or its CLI) does not exist yet
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
