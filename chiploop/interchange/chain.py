"""A NIR graph as an ordered chain of layers: Input → (weights → neurons)+ → Output.

Subgraphs are inlined (their Input and Output nodes pass through), a neuron node fed back through
one Affine/Linear node of its own is that layer's recurrence (what snnTorch's RLeaky/RSynaptic
write, nested or flattened), and anything else that is not a chain is refused in one line naming
the node and the field. Parameters become per-neuron float64 arrays: scalars and size-1 arrays are
broadcast, leading size-1 (batch) dimensions dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from chiploop.interchange.nirfile import NirError, Node

WEIGHT_TYPES = ("Affine", "Linear")
SPIKING = ("LIF", "CubaLIF", "IF")
LEAKY = ("LI", "CubaLI", "I", "Integrator")
PASS = ("Input", "Output")
# per neuron kind: required fields, optional fields with their NIR defaults
FIELDS: dict[str, tuple[tuple[str, ...], dict[str, float]]] = {
    "LIF": (("tau", "r", "v_leak", "v_threshold"), {"v_reset": 0.0}),
    "CubaLIF": (("tau_mem", "tau_syn", "r", "v_leak", "v_threshold"), {"v_reset": 0.0, "w_in": 1.0}),
    "LI": (("tau", "r", "v_leak"), {}),
    "CubaLI": (("tau_mem", "tau_syn", "r", "v_leak"), {"w_in": 1.0}),
    "IF": (("r", "v_threshold"), {"v_reset": 0.0}),
    "I": (("r",), {}),
}


@dataclass(frozen=True)
class Layer:
    """One layer: the weights into it `[pre, post]` (NIR's `[post, pre]` transposed), their bias,
    its neuron kind and per-neuron parameters, and its own recurrence (`[post, post]` as pre→post)."""

    name: str
    kind: str
    weight_node: str
    weight: np.ndarray
    bias: np.ndarray
    params: dict[str, np.ndarray]
    recurrent_node: str | None = None
    recurrent: np.ndarray | None = None
    recurrent_bias: np.ndarray | None = None

    @property
    def size(self) -> int:
        return int(self.weight.shape[1])

    @property
    def spiking(self) -> bool:
        return self.kind in SPIKING


@dataclass(frozen=True)
class Chain:
    """The layers in order from the input; the last one is the readout."""

    n_in: int
    layers: tuple[Layer, ...]
    metadata: dict


def to_chain(root: Node) -> Chain:
    """Order the nodes of `root` (a plain graph from `read_nir`) into a Chain, or NirError."""
    nodes, edges = _flatten(root, "")
    recurrences = _recurrences(nodes, edges)
    rec_edges = {e for w, n in recurrences.items() for e in ((n, w), (w, n))}
    edges = [e for e in edges if e not in rec_edges]
    inputs = [k for k, n in nodes.items() if n["type"] == "Input"]
    outputs = [k for k, n in nodes.items() if n["type"] == "Output"]
    if len(inputs) != 1 or len(outputs) != 1:
        raise NirError(f"graph: expected one Input and one Output node, got {len(inputs)} and {len(outputs)}")
    order = _walk(nodes, edges, inputs[0], outputs[0], set(recurrences))
    n_in = _io_size(nodes[inputs[0]], inputs[0])
    layers, size, i = [], n_in, 0
    while i < len(order):
        w_name = order[i]
        w_node = nodes[w_name]
        if w_node["type"] not in WEIGHT_TYPES:
            raise NirError(f"node '{w_name}' field type: expected Affine or Linear before a neuron node, "
                           f"got {w_node['type']}")  # fmt: skip
        if i + 1 >= len(order) or nodes[order[i + 1]]["type"] not in (*SPIKING, *LEAKY):
            after = "Output" if i + 1 >= len(order) else nodes[order[i + 1]]["type"]
            raise NirError(f"node '{w_name}': expected a neuron node after it, got {after}")
        weight, bias = _weights(w_node, w_name, size)
        n_name = order[i + 1]
        rec = next((w for w, n in recurrences.items() if n == n_name), None)
        rec_w, rec_b = _weights(nodes[rec], rec, weight.shape[1]) if rec else (None, None)
        if rec_w is not None and rec_w.shape[1] != weight.shape[1]:
            raise NirError(f"node '{rec}' field weight: recurrence of '{n_name}' must be square, "
                           f"got {rec_w.shape[1]} x {rec_w.shape[0]}")  # fmt: skip
        kind = "I" if nodes[n_name]["type"] == "Integrator" else nodes[n_name]["type"]
        params = _params(nodes[n_name], n_name, kind, weight.shape[1])
        layers.append(Layer(n_name, kind, w_name, weight, bias, params, rec, rec_w, rec_b))
        size, i = weight.shape[1], i + 2
    out_size = _io_size(nodes[outputs[0]], outputs[0])
    if layers and out_size not in (0, size):
        raise NirError(f"node '{outputs[0]}' field shape: expected {size} (the last layer), got {out_size}")
    if not layers:
        raise NirError("graph: no layer between Input and Output")
    return Chain(n_in, tuple(layers), dict(root.get("metadata") or {}))


def _flatten(graph: Node, prefix: str) -> tuple[dict[str, Node], list[tuple[str, str]]]:
    """Inline subgraphs: names become `outer.inner`; a subgraph's own Input/Output become pass
    nodes. Edges to or from a subgraph go to its Input / come from its Output."""
    if not isinstance(graph.get("nodes"), dict):
        raise NirError(f"graph '{prefix or 'root'}' field nodes: missing")
    nodes: dict[str, Node] = {}
    edges: list[tuple[str, str]] = []
    entry: dict[str, str] = {}
    exit_: dict[str, str] = {}
    for key, node in graph["nodes"].items():
        name = f"{prefix}{key}"
        kind = node.get("type")
        if not isinstance(kind, str):
            raise NirError(f"node '{name}' field type: missing")
        if kind == "NIRGraph":
            inner, inner_edges = _flatten(node, f"{name}.")
            ins = [k for k, n in inner.items() if n["type"] == "Input"]
            outs = [k for k, n in inner.items() if n["type"] == "Output"]
            if len(ins) != 1 or len(outs) != 1:
                raise NirError(f"node '{name}': a subgraph needs one Input and one Output node")
            for k in (*ins, *outs):
                inner[k] = {**inner[k], "type": "Pass"}
            entry[key], exit_[key] = ins[0], outs[0]
            nodes.update(inner)
            edges.extend(inner_edges)
        else:
            nodes[name] = node
    for src, dst in graph.get("edges", []):
        src = exit_.get(src, f"{prefix}{src}")
        dst = entry.get(dst, f"{prefix}{dst}")
        edges.append((src, dst))
    for src, dst in edges:
        for end in (src, dst):
            if end not in nodes and end.startswith(prefix):
                raise NirError(f"graph field edges: edge {src} -> {dst} names no node '{end}'")
    if prefix:
        return nodes, edges
    return _bypass(nodes, list(dict.fromkeys(edges)))


def _bypass(nodes: dict[str, Node], edges: list[tuple[str, str]]) -> tuple[dict[str, Node], list]:
    """Remove the pass-through nodes of inlined subgraphs, joining their neighbours."""
    for name in [k for k, n in nodes.items() if n["type"] == "Pass"]:
        preds = [s for s, d in edges if d == name]
        succs = [d for s, d in edges if s == name]
        edges = [e for e in edges if name not in e] + [(p, s) for p in preds for s in succs]
        del nodes[name]
    return nodes, list(dict.fromkeys(edges))


def _recurrences(nodes: dict[str, Node], edges: list[tuple[str, str]]) -> dict[str, str]:
    """Weight node -> neuron node for each neuron → W → same neuron loop with W in no other edge."""
    out = {}
    for src, dst in edges:
        if nodes[src]["type"] in (*SPIKING, *LEAKY) and nodes[dst]["type"] in WEIGHT_TYPES:
            w_edges = [e for e in edges if dst in e]
            if sorted(w_edges) == sorted([(src, dst), (dst, src)]):
                out[dst] = src
    return out


def _walk(nodes: dict[str, Node], edges: list, start: str, end: str, recurrent: set[str]) -> list[str]:
    """The nodes strictly between `start` and `end`, in order, or NirError (branch, cycle, unsupported)."""
    for name, node in nodes.items():
        if node["type"] not in (*WEIGHT_TYPES, *SPIKING, *LEAKY, *PASS, "Integrator"):
            raise NirError(
                f"node '{name}' field type: {node['type']} is not supported "
                "(supported: Input, Affine, Linear, LIF, CubaLIF, LI, CubaLI, IF, Integrator, Output)"
            )
    succ: dict[str, list[str]] = {k: [] for k in nodes}
    pred: dict[str, list[str]] = {k: [] for k in nodes}
    for s, d in edges:
        succ[s].append(d)
        pred[d].append(s)
    looped = _on_cycle(succ)
    if looped is not None:
        raise NirError(
            f"node '{looped}' field edges: a cycle through it, other than a layer's own recurrence"
        )
    order, seen, at = [], {start}, start
    while at != end:
        if len(succ[at]) != 1:
            raise NirError(f"node '{at}' field edges: expected one successor in a chain, got {len(succ[at])}")
        nxt = succ[at][0]
        if nxt in seen:
            raise NirError(
                f"node '{nxt}' field edges: a cycle through it, other than a layer's own recurrence"
            )
        if len(pred[nxt]) != 1:
            raise NirError(
                f"node '{nxt}' field edges: expected one predecessor in a chain, got {len(pred[nxt])}"
            )
        seen.add(nxt)
        if nxt != end:
            order.append(nxt)
        at = nxt
    left = set(nodes) - seen - recurrent
    if left:
        raise NirError(f"node '{sorted(left)[0]}' field edges: not on the path from Input to Output")
    return order


def _on_cycle(succ: dict[str, list[str]]) -> str | None:
    """A node on a directed cycle of `succ`, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in succ:
        if root in state:
            continue
        stack = [(root, iter(succ[root]))]
        state[root] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return nxt
            elif nxt not in state:
                state[nxt] = 1
                stack.append((nxt, iter(succ[nxt])))
    return None


def _io_size(node: Node, name: str) -> int:
    """The feature count of an Input/Output node's shape; leading batch dimensions must be 1."""
    shape = node.get("shape")
    if shape is None:
        types = node.get("input_type") if node["type"] == "Input" else node.get("output_type")
        shape = next(iter(types.values()), None) if isinstance(types, dict) else None
    if shape is None:
        return 0
    dims = [int(d) for d in np.asarray(shape).ravel()]
    if not dims or any(d < 1 for d in dims) or any(d != 1 for d in dims[:-1]):
        raise NirError(f"node '{name}' field shape: expected [n] or [1, n], got {dims}")
    return dims[-1]


def _finite(a: np.ndarray, name: str, field: str) -> np.ndarray:
    if a.dtype.kind not in "biuf":
        raise NirError(f"node '{name}' field {field}: expected numbers, got dtype {a.dtype}")
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise NirError(f"node '{name}' field {field}: NaN or infinite values")
    return a


def _weights(node: Node, name: str, pre: int) -> tuple[np.ndarray, np.ndarray]:
    if "weight" not in node:
        raise NirError(f"node '{name}' field weight: missing")
    w = _finite(np.asarray(node["weight"]), name, "weight")
    while w.ndim > 2 and w.shape[0] == 1:
        w = w[0]
    if w.ndim != 2:
        raise NirError(f"node '{name}' field weight: expected a matrix [out, in], got shape {w.shape}")
    if pre and w.shape[1] != pre:
        raise NirError(
            f"node '{name}' field weight: expected {pre} inputs (shape [out, {pre}]), got {w.shape}"
        )
    n = w.shape[0]
    bias = np.zeros(n)
    if node["type"] == "Affine" and node.get("bias") is not None:
        bias = _per_neuron(np.asarray(node["bias"]), name, "bias", n)
    return np.ascontiguousarray(w.T), bias


def _per_neuron(a: np.ndarray, name: str, field: str, n: int) -> np.ndarray:
    a = _finite(a, name, field)
    if a.size == 1:
        return np.full(n, float(a.ravel()[0]))
    while a.ndim > 1 and a.shape[0] == 1:
        a = a[0]
    if a.shape != (n,):
        raise NirError(
            f"node '{name}' field {field}: expected {n} values (one per neuron), got shape {a.shape}"
        )
    return a


def _params(node: Node, name: str, kind: str, n: int) -> dict[str, np.ndarray]:
    required, optional = FIELDS[kind]
    out = {}
    for field in required:
        if node.get(field) is None:
            raise NirError(f"node '{name}' field {field}: missing")
        out[field] = _per_neuron(np.asarray(node[field]), name, field, n)
    for field, default in optional.items():
        value = node.get(field)
        out[field] = np.full(n, default) if value is None else _per_neuron(np.asarray(value), name, field, n)
    return out
