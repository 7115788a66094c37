"""Board bridge benchmark: wire efficiency, PING round trip, batch-run latency vs the emulators,
uploads through a noisy line.

    python benchmarks/bridge.py [--quick] [--no-brian] [--noise-only]

Measured in one run against the board simulator in a child process on a pseudo-terminal:
  upload   bulk weight upload (xylo profile: int8 on the wire, 100 x 1000 + 1000 x 2 weights):
           weight bytes / wire bytes host->board, and over both directions (ACKs included)
  ping     PING round trip (empty and 240-byte payload), median over the pty, and its ratio to the
           same exchange with the board in-process (encode + Board.feed + decode, no transport)
  run      a batch (loihi2, 100 in -> 128 recurrent LIF -> 10 leaky, T = 100, batch 16, 5 % rate):
           SerialChip.run vs the board's own compute in-process, TwinChip.run and BrianChip.run
           (warm: compiled before timing; torch on one thread); SerialChip.run without membrane readout
  noise    the upload above (board on tcp) through a byte-level noise relay on loopback
           (`relay.FaultRates`, per byte): clean, then bit flips, dropped bytes and inserted random
           bytes, each alone and all three together, at 1e-4 and 1e-3 per byte each, in both
           directions; per rate exact/failed
           (read back through the same line), median time over seeds, retransmits (of them timeouts)
           and the time's ratio to clean in the same run
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

from chiploop.chip.network import NetworkSpec
from chiploop.chip_profiles.loader import load_profile
from chiploop.emulator.twin_chip import TwinChip
from chiploop.errors import LinkError
from chiploop.firmware_bridge.board_sim import Board, BoardNet
from chiploop.firmware_bridge.link import Link
from chiploop.firmware_bridge.protocol import Frame, FrameDecoder, Matrix, Msg, encode_frame
from chiploop.firmware_bridge.relay import FaultRates, Relay
from chiploop.firmware_bridge.serial_chip import MATRICES, SerialChip, wire_config, wire_params, wire_rules

NOISE_KINDS = ("bit_flip", "drop", "insert")
NOISE_RATES = (1e-4, 1e-3)


def start_board(*args: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "chiploop.firmware_bridge.board_sim", *(args or ["--pty"])],
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


# xylo's int8 weights and dynamics without its size limits: the upload is larger than a Xylo holds
XYLO_UNLIMITED = {"limits.max_neurons": None, "limits.max_inputs": None, "limits.max_outputs": None,
                  "limits.max_fan_out": None}  # fmt: skip


def upload_weights() -> tuple[NetworkSpec, dict[str, np.ndarray]]:
    """The upload workload: 100 x 1000 + 1000 x 2 int8 weights (xylo)."""
    spec = NetworkSpec(100, 1000, 2)
    rng = np.random.default_rng(0)
    shapes = spec.weight_shapes().items()
    return spec, {k: rng.integers(-128, 128, shape).astype(float) for k, shape in shapes}


def bench_upload(url: str) -> None:
    spec, w = upload_weights()
    chip = SerialChip(url, load_profile("xylo").with_overrides(XYLO_UNLIMITED), spec)
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
    chips = {"serial": SerialChip(url, profile, spec), "twin": TwinChip(profile, spec)}
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
        f"{serial / local:.1f}x the board's own compute, {serial / times['twin']:.1f}x TwinChip"
        + (f", {serial / times['brian']:.1f}x BrianChip" if brian else "")
        + f"; spikes identical: {same}"
    )
    print(f"         without membrane readout: serial {spikes_only * 1e3:.0f} ms = "
          f"{spikes_only / serial:.0%} of the run with membranes")  # fmt: skip
    for chip in chips.values():
        chip.close()


def noisy_upload(url: str, rates: FaultRates, seed: int) -> tuple[bool, float, int, int]:
    """One upload through a relay with `rates`: (exact, seconds, retransmits, timeouts)."""
    spec, w = upload_weights()
    with Relay(url, rates, seed=seed) as relay:
        chip = SerialChip(relay.url, load_profile("xylo").with_overrides(XYLO_UNLIMITED), spec)
        try:
            chip.write_weights(w)
            expected = chip.device.for_run()
            before = chip.link.stats.retransmits, chip.link.stats.timeouts
            t0 = time.perf_counter()
            chip._upload(expected)
            dt = time.perf_counter() - t0
            stats = chip.link.stats.retransmits - before[0], chip.link.stats.timeouts - before[1]
            back = chip.board_weights()
        finally:
            chip.close()
    return all(np.array_equal(back[k], expected[k]) for k in expected), dt, *stats


def bench_noise(url: str, seeds: int) -> None:
    cases = [("clean", 0.0, FaultRates(per="byte"))]
    for rate in NOISE_RATES:
        cases += [(kind, rate, FaultRates(**{kind: rate}, per="byte")) for kind in NOISE_KINDS]
        cases.append(("all three", rate, FaultRates.line_noise(rate)))
    print(f"noise    100k-weight upload, {seeds} seeds per row")
    print("| faults | rate / byte | result | time, median (range) | retransmits, median (range) "
          "| of them timer expiries, total | time vs clean |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    clean = None
    for kind, rate, rates in cases:
        runs = []
        for seed in range(seeds):
            try:
                runs.append(noisy_upload(url, rates, seed))
            except LinkError as exc:
                print(f"         {kind} {rate:g} seed {seed}: failed: {exc}")
        exact = sum(r[0] for r in runs)
        result = "exact" if exact == seeds else f"{seeds - exact} of {seeds} failed"
        if not runs:
            print(f"| {kind} | {rate:g} | {result} | | | | |")
            continue
        dt, retx = [r[1] for r in runs], [r[2] for r in runs]
        clean = clean or statistics.median(dt)
        print(f"| {kind} | {rate:g} | {result} | {_spread(dt, '{:.2f} s')} | {_spread(retx, '{:.0f}')} "
              f"| {sum(r[3] for r in runs)} | {statistics.median(dt) / clean:.2f}x |")  # fmt: skip


def _spread(values: list[float], fmt: str) -> str:
    """`median (min–max)` of `values`."""
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}–{fmt.format(max(values))})"


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
    parser.add_argument("--noise-only", action="store_true", help="only the uploads through a noisy line")
    args = parser.parse_args()
    if not args.noise_only:
        proc, url = start_board()
        try:
            bench_upload(url)
            bench_ping(url, 50 if args.quick else 500)
            bench_run(url, 1 if args.quick else 3, brian=not args.no_brian)
        finally:
            proc.kill()
    proc, url = start_board("--tcp", "127.0.0.1:0")
    try:
        bench_noise(url, 3 if args.quick else 5)
    finally:
        proc.kill()


if __name__ == "__main__":
    main()
