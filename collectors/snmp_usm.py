"""SNMPv3 User-based Security Model (RFC 3414, RFC 7860 SHA-2, RFC 3826 AES): keys, HMAC, AES-CFB.

Keys are derived once per (user, engine ID) and cached: password -> key costs a megabyte of hashing.
AES-192/256 are accepted only when the authentication hash is long enough to supply the whole key
(then the Blumenthal and Reeder key-extension drafts agree); DES is not supported here.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

try:  # CFB moved to the "decrepit" namespace in cryptography 47+; SNMP's AES needs it
    from cryptography.hazmat.decrepit.ciphers.modes import CFB
except ImportError:  # pragma: no cover - older cryptography
    from cryptography.hazmat.primitives.ciphers.modes import CFB

from collectors.snmp_wire import (
    OCTET_STRING,
    SEQUENCE,
    V3,
    BerError,
    Message,
    decode_scoped_pdu,
    encode_int,
    oid_str,
    read_tlv,
    tlv,
)


@dataclass(frozen=True)
class AuthProtocol:
    name: str
    hash_name: str
    mac_len: int  # octets of the truncated HMAC carried in msgAuthenticationParameters


@dataclass(frozen=True)
class PrivProtocol:
    name: str
    key_len: int


AUTH_PROTOCOLS = {
    "MD5": AuthProtocol("MD5", "md5", 12),
    "SHA": AuthProtocol("SHA", "sha1", 12),
    "SHA224": AuthProtocol("SHA224", "sha224", 16),
    "SHA256": AuthProtocol("SHA256", "sha256", 24),
    "SHA384": AuthProtocol("SHA384", "sha384", 32),
    "SHA512": AuthProtocol("SHA512", "sha512", 48),
}
PRIV_PROTOCOLS = {
    "AES": PrivProtocol("AES", 16),
    "AES192": PrivProtocol("AES192", 24),
    "AES256": PrivProtocol("AES256", 32),
}
_ALIASES = {
    "SHA1": "SHA",
    "SHA-1": "SHA",
    "AES128": "AES",
    "AES-128": "AES",
    "AES-192": "AES192",
    "AES-256": "AES256",
}

# usmStats counters reported by an agent, by OID, with what they mean for us.
USM_REPORTS = {
    "1.3.6.1.6.3.15.1.1.1.0": "unsupported security level",
    "1.3.6.1.6.3.15.1.1.2.0": "not in time window",
    "1.3.6.1.6.3.15.1.1.3.0": "unknown user name",
    "1.3.6.1.6.3.15.1.1.4.0": "unknown engine ID",
    "1.3.6.1.6.3.15.1.1.5.0": "wrong digest (authentication key mismatch)",
    "1.3.6.1.6.3.15.1.1.6.0": "decryption error (privacy key mismatch)",
}

FLAG_AUTH, FLAG_PRIV, FLAG_REPORTABLE = 0x01, 0x02, 0x04


class UsmError(ValueError):
    """A v3 message failed a security check; ``reason`` says which."""


def protocol_name(name: str) -> str:
    key = name.upper().replace("_", "")
    return _ALIASES.get(key, key.replace("-", ""))


def password_to_key(hash_name: str, password: bytes) -> bytes:
    """RFC 3414 A.2 (generalised by RFC 7860): hash one megabyte of the repeated password."""
    if not password:
        raise UsmError("empty password")
    repeated = password * (1_048_576 // len(password) + 1)
    return hashlib.new(hash_name, repeated[:1_048_576]).digest()


def localize_key(hash_name: str, key: bytes, engine_id: bytes) -> bytes:
    return hashlib.new(hash_name, key + engine_id + key).digest()


@dataclass
class UsmUser:
    """A v3 user with its protocols and passwords; localized keys are cached per engine ID."""

    name: str
    auth: AuthProtocol | None = None
    priv: PrivProtocol | None = None
    auth_password: bytes = field(default=b"", repr=False)
    priv_password: bytes = field(default=b"", repr=False)
    _keys: dict[bytes, tuple[bytes, bytes]] = field(default_factory=dict, repr=False)
    _ku: tuple[bytes, bytes] | None = field(default=None, repr=False)

    @classmethod
    def create(
        cls,
        name: str,
        auth_proto: str = "",
        auth_password: str = "",
        priv_proto: str = "",
        priv_password: str = "",
    ) -> UsmUser:
        auth = AUTH_PROTOCOLS.get(protocol_name(auth_proto)) if auth_proto else None
        if auth_proto and auth is None:
            raise UsmError(f"unknown auth protocol {auth_proto!r} (known: {', '.join(AUTH_PROTOCOLS)})")
        priv = PRIV_PROTOCOLS.get(protocol_name(priv_proto)) if priv_proto else None
        if priv_proto and priv is None:
            raise UsmError(f"unsupported privacy protocol {priv_proto!r} (supported: {', '.join(PRIV_PROTOCOLS)})")
        if priv and not auth:
            raise UsmError("privacy needs an authentication protocol")
        if priv and auth and priv.key_len > hashlib.new(auth.hash_name).digest_size:
            raise UsmError(f"{priv.name} with {auth.name} needs key extension, which is not supported")
        if (auth and len(auth_password) < 8) or (priv and len(priv_password) < 8):
            raise UsmError("SNMPv3 passwords must be at least 8 characters")
        return cls(name, auth, priv, auth_password.encode(), priv_password.encode())

    @property
    def level_flags(self) -> int:
        return (FLAG_AUTH if self.auth else 0) | (FLAG_PRIV if self.priv else 0)

    def keys(self, engine_id: bytes) -> tuple[bytes, bytes]:
        """(auth key, priv key) localized to ``engine_id``."""
        cached = self._keys.get(engine_id)
        if cached is not None:
            return cached
        if self.auth is None:
            return b"", b""
        if self._ku is None:
            ku_priv = password_to_key(self.auth.hash_name, self.priv_password) if self.priv else b""
            self._ku = (password_to_key(self.auth.hash_name, self.auth_password), ku_priv)
        auth_key = localize_key(self.auth.hash_name, self._ku[0], engine_id)
        priv_key = b""
        if self.priv:
            priv_key = localize_key(self.auth.hash_name, self._ku[1], engine_id)[: self.priv.key_len]
        if len(self._keys) > 4096:
            self._keys.clear()  # bounded: trap senders with ever-new engine IDs cannot grow it forever
        self._keys[engine_id] = (auth_key, priv_key)
        return auth_key, priv_key


@dataclass
class EngineState:
    """What we know of an authoritative engine: its ID, boots and a clock offset."""

    engine_id: bytes = b""
    boots: int = 0
    time_base: float = 0.0  # monotonic time at which the engine's clock read zero

    @property
    def known(self) -> bool:
        return bool(self.engine_id)

    def time(self) -> int:
        return int(time.monotonic() - self.time_base) if self.engine_id else 0

    def update(self, engine_id: bytes, boots: int, engine_time: int) -> None:
        self.engine_id = engine_id
        self.boots = boots
        self.time_base = time.monotonic() - engine_time


class SaltCounter:
    """64-bit AES salt: a random start, then incremented per message (RFC 3826 3.1.2.1)."""

    def __init__(self) -> None:
        self.value = int.from_bytes(os.urandom(8), "big")

    def next(self) -> bytes:
        self.value = (self.value + 1) & 0xFFFFFFFFFFFFFFFF
        return self.value.to_bytes(8, "big")


def _aes(key: bytes, boots: int, engine_time: int, salt: bytes) -> Cipher[Any]:
    iv = boots.to_bytes(4, "big") + engine_time.to_bytes(4, "big") + salt
    return Cipher(algorithms.AES(key), CFB(iv))


def encode_v3(
    user: UsmUser,
    engine: EngineState,
    msg_id: int,
    scoped_pdu: bytes,
    salts: SaltCounter,
    *,
    flags: int | None = None,
    max_size: int = 65507,
    engine_time: int | None = None,
) -> bytes:
    """An SNMPv3 message, authenticated and encrypted as ``user``'s level allows (or ``flags`` says)."""
    if flags is None:
        flags = user.level_flags | FLAG_REPORTABLE
    auth_key, priv_key = user.keys(engine.engine_id) if flags & FLAG_AUTH else (b"", b"")
    etime = engine.time() if engine_time is None else engine_time
    priv_params = b""
    if flags & FLAG_PRIV and user.priv:
        priv_params = salts.next()
        encryptor = _aes(priv_key, engine.boots, etime, priv_params).encryptor()
        data = tlv(OCTET_STRING, encryptor.update(scoped_pdu) + encryptor.finalize())
    else:
        data = scoped_pdu
    mac_len = user.auth.mac_len if flags & FLAG_AUTH and user.auth else 0
    usm_head = (
        tlv(OCTET_STRING, engine.engine_id)
        + encode_int(engine.boots)
        + encode_int(etime)
        + tlv(OCTET_STRING, user.name.encode())
    )
    auth_field = tlv(OCTET_STRING, bytes(mac_len))
    usm_content = usm_head + auth_field + tlv(OCTET_STRING, priv_params)
    usm = tlv(SEQUENCE, usm_content)
    header = encode_int(V3) + tlv(
        SEQUENCE,
        encode_int(msg_id) + encode_int(max_size) + tlv(OCTET_STRING, bytes((flags,))) + encode_int(3),
    )
    sec = tlv(OCTET_STRING, usm)
    body = header + sec + data
    whole = tlv(SEQUENCE, body)
    if not mac_len or user.auth is None:
        return whole
    # where the zeroed MAC sits: every enclosing header, the fields before it, and its own 2-byte header
    offset = (len(whole) - len(body)) + len(header) + (len(sec) - len(usm)) + (len(usm) - len(usm_content))
    offset += len(usm_head) + 2
    mac = hmac.new(auth_key, whole, user.auth.hash_name).digest()[:mac_len]
    return whole[:offset] + mac + whole[offset + mac_len :]


def check_and_decrypt(buf: bytes, msg: Message, user: UsmUser) -> None:
    """Verify ``msg``'s HMAC and decrypt its ScopedPDU in place; raise :class:`UsmError` on failure."""
    needs_auth = bool(user.auth)
    if needs_auth and not msg.flags & FLAG_AUTH:
        raise UsmError("unsupported security level: message is not authenticated")
    if msg.flags & FLAG_AUTH:
        if user.auth is None:
            raise UsmError("unsupported security level: user has no authentication key")
        auth_key, priv_key = user.keys(msg.engine_id)
        if len(msg.auth_params) != user.auth.mac_len or msg.auth_offset < 0:
            raise UsmError("wrong digest length")
        zeroed = buf[: msg.auth_offset] + bytes(user.auth.mac_len) + buf[msg.auth_offset + user.auth.mac_len :]
        expected = hmac.new(auth_key, zeroed, user.auth.hash_name).digest()[: user.auth.mac_len]
        if not hmac.compare_digest(expected, msg.auth_params):
            raise UsmError("wrong digest (authentication key mismatch)")
        if msg.flags & FLAG_PRIV:
            if user.priv is None:
                raise UsmError("unsupported security level: user has no privacy key")
            if msg.encrypted is None or len(msg.priv_params) != 8:
                raise UsmError("decryption error: missing encrypted PDU or salt")
            decryptor = _aes(priv_key, msg.engine_boots, msg.engine_time, msg.priv_params).decryptor()
            plain = decryptor.update(msg.encrypted) + decryptor.finalize()
            try:
                decode_scoped_pdu(_trim_scoped(plain), msg)
            except BerError as exc:
                raise UsmError(f"decryption error: {exc}") from None
            msg.encrypted = None
    elif user.priv:
        raise UsmError("unsupported security level: message is not encrypted")
    if msg.pdu is None:
        raise UsmError("no ScopedPDU in the message")


def _trim_scoped(plain: bytes) -> bytes:
    """A decrypted ScopedPDU may carry padding after its SEQUENCE (block ciphers); keep the SEQUENCE."""
    _tag, _start, end = read_tlv(plain, 0)
    return plain[:end]


def report_reason(msg: Message) -> str:
    """What a REPORT PDU tells us, from its first var-bind's OID."""
    if msg.pdu is None or not msg.pdu.varbinds:
        return "empty report"
    oid = oid_str(msg.pdu.varbinds[0][0])
    return USM_REPORTS.get(oid, f"report {oid}")


__all__ = [
    "AUTH_PROTOCOLS",
    "FLAG_AUTH",
    "FLAG_PRIV",
    "FLAG_REPORTABLE",
    "PRIV_PROTOCOLS",
    "USM_REPORTS",
    "AuthProtocol",
    "EngineState",
    "PrivProtocol",
    "SaltCounter",
    "UsmError",
    "UsmUser",
    "check_and_decrypt",
    "encode_v3",
    "localize_key",
    "password_to_key",
    "protocol_name",
    "report_reason",
]
