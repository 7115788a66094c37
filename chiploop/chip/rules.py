"""The update rules a chip profile selects (docs/dynamics.md, "Rules"), resolved once.

Plain data without torch, so that configuring a C backend (the Brian2 emulator, a board) does not
import the torch definition of the dynamics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from chiploop.chip_profiles.model import ChipProfile


@dataclass(frozen=True)
class Rules:
    """The update rules a profile selects (docs/dynamics.md, "Rules"), resolved once."""

    fixed: bool = False
    decay: Literal["multiplier", "shift"] = "multiplier"
    decay_bits: int = 12
    decay_rounding: Literal["truncate", "floor", "floor_min_step"] = "truncate"
    per_addition: bool = False
    wrap_current: bool = False
    symmetric_membrane: bool = False
    state_bits: int = 24
    fractional_bits: int = 0
    input_delay: int = 1
    add_then_decay: bool = False
    strict_threshold: bool = False
    reset_zero: bool = False
    refractory_steps: int = 0
    max_spike_count: int = 1
    spike_cap: int | None = None
    input_cap: int | None = None

    @classmethod
    def of(cls, profile: ChipProfile) -> Rules:
        ar, n = profile.arithmetic, profile.neuron
        return cls(
            fixed=ar.kind == "fixed",
            decay=ar.decay,
            decay_bits=ar.decay_bits,
            decay_rounding=ar.decay_rounding,
            per_addition=ar.saturation == "per_addition",
            wrap_current=ar.current_overflow == "wrap",
            symmetric_membrane=ar.membrane_overflow == "saturate_symmetric",
            state_bits=ar.state_bits,
            fractional_bits=ar.fractional_bits if ar.kind == "fixed" else 0,
            input_delay=profile.timing.input_delay_steps,
            add_then_decay=n.update_order == "add_then_decay",
            strict_threshold=n.threshold_compare == "gt",
            reset_zero=n.reset == "zero",
            refractory_steps=n.refractory_steps,
            max_spike_count=n.max_spike_count,
            spike_cap=profile.limits.max_spikes_per_step,
            input_cap=profile.limits.max_input_spikes_per_step,
        )

    @property
    def hi(self) -> float:
        """Largest state value (fixed arithmetic)."""
        return 2.0 ** (self.state_bits - 1) - 1

    @property
    def lo(self) -> float:
        """Smallest state value (fixed arithmetic)."""
        return -(2.0 ** (self.state_bits - 1))

    @property
    def v_lo(self) -> float:
        """Smallest membrane value: `lo`, or `-hi` with a symmetric membrane range."""
        return -self.hi if self.symmetric_membrane else self.lo


def spiking_only(profile: ChipProfile, backend: str) -> None:
    """Refuse a `neuron.model: rate` profile on a backend that runs spiking neurons only (ChipError)."""
    if profile.neuron.model == "rate":
        from chiploop.errors import ChipError

        raise ChipError(
            f"{backend}: neuron.model=rate runs on the torch twin only (target 'twin'); "
            "this backend runs spiking neurons (neuron.model lif or alif)"
        )
