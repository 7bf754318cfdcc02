"""The SNMP BER codec and USM primitives: round trips, known vectors, garbage."""

from __future__ import annotations

import pytest
from pyasn1.type.univ import OctetString
from pysnmp.proto.secmod.rfc3414 import localkey

from collectors.snmp_usm import (
    EngineState,
    SaltCounter,
    UsmError,
    UsmUser,
    check_and_decrypt,
    encode_v3,
    localize_key,
    password_to_key,
)
from collectors.snmp_wire import (
    COUNTER32,
    COUNTER64,
    END_OF_MIB_VIEW,
    GET_BULK,
    INTEGER,
    OCTET_STRING,
    RESPONSE,
    SEQUENCE,
    TIMETICKS,
    V2C,
    BerError,
    decode_message,
    encode_community_message,
    encode_pdu,
    encode_varbind,
    null_varbinds,
    oid_content,
    oid_str,
    tlv,
)


@pytest.mark.parametrize(
    "oid",
    [
        "1.3.6.1.2.1.2.2.1.10.1",
        "1.3.6.1.4.1.2636.3.1.13.1.5.9.1.0.0",
        "2.999.1",
        "0.0",
        "1.3.6.1.2.1.31.1.1.1.6.4294967295",
    ],
)
def test_oid_round_trip(oid: str) -> None:
    assert oid_str(oid_content(oid)) == oid


def test_varbind_values_round_trip() -> None:
    varbinds = [
        (oid_content("1.3.6.1.2.1.2.2.1.10.1"), COUNTER32, 4294967295),
        (oid_content("1.3.6.1.2.1.31.1.1.1.6.1"), COUNTER64, 2**64 - 1),
        (oid_content("1.3.6.1.2.1.2.2.1.8.1"), INTEGER, -5),
        (oid_content("1.3.6.1.2.1.1.3.0"), TIMETICKS, 123456),
        (oid_content("1.3.6.1.2.1.31.1.1.1.1.1"), OCTET_STRING, b"ge-0/0/0"),
        (oid_content("1.3.6.1.2.1.31.1.1.1.1.2"), END_OF_MIB_VIEW, None),
    ]
    body = b"".join(encode_varbind(o, t, v) for o, t, v in varbinds)
    message = encode_community_message(V2C, b"public", encode_pdu(RESPONSE, 77, 0, 0, tlv(SEQUENCE, body)))
    decoded = decode_message(message)
    assert decoded.version == V2C and decoded.community == b"public"
    assert decoded.pdu is not None and decoded.pdu.request_id == 77
    assert decoded.pdu.varbinds == varbinds


def test_getbulk_request_is_what_pysnmp_decodes() -> None:
    from pyasn1.codec.ber import decoder
    from pysnmp.proto import api

    request = encode_community_message(
        V2C, b"c", encode_pdu(GET_BULK, 9, 1, 25, null_varbinds([oid_content("1.3.6.1.2.1.2.2.1.10")]))
    )
    proto = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]
    msg, rest = decoder.decode(request, asn1Spec=proto.Message())
    assert not rest
    pdu = proto.apiMessage.get_pdu(msg)
    assert int(proto.apiBulkPDU.get_max_repetitions(pdu)) == 25
    assert int(proto.apiBulkPDU.get_non_repeaters(pdu)) == 1
    assert [str(name) for name, _ in proto.apiBulkPDU.get_varbinds(pdu)] == ["1.3.6.1.2.1.2.2.1.10"]


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"\x30",
        b"\x30\x05garbage",
        b"\x30\x03\x02\x01\x09",
        b"\x31\x00",
        b"\x30\x84\xff\xff\xff\xff\x02",
        b"\x00" * 40,
    ],
)
def test_garbage_raises_ber_error(garbage: bytes) -> None:
    with pytest.raises(BerError):
        decode_message(garbage)


def test_rfc3414_key_localization_vectors() -> None:
    engine = bytes.fromhex("000000000000000000000002")
    assert (
        localize_key("md5", password_to_key("md5", b"maplesyrup"), engine).hex() == "526f5eed9fcce26f8964c2930787d82b"
    )
    assert (
        localize_key("sha1", password_to_key("sha1", b"maplesyrup"), engine).hex()
        == "6695febc9288e36282235fc7151f128497b38f3f"
    )


def test_sha2_keys_agree_with_pysnmp() -> None:
    import hashlib

    engine = bytes.fromhex("80001f8880e9630000d61ff449")
    for name in ("sha224", "sha256", "sha384", "sha512"):
        ours = localize_key(name, password_to_key(name, b"ossbss-auth-secret"), engine)
        hash_func = getattr(hashlib, name)
        theirs = localkey.password_to_key(b"ossbss-auth-secret", OctetString(engine), hash_func)
        assert ours == bytes(theirs), name


def test_v3_auth_priv_round_trip_and_tamper_detection() -> None:
    user = UsmUser.create("ossbss", "SHA256", "authpass123", "AES", "privpass123")
    engine = EngineState()
    engine.update(b"\x80\x00\x1f\x88\x04test", 3, 1000)
    pdu = encode_pdu(GET_BULK, 5, 0, 10, null_varbinds([oid_content("1.3.6.1.2.1.2.2.1.10")]))
    scoped = tlv(SEQUENCE, tlv(OCTET_STRING, engine.engine_id) + tlv(OCTET_STRING, b"") + pdu)
    wire = encode_v3(user, engine, 5, scoped, SaltCounter())
    msg = decode_message(wire)
    assert msg.encrypted is not None and msg.pdu is None
    check_and_decrypt(wire, msg, user)
    assert msg.pdu is not None and msg.pdu.tag == GET_BULK and msg.pdu.request_id == 5
    tampered = bytearray(wire)
    tampered[-3] ^= 0x01
    msg = decode_message(bytes(tampered))
    with pytest.raises(UsmError, match="wrong digest"):
        check_and_decrypt(bytes(tampered), msg, user)
    wrong = UsmUser.create("ossbss", "SHA256", "authpass123", "AES", "privpassXYZ")
    msg = decode_message(wire)
    with pytest.raises(UsmError):
        check_and_decrypt(wire, msg, wrong)


def test_usm_user_rejects_weak_or_unsupported_settings() -> None:
    with pytest.raises(UsmError, match="8 characters"):
        UsmUser.create("u", "SHA256", "short", "AES", "privpass123")
    with pytest.raises(UsmError, match="unsupported privacy"):
        UsmUser.create("u", "SHA256", "authpass123", "DES", "privpass123")
    with pytest.raises(UsmError, match="key extension"):
        UsmUser.create("u", "SHA", "authpass123", "AES256", "privpass123")
