"""The twin's dynamics with a backward pass that can be cut and rerouted (`Credit`).

The truncated and feedback-replacing estimators (tbptt, e-prop, RFLO, SnAp-1, feedback alignment)
and node perturbation need control over the backward pass that the twin's forward does not offer.
`unroll` runs the same `chiploop.chip.dynamics.simulate` as the twin, with the twin's constants and
surrogate, and passes it a `Credit`:

- `values` given (replay): forward VALUES come from a recording (hidden spikes, and the readout's
  membrane and spikes); gradients flow through the surrogate dynamics, exactly as in
  `TorchTwin(replay=...)`.
- `values` None: the forward values are the dynamics themselves (spike caps included).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from chiploop.chip.dynamics import Credit, Trace, cap_spikes, simulate
from chiploop.chip.protocol import Recording
from chiploop.errors import TrainingError
from chiploop.training.estimators.base import hidden_spikes

if TYPE_CHECKING:
    from chiploop.emulator.twin import TorchTwin

__all__ = ["Credit", "cap_spikes", "unroll"]


def unroll(
    model: TorchTwin,
    inputs: Tensor,
    weights: dict[str, Tensor],
    values: Recording | None = None,
    credit: Credit | None = None,
    node_noise: dict[str, Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """Readout membrane `[B, T, O]` and the spikes of every hidden layer `[B, T, H]` (see module doc)."""
    trace = unroll_trace(model, inputs, weights, values, credit, node_noise)
    return trace.v["out"], hidden_spikes(trace.spikes, model.spec)


def unroll_trace(
    model: TorchTwin,
    inputs: Tensor,
    weights: dict[str, Tensor],
    values: Recording | None = None,
    credit: Credit | None = None,
    node_noise: dict[str, Tensor] | None = None,
) -> Trace:
    """The whole run of `unroll`: every layer's spikes and membranes.

    `node_noise`: optional currents added to the synaptic input of each layer's neurons (by layer
    name: "hidden", "hidden2", ..., "out"; `[B, T, N]`), before the gain.
    """
    dtype = model.compute_dtype
    w = {k: v.to(dtype) for k, v in weights.items()}
    return simulate(
        model.params,
        inputs.to(dtype),
        w,
        model.surrogate,
        replay=_recorded(values, dtype, model.params.names),
        credit=credit or Credit(),
        node_noise=node_noise,
    )


def _recorded(
    values: Recording | None, dtype: torch.dtype, names: tuple[str, ...]
) -> dict[str, Tensor] | None:
    if values is None:
        return None
    if any(n not in values.spikes for n in names) or "out" not in values.v:
        raise TrainingError(
            f"replay needs recorded spikes of {list(names)} and v['out'] (run the chip with record_v=True)"
        )
    replay = {n: values.spikes[n] for n in names} | {"v_out": values.v["out"]}
    if "out" in values.spikes:
        replay["out"] = values.spikes["out"]
    return {k: torch.tensor(np.asarray(a), dtype=dtype) for k, a in replay.items()}
