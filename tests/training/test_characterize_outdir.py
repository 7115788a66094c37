"""`chiploop characterize --out`: one sweep per directory, resumed or refused, never mixed; one
writer; write failures as one line; every results column documented.

Two real sweeps run once per module (tiny: teacher task on the twin, 4 hidden neurons, no training
epoch); the tests work on copies of them.
"""

import errno
import os
import re
import shutil
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner, Result

from chiploop.chip_profiles import load_profile
from chiploop.cli import app
from chiploop.training.sweep_plots import PLOT_FILES

DOC = Path(__file__).resolve().parents[2] / "docs" / "characterize.md"
TINY = ["--profile", "rram_crossbar", "--task", "teacher", "--estimators", "bptt", "--seeds", "1"]
TINY += ["--epochs", "0", "--hidden", "4", "--target", "twin", "--workers", "1"]
DEPLOY_FIELDS = ["noise.read.sigma", "weights.bits"]
DEPLOY = [*TINY, "--kind", "deploy", "--sweep", "noise.read.sigma=0,0.5", "--sweep", "weights.bits=4,8"]
TRAIN_FIELDS = ["noise.read.sigma"]
TRAIN = [*TINY, "--kind", "train", "--sweep", "noise.read.sigma=0,0.5"]


def characterize(out: Path, args: list[str]) -> Result:
    return CliRunner().invoke(app, ["characterize", *args, "--out", str(out)])


BAR = re.compile(r"^(models|cells)\s+━")


def one_error_line(result: Result) -> str:
    """The single `error:` line of a refused command (exit 2, nothing else but progress bars printed)."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip() and not BAR.match(line)]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    return lines[0]


def header(path: Path) -> list[str]:
    return path.read_text().splitlines()[0].split(",")


def rows(path: Path) -> list[str]:
    return path.read_text().splitlines()[1:]


@pytest.fixture(scope="module")
def deploy_sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result]:
    out = tmp_path_factory.mktemp("deploy") / "out"
    return out, characterize(out, DEPLOY)


@pytest.fixture(scope="module")
def train_over_deploy(deploy_sweep, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result]:
    """A train sweep run with --overwrite into a copy of the deploy sweep."""
    out = tmp_path_factory.mktemp("train") / "out"
    shutil.copytree(deploy_sweep[0], out)
    return out, characterize(out, [*TRAIN, "--overwrite"])


@pytest.fixture
def deploy_copy(deploy_sweep, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(deploy_sweep[0], out)
    return out


def test_deploy_sweep_writes_its_files_with_progress_on_stderr(deploy_sweep):
    out, result = deploy_sweep
    assert result.exit_code == 0, result.output
    assert "results:" in result.stdout and not any(BAR.match(line) for line in result.stdout.splitlines())
    assert re.search(r"^models\s+━+ 1/1", result.stderr, re.M) and re.search(
        r"^cells\s+━+ 4/4", result.stderr, re.M
    )
    assert len(rows(out / "results.csv")) == 4 and len(rows(out / "models.csv")) == 1
    assert yaml.safe_load((out / "sweep.yaml").read_text())["sweep"] == [
        "noise.read.sigma=0,0.5",
        "weights.bits=4,8",
    ]
    plots = sorted(p.name for p in out.glob("*.png"))
    assert "heatmap_bptt.png" in plots and "bias_vs_variance.png" in plots
    assert all(any(fnmatch(p, pattern) for pattern in PLOT_FILES) for p in plots)  # --overwrite finds them


def test_deploy_rows_name_their_model_instead_of_repeating_its_figures(deploy_sweep):
    out, _ = deploy_sweep
    results = header(out / "results.csv")
    assert results[-3:] == ["test_metric", "test_metric_std", "model"]
    assert not {"variance", "bias_norm", "gen_gap", "lambda_max"} & set(results)
    assert {"variance", "bias_norm", "gen_gap", "lambda_max"} <= set(header(out / "models.csv"))
    assert {row.split(",")[-1] for row in rows(out / "results.csv")} == {"|bptt|0"}
    assert rows(out / "models.csv")[0].startswith("|bptt|0,")


def documented(table: str) -> dict[str, str]:
    """column -> last cell of its row in the docs' table under `### {table}`."""
    section = DOC.read_text().split(f"### {table}\n", 1)[1].split("\n#", 1)[0]
    columns = {}
    for line in section.splitlines():
        name = re.match(r"\| `([^`]+)` \|", line)
        if name:
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line) if c.strip()]
            columns[name.group(1)] = cells[-1]
    return columns


def generic(column: str, fields: list[str]) -> str:
    """A written column as the docs name it: `FIELD` for a swept field, `x[LAYER]` per layer."""
    return "FIELD" if column in fields else re.sub(r"\[[^\]]+\]$", "[LAYER]", column)


def test_every_column_written_is_documented_with_the_sweeps_that_write_it(deploy_sweep, train_over_deploy):
    written: dict[str, set[str]] = {}
    for kind, out, fields in (
        ("deploy", deploy_sweep[0], DEPLOY_FIELDS),
        ("train", train_over_deploy[0], TRAIN_FIELDS),
    ):
        for column in header(out / "results.csv"):
            written.setdefault(generic(column, fields), set()).add(kind)
    assert {c: ", ".join(sorted(kinds)) for c, kinds in written.items()} == documented("results.csv")
    models = {generic(c, []) for c in header(deploy_sweep[0] / "models.csv")}
    assert models == set(documented("models.csv"))


def test_overwrite_replaces_the_previous_sweep_entirely(train_over_deploy):
    out, result = train_over_deploy
    assert result.exit_code == 0, result.output
    assert yaml.safe_load((out / "sweep.yaml").read_text())["kind"] == "train"
    assert [r.split(",")[0] for r in rows(out / "results.csv")] == [
        "noise.read.sigma=0.5|bptt|0",
        "noise.read.sigma=0|bptt|0",
    ]
    assert not (out / "models.csv").exists()
    assert sorted(p.name for p in out.glob("*.png")) == [
        "bias_vs_variance.png",
        "lambda_max_vs_gap.png",
        "metric_vs_energy.png",
        "metric_vs_noise.read.sigma.png",
    ]
    assert len(list((out / "cells").iterdir())) == 2  # the deploy sweep's model is gone


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (["--epochs", "1"], "epochs: 0 → 1"),
        (["--kind", "train"], "kind: deploy → train"),
        (["--estimators", "bptt,eprop"], "estimators: [bptt] → [bptt eprop]"),
        (["--sweep", "noise.read.sigma=0,0.2", "--sweep", "weights.bits=4,8"], "noise.read.sigma=0,0.2"),
        (["--profile", "{slower}"], "profile.neuron.tau_mem_s: 0.02 → 0.03"),
    ],
)
def test_a_different_sweep_is_refused_with_what_differs(deploy_copy, tmp_path, change, needle):
    profile = load_profile("rram_crossbar").model_dump(mode="json")
    profile["neuron"]["tau_mem_s"] = 0.03
    (tmp_path / "slower.yaml").write_text(yaml.safe_dump(profile))
    change = [c.format(slower=tmp_path / "slower.yaml") for c in change]
    before = {p: p.read_bytes() for p in (deploy_copy / "results.csv", deploy_copy / "sweep.yaml")}
    args = DEPLOY if "--sweep" not in change else [a for a in DEPLOY if "=" not in a and a != "--sweep"]
    line = one_error_line(characterize(deploy_copy, [*args, *change]))
    assert "holds another sweep" in line and needle in line and "--overwrite" in line
    assert {p: p.read_bytes() for p in before} == before


def test_sweep_files_without_sweep_yaml_are_refused(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.csv").write_text("cell,estimator,seed,test_metric\nold|bptt|0,bptt,0,0.5\n")
    line = one_error_line(characterize(out, DEPLOY))
    assert "no sweep.yaml" in line and "results.csv" in line
    assert (out / "results.csv").read_text().endswith("old|bptt|0,bptt,0,0.5\n")


HOLD = """
import sys
from pathlib import Path
from chiploop.outdir import claim
with claim(Path(sys.argv[1]), "sweep directory"):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_a_second_writer_is_refused(tmp_path):
    out = tmp_path / "out"
    hold = "import sys; from pathlib import Path; from chiploop.outdir import claim\n"
    hold += (
        "with claim(Path(sys.argv[1]), 'sweep directory'):\n    print('held', flush=True); sys.stdin.read()"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", hold, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        line = one_error_line(characterize(out, DEPLOY))
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert "in use by another chiploop process" in line
    assert not (out / "sweep.yaml").exists()


def test_an_out_that_cannot_be_created_is_one_line(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    line = one_error_line(characterize(tmp_path / "file" / "out", DEPLOY))
    assert line.startswith("error: cannot write") and "file" in line


def test_a_read_only_out_is_one_line_and_keeps_the_results(deploy_copy, own_mount):
    (deploy_copy / ".lock").unlink()
    results = (deploy_copy / "results.csv").read_bytes()
    command = " ".join(['"$PY" -m chiploop characterize', *DEPLOY, "--out", '"$D"'])
    report = own_mount(
        f"""set -e
mount --bind {deploy_copy} "$D" && mount -o remount,ro,bind "$D"
set +e; {command} > /dev/null 2> "$D/../err"; RC=$?; set -e
"$PY" -c 'import json, sys; print(json.dumps({{"rc": int(sys.argv[1]), "err": open(sys.argv[2]).read()}}))' \\
  $RC "$D/../err"
"""
    )
    lines = [line for line in report["err"].splitlines() if line.strip() and not BAR.match(line)]
    assert report["rc"] == 2 and len(lines) == 1, report["err"]
    assert lines[0].startswith("error: cannot write") and "Read-only file system" in lines[0], lines
    assert (deploy_copy / "results.csv").read_bytes() == results


@pytest.mark.slow
def test_a_full_disk_is_one_line_keeps_the_last_good_results_and_the_sweep_resumes(deploy_copy, monkeypatch):
    results = deploy_copy / "results.csv"
    complete = results.read_bytes()
    results.write_text("\n".join(results.read_text().splitlines()[:-1]) + "\n")  # the last cell unsaved
    last_good = results.read_bytes()
    checkpoint = next((deploy_copy / "cells").iterdir()) / "checkpoint.pt"
    trained = checkpoint.stat().st_mtime_ns
    replace = os.replace

    def full_disk(src, dst):  # noqa: ANN001, ANN202 - os.replace's signature
        if Path(dst).name == "results.csv":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        replace(src, dst)

    monkeypatch.setattr(os, "replace", full_disk)
    line = one_error_line(characterize(deploy_copy, DEPLOY))
    assert line == f"error: cannot write {results}: {os.strerror(errno.ENOSPC)}"
    assert results.read_bytes() == last_good
    assert not [p.name for p in deploy_copy.iterdir() if ".tmp" in p.name]
    monkeypatch.undo()
    result = characterize(deploy_copy, DEPLOY)
    assert result.exit_code == 0, result.output
    assert results.read_bytes() == complete  # the missing cell, computed again, identically
    assert checkpoint.stat().st_mtime_ns == trained  # the model was not trained again


def test_a_sweep_of_a_layered_network_resumes_as_the_same_sweep(tmp_path) -> None:
    """`--hidden 4,3`: two hidden layers in every cell; sweep.yaml reads back as the same sweep."""
    args = [*TINY[: TINY.index("--hidden")], "--hidden", "4,3", *TINY[TINY.index("--hidden") + 2 :]]
    args += ["--kind", "deploy", "--sweep", "weights.bits=4,8"]
    first = characterize(tmp_path / "out", args)
    assert first.exit_code == 0, first.output
    assert yaml.safe_load((tmp_path / "out" / "sweep.yaml").read_text())["n_hidden"] == [4, 3]
    assert len(rows(tmp_path / "out" / "results.csv")) == 2
    again = characterize(tmp_path / "out", args)
    assert again.exit_code == 0, again.output
    assert len(rows(tmp_path / "out" / "results.csv")) == 2
