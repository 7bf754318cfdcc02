"""``ossbss bench --repeat N``: the run of median ratio, taken whole, with every run's figures beside it."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from bench import REGISTRY, BenchResult, benchmark, median_run
from ossbss.cli import main


def _run(value: float, baseline: float | None, tag: str) -> BenchResult:
    ratio = value / baseline if baseline else None
    return BenchResult(value=value, unit="records/s", baseline=baseline, ratio=ratio, params={"tag": tag})


def test_the_run_of_median_ratio_is_taken_whole() -> None:
    runs = [_run(90, 100, "a"), _run(120, 300, "b"), _run(80, 200, "c")]  # ratios 0.9, 0.4, 0.4
    runs.append(_run(70, 100, "d"))  # 0.7: four runs, the lower middle one is 0.4 ("b" or "c", both 0.4)
    chosen = median_run(runs)
    assert chosen.ratio == pytest.approx(0.4)
    assert (chosen.value, chosen.baseline, chosen.params["tag"]) in {(120, 300, "b"), (80, 200, "c")}
    assert [run["value"] for run in chosen.params["runs"]] == [90, 120, 80, 70]
    odd = median_run([_run(50, 100, "x"), _run(95, 100, "y"), _run(70, 100, "z")])
    assert (odd.value, odd.params["tag"]) == (70, "z")


def test_without_ratios_the_median_value_and_one_run_as_it_is() -> None:
    runs = [_run(3.0, None, "p"), _run(1.0, None, "q"), _run(2.0, None, "r")]
    assert median_run(runs).params["tag"] == "r"
    single = median_run([_run(5, 10, "only")])
    assert single.params == {"tag": "only"} and single.ratio == 0.5
    with pytest.raises(ValueError):
        median_run([])


@pytest.fixture
def counting_benchmark() -> Iterator[list[bool]]:
    """A benchmark whose n-th run measures 100 * n against a baseline of 200 (calls recorded)."""
    calls: list[bool] = []

    @benchmark("test_repeat_counting", "a benchmark of the --repeat test")
    def counting(quick: bool) -> BenchResult:
        calls.append(quick)
        n = len(calls)
        return BenchResult(value=100.0 * n, unit="x/s", baseline=200.0, ratio=n / 2, params={"n": n})

    try:
        yield calls
    finally:
        REGISTRY.pop("test_repeat_counting", None)


def test_repeat_runs_each_benchmark_n_times_and_writes_the_median(counting_benchmark, tmp_path, capsys) -> None:
    out = tmp_path / "bench.json"
    assert main(["bench", "test_repeat_counting", "--repeat", "3", "--quick", "--json", str(out)]) == 0
    assert counting_benchmark == [True, True, True]
    result = json.loads(out.read_text())["test_repeat_counting"]
    assert (result["value"], result["ratio"], result["params"]["n"]) == (200.0, 1.0, 2)
    assert [run["value"] for run in result["params"]["runs"]] == [100.0, 200.0, 300.0]
    table = capsys.readouterr().out
    assert "100-300 (ratio 0.50-1.50)" in table


def test_repeat_below_one_is_refused(counting_benchmark, capsys) -> None:
    assert main(["bench", "test_repeat_counting", "--repeat", "0"]) == 2
    assert "--repeat must be at least 1" in capsys.readouterr().err
    assert counting_benchmark == []
