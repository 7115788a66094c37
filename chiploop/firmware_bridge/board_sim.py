"""A board simulator speaking docs/protocol.md, running the neuron of docs/dynamics.md (fixed or float).

`Board` is transport-free (`feed(bytes) -> bytes`); `serve_pty` and `serve_tcp` put it behind a
pseudo-terminal or a TCP socket, as `chiploop board serve` does. Committed weights, configuration and
parameters can persist in a state file (like a board's flash): a board killed before COMMIT comes
back with the previous weights.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import threading
import tty
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from chiploop.chip.c_config import DECAY_ROUNDING
from chiploop.chip.dynamics import LayerParams, NetworkParams, NetworkState, simulate
from chiploop.chip.network import MAX_LAYERS, NetworkSpec
from chiploop.chip.rules import Rules
from chiploop.firmware_bridge.protocol import (
    BOARD_CHANNEL,
    COMMIT,
    CONFIG_LAYERS_HEAD,
    COUNTER_NAMES,
    COUNTERS,
    HEADER,
    HELLO,
    INPUT_HEAD,
    NAK_HEAD,
    NO_REF,
    OUTPUT_HEAD,
    PARAM_HEAD,
    READ_OUTPUT,
    READ_WEIGHTS,
    RESET,
    RUN,
    VERSION,
    WEIGHTS_HEAD,
    Buffer,
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
    Msg,
    Nak,
    ProtocolError,
    Vector,
    encode_frame,
    matrix_ids,
    unpack_head,
)

CAPABILITIES = (
    Cap.FIXED | Cap.FLOAT | Cap.RECURRENT | Cap.SPIKING_READOUT | Cap.ALIF | Cap.MEMBRANE | Cap.DECAY_SHIFT
    | Cap.DECAY_MULTIPLIER | Cap.W_I8 | Cap.W_I16 | Cap.W_I32 | Cap.W_F32 | Cap.W_F64 | Cap.GAIN
    | Cap.SPIKE_CAP | Cap.RULES | Cap.DROP_NAK | Cap.LAYERS
)  # fmt: skip


@dataclass(frozen=True)
class BoardLimits:
    """What the simulated board can host (announced in HELLO_ACK)."""

    max_neurons: int = 4096
    max_inputs: int = 4096
    max_synapses: int = 4_000_000
    max_state_bits: int = 32
    max_decay_bits: int = 24
    max_ticks: int = 1000
    buffer_bytes: int = 1 << 22
    max_payload: int = 240
    n_channels: int = 4


class Nack(Exception):
    """Internal: refuse the current request with a NAK code."""

    def __init__(self, code: Nak, detail: str = "") -> None:
        self.code, self.detail = code, detail


# ---------------------------------------------------------------- the neuron
Layers = tuple[tuple[int, ...], int]  # CONFIG_LAYERS: hidden layer sizes, recurrent bits


def wire_spec(cfg: ConfigNet, rules: ConfigRules, layers: Layers | None) -> NetworkSpec:
    """The network a configuration describes (layers None: one hidden layer of CONFIG_NET's)."""
    sizes, bits = layers if layers is not None else ((cfg.n_hidden,), cfg.flags & ConfigFlag.RECURRENT)
    recurrent = tuple(bool(bits >> k & 1) for k in range(len(sizes)))
    readout = "spiking" if cfg.flags & ConfigFlag.SPIKING_READOUT else "leaky"
    return NetworkSpec(cfg.n_in, sizes, cfg.n_out, recurrent, readout, rules.synapses)


class BoardNet:
    """One sample of the network of docs/dynamics.md, run by `chiploop.chip.dynamics` (the Python
    definition the twin runs too) from the configuration, rules, vectors and weights of the wire.

    Fixed arithmetic: integer decay codes (§4.3), state as integers. Float arithmetic (config flag
    FLOAT): decay factors. State persists across `run` calls until `reset_state`.
    """

    def __init__(
        self,
        cfg: ConfigNet,
        rules: ConfigRules,
        params: dict[Vector, np.ndarray],
        weights: dict[int, np.ndarray],
        spec: NetworkSpec,
    ) -> None:
        self.cfg, self.rules, self.p, self.w, self.spec = cfg, rules, params, weights, spec
        self.fixed = not cfg.flags & ConfigFlag.FLOAT
        self.reset_state()

    def reset_state(self) -> None:
        self.state: NetworkState | None = None
        self.tick = 0
        self.dropped = 0

    def _network(self) -> NetworkParams:
        cfg, r, p = self.cfg, self.rules, self.p
        rules = Rules(
            fixed=self.fixed,
            decay="shift" if cfg.decay_kind else "multiplier",
            decay_bits=cfg.decay_bits,
            decay_rounding=DECAY_ROUNDING[r.decay_rounding],
            per_addition=bool(r.per_addition),
            wrap_current=bool(r.wrap_current),
            symmetric_membrane=bool(r.symmetric_membrane),
            state_bits=cfg.state_bits,
            fractional_bits=r.fractional_bits,
            input_delay=r.input_delay,
            add_then_decay=bool(r.add_then_decay),
            strict_threshold=bool(r.strict_threshold),
            reset_zero=bool(cfg.flags & ConfigFlag.RESET_ZERO),
            refractory_steps=cfg.refractory_steps,
            max_spike_count=r.max_spike_count,
            spike_cap=cfg.max_spikes_per_step or None,
            input_cap=cfg.max_input_spikes_per_step or None,
        )

        def factor(code: np.ndarray) -> torch.Tensor:
            if not self.fixed:
                return _tensor(code)
            code = code.astype(np.int64)
            if cfg.decay_kind:  # shift s -> 2^-s
                return _tensor(np.ldexp(1.0, -code))
            return _tensor(np.ldexp(((1 << cfg.decay_bits) - code).astype(np.float64), -cfg.decay_bits))

        layers = []
        for s in self.spec.hidden_slices():
            v = {vec: a[s] for vec, a in p.items() if vec.hidden}
            adaptive = bool(np.any(v[Vector.HID_BETA] != 0))
            gain = v[Vector.HID_GAIN]
            layers.append(
                LayerParams(
                    mem=factor(v[Vector.HID_D_MEM]),
                    theta=_tensor(v[Vector.HID_THRESHOLD]),
                    syn=factor(v[Vector.HID_D_SYN]),
                    syn2=factor(v[Vector.HID_D_SYN2]) if r.synapses == 2 else None,
                    gain=None if np.all(gain == 1.0) else _tensor(gain),
                    bias=_tensor(v[Vector.HID_BIAS]),
                    ada=factor(v[Vector.HID_D_ADA]) if adaptive else None,
                    beta=_tensor(v[Vector.HID_BETA]) if adaptive else None,
                    spiking=True,
                    max_spike_count=r.max_spike_count,
                )
            )
        out = LayerParams(
            mem=factor(p[Vector.OUT_D_MEM]),
            theta=_tensor(p[Vector.OUT_THRESHOLD]),
            syn=factor(p[Vector.OUT_D_SYN]),
            bias=_tensor(p[Vector.OUT_BIAS]),
            spiking=bool(cfg.flags & ConfigFlag.SPIKING_READOUT),
        )
        return NetworkParams(rules, tuple(layers), out)

    def run(self, raster: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Advance `len(raster)` ticks (0/1 rows of n_in); returns (z_h counts, z_o, v_h, v_o) per tick."""
        net = self._network()
        names = {
            i: name for name, i in matrix_ids(list(self.spec.weight_shapes()), self.spec.layer_names).items()
        }
        w = {names[m]: _tensor(a) for m, a in self.w.items()}
        with torch.no_grad():
            trace = simulate(net, _tensor(raster)[None], w, state=self.state)
        self.state = trace.final
        self.tick += len(raster)
        self.dropped += int(trace.dropped_hidden.sum() + trace.dropped_input.sum())
        z_o = trace.spikes.get("out", trace.v["out"].new_zeros(trace.v["out"].shape))
        z_h = torch.cat([trace.spikes[n] for n in self.spec.layer_names], dim=2)
        v_h = torch.cat([trace.v[n] for n in self.spec.layer_names], dim=2)
        return tuple(a[0].numpy() for a in (z_h, z_o, v_h, trace.v["out"]))


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.tensor(np.asarray(a, dtype=np.float64))


# ---------------------------------------------------------------- the board


def _bitmap(bits: np.ndarray) -> bytes:
    """[T, N] 0/1 -> tick-major LSB-first bitmaps of ceil(N/8) bytes per tick."""
    return np.packbits(bits.astype(np.uint8), axis=1, bitorder="little").tobytes()


class Board:
    """The protocol engine of a board: bytes in, bytes out; state survives link sessions."""

    def __init__(
        self,
        limits: BoardLimits = BoardLimits(),
        board_id: int = 0xC41B,
        version: int = VERSION,
        state_file: Path | None = None,
        capabilities: Cap = CAPABILITIES,
    ) -> None:
        self.limits, self.board_id, self.version = limits, board_id, version
        self.capabilities = capabilities | (Cap.PERSIST if state_file else Cap(0))
        self.state_file = state_file
        self.decoder = FrameDecoder(major=version >> 4)
        self.nak_drops = False  # the host asked for NAK(DROPPED) in its HELLO
        self.counters = dict.fromkeys(COUNTER_NAMES, 0)
        self._cache: dict[int, tuple[int, int, bytes]] = {}  # channel -> (seq, request crc, response)
        self.cfg: ConfigNet | None = None
        self.rules = ConfigRules()
        self.params: dict[Vector, np.ndarray] = {}
        self.layers: Layers | None = None  # CONFIG_LAYERS (None: one hidden layer)
        self.active: dict[int, np.ndarray] = {}
        self.generation = 0
        self.shadow: dict[int, np.ndarray] | None = None
        self.shadow_gen = 0
        self.net: BoardNet | None = None
        self.inputs = np.zeros(0, np.uint8)
        self.outputs: dict[Buffer, bytes] = {}
        if state_file is not None and state_file.exists():
            self._load(state_file)

    # --------------------------------------------------------------- bytes
    def feed(self, data: bytes) -> bytes:
        """Consume received bytes; return the bytes to send back."""
        out = bytearray()
        for event in self.decoder.events(data):
            if isinstance(event, Frame):
                self.counters["rx_frames"] += 1
                out += self._on_frame(event)
            elif self.nak_drops:
                out += self._drop_nak(event)
        while self.decoder.foreign:
            foreign = self.decoder.foreign.popleft()
            if foreign.type == Msg.HELLO:
                out += self._version_nak()
        for reason, name in (("cobs", "rx_cobs_errors"), ("crc", "rx_crc_errors"), ("len", "rx_len_errors")):
            self.counters[name] = self.decoder.dropped[reason]
        self.counters["rx_version_errors"] = self.decoder.dropped["version"]
        return bytes(out)

    def _on_frame(self, frame: Frame) -> bytes:
        if frame.is_response or frame.channel >= self.limits.n_channels:
            return b""
        reliable = not frame.flags & Flag.UNRELIABLE
        head = HEADER.pack(frame.version, frame.type, frame.flags, frame.channel, frame.seq, frame.ref,
                           len(frame.payload))  # fmt: skip
        crc = zlib.crc32(head + frame.payload)  # the frame's CRC trailer
        cached = self._cache.get(frame.channel)
        if reliable and frame.type != Msg.HELLO and cached and cached[:2] == (frame.seq, crc):
            self.counters["duplicates"] += 1
            return cached[2]
        try:
            mtype, payload = self._handle(frame)
            wire = self._frame(frame, mtype, payload)
        except Nack as nak:
            wire = self._nak_frame(frame, nak.code, nak.detail)
        except ProtocolError as exc:
            wire = self._nak_frame(frame, Nak.BAD_LEN, str(exc))
        if frame.type == Msg.HELLO:
            self._cache.clear()
        if not reliable:
            return b""
        self._cache[frame.channel] = (frame.seq, crc, wire)
        return wire

    def _frame(self, req: Frame, mtype: Msg, payload: bytes, flags: int = Flag.RESPONSE) -> bytes:
        return encode_frame(Frame(mtype, payload, flags, req.channel, req.seq, req.seq, self.version))

    def _nak_frame(self, req: Frame, code: Nak, detail: str) -> bytes:
        self.counters["naks_sent"] += 1
        payload = NAK_HEAD.pack(code, req.type) + detail.encode()[:64]
        return self._frame(req, Msg.NAK, payload, Flag.RESPONSE | Flag.ERROR)

    def _drop_nak(self, reason: str) -> bytes:
        """Unsolicited NAK(DROPPED) for a frame dropped as damaged, in its place in the answer stream."""
        self.counters["naks_sent"] += 1
        payload = NAK_HEAD.pack(Nak.DROPPED, 0) + reason.encode()
        return encode_frame(Frame(Msg.NAK, payload, Flag.RESPONSE | Flag.ERROR, BOARD_CHANNEL, 0, NO_REF,
                                  self.version))  # fmt: skip

    def _version_nak(self) -> bytes:
        """Unsolicited NAK(VERSION) in the board's own version, for a HELLO of another major."""
        self.counters["naks_sent"] += 1
        payload = NAK_HEAD.pack(Nak.VERSION, Msg.HELLO) + b"unknown protocol version"
        return encode_frame(Frame(Msg.NAK, payload, Flag.RESPONSE | Flag.ERROR, BOARD_CHANNEL, 0, NO_REF,
                                  self.version))  # fmt: skip

    # --------------------------------------------------------------- requests
    def _handle(self, f: Frame) -> tuple[Msg, bytes]:
        handler = _HANDLERS.get(f.type)
        if handler is None:
            raise Nack(Nak.UNKNOWN_TYPE, f"type {f.type:#04x}")
        if f.type not in _ANYTIME and self.cfg is None:
            raise Nack(Nak.NOT_CONFIGURED, "send CONFIG_NET first")
        return handler(self, f.payload)

    def _hello(self, payload: bytes) -> tuple[Msg, bytes]:
        _, flags = unpack_head(HELLO, payload)
        self.nak_drops = bool(flags[:1] and flags[0] & HelloFlag.NAK_DROPPED)
        lim = self.limits
        state = (self.cfg is not None) | (self.generation > 0) << 1
        ack = HelloAck(0, 1, self.board_id, int(self.capabilities), lim.max_payload, lim.n_channels,
                       lim.n_channels, lim.max_neurons, lim.max_inputs, lim.max_synapses, lim.max_state_bits,
                       lim.max_decay_bits, lim.max_ticks, lim.buffer_bytes, 0, self.generation,
                       state)  # fmt: skip
        return Msg.HELLO_ACK, ack.pack()

    def _ping(self, payload: bytes) -> tuple[Msg, bytes]:
        return Msg.PONG, payload

    def _reset(self, payload: bytes) -> tuple[Msg, bytes]:
        (kind,), _ = unpack_head(RESET, payload)
        self.counters["resets"] += 1
        if kind == 1:
            self.cfg, self.net, self.params, self.active, self.layers = None, None, {}, {}, None
            self.shadow, self.generation, self.rules = None, 0, ConfigRules()
        elif kind == 0:
            if self.net is not None:
                self.net.reset_state()
        else:
            raise Nack(Nak.OUT_OF_RANGE, f"reset kind {kind}, expected 0 or 1")
        return Msg.ACK, b""

    def _config(self, payload: bytes) -> tuple[Msg, bytes]:
        self._configure(ConfigNet.unpack(payload), ConfigRules(), None)
        return Msg.ACK, b""

    def _config_rules(self, payload: bytes) -> tuple[Msg, bytes]:
        self._configure(self.cfg, ConfigRules.unpack(payload), self.layers)
        return Msg.ACK, b""

    def _config_layers(self, payload: bytes) -> tuple[Msg, bytes]:
        (n, bits), sizes = unpack_head(CONFIG_LAYERS_HEAD, payload)
        if not 1 <= n <= MAX_LAYERS:
            raise Nack(Nak.CAPABILITY, f"{n} hidden layers, board hosts 1 to {MAX_LAYERS}")
        if len(sizes) != 2 * n:
            raise Nack(Nak.BAD_LEN, f"CONFIG_LAYERS: 2 bytes + 2 per layer, got {len(payload)}")
        self._configure(self.cfg, self.rules, (struct.unpack(f"<{n}H", sizes), bits))
        return Msg.ACK, b""

    def _configure(self, cfg: ConfigNet, rules: ConfigRules, layers: Layers | None) -> None:
        """Replace the configuration (§4.2): weights and parameters cleared, state reset."""
        problem = self._cannot_host(cfg, rules, layers)
        if problem:
            raise Nack(Nak.CAPABILITY, problem)
        self.cfg, self.rules, self.layers = cfg, rules, layers
        self.params = {v: np.zeros(self._vector_len(v), _param_dtype(cfg, v).np) for v in Vector}
        self.params[Vector.HID_GAIN][:] = 1.0
        store = np.float64 if cfg.flags & ConfigFlag.FLOAT else np.int64
        self.active = {m: np.zeros(shape, store) for m, shape in self._shapes(cfg, rules, layers).items()}
        self.generation, self.shadow, self.shadow_gen = 0, None, 0
        self.net = BoardNet(cfg, rules, self.params, self.active, wire_spec(cfg, rules, layers))
        self.outputs = {}

    def _cannot_host(self, cfg: ConfigNet, rules: ConfigRules, layers: Layers | None) -> str:
        lim = self.limits
        neurons = cfg.n_hidden + cfg.n_out
        if layers is not None:
            sizes, bits = layers
            if sum(sizes) != cfg.n_hidden or min(sizes) < 1 or bits >> len(sizes):
                return "layer sizes must be >= 1 and add up to n_hidden, recurrent bits within the layers"
            if rules.synapses == 2 and len(sizes) > 1:
                return "2 synaptic currents need one hidden layer"
        if min(cfg.n_in, cfg.n_hidden, cfg.n_out) < 1 or rules.synapses not in (1, 2):
            return "every layer needs at least one neuron; synapses must be 1 or 2"
        synapses = sum(a * b for a, b in self._shapes(cfg, rules, layers).values())
        r = rules
        floats = bool(cfg.flags & ConfigFlag.FLOAT)
        checks = [
            ((Cap.FLOAT if floats else Cap.FIXED) not in self.capabilities,
             f"{'float' if floats else 'fixed'} arithmetic not supported"),
            (min(cfg.n_in, cfg.n_hidden, cfg.n_out) < 1, "every layer needs at least one neuron"),
            (neurons > lim.max_neurons, f"{neurons} neurons, board hosts at most {lim.max_neurons}"),
            (cfg.n_in > lim.max_inputs, f"{cfg.n_in} inputs, board takes at most {lim.max_inputs}"),
            (synapses > lim.max_synapses, f"{synapses} synapses, board hosts at most {lim.max_synapses}"),
            (not 2 <= cfg.state_bits <= lim.max_state_bits,
             f"state_bits {cfg.state_bits} not in 2..{lim.max_state_bits}"),
            (not 1 <= cfg.decay_bits <= lim.max_decay_bits,
             f"decay_bits {cfg.decay_bits} not in 1..{lim.max_decay_bits}"),
            (cfg.decay_kind > 1, f"decay kind {cfg.decay_kind}, expected 0 (multiplier) or 1 (shift)"),
            (max(r.input_delay, r.add_then_decay, r.per_addition, r.wrap_current, r.symmetric_membrane,
                 r.strict_threshold) > 1, "rule flags must be 0 or 1"),
            (r.decay_rounding > 2 or (r.decay_rounding == 2 and cfg.decay_kind != 1),
             "decay_rounding must be 0, 1, or 2 with shift decays"),
            (r.fractional_bits + 1 >= cfg.state_bits, "fractional_bits must be < state_bits - 1"),
            (r.max_spike_count < 1 or (r.max_spike_count > 1 and cfg.flags & ConfigFlag.RESET_ZERO),
             "max_spike_count must be >= 1, and 1 with reset to zero"),
            (r.synapses not in (1, 2), "synapses must be 1 or 2"),
        ]  # fmt: skip
        return next((msg for bad, msg in checks if bad), "")

    @staticmethod
    def _shapes(cfg: ConfigNet, rules: ConfigRules, layers: Layers | None) -> dict[int, tuple[int, int]]:
        """`[pre, post]` of each matrix id of the configured network, in storage order."""
        spec = wire_spec(cfg, rules, layers)
        shapes = spec.weight_shapes()
        return {i: shapes[name] for name, i in matrix_ids(list(shapes), spec.layer_names).items()}

    def _vector_len(self, v: Vector) -> int:
        return self.cfg.n_hidden if v.hidden else self.cfg.n_out

    def _write_param(self, payload: bytes) -> tuple[Msg, bytes]:
        (vec, dtype, offset), data = unpack_head(PARAM_HEAD, payload)
        if vec not in Vector._value2member_map_:
            raise Nack(Nak.OUT_OF_RANGE, f"vector {vec}")
        want = _param_dtype(self.cfg, Vector(vec))
        if dtype != want:
            raise Nack(Nak.OUT_OF_RANGE, f"vector {Vector(vec).name} takes dtype {want.name}, got {dtype}")
        values = _elements(data, want)
        if Vector(vec) in _DECAYS and want == DType.I32:
            top = 62 if self.cfg.decay_kind == 1 else 1 << self.cfg.decay_bits
            if values.size and (values.min() < 0 or values.max() > top):
                raise Nack(Nak.OUT_OF_RANGE, f"decay codes of {Vector(vec).name} must be in 0..{top}")
        if not np.all(np.isfinite(values)):
            raise Nack(Nak.OUT_OF_RANGE, f"{Vector(vec).name} values must be finite")
        target = self.params[Vector(vec)]
        _check_span(offset, len(values), target.size)
        target[offset : offset + len(values)] = values
        return Msg.ACK, b""

    def _write_weights(self, payload: bytes) -> tuple[Msg, bytes]:
        (mat, dtype, gen, offset), data = unpack_head(WEIGHTS_HEAD, payload)
        flat = self._matrix(mat, self.active).reshape(-1)
        self._check_weight_dtype(dtype)
        if gen == 0:
            raise Nack(Nak.OUT_OF_RANGE, "generation 0 is reserved")
        values = _elements(data, DType(dtype))
        _check_span(offset, len(values), flat.size)
        if self.shadow is None or self.shadow_gen != gen:
            self.shadow = {m: w.copy() for m, w in self.active.items()}
            self.shadow_gen = gen
        self.shadow[mat].reshape(-1)[offset : offset + len(values)] = values
        return Msg.ACK, b""

    def _read_weights(self, payload: bytes) -> tuple[Msg, bytes]:
        (mat, dtype, offset, count), _ = unpack_head(READ_WEIGHTS, payload)
        flat = self._matrix(mat, self.active).reshape(-1)
        self._check_weight_dtype(dtype)
        size = DType(dtype).np.itemsize
        if count * size > self.limits.max_payload - WEIGHTS_HEAD.size:
            raise Nack(Nak.OUT_OF_RANGE, f"{count} elements do not fit one payload")
        _check_span(offset, count, flat.size)
        values = flat[offset : offset + count]
        if dtype not in (DType.F32, DType.F64):
            info = np.iinfo(DType(dtype).np)
            if values.size and (values.min() < info.min or values.max() > info.max):
                raise Nack(Nak.OUT_OF_RANGE, f"weights do not fit {DType(dtype).name}")
        head = WEIGHTS_HEAD.pack(mat, dtype, self.generation, offset)
        return Msg.WEIGHTS, head + values.astype(DType(dtype).np).tobytes()

    def _commit(self, payload: bytes) -> tuple[Msg, bytes]:
        (gen, crc), _ = unpack_head(COMMIT, payload)
        if self.shadow is None or self.shadow_gen != gen:
            raise Nack(Nak.CRC_MISMATCH, f"no shadow weights of generation {gen}")
        blob = 0
        for m in self.shadow:  # storage order (§4.4): id order with one hidden layer
            blob = zlib.crc32(self.shadow[m].astype(self._blob_dtype).tobytes(), blob)
        if blob != crc:
            raise Nack(Nak.CRC_MISMATCH, f"blob crc {blob:#010x}, commit says {crc:#010x}")
        for m, w in self.shadow.items():  # the net holds these arrays: swap contents in one go
            self.active[m][...] = w
        self.generation, self.shadow, self.shadow_gen = gen, None, 0
        self.counters["commits"] += 1
        if self.state_file is not None:
            self._save(self.state_file)
        return Msg.ACK, b""

    def _input(self, payload: bytes) -> tuple[Msg, bytes]:
        (offset,), data = unpack_head(INPUT_HEAD, payload)
        size = self.limits.max_ticks * self._in_bytes()
        _check_span(offset, len(data), size)
        if self.inputs.size != size:
            self.inputs = np.zeros(size, np.uint8)
        self.inputs[offset : offset + len(data)] = np.frombuffer(data, np.uint8)
        return Msg.ACK, b""

    def _in_bytes(self) -> int:
        return (self.cfg.n_in + 7) // 8

    def _run(self, payload: bytes) -> tuple[Msg, bytes]:
        (n_ticks, flags), _ = unpack_head(RUN, payload)
        cfg, record_v, counts = self.cfg, bool(flags & 1), self.rules.max_spike_count > 1
        per_tick = self._in_bytes() + (cfg.n_hidden + 7) // 8 + (cfg.n_out + 7) // 8
        per_tick += 4 * (cfg.n_hidden + cfg.n_out) if record_v else 0
        per_tick += cfg.n_hidden if counts else 0
        if not 1 <= n_ticks <= self.limits.max_ticks or n_ticks * per_tick > self.limits.buffer_bytes:
            raise Nack(Nak.OUT_OF_RANGE, f"RUN of {n_ticks} ticks exceeds the board's buffers")
        if self.inputs.size < n_ticks * self._in_bytes():
            self.inputs = np.zeros(self.limits.max_ticks * self._in_bytes(), np.uint8)
        raster = np.unpackbits(self.inputs[: n_ticks * self._in_bytes()].reshape(n_ticks, -1), axis=1,
                               bitorder="little")[:, : cfg.n_in]  # fmt: skip
        zs, zo, vs, vo = self.net.run(raster)
        self.outputs = {Buffer.HIDDEN_SPIKES: _bitmap(zs > 0), Buffer.OUT_SPIKES: _bitmap(zo > 0)}
        if counts:
            self.outputs[Buffer.HIDDEN_COUNTS] = zs.astype(np.uint8).tobytes()
        if record_v:
            self.outputs[Buffer.HIDDEN_V] = vs.astype(self._v_dtype).tobytes()
            self.outputs[Buffer.OUT_V] = vo.astype(self._v_dtype).tobytes()
        self.counters["ticks"] += n_ticks
        self.counters["spikes"] += int(np.sum(zs))
        self.counters["dropped_spikes"] = self.net.dropped
        return Msg.DONE, Done(self.net.tick, n_ticks, self.net.dropped).pack()

    def _read_output(self, payload: bytes) -> tuple[Msg, bytes]:
        (buf, offset, count), _ = unpack_head(READ_OUTPUT, payload)
        data = self.outputs.get(buf)
        if data is None:
            raise Nack(Nak.OUT_OF_RANGE, f"output buffer {buf} is empty (no RUN, or RUN without record_v)")
        if count > self.limits.max_payload - OUTPUT_HEAD.size:
            raise Nack(Nak.OUT_OF_RANGE, f"{count} bytes do not fit one payload")
        _check_span(offset, count, len(data))
        return Msg.OUTPUT, OUTPUT_HEAD.pack(buf, offset) + data[offset : offset + count]

    def _read_counters(self, payload: bytes) -> tuple[Msg, bytes]:
        return Msg.COUNTERS, COUNTERS.pack(*(v & 0xFFFFFFFF for v in self.counters.values()))

    @property
    def _blob_dtype(self) -> str:
        """Elements of the COMMIT blob (§4.4): i32 (fixed) or f64 (float)."""
        return "<f8" if self.cfg.flags & ConfigFlag.FLOAT else "<i4"

    @property
    def _v_dtype(self) -> str:
        """Membranes in the output buffers (§4.6): i32 (fixed) or f32 (float)."""
        return "<f4" if self.cfg.flags & ConfigFlag.FLOAT else "<i4"

    def _check_weight_dtype(self, dtype: int) -> None:
        floats = self.cfg.flags & ConfigFlag.FLOAT
        allowed = (DType.F32, DType.F64) if floats else (DType.I8, DType.I16, DType.I32)
        if dtype not in allowed:
            names = "/".join(d.name.lower() for d in allowed)
            raise Nack(Nak.OUT_OF_RANGE, f"weight dtype {dtype}, this configuration takes {names}")

    def _matrix(self, mat: int, source: dict[int, np.ndarray]) -> np.ndarray:
        if mat not in source:
            raise Nack(Nak.OUT_OF_RANGE, f"matrix {mat} not in this network")
        return source[mat]

    # --------------------------------------------------------------- flash
    def _save(self, path: Path) -> None:
        arrays = {f"w{int(m)}": w for m, w in self.active.items()}
        arrays |= {f"p{int(v)}": p for v, p in self.params.items()}
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            np.savez(
                fh,
                cfg=np.frombuffer(self.cfg.pack(), np.uint8),
                rules=np.frombuffer(self.rules.pack(), np.uint8),
                layers=np.array([] if self.layers is None else [self.layers[1], *self.layers[0]]),
                generation=self.generation,
                **arrays,
            )
        os.replace(tmp, path)

    def _load(self, path: Path) -> None:
        with np.load(path) as data:
            saved = [int(v) for v in data["layers"]] if "layers" in data else []
            layers = (tuple(saved[1:]), saved[0]) if saved else None
            self._configure(
                ConfigNet.unpack(data["cfg"].tobytes()), ConfigRules.unpack(data["rules"].tobytes()), layers
            )
            for m in self.active:
                self.active[m][...] = data[f"w{int(m)}"]
            for v in self.params:
                self.params[v][...] = data[f"p{int(v)}"]
            self.generation = int(data["generation"])


_HANDLERS = {
    Msg.HELLO: Board._hello,
    Msg.PING: Board._ping,
    Msg.RESET: Board._reset,
    Msg.CONFIG_NET: Board._config,
    Msg.CONFIG_RULES: Board._config_rules,
    Msg.CONFIG_LAYERS: Board._config_layers,
    Msg.WRITE_PARAM: Board._write_param,
    Msg.WRITE_WEIGHTS: Board._write_weights,
    Msg.READ_WEIGHTS: Board._read_weights,
    Msg.COMMIT: Board._commit,
    Msg.INPUT: Board._input,
    Msg.RUN: Board._run,
    Msg.READ_OUTPUT: Board._read_output,
    Msg.READ_COUNTERS: Board._read_counters,
}
_DECAYS = {
    Vector.HID_D_MEM,
    Vector.HID_D_SYN,
    Vector.HID_D_ADA,
    Vector.OUT_D_MEM,
    Vector.OUT_D_SYN,
    Vector.HID_D_SYN2,
}
_ANYTIME = {Msg.HELLO, Msg.PING, Msg.RESET, Msg.CONFIG_NET, Msg.READ_COUNTERS}


def _param_dtype(cfg: ConfigNet, vector: Vector) -> DType:
    """§4.3: f64 for every vector under float arithmetic and for the gain; i32 otherwise."""
    return DType.F64 if cfg.flags & ConfigFlag.FLOAT or vector == Vector.HID_GAIN else DType.I32


def _elements(data: bytes, dtype: DType) -> np.ndarray:
    size = dtype.np.itemsize
    if len(data) % size:
        raise Nack(Nak.BAD_LEN, f"{len(data)} data bytes are not whole {dtype.name} elements")
    return np.frombuffer(data, dtype.np)


def _check_span(offset: int, count: int, size: int) -> None:
    if offset + count > size:
        raise Nack(Nak.OUT_OF_RANGE, f"elements {offset}..{offset + count} beyond {size}")


# ---------------------------------------------------------------- transports


def serve_fd(board: Board, fd: int) -> None:
    """Serve a board on a file descriptor (pty master) until it reports EOF/EIO."""
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:
            return
        if not data:
            return
        reply = board.feed(data)
        if reply:
            os.write(fd, reply)


def open_pty() -> tuple[int, int, str]:
    """A raw pseudo-terminal: (master fd, slave fd, slave device path)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    return master, slave, os.ttyname(slave)


def serve_pty(board: Board) -> None:
    """Serve on a new pty, printing its device path; the slave stays open so hosts may come and go."""
    master, slave, path = open_pty()
    print(path, flush=True)
    serve_fd(board, master)


def serve_tcp(board: Board, host: str, port: int) -> None:
    """Serve one connection at a time on host:port (pyserial URL `socket://host:port`); prints it."""
    with socket.create_server((host, port)) as server:
        print(f"socket://{host}:{server.getsockname()[1]}", flush=True)
        while True:
            _serve_connection(board, server)


def serve_in_background(board: Board | None = None) -> str:
    """A board simulator (default: a fresh Board) serving one connection in a daemon thread.

    Returns its URL (`socket://127.0.0.1:PORT`): `open_chip(serve_in_background(), profile, spec)`
    gives a SerialChip without hardware or a second process.
    """
    server = socket.create_server(("127.0.0.1", 0))

    def serve_once() -> None:
        with server:
            _serve_connection(board or Board(), server)

    threading.Thread(target=serve_once, daemon=True).start()
    return f"socket://127.0.0.1:{server.getsockname()[1]}"


def _serve_connection(board: Board, server: socket.socket) -> None:
    conn, _ = server.accept()
    with conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            try:
                data = conn.recv(4096)
            except OSError:
                return
            if not data:
                return
            reply = board.feed(data)
            if reply:
                conn.sendall(reply)


if __name__ == "__main__":  # python -m chiploop.firmware_bridge.board_sim
    from chiploop.firmware_bridge.cli import app

    sys.exit(app(["serve", *sys.argv[1:]]))
