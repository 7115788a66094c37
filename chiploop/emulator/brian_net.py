"""The Brian2 network of a batched chip: one simulation, B copies of a NetworkSpec, stepped by C.

Brian2 holds the simulation: its clock and schedule, the hidden and output NeuronGroups (B*N
neurons each) whose spikes its SpikeMonitors record (with their counts) and whose membranes and
currents its StateMonitors record, the compiled standalone project and its run-time arrays. The
dynamics are not written again here: `chiploop_step` is a Brian2 user function run once per step
before the thresholds, whose C++ implementation compiles the one C definition of the dynamics
(`chiploop/chip/csrc/net.c`, the board firmware's too) and advances every copy of the batch with it;
its Python implementation (Brian2's runtime mode, no compiler) advances them with
`chiploop.chip.dynamics`, the twin's definition. The step writes each copy's delivered spike
counts `n` (the groups' threshold is `n > 0`), membranes `v` and currents `syn`, `syn2` into the
groups' arrays and the events dropped by the caps into the `samples` group.

Everything that changes between runs lives in two TimedArrays, so a compiled project is reused:
`chiploop_params` (one row: the `cl_net_cfg` fields, the per-neuron vectors, the weights; see
`ParamLayout`) and `chiploop_raster` (row t: the input spikes of step t, 32 inputs packed per value).
A layer with a connectivity mask stores only its synapses' weights (CSR, compiled into the project).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from chiploop.chip.c_config import matrix_slots, recurrent_bits
from chiploop.chip.network import NetworkSpec

PARAMS_NAME = "chiploop_params"
RASTER_NAME = "chiploop_raster"
BITS_PER_WORD = 32
CSRC = Path(__file__).resolve().parent.parent / "chip" / "csrc"
CFG_FIELDS = (
    "decay_kind", "state_bits", "decay_bits", "reset_zero", "spiking_readout", "refractory_steps",
    "max_spikes_per_step", "max_input_spikes_per_step", "input_delay", "add_then_decay", "decay_rounding",
    "per_addition", "wrap_current", "symmetric_membrane", "fractional_bits", "strict_threshold",
    "max_spike_count",
)  # fmt: skip  # the run-time fields of cl_net_cfg (the shape's are compiled in)
VECTORS = ("d_mem", "d_syn", "d_syn2", "d_ada", "theta", "beta", "bias", "gain")  # cl_net_params
_C_TYPES = {"gain": "double"}  # C type of a vector's elements (the others: cl_param)


@dataclass(frozen=True)
class Shape:
    """What a compiled project is specialised for; everything else is a run-time parameter."""

    batch: int
    steps: int
    n_in: int
    n_hidden: int | tuple[int, ...]  # as NetworkSpec: one layer's size, or each layer's
    n_out: int
    recurrent: bool | tuple[bool, ...]
    record_v: bool
    fixed: bool
    synapses: int = 1
    record_i: bool = False
    connectivity: str = ""  # "": every pair connected; else `masks_key` of the masks

    def __post_init__(self) -> None:  # NetworkSpec's canonical form (a JSON round trip gives lists)
        spec = self.spec
        object.__setattr__(self, "n_hidden", spec.n_hidden)
        object.__setattr__(self, "recurrent", spec.recurrent)

    @property
    def spec(self) -> NetworkSpec:
        """The network this project runs (its shape; the readout kind is a run-time parameter)."""
        return NetworkSpec(self.n_in, self.n_hidden, self.n_out, self.recurrent, synapses=self.synapses)

    @property
    def hidden_total(self) -> int:
        """Hidden neurons of all layers (one Brian2 group holds them, layer after layer)."""
        return self.spec.n_hidden_total

    @property
    def raster_words(self) -> int:
        """Values per raster row (32 input channels packed per value)."""
        return -(-self.batch * self.n_in // BITS_PER_WORD)

    def matrices(self) -> dict[str, tuple[int, int]]:
        """`[pre, post]` of the weight matrices this network has, in C order."""
        return self.spec.weight_shapes()


@dataclass(frozen=True)
class ParamLayout:
    """Offsets of each block in the flat `chiploop_params` row: the cfg fields, the per-neuron
    vectors (hidden then output neurons), then each matrix's weights (row-major `[pre, post]`; a
    masked layer only its mask's pairs, in row-major order)."""

    offsets: dict[str, int]
    size: int

    @classmethod
    def of(cls, shape: Shape, masks: dict[str, np.ndarray] | None = None) -> ParamLayout:
        neurons = shape.hidden_total + shape.n_out
        blocks = [("cfg", len(CFG_FIELDS))] + [(name, neurons) for name in VECTORS]
        for name, (pre, post) in shape.matrices().items():
            mask = None if masks is None else masks.get(name)
            blocks.append((name, pre * post if mask is None else int(np.count_nonzero(mask))))
        offsets, pos = {}, 0
        for name, size in blocks:
            offsets[name] = pos
            pos += size
        return cls(offsets, pos)


def masks_key(masks: dict[str, np.ndarray]) -> str:
    """Digest of connectivity masks (layer -> bool `[pre, post]`), part of a compiled project's Shape."""
    h = hashlib.sha256()
    for name in sorted(masks):
        m = np.asarray(masks[name], dtype=bool)
        h.update(f"{name}{m.shape}".encode() + np.packbits(m).tobytes())
    return h.hexdigest()[:16]


def _csr(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row pointers and column indices of a bool `[pre, post]` mask."""
    pre, post = np.nonzero(mask)
    return np.concatenate([[0], np.cumsum(np.bincount(pre, minlength=mask.shape[0]))]), post


def step_cpp(shape: Shape, masks: dict[str, np.ndarray] | None) -> str:
    """C++ of `chiploop_step(step)`: at step 0 it decodes the params row; every step it advances
    each copy with `cl_net_step` and writes the copy's outputs into the Brian2 groups' arrays."""
    layout = ParamLayout.of(shape, masks)
    lay = layout.offsets
    b, n, h, o = shape.batch, shape.n_in, shape.hidden_total, shape.n_out
    spec = shape.spec
    n_weights = layout.size - lay["in_hidden"]
    lines = [
        "#include <math.h>",
        "#include <stdint.h>",
        "#include <string.h>",
        f"#define CL_MAX_INPUTS {n}",
        f"#define CL_MAX_NEURONS {h + o}",
        f"#define CL_MAX_SYNAPSES {n_weights}",
        *([] if shape.fixed else ["#define CL_FLOAT_STATE"]),
        "namespace chiploop_net {",
        '#include "net.c"',
        "}",
        "static chiploop_net::cl_net_cfg chiploop_cfg;",
        "static chiploop_net::cl_net_params chiploop_par;",
        f"static chiploop_net::cl_net_state chiploop_state[{b}];",
        f"static chiploop_net::cl_weight chiploop_w[{max(n_weights, 1)}];",
        "static chiploop_net::cl_net_sparsity chiploop_sp;",
    ]
    sparse = []
    for name, k in matrix_slots(spec).items():
        if masks is not None and name in masks:
            ptr, idx = _csr(masks[name])
            lines += [
                f"static const int32_t chiploop_ptr_{k}[] = {{{','.join(map(str, ptr))}}};",
                f"static const int32_t chiploop_idx_{k}[] = {{{','.join(map(str, idx)) or '0'}}};",
            ]
            sparse += [
                f"chiploop_sp.ptr[{k}] = chiploop_ptr_{k};",
                f"chiploop_sp.idx[{k}] = chiploop_idx_{k};",
            ]
    decode = [
        f"chiploop_cfg.n_in = {n}; chiploop_cfg.n_hidden = {h}; chiploop_cfg.n_out = {o};",
        f"chiploop_cfg.recurrent = {recurrent_bits(spec)}; chiploop_cfg.synapses = {shape.synapses};",
        f"chiploop_cfg.n_layers = {len(spec.hidden_sizes)};",
        *(f"chiploop_cfg.layer_size[{k}] = {size};" for k, size in enumerate(spec.hidden_sizes)),
        *(f"chiploop_cfg.{f} = (uint16_t)p[{lay['cfg'] + k}];" for k, f in enumerate(CFG_FIELDS)),
        f"for (int k = 0; k < {h + o}; k++) {{",
        *(
            f"    chiploop_par.{v}[k] = ({_C_TYPES.get(v, 'chiploop_net::cl_param')})p[{lay[v]} + k];"
            for v in VECTORS
        ),
        "}",
        f"for (int q = 0; q < {n_weights}; q++)",
        f"    chiploop_w[q] = (chiploop_net::cl_weight)p[{lay['in_hidden']} + q];",
        "memset(chiploop_state, 0, sizeof chiploop_state);",
        *sparse,
    ]
    outputs = [f"brian::_array_hidden_n[b*{h} + k] = s->z[k];"]
    out_outputs = [f"brian::_array_out_n[b*{o} + k] = s->z[{h} + k];"]
    if shape.record_v:
        outputs.append(f"brian::_array_hidden_v[b*{h} + k] = (double)s->v[k];")
        out_outputs.append(f"brian::_array_out_v[b*{o} + k] = (double)s->v[{h} + k];")
    if shape.record_i:
        outputs.append(f"brian::_array_hidden_syn[b*{h} + k] = (double)s->i[k];")
        if shape.synapses == 2:
            outputs.append(f"brian::_array_hidden_syn2[b*{h} + k] = (double)s->i2[k];")
        out_outputs.append(f"brian::_array_out_syn[b*{o} + k] = (double)s->i[{h} + k];")
    body = [
        "static inline double chiploop_step(const int64_t step)",
        "{",
        f"    const double* p = brian::{PARAMS_NAME}_values;",
        "    if (step == 0) {",
        *("        " + line for line in decode),
        "    }",
        f"    const double* row = brian::{RASTER_NAME}_values + (size_t)step*{shape.raster_words};",
        f"    static uint8_t x[{b}][{max(n, 1)}];  // this step's input of every copy, from the set bits",
        "    memset(x, 0, sizeof x);",
        f"    for (int word = 0; word < {shape.raster_words}; word++) {{",
        "        for (uint32_t bits = (uint32_t)row[word]; bits; bits &= bits - 1) {",
        f"            const int g = {BITS_PER_WORD}*word + __builtin_ctz(bits);",
        f"            x[g / {n}][g % {n}] = 1;",
        "        }",
        "    }",
        f"    for (int b = 0; b < {b}; b++) {{",
        "        chiploop_net::cl_net_state* s = &chiploop_state[b];",
        "        chiploop_net::cl_net_step(&chiploop_cfg, &chiploop_par, chiploop_w, "
        f"{'&chiploop_sp' if sparse else 'NULL'}, x[b], s);",
        f"        for (int k = 0; k < {h}; k++) {{ {' '.join(outputs)} }}",
        f"        for (int k = 0; k < {o}; k++) {{ {' '.join(out_outputs)} }}",
        "        brian::_array_samples_dropped[b] = (double)s->dropped;",
        "    }",
        "    return 0.0;",
        "}",
    ]
    return "\n".join(lines + body)


class RuntimeStep:
    """`chiploop_step` for Brian2's runtime mode: `chiploop.chip.dynamics`, one step at a time.

    `prepare(net, weights)` gives it the run's network (the decoded params row) before each run."""

    __name__ = "chiploop_step"  # Brian2 names the Python implementation of a Function by it

    def __init__(self, shape: Shape, groups: dict, raster) -> None:  # noqa: ANN001 - a TimedArray
        self.shape, self.groups, self.raster = shape, groups, raster
        self.net = self.weights = self.state = None

    def prepare(self, net: object, weights: dict) -> None:
        self.net, self.weights, self.state = net, weights, None

    def __call__(self, step: np.ndarray) -> np.ndarray:
        import torch

        from chiploop.chip.dynamics import simulate

        t, shape = int(np.ravel(step)[0]), self.shape
        row = self.raster.values[t].astype("<u4")
        bits = np.unpackbits(row.view(np.uint8), bitorder="little")[: shape.batch * shape.n_in]
        x = torch.tensor(bits.reshape(shape.batch, 1, shape.n_in), dtype=torch.float64)
        with torch.no_grad():
            trace = simulate(self.net, x, self.weights, record_currents=shape.record_i, state=self.state)
        self.state = trace.final
        names = self.net.names

        def hidden(layers: dict[str, torch.Tensor]) -> torch.Tensor:  # one group: layer after layer
            return torch.cat([layers[n] for n in names], dim=2)

        values = {("hidden", "n"): hidden(trace.spikes), ("hidden", "v"): hidden(trace.v),
                  ("out", "v"): trace.v["out"]}  # fmt: skip
        values[("out", "n")] = trace.spikes.get("out", torch.zeros_like(trace.v["out"]))
        if shape.record_i:
            values |= {("hidden", "syn"): hidden(trace.currents), ("out", "syn"): trace.currents["out"]}
            if shape.synapses == 2:
                values[("hidden", "syn2")] = trace.currents["hidden_2"]
        for (group, var), a in values.items():
            self.groups[group].variables[var].get_value()[:] = a[:, 0].reshape(-1).numpy()
        dropped = self.groups["samples"].variables["dropped"].get_value()
        dropped[:] += (trace.dropped_hidden + trace.dropped_input).numpy()
        return np.zeros(np.shape(step))


def build_network(shape: Shape, masks: dict[str, np.ndarray] | None = None):
    """The Brian2 network for `shape` on the active device (cpp_standalone, or runtime mode).

    masks: connectivity per layer (bool `[pre, post]`, same in every copy); None = all-to-all.
    Returns a brian2.Network (Brian2 is imported here, so that a cache hit never imports it); in
    runtime mode the stepper group's namespace holds the `RuntimeStep` under "chiploop_runtime".
    """
    from brian2 import Function, Network, NeuronGroup, SpikeMonitor, StateMonitor, TimedArray, ms

    b, h, o = shape.batch, shape.hidden_total, shape.n_out
    layout = ParamLayout.of(shape, masks)
    dt = 1 * ms  # every object gets it explicitly: the caller's defaultclock stays untouched
    params = TimedArray(np.zeros((1, layout.size)), dt=dt, name=PARAMS_NAME)
    raster = TimedArray(np.zeros((shape.steps, shape.raster_words)), dt=dt, name=RASTER_NAME)
    currents = "syn : 1\n" + ("syn2 : 1\n" if shape.synapses == 2 else "")
    hidden = NeuronGroup(
        b * h, "v : 1\nn : 1\n" + currents, threshold="n > 0.5", reset="", dt=dt, name="hidden"
    )
    out = NeuronGroup(b * o, "v : 1\nn : 1\nsyn : 1\n", threshold="n > 0.5", reset="", dt=dt, name="out")
    samples = NeuronGroup(b, "dropped : 1", dt=dt, name="samples")
    runtime = RuntimeStep(shape, {"hidden": hidden, "out": out, "samples": samples}, raster)
    step = Function(runtime, arg_units=[1], return_unit=1, arg_types=["integer"], return_type="float",
                    stateless=False)  # fmt: skip
    step.implementations.add_implementation(
        "cpp",
        step_cpp(shape, masks),
        name="chiploop_step",
        dependencies={PARAMS_NAME: params, RASTER_NAME: raster},
        compiler_kwds={"include_dirs": [str(CSRC)]},
    )
    namespace = {"chiploop_step": step, PARAMS_NAME: params, RASTER_NAME: raster, "chiploop_runtime": runtime}
    stepper = NeuronGroup(1, "stepped : 1", namespace=namespace, dt=dt, name="stepper")
    stepper.run_regularly("stepped = chiploop_step(t_in_timesteps)", when="groups", name="stepper_step")
    objects = [hidden, out, samples, stepper,
               SpikeMonitor(hidden, variables=["n"], name="spikes_hidden"),
               SpikeMonitor(out, variables=[], name="spikes_out")]  # fmt: skip
    if shape.record_v:
        objects += [
            StateMonitor(hidden, "v", record=True, when="end", dt=dt, name="v_hidden"),
            StateMonitor(out, "v", record=True, when="end", dt=dt, name="v_out"),
        ]
    if shape.record_i:
        objects += [StateMonitor(hidden, ["syn", "syn2"] if shape.synapses == 2 else "syn", record=True,
                                 when="end", dt=dt, name="i_hidden"),
                    StateMonitor(out, "syn", record=True, when="end", dt=dt, name="i_out")]  # fmt: skip
    return Network(*objects)
