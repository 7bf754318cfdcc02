"""``ossbss detect``: score one time series from a CSV file with the online seasonal baseline.

    ossbss detect --input ifHCInOctets-rate.csv --output scores.csv
    ossbss detect -i series.csv -o - --time-column ts --value-column bps --season 1h

Rows are sorted by time (stably: equal times keep their file order) and go through
:class:`~assurance.detectors.SeasonalBaseline` one by one, each scored before it is learned, so the
score of a row depends only on the rows up to it. Exit codes: 0 every row scored; 1 some rows were
skipped (each named on stderr with its line); 2 nothing could run (unreadable file, missing column,
bad option, or a bad row with ``--strict``).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import math
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, TextIO

from assurance.detectors import DAY_MS, BaselineConfig, DetectorError, SeasonalBaseline

EPILOG = """\
input: a CSV file with a header; the time column holds ISO-8601 times (2024-06-01T10:00:00Z, with an
offset, or none for UTC) or epoch numbers (seconds, or milliseconds when the number is 1e11 or more);
the value column holds numbers. Other columns are ignored. A row whose time or value cannot be read
(or whose value is NaN or infinite) is skipped and reported on stderr with its line number; with
--strict the first such row stops the command instead.

output: timestamp,value,anomaly_score per scored row, in time order; timestamp and value as they were
in the input, anomaly_score in [0, 1] (0 to about 0.3 is usual, 0.9 and above stands out). The first
--warmup rows score low by design while the baseline learns.

model: a seasonal profile over --season (--slots levels, read with interpolation), a fast offset for
today's level, and a robust scale, in signed-log space by default (relative changes: right for
traffic, counts, rates). See assurance/detectors.py.

examples:
  ossbss detect --input router1-xe-0-0-1.csv --output scores.csv
  ossbss detect -i errors.csv -o - --value-column in_errors --season none
  ossbss detect -i cpu.csv -o cpu-scores.csv --time-column time --value-column load --transform identity \\
      --min-scale 0.5 --season 1d --slots 48
"""

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$", re.IGNORECASE)
_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": DAY_MS, "w": 7 * DAY_MS}
EPOCH_MS_FROM = 1e11  # epoch numbers at or above this are milliseconds (1e11 s is the year 5138)
MAX_EPOCH_MS = 253_402_300_800_000  # 10000-01-01T00:00:00Z
SHOWN_BAD_ROWS = 20


class DetectInputError(ValueError):
    """The input file cannot be used at all (missing column, no header, unreadable)."""


@dataclass(frozen=True)
class BadRow:
    line: int
    reason: str


@dataclass(frozen=True)
class SeriesRow:
    line: int
    ts_ms: int
    timestamp: str  # as written in the input
    value_text: str
    value: float


def parse_duration(text: str) -> int | None:
    """``"1d"``, ``"90m"``, ``"3600s"`` -> milliseconds; ``"none"`` or ``"0"`` -> None (no season)."""
    if text.strip().lower() in ("none", "0", "off"):
        return None
    match = _DURATION.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use e.g. 1d, 12h, 90m, or none)")
    ms = round(float(match.group(1)) * _UNIT_MS[match.group(2).lower()])
    if ms <= 0:
        raise argparse.ArgumentTypeError(f"duration must be positive: {text!r}")
    return ms


def parse_timestamp(text: str) -> int:
    """Epoch milliseconds from ISO-8601 or an epoch number (seconds, or ms from 1e11); ValueError if neither."""
    stripped = text.strip()
    if not stripped:
        raise ValueError("empty timestamp")
    try:
        number = float(stripped)
    except ValueError:
        number = math.nan
    if math.isfinite(number):
        ms = number if abs(number) >= EPOCH_MS_FROM else number * 1000
        if abs(ms) > MAX_EPOCH_MS:
            raise ValueError(f"epoch number out of range: {stripped}")
        return round(ms)
    moment = dt.datetime.fromisoformat(stripped)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return round(moment.timestamp() * 1000)


def read_series(
    handle: TextIO, time_column: str, value_column: str, strict: bool = False
) -> tuple[list[SeriesRow], list[BadRow]]:
    """Parse the rows, in file order; bad rows are returned separately (or raise with ``strict``)."""
    reader = csv.DictReader(handle)
    if reader.fieldnames is None:
        raise DetectInputError("the input is empty (a header line is needed)")
    missing = [name for name in (time_column, value_column) if name not in reader.fieldnames]
    if missing:
        raise DetectInputError(f"column(s) {', '.join(missing)} not in the header ({', '.join(reader.fieldnames)})")
    rows: list[SeriesRow] = []
    bad: list[BadRow] = []
    for record in reader:
        line = reader.line_num
        timestamp, value_text = record.get(time_column) or "", record.get(value_column) or ""
        try:
            ts_ms = parse_timestamp(timestamp)
        except ValueError:
            problem = BadRow(line, f"bad {time_column} {timestamp!r}")
        else:
            try:
                value = float(value_text)
            except ValueError:
                value = math.nan
            if math.isfinite(value):
                rows.append(SeriesRow(line, ts_ms, timestamp, value_text, value))
                continue
            problem = BadRow(line, f"bad {value_column} {value_text!r}")
        if strict:
            raise DetectInputError(f"line {problem.line}: {problem.reason}")
        bad.append(problem)
    return rows, bad


def score_series(rows: list[SeriesRow], config: BaselineConfig) -> list[tuple[SeriesRow, float]]:
    """Rows in time order (stable), each scored by the online baseline before it is learned."""
    detector = SeasonalBaseline(config)
    return [(row, detector.update(row.ts_ms, row.value)) for row in sorted(rows, key=lambda r: r.ts_ms)]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "detect",
        help="score a time series CSV for anomalies with the online seasonal baseline (offline, no service)",
        description="Read a CSV time series, sort it by time and run it through the same online seasonal\n"
        "baseline the assurance worker uses; write timestamp,value,anomaly_score per row, each score\n"
        "in [0, 1] and depending only on the rows up to it.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--input", "-i", required=True, help="CSV file with a header ('-' for stdin)")
    parser.add_argument("--output", "-o", required=True, help="CSV file to write ('-' for stdout)")
    parser.add_argument("--time-column", default="timestamp", help="column holding the time (default: timestamp)")
    parser.add_argument("--value-column", default="value", help="column holding the value (default: value)")
    parser.add_argument(
        "--season",
        type=parse_duration,
        default=DAY_MS,
        metavar="DURATION",
        help="length of the seasonal cycle: 1d (default), 12h, 1w, 90m ... or none",
    )
    parser.add_argument("--slots", type=int, default=24, help="seasonal levels per cycle (default 24)")
    parser.add_argument("--warmup", type=int, default=60, help="rows before scores reach full strength (default 60)")
    parser.add_argument(
        "--transform",
        choices=("slog", "identity"),
        default="slog",
        help="slog: sign(x)*log1p(|x|), relative changes (default); identity: absolute changes",
    )
    parser.add_argument(
        "--min-scale",
        type=float,
        default=0.05,
        help="floor of the noise scale in transformed units (default 0.05: a 5%% change with slog)",
    )
    parser.add_argument("--strict", action="store_true", help="stop at the first bad row instead of skipping it")
    parser.set_defaults(func=run_detect)


@contextmanager
def _open(path: str, mode: Literal["r", "w"], default: TextIO) -> Iterator[TextIO]:
    if path == "-":
        yield default
        return
    with open(path, mode, newline="", encoding="utf-8") as handle:
        yield handle


def run_detect(args: argparse.Namespace) -> int:
    try:
        config = BaselineConfig(
            season_ms=args.season or DAY_MS,
            slots=args.slots if args.season else 1,
            transform=args.transform,
            min_scale=args.min_scale,
            warmup=args.warmup,
        )
    except DetectorError as exc:
        print(f"ossbss detect: {exc}", file=sys.stderr)
        return 2
    try:
        with _open(args.input, "r", sys.stdin) as source:
            rows, bad = read_series(source, args.time_column, args.value_column, strict=args.strict)
    except (OSError, UnicodeDecodeError, csv.Error, DetectInputError) as exc:
        print(f"ossbss detect: {args.input}: {exc}", file=sys.stderr)
        return 2
    scored = score_series(rows, config)
    try:
        with _open(args.output, "w", sys.stdout) as sink:
            writer = csv.writer(sink, lineterminator="\n")
            writer.writerow(["timestamp", "value", "anomaly_score"])
            writer.writerows([row.timestamp, row.value_text, f"{score:.6f}"] for row, score in scored)
    except OSError as exc:
        print(f"ossbss detect: {args.output}: {exc}", file=sys.stderr)
        return 2
    for problem in bad[:SHOWN_BAD_ROWS]:
        print(f"ossbss detect: {args.input}: line {problem.line}: {problem.reason}, skipped", file=sys.stderr)
    if len(bad) > SHOWN_BAD_ROWS:
        print(f"ossbss detect: ... and {len(bad) - SHOWN_BAD_ROWS} more bad rows", file=sys.stderr)
    print(f"ossbss detect: scored {len(scored)} rows, skipped {len(bad)} bad rows", file=sys.stderr)
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    """``python -m assurance.detect_cli ARGS``: the verb on its own (``ossbss detect ARGS`` is the same)."""
    parser = argparse.ArgumentParser(prog="ossbss")
    register(parser.add_subparsers(dest="verb", required=True))
    args = parser.parse_args(["detect", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


__all__ = [
    "BadRow",
    "DetectInputError",
    "SeriesRow",
    "main",
    "parse_duration",
    "parse_timestamp",
    "read_series",
    "register",
    "run_detect",
    "score_series",
]


if __name__ == "__main__":
    sys.exit(main())
