"""Export as deployed: Norse imports a chiploop network and runs it as chiploop does; chiploop
imports its own export back exactly; `chiploop export` writes a run's network.

Tolerances: Norse runs float32, so its spikes could differ from chiploop's float64 only where a
membrane lands within float32 rounding of the threshold, which no step of this seeded run does:
spikes are compared for equality. chiploop's own round trip is float64 both ways: the decay factors
go through tau = dt/(1 − a) and back through exp(−dt/tau') (rounding ~1e-16), so membranes agree
to 1e-9.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from chiploop.chip.network import NetworkSpec
from chiploop.chip_profiles.loader import load_profile
from chiploop.cli import app
from chiploop.emulator.twin import TorchTwin
from chiploop.interchange.export import deployed_weights, to_nir
from chiploop.interchange.importer import import_nir
from chiploop.interchange.nirfile import read_nir

nir = pytest.importorskip("nir")
N_IN, H, N_OUT, T, B = 4, 16, 3, 40, 6


def _run(profile, spec, weights, x: torch.Tensor):
    twin = TorchTwin(profile, spec, dtype=torch.float64)
    with torch.no_grad():
        return twin(x.double(), weights={k: torch.tensor(v, dtype=torch.float64) for k, v in weights.items()})


def _inputs(seed: int) -> torch.Tensor:
    return (torch.rand(B, T, N_IN, generator=torch.Generator().manual_seed(seed)) < 0.3).float()


def _weights(spec: NetworkSpec, seed: int, scale_out: float = 0.8) -> dict[str, np.ndarray]:
    """std 1 into the hidden layers (3 between them), 0.3 recurrent, `scale_out` into the readout."""
    g = np.random.default_rng(seed)
    std = {"in": 1.0, "between": 3.0, "recurrent": 0.3, "out": scale_out}
    w = {}
    for name, shape in spec.weight_shapes().items():
        pre, post = name.split("_", 1)
        kind = "out" if post == "out" else "in" if pre == "in" else "recurrent" if pre == post else "between"
        w[name] = g.normal(0, std[kind], shape)
    return w


def test_norse_imports_a_chiploop_network_and_runs_it_the_same(tmp_path):
    norse = pytest.importorskip("norse.torch")
    # NIR's rules (reset to 0, spike when v > threshold, inputs in the same step): what Norse runs.
    # norse 1.1.0 imports no LI node, so the readout spikes (a LIF) and is compared spike for spike.
    profile = load_profile("ideal").with_overrides({
        "neuron.reset": "zero", "neuron.threshold_compare": "gt", "timing.input_delay_steps": 0,
        "neuron.tau_syn_s": [0.005] * H + [0.0] * N_OUT,
        "neuron.tau_mem_s": np.linspace(0.01, 0.03, H).tolist(),
    })  # fmt: skip
    spec = NetworkSpec(N_IN, H, N_OUT, readout="spiking")
    weights = deployed_weights(profile, spec, _weights(spec, 0), seed=0)
    path = tmp_path / "chiploop.nir"
    nir.write(path, to_nir(profile, spec, weights))

    x = _inputs(3)
    mine = _run(profile, spec, weights, x).spikes["out"].numpy()
    model = norse.from_nir(nir.read(path), dt=profile.timing.dt_s)
    theirs, state = [], None
    with torch.no_grad():
        for t in range(T):
            z, state = model(x[:, t], state)
            theirs.append(z)
    theirs = torch.stack(theirs, 1).numpy()
    assert mine.sum() > 100
    # chiploop delays the hidden-to-readout synapse by one step; NIR (and Norse) do not
    np.testing.assert_array_equal(mine[:, 1:], theirs[:, :-1])


@pytest.mark.parametrize("hidden", [H, (H, 10)])
def test_chiploop_imports_its_own_export_exactly(tmp_path, hidden):
    profile = load_profile("ideal")  # subtract reset, v >= threshold, input delay 1: kept in the metadata
    spec = NetworkSpec(N_IN, hidden, N_OUT, recurrent=True)
    weights = _weights(spec, 1)
    path = tmp_path / "ideal.nir"
    nir.write(path, to_nir(profile, spec, weights))
    meta = read_nir(path)["metadata"]
    assert meta["chiploop_profile"] == "ideal" and "tau_syn_s" in meta["chiploop_profile_yaml"]

    back = import_nir(path)
    assert back.spec == spec and back.dt_source == "graph metadata"
    x = _inputs(4)
    before, after = _run(profile, spec, weights, x), _run(back.profile, back.spec, back.weights, x)
    for layer in spec.layer_names:
        assert before.spikes[layer].sum() > 100, layer
        np.testing.assert_array_equal(after.spikes[layer].numpy(), before.spikes[layer].numpy())
    np.testing.assert_allclose(after.v["out"].numpy(), before.v["out"].numpy(), rtol=0, atol=1e-9)


def test_export_command_writes_a_run_as_its_chip_holds_it(tmp_path):
    from chiploop.training.loop import Trainer

    run = tmp_path / "run"
    trainer = Trainer("loihi2", None, "bptt", "pattern", target="twin", n_hidden=8, out_dir=run,
                      progress=False, plots=False)  # fmt: skip
    trainer.fit(1)
    trainer.chip.close()
    out = tmp_path / "model.nir"
    result = CliRunner().invoke(app, ["export", str(run), str(out)])
    assert result.exit_code == 0, result.output
    graph = read_nir(out)
    assert graph["metadata"]["chiploop_profile"] == "loihi2"
    trained = {k: v.detach().numpy() for k, v in trainer.twin.weights.items()}
    held = deployed_weights(trainer.profile, trainer.spec, trained, trainer.seed)
    # loihi2 holds even integers in -256..254: the file's weights times the layer's gain are those
    back = import_nir(out)
    np.testing.assert_allclose(back.weights["in_hidden"], held["in_hidden"], rtol=1e-9, atol=1e-9)
    again = CliRunner().invoke(app, ["export", str(run), str(out)])
    assert again.exit_code == 2 and "exists" in again.stderr
