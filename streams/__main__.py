"""Run the stream-processing worker: ``python -m streams --bootstrap HOST:PORT [--config FILE]``."""

from __future__ import annotations

import argparse
import sys

import faust

from ossbss.config import load_config
from streams.app import create_app, tune_gc_for_streaming


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streams", description=__doc__)
    parser.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers")
    parser.add_argument("--config", help="YAML config file")
    parser.add_argument("--loglevel", default="warn", choices=["crit", "error", "warn", "info", "debug"])
    args = parser.parse_args(argv)
    config = load_config(args.config)
    app = create_app(config, args.bootstrap)
    tune_gc_for_streaming()
    worker = faust.Worker(app, loglevel=args.loglevel, quiet=True)
    worker.execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main())
