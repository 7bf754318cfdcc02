"""``ossbss assurance train`` and ``evaluate`` on small scenario sets."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from assurance.predict import FaultModel
from ossbss.cli import main


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("assurance") / "model.pkl"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(
            [
                "assurance",
                "train",
                "--scenarios",
                "240",
                "--validation-scenarios",
                "120",
                "--hours",
                "4",
                "--seed",
                "3",
                "--horizon-minutes",
                "20",
                "--output",
                str(path),
            ]
        )
    assert code == 0, printed.getvalue()
    return path, printed.getvalue()


@pytest.mark.parametrize("argv", [["assurance"], ["assurance", "train"], ["assurance", "evaluate"]])
def test_every_verb_has_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "usage: ossbss assurance" in text
    if argv[-1] == "train":
        assert "--horizon-minutes" in text and "--scenarios" in text and "--output" in text
    if argv[-1] == "evaluate":
        assert "--json" in text and "precision" in text


def test_assurance_without_a_subverb_prints_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["assurance"]) == 2
    assert "train" in capsys.readouterr().out


def test_train_prints_progress_and_validation_and_writes_the_model(trained: tuple[Path, str]) -> None:
    path, printed = trained
    assert "generating 240 training interfaces (seed 3) and 120 validation interfaces (seed 4)" in printed
    assert "fitted gradient boosting" in printed
    assert "validation: precision" in printed and "median lead" in printed
    model = FaultModel.load(path)
    assert model.horizon_s == 20 * 60
    assert model.trained_on["seeds"] == [3] and model.trained_on["validation_seed"] == 4
    assert f"threshold {model.threshold:.2f}" in printed


def test_evaluate_prints_the_table_and_writes_json(
    trained: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = trained
    out = tmp_path / "figures" / "eval.json"
    argv = [
        "assurance",
        "evaluate",
        "--model",
        str(path),
        "--scenarios",
        "90",
        "--hours",
        "4",
        "--seed",
        "1000",
        "--capacity-interfaces",
        "9",
        "--capacity-days",
        "8",
        "--observe-days",
        "6",
        "--skip-anomaly",  # the anomaly evaluation is the detectors' own, and takes seconds
        "--json",
        str(out),
        "--check",
    ]
    code = main(argv)
    printed = capsys.readouterr().out
    figures = json.loads(out.read_text())
    fault = figures["fault_prediction"]
    assert code == (0 if figures["targets_met"] else 1)
    assert fault["horizon_s"] == 1200 and fault["failing"] == 27 and fault["healthy"] == 63
    assert 0.0 <= fault["precision"] <= 1.0 and 0.0 <= fault["recall"] <= 1.0
    assert fault["caught"] + fault["missed"] == 27
    assert set(fault["recall_by_kind"]) == {"link_down", "error_burst", "saturation"}
    assert figures["capacity"]["growing"] == 6 and figures["capacity"]["flat"] == 3
    assert figures["anomaly"] is None and figures["params"]["seed"] == 1000
    for label in ("fault prediction precision", "fault prediction recall", "median lead", "capacity: median"):
        assert label in printed
    assert f"{fault['precision']:.3f}" in printed and f"{fault['recall']:.3f}" in printed
    assert "anomaly F1" not in printed


def test_evaluate_warns_when_the_seed_is_not_held_out(
    trained: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = trained
    argv = ["assurance", "evaluate", "--model", str(path), "--scenarios", "16", "--hours", "3", "--seed", "4"]
    main([*argv, "--capacity-interfaces", "3", "--capacity-days", "5", "--observe-days", "4", "--skip-anomaly"])
    assert "seed 4 was used to train or validate this model: not held out" in capsys.readouterr().out


def test_evaluate_refuses_a_missing_model_or_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["assurance", "evaluate", "--model", str(tmp_path / "none.pkl")]) == 2
    assert "no such model file" in capsys.readouterr().out
    assert main(["assurance", "evaluate", "--observe-days", "30", "--capacity-days", "21"]) == 2
    assert "--observe-days must be below --capacity-days" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["assurance", "train", "--scenarios", "0"])
