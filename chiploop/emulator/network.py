"""NetworkSpec: the shape of a network a Chip runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from chiploop.errors import ChipError

LAYERS = ("in_hidden", "hidden_hidden", "hidden_out")


@dataclass(frozen=True)
class NetworkSpec:
    """Input -> (optionally recurrent) hidden LIF/ALIF layer -> leaky or spiking readout."""

    n_in: int
    n_hidden: int
    n_out: int
    recurrent: bool = False
    readout: Literal["leaky", "spiking"] = "leaky"

    def __post_init__(self) -> None:
        for field in ("n_in", "n_hidden", "n_out"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ChipError(f"NetworkSpec.{field} must be a positive int, got {value!r}")
        if self.readout not in ("leaky", "spiking"):
            raise ChipError(f"NetworkSpec.readout must be 'leaky' or 'spiking', got {self.readout!r}")

    def weight_shapes(self) -> dict[str, tuple[int, int]]:
        """Shape `[pre, post]` of every weight matrix of this network."""
        shapes = {"in_hidden": (self.n_in, self.n_hidden)}
        if self.recurrent:
            shapes["hidden_hidden"] = (self.n_hidden, self.n_hidden)
        shapes["hidden_out"] = (self.n_hidden, self.n_out)
        return shapes

    @property
    def n_neurons(self) -> int:
        """Neurons the chip must host (hidden + output)."""
        return self.n_hidden + self.n_out
