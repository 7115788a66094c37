"""SerialChip: the Chip protocol over a Link to a board speaking docs/protocol.md.

The host keeps the device model (quantization, device noise, mismatch: `DeviceModel(profile, spec,
seed)`) and sends the board its weights (integers, or float32 under float arithmetic) and per-neuron
constants; the board runs the dynamics of docs/dynamics.md. Weights go to the board's shadow buffer
and become active only with a CRC-checked COMMIT.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import fields
from typing import TypeVar

import numpy as np

from chiploop.chip.base import ChipBase
from chiploop.chip.c_config import net_config, neuron_vectors, recurrent_bits
from chiploop.chip.device_model import NeuronConstants
from chiploop.chip.network import NetworkSpec
from chiploop.chip.protocol import Recording
from chiploop.chip_profiles.model import ChipProfile
from chiploop.errors import ChipError
from chiploop.firmware_bridge.link import Link, NakError
from chiploop.firmware_bridge.protocol import (
    COMMIT,
    INPUT_HEAD,
    OUTPUT_HEAD,
    PARAM_HEAD,
    READ_OUTPUT,
    READ_WEIGHTS,
    RESET,
    RUN,
    WEIGHT_CAP,
    WEIGHTS_HEAD,
    Buffer,
    Cap,
    ConfigFlag,
    ConfigNet,
    ConfigRules,
    Done,
    DType,
    HelloAck,
    Msg,
    Nak,
    Vector,
    config_layers,
    matrix_ids,
    unpack_head,
    weights_crc,
)

RUN_TIMEOUT_PER_TICK_S = 1e-3
T = TypeVar("T")


class SerialChip(ChipBase):
    """A board at `url` (device path or pyserial URL) running `spec` under `profile`.

    Raises DesignRuleError when `spec` breaks the profile's limits (before the port is opened),
    ChipError naming the port when the board cannot host the network (nothing is written then),
    LinkError when the link fails.
    """

    def __init__(
        self,
        url: str,
        profile: ChipProfile,
        spec: NetworkSpec,
        seed: int = 0,
        baud: int = 115200,
        timeout: float | None = None,
    ) -> None:
        super().__init__(profile, spec, seed, name=url)
        self.url = url
        self._ids = matrix_ids(list(spec.weight_shapes()), spec.layer_names)
        self.fixed = profile.arithmetic.kind == "fixed"
        self.link = Link(url, baud=baud, timeout=timeout)
        self._board_weights: dict[str, np.ndarray] | None = None  # what we know is active on the board
        self._generation = 0  # committed on the board
        self._last_generation = 0  # last one used: a failed upload's shadow is never reused
        self._wire_dtype = DType.I32 if self.fixed else self._weight_dtype({})
        try:
            problem = self._cannot_host(self.link.info)
            if problem:
                raise ChipError(f"{url}: the board cannot host this network: {problem}")
            self._configure()
        except BaseException:
            self.link.close()
            raise

    # ------------------------------------------------------------------ Chip protocol
    def close(self) -> None:
        self.link.close()
        super().close()

    def _run_batch(self, x: np.ndarray, record_v: bool, record_i: bool) -> Recording:
        """Upload the weights if they changed, then run each sample from rest on the board."""
        if record_i:
            raise ChipError(f"{self.url}: record_i: the board does not report synaptic currents")
        self._upload(self.device.for_run())
        per_sample = [self._run_sample(sample, record_v) for sample in x]
        spikes = {"hidden": np.stack([s["hidden"] for s, _, _ in per_sample])}
        if self.spec.readout == "spiking":
            spikes["out"] = np.stack([s["out"] for s, _, _ in per_sample])
        v = {}
        if record_v:
            v = {key: np.stack([vs[key] for _, vs, _ in per_sample]) for key in ("hidden", "out")}
        return self._recording(
            spikes,
            v,
            dropped_spikes=sum(d for _, _, d in per_sample),
            board_generation=self._generation,
        )

    # ------------------------------------------------------------------ board access
    def board_weights(self) -> dict[str, np.ndarray]:
        """The weights active on the board, read back over the link.

        int64 under fixed arithmetic; float64 under float (float32 from a board without `W_F64`).
        Reads in the wire format of this chip's last upload.
        """
        out, dtype = {}, self._wire_dtype
        size = dtype.np.itemsize
        for name, (pre, post) in self.spec.weight_shapes().items():
            spans: list[tuple[int, int]] = []
            requests = (
                (Msg.READ_WEIGHTS, READ_WEIGHTS.pack(self._ids[name], dtype, *span))
                for span in _recorded(spans, self._spans(pre * post, WEIGHTS_HEAD.size, size))
            )
            replies = self.link.request_many(requests)
            chunks = []
            for (off, n), reply in zip(spans, replies, strict=True):
                (_, _, _, got_off), data = unpack_head(WEIGHTS_HEAD, reply.payload)
                if got_off != off or len(data) != size * n:
                    raise ChipError(f"{self.url}: WEIGHTS answer for offset {got_off}, {len(data)} bytes; "
                                    f"expected offset {off}, {size * n} bytes")  # fmt: skip
                chunks.append(np.frombuffer(data, dtype.np))
            out[name] = np.concatenate(chunks).astype(self._store).reshape(pre, post)
        return out

    # ------------------------------------------------------------------ internals
    def _cannot_host(self, info: HelloAck) -> str:
        spec, ar, c = self.spec, self.profile.arithmetic, self.device.constants
        caps = info.caps
        synapses = sum(a * b for a, b in spec.weight_shapes().values())
        decay_cap = Cap.DECAY_SHIFT if ar.decay == "shift" else Cap.DECAY_MULTIPLIER
        limits = self.profile.limits
        checks = [
            ((Cap.FIXED if self.fixed else Cap.FLOAT) not in caps, f"no {ar.kind} arithmetic"),
            (spec.n_neurons > info.max_neurons, f"{spec.n_neurons} neurons, board max {info.max_neurons}"),
            (spec.n_in > info.max_inputs, f"{spec.n_in} inputs, board max {info.max_inputs}"),
            (synapses > info.max_synapses, f"{synapses} synapses, board max {info.max_synapses}"),
            (self.fixed and ar.state_bits > info.max_state_bits,
             f"state_bits {ar.state_bits}, max {info.max_state_bits}"),
            (self.fixed and ar.decay_bits > info.max_decay_bits,
             f"decay_bits {ar.decay_bits}, max {info.max_decay_bits}"),
            (self.fixed and decay_cap not in caps, f"no {ar.decay} decay"),
            (spec.recurrent and Cap.RECURRENT not in caps, "no recurrent layer"),
            (len(spec.hidden_sizes) > 1 and Cap.LAYERS not in caps, "one hidden layer only (no LAYERS)"),
            (spec.readout == "spiking" and Cap.SPIKING_READOUT not in caps, "no spiking readout"),
            (bool(np.any(c.beta_h)) and Cap.ALIF not in caps, "no adaptive (ALIF) neurons"),
            (bool(np.any(c.gain_h != 1.0)) and Cap.GAIN not in caps, "no per-neuron gain"),
            ((limits.max_spikes_per_step or limits.max_input_spikes_per_step) and Cap.SPIKE_CAP not in caps,
             "no spike caps"),
            (wire_rules(self.profile, spec) != ConfigRules() and Cap.RULES not in caps,
             "no configurable rules (CONFIG_RULES) for this profile's dynamics"),
            (not caps & (Cap.W_I8 | Cap.W_I16 | Cap.W_I32 if self.fixed else Cap.W_F32 | Cap.W_F64),
             "no weight format"),
        ]  # fmt: skip
        return next((msg for bad, msg in checks if bad), "")

    def _configure(self) -> None:
        try:
            self.link.request(Msg.CONFIG_NET, wire_config(self.profile, self.spec).pack())
            if len(self.spec.hidden_sizes) > 1:
                layers = config_layers(self.spec.hidden_sizes, recurrent_bits(self.spec))
                self.link.request(Msg.CONFIG_LAYERS, layers)
            rules = wire_rules(self.profile, self.spec)
            if rules != ConfigRules():
                self.link.request(Msg.CONFIG_RULES, rules.pack())
        except NakError as exc:
            if exc.code == Nak.CAPABILITY:
                raise ChipError(f"{self.url}: the board cannot host this network: {exc.text}") from None
            raise
        vectors = {}
        for vec, values in wire_params(self.device.constants).items():
            if not np.any(values) and vec in (Vector.HID_BIAS, Vector.OUT_BIAS):
                continue  # zero after CONFIG_NET already
            dtype = DType.F64 if vec == Vector.HID_GAIN or not self.fixed else DType.I32
            vectors[vec] = dtype, self._as_wire(values, dtype, vec.name)
        self.link.request_many(self._param_requests(vectors))
        self._board_weights = {
            name: np.zeros(shape, self._store) for name, shape in self.spec.weight_shapes().items()
        }

    def _param_requests(self, vectors: dict[Vector, tuple[DType, np.ndarray]]) -> Iterator[tuple[Msg, bytes]]:
        """WRITE_PARAM requests of every vector (wire dtype, values), each frame sized when it is sent."""
        for vec, (dtype, data) in vectors.items():
            for off, n in self._spans(len(data), PARAM_HEAD.size, data.itemsize):
                yield Msg.WRITE_PARAM, PARAM_HEAD.pack(vec, dtype, off) + data[off : off + n].tobytes()

    def _spans(self, total: int, head: int, itemsize: int) -> Iterator[tuple[int, int]]:
        """(offset, count) spans covering `total` elements, each as large as the link's payload budget
        when it is taken (so frames shrink on a noisy line and grow back on a clean one)."""
        off = 0
        while off < total:
            n = min(total - off, max(1, (self.link.payload_budget(head) - head) // itemsize))
            yield off, n
            off += n

    def _as_wire(self, values: np.ndarray, dtype: DType, what: str) -> np.ndarray:
        if dtype.np.kind == "i":
            info = np.iinfo(dtype.np)
            if values.size and (values.min() < info.min or values.max() > info.max):
                raise ChipError(
                    f"{self.url}: {what} values {values.min()}..{values.max()} exceed {dtype.name}"
                )
        return values.astype(dtype.np)

    def _upload(self, weights: dict[str, np.ndarray]) -> None:
        """Make `weights` the board's active weights (skips the upload when they already are)."""
        blob = {name: np.asarray(w, dtype=self._store) for name, w in weights.items()}
        known = self._board_weights
        if known is not None and all(np.array_equal(blob[k], known[k]) for k in blob):
            return
        dtype = self._weight_dtype(blob)
        gen = self._last_generation = self._last_generation % 0xFFFF + 1
        crc = weights_crc([blob[name] for name in self.spec.weight_shapes()], fixed=self.fixed)
        for delta in (True, False):  # delta upload needs the board to hold what we think; else send all
            self.link.request_many(self._weight_requests(blob, dtype, gen, known if delta else None))
            try:
                self.link.request(Msg.COMMIT, COMMIT.pack(gen, crc))
                break
            except NakError as exc:
                if exc.code != Nak.CRC_MISMATCH or not delta or known is None:
                    raise
        self._generation, self._board_weights, self._wire_dtype = gen, blob, dtype

    @property
    def _store(self) -> type:
        """Host copy of the board's weights: int64 (fixed), float64 or float32 (what the board takes)."""
        if self.fixed:
            return np.int64
        return np.float64 if Cap.W_F64 in self.link.info.caps else np.float32

    def _weight_dtype(self, blob: dict[str, np.ndarray]) -> DType:
        if not self.fixed:
            return DType.F64 if Cap.W_F64 in self.link.info.caps else DType.F32
        lo = min(int(w.min()) for w in blob.values())
        hi = max(int(w.max()) for w in blob.values())
        for dtype in (DType.I8, DType.I16, DType.I32):
            info = np.iinfo(dtype.np)
            if info.min <= lo and hi <= info.max and WEIGHT_CAP[dtype] in self.link.info.caps:
                return dtype
        raise ChipError(f"{self.url}: weights {lo}..{hi} fit no integer format the board takes")

    def _weight_requests(
        self, blob: dict[str, np.ndarray], dtype: DType, gen: int, known: dict[str, np.ndarray] | None
    ) -> Iterator[tuple[Msg, bytes]]:
        """WRITE_WEIGHTS requests of the chunks that differ from `known` (all if None)."""
        for name, w in blob.items():
            flat, old = w.reshape(-1), None if known is None else known[name].reshape(-1)
            for off, n in self._spans(flat.size, WEIGHTS_HEAD.size, dtype.np.itemsize):
                chunk = flat[off : off + n]
                if old is not None and np.array_equal(chunk, old[off : off + n]):
                    continue
                head = WEIGHTS_HEAD.pack(self._ids[name], dtype, gen, off)
                yield Msg.WRITE_WEIGHTS, head + chunk.astype(dtype.np).tobytes()

    def _run_sample(self, x: np.ndarray, record_v: bool) -> tuple[dict, dict, int]:
        """One raster `[T, n_in]` from rest: (spikes, v, dropped events)."""
        spec, info, link = self.spec, self.link.info, self.link
        counts = self.profile.neuron.max_spike_count > 1
        in_bytes = (spec.n_in + 7) // 8
        h = spec.n_hidden_total
        hb, ob = (h + 7) // 8, (spec.n_out + 7) // 8
        per_tick = in_bytes + hb + ob + (4 * spec.n_neurons if record_v else 0) + (h if counts else 0)
        chunk = max(1, min(info.max_ticks, info.buffer_bytes // per_tick))
        link.request(Msg.RESET, RESET.pack(0))
        parts: dict[Buffer, list[bytes]] = {b: [] for b in Buffer}
        dropped = 0
        for t0 in range(0, len(x), chunk):
            raster = x[t0 : t0 + chunk]
            n = len(raster)
            bits = np.packbits(raster, axis=1, bitorder="little").tobytes()
            self._write_input(bits)
            timeout = link.timeout + n * RUN_TIMEOUT_PER_TICK_S
            done = Done.unpack(link.request(Msg.RUN, RUN.pack(n, int(record_v)), timeout=timeout).payload)
            dropped = done.dropped_spikes
            sizes = {Buffer.HIDDEN_COUNTS: n * h} if counts else {Buffer.HIDDEN_SPIKES: n * hb}
            if spec.readout == "spiking":
                sizes[Buffer.OUT_SPIKES] = n * ob
            if record_v:
                sizes |= {Buffer.HIDDEN_V: n * 4 * h, Buffer.OUT_V: n * 4 * spec.n_out}
            for buf, data in self._read_outputs(sizes).items():
                parts[buf].append(data)
        T = len(x)

        def bitmaps(buf: Buffer, n: int) -> np.ndarray:
            raw = np.frombuffer(b"".join(parts[buf]), np.uint8).reshape(T, -1)
            return np.unpackbits(raw, axis=1, count=n, bitorder="little")

        if counts:
            spikes = {"hidden": np.frombuffer(b"".join(parts[Buffer.HIDDEN_COUNTS]), np.uint8).reshape(T, -1)}
        else:
            spikes = {"hidden": bitmaps(Buffer.HIDDEN_SPIKES, h)}
        if spec.readout == "spiking":
            spikes["out"] = bitmaps(Buffer.OUT_SPIKES, spec.n_out)
        v = {}
        if record_v:
            for key, buf, n in (
                ("hidden", Buffer.HIDDEN_V, h),
                ("out", Buffer.OUT_V, spec.n_out),
            ):
                raw = np.frombuffer(b"".join(parts[buf]), "<i4" if self.fixed else "<f4").reshape(T, n)
                v[key] = raw.astype(np.int64 if self.fixed else np.float32)
        return spikes, v, dropped

    def _write_input(self, data: bytes) -> None:
        spans = self._spans(len(data), INPUT_HEAD.size, 1)
        self.link.request_many((Msg.INPUT, INPUT_HEAD.pack(off) + data[off : off + n]) for off, n in spans)

    def _read_outputs(self, sizes: dict[Buffer, int]) -> dict[Buffer, bytes]:
        """Read `size` bytes of each output buffer, all requests in one pipelined batch."""
        spans: list[tuple[Buffer, int, int]] = []
        wanted = ((buf, *span) for buf, n in sizes.items() for span in self._spans(n, OUTPUT_HEAD.size, 1))
        replies = self.link.request_many(
            (Msg.READ_OUTPUT, READ_OUTPUT.pack(*span)) for span in _recorded(spans, wanted)
        )
        out = {buf: bytearray() for buf in sizes}
        for (buf, off, n), reply in zip(spans, replies, strict=True):
            (got_buf, got_off), data = unpack_head(OUTPUT_HEAD, reply.payload)
            if (got_buf, got_off, len(data)) != (buf, off, n):
                raise ChipError(f"{self.url}: OUTPUT answer (buffer, offset, bytes) "
                                f"{(got_buf, got_off, len(data))}, expected {(buf, off, n)}")  # fmt: skip
            out[buf] += data
        return {buf: bytes(data) for buf, data in out.items()}


def _recorded(log: list[T], items: Iterable[T]) -> Iterator[T]:
    """`items`, appending each to `log` as it is taken (to pair lazily built requests with replies)."""
    for item in items:
        log.append(item)
        yield item


def wire_config(profile: ChipProfile, spec: NetworkSpec) -> ConfigNet:
    """The CONFIG_NET payload (docs/protocol.md §4.2) for a network under `profile`."""
    c = net_config(profile, spec)
    flags = (
        ConfigFlag.RECURRENT * (c["recurrent"] & 1)  # the first layer's; every layer's: CONFIG_LAYERS
        | ConfigFlag.SPIKING_READOUT * c["spiking_readout"]
        | ConfigFlag.RESET_ZERO * c["reset_zero"]
        | ConfigFlag.FLOAT * (profile.arithmetic.kind == "float")
    )
    return ConfigNet(c["n_in"], c["n_hidden"], c["n_out"], int(flags),
                     *(c[k] for k in ("decay_kind", "state_bits", "decay_bits", "refractory_steps",
                                      "max_spikes_per_step", "max_input_spikes_per_step")))  # fmt: skip


def wire_rules(profile: ChipProfile, spec: NetworkSpec) -> ConfigRules:
    """The CONFIG_RULES payload (§4.2b): the profile's rules of docs/dynamics.md."""
    c = net_config(profile, spec)
    return ConfigRules(*(c[f.name] for f in fields(ConfigRules)))


_VECTORS = {
    Vector.HID_D_MEM: "d_mem", Vector.HID_D_SYN: "d_syn", Vector.HID_D_ADA: "d_ada",
    Vector.HID_THRESHOLD: "theta", Vector.HID_BETA: "beta", Vector.HID_GAIN: "gain",
    Vector.OUT_D_MEM: "d_mem", Vector.OUT_D_SYN: "d_syn", Vector.OUT_THRESHOLD: "theta",
    Vector.HID_D_SYN2: "d_syn2", Vector.HID_BIAS: "bias", Vector.OUT_BIAS: "bias",
}  # fmt: skip


def wire_params(c: NeuronConstants) -> dict[Vector, np.ndarray]:
    """The WRITE_PARAM vectors (§4.3) of neuron constants: decay codes (fixed) or factors (float)."""
    h, vectors = c.mem_h.shape[0], neuron_vectors(c)
    out = {vec: vectors[name][:h] if vec.hidden else vectors[name][h:] for vec, name in _VECTORS.items()}
    if c.syn2_h is None:
        del out[Vector.HID_D_SYN2]
    return out
