"""NetworkSpec: the shape of a network a Chip runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from chiploop.errors import ChipError

MAX_LAYERS = 4  # hidden layers; the C definition's CL_MAX_LAYERS


def layer_name(k: int) -> str:
    """Name of hidden layer k (0-based): "hidden", "hidden2", "hidden3", ..."""
    return "hidden" if k == 0 else f"hidden{k + 1}"


@dataclass(frozen=True)
class NetworkSpec:
    """Input -> hidden LIF/ALIF layers, each optionally recurrent -> leaky or spiking readout.

    n_hidden: one layer's size, or a tuple of sizes (input side first); recurrent: one flag for
    every layer, or one per layer. Layers are named "hidden", "hidden2", ... and each weight matrix
    "pre_post" after the layers it joins: "in_hidden", "hidden_hidden" (recurrence),
    "hidden_hidden2", "hidden2_hidden2", ..., and "<last>_out". Spikes cross from one layer to the
    next (and to the readout) one step after they are emitted.

    synapses: synaptic currents per hidden neuron, 1 or 2; with 2 (a profile with `tau_syn2_s`,
    one hidden layer) the inputs and the recurrence reach the second current through their own
    weights "in_hidden_2" and "hidden_hidden_2".
    """

    n_in: int
    n_hidden: int | tuple[int, ...]
    n_out: int
    recurrent: bool | tuple[bool, ...] = False
    readout: Literal["leaky", "spiking"] = "leaky"
    synapses: int = 1

    def __post_init__(self) -> None:
        sizes = self.n_hidden if isinstance(self.n_hidden, list | tuple) else (self.n_hidden,)
        if not 1 <= len(sizes) <= MAX_LAYERS:
            raise ChipError(f"NetworkSpec.n_hidden: 1 to {MAX_LAYERS} hidden layers, got {len(sizes)}")
        for field, value in (("n_in", self.n_in), ("n_out", self.n_out), *(("n_hidden", s) for s in sizes)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ChipError(f"NetworkSpec.{field} must be a positive int, got {value!r}")
        flags = self.recurrent if isinstance(self.recurrent, list | tuple) else (self.recurrent,) * len(sizes)
        if len(flags) != len(sizes) or not all(isinstance(f, bool) for f in flags):
            raise ChipError(
                f"NetworkSpec.recurrent must be a bool or one bool per hidden layer ({len(sizes)}), "
                f"got {self.recurrent!r}"
            )
        # one canonical form: an int and a bool for one layer (and for flags that agree)
        object.__setattr__(self, "n_hidden", sizes[0] if len(sizes) == 1 else tuple(sizes))
        object.__setattr__(self, "recurrent", flags[0] if len(set(flags)) == 1 else tuple(flags))
        if self.readout not in ("leaky", "spiking"):
            raise ChipError(f"NetworkSpec.readout must be 'leaky' or 'spiking', got {self.readout!r}")
        if self.synapses not in (1, 2) or isinstance(self.synapses, bool):
            raise ChipError(f"NetworkSpec.synapses must be 1 or 2, got {self.synapses!r}")
        if self.synapses == 2 and len(sizes) > 1:
            raise ChipError("NetworkSpec.synapses: 2 synaptic currents need a single hidden layer")

    @property
    def hidden_sizes(self) -> tuple[int, ...]:
        """Size of each hidden layer, input side first."""
        return self.n_hidden if isinstance(self.n_hidden, tuple) else (self.n_hidden,)

    @property
    def hidden_recurrent(self) -> tuple[bool, ...]:
        """Whether each hidden layer is recurrent."""
        r = self.recurrent
        return r if isinstance(r, tuple) else (r,) * len(self.hidden_sizes)

    @property
    def layer_names(self) -> tuple[str, ...]:
        """Names of the hidden layers: "hidden", "hidden2", ..."""
        return tuple(layer_name(k) for k in range(len(self.hidden_sizes)))

    @property
    def n_hidden_total(self) -> int:
        """Hidden neurons of all layers."""
        return sum(self.hidden_sizes)

    def weight_shapes(self) -> dict[str, tuple[int, int]]:
        """Shape `[pre, post]` of every weight matrix of this network, in the order the chip stores them."""
        shapes: dict[str, tuple[int, int]] = {}
        pre, n_pre = "in", self.n_in
        for name, n, rec in zip(self.layer_names, self.hidden_sizes, self.hidden_recurrent, strict=True):
            shapes[f"{pre}_{name}"] = (n_pre, n)
            if rec:
                shapes[f"{name}_{name}"] = (n, n)
            pre, n_pre = name, n
        shapes[f"{pre}_out"] = (n_pre, self.n_out)
        if self.synapses == 2:
            shapes["in_hidden_2"] = (self.n_in, self.n_hidden_total)
            if self.recurrent:
                shapes["hidden_hidden_2"] = (self.n_hidden_total, self.n_hidden_total)
        return shapes

    def hidden_slices(self) -> tuple[slice, ...]:
        """Each hidden layer's neurons in a numbering of all hidden neurons, layer after layer."""
        stops = np.cumsum(self.hidden_sizes).tolist()
        return tuple(slice(lo, hi) for lo, hi in zip([0, *stops[:-1]], stops, strict=True))

    def by_layer(self, hidden: np.ndarray) -> dict[str, np.ndarray]:
        """An array over all hidden neurons (last axis, layer after layer) -> one per layer name."""
        return {name: hidden[..., s] for name, s in zip(self.layer_names, self.hidden_slices(), strict=True)}

    @property
    def n_neurons(self) -> int:
        """Neurons the chip must host (hidden + output)."""
        return self.n_hidden_total + self.n_out
