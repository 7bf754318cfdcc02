"""Wire codec: round trips, validation reasons, oversized and binary payloads, schema versions."""

from __future__ import annotations

import base64
from decimal import Decimal

import pytest

from models import (
    DeadLetter,
    RatedUsage,
    RecordCodec,
    TelemetrySample,
    UsageRecord,
    dead_letter_for,
    decode_batch,
    encode,
)
from models.codec import MAX_RECORD_BYTES
from models.records import _COUNTER_FIELDS


def usage(**overrides):
    fields = dict(id="u1", account="ACC-1", service="data", start_ms=1_000, end_ms=2_000, bytes_up=5, bytes_down=7)
    fields.update(overrides)
    return fields


def test_round_trip_keeps_money_exact():
    rated = RatedUsage(
        id="u1",
        account="A",
        service="data",
        start_ms=1,
        end_ms=2,
        quantity=Decimal("1.000000001"),
        unit="GB",
        amount=Decimal("0.500001"),
        currency="EUR",
        plan="p",
    )
    wire = encode(rated)
    assert b'"amount":"0.500001"' in wire  # a string, never a float
    assert RecordCodec(RatedUsage).decode(wire) == rated


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "malformed JSON"),
        (b'{"id": "x", "service": "data", "start_ms": 1, "end_ms": 2}', "missing required field `account`"),
        (encode(UsageRecord(**usage())).replace(b'"bytes_up":5', b'"bytes_up":-5'), "`$.bytes_up`"),
        (encode(UsageRecord(**usage())).replace(b'"bytes_up":5', b'"bytes_up":"5"'), "Expected `int`"),
        (b'{"id":"u1","account":"A","service":"s","start_ms":9,"end_ms":2}', "end_ms is before start_ms"),
        (b'{"id":"u1","account":"A","service":"s","start_ms":1,"end_ms":2,"bytes_up":NaN}', "malformed JSON"),
        (
            b'{"id":"u1","account":"A","service":"s","start_ms":1,"end_ms":2,"bytes_up":1e400}',
            "out of range - at `$.bytes_up`",
        ),
        (b'{"id":"","account":"A","service":"s","start_ms":1,"end_ms":2}', "`$.id`"),
        (
            b'{"id":"u","account":"A","service":"s","start_ms":99999999999999999,"end_ms":99999999999999999}',
            "`$.start_ms`",
        ),
        (
            b'{"id":"u","v":9,"account":"A","service":"s","start_ms":1,"end_ms":2}',
            "unsupported schema version 9",
        ),
        (b"null", "Expected `object`"),
    ],
)
def test_invalid_usage_is_refused_with_its_reason(payload, reason):
    records, kept, failures = decode_batch(UsageRecord, [payload])
    assert records == [] and kept == []
    assert len(failures) == 1 and reason in failures[0].reason


def test_oversized_message_is_refused_before_decoding():
    big = b'{"id": "' + b"x" * (MAX_RECORD_BYTES + 1) + b'"}'
    with pytest.raises(ValueError, match="oversized"):
        RecordCodec(UsageRecord).decode(big)


@pytest.mark.parametrize("name", _COUNTER_FIELDS)
def test_every_counter_above_64_bits_is_refused_and_named(name):
    assert len(_COUNTER_FIELDS) == 10  # octets, unicast, non-unicast packets, errors, discards: in and out
    prefix = b'{"id":"s","device":"d","if_index":1,"ts_ms":1,'
    with pytest.raises(ValueError, match=f"{name} 18446744073709551616 exceeds a 64-bit counter"):
        RecordCodec(TelemetrySample).decode(prefix + f'"{name}":18446744073709551616}}'.encode())
    top = RecordCodec(TelemetrySample).decode(prefix + f'"{name}":18446744073709551615}}'.encode())
    assert getattr(top, name) == 2**64 - 1


def test_batch_keeps_good_records_and_positions():
    good = encode(UsageRecord(**usage()))
    records, kept, failures = decode_batch(UsageRecord, [good, b"garbage", good])
    assert kept == [0, 2] and [f.index for f in failures] == [1]
    assert records[0].account == "ACC-1"


def test_dead_letter_keeps_binary_payload_lossless():
    raw = b"\xff\xfe\x00garbage"
    dl = dead_letter_for(raw, topic="t", stage="s", reason="bad", partition=2, offset=41)
    assert dl.payload_encoding == "base64" and base64.b64decode(dl.payload) == raw
    assert dl.id == "t/2/41/s"
    assert RecordCodec(DeadLetter).decode(encode(dl)) == dl


def test_dead_letter_without_offset_has_stable_id():
    a = dead_letter_for(b"x", topic="file:u.csv", stage="ingest", reason="line 3: bad")
    b = dead_letter_for(b"x", topic="file:u.csv", stage="ingest", reason="line 3: bad")
    assert a.id == b.id and a.payload == "x"


def test_dead_letter_of_a_huge_payload_is_truncated_and_says_so():
    from models.codec import MAX_DEAD_LETTER_PAYLOAD, codec_for

    raw = b"x" * (MAX_DEAD_LETTER_PAYLOAD * 3)
    dl = dead_letter_for(raw, topic="t", stage="s", reason="oversized message", partition=0, offset=7)
    assert len(dl.payload) == MAX_DEAD_LETTER_PAYLOAD
    assert f"of {len(raw)} bytes" in dl.reason and dl.reason.startswith("oversized message")
    assert codec_for(DeadLetter).decode(encode(dl)) == dl


def test_batched_sample_message_keeps_good_elements_and_reports_bad_ones():
    from models.codec import codec_for, encode_many

    good = [TelemetrySample(id=f"d/{i}/1", device="d", if_index=i, ts_ms=1, in_octets=i) for i in range(1, 4)]
    wire = encode_many(good)
    assert wire.startswith(b"[")
    codec = codec_for(TelemetrySample)
    samples, bad = codec.decode_message(wire)
    assert samples == good and bad == []
    broken = wire[:-1] + b',{"id":"x","device":"d","if_index":-1,"ts_ms":1}]'
    samples, bad = codec.decode_message(broken)
    assert samples == good
    assert len(bad) == 1 and bad[0].element == 3 and "`$.if_index`" in bad[0].reason
    assert bad[0].payload == b'{"id":"x","device":"d","if_index":-1,"ts_ms":1}'
    # A single (unbatched) sample is still accepted, and a broken array is refused whole.
    assert codec.decode_message(encode(good[0]))[0] == [good[0]]
    with pytest.raises(ValueError, match="malformed JSON"):
        codec.decode_message(b"[{},")
    _, kept, failures = codec.decode_batch([broken, b"nope"])
    assert kept == [0, 0, 0] and [(f.index, f.element) for f in failures] == [(0, 3), (1, -1)]


def test_element_dead_letters_have_distinct_ids():
    a = dead_letter_for(b"{}", topic="t", stage="s", reason="r", partition=1, offset=2, element=0)
    b = dead_letter_for(b"{}", topic="t", stage="s", reason="r", partition=1, offset=2, element=1)
    assert a.id != b.id and a.id == "t/1/2/s/0"
