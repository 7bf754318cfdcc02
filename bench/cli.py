"""``ossbss bench``: run benchmarks, print a table, optionally write JSON results."""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from typing import Any

from bench import BenchResult, discover, median_run


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
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="run each benchmark N times and report the run of median ratio, with every run's figures in its "
        "params and the range in the table (default: 1)",
    )
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
    if args.repeat < 1:
        print(f"ossbss: --repeat must be at least 1, not {args.repeat}", file=sys.stderr)
        return 2
    results: dict[str, BenchResult] = {}
    failed = 0
    for name in names:
        fn, description = registry[name]
        print(f"ossbss: running {name} ({description}) ...", file=sys.stderr, flush=True)
        started = time.monotonic()
        runs: list[BenchResult] = []
        try:
            for run in range(args.repeat):
                if args.repeat > 1:
                    print(f"ossbss: {name} run {run + 1} of {args.repeat} ...", file=sys.stderr, flush=True)
                runs.append(fn(args.quick))
        except Exception:
            failed += 1
            print(f"ossbss: benchmark {name} failed:\n{traceback.format_exc()}", file=sys.stderr)
            continue
        results[name] = median_run(runs)
        print(f"ossbss: {name} done in {time.monotonic() - started:.1f}s", file=sys.stderr)
    spread = args.repeat > 1
    print(f"{'benchmark':24} {'value':>14} {'unit':14} {'baseline':>14} {'ratio':>8}" + ("  range" if spread else ""))
    for name, r in results.items():
        baseline = f"{r.baseline:,.0f}" if r.baseline is not None else "-"
        ratio = f"{r.ratio:.2f}" if r.ratio is not None else "-"
        line = f"{name:24} {_number(r.value):>14} {r.unit:14} {baseline:>14} {ratio:>8}"
        if spread:
            line += "  " + _range(r.params["runs"])
        print(line)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({n: r.to_json() for n, r in results.items()}, fh, indent=2)
        print(f"ossbss: results written to {args.json}", file=sys.stderr)
    return 1 if failed else 0


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _range(runs: list[dict[str, Any]]) -> str:
    """``low-high`` of the runs' values, and of their ratios when they have them."""
    values = [run["value"] for run in runs]
    text = f"{_number(min(values))}-{_number(max(values))}"
    ratios = [run["ratio"] for run in runs if run["ratio"] is not None]
    if len(ratios) == len(runs):
        text += f" (ratio {min(ratios):.2f}-{max(ratios):.2f})"
    return text
