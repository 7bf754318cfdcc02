"""``ossbss rate`` on a small CSV: summary, refusals and bad lines with line numbers, output, rerating."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from ossbss.cli import main
from rating.catalog import EXAMPLE_CATALOG

USAGE = """\
id,account,service,start,end,bytes_up,bytes_down,duration_s,destination,event_type
u1,HOME-1,internet,2024-06-03T10:00:00Z,2024-06-03T11:00:00Z,0,150000000000,,,data
u2,MOB-2,national,2024-06-03T19:59:00Z,2024-06-03T20:01:00Z,,,120,+33612345678,voice
u3,MOB-2,sms,1717405200000,,,,,+33600000000,sms
u4,NOPE-9,internet,2024-06-03T10:00:00Z,2024-06-03T11:00:00Z,1,1,,,data
u5,HOME-1,internet,yesterday,2024-06-03T11:00:00Z,1,1,,,data
u6,HOME-1,internet,2024-06-03T12:00:00Z,2024-06-03T11:00:00Z,1,1,,,data
u7,MOB-2,international,2024-06-04T10:00:00+02:00,,,,45,+447700900123,voice
"""


@pytest.fixture
def usage_csv(tmp_path: Path) -> Path:
    path = tmp_path / "usage.csv"
    path.write_text(USAGE)
    return path


def test_rate_prints_summary_refusals_and_bad_lines(
    usage_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "rated.csv"
    code = main(
        [
            "rate",
            "--catalog",
            str(EXAMPLE_CATALOG),
            "--input",
            str(usage_csv),
            "--output",
            str(output),
            "--rated-at",
            "1000",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 1  # some lines were bad or refused
    assert "bad line 6: start: not ISO-8601 or epoch milliseconds: 'yesterday'" in printed
    assert "bad line 7: end is before start" in printed
    assert "refused line 5 (u4): no active subscription for account 'NOPE-9' at 2024-06-03T10:00:00Z" in printed
    assert "records: 7 lines, 5 usage records" in printed
    assert "rated: 4 in" in printed
    assert "refused: 1" in printed and "bad lines: 2" in printed
    # u1 50 GB over the allowance at 0.50 = 25.00; u2 inside the free minutes: connect fee 0.05; u3 0.08;
    # u7 45 s to a UK mobile at 10:00 Paris time (peak): 30/6 increments bill 48 s = 0.8 min * 0.35 = 0.28
    assert "total EUR: 25.410000" in printed
    rows = list(csv.DictReader(output.open()))
    assert [(r["id"], r["amount"]) for r in rows] == [
        ("u1", "25.00"),
        ("u2", "0.050000"),
        ("u3", "0.080000"),
        ("u7", "0.280000"),
    ]
    assert rows[3]["start_ms"] == "1717488000000" and rows[0]["rated_at_ms"] == "1000"
    assert json.loads(rows[3]["breakdown"])["lines"][0]["parts"][0]["rate"] == "uk-mobile/peak"


def test_rate_all_good_exits_zero_and_reads_json_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "usage.jsonl"
    path.write_text(
        json.dumps(
            {
                "id": "a",
                "account": "ACC-1",
                "service": "internet",
                "start_ms": 1717408800000,
                "bytes_down": 2_000_000_000,
            }
        )
        + "\n"
    )
    assert main(["rate", "--input", str(path)]) == 0
    assert "total EUR: 1.000000" in capsys.readouterr().out


def test_rerate_a_rated_file_with_a_new_catalog(
    usage_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rated = tmp_path / "rated.csv"
    main(["rate", "--catalog", str(EXAMPLE_CATALOG), "--input", str(usage_csv), "--output", str(rated)])
    new_catalog = tmp_path / "new.yaml"
    new_catalog.write_text(EXAMPLE_CATALOG.read_text().replace('price: "0.08"', 'price: "0.10"'))
    capsys.readouterr()
    assert (
        main(
            [
                "rate",
                "--rerate",
                "--catalog",
                str(new_catalog),
                "--input",
                str(rated),
                "--period",
                "2024-06",
                "--dry-run",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "changed: 1, unchanged: 3" in printed
    assert "MOB-2 EUR: 0.410000 -> 0.430000 (+0.020000), 1 records" in printed
    assert "dry run: nothing written" in printed
    rerated = tmp_path / "rerated.csv"
    assert (
        main(["rate", "--rerate", "--catalog", str(new_catalog), "--input", str(rated), "--output", str(rerated)]) == 0
    )
    rows = list(csv.DictReader(rerated.open()))
    assert [(r["id"], r["amount"], r["rating_version"]) for r in rows] == [("u3", "0.100000", "2")]


def test_rerate_without_input_needs_a_period(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rate", "--rerate", "--dry-run"]) == 2
    assert "give --period YYYY-MM" in capsys.readouterr().out


def test_bad_catalog_and_missing_input_exit_two(
    usage_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("plans:\n  - name: p\n    charges:\n      - {model: per_unit, price: 0.5}\n")
    assert main(["rate", "--catalog", str(bad), "--input", str(usage_csv)]) == 2
    assert "catalog error: plans[0] (p).charges[0] (per_unit).price" in capsys.readouterr().out
    assert main(["rate", "--input", str(tmp_path / "none.csv")]) == 2


def test_help_documents_the_columns(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["rate", "--help"])
    printed = capsys.readouterr().out
    for column in (
        "id",
        "account",
        "service",
        "start",
        "end",
        "bytes_up",
        "bytes_down",
        "duration_s",
        "destination",
        "event_type",
        "--rerate",
        "--period",
        "--dry-run",
    ):
        assert column in printed


def test_state_file_carries_allowances_between_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, second = tmp_path / "june-a.csv", tmp_path / "june-b.csv"
    header = "id,account,service,start,end,bytes_up,bytes_down,duration_s,destination,event_type\n"
    first.write_text(header + "a,HOME-1,internet,2024-06-03T10:00:00Z,,0,80000000000,,,data\n")
    second.write_text(header + "b,HOME-1,internet,2024-06-04T10:00:00Z,,0,80000000000,,,data\n")
    state = tmp_path / "state.bin"
    catalog = str(EXAMPLE_CATALOG)
    assert main(["rate", "--catalog", catalog, "--input", str(first), "--state", str(state)]) == 0
    assert main(["rate", "--catalog", catalog, "--input", str(second), "--state", str(state)]) == 0
    printed = capsys.readouterr().out
    assert "total EUR: 0.00" in printed  # 80 GB of the 100 GB allowance
    assert "total EUR: 30.00" in printed  # 20 GB left, 60 GB * 0.50
