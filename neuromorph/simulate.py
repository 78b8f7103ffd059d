"""The executable semantics: a float64 numpy simulator of an IR graph, one step at a time.

This is the reference every backend (Norse, Lava, ...) is tested against, so it is
written to be read, not to be fast: each rule of docs/semantics.md appears once, in the
order the document gives. It uses numpy only (no torch), so it cannot share a bug with
the Norse backend.

Step t = 0..T-1. Node n's input is ``X_n[t] = sum over edges (s -> n, delay d) of
y_s[t - d]`` (``y_s[t] = 0`` for ``t < 0``); nodes are evaluated in ``graph.order()``.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import ArrayLike

from .discretize import (
    ALIFCoefficients, Coefficients, CubaLIFCoefficients, DelayCoefficients, IFCoefficients,
    LICoefficients, LIFCoefficients, discretize_graph, resolve_dt,
)
from .errors import NeuromorphError
from .ir import (
    ALIF, IF, LI, LIF, Affine, Conv1d, Conv2d, CubaLIF, Delay, Flatten, Graph, Input, Linear,
    Neuron, Node, Output, Scale, SumPool2d,
)

STATE_VARIABLES: dict[type[Node], tuple[str, ...]] = {
    IF: ("v",), LIF: ("v",), LI: ("v",), CubaLIF: ("i", "v"), ALIF: ("v", "a"),
}
"""State a caller may record as ``"name.<var>"`` (values after this step's reset)."""


def simulate(
    graph: Graph,
    inputs: ArrayLike | Mapping[str, ArrayLike],
    dt: float | None = None,
    record: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """Run ``graph`` on ``inputs`` and return every Output node's stream (key: its name).

    ``inputs``: one array if the graph has a single Input, else ``{name: array}``; each
    array is ``[T, *shape]`` or ``[batch, T, *shape]`` and the results keep that layout.
    ``dt``: seconds; default ``graph.dt``, else 1e-3 (see ``discretize.resolve_dt``).
    ``record``: extra node names whose output to return, or ``"name.v"`` / ``"name.i"``
    (CubaLIF) / ``"name.a"`` (ALIF) for a neuron's state after the step's reset.
    """
    step = resolve_dt(graph, dt)
    coeffs = discretize_graph(graph, step)
    streams, batched = _check_inputs(graph, inputs)
    first = next(iter(streams.values()))
    batch, steps = first.shape[0], first.shape[1]
    probes = _check_record(graph, record or [])

    history = {n: np.zeros((steps, batch, *graph.shape(n))) for n in graph.nodes}
    states = {
        n: _initial_state(coeffs[n], (batch, *graph.shape(n)))
        for n, node in graph.nodes.items()
        if isinstance(node, Neuron)
    }
    # A Delay node must remember its input, not only its output.
    delay_inputs = {
        n: np.zeros((steps, batch, *graph.shape(n)))
        for n, node in graph.nodes.items()
        if isinstance(node, Delay)
    }
    state_traces = {p: np.zeros((steps, batch, *graph.shape(p[0]))) for p in probes if p[1]}

    order = graph.order()
    incoming = {n: graph.incoming(n) for n in graph.nodes}
    for t in range(steps):
        for name in order:
            node = graph.nodes[name]
            if isinstance(node, Input):
                y = streams[name][:, t]
            else:
                x = np.zeros((batch, *graph.input_shape(name)))  # type: ignore[misc]
                for e in incoming[name]:
                    if t - e.delay >= 0:
                        x = x + history[e.source][t - e.delay]
                if isinstance(node, Delay):
                    delay_inputs[name][t] = x
                    y = _delay(coeffs[name], delay_inputs[name], t)  # type: ignore[arg-type]
                elif isinstance(node, Neuron):
                    y = _neuron_step(coeffs[name], states[name], x)
                else:
                    y = _stateless(node, graph.shape(name), x)
            history[name][t] = y
        for (name, var), trace in state_traces.items():
            trace[t] = states[name][var]

    result: dict[str, np.ndarray] = {}
    wanted = [(n, "") for n in graph.outputs] + probes
    for name, var in wanted:
        data = state_traces[(name, var)] if var else history[name]
        key = f"{name}.{var}" if var else name
        out = np.ascontiguousarray(np.moveaxis(data, 0, 1))  # [T, B, ...] -> [B, T, ...]
        result[key] = out if batched else out[0]
    return result


# -------------------------------------------------------------------- checking


def _fmt(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def _check_inputs(
    graph: Graph, inputs: ArrayLike | Mapping[str, ArrayLike]
) -> tuple[dict[str, np.ndarray], bool]:
    """Every Input's stream as float64 ``[B, T, *shape]``, plus whether a batch dim was given."""
    names = graph.inputs
    if isinstance(inputs, Mapping):
        given = dict(inputs)
    elif len(names) == 1:
        given = {names[0]: inputs}
    else:
        raise NeuromorphError(
            f"graph has {len(names)} inputs ({', '.join(names)}): pass a dict name -> array"
        )
    missing = [n for n in names if n not in given]
    extra = [n for n in given if n not in names]
    if missing or extra:
        raise NeuromorphError(
            f"inputs must be exactly the graph's Input nodes ({', '.join(names)}); "
            + (f"missing: {', '.join(missing)}" if missing else f"unknown: {', '.join(map(str, extra))}")
        )
    streams: dict[str, np.ndarray] = {}
    layout: tuple[bool, int, int] | None = None
    for name in names:
        shape = graph.shape(name)
        try:
            arr = np.asarray(given[name], dtype=np.float64)
        except (TypeError, ValueError):
            raise NeuromorphError(f"input '{name}' is not a numeric array") from None
        expected = f"[T, {_fmt(shape)[1:-1]}] or [batch, T, {_fmt(shape)[1:-1]}]"
        if arr.ndim == len(shape) + 1 and arr.shape[1:] == shape:
            arr, batched = arr[None], False
        elif arr.ndim == len(shape) + 2 and arr.shape[2:] == shape:
            batched = True
        else:
            raise NeuromorphError(
                f"input '{name}' has shape {_fmt(arr.shape)}, expected {expected}"
            )
        if not np.all(np.isfinite(arr)):
            raise NeuromorphError(f"input '{name}' contains NaN or inf")
        this = (batched, arr.shape[0], arr.shape[1])
        if layout is not None and this != layout:
            raise NeuromorphError(
                f"input '{name}' has batch/time {_fmt(arr.shape[:2])}, unlike the other inputs"
            )
        layout = this
        streams[name] = arr
    assert layout is not None
    return streams, layout[0]


def _check_record(graph: Graph, record: Sequence[str]) -> list[tuple[str, str]]:
    """Parse ``record`` into (node, "") for outputs and (node, var) for neuron state.

    A node name may itself contain '.', so a full node name wins over "node.var"."""
    if isinstance(record, str):
        record = [record]
    probes: list[tuple[str, str]] = []
    for item in record:
        if item in graph.nodes:
            probe = (item, "")
        else:
            node_name, _, var = item.rpartition(".")
            node = graph.nodes.get(node_name)
            allowed = STATE_VARIABLES.get(type(node), ()) if node is not None else ()
            if var not in allowed:
                hint = (
                    f"'{node_name}' ({node.type_name}) records: "
                    + (", ".join(f"{node_name}.{v}" for v in allowed) or "its output only")
                    if node is not None
                    else "not a node of this graph"
                )
                raise NeuromorphError(f"cannot record '{item}': {hint}")
            probe = (node_name, var)
        if probe not in probes:
            probes.append(probe)
    return probes


# ---------------------------------------------------------------- neuron rules


def _initial_state(c: Coefficients, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """State at t = -1: v = v_leak (v_reset for IF), i = 0, a = 0."""
    state = {"v": np.broadcast_to(c.v_init, shape).copy()}  # type: ignore[union-attr]
    if isinstance(c, CubaLIFCoefficients):
        state["i"] = np.zeros(shape)
    if isinstance(c, ALIFCoefficients):
        state["a"] = np.zeros(shape)
    return state


def _neuron_step(c: Coefficients, s: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """One step of a neuron population; updates ``s`` and returns its output y."""
    if isinstance(c, IFCoefficients):
        v = s["v"] + c.gain * x
        z = v > c.v_threshold
        s["v"] = np.where(z, c.v_reset, v)
        return z.astype(np.float64)
    if isinstance(c, LIFCoefficients):
        v = (1.0 - c.dv) * s["v"] + c.leak + c.gain * x
        z = v > c.v_threshold
        s["v"] = np.where(z, c.v_reset, v)
        return z.astype(np.float64)
    if isinstance(c, CubaLIFCoefficients):
        i = (1.0 - c.di) * s["i"] + c.gain_i * x
        v = (1.0 - c.dv) * s["v"] + c.leak + c.gain_v * i  # this step's (new) current
        z = v > c.v_threshold
        s["i"] = i  # the current is not reset
        s["v"] = np.where(z, c.v_reset, v)
        return z.astype(np.float64)
    if isinstance(c, ALIFCoefficients):
        v = (1.0 - c.dv) * s["v"] + c.leak + c.gain * x
        theta = c.v_threshold + c.beta * s["a"]  # a from the previous step
        z = v > theta
        s["v"] = np.where(z, c.v_reset, v)
        s["a"] = (1.0 - c.da) * s["a"] + z  # each spike adds 1 after the threshold test
        return z.astype(np.float64)
    if isinstance(c, LICoefficients):
        s["v"] = (1.0 - c.dv) * s["v"] + c.leak + c.gain * x
        return s["v"].copy()
    raise NeuromorphError(f"no simulation rule for coefficients {type(c).__name__}")


def _delay(c: DelayCoefficients, inputs: np.ndarray, t: int) -> np.ndarray:
    """``y[t] = X[t - k]`` elementwise (0 before the stream starts); inputs is [T, B, ...]."""
    shape = inputs.shape[2:]
    k = np.broadcast_to(c.steps, shape)
    y = np.zeros(inputs.shape[1:])
    for lag in np.unique(k):
        if t - lag >= 0:
            mask = k == lag
            y[:, mask] = inputs[t - lag][:, mask]
    return y


# ------------------------------------------------------------- stateless nodes


def _stateless(node: Node, out_shape: tuple[int, ...], x: np.ndarray) -> np.ndarray:
    """Nodes without state or dt: x is [B, *input_shape].

    Weighted sums are computed one sample at a time: a batched BLAS call may sum in a
    different order, and a sample's spikes must not depend on the batch it is in."""
    if isinstance(node, Output):
        return x
    if isinstance(node, Scale):
        return node.scale * x
    if isinstance(node, Flatten):
        return x.reshape(x.shape[0], *out_shape)  # C order, batch kept
    if x.shape[0] == 0:
        return np.zeros((0, *out_shape))
    return np.stack([_weighted(node, xb[None])[0] for xb in x]).reshape(x.shape[0], *out_shape)


def _weighted(node: Node, x: np.ndarray) -> np.ndarray:
    if isinstance(node, Affine):
        return x @ node.weight.T + node.bias
    if isinstance(node, Linear):
        return x @ node.weight.T
    if isinstance(node, (Conv1d, Conv2d)):
        return conv(x, node.weight, node.bias, node.stride, node.padding, node.dilation, node.groups)
    if isinstance(node, SumPool2d):
        return sum_pool2d(x, node.kernel_size, node.stride, node.padding)
    raise NeuromorphError(f"no simulation rule for node type {node.type_name}")


def _windows(
    x: np.ndarray,
    kernel: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
) -> np.ndarray:
    """All receptive fields: x [B, C, *S] -> [B, C, *out, *kernel] (zero padded)."""
    n = len(kernel)
    x = np.pad(x, [(0, 0), (0, 0)] + [(p, p) for p in padding])
    span = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    win = sliding_window_view(x, span, axis=tuple(range(2, 2 + n)))
    pick = (slice(None), slice(None)) + tuple(slice(None, None, s) for s in stride)
    pick += tuple(slice(None, None, d) for d in dilation)
    return win[pick]


def conv(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
) -> np.ndarray:
    """torch-style N-d cross-correlation (N = 1, 2): x [B, C_in, *S], weight
    [C_out, C_in/groups, *K], bias [C_out] -> [B, C_out, *S_out]."""
    n = weight.ndim - 2
    batch, c_in = x.shape[:2]
    c_out, c_per_group = weight.shape[:2]
    win = _windows(x, weight.shape[2:], stride, padding, dilation)
    out_spatial = win.shape[2 : 2 + n]
    win = win.reshape(batch, groups, c_per_group, *out_spatial, *weight.shape[2:])
    w = weight.reshape(groups, c_out // groups, c_per_group, *weight.shape[2:])
    sp, ks = "xy"[:n], "hw"[:n]
    y = np.einsum(f"bgc{sp}{ks},goc{ks}->bgo{sp}", win, w, optimize=True)
    y = y.reshape(batch, c_out, *out_spatial)
    return y + bias.reshape(c_out, *([1] * n))


def sum_pool2d(
    x: np.ndarray, kernel: Sequence[int], stride: Sequence[int], padding: Sequence[int]
) -> np.ndarray:
    """Per-channel sum over zero-padded windows: x [B, C, H, W] -> [B, C, H_out, W_out]."""
    win = _windows(x, kernel, stride, padding, (1, 1))
    return win.sum(axis=(-2, -1))
