"""Fixtures shared across the test tree: the reference C firmware, built once and served on a pty."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
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
