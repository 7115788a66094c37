"""Runnable reproductions of the research behind chiploop (docs/reproductions.md).

Each recipe module has `NAME` and `run(out_dir, quick, seed, progress, scale=1.0) -> RecipeResult`,
writing `results.csv`, PNG figures and `REPORT.md` into `out_dir`.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from chiploop.errors import TrainingError

if TYPE_CHECKING:
    from chiploop.training.recipes.common import RecipeResult

RECIPES = ("christensen2024", "ghosh2023", "bellec2020", "liu2022", "cramer2022")  # module names, in order


def recipe(name: str) -> ModuleType:
    """The recipe module `name` (imported on first use: recipes need torch, listing them does not)."""
    if name not in RECIPES:
        raise TrainingError(f"unknown recipe {name!r}; valid recipes: {', '.join(RECIPES)}")
    return importlib.import_module(f"{__name__}.{name}")


def claim(name: str) -> str:
    """The first line of recipe `name`'s module docstring: the claim it reproduces (read, not imported)."""
    spec = importlib.util.find_spec(f"{__name__}.{name}")
    assert spec is not None and spec.origin is not None
    doc = ast.get_docstring(ast.parse(Path(spec.origin).read_text())) or name
    return doc.strip().splitlines()[0]


def run_recipe(
    name: str,
    out_dir: str | Path,
    quick: bool = False,
    seed: int = 0,
    progress: bool = False,
    scale: float = 1.0,
) -> RecipeResult:
    """Run the recipe `name` (one of RECIPES) into `out_dir`."""
    return recipe(name).run(Path(out_dir), quick, seed, progress, scale)


__all__ = ["RECIPES", "claim", "recipe", "run_recipe"]
