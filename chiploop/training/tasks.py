"""Benchmark tasks: seeded, offline, fixed train/test splits of spike rasters with targets.

Every task materialises both splits at construction (inputs stored as uint8 spikes), so the same
`(name, seed, options)` always gives the same data. `batches(split, batch_size, generator)` walks a
split in order, or in a shuffled order drawn from `generator`.

Targets:
- classification: class indices `[B]` (long). Logits are the mean of the readout membrane `out_v`
  over the task's readout window (`readout_start..T`), the loss is cross-entropy, the metric accuracy.
- regression: `[B, T, n_out]` float; NaN marks steps without a target (ignored by loss and metric).
  The loss is the mean squared error over targeted entries, the metric "1-nmse" = 1 − Σ(out − y)²/Σy²
  over targeted entries: 1 is perfect, 0 is as good as an output stuck at zero (all targets are
  zero-mean or ±1, so this is close to R² and, unlike R², defined for any batch).
"""

from __future__ import annotations

import importlib.util
import inspect
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F

from chiploop.errors import TrainingError

SPLITS = ("train", "test")


@dataclass
class Batch:
    """A batch of input rasters `[B, T, n_in]` (float 0/1) and their targets (see module doc)."""

    inputs: torch.Tensor
    targets: torch.Tensor


def _split_rngs(seed: int, salt: int) -> dict[str, np.random.Generator]:
    """Independent generators per split, derived from (seed, salt)."""
    seqs = np.random.SeedSequence([seed, salt]).spawn(len(SPLITS))
    return {split: np.random.default_rng(s) for split, s in zip(SPLITS, seqs, strict=True)}


def _bernoulli(rng: np.random.Generator, p: np.ndarray) -> np.ndarray:
    """uint8 spikes with per-entry probability `p` (clipped to [0, 1])."""
    return (rng.random(p.shape) < np.clip(p, 0.0, 1.0)).astype(np.uint8)


class Task(ABC):
    """A dataset of spike rasters with a loss and a metric on the readout membrane `[B, T, n_out]`."""

    name: ClassVar[str]
    kind: ClassVar[Literal["classification", "regression"]]
    metric_name: ClassVar[str]

    def __init__(self, n_in: int, n_out: int, n_steps: int, data: dict[str, tuple[np.ndarray, np.ndarray]]):
        self.n_in, self.n_out, self.n_steps = n_in, n_out, n_steps
        self._inputs = {split: torch.from_numpy(np.ascontiguousarray(x)) for split, (x, _) in data.items()}
        self._targets = {split: torch.from_numpy(np.ascontiguousarray(y)) for split, (_, y) in data.items()}

    def _check_split(self, split: str) -> None:
        if split not in SPLITS:
            raise TrainingError(f"task '{self.name}': split must be one of {SPLITS}, got {split!r}")

    def split_size(self, split: str) -> int:
        """Number of samples in `split` ("train" or "test")."""
        self._check_split(split)
        return int(self._inputs[split].shape[0])

    def batches(
        self, split: str, batch_size: int, generator: torch.Generator | None = None
    ) -> Iterator[Batch]:
        """Batches covering `split` once (the last one may be smaller); shuffled iff `generator` given."""
        self._check_split(split)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise TrainingError(f"batch_size must be a positive int, got {batch_size!r}")
        n = self.split_size(split)
        order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            inputs = self._inputs[split].index_select(0, idx).float()
            yield Batch(inputs, self._targets[split].index_select(0, idx))

    def _check_out(self, out_v: torch.Tensor) -> None:
        if out_v.ndim != 3 or out_v.shape[1:] != (self.n_steps, self.n_out):
            raise TrainingError(
                f"task '{self.name}': out_v must be [B, {self.n_steps}, {self.n_out}], "
                f"got {tuple(out_v.shape)}"
            )

    @abstractmethod
    def loss(self, out_v: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Scalar mean loss of the readout membrane `out_v [B, T, n_out]` (differentiable)."""

    @abstractmethod
    def metric(self, out_v: torch.Tensor, targets: torch.Tensor) -> float:
        """Task metric on `out_v`; higher is better."""


class ClassificationTask(Task):
    """Cross-entropy on the readout membrane averaged over steps `readout_start..T`; accuracy."""

    kind = "classification"
    metric_name = "accuracy"
    readout_start: int

    def logits(self, out_v: torch.Tensor) -> torch.Tensor:
        """Class scores `[B, n_out]`: mean of `out_v` over the readout window."""
        self._check_out(out_v)
        return out_v[:, self.readout_start :].mean(dim=1)

    def loss(self, out_v: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.logits(out_v), targets.long())

    def metric(self, out_v: torch.Tensor, targets: torch.Tensor) -> float:
        with torch.no_grad():
            return float((self.logits(out_v).argmax(dim=1) == targets.long()).double().mean())


class RegressionTask(Task):
    """Mean squared error over targeted (non-NaN) entries; metric 1 − normalised MSE."""

    kind = "regression"
    metric_name = "1-nmse"

    def _residual(self, out_v: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._check_out(out_v)
        if targets.shape != out_v.shape:
            raise TrainingError(
                f"task '{self.name}': targets must be {tuple(out_v.shape)}, got {tuple(targets.shape)}"
            )
        mask = torch.isfinite(targets)
        diff = torch.where(mask, out_v - torch.nan_to_num(targets.to(out_v.dtype)), 0.0)
        return diff, mask

    def loss(self, out_v: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        diff, mask = self._residual(out_v, targets)
        return (diff**2).sum() / mask.sum().clamp(min=1)

    def metric(self, out_v: torch.Tensor, targets: torch.Tensor) -> float:
        with torch.no_grad():
            diff, _ = self._residual(out_v, targets)
            power = (torch.nan_to_num(targets.double()) ** 2).sum()
            if power == 0:
                raise TrainingError(f"task '{self.name}': 1-nmse needs a non-zero target, got all zeros")
            return float(1.0 - (diff.double() ** 2).sum() / power)


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits (images `[1797, 64]`, labels), read from the CSV file it ships
    without importing scikit-learn (~3 s of start-up); its `load_digits` if the file is not there."""
    spec = importlib.util.find_spec("sklearn")
    roots = (spec.submodule_search_locations or []) if spec else []
    path = next((Path(p) / "datasets" / "data" / "digits.csv.gz" for p in roots), None)
    if path is None or not path.is_file():
        from sklearn.datasets import load_digits

        return load_digits(return_X_y=True)
    data = np.loadtxt(path, delimiter=",")
    return data[:, :-1], data[:, -1].astype(int)


class DigitsTask(ClassificationTask):
    """scikit-learn's bundled 8x8 digits (1797 images) as 64 spike channels, 10 classes.

    coding="rate": Bernoulli spikes with p = pixel/16 · max_rate per step; coding="latency": one
    spike per non-zero pixel at step round((1 − pixel/16)·(T−1)/2) (brighter = earlier). Rasters are
    drawn once per split (frozen). The split is a seeded permutation: `n_test` test images, the rest
    train. Logits: mean of `out_v` over the second half of the trial.
    """

    name = "digits"

    def __init__(
        self,
        seed: int = 0,
        n_steps: int = 30,
        coding: Literal["rate", "latency"] = "rate",
        max_rate: float = 0.5,
        n_test: int = 360,
    ):
        if coding not in ("rate", "latency"):
            raise TrainingError(f"digits: coding must be 'rate' or 'latency', got {coding!r}")
        if not 0.0 < max_rate <= 1.0:
            raise TrainingError(
                f"digits: max_rate must be in (0, 1] (spike probability per step), got {max_rate}"
            )
        images, labels = _load_digits()
        if not 0 < n_test < len(labels):
            raise TrainingError(f"digits: n_test must be in 1..{len(labels) - 1}, got {n_test}")
        _check_steps(self.name, n_steps, 2)
        perm = np.random.default_rng([seed, 1]).permutation(len(labels))
        index = {"test": perm[:n_test], "train": perm[n_test:]}
        rngs = _split_rngs(seed, 2)
        data = {}
        for split in SPLITS:
            intensity = images[index[split]] / 16.0  # [N, 64] in [0, 1]
            if coding == "rate":
                p = np.broadcast_to(intensity[:, None, :] * max_rate, (len(intensity), n_steps, 64))
                x = _bernoulli(rngs[split], p)
            else:
                x = np.zeros((len(intensity), n_steps, 64), np.uint8)
                step = np.rint((1.0 - intensity) * (n_steps - 1) / 2).astype(int)
                n, ch = np.nonzero(intensity > 0)
                x[n, step[n, ch], ch] = 1
            data[split] = (x, labels[index[split]].astype(np.int64))
        self.readout_start = n_steps // 2
        super().__init__(64, 10, n_steps, data)


class EvidenceTask(ClassificationTask):
    """Cue accumulation (Bellec et al. 2020), scaled down: which side showed more cues?

    4 populations of `n_per_pop` inputs: left, right, recall, noise. `n_cues` (odd) cues of
    `cue_steps` steps separated by `gap_steps`, each shown by the left or the right population
    (fair coin) at `cue_rate`; then `delay_steps` of silence; then the recall population fires for
    the last `recall_steps`, the readout window. The noise population fires at `noise_rate` throughout.
    Label 0 = left, 1 = right.
    """

    name = "evidence"

    def __init__(
        self,
        seed: int = 0,
        n_per_pop: int = 10,
        n_cues: int = 5,
        cue_steps: int = 10,
        gap_steps: int = 5,
        delay_steps: int = 40,
        recall_steps: int = 20,
        cue_rate: float = 0.2,
        noise_rate: float = 0.05,
        n_train: int = 1024,
        n_test: int = 256,
    ):
        if n_cues < 1 or n_cues % 2 == 0:
            raise TrainingError(f"evidence: n_cues must be a positive odd int, got {n_cues}")
        for field, value in dict(n_per_pop=n_per_pop, cue_steps=cue_steps, recall_steps=recall_steps).items():
            if value < 1:
                raise TrainingError(f"evidence: {field} must be >= 1, got {value}")
        if gap_steps < 0 or delay_steps < 0:
            raise TrainingError(
                f"evidence: gap_steps, delay_steps must be >= 0, got {gap_steps}, {delay_steps}"
            )
        n_steps = n_cues * (cue_steps + gap_steps) + delay_steps + recall_steps
        n_in = 4 * n_per_pop
        pops = [slice(k * n_per_pop, (k + 1) * n_per_pop) for k in range(4)]
        rngs = _split_rngs(seed, 3)
        data = {}
        for split, n in zip(SPLITS, _sizes(self.name, n_train, n_test), strict=True):
            rng = rngs[split]
            sides = rng.integers(0, 2, size=(n, n_cues))  # 0 left, 1 right
            p = np.zeros((n, n_steps, n_in))
            p[:, :, pops[3]] = noise_rate
            for k in range(n_cues):
                t0 = k * (cue_steps + gap_steps)
                for side in (0, 1):
                    p[sides[:, k] == side, t0 : t0 + cue_steps, pops[side]] = cue_rate
            p[:, n_steps - recall_steps :, pops[2]] = cue_rate
            labels = (sides.sum(axis=1) * 2 > n_cues).astype(np.int64)
            data[split] = (_bernoulli(rng, p), labels)
        self.readout_start = n_steps - recall_steps
        super().__init__(n_in, 2, n_steps, data)


class PatternTask(RegressionTask):
    """Pattern generation (Bellec et al. 2020): frozen Poisson inputs → sums of 4 sines.

    `n_patterns` fixed input rasters (`n_in` channels at `rate` spikes/step), each with its own
    `n_out` targets Σ_k a_k sin(2π f_k t/T + φ_k), f = 1, 2, 3, 5 cycles per trial, a ~ U(0.5, 2),
    φ ~ U(0, 2π), scaled to peak |target| = `amplitude`. A memorisation task: the test split is the
    training split.
    """

    name = "pattern"
    FREQS = (1.0, 2.0, 3.0, 5.0)

    def __init__(
        self,
        seed: int = 0,
        n_in: int = 50,
        n_out: int = 2,
        n_steps: int = 100,
        rate: float = 0.05,
        amplitude: float = 1.0,
        n_patterns: int = 1,
    ):
        _check_steps(self.name, n_steps, 2)
        if n_in < 1 or n_out < 1 or n_patterns < 1:
            raise TrainingError(
                f"pattern: n_in, n_out, n_patterns must be >= 1, got {n_in}, {n_out}, {n_patterns}"
            )
        rng = np.random.default_rng([seed, 4])
        x = _bernoulli(rng, np.full((n_patterns, n_steps, n_in), rate))
        t = np.arange(n_steps)[None, :, None, None] / n_steps
        amp = rng.uniform(0.5, 2.0, size=(n_patterns, 1, n_out, len(self.FREQS)))
        phase = rng.uniform(0.0, 2 * np.pi, size=(n_patterns, 1, n_out, len(self.FREQS)))
        y = (amp * np.sin(2 * np.pi * np.array(self.FREQS) * t + phase)).sum(axis=-1)
        y *= amplitude / np.abs(y).max(axis=1, keepdims=True)
        data = {split: (x, y.astype(np.float32)) for split in SPLITS}
        super().__init__(n_in, n_out, n_steps, data)


class IntegrationTask(RegressionTask):
    """Noisy evidence integration (Liu et al. 2022), spike-coded: report the sign s after T steps.

    x_t = s·μ + N(0, 1), s = ±1, μ ~ U(mu_low, mu_high). Two populations of `n_per_sign` channels
    fire with p = clip(gain·x_t, 0, 1) (positive) and p = clip(−gain·x_t, 0, 1) (negative). Target:
    s on the last `target_steps` steps (NaN before), one output. `delay_steps`: silent steps after
    the `n_steps` of evidence (T = n_steps + delay_steps), so the target window can lie after the
    evidence and the memory has to be held by the network.
    """

    name = "integration"

    def __init__(
        self,
        seed: int = 0,
        n_steps: int = 30,
        n_per_sign: int = 8,
        gain: float = 0.5,
        mu_low: float = 0.02,
        mu_high: float = 0.15,
        target_steps: int = 5,
        n_train: int = 1000,
        n_test: int = 250,
        delay_steps: int = 0,
    ):
        if not isinstance(delay_steps, int) or delay_steps < 0:
            raise TrainingError(f"integration: delay_steps must be an int >= 0, got {delay_steps!r}")
        _check_steps(self.name, n_steps + delay_steps, target_steps + 1)
        if target_steps < 1 or n_per_sign < 1:
            raise TrainingError(
                f"integration: target_steps, n_per_sign must be >= 1, got {target_steps}, {n_per_sign}"
            )
        total = n_steps + delay_steps
        rngs = _split_rngs(seed, 5)
        data = {}
        for split, n in zip(SPLITS, _sizes(self.name, n_train, n_test), strict=True):
            rng = rngs[split]
            s = rng.choice([-1.0, 1.0], size=n)
            mu = rng.uniform(mu_low, mu_high, size=n)
            x = s[:, None] * mu[:, None] + rng.standard_normal((n, n_steps))
            p = np.repeat((gain * x)[:, :, None], n_per_sign, axis=2)
            spikes = np.concatenate([_bernoulli(rng, p), _bernoulli(rng, -p)], axis=2)
            if delay_steps:
                silent = np.zeros((n, delay_steps, spikes.shape[2]), spikes.dtype)
                spikes = np.concatenate([spikes, silent], axis=1)
            y = np.full((n, total, 1), np.nan, np.float32)
            y[:, total - target_steps :, 0] = s[:, None]
            data[split] = (spikes, y)
        super().__init__(2 * n_per_sign, 1, total, data)


class TeacherTask(RegressionTask):
    """Student–teacher regression (Ghosh et al. 2023), spike-coded.

    X ~ U[0, 1]^n_features, rate-coded as Bernoulli spikes with p = X·max_rate per step. A random
    teacher (depth 0: linear; depth d: d ReLU layers of `width`, He-initialised) maps X to `n_out`
    values, standardised with the training split's mean and std. Target: that value on the second
    half of the trial (NaN before).
    """

    name = "teacher"

    def __init__(
        self,
        seed: int = 0,
        n_features: int = 25,
        n_out: int = 1,
        depth: int = 1,
        width: int = 25,
        n_steps: int = 20,
        max_rate: float = 0.5,
        n_train: int = 1000,
        n_test: int = 250,
    ):
        _check_steps(self.name, n_steps, 2)
        if n_features < 1 or n_out < 1 or depth < 0 or width < 1:
            raise TrainingError(
                f"teacher: need n_features, n_out, width >= 1 and depth >= 0, got {n_features}, {n_out}, "
                f"{width}, {depth}"
            )
        rng = np.random.default_rng([seed, 6])
        sizes = [n_features] + [width] * depth + [n_out]
        layers = [
            rng.standard_normal((a, b)) * math.sqrt(2.0 / a)
            for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        ]

        def teacher(features: np.ndarray) -> np.ndarray:
            h = features
            for w in layers[:-1]:
                h = np.maximum(h @ w, 0.0)
            return h @ layers[-1]

        rngs = _split_rngs(seed, 7)
        feats = {
            split: rngs[split].random((n, n_features))
            for split, n in zip(SPLITS, _sizes(self.name, n_train, n_test), strict=True)
        }
        raw = {split: teacher(f) for split, f in feats.items()}
        mean, std = raw["train"].mean(axis=0), raw["train"].std(axis=0) + 1e-12
        data = {}
        for split in SPLITS:
            n = len(feats[split])
            p = np.broadcast_to(feats[split][:, None, :] * max_rate, (n, n_steps, n_features))
            y = np.full((n, n_steps, n_out), np.nan, np.float32)
            y[:, n_steps // 2 :, :] = ((raw[split] - mean) / std)[:, None, :]
            data[split] = (_bernoulli(rngs[split], p), y)
        super().__init__(n_features, n_out, n_steps, data)


def _check_steps(task: str, n_steps: int, minimum: int) -> None:
    if not isinstance(n_steps, int) or n_steps < minimum:
        raise TrainingError(f"{task}: n_steps must be an int >= {minimum}, got {n_steps!r}")


def _sizes(task: str, n_train: int, n_test: int) -> tuple[int, int]:
    if n_train < 1 or n_test < 1:
        raise TrainingError(f"{task}: n_train and n_test must be >= 1, got {n_train}, {n_test}")
    return n_train, n_test


_REGISTRY: dict[str, type[Task]] = {
    cls.name: cls for cls in (DigitsTask, EvidenceTask, PatternTask, IntegrationTask, TeacherTask)
}
TASKS: tuple[str, ...] = tuple(_REGISTRY)


def make_task(name: str, seed: int = 0, **options: object) -> Task:
    """Build the task `name` (one of TASKS) with `seed`; `options` are its constructor's keywords."""
    if name not in _REGISTRY:
        raise TrainingError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}")
    cls = _REGISTRY[name]
    valid = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "seed")]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise TrainingError(f"task {name!r}: unknown option(s) {unknown}; valid options: {', '.join(valid)}")
    return cls(seed=seed, **options)
