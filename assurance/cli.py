"""``ossbss assurance``: train the fault-prediction model and score assurance on held-out scenarios.

    ossbss assurance train --scenarios 1200 --seed 0 --horizon-minutes 30
    ossbss assurance evaluate --seed 1000 --json var/assurance/evaluation.json

Exit codes: 0 done; 1 ``evaluate --check`` and a target was missed; 2 the command could not run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from assurance.capacity import CapacityScore, evaluate_capacity
from assurance.predict import (
    DEFAULT_MODEL_PATH,
    DEFAULT_TRAINING_INTERFACES,
    DEFAULT_VALIDATION_INTERFACES,
    FaultModel,
    FaultModelError,
    RiskTracker,
    evaluate_tracker,
)
from assurance.scenarios import (
    FAILURE_KINDS,
    MINUTE_MS,
    FaultScore,
    ScenarioSet,
    capacity_scenarios,
    generate_scenarios,
    score_predictions,
)

__all__ = ["register", "run_evaluate", "run_train"]

TARGETS = {"recall": 0.8, "precision": 0.7, "median_lead_min": 10.0, "anomaly_f1": 0.8}

ASSURANCE_EPILOG = """\
examples:
  ossbss assurance train                       train on 1200 simulated interfaces (seed 0), validate on seed 1
  ossbss assurance evaluate                    score the model on held-out scenarios (seed 1000)
  ossbss assurance evaluate --json out.json --check
"""

TRAIN_EPILOG = f"""\
The scenarios model the gNMI simulator's faults ({", ".join(FAILURE_KINDS)}) with leading indicators of
varying strength and lead (growing errors and discards, flaps, creeping utilisation, threshold traps),
sudden failures with none, and healthy interfaces with confusers (one-off error bursts, busy links,
single flaps, noisy optics). The threshold and re-emission interval are chosen on the validation
scenarios (seed + 1) for precision >= --min-precision plus a 0.05 margin.

examples:
  ossbss assurance train --scenarios 1200 --seed 0 --horizon-minutes 30
  ossbss assurance train --horizon-minutes 15 --output var/assurance/fault_model_15m.pkl
"""

EVALUATE_EPILOG = """\
Fault prediction is scored per interface by replaying the scenarios minute by minute through the
online RiskTracker: a failing interface is caught when a prediction comes between the horizon and one
minute before its failure; any other prediction (healthy interface, too early, too late) is a false
positive. Lead time = failure time - first prediction in that window.
Capacity: interfaces with a known linear trend of the daily 95th percentile; the forecaster sees
--observe-days days and its time to saturation is compared with the truth.
Anomaly detection: assurance.anomaly_eval.evaluate_anomalies(seed=--seed).

targets (TARGETS.md): recall >= 0.8 at precision >= 0.7, median lead >= 10 min; anomaly F1 >= 0.8.
"""


def register(subparsers: Any) -> None:
    from assurance.detect_cli import register as register_detect

    register_detect(subparsers)  # `ossbss detect`: the online detector over a CSV series
    parser = subparsers.add_parser(
        "assurance",
        help="train and evaluate fault prediction, capacity forecast and anomaly detection",
        description="Assurance models: train the fault-prediction model on simulator scenarios, and score "
        "fault prediction, capacity forecast and anomaly detection on held-out scenarios.",
        epilog=ASSURANCE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = parser.add_subparsers(dest="assurance_verb", metavar="SUBVERB")
    parser.set_defaults(func=lambda _args: _usage(parser))

    train = verbs.add_parser(
        "train",
        help="train the fault-prediction model on labelled simulator scenarios",
        description="Generate labelled failure scenarios, train the 'fails within the horizon' model, choose its "
        "alert threshold on validation scenarios, print the validation figures and save the model.",
        epilog=TRAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument(
        "--scenarios",
        type=_positive_int,
        default=DEFAULT_TRAINING_INTERFACES,
        metavar="N",
        help=f"training interfaces (default {DEFAULT_TRAINING_INTERFACES}; 30%% of them fail)",
    )
    train.add_argument(
        "--validation-scenarios",
        type=_positive_int,
        default=DEFAULT_VALIDATION_INTERFACES,
        metavar="N",
        help=f"validation interfaces, seed + 1 (default {DEFAULT_VALIDATION_INTERFACES})",
    )
    train.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    train.add_argument("--hours", type=float, default=6.0, help="hours of 1-minute windows per interface (default 6)")
    train.add_argument(
        "--horizon-minutes", type=_positive_int, default=30, help="predict failures this far ahead (default 30)"
    )
    train.add_argument(
        "--min-precision", type=float, default=0.7, help="precision the alert threshold must reach (default 0.7)"
    )
    train.add_argument(
        "--output",
        "-o",
        default=str(DEFAULT_MODEL_PATH),
        metavar="PATH",
        help=f"where to write the model (default {DEFAULT_MODEL_PATH}, the cache FaultModel.default() reads)",
    )
    train.set_defaults(func=run_train)

    evaluate = verbs.add_parser(
        "evaluate",
        help="score fault prediction, capacity forecast and anomaly detection on held-out scenarios",
        description="Load the fault model (or train the default one), replay held-out scenarios through the "
        "online tracker and print precision, recall and median lead time; score the capacity forecast and "
        "the anomaly detectors on held-out data too.",
        epilog=EVALUATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evaluate.add_argument(
        "--model", metavar="PATH", help=f"model file (default: {DEFAULT_MODEL_PATH}, trained and cached if missing)"
    )
    evaluate.add_argument(
        "--scenarios", type=_positive_int, default=600, metavar="N", help="held-out interfaces (default 600)"
    )
    evaluate.add_argument("--seed", type=int, default=1000, help="held-out seed (default 1000; training uses 0 and 1)")
    evaluate.add_argument("--hours", type=float, default=6.0, help="hours per interface (default 6)")
    evaluate.add_argument(
        "--capacity-interfaces", type=_positive_int, default=40, metavar="N", help="capacity scenarios (default 40)"
    )
    evaluate.add_argument("--capacity-days", type=_positive_int, default=21, help="days of capacity data (default 21)")
    evaluate.add_argument(
        "--observe-days", type=_positive_int, default=14, help="days the capacity forecaster sees (default 14)"
    )
    evaluate.add_argument("--skip-anomaly", action="store_true", help="do not run the anomaly-detection evaluation")
    evaluate.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    evaluate.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    evaluate.set_defaults(func=run_evaluate)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, not {value}")
    return value


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _minutes(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f} min"


def run_train(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout

    def say(message: str) -> None:
        print(f"  {message}", file=out, flush=True)

    started = time.perf_counter()
    try:
        print(
            f"generating {args.scenarios} training interfaces (seed {args.seed}) and "
            f"{args.validation_scenarios} validation interfaces (seed {args.seed + 1}), {args.hours:g} h each",
            file=out,
            flush=True,
        )
        training = generate_scenarios(args.scenarios, hours=args.hours, seed=args.seed)
        validation = generate_scenarios(args.validation_scenarios, hours=args.hours, seed=args.seed + 1)
        print(f"training (horizon {args.horizon_minutes} min)", file=out, flush=True)
        model = FaultModel.train(
            training,
            validation=validation,
            horizon_s=args.horizon_minutes * 60,
            min_precision=args.min_precision,
            progress=say,
        )
    except ValueError as exc:
        print(f"ossbss assurance train: {exc}", file=out)
        return 2
    v = model.validation
    print(
        f"validation: precision {v['precision']:.3f}, recall {v['recall']:.3f}, "
        f"median lead {_minutes(v['median_lead_s'])} ({v['caught']}/{v['failing']} failures caught, "
        f"{v['false_positives']} false positives); threshold {model.threshold:.2f}",
        file=out,
    )
    try:
        path = model.save(args.output)
    except OSError as exc:
        print(f"cannot write {args.output}: {exc}", file=out)
        return 2
    print(f"wrote {path} in {time.perf_counter() - started:.1f} s", file=out)
    return 0


def _by_kind(scenarios: ScenarioSet, made: list[tuple[str, int, int]], horizon_s: int) -> dict[str, FaultScore]:
    """Recall per failure kind (each kind's failing interfaces with the healthy ones)."""
    out = {}
    for kind in FAILURE_KINDS:
        indices = [i for i, s in enumerate(scenarios.scenarios) if s.failure_kind in (kind, None)]
        subset = scenarios.subset(indices)
        keys = {s.key for s in subset.scenarios}
        out[kind] = score_predictions(subset, [m for m in made if (m[0], m[1]) in keys], horizon_s)
    return out


def _anomaly_figures(seed: int) -> dict[str, Any] | None:
    try:
        from assurance.anomaly_eval import evaluate_anomalies
    except ModuleNotFoundError as exc:
        if exc.name and "assurance.anomaly_eval".startswith(exc.name):
            return None
        raise
    report = evaluate_anomalies(seed=seed)
    return {"precision": float(report.precision), "recall": float(report.recall), "f1": float(report.f1)}


def run_evaluate(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    if args.observe_days >= args.capacity_days:
        print("ossbss assurance evaluate: --observe-days must be below --capacity-days", file=out)
        return 2
    started = time.perf_counter()
    try:
        if args.model:
            model = FaultModel.load(args.model)
        else:
            model = FaultModel.default(progress=lambda m: print(f"  {m}", file=out, flush=True))
    except FaultModelError as exc:
        print(f"ossbss assurance evaluate: {exc}", file=out)
        return 2
    trained_seeds = {*model.trained_on.get("seeds", []), model.trained_on.get("validation_seed")}
    if args.seed in trained_seeds:
        print(f"warning: seed {args.seed} was used to train or validate this model: not held out", file=out)
    print(
        f"fault prediction: replaying {args.scenarios} held-out interfaces (seed {args.seed}, {args.hours:g} h) "
        f"through the tracker; horizon {model.horizon_s // 60} min, threshold {model.threshold:.2f}",
        file=out,
        flush=True,
    )
    try:
        scenarios = generate_scenarios(args.scenarios, hours=args.hours, seed=args.seed)
    except ValueError as exc:
        print(f"ossbss assurance evaluate: {exc}", file=out)
        return 2

    def tick(minute: int) -> None:
        if (minute + 1) % 120 == 0:
            print(f"  {minute + 1}/{scenarios.minutes} minutes", file=out, flush=True)

    replay_started = time.perf_counter()
    score, predictions = evaluate_tracker(RiskTracker(model), scenarios, on_minute=tick)
    replay_s = time.perf_counter() - replay_started
    made = [(p.device, p.if_index, p.window_start_ms + MINUTE_MS) for p in predictions]
    kinds = _by_kind(scenarios, made, model.horizon_s)
    sudden = sum(1 for s in scenarios.failing if s.precursor_strength == 0)

    print(
        f"capacity: {args.capacity_interfaces} interfaces, {args.observe_days} of {args.capacity_days} days seen",
        file=out,
        flush=True,
    )
    capacity_set = capacity_scenarios(args.capacity_interfaces, args.capacity_days, seed=args.seed)
    capacity = evaluate_capacity(capacity_set, args.observe_days)

    anomaly = None
    if not args.skip_anomaly:
        print(f"anomaly detection: evaluate_anomalies(seed={args.seed})", file=out, flush=True)
        anomaly = _anomaly_figures(args.seed)

    rows, met = _table_rows(score, capacity, anomaly, args.skip_anomaly)
    print(file=out)
    print(f"{'figure':<48} {'value':>16}  {'target':>8}  met", file=out)
    for name, value, target, ok in rows:
        print(f"{name:<48} {value:>16}  {target:>8}  {ok}".rstrip(), file=out)
    print(
        "recall by kind: "
        + ", ".join(f"{k} {s.caught}/{s.failing}" for k, s in kinds.items())
        + f"; {sudden} of {score.failing} failures had no precursor",
        file=out,
    )
    print(
        f"replay: {len(predictions)} predictions in {replay_s:.1f} s; total {time.perf_counter() - started:.1f} s",
        file=out,
    )
    if args.json:
        figures = {
            "fault_prediction": {
                **score.as_dict(),
                "horizon_s": model.horizon_s,
                "threshold": model.threshold,
                "reemit_minutes": model.reemit_minutes,
                "predictions": len(predictions),
                "sudden_failures": sudden,
                "recall_by_kind": {k: s.recall for k, s in kinds.items()},
                "validation": model.validation,
            },
            "capacity": capacity.as_dict(),
            "anomaly": anomaly,
            "targets": TARGETS,
            "targets_met": met,
            "params": {
                "scenarios": args.scenarios,
                "seed": args.seed,
                "hours": args.hours,
                "capacity_interfaces": args.capacity_interfaces,
                "capacity_days": args.capacity_days,
                "observe_days": args.observe_days,
            },
        }
        path = Path(args.json)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(figures, indent=2) + "\n")
        except OSError as exc:
            print(f"cannot write {path}: {exc}", file=out)
            return 2
        print(f"wrote {path}", file=out)
    return 1 if args.check and not met else 0


def _table_rows(
    score: FaultScore, capacity: CapacityScore, anomaly: dict[str, Any] | None, skipped: bool
) -> tuple[list[tuple[str, str, str, str]], bool]:
    def fmt(value: float | None, digits: int = 3) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    def verdict(value: float | None, target: float) -> str:
        return "-" if value is None else ("yes" if value >= target else "NO")

    lead_min = None if score.median_lead_s is None else score.median_lead_s / 60
    rows = [
        ("fault prediction precision", fmt(score.precision), ">= 0.7", verdict(score.precision, 0.7)),
        ("fault prediction recall", fmt(score.recall), ">= 0.8", verdict(score.recall, 0.8)),
        ("fault prediction median lead (min)", fmt(lead_min, 1), ">= 10", verdict(lead_min, 10.0)),
        (
            "  caught / failing, false positives (on healthy)",
            f"{score.caught}/{score.failing}, {score.false_positives} ({score.healthy_alerted})",
            "",
            "",
        ),
        ("capacity: median |error| of time to saturation", fmt(capacity.median_rel_error) + " rel", "", ""),
        ("capacity: median |error| (days)", fmt(capacity.median_abs_error_days, 2), "", ""),
        ("capacity: growing interfaces forecast", f"{capacity.forecast}/{capacity.growing}", "", ""),
        ("capacity: flat interfaces given a false trend", f"{capacity.false_trends}/{capacity.flat}", "", ""),
    ]
    met = score.precision >= 0.7 and score.recall >= 0.8 and lead_min is not None and lead_min >= 10
    if anomaly is not None:
        rows += [
            ("anomaly precision", fmt(anomaly["precision"]), "", ""),
            ("anomaly recall", fmt(anomaly["recall"]), "", ""),
            ("anomaly F1", fmt(anomaly["f1"]), ">= 0.8", verdict(anomaly["f1"], 0.8)),
        ]
        met = met and anomaly["f1"] >= 0.8
    elif not skipped:
        rows.append(("anomaly F1", "unavailable", ">= 0.8", "-"))
        met = False  # a target that could not be measured is not met
    return rows, met
