"""Train a small network in Norse on chiploop's `digits` task and export it with Norse's own NIR
exporter: the Norse-made file `docs/examples/norse_digits.nir` that docs/interchange.md deploys.

    python benchmarks/norse_digits.py [OUT.nir]

64 inputs -> Linear -> 32 LIFBox neurons -> Linear -> 10 LIBox readouts, dt 1 ms, trained by
Norse's surrogate gradients (BPTT, Adam) on the mean readout of the second half of each trial
(the task's own loss). Seeded; about a minute on one core.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nir
import norse.torch as norse
import torch

from chiploop.training.tasks import make_task

HIDDEN, EPOCHS, SEED, GAIN = 32, 12, 0, 8.0


def build() -> torch.nn.Module:
    lif = norse.LIFBoxParameters(
        tau_mem_inv=torch.full((HIDDEN,), 1 / 0.01), v_th=torch.full((HIDDEN,), 0.3),
        v_leak=torch.zeros(HIDDEN), v_reset=torch.zeros(HIDDEN),
    )  # fmt: skip
    li = norse.LIBoxParameters(tau_mem_inv=torch.full((10,), 1 / 0.02), v_leak=torch.zeros(10))
    model = norse.SequentialState(
        torch.nn.Linear(64, HIDDEN), norse.LIFBoxCell(lif), torch.nn.Linear(HIDDEN, 10), norse.LIBoxCell(li)
    )
    with torch.no_grad():  # the input gain per step is dt/tau = 0.1: start where neurons fire
        model[0].weight.mul_(GAIN)
        model[2].weight.mul_(GAIN)
    return model


def readout(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Readout membranes `[B, T, 10]` for inputs `[B, T, 64]`."""
    v, _ = model(x.transpose(0, 1))
    return v.transpose(0, 1)


def main(out: Path) -> None:
    torch.manual_seed(SEED)
    task = make_task("digits", seed=SEED)
    model = build()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(SEED)
    for epoch in range(EPOCHS):
        for batch in task.batches("train", 64, gen):
            opt.zero_grad()
            task.loss(readout(model, batch.inputs), batch.targets).backward()
            opt.step()
        with torch.no_grad():
            acc = [task.metric(readout(model, b.inputs), b.targets) for b in task.batches("test", 360)]
        print(f"epoch {epoch + 1}: test accuracy {acc[0]:.4f} (Norse)", file=sys.stderr)
    # norse 1.1.0 multiplies the time constants it writes by `dt`; 1.0 writes them in seconds
    nir.write(out, norse.to_nir(model, torch.zeros(1, 64), dt=1.0))
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/examples/norse_digits.nir"))
