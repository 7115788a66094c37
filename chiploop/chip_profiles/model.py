"""The ChipProfile: a frozen, typed description of what a chip can and cannot do.

Units: weights, thresholds and membrane state share one *model unit* (for `fixed` arithmetic it is
the chip's integer state unit); times carry their unit in the name (`tau_mem_s`, `dt_s`).
Every section forbids unknown keys, so a typo is an error rather than a silent default.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NonNeg = Annotated[float, Field(ge=0.0)]
Positive = Annotated[float, Field(gt=0.0)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Count = Annotated[int, Field(ge=1)]
# A neuron parameter: one value for every neuron, or one per neuron (see `Neuron`).
PerNeuronPositive = Positive | Annotated[tuple[Positive, ...], Field(min_length=1)]
PerNeuronNonNeg = NonNeg | Annotated[tuple[NonNeg, ...], Field(min_length=1)]
PerNeuronReal = float | Annotated[tuple[float, ...], Field(min_length=1)]


class Section(BaseModel):
    """Base of every profile section: immutable, strict about unknown keys and non-finite numbers."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Adaptation(Section):
    """ALIF threshold adaptation: A = threshold + beta * a, a <- rho * a + z, rho = exp(-dt/tau)."""

    tau_s: Positive = 2.0
    beta: NonNeg = 0.0
    fraction: Fraction = Field(1.0, description="fraction of hidden neurons that adapt (ALIF)")


class Neuron(Section):
    """Current-based leaky integrate-and-fire neuron parameters (nominal, before mismatch) and the
    rules of its update (docs/dynamics.md).

    A per-neuron parameter is one number for every neuron it applies to, or a list with one entry
    per such neuron, hidden neurons first, then readout neurons: `tau_mem_s`, `tau_syn2_s` apply to
    the hidden layer, `tau_out_s` to the readout, `tau_syn_s`, `threshold` and `bias` to both.
    """

    model: Literal["lif", "alif"] = "lif"
    tau_mem_s: PerNeuronPositive = 0.02
    tau_syn_s: PerNeuronNonNeg = Field(0.005, description="0 means no synaptic filter")
    tau_syn2_s: PerNeuronPositive | None = Field(
        None, description="a second synaptic current of the hidden neurons (Xylo's syn2); None: none"
    )
    tau_out_s: PerNeuronPositive = Field(0.02, description="membrane time constant of the readout layer")
    threshold: PerNeuronPositive = 1.0
    bias: PerNeuronReal = Field(0.0, description="added to the membrane every step, in state units")
    reset: Literal["zero", "subtract"] = "subtract"
    refractory_steps: Annotated[int, Field(ge=0, le=1024)] = 0
    threshold_compare: Literal["ge", "gt"] = Field("ge", description="spike when v >= A, or v > A")
    max_spike_count: Annotated[int, Field(ge=1, le=255)] = Field(
        1, description="spikes a hidden neuron may emit in one step; above 1 each subtracts the threshold"
    )
    update_order: Literal["decay_then_add", "add_then_decay"] = Field(
        "decay_then_add", description="synaptic current: I <- D(I) + s, or I <- D(I + s)"
    )
    adaptation: Adaptation = Adaptation()

    def nominal(self, field: str) -> float:
        """One number for a per-neuron parameter: the value, or the mean of its list."""
        value = getattr(self, field)
        return float(sum(value) / len(value)) if isinstance(value, tuple) else float(value)


class Timing(Section):
    """Simulation step, the chip's speed relative to biological time, and when inputs arrive."""

    dt_s: Positive = 0.001
    time_scale: Positive = Field(1.0, description="chip seconds per model second (1e-3 = 1000x accelerated)")
    input_delay_steps: Annotated[int, Field(ge=0, le=1)] = Field(
        1, description="steps from an input spike to its synaptic current (1: like every synapse)"
    )


class Arithmetic(Section):
    """Float dynamics, or integer dynamics with bounded state and integer decays (docs/dynamics.md)."""

    kind: Literal["float", "fixed"] = "float"
    state_bits: Annotated[int, Field(ge=2, le=48)] = 24
    decay: Literal["multiplier", "shift"] = Field(
        "multiplier", description="multiplier: v*(2^decay_bits - d) / 2^decay_bits; shift: v - v/2^s"
    )
    decay_bits: Annotated[int, Field(ge=1, le=24)] = Field(
        12, description="multiplier: its fraction bits q; shift: width of the shift register (s < 2^bits)"
    )
    decay_rounding: Literal["truncate", "floor", "floor_min_step"] = Field(
        "truncate",
        description="rounding of a decay; floor_min_step (shift only): floor, but a non-zero "
        "state always moves by at least 1",
    )
    saturation: Literal["per_update", "per_addition"] = Field(
        "per_update", description="bound each state update once, or every single addition (Xylo)"
    )
    current_overflow: Literal["saturate", "wrap"] = Field("saturate", description="synaptic current")
    membrane_overflow: Literal["saturate", "saturate_symmetric"] = Field(
        "saturate", description="saturate_symmetric: to ±(2^(state_bits-1) - 1), as Loihi clips v"
    )
    fractional_bits: Annotated[int, Field(ge=0, le=16)] = Field(
        0, description="extra low bits of the state: inputs and thresholds enter shifted left by this"
    )
    threshold_bits: Annotated[int, Field(ge=1, le=47)] | None = Field(
        None, description="width of the (unsigned) threshold register; None: as wide as the state"
    )


class Weights(Section):
    """Weight storage: resolution, range, sign encoding and rounding at write."""

    bits: Annotated[int, Field(ge=1, le=32)] | None = Field(None, description="None = analog/float")
    range: tuple[float, float] = (-1.0, 1.0)
    encoding: Literal["signed", "sign_split", "differential_pair"] = "signed"
    rounding: Literal["deterministic", "stochastic", "floor"] = Field(
        "deterministic", description="onto the grid: nearest (ties away from 0), unbiased random, or down"
    )
    shift: Annotated[int, Field(ge=0, le=16)] = Field(
        0, description="weights are register values x 2^shift (Xylo's weight bit-shift): grid and range scale"
    )
    exponent_bits: Annotated[int, Field(ge=0, le=8)] = Field(
        0, description="per-layer shared exponent (mantissa x 2^e), chosen at write to fit the layer"
    )
    map_to_range: bool = Field(
        False,
        description="analog: each layer's largest |w| is mapped to the full conductance range by a "
        "digital output scale (aihwkit's weight scaling), so device noise is relative to the layer",
    )

    @property
    def value_range(self) -> tuple[float, float]:
        """The range in model units: `range` (register values) times `2^shift`."""
        lo, hi = self.range
        return lo * 2**self.shift, hi * 2**self.shift

    @field_validator("range")
    @classmethod
    def _range_ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        lo, hi = value
        if not lo < hi:
            raise ValueError(f"min must be < max, got [{lo}, {hi}]")
        if hi <= 0:
            raise ValueError(f"max must be > 0, got {hi}")
        return value


class ProgrammingNoise(Section):
    """Noise frozen into a weight at write time."""

    model: Literal["none", "gaussian_absolute", "gaussian_relative", "pcm"] = "none"
    sigma: NonNeg = Field(0.0, description="absolute: model units; relative: fraction of |w|")
    g_max_us: Positive = Field(25.0, description="pcm: maximal device conductance in µS")
    coefficients: tuple[float, float, float] = Field(
        (0.26348, 1.9650, -1.1731), description="pcm: σ(g) = c0 + c1 (g/gmax) + c2 (g/gmax)² µS"
    )
    reference_g_max_us: Positive = Field(
        25.0, description="pcm: the g_max the coefficients were fitted at; σ scales by g_max / it"
    )


class ReadNoise(Section):
    """Noise drawn afresh on every run."""

    model: Literal["none", "gaussian_absolute", "gaussian_relative", "pcm_1f"] = "none"
    sigma: NonNeg = Field(
        0.0,
        description="absolute: model units; relative: fraction of |w|; pcm_1f: scale of the fitted 1/f noise",
    )
    t_read_s: Positive = Field(250e-9, description="pcm_1f: integration time of one read")


class Drift(Section):
    """Conductance decay: g(t) = g_prog ((t + t0) / t0)^-nu, t counted from the end of programming."""

    model: Literal["none", "power_law", "pcm"] = "none"
    nu: NonNeg = 0.0
    nu_sigma: NonNeg = 0.0
    t0_s: Positive = 20.0


class Periphery(Section):
    """Noise of the analog periphery on every run (DACs, ADCs, wires), apart from the devices'."""

    weight_sigma: NonNeg = Field(
        0.0,
        description="additive weight noise per run, std = weight_sigma x the layer's w_max (aihwkit w_noise)",
    )


class Faults(Section):
    """Fractions of synapses stuck at zero or at the range limit, frozen per chip instance."""

    stuck_at_zero: Fraction = 0.0
    stuck_at_max: Fraction = 0.0

    @model_validator(mode="after")
    def _fractions_sum(self) -> Faults:
        if self.stuck_at_zero + self.stuck_at_max > 1.0:
            raise ValueError("stuck_at_zero + stuck_at_max must be <= 1")
        return self


class Mismatch(Section):
    """Relative Gaussian spread of neuron parameters, frozen per chip instance."""

    tau: NonNeg = 0.0
    threshold: NonNeg = 0.0
    gain: NonNeg = 0.0


class Noise(Section):
    """Device non-idealities, applied in the order program -> drift -> read (as aihwkit does)."""

    programming: ProgrammingNoise = ProgrammingNoise()
    read: ReadNoise = ReadNoise()
    drift: Drift = Drift()
    periphery: Periphery = Periphery()
    faults: Faults = Faults()
    mismatch: Mismatch = Mismatch()

    def kinds(self) -> list[str]:
        """Names of the non-idealities that are switched on."""
        on = []
        if self.programming.model != "none":
            on.append(f"program:{self.programming.model}")
        if self.read.model != "none":
            on.append(f"read:{self.read.model}")
        if self.drift.model != "none":
            on.append(f"drift:{self.drift.model}")
        if self.periphery.weight_sigma:
            on.append("periphery")
        if self.faults.stuck_at_zero or self.faults.stuck_at_max:
            on.append("stuck-at")
        if self.mismatch.tau or self.mismatch.threshold or self.mismatch.gain:
            on.append("mismatch")
        return on


class Limits(Section):
    """Resource limits; None means unlimited."""

    max_neurons: Count | None = None
    max_inputs: Count | None = Field(None, description="input channels")
    max_outputs: Count | None = Field(None, description="readout neurons")
    max_fan_in: Count | None = None
    max_fan_out: Count | None = None
    neurons_per_core: Count | None = None
    synapses_per_core: Count | None = None
    max_spikes_per_step: Count | None = Field(
        None, description="hidden spikes delivered per sample per step; excess dropped"
    )
    max_input_spikes_per_step: Count | None = Field(
        None, description="input spikes per sample per step; excess dropped"
    )


class ChipProfile(Section):
    """Everything chiploop knows about a chip family."""

    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]
    description: str = ""
    checked_against: str = Field(
        "",
        description="the vendor simulator (and version) the test suite pins this profile to, bit for bit "
        "or statistically; dropped when an override changes the chip's rules",
    )
    neuron: Neuron = Neuron()
    timing: Timing = Timing()
    arithmetic: Arithmetic = Arithmetic()
    weights: Weights = Weights()
    noise: Noise = Noise()
    limits: Limits = Limits()
    source: dict[str, str] = Field(
        default_factory=dict, description="field path -> where the number comes from"
    )

    @model_validator(mode="after")
    def _rules_consistent(self) -> ChipProfile:
        """Rule combinations no backend can honour, and values beyond the chip's register widths."""
        for problem in _rule_problems(self):
            raise ValueError(problem)
        return self

    @property
    def state_scale(self) -> int:
        """State units per model unit: `2^fractional_bits` (1 for float arithmetic)."""
        return 2**self.arithmetic.fractional_bits

    @property
    def readout_scale(self) -> float:
        """One threshold in state units (the nominal one): the unit in which a task reads the
        readout membrane, so that losses and learning rates mean the same on every profile."""
        return self.neuron.nominal("threshold") * self.state_scale

    def with_overrides(self, overrides: dict[str, Any]) -> ChipProfile:
        """A copy with dotted-path fields replaced, validated: {"noise.read.sigma": 0.05}."""
        from chiploop.chip_profiles.loader import apply_overrides

        return apply_overrides(self, overrides)

    def to_yaml(self) -> str:
        """The resolved profile as YAML; `load_profile` of it gives an equal profile."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def _values(x: float | tuple[float, ...] | None) -> tuple[float, ...]:
    return () if x is None else (x if isinstance(x, tuple) else (x,))


def _rule_problems(p: ChipProfile) -> list[str]:
    """Why `p` cannot run, as `field: reason` lines (empty when it can)."""
    ar, n, w = p.arithmetic, p.neuron, p.weights
    out = []
    if n.max_spike_count > 1 and n.reset != "subtract":
        out.append("neuron.max_spike_count: above 1 needs neuron.reset 'subtract' (each spike subtracts A)")
    if n.update_order == "add_then_decay" and not any(_values(n.tau_syn_s)):
        out.append("neuron.update_order: add_then_decay with tau_syn_s 0 would discard every input")
    if ar.saturation == "per_addition" and p.noise.mismatch.gain:
        out.append("arithmetic.saturation: per_addition cannot apply a gain mismatch (noise.mismatch.gain)")
    if p.noise.read.model == "pcm_1f" and p.noise.programming.model != "pcm":
        out.append(
            "noise.read.model: pcm_1f acts on PCM device conductances: needs noise.programming.model pcm"
        )
    if ar.decay_rounding == "floor_min_step" and ar.decay != "shift":
        out.append("arithmetic.decay_rounding: floor_min_step is a rule of shift decays (arithmetic.decay)")
    if ar.kind == "float":
        fixed_only = {
            "decay_rounding": ar.decay_rounding != "truncate",
            "saturation": ar.saturation != "per_update",
            "current_overflow": ar.current_overflow != "saturate",
            "membrane_overflow": ar.membrane_overflow != "saturate",
            "fractional_bits": ar.fractional_bits != 0,
            "threshold_bits": ar.threshold_bits is not None,
        }
        out += [
            f"arithmetic.{k}: only integer arithmetic has it (arithmetic.kind: fixed)"
            for k, bad in fixed_only.items()
            if bad
        ]
        if w.shift:
            out.append("weights.shift: only integer arithmetic has it (arithmetic.kind: fixed)")
        return out
    state_max = 2 ** (ar.state_bits - 1) - 1
    if ar.fractional_bits >= ar.state_bits - 1:
        out.append(
            f"arithmetic.fractional_bits: must be < state_bits - 1 = {ar.state_bits - 1}, "
            f"got {ar.fractional_bits}"
        )
    if ar.decay == "shift":
        limit = 2**ar.decay_bits - 1
        for field in ("tau_mem_s", "tau_syn_s", "tau_syn2_s", "tau_out_s"):
            for tau in _values(getattr(n, field)):
                shift = round(math.log2(tau / p.timing.dt_s)) if tau > 0 else 0
                if shift > limit:
                    out.append(
                        f"neuron.{field}: {tau} s is a shift of {shift}, the {ar.decay_bits}-bit "
                        f"shift register holds at most {limit}"
                    )
                    break
    theta_max = min(
        2**ar.threshold_bits - 1 if ar.threshold_bits else state_max, state_max >> ar.fractional_bits
    )
    top = max(_values(n.threshold))
    if round(top) > theta_max:
        out.append(
            f"neuron.threshold: must be <= {theta_max} (threshold register and state width), got {top}"
        )
    bias = max((abs(b) for b in _values(n.bias)), default=0.0)
    if round(bias) > state_max:
        out.append(f"neuron.bias: must be within ±{state_max} (state_bits {ar.state_bits}), got {bias}")
    lo, hi = (v * 2**ar.fractional_bits for v in w.value_range)
    if w.bits is not None and (lo < -state_max - 1 or hi > state_max):
        field = "weights.shift" if w.shift else "weights.range"
        out.append(
            f"{field}: weights up to [{lo:g}, {hi:g}] state units (range x 2^shift x 2^fractional_bits) "
            f"do not fit the {ar.state_bits}-bit state"
        )
    return out
