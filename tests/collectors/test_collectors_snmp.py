"""The SNMP poller against real agents: net-snmp snmpd and snmpsimd, compared with snmpbulkwalk."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

import pytest
from collector_services import snmpbulkwalk

from collectors.base import ListSink, build_collector, parse_collector_config
from collectors.snmp import IF_TABLE, IF_X_TABLE, SnmpCollector, samples_from_rows
from collectors.snmp_sim import SnmpdAgent, SnmpsimAgent, device_records
from collectors.snmp_wire import oid_content
from models.records import TelemetrySample
from models.topics import DEAD_LETTERS

V3_WALK = [
    "-v3",
    "-l",
    "authPriv",
    "-u",
    "ossbss",
    "-a",
    "SHA-256",
    "-A",
    "ossbss-auth-secret",
    "-x",
    "AES",
    "-X",
    "ossbss-priv-secret",
]


def collector(targets: list[dict[str, Any]], **settings: Any) -> SnmpCollector:
    section = {"type": "snmp", "spread_start": False, "timeout_s": 3, "retries": 1, "targets": targets, **settings}
    return build_collector(parse_collector_config(section), ListSink())  # type: ignore[return-value]


def poll(targets: list[dict[str, Any]], **settings: Any) -> tuple[SnmpCollector, list[TelemetrySample]]:
    coll = collector(targets, **settings)

    async def once() -> list[Any]:
        try:
            return await coll.collect_once()
        finally:
            await coll.close()

    return coll, asyncio.run(once())


def walk_column(walk: dict[str, tuple[str, str]], column: str) -> dict[int, str]:
    prefix = column + "."
    return {int(oid[len(prefix) :]): value for oid, (_, value) in walk.items() if oid.startswith(prefix)}


@pytest.mark.integration
@pytest.mark.parametrize("version", ["2c", "3"])
def test_snmpd_counters_match_snmpbulkwalk(snmpd: SnmpdAgent, version: str, v3_env: dict[str, str]) -> None:
    if version == "3":
        target = {
            "host": snmpd.host,
            "port": snmpd.port,
            "version": "3",
            "user": "ossbss",
            "auth_proto": "SHA256",
            "priv_proto": "AES",
            **v3_env,
        }
        walk_args = [*V3_WALK, snmpd.address]
    else:
        target = {"host": snmpd.host, "port": snmpd.port, "community": "public"}
        walk_args = ["-v2c", "-c", "public", snmpd.address]
    before = snmpbulkwalk(walk_args, IF_X_TABLE)
    coll, samples = poll([target])
    after = snmpbulkwalk(walk_args, IF_X_TABLE)
    assert not coll.last_errors
    names = snmpbulkwalk(walk_args, f"{IF_X_TABLE}.1")
    assert {s.if_index: s.if_name for s in samples} == walk_column(names, f"{IF_X_TABLE}.1")
    oper = walk_column(snmpbulkwalk(walk_args, f"{IF_TABLE}.8"), f"{IF_TABLE}.8")
    assert {s.if_index: s.oper_status for s in samples} == {i: int(v) for i, v in oper.items()}
    # the agent's counters move (our own traffic on lo): ours must lie between the two walks
    for column, attr in ((6, "in_octets"), (10, "out_octets"), (7, "in_ucast_pkts"), (11, "out_ucast_pkts")):
        low = walk_column(before, f"{IF_X_TABLE}.{column}")
        high = walk_column(after, f"{IF_X_TABLE}.{column}")
        for sample in samples:
            value = getattr(sample, attr)
            assert int(low[sample.if_index]) <= value <= int(high[sample.if_index]), (attr, sample.if_index)
    for sample in samples:
        assert sample.counter_bits == 64 and sample.source == "snmp"
        assert sample.uptime_ticks is not None and sample.uptime_ticks > 0
        assert sample.id == TelemetrySample.make_id(sample.device, sample.if_index, sample.ts_ms)


@pytest.mark.integration
@pytest.mark.parametrize("version", ["2c", "3"])
def test_snmpsim_devices_match_recordings_and_snmpbulkwalk(
    snmpsim: SnmpsimAgent, version: str, v3_env: dict[str, str]
) -> None:
    targets = snmpsim.targets_config(version, v3_env["auth_key_env"], v3_env["priv_key_env"])
    coll, samples = poll(targets)
    assert not coll.last_errors
    by_device: dict[str, dict[int, TelemetrySample]] = {}
    for s in samples:
        by_device.setdefault(s.device, {})[s.if_index] = s
    assert set(by_device) == set(snmpsim.names)
    for profile in snmpsim.devices:
        got = by_device[profile.name]
        assert len(got) == profile.interfaces
        recorded = {oid: value for oid, _, value in device_records(profile)}
        for if_index, sample in got.items():
            if profile.hc:
                assert sample.counter_bits == 64
                assert sample.in_octets == int(recorded[f"{IF_X_TABLE}.6.{if_index}"])
                assert sample.out_octets == int(recorded[f"{IF_X_TABLE}.10.{if_index}"])
                nucast = int(recorded[f"{IF_X_TABLE}.8.{if_index}"]) + int(recorded[f"{IF_X_TABLE}.9.{if_index}"])
                assert sample.in_nucast_pkts == nucast
            else:  # no ifXTable HC columns: the 32-bit ifTable counters, flagged as such
                assert sample.counter_bits == 32
                assert sample.in_octets == int(recorded[f"{IF_TABLE}.10.{if_index}"])
                assert sample.in_nucast_pkts == int(recorded[f"{IF_TABLE}.12.{if_index}"])
            assert sample.in_errors == int(recorded[f"{IF_TABLE}.14.{if_index}"])
            assert sample.out_discards == int(recorded[f"{IF_TABLE}.19.{if_index}"])
            assert sample.if_name == recorded[f"{IF_X_TABLE}.1.{if_index}"]
            assert sample.oper_status == int(recorded[f"{IF_TABLE}.8.{if_index}"])
            high = int(recorded[f"{IF_X_TABLE}.15.{if_index}"])
            assert sample.speed_bps == (high * 1_000_000 if high > 4294 else int(recorded[f"{IF_TABLE}.5.{if_index}"]))
            assert sample.uptime_ticks == 8_640_000
    # and the same numbers as net-snmp's own walk of the same agent
    community = snmpsim.names[0]
    args = (
        ["-v2c", "-c", community, snmpsim.address] if version == "2c" else [*V3_WALK, "-n", community, snmpsim.address]
    )
    walked = walk_column(snmpbulkwalk(args, f"{IF_X_TABLE}.6"), f"{IF_X_TABLE}.6")
    assert {i: s.in_octets for i, s in by_device[community].items()} == {i: int(v) for i, v in walked.items()}


@pytest.mark.integration
@pytest.mark.parametrize("backend", ["native", "pysnmp"])
def test_v3_no_auth_and_auth_only_levels(snmpd: SnmpdAgent, v3_env: dict[str, str], backend: str) -> None:
    base = {"host": snmpd.host, "port": snmpd.port, "version": "3"}
    targets = [
        {**base, "name": "noauth", "user": "plainuser"},
        {
            **base,
            "name": "authonly",
            "user": "authonly",
            "auth_proto": "SHA512",
            "auth_key_env": v3_env["auth_key_env"],
        },
        {**base, "name": "authpriv", "user": "ossbss", "auth_proto": "SHA256", "priv_proto": "AES", **v3_env},
    ]
    coll, samples = poll(targets, backend=backend)
    assert not coll.last_errors
    by_device: dict[str, set[int]] = {}
    for s in samples:
        by_device.setdefault(s.device, set()).add(s.if_index)
    assert by_device["noauth"] == by_device["authonly"] == by_device["authpriv"] and by_device["noauth"]


@pytest.mark.integration
def test_pysnmp_backend_gives_the_same_samples(snmpsim: SnmpsimAgent, v3_env: dict[str, str]) -> None:
    targets = snmpsim.targets_config("3", v3_env["auth_key_env"], v3_env["priv_key_env"])[:2]
    _, native = poll(targets)
    coll, via_pysnmp = poll(targets, backend="pysnmp")
    assert not coll.last_errors

    def strip(samples: list[TelemetrySample]) -> list[tuple[Any, ...]]:
        return sorted((s.device, s.if_index, s.in_octets, s.out_octets, s.if_name, s.speed_bps) for s in samples)

    assert strip(native) == strip(via_pysnmp) and native


@pytest.mark.integration
def test_counters_mode_learns_what_the_agent_has(snmpsim: SnmpsimAgent) -> None:
    coll = collector(snmpsim.targets_config("2c"))

    async def twice() -> list[str]:
        await coll.collect_once()
        await coll.collect_once()
        await coll.close()
        return [t.mode for t in coll.targets]

    modes = dict(zip(snmpsim.names, asyncio.run(twice()), strict=True))
    assert modes == {"sw01": "hc", "sw02": "hc", "sw03": "hc", "legacy": "c32"}
    assert all(r.samples for r in coll.last_results.values())


@pytest.mark.integration
def test_wrong_v3_key_fails_that_target_only(
    snmpd: SnmpdAgent, v3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WRONG_AUTH", "not-the-auth-key")
    good = {
        "host": snmpd.host,
        "port": snmpd.port,
        "name": "good",
        "version": "3",
        "user": "ossbss",
        "auth_proto": "SHA256",
        "priv_proto": "AES",
        **v3_env,
    }
    bad = {**good, "name": "bad", "auth_key_env": "WRONG_AUTH"}
    unknown = {**good, "name": "nouser", "user": "nobody-here"}
    coll, samples = poll([good, bad, unknown])
    assert {s.device for s in samples} == {"good"}
    assert "wrong digest" in coll.last_errors["bad"]
    assert "unknown user" in coll.last_errors["nouser"]
    assert "not-the-auth-key" not in repr(coll.targets) + str(coll.last_errors)  # secrets never shown


class SilentAgent:
    """A UDP socket that never answers (a dead agent), or answers garbage."""

    def __init__(self, garbage: bool = False) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.garbage = garbage
        self.requests = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                _, addr = self.sock.recvfrom(65535)
            except OSError:
                continue
            self.requests += 1
            if self.garbage:
                self.sock.sendto(b"\x30\x10this is not snmp", addr)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.mark.integration
def test_dead_agent_never_delays_the_others(snmpsim: SnmpsimAgent) -> None:
    dead = SilentAgent()
    try:
        live = snmpsim.targets_config("2c")[0]
        targets = [live, {"host": "127.0.0.1", "port": dead.port, "name": "dead", "timeout_s": 2.0, "retries": 1}]
        coll = collector(targets, interval_s=0.25, backoff_max_s=30)

        async def run_for(seconds: float) -> None:
            stop = asyncio.Event()
            task = asyncio.create_task(coll.run(stop))
            await asyncio.sleep(seconds)
            stop.set()
            await task

        asyncio.run(run_for(2.0))
        live_state, dead_state = coll.targets
        # the dead target's first poll alone lasts 4 s (2 attempts x 2 s); the live one kept its schedule
        assert live_state.polls >= 4
        assert dead_state.polls == 0 and dead.requests >= 1
        assert coll.stats.records >= 4 * 48
    finally:
        dead.close()


@pytest.mark.integration
def test_garbage_answers_are_dead_lettered(snmpsim: SnmpsimAgent) -> None:
    liar = SilentAgent(garbage=True)
    try:
        coll, samples = poll([{"host": "127.0.0.1", "port": liar.port, "name": "liar", "timeout_s": 0.3, "retries": 1}])
        assert samples == [] and "no response" in coll.last_errors["liar"]
        letters = coll.sink.records(DEAD_LETTERS)  # type: ignore[attr-defined]
        assert len(letters) == 2 and all("malformed SNMP response" in d.reason for d in letters)
        assert all(d.stage == "snmp-poll" and "this is not snmp" in d.payload for d in letters)
    finally:
        liar.close()


@pytest.mark.integration
def test_v3_session_survives_agent_restart(tmp_path: Any, snmp_tools: None, v3_env: dict[str, str]) -> None:
    agent = SnmpdAgent(tmp_path / "snmpd", auth_key="ossbss-auth-secret", priv_key="ossbss-priv-secret").start()
    try:
        target = {
            "host": agent.host,
            "port": agent.port,
            "version": "3",
            "user": "ossbss",
            "auth_proto": "SHA256",
            "priv_proto": "AES",
            **v3_env,
        }
        coll = collector([target])

        async def around_restart() -> tuple[list[Any], list[Any], int, int]:
            first = await coll.collect_once()
            boots = coll.targets[0].session.engine.boots  # type: ignore[union-attr]
            await asyncio.to_thread(agent.restart)
            second = await coll.collect_once()
            boots_after = coll.targets[0].session.engine.boots  # type: ignore[union-attr]
            await coll.close()
            return first, second, boots, boots_after

        first, second, boots, boots_after = asyncio.run(around_restart())
        assert first and second and not coll.last_errors
        assert boots_after == boots + 1  # the engine rebooted: we re-synchronised its boots and time
        assert second[0].uptime_ticks < first[0].uptime_ticks + 500  # uptime restarted
    finally:
        agent.stop()


def test_rows_to_samples_speed_and_bad_values() -> None:
    def suffix(i: int) -> bytes:
        return oid_content(f"1.3.{i}")[1:]

    rows = {
        suffix(1): {
            "ifHCInOctets": 5,
            "ifHCOutOctets": 6,
            "ifSpeed": 4294967295,
            "ifHighSpeed": 100000,
            "ifName": b"et-0/0/0",
        },
        suffix(2): {"ifInOctets": 7, "ifOutOctets": 8, "ifSpeed": 1544000, "ifHighSpeed": 2, "ifDescr": b"T1"},
        suffix(3): {"ifHCInOctets": b"oops", "ifOperStatus": 1},
        suffix(4): {"ifInOctets": 1, "ifOperStatus": 42},
    }
    samples, rejected = samples_from_rows("dev", 1_700_000_000_000, rows, 100)
    by_index = {s.if_index: s for s in samples}
    assert by_index[1].speed_bps == 100_000_000_000 and by_index[1].counter_bits == 64
    assert by_index[2].speed_bps == 1_544_000 and by_index[2].counter_bits == 32 and by_index[2].if_name == "T1"
    assert by_index[4].oper_status is None
    assert [(i, r.split(":")[0]) for i, r, _ in rejected] == [(3, "ifHCInOctets is not a counter")]
