"""The command line and the package follow the field's conventions: `-h`, plain-word metavars, progress
on stderr and results on stdout, a light `import chiploop` whose main names are at the root."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

import chiploop
from chiploop.cli import app

runner = CliRunner()
COMMANDS = [
    [],
    ["train"],
    ["characterize"],
    ["deploy"],
    ["export"],
    ["profiles", "show"],
    ["board", "serve"],
    ["reproduce", "list"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "chiploop")
def test_every_command_takes_h_and_shows_plain_word_metavars(command: list[str]) -> None:
    short, long = (runner.invoke(app, [*command, flag], env={"COLUMNS": "160"}) for flag in ("-h", "--help"))
    assert short.exit_code == 0 and short.output == long.output, short.output
    assert "Usage:" in short.output
    assert not re.search(r"<(str|int|float|bool|Path|list)", short.output), short.output


def test_train_help_names_value_kinds() -> None:
    text = runner.invoke(app, ["train", "-h"], env={"COLUMNS": "160"}).output
    kinds = {"--profile": "TEXT", "--epochs": "INTEGER", "--lr": "FLOAT", "--out": "PATH"}
    for option, metavar in kinds.items():
        assert re.search(rf"{option}\s+{metavar}\s", text), (option, text)
    assert re.search(r"--resume\s+--no-resume\s+continue the run", text), text  # a flag: no metavar


def test_progress_goes_to_stderr_and_the_results_to_stdout(tmp_path) -> None:
    args = ["train", "--profile", "ideal", "--task", "teacher", "--target", "twin", "--hidden", "16"]
    cmd = [sys.executable, "-m", "chiploop", *args, "--epochs", "1", "--no-plots", "--out", f"{tmp_path}/r"]
    env = os.environ | {"COLUMNS": "120"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert "batches" in done.stderr and "batches" not in done.stdout
    assert "training on the chip" in done.stdout and "after 1 epoch (on the chip)" in done.stdout


def test_import_chiploop_is_light_and_the_main_names_are_at_the_root() -> None:
    code = "import sys, chiploop; print('torch' in sys.modules, 'brian2' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.split() == [
        "False",
        "False",
    ]
    for name in ("Trainer", "load_profile", "NetworkSpec", "open_chip", "ScaledReadout", "init_weights"):
        assert name in dir(chiploop)
        getattr(chiploop, name)
    assert chiploop.load_profile("xylo").name == "xylo"


def test_the_command_line_starts_without_torch() -> None:
    code = "import sys; import chiploop.cli; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr
