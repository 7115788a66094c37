"""chiploop's counts equal NeuroBench's own metrics (neurobench 2.3.0) on the same network and data.

The network goes to NeuroBench as a torch module: `nn.Linear` layers hold the weights the chip
holds (`read_weights`, transposed), and neuron layers emit the spikes the chip recorded, step by
step, keeping their state registers as float32 buffers. NeuroBench's hooks then see each layer's
real presynaptic activity; its own code counts footprint, connection sparsity, activation sparsity
and synaptic operations, which must equal chiploop's figures for the same evaluation.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from chiploop.chip.network import NetworkSpec
from chiploop.chip.targets import open_chip
from chiploop.chip_profiles import load_profile
from chiploop.cost import COST_COLUMNS
from chiploop.cost.counts import state_registers
from chiploop.training.loop import evaluate_on_chip
from chiploop.training.tasks import make_task
from chiploop.training.units import ScaledReadout, layer_units

neurobench = pytest.importorskip("neurobench")
from neurobench.benchmarks import Benchmark  # noqa: E402
from neurobench.metrics.static import ConnectionSparsity, Footprint  # noqa: E402
from neurobench.metrics.workload import ActivationSparsity, SynapticOperations  # noqa: E402
from neurobench.models import SNNTorchModel  # noqa: E402

SAMPLES = 48


class Replay(nn.Module):
    """A neuron layer that emits, at each step, the spikes the chip recorded for it."""

    def __init__(self, spikes: np.ndarray, registers: int) -> None:
        super().__init__()
        self.spikes = torch.from_numpy(spikes.astype(np.float32))
        for r in range(registers):  # membrane and synaptic currents: the neuron state
            self.register_buffer(f"state{r}", torch.zeros(spikes.shape[-1]))
        self.t = 0

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        out = self.spikes[:, self.t]
        self.t += 1
        return out


class ChipNetwork(nn.Module):
    """The chiploop network as a step-wise torch module (`net(x_t) -> (out_t, hidden_t)`)."""

    def __init__(
        self, spec: NetworkSpec, weights: dict[str, np.ndarray], spikes: dict, registers: dict
    ) -> None:
        super().__init__()
        self.spec = spec
        self.fc = nn.ModuleDict()
        for name, w in weights.items():
            layer = nn.Linear(*w.shape, bias=False)
            layer.weight.data = torch.from_numpy(w.T.astype(np.float32))
            self.fc[name] = layer
        self.hidden = Replay(spikes["hidden"], registers["hidden"])
        self.out = Replay(spikes["out"], registers["out"])
        self.reset()

    def reset(self) -> None:
        self.hidden.t = self.out.t = 0
        self.prev = None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        current = self.fc["in_hidden"](x)
        if self.spec.recurrent:
            prev = torch.zeros(x.shape[0], self.spec.n_hidden) if self.prev is None else self.prev
            current = current + self.fc["hidden_hidden"](prev)
        h = self.hidden(current)
        self.prev = h
        return self.out(self.fc["hidden_out"](h)), h


def _measure(
    profile_name: str, recurrent: bool, zero_fraction: float, scale: float = 1.5, **overrides: object
) -> tuple[dict, dict]:
    profile = load_profile(profile_name).with_overrides(overrides)
    task = make_task("digits", seed=0)
    spec = NetworkSpec(task.n_in, 24, task.n_out, recurrent=recurrent, readout="spiking")
    rng = np.random.default_rng(7)
    units = layer_units(profile, spec)
    lo, hi = profile.weights.value_range
    weights = {
        k: np.clip(rng.normal(0, scale * units[k] / np.sqrt(pre), (pre, post)), lo, hi)
        * (rng.random((pre, post)) >= zero_fraction)
        for k, (pre, post) in spec.weight_shapes().items()
    }
    chip = open_chip("twin", profile, spec, seed=0)
    chip.write_weights(weights)
    readout = ScaledReadout.of(task, profile)
    ours = evaluate_on_chip(chip, readout, spec, "test", SAMPLES, SAMPLES)
    batch = next(iter(task.batches("test", SAMPLES)))
    x = batch.inputs[:SAMPLES].numpy().astype(np.uint8)
    rec = chip.run(x)
    net = ChipNetwork(spec, chip.read_weights(), rec.spikes, state_registers(spec, profile))
    chip.close()
    model = SNNTorchModel(net)
    model.add_activation_module(Replay)
    data = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.from_numpy(x.astype(np.float32)), batch.targets[:SAMPLES]),
        batch_size=SAMPLES,
    )
    bench = Benchmark(
        model, data, [], [], [[Footprint, ConnectionSparsity], [ActivationSparsity, SynapticOperations]]
    )
    return ours, bench.run(quiet=True)


@pytest.mark.parametrize("recurrent", [False, True])
def test_counts_equal_neurobench_on_a_float_chip(recurrent: bool) -> None:
    ours, theirs = _measure("ideal", recurrent, zero_fraction=0.3)
    assert set(COST_COLUMNS) <= set(ours)
    assert ours["footprint_bytes"] == theirs["Footprint"]
    assert round(ours["connection_sparsity"], 4) == theirs["ConnectionSparsity"]
    assert 0.25 < theirs["ConnectionSparsity"] < 0.35
    assert ours["activation_sparsity"] == pytest.approx(theirs["ActivationSparsity"], rel=0, abs=1e-12)
    assert 0.0 < theirs["ActivationSparsity"] < 1.0
    synops = theirs["SynapticOperations"]
    assert ours["synops_dense"] == synops["Dense"]
    assert ours["synops_effective"] == synops["Effective_ACs"] + synops["Effective_MACs"]
    assert ours["synops_acs"] == synops["Effective_ACs"] and ours["synops_macs"] == synops["Effective_MACs"]
    assert 0 < synops["Effective_ACs"] < synops["Dense"]


def test_operations_and_sparsity_equal_neurobench_on_quantized_loihi2() -> None:
    """Zeros made by the chip's 8-bit grid count as NeuroBench counts them (footprint differs by design:
    chiploop counts 8-bit weights and 24-bit state, the torch module float32)."""
    ours, theirs = _measure("loihi2", True, zero_fraction=0.0)
    assert theirs["ConnectionSparsity"] > 0
    assert round(ours["connection_sparsity"], 4) == theirs["ConnectionSparsity"]
    assert ours["activation_sparsity"] == pytest.approx(theirs["ActivationSparsity"], rel=0, abs=1e-12)
    assert ours["synops_dense"] == theirs["SynapticOperations"]["Dense"]
    assert ours["synops_effective"] == theirs["SynapticOperations"]["Effective_ACs"]
    assert ours["footprint_bytes"] < theirs["Footprint"]


def test_graded_spikes_count_as_macs_like_neurobench() -> None:
    """Up to 3 spikes per step (neuron.max_spike_count): presynaptic counts above 1 are not binary, so
    the matrices they drive count multiply-accumulates, the input matrix accumulates."""
    ours, theirs = _measure("ideal", True, 0.0, scale=8.0, **{"neuron.max_spike_count": 3})
    synops = theirs["SynapticOperations"]
    assert synops["Effective_MACs"] > 0 and synops["Effective_ACs"] > 0
    assert ours["synops_macs"] == synops["Effective_MACs"] and ours["synops_acs"] == synops["Effective_ACs"]
    assert ours["activation_sparsity"] == pytest.approx(theirs["ActivationSparsity"], rel=0, abs=1e-12)
