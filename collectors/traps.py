"""SNMP trap and inform receiver: v1, v2c and v3 notifications on a UDP port -> FaultEvent records.

Config (YAML, ``type: snmp_traps``)::

    - type: snmp_traps
      host: 0.0.0.0
      port: 9162                   # 162 needs root or CAP_NET_BIND_SERVICE
      communities: []              # v1/v2c communities accepted; empty accepts any
      communities_env: ""          # or a comma-separated list from the environment
      device_from: address         # address | sysname (use sysName.0 when the trap carries it)
      devices: {}                  # source address -> device name
      engine_id: ""                # hex; our engine ID for v3 informs (default derived from `name`)
      users:                       # SNMPv3 users; keys are localized per sender engine ID on demand
        - user: ossbss
          auth_proto: SHA256
          auth_key_env: TRAP_AUTH_KEY
          priv_proto: AES
          priv_key_env: TRAP_PRIV_KEY

Every datagram ends as exactly one of: a FaultEvent, a dead letter with the reason (malformed BER,
unknown community or user, failed authentication or decryption, a PDU that is not a notification),
or a v3 engine-discovery answer. Informs are acknowledged with a Response. Nothing raises.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

import msgspec

from collectors.base import (
    Collector,
    CollectorConfig,
    CollectorConfigError,
    RecordSink,
    read_secret,
    register_collector,
)
from collectors.snmp_usm import (
    FLAG_AUTH,
    FLAG_REPORTABLE,
    EngineState,
    SaltCounter,
    UsmError,
    UsmUser,
    check_and_decrypt,
    encode_v3,
)
from collectors.snmp_wire import (
    COUNTER32,
    INFORM,
    INTEGER,
    OCTET_STRING,
    PDU_NAMES,
    REPORT,
    RESPONSE,
    SEQUENCE,
    TIMETICKS,
    TRAP_V1,
    TRAP_V2,
    V3,
    BerError,
    Message,
    Pdu,
    decode_message,
    encode_community_message,
    encode_pdu,
    encode_varbind,
    oid_content,
    oid_str,
    tlv,
    value_text,
)
from models.codec import dead_letter_for
from models.records import FaultEvent, Record
from models.topics import FAULT_EVENTS

SYS_UPTIME_0 = "1.3.6.1.2.1.1.3.0"
SNMP_TRAP_OID_0 = "1.3.6.1.6.3.1.1.4.1.0"
SYS_NAME_0 = "1.3.6.1.2.1.1.5.0"
IF_INDEX_PREFIX = "1.3.6.1.2.1.2.2.1.1."
STANDARD_TRAPS = {
    "1.3.6.1.6.3.1.1.5.1": "coldStart",
    "1.3.6.1.6.3.1.1.5.2": "warmStart",
    "1.3.6.1.6.3.1.1.5.3": "linkDown",
    "1.3.6.1.6.3.1.1.5.4": "linkUp",
    "1.3.6.1.6.3.1.1.5.5": "authenticationFailure",
    "1.3.6.1.6.3.1.1.5.6": "egpNeighborLoss",
}
USM_UNKNOWN_ENGINE_IDS = oid_content("1.3.6.1.6.3.15.1.1.4.0")
USM_NOT_IN_TIME_WINDOWS = oid_content("1.3.6.1.6.3.15.1.1.2.0")
MAX_VARBINDS_KEPT = 64  # an event keeps at most this many var-binds (a trap may carry a whole table)


class TrapUserConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    user: str
    auth_proto: str = ""
    auth_key_env: str = ""
    auth_key_file: str = ""
    priv_proto: str = ""
    priv_key_env: str = ""
    priv_key_file: str = ""


class TrapConfig(CollectorConfig, frozen=True, kw_only=True):
    type: str = "snmp_traps"
    host: str = "0.0.0.0"
    port: int = 9162
    communities: list[str] = []
    communities_env: str = ""
    device_from: str = "address"
    devices: dict[str, str] = {}
    engine_id: str = ""
    users: list[TrapUserConfig] = []

    def validate(self, key: str) -> None:
        if not 0 <= self.port < 65536:
            raise CollectorConfigError(f"{key}.port", f"must be 0..65535, not {self.port}")
        if self.device_from not in ("address", "sysname"):
            raise CollectorConfigError(f"{key}.device_from", "must be address or sysname")
        if self.engine_id:
            try:
                raw = bytes.fromhex(self.engine_id.removeprefix("0x"))
            except ValueError:
                raise CollectorConfigError(f"{key}.engine_id", "must be hex") from None
            if not 5 <= len(raw) <= 32:
                raise CollectorConfigError(f"{key}.engine_id", "must be 5..32 octets")
        for i, user in enumerate(self.users):
            if user.priv_proto and not user.auth_proto:
                raise CollectorConfigError(f"{key}.users[{i}].priv_proto", "privacy needs auth_proto too")


def default_engine_id(name: str) -> bytes:
    """RFC 3411 engine ID, text format: enterprise 8072 (net-snmp's number, for local use) + our name."""
    return b"\x80\x00\x1f\x88\x04" + f"ossbss-{name}"[:27].encode()


@register_collector("snmp_traps")
class TrapCollector(Collector[TrapConfig]):
    """Listens on UDP; every datagram becomes a FaultEvent or a dead letter (or a v3 protocol reply)."""

    config_type = TrapConfig

    def __init__(self, config: TrapConfig, sink: RecordSink, **context: Any) -> None:
        super().__init__(config, sink, **context)
        key = self.config_key
        communities = list(config.communities)
        if config.communities_env:
            secret = read_secret(f"{key}.communities_env", config.communities_env)
            communities += [c.strip() for c in secret.reveal().split(",") if c.strip()]
        self._communities = {c.encode() for c in communities}
        self._users: dict[bytes, UsmUser] = {}
        for i, user in enumerate(config.users):
            ukey = f"{key}.users[{i}]"
            auth = (
                read_secret(f"{ukey}.auth_key_env", user.auth_key_env, user.auth_key_file) if user.auth_proto else None
            )
            priv = (
                read_secret(f"{ukey}.priv_key_env", user.priv_key_env, user.priv_key_file) if user.priv_proto else None
            )
            try:
                self._users[user.user.encode()] = UsmUser.create(
                    user.user,
                    user.auth_proto,
                    auth.reveal() if auth else "",
                    user.priv_proto,
                    priv.reveal() if priv else "",
                )
            except UsmError as exc:
                raise CollectorConfigError(ukey, str(exc)) from None
        engine_id = bytes.fromhex(config.engine_id.removeprefix("0x")) if config.engine_id else b""
        self.engine = EngineState()
        self.engine.update(engine_id or default_engine_id(self.name), 1, 0)
        self._salts = SaltCounter()
        self._unknown_engine_reports = 0
        self.transport: asyncio.DatagramTransport | None = None
        self.bound: tuple[str, int] | None = None
        self.events: asyncio.Queue[FaultEvent] | None = None  # tests and the CLI may watch events

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> tuple[str, int]:
        """Bind the UDP port; returns the bound (host, port) (useful with ``port: 0``)."""
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _TrapProtocol(self), local_addr=(self.config.host, self.config.port)
        )
        self.transport = transport
        sockname = transport.get_extra_info("sockname")
        self.bound = (str(sockname[0]), int(sockname[1]))
        return self.bound

    async def run(self, stop: asyncio.Event) -> None:
        if self.transport is None:
            await self.start()
        try:
            await stop.wait()
        finally:
            self.close()
            await asyncio.sleep(0)  # the transport's close callback runs before the loop may end

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    async def collect_once(self) -> list[Record]:
        """A receiver has no round to collect: returns nothing (events are emitted as they arrive)."""
        return []

    # ------------------------------------------------------------------ datagrams

    def handle_datagram(self, data: bytes, addr: tuple[str, int]) -> FaultEvent | None:
        """Turn one datagram into an event (emitted) or a dead letter; replies to informs and discovery."""
        try:
            return self._handle(data, addr)
        except Exception as exc:  # never let one datagram stop the receiver
            self._reject(data, addr, f"unexpected error: {type(exc).__name__}: {exc}")
            return None

    def _handle(self, data: bytes, addr: tuple[str, int]) -> FaultEvent | None:
        try:
            msg = decode_message(data)
        except (BerError, IndexError, ValueError) as exc:
            self._reject(data, addr, f"malformed SNMP message: {exc}")
            return None
        if msg.version == V3:
            pdu = self._open_v3(data, msg, addr)
            if pdu is None:
                return None
        else:
            if self._communities and msg.community not in self._communities:
                self._reject(data, addr, "unknown community")
                return None
            assert msg.pdu is not None
            pdu = msg.pdu
        if pdu.tag not in (TRAP_V1, TRAP_V2, INFORM):
            self._reject(data, addr, f"not a notification: {PDU_NAMES.get(pdu.tag, hex(pdu.tag))} PDU")
            return None
        event = self._event(pdu, msg, addr)
        if pdu.tag == INFORM:
            self._acknowledge(msg, pdu, addr)
        self.emit(FAULT_EVENTS, [event])
        if self.events is not None:
            self.events.put_nowait(event)
        return event

    def _open_v3(self, data: bytes, msg: Message, addr: tuple[str, int]) -> Pdu | None:
        """Authenticate and decrypt a v3 message, or answer engine discovery; None when handled."""
        if msg.security_model != 3:
            self._reject(data, addr, f"unsupported security model {msg.security_model}")
            return None
        if not msg.engine_id and not msg.flags & FLAG_AUTH and msg.flags & FLAG_REPORTABLE:
            self._report(msg, addr, USM_UNKNOWN_ENGINE_IDS)  # an inform sender discovering our engine ID
            return None
        user = self._users.get(msg.user_name)
        if user is None:
            self._reject(data, addr, f"unknown SNMPv3 user {msg.user_name.decode('utf-8', 'replace')!r}")
            return None
        try:
            check_and_decrypt(data, msg, user)
        except UsmError as exc:
            self._reject(data, addr, f"SNMPv3 security check failed: {exc}")
            return None
        except BerError as exc:
            self._reject(data, addr, f"malformed SNMPv3 ScopedPDU: {exc}")
            return None
        assert msg.pdu is not None
        in_window = msg.engine_boots == self.engine.boots and abs(msg.engine_time - self.engine.time()) <= 150
        if msg.pdu.tag == INFORM and msg.engine_id == self.engine.engine_id and not in_window:
            self._report(msg, addr, USM_NOT_IN_TIME_WINDOWS, user)  # RFC 3414 3.2 step 7: resync the sender
            return None
        return msg.pdu

    def _event(self, pdu: Pdu, msg: Message, addr: tuple[str, int]) -> FaultEvent:
        varbinds: dict[str, str] = {}
        trap_oid = ""
        uptime = ""
        if_index: int | None = None
        sys_name = ""
        for oid_raw, tag, value in pdu.varbinds:
            oid = oid_str(oid_raw)
            if oid == SNMP_TRAP_OID_0:
                trap_oid = value if isinstance(value, str) else value_text(tag, value)
                continue
            text = value_text(tag, value)
            if oid == SYS_UPTIME_0:
                uptime = text
            elif oid == SYS_NAME_0:
                sys_name = text
            elif oid.startswith(IF_INDEX_PREFIX) and tag == INTEGER and if_index is None and value >= 0:
                if_index = value
            if len(varbinds) < MAX_VARBINDS_KEPT:
                varbinds[oid] = text
        if pdu.tag == TRAP_V1:
            trap_oid = v1_trap_oid(pdu)
            uptime = str(pdu.timestamp)
        source = pdu.agent_addr if pdu.tag == TRAP_V1 and pdu.agent_addr not in ("", "0.0.0.0") else addr[0]
        device = self.config.devices.get(source, source)
        if self.config.device_from == "sysname" and sys_name:
            device = sys_name
        kind = STANDARD_TRAPS.get(trap_oid) or ("inform" if pdu.tag == INFORM else "trap")
        digest = hashlib.blake2b(pdu.varbinds_raw, digest_size=6).hexdigest()
        ts_ms = time.time_ns() // 1_000_000
        return FaultEvent(
            id=f"{device}/trap/{uptime or ts_ms}/{pdu.request_id}/{digest}",
            device=device[:256] or "unknown",
            ts_ms=ts_ms,
            kind=kind,
            trap_oid=trap_oid,
            if_index=if_index,
            varbinds=varbinds,
            source="snmp-inform" if pdu.tag == INFORM else "snmp-trap",
        )

    # ------------------------------------------------------------------ replies

    def _send(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.transport is not None:
            self.transport.sendto(data, addr)

    def _acknowledge(self, msg: Message, pdu: Pdu, addr: tuple[str, int]) -> None:
        """An inform is answered with a Response carrying the same request ID and var-binds."""
        response = encode_pdu(RESPONSE, pdu.request_id, 0, 0, pdu.varbinds_raw)
        if msg.version != V3:
            self._send(encode_community_message(msg.version, msg.community, response), addr)
            return
        user = self._users[msg.user_name]
        # the context is echoed: a notification's contextEngineID is the originator's (RFC 3413 3.2)
        context = tlv(OCTET_STRING, msg.context_engine_id) + tlv(OCTET_STRING, msg.context_name)
        scoped = tlv(SEQUENCE, context + response)
        self._send(encode_v3(user, self.engine, msg.msg_id, scoped, self._salts, flags=user.level_flags), addr)

    def _report(self, msg: Message, addr: tuple[str, int], counter_oid: bytes, user: UsmUser | None = None) -> None:
        """A Report PDU telling the sender our engine ID, boots and time (RFC 3414 3.2 and 4)."""
        self._unknown_engine_reports += 1
        request_id = msg.pdu.request_id if msg.pdu is not None else 0
        varbinds = tlv(SEQUENCE, encode_varbind(counter_oid, COUNTER32, self._unknown_engine_reports))
        report = encode_pdu(REPORT, request_id, 0, 0, varbinds)
        scoped = tlv(SEQUENCE, tlv(OCTET_STRING, self.engine.engine_id) + tlv(OCTET_STRING, b"") + report)
        reporter = user or UsmUser(msg.user_name.decode("utf-8", "replace"))
        flags = FLAG_AUTH if user is not None and user.auth else 0
        self._send(encode_v3(reporter, self.engine, msg.msg_id, scoped, self._salts, flags=flags), addr)

    def _reject(self, data: bytes, addr: tuple[str, int], reason: str) -> None:
        self.stats.count_error(reason)
        self.dead_letter(
            dead_letter_for(data, topic=f"snmp-trap://{addr[0]}:{addr[1]}", stage="snmp-trap", reason=reason)
        )


def v1_trap_oid(pdu: Pdu) -> str:
    """RFC 3584 3.1: a v1 generic trap maps to snmpTraps.(generic+1), an enterprise one to ent.0.specific."""
    if 0 <= pdu.generic_trap < 6:
        return f"1.3.6.1.6.3.1.1.5.{pdu.generic_trap + 1}"
    return f"{pdu.enterprise}.0.{pdu.specific_trap}"


class _TrapProtocol(asyncio.DatagramProtocol):
    def __init__(self, collector: TrapCollector) -> None:
        self.collector = collector

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.collector.handle_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        self.collector.stats.count_error(f"socket error: {exc}")


def encode_test_trap(community: str, trap_oid: str, varbinds: list[tuple[str, int, Any]], request_id: int = 1) -> bytes:
    """A v2c trap datagram (tests and demos send it without net-snmp)."""
    body = encode_varbind(oid_content(SYS_UPTIME_0), TIMETICKS, 12345)
    body += encode_varbind(oid_content(SNMP_TRAP_OID_0), 0x06, trap_oid)
    for oid, tag, value in varbinds:
        body += encode_varbind(oid_content(oid), tag, value)
    return encode_community_message(1, community.encode(), encode_pdu(TRAP_V2, request_id, 0, 0, tlv(SEQUENCE, body)))


__all__ = [
    "STANDARD_TRAPS",
    "TrapCollector",
    "TrapConfig",
    "TrapUserConfig",
    "default_engine_id",
    "encode_test_trap",
    "v1_trap_oid",
]
