"""The ChipProfile: a frozen, typed description of what a chip can and cannot do.

Units: weights, thresholds and membrane state share one *model unit* (for `fixed` arithmetic it is
the chip's integer state unit); times carry their unit in the name (`tau_mem_s`, `dt_s`).
Every section forbids unknown keys, so a typo is an error rather than a silent default.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NonNeg = Annotated[float, Field(ge=0.0)]
Positive = Annotated[float, Field(gt=0.0)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Count = Annotated[int, Field(ge=1)]


class Section(BaseModel):
    """Base of every profile section: immutable, strict about unknown keys and non-finite numbers."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Adaptation(Section):
    """ALIF threshold adaptation: A = threshold + beta * a, a <- rho * a + z, rho = exp(-dt/tau)."""

    tau_s: Positive = 2.0
    beta: NonNeg = 0.0
    fraction: Fraction = Field(1.0, description="fraction of hidden neurons that adapt (ALIF)")


class Neuron(Section):
    """Current-based leaky integrate-and-fire neuron parameters (nominal, before mismatch)."""

    model: Literal["lif", "alif"] = "lif"
    tau_mem_s: Positive = 0.02
    tau_syn_s: NonNeg = Field(0.005, description="0 means no synaptic filter")
    tau_out_s: Positive = Field(0.02, description="membrane time constant of the readout layer")
    threshold: Positive = 1.0
    reset: Literal["zero", "subtract"] = "subtract"
    refractory_steps: Annotated[int, Field(ge=0, le=1024)] = 0
    adaptation: Adaptation = Adaptation()


class Timing(Section):
    """Simulation step and the chip's speed relative to biological time."""

    dt_s: Positive = 0.001
    time_scale: Positive = Field(1.0, description="chip seconds per model second (1e-3 = 1000x accelerated)")


class Arithmetic(Section):
    """Float dynamics, or integer dynamics with saturating state and integer decays."""

    kind: Literal["float", "fixed"] = "float"
    state_bits: Annotated[int, Field(ge=2, le=48)] = 24
    decay: Literal["multiplier", "shift"] = Field(
        "multiplier", description="multiplier: v*(2^decay_bits - d) / 2^decay_bits; shift: v - v/2^s"
    )
    decay_bits: Annotated[int, Field(ge=1, le=24)] = 12


class Weights(Section):
    """Weight storage: resolution, range, sign encoding and rounding at write."""

    bits: Annotated[int, Field(ge=1, le=32)] | None = Field(None, description="None = analog/float")
    range: tuple[float, float] = (-1.0, 1.0)
    encoding: Literal["signed", "sign_split", "differential_pair"] = "signed"
    rounding: Literal["deterministic", "stochastic"] = "deterministic"
    exponent_bits: Annotated[int, Field(ge=0, le=8)] = Field(
        0, description="per-layer shared exponent (mantissa x 2^e), chosen at write to fit the layer"
    )
    map_to_range: bool = Field(
        False,
        description="analog: each layer's largest |w| is mapped to the full conductance range by a "
        "digital output scale (aihwkit's weight scaling), so device noise is relative to the layer",
    )

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


class ReadNoise(Section):
    """Noise drawn afresh on every run."""

    model: Literal["none", "gaussian_absolute", "gaussian_relative", "pcm_1f"] = "none"
    sigma: NonNeg = Field(
        0.0, description="absolute: model units; relative: fraction of |w|; pcm_1f: periphery noise / w_max"
    )
    t_read_s: Positive = Field(250e-9, description="pcm_1f: integration time of one read")


class Drift(Section):
    """Conductance decay since programming: g(t) = g(t0) (t / t0)^-nu."""

    model: Literal["none", "power_law", "pcm"] = "none"
    nu: NonNeg = 0.0
    nu_sigma: NonNeg = 0.0
    t0_s: Positive = 20.0


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
    neuron: Neuron = Neuron()
    timing: Timing = Timing()
    arithmetic: Arithmetic = Arithmetic()
    weights: Weights = Weights()
    noise: Noise = Noise()
    limits: Limits = Limits()
    source: dict[str, str] = Field(
        default_factory=dict, description="field path -> where the number comes from"
    )

    def with_overrides(self, overrides: dict[str, Any]) -> ChipProfile:
        """A copy with dotted-path fields replaced, validated: {"noise.read.sigma": 0.05}."""
        from chiploop.chip_profiles.loader import apply_overrides

        return apply_overrides(self, overrides)

    def to_yaml(self) -> str:
        """The resolved profile as YAML; `load_profile` of it gives an equal profile."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
