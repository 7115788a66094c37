"""The ChipProfile: a frozen, typed description of what a chip can and cannot do.

Units: weights, thresholds and membrane state share one *model unit* (for `fixed` arithmetic it is
the chip's integer state unit); times carry their unit in the name (`tau_mem_s`, `dt_s`).
Every section forbids unknown keys, so a typo is an error rather than a silent default.
Every field has a one-line description and, where it has one, a unit (`json_schema_extra`):
`chiploop profiles reference` prints them (docs/profiles.md).
"""

from __future__ import annotations

import difflib
import functools
import math
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.fields import FieldInfo

NonNeg = Annotated[float, Field(ge=0.0)]
Positive = Annotated[float, Field(gt=0.0)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Count = Annotated[int, Field(ge=1)]
# A neuron parameter: one value for every neuron, or one per neuron (see `Neuron`).
PerNeuronPositive = Positive | Annotated[tuple[Positive, ...], Field(min_length=1)]
PerNeuronNonNeg = NonNeg | Annotated[tuple[NonNeg, ...], Field(min_length=1)]
PerNeuronReal = float | Annotated[tuple[float, ...], Field(min_length=1)]


def _field(default: Any, description: str, unit: str = "") -> Any:
    """A field's default, one-line meaning and unit ("" for names, switches and pure numbers)."""
    return Field(default, description=description, json_schema_extra={"unit": unit} if unit else None)


class Section(BaseModel):
    """Base of every profile section: immutable, strict about unknown keys and non-finite numbers."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Adaptation(Section):
    """ALIF threshold adaptation: A = threshold + beta * a, a <- rho * a + z, rho = exp(-dt/tau)."""

    tau_s: Positive = _field(2.0, "time constant of the adaptation variable a", "s")
    beta: NonNeg = _field(0.0, "threshold increase per unit of a (0: no adaptation)", "model units")
    fraction: Fraction = _field(
        1.0, "fraction of hidden neurons that adapt (the first round(fraction x n_hidden))", "fraction"
    )


class Neuron(Section):
    """Current-based leaky integrate-and-fire neuron parameters (nominal, before mismatch) and the
    rules of its update (docs/dynamics.md).

    A per-neuron parameter is one number for every neuron it applies to, or a list with one entry
    per such neuron, hidden neurons first, then readout neurons: `tau_mem_s`, `tau_syn2_s` apply to
    the hidden layer, `tau_out_s` to the readout, `tau_syn_s`, `threshold` and `bias` to both.
    """

    model: Literal["lif", "alif", "rate"] = _field(
        "lif",
        "lif; alif: hidden thresholds adapt (neuron.adaptation); rate: leaky tanh units "
        "h <- a·h + (1 − a)·tanh(input + bias), a = exp(−dt/tau_mem_s), no spikes (float, twin only)",
    )
    tau_mem_s: PerNeuronPositive = _field(0.02, "membrane time constant of the hidden neurons", "s")
    tau_syn_s: PerNeuronNonNeg = _field(0.005, "synaptic current time constant; 0: no synaptic filter", "s")
    tau_syn2_s: PerNeuronPositive | None = _field(
        None,
        "a second synaptic current of the hidden neurons (Xylo's syn2), used by networks with "
        "synapses=2; null: none",
        "s",
    )
    tau_out_s: PerNeuronPositive = _field(0.02, "membrane time constant of the readout neurons", "s")
    threshold: PerNeuronPositive = _field(1.0, "firing threshold", "model units")
    bias: PerNeuronReal = _field(0.0, "added to the membrane every step", "state units")
    reset: Literal["zero", "subtract"] = _field("subtract", "after a spike: v <- 0, or v <- v - threshold")
    refractory_steps: Annotated[int, Field(ge=0, le=1024)] = _field(
        0, "steps a neuron keeps its membrane after a spike", "steps"
    )
    threshold_compare: Literal["ge", "gt"] = _field("ge", "spike when v >= A, or v > A")
    max_spike_count: Annotated[int, Field(ge=1, le=255)] = _field(
        1, "spikes a hidden neuron may emit in one step; above 1 each subtracts the threshold", "spikes"
    )
    update_order: Literal["decay_then_add", "add_then_decay"] = _field(
        "decay_then_add", "synaptic current: I <- D(I) + s, or I <- D(I + s)"
    )
    adaptation: Adaptation = Adaptation()

    def nominal(self, field: str) -> float:
        """One number for a per-neuron parameter: the value, or the mean of its list."""
        value = getattr(self, field)
        return float(sum(value) / len(value)) if isinstance(value, tuple) else float(value)


class Timing(Section):
    """Simulation step, the chip's speed relative to biological time, and when inputs arrive."""

    dt_s: Positive = _field(0.001, "simulation time step", "s")
    time_scale: Positive = _field(
        1.0,
        "chip seconds per model second (1e-3 = 1000x accelerated); describes the chip, the dynamics "
        "do not use it",
        "chip s / model s",
    )
    input_delay_steps: Annotated[int, Field(ge=0, le=1)] = _field(
        1, "steps from an input spike to its synaptic current (1: like every synapse)", "steps"
    )


class Arithmetic(Section):
    """Float dynamics, or integer dynamics with bounded state and integer decays (docs/dynamics.md)."""

    kind: Literal["float", "fixed"] = _field("float", "float dynamics, or fixed: integer state and decays")
    state_bits: Annotated[int, Field(ge=2, le=48)] = _field(
        24, "fixed: width of the signed state registers (currents, membranes)", "bits"
    )
    decay: Literal["multiplier", "shift"] = _field(
        "multiplier", "fixed: multiplier: v*(2^decay_bits - d) / 2^decay_bits; shift: v - v/2^s"
    )
    decay_bits: Annotated[int, Field(ge=1, le=24)] = _field(
        12, "fixed: multiplier: its fraction bits q; shift: width of the shift register (s < 2^bits)", "bits"
    )
    decay_rounding: Literal["truncate", "floor", "floor_min_step"] = _field(
        "truncate",
        "rounding of a decay; floor_min_step (shift only): floor, but a non-zero state always moves by "
        "at least 1",
    )
    saturation: Literal["per_update", "per_addition"] = _field(
        "per_update", "bound each state update once, or every single addition (Xylo)"
    )
    current_overflow: Literal["saturate", "wrap"] = _field(
        "saturate", "synaptic current beyond the state width: saturate, or wrap once (Loihi)"
    )
    membrane_overflow: Literal["saturate", "saturate_symmetric"] = _field(
        "saturate", "saturate_symmetric: to ±(2^(state_bits-1) - 1), as Loihi clips v"
    )
    fractional_bits: Annotated[int, Field(ge=0, le=16)] = _field(
        0, "extra low bits of the state: inputs and thresholds enter shifted left by this", "bits"
    )
    threshold_bits: Annotated[int, Field(ge=1, le=47)] | None = _field(
        None, "width of the (unsigned) threshold register; null: as wide as the state", "bits"
    )


class Weights(Section):
    """Weight storage: resolution, range, sign encoding and rounding at write."""

    bits: Annotated[int, Field(ge=1, le=32)] | None = _field(
        None, "resolution of a stored weight; null: analog (float, only clipped to the range)", "bits"
    )
    range: tuple[float, float] = _field(
        (-1.0, 1.0), "[min, max] of a weight register; times 2^shift in model units", "register units"
    )
    encoding: Literal["signed", "sign_split", "differential_pair"] = _field(
        "signed",
        "grid levels: signed: two's complement of `bits`; sign_split, differential_pair: a magnitude "
        "of `bits` and a separate sign",
    )
    rounding: Literal["deterministic", "stochastic", "floor"] = _field(
        "deterministic", "onto the grid: nearest (ties away from 0), unbiased random, or down"
    )
    shift: Annotated[int, Field(ge=0, le=16)] = _field(
        0, "weights are register values x 2^shift (Xylo's weight bit-shift): grid and range scale", "bits"
    )
    exponent_bits: Annotated[int, Field(ge=0, le=8)] = _field(
        0, "per-layer shared exponent (mantissa x 2^e), chosen at write to fit the layer", "bits"
    )
    map_to_range: bool = _field(
        False,
        "analog: each layer's largest |w| is mapped to the full conductance range by a digital output "
        "scale (aihwkit's weight scaling), so device noise is relative to the layer",
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

    model: Literal["none", "gaussian_absolute", "gaussian_relative", "pcm"] = _field(
        "none", "gaussian_absolute: w + sigma N; gaussian_relative: w + sigma |w| N; pcm: aihwkit's PCM model"
    )
    sigma: NonNeg = _field(
        0.0, "gaussian models: std of the noise", "model units (absolute), fraction of |w| (relative)"
    )
    g_max_us: Positive = _field(25.0, "pcm: maximal device conductance", "µS")
    coefficients: tuple[float, float, float] = _field(
        (0.26348, 1.9650, -1.1731), "pcm: σ(g) = c0 + c1 (g/gmax) + c2 (g/gmax)²", "µS"
    )
    reference_g_max_us: Positive = _field(
        25.0, "pcm: the g_max the coefficients were fitted at; σ scales by g_max / it", "µS"
    )


class ReadNoise(Section):
    """Noise drawn afresh on every run."""

    model: Literal["none", "gaussian_absolute", "gaussian_relative", "pcm_1f"] = _field(
        "none",
        "gaussian_absolute, gaussian_relative (as programming noise), or pcm_1f: 1/f noise of PCM devices",
    )
    sigma: NonNeg = _field(
        0.0,
        "std of the noise; pcm_1f: scale of the fitted 1/f noise",
        "model units (absolute), fraction of |w| (relative), factor (pcm_1f)",
    )
    t_read_s: Positive = _field(250e-9, "pcm_1f: integration time of one read", "s")


class Drift(Section):
    """Conductance decay: g(t) = g_prog ((t + t0) / t0)^-nu, t counted from the end of programming."""

    model: Literal["none", "power_law", "pcm"] = _field(
        "none", "power_law: nu from nu, nu_sigma; pcm: nu drawn per device from its conductance (aihwkit)"
    )
    nu: NonNeg = _field(0.0, "power_law: mean drift exponent")
    nu_sigma: NonNeg = _field(0.0, "power_law: std of the drift exponent across synapses")
    t0_s: Positive = _field(20.0, "reference time after programming of drift and pcm_1f read noise", "s")


class Periphery(Section):
    """Noise of the analog periphery on every run (DACs, ADCs, wires), apart from the devices'."""

    weight_sigma: NonNeg = _field(
        0.0,
        "additive weight noise per run, std = weight_sigma x the layer's w_max (aihwkit w_noise)",
        "x w_max",
    )


class Faults(Section):
    """Fractions of synapses stuck at zero or at the range limit, frozen per chip instance."""

    stuck_at_zero: Fraction = _field(0.0, "synapses that read 0", "fraction")
    stuck_at_max: Fraction = _field(0.0, "synapses that read the range maximum", "fraction")

    @model_validator(mode="after")
    def _fractions_sum(self) -> Faults:
        if self.stuck_at_zero + self.stuck_at_max > 1.0:
            raise ValueError("stuck_at_zero + stuck_at_max must be <= 1")
        return self


class Mismatch(Section):
    """Relative Gaussian spread of neuron parameters, frozen per chip instance."""

    tau: NonNeg = _field(0.0, "spread of every time constant of a neuron (one multiplier)", "relative std")
    threshold: NonNeg = _field(0.0, "spread of the thresholds", "relative std")
    gain: NonNeg = _field(0.0, "spread of the synaptic gain of the hidden neurons", "relative std")


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
    """Resource limits; null means unlimited."""

    max_neurons: Count | None = _field(None, "hidden + readout neurons on the chip", "neurons")
    max_inputs: Count | None = _field(None, "input channels", "channels")
    max_outputs: Count | None = _field(None, "readout neurons", "neurons")
    max_fan_in: Count | None = _field(None, "synapses into one neuron", "synapses")
    max_fan_out: Count | None = _field(None, "neurons one hidden neuron sends to", "neurons")
    neurons_per_core: Count | None = _field(
        None, "neurons of one core (layers use separate cores)", "neurons"
    )
    synapses_per_core: Count | None = _field(
        None, "synapse memory of one core (a neuron's incoming synapses)", "synapses"
    )
    max_spikes_per_step: Count | None = _field(
        None, "hidden spikes delivered per sample per step; excess dropped", "spikes"
    )
    max_input_spikes_per_step: Count | None = _field(
        None, "input spikes per sample per step; excess dropped", "spikes"
    )


class Cost(Section):
    """Published energy and timing figures of the chip's operations (docs/cost.md); null: no published
    figure, the term is left out of the estimate and named as missing."""

    synapse_op: Literal["accumulate", "mac"] = _field(
        "accumulate",
        "accumulate: event-driven, a spike costs one operation per nonzero synapse it reaches; mac: a "
        "crossbar multiplies every input row with every column each step (dense MACs)",
    )
    energy_per_synop_j: NonNeg | None = _field(
        None, "synapse_op accumulate: one synaptic event (a spike through one nonzero synapse)", "J"
    )
    energy_per_mac_j: NonNeg | None = _field(
        None, "synapse_op mac: one multiply-accumulate with its share of DAC/ADC periphery", "J"
    )
    energy_per_neuron_update_j: NonNeg | None = _field(None, "one neuron's state update in one step", "J")
    energy_per_spike_j: NonNeg | None = _field(None, "emitting and routing one spike", "J")
    static_power_w: NonNeg | None = _field(None, "static (idle) power, paid for the whole latency", "W")
    time_per_synop_s: NonNeg | None = _field(None, "synapse_op accumulate: time of one synaptic event", "s")
    time_per_neuron_update_s: NonNeg | None = _field(None, "time of one neuron's state update", "s")
    time_per_step_s: NonNeg | None = _field(
        None,
        "wall time of one step; null: dt_s x time_scale for a chip that runs in physical time "
        "(cost.physical_time), else the sum of the operation times",
        "s",
    )
    physical_time: bool = _field(
        False,
        "the chip's dynamics run in physical time (analog, or a real-time clock): a step lasts "
        "dt_s x time_scale",
    )


class ChipProfile(Section):
    """Everything chiploop knows about a chip family."""

    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")] = Field(
        description="the profile's name (a file's stem when the file has none)"
    )
    description: str = _field(
        "",
        "one line about the chip; a derived profile's names its changes: 'loihi2 with weights.bits=4'",
    )
    checked_against: str = _field(
        "",
        "the vendor simulator (and version) the test suite pins this profile to, bit for bit or "
        "statistically; dropped when an override changes the chip's rules",
    )
    neuron: Neuron = Neuron()
    timing: Timing = Timing()
    arithmetic: Arithmetic = Arithmetic()
    weights: Weights = Weights()
    noise: Noise = Noise()
    limits: Limits = Limits()
    cost: Cost = Cost()
    source: dict[str, str] = Field(
        default_factory=dict,
        description="field path (such as neuron.tau_mem_s) -> where its value comes from",
    )

    @field_validator("source")
    @classmethod
    def _sources_name_fields(cls, value: dict[str, str]) -> dict[str, str]:
        """A citation's key is a field path: a misspelled one would cite nothing."""
        for key in value:
            if key not in field_paths():
                near = difflib.get_close_matches(key, list(field_paths()), n=1)
                hint = (
                    f"did you mean {near[0]!r}?" if near else "keys are field paths like 'neuron.tau_mem_s'"
                )
                raise ValueError(f"unknown key {key!r}, not a profile field; {hint}")
        return value

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
        """The resolved profile as YAML; `load_profile` of it gives an equal profile, unless it keeps
        a parameter that cannot act (a file may not set one, `inert`), such as the sigma of a read
        noise an override switched off."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def section_of(model: type[BaseModel], key: str) -> type[BaseModel] | None:
    """The section class of field `key` of `model`, or None for a leaf (or the `source` map)."""
    return _section(model.model_fields[key])


def _section(info: FieldInfo) -> type[BaseModel] | None:
    annotation = info.annotation
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


@functools.cache
def field_paths() -> dict[str, FieldInfo]:
    """Every section and field of a profile by dotted path, in model order; the top-level
    metadata (name, description, checked_against, source) is not a field path."""
    out: dict[str, FieldInfo] = {}

    def walk(model: type[BaseModel], prefix: str) -> None:
        for key, info in model.model_fields.items():
            section = section_of(model, key)
            if prefix or section is not None:
                out[f"{prefix}{key}"] = info
            if section is not None:
                walk(section, f"{prefix}{key}.")

    walk(ChipProfile, "")
    return out


def leaf_paths() -> list[str]:
    """The dotted paths of the fields that hold values (no sections), in model order."""
    return [path for path, info in field_paths().items() if _section(info) is None]


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
    if n.model == "rate" and ar.kind != "float":
        out.append("neuron.model: rate runs float arithmetic only (arithmetic.kind: float)")
    if n.model == "rate" and p.limits.max_spikes_per_step is not None:
        out.append("neuron.model: rate has no spikes to cap (limits.max_spikes_per_step must be null)")
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
