"""Rating kernel throughput, beside the per-record ``Decimal`` reference measured in the same run.

The workload is a month of mixed usage on the example catalog (``rating/catalog.example.yaml``):
home broadband data with monthly allowances, mobile voice split by time band with free minutes,
international calls priced by destination zone, SMS, data in monthly graduated tiers, and IoT
volume and package pricing, plus a few records from unknown accounts that must be refused. The
kernel rates columns (``rate_columns``) with a fresh allowance state per run; the baseline is the
reference loop over the same kind of records. Before timing anything the bench checks, on a
sample, that the kernel's rated records, refusals and allowance state equal the reference's.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from bench import BenchResult, benchmark
from models.records import UsageRecord
from rating import RatingState, load_catalog, rate_columns, rate_reference, rate_usage
from rating.catalog import EXAMPLE_CATALOG
from rating.columns import UsageColumns, to_columns

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


__all__ = ["bench_rating_kernel", "check_identical", "synthetic_usage"]
