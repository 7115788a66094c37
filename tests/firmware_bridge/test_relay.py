"""Through a faulty line and a dying board: nothing lost, nothing half-applied, no bad frame acted on."""

from __future__ import annotations

import numpy as np
import pytest

from chiploop.chip.network import NetworkSpec
from chiploop.chip_profiles.loader import load_profile
from chiploop.emulator.twin_chip import TwinChip
from chiploop.errors import LinkError
from chiploop.firmware_bridge.board_sim import Board
from chiploop.firmware_bridge.link import Link
from chiploop.firmware_bridge.protocol import (
    COUNTER_NAMES,
    COUNTERS,
    READ_WEIGHTS,
    WEIGHTS_HEAD,
    DType,
    Matrix,
    Msg,
)
from chiploop.firmware_bridge.relay import FaultCounts, FaultInjector, FaultRates, Relay
from chiploop.firmware_bridge.serial_chip import SerialChip

ONE_PERCENT = FaultRates(bit_flip=0.01, drop=0.01, dup=0.01)


def counters(link: Link) -> dict[str, int]:
    raw = COUNTERS.unpack(link.request(Msg.READ_COUNTERS).payload)
    return dict(zip(COUNTER_NAMES, raw, strict=True))


def weights(spec: NetworkSpec, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.normal(0.0, 120.0, shape) for k, shape in spec.weight_shapes().items()}


def test_injector_damages_each_frame_unit_once_per_kind_reproducibly() -> None:
    stream = b"".join(bytes([1 + i % 200] * 30) + b"\x00" for i in range(200))
    units = stream.split(b"\x00")[:-1]

    def damage(rates: FaultRates, seed: int) -> tuple[list[bytes], FaultCounts]:
        injector = FaultInjector(rates, np.random.default_rng(seed))
        out = b"".join(injector(stream[i : i + 77]) for i in range(0, len(stream), 77))
        return out.split(b"\x00"), injector.counts

    flipped, counts = damage(FaultRates(bit_flip=1.0), 0)
    assert counts.units == counts.bit_flips == 200
    assert damage(FaultRates(bit_flip=1.0), 0)[0] == flipped  # same seed, same damage
    damaged = [u for u in units if u not in flipped]
    assert len(damaged) > 190  # (a flipped delimiter merges two units)
    _, counts = damage(FaultRates(drop=0.3, dup=0.3), 1)
    assert 30 < counts.drops < 90 and 30 < counts.dups < 90 and counts.bit_flips == 0


@pytest.mark.parametrize("listen", ["pty", "tcp"])
def test_hundred_thousand_weights_through_one_percent_faults_read_back_identical(listen, start_board) -> None:
    board = start_board(*(["--pty"] if listen == "pty" else ["--tcp", "127.0.0.1:0"]))
    spec = NetworkSpec(100, 1000, 2)  # 100,000 + 2,000 weights
    with Relay(board.url, ONE_PERCENT, seed=1, listen=listen) as relay:
        chip = SerialChip(relay.url, load_profile("loihi2"), spec, seed=0, timeout=0.05)
        try:
            chip.write_weights(weights(spec, 0))
            chip.run(np.zeros((1, 1, spec.n_in), np.uint8), record_v=False)
            expected = chip.device.for_run()
            back = chip.board_weights()
            assert sum(w.size for w in back.values()) == 102_000
            assert all(np.array_equal(back[k], expected[k]) for k in expected)
            board_counts = counters(chip.link)
        finally:
            chip.close()
    faults = relay.to_board
    assert min(faults.bit_flips, faults.drops, faults.dups, relay.to_host.bit_flips) > 0
    assert chip.link.stats.retransmits > 0 and board_counts["duplicates"] > 0
    assert board_counts["rx_crc_errors"] + board_counts["rx_cobs_errors"] + board_counts["rx_len_errors"] > 0
    assert board_counts["commits"] == 1  # no damaged frame was acted on: one clean commit, identical weights


NOISY_LINES = {  # 1e-3 per byte in both directions
    "flips": FaultRates(bit_flip=1e-3, per="byte"),
    "drops": FaultRates(drop=1e-3, per="byte"),
    "inserts": FaultRates(insert=1e-3, per="byte"),
    "all three": FaultRates.line_noise(1e-3),
}


# xylo's int8 weights and dynamics without its size limits: the upload is larger than a Xylo holds
XYLO_UNLIMITED = {"limits.max_neurons": None, "limits.max_inputs": None, "limits.max_outputs": None,
                  "limits.max_fan_out": None}  # fmt: skip


@pytest.mark.parametrize("line", NOISY_LINES)
def test_upload_through_a_noisy_line_is_exact_and_losses_are_retransmitted_early(line, start_board) -> None:
    spec = NetworkSpec(100, 200, 2)  # 20,400 int8 weights (the benchmark uploads 102,000)
    rng = np.random.default_rng(3)
    w = {k: rng.integers(-128, 128, shape).astype(float) for k, shape in spec.weight_shapes().items()}
    with Relay(start_board("--tcp", "127.0.0.1:0").url, NOISY_LINES[line], seed=3) as relay:
        chip = SerialChip(relay.url, load_profile("xylo").with_overrides(XYLO_UNLIMITED), spec)
        try:
            chip.write_weights(w)
            chip.run(np.zeros((1, 1, spec.n_in), np.uint8), record_v=False)
            expected, back = chip.device.for_run(), chip.board_weights()
        finally:
            chip.close()
    assert all(np.array_equal(back[k], expected[k]) for k in expected)
    faults = [relay.to_board, relay.to_host]
    assert all(c.bit_flips + c.drops + c.inserts > 0 for c in faults)
    stats = chip.link.stats
    assert stats.retransmits > 2 * stats.timeouts  # most losses showed before their timer expired


def test_frames_shrink_as_the_line_loses_them_and_grow_back_when_it_clears(serve) -> None:
    with Link(serve(Board())) as link:
        assert link.payload_budget(WEIGHTS_HEAD.size) == link.max_payload == 240
        for i in range(200):  # half the exchanges of 280 bytes lost: 2.5e-3 per byte
            link.loss.sent(250)
            if i % 2:
                link.loss.answered(30)
        assert 150 < link.payload_budget(WEIGHTS_HEAD.size) < 180
        for _ in range(500):
            link.loss.sent(250)
            link.loss.answered(30)
        assert link.payload_budget(WEIGHTS_HEAD.size) == 240


def test_runs_through_faults_match_the_twin(start_board) -> None:
    profile, spec = load_profile("xylo"), NetworkSpec(16, 40, 4, recurrent=True, readout="spiking")
    x = (np.random.default_rng(2).random((4, 80, spec.n_in)) < 0.3).astype(np.uint8)
    twin = TwinChip(profile, spec, seed=4)
    with Relay(start_board("--tcp", "127.0.0.1:0").url, ONE_PERCENT, seed=2) as relay:
        chip = SerialChip(relay.url, profile, spec, seed=4, timeout=0.05)
        try:
            for c in (chip, twin):
                c.write_weights(weights(spec, 1))
            got, want = chip.run(x), twin.run(x)
        finally:
            chip.close()
    assert chip.link.stats.retransmits > 0
    for k in want.spikes:
        assert np.array_equal(got.spikes[k], want.spikes[k])
    for k in want.v:
        assert np.array_equal(got.v[k], want.v[k])


def read_active(link: Link, matrix: Matrix, n: int) -> np.ndarray:
    out = []
    for off in range(0, n, 50):
        count = min(50, n - off)
        reply = link.request(Msg.READ_WEIGHTS, READ_WEIGHTS.pack(matrix, DType.I32, off, count))
        out.append(np.frombuffer(reply.payload[WEIGHTS_HEAD.size :], "<i4"))
    return np.concatenate(out)


def test_board_killed_mid_upload_keeps_the_old_weights(start_board, state_file) -> None:
    spec = NetworkSpec(100, 300, 2)
    board = start_board("--pty", "--state", str(state_file))
    chip = SerialChip(board.url, load_profile("loihi2"), spec, seed=0, timeout=0.05)
    chip.write_weights(weights(spec, 0))
    chip.run(np.zeros((1, 1, spec.n_in), np.uint8), record_v=False)
    old = chip.device.for_run()
    chip.write_weights(weights(spec, 1))
    send = chip.link.request_many

    def send_then_die(requests, timeout=None):  # noqa: ANN001, ANN202 - wraps Link.request_many
        requests = list(requests)  # SerialChip hands over a generator
        if requests and requests[0][0] == Msg.WRITE_WEIGHTS:  # ~260 frames: die after 100
            send(requests[:100], timeout)
            board.kill()
        return send(requests, timeout)

    chip.link.request_many = send_then_die
    try:
        with pytest.raises(LinkError, match=rf"^{board.url}: (board disconnected|no response to WRITE_)"):
            chip.run(np.zeros((1, 1, spec.n_in), np.uint8))
    finally:
        chip.close()
    restarted = start_board("--pty", "--state", str(state_file))
    with Link(restarted.url) as link:
        assert (link.info.generation, link.info.state) == (1, 3)
        assert np.array_equal(read_active(link, Matrix.IN_HIDDEN, 30_000), old["in_hidden"].ravel())
        assert np.array_equal(read_active(link, Matrix.HIDDEN_OUT, 600), old["hidden_out"].ravel())
