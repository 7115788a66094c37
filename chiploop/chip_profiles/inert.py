"""Settings that cannot act, refused before any work starts.

A *setting* is a field a user changes: an override (`with_overrides`, `chiploop train --set`,
`chiploop characterize --sweep`) or a field a profile file sets to a value other than the one of
the profile it starts from (its `extends:` parent, or the defaults). A setting that the rest of
the profile keeps from acting is refused (InertSettingError, one line naming the field, why, and
what to set); one that acts on almost no neuron is warned about (UserWarning). Values a profile
merely keeps (defaults, a parent's fields) are never checked: switching a noise model off does
not trip over its parameters, and every built-in loads.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from chiploop.chip_profiles.model import ChipProfile
from chiploop.errors import ProfileError

GAUSSIAN = ("gaussian_absolute", "gaussian_relative")
# A shift decay moves only when tau changes by a factor of ~sqrt(2): below this share of moved
# decays a tau spread is reported as (almost) doing nothing.
MOVED_ENOUGH = 0.01


class InertSettingError(ProfileError):
    """A setting cannot act in its profile (a sweep may combine it with one that lets it act)."""


@dataclass(frozen=True)
class Inert:
    """`fields` act only `when` (a phrase for the docs). `idle(profile)` is the clause saying why
    they cannot act in `profile` (None: they can); `fix` what to set; `refuse`: error, else warning."""

    fields: tuple[str, ...]
    when: str
    idle: Callable[[ChipProfile], str | None]
    fix: str
    refuse: bool = True


def show(value: Any) -> str:
    """A field value as a user writes it: `none`, `0.05`, `[-128, 126]`, `null`, `true`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(show(v) for v in value) + "]"
    return str(value)


def value_at(profile: ChipProfile, path: str) -> Any:
    """The value of the field at a dotted path."""
    return functools.reduce(getattr, path.split("."), profile)


def check_settings(profile: ChipProfile, changed: Collection[str], origin: str) -> None:
    """Refuse the `changed` field paths of `profile` that cannot act; warn about those that barely do.

    Raises InertSettingError `origin: field=value does nothing while ...; set ...` (all on one line).
    """
    refused = []
    for rule in RULES:
        for field in rule.fields:
            reason = rule.idle(profile) if field in changed else None
            if reason is None:
                continue
            message = f"{field}={show(value_at(profile, field))} {reason}; {rule.fix}"
            if rule.refuse:
                refused.append(message)
            else:
                warnings.warn(f"{origin}: {message}", UserWarning, stacklevel=2)
    if refused:
        raise InertSettingError(f"{origin}: " + "; ".join(refused))


def _alternatives(values: Sequence[str]) -> str:
    return values[0] if len(values) == 1 else f"{', '.join(values[:-1])} or {values[-1]}"


def _needs(fields: tuple[str, ...], switch: str, allowed: tuple[str, ...]) -> Inert:
    """`fields` act only while the field `switch` has one of the `allowed` values."""
    options = _alternatives(allowed)

    def idle(profile: ChipProfile) -> str | None:
        value = value_at(profile, switch)
        return None if value in allowed else f"does nothing while {switch} is {show(value)}"

    return Inert(fields, f"{switch} is {options}", idle, f"set {switch} to {options}")


def _zero(switch: str, on: tuple[str, ...], amounts: tuple[str, ...]) -> Callable[[ChipProfile], str | None]:
    """Idle while `switch` is one of `on` and every field of `amounts` is 0."""

    def idle(profile: ChipProfile) -> str | None:
        if value_at(profile, switch) not in on or any(value_at(profile, a) for a in amounts):
            return None
        return f"does nothing while {' and '.join(amounts)} {'is' if len(amounts) == 1 else 'are'} 0"

    return idle


def _alif_adapts(profile: ChipProfile) -> str | None:
    n = profile.neuron
    if n.model != "alif" or (n.adaptation.beta and n.adaptation.fraction):
        return None
    zero = "neuron.adaptation.beta" if not n.adaptation.beta else "neuron.adaptation.fraction"
    return f"does nothing while {zero} is 0 (an alif neuron that does not adapt is a lif neuron)"


def _digital(profile: ChipProfile) -> str | None:
    return None if profile.weights.bits is not None else "does nothing while weights.bits is null (analog)"


def _layer_scaled(profile: ChipProfile) -> str | None:
    noise = profile.noise
    if "pcm" in (noise.programming.model, noise.drift.model) or noise.periphery.weight_sigma:
        return None
    return "does nothing without a noise relative to the layer's range (pcm or periphery noise)"


def _drift_reference(profile: ChipProfile) -> str | None:
    noise = profile.noise
    if noise.drift.model != "none" or noise.read.model == "pcm_1f":
        return None
    return "does nothing while noise.drift.model is none (and there is no pcm_1f read noise)"


def _tau_spread_moves_shifts(profile: ChipProfile) -> str | None:
    """Shift decays round log2(tau/dt): a small tau spread leaves almost every decay as it was."""
    sigma, ar = profile.noise.mismatch.tau, profile.arithmetic
    if ar.kind != "fixed" or ar.decay != "shift" or not sigma:
        return None
    dt = profile.timing.dt_s
    moved = max(_shift_moved(tau / dt, sigma) for tau in _time_constants(profile))
    if moved >= MOVED_ENOUGH:
        return None
    return (
        f"changes the decay of under {MOVED_ENOUGH:.0%} of the neurons: arithmetic.decay shift rounds "
        "log2(tau/dt), and a shift moves when tau changes by a factor of about 1.4"
    )


def _time_constants(profile: ChipProfile) -> list[float]:
    n = profile.neuron
    values = [n.tau_mem_s, n.tau_syn_s, n.tau_syn2_s, n.tau_out_s]
    if n.model == "alif":
        values.append(n.adaptation.tau_s)
    flat = [t for v in values if v is not None for t in (v if isinstance(v, tuple) else (v,))]
    return [t for t in flat if t > 0]


def _shift_moved(ratio: float, sigma: float) -> float:
    """P(shift = max(0, round(log2(ratio m)))) differs from the nominal one, m = 1 + sigma N."""
    x = math.log2(ratio)
    shift = max(0, math.floor(x + 0.5))
    up = (2 ** (shift + 0.5 - x) - 1) / sigma
    moved = 0.5 * math.erfc(up / math.sqrt(2))
    if shift > 0:
        down = (2 ** (shift - 0.5 - x) - 1) / sigma
        moved += 0.5 * math.erfc(-down / math.sqrt(2))
    return moved


RULES: tuple[Inert, ...] = (
    _needs(
        ("neuron.adaptation.tau_s", "neuron.adaptation.beta", "neuron.adaptation.fraction"),
        "neuron.model",
        ("alif",),
    ),
    Inert(
        ("neuron.model",),
        "alif: neuron.adaptation.beta > 0 and neuron.adaptation.fraction > 0",
        _alif_adapts,
        "set neuron.adaptation.beta > 0 and neuron.adaptation.fraction > 0",
    ),
    _needs(
        ("arithmetic.state_bits", "arithmetic.decay", "arithmetic.decay_bits"), "arithmetic.kind", ("fixed",)
    ),
    Inert(("weights.rounding", "weights.exponent_bits"), "weights.bits is set", _digital, "set weights.bits"),
    Inert(
        ("weights.map_to_range",),
        "noise.programming.model or noise.drift.model is pcm, or noise.periphery.weight_sigma > 0",
        _layer_scaled,
        "set noise.programming.model to pcm or noise.periphery.weight_sigma > 0",
    ),
    _needs(("noise.programming.sigma",), "noise.programming.model", GAUSSIAN),
    _needs(
        (
            "noise.programming.g_max_us",
            "noise.programming.coefficients",
            "noise.programming.reference_g_max_us",
        ),
        "noise.programming.model",
        ("pcm",),
    ),
    Inert(
        ("noise.programming.model",),
        "gaussian models: noise.programming.sigma > 0",
        _zero("noise.programming.model", GAUSSIAN, ("noise.programming.sigma",)),
        "set noise.programming.sigma > 0",
    ),
    _needs(("noise.read.sigma",), "noise.read.model", (*GAUSSIAN, "pcm_1f")),
    _needs(("noise.read.t_read_s",), "noise.read.model", ("pcm_1f",)),
    Inert(
        ("noise.read.model",),
        "noise.read.sigma > 0",
        _zero("noise.read.model", (*GAUSSIAN, "pcm_1f"), ("noise.read.sigma",)),
        "set noise.read.sigma > 0",
    ),
    _needs(("noise.drift.nu", "noise.drift.nu_sigma"), "noise.drift.model", ("power_law",)),
    Inert(
        ("noise.drift.t0_s",),
        "noise.drift.model is power_law or pcm, or noise.read.model is pcm_1f",
        _drift_reference,
        "set noise.drift.model to power_law or pcm",
    ),
    Inert(
        ("noise.drift.model",),
        "power_law: noise.drift.nu > 0 or noise.drift.nu_sigma > 0",
        _zero("noise.drift.model", ("power_law",), ("noise.drift.nu", "noise.drift.nu_sigma")),
        "set noise.drift.nu > 0",
    ),
    Inert(
        ("noise.mismatch.tau",),
        "shift decays: a spread that moves shifts (tau x or / about 1.4; from a spread of about 0.13)",
        _tau_spread_moves_shifts,
        "use a larger noise.mismatch.tau, or arithmetic.decay multiplier",
        refuse=False,
    ),
)
