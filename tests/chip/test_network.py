"""NetworkSpec: one or several hidden layers, their names, weight matrices and canonical form."""

from __future__ import annotations

import numpy as np
import pytest

from chiploop.chip.network import NetworkSpec
from chiploop.errors import ChipError


def test_one_layer_keeps_its_names_and_form() -> None:
    spec = NetworkSpec(4, (8,), 2, recurrent=[True])
    assert spec == NetworkSpec(4, 8, 2, recurrent=True)
    assert (spec.n_hidden, spec.recurrent, spec.layer_names) == (8, True, ("hidden",))
    assert list(spec.weight_shapes()) == ["in_hidden", "hidden_hidden", "hidden_out"]


def test_layers_are_named_and_stored_input_side_first() -> None:
    spec = NetworkSpec(4, [8, 6, 3], 2, recurrent=(False, True, False))
    assert spec.layer_names == ("hidden", "hidden2", "hidden3")
    assert spec.weight_shapes() == {
        "in_hidden": (4, 8),
        "hidden_hidden2": (8, 6),
        "hidden2_hidden2": (6, 6),
        "hidden2_hidden3": (6, 3),
        "hidden3_out": (3, 2),
    }
    assert (spec.n_hidden_total, spec.n_neurons, spec.n_hidden) == (17, 19, (8, 6, 3))
    assert NetworkSpec(4, (8, 6), 2, recurrent=(True, True)).recurrent is True  # agreeing flags: one bool


def test_by_layer_splits_the_hidden_neurons() -> None:
    spec = NetworkSpec(4, (3, 2), 1)
    parts = spec.by_layer(np.arange(10).reshape(2, 5))
    assert sorted(parts) == ["hidden", "hidden2"]
    np.testing.assert_array_equal(parts["hidden2"], [[3, 4], [8, 9]])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_hidden": ()}, "1 to 4 hidden layers, got 0"),
        ({"n_hidden": (2,) * 5}, "1 to 4 hidden layers, got 5"),
        ({"n_hidden": (4, 0)}, "n_hidden must be a positive int, got 0"),
        ({"n_hidden": (4, 4), "recurrent": (True,)}, "one bool per hidden layer (2)"),
        ({"n_hidden": (4, 4), "synapses": 2}, "2 synaptic currents need a single hidden layer"),
    ],
)
def test_bad_layers_are_refused_naming_the_field(kwargs: dict, message: str) -> None:
    with pytest.raises(ChipError, match=message.replace("(", r"\(").replace(")", r"\)")):
        NetworkSpec(**({"n_in": 3, "n_hidden": 4, "n_out": 2} | kwargs))
