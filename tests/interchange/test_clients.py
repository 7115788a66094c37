"""Networks made in Norse and snnTorch, exported by their own NIR exporters, run on `ideal` as in
the source framework (same input, same spikes, same readout).

Tolerances. Spikes: identical. The frameworks run float32, chiploop float64; a spike could flip
only where a membrane lands within float32 rounding (~1e-7 relative) of its threshold, which no
step of these seeded runs does. Membranes: |difference| <= 1e-5 with |v| of order 1: float32
rounding over 50 steps of sums of about 20 terms stays far below (measured: 2e-8 Norse, 2e-7
snnTorch), while a mistake in the mapping (a decay, gain or bias off) moves them by 1e-2 or more.
Timing: chiploop delays every hidden-to-readout synapse by one step, so the readout of chiploop's
step t + 1 is the source's step t; its extra first step integrates the readout bias once more,
an offset a^(t+1) b removed before comparing (docs/interchange.md).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from chiploop.emulator.twin import TorchTwin
from chiploop.interchange.importer import import_nir

nir = pytest.importorskip("nir")
T, B, N_IN, H, N_OUT = 50, 8, 4, 16, 3
ATOL_V = 1e-5


def _inputs(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, N_IN, generator=g) < 0.3).float()


def _chiploop(path, x: torch.Tensor):
    mapped = import_nir(path, "ideal")
    twin = TorchTwin(mapped.profile, mapped.spec, dtype=torch.float64)
    with torch.no_grad():
        out = twin(
            x.transpose(0, 1).double(), weights={k: torch.tensor(v) for k, v in mapped.weights.items()}
        )
    return mapped, out


def _readout_offset(mapped) -> np.ndarray:
    """a^(t+1) b for t = 0..T-2: the readout bias the chip's extra first step integrated."""
    h = mapped.spec.n_hidden
    a = np.exp(-mapped.profile.timing.dt_s / np.array(mapped.profile.neuron.tau_out_s))
    b = np.array(mapped.profile.neuron.bias)[h:]
    return a ** (np.arange(T - 1)[:, None] + 1) * b


def test_norse_lifbox_network_runs_as_in_norse(tmp_path):
    norse = pytest.importorskip("norse.torch")
    torch.manual_seed(0)
    p = norse.LIFBoxParameters(
        tau_mem_inv=1 / torch.linspace(0.005, 0.03, H),
        v_th=torch.linspace(0.2, 0.5, H),
        v_leak=torch.linspace(-0.05, 0.05, H),
        v_reset=torch.zeros(H),
    )
    q = norse.LIBoxParameters(tau_mem_inv=torch.full((N_OUT,), 50.0), v_leak=torch.zeros(N_OUT))
    model = norse.SequentialState(torch.nn.Linear(N_IN, H), norse.LIFBoxCell(p), torch.nn.Linear(H, N_OUT),
                                  norse.LIBoxCell(q))  # fmt: skip
    with torch.no_grad():
        model[0].weight.mul_(4)
    # norse 1.1.0's to_nir multiplies the time constants it writes by its `dt` argument; 1.0 writes
    # them in seconds, as NIR defines them (later Norse calls this argument time_scaling_factor)
    path = tmp_path / "norse.nir"
    nir.write(path, norse.to_nir(model, torch.zeros(1, N_IN), dt=1.0))

    x = _inputs(1)
    # NIR leaves the initial state open: Norse starts a LIFBox at v_leak, chiploop at 0; start both at 0
    from norse.torch.functional.lif_box import LIFBoxFeedForwardState

    z_ref, v_ref, state_h, state_o = [], [], LIFBoxFeedForwardState(v=torch.zeros(B, H)), None
    with torch.no_grad():
        for t in range(T):
            z, state_h = model[1](model[0](x[t]), state_h)
            v, state_o = model[3](model[2](z), state_o)
            z_ref.append(z)
            v_ref.append(v)
    z_ref = torch.stack(z_ref, 1).numpy()
    v_ref = torch.stack(v_ref, 1).numpy()

    mapped, out = _chiploop(path, x)
    assert mapped.dt_s == 1e-3 and mapped.spec.readout == "leaky"
    assert z_ref.sum() > 50  # the comparison has spikes to compare
    np.testing.assert_array_equal(out.spikes["hidden"].numpy(), z_ref)
    v_chip = out.v["out"].numpy()[:, 1:] - _readout_offset(mapped)
    np.testing.assert_allclose(v_chip, v_ref[:, :-1], rtol=0, atol=ATOL_V)


def test_a_norse_network_of_two_hidden_layers_runs_as_in_norse_one_step_per_layer_later(tmp_path):
    """Two LIF layers: chiploop delays every synapse between layers by one step, so its layer k
    (and the readout) at step t + k - 1 is Norse's at t. The Linear layers after the first have no
    bias (a bias would be integrated over the extra steps, an offset as for the readout above)."""
    norse = pytest.importorskip("norse.torch")
    torch.manual_seed(1)
    h2 = 12
    p1 = norse.LIFBoxParameters(
        tau_mem_inv=1 / torch.linspace(0.005, 0.03, H), v_th=torch.linspace(0.2, 0.5, H),
        v_leak=torch.zeros(H), v_reset=torch.zeros(H),
    )  # fmt: skip
    p2 = norse.LIFBoxParameters(tau_mem_inv=torch.full((h2,), 80.0), v_th=torch.full((h2,), 0.1),
                                v_leak=torch.zeros(h2), v_reset=torch.zeros(h2))  # fmt: skip
    q = norse.LIBoxParameters(tau_mem_inv=torch.full((N_OUT,), 50.0), v_leak=torch.zeros(N_OUT))
    model = norse.SequentialState(
        torch.nn.Linear(N_IN, H), norse.LIFBoxCell(p1),
        torch.nn.Linear(H, h2, bias=False), norse.LIFBoxCell(p2),
        torch.nn.Linear(h2, N_OUT, bias=False), norse.LIBoxCell(q),
    )  # fmt: skip
    with torch.no_grad():
        model[0].weight.mul_(4)
        model[2].weight.abs_().mul_(6)
    path = tmp_path / "norse2.nir"
    nir.write(path, norse.to_nir(model, torch.zeros(1, N_IN), dt=1.0))

    from norse.torch.functional.lif_box import LIFBoxFeedForwardState

    x = _inputs(2)
    z1, z2, vo = [], [], []
    s1, s2, so = (
        LIFBoxFeedForwardState(v=torch.zeros(B, H)),
        LIFBoxFeedForwardState(v=torch.zeros(B, h2)),
        None,
    )
    with torch.no_grad():
        for t in range(T):
            a, s1 = model[1](model[0](x[t]), s1)
            b, s2 = model[3](model[2](a), s2)
            v, so = model[5](model[4](b), so)
            z1.append(a), z2.append(b), vo.append(v)
    z1, z2, vo = (torch.stack(r, 1).numpy() for r in (z1, z2, vo))

    mapped, out = _chiploop(path, x)
    assert mapped.spec.hidden_sizes == (H, h2)
    assert z1.sum() > 50 and z2.sum() > 50
    np.testing.assert_array_equal(out.spikes["hidden"].numpy(), z1)
    np.testing.assert_array_equal(out.spikes["hidden2"].numpy()[:, 1:], z2[:, :-1])
    np.testing.assert_allclose(out.v["out"].numpy()[:, 2:], vo[:, :-2], rtol=0, atol=ATOL_V)


def test_snntorch_recurrent_network_runs_as_in_snntorch(tmp_path):
    snn = pytest.importorskip("snntorch")
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(0)
    # the settings whose behaviour the exported graph states: NIR resets to v_reset (snnTorch writes
    # 0) at once; snnTorch's default subtract reset and its delayed reset have no NIR field
    common = {"reset_mechanism": "zero", "reset_delay": False, "init_hidden": True}
    net = torch.nn.Sequential(
        torch.nn.Linear(N_IN, H),
        snn.RLeaky(
            beta=torch.linspace(0.8, 0.95, H),
            threshold=torch.linspace(0.5, 1.0, H),
            linear_features=H,
            **common,
        ),  # fmt: skip
        torch.nn.Linear(H, N_OUT, bias=False),
        snn.Leaky(beta=torch.full((N_OUT,), 0.9), threshold=torch.ones(N_OUT), output=True, **common),
    )
    with torch.no_grad():
        net[0].weight.mul_(3)
    path = tmp_path / "snntorch.nir"
    nir.write(path, export_to_nir(net, torch.zeros(N_IN)))

    x = _inputs(2)
    z_ref, zo_ref, v_ref = [], [], []
    from snntorch import utils

    utils.reset(net)
    with torch.no_grad():
        for t in range(T):
            z = net[1](net[0](x[t]))
            zo, v = net[3](net[2](z))
            z_ref.append(z)
            zo_ref.append(zo)
            v_ref.append(v)
    z_ref, zo_ref, v_ref = (torch.stack(a, 1).numpy() for a in (z_ref, zo_ref, v_ref))

    mapped, out = _chiploop(path, x)
    assert mapped.spec.recurrent and mapped.spec.readout == "spiking"
    assert mapped.dt_s == pytest.approx(1e-4, rel=1e-6)  # snnTorch writes r = tau/dt with dt 1e-4
    assert z_ref.sum() > 200 and zo_ref.sum() > 5
    np.testing.assert_array_equal(out.spikes["hidden"].numpy(), z_ref)
    np.testing.assert_array_equal(out.spikes["out"].numpy()[:, 1:], zo_ref[:, :-1])
    np.testing.assert_allclose(out.v["out"].numpy()[:, 1:], v_ref[:, :-1], rtol=0, atol=ATOL_V)


def test_snntorch_synaptic_network_runs_as_in_snntorch(tmp_path):
    snn = pytest.importorskip("snntorch")
    from snntorch import utils
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(1)
    common = {"reset_mechanism": "zero", "reset_delay": False, "init_hidden": True}
    net = torch.nn.Sequential(
        torch.nn.Linear(N_IN, H),
        snn.Synaptic(
            alpha=torch.linspace(0.5, 0.9, H),
            beta=torch.linspace(0.8, 0.95, H),
            threshold=torch.full((H,), 0.8),
            **common,
        ),  # fmt: skip
        torch.nn.Linear(H, N_OUT, bias=False),
        snn.Leaky(beta=torch.full((N_OUT,), 0.9), threshold=torch.ones(N_OUT), output=True, **common),
    )
    with torch.no_grad():
        net[0].weight.mul_(2)
        net[0].bias.zero_()  # a bias into a synaptic current is reported as approximated, not exact
    path = tmp_path / "synaptic.nir"
    nir.write(path, export_to_nir(net, torch.zeros(N_IN)))

    x = _inputs(5)
    z_ref, zo_ref = [], []
    utils.reset(net)
    with torch.no_grad():
        for t in range(T):
            z = net[1](net[0](x[t]))
            z_ref.append(z)
            zo_ref.append(net[3](net[2](z))[0])
    z_ref, zo_ref = (torch.stack(a, 1).numpy() for a in (z_ref, zo_ref))

    mapped, out = _chiploop(path, x)
    assert not [n for n in mapped.notes if n.kind in ("approximated", "dropped")]
    assert z_ref.sum() > 200 and zo_ref.sum() > 5
    np.testing.assert_array_equal(out.spikes["hidden"].numpy(), z_ref)
    np.testing.assert_array_equal(out.spikes["out"].numpy()[:, 1:], zo_ref[:, :-1])


def test_a_norse_graph_with_scalar_parameters_imports_from_memory():
    # norse 1.1.0 writes a cell's default (scalar) parameters as 0-d arrays, which nir.write cannot
    # store; held in memory the graph imports, each scalar standing for the whole layer
    norse = pytest.importorskip("norse.torch")
    model = norse.SequentialState(torch.nn.Linear(N_IN, H), norse.LIFBoxCell(), torch.nn.Linear(H, N_OUT),
                                  norse.LIBoxCell())  # fmt: skip
    mapped = import_nir(norse.to_nir(model, torch.zeros(1, N_IN), dt=1.0))
    assert (mapped.spec.n_in, mapped.spec.n_hidden, mapped.spec.n_out) == (N_IN, H, N_OUT)
    tau_mem = np.array(mapped.profile.neuron.tau_mem_s)
    assert tau_mem.shape == (H,)  # Norse's default tau_mem_inv 100/s: a = 1 - dt/10 ms = 0.9
    np.testing.assert_allclose(np.exp(-mapped.profile.timing.dt_s / tau_mem), 0.9, rtol=1e-6)
