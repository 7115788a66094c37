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

from chiploop.chip.dynamics import Credit, cap_spikes, simulate
from chiploop.emulator.chip import Recording
from chiploop.errors import TrainingError

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
    """Readout membrane `[B, T, O]` and hidden spikes `[B, T, H]` (see module doc).

    `node_noise`: optional currents added to the synaptic input of the hidden ("hidden" `[B, T, H]`)
    and readout ("out" `[B, T, O]`) neurons, before the gain.
    """
    dtype = model.compute_dtype
    w = {k: v.to(dtype) for k, v in weights.items()}
    trace = simulate(
        model.params,
        inputs.to(dtype),
        w,
        model.surrogate,
        replay=_recorded(values, dtype),
        credit=credit or Credit(),
        node_noise=node_noise,
    )
    return trace.v["out"], trace.spikes["hidden"]


def _recorded(values: Recording | None, dtype: torch.dtype) -> dict[str, Tensor] | None:
    if values is None:
        return None
    if "hidden" not in values.spikes or "out" not in values.v:
        raise TrainingError(
            "replay needs recorded spikes['hidden'] and v['out'] (run the chip with record_v=True)"
        )
    replay = {"hidden": values.spikes["hidden"], "v_out": values.v["out"]}
    if "out" in values.spikes:
        replay["out"] = values.spikes["out"]
    return {k: torch.tensor(np.asarray(a), dtype=dtype) for k, a in replay.items()}
