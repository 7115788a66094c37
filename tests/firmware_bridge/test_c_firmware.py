"""The reference C firmware (firmware/): built with make, served on a pty, driven over the protocol.

It must agree with the Python side bit for bit: the codec with `cobs`/`zlib`, every response with the
board simulator, and the integer network with TwinChip under `arithmetic: fixed`.
"""

from __future__ import annotations

import ctypes
import struct
import subprocess
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import serial
from cobs import cobs
from hypothesis import given, settings
from hypothesis import strategies as st

from chiploop.chip.device_model import NeuronConstants
from chiploop.chip.network import NetworkSpec
from chiploop.chip.protocol import Recording
from chiploop.chip_profiles.model import Arithmetic, ChipProfile, Limits, Mismatch, Neuron, Noise, Weights
from chiploop.emulator.twin_chip import TwinChip
from chiploop.firmware_bridge.board_sim import Board
from chiploop.firmware_bridge.link import Link, NakError
from chiploop.firmware_bridge.protocol import (
    COMMIT,
    COUNTER_NAMES,
    COUNTERS,
    HELLO,
    INPUT_HEAD,
    NO_REF,
    OUTPUT_HEAD,
    PARAM_HEAD,
    READ_OUTPUT,
    READ_WEIGHTS,
    RUN,
    VERSION,
    WEIGHTS_HEAD,
    Cap,
    ConfigFlag,
    ConfigNet,
    ConfigRules,
    Done,
    DType,
    Flag,
    Frame,
    FrameDecoder,
    HelloAck,
    HelloFlag,
    Matrix,
    Msg,
    Nak,
    Vector,
    encode_frame,
    weights_crc,
)
from chiploop.firmware_bridge.relay import FaultRates, Relay
from chiploop.firmware_bridge.serial_chip import SerialChip

Ask = Callable[[Msg, bytes], tuple[int, bytes]]  # request -> (response type, payload); NAK -> (NAK, code)


# ---------------------------------------------------------------- build and serve


@pytest.fixture
def link(board_path: str) -> Iterator[Link]:
    with Link(board_path, timeout=0.5) as lnk:
        yield lnk


def firmware_ask(lnk: Link) -> Ask:
    def ask(mtype: Msg, payload: bytes = b"") -> tuple[int, bytes]:
        try:
            reply = lnk.request(mtype, payload, timeout=5.0 if mtype == Msg.RUN else None)
        except NakError as exc:
            return Msg.NAK, bytes([exc.code])
        return reply.type, reply.payload

    return ask


def simulator_ask(board: Board) -> Ask:
    decoder, seq = FrameDecoder(), [0]

    def ask(mtype: Msg, payload: bytes = b"") -> tuple[int, bytes]:
        seq[0] += 1
        (reply,) = decoder.feed(board.feed(encode_frame(Frame(mtype, payload, seq=seq[0]))))
        return (Msg.NAK, reply.payload[:1]) if reply.type == Msg.NAK else (reply.type, reply.payload)

    return ask


# ---------------------------------------------------------------- a minimal host driver


def ok(ask: Ask, mtype: Msg, payload: bytes = b"", expect: Msg = Msg.ACK) -> bytes:
    rtype, data = ask(mtype, payload)
    assert rtype == expect, f"{mtype.name}: expected {expect.name}, got {Msg(rtype).name} {data!r}"
    return data


def narrowest(values: np.ndarray) -> DType:
    lo, hi = (int(values.min()), int(values.max())) if values.size else (0, 0)
    for dtype in (DType.I8, DType.I16):
        info = np.iinfo(dtype.np)
        if info.min <= lo and hi <= info.max:
            return dtype
    return DType.I32


def upload(ask: Ask, weights: dict[Matrix, np.ndarray], generation: int) -> None:
    """WRITE_WEIGHTS every matrix in the narrowest dtype, then COMMIT with the blob's CRC."""
    for matrix, w in weights.items():
        flat = np.ascontiguousarray(w, dtype=np.int64).reshape(-1)
        dtype = narrowest(flat)
        per_frame = (240 - WEIGHTS_HEAD.size) // dtype.np.itemsize
        for off in range(0, flat.size, per_frame):
            data = flat[off : off + per_frame].astype(dtype.np).tobytes()
            ok(ask, Msg.WRITE_WEIGHTS, WEIGHTS_HEAD.pack(matrix, dtype, generation, off) + data)
    crc = weights_crc([weights[m] for m in sorted(weights)], fixed=True)
    ok(ask, Msg.COMMIT, COMMIT.pack(generation, crc))


def read_back(ask: Ask, matrix: Matrix, size: int, dtype: DType = DType.I32) -> np.ndarray:
    per_frame = (240 - WEIGHTS_HEAD.size) // dtype.np.itemsize
    parts = []
    for off in range(0, size, per_frame):
        count = min(per_frame, size - off)
        data = ok(ask, Msg.READ_WEIGHTS, READ_WEIGHTS.pack(matrix, dtype, off, count), Msg.WEIGHTS)
        parts.append(np.frombuffer(data[WEIGHTS_HEAD.size :], dtype.np))
    return np.concatenate(parts)


def configure(
    ask: Ask,
    cfg: ConfigNet,
    params: dict[Vector, np.ndarray],
    weights: dict[Matrix, np.ndarray],
    rules: ConfigRules | None = None,
) -> None:
    ok(ask, Msg.CONFIG_NET, cfg.pack())
    if rules is not None and rules != ConfigRules():
        ok(ask, Msg.CONFIG_RULES, rules.pack())
    for vec, values in params.items():
        dtype = DType.F64 if vec == Vector.HID_GAIN else DType.I32
        data = np.asarray(values).astype(dtype.np).tobytes()
        for off in range(0, len(data), 232):
            chunk = data[off : off + 232]
            ok(ask, Msg.WRITE_PARAM, PARAM_HEAD.pack(vec, dtype, off // dtype.np.itemsize) + chunk)
    upload(ask, weights, generation=1)


def read_buffer(ask: Ask, buf: int, size: int) -> bytes:
    out = b""
    while len(out) < size:
        count = min(235, size - len(out))
        data = ok(ask, Msg.READ_OUTPUT, READ_OUTPUT.pack(buf, len(out), count), Msg.OUTPUT)
        assert data[: OUTPUT_HEAD.size] == OUTPUT_HEAD.pack(buf, len(out))
        out += data[OUTPUT_HEAD.size :]
    return out


def run_sample(
    ask: Ask,
    cfg: ConfigNet,
    raster: np.ndarray,
    chunk: int,
    record_v: bool = True,
    rules: ConfigRules | None = None,
) -> dict:
    """RESET(0), then INPUT/RUN/READ_OUTPUT per chunk of ticks; everything the board answered
    (hidden spike counts from the counts buffer when a neuron may spike more than once a step)."""
    counts = rules is not None and rules.max_spike_count > 1
    ok(ask, Msg.RESET, b"\x00")
    h, o = cfg.n_hidden, cfg.n_out
    res: dict[str, list] = {"zh": [], "zo": [], "vh": [], "vo": [], "done": []}
    for t0 in range(0, len(raster), chunk):
        part = raster[t0 : t0 + chunk]
        n = len(part)
        bits = np.packbits(part.astype(np.uint8), axis=1, bitorder="little").tobytes()
        for off in range(0, len(bits), 236):
            ok(ask, Msg.INPUT, INPUT_HEAD.pack(off) + bits[off : off + 236])
        res["done"].append(Done.unpack(ok(ask, Msg.RUN, RUN.pack(n, int(record_v)), Msg.DONE)))
        for key, buf, width in (("zh", 0, h), ("zo", 1, o)):
            raw = np.frombuffer(read_buffer(ask, buf, n * ((width + 7) // 8)), np.uint8).reshape(n, -1)
            res[key].append(np.unpackbits(raw, axis=1, bitorder="little")[:, :width])
        if counts:
            z = np.frombuffer(read_buffer(ask, 4, n * h), np.uint8).reshape(n, h)
            assert np.array_equal(z > 0, res["zh"][-1] > 0), "the bitmap marks the neurons that spiked"
            res["zh"][-1] = z
        if record_v:
            res["vh"].append(np.frombuffer(read_buffer(ask, 2, 4 * n * h), "<i4").reshape(n, h))
            res["vo"].append(np.frombuffer(read_buffer(ask, 3, 4 * n * o), "<i4").reshape(n, o))
    return {k: (v if k == "done" else np.concatenate(v) if v else None) for k, v in res.items()}


# ---------------------------------------------------------------- codec (the C core, through ctypes)


@pytest.fixture(scope="module")
def core(firmware_build: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(firmware_build / "libchiploop_core.so"))
    lib.cl_crc32.restype = ctypes.c_uint32
    lib.cl_crc32.argtypes = [ctypes.c_uint32, ctypes.c_char_p, ctypes.c_size_t]
    lib.cl_cobs_encode.restype = ctypes.c_size_t
    lib.cl_cobs_encode.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t]
    lib.cl_cobs_decode.restype = ctypes.c_long
    lib.cl_cobs_decode.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t]
    return lib


data_with_zeros = st.one_of(
    st.binary(max_size=700),
    st.lists(st.sampled_from([0, 1, 0xFF]), max_size=600).map(bytes),
    st.integers(0, 600).map(lambda n: bytes(range(1, 256)) * (n // 255) + bytes(range(1, n % 255 + 1))),
)


@settings(max_examples=300, deadline=None)
@given(data=data_with_zeros)
def test_c_cobs_and_crc_match_python(core: ctypes.CDLL, data: bytes) -> None:
    assert core.cl_crc32(0, data, len(data)) == zlib.crc32(data)
    assert core.cl_crc32(core.cl_crc32(0, data[:7], len(data[:7])), data[7:], len(data[7:])) == zlib.crc32(
        data
    )
    enc = ctypes.create_string_buffer(len(data) + len(data) // 254 + 1)
    n = core.cl_cobs_encode(data, len(data), enc, len(enc))
    assert enc.raw[:n] == cobs.encode(data)
    assert core.cl_cobs_encode(data, len(data), enc, n - 1) == 0  # one byte short: refused
    dec = ctypes.create_string_buffer(len(data) + 1)
    assert core.cl_cobs_decode(enc.raw[:n], n, dec, len(dec)) == len(data)
    assert dec.raw[: len(data)] == data


@settings(max_examples=300, deadline=None)
@given(junk=st.binary(max_size=300))
def test_c_cobs_decode_rejects_exactly_what_python_rejects(core: ctypes.CDLL, junk: bytes) -> None:
    out = ctypes.create_string_buffer(len(junk) + 1)
    got = core.cl_cobs_decode(junk, len(junk), out, len(out))
    try:
        want = cobs.decode(junk)
    except cobs.DecodeError:
        assert got == -1
    else:
        assert out.raw[:got] == want


# ---------------------------------------------------------------- session: hello, ping, counters


def test_hello_ack_announces_the_build(link: Link) -> None:
    info = link.info
    assert (info.max_payload, info.window, info.n_channels) == (240, 1, 4)
    assert (info.max_neurons, info.max_inputs, info.max_synapses, info.max_ticks) == (512, 512, 131072, 1024)
    assert info.caps & Cap.FIXED and info.caps & Cap.DECAY_SHIFT and info.caps & Cap.W_I16
    assert not info.caps & Cap.FLOAT
    assert (info.max_state_bits, info.generation, info.state) == (32, 0, 0)


@pytest.mark.parametrize("payload", [b"", b"\x00", b"\x00" * 240, bytes(range(240)), b"chiploop"])
def test_ping_echoes_any_payload(link: Link, payload: bytes) -> None:
    assert link.ping(payload) < 1.0


def test_stdio_mode_serves_on_pipes(firmware_build: Path) -> None:
    hello, ping = Frame(Msg.HELLO, HELLO.pack(240), seq=1), Frame(Msg.PING, b"hi", seq=2)
    requests = encode_frame(hello) + encode_frame(ping)
    cmd = [str(firmware_build / "chiploop_board"), "--stdio", "--board-id", "0x1234"]
    done = subprocess.run(cmd, input=requests, capture_output=True, timeout=10)
    hello_ack, pong = FrameDecoder().feed(done.stdout)
    assert done.returncode == 0  # EOF on stdin ends the board
    assert (hello_ack.type, HelloAck.unpack(hello_ack.payload).board_id) == (Msg.HELLO_ACK, 0x1234)
    assert (pong.type, pong.payload, pong.ref) == (Msg.PONG, b"hi", 2)


def test_port_can_be_reopened(board_path: str) -> None:
    for _ in range(3):
        with Link(board_path, timeout=0.5) as lnk:
            lnk.ping(b"again")


def counters(ask: Ask) -> dict[str, int]:
    return dict(
        zip(COUNTER_NAMES, COUNTERS.unpack(ok(ask, Msg.READ_COUNTERS, b"", Msg.COUNTERS)), strict=True)
    )


def raw_exchange(port: serial.Serial, wire: bytes, wait_s: float = 0.3) -> list[Frame]:
    """Write bytes, collect every frame the board sends back within wait_s."""
    port.write(wire)
    decoder, frames, deadline = FrameDecoder(), [], time.monotonic() + wait_s
    while time.monotonic() < deadline:
        frames += decoder.feed(port.read(4096))
    return frames


def damaged_frames() -> bytes:
    """Empty frames, then a CRC, a COBS and three length errors, then a PING of another major version."""
    body = cobs.decode(encode_frame(Frame(Msg.PING, b"x", seq=1))[:-1])
    bad_crc = cobs.encode(body[:-1] + bytes([body[-1] ^ 1])) + b"\0"
    bad_cobs = b"\x05\x01\x02\0"  # code 5 runs past the end
    short = cobs.encode(b"\x10\x03\x00\x00") + b"\0"
    head = bytearray(body[:-4])
    head[8] = 7  # len field says 7, payload is 1 byte
    bad_len = cobs.encode(bytes(head) + struct.pack("<I", zlib.crc32(bytes(head)))) + b"\0"
    too_long = b"\x01" * 300 + b"\0"
    foreign_ping = encode_frame(Frame(Msg.PING, b"x", seq=2, version=0x20))
    return b"\0\0" + bad_crc + bad_cobs + short + bad_len + too_long + foreign_ping


def test_bad_frames_are_dropped_silently_and_counted(board_path: str) -> None:
    good = encode_frame(Frame(Msg.PING, b"x", seq=1))
    foreign_hello = encode_frame(Frame(Msg.HELLO, b"\xf0\x00", seq=3, version=0x21))
    with serial.serial_for_url(board_path, timeout=0.02) as port:
        frames = raw_exchange(port, damaged_frames())
        assert frames == []
        (nak,) = raw_exchange(port, foreign_hello)
        assert (nak.type, nak.channel, nak.ref, nak.version) == (Msg.NAK, 0xFF, NO_REF, VERSION)
        assert nak.payload[:2] == bytes([Nak.VERSION, Msg.HELLO])
        (pong,) = raw_exchange(port, good)
        assert (pong.type, pong.payload, pong.ref, pong.flags) == (Msg.PONG, b"x", 1, Flag.RESPONSE)
    with Link(board_path, timeout=0.5) as lnk:
        c = counters(firmware_ask(lnk))
    assert (c["rx_crc_errors"], c["rx_cobs_errors"], c["rx_len_errors"], c["rx_version_errors"]) == (
        1,
        1,
        3,
        2,
    )
    assert c["naks_sent"] == 1


def test_damaged_frames_get_the_simulators_nak_dropped_once_the_host_asks(board_path: str) -> None:
    def hello(flags: bytes) -> bytes:
        return encode_frame(Frame(Msg.HELLO, HELLO.pack(240) + flags, seq=1))

    asking, plain = hello(bytes([HelloFlag.NAK_DROPPED])), hello(b"")
    simulated = FrameDecoder().feed(Board().feed(asking + damaged_frames()))[1:]  # after its HELLO_ACK
    with serial.serial_for_url(board_path, timeout=0.02) as port:
        assert raw_exchange(port, asking + damaged_frames())[1:] == simulated
        assert len(raw_exchange(port, plain + damaged_frames())) == 1  # a HELLO without the flag: silent
    reasons = [f.payload for f in simulated]
    assert reasons == [bytes([Nak.DROPPED, 0]) + r for r in (b"crc", b"cobs", b"len", b"len", b"len")]
    assert all((f.type, f.channel, f.ref, f.flags) == (Msg.NAK, 0xFF, NO_REF, Flag.RESPONSE | Flag.ERROR)
               for f in simulated)  # fmt: skip


def test_duplicate_request_is_answered_from_the_cache_not_executed_again(link: Link, board_path: str) -> None:
    ask = firmware_ask(link)
    ok(ask, Msg.CONFIG_NET, ConfigNet(4, 3, 2, 0, 0, 16, 8, 0, 0, 0).pack())
    run = encode_frame(Frame(Msg.RUN, RUN.pack(5, 0), seq=0x7000))
    other_channel = encode_frame(Frame(Msg.RUN, RUN.pack(5, 0), seq=0x7000, channel=1))
    with serial.serial_for_url(board_path, timeout=0.02) as port:
        (first,) = raw_exchange(port, run)
        (again,) = raw_exchange(port, run)
        (third,) = raw_exchange(port, other_channel)  # another channel has its own cache: executed
        assert (
            raw_exchange(port, encode_frame(Frame(Msg.RUN, RUN.pack(5, 0), seq=9, flags=Flag.UNRELIABLE)))
            == []
        )
    assert first == again and Done.unpack(first.payload).tick == 5
    assert (third.channel, Done.unpack(third.payload).tick) == (1, 10)
    c = counters(ask)
    assert (c["duplicates"], c["ticks"]) == (1, 15)  # 5 + 5 + 5 (unreliable): the duplicate never ran


@pytest.mark.parametrize(
    ("mtype", "payload", "code"),
    [
        (Msg.RUN, RUN.pack(5, 0), Nak.NOT_CONFIGURED),
        (Msg.WRITE_WEIGHTS, WEIGHTS_HEAD.pack(0, DType.I8, 1, 0) + b"\x01", Nak.NOT_CONFIGURED),
        (0x7E, b"", Nak.UNKNOWN_TYPE),
        (Msg.CONFIG_NET, b"\x01\x00", Nak.BAD_LEN),
        (Msg.CONFIG_NET, ConfigNet(4, 3, 2, ConfigFlag.FLOAT, 0, 16, 8, 0, 0, 0).pack(), Nak.CAPABILITY),
        (Msg.CONFIG_NET, ConfigNet(4, 500, 20, 0, 0, 16, 8, 0, 0, 0).pack(), Nak.CAPABILITY),
        (Msg.CONFIG_NET, ConfigNet(4, 3, 2, 0, 0, 33, 8, 0, 0, 0).pack(), Nak.CAPABILITY),
        (Msg.CONFIG_NET, ConfigNet(600, 200, 2, 0, 0, 16, 8, 0, 0, 0).pack(), Nak.CAPABILITY),
        (Msg.RESET, b"\x02", Nak.OUT_OF_RANGE),
    ],
)
def test_unconfigured_board_refuses(link: Link, mtype: int, payload: bytes, code: Nak) -> None:
    assert firmware_ask(link)(mtype, payload) == (Msg.NAK, bytes([code]))


@pytest.mark.parametrize(
    ("mtype", "payload", "code"),
    [
        (
            Msg.WRITE_WEIGHTS,
            WEIGHTS_HEAD.pack(Matrix.HIDDEN_HIDDEN, DType.I8, 1, 0) + b"\x01",
            Nak.OUT_OF_RANGE,
        ),
        (Msg.WRITE_WEIGHTS, WEIGHTS_HEAD.pack(0, DType.I16, 1, 0) + b"\x01", Nak.BAD_LEN),
        (Msg.WRITE_WEIGHTS, WEIGHTS_HEAD.pack(0, DType.I8, 0, 0) + b"\x01", Nak.OUT_OF_RANGE),
        (Msg.WRITE_WEIGHTS, WEIGHTS_HEAD.pack(0, DType.F32, 1, 0) + b"\0" * 4, Nak.OUT_OF_RANGE),
        (Msg.WRITE_WEIGHTS, WEIGHTS_HEAD.pack(0, DType.I8, 1, 11) + b"\x01\x02", Nak.OUT_OF_RANGE),
        (Msg.WRITE_PARAM, PARAM_HEAD.pack(Vector.HID_GAIN, DType.I32, 0) + b"\0" * 4, Nak.OUT_OF_RANGE),
        (
            Msg.WRITE_PARAM,
            PARAM_HEAD.pack(Vector.HID_D_MEM, DType.I32, 0) + struct.pack("<i", 257),
            Nak.OUT_OF_RANGE,
        ),
        (Msg.WRITE_PARAM, PARAM_HEAD.pack(Vector.OUT_THRESHOLD, DType.I32, 1) + b"\0" * 8, Nak.OUT_OF_RANGE),
        (
            Msg.WRITE_PARAM,
            PARAM_HEAD.pack(Vector.HID_GAIN, DType.F64, 0) + struct.pack("<d", np.nan),
            Nak.OUT_OF_RANGE,
        ),
        (Msg.WRITE_PARAM, PARAM_HEAD.pack(len(Vector), DType.I32, 0) + b"\0" * 4, Nak.OUT_OF_RANGE),
        (Msg.WRITE_PARAM, PARAM_HEAD.pack(Vector.HID_BETA, DType.I32, 0) + b"\0" * 3, Nak.BAD_LEN),
        (Msg.READ_WEIGHTS, READ_WEIGHTS.pack(0, DType.I32, 0, 59), Nak.OUT_OF_RANGE),
        (Msg.READ_WEIGHTS, READ_WEIGHTS.pack(2, DType.I8, 5, 2), Nak.OUT_OF_RANGE),
        (Msg.COMMIT, COMMIT.pack(3, 0), Nak.CRC_MISMATCH),
        (Msg.INPUT, INPUT_HEAD.pack(1024) + b"\x01", Nak.OUT_OF_RANGE),
        (Msg.RUN, RUN.pack(0, 0), Nak.OUT_OF_RANGE),
        (Msg.RUN, RUN.pack(1025, 0), Nak.OUT_OF_RANGE),
        (Msg.RUN, b"\x01", Nak.BAD_LEN),
        (Msg.READ_OUTPUT, READ_OUTPUT.pack(0, 0, 1), Nak.OUT_OF_RANGE),
    ],
)
def test_configured_board_refuses_what_its_config_forbids(
    link: Link, mtype: int, payload: bytes, code: Nak
) -> None:
    ask = firmware_ask(link)
    ok(ask, Msg.CONFIG_NET, ConfigNet(4, 3, 2, 0, 0, 16, 8, 0, 0, 0).pack())  # multiplier, q = 8
    assert ask(mtype, payload) == (Msg.NAK, bytes([code]))
    assert counters(ask)["naks_sent"] == 1


def test_output_buffers_follow_the_last_run(link: Link) -> None:
    ask = firmware_ask(link)
    ok(ask, Msg.CONFIG_NET, ConfigNet(4, 3, 2, 0, 0, 16, 8, 0, 0, 0).pack())
    ok(ask, Msg.RUN, RUN.pack(3, 0), Msg.DONE)
    assert ask(Msg.READ_OUTPUT, READ_OUTPUT.pack(2, 0, 4)) == (Msg.NAK, bytes([Nak.OUT_OF_RANGE]))
    spikes = ok(ask, Msg.READ_OUTPUT, READ_OUTPUT.pack(0, 0, 3), Msg.OUTPUT)
    assert spikes == OUTPUT_HEAD.pack(0, 0) + b"\x07" * 3  # thresholds are 0 after CONFIG_NET: v = 0 >= 0
    assert ask(Msg.READ_OUTPUT, READ_OUTPUT.pack(0, 1, 3)) == (Msg.NAK, bytes([Nak.OUT_OF_RANGE]))
    ok(ask, Msg.RUN, RUN.pack(2, 1), Msg.DONE)
    assert len(ok(ask, Msg.READ_OUTPUT, READ_OUTPUT.pack(2, 0, 24), Msg.OUTPUT)) == 5 + 24
    ok(ask, Msg.RESET, b"\x01")
    assert ask(Msg.RUN, RUN.pack(1, 0)) == (Msg.NAK, bytes([Nak.NOT_CONFIGURED]))


# ---------------------------------------------------------------- weights: shadow, commit, read back


def test_100k_weight_upload_round_trips(link: Link) -> None:
    ask = firmware_ask(link)
    ok(ask, Msg.CONFIG_NET, ConfigNet(500, 200, 10, 0, 0, 24, 12, 0, 0, 0).pack())
    rng = np.random.default_rng(7)
    weights = {
        Matrix.IN_HIDDEN: rng.integers(-30000, 30000, (500, 200)),
        Matrix.HIDDEN_OUT: rng.integers(-(2**31), 2**31 - 1, (200, 10)),
    }
    upload(ask, weights, generation=1)
    assert np.array_equal(
        read_back(ask, Matrix.IN_HIDDEN, 100_000, DType.I16), weights[Matrix.IN_HIDDEN].ravel()
    )
    assert np.array_equal(read_back(ask, Matrix.HIDDEN_OUT, 2000), weights[Matrix.HIDDEN_OUT].ravel())
    assert ask(Msg.READ_WEIGHTS, READ_WEIGHTS.pack(Matrix.HIDDEN_OUT, DType.I16, 0, 10))[0] == Msg.NAK
    assert counters(ask)["commits"] == 1
    info = HelloAck.unpack(ok(ask, Msg.HELLO, HELLO.pack(240), Msg.HELLO_ACK))
    assert (info.generation, info.state) == (1, 0b11)


def test_uncommitted_or_corrupt_uploads_leave_the_active_weights(link: Link) -> None:
    ask = firmware_ask(link)
    ok(ask, Msg.CONFIG_NET, ConfigNet(3, 4, 2, ConfigFlag.RECURRENT, 1, 16, 8, 0, 0, 0).pack())
    w1 = {Matrix.IN_HIDDEN: np.arange(12).reshape(3, 4), Matrix.HIDDEN_HIDDEN: -np.arange(16).reshape(4, 4),
          Matrix.HIDDEN_OUT: np.full((4, 2), 300)}  # fmt: skip
    upload(ask, w1, generation=1)
    ok(ask, Msg.WRITE_WEIGHTS, WEIGHTS_HEAD.pack(Matrix.HIDDEN_HIDDEN, DType.I8, 2, 3) + b"\x7f\x7f")
    assert np.array_equal(read_back(ask, Matrix.HIDDEN_HIDDEN, 16), w1[Matrix.HIDDEN_HIDDEN].ravel())
    w2 = {**w1, Matrix.HIDDEN_HIDDEN: w1[Matrix.HIDDEN_HIDDEN].copy()}
    w2[Matrix.HIDDEN_HIDDEN].flat[3:5] = 127
    good_crc = weights_crc([w2[m] for m in sorted(w2)], fixed=True)
    assert ask(Msg.COMMIT, COMMIT.pack(2, good_crc ^ 1)) == (Msg.NAK, bytes([Nak.CRC_MISMATCH]))
    assert ask(Msg.COMMIT, COMMIT.pack(3, good_crc)) == (Msg.NAK, bytes([Nak.CRC_MISMATCH]))
    assert np.array_equal(read_back(ask, Matrix.HIDDEN_HIDDEN, 16), w1[Matrix.HIDDEN_HIDDEN].ravel())
    ok(ask, Msg.COMMIT, COMMIT.pack(2, good_crc))  # the shadow survived the refused commits
    assert np.array_equal(read_back(ask, Matrix.HIDDEN_HIDDEN, 16), w2[Matrix.HIDDEN_HIDDEN].ravel())
    assert ok(ask, Msg.READ_WEIGHTS, READ_WEIGHTS.pack(2, DType.I16, 0, 1), Msg.WEIGHTS)[2:4] == b"\x02\x00"


# ---------------------------------------------------------------- dynamics: the board simulator


def random_case(
    seed: int,
) -> tuple[ConfigNet, ConfigRules, dict[Vector, np.ndarray], dict[Matrix, np.ndarray], np.ndarray]:
    """A random network exercising one mix of the features of docs/dynamics.md; odd seeds also draw
    the rules of CONFIG_RULES (even seeds keep the defaults a board starts with)."""
    rng = np.random.default_rng(seed)
    n_in, h, o = int(rng.integers(1, 40)), int(rng.integers(1, 60)), int(rng.integers(1, 12))
    flags = int(rng.integers(0, 8))
    shift = int(rng.integers(0, 2))
    state_bits, q = int(rng.integers(6, 33)), int(rng.integers(2, 17))
    theta_hi = max(2, min(2 ** (state_bits - 2), 200))
    cfg = ConfigNet(n_in, h, o, flags, shift, state_bits, q, int(rng.integers(0, 4)),
                    int(rng.choice([0, 0, 1, 3])), int(rng.choice([0, 0, 2, 5])))  # fmt: skip
    rules = ConfigRules()
    if seed % 2:
        subtract = not flags & ConfigFlag.RESET_ZERO
        rules = ConfigRules(
            input_delay=int(rng.integers(0, 2)), add_then_decay=int(rng.integers(0, 2)),
            decay_rounding=int(rng.integers(0, 3 if shift else 2)), per_addition=int(rng.integers(0, 2)),
            wrap_current=int(rng.integers(0, 2)), symmetric_membrane=int(rng.integers(0, 2)),
            fractional_bits=int(rng.integers(0, min(4, state_bits - 2))),
            strict_threshold=int(rng.integers(0, 2)),
            max_spike_count=int(rng.integers(1, 8)) if subtract else 1, synapses=int(rng.integers(1, 3)),
        )  # fmt: skip

    def codes(n: int) -> np.ndarray:
        return rng.integers(0, 8, n) if shift else rng.integers(0, 2**q + 1, n)

    gain = np.where((rng.random(h) < 0.5) | bool(rules.per_addition), 1.0, rng.normal(1.0, 0.3, h))
    params = {
        Vector.HID_D_MEM: codes(h), Vector.HID_D_SYN: codes(h), Vector.HID_D_ADA: codes(h),
        Vector.HID_THRESHOLD: rng.integers(1, theta_hi, h) << rules.fractional_bits,
        Vector.HID_BETA: rng.integers(0, 20, h) * (rng.random(h) < 0.5),
        Vector.HID_GAIN: gain, Vector.OUT_D_MEM: codes(o), Vector.OUT_D_SYN: codes(o),
        Vector.OUT_THRESHOLD: rng.integers(1, theta_hi, o) << rules.fractional_bits,
    }  # fmt: skip
    if seed % 2:
        params |= {Vector.HID_D_SYN2: codes(h), Vector.HID_BIAS: rng.integers(-theta_hi, theta_hi, h),
                   Vector.OUT_BIAS: rng.integers(-theta_hi, theta_hi, o)}  # fmt: skip
    scale = theta_hi // 2 + 1
    weights = {Matrix.IN_HIDDEN: rng.integers(-scale, 2 * scale, (n_in, h))}
    if flags & ConfigFlag.RECURRENT:
        weights[Matrix.HIDDEN_HIDDEN] = rng.integers(-scale, scale, (h, h))
    weights[Matrix.HIDDEN_OUT] = rng.integers(-scale, 2 * scale, (h, o))
    if rules.synapses == 2:
        weights[Matrix.IN_HIDDEN_2] = rng.integers(-scale, 2 * scale, (n_in, h))
        if flags & ConfigFlag.RECURRENT:
            weights[Matrix.HIDDEN_HIDDEN_2] = rng.integers(-scale, scale, (h, h))
    raster = (rng.random((int(rng.integers(1, 80)), n_in)) < rng.uniform(0.05, 0.6)).astype(np.uint8)
    return cfg, rules, params, weights, raster


@pytest.mark.parametrize("seed", range(24))
def test_network_matches_the_board_simulator(link: Link, seed: int) -> None:
    cfg, rules, params, weights, raster = random_case(seed)
    fw, sim = firmware_ask(link), simulator_ask(Board())
    results = []
    for ask in (fw, sim):
        configure(ask, cfg, params, weights, rules)
        results.append(
            [run_sample(ask, cfg, raster, chunk=17, rules=rules),
             run_sample(ask, cfg, raster[::-1], chunk=1000, rules=rules)]
        )  # fmt: skip
    for got, want in zip(*results, strict=True):
        assert got["done"] == want["done"]
        for key in ("zh", "zo", "vh", "vo"):
            assert np.array_equal(got[key], want[key]), key
    c_fw, c_sim = counters(fw), counters(sim)
    for name in ("ticks", "spikes", "commits", "resets", "naks_sent"):
        assert c_fw[name] == c_sim[name], name


# ---------------------------------------------------------------- dynamics: TwinChip


def test_random_cases_are_not_silent() -> None:
    active = 0
    for seed in range(24):
        cfg, rules, params, weights, raster = random_case(seed)
        ask = simulator_ask(Board())
        configure(ask, cfg, params, weights, rules)
        active += bool(run_sample(ask, cfg, raster, chunk=1000, record_v=False, rules=rules)["zh"].any())
    assert active >= 16, f"only {active} of 24 random networks spike: the comparison exercises little"


def wire_params(c: NeuronConstants) -> dict[Vector, np.ndarray]:
    """The DeviceModel's fixed-arithmetic constants as WRITE_PARAM vectors (multiplier m -> d = 2^q - m)."""

    def code(a: np.ndarray) -> np.ndarray:
        return (1 << c.decay_bits) - a if c.decay == "multiplier" else a

    return {
        Vector.HID_D_MEM: code(c.mem_h), Vector.HID_D_SYN: code(c.syn_h), Vector.HID_D_ADA: code(c.ada_h),
        Vector.HID_THRESHOLD: c.threshold_h, Vector.HID_BETA: c.beta_h, Vector.HID_GAIN: c.gain_h,
        Vector.OUT_D_MEM: code(c.mem_o), Vector.OUT_D_SYN: code(c.syn_o), Vector.OUT_THRESHOLD: c.threshold_o,
    }  # fmt: skip


def config_for(profile: ChipProfile, spec: NetworkSpec) -> ConfigNet:
    n, a, lim = profile.neuron, profile.arithmetic, profile.limits
    flags = (ConfigFlag.RECURRENT * spec.recurrent) | (
        ConfigFlag.SPIKING_READOUT * (spec.readout == "spiking")
    )
    flags |= ConfigFlag.RESET_ZERO * (n.reset == "zero")
    return ConfigNet(spec.n_in, spec.n_hidden, spec.n_out, int(flags), int(a.decay == "shift"), a.state_bits,
                     a.decay_bits, n.refractory_steps, lim.max_spikes_per_step or 0,
                     lim.max_input_spikes_per_step or 0)  # fmt: skip


def fixed_profile(decay: str = "multiplier", state_bits: int = 16, **neuron: object) -> ChipProfile:
    base = {"threshold": 40.0, "tau_mem_s": 0.02, "tau_syn_s": 0.005, "tau_out_s": 0.03}
    return ChipProfile(
        name="fixed-test",
        neuron=Neuron(**(base | neuron)),
        arithmetic=Arithmetic(kind="fixed", state_bits=state_bits, decay=decay, decay_bits=12),
        weights=Weights(bits=8, range=(-64.0, 64.0)),
    )


TWIN_CASES = {
    "lif-multiplier": (fixed_profile(), NetworkSpec(20, 30, 5)),
    "lif-shift-zero-reset": (
        fixed_profile("shift", reset="zero", refractory_steps=2),
        NetworkSpec(20, 30, 5),
    ),
    "alif-recurrent-spiking": (
        fixed_profile(
            model="alif", adaptation={"tau_s": 0.1, "beta": 15.0, "fraction": 0.5}, refractory_steps=1
        ),
        NetworkSpec(16, 24, 4, recurrent=True, readout="spiking"),
    ),
    "no-synaptic-filter-saturating": (fixed_profile(state_bits=9, tau_syn_s=0.0), NetworkSpec(12, 20, 3)),
    "caps-and-mismatch": (
        fixed_profile().model_copy(
            update={
                "limits": Limits(max_spikes_per_step=3, max_input_spikes_per_step=4),
                "noise": Noise(mismatch=Mismatch(tau=0.2, threshold=0.2, gain=0.2)),
            }
        ),
        NetworkSpec(20, 30, 5, recurrent=True),
    ),  # fmt: skip
}


@pytest.mark.parametrize("case", sorted(TWIN_CASES))
def test_network_matches_torch_twin_bit_for_bit(link: Link, case: str) -> None:
    profile, spec = TWIN_CASES[case]
    twin = TwinChip(profile, spec, seed=3)
    rng = np.random.default_rng(11)
    twin.write_weights({k: rng.normal(8.0, 24.0, shape) for k, shape in spec.weight_shapes().items()})
    effective = twin.read_weights()
    inputs = (rng.random((3, 60, spec.n_in)) < 0.3).astype(np.uint8)
    rec = twin.run(inputs)

    ask = firmware_ask(link)
    cfg = config_for(profile, spec)
    ids = {
        "in_hidden": Matrix.IN_HIDDEN,
        "hidden_hidden": Matrix.HIDDEN_HIDDEN,
        "hidden_out": Matrix.HIDDEN_OUT,
    }
    configure(ask, cfg, wire_params(twin.device.constants),
              {ids[k]: w.astype(np.int64) for k, w in effective.items()})  # fmt: skip
    dropped = 0
    for b in range(len(inputs)):
        got = run_sample(ask, cfg, inputs[b], chunk=25)
        assert np.array_equal(got["zh"], rec.spikes["hidden"][b])
        assert np.array_equal(got["vh"], rec.v["hidden"][b])
        assert np.array_equal(got["vo"], rec.v["out"][b])
        if spec.readout == "spiking":
            assert np.array_equal(got["zo"], rec.spikes["out"][b])
        dropped += got["done"][-1].dropped_spikes
    assert rec.spikes["hidden"].any()
    assert dropped == rec.meta["dropped_spikes"]


# ---------------------------------------------------------------- the whole stack: SerialChip on the firmware


def same_recording(got: Recording, want: Recording) -> None:
    assert sorted(got.spikes) == sorted(want.spikes) and sorted(got.v) == sorted(want.v)
    for name in want.spikes:
        assert np.array_equal(got.spikes[name], want.spikes[name]), f"spikes[{name!r}]"
    for name in want.v:
        assert got.v[name].dtype == np.int64 and np.array_equal(got.v[name], want.v[name]), f"v[{name!r}]"
    assert got.meta["dropped_spikes"] == want.meta["dropped_spikes"]


def chip_scenario(spec: NetworkSpec) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(5)
    weights = {k: rng.normal(8.0, 24.0, shape) for k, shape in spec.weight_shapes().items()}
    return weights, (rng.random((4, 70, spec.n_in)) < 0.3).astype(np.uint8)


LAYERED_CASES = {  # through SerialChip: CONFIG_LAYERS and the layered matrix ids (protocol 1.3)
    "three-layers-alif-caps": (
        fixed_profile(model="alif", adaptation={"tau_s": 0.1, "beta": 15.0, "fraction": 0.5}).model_copy(
            update={"limits": Limits(max_spikes_per_step=5)}
        ),
        NetworkSpec(16, (20, 14, 8), 4, recurrent=(True, False, True), readout="spiking"),
    ),
}


@pytest.mark.parametrize("case", sorted(TWIN_CASES | LAYERED_CASES))
def test_serial_chip_on_the_firmware_matches_torch_twin(board_path: str, case: str) -> None:
    profile, spec = (TWIN_CASES | LAYERED_CASES)[case]
    weights, inputs = chip_scenario(spec)
    twin = TwinChip(profile, spec, seed=3)
    chip = SerialChip(board_path, profile, spec, seed=3)
    try:
        for c in (twin, chip):
            c.write_weights(weights)
        same_recording(chip.run(inputs), twin.run(inputs))
        same_recording(chip.run(inputs[:1], record_v=False), twin.run(inputs[:1], record_v=False))
        board = chip.board_weights()
        assert all(np.array_equal(board[k], w) for k, w in twin.read_weights().items())
    finally:
        chip.close()


@pytest.mark.slow
def test_serial_chip_on_the_firmware_matches_brian_chip(board_path: str) -> None:
    from chiploop.emulator.brian import BrianChip

    profile, spec = TWIN_CASES["caps-and-mismatch"]
    weights, inputs = chip_scenario(spec)
    brian = BrianChip(profile, spec, seed=3)
    chip = SerialChip(board_path, profile, spec, seed=3)
    try:
        for c in (brian, chip):
            c.write_weights(weights)
        same_recording(chip.run(inputs), brian.run(inputs))
    finally:
        chip.close()
        brian.close()


def test_faulty_line_loses_nothing_and_applies_nothing_twice(board_path: str) -> None:
    profile, spec = TWIN_CASES["caps-and-mismatch"]
    weights, inputs = chip_scenario(spec)
    twin = TwinChip(profile, spec, seed=3)
    twin.write_weights(weights)
    with Relay(board_path, FaultRates(bit_flip=0.03, drop=0.03, dup=0.03), seed=5, listen="pty") as relay:
        chip = SerialChip(relay.url, profile, spec, seed=3, timeout=0.03)
        try:
            chip.write_weights(weights)
            same_recording(chip.run(inputs), twin.run(inputs))
            board = chip.board_weights()
            c = counters(firmware_ask(chip.link))
        finally:
            chip.close()
    assert all(np.array_equal(board[k], w) for k, w in twin.read_weights().items())
    assert relay.to_board.bit_flips + relay.to_board.drops > 0 and chip.link.stats.retransmits > 0
    assert c["rx_crc_errors"] + c["rx_cobs_errors"] + c["rx_len_errors"] > 0
    assert c["commits"] == 1 and c["ticks"] == inputs.shape[0] * inputs.shape[1]  # nothing ran twice


@pytest.mark.slow
def test_in_the_loop_training_through_the_firmware_matches_the_emulated_chip(
    board_path: str, tmp_path: Path
) -> None:
    """The default task trained in the loop on the C board gives the same metrics.csv, byte for
    byte, as on the twin (itself identical to BrianChip under fixed arithmetic)."""
    from chiploop.training.loop import Trainer

    def train(target: str) -> str:
        trainer = Trainer(
            "loihi2",
            target=target,
            n_hidden=16,
            seed=3,
            out_dir=tmp_path / target.split(":")[0],
            progress=False,
            plots=False,
        )
        try:
            trainer.fit(1)
        finally:
            trainer.chip.close()
        return (trainer.run.path / "metrics.csv").read_text()

    on_board = train(f"serial://{board_path}")
    assert on_board == train("twin")
    assert float(on_board.splitlines()[-1].split(",")[4]) > 0.5  # it learned: test accuracy after one epoch
