"""Characterize sweeps: same results.csv on a dask LocalCluster and on the local pool; an
interrupted sweep resumes."""

import pytest

from chiploop.chip_profiles import load_profile
from chiploop.training.characterize import CharacterizeConfig, characterize
from chiploop.training.sweeps import parse_axis, read_results

distributed = pytest.importorskip("distributed")


def _config(out, kind="deploy"):
    return CharacterizeConfig(
        profile=load_profile("rram_crossbar").model_dump(mode="json"),
        task="teacher",
        kind=kind,
        out_dir=str(out),
        epochs=1,
        n_hidden=8,
        target="twin",
        quality_repeats=2,
    )


def _axes():
    return [parse_axis("noise.read.sigma=0,0.5", load_profile("rram_crossbar"))]


@pytest.mark.slow
def test_dask_local_cluster_gives_the_same_results_as_the_local_pool(tmp_path):
    local = characterize(_config(tmp_path / "local"), _axes(), ["bptt"], [0, 1], workers=2)
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        remote = characterize(
            _config(tmp_path / "dask"), _axes(), ["bptt"], [0, 1], scheduler=cluster.scheduler_address
        )
    assert local.read_text() == remote.read_text()
    rows = read_results(tmp_path / "local")
    assert len(rows) == 4


@pytest.mark.slow
def test_interrupted_train_sweep_resumes_without_redoing_cells(tmp_path):
    config = _config(tmp_path, kind="train")

    def interrupt(cell, row):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        characterize(config, _axes(), ["bptt"], [0], on_done=interrupt)  # after the first cell saved
    before = read_results(tmp_path)
    redone = []
    characterize(config, _axes(), ["bptt"], [0], on_done=lambda cell, row: redone.append(cell.key))
    after = read_results(tmp_path)
    assert len(before) == 1 and len(redone) == 1 and redone[0] not in before
    assert set(after) == set(before) | set(redone)
    [kept] = before
    assert after[kept] == before[kept]
