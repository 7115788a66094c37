"""`chiploop train` never loses a run: no silent replacement, one writer per run directory, write
failures as one line with the last checkpoint intact, Ctrl-C saying what was saved, and options that
would do nothing refused or warned about. Real processes, real full and read-only filesystems."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from chiploop.cli import app
from chiploop.training.runs import CHECKPOINT, METRICS, RunDir

runner = CliRunner()
FAST = ["--profile", "ideal", "--task", "teacher", "--target", "twin", "--hidden", "16"]
QUIET = ["--batch-size", "256", "--no-progress", "--no-plots"]
CHIPLOOP = [sys.executable, "-m", "chiploop"]


def train(*args: str) -> tuple[int, list[str]]:
    result = runner.invoke(app, ["train", *args])
    return result.exit_code, result.output.strip().splitlines()


def one_error(code: int, lines: list[str], *fragments: str) -> None:
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for fragment in fragments:
        assert fragment in lines[0], lines


def test_a_second_run_into_the_same_out_is_refused_and_overwrite_replaces_it(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert train(*FAST, *QUIET, "--out", str(out), "--epochs", "1")[0] == 0
    before = (out / METRICS).read_text()
    code, lines = train(*FAST, *QUIET, "--out", str(out), "--epochs", "2", "--seed", "1")
    one_error(code, lines, f"run directory {out} already holds a run", "--resume", "--overwrite")
    assert (out / METRICS).read_text() == before, "the refused run must not touch the old one"
    assert train(*FAST, *QUIET, "--out", str(out), "--epochs", "2", "--seed", "1", "--overwrite")[0] == 0
    assert [r["epoch"] for r in RunDir(out).read_rows(METRICS)] == [0, 1, 2]
    assert RunDir(out).read_config()["seed"] == 1


def test_default_run_names_keep_runs_that_differ_apart(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    for extra in ([], ["--mode", "offline"], [], ["--hidden", "8"]):
        code, lines = train(*FAST, *QUIET, "--epochs", "0", *extra)
        assert code == 0, lines
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert runs == [
        "ideal-teacher-bptt-in_the_loop-h16-s0",
        "ideal-teacher-bptt-in_the_loop-h16-s0-2",  # the same command twice: a second run, not a replacement
        "ideal-teacher-bptt-in_the_loop-h8-s0",
        "ideal-teacher-bptt-offline-h16-s0",
    ]


def test_a_run_in_use_by_another_process_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert train(*FAST, *QUIET, "--out", str(out), "--epochs", "1")[0] == 0
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time; from pathlib import Path; from chiploop.outdir import claim\n"
         f"with claim(Path({str(out)!r}), 'run directory'):\n print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        code, lines = train("--resume", "--out", str(out), "--epochs", "2", *QUIET[2:])
        one_error(code, lines, f"run directory {out} is in use by another chiploop process")
    finally:
        holder.kill()
        holder.wait()
    assert [r["epoch"] for r in RunDir(out).read_rows(METRICS)] == [0, 1]


def test_two_concurrent_resumes_write_every_epoch_once(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert train(*FAST, *QUIET, "--out", str(out), "--epochs", "1")[0] == 0
    resume = [*CHIPLOOP, "train", "--resume", "--out", str(out), "--epochs", "4", *QUIET[2:]]
    procs = [subprocess.Popen(resume, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    codes = [p.wait(timeout=300) for p in procs]
    errors = [p.stderr.read() for p in procs]
    assert 0 in codes, errors
    for code, err in zip(codes, errors, strict=True):
        assert code == 0 or (code == 2 and "is in use by another chiploop process" in err), err
    assert [r["epoch"] for r in RunDir(out).read_rows(METRICS)] == [0, 1, 2, 3, 4]


def test_a_run_killed_before_its_first_checkpoint_resumes_from_scratch(tmp_path: Path) -> None:
    out = tmp_path / "run"
    from chiploop.training.loop import Trainer

    trainer = Trainer("ideal", task="teacher", target="twin", n_hidden=16, out_dir=out, progress=False)
    trainer.run.write_config(trainer.config())  # what a kill right after the run's first write leaves
    assert not (out / CHECKPOINT).exists()
    code, lines = train("--resume", "--out", str(out), "--epochs", "1", *QUIET[2:])
    assert code == 0, lines
    assert [r["epoch"] for r in RunDir(out).read_rows(METRICS)] == [0, 1]


def test_resume_refuses_options_its_config_sets_and_epochs_it_already_has(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert train(*FAST, *QUIET, "--out", str(out), "--epochs", "2")[0] == 0
    code, lines = train("--resume", "--out", str(out), "--profile", "xylo", "--lr", "0.1", *QUIET[2:])
    one_error(code, lines, "--profile, --lr cannot be combined with --resume", "config.yaml sets them")
    code, lines = train("--resume", "--out", str(out), "--epochs", "1", *QUIET[2:])
    one_error(code, lines, "has 2 epochs done: epochs=1 would train none")
    assert [r["epoch"] for r in RunDir(out).read_rows(METRICS)] == [0, 1, 2]


def test_eprop_without_recurrence_says_it_equals_bptt(tmp_path: Path) -> None:
    args = [*FAST, *QUIET, "--epochs", "0", "--estimator", "eprop"]
    code, lines = train(*args, "--out", str(tmp_path / "ff"))
    assert code == 0, lines
    assert [line for line in lines if line.startswith("warning:")] == [
        "warning: estimator eprop equals bptt on a network without recurrence (it only cuts the gradient"
        " through W_rec): train a recurrent network (--recurrent) to see a difference"
    ]
    code, lines = train(*args, "--out", str(tmp_path / "rec"), "--recurrent")
    assert code == 0 and not any(line.startswith("warning:") for line in lines), lines


def test_ctrl_c_says_what_was_saved_and_the_run_resumes(tmp_path: Path, from_a_terminal: dict) -> None:
    out = tmp_path / "run"
    cmd = [*CHIPLOOP, "train", *FAST, "--task-option", "n_train=4096", "--out", str(out), "--epochs", "50"]
    proc = subprocess.Popen(
        [*cmd, *QUIET], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **from_a_terminal
    )
    deadline = time.monotonic() + 120
    # the row of epoch 2 is written after the checkpoint of epoch 1: from then on epoch >= 1 is saved
    while not (out / METRICS).exists() or len((out / METRICS).read_text().splitlines()) < 4:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, (stdout, stderr)
    saved = RunDir(out).load_checkpoint()["epoch"]
    assert stderr.strip().splitlines() == [
        f"interrupted: epoch {saved} of 50 is saved; continue with chiploop train --resume --out {out}"
    ]
    assert saved >= 1 and not [p for p in out.iterdir() if ".tmp" in p.name]
    code, lines = train("--resume", "--out", str(out), "--epochs", str(saved + 1), *QUIET[2:])
    assert code == 0, lines
    assert [r["epoch"] for r in RunDir(out).read_rows(METRICS)] == list(range(saved + 2))


# -------------------------------------------------------------- real full and read-only filesystems
REPORT = """
"$PY" - <<'EOF'
import json, os, sys
from chiploop.training.runs import RunDir
run = RunDir(os.environ["D"] + "/run")
files = sorted(os.listdir(run.path)) if run.path.is_dir() else []
epoch = run.load_checkpoint()["epoch"] if run.has_checkpoint() else None
print(json.dumps({"rc": int(os.environ["RC"]), "err": open(os.environ["ERR"]).read(), "files": files,
                  "epoch": epoch}))
EOF
"""


def test_a_full_disk_is_one_line_and_keeps_the_last_good_checkpoint(own_mount) -> None:
    train_cmd = " ".join([*CHIPLOOP, "train", *FAST, *QUIET, "--out", '"$D/run"'])
    report = own_mount(
        f"""set -e
mount -t tmpfs -o size=1m tmpfs "$D"
{train_cmd} --epochs 1 > /dev/null
head -c 2000000 /dev/zero > "$D/filler" 2>/dev/null || true
ERR="$D/../err"; export ERR
set +e; "$PY" -m chiploop train --resume --out "$D/run" --epochs 3 --no-progress --no-plots 2> "$ERR"
RC=$?; export RC; set -e
{REPORT}"""
    )
    lines = report["err"].strip().splitlines()
    one_error(report["rc"], lines, "cannot write", "No space left on device")
    assert report["epoch"] == 1, "the last good checkpoint must survive"
    assert not [f for f in report["files"] if ".tmp" in f], report["files"]


def test_a_read_only_out_is_one_line_and_leaves_nothing(own_mount, tmp_path: Path) -> None:
    report = own_mount(
        f"""set -e
mount -t tmpfs -o ro,size=1m tmpfs "$D"
ERR="$D/../err"; export ERR
set +e; {" ".join([*CHIPLOOP, "train", *FAST, *QUIET])} --epochs 1 --out "$D/run" 2> "$ERR"
RC=$?; export RC; set -e
{REPORT}"""
    )
    one_error(report["rc"], report["err"].strip().splitlines(), f"cannot write {tmp_path}/d/run", "Read-only")
    assert report["files"] == []
