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

The Trainer orchestrates units with one job each: the settings (`TrainConfig`, config.yaml), the
training step (`Stepper`, shared with the research recipes), evaluation on the chip
(`evaluation`), checkpoints (`checkpoint`) and progress (`TrainingProgress`).

Determinism: every draw comes from generators derived from `seed`; at the start of each epoch the
chip's noise streams are restarted from `(seed, epoch)` and the weights re-written, so a resumed
run reproduces an uninterrupted one exactly, and `metrics.csv` is byte-identical for a seed.
"""

from __future__ import annotations

import math
import shutil
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from chiploop.chip.network import NetworkSpec
from chiploop.chip.protocol import Chip
from chiploop.chip_profiles.model import ChipProfile
from chiploop.cost import footprint_bytes
from chiploop.errors import ChipError, TrainingError
from chiploop.outdir import OutputError, claim, entries
from chiploop.training import defaults
from chiploop.training.checkpoint import append_tables, restore_checkpoint, save_checkpoint, write_tables
from chiploop.training.config import (
    MODES,
    OPTIMIZERS,
    EstimatorConfig,
    NetworkConfig,
    TaskConfig,
    TrainConfig,
    check_settings,
)
from chiploop.training.evaluation import epoch_row, evaluate_on_chip
from chiploop.training.history import History
from chiploop.training.metered import MeteredChip, reseed_chip_noise
from chiploop.training.progress import TrainingProgress
from chiploop.training.runs import RunDir, default_run_dir
from chiploop.training.stepping import Stepper, float_weights, layer_optimizer, set_layer_rates
from chiploop.training.tasks import Batch, Task
from chiploop.training.units import ScaledReadout, init_weights, layer_units

if TYPE_CHECKING:
    from chiploop.training.estimators import GradEstimate, GradientEstimator

__all__ = [
    "MODES",
    "OPTIMIZERS",
    "History",
    "MeteredChip",
    "Trainer",
    "TrainingProgress",
    "evaluate_on_chip",
    "reseed_chip_noise",
]

DIVERGENCE_FACTOR = 1e3  # a step loss this many times the initial train loss counts as exploding


def _generator(seed: int, stream: int) -> torch.Generator:
    """A torch Generator for one named stream of the run, derived from (seed, stream)."""
    state = np.random.SeedSequence([seed, stream]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


_DATA_STREAM, _INIT_STREAM, _HARDWARE_STREAM = 1, 2, 3


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
    Defaults are `chiploop.training.defaults`, the same as `chiploop train`'s. The settings are
    validated and kept as a `TrainConfig` (`settings`, written as config.yaml); `from_config` builds
    a Trainer from one, `from_run` from a run directory's config.yaml.
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

        check_settings(
            mode=mode,
            optimizer=optimizer,
            lr=lr,
            init_scale=init_scale,
            lr_decay=lr_decay,
            batch_size=batch_size,
            seed=seed,
        )
        the_profile = load_profile(profile) if isinstance(profile, str) else profile
        task_options, estimator_options = dict(task_options or {}), dict(estimator_options or {})
        the_estimator = _make_estimator(estimator, rate_reg, rate_target, seed, estimator_options)
        the_task = _make_task(task, seed, task_options)
        try:
            spec = spec if spec is not None else NetworkSpec(the_task.n_in, n_hidden, the_task.n_out)
        except ChipError as exc:
            raise TrainingError(str(exc).replace("NetworkSpec.", "")) from None
        config = TrainConfig.make(
            profile=the_profile.name,
            profile_spec=the_profile,
            network=NetworkConfig.of(spec),
            task=TaskConfig(name=the_task.name, seed=seed, options=task_options),
            estimator=EstimatorConfig(name=the_estimator.name, options=estimator_options),
            mode=mode,
            target=target,
            optimizer=optimizer,
            lr=lr,
            lr_decay=lr_decay,
            batch_size=batch_size,
            eval_batch_size=eval_batch_size or batch_size,
            train_eval_size=train_eval_size,
            init_scale=init_scale,
            seed=seed,
            epochs=epochs,
        )
        self._setup(
            config, the_profile, spec, the_task, the_estimator, chip, out_dir, progress, plots, overwrite
        )

    @classmethod
    def from_config(
        cls,
        config: TrainConfig,
        *,
        task: Task | None = None,
        chip: Chip | None = None,
        out_dir: str | Path | None = None,
        progress: bool = True,
        plots: bool = True,
        overwrite: bool = False,
    ) -> Trainer:
        """The Trainer of `config` (what `chiploop train` and `from_run` build).

        task: the task object if already built (else made from `config.task`); chip: None = `open_chip`.
        """
        est = config.estimator
        estimator = _make_estimator(est.name, est.rate_reg, est.rate_target, config.seed, est.options)
        the_task = (
            task if task is not None else _make_task(config.task.name, config.task.seed, config.task.options)
        )
        trainer = cls.__new__(cls)
        trainer._setup(
            config,
            config.profile_spec,
            config.network.spec(),
            the_task,
            estimator,
            chip,
            out_dir,
            progress,
            plots,
            overwrite,
        )
        return trainer

    @classmethod
    def from_run(
        cls, out_dir: str | Path, *, chip: Chip | None = None, progress: bool = True, plots: bool = True
    ) -> Trainer:
        """Rebuild the Trainer of a run directory from its `config.yaml` (for `fit(resume=True)`).

        Task and estimator are rebuilt from their names and recorded options (an object passed to
        the original Trainer comes back with its registry defaults); a run trained on a chip object
        needs that chip again.
        """
        config = TrainConfig.read(out_dir)
        if config.target.startswith("<") and chip is None:
            raise TrainingError(
                f"run {out_dir} was trained on a chip {config.target}: pass chip= to resume it"
            )
        return cls.from_config(config, chip=chip, out_dir=out_dir, progress=progress, plots=plots)

    def _setup(
        self,
        config: TrainConfig,
        profile: ChipProfile,
        spec: NetworkSpec,
        task: Task,
        estimator: GradientEstimator,
        chip: Chip | None,
        out_dir: str | Path | None,
        progress: bool,
        plots: bool,
        overwrite: bool,
    ) -> None:
        """Build the run's units from its settings and objects; record the settings they resolve to."""
        if (spec.n_in, spec.n_out) != (task.n_in, task.n_out):
            raise TrainingError(
                f"spec has n_in={spec.n_in}, n_out={spec.n_out}; task {task.name!r} needs "
                f"n_in={task.n_in}, n_out={task.n_out}"
            )
        if getattr(estimator, "cuts_only_recurrence", False) and not spec.recurrent:
            warnings.warn(
                f"estimator {estimator.name} equals bptt on a network without recurrence (it only cuts"
                " the gradient through W_rec): train a recurrent network (--recurrent) to see a difference",
                UserWarning,
                stacklevel=3,
            )
        resolved = config.estimator.model_copy(
            update={
                "rate_reg": getattr(estimator, "rate_reg", None),
                "rate_target": getattr(estimator, "rate_target", None),
            }
        )
        target = config.target if chip is None else f"<{type(chip).__name__} object>"
        self.settings = config.model_copy(
            update={
                "estimator": resolved,
                "target": target,
                "task": config.task.model_copy(update={"name": task.name}),
            }
        )
        self.profile, self.spec, self.task, self.estimator = profile, spec, task, estimator
        self.task_options, self.estimator_options = dict(config.task.options), dict(config.estimator.options)
        self.progress, self.plots, self.overwrite = progress, plots, overwrite
        self.run = RunDir(
            out_dir
            if out_dir is not None
            else default_run_dir(
                profile.name, task.name, estimator.name, config.mode, spec.n_hidden, config.seed
            )
        )
        self.readout = ScaledReadout.of(task, profile)

        from chiploop.emulator.twin import TorchTwin

        self.twin = TorchTwin(profile, spec, seed=config.seed)
        self.units = layer_units(profile, spec)
        init_weights(self.twin, _generator(config.seed, _INIT_STREAM), config.init_scale)
        self._data_gen = _generator(config.seed, _DATA_STREAM)
        self._hardware_gen = _generator(config.seed, _HARDWARE_STREAM)
        if chip is None:
            from chiploop.chip.targets import open_chip

            chip = open_chip(config.target, profile, spec, config.seed)
        self.chip = MeteredChip(chip)
        in_the_loop = config.mode == "in_the_loop"
        self.stepper = Stepper(
            self.twin,
            estimator,
            self.readout,
            layer_optimizer(config.optimizer, self.twin, self._rates(1)),
            chip=self.chip if in_the_loop else None,
            hardware=None if in_the_loop else self._hardware_gen,
            clip=profile.weights.value_range,
        )
        self.history = History()
        self.epoch = 0
        self._steps = 0  # optimizer steps taken by `step` since the last epoch ended
        self._deployed = False  # the chip holds the shadow weights (offline: deployed after changes)
        self._warned_reseed = False

    # ------------------------------------------------------------------ settings
    mode = property(lambda self: self.settings.mode)
    target = property(lambda self: self.settings.target)
    optimizer_name = property(lambda self: self.settings.optimizer)
    lr = property(lambda self: self.settings.lr)
    lr_decay = property(lambda self: self.settings.lr_decay)
    batch_size = property(lambda self: self.settings.batch_size)
    eval_batch_size = property(lambda self: self.settings.eval_batch_size)
    train_eval_size = property(lambda self: self.settings.train_eval_size)
    init_scale = property(lambda self: self.settings.init_scale)
    seed = property(lambda self: self.settings.seed)

    @property
    def epochs(self) -> int:
        """Epochs in total (the default of `fit`)."""
        return self.settings.epochs

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.stepper.optimizer

    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild this Trainer (`Trainer.from_run`): config.yaml's mapping."""
        return self.settings.to_yaml()

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

    def _rates(self, epoch: int) -> dict[str, float]:
        """Per-layer learning rate of `epoch` (1-based): `lr · lr_decay^(epoch−1)` in weight units
        (Adam step `lr·unit`, SGD `lr·unit²`)."""
        power = 1 if self.optimizer_name == "adam" else 2
        return {
            name: self.lr * self.lr_decay ** (epoch - 1) * self.units[name] ** power for name in self.units
        }

    # ------------------------------------------------------------------ weights and chip
    def float_weights(self) -> dict[str, np.ndarray]:
        """The twin's shadow weights as float64 arrays."""
        return float_weights(self.twin)

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
        return epoch_row(
            self.evaluate("train", self.train_eval_size), self.evaluate("test"), epoch, chip_runs
        )

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
        """One optimizer step on `batch` (`Stepper`); returns the step loss and the chip runs it used."""
        est = self.stepper.step(batch, lambda e: self._check_finite(e, epoch, index, reference_loss))
        if self.mode == "offline":
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
            self.settings = self.settings.model_copy(update={"epochs": epochs})
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
        write_tables(self.run, self.history)
        self._save_checkpoint()

    def _train_epoch(self, epoch: int, bar: TrainingProgress) -> None:
        start = time.perf_counter()
        chip_s = self.chip.seconds
        reference = self.history.rows[0]["train_loss"]
        if self.mode == "in_the_loop":
            self._program_chip(epoch)
        set_layer_rates(self.optimizer, self.twin, self._rates(epoch))
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
        append_tables(self.run, self.history)
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
        save_checkpoint(self.run, self.epoch, self.twin, self.optimizer, self._generators(), self.history)

    def _restore(self, state: dict[str, Any]) -> None:
        """Load a checkpoint into the twin, optimizer and generators; rewrite the CSV tables."""
        self.epoch, self.history = restore_checkpoint(
            self.run, state, self.twin, self.optimizer, self._generators()
        )

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


def _make_task(task: Task | str, seed: int, options: Mapping[str, Any]) -> Task:
    """The task object: `task` itself, or the registry's task of that name drawn with `seed`."""
    if not isinstance(task, str):
        return task
    from chiploop.training.tasks import make_task

    return make_task(task, seed=seed, **options)


def _make_estimator(
    estimator: GradientEstimator | str,
    rate_reg: float | None,
    rate_target: float | None,
    seed: int,
    options: Mapping[str, Any],
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
    return make_estimator(estimator, **(seeded | rate | dict(options)))
