"""Collector throughput: SNMP polling against real agents, and samples produced to Kafka.

``snmp_poll``: var-binds/s polled with GETBULK by the SNMP collector (native codec, v2c) from a local
net-snmp ``snmpd``, many targets in flight at once (the same agent polled as 64 devices, as a
collector polls a fleet). Baseline, same run, same agent: net-snmp's ``snmpbulkwalk`` walking
ifTable and ifXTable, run back to back (var-binds it printed / elapsed time). ``params`` also
carry the figures for SNMPv3 authPriv, the pysnmp backend, and both tools against ``snmpsimd``
(a 48-interface recorded device; there the Python simulator itself is the bottleneck).

``collect_produce``: TelemetrySample records/s encoded and produced to a local Kafka broker through
:class:`collectors.base.PublisherSink` (what collectors call: encode, key, produce, delivery report),
flushed. Baseline: raw confluent-kafka ``produce`` of the same, already encoded, bytes and keys with
the same producer settings and no Python delivery callback, flushed.
"""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import BenchResult, benchmark
from collectors.base import ListSink, PublisherSink, build_collector, parse_collector_config
from collectors.publish import RecordPublisher, producer_config
from collectors.snmp_sim import DeviceProfile, SnmpdAgent, SnmpsimAgent
from models.codec import encode
from models.records import TelemetrySample
from models.topics import Topic

AUTH, PRIV = "bench-auth-secret", "bench-priv-secret"
WALK_OIDS = ("1.3.6.1.2.1.2.2", "1.3.6.1.2.1.31.1.1")


def _poll_rate(targets: list[dict[str, Any]], rounds: int, **settings: Any) -> tuple[float, int]:
    """(var-binds/s, var-binds) of ``rounds`` concurrent polls of every target, after one warm-up poll."""
    section = {"type": "snmp", "spread_start": False, "timeout_s": 5, "retries": 1, "targets": targets, **settings}
    collector: Any = build_collector(parse_collector_config(section), ListSink())

    async def run() -> tuple[float, int]:
        await collector.collect_once()  # engine discovery, counter mode learning, sockets
        total = 0
        started = time.perf_counter()
        for _ in range(rounds):
            await collector.collect_once()
            total += sum(r.varbinds for r in collector.last_results.values())
        elapsed = time.perf_counter() - started
        await collector.close()
        if collector.last_errors:
            raise RuntimeError(f"polling failed: {collector.last_errors}")
        return total / elapsed, total

    return asyncio.run(run())


def _walk_rate(args: list[str], walks: int) -> tuple[float, int]:
    """(var-binds/s, var-binds) of ``walks`` back-to-back snmpbulkwalk runs over ifTable and ifXTable."""
    env = dict(os.environ, MIBS="", MIBDIRS="/nonexistent")
    total = 0
    started = time.perf_counter()
    for _ in range(walks):
        for oid in WALK_OIDS:
            out = subprocess.run(
                ["snmpbulkwalk", "-On", "-Cr25", *args, oid], env=env, capture_output=True, text=True, check=True
            ).stdout
            total += out.count("\n")
    return total / (time.perf_counter() - started), total


@benchmark("snmp_poll", "var-binds/s polled with GETBULK from local snmpd vs net-snmp snmpbulkwalk on the same agent")
def snmp_poll(quick: bool) -> BenchResult:
    for tool in ("snmpd", "snmpbulkwalk", "snmpsimd"):
        if not (shutil.which(tool) or Path(f"/usr/sbin/{tool}").exists()):
            raise RuntimeError(f"{tool} not found: apt-get install -y snmpd snmp snmpsim")
    rounds = 10 if quick else 60
    with tempfile.TemporaryDirectory(prefix="ossbss-bench-snmp-") as tmp:
        snmpd = SnmpdAgent(Path(tmp) / "snmpd", auth_key=AUTH, priv_key=PRIV).start()
        sim = SnmpsimAgent(Path(tmp) / "sim", devices=[DeviceProfile("bench48")], auth_key=AUTH, priv_key=PRIV)
        sim.start()
        os.environ["BENCH_SNMP_AUTH"], os.environ["BENCH_SNMP_PRIV"] = AUTH, PRIV
        try:
            fleet = [{"host": snmpd.host, "port": snmpd.port, "name": f"dev{i:03d}"} for i in range(64)]
            ours, polled = _poll_rate(fleet, rounds)
            v3 = [
                {
                    **t,
                    "version": "3",
                    "user": "ossbss",
                    "auth_proto": "SHA256",
                    "auth_key_env": "BENCH_SNMP_AUTH",
                    "priv_proto": "AES",
                    "priv_key_env": "BENCH_SNMP_PRIV",
                }
                for t in fleet
            ]
            ours_v3, _ = _poll_rate(v3, max(2, rounds // 2))
            ours_pysnmp, _ = _poll_rate(fleet[:16], max(2, rounds // 10), backend="pysnmp")
            walk, walked = _walk_rate(["-v2c", "-c", "public", snmpd.address], 20 if quick else 100)
            sim_target = [{"host": sim.host, "port": sim.port, "name": "bench48", "community": "bench48"}]
            ours_sim, _ = _poll_rate(sim_target, 3 if quick else 10)
            walk_sim, _ = _walk_rate(["-v2c", "-c", "bench48", sim.address], 3 if quick else 10)
        finally:
            sim.stop()
            snmpd.stop()
    return BenchResult(
        value=round(ours),
        unit="varbinds/s",
        baseline=round(walk),
        ratio=round(ours / walk, 2),
        params={
            "agent": "net-snmp snmpd 5.9 (4 interfaces), polled as 64 targets concurrently, SNMPv2c",
            "rounds": rounds,
            "varbinds_polled": polled,
            "baseline_varbinds": walked,
            "v3_authpriv_sha256_aes_varbinds_per_s": round(ours_v3),
            "pysnmp_backend_varbinds_per_s": round(ours_pysnmp),
            "snmpsim_48_interfaces_ours_varbinds_per_s": round(ours_sim),
            "snmpsim_48_interfaces_snmpbulkwalk_varbinds_per_s": round(walk_sim),
        },
    )


def _bench_samples(count: int, now_ms: int) -> list[TelemetrySample]:
    """A fleet's poll: devices x 48 interfaces, every counter filled."""
    out = []
    for i in range(count):
        device, if_index = f"bench-{i // 48:05d}", i % 48 + 1
        ts = now_ms + i // 48_000
        out.append(
            TelemetrySample(
                id=TelemetrySample.make_id(device, if_index, ts),
                device=device,
                if_index=if_index,
                ts_ms=ts,
                if_name=f"xe-0/0/{if_index - 1}",
                in_octets=i * 1500 + 2**40,
                out_octets=i * 900 + 2**39,
                in_ucast_pkts=i * 3,
                out_ucast_pkts=i * 2,
                in_nucast_pkts=i,
                out_nucast_pkts=i,
                in_errors=0,
                out_errors=0,
                in_discards=0,
                out_discards=0,
                speed_bps=10**10,
                oper_status=1,
                counter_bits=64,
                uptime_ticks=123456 + i,
                source="snmp",
            )
        )
    return out


def _produce_rates(
    bootstrap: str, samples: list[TelemetrySample], values: list[bytes], keys: list[bytes]
) -> tuple[float, float]:
    from confluent_kafka import Producer

    count = len(samples)
    warm = Producer(producer_config(bootstrap))  # metadata, topic creation and connections before timing
    for name in ("bench.collect.ours", "bench.collect.raw"):
        warm.produce(name, b"warm-up")
    warm.flush(60)

    sink = PublisherSink(RecordPublisher(bootstrap))
    topic = Topic("bench.collect.ours", "device", "bench")
    started = time.perf_counter()
    for i in range(0, count, 1000):  # collectors emit one poll (a batch) at a time
        sink.emit(topic, samples[i : i + 1000])
    sink.flush()
    ours = count / (time.perf_counter() - started)

    raw = Producer(producer_config(bootstrap))
    produce = raw.produce
    started = time.perf_counter()
    for value, key in zip(values, keys, strict=True):
        while True:
            try:
                produce("bench.collect.raw", value, key)
                break
            except BufferError:
                raw.poll(0.05)
    remaining = raw.flush(120)
    baseline = count / (time.perf_counter() - started)
    if remaining:
        raise RuntimeError(f"{remaining} raw messages not delivered")
    return ours, baseline


@benchmark("collect_produce", "TelemetrySample records/s encoded and produced to Kafka vs raw confluent-kafka produce")
def collect_produce(quick: bool) -> BenchResult:
    from ossbss.localstack.kafka import KafkaBroker

    count = 100_000 if quick else 400_000
    samples = _bench_samples(count, int(time.time() * 1000))
    values = [encode(s) for s in samples]  # the baseline's input: the same bytes, encoded untimed
    keys = [s.device.encode() for s in samples]
    with tempfile.TemporaryDirectory(prefix="ossbss-bench-kafka-") as tmp:
        broker = KafkaBroker(Path(tmp)).start()
        try:
            ours, baseline = _produce_rates(broker.bootstrap_servers, samples, values, keys)
        finally:
            gc.collect()  # producers gone before the broker, so librdkafka does not log the shutdown
            broker.stop()
    return BenchResult(
        value=round(ours),
        unit="records/s",
        baseline=round(baseline),
        ratio=round(ours / baseline, 2),
        params={"records": count, "bytes_per_record": round(sum(map(len, values)) / count), "batch": 1000},
    )


__all__ = ["collect_produce", "snmp_poll"]
