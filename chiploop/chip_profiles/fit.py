"""Which networks a profile hosts: the largest hidden layer its limits allow, and one sentence on
what to change when a network does not fit (in `chiploop train`'s options).

Sizes come from the design rules themselves (`rules.LIMIT_RULES`), searched by bisection: every
limit rule is monotone in the hidden size. Per-neuron parameter lists fix the hidden size on
their own (`rules.check_neuron_parameter_lengths`) and are not searched.
"""

from __future__ import annotations

import functools

from chiploop.chip.network import NetworkSpec
from chiploop.chip_profiles.loader import list_profiles, load_profile
from chiploop.chip_profiles.model import ChipProfile
from chiploop.chip_profiles.rules import LIMIT_RULES
from chiploop.errors import DesignRuleError

SEARCH_CAP = 2**40  # a hidden layer this large fits only when no limit bounds it


@functools.cache
def task_io(task: str) -> tuple[int, int]:
    """(inputs, outputs) of `task` with its default options (built once: ~0.4 s for all tasks)."""
    from chiploop.training.tasks import make_task

    built = make_task(task)
    return built.n_in, built.n_out


def task_names() -> tuple[str, ...]:
    """The names of the tasks, as `chiploop train --task` takes them."""
    from chiploop.training.tasks import TASKS

    return TASKS


def limit_error(
    profile: ChipProfile, n_in: int, n_hidden: int, n_out: int, recurrent: bool = False
) -> DesignRuleError | None:
    """The first limit of `profile` the network breaks, or None when it fits."""
    spec = NetworkSpec(n_in, n_hidden, n_out, recurrent=recurrent)
    try:
        for rule in LIMIT_RULES:
            rule(profile, spec)
    except DesignRuleError as exc:
        return exc
    return None


def largest_hidden(profile: ChipProfile, n_in: int, n_out: int, recurrent: bool = False) -> int | None:
    """The largest hidden layer `profile`'s limits allow between `n_in` inputs and `n_out` outputs:
    0 if no hidden layer fits, None if the limits do not bound it."""

    def fits(n_hidden: int) -> bool:
        return limit_error(profile, n_in, n_hidden, n_out, recurrent) is None

    if not fits(1):
        return 0
    if fits(SEARCH_CAP):
        return None
    lo, hi = 1, SEARCH_CAP  # fits(lo), not fits(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def suggest(
    profile: ChipProfile,
    task: str,
    n_hidden: int,
    recurrent: bool = False,
    *,
    n_in: int | None = None,
    n_out: int | None = None,
) -> str:
    """One sentence on hosting `task` on `profile` with `n_hidden` hidden neurons: that it fits, or
    what to change (--hidden, --no-recurrent, --task, --profile).

    `n_in`, `n_out`: the task's sizes when its options change them (default: its default options).
    """
    if n_in is None or n_out is None:
        default_in, default_out = task_io(task)
        n_in = default_in if n_in is None else n_in
        n_out = default_out if n_out is None else n_out
    layer = "a recurrent hidden layer" if recurrent else "a hidden layer"
    largest = largest_hidden(profile, n_in, n_out, recurrent)
    if largest is None or largest >= n_hidden:
        bound = "" if largest is None else f" (at most {largest})"
        return f"{profile.name} hosts {task} ({_io(n_in, n_out)}) with {layer} of {n_hidden}{bound}"
    if largest > 0:
        return (
            f"{profile.name} hosts {task} with at most {largest} neurons in {layer}: "
            f"try --hidden {largest}{_without_recurrence(profile, n_in, n_out, recurrent, largest)}"
        )
    error = limit_error(profile, n_in, 1, n_out, recurrent)
    assert error is not None
    spec = NetworkSpec(n_in, n_hidden, n_out, recurrent=recurrent)
    return f"{_why(profile, task, error, layer)}; {_elsewhere(profile, task, spec)}"


def _io(n_in: int, n_out: int) -> str:
    return f"{n_in} input{'s' * (n_in != 1)}, {n_out} output{'s' * (n_out != 1)}"


def _up_to(largest: int | None) -> str:
    return "any --hidden" if largest is None else f"--hidden up to {largest}"


def _without_recurrence(profile: ChipProfile, n_in: int, n_out: int, recurrent: bool, largest: int) -> str:
    """`, or --no-recurrent for ...` when a feed-forward layer may be larger."""
    if not recurrent:
        return ""
    flat = largest_hidden(profile, n_in, n_out)
    return f", or --no-recurrent ({_up_to(flat)})" if flat is None or flat > largest else ""


def _why(profile: ChipProfile, task: str, error: DesignRuleError, layer: str) -> str:
    for rule, what in (("max_inputs", "inputs"), ("max_outputs", "outputs")):
        if error.rule == rule:
            return f"{profile.name} hosts at most {error.limit} {what}: {task} has {error.value}"
    return (
        f"{profile.name} cannot host {task} in {layer} of any size "
        f"({error.rule} {error.limit}, needs {error.value})"
    )


def _elsewhere(profile: ChipProfile, task: str, spec: NetworkSpec) -> str:
    """What does fit `spec`'s place: --no-recurrent, another task here, or another built-in profile."""
    if spec.recurrent:
        flat = largest_hidden(profile, spec.n_in, spec.n_out)
        if flat != 0:
            return f"try --no-recurrent ({_up_to(flat)})"
    tasks = []
    for other in task_names():
        n_in, n_out = task_io(other)
        largest = largest_hidden(profile, n_in, n_out, spec.recurrent)
        if other != task and largest != 0:
            tasks.append(f"--task {other} ({_io(n_in, n_out)}, {_up_to(largest)})")
    if tasks:
        return "try " + " or ".join(tasks)
    hosts = [
        name
        for name in list_profiles()
        if limit_error(load_profile(name), spec.n_in, spec.n_hidden, spec.n_out, spec.recurrent) is None
    ]
    return f"try --profile {' or '.join(hosts)}" if hosts else "no built-in task or profile fits"
