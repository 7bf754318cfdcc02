"""``ossbss detect`` on CSV files: time order, scores that only look back, bad rows named by line, stdout."""

from __future__ import annotations

import csv
import io
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from assurance.detect_cli import main, parse_duration, parse_timestamp

START_S = 1_717_200_000  # 2024-06-01T00:00:00Z


def series_rows(points: int = 400, spike_at: int = 300) -> list[tuple[str, str]]:
    rng = np.random.default_rng(4)
    rows = []
    for i in range(points):
        value = 5e6 * (1 + 0.3 * math.sin(2 * math.pi * i / 96)) * math.exp(rng.normal(0, 0.03))
        if i == spike_at:
            value *= 10
        rows.append((str(START_S + 60 * i), f"{value:.1f}"))
    return rows


def write_csv(path: Path, rows: list[tuple[str, str]], header: tuple[str, str] = ("timestamp", "value")) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_scores(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_scores_every_row_in_time_order_and_the_spike_stands_out(tmp_path: Path) -> None:
    rows = series_rows()
    shuffled = [rows[i] for i in np.random.default_rng(1).permutation(len(rows))]
    source = write_csv(tmp_path / "series.csv", shuffled)
    output = tmp_path / "scores.csv"
    assert main(["--input", str(source), "--output", str(output), "--season", "96m", "--slots", "12"]) == 0
    scored = read_scores(output.read_text())
    assert [r["timestamp"] for r in scored] == [ts for ts, _ in rows]
    assert [r["value"] for r in scored] == [v for _, v in rows]
    scores = np.array([float(r["anomaly_score"]) for r in scored])
    assert ((scores >= 0) & (scores <= 1)).all()
    assert int(np.argmax(scores)) == 300 and scores[300] > 0.9
    assert np.quantile(np.delete(scores[100:], 200), 0.99) < 0.5


def test_a_row_score_depends_only_on_the_rows_up_to_it(tmp_path: Path) -> None:
    rows = series_rows()
    full, head = tmp_path / "full.csv", tmp_path / "head.csv"
    main(["-i", str(write_csv(tmp_path / "a.csv", rows)), "-o", str(full)])
    main(["-i", str(write_csv(tmp_path / "b.csv", rows[:250])), "-o", str(head)])
    assert read_scores(full.read_text())[:250] == read_scores(head.read_text())


def test_iso_and_epoch_timestamps_mix_and_equal_times_keep_file_order(tmp_path: Path) -> None:
    rows = [
        ("2024-06-01T00:02:00Z", "3"),
        ("1717200000", "1"),  # epoch seconds: 00:00
        ("1717200060000", "2"),  # epoch milliseconds: 00:01
        ("2024-06-01 00:02:00+00:00", "4"),  # same time as the first row: stays after it
        ("2024-06-01T02:03:00+02:00", "5"),  # 00:03 UTC
    ]
    output = tmp_path / "out.csv"
    assert main(["-i", str(write_csv(tmp_path / "t.csv", rows)), "-o", str(output)]) == 0
    assert [r["value"] for r in read_scores(output.read_text())] == ["1", "2", "3", "4", "5"]


def test_bad_rows_are_skipped_and_named_by_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [*series_rows(20), ("yesterday", "5"), (str(START_S + 99_999), "n/a"), (str(START_S + 99_999), "nan")]
    output = tmp_path / "out.csv"
    assert main(["-i", str(write_csv(tmp_path / "bad.csv", rows)), "-o", str(output)]) == 1
    err = capsys.readouterr().err
    assert "line 22: bad timestamp 'yesterday'" in err
    assert "line 23: bad value 'n/a'" in err and "line 24: bad value 'nan'" in err
    assert "scored 20 rows, skipped 3 bad rows" in err
    assert len(read_scores(output.read_text())) == 20


def test_strict_stops_at_the_first_bad_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [*series_rows(5), ("", "1")]
    output = tmp_path / "out.csv"
    assert main(["-i", str(write_csv(tmp_path / "bad.csv", rows)), "-o", str(output), "--strict"]) == 2
    assert "line 7: bad timestamp ''" in capsys.readouterr().err
    assert not output.exists()


def test_named_columns_and_a_missing_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write_csv(tmp_path / "named.csv", series_rows(30), header=("time", "in_errors"))
    output = tmp_path / "out.csv"
    assert main(["-i", str(source), "-o", str(output), "--time-column", "time", "--value-column", "in_errors"]) == 0
    assert read_scores(output.read_text())[0].keys() == {"timestamp", "value", "anomaly_score"}
    assert main(["-i", str(source), "-o", str(output)]) == 2
    assert "timestamp, value not in the header (time, in_errors)" in capsys.readouterr().err


def test_runs_as_a_process_writing_to_stdout(tmp_path: Path) -> None:
    source = write_csv(tmp_path / "series.csv", series_rows(50))
    command = [sys.executable, "-m", "assurance.detect_cli", "-i", str(source), "-o", "-", "--season", "none"]
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=Path(__file__).parents[2])
    assert done.returncode == 0, done.stderr
    scored = read_scores(done.stdout)
    assert len(scored) == 50 and all(0.0 <= float(r["anomaly_score"]) <= 1.0 for r in scored)
    assert "scored 50 rows" in done.stderr


def test_help_describes_the_verb_with_an_example() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "assurance.detect_cli", "--help"],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 0
    assert "anomaly_score" in done.stdout and "ossbss detect --input" in done.stdout and "--season" in done.stdout


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1717200000", 1_717_200_000_000),
        ("1717200000.5", 1_717_200_000_500),
        ("1717200000000", 1_717_200_000_000),
        ("2024-06-01T00:00:00Z", 1_717_200_000_000),
        ("2024-06-01T02:00:00+02:00", 1_717_200_000_000),
        ("2024-06-01 00:00:00", 1_717_200_000_000),
    ],
)
def test_parse_timestamp(text: str, expected: int) -> None:
    assert parse_timestamp(text) == expected


@pytest.mark.parametrize("text", ["", "soon", "nan", "1e300", "2024-13-01"])
def test_parse_timestamp_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(text)


def test_parse_duration() -> None:
    assert parse_duration("1d") == 86_400_000 and parse_duration("90m") == 5_400_000
    assert parse_duration("1.5h") == 5_400_000 and parse_duration("none") is None
    with pytest.raises(Exception, match="not a duration"):
        parse_duration("daily")
