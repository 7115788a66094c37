"""Compiled Brian2 projects on disk: one per `Shape`, built once, reused by every later process.

A project is generated and compiled in a child process (`python -m chiploop.emulator.brian_cache`),
because Brian2's standalone device is process-global: building never touches the caller's Brian2
state, and a cache hit never even imports Brian2. The generated `_write_arrays` is replaced by one
that writes only the monitors (the stock one writes every array, synapse indices included).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict
from importlib.metadata import version
from pathlib import Path

import numpy as np

from chiploop.emulator.brian_net import CSRC, Shape
from chiploop.errors import ChipError

COMPILE_ARGS = ["-w", "-O3", "-ffp-contract=off", "-fno-fast-math", "-std=c++11"]
READY = "chiploop_ready.json"


def default_cache_dir() -> Path:
    """`$CHIPLOOP_CACHE/brian`, else `~/.cache/chiploop/brian`."""
    root = os.environ.get("CHIPLOOP_CACHE") or Path.home() / ".cache" / "chiploop"
    return Path(root) / "brian"


def compiler_available() -> bool:
    """Whether a C++ compiler and make are on PATH (Brian2's standalone mode needs both)."""
    cxx = os.environ.get("CXX", "g++")
    return shutil.which(cxx) is not None and shutil.which("make") is not None


def cache_key(shape: Shape) -> str:
    """Hash of everything a compiled project depends on (shape, Brian2 version, generating code, the
    C definition of the dynamics)."""
    here = Path(__file__).parent
    sources = [here / "brian_net.py", here / "brian_cache.py", *sorted(CSRC.glob("*.[ch]"))]
    code = hashlib.sha256(b"".join(f.read_bytes() for f in sources))
    blob = json.dumps(
        {"shape": asdict(shape), "brian2": version("brian2"), "code": code.hexdigest(), "cxx": COMPILE_ARGS},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def ensure_project(shape: Shape, cache_dir: Path, masks: dict[str, np.ndarray] | None = None) -> Path:
    """Directory of the compiled project for `shape`, building it (under a file lock) if missing.

    masks: the connectivity masks `shape.connectivity` names (needed to build, not to find)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / cache_key(shape)
    if (target / READY).exists():
        return target
    with open(cache_dir / f"{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / READY).exists():  # another process built it while we waited
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f"{target.name}.", dir=cache_dir))
        try:
            cmd = [sys.executable, "-m", "chiploop.emulator.brian_cache", str(tmp), json.dumps(asdict(shape))]
            if shape.connectivity:
                np.savez(tmp / "masks.npz", **(masks or {}))
                cmd.append(str(tmp / "masks.npz"))
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0 or not (tmp / READY).exists():
                tail = (done.stderr or done.stdout)[-2000:]
                raise ChipError(f"compiling the Brian2 project for {shape} failed:\n{tail}")
            shutil.rmtree(target, ignore_errors=True)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _writer(shape: Shape) -> str:
    """C++ body replacing `_write_arrays`: monitors and drop counts only; v and currents as float32
    unless fixed arithmetic."""
    lines = [
        "static void _chiploop_check(const std::ofstream& f, const std::string& name)",
        "{",
        '    if (!f) { std::cerr << "chiploop: cannot write " << name << std::endl; exit(3); }',
        "}",
        "static void _chiploop_write(const std::string& name, const char* data, size_t nbytes)",
        "{",
        "    std::ofstream f((brian::results_dir + name).c_str(), std::ios::binary | std::ios::out);",
        "    if (nbytes) f.write(data, nbytes);",
        "    _chiploop_check(f, name);",
        "}",
        "template<class T>",
        "static void _chiploop_write_2d(const std::string& name, DynamicArray2D<double>& a)",
        "{",
        "    std::ofstream f((brian::results_dir + name).c_str(), std::ios::binary | std::ios::out);",
        "    std::vector<T> row(a.m);  // one recorded step at a time: rows are contiguous",
        "    for (int r = 0; r < a.n && a.m; r++) {",
        "        const double* src = &a(r, 0);",
        "        for (int c = 0; c < a.m; c++) row[c] = (T)src[c];",
        "        f.write(reinterpret_cast<const char*>(row.data()), (std::streamsize)(a.m * sizeof(T)));",
        "    }",
        "    _chiploop_check(f, name);",
        "}",
        "void _write_arrays()",
        "{",
        "    using namespace brian;",
    ]
    arrays = [("spikes_hidden_i", "int32_t"), ("spikes_hidden_t", "double"), ("spikes_hidden_n", "double"),
              ("spikes_out_i", "int32_t"), ("spikes_out_t", "double")]  # fmt: skip
    for name, ctype in arrays:
        arr = f"_dynamic_array_{name}"
        lines.append(
            f'    _chiploop_write("{name}.bin", reinterpret_cast<const char*>({arr}.data()),'
            f" {arr}.size() * sizeof({ctype}));"
        )
    lines.append(
        f'    _chiploop_write("dropped.bin", reinterpret_cast<const char*>(_array_samples_dropped), '
        f"{shape.batch} * sizeof(double));"
    )
    monitors = [("v_hidden", "v", "v_hidden"), ("v_out", "v", "v_out")] if shape.record_v else []
    if shape.record_i:
        monitors += [("i_hidden", "syn", "i_hidden"), ("i_out", "syn", "i_out")]
        if shape.synapses == 2:
            monitors.append(("i_hidden", "syn2", "i_hidden_2"))
    ctype = "double" if shape.fixed else "float"
    for mon, var, file in monitors:
        lines.append(f'    _chiploop_write_2d<{ctype}>("{file}.bin", _dynamic_array_{mon}_{var});')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _patch_writer(objects_cpp: Path, shape: Shape) -> None:
    src = objects_cpp.read_text()
    start, end = src.find("void _write_arrays()\n"), src.find("void _dealloc_arrays()\n")
    if start < 0 or end < start:
        raise ChipError(f"unexpected Brian2 objects.cpp layout in {objects_cpp}: cannot patch _write_arrays")
    objects_cpp.write_text(src[:start] + _writer(shape) + "\n" + src[end:])


def _build(directory: Path, shape: Shape, masks: dict[str, np.ndarray] | None) -> None:
    """Generate, patch and compile the project for `shape` into `directory` (child process only)."""
    from brian2 import device, prefs, second, set_device
    from brian2.codegen.cpp_prefs import get_compiler_and_args

    from chiploop.emulator.brian_net import build_network

    prefs.codegen.loop_invariant_optimisations = False
    prefs.codegen.cpp.extra_compile_args_gcc = COMPILE_ARGS
    set_device("cpp_standalone", build_on_run=False, directory=str(directory))
    network = build_network(shape, masks=masks)
    network.run(shape.steps * 1e-3 * second)
    device.build(directory=str(directory), compile=False, run=False)
    _patch_writer(directory / "objects.cpp", shape)
    compiler, _ = get_compiler_and_args()
    device.compile_source(str(directory), compiler, debug=False, clean=False)
    (directory / READY).write_text(json.dumps(asdict(shape)))


if __name__ == "__main__":
    from brian2 import BrianLogger

    BrianLogger.log_level_error()
    masks = dict(np.load(sys.argv[3])) if len(sys.argv) > 3 else None
    _build(Path(sys.argv[1]), Shape(**json.loads(sys.argv[2])), masks)
