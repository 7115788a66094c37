"""`xylo` against XyloSim itself (xylosim 0.1.3, `xylosim.v2`: the Xylo Audio 2 simulator behind
Rockpool's XyloSim), on random networks: spike counts, synaptic currents and membranes identical.

Each network draws its sizes (hidden 8-200), recurrence, second synaptic current, biases, weight
shift, per-neuron dashes (decay shifts) and thresholds, and a regime: quiet, busy or saturating
(states driven to the int16 limits). The Python definition of the dynamics (TwinChip)
is compared on all of them, the C definition (the reference firmware, through SerialChip) on every
fourth; the conformance suite holds the Brian2 emulator to both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from chiploop.chip.network import NetworkSpec
from chiploop.chip_profiles.loader import load_profile
from chiploop.chip_profiles.model import ChipProfile
from chiploop.emulator.twin_chip import TwinChip
from chiploop.firmware_bridge.serial_chip import SerialChip

xylosim = pytest.importorskip("xylosim.v2", reason="xylosim (a dev dependency) is not installed")

N_NETWORKS = 56
DT_S = 1e-3


@dataclass
class XyloNet:
    """A network as XyloSim takes it (int8 register weights, dashes, int16 thresholds and biases)."""

    regime: str
    n_in: int
    hidden: int
    out: int
    recurrent: bool
    synapses: int
    shift: int
    dash_mem: np.ndarray
    dash_syn: np.ndarray
    dash_syn2: np.ndarray
    dash_mem_out: np.ndarray
    dash_syn_out: np.ndarray
    threshold: np.ndarray
    threshold_out: np.ndarray
    bias: np.ndarray
    bias_out: np.ndarray
    weights: dict[str, np.ndarray]
    x: np.ndarray


def draw(seed: int) -> XyloNet:
    rng = np.random.default_rng(seed)
    regime = ("quiet", "busy", "saturating")[seed % 3]
    n_in, hidden, out = int(rng.integers(1, 17)), int(rng.integers(8, 201)), int(rng.integers(1, 9))
    recurrent, synapses = bool(rng.random() < 0.5), int(rng.choice([1, 2]))
    shift = int(rng.integers(0, 5)) if regime == "saturating" else int(rng.integers(0, 3))
    lo, hi = {"quiet": (3000, 32767), "busy": (100, 3000), "saturating": (1, 32767)}[regime]

    def dashes(n: int) -> np.ndarray:
        return rng.integers(0, 16, n) if regime == "saturating" else rng.integers(1, 7, n)

    def thresholds(n: int) -> np.ndarray:
        return np.exp(rng.uniform(np.log(lo), np.log(hi), n)).astype(int).clip(1, 32767)

    def w(shape: tuple[int, int], density: float) -> np.ndarray:
        return (rng.integers(-128, 128, shape) * (rng.random(shape) < density)).astype(np.int64)

    with_bias = bool(rng.random() < 0.5)
    weights = {"in_hidden": w((n_in, hidden), rng.uniform(0.2, 1.0)), "hidden_out": w((hidden, out), 0.5)}
    if recurrent:
        weights["hidden_hidden"] = w((hidden, hidden), rng.uniform(0.02, 0.2))
    if synapses == 2:
        weights["in_hidden_2"] = w((n_in, hidden), rng.uniform(0.2, 1.0))
        if recurrent:
            weights["hidden_hidden_2"] = w((hidden, hidden), rng.uniform(0.02, 0.2))
    steps, rate = int(rng.integers(300, 400)), rng.uniform(0.01, 0.4)
    return XyloNet(
        regime, n_in, hidden, out, recurrent, synapses, shift, dashes(hidden), dashes(hidden), dashes(hidden),
        dashes(out), dashes(out), thresholds(hidden), thresholds(out),
        rng.integers(-2000, 2000, hidden) * with_bias, rng.integers(-2000, 2000, out) * with_bias,
        weights, (rng.random((steps, n_in)) < rate).astype(np.uint8),
    )  # fmt: skip


def run_xylosim(net: XyloNet) -> dict[str, np.ndarray]:
    """XyloSim's recordings, as `[T, N]` arrays (XyloSynapse objects kept alive: it holds pointers)."""

    def synapses(w1: np.ndarray, w2: np.ndarray | None) -> list:
        rows = []
        for pre in range(w1.shape[0]):
            row = [xylosim.XyloSynapse(int(j), 0, int(w1[pre, j])) for j in np.flatnonzero(w1[pre])]
            if w2 is not None:
                row += [xylosim.XyloSynapse(int(j), 1, int(w2[pre, j])) for j in np.flatnonzero(w2[pre])]
            rows.append(row)
        return rows

    w = net.weights
    rec = w.get("hidden_hidden", np.zeros((net.hidden, net.hidden), np.int64))
    keep = [synapses(w["in_hidden"], w.get("in_hidden_2")), synapses(rec, w.get("hidden_hidden_2")),
            synapses(w["hidden_out"], None)]  # fmt: skip
    ints = lambda a: [int(v) for v in a]  # noqa: E731
    layer = xylosim.XyloLayer(
        *keep, [[] for _ in range(net.hidden)], ints(net.threshold), ints(net.threshold_out),
        bool(np.any(net.bias) or np.any(net.bias_out)), ints(net.bias), ints(net.bias_out),
        net.shift, net.shift, net.shift, ints(net.dash_mem), ints(net.dash_mem_out),
        [[int(a), int(b)] for a, b in zip(net.dash_syn, net.dash_syn2, strict=True)],
        [[int(d)] for d in net.dash_syn_out], "chiploop-test",
    )  # fmt: skip
    out_spikes = np.array(layer.evolve(net.x.tolist()))
    got = {
        "spikes:hidden": np.array(layer.rec_recurrent_spikes), "spikes:out": out_spikes,
        "v:hidden": np.array(layer.rec_v_mem).T, "v:out": np.array(layer.rec_v_mem_out).T,
        "i:hidden": np.array(layer.rec_i_syn).T, "i:out": np.array(layer.rec_i_syn_out).T,
    }  # fmt: skip
    if net.synapses == 2:
        got["i:hidden_2"] = np.array(layer.rec_i_syn2).T
    del keep
    return got


def profile_of(net: XyloNet) -> ChipProfile:
    """The built-in `xylo` profile with this network's per-neuron registers (tau = dt 2^dash)."""

    def tau(dash: np.ndarray) -> list[float]:
        return [DT_S * 2.0 ** int(d) for d in dash]

    return load_profile("xylo").with_overrides({
        "neuron.tau_mem_s": tau(net.dash_mem), "neuron.tau_out_s": tau(net.dash_mem_out),
        "neuron.tau_syn_s": tau(np.concatenate([net.dash_syn, net.dash_syn_out])),
        "neuron.tau_syn2_s": tau(net.dash_syn2),
        "neuron.threshold": [float(v) for v in np.concatenate([net.threshold, net.threshold_out])],
        "neuron.bias": [float(v) for v in np.concatenate([net.bias, net.bias_out])],
        "weights.shift": net.shift,
        "limits.max_fan_out": None,  # XyloSim simulates any fan-out; the dynamics are under test here
    })  # fmt: skip


def spec_of(net: XyloNet) -> NetworkSpec:
    return NetworkSpec(net.n_in, net.hidden, net.out, net.recurrent, "spiking", net.synapses)


def model_weights(net: XyloNet) -> dict[str, np.ndarray]:
    """Register weights x 2^shift: the model-unit weights the chip stores as those registers."""
    return {k: (w * 2**net.shift).astype(np.float64) for k, w in net.weights.items()}


def chiploop_twin(net: XyloNet) -> dict[str, np.ndarray]:
    twin = TwinChip(profile_of(net), spec_of(net))
    twin.write_weights(model_weights(net))
    rec = twin.run(net.x[None], record_i=True)
    got = {f"spikes:{k}": z[0] for k, z in rec.spikes.items()} | {f"v:{k}": v[0] for k, v in rec.v.items()}
    return got | {f"i:{k}": i[0] for k, i in rec.currents.items()}


def assert_same(ours: dict[str, np.ndarray], theirs: dict[str, np.ndarray], what: str) -> None:
    for key in ours:
        a, b = np.asarray(ours[key], np.int64), np.asarray(theirs[key], np.int64)
        assert a.shape == b.shape, f"{what} {key}: shape {a.shape} vs XyloSim {b.shape}"
        if not np.array_equal(a, b):
            t, n = np.argwhere(a != b)[0]
            raise AssertionError(
                f"{what} {key}: first difference at step {t}, neuron {n}: {a[t, n]} vs XyloSim {b[t, n]}"
            )


@pytest.fixture(scope="module")
def networks() -> list[tuple[XyloNet, dict[str, np.ndarray]]]:
    return [(net, run_xylosim(net)) for net in map(draw, range(N_NETWORKS))]


def test_the_networks_cover_what_xylo_does(networks) -> None:
    """The sweep is only worth its passes if it exercises every rule."""
    activity = [float((ref["spikes:hidden"] > 0).mean()) for _, ref in networks]
    assert min(activity) <= 0.02 and max(activity) >= 0.3
    assert sum(1 for a in activity if 0.01 <= a <= 0.4) >= N_NETWORKS // 3  # one regime of three at least
    assert any(ref["spikes:hidden"].max() > 1 for _, ref in networks), "multi-spike counts"
    for key in ("i:hidden", "v:hidden"):
        assert any((np.abs(ref[key]) >= 32767).any() for _, ref in networks), f"{key} saturating"
    assert any(net.recurrent and net.synapses == 2 and np.any(net.bias) for net, _ in networks)
    assert {net.shift for net, _ in networks} >= {0, 1, 2} and any(not net.recurrent for net, _ in networks)
    assert all(len(ref["v:hidden"]) >= 300 for _, ref in networks)


@pytest.mark.parametrize("seed", range(N_NETWORKS))
def test_python_dynamics_equal_xylosim(networks, seed: int) -> None:
    net, ref = networks[seed]
    assert_same(chiploop_twin(net), ref, f"network {seed} ({net.regime})")


@pytest.mark.parametrize("seed", range(0, N_NETWORKS, 4))
def test_c_firmware_equals_xylosim(networks, board_path: str, seed: int) -> None:
    net, ref = networks[seed]
    chip = SerialChip(board_path, profile_of(net), spec_of(net))
    try:
        chip.write_weights(model_weights(net))
        rec = chip.run(net.x[None])
    finally:
        chip.close()
    ours = {f"spikes:{k}": z[0] for k, z in rec.spikes.items()} | {f"v:{k}": v[0] for k, v in rec.v.items()}
    assert_same(ours, ref, f"network {seed} ({net.regime}) on the C firmware")
