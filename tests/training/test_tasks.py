"""Tasks: shapes, determinism, fixed disjoint splits, loss/metric sanity, registry errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from chiploop.errors import TrainingError
from chiploop.training.tasks import TASKS, Batch, make_task

# small options so the whole module stays fast (digits is the real dataset)
SMALL = {
    "digits": {},
    "evidence": {"n_train": 64, "n_test": 32},
    "pattern": {"n_steps": 40},
    "integration": {"n_train": 64, "n_test": 32},
    "teacher": {"n_train": 64, "n_test": 32},
}


@pytest.fixture(scope="module")
def tasks():
    return {name: make_task(name, seed=3, **SMALL[name]) for name in TASKS}


def all_batches(task, split, batch_size=16, generator=None):
    return list(task.batches(split, batch_size, generator))


def test_registry_lists_the_five_tasks():
    assert set(TASKS) == {"digits", "evidence", "pattern", "integration", "teacher"}


def test_unknown_task_lists_valid_names():
    with pytest.raises(TrainingError) as err:
        make_task("mnist")
    for name in TASKS:
        assert name in str(err.value)


def test_unknown_option_lists_valid_options():
    with pytest.raises(TrainingError, match="n_cues"):
        make_task("evidence", n_cue=3)


@pytest.mark.parametrize(
    ("name", "options"),
    [("evidence", {"n_cues": 4}), ("digits", {"coding": "phase"}), ("digits", {"max_rate": 1.5})],
)
def test_bad_options_raise(name, options):
    with pytest.raises(TrainingError):
        make_task(name, **options)


@pytest.mark.parametrize("name", TASKS)
def test_shapes_and_types(tasks, name):
    task = tasks[name]
    batch = next(task.batches("train", 5))
    assert isinstance(batch, Batch)
    b = min(5, task.split_size("train"))
    assert batch.inputs.shape == (b, task.n_steps, task.n_in)
    assert batch.inputs.dtype == torch.float32
    assert set(torch.unique(batch.inputs).tolist()) <= {0.0, 1.0}
    assert batch.inputs.sum() > 0
    if task.kind == "classification":
        assert task.metric_name == "accuracy"
        assert batch.targets.shape == (b,) and batch.targets.dtype == torch.long
        assert 0 <= batch.targets.min() and batch.targets.max() < task.n_out
    else:
        assert task.kind == "regression"
        assert batch.targets.shape == (b, task.n_steps, task.n_out)
        assert torch.isfinite(batch.targets).any()


@pytest.mark.parametrize("name", TASKS)
def test_batches_cover_the_split_once(tasks, name):
    task = tasks[name]
    for split in ("train", "test"):
        batches = all_batches(task, split, batch_size=7)
        assert sum(len(b.inputs) for b in batches) == task.split_size(split)
        assert all(len(b.inputs) == 7 for b in batches[:-1])


@pytest.mark.parametrize("name", TASKS)
def test_same_seed_same_data_other_seed_other_data(tasks, name):
    task = tasks[name]
    again = make_task(name, seed=3, **SMALL[name])
    other = make_task(name, seed=4, **SMALL[name])
    for split in ("train", "test"):
        a, b, c = (torch.cat([x.inputs for x in all_batches(t, split)]) for t in (task, again, other))
        assert torch.equal(a, b)
        assert not torch.equal(a, c)


@pytest.mark.parametrize("name", TASKS)
def test_shuffle_only_with_generator_and_reproducibly(tasks, name):
    task = tasks[name]
    plain = torch.cat([b.inputs for b in all_batches(task, "train")])
    assert torch.equal(plain, torch.cat([b.inputs for b in all_batches(task, "train")]))
    shuffled = [
        torch.cat([b.inputs for b in all_batches(task, "train", generator=torch.Generator().manual_seed(9))])
        for _ in range(2)
    ]
    assert torch.equal(shuffled[0], shuffled[1])
    flat = lambda x: sorted(map(bytes, x.to(torch.uint8).reshape(len(x), -1).numpy()))  # noqa: E731
    assert flat(shuffled[0]) == flat(plain)  # a permutation of the same samples
    if task.split_size("train") > 1:
        assert not torch.equal(shuffled[0], plain)


@pytest.mark.parametrize("name", [n for n in TASKS if n != "pattern"])
def test_splits_are_disjoint(tasks, name):
    task = tasks[name]
    rows = {
        split: {bytes(x.to(torch.uint8).numpy()) for b in all_batches(task, split) for x in b.inputs}
        for split in ("train", "test")
    }
    assert not rows["train"] & rows["test"]


def test_pattern_is_memorisation_test_equals_train(tasks):
    task = tasks["pattern"]
    train, test = next(task.batches("train", 8)), next(task.batches("test", 8))
    assert torch.equal(train.inputs, test.inputs) and torch.equal(train.targets, test.targets)
    assert torch.allclose(train.targets.abs().amax(dim=1), torch.ones(1, task.n_out))


def test_digits_split_sizes_and_information():
    task = make_task("digits", seed=0)
    assert (task.split_size("train"), task.split_size("test")) == (1437, 360)
    from sklearn.linear_model import LogisticRegression

    def counts(split):
        batches = all_batches(task, split, 512)
        return torch.cat([b.inputs.sum(1) for b in batches]).numpy(), torch.cat(
            [b.targets for b in batches]
        ).numpy()

    model = LogisticRegression(max_iter=500).fit(*counts("train"))
    assert model.score(*counts("test")) > 0.85  # the rasters carry the digit


def test_digits_latency_coding_one_spike_per_bright_pixel():
    task = make_task("digits", seed=0, coding="latency", n_steps=20)
    batch = next(task.batches("train", 64))
    per_channel = batch.inputs.sum(1)
    assert per_channel.max() == 1 and per_channel.sum() > 0
    assert batch.inputs[:, 10:].sum() == 0  # brightest pixels fire first, all in the first half


def test_evidence_label_is_the_majority_side():
    task = make_task(
        "evidence", seed=1, n_per_pop=5, n_cues=3, cue_rate=1.0, noise_rate=0.0, n_train=40, n_test=8
    )
    batch = next(task.batches("train", 40))
    cue_part = batch.inputs[:, : 3 * 15]
    left, right = cue_part[..., 0:5].sum((1, 2)) / 50, cue_part[..., 5:10].sum((1, 2)) / 50
    assert torch.equal(left + right, torch.full((40,), 3.0))  # every cue is exactly one side
    assert torch.equal(batch.targets, (right > left).long())
    assert 0 < batch.targets.sum() < 40
    recall = batch.inputs[:, task.readout_start :, 10:15]
    assert recall.min() == 1 and batch.inputs[:, : task.readout_start, 10:15].sum() == 0


def test_integration_targets_and_evidence():
    task = make_task("integration", seed=0, gain=1.0, n_train=400, n_test=10)
    batch = next(task.batches("train", 400))
    assert torch.isnan(batch.targets[:, :-5]).all()
    s = batch.targets[:, -1, 0]
    assert set(s.tolist()) == {-1.0, 1.0} and (batch.targets[:, -5:, 0] == s[:, None]).all()
    half = task.n_in // 2
    evidence = batch.inputs[..., :half].sum((1, 2)) - batch.inputs[..., half:].sum((1, 2))
    assert (torch.sign(evidence) == s).double().mean() > 0.6  # noisy, but informative


def test_teacher_targets_standardised_on_train():
    task = make_task("teacher", seed=0, n_out=2)
    y = torch.cat([b.targets for b in task.batches("train", 1000)])
    assert torch.isnan(y[:, : task.n_steps // 2]).all()
    final = y[:, -1].double()
    assert torch.allclose(final.mean(0), torch.zeros(2, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(final.std(0, unbiased=False), torch.ones(2, dtype=torch.float64), atol=1e-4)


@pytest.mark.parametrize("name", TASKS)
def test_loss_and_metric_are_sane(tasks, name):
    task = tasks[name]
    batch = next(task.batches("test", 8))
    b = len(batch.inputs)
    zeros = torch.zeros(b, task.n_steps, task.n_out, requires_grad=True)
    if task.kind == "classification":
        assert task.loss(zeros, batch.targets).item() == pytest.approx(np.log(task.n_out))
        perfect = torch.zeros(b, task.n_steps, task.n_out)
        perfect[torch.arange(b), task.readout_start :, batch.targets] = 20.0
        perfect[:, : task.readout_start] = torch.randn(b, task.readout_start, task.n_out) * 100  # ignored
        assert task.metric(perfect, batch.targets) == 1.0
        assert task.loss(perfect, batch.targets).item() < 1e-6
        wrong = torch.zeros(b, task.n_steps, task.n_out)
        wrong[torch.arange(b), :, (batch.targets + 1) % task.n_out] = 20.0
        assert task.metric(wrong, batch.targets) == 0.0
    else:
        assert task.metric_name == "1-nmse"
        perfect = torch.nan_to_num(batch.targets) + torch.isnan(batch.targets) * 50.0  # untargeted: ignored
        assert task.loss(perfect, batch.targets).item() == 0.0
        assert task.metric(perfect, batch.targets) == pytest.approx(1.0)
        assert task.metric(zeros, batch.targets) == pytest.approx(0.0)
        assert task.metric(-torch.nan_to_num(batch.targets), batch.targets) == pytest.approx(-3.0)
    loss = task.loss(zeros, batch.targets)
    (grad,) = torch.autograd.grad(loss, zeros)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    if task.kind == "regression":
        assert (grad[torch.isnan(batch.targets)] == 0).all()


def test_bad_split_batch_size_and_shape():
    task = make_task("teacher", n_train=8, n_test=4)
    with pytest.raises(TrainingError, match="split"):
        task.split_size("val")
    with pytest.raises(TrainingError, match="batch_size"):
        next(task.batches("train", 0))
    with pytest.raises(TrainingError, match="out_v"):
        task.loss(torch.zeros(2, 3, 1), torch.zeros(2, 3, 1))
