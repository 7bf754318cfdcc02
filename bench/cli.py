"""``ossbss bench``: run benchmarks, print a table, optionally write JSON results."""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from typing import Any

from bench import BenchResult, discover


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="run the benchmarks (each beside a baseline measured in the same run)",
        description="Run the named benchmarks (all when none is named), print a table and, with --json, write "
        '{"NAME": {"value", "unit", "baseline", "ratio", "params"}}.',
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="benchmarks to run (default: all); --list shows them")
    parser.add_argument("--json", metavar="FILE", help="write results as JSON to FILE")
    parser.add_argument("--quick", action="store_true", help="smaller inputs, for a smoke run")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.set_defaults(func=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    registry = discover()
    if args.list:
        for name, (_, description) in sorted(registry.items()):
            print(f"{name:24} {description}")
        return 0
    names = args.names or sorted(registry)
    unknown = [n for n in names if n not in registry]
    if unknown:
        print(
            f"ossbss: unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(sorted(registry))}",
            file=sys.stderr,
        )
        return 2
    results: dict[str, BenchResult] = {}
    failed = 0
    for name in names:
        fn, description = registry[name]
        print(f"ossbss: running {name} ({description}) ...", file=sys.stderr, flush=True)
        started = time.monotonic()
        try:
            results[name] = fn(args.quick)
        except Exception:
            failed += 1
            print(f"ossbss: benchmark {name} failed:\n{traceback.format_exc()}", file=sys.stderr)
            continue
        print(f"ossbss: {name} done in {time.monotonic() - started:.1f}s", file=sys.stderr)
    print(f"{'benchmark':24} {'value':>14} {'unit':14} {'baseline':>14} {'ratio':>8}")
    for name, r in results.items():
        baseline = f"{r.baseline:,.0f}" if r.baseline is not None else "-"
        ratio = f"{r.ratio:.2f}" if r.ratio is not None else "-"
        value = f"{r.value:,.0f}" if abs(r.value) >= 100 else f"{r.value:.3g}"
        print(f"{name:24} {value:>14} {r.unit:14} {baseline:>14} {ratio:>8}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({n: r.to_json() for n, r in results.items()}, fh, indent=2)
        print(f"ossbss: results written to {args.json}", file=sys.stderr)
    return 1 if failed else 0
