"""Read a NIR file (HDF5) into plain nested nodes, refusing what is not NIR before anything runs.

The file is walked with h5py rather than `nir.read`, whose type inference refuses the batch
dimension Norse writes into Input and Output shapes. A node is a dict: "type" (str), its fields as
float64 / int64 arrays or strings, and for a graph "nodes" (name -> node) and "edges" (pairs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from chiploop.errors import ChiploopError

MAX_FILE_BYTES = 256 * 2**20  # a larger file is refused before it is opened
MAX_DEPTH = 8  # nested subgraphs
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

Node = dict[str, Any]


class NirError(ChiploopError):
    """A NIR file or graph chiploop cannot take: names the file or node and the field."""


def read_nir(path: str | Path, max_bytes: int = MAX_FILE_BYTES) -> Node:
    """The root graph of the NIR file `path` as a plain node (see the module docstring)."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise NirError(f"{path}: no such file")
    size = path.stat().st_size
    if size > max_bytes:
        raise NirError(f"{path}: {size} bytes, above the size cap of {max_bytes} bytes")
    with path.open("rb") as fh:
        if fh.read(len(HDF5_SIGNATURE)) != HDF5_SIGNATURE:
            raise NirError(f"{path}: not a NIR file (no HDF5 signature)")
    try:
        with h5py.File(path, "r") as f:
            if "node" not in f or not isinstance(f["node"], h5py.Group):
                raise NirError(f"{path}: not a NIR file (HDF5 without a 'node' group)")
            root = _group(f["node"], "node", 0)
    except OSError as exc:
        raise NirError(f"{path}: unreadable HDF5 ({exc})") from None
    if root.get("type") != "NIRGraph":
        raise NirError(f"{path}: node 'node' field type: expected NIRGraph, got {root.get('type')!r}")
    return root


def graph_node(graph: Any) -> Node:
    """A `nir.NIRGraph` held in memory as the same plain node `read_nir` returns."""
    return _plain(graph.to_dict(), "graph", 0)


def _group(group: Any, name: str, depth: int) -> Node:
    import h5py

    if depth > MAX_DEPTH:
        raise NirError(f"node '{name}': subgraphs nested deeper than {MAX_DEPTH}")
    out: Node = {}
    for key, item in group.items():
        if isinstance(item, h5py.Group):
            out[key] = _group(item, f"{name}.{key}" if depth else key, depth + 1)
        else:
            out[key] = item[()]
    return _plain(out, name, depth)


def _plain(data: dict[str, Any], name: str, depth: int) -> Node:
    """Decode bytes to str, numbers to arrays; graphs recurse into their nodes and edges."""
    out: Node = {}
    for key, value in data.items():
        if key == "nodes" and isinstance(value, dict):
            if depth > MAX_DEPTH:
                raise NirError(f"node '{name}': subgraphs nested deeper than {MAX_DEPTH}")
            out[key] = {str(k): _plain(_as_dict(v, k), str(k), depth + 1) for k, v in value.items()}
        elif key == "edges":
            out[key] = _edges(value, name)
        elif key == "metadata":
            out[key] = {str(k): _value(v) for k, v in value.items()} if isinstance(value, dict) else {}
        else:
            out[key] = _value(value)
    return out


def _as_dict(value: Any, name: str) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    raise NirError(f"node '{name}': expected a group of fields, got {type(value).__name__}")


def _edges(value: Any, name: str) -> list[tuple[str, str]]:
    a = np.asarray(value, dtype=object)
    if a.size == 0:
        return []
    if a.ndim != 2 or a.shape[1] != 2:
        raise NirError(f"graph '{name}' field edges: expected pairs, got shape {a.shape}")
    return [(str(_value(s)), str(_value(d))) for s, d in a]


def _value(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf8")
    if isinstance(value, str | dict):
        return value
    if hasattr(value, "detach"):  # a torch tensor, as exporters leave them in memory
        value = value.detach().cpu().numpy()
    a = np.asarray(value)
    if a.dtype.kind == "O" and a.ndim == 0:
        return _value(a.item())
    if a.dtype.kind in "SU":
        return str(a.astype(str))
    return a
