"""Wire format of docs/protocol.md: COBS frames with a versioned header and CRC-32, and payloads.

Decoding never raises anything but ProtocolError, and every length is checked against a fixed bound
before any buffer grows.
"""

from __future__ import annotations

import struct
import zlib
from collections import deque
from dataclasses import astuple, dataclass
from enum import IntEnum, IntFlag
from typing import ClassVar

import numpy as np
from cobs import cobs

from chiploop.errors import LinkError

VERSION_MAJOR = 1
VERSION_MINOR = 3
VERSION = VERSION_MAJOR << 4 | VERSION_MINOR
HEADER = struct.Struct("<BBBBHHH")
CRC = struct.Struct("<I")
MAX_PAYLOAD = 240
MIN_FRAME = HEADER.size + CRC.size  # 14
MAX_FRAME = MIN_FRAME + MAX_PAYLOAD  # 254 bytes before COBS
MAX_ENCODED = MAX_FRAME + 1  # COBS adds one byte per 254
NO_REF = 0xFFFF
BOARD_CHANNEL = 0xFF


class ProtocolError(LinkError):
    """A frame or payload does not follow docs/protocol.md; `reason` is cobs|len|crc|version|payload."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        super().__init__(f"{reason} error: {detail}")


class Flag(IntFlag):
    RESPONSE = 1
    ERROR = 2
    UNRELIABLE = 4


class Msg(IntEnum):
    HELLO = 0x01
    HELLO_ACK = 0x02
    PING = 0x03
    PONG = 0x04
    ACK = 0x05
    NAK = 0x06
    RESET = 0x07
    LOG = 0x08
    CONFIG_NET = 0x10
    WRITE_PARAM = 0x11
    WRITE_WEIGHTS = 0x12
    READ_WEIGHTS = 0x13
    WEIGHTS = 0x14
    COMMIT = 0x15
    CONFIG_RULES = 0x16
    CONFIG_LAYERS = 0x17
    INPUT = 0x20
    RUN = 0x21
    DONE = 0x22
    READ_OUTPUT = 0x23
    OUTPUT = 0x24
    READ_COUNTERS = 0x25
    COUNTERS = 0x26


class Nak(IntEnum):
    VERSION = 1
    UNKNOWN_TYPE = 2
    BAD_LEN = 3
    OUT_OF_RANGE = 4
    NOT_CONFIGURED = 5
    BUSY = 6
    CRC_MISMATCH = 7
    CAPABILITY = 8
    DROPPED = 9


class Cap(IntFlag):
    FIXED = 1 << 0
    FLOAT = 1 << 1
    RECURRENT = 1 << 2
    SPIKING_READOUT = 1 << 3
    ALIF = 1 << 4
    MEMBRANE = 1 << 5
    DECAY_SHIFT = 1 << 6
    DECAY_MULTIPLIER = 1 << 7
    W_I8 = 1 << 8
    W_I16 = 1 << 9
    W_I32 = 1 << 10
    W_F32 = 1 << 11
    PERSIST = 1 << 12
    GAIN = 1 << 13
    SPIKE_CAP = 1 << 14
    W_F64 = 1 << 15
    RULES = 1 << 16
    DROP_NAK = 1 << 17
    LAYERS = 1 << 18


class HelloFlag(IntFlag):
    """Host flags appended to the HELLO payload (§3)."""

    NAK_DROPPED = 1


class DType(IntEnum):
    """Element formats on the wire (§4.4)."""

    I8 = 1
    I16 = 2
    I32 = 3
    F32 = 4
    F64 = 5

    @property
    def np(self) -> np.dtype:
        return np.dtype(_NP_DTYPES[self])


_NP_DTYPES = {DType.I8: "<i1", DType.I16: "<i2", DType.I32: "<i4", DType.F32: "<f4", DType.F64: "<f8"}
WEIGHT_CAP = {DType.I8: Cap.W_I8, DType.I16: Cap.W_I16, DType.I32: Cap.W_I32, DType.F32: Cap.W_F32,
              DType.F64: Cap.W_F64}  # fmt: skip


class Matrix(IntEnum):
    """Matrix ids (§4.4); with several hidden layers, `layered_matrix` gives the ids from 5 on."""

    IN_HIDDEN = 0
    HIDDEN_HIDDEN = 1
    HIDDEN_OUT = 2  # from the last hidden layer
    IN_HIDDEN_2 = 3
    HIDDEN_HIDDEN_2 = 4


LAYERED_MATRICES = 5  # id of the first matrix of hidden layer 1 (0-based)


def layered_matrix(layer: int, recurrent: bool) -> int:
    """The id of hidden layer `layer`'s (>= 1) feed-forward weights from layer - 1, or its recurrence."""
    return LAYERED_MATRICES + 2 * (layer - 1) + int(recurrent)


def matrix_ids(names: list[str], layer_names: tuple[str, ...]) -> dict[str, int]:
    """The wire id of each weight matrix named like `NetworkSpec.weight_shapes` ("pre_post")."""
    ids = {"in_hidden": Matrix.IN_HIDDEN, "hidden_hidden": Matrix.HIDDEN_HIDDEN,
           f"{layer_names[-1]}_out": Matrix.HIDDEN_OUT, "in_hidden_2": Matrix.IN_HIDDEN_2,
           "hidden_hidden_2": Matrix.HIDDEN_HIDDEN_2}  # fmt: skip
    for k in range(1, len(layer_names)):
        below, name = layer_names[k - 1], layer_names[k]
        ids |= {f"{below}_{name}": layered_matrix(k, False), f"{name}_{name}": layered_matrix(k, True)}
    return {name: int(ids[name]) for name in names}


CONFIG_LAYERS_HEAD = struct.Struct("<BB")  # n_layers, recurrent bits (bit k: layer k); then <H per layer


def config_layers(sizes: tuple[int, ...], recurrent_bits: int) -> bytes:
    """The CONFIG_LAYERS payload (§4.2c)."""
    return CONFIG_LAYERS_HEAD.pack(len(sizes), recurrent_bits) + struct.pack(f"<{len(sizes)}H", *sizes)


class Vector(IntEnum):
    """Parameter vectors of WRITE_PARAM (§4.3)."""

    HID_D_MEM = 0
    HID_D_SYN = 1
    HID_D_ADA = 2
    HID_THRESHOLD = 3
    HID_BETA = 4
    HID_GAIN = 5
    OUT_D_MEM = 6
    OUT_D_SYN = 7
    OUT_THRESHOLD = 8
    HID_D_SYN2 = 9
    HID_BIAS = 10
    OUT_BIAS = 11

    @property
    def hidden(self) -> bool:
        return self <= Vector.HID_GAIN or self in (Vector.HID_D_SYN2, Vector.HID_BIAS)


class Buffer(IntEnum):
    HIDDEN_SPIKES = 0
    OUT_SPIKES = 1
    HIDDEN_V = 2
    OUT_V = 3
    HIDDEN_COUNTS = 4


@dataclass(frozen=True)
class Frame:
    """One decoded frame: header fields and payload."""

    type: int
    payload: bytes = b""
    flags: int = 0
    channel: int = 0
    seq: int = 0
    ref: int = NO_REF
    version: int = VERSION

    @property
    def is_response(self) -> bool:
        return bool(self.flags & Flag.RESPONSE)


def encode_frame(frame: Frame) -> bytes:
    """Frame -> wire bytes (COBS-encoded, 0x00-terminated)."""
    if len(frame.payload) > MAX_PAYLOAD:
        raise ProtocolError("len", f"payload of {len(frame.payload)} bytes, max {MAX_PAYLOAD}")
    head = HEADER.pack(
        frame.version, frame.type, frame.flags, frame.channel, frame.seq, frame.ref, len(frame.payload)
    )
    body = head + frame.payload
    return cobs.encode(body + CRC.pack(zlib.crc32(body))) + b"\x00"


def decode_frame(encoded: bytes, major: int | None = VERSION_MAJOR) -> Frame:
    """COBS bytes of one frame (no delimiter) -> Frame, or ProtocolError naming the check that failed.

    `major=None` accepts every version (the header layout is frozen across versions).
    """
    if len(encoded) > MAX_ENCODED:
        raise ProtocolError("len", f"encoded frame of {len(encoded)} bytes, max {MAX_ENCODED}")
    try:
        raw = cobs.decode(encoded)
    except cobs.DecodeError as exc:
        raise ProtocolError("cobs", str(exc)) from None
    if not MIN_FRAME <= len(raw) <= MAX_FRAME:
        raise ProtocolError("len", f"frame of {len(raw)} bytes, expected {MIN_FRAME}..{MAX_FRAME}")
    body, (crc,) = raw[:-4], CRC.unpack(raw[-4:])
    if zlib.crc32(body) != crc:
        raise ProtocolError("crc", f"crc {crc:#010x} != computed {zlib.crc32(body):#010x}")
    version, mtype, flags, channel, seq, ref, length = HEADER.unpack(body[: HEADER.size])
    if length != len(body) - HEADER.size:
        raise ProtocolError("len", f"header len {length} != payload of {len(body) - HEADER.size} bytes")
    if major is not None and version >> 4 != major:
        raise ProtocolError("version", f"protocol version {version_text(version)}, expected {major}.x")
    return Frame(mtype, bytes(body[HEADER.size :]), flags, channel, seq, ref, version)


def version_text(version: int) -> str:
    return f"{version >> 4}.{version & 15}"


class FrameDecoder:
    """Streaming decoder: feed it any bytes, get the valid frames; bad ones are dropped and counted.

    Resynchronises on every 0x00. Holds at most MAX_ENCODED bytes; a longer run without 0x00 is
    discarded up to the next delimiter (a `len` drop). `foreign` keeps the last few intact frames
    dropped for another major version (a peer speaking another protocol version).
    """

    def __init__(self, major: int = VERSION_MAJOR) -> None:
        self.major = major
        self._buf = bytearray()
        self._overflow = False
        self.frames = 0
        self.dropped = {"cobs": 0, "crc": 0, "len": 0, "version": 0}
        self.foreign: deque[Frame] = deque(maxlen=4)

    @property
    def n_dropped(self) -> int:
        return sum(self.dropped.values())

    def feed(self, data: bytes) -> list[Frame]:
        """The valid frames completed by `data`."""
        return [event for event in self.events(data) if isinstance(event, Frame)]

    def events(self, data: bytes) -> list[Frame | str]:
        """Like `feed`, with the reason (`cobs`, `crc`, `len`) of each frame dropped as damaged in its
        place in the stream (a frame of another version is only counted and kept in `foreign`)."""
        out: list[Frame | str] = []
        for chunk_end, piece in _split_keep(data):
            if not self._overflow and len(self._buf) + len(piece) > MAX_ENCODED:
                self._overflow = True
                self._buf.clear()
            elif not self._overflow:
                self._buf += piece
            if not chunk_end:
                continue
            if self._overflow:
                self.dropped["len"] += 1
                out.append("len")
            elif self._buf:
                event = self._decode(bytes(self._buf))
                if event != "version":
                    out.append(event)
            self._buf.clear()
            self._overflow = False
        return out

    def _decode(self, encoded: bytes) -> Frame | str:
        try:
            frame = decode_frame(encoded, self.major)
        except ProtocolError as exc:
            self.dropped[exc.reason] += 1
            if exc.reason == "version":
                self.foreign.append(decode_frame(encoded, major=None))
            return exc.reason
        self.frames += 1
        return frame


def _split_keep(data: bytes) -> list[tuple[bool, bytes]]:
    """Split at 0x00 into (ends_with_delimiter, piece) pairs."""
    parts = bytes(data).split(b"\x00")
    return [(i < len(parts) - 1, p) for i, p in enumerate(parts) if p or i < len(parts) - 1]


# ---------------------------------------------------------------- payloads


class _Packed:
    """A fixed-size payload: a dataclass whose fields map one to one onto `FORMAT`."""

    FORMAT: ClassVar[struct.Struct]

    def pack(self) -> bytes:
        return self.FORMAT.pack(*astuple(self))  # type: ignore[call-overload]

    @classmethod
    def unpack(cls, payload: bytes):  # noqa: ANN206 - returns cls
        if len(payload) < cls.FORMAT.size:
            need = cls.FORMAT.size
            raise ProtocolError("payload", f"{cls.__name__} needs {need} bytes, got {len(payload)}")
        return cls(*cls.FORMAT.unpack(payload[: cls.FORMAT.size]))  # minor versions may append fields


@dataclass(frozen=True)
class HelloAck(_Packed):
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<BBIIHBBHHIBBHIIHBBH")
    fw_major: int
    fw_minor: int
    board_id: int
    capabilities: int
    max_payload: int
    window: int
    n_channels: int
    max_neurons: int
    max_inputs: int
    max_synapses: int
    max_state_bits: int
    max_decay_bits: int
    max_ticks: int
    buffer_bytes: int
    tick_ns: int
    generation: int
    state: int
    reserved8: int = 0
    reserved16: int = 0

    @property
    def caps(self) -> Cap:
        return Cap(self.capabilities & sum(Cap))


class ConfigFlag(IntFlag):
    RECURRENT = 1
    SPIKING_READOUT = 2
    RESET_ZERO = 4
    FLOAT = 8


@dataclass(frozen=True)
class ConfigNet(_Packed):
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<HHHBBBBHHH")
    n_in: int
    n_hidden: int
    n_out: int
    flags: int
    decay_kind: int  # 0 multiplier, 1 shift
    state_bits: int
    decay_bits: int
    refractory_steps: int
    max_spikes_per_step: int
    max_input_spikes_per_step: int


@dataclass(frozen=True)
class ConfigRules(_Packed):
    """The rules chips differ on (§4.2b); chiploop's own rules are the defaults a board starts with."""

    FORMAT: ClassVar[struct.Struct] = struct.Struct("<BBBBBBBBBB")
    input_delay: int = 1
    add_then_decay: int = 0
    decay_rounding: int = 0  # truncate, floor, floor_min_step
    per_addition: int = 0
    wrap_current: int = 0
    symmetric_membrane: int = 0
    fractional_bits: int = 0
    strict_threshold: int = 0
    max_spike_count: int = 1
    synapses: int = 1


@dataclass(frozen=True)
class Done(_Packed):
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<IHI")
    tick: int
    n_ticks: int
    dropped_spikes: int


COUNTER_NAMES = (
    "rx_frames", "rx_cobs_errors", "rx_crc_errors", "rx_len_errors", "rx_version_errors", "duplicates",
    "naks_sent", "ticks", "spikes", "dropped_spikes", "commits", "resets",
)  # fmt: skip
COUNTERS = struct.Struct(f"<{len(COUNTER_NAMES)}I")

# variable-size payload heads: the data follows
PARAM_HEAD = struct.Struct("<BBH")  # vector, dtype, offset
WEIGHTS_HEAD = struct.Struct("<BBHI")  # matrix, dtype, generation, offset (WRITE_WEIGHTS and WEIGHTS)
READ_WEIGHTS = struct.Struct("<BBIH")  # matrix, dtype, offset, count
COMMIT = struct.Struct("<HI")  # generation, crc32
INPUT_HEAD = struct.Struct("<I")  # byte offset
RUN = struct.Struct("<HB")  # n_ticks, flags (b0 record_v)
READ_OUTPUT = struct.Struct("<BIH")  # buffer, byte offset, byte count
OUTPUT_HEAD = struct.Struct("<BI")  # buffer, byte offset
NAK_HEAD = struct.Struct("<BB")  # code, offending type
RESET = struct.Struct("<B")  # 0 state only, 1 full
HELLO = struct.Struct("<H")  # host max payload (+ optional u8 HelloFlag)


def unpack_head(fmt: struct.Struct, payload: bytes) -> tuple[tuple[int, ...], bytes]:
    """Split a payload into its fixed head (unpacked) and the data behind it."""
    if len(payload) < fmt.size:
        raise ProtocolError("payload", f"head of {fmt.size} bytes expected, got {len(payload)}")
    return fmt.unpack(payload[: fmt.size]), payload[fmt.size :]


def nak_text(payload: bytes) -> str:
    """Human-readable form of a NAK payload."""
    (code, mtype), detail = unpack_head(NAK_HEAD, payload)
    name = Nak(code).name if code in Nak._value2member_map_ else f"code {code}"
    what = Msg(mtype).name if mtype in Msg._value2member_map_ else f"type {mtype:#04x}"
    text = detail[:64].decode("utf-8", "replace")
    return f"NAK {name} for {what}" + (f": {text}" if text else "")


def weights_crc(blob_parts: list[np.ndarray], fixed: bool) -> int:
    """CRC-32 of the weight blob (§4.4): matrices in id order, row-major, i32 or f64 little-endian."""
    dtype = "<i4" if fixed else "<f8"
    crc = 0
    for part in blob_parts:
        crc = zlib.crc32(np.ascontiguousarray(part, dtype=dtype).tobytes(), crc)
    return crc
