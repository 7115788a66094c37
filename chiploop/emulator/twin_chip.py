"""TwinChip: the Chip protocol run by the torch definition of the dynamics (`open_chip("twin")`).

Weights go through the DeviceModel (quantization, device noise, faults, drift, frozen mismatch);
`chiploop.chip.dynamics.simulate` runs them in float64 (fixed arithmetic: integers held exactly,
bit-identical to the spec). The differentiable learner is `TorchTwin`, a separate `nn.Module`.
"""

from __future__ import annotations

import numpy as np
import torch

from chiploop.chip.base import ChipBase
from chiploop.chip.dynamics import network_params, simulate
from chiploop.chip.network import NetworkSpec
from chiploop.chip.protocol import Recording
from chiploop.chip_profiles.model import ChipProfile
from chiploop.emulator.twin import check_exact


class TwinChip(ChipBase):
    """The torch twin as a chip: `DeviceModel(profile, spec, seed)`, float64 dynamics.

    Runs every neuron model, `rate` included (hidden "spikes" are then float32 rates). Raises
    DesignRuleError when `spec` breaks the profile's limits.
    """

    runs_rates = True

    def __init__(self, profile: ChipProfile, spec: NetworkSpec, seed: int = 0) -> None:
        check_exact(profile)
        super().__init__(profile, spec, seed, name="twin")
        self._params = network_params(profile, self.device.constants, spec, torch.float64)

    def _run_batch(self, x: np.ndarray, record_v: bool, record_i: bool) -> Recording:
        """Mismatch, device weights, caps; float64."""
        w = {k: torch.tensor(v, dtype=torch.float64) for k, v in self.device.for_run().items()}
        with torch.no_grad():
            trace = simulate(self._params, torch.from_numpy(x).to(torch.float64), w, record_currents=record_i)
        v_dtype = np.int64 if self._params.rules.fixed else np.float32
        rate = self.profile.neuron.model == "rate"  # the hidden "spikes" are rates, kept as floats
        spikes = {
            k: z.numpy().astype(np.float32 if rate and k != "out" else np.uint8)
            for k, z in trace.spikes.items()
        }
        v = {k: _to_numpy(m, v_dtype) for k, m in trace.v.items()} if record_v else {}
        currents = {k: _to_numpy(m, v_dtype) for k, m in trace.currents.items()}
        return self._recording(
            spikes,
            v,
            currents,
            per_layer=True,
            dropped_hidden_spikes=int(trace.dropped_hidden.sum()),
            dropped_input_spikes=int(trace.dropped_input.sum()),
        )


def _to_numpy(v: torch.Tensor, dtype: type) -> np.ndarray:
    a = v.numpy()
    return np.rint(a).astype(np.int64) if dtype is np.int64 else a.astype(dtype)
