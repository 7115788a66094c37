"""The reference firmware on an emulated microcontroller (QEMU lm3s6965evb, Cortex-M3, 64 KB SRAM)
beside the board simulator and the host build of the same firmware, each on a pseudo-terminal.

    python benchmarks/qemu_board.py [--quick]

  image    flash and RAM of `make -C firmware cortex-m` (arm-none-eabi-size), the stack's high-water
           mark after the workload below (free RAM is painted at reset; read through QEMU's monitor),
           and the largest CL_MAX_SYNAPSES that still links (binary search over builds)
  ping     PING round trip, median of 200, empty and 240-byte payload
  upload   every weight the MCU build holds (64 -> 64 -> 12, int8 on the wire, xylo): weight bytes /
           wire bytes host->board, and its time
  epoch    one epoch in the loop: digits, loihi2, 16 hidden neurons, seed 3 (the firmware's slow
           test); `--quick`: the integration task with 128 train and 64 test samples instead
Needs qemu-system-arm, arm-none-eabi-gcc and a host C compiler.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from chiploop.chip.network import NetworkSpec
from chiploop.chip_profiles.loader import load_profile
from chiploop.firmware_bridge.link import Link
from chiploop.firmware_bridge.qemu import FIRMWARE, MACHINES, QemuBoard, build_image
from chiploop.firmware_bridge.serial_chip import SerialChip

PAINT = 0x5AC3A55A  # CM_STACK_PAINT in firmware/ports/cortex-m/cm_port.h
SRAM = (0x20000000, 64 * 1024)
FLASH_BYTES = 256 * 1024


@contextmanager
def pty_process(cmd: list[str]) -> Iterator[str]:
    """A board process that prints its pty path first; yields the path."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        yield proc.stdout.readline().strip()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def boards(image: Path, monitor: Path) -> dict[str, object]:
    """name -> context manager factory yielding a pty path."""

    @contextmanager
    def qemu() -> Iterator[str]:
        with QemuBoard(image=image, qmp=monitor) as board:
            yield board.url

    return {
        "board simulator": lambda: pty_process(
            [sys.executable, "-m", "chiploop.firmware_bridge.board_sim", "--pty"]
        ),
        "host firmware": lambda: pty_process([str(FIRMWARE / "build" / "chiploop_board")]),
        "QEMU Cortex-M3": qemu,
    }


def size_of(elf: Path) -> tuple[int, int, int]:
    text, data, bss = subprocess.run(["arm-none-eabi-size", str(elf)], capture_output=True, text=True,
                                     check=True).stdout.splitlines()[1].split()[:3]  # fmt: skip
    return int(text), int(data), int(bss)


def largest_synapses() -> int:
    """The largest CL_MAX_SYNAPSES (other maxima as the Makefile sets them) whose image links."""
    limits = re.search(r"CM_LIMITS = (.*?)\nCM_CFLAGS", (FIRMWARE / "Makefile").read_text(), re.S).group(1)
    limits = re.sub(r"-DCL_MAX_SYNAPSES=\d+", "", limits.replace("\\\n", " "))
    lo, hi = 1, 16384
    with tempfile.TemporaryDirectory() as tmp:
        while lo < hi:
            mid = (lo + hi + 1) // 2
            cmd = ["make", "-s", "-B", "-C", str(FIRMWARE), f"CM_DIR={tmp}",
                   f"CM_LIMITS={limits} -DCL_MAX_SYNAPSES={mid}", f"{tmp}/chiploop_board.elf"]  # fmt: skip
            ok = subprocess.run(cmd, capture_output=True).returncode == 0
            lo, hi = (mid, hi) if ok else (lo, mid - 1)
    return lo


def stack_high_water(monitor: Path, image: Path) -> int:
    """Bytes of stack used so far: from the top of SRAM down to the lowest overwritten paint word."""
    nm = subprocess.run(["arm-none-eabi-nm", str(image)], capture_output=True, text=True, check=True).stdout
    ebss = int(re.search(r"^([0-9a-f]+) \w _ebss$", nm, re.M).group(1), 16)
    with tempfile.TemporaryDirectory() as tmp, socket.socket(socket.AF_UNIX) as mon:
        dump = Path(tmp) / "sram.bin"
        mon.connect(str(monitor))
        replies = mon.makefile("r")
        replies.readline()  # greeting
        for cmd in (
            {"execute": "qmp_capabilities"},
            {"execute": "pmemsave", "arguments": {"val": SRAM[0], "size": SRAM[1], "filename": str(dump)}},
        ):
            mon.sendall(json.dumps(cmd).encode() + b"\n")
            assert "return" in json.loads(replies.readline()), cmd
        words = np.frombuffer(dump.read_bytes(), "<u4")
    first = (ebss - SRAM[0]) // 4
    untouched = np.argmax(words[first:] != PAINT)  # paint runs from _ebss up to the deepest stack frame
    return SRAM[1] - 4 * (first + int(untouched))


def bench_ping(url: str) -> str:
    with Link(url) as link:
        return " / ".join(
            f"{statistics.median(link.ping(bytes(size)) for _ in range(200)) * 1e3:.2f} ms"
            for size in (0, 240)
        )


def bench_upload(url: str) -> str:
    spec = NetworkSpec(64, 64, 12)
    rng = np.random.default_rng(0)
    w = {k: rng.integers(-128, 128, shape).astype(float) for k, shape in spec.weight_shapes().items()}
    chip = SerialChip(url, load_profile("xylo"), spec)
    try:
        chip.write_weights(w)
        tx0 = chip.link.stats.tx_bytes
        t0 = time.perf_counter()
        chip._upload(chip.device.for_run())
        dt = time.perf_counter() - t0
        tx = chip.link.stats.tx_bytes - tx0
    finally:
        chip.close()
    n = sum(a.size for a in w.values())
    return f"{n / tx:.1%} in {dt * 1e3:.0f} ms"


def bench_epoch(url: str, quick: bool) -> tuple[str, str]:
    from chiploop.training.loop import Trainer

    task = {"task": "integration", "task_options": {"n_train": 128, "n_test": 64}, "batch_size": 32}
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer("loihi2", target=f"serial://{url}", n_hidden=16, seed=3, out_dir=tmp,
                          progress=False, plots=False, **(task if quick else {}))  # fmt: skip
        t0 = time.perf_counter()
        try:
            trainer.fit(1)
        finally:
            trainer.chip.close()
        dt = time.perf_counter() - t0
        metrics = (trainer.run.path / "metrics.csv").read_text()
    return f"{dt:.1f} s", metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small training task for the epoch")
    args = parser.parse_args()
    subprocess.run(["make", "-s", "-C", str(FIRMWARE)], check=True, capture_output=True)
    image = build_image(MACHINES["lm3s6965evb"])
    text, data, bss = size_of(image)
    print(f"image    flash {text + data} B of {FLASH_BYTES // 1024} KB ({(text + data) / FLASH_BYTES:.1%}), "
          f"RAM {data + bss} B of 64 KB static ({(data + bss) / SRAM[1]:.1%}), no heap")  # fmt: skip
    print(f"         largest CL_MAX_SYNAPSES that links: {largest_synapses()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        monitor = Path(tmp) / "monitor.sock"
        metrics = {}
        for name, start in boards(image, monitor).items():
            with start() as url:
                ping, upload = bench_ping(url), bench_upload(url)
                epoch, metrics[name] = bench_epoch(url, args.quick)
                print(f"{name:15s}  ping {ping}  upload {upload}  epoch {epoch}", flush=True)
                if name.startswith("QEMU"):
                    print(f"         stack high-water {stack_high_water(monitor, image)} B "
                          f"(free for it: {SRAM[1] - data - bss} B)")  # fmt: skip
    print("metrics.csv identical on the three boards:", len(set(metrics.values())) == 1)


if __name__ == "__main__":
    main()
