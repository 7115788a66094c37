"""The reference firmware as a Cortex-M image on a QEMU board model, its UART on a pseudo-terminal.

`QemuBoard` builds the image (`make -C firmware cortex-m`, needs arm-none-eabi-gcc and newlib),
starts `qemu-system-arm -serial pty` and finds the pty path QEMU announces; the port is opened like
any serial device (`SerialChip(board.url, ...)`, `chiploop train --target serial://PORT`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from chiploop.errors import ChiploopError

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware"
PTY_LINE = re.compile(r"char device redirected to (/dev/\S+)")
START_TIMEOUT_S = 10.0
APT_TOOLCHAIN = "gcc-arm-none-eabi libnewlib-arm-none-eabi"


class QemuError(ChiploopError):
    """QEMU or the cross toolchain is missing, the image does not build, or QEMU did not start."""


@dataclass(frozen=True)
class Machine:
    """A QEMU board model the firmware has a port for: its make target and the image it builds."""

    name: str
    cpu: str
    sram_kib: int
    make_target: str
    image: str  # relative to firmware/


MACHINES = {
    "lm3s6965evb": Machine("lm3s6965evb", "Cortex-M3", 64, "cortex-m", "build/cortex-m/chiploop_board.elf"),
}


def machine(name: str) -> Machine:
    """The Machine called `name`; QemuError listing the supported ones otherwise."""
    if name not in MACHINES:
        supported = ", ".join(MACHINES)
        raise QemuError(f"board qemu: no firmware port for machine {name!r}; supported: {supported}")
    return MACHINES[name]


def require(tool: str, package: str) -> str:
    """Full path of `tool`, or QemuError saying which Debian/Ubuntu package provides it."""
    path = shutil.which(tool)
    if path is None:
        raise QemuError(f"{tool} not found: install it with `apt-get install {package}` (Debian/Ubuntu)")
    return path


def build_image(m: Machine, firmware: Path = FIRMWARE) -> Path:
    """`make -C firmware <target>` (incremental); the ELF image. QemuError if a tool is missing."""
    require("make", "make")
    require("arm-none-eabi-gcc", APT_TOOLCHAIN)
    if not (firmware / "Makefile").is_file():
        raise QemuError(f"board qemu: no firmware sources at {firmware}: pass --image with a built image")
    done = subprocess.run(["make", "-C", str(firmware), m.make_target], capture_output=True, text=True)
    if done.returncode != 0:
        said = done.stderr.splitlines()
        lines = [ln for ln in said if ln.strip() and not ln.startswith(("make", "collect2"))]
        cause = next((ln for ln in lines if "error:" in ln), lines[0] if lines else "(no message)")
        cause = cause.split("/bin/ld: ")[-1]  # the linker's own path says nothing
        raise QemuError(f"board qemu: make -C {firmware} {m.make_target} failed: {cause}")
    return firmware / m.image


class QemuBoard:
    """QEMU running the firmware image for `machine`; `url` is the pty of its UART.

    image: a built ELF (default: built from firmware/ now). qmp: a Unix socket path for QEMU's machine
    protocol (memory reads for measurements). Stops QEMU on close/exit.
    """

    def __init__(self, machine_name: str = "lm3s6965evb", image: Path | None = None,
                 qmp: Path | None = None) -> None:  # fmt: skip
        self.machine = machine(machine_name)
        qemu = require("qemu-system-arm", "qemu-system-arm")
        self.image = Path(image) if image is not None else build_image(self.machine)
        if not self.image.is_file():
            raise QemuError(f"board qemu: image {self.image} not found")
        cmd = [qemu, "-M", self.machine.name, "-nographic", "-monitor", "none", "-serial", "pty"]
        if qmp is not None:
            cmd += ["-qmp", f"unix:{qmp},server=on,wait=off"]
        cmd += ["-kernel", str(self.image)]
        self.output: deque[str] = deque(maxlen=100)
        # Its own process group: a Ctrl-C at the terminal reaches chiploop, which then stops QEMU.
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, process_group=0)  # fmt: skip
        self.url = self._wait_for_pty()
        threading.Thread(target=self._drain, daemon=True).start()  # QEMU must never block on its stdout

    def _wait_for_pty(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT_S
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.output.append(line.rstrip())
            found = PTY_LINE.search(line)
            if found:
                return found.group(1)
        self.close()
        said = "; ".join(self.output) or "nothing"
        raise QemuError(f"board qemu: QEMU announced no pty within {START_TIMEOUT_S:g} s (it said: {said})")

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line.rstrip())

    def wait(self) -> int:
        """Block until QEMU exits; its exit code."""
        return self.proc.wait()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> QemuBoard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
