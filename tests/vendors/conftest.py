"""Vendor oracles: the simulators and reference models the chip profiles are checked against.

- XyloSim (`xylosim`, a dev dependency): imported directly.
- Lava: golden traces written by `lava_traces.py` under Lava's own Python (see its docstring).
- aihwkit: its PCM noise model (`inference/noise/pcm.py` and what it imports) is pure Python over
  torch, but the package only builds with its C++ simulator. The fixture downloads the published
  sdist (`pip download`, cached under `$CHIPLOOP_CACHE` or ~/.cache/chiploop) and loads those four
  modules from it, unchanged; without a package index it skips, saying so.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tarfile
import types
from pathlib import Path

import pytest

AIHWKIT = "aihwkit==1.2.0"
_AIHWKIT_MODULES = (  # dependency order
    "inference/converter/base.py",
    "inference/converter/conductance.py",
    "inference/noise/base.py",
    "inference/noise/pcm.py",
)


def _cache() -> Path:
    root = os.environ.get("CHIPLOOP_CACHE") or Path.home() / ".cache" / "chiploop"
    return Path(root) / "oracles"


def _aihwkit_sdist() -> Path:
    target = _cache() / "aihwkit"
    found = sorted(target.glob("aihwkit-*.tar.gz"))
    if found:
        return found[-1]
    target.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", str(target), AIHWKIT]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    found = sorted(target.glob("aihwkit-*.tar.gz"))
    if done.returncode != 0 or not found:
        pytest.skip(f"aihwkit's sdist could not be downloaded ({AIHWKIT}): {done.stderr.strip()[-300:]}")
    return found[-1]


@pytest.fixture(scope="session")
def aihwkit_pcm() -> types.ModuleType:
    """aihwkit's `aihwkit.inference.noise.pcm` module, loaded from the published sdist."""
    sdist = _aihwkit_sdist()
    root = sdist.parent / sdist.name.removesuffix(".tar.gz")
    if not root.exists():
        with tarfile.open(sdist) as tar:
            members = [
                m
                for m in tar.getmembers()
                if any(m.name.endswith("src/aihwkit/" + f) for f in _AIHWKIT_MODULES)
            ]
            tar.extractall(sdist.parent, members=members, filter="data")
    saved = {k: v for k, v in sys.modules.items() if k == "aihwkit" or k.startswith("aihwkit.")}
    try:
        for package in (
            "aihwkit",
            "aihwkit.inference",
            "aihwkit.inference.converter",
            "aihwkit.inference.noise",
        ):
            module = types.ModuleType(package)
            module.__path__ = []  # only the loaded files: the real __init__ imports the C++ part
            sys.modules[package] = module
        for relative in _AIHWKIT_MODULES:
            name = "aihwkit." + relative.removesuffix(".py").replace("/", ".")
            spec = importlib.util.spec_from_file_location(name, root / "src" / "aihwkit" / relative)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        return sys.modules["aihwkit.inference.noise.pcm"]
    finally:
        for key in [k for k in sys.modules if k == "aihwkit" or k.startswith("aihwkit.")]:
            del sys.modules[key]
        sys.modules.update(saved)
