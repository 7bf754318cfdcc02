"""Rating kernel throughput, beside the per-record ``Decimal`` reference measured in the same run.

The workload is a month of mixed usage on the example catalog (``rating/catalog.example.yaml``):
home broadband data with monthly allowances, mobile voice split by time band with free minutes,
international calls priced by destination zone, SMS, data in monthly graduated tiers, and IoT
volume and package pricing, plus a few records from unknown accounts that must be refused. The
kernel rates columns (``rate_columns``) with a fresh allowance state per run; the baseline is the
reference loop over the same kind of records. Before timing anything the bench checks, on a
sample, that the kernel's rated records, refusals and allowance state equal the reference's.

``rating_to_wire`` measures the rating agent's work per batch: usage records to the bytes it sends
on ``usage.rated``, through the columnar wire edge (:mod:`rating.wire`) against the object path it
replaced (``rate_usage`` and ``encode`` of each ``RatedUsage``), on the mixed month above and on the
stream benchmark's data usage with the default catalog; it first checks that both give the same bytes.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from bench import BenchResult, benchmark
from bench.bench_streams import data_usage
from models.codec import encode
from models.records import UsageRecord
from rating import RatingState, load_catalog, rate_columns, rate_reference, rate_usage
from rating.catalog import EXAMPLE_CATALOG
from rating.columns import UsageColumns, to_columns
from rating.wire import rate_usage_wire

MONTH_START_MS = 1_717_200_000_000  # 2024-06-01T00:00:00Z
MONTH_MS = 30 * 86_400_000
DESTINATIONS = np.array(
    ["+447700900123", "+442079460000", "+15555550100", "+33612345678", "+8613800138000"], dtype=object
)


def synthetic_usage(count: int, seed: int = 7, accounts: int = 30_000) -> dict[str, Any]:
    """A month of mixed usage as columns (object arrays for text, int64 for numbers)."""
    rng = np.random.default_rng(seed)
    account_number = rng.integers(0, accounts, count)
    kind = rng.choice(3, count, p=[0.5, 0.4, 0.1])  # home, mobile, iot
    prefix = np.array(["HOME-", "MOB-", "IOT-"], dtype=object)[kind]
    account = np.array(
        [f"{p}{n:06d}" for p, n in zip(prefix.tolist(), account_number.tolist(), strict=True)], dtype=object
    )
    unknown = rng.random(count) < 0.005
    account[unknown] = "NOPE-1"
    mobile_event = rng.choice(3, count, p=[0.5, 0.35, 0.15])  # data, voice, sms
    iot_event = rng.choice(2, count, p=[0.8, 0.2])  # data, sms
    event = np.where(kind == 0, 0, np.where(kind == 1, mobile_event, np.where(iot_event == 0, 0, 2)))
    event_type = np.array(["data", "voice", "sms"], dtype=object)[event]
    service = np.array(["internet", "national", "international"], dtype=object)[
        np.where(event == 1, 1 + (rng.random(count) < 0.2), 0)
    ]
    start = MONTH_START_MS + rng.integers(0, MONTH_MS, count)
    duration = np.where(event == 1, rng.integers(1, 1800, count), np.where(event == 2, 0, rng.integers(1, 3600, count)))
    is_data = event == 0
    return {
        "id": np.array([f"u{seed}-{i}" for i in range(count)], dtype=object),
        "account": account,
        "service": service,
        "event_type": event_type,
        "start_ms": start,
        "end_ms": start + duration * 1000,
        "duration_s": duration,
        "bytes_up": np.where(is_data, rng.integers(0, 20_000_000, count), 0),
        "bytes_down": np.where(is_data, rng.integers(0, 200_000_000, count), 0),
        "destination": DESTINATIONS[rng.integers(0, DESTINATIONS.shape[0], count)],
    }


def as_records(columns: UsageColumns, limit: int) -> list[UsageRecord]:
    return [columns.record(row) for row in range(min(limit, columns.size))]


def check_identical(records: list[UsageRecord], catalog: Any) -> None:
    """The kernel path must give exactly the reference's records, refusals and allowance state."""
    reference_state, kernel_state = RatingState(), RatingState()
    expected = rate_reference(records, catalog, state=reference_state)
    actual = rate_usage(records, catalog, state=kernel_state, engine="kernel")
    if expected.failures != actual.failures:
        raise AssertionError("kernel and reference refuse different records")
    for want, got in zip(expected.rated, actual.rated, strict=True):
        if want != got or str(want.amount) != str(got.amount):
            raise AssertionError(f"kernel differs from reference on {want.id}: {want} != {got}")
    if reference_state.snapshot() != kernel_state.snapshot():
        raise AssertionError("kernel and reference leave different allowance state")


@benchmark("rating_kernel", "vectorised rating of mixed usage on the example catalog vs the per-record Decimal loop")
def bench_rating_kernel(quick: bool) -> BenchResult:
    catalog = load_catalog(EXAMPLE_CATALOG)
    count = 100_000 if quick else 1_000_000
    sample = 3_000 if quick else 20_000
    columns = to_columns(synthetic_usage(count))
    check_identical(as_records(to_columns(synthetic_usage(sample, seed=11)), sample), catalog)

    records = as_records(columns, sample)
    started = time.perf_counter()
    rate_reference(records, catalog, state=RatingState())
    reference_rate = len(records) / (time.perf_counter() - started)

    rate_columns(columns.take(np.arange(min(count, 10_000))), catalog, state=RatingState())  # warm caches
    timings = []
    for _ in range(1 if quick else 3):
        state = RatingState()
        started = time.perf_counter()
        result = rate_columns(columns, catalog, state=state)
        timings.append(time.perf_counter() - started)
    kernel_rate = count / min(timings)
    return BenchResult(
        value=kernel_rate,
        unit="records/s",
        baseline=reference_rate,
        ratio=kernel_rate / reference_rate,
        params={
            "records": count,
            "reference_sample": len(records),
            "rated": int(result["rated"].sum()),
            "refused": int((~result["rated"]).sum()),
            "runs": len(timings),
            "best_s": round(min(timings), 3),
            "catalog": "rating/catalog.example.yaml",
            "checked_identical_on": sample,
        },
    )


def _rated_bytes_objects(records: list[UsageRecord], catalog: Any) -> tuple[list[bytes], list[bytes]]:
    """What the stream agent did before the wire edge: rated records, then encode each."""
    result = rate_usage(records, catalog, rated_at_ms=MONTH_START_MS, state=RatingState())
    return [rated.account.encode() for rated in result.rated], [encode(rated) for rated in result.rated]


def _rated_bytes_wire(records: list[UsageRecord], catalog: Any) -> tuple[list[bytes], list[bytes]]:
    result = rate_usage_wire(records, catalog, rated_at_ms=MONTH_START_MS, state=RatingState())
    return result.keys, result.values


def _records_per_second(batches: list[list[UsageRecord]], catalog: Any, runs: int) -> tuple[float, float]:
    """Best-of-``runs`` records/s of the object path and of the wire path, runs interleaved."""
    best = {"objects": float("inf"), "wire": float("inf")}
    paths = {"objects": _rated_bytes_objects, "wire": _rated_bytes_wire}
    for batch in batches[:1]:
        if paths["objects"](batch, catalog) != paths["wire"](batch, catalog):
            raise AssertionError("the wire edge's bytes differ from encode() of the rated records")
    for _ in range(runs):
        for name, path in paths.items():
            started = time.perf_counter()
            for batch in batches:
                path(batch, catalog)
            best[name] = min(best[name], time.perf_counter() - started)
    count = sum(len(batch) for batch in batches)
    return count / best["objects"], count / best["wire"]


@benchmark(
    "rating_to_wire",
    "usage records -> rated wire bytes, batches of 5000 as the rating agent: columnar edge vs RatedUsage + encode",
)
def bench_rating_to_wire(quick: bool) -> BenchResult:
    batch_size, batches = 5_000, 2 if quick else 10
    runs = 2 if quick else 5
    example = load_catalog(EXAMPLE_CATALOG)
    columns = to_columns(synthetic_usage(batch_size * batches, seed=13, accounts=5_000))
    mixed = as_records(columns, batch_size * batches)
    mixed_batches = [mixed[i : i + batch_size] for i in range(0, len(mixed), batch_size)]
    # The stream benchmark's workload: data on the default catalog (one per-GB plan, 6 decimals).
    default = load_catalog()
    data_batches = [
        data_usage("bench", range(first, first + batch_size), MONTH_START_MS + 60_000, 60)
        for first in range(0, batch_size * batches, batch_size)
    ]
    mixed_objects, mixed_wire = _records_per_second(mixed_batches, example, runs)
    data_objects, data_wire = _records_per_second(data_batches, default, runs)
    return BenchResult(
        value=mixed_wire,
        unit="records/s",
        baseline=mixed_objects,
        ratio=mixed_wire / mixed_objects,
        params={
            "batch": batch_size,
            "batches": batches,
            "runs": runs,
            "catalog": "rating/catalog.example.yaml (mixed usage)",
            "default_catalog_data_wire": round(data_wire),
            "default_catalog_data_objects": round(data_objects),
            "default_catalog_data_ratio": round(data_wire / data_objects, 2),
        },
    )


__all__ = ["bench_rating_kernel", "bench_rating_to_wire", "check_identical", "synthetic_usage"]
