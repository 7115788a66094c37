"""Bad NIR input: one line naming the node and field, exit code 2, nothing written."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from chiploop.chip_profiles.loader import load_profile
from chiploop.cli import app
from chiploop.interchange.chain import to_chain
from chiploop.interchange.deploy import violations
from chiploop.interchange.mapping import map_chain
from chiploop.interchange.nirfile import NirError, read_nir

runner = CliRunner()
rng = np.random.default_rng(0)


def _lif(n: int, **over) -> dict:
    node = {"type": "LIF", "tau": np.full(n, 0.01), "r": np.ones(n), "v_leak": np.zeros(n),
            "v_threshold": np.full(n, 0.5), "v_reset": np.zeros(n)}  # fmt: skip
    return {**node, **over}


def _affine(n_out: int, n_in: int) -> dict:
    return {"type": "Affine", "weight": rng.normal(size=(n_out, n_in)), "bias": np.zeros(n_out)}


def _graph(hidden: int = 5, **replace) -> tuple[dict, list]:
    """Input(4) -> 0 Affine -> 1 LIF -> 2 Affine -> 3 LI -> Output(3), nodes replaced by `replace`."""
    nodes = {
        "input": {"type": "Input", "shape": np.array([4])},
        "0": _affine(hidden, 4),
        "1": _lif(hidden),
        "2": _affine(3, hidden),
        "3": {"type": "LI", "tau": np.full(3, 0.02), "r": np.ones(3), "v_leak": np.zeros(3)},
        "output": {"type": "Output", "shape": np.array([3])},
    }
    nodes.update(replace)
    edges = [("input", "0"), ("0", "1"), ("1", "2"), ("2", "3"), ("3", "output")]
    return nodes, edges


def _write(path: Path, nodes: dict, edges: list) -> Path:
    """A NIR file in the layout `nir.write` produces, written directly so that malformed graphs can be."""

    def group(g, data: dict) -> None:
        for k, v in data.items():
            if isinstance(v, dict):
                group(g.create_group(k), v)
            elif isinstance(v, str):
                g.create_dataset(k, data=v, dtype=h5py.string_dtype())
            else:
                g.create_dataset(k, data=v)

    with h5py.File(path, "w") as f:
        f.create_dataset("version", data="1.0.8", dtype=h5py.string_dtype())
        node = f.create_group("node")
        group(node, {"type": "NIRGraph", "nodes": nodes})
        node.create_dataset("edges", data=np.array(edges, dtype=object), dtype=h5py.string_dtype())
    return path


def _deploy(tmp_path: Path, model: Path) -> tuple[int, str]:
    out = tmp_path / "report"
    result = runner.invoke(
        app, ["deploy", str(model), "--profile", "ideal", "--task", "pattern", "--out", str(out)]
    )
    assert not out.exists(), "nothing may be written on failure"
    return result.exit_code, result.stderr.strip()


def test_a_good_graph_imports(tmp_path):
    chain = to_chain(read_nir(_write(tmp_path / "ok.nir", *_graph())))
    assert [layer.kind for layer in chain.layers] == ["LIF", "LI"] and chain.n_in == 4


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("unsupported", "node '1' field type: Delay is not supported"),
        ("shape", "node '2' field weight: expected 5 inputs"),
        ("per_neuron", "node '1' field v_threshold: expected 5 values (one per neuron), got shape (4,)"),
        ("cycle", "field edges: a cycle through it, other than a layer's own recurrence"),
        ("nan", "node '1' field tau: NaN or infinite values"),
        ("inf", "node '2' field weight: NaN or infinite values"),
        ("tau_below_dt", "node '1' field tau: 1e-05 s is not longer than the step dt 0.001 s"),
        ("five_hidden", "graph: 5 hidden layers, chiploop runs 1 to 4"),
    ],
)
def test_bad_graph_is_one_line_naming_node_and_field(tmp_path, case, expected):
    if case == "unsupported":
        nodes, edges = _graph(**{"1": {"type": "Delay", "delay": np.ones(5)}})
    elif case == "shape":
        nodes, edges = _graph(**{"2": _affine(3, 7)})
    elif case == "per_neuron":
        nodes, edges = _graph(**{"1": _lif(5, v_threshold=np.full(4, 0.5))})
    elif case == "cycle":
        nodes, edges = _graph()
        nodes["back"] = _affine(5, 3)
        edges += [("3", "back"), ("back", "1")]
    elif case == "nan":
        nodes, edges = _graph(**{"1": _lif(5, tau=np.array([0.01, np.nan, 0.01, 0.01, 0.01]))})
    elif case == "inf":
        w = rng.normal(size=(3, 5))
        w[0, 0] = np.inf
        nodes, edges = _graph(**{"2": {"type": "Linear", "weight": w}})
    elif case == "tau_below_dt":  # what norse 1.1.0's to_nir writes with its default dt (tau x 1e-3)
        nodes, edges = _graph(**{"1": _lif(5, tau=np.full(5, 1e-5))})
    else:  # five hidden layers of 5: input -> 0 -> 1 -> (wk -> lk) x 4 -> 2 -> 3 -> output
        nodes, edges = _graph()
        chain = ["input", "0", "1"]
        for k in range(4):
            nodes[f"w{k}"], nodes[f"l{k}"] = _affine(5, 5), _lif(5)
            chain += [f"w{k}", f"l{k}"]
        chain += ["2", "3", "output"]
        edges = list(zip(chain[:-1], chain[1:], strict=True))
    code, err = _deploy(tmp_path, _write(tmp_path / "bad.nir", nodes, edges))
    assert code == 2
    assert len(err.splitlines()) == 1 and expected in err, err


def test_not_nir_files_are_one_line(tmp_path):
    text = tmp_path / "model.nir"
    text.write_text("this is not a NIR file\n")
    code, err = _deploy(tmp_path, text)
    assert code == 2 and "not a NIR file (no HDF5 signature)" in err and len(err.splitlines()) == 1
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    code, err = _deploy(tmp_path, other)
    assert code == 2 and "not a NIR file (HDF5 without a 'node' group)" in err


def test_a_file_above_the_size_cap_is_refused_before_it_is_read(tmp_path):
    path = _write(tmp_path / "ok.nir", *_graph())
    with pytest.raises(NirError, match=r"bytes, above the size cap of 100 bytes"):
        read_nir(path, max_bytes=100)


def test_a_network_that_breaks_a_design_rule_names_layer_rule_and_limit(tmp_path):
    path = _write(tmp_path / "wide.nir", *_graph(hidden=1100))
    mapped = map_chain(to_chain(read_nir(path)), load_profile("xylo"))
    [error] = violations(mapped)
    assert error.rule == "max_neurons" and error.limit == 1008 and "1100 hidden" in str(error)


def test_deploy_refuses_an_out_directory_that_holds_files(tmp_path):
    out = tmp_path / "report"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    model = _write(tmp_path / "ok.nir", *_graph())
    result = runner.invoke(
        app, ["deploy", str(model), "--profile", "ideal", "--task", "pattern", "--out", str(out)]
    )
    assert result.exit_code == 2 and "already holds files (keep.txt)" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
