"""Fixtures shared across the test tree: the reference C firmware, built once and served on a pty;
a private mount namespace for real full and read-only filesystems."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

FIRMWARE = Path(__file__).resolve().parents[1] / "firmware"


@pytest.fixture(scope="session")
def firmware_build() -> Path:
    """`make -C firmware` (skipped without a C compiler and make); the build directory."""
    if shutil.which("make") is None or not any(shutil.which(cc) for cc in ("cc", "gcc", "clang")):
        pytest.skip("no C compiler (cc/gcc/clang) and make on PATH: cannot build firmware/")
    done = subprocess.run(["make", "-C", str(FIRMWARE)], capture_output=True, text=True)
    assert done.returncode == 0, f"make -C firmware failed:\n{done.stdout}\n{done.stderr}"
    return FIRMWARE / "build"


@pytest.fixture
def board_path(firmware_build: Path) -> Iterator[str]:
    """A fresh firmware process on a pty; yields the device path it printed."""
    proc = subprocess.Popen([str(firmware_build / "chiploop_board")], stdout=subprocess.PIPE, text=True)
    try:
        path = proc.stdout.readline().strip()
        assert path.startswith("/dev/"), f"chiploop_board printed {path!r}, expected a pty path"
        yield path
    finally:
        proc.terminate()
        proc.wait(timeout=5)


@pytest.fixture(scope="session")
def qemu_image() -> Path:
    """`make -C firmware cortex-m` (skipped without QEMU and the arm-none-eabi toolchain); the image."""
    from chiploop.firmware_bridge.qemu import APT_TOOLCHAIN, MACHINES, build_image

    if not all(shutil.which(tool) for tool in ("make", "qemu-system-arm", "arm-none-eabi-gcc")):
        pytest.skip(f"needs make, qemu-system-arm and arm-none-eabi-gcc (apt-get install qemu-system-arm "
                    f"{APT_TOOLCHAIN})")  # fmt: skip
    return build_image(MACHINES["lm3s6965evb"])


@pytest.fixture
def qemu_path(qemu_image: Path) -> Iterator[str]:
    """A fresh QEMU lm3s6965evb running the firmware image; yields the pty of its UART."""
    from chiploop.firmware_bridge.qemu import QemuBoard

    with QemuBoard("lm3s6965evb", image=qemu_image) as board:
        yield board.url


@pytest.fixture
def own_mount(tmp_path: Path) -> Callable[[str], dict]:
    """Run a shell script in a private user and mount namespace (`unshare -rm`), where the empty
    directory `$D` (and `$D/..`, writable) may be mounted over; `$PY` is this Python. The script ends
    by printing one JSON line, which is returned. Skipped where namespaces are unavailable."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux) for a private mount")
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"user and mount namespaces unavailable: {probe.stderr.decode().strip()}")
    (tmp_path / "d").mkdir()

    def run(script: str) -> dict:
        done = subprocess.run(
            ["unshare", "-rm", "sh", "-c", script],
            env={"D": str(tmp_path / "d"), "PY": sys.executable, "PATH": "/usr/bin:/bin"},
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    return run


def interruptible() -> None:
    """`preexec_fn` for a command the test will Ctrl-C: SIGINT as a terminal leaves it. A test run
    started in the background by a non-interactive shell (as CI may be) ignores SIGINT, and every
    process it starts would inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def from_a_terminal() -> dict:
    """Popen keyword arguments for a command the test interrupts like a user at a terminal."""
    return {"preexec_fn": interruptible}
