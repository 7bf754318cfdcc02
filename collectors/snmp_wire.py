"""SNMP on the wire: a small BER codec for the messages collectors send and receive (RFC 3416, 3412).

Written for speed on the poller's hot path: a response's var-binds are decoded in one tight loop
into ``(oid_bytes, tag, value)`` tuples, where ``oid_bytes`` is the BER content of the name. BER
keeps OID prefixes as byte prefixes, so a table column is recognised by slicing, not by decoding.
Security (SNMPv3 USM) lives in :mod:`collectors.snmp_usm`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# ASN.1 / SNMP tags.
INTEGER = 0x02
OCTET_STRING = 0x04
NULL = 0x05
OBJECT_IDENTIFIER = 0x06
SEQUENCE = 0x30
IP_ADDRESS = 0x40
COUNTER32 = 0x41
GAUGE32 = 0x42
TIMETICKS = 0x43
OPAQUE = 0x44
COUNTER64 = 0x46
NO_SUCH_OBJECT = 0x80
NO_SUCH_INSTANCE = 0x81
END_OF_MIB_VIEW = 0x82

GET = 0xA0
GET_NEXT = 0xA1
RESPONSE = 0xA2
SET = 0xA3
TRAP_V1 = 0xA4
GET_BULK = 0xA5
INFORM = 0xA6
TRAP_V2 = 0xA7
REPORT = 0xA8

PDU_NAMES = {
    GET: "get",
    GET_NEXT: "getnext",
    RESPONSE: "response",
    SET: "set",
    TRAP_V1: "trap-v1",
    GET_BULK: "getbulk",
    INFORM: "inform",
    TRAP_V2: "trap",
    REPORT: "report",
}

V1, V2C, V3 = 0, 1, 3

TYPE_NAMES = {
    INTEGER: "INTEGER",
    OCTET_STRING: "OCTET STRING",
    NULL: "NULL",
    OBJECT_IDENTIFIER: "OID",
    IP_ADDRESS: "IpAddress",
    COUNTER32: "Counter32",
    GAUGE32: "Gauge32",
    TIMETICKS: "Timeticks",
    OPAQUE: "Opaque",
    COUNTER64: "Counter64",
    NO_SUCH_OBJECT: "noSuchObject",
    NO_SUCH_INSTANCE: "noSuchInstance",
    END_OF_MIB_VIEW: "endOfMibView",
}

VarBind = tuple[bytes, int, Any]  # (OID content bytes, value tag, decoded value)


class BerError(ValueError):
    """The bytes are not the BER structure SNMP expects; the message says where."""


# ---------------------------------------------------------------------------------------------- encode


def length_bytes(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    size = (n.bit_length() + 7) // 8
    return bytes((0x80 | size,)) + n.to_bytes(size, "big")


def tlv(tag: int, content: bytes) -> bytes:
    return bytes((tag,)) + length_bytes(len(content)) + content


def encode_int(value: int, tag: int = INTEGER) -> bytes:
    return tlv(tag, value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))


def encode_unsigned(value: int, tag: int) -> bytes:
    """Counter32/Gauge32/TimeTicks/Counter64: unsigned, with a leading zero when the top bit is set."""
    return tlv(tag, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def encode_octets(value: bytes, tag: int = OCTET_STRING) -> bytes:
    return tlv(tag, value)


def oid_content(oid: str | tuple[int, ...]) -> bytes:
    """BER content octets of an OID given as ``"1.3.6.1..."`` or a tuple of sub-identifiers."""
    parts = tuple(int(p) for p in oid.strip(".").split(".")) if isinstance(oid, str) else oid
    if len(parts) < 2 or parts[0] > 2 or (parts[0] < 2 and parts[1] >= 40):
        raise BerError(f"not a valid OID: {oid!r}")
    out = bytearray()
    for sub in (parts[0] * 40 + parts[1], *parts[2:]):
        if sub < 0x80:
            out.append(sub)
            continue
        chunk = bytearray()
        while sub:
            chunk.append((sub & 0x7F) | 0x80)
            sub >>= 7
        chunk[0] &= 0x7F
        out += chunk[::-1]
    return bytes(out)


def null_varbinds(oids: list[bytes]) -> bytes:
    """A SEQUENCE OF VarBind with NULL values, from OID content bytes (requests)."""
    return tlv(SEQUENCE, b"".join(tlv(SEQUENCE, tlv(OBJECT_IDENTIFIER, o) + b"\x05\x00") for o in oids))


def encode_varbind(oid: bytes, tag: int, value: Any) -> bytes:
    """One var-bind of any SNMP type (used by tests, the trap sender and inform responses)."""
    if tag in (INTEGER,):
        val = encode_int(int(value))
    elif tag in (COUNTER32, GAUGE32, TIMETICKS, COUNTER64):
        val = encode_unsigned(int(value), tag)
    elif tag in (OCTET_STRING, OPAQUE, IP_ADDRESS):
        val = tlv(tag, value if isinstance(value, bytes) else str(value).encode())
    elif tag == OBJECT_IDENTIFIER:
        val = tlv(tag, value if isinstance(value, bytes) else oid_content(value))
    else:
        val = bytes((tag, 0))
    return tlv(SEQUENCE, tlv(OBJECT_IDENTIFIER, oid) + val)


def encode_pdu(tag: int, request_id: int, field2: int, field3: int, varbinds_seq: bytes) -> bytes:
    """A PDU; ``field2``/``field3`` are error-status/index, or non-repeaters/max-repetitions for GETBULK."""
    return tlv(tag, encode_int(request_id) + encode_int(field2) + encode_int(field3) + varbinds_seq)


def encode_community_message(version: int, community: bytes, pdu: bytes) -> bytes:
    return tlv(SEQUENCE, encode_int(version) + tlv(OCTET_STRING, community) + pdu)


# ---------------------------------------------------------------------------------------------- decode


def read_tlv(buf: bytes, pos: int, limit: int | None = None) -> tuple[int, int, int]:
    """(tag, content start, content end) of the TLV at ``pos``; raises BerError if it overruns."""
    limit = len(buf) if limit is None else limit
    if pos + 2 > limit:
        raise BerError(f"truncated header at byte {pos}")
    tag = buf[pos]
    n = buf[pos + 1]
    pos += 2
    if n & 0x80:
        size = n & 0x7F
        if size == 0 or size > 4:
            raise BerError(f"unsupported length form at byte {pos - 1}")
        n = int.from_bytes(buf[pos : pos + size], "big")
        pos += size
    end = pos + n
    if end > limit:
        raise BerError(f"length {n} at byte {pos} overruns the enclosing {limit - pos} bytes")
    return tag, pos, end


def expect(buf: bytes, pos: int, tag: int, limit: int, what: str) -> tuple[int, int]:
    got, start, end = read_tlv(buf, pos, limit)
    if got != tag:
        raise BerError(f"expected {what} (tag 0x{tag:02x}) at byte {pos}, got tag 0x{got:02x}")
    return start, end


def read_int(buf: bytes, pos: int, limit: int, what: str) -> tuple[int, int]:
    start, end = expect(buf, pos, INTEGER, limit, what)
    if start == end:
        raise BerError(f"empty INTEGER for {what} at byte {pos}")
    return int.from_bytes(buf[start:end], "big", signed=True), end


def read_octets(buf: bytes, pos: int, limit: int, what: str) -> tuple[bytes, int]:
    start, end = expect(buf, pos, OCTET_STRING, limit, what)
    return buf[start:end], end


def decode_varbinds(buf: bytes, pos: int, end: int) -> list[VarBind]:
    """Decode a VarBindList's content in one pass (the hot loop of the poller)."""
    out: list[VarBind] = []
    append = out.append
    from_bytes = int.from_bytes
    try:
        while pos < end:
            if buf[pos] != SEQUENCE:
                raise BerError(f"expected VarBind SEQUENCE at byte {pos}")
            n = buf[pos + 1]
            p = pos + 2
            if n & 0x80:
                size = n & 0x7F
                n = from_bytes(buf[p : p + size], "big")
                p += size
            vb_end = p + n
            if buf[p] != OBJECT_IDENTIFIER:
                raise BerError(f"expected OID at byte {p}")
            n = buf[p + 1]
            p += 2
            if n & 0x80:
                size = n & 0x7F
                n = from_bytes(buf[p : p + size], "big")
                p += size
            oid = buf[p : p + n]
            p += n
            tag = buf[p]
            n = buf[p + 1]
            p += 2
            if n & 0x80:
                size = n & 0x7F
                n = from_bytes(buf[p : p + size], "big")
                p += size
            if p + n != vb_end or vb_end > end:
                raise BerError(f"VarBind lengths disagree at byte {pos}")
            if tag in _UNSIGNED_TAGS:
                value: Any = from_bytes(buf[p:vb_end], "big")
            elif tag == INTEGER:
                value = from_bytes(buf[p:vb_end], "big", signed=True)
            elif tag in _BYTES_TAGS:
                value = buf[p:vb_end]
            elif tag == OBJECT_IDENTIFIER:
                value = oid_str(buf[p:vb_end])
            else:
                value = None  # NULL, noSuchObject, noSuchInstance, endOfMibView: the tag says which
            append((oid, tag, value))
            pos = vb_end
    except IndexError:
        raise BerError(f"truncated VarBind at byte {pos}") from None
    if pos != end:
        raise BerError("VarBindList overruns its length")
    return out


_UNSIGNED_TAGS = frozenset((COUNTER32, GAUGE32, TIMETICKS, COUNTER64))
_BYTES_TAGS = frozenset((OCTET_STRING, IP_ADDRESS, OPAQUE))


def subidentifiers(content: bytes) -> list[int]:
    """Base-128 sub-identifiers as encoded (no split of the first one): table index suffixes."""
    subs: list[int] = []
    acc = 0
    for byte in content:
        acc = (acc << 7) | (byte & 0x7F)
        if not byte & 0x80:
            subs.append(acc)
            acc = 0
    if content and content[-1] & 0x80:
        raise BerError("OID ends inside a sub-identifier")
    return subs


def suffix_str(content: bytes) -> str:
    return ".".join(map(str, subidentifiers(content)))


def oid_tuple(content: bytes) -> tuple[int, ...]:
    """Sub-identifiers of OID content bytes."""
    if not content:
        raise BerError("empty OID")
    subs = subidentifiers(content)
    first = subs[0]
    head = (0, first) if first < 40 else (1, first - 40) if first < 80 else (2, first - 80)
    return (*head, *subs[1:])


def oid_str(content: bytes) -> str:
    return ".".join(map(str, oid_tuple(content)))


def value_text(tag: int, value: Any) -> str:
    """A var-bind value as text for events: strings decoded when printable, else hex."""
    if tag in (OCTET_STRING, OPAQUE):
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            return value.hex(":")
        return text if text.isprintable() else value.hex(":")
    if tag == IP_ADDRESS:
        return ".".join(str(b) for b in value) if len(value) == 4 else value.hex(":")
    if value is None:
        return TYPE_NAMES.get(tag, f"tag-0x{tag:02x}")
    return str(value)


# ---------------------------------------------------------------------------------------------- messages


@dataclass(slots=True)
class Pdu:
    """A decoded PDU. For GETBULK ``error_status``/``error_index`` hold non-repeaters/max-repetitions."""

    tag: int
    request_id: int = 0
    error_status: int = 0
    error_index: int = 0
    varbinds: list[VarBind] = field(default_factory=list)
    varbinds_raw: bytes = b""  # the encoded VarBindList, echoed back in an inform's response
    # SNMPv1 trap fields (RFC 1157): converted to a v2 trap OID by the trap receiver
    enterprise: str = ""
    agent_addr: str = ""
    generic_trap: int = -1
    specific_trap: int = 0
    timestamp: int = 0


@dataclass(slots=True)
class Message:
    """A decoded SNMP message; for v3 the security fields are filled and ``pdu`` is None until decrypted."""

    version: int
    community: bytes = b""
    pdu: Pdu | None = None
    msg_id: int = 0
    max_size: int = 0
    flags: int = 0
    security_model: int = 0
    engine_id: bytes = b""
    engine_boots: int = 0
    engine_time: int = 0
    user_name: bytes = b""
    auth_params: bytes = b""
    auth_offset: int = -1  # where the auth parameters sit in the whole message (for the HMAC check)
    priv_params: bytes = b""
    encrypted: bytes | None = None
    context_engine_id: bytes = b""
    context_name: bytes = b""


def decode_pdu(buf: bytes, pos: int, limit: int) -> Pdu:
    tag, start, end = read_tlv(buf, pos, limit)
    if tag not in PDU_NAMES:
        raise BerError(f"unknown PDU type 0x{tag:02x}")
    pdu = Pdu(tag)
    p = start
    if tag == TRAP_V1:
        ent_start, p = expect(buf, p, OBJECT_IDENTIFIER, end, "enterprise")
        pdu.enterprise = oid_str(buf[ent_start:p])
        addr, p = _read_tagged(buf, p, end, IP_ADDRESS, "agent-addr")
        pdu.agent_addr = ".".join(str(b) for b in addr)
        pdu.generic_trap, p = read_int(buf, p, end, "generic-trap")
        pdu.specific_trap, p = read_int(buf, p, end, "specific-trap")
        ts, p = _read_tagged(buf, p, end, TIMETICKS, "time-stamp")
        pdu.timestamp = int.from_bytes(ts, "big")
    else:
        pdu.request_id, p = read_int(buf, p, end, "request-id")
        pdu.error_status, p = read_int(buf, p, end, "error-status")
        pdu.error_index, p = read_int(buf, p, end, "error-index")
    vb_start, vb_end = expect(buf, p, SEQUENCE, end, "VarBindList")
    pdu.varbinds = decode_varbinds(buf, vb_start, vb_end)
    pdu.varbinds_raw = buf[p:vb_end]
    return pdu


def _read_tagged(buf: bytes, pos: int, limit: int, tag: int, what: str) -> tuple[bytes, int]:
    start, end = expect(buf, pos, tag, limit, what)
    return buf[start:end], end


def decode_scoped_pdu(buf: bytes, msg: Message) -> None:
    """Fill ``msg`` from a plaintext ScopedPDU (``buf`` holds just the ScopedPDU)."""
    start, end = expect(buf, 0, SEQUENCE, len(buf), "ScopedPDU")
    msg.context_engine_id, p = read_octets(buf, start, end, "contextEngineID")
    msg.context_name, p = read_octets(buf, p, end, "contextName")
    msg.pdu = decode_pdu(buf, p, end)


def decode_message(buf: bytes) -> Message:
    """Decode a whole SNMP message (v1, v2c or v3); raises :class:`BerError` when it is not one."""
    start, end = expect(buf, 0, SEQUENCE, len(buf), "Message")
    if end != len(buf):
        raise BerError(f"{len(buf) - end} trailing bytes after the message")
    version, p = read_int(buf, start, end, "version")
    if version in (V1, V2C):
        msg = Message(version)
        msg.community, p = read_octets(buf, p, end, "community")
        msg.pdu = decode_pdu(buf, p, end)
        return msg
    if version != V3:
        raise BerError(f"unsupported SNMP version {version}")
    msg = Message(V3)
    g_start, g_end = expect(buf, p, SEQUENCE, end, "msgGlobalData")
    msg.msg_id, q = read_int(buf, g_start, g_end, "msgID")
    msg.max_size, q = read_int(buf, q, g_end, "msgMaxSize")
    flags, q = read_octets(buf, q, g_end, "msgFlags")
    if len(flags) != 1:
        raise BerError("msgFlags must be one octet")
    msg.flags = flags[0]
    msg.security_model, q = read_int(buf, q, g_end, "msgSecurityModel")
    sp_start, sp_end = expect(buf, g_end, OCTET_STRING, end, "msgSecurityParameters")
    if msg.security_model == 3:
        u_start, u_end = expect(buf, sp_start, SEQUENCE, sp_end, "UsmSecurityParameters")
        msg.engine_id, q = read_octets(buf, u_start, u_end, "msgAuthoritativeEngineID")
        msg.engine_boots, q = read_int(buf, q, u_end, "msgAuthoritativeEngineBoots")
        msg.engine_time, q = read_int(buf, q, u_end, "msgAuthoritativeEngineTime")
        msg.user_name, q = read_octets(buf, q, u_end, "msgUserName")
        a_start, q = expect(buf, q, OCTET_STRING, u_end, "msgAuthenticationParameters")
        msg.auth_params, msg.auth_offset = buf[a_start:q], a_start
        msg.priv_params, q = read_octets(buf, q, u_end, "msgPrivacyParameters")
    data_tag = buf[sp_end] if sp_end < end else -1
    if data_tag == OCTET_STRING:
        msg.encrypted, _ = read_octets(buf, sp_end, end, "encryptedPDU")
    else:
        _s_start, s_end = expect(buf, sp_end, SEQUENCE, end, "ScopedPDU")
        decode_scoped_pdu(buf[sp_end:s_end], msg)
    return msg


__all__ = [
    "COUNTER32",
    "COUNTER64",
    "END_OF_MIB_VIEW",
    "GAUGE32",
    "GET",
    "GET_BULK",
    "INFORM",
    "INTEGER",
    "IP_ADDRESS",
    "NO_SUCH_INSTANCE",
    "NO_SUCH_OBJECT",
    "NULL",
    "OBJECT_IDENTIFIER",
    "OCTET_STRING",
    "PDU_NAMES",
    "REPORT",
    "RESPONSE",
    "SEQUENCE",
    "TIMETICKS",
    "TRAP_V1",
    "TRAP_V2",
    "TYPE_NAMES",
    "V1",
    "V2C",
    "V3",
    "BerError",
    "Message",
    "Pdu",
    "VarBind",
    "decode_message",
    "decode_pdu",
    "decode_scoped_pdu",
    "decode_varbinds",
    "encode_community_message",
    "encode_int",
    "encode_octets",
    "encode_pdu",
    "encode_unsigned",
    "encode_varbind",
    "length_bytes",
    "null_varbinds",
    "oid_content",
    "oid_str",
    "oid_tuple",
    "read_tlv",
    "subidentifiers",
    "suffix_str",
    "tlv",
    "value_text",
]
