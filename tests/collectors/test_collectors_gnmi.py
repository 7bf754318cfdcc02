"""The gNMI subscriber against our simulator (a real gRPC gNMI service): modes, TLS, faults, reconnects."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from pygnmi.spec.v080 import gnmi_pb2, gnmi_pb2_grpc

from collectors.base import ListSink, build_collector, parse_collector_config
from collectors.gnmi import GnmiCollector, InterfaceAssembler, notification_leaves
from collectors.gnmi_paths import parse_path, to_proto, typed
from collectors.gnmi_sim import GnmiSimulator, PkiFiles, SimDevice, TlsFiles
from collectors.snmp_sim import free_udp_port
from models.records import FaultEvent, TelemetrySample
from models.topics import DEAD_LETTERS, FAULT_EVENTS, TELEMETRY_SAMPLES

FAST_SUBS = [
    {"path": "/interfaces/interface/state/counters", "mode": "sample", "sample_interval_s": 0.3},
    {"path": "/interfaces/interface/state/oper-status", "mode": "on_change"},
    {"path": "/interfaces/interface/state/ifindex", "mode": "on_change"},
]


def make(target: dict[str, Any], **settings: Any) -> GnmiCollector:
    section = {"type": "gnmi", "subscriptions": FAST_SUBS, "targets": [target], **settings}
    return build_collector(parse_collector_config(section), ListSink())  # type: ignore[return-value]


def samples_of(coll: GnmiCollector) -> list[TelemetrySample]:
    return coll.sink.records(TELEMETRY_SAMPLES)  # type: ignore[attr-defined,no-any-return]


def events_of(coll: GnmiCollector) -> list[FaultEvent]:
    return coll.sink.records(FAULT_EVENTS)  # type: ignore[attr-defined,no-any-return]


async def run_while(coll: GnmiCollector, body: Any) -> None:
    """Run the collector while ``body`` (a coroutine function) does its thing."""
    stop = asyncio.Event()
    task = asyncio.create_task(coll.run(stop))
    try:
        await body()
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def gnmi_set(address: str, path: str, value: Any) -> None:
    """A gNMI Set from a plain grpc client (as an operator's tool would send it)."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = gnmi_pb2_grpc.gNMIStub(channel)
        update = gnmi_pb2.Update(path=to_proto(parse_path(path)), val=typed(value))
        await stub.Set(gnmi_pb2.SetRequest(update=[update]), timeout=5)


@pytest.mark.integration
def test_stream_sample_and_on_change_with_a_link_fault() -> None:
    async def scenario() -> GnmiCollector:
        device = SimDevice(interfaces=4, utilisation=0.5)
        sim = GnmiSimulator(device)
        port = await sim.start()
        coll = make({"address": f"127.0.0.1:{port}", "name": "leaf-1", "insecure": True})

        async def body() -> None:
            await wait_until(lambda: len(samples_of(coll)) >= 12)
            await gnmi_set(f"127.0.0.1:{port}", "/interfaces/interface[name=Ethernet3]/config/enabled", False)
            await wait_until(lambda: any(e.kind == "linkDown" for e in events_of(coll)))
            await wait_until(lambda: any(s.if_index == 3 and s.oper_status == 2 for s in samples_of(coll)))
            await gnmi_set(f"127.0.0.1:{port}", "/interfaces/interface[name=Ethernet3]/config/enabled", True)
            await wait_until(lambda: any(e.kind == "linkUp" for e in events_of(coll)))
            await wait_until(lambda: samples_of(coll)[-1].oper_status == 1)

        await run_while(coll, body)
        await sim.stop()
        return coll

    coll = asyncio.run(scenario())
    samples = samples_of(coll)
    per_if: dict[int, list[TelemetrySample]] = {}
    for s in samples:
        per_if.setdefault(s.if_index, []).append(s)
    assert set(per_if) == {1, 2, 3, 4}
    for series in per_if.values():  # counters only grow, one sample per notification timestamp
        assert [s.ts_ms for s in series] == sorted({s.ts_ms for s in series})
        assert all(b.in_octets >= a.in_octets for a, b in itertools.pairwise(series))
        assert all(s.source == "gnmi" and s.counter_bits == 64 and s.if_name.startswith("Ethernet") for s in series)
    assert per_if[1][-1].in_octets > per_if[1][0].in_octets  # traffic flowed at 50 % of 10 Gb/s
    down = next(e for e in events_of(coll) if e.kind == "linkDown")
    assert (down.device, down.if_index, down.varbinds["interface"], down.source) == ("leaf-1", 3, "Ethernet3", "gnmi")
    assert any(s.if_index == 3 and s.oper_status == 2 for s in samples)


@pytest.mark.integration
def test_once_over_mutual_tls(pki: PkiFiles) -> None:
    async def scenario() -> tuple[list[Any], GnmiCollector, GnmiCollector]:
        sim = GnmiSimulator(SimDevice(interfaces=6), tls=TlsFiles(pki.server_cert, pki.server_key, client_ca=pki.ca))
        port = await sim.start()
        target = {
            "address": f"localhost:{port}",
            "tls_ca": str(pki.ca),
            "tls_cert": str(pki.client_cert),
            "tls_key": str(pki.client_key),
        }
        coll = make(target)
        records = await coll.collect_once()
        no_client_cert = make({"address": f"localhost:{port}", "tls_ca": str(pki.ca)}, connect_timeout_s=2)
        await no_client_cert.collect_once()
        await sim.stop()
        return records, coll, no_client_cert

    records, coll, refused = asyncio.run(scenario())
    assert not coll.last_errors
    assert sorted(r.if_index for r in records) == [1, 2, 3, 4, 5, 6]  # type: ignore[attr-defined]
    assert refused.last_errors and not samples_of(refused)


@pytest.mark.integration
def test_tls_with_the_wrong_ca_is_refused(pki: PkiFiles, tmp_path: Path) -> None:
    from collectors.gnmi_sim import make_test_pki

    other = make_test_pki(tmp_path / "other")

    async def scenario() -> GnmiCollector:
        sim = GnmiSimulator(SimDevice(interfaces=2), tls=TlsFiles(pki.server_cert, pki.server_key))
        port = await sim.start()
        coll = make({"address": f"127.0.0.1:{port}", "tls_ca": str(other.ca)}, connect_timeout_s=2)
        await coll.collect_once()
        good = make({"address": f"127.0.0.1:{port}", "tls_ca": str(pki.ca)})
        assert len(await good.collect_once()) == 2
        await sim.stop()
        return coll

    coll = asyncio.run(scenario())
    assert coll.last_errors and samples_of(coll) == []


@pytest.mark.integration
def test_poll_mode_answers_each_poll() -> None:
    async def scenario() -> GnmiCollector:
        sim = GnmiSimulator(SimDevice(interfaces=3))
        port = await sim.start()
        coll = make({"address": f"127.0.0.1:{port}", "insecure": True, "mode": "poll", "poll_interval_s": 0.2})

        async def body() -> None:
            await wait_until(lambda: len({s.ts_ms for s in samples_of(coll)}) >= 4)

        await run_while(coll, body)
        await sim.stop()
        return coll

    coll = asyncio.run(scenario())
    rounds: dict[int, set[int]] = {}
    for s in samples_of(coll):
        rounds.setdefault(s.ts_ms, set()).add(s.if_index)
    assert len(rounds) >= 4 and all(ifs == {1, 2, 3} for ifs in rounds.values())
    assert coll.targets[0].connects == 1


def start_sim_process(port: int, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "collectors.gnmi_sim", "--port", str(port), "--interfaces", "2"]
    with open(log, "ab") as err:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, cwd=Path(__file__).parents[2])
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert json.loads(line)["listening"].endswith(f":{port}"), line
    return proc


@pytest.mark.integration
def test_killed_and_restarted_target_is_resubscribed(tmp_path: Path) -> None:
    port = free_udp_port()  # TCP port: a free UDP number is very likely free on TCP too; the sim fails loudly if not
    proc = start_sim_process(port, tmp_path / "sim.log")
    coll = make(
        {"address": f"127.0.0.1:{port}", "insecure": True},
        backoff_initial_s=0.2,
        backoff_max_s=1.0,
        connect_timeout_s=1.0,
    )
    procs = [proc]

    async def body() -> None:
        await wait_until(lambda: len(samples_of(coll)) >= 4)
        os.kill(procs[0].pid, signal.SIGKILL)  # the target dies without a goodbye
        procs[0].wait(5)
        await wait_until(lambda: coll.targets[0].reconnects >= 2)  # it keeps trying while the target is gone
        before = len(samples_of(coll))
        procs.append(await asyncio.to_thread(start_sim_process, port, tmp_path / "sim.log"))
        await wait_until(lambda: coll.targets[0].connects >= 2 and len(samples_of(coll)) >= before + 4, 20)

    try:
        asyncio.run(run_while(coll, body))
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(5)
            if p.stdout is not None:
                p.stdout.close()
    state = coll.targets[0]
    assert state.connects >= 2 and state.synced
    assert "UNAVAILABLE" in state.last_error or "ended" in state.last_error or "no response" in state.last_error


def test_assembler_handles_json_containers_single_leaves_and_garbage() -> None:
    asm = InterfaceAssembler("dev", window_s=0.0)
    container = gnmi_pb2.Notification(
        timestamp=1_700_000_000_000_000_000,
        prefix=to_proto(parse_path("/interfaces/interface[name=et-1]")),
        update=[
            gnmi_pb2.Update(
                path=to_proto(parse_path("state")),
                val=gnmi_pb2.TypedValue(
                    json_ietf_val=json.dumps(
                        {
                            "openconfig-interfaces:ifindex": 11,
                            "oper-status": "UP",
                            "counters": {
                                "in-octets": "18446744073709551615",
                                "out-octets": "5",
                                "in-multicast-pkts": "1",
                                "in-broadcast-pkts": "2",
                                "carrier-transitions": "3",
                            },
                        }
                    ).encode()
                ),
            )
        ],
    )
    samples, events = asm.add(container.timestamp, notification_leaves(container), 0.0)
    assert samples == [] and events == []
    (sample,) = asm.flush()
    assert (sample.if_index, sample.in_octets, sample.out_octets, sample.in_nucast_pkts) == (11, 2**64 - 1, 5, 3)
    assert sample.ts_ms == 1_700_000_000_000 and sample.oper_status == 1
    # one leaf per notification, two timestamps: the second closes the first sample
    path = parse_path("/interfaces/interface[name=et-2]/state/counters/in-octets")
    asm.add(10**18, [(path, 100)], 1.0)
    closed, _ = asm.add(10**18 + 10**9, [(path, 200)], 1.1)
    assert [s.in_octets for s in closed] == [100]
    _, events = asm.add(2 * 10**18, [(parse_path("/interfaces/interface[name=et-1]/state/oper-status"), "DOWN")], 2.0)
    assert [(e.kind, e.if_index) for e in events] == [("linkDown", 11)]
    asm.add(
        3 * 10**18, [(path, "lots"), (parse_path("/interfaces/interface[name=et-2]/state/oper-status"), "WOBBLY")], 3.0
    )
    assert [r for _, r in asm.rejected] == ["in-octets: not a counter: 'lots'", "unknown oper-status 'WOBBLY'"]


def test_garbage_notification_is_dead_lettered() -> None:
    coll = make({"address": "127.0.0.1:1", "insecure": True})
    note = gnmi_pb2.Notification(
        timestamp=1,
        prefix=to_proto(parse_path("/interfaces/interface[name=x]")),
        update=[
            gnmi_pb2.Update(path=to_proto(parse_path("state")), val=gnmi_pb2.TypedValue(json_ietf_val=b"{not json"))
        ],
    )
    coll._on_response(coll.targets[0], gnmi_pb2.SubscribeResponse(update=note))
    (letter,) = coll.sink.records(DEAD_LETTERS)  # type: ignore[attr-defined]
    assert "undecodable notification" in letter.reason and letter.stage == "gnmi"


def test_simulator_faults_move_the_counters() -> None:
    device = SimDevice(interfaces=3, utilisation=0.1, speeds=(1_000_000_000,))
    device.advance()

    def counters(name: str) -> dict[str, float]:
        return dict(device.interfaces[name].counters)

    device.inject("error_burst", "Ethernet1", duration_s=5, errors_per_s=1000)
    device.inject("saturation", "Ethernet2", duration_s=5)
    device.inject("link_down", "Ethernet3", duration_s=5)
    device.advance()
    before = {n: counters(n) for n in ("Ethernet1", "Ethernet2", "Ethernet3")}
    time.sleep(0.5)
    device.advance()
    after = {n: counters(n) for n in before}
    assert after["Ethernet1"]["in-errors"] - before["Ethernet1"]["in-errors"] >= 400  # ~1000/s for 0.5 s
    grown = after["Ethernet2"]["in-octets"] - before["Ethernet2"]["in-octets"]
    assert grown >= 0.9 * 1e9 / 8 * 0.5  # line rate while saturated
    assert after["Ethernet2"]["out-discards"] > before["Ethernet2"]["out-discards"]
    assert after["Ethernet3"]["in-octets"] == before["Ethernet3"]["in-octets"]  # a down link carries nothing
    leaves = dict(device.leaves())
    oper = parse_path("/interfaces/interface[name=Ethernet3]/state/oper-status")
    assert leaves[oper] == "DOWN"
    device.clear("Ethernet3")
    assert dict(device.leaves())[oper] == "UP"
    assert device.interfaces["Ethernet3"].carrier_transitions == 2


@pytest.mark.integration
def test_simulator_get_capabilities_and_fault_set() -> None:
    async def scenario() -> None:
        device = SimDevice(interfaces=2)
        sim = GnmiSimulator(device)
        port = await sim.start()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = gnmi_pb2_grpc.gNMIStub(channel)
            caps = await stub.Capabilities(gnmi_pb2.CapabilityRequest(), timeout=5)
            assert "openconfig-interfaces" in [m.name for m in caps.supported_models]
            path = parse_path("/interfaces/interface[name=Ethernet2]/state/counters")
            reply = await stub.Get(gnmi_pb2.GetRequest(path=[to_proto(path)]), timeout=5)
            (note,) = reply.notification
            leaves = dict(notification_leaves(note))
            assert leaves[parse_path("/interfaces/interface[name=Ethernet2]/state/counters/in-octets")] > 0
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.Get(gnmi_pb2.GetRequest(path=[to_proto(parse_path("/system/state"))]), timeout=5)
            assert info.value.code() == grpc.StatusCode.NOT_FOUND
        fault = {"kind": "error_burst", "interface": "Ethernet1", "duration_s": 30, "errors_per_s": 50}
        await gnmi_set(f"127.0.0.1:{port}", "/sim/fault", fault)
        assert [f.kind for f in device.interfaces["Ethernet1"].faults] == ["error_burst"]
        with pytest.raises(grpc.aio.AioRpcError):
            await gnmi_set(f"127.0.0.1:{port}", "/sim/fault", {"kind": "meteor", "interface": "Ethernet1"})
        await sim.stop()

    asyncio.run(scenario())
