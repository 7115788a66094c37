"""Benchmark: a 3x3 deploy sweep with 2 seeds on digits (pcm_crossbar), on the local process pool
and on a dask.distributed LocalCluster with 1 and 2 workers. Prints wall times, their ratios and
whether every scheduler wrote the same results.csv.

    python benchmarks/characterize.py [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from distributed import LocalCluster

from chiploop.chip_profiles import load_profile
from chiploop.training.characterize import CharacterizeConfig, characterize
from chiploop.training.sweeps import parse_axis


def sweep(out: Path, scheduler: str | None, quick: bool) -> tuple[float, str]:
    """Run the benchmark sweep into `out`; (wall seconds, results.csv text)."""
    profile = load_profile("pcm_crossbar")
    axes = [
        parse_axis("noise.periphery.weight_sigma=0,0.05,0.1", profile),
        parse_axis("weights.bits=3,5,8" if not quick else "weights.bits=5,8", profile),
    ]
    config = CharacterizeConfig(
        profile=profile.model_dump(mode="json"), task="digits", kind="deploy", out_dir=str(out)
    )
    start = time.perf_counter()
    results = characterize(config, axes, ["bptt"], [0, 1], scheduler=scheduler, workers=2)
    return time.perf_counter() - start, results.read_text()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 3x2 grid instead of 3x3")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        timings, texts = {}, {}
        timings["local pool, 2 processes"], texts["local"] = sweep(root / "local", None, args.quick)
        for n in (1, 2):
            with LocalCluster(
                n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
            ) as cluster:
                key = f"dask LocalCluster, {n} worker(s)"
                timings[key], texts[key] = sweep(root / f"dask{n}", cluster.scheduler_address, args.quick)
    base = timings["local pool, 2 processes"]
    for name, seconds in timings.items():
        print(f"{name:32s} {seconds:7.1f} s   x{seconds / base:.2f} of the local pool")
    one, two = timings["dask LocalCluster, 1 worker(s)"], timings["dask LocalCluster, 2 worker(s)"]
    print(f"dask speed-up 1 -> 2 workers: {one / two:.2f}x")
    print("identical results.csv on every scheduler:", len(set(texts.values())) == 1)


if __name__ == "__main__":
    main()
