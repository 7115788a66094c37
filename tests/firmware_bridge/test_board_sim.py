"""The board simulator's protocol engine, driven in-process frame by frame."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from cobs import cobs
from hypothesis import given, settings
from hypothesis import strategies as st

from chiploop.firmware_bridge.board_sim import CAPABILITIES, Board, BoardLimits
from chiploop.firmware_bridge.protocol import (
    BOARD_CHANNEL,
    COMMIT,
    COUNTER_NAMES,
    COUNTERS,
    HELLO,
    NO_REF,
    PARAM_HEAD,
    READ_WEIGHTS,
    RESET,
    RUN,
    VERSION,
    WEIGHTS_HEAD,
    Cap,
    ConfigFlag,
    ConfigNet,
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

CFG = ConfigNet(4, 6, 2, int(ConfigFlag.RECURRENT), 0, 16, 12, 0, 0, 0)


class Host:
    """Sends frames to an in-process Board and decodes what it answers."""

    def __init__(self, board: Board) -> None:
        self.board, self.decoder, self.seq = board, FrameDecoder(), 0

    def send(self, mtype: Msg, payload: bytes = b"", flags: int = 0, seq: int | None = None) -> list[Frame]:
        if seq is None:
            self.seq += 1
        frame = Frame(mtype, payload, flags, seq=self.seq if seq is None else seq)
        return self.decoder.feed(self.board.feed(encode_frame(frame)))

    def ask(self, mtype: Msg, payload: bytes = b"") -> Frame:
        (reply,) = self.send(mtype, payload)
        assert reply.ref == self.seq and reply.is_response
        return reply

    def nak(self, mtype: Msg, payload: bytes = b"") -> int:
        reply = self.ask(mtype, payload)
        assert reply.type == Msg.NAK and reply.flags & Flag.ERROR
        return reply.payload[0]

    def counters(self) -> dict[str, int]:
        return dict(zip(COUNTER_NAMES, COUNTERS.unpack(self.ask(Msg.READ_COUNTERS).payload), strict=True))


def configured(board: Board | None = None) -> Host:
    host = Host(board or Board())
    assert host.ask(Msg.CONFIG_NET, CFG.pack()).type == Msg.ACK
    return host


def upload(host: Host, weights: dict[Matrix, np.ndarray], gen: int, dtype: DType = DType.I16) -> Frame:
    for m, w in weights.items():
        host.ask(Msg.WRITE_WEIGHTS, WEIGHTS_HEAD.pack(m, dtype, gen, 0) + w.astype(dtype.np).tobytes())
    return host.ask(Msg.COMMIT, COMMIT.pack(gen, weights_crc([weights[m] for m in sorted(weights)], True)))


def read(host: Host, m: Matrix, n: int) -> np.ndarray:
    reply = host.ask(Msg.READ_WEIGHTS, READ_WEIGHTS.pack(m, DType.I32, 0, n))
    return np.frombuffer(reply.payload[WEIGHTS_HEAD.size :], "<i4")


def weights(seed: int) -> dict[Matrix, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {m: rng.integers(-300, 300, n) for m, n in ((0, 24), (1, 36), (2, 12))}


def test_hello_announces_limits_and_state() -> None:
    host = Host(Board(BoardLimits(max_neurons=99)))
    ack = HelloAck.unpack(host.ask(Msg.HELLO, HELLO.pack(240)).payload)
    assert (ack.max_neurons, ack.max_payload, ack.generation, ack.state) == (99, 240, 0, 0)
    host.ask(Msg.CONFIG_NET, CFG.pack())
    assert HelloAck.unpack(host.ask(Msg.HELLO, HELLO.pack(240)).payload).state == 1


def test_commit_swaps_in_the_shadow_atomically_and_checks_its_crc() -> None:
    host = configured()
    w1, w2 = weights(1), weights(2)
    assert upload(host, w1, gen=1).type == Msg.ACK
    for m, w in w2.items():  # generation 2 only partly written, then a wrong commit
        host.ask(Msg.WRITE_WEIGHTS, WEIGHTS_HEAD.pack(m, DType.I16, 2, 0) + w[:5].astype("<i2").tobytes())
    assert host.nak(Msg.COMMIT, COMMIT.pack(2, weights_crc(list(w2.values()), True))) == Nak.CRC_MISMATCH
    assert host.nak(Msg.COMMIT, COMMIT.pack(3, 0)) == Nak.CRC_MISMATCH  # no shadow of generation 3
    assert all(np.array_equal(read(host, m, w.size), w) for m, w in w1.items())
    assert upload(host, w2, gen=2).type == Msg.ACK
    assert all(np.array_equal(read(host, m, w.size), w) for m, w in w2.items())
    assert host.counters()["commits"] == 2


def test_a_repeated_request_is_answered_from_the_cache_not_executed_again() -> None:
    host = configured()
    host.ask(Msg.RESET, RESET.pack(0))
    first = host.send(Msg.RUN, RUN.pack(3, 0))
    again = host.send(Msg.RUN, RUN.pack(3, 0), seq=host.seq)
    assert first == again and first[0].type == Msg.DONE
    assert host.counters()["ticks"] == 3 and host.counters()["duplicates"] == 1
    assert host.send(Msg.RUN, RUN.pack(3, 0), flags=Flag.UNRELIABLE) == []  # executed, unanswered
    assert host.counters()["ticks"] == 6


def test_a_new_request_reusing_a_seq_is_executed_and_hello_clears_the_cache() -> None:
    host = configured()
    host.ask(Msg.PING, b"a")
    (other,) = host.send(Msg.PING, b"b", seq=host.seq)  # same seq, different request (new session)
    assert other.payload == b"b"
    host.ask(Msg.HELLO, HELLO.pack(240))
    host.seq = 0
    assert host.ask(Msg.PING, b"c").payload == b"c"


def test_damaged_frames_are_counted_and_never_acted_on() -> None:
    host = configured()
    good = bytearray(cobs.decode(encode_frame(Frame(Msg.RUN, RUN.pack(5, 0), seq=50))[:-1]))
    bad_crc = good.copy()
    bad_crc[10] ^= 1  # n_ticks 5 -> 4, crc no longer matches
    v2 = good[:-4]
    v2[0] = 0x21
    v2 += zlib.crc32(bytes(v2)).to_bytes(4, "little")
    junk = b"\x99\x00\x01\x01\x00"  # a COBS error, then a 1-byte frame
    stream = cobs.encode(bytes(bad_crc)) + b"\x00" + cobs.encode(bytes(v2)) + b"\x00" + junk
    assert host.board.feed(stream) == b""
    c = host.counters()
    errors = [c[f"rx_{kind}_errors"] for kind in ("crc", "version", "cobs", "len")]
    assert errors == [1, 1, 1, 1] and c["ticks"] == 0


def test_damaged_frames_get_a_nak_dropped_only_when_the_hello_asked_for_it() -> None:
    host = configured()
    body = bytearray(cobs.decode(encode_frame(Frame(Msg.PING, b"x", seq=50))[:-1]))
    body[-1] ^= 1
    damaged = cobs.encode(bytes(body)) + b"\x00"
    assert host.board.feed(damaged) == b""
    host.ask(Msg.HELLO, HELLO.pack(240) + bytes([HelloFlag.NAK_DROPPED]))
    (nak,) = host.decoder.feed(host.board.feed(damaged))
    assert (nak.type, nak.channel, nak.ref) == (Msg.NAK, BOARD_CHANNEL, NO_REF)
    assert nak.payload == bytes([Nak.DROPPED, 0]) + b"crc"
    c = host.counters()
    assert (c["rx_crc_errors"], c["naks_sent"], c["rx_frames"]) == (2, 1, 3)


def test_hello_of_another_major_version_gets_a_version_nak_in_the_boards_version() -> None:
    board = Board()
    raw = bytearray(cobs.decode(encode_frame(Frame(Msg.HELLO, HELLO.pack(240)))[:-1]))[:-4]
    raw[0] = 0x20
    raw += zlib.crc32(bytes(raw)).to_bytes(4, "little")
    (nak,) = FrameDecoder().feed(board.feed(cobs.encode(bytes(raw)) + b"\x00"))
    assert (nak.type, nak.payload[0], nak.version) == (Msg.NAK, Nak.VERSION, VERSION)


@pytest.mark.parametrize(
    ("mtype", "payload", "code"),
    [
        (0x7E, b"", Nak.UNKNOWN_TYPE),
        (Msg.CONFIG_NET, b"\x01\x02", Nak.BAD_LEN),
        (Msg.CONFIG_NET, ConfigNet(4, 60, 50, 0, 0, 16, 12, 0, 0, 0).pack(), Nak.CAPABILITY),
        (Msg.CONFIG_NET, ConfigNet(4, 6, 2, 0, 0, 40, 12, 0, 0, 0).pack(), Nak.CAPABILITY),
        (Msg.WRITE_WEIGHTS, WEIGHTS_HEAD.pack(Matrix.IN_HIDDEN, DType.I16, 1, 0) + b"\x01", Nak.BAD_LEN),
        (Msg.WRITE_WEIGHTS, WEIGHTS_HEAD.pack(Matrix.IN_HIDDEN, DType.I8, 1, 24) + b"\x01", Nak.OUT_OF_RANGE),
        (Msg.WRITE_WEIGHTS, WEIGHTS_HEAD.pack(Matrix.IN_HIDDEN, DType.F32, 1, 0) + bytes(4),
         Nak.OUT_OF_RANGE),
        (Msg.WRITE_PARAM, PARAM_HEAD.pack(Vector.HID_GAIN, DType.I32, 0) + bytes(4), Nak.OUT_OF_RANGE),
        (Msg.WRITE_PARAM, PARAM_HEAD.pack(Vector.HID_D_MEM, DType.I32, 0) + (4097).to_bytes(4, "little"),
         Nak.OUT_OF_RANGE),
        (Msg.WRITE_PARAM, PARAM_HEAD.pack(Vector.OUT_THRESHOLD, DType.I32, 1) + bytes(8), Nak.OUT_OF_RANGE),
        (Msg.READ_WEIGHTS, READ_WEIGHTS.pack(Matrix.IN_HIDDEN, DType.I32, 0, 59), Nak.OUT_OF_RANGE),
        (Msg.RUN, RUN.pack(1001, 0), Nak.OUT_OF_RANGE),
    ],
)  # fmt: skip
def test_refusals_name_the_problem_and_change_nothing(mtype: int, payload: bytes, code: Nak) -> None:
    host = configured(Board(BoardLimits(max_neurons=100)))
    assert host.nak(mtype, payload) == code
    assert host.board.cfg == CFG and host.board.shadow is None


def test_a_board_without_float_arithmetic_refuses_a_float_network() -> None:
    host = Host(Board(capabilities=CAPABILITIES & ~Cap.FLOAT))
    assert (
        host.nak(Msg.CONFIG_NET, ConfigNet(4, 6, 2, ConfigFlag.FLOAT, 0, 16, 12, 0, 0, 0).pack())
        == Nak.CAPABILITY
    )
    assert host.board.cfg is None


def test_requests_before_config_are_refused() -> None:
    host = Host(Board())
    assert host.nak(Msg.RUN, RUN.pack(1, 0)) == Nak.NOT_CONFIGURED
    assert host.ask(Msg.PING, b"x").type == Msg.PONG


def test_committed_weights_survive_a_restart_in_the_state_file(state_file) -> None:
    host = configured(Board(state_file=state_file))
    w1 = weights(1)
    upload(host, w1, gen=7)
    for m, w in weights(2).items():  # a second upload the board never commits
        host.ask(Msg.WRITE_WEIGHTS, WEIGHTS_HEAD.pack(m, DType.I16, 8, 0) + w.astype("<i2").tobytes())
    again = Host(Board(state_file=state_file))
    ack = HelloAck.unpack(again.ask(Msg.HELLO, HELLO.pack(240)).payload)
    assert (ack.generation, ack.state) == (7, 3)
    assert all(np.array_equal(read(again, m, w.size), w) for m, w in w1.items())


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([*Msg, 0x7F]), st.binary(max_size=40)), min_size=1, max_size=20))
def test_arbitrary_requests_are_answered_never_crash_the_board(requests) -> None:
    host = configured()
    for mtype, payload in requests:
        if mtype == Msg.RUN and len(payload) >= 2:
            payload = RUN.pack(1 + payload[0] % 50, payload[1] & 1) + payload[3:]  # keep runs short
        (reply,) = host.send(mtype, payload)
        assert reply.is_response and reply.ref == host.seq
