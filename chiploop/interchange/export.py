"""A chiploop network to NIR, as deployed: the weights a chip instance holds (quantized, with its
device noise) and per-neuron parameters from the decay factors the chip really applies.

The inverse of `mapping` at dt = the profile's step, in the form Norse's importer reads (r = 1,
w_in = 1, gains moved into the weights): a layer with a synaptic current is a CubaLIF (readout:
CubaLI), without one a LIF (readout: LI). The graph's metadata holds the profile's name, the
resolved profile (YAML), dt and what NIR cannot say: chiploop's one-step input and readout delays
and a subtract reset (NIR resets to v_reset).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from chiploop.chip.device_model import neuron_constants
from chiploop.chip.network import NetworkSpec
from chiploop.chip_profiles.model import ChipProfile
from chiploop.emulator.twin_chip import TwinChip
from chiploop.errors import TrainingError
from chiploop.interchange.nirfile import NirError


def deployed_weights(
    profile: ChipProfile, spec: NetworkSpec, weights: dict, seed: int
) -> dict[str, np.ndarray]:
    """The weights chip instance `seed` holds after programming `weights` (model units)."""
    chip = TwinChip(profile, spec, seed=seed)
    chip.write_weights({k: np.asarray(v, dtype=np.float64) for k, v in weights.items()})
    return chip.read_weights()


def to_nir(profile: ChipProfile, spec: NetworkSpec, weights: dict[str, np.ndarray]):
    """The NIR graph of `spec` with `weights` (as the chip holds them) under `profile`."""
    import nir

    if profile.neuron.model != "lif":
        raise NirError(f"neuron.model {profile.neuron.model}: NIR has no node for it (LIF only)")
    if spec.synapses != 1:
        raise NirError("a second synaptic current (neuron.tau_syn2_s) has no NIR node")
    c = neuron_constants(profile, spec)
    scale = profile.state_scale
    n_h = spec.n_hidden_total
    syn = _factor(np.concatenate([c.syn_h, c.syn_o]), profile) if c.syn_enabled else np.zeros(spec.n_neurons)
    dt = profile.timing.dt_s
    nodes = {"input": nir.Input(input_type=np.array([spec.n_in]))}
    edges = []
    pre = "input"
    layers = [(name, s) for name, s in zip(spec.layer_names, spec.hidden_slices(), strict=True)]
    for name, s in [*layers, ("out", slice(n_h, spec.n_neurons))]:
        hidden = name != "out"
        mem = _factor(c.mem_h[s] if hidden else c.mem_o, profile)
        thr = (c.threshold_h[s] if hidden else c.threshold_o) / scale
        bias = (c.bias_h[s] if hidden else c.bias_o) / scale
        gain = _gain(mem, syn[s])
        nodes[name] = _neuron(mem, syn[s], thr, bias, dt, spiking=hidden or spec.readout == "spiking")
        into = f"{'in' if pre == 'input' else pre}_{name}"
        nodes[into] = nir.Linear(weight=(weights[into] / gain).T)
        edges += [(pre, into), (into, name)]
        if f"{name}_{name}" in weights:
            nodes[f"{name}_{name}"] = nir.Linear(weight=(weights[f"{name}_{name}"] / gain).T)
            edges += [(name, f"{name}_{name}"), (f"{name}_{name}", name)]
        pre = name
    nodes["output"] = nir.Output(output_type=np.array([spec.n_out]))
    edges.append(("out", "output"))
    metadata = {
        "source": "chiploop",
        "chiploop_profile": profile.name,
        "chiploop_profile_yaml": profile.to_yaml(),
        "dt": dt,
        "input_delay_steps": profile.timing.input_delay_steps,
        "readout_delay_steps": 1,
        "reset": profile.neuron.reset,
        "threshold_compare": profile.neuron.threshold_compare,
    }
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata, type_check=False)


def _factor(values: np.ndarray, profile: ChipProfile) -> np.ndarray:
    """Decay constants as the factor a state is multiplied by each step."""
    ar = profile.arithmetic
    if ar.kind == "float":
        return np.asarray(values, dtype=np.float64)
    if ar.decay == "shift":
        return np.where(values > 0, 1.0 - np.ldexp(1.0, -np.asarray(values, dtype=np.int64)), 0.0)
    return np.ldexp(np.asarray(values, dtype=np.float64), -ar.decay_bits)


def _tau(factor: np.ndarray, dt: float) -> np.ndarray:
    """NIR's tau for a forward-Euler decay `factor` at `dt` (factor 1: no leak, an infinite tau)."""
    with np.errstate(divide="ignore"):
        return np.where(factor < 1.0, dt / (1.0 - factor), np.inf)


def _gain(mem: np.ndarray, syn: np.ndarray) -> np.ndarray:
    """What NIR's Euler step multiplies a layer's input by (r = w_in = 1): the weights carry 1/gain."""
    leak = np.where(mem < 1.0, 1.0 - mem, 1.0)
    return leak * np.where(syn > 0, 1.0 - syn, 1.0)


def _neuron(mem, syn, threshold, bias, dt, spiking):
    import nir

    n = len(mem)
    if np.any(mem >= 1.0):
        raise NirError("a membrane without leak (decay factor 1) has no LIF form here")
    ones, zeros = np.ones(n), np.zeros(n)
    v_leak = bias / (1.0 - mem)  # v <- v + (1 - a)(v_leak - v + I): a bias b per step is v_leak b/(1 - a)
    tau_mem = _tau(mem, dt)
    if np.any(syn > 0):
        if np.any(syn == 0):
            raise NirError("a layer where only some neurons have a synaptic current has no NIR node")
        tau_syn = _tau(syn, dt)
        if spiking:
            return nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, r=ones, v_leak=v_leak, v_threshold=threshold,
                               v_reset=zeros, w_in=ones)  # fmt: skip
        return nir.CubaLI(tau_syn=tau_syn, tau_mem=tau_mem, r=ones, v_leak=v_leak, w_in=ones)
    if spiking:
        return nir.LIF(tau=tau_mem, r=ones, v_leak=v_leak, v_threshold=threshold, v_reset=zeros)
    return nir.LI(tau=tau_mem, r=ones, v_leak=v_leak)


def export_run(run_dir: str | Path, path: str | Path) -> None:
    """Write the network of a `chiploop train` run directory to NIR file `path`, as its chip holds it."""
    import nir

    from chiploop.training.runs import RunDir

    run = RunDir(run_dir)
    config = run.read_config()
    try:
        profile = ChipProfile.model_validate(config["profile_spec"])
        spec = NetworkSpec(**config["network"])
        seed = int(config["seed"])
    except (KeyError, TypeError, ValueError) as exc:
        raise TrainingError(f"{run.file('config.yaml')}: not a chiploop run configuration ({exc})") from None
    weights = {k: v.numpy() for k, v in run.load_checkpoint()["weights"].items()}
    graph = to_nir(profile, spec, deployed_weights(profile, spec, weights, seed))
    from chiploop.outdir import write_guard

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with write_guard(path, tmp):
            nir.write(tmp, graph)
            tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
