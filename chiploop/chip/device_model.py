"""The per-chip device model: neuron constants after mismatch and the weights a chip holds.

`DeviceModel` is what every Chip backend keeps between calls: the non-ideal state of one chip
instance (mismatch and stuck-at faults frozen from its seed; programmed weights, drift exponents
and the chip clock changing with writes and time). Backends call `write`, `for_run` and
`advance_time`, and run the dynamics of docs/dynamics.md with `constants`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from chiploop.chip import devices
from chiploop.chip.network import NetworkSpec
from chiploop.chip_profiles.model import ChipProfile
from chiploop.errors import ChipError


@dataclass(frozen=True, eq=False)
class NeuronConstants:
    """Per-neuron constants of docs/dynamics.md after mismatch (read-only arrays).

    Float arithmetic: decay factors alpha/kappa/rho (`exp(-dt/tau)`, float64), thresholds/beta float64.
    Fixed arithmetic: decay as the integer multiplier `2^q - d` (decay "multiplier") or the shift s
    (decay "shift"), int64; thresholds, beta and bias rounded to int64, thresholds and beta in state
    units (`x 2^fractional_bits`); gains stay float64 (G = trunc(gain x)).
    No synaptic filter (`tau_syn_s = 0`): syn factors are 0 in every encoding (kappa 0, multiplier
    0, shift 0 -> `v - trunc(v / 1) = 0`) and `syn_enabled` is False. `syn2_h` is None unless the
    network uses a second synaptic current (`NetworkSpec.synapses == 2`, `tau_syn2_s`).
    `decay` is the profile's decay kind; it only matters for fixed arithmetic.
    """

    arithmetic: str
    decay: str
    decay_bits: int
    state_bits: int
    refractory_steps: int
    reset: str
    mem_h: np.ndarray
    syn_h: np.ndarray
    ada_h: np.ndarray
    threshold_h: np.ndarray
    gain_h: np.ndarray
    beta_h: np.ndarray
    bias_h: np.ndarray
    mem_o: np.ndarray
    syn_o: np.ndarray
    threshold_o: np.ndarray
    bias_o: np.ndarray
    syn_enabled: bool
    syn2_h: np.ndarray | None = None


def _round_int(x: np.ndarray) -> np.ndarray:
    return devices.round_half_away(x).astype(np.int64)


def _decay(tau_s: np.ndarray, profile: ChipProfile) -> np.ndarray:
    """Decay constant per neuron for time constants `tau_s` (0 means: no state kept)."""
    dt = profile.timing.dt_s
    ar = profile.arithmetic
    safe_tau = np.where(tau_s > 0, tau_s, 1.0)
    if ar.kind == "float":
        return np.where(tau_s > 0, np.exp(-dt / safe_tau), 0.0)
    if ar.decay == "multiplier":
        d = _round_int(2.0**ar.decay_bits * (1.0 - np.exp(-dt / safe_tau)))
        return np.where(tau_s > 0, 2**ar.decay_bits - d, 0).astype(np.int64)
    shift = np.maximum(0, _round_int(np.log2(safe_tau / dt)))
    return np.where(tau_s > 0, shift, 0).astype(np.int64)


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


def per_neuron(profile: ChipProfile, field: str, n: int) -> np.ndarray:
    """`profile.neuron.<field>` as a float64 array of `n` entries (a list must have exactly `n`)."""
    value = getattr(profile.neuron, field)
    a = np.asarray(value, dtype=np.float64)
    if a.ndim == 0:
        return np.full(n, float(a))
    if a.shape != (n,):
        raise ChipError(f"neuron.{field}: a per-neuron list must have {n} entries here, got {a.size}")
    return a


def neuron_constants(
    profile: ChipProfile, spec: NetworkSpec, mismatch: dict[str, np.ndarray] | None = None
) -> NeuronConstants:
    """Constants of the hidden `[H]` and output `[O]` neurons under `profile`.

    `mismatch`: multipliers "tau", "threshold", "gain" of length H + O (hidden first; the output
    layer takes no gain, docs/dynamics.md, so its gain entries are unused), as
    `devices.draw_mismatch` returns; None = nominal. The tau multiplier scales every time
    constant of that neuron. ALIF (`neuron.model: alif`): the first `round(fraction * n)` neurons of
    each hidden layer of n (half away from zero) get `beta = adaptation.beta`, the others 0; LIF: all 0.
    Hidden neurons are those of every hidden layer, layer by layer.
    Per-neuron parameter lists follow `Neuron`'s convention (hidden first, then readout).
    """
    h, o = spec.n_hidden_total, spec.n_out
    if mismatch is None:
        mismatch = {name: np.ones(h + o) for name in ("tau", "threshold", "gain")}
    for name in ("tau", "threshold", "gain"):
        got = np.shape(mismatch[name]) if name in mismatch else "missing"
        if got != (h + o,):
            raise ChipError(f"mismatch['{name}']: expected shape ({h + o},) (hidden + out), got {got}")
    tau_m = np.asarray(mismatch["tau"], dtype=np.float64)
    thr_m = np.asarray(mismatch["threshold"], dtype=np.float64)
    gain = np.asarray(mismatch["gain"], dtype=np.float64)
    neuron, fixed = profile.neuron, profile.arithmetic.kind == "fixed"

    fraction = neuron.adaptation.fraction if neuron.model == "alif" else 0.0
    first = [np.arange(n) < math.floor(fraction * n + 0.5) for n in spec.hidden_sizes]
    beta = np.where(np.concatenate(first), neuron.adaptation.beta, 0.0)
    threshold = per_neuron(profile, "threshold", h + o) * thr_m
    bias = per_neuron(profile, "bias", h + o)
    if fixed:
        beta, threshold, bias = _round_int(beta), _round_int(threshold), _round_int(bias)
        beta, threshold = beta * profile.state_scale, threshold * profile.state_scale

    syn = _decay(per_neuron(profile, "tau_syn_s", h + o) * tau_m, profile)
    syn2 = None
    if spec.synapses == 2:
        if neuron.tau_syn2_s is None:
            raise ChipError(
                f"a network with 2 synaptic currents needs neuron.tau_syn2_s; {profile.name} has none"
            )
        syn2 = _frozen(_decay(per_neuron(profile, "tau_syn2_s", h) * tau_m[:h], profile))
    return NeuronConstants(
        arithmetic=profile.arithmetic.kind,
        decay=profile.arithmetic.decay,
        decay_bits=profile.arithmetic.decay_bits,
        state_bits=profile.arithmetic.state_bits,
        refractory_steps=neuron.refractory_steps,
        reset=neuron.reset,
        mem_h=_frozen(_decay(per_neuron(profile, "tau_mem_s", h) * tau_m[:h], profile)),
        syn_h=_frozen(syn[:h]),
        ada_h=_frozen(_decay(neuron.adaptation.tau_s * tau_m[:h], profile)),
        threshold_h=_frozen(threshold[:h]),
        gain_h=_frozen(gain[:h]),
        beta_h=_frozen(beta),
        bias_h=_frozen(bias[:h]),
        mem_o=_frozen(_decay(per_neuron(profile, "tau_out_s", o) * tau_m[h:], profile)),
        syn_o=_frozen(syn[h:]),
        threshold_o=_frozen(threshold[h:]),
        bias_o=_frozen(bias[h:]),
        syn_enabled=bool(np.any(per_neuron(profile, "tau_syn_s", h + o) > 0)),
        syn2_h=syn2,
    )


def _as_real_array(x: object, what: str, kinds: str = "iuf") -> np.ndarray:
    """`x` as an ndarray whose dtype kind is in `kinds` (default int/uint/float), else ChipError."""
    try:
        a = np.asarray(x)
    except (ValueError, TypeError) as exc:
        raise ChipError(f"{what}: expected a real numeric array, got {type(x).__name__} ({exc})") from exc
    if a.dtype.kind not in kinds:
        raise ChipError(f"{what}: expected a real numeric dtype (int or float), got dtype {a.dtype}")
    return a


def validate_inputs(inputs: np.ndarray, spec: NetworkSpec) -> np.ndarray:
    """Check an input raster `[B, T, n_in]` of 0/1 values (bool or numeric); uint8 C-contiguous copy."""
    a = _as_real_array(inputs, "inputs", kinds="biuf")
    if a.ndim != 3 or a.shape[2] != spec.n_in or a.shape[0] < 1 or a.shape[1] < 1:
        raise ChipError(f"inputs: expected shape [B>=1, T>=1, n_in={spec.n_in}], got {a.shape}")
    if not np.all((a == 0) | (a == 1)):
        bad = a[(a != 0) & (a != 1)].ravel()[:3]
        raise ChipError(f"inputs: expected only 0/1 spike values, got e.g. {bad.tolist()}")
    return np.array(a, dtype=np.uint8, order="C")


class DeviceModel:
    """The non-ideal device state of one chip instance: everything frozen from `seed`.

    Independent streams from `np.random.SeedSequence(seed).spawn(6)`: mismatch, faults, rounding,
    programming, drift, read. Mismatch (H + O neurons) and fault codes (per layer) are drawn at
    construction; rounding, programming noise and drift exponents at each `write`; read noise at
    each `for_run`. Stuck synapses do not drift (ν = 0). Times are chip seconds.
    """

    def __init__(self, profile: ChipProfile, spec: NetworkSpec, seed: int = 0) -> None:
        if not isinstance(seed, int | np.integer) or isinstance(seed, bool) or seed < 0:
            raise ChipError(f"seed: expected a non-negative int, got {seed!r}")
        self.profile, self.spec, self.seed = profile, spec, int(seed)
        streams = np.random.SeedSequence(self.seed).spawn(6)
        mis, fau, self._rng_round, self._rng_prog, self._rng_drift, self._rng_read = (
            np.random.default_rng(s) for s in streams
        )
        self.mismatch = devices.draw_mismatch(spec.n_neurons, profile.noise.mismatch, mis)
        self.constants = neuron_constants(profile, spec, self.mismatch)
        self.fault_codes = {
            name: devices.draw_faults(shape, profile.noise.faults, fau)
            for name, shape in spec.weight_shapes().items()
        }
        self.generation = 0
        self.clock_s = 0.0
        self._programmed_at_s = 0.0
        self._programmed: dict[str, np.ndarray | devices.PcmPairs] = {
            name: np.zeros(shape) for name, shape in spec.weight_shapes().items()
        }
        self._nu = {name: np.zeros(shape) for name, shape in spec.weight_shapes().items()}
        self._scale = {name: 1.0 for name in spec.weight_shapes()}  # layer_scale fixed at write

    @property
    def time_since_program_s(self) -> float:
        """Chip seconds since the last `write` (since construction before any write)."""
        return self.clock_s - self._programmed_at_s

    def validate_weights(self, weights: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Check the exact layer set, shapes, real dtype and finiteness; float64 copies."""
        shapes = self.spec.weight_shapes()
        if not isinstance(weights, Mapping):
            raise ChipError(f"weights: expected a dict of layer -> array, got {type(weights).__name__}")
        if set(weights) != set(shapes):
            raise ChipError(f"weights: expected layers {sorted(shapes)}, got {sorted(map(str, weights))}")
        out = {}
        for name, shape in shapes.items():
            a = _as_real_array(weights[name], f"weights['{name}']")
            if a.shape != shape:
                raise ChipError(f"weights['{name}']: expected shape {shape}, got {a.shape}")
            if not np.all(np.isfinite(a)):
                raise ChipError(f"weights['{name}']: expected finite values, got NaN or inf")
            out[name] = np.array(a, dtype=np.float64)
        return out

    def write(self, weights: Mapping[str, np.ndarray]) -> None:
        """Program `weights`: quantize -> programming noise -> faults; drift restarts.

        PCM (programming model pcm) programs each layer onto device pairs (`devices.pcm_program`);
        a stuck-at-zero synapse has both devices at 0, a stuck-at-max one its g+ device at g_max.
        Validation comes first: a rejected write leaves the device unchanged. Under fixed
        arithmetic the stored weights are rounded to integers (half away from zero).
        """
        valid = self.validate_weights(weights)
        p = self.profile
        programmed, nu, scale = {}, {}, {}
        for name, w in valid.items():
            q = devices.quantize(w, p.weights, self._rng_round)
            codes = self.fault_codes[name]
            scale[name] = devices.layer_scale(q, p.weights)
            if p.noise.programming.model == "pcm":
                programmed[name] = self._stuck_pairs(
                    devices.pcm_program(q, p, self._rng_prog, self._rng_drift), codes
                )
                continue
            stored = devices.apply_faults(devices.programming_noise(q, p, self._rng_prog), codes, p.weights)
            if p.arithmetic.kind == "fixed":
                stored = devices.round_half_away(stored)
            nu_layer = devices.drift_exponents(
                stored / scale[name], p.noise.drift, self._rng_drift, p.weights.value_range[1]
            )
            programmed[name] = stored
            nu[name] = np.where(codes == devices.FAULT_OK, nu_layer, 0.0)
        self._programmed, self._nu, self._scale = programmed, nu, scale
        self._programmed_at_s = self.clock_s
        self.generation += 1

    def _stuck_pairs(self, pairs: devices.PcmPairs, codes: np.ndarray) -> devices.PcmPairs:
        """Stuck devices: both at 0 (stuck at zero) or g+ at g_max (stuck at max); they do not drift."""
        g_max, ok = self.profile.noise.programming.g_max_us, codes == devices.FAULT_OK
        high = codes == devices.FAULT_STUCK_MAX
        return devices.PcmPairs(
            np.where(ok, pairs.g_plus, np.where(high, g_max, 0.0)),
            np.where(ok, pairs.g_minus, 0.0),
            np.where(ok, pairs.nu_plus, 0.0),
            np.where(ok, pairs.nu_minus, 0.0),
            pairs.scale,
        )

    def _weights(self, rng: np.random.Generator | None) -> dict[str, np.ndarray]:
        """Weights at the time since programming, drifted; with `rng`, with one run's read noise."""
        t, p = self.time_since_program_s, self.profile
        out = {}
        for name, state in self._programmed.items():
            if isinstance(state, devices.PcmPairs):
                w = devices.pcm_weights(state, p, t, rng)
            else:
                w = devices.apply_drift(state, self._nu[name], t, p.noise.drift)
                if rng is not None:
                    w = devices.read_noise(w, p, rng)
            if rng is not None:
                w = devices.periphery_noise(w, p, rng, self._scale[name])
            out[name] = devices.round_half_away(w) if p.arithmetic.kind == "fixed" else w
        return out

    def read(self) -> dict[str, np.ndarray]:
        """Effective weights now (float64): programmed, drifted to the time since programming.

        No read noise; zeros before any write; integer-valued under fixed arithmetic.
        """
        return self._weights(None)

    def for_run(self) -> dict[str, np.ndarray]:
        """Weights for one run: drifted, with a fresh draw of read and periphery noise; int64 under
        fixed arithmetic."""
        out = self._weights(self._rng_read)
        if self.profile.arithmetic.kind == "fixed":
            out = {name: w.astype(np.int64) for name, w in out.items()}
        return out

    def reseed_noise(self, key: int | list[int]) -> None:
        """Restart the rounding, programming, drift and read streams from `SeedSequence(key)`.

        Frozen state (mismatch, faults, programmed weights, clock) is kept. The Trainer calls this at
        every epoch start, so a resumed run draws the same noise as an uninterrupted one.
        """
        streams = np.random.SeedSequence(key).spawn(4)
        self._rng_round, self._rng_prog, self._rng_drift, self._rng_read = (
            np.random.default_rng(s) for s in streams
        )

    def advance_time(self, seconds: float) -> None:
        """Let the chip clock run `seconds` (>= 0, finite)."""
        try:
            ok = math.isfinite(seconds) and seconds >= 0
        except TypeError:
            ok = False
        if not ok or isinstance(seconds, bool):
            raise ChipError(f"advance_time: expected finite seconds >= 0, got {seconds!r}")
        self.clock_s += float(seconds)
