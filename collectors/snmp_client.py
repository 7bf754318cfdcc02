"""SNMP sessions: send GETBULK/GET to one agent and return decoded var-binds, with timeout and retries.

Two backends behind one method, :meth:`SnmpSession.get_bulk`:

* ``native`` (default): our own asyncio UDP endpoint, shared by every target of a collector and
  demultiplexed by request ID, with the BER codec of :mod:`collectors.snmp_wire` and the USM of
  :mod:`collectors.snmp_usm`. Fast: a response is decoded in one pass.
* ``pysnmp``: the pysnmp 7 high-level asyncio API (``bulk_cmd``); slower (pyasn1 decodes every
  value into objects), but speaks every privacy protocol pysnmp knows (DES, 3DES, AES-192/256 with
  key extension). Its results are converted to the same ``(oid_bytes, tag, value)`` tuples.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from collectors.base import Secret, TargetAuthError, TargetError, TargetProtocolError, TargetTimeout
from collectors.snmp_usm import (
    FLAG_AUTH,
    FLAG_REPORTABLE,
    EngineState,
    SaltCounter,
    UsmError,
    UsmUser,
    check_and_decrypt,
    encode_v3,
    report_reason,
)
from collectors.snmp_wire import (
    GET,
    GET_BULK,
    OCTET_STRING,
    REPORT,
    RESPONSE,
    SEQUENCE,
    V2C,
    V3,
    BerError,
    Message,
    VarBind,
    decode_message,
    encode_community_message,
    encode_pdu,
    null_varbinds,
    tlv,
)

ERROR_STATUS = {
    1: "tooBig",
    2: "noSuchName",
    3: "badValue",
    4: "readOnly",
    5: "genErr",
    6: "noAccess",
    16: "authorizationError",
}
TOO_BIG = 1


@dataclass(frozen=True)
class Credentials:
    """How to talk to one agent: v2c community, or a v3 user (its secrets wrapped, never printed)."""

    version: str = "2c"  # "2c" or "3"
    community: Secret | None = None
    user: str = ""
    auth_proto: str = ""
    auth_key: Secret | None = None
    priv_proto: str = ""
    priv_key: Secret | None = None
    context: str = ""

    def usm_user(self) -> UsmUser:
        return UsmUser.create(
            self.user,
            self.auth_proto if self.auth_key else "",
            self.auth_key.reveal() if self.auth_key else "",
            self.priv_proto if self.priv_key else "",
            self.priv_key.reveal() if self.priv_key else "",
        )


class SnmpSession(ABC):
    """One agent: GETBULK with timeout and retries; errors are :class:`collectors.base.TargetError`."""

    def __init__(self, name: str, timeout_s: float, retries: int) -> None:
        self.name = name
        self.timeout_s = timeout_s
        self.retries = retries
        self.requests = 0

    @abstractmethod
    async def get_bulk(self, non_repeaters: list[bytes], repeaters: list[bytes], max_repetitions: int) -> list[VarBind]:
        """One GETBULK: the var-binds in wire order (non-repeaters first, then rows of repeaters)."""

    @abstractmethod
    async def get(self, oids: list[bytes]) -> list[VarBind]:
        """One GET."""

    async def close(self) -> None:
        return None


# --------------------------------------------------------------------------------------------- native


class _Endpoint(asyncio.DatagramProtocol):
    """One UDP socket shared by many sessions; responses are matched to requests by ID and address."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: dict[int, tuple[tuple[str, int], asyncio.Future[tuple[bytes, Message]]]] = {}
        self.unmatched = 0
        self.malformed = 0
        self.on_malformed: Callable[[bytes, tuple[str, int], str], None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            msg = decode_message(data)
        except (BerError, IndexError, ValueError) as exc:
            self.malformed += 1
            if self.on_malformed is not None:
                self.on_malformed(data, addr, f"malformed SNMP response: {exc}")
            return
        key = msg.msg_id if msg.version == V3 else (msg.pdu.request_id if msg.pdu else -1)
        entry = self.pending.get(key)
        if entry is None or entry[0] != addr[:2] or entry[1].done():
            self.unmatched += 1  # late answer to a retried request, or a stranger
            return
        entry[1].set_result((data, msg))

    def error_received(self, exc: Exception) -> None:
        return None  # ICMP port unreachable and the like: the request times out and is retried


class SnmpEndpoint:
    """The shared UDP sockets (IPv4 and, when needed, IPv6) of one collector."""

    def __init__(self) -> None:
        self._endpoints: dict[int, _Endpoint] = {}
        self._ids = int.from_bytes(os.urandom(3), "big")
        self.on_malformed: Callable[[bytes, tuple[str, int], str], None] | None = None
        self._lock: asyncio.Lock | None = None  # created in the running loop, on first use

    def next_id(self) -> int:
        self._ids = (self._ids + 1) & 0x7FFFFFFF or 1
        return self._ids

    async def endpoint(self, family: int) -> _Endpoint:
        proto = self._endpoints.get(family)
        if proto is not None:
            return proto
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # many targets start at once: only the first creates the socket
            proto = self._endpoints.get(family)
            if proto is None:
                loop = asyncio.get_running_loop()
                local = ("::", 0) if family == socket.AF_INET6 else ("0.0.0.0", 0)
                _, proto = await loop.create_datagram_endpoint(_Endpoint, local_addr=local, family=family)
                proto.on_malformed = self.on_malformed
                sock = proto.transport.get_extra_info("socket") if proto.transport else None
                if sock is not None:
                    with contextlib.suppress(OSError):  # big tables arrive in bursts of large datagrams
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
                self._endpoints[family] = proto
        return proto

    async def exchange(
        self, addr: tuple[str, int], family: int, request_id: int, data: bytes, timeout: float
    ) -> tuple[bytes, Message]:
        proto = await self.endpoint(family)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[bytes, Message]] = loop.create_future()
        proto.pending[request_id] = (addr, future)
        try:
            assert proto.transport is not None
            proto.transport.sendto(data, addr)
            return await asyncio.wait_for(future, timeout)
        finally:
            proto.pending.pop(request_id, None)

    def close(self) -> None:
        for proto in self._endpoints.values():
            if proto.transport is not None:
                proto.transport.close()
        self._endpoints.clear()
        self._lock = None

    @property
    def malformed(self) -> int:
        return sum(p.malformed for p in self._endpoints.values())


async def resolve(host: str, port: int) -> tuple[tuple[str, int], int]:
    """(address, family) of ``host``; IPv4 preferred."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM, proto=socket.IPPROTO_UDP)
    except socket.gaierror as exc:
        raise TargetError(f"{host}:{port}", f"cannot resolve host: {exc.strerror}") from None
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    family, *_, sockaddr = infos[0]
    return (str(sockaddr[0]), int(sockaddr[1])), int(family)


class NativeSession(SnmpSession):
    """Our own codec over a shared endpoint; v2c, and v3 with engine discovery and time sync."""

    def __init__(
        self,
        name: str,
        endpoint: SnmpEndpoint,
        addr: tuple[str, int],
        family: int,
        credentials: Credentials,
        timeout_s: float,
        retries: int,
    ) -> None:
        super().__init__(name, timeout_s, retries)
        self.endpoint = endpoint
        self.addr = addr
        self.family = family
        self.credentials = credentials
        self.version = credentials.version
        if self.version == "3":
            try:
                self.user = credentials.usm_user()
            except UsmError as exc:
                raise TargetAuthError(name, str(exc)) from None
            self.engine = EngineState()
            self.salts = SaltCounter()
            self.context = credentials.context.encode()
        else:
            self.community = credentials.community.reveal().encode() if credentials.community else b"public"

    async def get_bulk(self, non_repeaters: list[bytes], repeaters: list[bytes], max_repetitions: int) -> list[VarBind]:
        varbinds = null_varbinds(non_repeaters + repeaters)
        return await self._request(GET_BULK, len(non_repeaters), max_repetitions, varbinds)

    async def get(self, oids: list[bytes]) -> list[VarBind]:
        return await self._request(GET, 0, 0, null_varbinds(oids))

    async def _request(self, tag: int, field2: int, field3: int, varbinds: bytes) -> list[VarBind]:
        if self.version == "3":
            return await self._request_v3(tag, field2, field3, varbinds)
        request_id = self.endpoint.next_id()
        data = encode_community_message(V2C, self.community, encode_pdu(tag, request_id, field2, field3, varbinds))
        _, msg = await self._send(request_id, data)
        return self._varbinds(msg)

    async def _send(self, request_id: int, data: bytes) -> tuple[bytes, Message]:
        for _attempt in range(self.retries + 1):
            self.requests += 1
            try:
                return await self.endpoint.exchange(self.addr, self.family, request_id, data, self.timeout_s)
            except TimeoutError:
                continue
            except OSError as exc:
                raise TargetError(self.name, f"cannot send: {exc.strerror or exc}") from None
        raise TargetTimeout(self.name, self.timeout_s, self.retries + 1)

    def _varbinds(self, msg: Message) -> list[VarBind]:
        pdu = msg.pdu
        if pdu is None or pdu.tag != RESPONSE:
            raise TargetProtocolError(self.name, f"expected a Response PDU, got {pdu.tag if pdu else 'none'}")
        if pdu.error_status:
            status = ERROR_STATUS.get(pdu.error_status, str(pdu.error_status))
            raise SnmpErrorStatus(self.name, pdu.error_status, pdu.error_index, status)
        return pdu.varbinds

    async def discover(self) -> None:
        """Learn the agent's engine ID, boots and time (RFC 3414 4): an empty, unauthenticated request."""
        request_id = self.endpoint.next_id()
        scoped = tlv(
            SEQUENCE,
            tlv(OCTET_STRING, b"") + tlv(OCTET_STRING, b"") + encode_pdu(GET, request_id, 0, 0, tlv(SEQUENCE, b"")),
        )
        probe = UsmUser("")
        data = encode_v3(probe, EngineState(), request_id, scoped, self.salts, flags=FLAG_REPORTABLE)
        _, msg = await self._send(request_id, data)
        if not msg.engine_id:
            raise TargetProtocolError(self.name, "engine discovery returned no engine ID")
        self.engine.update(msg.engine_id, msg.engine_boots, msg.engine_time)

    async def _request_v3(self, tag: int, field2: int, field3: int, varbinds: bytes) -> list[VarBind]:
        if not self.engine.known:
            await self.discover()
        for _round in range(3):  # a report (time window, new engine) is answered by retrying
            request_id = self.endpoint.next_id()
            pdu = encode_pdu(tag, request_id, field2, field3, varbinds)
            scoped = tlv(SEQUENCE, tlv(OCTET_STRING, self.engine.engine_id) + tlv(OCTET_STRING, self.context) + pdu)
            data = encode_v3(self.user, self.engine, request_id, scoped, self.salts)
            raw, msg = await self._send(request_id, data)
            if not msg.flags & FLAG_AUTH:  # plaintext: a discovery or error report, or a wrong level
                reason = report_reason(msg) if msg.pdu is not None and msg.pdu.tag == REPORT else ""
                if reason == "unknown engine ID":
                    await self.discover()
                    continue
                if reason == "not in time window":
                    self.engine.update(msg.engine_id or self.engine.engine_id, msg.engine_boots, msg.engine_time)
                    continue
                if reason:
                    raise TargetAuthError(self.name, f"agent refused the request: {reason}")
            self._verify(raw, msg)
            assert msg.pdu is not None
            if msg.pdu.tag == REPORT:
                reason = report_reason(msg)
                if reason == "not in time window":  # authenticated, so the agent's clock can be trusted
                    self.engine.update(msg.engine_id, msg.engine_boots, msg.engine_time)
                    continue
                raise TargetAuthError(self.name, f"agent refused the request: {reason}")
            return self._varbinds(msg)
        raise TargetAuthError(self.name, "agent kept reporting time-window or engine errors")

    def _verify(self, raw: bytes, msg: Message) -> None:
        if msg.engine_id != self.engine.engine_id:
            raise TargetAuthError(self.name, "response from a different engine ID")
        try:
            check_and_decrypt(raw, msg, self.user)
        except UsmError as exc:
            raise TargetAuthError(self.name, str(exc)) from None
        except BerError as exc:
            raise TargetProtocolError(self.name, f"malformed ScopedPDU: {exc}") from None


class SnmpErrorStatus(TargetProtocolError):
    """The agent answered with an error-status (``status``) for var-bind ``index``."""

    def __init__(self, target: str, code: int, index: int, status: str) -> None:
        super().__init__(target, f"agent returned error-status {status} (index {index})")
        self.code = code
        self.index = index
        self.status = status


# --------------------------------------------------------------------------------------------- pysnmp


class PysnmpSession(SnmpSession):
    """The same calls through pysnmp's high-level asyncio API (``bulk_cmd``/``get_cmd``)."""

    _AUTH = {
        "MD5": "usmHMACMD5AuthProtocol",
        "SHA": "usmHMACSHAAuthProtocol",
        "SHA224": "usmHMAC128SHA224AuthProtocol",
        "SHA256": "usmHMAC192SHA256AuthProtocol",
        "SHA384": "usmHMAC256SHA384AuthProtocol",
        "SHA512": "usmHMAC384SHA512AuthProtocol",
    }
    _PRIV = {
        "DES": "usmDESPrivProtocol",
        "3DES": "usm3DESEDEPrivProtocol",
        "AES": "usmAesCfb128Protocol",
        "AES192": "usmAesCfb192Protocol",
        "AES256": "usmAesCfb256Protocol",
        "AES192BLMT": "usmAesBlumenthalCfb192Protocol",
        "AES256BLMT": "usmAesBlumenthalCfb256Protocol",
    }

    def __init__(
        self, name: str, host: str, port: int, credentials: Credentials, timeout_s: float, retries: int
    ) -> None:
        super().__init__(name, timeout_s, retries)
        self.host, self.port = host, port
        self.credentials = credentials
        self._engine: Any = None
        self._target: Any = None
        self._auth: Any = None

    async def _setup(self) -> None:
        from pysnmp.hlapi.v3arch import asyncio as hl

        from collectors.snmp_usm import protocol_name

        self._hl = hl
        self._engine = hl.SnmpEngine()
        try:
            self._target = await hl.UdpTransportTarget.create(
                (self.host, self.port), timeout=self.timeout_s, retries=self.retries
            )
        except Exception as exc:  # pysnmp raises PySnmpError for resolution failures
            raise TargetError(self.name, f"cannot resolve target: {exc}") from None
        cred = self.credentials
        if cred.version == "3":
            kwargs: dict[str, Any] = {}
            if cred.auth_key:
                auth_name = self._AUTH.get(protocol_name(cred.auth_proto))
                if auth_name is None:
                    raise TargetAuthError(self.name, f"unknown auth protocol {cred.auth_proto!r}")
                kwargs["authKey"] = cred.auth_key.reveal()
                kwargs["authProtocol"] = getattr(hl, auth_name)
            if cred.priv_key:
                priv_name = self._PRIV.get(protocol_name(cred.priv_proto))
                if priv_name is None:
                    raise TargetAuthError(self.name, f"unknown privacy protocol {cred.priv_proto!r}")
                kwargs["privKey"] = cred.priv_key.reveal()
                kwargs["privProtocol"] = getattr(hl, priv_name)
            self._auth = hl.UsmUserData(cred.user, **kwargs)
        else:
            community = cred.community.reveal() if cred.community else "public"
            self._auth = hl.CommunityData(community, mpModel=1)
        self._context = hl.ContextData(contextName=cred.context.encode()) if cred.context else hl.ContextData()

    async def get_bulk(self, non_repeaters: list[bytes], repeaters: list[bytes], max_repetitions: int) -> list[VarBind]:
        if self._engine is None:
            await self._setup()
        hl = self._hl
        objects = [hl.ObjectType(hl.ObjectIdentity(_oid_text(o))) for o in non_repeaters + repeaters]
        self.requests += 1
        result = await hl.bulk_cmd(
            self._engine,
            self._auth,
            self._target,
            self._context,
            len(non_repeaters),
            max_repetitions,
            *objects,
            lookupMib=False,
        )
        return self._convert(result)

    async def get(self, oids: list[bytes]) -> list[VarBind]:
        if self._engine is None:
            await self._setup()
        hl = self._hl
        objects = [hl.ObjectType(hl.ObjectIdentity(_oid_text(o))) for o in oids]
        self.requests += 1
        result = await hl.get_cmd(self._engine, self._auth, self._target, self._context, *objects, lookupMib=False)
        return self._convert(result)

    def _convert(self, result: Any) -> list[VarBind]:
        from collectors.snmp_wire import oid_content

        error_indication, error_status, error_index, var_binds = result
        if error_indication:
            text = str(error_indication)
            if "timeout" in text.lower() or "No SNMP response" in text:
                raise TargetTimeout(self.name, self.timeout_s, self.retries + 1)
            if any(word in text.lower() for word in ("unknown", "wrong", "decrypt", "unsupported", "time")):
                raise TargetAuthError(self.name, text)
            raise TargetProtocolError(self.name, text)
        if error_status:
            code = int(error_status)
            raise SnmpErrorStatus(self.name, code, int(error_index), ERROR_STATUS.get(code, str(code)))
        out: list[VarBind] = []
        for name, value in var_binds:
            tag = _pysnmp_tag(value)
            out.append((oid_content(tuple(name)), tag, _pysnmp_value(tag, value)))
        return out

    async def close(self) -> None:
        if self._engine is not None:
            with contextlib.suppress(Exception):
                self._engine.close_dispatcher()
            self._engine = None


def _oid_text(content: bytes) -> str:
    from collectors.snmp_wire import oid_str

    return oid_str(content)


def _pysnmp_tag(value: Any) -> int:
    tag_set = value.tagSet[0] if len(value.tagSet) else None
    if tag_set is None:
        return 0x05
    return int(tag_set.tagClass) | int(tag_set.tagFormat) | int(tag_set.tagId)


def _pysnmp_value(tag: int, value: Any) -> Any:
    from collectors.snmp_wire import IP_ADDRESS, OBJECT_IDENTIFIER, OPAQUE

    if tag in (0x02, 0x41, 0x42, 0x43, 0x46):
        return int(value)
    if tag in (OCTET_STRING, IP_ADDRESS, OPAQUE):
        return bytes(value.asOctets())
    if tag == OBJECT_IDENTIFIER:
        return ".".join(str(x) for x in tuple(value))
    return None


__all__ = [
    "Credentials",
    "NativeSession",
    "PysnmpSession",
    "SnmpEndpoint",
    "SnmpErrorStatus",
    "SnmpSession",
    "resolve",
]
