"""The gNMI subscriber against a third-party target: the fake gNMI server of the openconfig/gnmi Go module.

The test setup builds it with ``go install`` through the Go module proxy into the cache directory
(``var/cache/go``, never committed). It speaks gNMI over mutual TLS, sends paths as (old-style)
string elements with inline keys, typed ``int_val`` values, and ends the stream after its values.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator

import pytest
from collector_services import ensure_openconfig_fake_server

from collectors.base import ListSink, build_collector, parse_collector_config
from collectors.gnmi import GnmiCollector
from collectors.gnmi_sim import PkiFiles
from collectors.snmp_sim import free_udp_port
from models.records import TelemetrySample
from models.topics import TELEMETRY_SAMPLES
from ossbss.localstack.kafka import cache_dir, port_open

COUNTERS = ("in-octets", "out-octets", "in-unicast-pkts", "out-unicast-pkts", "in-errors", "out-errors")
ROUNDS = 5


def fake_config(t0_ns: int) -> str:
    """A text-format fake.Config: two interfaces, their counters growing, ifindex and oper-status."""
    values = []
    for index, name in ((1, "Ethernet1"), (2, "Ethernet2")):
        leaves: list[tuple[str, str]] = [
            ("state/ifindex", f"int_value: < value: {index} >"),
            ("state/oper-status", 'string_value: < value: "UP" >'),
        ]
        for n, counter in enumerate(COUNTERS):
            start = 1000 * (n + 1) * index
            growth = "range: < minimum: 0 maximum: 9000000000000000000 delta_min: 100 delta_max: 5000 >"
            leaves.append((f"state/counters/{counter}", f"int_value: < value: {start} {growth} >"))
        for leaf, value in leaves:
            elements = ["interfaces", f"interface[name={name}]", *leaf.split("/")]
            path = " ".join(f'path: "{e}"' for e in elements)
            values.append(
                f"values: < {path} timestamp: < timestamp: {t0_ns} delta_min: 1000000000 "
                f"delta_max: 1000000000 > repeat: {ROUNDS} {value} >"
            )
    return 'target: "fake-ocfg"\nclient_type: GRPC_GNMI\nseed: 7\n' + "\n".join(values) + "\n"


@pytest.fixture(scope="module")
def fake_target(pki: PkiFiles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = ensure_openconfig_fake_server(cache_dir())
    work = tmp_path_factory.mktemp("fake-gnmi")
    config = work / "config.pb.txt"
    config.write_text(fake_config(time.time_ns()))
    port = free_udp_port()
    cmd = [
        str(binary),
        "--config",
        str(config),
        "--text",
        "--port",
        str(port),
        "--server_crt",
        str(pki.server_cert),
        "--server_key",
        str(pki.server_key),
        "--ca_crt",
        str(pki.ca),
        "--logtostderr",
    ]
    with open(work / "fake.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while not port_open("127.0.0.1", port) and time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"fake_server exited: {(work / 'fake.log').read_text()[-2000:]}", pytrace=False)
        time.sleep(0.1)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


@pytest.mark.integration
def test_once_subscription_against_the_openconfig_fake_target(fake_target: str, pki: PkiFiles) -> None:
    section = {
        "type": "gnmi",
        "encoding": "proto",
        "targets": [
            {
                "address": fake_target,
                "name": "fake-1",
                "tls_ca": str(pki.ca),
                "tls_cert": str(pki.client_cert),
                "tls_key": str(pki.client_key),
            }
        ],
    }
    coll: GnmiCollector = build_collector(parse_collector_config(section), ListSink())  # type: ignore[assignment]
    asyncio.run(coll.collect_once())
    assert not coll.last_errors, coll.last_errors
    samples: list[TelemetrySample] = coll.sink.records(TELEMETRY_SAMPLES)  # type: ignore[attr-defined,assignment]
    per_if: dict[str, list[TelemetrySample]] = {}
    for s in samples:
        per_if.setdefault(s.if_name, []).append(s)
    assert set(per_if) == {"Ethernet1", "Ethernet2"}
    for name, series in per_if.items():
        # ONCE ends at the sync response, which this target sends after its first round of values
        assert len(series) == 1, [s.ts_ms for s in series]
        assert {s.if_index for s in series} == {int(name[-1])}  # from state/ifindex, not the CRC fallback
        assert all(s.oper_status == 1 and s.source == "gnmi" and s.device == "fake-1" for s in series)
        (sample,) = series
        assert sample.in_octets == 1000 * int(name[-1])  # the configured start value, every leaf assembled
        assert None not in (sample.out_octets, sample.in_ucast_pkts, sample.out_ucast_pkts, sample.out_errors)
    assert coll.stats.dead_letters == 0


@pytest.mark.integration
def test_fake_target_ending_its_stream_is_resubscribed(fake_target: str, pki: PkiFiles) -> None:
    section = {
        "type": "gnmi",
        "backoff_initial_s": 0.1,
        "backoff_max_s": 0.2,
        "targets": [
            {
                "address": fake_target,
                "tls_ca": str(pki.ca),
                "tls_cert": str(pki.client_cert),
                "tls_key": str(pki.client_key),
            }
        ],
    }
    coll: GnmiCollector = build_collector(parse_collector_config(section), ListSink())  # type: ignore[assignment]

    async def run() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(coll.run(stop))
        deadline = time.monotonic() + 15
        while coll.targets[0].connects < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        stop.set()
        await task

    asyncio.run(run())
    state = coll.targets[0]
    assert state.connects >= 3 and "ended the subscription" in state.last_error
    samples: list[TelemetrySample] = coll.sink.records(TELEMETRY_SAMPLES)  # type: ignore[attr-defined,assignment]
    first_stream = [s for s in samples if s.if_name == "Ethernet1"][:ROUNDS]
    assert len({s.ts_ms for s in first_stream}) == ROUNDS  # STREAM: every round assembled into its own sample
    assert [s.in_octets for s in first_stream] == sorted(s.in_octets for s in first_stream)
