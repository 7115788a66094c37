"""`deploy`: an imported network in software (NIR's rules on `ideal`) and on chips, per layer.

For each chip profile: the design rules it breaks (layer, rule, limit), the accuracy on the chip
(TwinChip: quantization, device noise, mismatch from `seed`) next to software, and per layer what
the mapping did (weight error after programming, decay and threshold error).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from chiploop.chip.device_model import neuron_constants
from chiploop.chip_profiles.loader import load_profile
from chiploop.chip_profiles.rules import RULES
from chiploop.emulator.twin import TorchTwin
from chiploop.emulator.twin_chip import TwinChip
from chiploop.errors import DesignRuleError, TrainingError
from chiploop.interchange.chain import Chain
from chiploop.interchange.mapping import Mapped, map_chain
from chiploop.training.tasks import Task


@dataclass
class LayerReport:
    """One layer on one chip: NIR node, weight error after programming, decay and threshold error."""

    layer: str
    node: str
    weight_rel_error: float | None  # None: not programmed (the network does not fit)
    weight_clipped: float
    decay_max_error: float
    threshold_max_rel_error: float
    rules: list[str] = field(default_factory=list)


@dataclass
class ChipReport:
    """A chip's row: accuracy (None where the network does not fit), layers, notes."""

    profile: str
    fits: bool
    metric: float | None
    layers: list[LayerReport]
    notes: list[str]


def evaluate(mapped: Mapped, task: Task, seed: int, chip: bool) -> float:
    """The task metric on the test split: the learner (exact weights, no noise) or the chip (TwinChip)."""
    unit = mapped.scales["out"] * mapped.profile.state_scale  # readout back in NIR's units
    outs, targets = [], []
    if chip:
        on_chip = TwinChip(mapped.profile, mapped.spec, seed=seed)
        on_chip.write_weights(mapped.weights)
    else:
        twin = TorchTwin(mapped.profile, mapped.spec, seed=seed, dtype=torch.float64)
    weights = {k: torch.tensor(v, dtype=torch.float64) for k, v in mapped.weights.items()}
    for batch in task.batches("test", 256):
        if chip:
            v = torch.from_numpy(on_chip.run(batch.inputs.numpy()).v["out"].astype(np.float64))
        else:
            with torch.no_grad():
                v = twin(batch.inputs.double(), weights=weights).v["out"]
        outs.append(v / unit)
        targets.append(batch.targets)
    return task.metric(torch.cat(outs), torch.cat(targets))


def check_task(mapped: Mapped, task: Task) -> None:
    spec = mapped.spec
    if (spec.n_in, spec.n_out) != (task.n_in, task.n_out):
        raise TrainingError(
            f"task '{task.name}' has {task.n_in} inputs and {task.n_out} outputs, the network "
            f"{spec.n_in} and {spec.n_out}"
        )


def violations(mapped: Mapped) -> list[DesignRuleError]:
    """Every design rule the network breaks on its profile (not only the first)."""
    out = []
    for rule in RULES:
        try:
            rule(mapped.profile, mapped.spec)
        except DesignRuleError as exc:
            out.append(exc)
    return out


def chip_report(chain: Chain, profile_name: str, task: Task, dt_s: float | None, seed: int) -> ChipReport:
    base = load_profile(profile_name)
    mapped = map_chain(chain, base, dt_s=dt_s, software=False)
    check_task(mapped, task)
    broken = violations(mapped)
    layers = _layers(chain, mapped, broken, seed)
    metric = None if broken else evaluate(mapped, task, seed, chip=True)
    notes = [n.line() for n in mapped.notes]
    return ChipReport(base.name, not broken, metric, layers, notes)


def _layers(chain: Chain, mapped: Mapped, broken: list[DesignRuleError], seed: int) -> list[LayerReport]:
    """Per layer: weights after programming vs intended, decay factors and thresholds vs NIR's."""
    spec = mapped.spec
    programmed = {}
    if not broken:
        on_chip = TwinChip(mapped.profile, mapped.spec, seed=seed)
        on_chip.write_weights(mapped.weights)
        programmed = on_chip.read_weights()
    c = neuron_constants(mapped.profile, mapped.spec)
    reference = map_chain(chain, load_profile("ideal"), dt_s=mapped.dt_s, software=True)
    c_ref = neuron_constants(reference.profile, reference.spec)
    lo, hi = mapped.profile.weights.range
    reports = []
    slices = dict(zip(spec.layer_names, spec.hidden_slices(), strict=True))
    for layer, nir_layer in zip((*spec.layer_names, "out"), chain.layers, strict=True):
        names = [m for m in mapped.weights if m.split("_", 1)[1] == layer]  # the weights into the layer
        want = np.concatenate([mapped.weights[m].ravel() for m in names])
        rms = float(np.sqrt(np.mean(want**2))) or 1.0
        error = None
        if programmed:
            got = np.concatenate([programmed[m].ravel() for m in names])
            error = float(np.sqrt(np.mean((got - want) ** 2))) / rms
        clipped = (
            float(np.mean((want < lo) | (want > hi))) if not mapped.profile.weights.map_to_range else 0.0
        )
        if layer == "out":
            mem, mem_ref, thr, thr_ref = c.mem_o, c_ref.mem_o, c.threshold_o, c_ref.threshold_o
        else:
            s = slices[layer]
            mem, mem_ref, thr, thr_ref = c.mem_h[s], c_ref.mem_h[s], c.threshold_h[s], c_ref.threshold_h[s]
        k = mapped.scales[layer] * mapped.profile.state_scale
        rules = [str(e) for e in broken if _touches(e, layer)]
        reports.append(LayerReport(
            layer, nir_layer.name,
            error, clipped,
            float(np.max(np.abs(_factor(mem, mapped) - mem_ref))),
            float(np.max(np.abs(thr / k - thr_ref) / thr_ref)) if nir_layer.spiking else 0.0,
            rules,
        ))  # fmt: skip
    return reports


def _factor(values: np.ndarray, mapped: Mapped) -> np.ndarray:
    """Decay constants as the factor they multiply by (docs/dynamics.md)."""
    ar = mapped.profile.arithmetic
    if ar.kind == "float":
        return values
    if ar.decay == "shift":
        return 1.0 - np.ldexp(1.0, -values.astype(np.int64))
    return np.ldexp(values.astype(np.float64), -ar.decay_bits)


def _touches(error: DesignRuleError, layer: str) -> bool:
    """Whether a broken rule concerns `layer` (the rules name the layer they count; neuron and
    core counts concern every layer)."""
    if error.rule in ("max_neurons", "neurons_per_core"):
        return True
    if layer == "out":
        return error.rule == "max_outputs" or "output" in str(error)
    return error.rule == "max_inputs" and layer == "hidden" or f"one {layer} neuron" in str(error)


def table(software: float, metric_name: str, reports: list[ChipReport], software_notes: list[str]) -> str:
    """The software-vs-chip table, what the software import changed, and the per-layer lines."""
    lines = [f"{'profile':<16} {'software ' + metric_name:>18} {'chip ' + metric_name:>14}  fits"]
    for r in reports:
        chip = f"{r.metric:.4f}" if r.metric is not None else "-"
        lines.append(f"{r.profile:<16} {software:>18.4f} {chip:>14}  {'yes' if r.fits else 'no'}")
    if software_notes:
        lines += ["", "software (ideal, NIR's rules):", *(f"  note: {n}" for n in software_notes)]
    for r in reports:
        lines.append("")
        lines.append(f"{r.profile}:")
        for layer in r.layers:
            error = "-" if layer.weight_rel_error is None else f"{100 * layer.weight_rel_error:.2f}% rms"
            lines.append(
                f"  {layer.layer} ({layer.node}): weight error {error}, "
                f"clipped {100 * layer.weight_clipped:.1f}%, decay error {layer.decay_max_error:.2e}, "
                f"threshold error {100 * layer.threshold_max_rel_error:.2f}%"
            )
            lines.extend(f"    breaks {rule}" for rule in layer.rules)
        lines.extend(f"  note: {n}" for n in r.notes)
    return "\n".join(lines)


def report_dict(
    software: float, metric_name: str, dt: float, reports: list[ChipReport], software_notes: list[str]
) -> dict:
    return {"metric": metric_name, "software": software, "software_notes": software_notes, "dt_s": dt,
            "chips": [asdict(r) for r in reports]}  # fmt: skip


def write_report(out: Path, data: dict, profiles: dict[str, str]) -> None:
    """report.json and each chip's derived profile (YAML) into `out`."""
    import json

    from chiploop.outdir import atomic_write_bytes, claim, write_guard

    with claim(out, "deploy output"), write_guard(out):
        atomic_write_bytes(out / "report.json", (json.dumps(data, indent=2) + "\n").encode())
        for name, text in profiles.items():
            atomic_write_bytes(out / f"profile-{name}.yaml", text.encode())
