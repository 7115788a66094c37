"""Boards for the bridge tests: the simulator as a separate process (pty or tcp) or in a thread."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chiploop.firmware_bridge.board_sim import Board


class BoardProcess:
    """`chiploop board serve` in a child process; `url` is what it printed."""

    def __init__(self, *args: str) -> None:
        cmd = [sys.executable, "-m", "chiploop.firmware_bridge.board_sim", *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        self.url = self.proc.stdout.readline().strip()
        if not self.url:
            self.proc.kill()
            raise RuntimeError(f"board simulator did not start: {cmd}")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def start_board() -> Iterator:
    """Factory: start_board("--pty", "--state", path) -> BoardProcess; all are killed at teardown."""
    started: list[BoardProcess] = []

    def start(*args: str) -> BoardProcess:
        started.append(BoardProcess(*args))
        return started[-1]

    yield start
    for board in started:
        if board.proc.poll() is None:
            board.kill()


@pytest.fixture(params=["--pty", "--tcp"])
def board_url(request: pytest.FixtureRequest, start_board) -> str:
    """A fresh simulated board on a pty or on tcp."""
    args = ("--pty",) if request.param == "--pty" else ("--tcp", "127.0.0.1:0")
    return start_board(*args).url


def serve_in_thread(board: Board | None) -> str:
    """Serve `board` (None: a mute peer that never answers) on a tcp port in a daemon thread."""
    server = socket.create_server(("127.0.0.1", 0))

    def loop() -> None:
        while True:
            conn, _ = server.accept()
            with conn:
                while data := conn.recv(4096):
                    if board is not None:
                        conn.sendall(board.feed(data))

    threading.Thread(target=loop, daemon=True).start()
    return f"socket://127.0.0.1:{server.getsockname()[1]}"


@pytest.fixture
def serve() -> Callable[[Board | None], str]:
    """serve(board) -> socket URL of that board served in a thread (None: a peer that never answers)."""
    return serve_in_thread


@pytest.fixture
def state_file(tmp_path: Path) -> Path:
    return tmp_path / "board_state.npz"
