"""Board bridge benchmark: wire efficiency, PING round trip, batch-run latency vs the emulators.

    python benchmarks/bridge.py [--quick] [--no-brian]

Measured in one run against the board simulator in a child process on a pseudo-terminal:
  upload   bulk weight upload (xylo profile: int8 on the wire, 100 x 1000 + 1000 x 2 weights):
           weight bytes / wire bytes host->board, and over both directions (ACKs included)
  ping     PING round trip (empty and 240-byte payload), median over the pty, and its ratio to the
           same exchange with the board in-process (encode + Board.feed + decode, no transport)
  run      a batch (loihi2, 100 in -> 128 recurrent LIF -> 10 leaky, T = 100, batch 16, 5 % rate):
           SerialChip.run vs the board's own compute in-process, TorchTwin.run and BrianChip.run
           (warm: compiled before timing; torch on one thread); SerialChip.run without membrane readout
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

from chiploop.chip_profiles.loader import load_profile
from chiploop.emulator.network import NetworkSpec
from chiploop.emulator.twin import TorchTwin
from chiploop.firmware_bridge.board_sim import Board, BoardNet
from chiploop.firmware_bridge.link import Link
from chiploop.firmware_bridge.protocol import Frame, FrameDecoder, Matrix, Msg, encode_frame
from chiploop.firmware_bridge.serial_chip import MATRICES, SerialChip, wire_config, wire_params, wire_rules


def start_board() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "chiploop.firmware_bridge.board_sim", "--pty"],
        stdout=subprocess.PIPE,
        text=True,
    )
    return proc, proc.stdout.readline().strip()


def median_time(fn, n: int) -> float:  # noqa: ANN001 - any callable
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_upload(url: str) -> None:
    profile, spec = load_profile("xylo"), NetworkSpec(100, 1000, 2)
    rng = np.random.default_rng(0)
    w = {k: rng.integers(-128, 128, shape).astype(float) for k, shape in spec.weight_shapes().items()}
    chip = SerialChip(url, profile, spec)
    try:
        chip.write_weights(w)
        tx0, rx0 = chip.link.stats.tx_bytes, chip.link.stats.rx_bytes
        t0 = time.perf_counter()
        chip._upload(chip.device.for_run())
        dt = time.perf_counter() - t0
        tx, rx = chip.link.stats.tx_bytes - tx0, chip.link.stats.rx_bytes - rx0
    finally:
        chip.close()
    n = sum(a.size for a in w.values())
    print(f"upload   {n} int8 weights: {tx} bytes host->board, {rx} bytes board->host, {dt:.2f} s")
    print(f"         payload efficiency host->board {n / tx:.1%}, both directions {n / (tx + rx):.1%}")


def bench_ping(url: str, n: int) -> None:
    board, decoder = Board(), FrameDecoder()

    def in_process(payload: bytes) -> None:
        decoder.feed(board.feed(encode_frame(Frame(Msg.PING, payload, seq=1))))

    with Link(url) as link:
        for size in (0, 240):
            payload = bytes(size)
            rtt = median_time(lambda p=payload: link.ping(p), n)
            local = median_time(lambda p=payload: in_process(p), n)
            print(f"ping     {size:3d} bytes: median {rtt * 1e3:.3f} ms over the pty, "
                  f"{rtt / local:.1f}x the in-process exchange ({local * 1e6:.0f} us)")  # fmt: skip


def bench_run(url: str, repeats: int, brian: bool) -> None:
    torch.set_num_threads(1)  # the board simulator is single-threaded too; steadier on a shared machine
    profile, spec = load_profile("loihi2"), NetworkSpec(100, 128, 10, recurrent=True)
    rng = np.random.default_rng(0)
    w = {k: rng.normal(0, 200, shape) for k, shape in spec.weight_shapes().items()}
    x = (rng.random((16, 100, spec.n_in)) < 0.05).astype(np.uint8)
    chips = {"serial": SerialChip(url, profile, spec), "twin": TorchTwin(profile, spec)}
    if brian:
        from chiploop.emulator.brian import BrianChip

        chips["brian"] = BrianChip(profile, spec, batch_size=len(x))
    for chip in chips.values():
        chip.write_weights(w)
        chip.run(x)  # warm-up: uploads weights, compiles Brian2
    times = {name: median_time(lambda c=chip: c.run(x), repeats) for name, chip in chips.items()}
    spikes_only = median_time(lambda: chips["serial"].run(x, record_v=False), repeats)
    local = _local_board_time(chips["serial"], x, repeats)
    spikes = {n: c.run(x).spikes["hidden"] for n, c in chips.items()}
    same = all(np.array_equal(spikes["serial"], s) for s in spikes.values())
    serial = times["serial"]
    print(
        f"run      batch {len(x)} x T {x.shape[1]}: serial {serial * 1e3:.0f} ms = "
        f"{serial / local:.1f}x the board's own compute, {serial / times['twin']:.1f}x TorchTwin"
        + (f", {serial / times['brian']:.1f}x BrianChip" if brian else "")
        + f"; spikes identical: {same}"
    )
    print(f"         without membrane readout: serial {spikes_only * 1e3:.0f} ms = "
          f"{spikes_only / serial:.0%} of the run with membranes")  # fmt: skip
    for chip in chips.values():
        chip.close()


def _local_board_time(chip: SerialChip, x: np.ndarray, repeats: int) -> float:
    """Median time of the same batch on the board simulator's BoardNet, in-process."""
    c = chip.device.constants
    weights = {Matrix(MATRICES[k]): w for k, w in chip.device.for_run().items()}
    params = {v: np.asarray(a) for v, a in wire_params(c).items()}
    net = BoardNet(wire_config(chip.profile, chip.spec), wire_rules(chip.profile, chip.spec), params, weights)

    def run() -> None:
        for sample in x:
            net.reset_state()
            net.run(sample)

    return median_time(run, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--no-brian", action="store_true", help="skip BrianChip (no compiler, or in a hurry)")
    args = parser.parse_args()
    proc, url = start_board()
    try:
        bench_upload(url)
        bench_ping(url, 50 if args.quick else 500)
        bench_run(url, 1 if args.quick else 3, brian=not args.no_brian)
    finally:
        proc.kill()


if __name__ == "__main__":
    main()
