"""SerialChip against the board simulator: the Chip protocol over the wire, bit-identical to the twin."""

from __future__ import annotations

import numpy as np
import pytest

from chiploop.chip.network import NetworkSpec
from chiploop.chip.protocol import Chip
from chiploop.chip.targets import open_chip
from chiploop.chip_profiles.loader import load_profile
from chiploop.chip_profiles.model import ChipProfile
from chiploop.emulator.twin_chip import TwinChip
from chiploop.errors import ChipError, DesignRuleError
from chiploop.firmware_bridge.board_sim import CAPABILITIES, Board, serve_in_background
from chiploop.firmware_bridge.link import Link
from chiploop.firmware_bridge.protocol import Cap
from chiploop.firmware_bridge.serial_chip import SerialChip


def alif_with_mismatch() -> ChipProfile:
    return load_profile("loihi2").with_overrides(
        {
            "neuron.model": "alif",
            "neuron.adaptation.beta": 300.0,
            "neuron.adaptation.fraction": 0.5,
            "neuron.adaptation.tau_s": 0.05,
            "neuron.refractory_steps": 2,
            "neuron.reset": "subtract",
            "noise.mismatch.tau": 0.2,
            "noise.mismatch.threshold": 0.1,
            "noise.mismatch.gain": 0.1,
            "limits.max_spikes_per_step": 4,
            "limits.max_input_spikes_per_step": 5,
        }
    )


CASES = {
    "loihi2-leaky": (lambda: load_profile("loihi2"), NetworkSpec(12, 40, 5)),
    "xylo-recurrent-spiking": (
        lambda: load_profile("xylo"),
        NetworkSpec(16, 30, 4, recurrent=True, readout="spiking"),
    ),
    "alif-mismatch-caps": (alif_with_mismatch, NetworkSpec(12, 40, 5, recurrent=True, readout="spiking")),
}


def random_weights(profile: ChipProfile, spec: NetworkSpec, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    scale = profile.neuron.threshold / 3
    return {k: rng.normal(0.0, scale, shape) for k, shape in spec.weight_shapes().items()}


@pytest.mark.parametrize("case", CASES)
def test_runs_bit_identical_to_the_twin(case: str, start_board) -> None:
    make_profile, spec = CASES[case]
    profile = make_profile()
    url = start_board("--tcp", "127.0.0.1:0").url
    rng = np.random.default_rng(5)
    x = (rng.random((3, 60, spec.n_in)) < 0.3).astype(np.uint8)
    twin = TwinChip(profile, spec, seed=11)
    chip = SerialChip(url, profile, spec, seed=11)
    try:
        assert isinstance(chip, Chip)
        for seed in (1, 2):
            w = random_weights(profile, spec, seed)
            chip.write_weights(w)
            twin.write_weights(w)
            got, want = chip.run(x), twin.run(x)
            assert got.spikes.keys() == want.spikes.keys() and got.v.keys() == want.v.keys()
            for k in want.spikes:
                assert got.spikes[k].dtype == np.uint8 and np.array_equal(got.spikes[k], want.spikes[k]), k
            for k in want.v:
                assert got.v[k].dtype == np.int64 and np.array_equal(got.v[k], want.v[k]), k
            assert got.spikes["hidden"].sum() > 0
            assert got.meta["weights_generation"] == seed and got.meta["board_generation"] == seed
        assert chip.run(x, record_v=False).v == {}
        np.testing.assert_array_equal(chip.read_weights()["in_hidden"], twin.read_weights()["in_hidden"])
    finally:
        chip.close()


def test_chunked_runs_match_one_long_run(start_board) -> None:
    """A raster longer than the board's max_ticks runs in chunks; state carries across them."""
    profile, spec = load_profile("loihi2"), NetworkSpec(9, 20, 3)
    url = start_board("--pty").url
    x = (np.random.default_rng(0).random((2, 2500, spec.n_in)) < 0.2).astype(np.uint8)
    with_chip = SerialChip(url, profile, spec, seed=0)
    twin = TwinChip(profile, spec, seed=0)
    try:
        for chip in (with_chip, twin):
            chip.write_weights(random_weights(profile, spec, 3))
        got, want = with_chip.run(x), twin.run(x)
        assert np.array_equal(got.spikes["hidden"], want.spikes["hidden"])
        assert np.array_equal(got.v["out"], want.v["out"])
    finally:
        with_chip.close()


def test_upload_reads_back_identical_and_unchanged_chunks_are_skipped(board_url: str) -> None:
    profile, spec = load_profile("loihi2"), NetworkSpec(50, 100, 10, recurrent=True)
    chip = SerialChip(board_url, profile, spec, seed=0)
    try:
        w = random_weights(profile, spec, 0)
        chip.write_weights(w)
        chip.run(np.zeros((1, 1, spec.n_in), np.uint8))
        expected = chip.device.for_run()
        back = chip.board_weights()
        assert all(np.array_equal(back[k], expected[k]) for k in expected)
        w["hidden_out"][3, 4] += 50.0  # one weight changes: one WRITE_WEIGHTS frame, one COMMIT
        chip.write_weights(w)
        before = chip.link.stats.requests
        chip.run(np.zeros((1, 1, spec.n_in), np.uint8), record_v=False)
        assert chip.link.stats.requests - before == 2 + 4  # write, commit; RESET, INPUT, RUN, READ_OUTPUT
        assert np.array_equal(chip.board_weights()["hidden_out"], chip.device.for_run()["hidden_out"])
    finally:
        chip.close()


def test_capability_mismatch_names_port_and_reason_and_writes_nothing(start_board) -> None:
    url = start_board("--tcp", "127.0.0.1:0", "--max-neurons", "16").url
    with pytest.raises(
        ChipError, match=rf"^{url}: the board cannot host this network: 25 neurons, board max 16$"
    ):
        SerialChip(url, load_profile("loihi2"), NetworkSpec(4, 20, 5))
    with Link(url) as link:
        assert (link.info.state, link.info.generation) == (0, 0)  # never configured, no weights


def test_float_profile_runs_on_the_simulator_and_is_refused_by_an_integer_board() -> None:
    profile, spec = load_profile("ideal"), NetworkSpec(6, 10, 3, recurrent=True)
    chip = SerialChip(serve_in_background(), profile, spec)
    try:
        w = random_weights(profile, spec, 1)
        chip.write_weights(w)
        rec = chip.run((np.random.default_rng(0).random((2, 30, 6)) < 0.4).astype(np.uint8))
        assert rec.v["hidden"].dtype == np.float32 and rec.spikes["hidden"].sum() > 0
        back = chip.board_weights()  # float64 on the wire: exactly the device model's weights
        assert all(back[k].dtype == np.float64 and np.array_equal(back[k], w[k]) for k in w)
    finally:
        chip.close()
    integer_board = Board(capabilities=CAPABILITIES & ~Cap.FLOAT)
    url = serve_in_background(integer_board)
    with pytest.raises(ChipError, match=rf"^{url}: the board cannot host this network: no float arithmetic$"):
        SerialChip(url, profile, spec)


def test_a_board_without_configurable_rules_hosts_only_chiploops_own() -> None:
    spec = NetworkSpec(3, 4, 2)
    url = serve_in_background(Board(capabilities=CAPABILITIES & ~Cap.RULES))
    with pytest.raises(ChipError, match=r"cannot host this network: no configurable rules \(CONFIG_RULES\)"):
        SerialChip(url, load_profile("xylo"), spec)
    chip = SerialChip(
        serve_in_background(Board(capabilities=CAPABILITIES & ~Cap.RULES)), load_profile("ideal"), spec
    )
    chip.close()


def test_the_profiles_design_rules_hold_on_a_board_and_layers_need_its_capability() -> None:
    """A network too large for the profile is refused before the port is opened, like on every
    other backend; several hidden layers need a board with LAYERS (protocol 1.3)."""
    with pytest.raises(DesignRuleError, match="max_inputs"):
        SerialChip("socket://127.0.0.1:9", load_profile("xylo"), NetworkSpec(100, 40, 4))
    url = serve_in_background(Board(capabilities=CAPABILITIES & ~Cap.LAYERS))
    with pytest.raises(ChipError, match=r"cannot host this network: one hidden layer only \(no LAYERS\)"):
        SerialChip(url, load_profile("ideal"), NetworkSpec(3, (4, 4), 2))


def test_open_chip_routes_board_urls_to_serial_chip(start_board) -> None:
    spec = NetworkSpec(3, 4, 2)
    pty_url = start_board("--pty").url
    for target in (serve_in_background(), f"serial://{pty_url}"):
        chip = open_chip(target, "xylo", spec, seed=1, timeout=0.2)
        try:
            assert isinstance(chip, SerialChip) and chip.link.timeout == 0.2
            assert chip.run(np.ones((1, 5, 3), np.uint8)).spikes["hidden"].shape == (1, 5, 4)
        finally:
            chip.close()


def test_delta_upload_falls_back_to_a_full_upload_when_the_board_holds_other_weights() -> None:
    board = Board()
    profile, spec = load_profile("loihi2"), NetworkSpec(20, 30, 3)
    chip = SerialChip(serve_in_background(board), profile, spec)
    try:
        w = random_weights(profile, spec, 0)
        chip.write_weights(w)
        chip.run(np.zeros((1, 1, spec.n_in), np.uint8))
        for active in board.active.values():  # the board lost its weights behind the host's back
            active[...] = 0
        w["in_hidden"][0, 0] += 40.0
        chip.write_weights(w)
        naks = chip.link.stats.naks
        chip.run(np.zeros((1, 1, spec.n_in), np.uint8))
        assert chip.link.stats.naks == naks + 1  # the delta COMMIT was refused (CRC), then all went up
        expected = chip.device.for_run()
        assert all(np.array_equal(chip.board_weights()[k], expected[k]) for k in expected)
    finally:
        chip.close()
