"""In-process simulators for the local run and tests: interface counters of many devices, and usage.

The device simulator advances each interface's octet counters at an exact configured bit rate,
so the rates computed downstream can be checked against what was configured. The usage generator
emits usage records for known accounts and, every ``bad_every`` records, a deliberately bad one
(malformed JSON, a missing field, negative bytes, end before start, an unknown account), so the
dead-letter path is exercised on every run.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

from models.codec import encode
from models.records import TelemetrySample, UsageRecord

COUNTER32 = 2**32


@dataclass
class DeviceSimulator:
    """``devices`` x ``interfaces`` interfaces whose counters grow at ``in_bps``/``out_bps`` from ``start_ms``."""

    devices: int
    interfaces: int
    in_bps: int
    out_bps: int
    speed_bps: int
    start_ms: int
    counter_bits: int = 64
    # 32-bit counters start close to the top so a short run shows a wrap.
    counter_offset: int = 0
    device_prefix: str = "sim-router"

    def device_name(self, d: int) -> str:
        return f"{self.device_prefix}-{d:04d}"

    def _octets(self, bps: int, elapsed_ms: int) -> int:
        value = self.counter_offset + bps * elapsed_ms // 8000
        return value % COUNTER32 if self.counter_bits == 32 else value

    def poll(self, ts_ms: int) -> list[TelemetrySample]:
        """One poll of every interface at ``ts_ms``."""
        elapsed = max(ts_ms - self.start_ms, 0)
        uptime = elapsed // 10 + 100
        in_oct = self._octets(self.in_bps, elapsed)
        out_oct = self._octets(self.out_bps, elapsed)
        samples = []
        for d in range(self.devices):
            device = self.device_name(d)
            for i in range(1, self.interfaces + 1):
                samples.append(
                    TelemetrySample(
                        id=TelemetrySample.make_id(device, i, ts_ms),
                        device=device,
                        if_index=i,
                        if_name=f"ge-0/0/{i - 1}",
                        ts_ms=ts_ms,
                        in_octets=in_oct,
                        out_octets=out_oct,
                        in_ucast_pkts=in_oct // 1000,
                        out_ucast_pkts=out_oct // 1000,
                        in_errors=0,
                        out_errors=0,
                        in_discards=0,
                        out_discards=0,
                        speed_bps=self.speed_bps,
                        oper_status=1,
                        counter_bits=self.counter_bits,  # type: ignore[arg-type]
                        uptime_ticks=uptime,
                        source="sim",
                    )
                )
        return samples


BAD_KINDS = ("malformed-json", "missing-field", "negative-bytes", "end-before-start", "unknown-account")


@dataclass
class GeneratedUsage:
    key: bytes
    value: bytes
    valid: bool  # False for the deliberately bad ones: they must end up as dead letters
    kind: str = "ok"


class UsageGenerator:
    """Deterministic usage records (seeded), ids unique per ``run_id``."""

    def __init__(self, accounts: int, bad_every: int, seed: int, run_id: str) -> None:
        self.accounts = accounts
        self.bad_every = bad_every
        self.rng = random.Random(seed)
        self.run_id = run_id
        self.seq = 0

    def account(self, n: int) -> str:
        return f"ACC-{n:05d}"

    def generate(self, count: int, now_ms: int) -> Iterator[GeneratedUsage]:
        for _ in range(count):
            self.seq += 1
            rid = f"{self.run_id}-{self.seq:09d}"
            account = self.account(self.rng.randrange(self.accounts))
            start = now_ms - self.rng.randrange(1_000, 300_000)
            up = self.rng.randrange(0, 50_000_000)
            down = self.rng.randrange(0, 500_000_000)
            if self.bad_every and self.seq % self.bad_every == 0:
                kind = BAD_KINDS[(self.seq // self.bad_every) % len(BAD_KINDS)]
                yield GeneratedUsage(account.encode(), self._bad(kind, rid, account, start, now_ms), False, kind)
                continue
            record = UsageRecord(
                id=rid,
                account=account,
                service="data",
                start_ms=start,
                end_ms=now_ms,
                bytes_up=up,
                bytes_down=down,
                duration_s=(now_ms - start) // 1000,
                event_type="data",
                source="usage-sim",
            )
            yield GeneratedUsage(account.encode(), encode(record), True)

    @staticmethod
    def _bad(kind: str, rid: str, account: str, start: int, end: int) -> bytes:
        if kind == "malformed-json":
            return b'{"id": "' + rid.encode() + b'", "account": '
        if kind == "missing-field":
            return f'{{"id": "{rid}", "service": "data", "start_ms": {start}, "end_ms": {end}}}'.encode()
        if kind == "negative-bytes":
            return (
                f'{{"id": "{rid}", "account": "{account}", "service": "data", "start_ms": {start}, '
                f'"end_ms": {end}, "bytes_up": -5, "bytes_down": 10}}'
            ).encode()
        if kind == "end-before-start":
            return (
                f'{{"id": "{rid}", "account": "{account}", "service": "data", "start_ms": {end}, '
                f'"end_ms": {start}, "bytes_up": 5, "bytes_down": 10}}'
            ).encode()
        return (
            f'{{"id": "{rid}", "account": "UNKNOWN-{rid[-4:]}", "service": "data", "start_ms": {start}, '
            f'"end_ms": {end}, "bytes_up": 5, "bytes_down": 10}}'
        ).encode()
