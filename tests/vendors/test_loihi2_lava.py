"""`loihi2` against Lava's bit-accurate Loihi models (lava-nc 0.10: PyLifModelBitAcc +
PyDenseModelBitAcc), through the golden traces `lava_traces.py` wrote with Lava itself.

Each of the 56 networks (input -> Dense -> LIF, optionally recurrent -> Dense -> LIF readout; random
sizes up to 200 hidden, decays, thresholds, biases and integer weights -256..255 including odd ones,
in quiet, busy and saturating regimes) is drawn again here from its seed; its spikes must equal
Lava's and its u and v match Lava's at every step (per-step CRC-32 of the int32 values). The
Python definition of the dynamics runs all of them, the C definition (the reference firmware) every
fourth; the conformance suite holds the Brian2 emulator to both.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest

from chiploop.chip.network import NetworkSpec
from chiploop.chip_profiles.loader import load_profile
from chiploop.chip_profiles.model import ChipProfile
from chiploop.emulator.twin_chip import TwinChip
from chiploop.firmware_bridge.serial_chip import SerialChip

from .lava_traces import N_NETWORKS, draw_network, step_crcs, weights_crc

TRACES = np.load(Path(__file__).with_name("lava_traces.npz"))
DT_S = 1e-3


def tau_of(decay: int) -> float:
    """The time constant whose 12-bit decay is `decay` (4096: none kept, 0: no decay)."""
    if decay >= 4096:
        return 0.0
    if decay <= 0:
        return 1e9  # round(4096 (1 - exp(-dt / 1e9))) = 0
    return -DT_S / float(np.log1p(-decay / 4096))


def profile_of(net: dict) -> ChipProfile:
    """`loihi2` with the network's registers. Lava's u decays by (du + 1)/4096 (its ds_offset)."""
    h, o = net["hidden"], net["out"]
    bias = np.concatenate([net["bias"], net["bias_out"]]) * 2 ** net["bias_exp"]
    return load_profile("loihi2").with_overrides({
        "neuron.tau_mem_s": [tau_of(net["dv"])] * h, "neuron.tau_out_s": [tau_of(net["dv_out"])] * o,
        "neuron.tau_syn_s": [tau_of(net["du"] + 1)] * h + [tau_of(net["du_out"] + 1)] * o,
        "neuron.threshold": [float(net["vth"])] * h + [float(net["vth_out"])] * o,
        "neuron.bias": [float(b) for b in bias],
    })  # fmt: skip


def spec_of(net: dict) -> NetworkSpec:
    return NetworkSpec(net["n_in"], net["hidden"], net["out"], net["recurrent"], "spiking")


def weights_of(net: dict) -> dict[str, np.ndarray]:
    """The integer weights as given to Lava's Dense (the chip floors odd ones, as Lava does)."""
    w = {"in_hidden": net["w_in"], "hidden_out": net["w_out"]}
    if net["recurrent"]:
        w["hidden_hidden"] = net["w_rec"]
    return {k: v.astype(np.float64) for k, v in w.items()}


def assert_matches_lava(seed: int, net: dict, spikes: dict, states: dict, what: str) -> None:
    for layer, n in (("hidden", net["hidden"]), ("out", net["out"])):
        want = np.unpackbits(TRACES[f"{seed}_{layer}_spikes"], axis=1)[:, :n]
        got = spikes[layer]
        if not np.array_equal(got, want):
            t, k = np.argwhere(got != want)[0]
            raise AssertionError(f"{what}: {layer} spikes differ first at step {t}, neuron {k}")
        for var in states:
            crcs = step_crcs(states[var][layer])
            bad = np.flatnonzero(crcs != TRACES[f"{seed}_{layer}_{var}"])
            assert not bad.size, f"{what}: {layer} {var} differs from Lava's first at step {bad[0]}"


@pytest.fixture(scope="module")
def networks() -> list[dict]:
    nets = [draw_network(seed) for seed in range(N_NETWORKS)]
    for seed, net in enumerate(nets):  # the same networks Lava ran
        assert weights_crc(net) == int(TRACES[f"{seed}_weights_crc"]), f"network {seed} drew other weights"
    return nets


def run_twin(net: dict):  # noqa: ANN201 - a Recording
    twin = TwinChip(profile_of(net), spec_of(net))
    twin.write_weights(weights_of(net))
    return twin.run(net["x"][None], record_i=True)


def test_the_traces_come_from_lava_0_10() -> None:
    assert str(TRACES["lava_version"]) == "0.10.0"
    assert load_profile("loihi2").checked_against.startswith("lava-nc 0.10.0")


def test_the_networks_cover_what_loihi_does(networks) -> None:
    """Quiet to busy activity, u wrapping past 2^23, v clipping at -(2^23 - 1), odd weights."""
    activity, wraps, clips = [], 0, 0
    for net in networks:
        rec = run_twin(net)
        activity.append(float(rec.spikes["hidden"].mean()))
        u, v = rec.currents["hidden"][0], rec.v["hidden"][0]
        wraps += int((np.abs(np.diff(u, axis=0)) > 2**23).sum())
        clips += int((v == -(2**23 - 1)).sum())
    assert min(activity) <= 0.01 and max(activity) >= 0.4
    assert sum(1 for a in activity if 0.01 <= a <= 0.4) >= N_NETWORKS // 3  # one regime of three at least
    assert wraps > 0 and clips > 0
    assert all(np.any(net["w_in"] % 2) for net in networks)


@pytest.mark.parametrize("seed", range(N_NETWORKS))
def test_python_dynamics_equal_lava(networks, seed: int) -> None:
    net = networks[seed]
    rec = run_twin(net)
    spikes = {k: z[0] for k, z in rec.spikes.items()}
    states = {"u": {k: rec.currents[k][0] for k in ("hidden", "out")}, "v": {k: rec.v[k][0] for k in rec.v}}
    assert_matches_lava(seed, net, spikes, states, f"network {seed}")


@pytest.mark.parametrize("seed", range(0, N_NETWORKS, 4))
def test_c_firmware_equals_lava(networks, board_path: str, seed: int) -> None:
    net = networks[seed]
    chip = SerialChip(board_path, profile_of(net), spec_of(net))
    try:
        chip.write_weights(weights_of(net))
        rec = chip.run(net["x"][None])
    finally:
        chip.close()
    spikes = {k: z[0] for k, z in rec.spikes.items()}
    assert_matches_lava(
        seed, net, spikes, {"v": {k: rec.v[k][0] for k in rec.v}}, f"network {seed} on the C firmware"
    )


def test_step_crcs_see_a_single_changed_value() -> None:
    """The comparison by checksum is as strict as by value: one state off by one is caught."""
    v = np.arange(12, dtype=np.int64).reshape(3, 4)
    w = v.copy()
    w[1, 2] += 1
    assert (step_crcs(v) != step_crcs(w)).tolist() == [False, True, False]
    assert step_crcs(v)[0] == zlib.crc32(np.arange(4, dtype="<i4").tobytes())
