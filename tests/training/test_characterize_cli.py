"""`chiploop characterize` refuses bad input with one line and exit code 2, before any work."""

import time

import pytest
from typer.testing import CliRunner

from chiploop.cli import app


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--sweep", "noise.read.nope=0,1"], "noise.read.nope"),
        (["--sweep", "weights.bits=a,b"], "weights.bits"),
        (["--sweep", "noise.read.sigma=-1"], "noise.read.sigma"),
        (["--sweep", "noise.read.sigma=0", "--estimators", ""], "empty grid"),
        (["--sweep", "noise.read.sigma=0", "--estimators", "sgd"], "valid estimators"),
        (["--sweep", "noise.read.sigma=0", "--task", "mnist"], "valid tasks"),
        (["--sweep", "noise.read.sigma=0", "--kind", "both"], "--kind"),
        (["--sweep", "noise.read.sigma=0", "--scheduler", "tcp://127.0.0.1:9"], "unreachable"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, needle):
    start = time.perf_counter()
    result = CliRunner().invoke(app, ["characterize", *args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()
    assert time.perf_counter() - start < 15
