"""Which networks a profile hosts: `largest_hidden` is the design rules' own boundary, and `suggest`
says in one sentence what to change when a network does not fit."""

from __future__ import annotations

import pytest

from chiploop.chip.network import NetworkSpec
from chiploop.chip_profiles import check_network, list_profiles, load_profile
from chiploop.chip_profiles.fit import SEARCH_CAP, largest_hidden, suggest, task_io
from chiploop.errors import DesignRuleError


def fits(profile_name: str, n_in: int, n_hidden: int, n_out: int, recurrent: bool) -> bool:
    try:
        check_network(load_profile(profile_name), NetworkSpec(n_in, n_hidden, n_out, recurrent=recurrent))
    except DesignRuleError:
        return False
    return True


@pytest.mark.parametrize("name", list_profiles())
@pytest.mark.parametrize(("n_in", "n_out"), [(64, 10), (16, 1)])
@pytest.mark.parametrize("recurrent", [False, True])
def test_largest_hidden_is_the_rules_boundary(name: str, n_in: int, n_out: int, recurrent: bool) -> None:
    largest = largest_hidden(load_profile(name), n_in, n_out, recurrent)
    if largest is None:
        assert fits(name, n_in, SEARCH_CAP, n_out, recurrent)
    else:
        assert largest == 0 or fits(name, n_in, largest, n_out, recurrent)
        assert not fits(name, n_in, largest + 1, n_out, recurrent)


def test_known_sizes() -> None:
    assert largest_hidden(load_profile("xylo"), 16, 1) == 1007  # 1008 neurons
    assert largest_hidden(load_profile("xylo"), 16, 1, recurrent=True) == 63  # fan-out 64
    assert largest_hidden(load_profile("xylo"), 64, 10) == 0  # 16 inputs
    assert largest_hidden(load_profile("dynapse2"), 64, 10) == 64  # fan-in 64
    assert largest_hidden(load_profile("ideal"), 64, 10, recurrent=True) is None


def test_task_io_is_the_task_sizes() -> None:
    assert task_io("digits") == (64, 10) and task_io("integration") == (16, 1)


def test_too_many_inputs_suggests_a_task_that_fits() -> None:
    assert suggest(load_profile("xylo"), "digits", 128) == (
        "xylo hosts at most 16 inputs: digits has 64; "
        "try --task integration (16 inputs, 1 output, --hidden up to 1007)"
    )


def test_too_large_a_hidden_layer_suggests_the_largest() -> None:
    assert suggest(load_profile("dynapse2"), "digits", 128) == (
        "dynapse2 hosts digits with at most 64 neurons in a hidden layer: try --hidden 64"
    )
    assert suggest(load_profile("xylo"), "integration", 128, recurrent=True) == (
        "xylo hosts integration with at most 63 neurons in a recurrent hidden layer: "
        "try --hidden 63, or --no-recurrent (--hidden up to 1007)"
    )


def test_no_recurrent_layer_at_all_suggests_a_feed_forward_one() -> None:
    assert suggest(load_profile("dynapse2"), "digits", 64, recurrent=True) == (
        "dynapse2 cannot host digits in a recurrent hidden layer of any size (max_fan_in 64, needs 65); "
        "try --no-recurrent (--hidden up to 64)"
    )


def test_when_no_task_fits_other_profiles_are_named() -> None:
    tiny = load_profile("ideal").with_overrides({"limits.max_inputs": 8})
    assert suggest(tiny, "digits", 128) == (
        "ideal hosts at most 8 inputs: digits has 64; "
        "try --profile brainscales2 or ideal or loihi2 or pcm_crossbar or rram_crossbar"
    )


def test_a_network_that_fits_is_said_to() -> None:
    assert suggest(load_profile("loihi2"), "digits", 128).startswith(
        "loihi2 hosts digits (64 inputs, 10 outputs) with a hidden layer of 128 (at most "
    )
    assert suggest(load_profile("xylo"), "evidence", 100, n_in=16) == (
        "xylo hosts evidence (16 inputs, 2 outputs) with a hidden layer of 100 (at most 1006)"
    )
