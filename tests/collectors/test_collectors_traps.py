"""The trap receiver with net-snmp's snmptrap/snmpinform as senders: v1, v2c, v3, informs, garbage."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from collector_services import snmp_env

from collectors.base import ListSink, build_collector, parse_collector_config
from collectors.traps import TrapCollector, encode_test_trap
from models.records import DeadLetter, FaultEvent
from models.topics import DEAD_LETTERS, FAULT_EVENTS

V3 = [
    "-u",
    "trapuser",
    "-l",
    "authPriv",
    "-a",
    "SHA-256",
    "-A",
    "trap-auth-secret",
    "-x",
    "AES",
    "-X",
    "trap-priv-secret",
]
LINK_DOWN = "1.3.6.1.6.3.1.1.5.3"
LINK_UP = "1.3.6.1.6.3.1.1.5.4"


class Receiver:
    """A trap collector listening on a free loopback port in a background event loop."""

    def __init__(self, **settings: Any) -> None:
        section = {
            "type": "snmp_traps",
            "host": "127.0.0.1",
            "port": 0,
            "communities": ["public"],
            "devices": {"127.0.0.1": "lab-router"},
            "users": [
                {
                    "user": "trapuser",
                    "auth_proto": "SHA256",
                    "auth_key_env": "TRAP_AUTH",
                    "priv_proto": "AES",
                    "priv_key_env": "TRAP_PRIV",
                }
            ],
            **settings,
        }
        self.sink = ListSink()
        self.collector: TrapCollector = build_collector(parse_collector_config(section), self.sink)  # type: ignore[assignment]
        self.loop = asyncio.new_event_loop()
        self.host, self.port = self.loop.run_until_complete(self.collector.start())
        import threading

        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def events(self) -> list[FaultEvent]:
        return self.sink.records(FAULT_EVENTS)  # type: ignore[return-value]

    def letters(self) -> list[DeadLetter]:
        return self.sink.records(DEAD_LETTERS)  # type: ignore[return-value]

    def wait_for(self, count: int, what: str = "events", timeout: float = 5.0) -> None:
        import time

        deadline = time.monotonic() + timeout
        while len(getattr(self, what)()) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(getattr(self, what)()) >= count, f"{what}: {getattr(self, what)()}"

    def close(self) -> None:
        async def shut() -> None:
            self.collector.close()
            await asyncio.sleep(0)  # the transport's close callback runs before the loop stops

        asyncio.run_coroutine_threadsafe(shut(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def receiver(snmp_tools: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    monkeypatch.setenv("TRAP_AUTH", "trap-auth-secret")
    monkeypatch.setenv("TRAP_PRIV", "trap-priv-secret")
    rx = Receiver()
    yield rx
    rx.close()


def send(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), env=snmp_env(), capture_output=True, text=True, timeout=30)


@pytest.mark.integration
def test_v2c_link_down_becomes_a_fault_event(receiver: Receiver) -> None:
    proc = send(
        "snmptrap",
        "-v",
        "2c",
        "-c",
        "public",
        receiver.address,
        "",
        LINK_DOWN,
        "1.3.6.1.2.1.2.2.1.1.7",
        "i",
        "7",
        "1.3.6.1.2.1.2.2.1.8.7",
        "i",
        "2",
        "1.3.6.1.2.1.31.1.1.1.1.7",
        "s",
        "ge-0/0/6",
    )
    assert proc.returncode == 0, proc.stderr
    receiver.wait_for(1)
    event = receiver.events()[0]
    assert (event.kind, event.trap_oid, event.if_index, event.device) == ("linkDown", LINK_DOWN, 7, "lab-router")
    assert event.varbinds["1.3.6.1.2.1.31.1.1.1.1.7"] == "ge-0/0/6"
    assert event.source == "snmp-trap" and event.ts_ms > 0


@pytest.mark.integration
def test_v3_auth_priv_trap_and_inform(receiver: Receiver) -> None:
    trap = send(
        "snmptrap",
        "-v",
        "3",
        "-e",
        "0x8000000001020304",
        *V3,
        receiver.address,
        "",
        LINK_UP,
        "1.3.6.1.2.1.2.2.1.1.3",
        "i",
        "3",
    )
    assert trap.returncode == 0, trap.stderr
    receiver.wait_for(1)
    # an inform needs an answer: snmpinform discovers our engine, sends, and exits 0 only when acknowledged
    inform = send("snmpinform", "-v", "3", *V3, "-r", "0", "-t", "3", receiver.address, "", "1.3.6.1.6.3.1.1.5.1")
    assert inform.returncode == 0, inform.stderr
    receiver.wait_for(2)
    up, cold = receiver.events()[:2]
    assert (up.kind, up.if_index, up.source) == ("linkUp", 3, "snmp-trap")
    assert (cold.kind, cold.source) == ("coldStart", "snmp-inform")
    assert not receiver.letters()


@pytest.mark.integration
def test_v2c_inform_and_v1_trap(receiver: Receiver) -> None:
    inform = send(
        "snmpinform", "-v", "2c", "-c", "public", "-r", "0", "-t", "3", receiver.address, "", "1.3.6.1.6.3.1.1.5.2"
    )
    assert inform.returncode == 0, inform.stderr
    v1 = send(
        "snmptrap",
        "-v",
        "1",
        "-c",
        "public",
        receiver.address,
        "1.3.6.1.4.1.8072",
        "10.9.8.7",
        "2",
        "0",
        "",
        "1.3.6.1.2.1.2.2.1.1.5",
        "i",
        "5",
    )
    assert v1.returncode == 0, v1.stderr
    receiver.wait_for(2)
    warm, down = receiver.events()[:2]
    assert warm.kind == "warmStart"
    assert (down.kind, down.trap_oid, down.device, down.if_index) == ("linkDown", LINK_DOWN, "10.9.8.7", 5)


@pytest.mark.integration
def test_bad_notifications_are_dead_lettered_and_counted(receiver: Receiver) -> None:
    assert send("snmptrap", "-v", "2c", "-c", "not-ours", receiver.address, "", LINK_DOWN).returncode == 0
    wrong_key = [
        "-u",
        "trapuser",
        "-l",
        "authPriv",
        "-a",
        "SHA-256",
        "-A",
        "wrong-auth-secret",
        "-x",
        "AES",
        "-X",
        "trap-priv-secret",
    ]
    assert (
        send("snmptrap", "-v", "3", "-e", "0x8000000001020304", *wrong_key, receiver.address, "", LINK_DOWN).returncode
        == 0
    )
    stranger = ["-u", "stranger", "-l", "authNoPriv", "-a", "SHA-256", "-A", "stranger-secret"]
    assert (
        send("snmptrap", "-v", "3", "-e", "0x8000000001020304", *stranger, receiver.address, "", LINK_DOWN).returncode
        == 0
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"\x30\x82\x01\x00 definitely not BER", (receiver.host, receiver.port))
        s.sendto(b"", (receiver.host, receiver.port))
        s.sendto(encode_test_trap("public", LINK_DOWN, [])[:-3], (receiver.host, receiver.port))  # truncated
    get = send("snmpget", "-v", "2c", "-c", "public", "-r", "0", "-t", "0.5", receiver.address, "1.3.6.1.2.1.1.3.0")
    assert get.returncode != 0  # a GET is not a notification: refused, not answered
    receiver.wait_for(7, "letters")
    reasons = [d.reason for d in receiver.letters()]
    assert reasons[0] == "unknown community"
    assert "wrong digest" in reasons[1]
    assert "unknown SNMPv3 user 'stranger'" in reasons[2]
    assert sum("malformed SNMP message" in r for r in reasons) == 3
    assert reasons[6] == "not a notification: get PDU"
    assert receiver.events() == []
    stats = receiver.collector.stats
    assert stats.dead_letters == 7 and stats.by_reason["malformed SNMP message"] == 3
    letter = receiver.letters()[3]
    assert letter.stage == "snmp-trap" and letter.topic.startswith("snmp-trap://127.0.0.1:")


def test_retransmitted_inform_keeps_its_id() -> None:
    rx = TrapCollector(parse_collector_config({"type": "snmp_traps", "port": 0}), ListSink())  # type: ignore[arg-type]
    datagram = encode_test_trap("public", LINK_DOWN, [("1.3.6.1.2.1.2.2.1.1.9", 2, 9)], request_id=41)
    first = rx.handle_datagram(datagram, ("192.0.2.1", 1162))
    again = rx.handle_datagram(datagram, ("192.0.2.1", 1162))
    assert first is not None and again is not None and first.id == again.id and first.if_index == 9
    rx.close()
