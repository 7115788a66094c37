"""The Trainer: approximate-gradient training of a TorchTwin whose forward passes run on a Chip.

- **in_the_loop**: every step runs the batch on the chip; the estimator turns the chip's recording
  into gradients on the host (replay through the twin; perturbation estimators only run the chip);
  the optimizer updates the twin's float (shadow) weights; the chip is re-programmed with them (it
  quantizes, adds programming noise and faults itself).
- **offline** (hardware-aware): the estimator trains the twin with `twin.hardware_weights(...)`
  (straight-through quantization and training-time noise, one draw per step); the chip is only
  programmed to evaluate.

Every epoch ends with an evaluation **on the chip** (train and test split). The readout is measured
in units of the firing threshold (`out_v / profile.readout_scale`), and init and learning rates
are expressed in per-layer weight units (`layer_units`), so one set of defaults serves every
built-in profile's scale.

Determinism: every draw comes from generators derived from `seed`; at the start of each epoch the
chip's noise streams are restarted from `(seed, epoch)` and the weights re-written, so a resumed
run reproduces an uninterrupted one exactly, and `metrics.csv` is byte-identical for a seed.
"""

from __future__ import annotations

import math
import shutil
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from chiploop.chip.network import NetworkSpec
from chiploop.chip.protocol import Chip, Recording
from chiploop.chip_profiles.model import ChipProfile
from chiploop.cost import COST_COLUMNS, ActivityCounter, cost_metrics, footprint_bytes
from chiploop.errors import ChipError, TrainingError
from chiploop.outdir import OutputError, claim, entries
from chiploop.training import defaults
from chiploop.training.runs import (
    CHECKPOINT_FORMAT,
    METRIC_COLUMNS,
    METRICS,
    TIMING,
    TIMING_COLUMNS,
    RunDir,
    default_run_dir,
)
from chiploop.training.tasks import Batch, Task
from chiploop.training.units import ScaledReadout, init_weights, layer_units

if TYPE_CHECKING:
    from chiploop.training.estimators import GradEstimate, GradientEstimator

MODES = ("in_the_loop", "offline")
OPTIMIZERS = ("adam", "sgd")
DIVERGENCE_FACTOR = 1e3  # a step loss this many times the initial train loss counts as exploding


@dataclass
class History:
    """Per-epoch rows of `metrics.csv` (row 0: before training) and of `timing.csv`."""

    rows: list[dict[str, float]] = field(default_factory=list)
    timing: list[dict[str, float]] = field(default_factory=list)

    def column(self, name: str) -> list[float]:
        """One column of the metrics over epochs."""
        return [row[name] for row in self.rows]

    @property
    def last(self) -> dict[str, float]:
        if not self.rows:
            raise TrainingError("History is empty: no epoch was evaluated")
        return self.rows[-1]

    @property
    def best(self) -> dict[str, float]:
        """The row with the highest test metric (first one on ties)."""
        if not self.rows:
            raise TrainingError("History is empty: no epoch was evaluated")
        return max(self.rows, key=lambda r: r["test_metric"])


class MeteredChip:
    """A Chip that delegates to another, timing its calls and counting its runs."""

    def __init__(self, chip: Chip) -> None:
        self.chip = chip
        self.profile, self.spec = chip.profile, chip.spec
        self.seconds = 0.0
        self.runs = 0

    @contextmanager
    def _timed(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - start

    def write_weights(self, weights: dict[str, np.ndarray]) -> None:
        with self._timed():
            self.chip.write_weights(weights)

    def read_weights(self) -> dict[str, np.ndarray]:
        with self._timed():
            return self.chip.read_weights()

    def run(self, inputs: np.ndarray, record_v: bool = True) -> Recording:
        with self._timed():
            rec = self.chip.run(inputs, record_v=record_v)
        self.runs += 1
        return rec

    def advance_time(self, seconds: float) -> None:
        self.chip.advance_time(seconds)

    def close(self) -> None:
        self.chip.close()


def evaluate_on_chip(
    chip: Chip, task: Any, spec: NetworkSpec, split: str, batch_size: int, limit: int | None = None
) -> dict[str, float]:
    """Loss, metric, hidden spikes per neuron per sample and the cost of one inference
    (`chiploop.cost.COST_COLUMNS`) of `split` (first `limit` samples).

    Runs the weights the chip holds now; every batch is padded to `batch_size` (one compiled shape
    on the emulator). Loss and metric are computed once over the whole split.
    """
    n = task.split_size(split) if limit is None else min(limit, task.split_size(split))
    outs, targets, spikes, seen = [], [], 0, 0
    counter = ActivityCounter(spec, chip.read_weights())
    for batch in task.batches(split, batch_size):
        take = min(len(batch.inputs), n - seen)
        if take <= 0:
            break
        x = np.zeros((batch_size, *batch.inputs.shape[1:]), np.uint8)
        x[:take] = batch.inputs[:take].numpy()
        rec = chip.run(x)
        outs.append(torch.from_numpy(np.asarray(rec.v["out"][:take], dtype=np.float64)))
        targets.append(batch.targets[:take])
        spikes += sum(int(rec.spikes[name][:take].sum(dtype=np.int64)) for name in spec.layer_names)
        counter.add(x, rec, take)
        seen += take
    if seen == 0:
        raise TrainingError(f"nothing to evaluate: split {split!r} with limit {limit!r} holds no sample")
    out_v, y = torch.cat(outs), torch.cat(targets)
    return {
        "loss": float(task.loss(out_v, y)),
        "metric": float(task.metric(out_v, y)),
        "spikes_per_neuron_per_sample": spikes / (seen * spec.n_hidden_total),
        **cost_metrics(chip.profile, spec, counter),
    }


def _listed(value: Any) -> Any:
    """A tuple as a list (YAML writes lists), anything else unchanged."""
    return list(value) if isinstance(value, tuple) else value


def reseed_chip_noise(chip: Chip, seed: int, epoch: int) -> bool:
    """Restart a chip's noise streams from `(seed, epoch)` through `Chip.reseed_noise`; frozen state
    (mismatch, faults, programmed weights) is untouched. False for a chip without `reseed_noise` (a
    user's object written before the protocol had it): its noise streams then run on across epochs, so a
    resumed run may differ from an uninterrupted one (the Trainer warns once).
    """
    reseed = getattr(chip, "reseed_noise", None)
    if not callable(reseed):
        return False
    reseed([seed, epoch])
    return True


def _generator(seed: int, stream: int) -> torch.Generator:
    """A torch Generator for one named stream of the run, derived from (seed, stream)."""
    state = np.random.SeedSequence([seed, stream]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


_DATA_STREAM, _INIT_STREAM, _HARDWARE_STREAM = 1, 2, 3


class TrainingProgress:
    """A rich progress display on stderr (epochs x batches) and the closing summary table on stdout;
    inert if disabled."""

    def __init__(self, epochs: int, n_batches: int, done: int, enabled: bool = True) -> None:
        self.enabled, self.n_batches = enabled, n_batches
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("{task.description:<8}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[info]}"),
                console=Console(stderr=True),
            )
            self._epochs = self._progress.add_task("epochs", total=epochs, completed=done, info="")
            self._batches = self._progress.add_task("batches", total=n_batches, info="")

    def __enter__(self) -> TrainingProgress:
        if self.enabled:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self._progress.stop()

    def advance_batch(self, loss: float) -> None:
        if self.enabled:
            self._progress.update(self._batches, advance=1, info=f"loss {loss:.4f}")

    def end_epoch(self, row: Mapping[str, float]) -> None:
        if self.enabled:
            info = f"test {row['test_metric']:.4f}  train {row['train_metric']:.4f}"
            self._progress.update(self._epochs, advance=1, info=info)
            self._progress.reset(self._batches, total=self.n_batches, info="")

    @staticmethod
    def print_summary(history: History, metric_name: str, run_dir: Path) -> None:
        """A rich table of every epoch's chip-measured metrics."""
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"training on the chip ({run_dir})")
        for col in (
            "epoch",
            "train loss",
            f"train {metric_name}",
            "test loss",
            f"test {metric_name}",
            "spikes/neuron/sample",
            "chip runs",
        ):
            table.add_column(col, justify="right")
        for r in history.rows:
            table.add_row(
                str(r["epoch"]),
                f"{r['train_loss']:.4f}",
                f"{r['train_metric']:.4f}",
                f"{r['test_loss']:.4f}",
                f"{r['test_metric']:.4f}",
                f"{r['spikes_per_neuron_per_sample']:.2f}",
                str(r["chip_runs"]),
            )
        Console().print(table)


class Trainer:
    """Train `spec` under `profile` on `task` with `estimator`; see the module docstring.

    profile, task, estimator: objects or registry names (`load_profile`, `make_task(name, seed,
    **task_options)`, `make_estimator(name, rate_reg=..., rate_target=..., **estimator_options)`).
    spec: None = `NetworkSpec(task.n_in, n_hidden, task.n_out)`.
    chip: None = `open_chip(target, profile, spec, seed)`.
    lr: in weight units per step (Adam step `lr·unit`, SGD `lr·unit²`, see `layer_units`),
    multiplied by `lr_decay` after every epoch.
    rate_target (hidden spikes per step), rate_reg: the firing-rate regulariser; None = the
    estimator's defaults.
    init_scale: weights ~ N(0, (init_scale·unit)² / fan_in), clipped to the weight range.
    train_eval_size: evaluate the train metric on the first N train samples (None: all).
    epochs: default for `fit`. plots: write the PNG plots when `fit` ends.
    out_dir: None = a fresh `runs/<profile>-<task>-<estimator>-<mode>-h<hidden>-s<seed>` (`default_run_dir`).
    overwrite: let the first `fit` replace a run already in `out_dir` (otherwise refused).
    Defaults are `chiploop.training.defaults`, the same as `chiploop train`'s.
    """

    def __init__(
        self,
        profile: ChipProfile | str,
        spec: NetworkSpec | None = None,
        estimator: GradientEstimator | str = defaults.ESTIMATOR,
        task: Task | str = defaults.TASK,
        mode: Literal["in_the_loop", "offline"] = defaults.MODE,  # type: ignore[assignment]
        chip: Chip | None = None,
        target: str = defaults.TARGET,
        optimizer: Literal["adam", "sgd"] = defaults.OPTIMIZER,  # type: ignore[assignment]
        lr: float = defaults.LR,
        batch_size: int = defaults.BATCH_SIZE,
        rate_target: float | None = None,
        rate_reg: float | None = None,
        seed: int = defaults.SEED,
        out_dir: str | Path | None = None,
        progress: bool = True,
        *,
        n_hidden: int | tuple[int, ...] = defaults.HIDDEN,
        init_scale: float = 1.0,
        task_options: Mapping[str, Any] | None = None,
        estimator_options: Mapping[str, Any] | None = None,
        eval_batch_size: int | None = None,
        train_eval_size: int | None = None,
        epochs: int = defaults.EPOCHS,
        plots: bool = True,
        lr_decay: float = defaults.LR_DECAY,
        overwrite: bool = False,
    ) -> None:
        from chiploop.chip_profiles.loader import load_profile

        if mode not in MODES:
            raise TrainingError(f"mode must be one of {MODES}, got {mode!r}")
        if optimizer not in OPTIMIZERS:
            raise TrainingError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
        for name, value in (("lr", lr), ("init_scale", init_scale), ("lr_decay", lr_decay)):
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise TrainingError(f"{name} must be a finite number > 0, got {value!r}")
        for name, value, low in (("batch_size", batch_size, 1), ("seed", seed, 0)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise TrainingError(f"{name} must be an int >= {low}, got {value!r}")
        self.profile = load_profile(profile) if isinstance(profile, str) else profile
        self.estimator_options = dict(estimator_options or {})
        self.estimator = self._make_estimator(estimator, rate_reg, rate_target, seed)
        self.task_options = dict(task_options or {})
        self.task = self._make_task(task, seed)
        try:
            self.spec = spec if spec is not None else NetworkSpec(self.task.n_in, n_hidden, self.task.n_out)
        except ChipError as exc:
            raise TrainingError(str(exc).replace("NetworkSpec.", "")) from None
        if (self.spec.n_in, self.spec.n_out) != (self.task.n_in, self.task.n_out):
            raise TrainingError(
                f"spec has n_in={self.spec.n_in}, n_out={self.spec.n_out}; task {self.task.name!r} needs "
                f"n_in={self.task.n_in}, n_out={self.task.n_out}"
            )
        if getattr(self.estimator, "cuts_only_recurrence", False) and not self.spec.recurrent:
            warnings.warn(
                f"estimator {self.estimator.name} equals bptt on a network without recurrence (it only cuts"
                " the gradient through W_rec): train a recurrent network (--recurrent) to see a difference",
                UserWarning,
                stacklevel=2,
            )
        self.mode, self.optimizer_name = mode, optimizer
        self.target = target if chip is None else f"<{type(chip).__name__} object>"
        self.lr, self.lr_decay, self.batch_size = float(lr), float(lr_decay), batch_size
        self.seed, self.init_scale = seed, float(init_scale)
        self.eval_batch_size = eval_batch_size or batch_size
        self.train_eval_size = train_eval_size
        self.epochs = epochs
        self.progress, self.plots, self.overwrite = progress, plots, overwrite
        self.run = RunDir(
            out_dir
            if out_dir is not None
            else default_run_dir(
                self.profile.name, self.task.name, self.estimator.name, mode, self.spec.n_hidden, seed
            )
        )
        self.readout = ScaledReadout.of(self.task, self.profile)

        from chiploop.emulator.twin import TorchTwin

        self.twin = TorchTwin(self.profile, self.spec, seed=seed)
        self.units = layer_units(self.profile, self.spec)
        init_weights(self.twin, _generator(self.seed, _INIT_STREAM), self.init_scale)
        self.optimizer = self._make_optimizer()
        self._set_learning_rate(1)
        self._data_gen = _generator(seed, _DATA_STREAM)
        self._hardware_gen = _generator(seed, _HARDWARE_STREAM)
        if chip is None:
            from chiploop.chip.targets import open_chip

            chip = open_chip(target, self.profile, self.spec, seed)
        self.chip = MeteredChip(chip)
        self.history = History()
        self.epoch = 0
        self._steps = 0  # optimizer steps taken by `step` since the last epoch ended
        self._deployed = False  # the chip holds the shadow weights (offline: deployed after changes)
        self._warned_reseed = False

    def load_weights(self, weights: Mapping[str, Any]) -> None:
        """Start from `weights` (model units, keyed like `spec.weight_shapes()`) instead of the seeded
        init, e.g. an imported network; only before the run's first `fit`."""
        if self.history.rows:
            raise TrainingError("load_weights: the run has started; weights come from its checkpoint")
        shapes = self.spec.weight_shapes()
        if set(weights) != set(shapes):
            raise TrainingError(f"load_weights: expected weights {sorted(shapes)}, got {sorted(weights)}")
        with torch.no_grad():
            for name, p in self.twin.weights.items():
                w = torch.as_tensor(np.asarray(weights[name]), dtype=p.dtype)
                if tuple(w.shape) != shapes[name]:
                    raise TrainingError(
                        f"load_weights: {name} must have shape {shapes[name]}, got {tuple(w.shape)}"
                    )
                p.copy_(w)

    # ------------------------------------------------------------------ construction helpers
    def _make_task(self, task: Task | str, seed: int) -> Task:
        if not isinstance(task, str):
            return task
        from chiploop.training.tasks import make_task

        return make_task(task, seed=seed, **self.task_options)

    def _make_estimator(
        self, estimator: GradientEstimator | str, rate_reg: float | None, rate_target: float | None, seed: int
    ) -> GradientEstimator:
        """The estimator object; one built by name draws from the run's seed unless told otherwise."""
        rate = {k: v for k, v in (("rate_reg", rate_reg), ("rate_target", rate_target)) if v is not None}
        if not isinstance(estimator, str):
            if rate:
                raise TrainingError(
                    f"rate_reg/rate_target {rate} given with an estimator object; set them on the estimator"
                )
            return estimator
        from chiploop.training.estimators import estimator_options, make_estimator

        seeded = {"seed": seed} if "seed" in estimator_options(estimator) else {}
        return make_estimator(estimator, **(seeded | rate | self.estimator_options))

    def _set_learning_rate(self, epoch: int) -> None:
        """Per-layer learning rate of `epoch` (1-based): `lr · lr_decay^(epoch−1)` in weight units."""
        power = 1 if self.optimizer_name == "adam" else 2
        for group, name in zip(self.optimizer.param_groups, self.twin.weights, strict=True):
            group["lr"] = self.lr * self.lr_decay ** (epoch - 1) * self.units[name] ** power

    def _make_optimizer(self) -> torch.optim.Optimizer:
        """Adam or SGD with one parameter group per layer (learning rates: `_set_learning_rate`)."""
        groups = [{"params": [p]} for p in self.twin.weights.values()]
        optimizer = torch.optim.Adam if self.optimizer_name == "adam" else torch.optim.SGD
        return optimizer(groups, lr=self.lr)

    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild this Trainer (`Trainer.from_run`)."""
        return {
            "profile": self.profile.name,
            "profile_spec": self.profile.model_dump(mode="json"),
            "network": {
                "n_in": self.spec.n_in,
                "n_hidden": _listed(self.spec.n_hidden),
                "n_out": self.spec.n_out,
                "recurrent": _listed(self.spec.recurrent),
                "readout": self.spec.readout,
            },
            "task": {"name": self.task.name, "seed": self.seed, "options": self.task_options},
            "estimator": {
                "name": self.estimator.name,
                "rate_reg": getattr(self.estimator, "rate_reg", None),
                "rate_target": getattr(self.estimator, "rate_target", None),
                "options": self.estimator_options,
            },
            "mode": self.mode,
            "target": self.target,
            "optimizer": self.optimizer_name,
            "lr": self.lr,
            "lr_decay": self.lr_decay,
            "batch_size": self.batch_size,
            "eval_batch_size": self.eval_batch_size,
            "train_eval_size": self.train_eval_size,
            "init_scale": self.init_scale,
            "seed": self.seed,
            "epochs": self.epochs,
        }

    @classmethod
    def from_run(
        cls, out_dir: str | Path, *, chip: Chip | None = None, progress: bool = True, plots: bool = True
    ) -> Trainer:
        """Rebuild the Trainer of a run directory from its `config.yaml` (for `fit(resume=True)`).

        Task and estimator are rebuilt from their names and recorded options (an object passed to
        the original Trainer comes back with its registry defaults); a run trained on a chip object
        needs that chip again.
        """
        config = RunDir(out_dir).read_config()
        if str(config.get("target", "")).startswith("<") and chip is None:
            raise TrainingError(
                f"run {out_dir} was trained on a chip {config['target']}: pass chip= to resume it"
            )
        try:
            profile = ChipProfile.model_validate(config["profile_spec"])
            est = config["estimator"]
            return cls(
                profile,
                NetworkSpec(**config["network"]),
                est["name"],
                config["task"]["name"],
                mode=config["mode"],
                chip=chip,
                target=config["target"],
                optimizer=config["optimizer"],
                lr=config["lr"],
                lr_decay=config["lr_decay"],
                batch_size=config["batch_size"],
                rate_reg=est["rate_reg"],
                rate_target=est["rate_target"],
                seed=config["seed"],
                out_dir=out_dir,
                progress=progress,
                init_scale=config["init_scale"],
                task_options=config["task"]["options"],
                estimator_options=est["options"],
                eval_batch_size=config["eval_batch_size"],
                train_eval_size=config["train_eval_size"],
                epochs=config["epochs"],
                plots=plots,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise TrainingError(
                f"{RunDir(out_dir).file('config.yaml')} is not a usable run config: {exc}"
            ) from None

    # ------------------------------------------------------------------ weights and chip
    def _clip_weights(self) -> None:
        lo, hi = self.profile.weights.value_range
        with torch.no_grad():
            for p in self.twin.weights.values():
                p.clamp_(lo, hi)

    def float_weights(self) -> dict[str, np.ndarray]:
        """The twin's shadow weights as float64 arrays."""
        return {k: w.detach().cpu().numpy().astype(np.float64) for k, w in self.twin.weights.items()}

    def _program_chip(self, epoch: int) -> None:
        """Restart the chip's noise streams from (seed, epoch) and write the shadow weights."""
        if not reseed_chip_noise(self.chip.chip, self.seed, epoch) and not self._warned_reseed:
            self._warned_reseed = True
            warnings.warn(
                f"chip {type(self.chip.chip).__name__} cannot restart its noise streams (no reseed_noise): "
                "a resumed run may differ from an uninterrupted one",
                RuntimeWarning,
                stacklevel=2,
            )
        self.chip.write_weights(self.float_weights())
        self._deployed = True

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, split: str, limit: int | None = None) -> dict[str, float]:
        """Loss, metric and activity of the current weights on the chip (`evaluate_on_chip`), readout
        in threshold units; weights trained offline since the last deployment are deployed first."""
        if not self._deployed:
            self._program_chip(self.epoch)
        return evaluate_on_chip(self.chip, self.readout, self.spec, split, self.eval_batch_size, limit)

    def _evaluate_epoch(self, epoch: int, chip_runs: int) -> dict[str, float]:
        train = self.evaluate("train", self.train_eval_size)
        test = self.evaluate("test")
        return {
            "epoch": epoch,
            "train_loss": train["loss"],
            "train_metric": train["metric"],
            "test_loss": test["loss"],
            "test_metric": test["metric"],
            "spikes_per_neuron_per_sample": test["spikes_per_neuron_per_sample"],
            "chip_runs": chip_runs,
            **{f"test_{k}": test[k] for k in COST_COLUMNS},
        }

    # ------------------------------------------------------------------ training
    def step(self, batch: Batch) -> float:
        """One optimizer step on `batch`, for notebook-style loops; returns the batch loss.

        In the loop the chip runs the batch and gets the updated weights back; offline the twin
        trains on hardware weights and `evaluate` deploys. `fit` runs whole epochs of these.
        """
        if self.mode == "in_the_loop" and not self._deployed:
            self._program_chip(self.epoch)
        reference = self.history.rows[0]["train_loss"] if self.history.rows else math.inf
        loss, _ = self._step(batch, self.epoch + 1, self._steps, reference)
        self._steps += 1
        return loss

    def _step(self, batch: Batch, epoch: int, index: int, reference_loss: float) -> tuple[float, int]:
        """One optimizer step on `batch`; returns the step loss and the chip runs it used."""
        if self.mode == "in_the_loop":
            est = self.estimator.estimate(self.twin, batch, self.readout, self.chip)
        else:
            weights = self.twin.hardware_weights(self._hardware_gen, noise=True)
            est = self.estimator.estimate(self.twin, batch, self.readout, None, weights=weights)
        self._check_finite(est, epoch, index, reference_loss)
        for name, p in self.twin.weights.items():
            p.grad = est.grads[name].to(p.dtype).clone()
        self.optimizer.step()
        self._clip_weights()
        if self.mode == "in_the_loop":
            self.chip.write_weights(self.float_weights())
        else:
            self._deployed = False
        return est.loss, int(est.chip_runs)

    def _check_finite(self, est: GradEstimate, epoch: int, index: int, reference_loss: float) -> None:
        where = f"epoch {epoch}, batch {index} (estimator {self.estimator.name})"
        if not math.isfinite(est.loss):
            problem = f"loss became {est.loss}"
        elif est.loss > DIVERGENCE_FACTOR * max(reference_loss, 1e-12):
            problem = (
                f"loss exploded to {est.loss:.4g} (> {DIVERGENCE_FACTOR:g} x initial {reference_loss:.4g})"
            )
        else:
            bad = [k for k, g in est.grads.items() if not torch.isfinite(g).all()]
            if not bad:
                return
            problem = f"gradient of {bad} is not finite"
        kept = f"last good checkpoint: {self.run.file('checkpoint.pt')} (epoch {self.epoch})"
        self.run.write_summary({**self.summary(), "status": "diverged", "error": f"{problem} at {where}"})
        raise TrainingError(f"training stopped: {problem} at {where}; {kept}")

    def fit(self, epochs: int | None = None, resume: bool = False) -> History:
        """Train until `epochs` epochs are done (counting those of a resumed run); returns History.

        resume: continue from `checkpoint.pt` in the run directory (a directory killed before its
        first checkpoint starts afresh). Otherwise the first `fit` of this Trainer starts the run:
        a directory that already holds one is refused unless `overwrite`; epoch 0 evaluates the
        untrained network. Later calls continue where the previous one stopped. The run directory
        is locked while `fit` runs: a second process writing it is refused.
        """
        epochs = self.epochs if epochs is None else epochs
        if not isinstance(epochs, int) or epochs < 0:
            raise TrainingError(f"epochs must be an int >= 0, got {epochs!r}")
        with claim(self.run.path, "run directory"):
            if resume and self.run.has_checkpoint():
                self._restore(self.run.load_checkpoint())
                if epochs < self.epoch:
                    raise TrainingError(
                        f"run {self.run.path} has {self.epoch} epochs done: epochs={epochs} would train"
                        f" none; ask for more than {self.epoch}"
                    )
            elif not self.history.rows:
                self._claim_fresh(resume)
            self.epochs = epochs
            self.run.write_config(self.config())  # first, so the run is resumable from here on
            if not self.history.rows:
                self._start()
            n_batches = math.ceil(self.task.split_size("train") / self.batch_size)
            with TrainingProgress(epochs, n_batches, self.epoch, enabled=self.progress) as bar:
                while self.epoch < epochs:
                    self._train_epoch(self.epoch + 1, bar)
            self._finish()
        if self.progress:
            TrainingProgress.print_summary(self.history, self.task.metric_name, self.run.path)
        return self.history

    def _claim_fresh(self, resume: bool) -> None:
        """Make the run directory ready for a new run: refuse to replace one unless `overwrite`
        (or it is a `resume` of a run that never reached its first checkpoint)."""
        held = entries(self.run.path)
        if held and not (self.overwrite or resume):
            raise OutputError(
                f"run directory {self.run.path} already holds a run ({', '.join(held[:4])}"
                f"{', ...' if len(held) > 4 else ''}): continue it with --resume, replace it with "
                "--overwrite, or choose another --out"
            )
        for name in held:
            path = self.run.file(name)
            shutil.rmtree(path) if path.is_dir() else path.unlink()

    def _start(self) -> None:
        start = time.perf_counter()
        chip_s = self.chip.seconds
        self._program_chip(0)
        row = self._evaluate_epoch(0, 0)
        timing = self._timing(0, start, chip_s)
        self.history = History([row], [timing])
        self.run.write_rows(METRICS, METRIC_COLUMNS, self.history.rows)
        self.run.write_rows(TIMING, TIMING_COLUMNS, self.history.timing)
        self._save_checkpoint()

    def _train_epoch(self, epoch: int, bar: TrainingProgress) -> None:
        start = time.perf_counter()
        chip_s = self.chip.seconds
        reference = self.history.rows[0]["train_loss"]
        if self.mode == "in_the_loop":
            self._program_chip(epoch)
        self._set_learning_rate(epoch)
        chip_runs = 0
        for index, batch in enumerate(self.task.batches("train", self.batch_size, self._data_gen)):
            loss, runs = self._step(batch, epoch, index, reference)
            chip_runs += runs
            bar.advance_batch(loss)
        if self.mode == "offline":
            self._program_chip(epoch)  # deploy the trained weights
        row = self._evaluate_epoch(epoch, chip_runs)
        self.history.rows.append(row)
        self.history.timing.append(self._timing(epoch, start, chip_s))
        self.epoch, self._steps = epoch, 0
        self.run.append_row(METRICS, METRIC_COLUMNS, row)
        self.run.append_row(TIMING, TIMING_COLUMNS, self.history.timing[-1])
        self._save_checkpoint()
        bar.end_epoch(row)

    def _timing(self, epoch: int, start: float, chip_s: float) -> dict[str, float]:
        chip = self.chip.seconds - chip_s
        return {"epoch": epoch, "wall_chip_s": chip, "wall_host_s": time.perf_counter() - start - chip}

    # ------------------------------------------------------------------ checkpoints
    def _generators(self) -> dict[str, torch.Generator]:
        """Every generator whose state a checkpoint keeps, the estimator's own included."""
        gens = {"data": self._data_gen, "hardware": self._hardware_gen}
        if isinstance(getattr(self.estimator, "generator", None), torch.Generator):
            gens["estimator"] = self.estimator.generator
        return gens

    def _save_checkpoint(self) -> None:
        self.run.save_checkpoint(
            {
                "format": CHECKPOINT_FORMAT,
                "epoch": self.epoch,
                "weights": {k: w.detach().clone() for k, w in self.twin.weights.items()},
                "optimizer": self.optimizer.state_dict(),
                "rng": {name: gen.get_state() for name, gen in self._generators().items()},
                "history": self.history.rows,
                "timing": self.history.timing,
            }
        )

    def _restore(self, state: dict[str, Any]) -> None:
        """Load a checkpoint into the twin, optimizer and generators; rewrite the CSV tables."""
        try:
            with torch.no_grad():
                for name, p in self.twin.weights.items():
                    p.copy_(state["weights"][name])
            self.optimizer.load_state_dict(state["optimizer"])
            for name, gen in self._generators().items():
                gen.set_state(state["rng"][name])
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise TrainingError(
                f"checkpoint {self.run.file('checkpoint.pt')} does not fit this run: {exc}"
            ) from None
        self.epoch = int(state["epoch"])
        # a run checkpointed before a column existed gets it as NaN (not measured then)
        rows = [{**dict.fromkeys(METRIC_COLUMNS, math.nan), **row} for row in state["history"]]
        self.history = History(rows, list(state["timing"]))
        self.run.write_rows(METRICS, METRIC_COLUMNS, self.history.rows)
        self.run.write_rows(TIMING, TIMING_COLUMNS, self.history.timing)

    # ------------------------------------------------------------------ results
    def summary(self) -> dict[str, Any]:
        """What `summary.json` holds: final and best metrics, totals, the run's identity."""
        rows, timing = self.history.rows, self.history.timing
        out: dict[str, Any] = {
            "profile": self.profile.name,
            "task": self.task.name,
            "metric_name": self.task.metric_name,
            "estimator": self.estimator.name,
            "mode": self.mode,
            "target": self.target,
            "seed": self.seed,
            "epochs_done": self.epoch,
            "status": "ok",
        }
        if rows:
            best = self.history.best
            out.update(
                final=self.history.last,
                best_epoch=best["epoch"],
                best_test_metric=best["test_metric"],
                chip_runs=sum(r["chip_runs"] for r in rows),
                footprint_bytes_by_layer=footprint_bytes(self.spec, self.profile),
                wall_chip_s=sum(t["wall_chip_s"] for t in timing),
                wall_host_s=sum(t["wall_host_s"] for t in timing),
            )
        return out

    def _finish(self) -> None:
        self.run.write_summary(self.summary())
        if self.plots:
            from chiploop.training.plots import write_plots

            write_plots(self)
