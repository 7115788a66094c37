"""Frame codec: round trips, corruption, resynchronisation, bounded buffers (docs/protocol.md §1)."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from cobs import cobs
from hypothesis import given, settings
from hypothesis import strategies as st

from chiploop.errors import LinkError
from chiploop.firmware_bridge.protocol import (
    HEADER,
    MAX_ENCODED,
    MAX_PAYLOAD,
    ConfigNet,
    Done,
    Frame,
    FrameDecoder,
    HelloAck,
    Msg,
    ProtocolError,
    decode_frame,
    encode_frame,
    nak_text,
    weights_crc,
)

u8, u16 = st.integers(0, 0xFF), st.integers(0, 0xFFFF)
frames = st.builds(
    Frame,
    type=u8,
    payload=st.binary(max_size=MAX_PAYLOAD),
    flags=u8,
    channel=u8,
    seq=u16,
    ref=u16,
    version=st.integers(0x10, 0x1F),
)


@given(frames)
def test_frame_round_trip(frame: Frame) -> None:
    wire = encode_frame(frame)
    assert wire.endswith(b"\x00") and b"\x00" not in wire[:-1]
    assert len(wire) <= MAX_ENCODED + 1
    assert decode_frame(wire[:-1]) == frame


@given(st.lists(frames, min_size=1, max_size=8), st.integers(1, 300), st.binary(max_size=40))
def test_stream_of_frames_in_arbitrary_chunks_after_garbage(frame_list, chunk, garbage) -> None:
    wire = garbage + b"\x00" + b"".join(encode_frame(f) for f in frame_list)
    decoder = FrameDecoder()
    got = [f for i in range(0, len(wire), chunk) for f in decoder.feed(wire[i : i + chunk])]
    assert got == frame_list


def test_payload_over_the_bound_is_refused() -> None:
    with pytest.raises(ProtocolError, match="241 bytes, max 240"):
        encode_frame(Frame(Msg.PING, bytes(MAX_PAYLOAD + 1)))


def _mutate(wire: bytes, rng: np.random.Generator) -> bytes:
    """1-4 random flips, drops, duplications, insertions, truncations or zeroed bytes."""
    b = bytearray(wire)
    for _ in range(rng.integers(1, 5)):
        op = rng.integers(6)
        i = int(rng.integers(max(1, len(b))))
        if op == 0 and b:
            b[i] ^= 1 << int(rng.integers(8))
        elif op == 1 and b:
            del b[i]
        elif op == 2 and b:
            b[i:i] = b[i : i + 1]
        elif op == 3:
            b[i:i] = rng.integers(0, 256, int(rng.integers(1, 300)), dtype=np.uint8).tobytes()
        elif op == 4:
            del b[i:]
        elif b:
            b[i] = 0
    return bytes(b)


MUTANTS_PER_FRAME = 20


@settings(max_examples=500, deadline=None)
@given(frames, st.integers(0, 2**32 - 1))
def test_mutated_frames_only_ever_raise_protocol_errors_and_stay_bounded(frame: Frame, seed: int) -> None:
    """500 hypothesis frames x 20 mutants = 10,000 damaged frames."""
    rng = np.random.default_rng(seed)
    decoder = FrameDecoder()
    for _ in range(MUTANTS_PER_FRAME):
        wire = _mutate(encode_frame(frame), rng)
        try:
            decode_frame(wire.rstrip(b"\x00"))
        except ProtocolError:
            pass
        for i in range(0, len(wire), 97):
            for got in decoder.feed(wire[i : i + 97]):
                assert isinstance(got, Frame) and len(got.payload) <= MAX_PAYLOAD
            assert len(decoder._buf) <= MAX_ENCODED
        assert decoder.feed(b"\x00" + encode_frame(frame))[-1] == frame  # resynchronised


def test_each_kind_of_bad_frame_is_dropped_and_counted() -> None:
    good = encode_frame(Frame(Msg.PING, b"hello"))
    raw = bytearray(cobs.decode(good[:-1]))
    bad_crc = raw.copy()
    bad_crc[11] ^= 0x40
    bad_len = raw[:-4]
    bad_len[8] += 1  # header says one byte more than there is
    bad_len += zlib.crc32(bytes(bad_len)).to_bytes(4, "little")
    v2 = raw[:-4]
    v2[0] = 0x20
    v2 += zlib.crc32(bytes(v2)).to_bytes(4, "little")
    stream = (
        b"\x05\x01\x00"  # cobs: code byte pointing past the end
        + cobs.encode(bytes(bad_crc)) + b"\x00"
        + cobs.encode(bytes(bad_len)) + b"\x00"
        + cobs.encode(bytes(v2)) + b"\x00"
        + b"\x07" * 1000 + b"\x00"  # over-long: no delimiter for 1000 bytes
        + good
    )  # fmt: skip
    decoder = FrameDecoder()
    assert decoder.feed(stream) == [Frame(Msg.PING, b"hello")]
    assert decoder.dropped == {"cobs": 1, "crc": 1, "len": 2, "version": 1}
    assert decoder.foreign[-1].version == 0x20
    for reason, frame in (("crc", bad_crc), ("len", bad_len), ("version", v2)):
        with pytest.raises(ProtocolError) as info:
            decode_frame(cobs.encode(bytes(frame)))
        assert info.value.reason == reason and isinstance(info.value, LinkError)


def test_byte_at_a_time_and_repeated_delimiters() -> None:
    frame = Frame(Msg.WRITE_WEIGHTS, bytes(range(256))[:240], seq=7)
    decoder = FrameDecoder()
    got = []
    for byte in b"\x00\x00\x00" + encode_frame(frame) + b"\x00\x00":
        got += decoder.feed(bytes([byte]))
    assert got == [frame] and decoder.n_dropped == 0


def test_max_frame_is_256_wire_bytes() -> None:
    wire = encode_frame(Frame(Msg.WRITE_WEIGHTS, b"\x01" * MAX_PAYLOAD))
    assert len(wire) == 256 and HEADER.size == 10


_RANGES = {"B": 0xFF, "H": 0xFFFF, "I": 0xFFFFFFFF}


def _fields(cls) -> st.SearchStrategy:  # noqa: ANN001 - a _Packed class
    return st.tuples(*(st.integers(0, _RANGES[c]) for c in cls.FORMAT.format.lstrip("<"))).map(
        lambda values: cls(*values)
    )


@given(_fields(HelloAck), _fields(ConfigNet), _fields(Done))
def test_fixed_payloads_round_trip(ack: HelloAck, cfg: ConfigNet, done: Done) -> None:
    assert HelloAck.unpack(ack.pack()) == ack
    assert ConfigNet.unpack(cfg.pack() + b"appended by a later minor") == cfg
    assert Done.unpack(done.pack()) == done
    with pytest.raises(ProtocolError, match="HelloAck needs 40 bytes, got 39"):
        HelloAck.unpack(ack.pack()[:-1])


def test_nak_text_names_code_type_and_detail() -> None:
    assert nak_text(bytes([7, Msg.COMMIT]) + b"blob crc 0x1") == "NAK CRC_MISMATCH for COMMIT: blob crc 0x1"
    assert nak_text(bytes([99, 0xEE])) == "NAK code 99 for type 0xee"


def test_weights_crc_is_over_int32_little_endian_blob() -> None:
    a, b = np.arange(6).reshape(2, 3), -np.arange(4).reshape(2, 2)
    expected = zlib.crc32(a.astype("<i4").tobytes() + b.astype("<i4").tobytes())
    assert weights_crc([a.astype(np.int8), b], fixed=True) == expected
