"""Benchmarks: each measures one path beside a baseline taken in the same run, and returns a result.

A benchmark is a function registered by name with :func:`benchmark`; ``ossbss bench`` runs them,
prints a table and writes ``{"NAME": {"value", "unit", "baseline", "ratio", "params"}}`` as JSON.
``--repeat N`` runs each N times and reports the run of median ratio (:func:`median_run`), for
machines where one run swings by tens of percent.
Modules named ``bench/bench_*.py`` are discovered automatically.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class BenchResult:
    value: float
    unit: str
    baseline: float | None = None
    ratio: float | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def latency(cls, p99_s: float, target_s: float, params: dict[str, Any]) -> BenchResult:
        """A latency figure: p99 seconds, beside its target (ratio > 1 when under it)."""
        return cls(
            value=round(p99_s, 3),
            unit="s p99",
            baseline=target_s,
            ratio=round(target_s / p99_s, 2) if p99_s > 0 else None,
            params=params,
        )


def median_run(runs: list[BenchResult]) -> BenchResult:
    """Several runs of one benchmark as one result: the run whose ratio is the median (its value when
    a run has no ratio; the lower middle one of an even count), taken whole, since a value, its baseline
    and their ratio belong together; with two runs or more its params gain ``runs``, every run's figures."""
    if not runs:
        raise ValueError("no runs to take the median of")
    if all(run.ratio is not None for run in runs):
        ordered = sorted(runs, key=lambda run: run.ratio or 0.0)
    else:
        ordered = sorted(runs, key=lambda run: run.value)
    chosen = ordered[(len(ordered) - 1) // 2]
    params = dict(chosen.params)
    if len(runs) > 1:
        params["runs"] = [{"value": run.value, "baseline": run.baseline, "ratio": run.ratio} for run in runs]
    return BenchResult(chosen.value, chosen.unit, chosen.baseline, chosen.ratio, params)


BenchFn = Callable[[bool], BenchResult]  # called with quick=True for a short smoke run
REGISTRY: dict[str, tuple[BenchFn, str]] = {}


def benchmark(name: str, description: str) -> Callable[[BenchFn], BenchFn]:
    """Register ``fn(quick: bool) -> BenchResult`` under a stable ``name``."""

    def register(fn: BenchFn) -> BenchFn:
        if name in REGISTRY:
            raise ValueError(f"benchmark {name!r} registered twice")
        REGISTRY[name] = (fn, description)
        return fn

    return register


def discover() -> dict[str, tuple[BenchFn, str]]:
    """Import every ``bench/bench_*.py`` so their benchmarks register."""
    import bench

    for info in pkgutil.iter_modules(bench.__path__):
        if info.name.startswith("bench_"):
            importlib.import_module(f"bench.{info.name}")
    return REGISTRY


__all__ = ["REGISTRY", "BenchResult", "benchmark", "discover", "median_run"]
