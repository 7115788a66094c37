"""`chiploop characterize` in a real process: Ctrl-C says what was saved and exits 130, SIGKILL of
the command leaves no worker behind; in both cases every process it started is gone."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

psutil = pytest.importorskip("psutil")

# Enough cells of about a second each that the sweep is far from done when the first is saved
# (with cells of a few milliseconds the sweep could end before the signal arrives).
SIGMAS, SEEDS = 6, 4
CELLS = SIGMAS * SEEDS
SWEEP = [
    *("characterize", "--profile", "rram_crossbar", "--task", "teacher", "--kind", "train"),
    *("--sweep", "noise.read.sigma=" + ",".join(str(i / 10) for i in range(SIGMAS))),
    *("--estimators", "bptt", "--seeds", str(SEEDS), "--epochs", "1", "--hidden", "4", "--target", "twin"),
    *("--workers", "2"),
]


def start(out: Path, **popen: object) -> subprocess.Popen:
    """The sweep in its own session (a terminal's Ctrl-C reaches the whole process group); output
    to files, which processes outliving the command cannot hold open for the test."""
    with (out.parent / "stdout").open("w") as stdout, (out.parent / "stderr").open("w") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "chiploop", *SWEEP, "--out", str(out)],
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
            **popen,
        )


def wait_for(condition, proc: subprocess.Popen, timeout: float = 180) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, (Path(proc.args[-1]).parent / "stderr").read_text()
        if condition():
            return
        assert time.monotonic() < deadline, "the sweep never got that far"
        time.sleep(0.05)


def descendants(proc: subprocess.Popen) -> list:
    """Every process the command started (pool workers, multiprocessing's resource tracker)."""
    return psutil.Process(proc.pid).children(recursive=True)


def pool_workers(proc: subprocess.Popen) -> list:
    def is_worker(p) -> bool:  # noqa: ANN001
        try:
            return "--multiprocessing-fork" in p.cmdline()
        except psutil.NoSuchProcess:
            return False

    return [p for p in descendants(proc) if is_worker(p)]


def alive(procs: list) -> list:
    def running(p) -> bool:  # noqa: ANN001
        try:
            return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    return [p for p in procs if running(p)]


def assert_all_gone(procs: list, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while alive(procs) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = alive(procs)
    for p in left:  # do not leak them into the rest of the test session
        p.kill()
    assert not left, f"still running {within} s later: {[' '.join(p.cmdline()) for p in left]}"


def results_rows(out: Path) -> int:
    path = out / "results.csv"
    return len(path.read_text().splitlines()) - 1 if path.exists() else 0


@pytest.mark.slow
def test_ctrl_c_stops_the_workers_says_what_was_saved_and_exits_130(tmp_path, from_a_terminal):
    out = tmp_path / "out"
    proc = start(out, **from_a_terminal)
    wait_for(lambda: results_rows(out) >= 1 and len(pool_workers(proc)) == 2, proc)
    procs = descendants(proc)
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    assert_all_gone(procs)
    saved = results_rows(out)
    assert saved < CELLS
    stderr = (tmp_path / "stderr").read_text()
    assert "Traceback" not in stderr
    said = [line for line in stderr.splitlines() if line.startswith("interrupted:")]
    assert said == [
        f"interrupted: {saved} of {CELLS} cells saved in {out / 'results.csv'}; run the same command again"
        " to resume"
    ]


@pytest.mark.slow
def test_workers_do_not_outlive_a_killed_sweep(tmp_path):
    out = tmp_path / "out"
    proc = start(out)
    # Workers run: both started and one has begun training its cell.
    wait_for(lambda: (out / "cells").is_dir() and any((out / "cells").iterdir()), proc)
    wait_for(lambda: len(pool_workers(proc)) == 2, proc)
    procs = descendants(proc)
    proc.kill()
    assert proc.wait(timeout=30) == -signal.SIGKILL
    assert_all_gone(procs)
