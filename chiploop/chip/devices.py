"""Device non-idealities as pure numpy functions of (weights, profile section, generator, time).

Shared by every Chip (Brian2 emulator, torch twin, board simulator), applied in the order of
docs/dynamics.md: at write, clip + quantize -> programming noise -> stuck-at faults; at every run,
drift at the time since programming -> read noise. Every draw comes from the `rng` passed in.

Conventions (model units throughout; `w_max` = `weights.value_range[1]`):
- Deterministic rounding is round-half-away-from-zero (C's `lround`), see `round_half_away`;
  `floor` rounds down onto the grid, as Lava's Dense truncates the low bit of 8-bit mixed-sign
  weights (`lava/utils/weightutils.py`, `truncate_weights`).
- PCM maps a weight onto a differential pair: `g = |w| / w_max * g_max` on the g+ device (w > 0)
  or the g- device (w < 0), the other device idle at g = 0; `w = (g+ - g-) / g_max * w_max`
  (aihwkit's PCMLikeNoiseModel, see the PCM section).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from chiploop.chip_profiles.model import ChipProfile, Drift, Faults, Mismatch, ProgrammingNoise, Weights
from chiploop.errors import ChipError, ProfileError

FAULT_OK, FAULT_STUCK_ZERO, FAULT_STUCK_MAX = 0, 1, 2
MISMATCH_FLOOR = 0.05
_SNAP = 1e-9  # a value this close to a grid point (in steps) is on it: keeps quantize idempotent
_G_REL_FLOOR = 1e-7  # PCM formulas take log / negative powers of g/g_max: floor it like aihwkit


def round_half_away(x: np.ndarray) -> np.ndarray:
    """Round to the nearest integer, ties away from zero (exact, unlike floor(|x| + 0.5))."""
    x = np.asarray(x, dtype=np.float64)
    t = np.trunc(x)
    return np.where(np.abs(x - t) == 0.5, t + np.sign(x), np.rint(x))


# ---------------------------------------------------------------- quantization
def quantization_step(weights: Weights) -> float | None:
    """Grid step of the weight range; None for analog weights (`bits` None).

    signed: `range_max / (2**(bits-1) - 1)`; sign_split and differential_pair (sign kept apart from
    the magnitude): `range_max / (2**bits - 1)`; `range_max` from `value_range` (model units).
    With `exponent_bits > 0` this is the coarsest
    step (largest exponent); `layer_step` gives the step a given layer gets.
    """
    if weights.bits is None:
        return None
    levels = 2 ** (weights.bits - 1) - 1 if weights.encoding == "signed" else 2**weights.bits - 1
    if levels < 1:
        raise ProfileError(f"weights.bits: signed encoding needs at least 2 bits, got {weights.bits}")
    return weights.value_range[1] / levels


def _mantissa_limits(weights: Weights) -> tuple[int, int]:
    """Integer mantissa range: two's complement for signed, ±(2^bits - 1) with a separate sign."""
    assert weights.bits is not None
    if weights.encoding == "signed":
        return -(2 ** (weights.bits - 1)), 2 ** (weights.bits - 1) - 1
    return -(2**weights.bits - 1), 2**weights.bits - 1


def layer_step(w: np.ndarray, weights: Weights) -> float | None:
    """Grid step used for one layer `w` (already clipped to the range).

    Without exponent bits: `quantization_step`. With `exponent_bits = E > 0` the grid is
    `step * 2**(e - e_max)`, `e_max = 2**E - 1`, with the smallest shared exponent e in
    [0, e_max] whose mantissa covers `max|w|` (Loihi-style mantissa x 2^e): a layer of small
    weights gets a finer grid, the range itself is always covered at `e = e_max`.
    """
    step = quantization_step(weights)
    if step is None or weights.exponent_bits == 0:
        return step
    e_max = 2**weights.exponent_bits - 1
    top = float(np.max(np.abs(w))) if np.size(w) else 0.0
    mantissa_max = _mantissa_limits(weights)[1]
    for e in range(e_max + 1):
        candidate = step * 2.0 ** (e - e_max)
        if top <= mantissa_max * candidate * (1 + 1e-12):
            return candidate
    return step


def quantize(w: np.ndarray, weights: Weights, rng: np.random.Generator | None = None) -> np.ndarray:
    """Clip `w` to `weights.value_range`, then put it on the grid `k * layer_step` (float64 copy).

    k is limited to the mantissa range (`_mantissa_limits`) and to grid points inside the range.
    Deterministic rounding: half away from zero (idempotent). Stochastic rounding:
    `floor(x) + Bernoulli(x - floor(x))`, unbiased inside the range, needs `rng`. Floor: down.
    Analog weights (`bits` None) are only clipped.
    """
    lo, hi = weights.value_range
    clipped = np.clip(np.asarray(w, dtype=np.float64), lo, hi)
    step = layer_step(clipped, weights)
    if step is None:
        return clipped
    if weights.rounding == "stochastic" and rng is None:
        raise ChipError("quantize: stochastic rounding needs a numpy Generator, got rng=None")
    m_lo, m_hi = _mantissa_limits(weights)
    k_min = max(m_lo, math.ceil(lo / step - _SNAP))
    k_max = min(m_hi, math.floor(hi / step + _SNAP))
    if k_min > k_max:
        raise ProfileError(
            f"weights.range x 2^shift [{lo}, {hi}] holds no point of the grid with step {step}"
        )
    x = clipped / step
    nearest = np.rint(x)
    x = np.where(np.abs(x - nearest) < _SNAP, nearest, x)
    if weights.rounding == "stochastic":
        assert rng is not None
        k = np.floor(x)
        k += rng.random(x.shape) < (x - k)
    elif weights.rounding == "floor":
        k = np.floor(x)
    else:
        k = round_half_away(x)
    return np.clip(np.clip(k, k_min, k_max) * step, lo, hi)


# ---------------------------------------------------------------- programming noise
def layer_scale(w: np.ndarray, weights: Weights) -> float:
    """Digital output scale of a layer under `weights.map_to_range`: max|w| / w_max (1 otherwise).

    The conductance model (pcm) then sees `w / scale`, a layer spanning the full conductance range,
    and its result is scaled back (aihwkit's weight scaling onto g_max).
    """
    peak = float(np.max(np.abs(w))) if np.size(w) else 0.0
    return peak / weights.value_range[1] if weights.map_to_range and peak > 0 else 1.0


def programming_noise(w: np.ndarray, profile: ChipProfile, rng: np.random.Generator) -> np.ndarray:
    """Weights as programmed, with the write-time noise of a gaussian `profile.noise.programming`
    (new array): gaussian_absolute `w + sigma N`, gaussian_relative `w + sigma |w| N`, none `w`.
    PCM programs device conductances instead (`pcm_program`). Not clipped to the range."""
    prog = profile.noise.programming
    w = np.asarray(w, dtype=np.float64)
    if prog.model == "gaussian_absolute":
        return w + prog.sigma * rng.standard_normal(w.shape)
    if prog.model == "gaussian_relative":
        return w + prog.sigma * np.abs(w) * rng.standard_normal(w.shape)
    if prog.model == "pcm":
        raise ChipError("programming_noise: PCM programs conductances, use pcm_program")
    return w.copy()


# ---------------------------------------------------------------- PCM: aihwkit's PCMLikeNoiseModel
# aihwkit (IBM Analog Hardware Acceleration Kit) 1.2, inference/noise/pcm.py: programming noise on
# each device of a differential pair, drift with one exponent per device drawn from its target
# conductance, 1/f read noise scaled by the programmed conductance and applied to the drifted one.
# Time t counts from the end of programming; drift and read noise act at t + t0.
@dataclass(frozen=True)
class PcmPairs:
    """A layer on PCM differential pairs after programming: the conductances reached (µS) and the
    drift exponents of the g+ and g- devices, and the layer's digital scale (`layer_scale`)."""

    g_plus: np.ndarray
    g_minus: np.ndarray
    nu_plus: np.ndarray
    nu_minus: np.ndarray
    scale: float


def pcm_programming_sigma_us(g_us: np.ndarray, prog: ProgrammingNoise) -> np.ndarray:
    """σ(g) = (c0 + c1 (g/g_max) + c2 (g/g_max)²) · g_max / g_ref in µS (aihwkit's fit at g_ref)."""
    c0, c1, c2 = prog.coefficients
    r = np.asarray(g_us, dtype=np.float64) / prog.g_max_us
    return (c0 + c1 * r + c2 * r**2) * prog.g_max_us / prog.reference_g_max_us


def program_pcm_conductance(g_us: np.ndarray, prog: ProgrammingNoise, rng: np.random.Generator) -> np.ndarray:
    """Conductances reached when targeting `g_us`: `g + σ(g) N(0,1)`, clipped to >= 0."""
    g = np.asarray(g_us, dtype=np.float64)
    return np.maximum(g + pcm_programming_sigma_us(g, prog) * rng.standard_normal(g.shape), 0.0)


def pcm_targets(w: np.ndarray, profile: ChipProfile, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Target conductances (µS) of the g+ and g- devices: `|w| / (scale w_max) g_max` on the device
    of w's sign, the other at 0 (aihwkit's SinglePairConductanceConverter, clipped to g_max)."""
    g_max, w_max = profile.noise.programming.g_max_us, profile.weights.value_range[1]
    g = np.asarray(w, dtype=np.float64) / (scale * w_max) * g_max
    return np.clip(g, 0.0, g_max), np.clip(-g, 0.0, g_max)


def pcm_drift_nu_stats(g_rel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and σ of the PCM drift exponent at relative conductance `g/g_max` (aihwkit, clamped)."""
    log_g = np.log(np.maximum(np.asarray(g_rel, dtype=np.float64), _G_REL_FLOOR))
    mean = np.clip(-0.0155 * log_g + 0.0244, 0.049, 0.1)
    sigma = np.clip(-0.0125 * log_g - 0.0059, 0.008, 0.045)
    return mean, sigma


def pcm_program(
    w: np.ndarray, profile: ChipProfile, rng_prog: np.random.Generator, rng_drift: np.random.Generator
) -> PcmPairs:
    """Program a layer `w` (model units) onto PCM pairs: each device gets programming noise at its
    target, and a drift exponent `|mu + sigma N|` from its target (per device, abs-folded as aihwkit)."""
    prog, drift = profile.noise.programming, profile.noise.drift
    scale = layer_scale(w, profile.weights)
    targets = pcm_targets(w, profile, scale)
    g_prog = [program_pcm_conductance(g, prog, rng_prog) for g in targets]
    nus = [drift_exponents(g / prog.g_max_us, drift, rng_drift, 1.0) for g in targets]
    return PcmPairs(g_prog[0], g_prog[1], nus[0], nus[1], scale)


def pcm_weights(
    pairs: PcmPairs, profile: ChipProfile, t_since_program_s: float, rng: np.random.Generator | None = None
) -> np.ndarray:
    """The layer's weights at `t_since_program_s`: each device drifted (`apply_drift`) and, with a
    generator and read model `pcm_1f`, with a fresh draw of its 1/f read noise; `(g+ - g-)` back in
    model units. Conductances are clipped at 0 after the read noise, as aihwkit does."""
    prog, read = profile.noise.programming, profile.noise.read
    devices = []
    for g_prog, nu in ((pairs.g_plus, pairs.nu_plus), (pairs.g_minus, pairs.nu_minus)):
        g = apply_drift(g_prog, nu, t_since_program_s, profile.noise.drift)
        if rng is not None and read.model == "pcm_1f":
            sigma = pcm_read_noise_sigma(
                g_prog, prog.g_max_us, read.t_read_s, t_since_program_s + profile.noise.drift.t0_s
            )
            g = np.maximum(g + np.abs(g) * read.sigma * sigma * rng.standard_normal(g.shape), 0.0)
        devices.append(g)
    return (devices[0] - devices[1]) / prog.g_max_us * profile.weights.value_range[1] * pairs.scale


def pcm_read_noise_sigma(g_prog_us: np.ndarray, g_max_us: float, t_read_s: float, t_s: float) -> np.ndarray:
    """Relative σ of the 1/f read noise of devices programmed to `g_prog_us`, read at time `t_s`:
    `Q_s sqrt(ln((t + t_read) / (2 t_read)))`, `Q_s = min(0.0088 / max((g/g_max)^0.65, 1e-3), 0.2)`."""
    g_rel = np.abs(np.asarray(g_prog_us, dtype=np.float64)) / g_max_us
    q_s = np.minimum(0.0088 / np.maximum(g_rel**0.65, 1e-3), 0.2)
    return q_s * math.sqrt(max(math.log((t_s + t_read_s) / (2 * t_read_s)), 0.0))


def deployment_noise(
    w: np.ndarray, profile: ChipProfile, rng: np.random.Generator, t_since_program_s: float = 0.0
) -> np.ndarray:
    """`w` as one run on a freshly programmed chip would see it (for hardware-aware training):
    programming noise, drift and read noise at `t_since_program_s`, periphery weight noise."""
    w = np.asarray(w, dtype=np.float64)
    if profile.noise.programming.model == "pcm":
        pairs = pcm_program(w, profile, rng, rng)
        out = pcm_weights(pairs, profile, t_since_program_s, rng)
        scale = pairs.scale
    else:
        scale = layer_scale(w, profile.weights)
        out = programming_noise(w, profile, rng)
        nu = drift_exponents(out / scale, profile.noise.drift, rng, profile.weights.value_range[1])
        out = read_noise(apply_drift(out, nu, t_since_program_s, profile.noise.drift), profile, rng)
    return periphery_noise(out, profile, rng, scale)


# ---------------------------------------------------------------- drift
def drift_exponents(w: np.ndarray, drift: Drift, rng: np.random.Generator, w_max: float) -> np.ndarray:
    """Drift exponent ν per weight (or device), frozen at write; ν >= 0 (zeros for `model: none`).

    power_law: `max(nu + nu_sigma N, 0)`; pcm: `|mu + sigma N|` with mu, sigma from
    `pcm_drift_nu_stats(|w| / w_max)` (for a device, w is its target conductance over g_max).
    """
    w = np.asarray(w, dtype=np.float64)
    if drift.model == "none":
        return np.zeros(w.shape)
    if drift.model == "power_law":
        return np.maximum(drift.nu + drift.nu_sigma * rng.standard_normal(w.shape), 0.0)
    mean, sigma = pcm_drift_nu_stats(np.minimum(np.abs(w) / w_max, 1.0))
    return np.abs(mean + sigma * rng.standard_normal(w.shape))


def apply_drift(w: np.ndarray, nu: np.ndarray, t_since_program_s: float, drift: Drift) -> np.ndarray:
    """`w ((t + t0) / t0)^-ν`: t counts from the end of programming, t0 is the reference read
    after it (aihwkit's t_inference + t_0), so drift starts at once; `model: none`: `w` (new array)."""
    w = np.asarray(w, dtype=np.float64)
    if drift.model == "none" or t_since_program_s <= 0:
        return w.copy()
    return w * ((t_since_program_s + drift.t0_s) / drift.t0_s) ** (-np.asarray(nu, dtype=np.float64))


# ---------------------------------------------------------------- read noise
def read_noise(w: np.ndarray, profile: ChipProfile, rng: np.random.Generator) -> np.ndarray:
    """Weights as seen by one run, with a fresh draw of a gaussian `profile.noise.read` (new array):
    gaussian_absolute `w + sigma N`, gaussian_relative `w + sigma |w| N` (relative to |w|; for noise
    relative to w_max use gaussian_absolute with sigma * w_max). pcm_1f acts on the device
    conductances (`pcm_weights`); none and pcm_1f leave `w` as it is here."""
    read = profile.noise.read
    w = np.asarray(w, dtype=np.float64)
    if read.model == "gaussian_absolute":
        return w + read.sigma * rng.standard_normal(w.shape)
    if read.model == "gaussian_relative":
        return w + read.sigma * np.abs(w) * rng.standard_normal(w.shape)
    return w.copy()


def periphery_noise(
    w: np.ndarray, profile: ChipProfile, rng: np.random.Generator, scale: float
) -> np.ndarray:
    """The periphery's weight noise of one run: `w + weight_sigma · scale · w_max · N` (aihwkit's
    forward `w_noise`, additive, relative to the layer's range under `map_to_range`)."""
    sigma = profile.noise.periphery.weight_sigma
    w = np.asarray(w, dtype=np.float64)
    if not sigma:
        return w.copy()
    return w + sigma * scale * profile.weights.value_range[1] * rng.standard_normal(w.shape)


# ---------------------------------------------------------------- faults
def draw_faults(shape: tuple[int, ...], faults: Faults, rng: np.random.Generator) -> np.ndarray:
    """int8 fault codes, iid per synapse: 1 stuck-at-zero w.p. `stuck_at_zero`, 2 stuck-at-max
    w.p. `stuck_at_max`, else 0 (ok). One uniform draw per synapse, always (stable streams)."""
    u = rng.random(shape)
    codes = np.zeros(shape, dtype=np.int8)
    codes[u < faults.stuck_at_zero] = FAULT_STUCK_ZERO
    codes[(u >= faults.stuck_at_zero) & (u < faults.stuck_at_zero + faults.stuck_at_max)] = FAULT_STUCK_MAX
    return codes


def apply_faults(w: np.ndarray, codes: np.ndarray, weights: Weights) -> np.ndarray:
    """Stuck-at-zero synapses read 0, stuck-at-max ones read `+weights.value_range[1]` (new array)."""
    w = np.asarray(w, dtype=np.float64)
    if w.shape != codes.shape:
        raise ChipError(f"apply_faults: fault codes of shape {codes.shape} for weights of shape {w.shape}")
    out = np.where(codes == FAULT_STUCK_ZERO, 0.0, w)
    return np.where(codes == FAULT_STUCK_MAX, weights.value_range[1], out)


# ---------------------------------------------------------------- neuron mismatch
def draw_mismatch(n: int, mismatch: Mismatch, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-neuron multipliers `1 + sigma N`, clipped to >= 0.05, for "tau", "threshold", "gain".

    Drawn in that order, always all three (a zero sigma gives ones, the stream stays stable).
    """
    return {
        name: np.maximum(1.0 + getattr(mismatch, name) * rng.standard_normal(n), MISMATCH_FLOOR)
        for name in ("tau", "threshold", "gain")
    }


# ---------------------------------------------------------------- event caps
def cap_events(z: np.ndarray, cap: int | None) -> tuple[np.ndarray, int]:
    """Keep per leading index the first `cap` events of `z[..., N]` in neuron-index order.

    Returns (kept events, same dtype as `z`; number of dropped events). `cap` None: no limit.
    """
    z = np.asarray(z)
    if cap is None:
        return z.copy(), 0
    fired = z != 0
    kept = fired & (np.cumsum(fired, axis=-1) <= cap)
    return np.where(kept, z, np.zeros((), dtype=z.dtype)), int(fired.sum() - kept.sum())
