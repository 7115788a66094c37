"""Train small networks in Norse on chiploop tasks and export them with Norse's own NIR exporter:
the Norse-made files in `docs/examples/` that docs/interchange.md deploys.

    python benchmarks/norse_nir.py [OUT_DIR]

- norse_digits.nir: `digits`, 64 inputs -> 32 LIFBox -> 10 LIBox readouts (too wide for xylo);
- norse_evidence.nir: `evidence` with 4 inputs per population and no delay (16 inputs, xylo's
  limit) -> 32 LIFBox -> 2 LIBox readouts with a 200 ms leak that sum the cues.
dt 1 ms; Norse's surrogate gradients (BPTT, Adam) on the task's own loss. Seeded; about ten
minutes on one core.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nir
import norse.torch as norse
import torch

from chiploop.training.tasks import Task, make_task

HIDDEN, SEED, GAIN = 32, 0, 8.0
MODELS = {  # file: (task, task options, readout tau s, epochs)
    "norse_digits.nir": ("digits", {}, 0.02, 8),
    "norse_evidence.nir": ("evidence", {"n_per_pop": 4, "delay_steps": 0}, 0.2, 4),
}


def build(n_in: int, n_out: int, tau_out: float) -> torch.nn.Module:
    lif = norse.LIFBoxParameters(
        tau_mem_inv=torch.full((HIDDEN,), 1 / 0.01), v_th=torch.full((HIDDEN,), 0.3),
        v_leak=torch.zeros(HIDDEN), v_reset=torch.zeros(HIDDEN),
    )  # fmt: skip
    li = norse.LIBoxParameters(tau_mem_inv=torch.full((n_out,), 1 / tau_out), v_leak=torch.zeros(n_out))
    model = norse.SequentialState(
        torch.nn.Linear(n_in, HIDDEN),
        norse.LIFBoxCell(lif),
        torch.nn.Linear(HIDDEN, n_out),
        norse.LIBoxCell(li),
    )
    with torch.no_grad():  # the input gain per step is dt/tau = 0.1: start where neurons fire
        model[0].weight.mul_(GAIN)
        model[2].weight.mul_(GAIN * tau_out / 0.01)  # the readout's input gain is dt/tau_out
    return model


def readout(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Readout membranes `[B, T, n_out]` for inputs `[B, T, n_in]`."""
    state, out = None, []
    for x_t in x.unbind(1):  # Norse's cells take one step per call
        v, state = model(x_t, state)
        out.append(v)
    return torch.stack(out, 1)


def train(task: Task, tau_out: float, epochs: int) -> torch.nn.Module:
    torch.manual_seed(SEED)
    model = build(task.n_in, task.n_out, tau_out)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(SEED)
    for epoch in range(epochs):
        for batch in task.batches("train", 64, gen):
            opt.zero_grad()
            task.loss(readout(model, batch.inputs), batch.targets).backward()
            opt.step()
        with torch.no_grad():
            n = task.split_size("test")
            [b] = list(task.batches("test", n))
            acc = task.metric(readout(model, b.inputs), b.targets)
        print(f"{task.name} epoch {epoch + 1}: test accuracy {acc:.4f} (Norse)", file=sys.stderr)
    return model


def main(out_dir: Path) -> None:
    for name, (task_name, options, tau_out, epochs) in MODELS.items():
        task = make_task(task_name, seed=SEED, **options)
        model = train(task, tau_out, epochs)
        # norse 1.1.0 multiplies the time constants it writes by `dt`; 1.0 writes them in seconds
        nir.write(out_dir / name, norse.to_nir(model, torch.zeros(1, task.n_in), dt=1.0))
        print(f"wrote {out_dir / name}", file=sys.stderr)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/examples"))
