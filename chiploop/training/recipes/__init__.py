"""Runnable reproductions of the research behind chiploop (docs/reproductions.md).

Each recipe module has `NAME` and `run(out_dir, quick, seed, progress, scale=1.0) -> RecipeResult`,
writing `results.csv`, PNG figures and `REPORT.md` into `out_dir`.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from chiploop.errors import TrainingError
from chiploop.training.recipes import bellec2020, christensen2024, cramer2022, ghosh2023, liu2022
from chiploop.training.recipes.common import RecipeResult

RECIPES: dict[str, ModuleType] = {
    m.NAME: m for m in (christensen2024, ghosh2023, bellec2020, liu2022, cramer2022)
}


def run_recipe(
    name: str,
    out_dir: str | Path,
    quick: bool = False,
    seed: int = 0,
    progress: bool = False,
    scale: float = 1.0,
) -> RecipeResult:
    """Run the recipe `name` (one of RECIPES) into `out_dir`."""
    if name not in RECIPES:
        raise TrainingError(f"unknown recipe {name!r}; valid recipes: {', '.join(RECIPES)}")
    return RECIPES[name].run(Path(out_dir), quick, seed, progress, scale)


__all__ = ["RECIPES", "RecipeResult", "run_recipe"]
