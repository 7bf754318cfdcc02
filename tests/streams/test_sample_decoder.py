"""The one-pass decode of a batched message gives what decoding it element by element gives, good input or bad."""

from __future__ import annotations

import re

import pytest

from models.codec import MAX_RECORD_BYTES, RecordCodec, codec_for, encode, encode_many, unchecked_struct
from models.records import TelemetrySample


def _poll(n: int, name: str = "ge-0/0/0") -> list[TelemetrySample]:
    return [
        TelemetrySample(
            id=TelemetrySample.make_id("r1", i, 1_700_000_000_000),
            device="r1",
            if_index=i,
            ts_ms=1_700_000_000_000,
            if_name=name,
            in_octets=i * 1000,
            out_octets=2**64 - 1,
        )
        for i in range(n)
    ]


def _large() -> bytes:
    value = encode_many(_poll(2000))
    assert len(value) > MAX_RECORD_BYTES  # larger than one record may be: the case this decoder is for
    return value


def _with_element(raw: bytes) -> bytes:
    value = _large()
    return value[:-1] + b"," + raw + b"]"


CASES = {
    "small poll": encode_many(_poll(3)),
    "large poll": _large(),
    "one record": encode(_poll(1)[0]),
    "large poll, one element invalid": _with_element(b'{"id":"x","device":"r1","if_index":-1,"ts_ms":5}'),
    "large poll, one counter past 64 bits": _with_element(
        b'{"id":"x","device":"r1","if_index":1,"ts_ms":5,"in_octets":18446744073709551616}'
    ),
    "large poll, one element too big": _with_element(
        encode(_poll(1, name="x" * 250)[0]).replace(b'"x', b'"' + b"y" * MAX_RECORD_BYTES)
    ),
    "large poll, newer schema": _with_element(b'{"id":"x","v":99,"device":"r1","if_index":1,"ts_ms":5}'),
    "malformed": _large()[:-10],
    "null": None,
}


@pytest.mark.parametrize("name", list(CASES))
def test_decoder_agrees_with_the_codec(name):
    codec = codec_for(TelemetrySample)
    value = CASES[name]
    try:
        batched = value is not None and value[:1] == b"["
        want = codec.decode_elements(value) if batched else ([codec.decode(value)], [])
    except ValueError as exc:
        with pytest.raises(ValueError, match=re.escape(str(exc))):
            codec.decode_message(value)
        return
    assert codec.decode_message(value) == want


# The worker decodes samples without TelemetrySample.__post_init__ (models.codec.unchecked_struct) and lets
# apply_batch refuse a counter past 64 bits; everything else must be what the checked decoder gives.
_unchecked = RecordCodec(unchecked_struct(TelemetrySample), batched=True)  # type: ignore[type-var]


@pytest.mark.parametrize("name", list(CASES))
def test_the_unchecked_decoder_refuses_what_the_codec_refuses_but_the_counter_bound(name):
    codec = codec_for(TelemetrySample)
    value = CASES[name]
    try:
        want_records, want_failures = codec.decode_message(value)
    except ValueError as exc:
        with pytest.raises(ValueError, match=re.escape(str(exc))):
            _unchecked.decode_message(value)
        return
    records, failures = _unchecked.decode_message(value)
    # Each sample encodes to the same bytes (same fields, order and omitted defaults) as the checked one.
    assert [encode(r) for r in records if r.id != "x" or "64 bits" not in name] == [encode(r) for r in want_records]
    if "64 bits" in name:
        [failure] = want_failures
        reason = "invalid TelemetrySample: in_octets 18446744073709551616 exceeds a 64-bit counter"
        assert failure.reason.endswith(reason)
        assert failures == [] and records[-1].in_octets == 2**64
    else:
        assert failures == want_failures
