"""NetworkSpec: the shape of a network a Chip runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from chiploop.errors import ChipError

LAYERS = ("in_hidden", "hidden_hidden", "hidden_out", "in_hidden_2", "hidden_hidden_2")


@dataclass(frozen=True)
class NetworkSpec:
    """Input -> (optionally recurrent) hidden LIF/ALIF layer -> leaky or spiking readout.

    synapses: synaptic currents per hidden neuron, 1 or 2; with 2 (a profile with `tau_syn2_s`)
    the inputs and the recurrence reach the second current through their own weights
    "in_hidden_2" and "hidden_hidden_2".
    """

    n_in: int
    n_hidden: int
    n_out: int
    recurrent: bool = False
    readout: Literal["leaky", "spiking"] = "leaky"
    synapses: int = 1

    def __post_init__(self) -> None:
        for field in ("n_in", "n_hidden", "n_out"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ChipError(f"NetworkSpec.{field} must be a positive int, got {value!r}")
        if self.readout not in ("leaky", "spiking"):
            raise ChipError(f"NetworkSpec.readout must be 'leaky' or 'spiking', got {self.readout!r}")
        if self.synapses not in (1, 2) or isinstance(self.synapses, bool):
            raise ChipError(f"NetworkSpec.synapses must be 1 or 2, got {self.synapses!r}")

    def weight_shapes(self) -> dict[str, tuple[int, int]]:
        """Shape `[pre, post]` of every weight matrix of this network."""
        shapes = {"in_hidden": (self.n_in, self.n_hidden)}
        if self.recurrent:
            shapes["hidden_hidden"] = (self.n_hidden, self.n_hidden)
        shapes["hidden_out"] = (self.n_hidden, self.n_out)
        if self.synapses == 2:
            shapes["in_hidden_2"] = (self.n_in, self.n_hidden)
            if self.recurrent:
                shapes["hidden_hidden_2"] = (self.n_hidden, self.n_hidden)
        return shapes

    @property
    def n_neurons(self) -> int:
        """Neurons the chip must host (hidden + output)."""
        return self.n_hidden + self.n_out
