"""What a network does per inference, counted as NeuroBench counts it (docs/cost.md).

Synaptic operations per matrix `pre_post` (`_2`: the second synaptic current of the pair) are read
from the presynaptic activity (`in` = the input raster, else the recorded spikes of layer `pre`):
dense = every presynaptic entry of every step times the matrix's fan-out; effective = nonzero
presynaptic entries times the nonzero synapses they reach (a recurrent matrix, `pre` = `post`, feeds
each step's spikes into the next step, so the last step's spikes, which would arrive after the run,
are not counted; its dense count includes the first step's all-zero state). A matrix whose
presynaptic activity holds only 0 and 1 counts accumulates (ACs), otherwise multiply-accumulates
(MACs), as NeuroBench does.
Activation sparsity is the fraction of zero entries over every recorded spiking layer, steps and
samples; connection sparsity the fraction of zero weights on the chip; the footprint the weights at
the chip's resolution plus the neuron state registers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from chiploop.chip.network import NetworkSpec
from chiploop.chip.protocol import Recording
from chiploop.chip_profiles.model import ChipProfile
from chiploop.errors import ChipError

HOST_FLOAT_BITS = 32  # analog or float values held by the host model


def matrix_ends(name: str) -> tuple[str, str]:
    """`(pre, post)` of a weight matrix named `pre_post`, or `pre_post_2` for a second current."""
    parts = name.split("_")
    if parts[-1] == "2":
        parts = parts[:-1]
    if len(parts) != 2:
        raise ChipError(f"weight matrix {name!r} is not named 'pre_post' (or 'pre_post_2')")
    return parts[0], parts[1]


def layer_sizes(spec: NetworkSpec) -> dict[str, int]:
    """Neurons of every postsynaptic layer of `spec`, in the order its matrices name them."""
    sizes: dict[str, int] = {}
    for name, (_, post) in spec.weight_shapes().items():
        sizes.setdefault(matrix_ends(name)[1], post)
    return sizes


def state_registers(spec: NetworkSpec, profile: ChipProfile) -> dict[str, int]:
    """State registers per neuron of each layer: membrane, one per synaptic current, adaptation."""
    currents: dict[str, int] = {}
    for name in spec.weight_shapes():
        post = matrix_ends(name)[1]
        currents[post] = max(currents.get(post, 1), 2 if name.endswith("_2") else 1)
    adapts = profile.neuron.model == "alif"
    return {layer: 1 + n + (adapts and layer != "out") for layer, n in currents.items()}


def weight_bits(profile: ChipProfile) -> int:
    """Bits of one stored weight: its resolution, plus a sign bit for sign-magnitude encodings; the
    host's float width for analog weights."""
    w = profile.weights
    if w.bits is None:
        return HOST_FLOAT_BITS
    return w.bits + (w.encoding != "signed")


def state_bits(profile: ChipProfile) -> int:
    """Bits of one state register: the fixed-point width, or the host's float width."""
    return profile.arithmetic.state_bits if profile.arithmetic.kind == "fixed" else HOST_FLOAT_BITS


def footprint_bytes(spec: NetworkSpec, profile: ChipProfile) -> dict[str, float]:
    """Memory per weight matrix (`w:<name>`) and per layer's neuron state (`state:<layer>`), bytes."""
    out = {
        f"w:{name}": pre * post * weight_bits(profile) / 8
        for name, (pre, post) in spec.weight_shapes().items()
    }
    sizes = layer_sizes(spec)
    for layer, registers in state_registers(spec, profile).items():
        out[f"state:{layer}"] = sizes[layer] * registers * state_bits(profile) / 8
    return out


def connection_sparsity(weights: dict[str, np.ndarray]) -> float:
    """Fraction of zero weights over every matrix (NeuroBench's ConnectionSparsity)."""
    zeros = sum(int(np.count_nonzero(w == 0)) for w in weights.values())
    total = sum(w.size for w in weights.values())
    return zeros / total


@dataclass
class ActivityCounter:
    """Accumulates operation and activity counts over the batches of an evaluation."""

    spec: NetworkSpec
    weights: dict[str, np.ndarray]
    samples: int = 0
    steps: int = 0
    dense: dict[str, int] = field(default_factory=dict)
    effective: dict[str, int] = field(default_factory=dict)
    graded: dict[str, bool] = field(default_factory=dict)
    nonzero: dict[str, int] = field(default_factory=dict)
    entries: dict[str, int] = field(default_factory=dict)
    spikes: dict[str, int] = field(default_factory=dict)

    def add(self, inputs: np.ndarray, rec: Recording, take: int) -> None:
        """Count the first `take` samples of a batch run on `inputs` `[B, T, n_in]`."""
        activity = {
            "in": np.asarray(inputs[:take]),
            **{k: np.asarray(v[:take]) for k, v in rec.spikes.items()},
        }
        for name in self.spec.weight_shapes():
            pre, post = matrix_ends(name)
            if pre not in activity:
                raise ChipError(f"matrix {name!r} needs the spikes of layer {pre!r}, the recording has none")
            act = activity[pre]
            w = np.asarray(self.weights[name])
            self.dense[name] = self.dense.get(name, 0) + act.shape[0] * act.shape[1] * w.size
            if pre == post:  # recurrence: the last step's spikes would arrive after the run
                act = act[:, :-1]
            reach = np.count_nonzero(w != 0, axis=1).astype(np.int64)
            active = (act != 0).reshape(-1, act.shape[-1]).sum(axis=0, dtype=np.int64)
            self.effective[name] = self.effective.get(name, 0) + int(active @ reach)
            self.graded[name] = self.graded.get(name, False) or bool(np.any((act != 0) & (act != 1)))
        for layer, s in rec.spikes.items():
            s = np.asarray(s[:take])
            self.nonzero[layer] = self.nonzero.get(layer, 0) + int(np.count_nonzero(s))
            self.entries[layer] = self.entries.get(layer, 0) + s.size
            self.spikes[layer] = self.spikes.get(layer, 0) + int(s.sum(dtype=np.int64))
        self.samples += take
        self.steps = int(inputs.shape[1])

    def metrics(self) -> dict[str, float]:
        """Per-sample counts: `synops_dense`, `synops_effective` (split into `synops_acs` and
        `synops_macs`), `activation_sparsity`, `spikes_per_neuron` (every spiking layer)."""
        n = max(self.samples, 1)
        macs = sum(v for k, v in self.effective.items() if self.graded[k])
        entries = sum(self.entries.values())
        neurons = sum(layer_sizes(self.spec)[k] for k in self.spikes)
        return {
            "synops_dense": sum(self.dense.values()) / n,
            "synops_effective": sum(self.effective.values()) / n,
            "synops_acs": (sum(self.effective.values()) - macs) / n,
            "synops_macs": macs / n,
            "activation_sparsity": (entries - sum(self.nonzero.values())) / entries if entries else 0.0,
            "spikes_per_neuron": sum(self.spikes.values()) / (n * neurons) if neurons else 0.0,
            "spikes": sum(self.spikes.values()) / n,
        }
