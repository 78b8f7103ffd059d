"""The executable semantics: a float64 numpy simulator of an IR graph, one step at a time.

This is the reference every backend (torch, Lava, ...) is tested against, so it is
written to be read, not to be fast: each rule of docs/semantics.md appears once, in the
order the document gives. It uses numpy only (no torch), so it cannot share a bug with
the torch backend. Its rules are keyed by node type (``RULES``, neuromorph.rules).

Step t = 0..T-1. Node n's input is ``X_n[t] = sum over edges (s -> n, delay d) of
y_s[t - d]`` (``y_s[t] = 0`` for ``t < 0``); nodes are evaluated in ``graph.order()``.
A connection that carries plasticity keeps its weights as state: once every node has
been evaluated, its rule reads the step's activity and may change the weights the next
step uses (docs/semantics.md section 6).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import ArrayLike

from .discretize import (
    ALIFCoefficients, Coefficients, CubaLIFCoefficients, DelayCoefficients, EPropCoefficients,
    IFCoefficients, LICoefficients, LIFCoefficients, PlasticityCoefficients, RewardSTDPCoefficients,
    STDPCoefficients, ThreeFactorCoefficients, discretize_graph, discretize_plasticities, resolve_dt,
)
from .ir import (
    ALIF, IF, LI, LIF, Affine, Conv1d, Conv2d, CubaLIF, Delay, Flatten, Graph, Input, Linear,
    Node, Output, Scale, SumPool2d,
)
from .rules import rule_for
from .streams import STATE_VARIABLES, WEIGHT_VARIABLE, check_streams, input_shapes, parse_probes


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
    (CubaLIF) / ``"name.a"`` (ALIF) for a neuron's state after the step's reset, or
    ``"name.weight"`` for a plastic connection's weights after the step's learning
    update (``[T, out, in]``; each sample of a batch learns on its own, from the same
    initial weights).
    """
    step = resolve_dt(graph, dt)
    coeffs = discretize_graph(graph, step)
    streams, batched = check_streams(input_shapes(graph), inputs, batch_axis="optional")
    first = next(iter(streams.values()))
    batch, steps = first.shape[0], first.shape[1]
    probes = [(p.node, p.var) for p in parse_probes(graph, record or [])]

    history = {n: np.zeros((steps, batch, *graph.shape(n))) for n in graph.nodes}
    rules = {n: rule_for(RULES, node, n, "the reference simulator") for n, node in graph.nodes.items()}
    states = {
        n: _initial_state(node, coeffs[n], (batch, *graph.shape(n)))
        for n, node in graph.nodes.items()
        if type(node) in NEURON_STEPS
    }
    # A Delay node must remember its input, not only its output.
    delay_inputs = {
        n: np.zeros((steps, batch, *graph.shape(n)))
        for n, node in graph.nodes.items()
        if isinstance(node, Delay)
    }
    learning = {n: _Learning.start(graph, n, c, batch) for n, c in discretize_plasticities(graph, step).items()}
    inputs_of: dict[str, np.ndarray] = {}  # a plastic connection's input of this step
    state_traces = {
        p: np.zeros((steps, batch, *(learning[p[0]].weight.shape[1:] if p[1] == WEIGHT_VARIABLE
                                     else graph.shape(p[0]))))
        for p in probes if p[1]
    }

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
                elif name in states:
                    y = rules[name](coeffs[name], states[name], x)
                elif name in learning:
                    inputs_of[name] = x
                    y = _plastic_weighted(node, learning[name].weight, x)
                else:
                    y = rules[name](node, graph.shape(name), x)
            history[name][t] = y
        for name, ls in learning.items():  # after every node: the step's activity is known
            _learn(ls, t, inputs_of[name], history, states, coeffs, last=t == steps - 1)
        for (name, var), trace in state_traces.items():
            trace[t] = learning[name].weight if var == WEIGHT_VARIABLE else states[name][var]

    result: dict[str, np.ndarray] = {}
    wanted = [(n, "") for n in graph.outputs] + probes
    for name, var in wanted:
        data = state_traces[(name, var)] if var else history[name]
        key = f"{name}.{var}" if var else name
        out = np.ascontiguousarray(np.moveaxis(data, 0, 1))  # [T, B, ...] -> [B, T, ...]
        result[key] = out if batched else out[0]
    return result


# ---------------------------------------------------------------- neuron rules


def _initial_state(node: Node, c: Coefficients, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """State at t = -1: v = v_init (v_leak; v_reset for IF), every other variable 0."""
    state = {var: np.zeros(shape) for var in STATE_VARIABLES[type(node)]}
    state["v"] = np.broadcast_to(c.v_init, shape).copy()  # type: ignore[union-attr]
    return state


def reset_membrane(c: Any, v: np.ndarray, z: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """The membrane after the reset where ``z`` (docs/semantics.md, section 3):
    ``v_reset`` ("value"), or ``v - (threshold - v_reset)`` ("subtract"), ``threshold``
    being the one the spike test used this step (ALIF: ``v_threshold + beta*a``)."""
    if c.reset == "subtract":
        return np.where(z, v - (threshold - c.v_reset), v)
    return np.where(z, c.v_reset, v)


def _if_step(c: IFCoefficients, s: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    v = s["v"] + c.gain * x
    z = v > c.v_threshold
    s["v"] = reset_membrane(c, v, z, c.v_threshold)
    return z.astype(np.float64)


def _lif_step(c: LIFCoefficients, s: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    v = (1.0 - c.dv) * s["v"] + c.leak + c.gain * x
    z = v > c.v_threshold
    s["u"] = v  # the membrane before the reset: e-prop's pseudo-derivative reads it
    s["v"] = reset_membrane(c, v, z, c.v_threshold)
    return z.astype(np.float64)


def _cuba_lif_step(c: CubaLIFCoefficients, s: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    i = (1.0 - c.di) * s["i"] + c.gain_i * x
    v = (1.0 - c.dv) * s["v"] + c.leak + c.gain_v * i  # this step's (new) current
    z = v > c.v_threshold
    s["i"] = i  # the current is not reset
    s["v"] = reset_membrane(c, v, z, c.v_threshold)
    return z.astype(np.float64)


def _alif_step(c: ALIFCoefficients, s: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    v = (1.0 - c.dv) * s["v"] + c.leak + c.gain * x
    theta = c.v_threshold + c.beta * s["a"]  # a from the previous step
    z = v > theta
    s["v"] = reset_membrane(c, v, z, theta)
    s["a"] = (1.0 - c.da) * s["a"] + z  # each spike adds 1 after the threshold test
    return z.astype(np.float64)


def _li_step(c: LICoefficients, s: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    s["v"] = (1.0 - c.dv) * s["v"] + c.leak + c.gain * x
    return s["v"].copy()


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


# ------------------------------------------------------------------ plasticity


@dataclass
class _Learning:
    """A plastic connection in one run: its weights (state), the increments summed since
    they last changed, the increments still in flight (a rule with ``delay`` > 0: the
    last ``delay`` steps' increments, oldest first) and its rule's traces (created at
    their first use)."""

    coeffs: PlasticityCoefficients
    post: str | None  # the population the rule reads (Plasticity.post_node)
    stream: str | None  # the node whose output is the third factor
    weight: np.ndarray  # [B, out, in]
    pending: np.ndarray = field(init=False)
    in_flight: list[np.ndarray] = field(default_factory=list)
    traces: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.pending = np.zeros_like(self.weight)

    @classmethod
    def start(cls, graph: Graph, name: str, coeffs: PlasticityCoefficients, batch: int) -> "_Learning":
        node = graph.nodes[name]
        rule = node.plasticity  # type: ignore[attr-defined]
        weight = np.broadcast_to(node.weight, (batch, *node.weight.shape)).copy()  # type: ignore[attr-defined]
        return cls(coeffs, rule.post_node(graph, name), rule.third_factor, weight)


@dataclass(frozen=True)
class _Post:
    """What a rule may read of the population the connection feeds, at step t."""

    z: np.ndarray  # [B, out] spikes of step t
    z_prev: np.ndarray  # [B, out] spikes of step t-1 (0 at t = 0)
    state: Mapping[str, np.ndarray] | None  # its state after step t ("u": before the reset)
    coeffs: Any  # its discrete coefficients


def _plastic_weighted(node: Node, weight: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``W x (+ b)`` with each sample's own weights, one sample at a time (as _weighted)."""
    bias = node.bias if isinstance(node, Affine) else 0.0
    return np.stack([xb[None] @ wb.T + bias for xb, wb in zip(x, weight)]).reshape(x.shape[0], -1)


def _learn(ls: _Learning, t: int, x: np.ndarray, history: Mapping[str, np.ndarray],
           states: Mapping[str, Any], coeffs: Mapping[str, Any], last: bool = False) -> None:
    """End of step t for a plastic connection (input ``x`` [B, in] this step): its rule's
    increment joins the pending sum (with a learning ``delay`` d: the increment of step
    t - d joins it, and at the end of the ``last`` step of the run every increment still in
    flight); at the end of every t_epoch-th step the weights take it, clipped to the bounds."""
    c, post, m = ls.coeffs, None, None
    if ls.post is not None:
        z = history[ls.post][t]
        z_prev = history[ls.post][t - 1] if t else np.zeros_like(z)
        post = _Post(z, z_prev, states.get(ls.post), coeffs.get(ls.post))
    if ls.stream is not None:
        m = history[ls.stream][t].reshape(x.shape[0], -1)  # [B, 1] or [B, n]
    increment = INCREMENTS[type(c)](c, ls.traces, x, post, m)
    if c.delay:
        ls.in_flight.append(increment)
        if len(ls.in_flight) > c.delay:
            ls.pending += ls.in_flight.pop(0)
        if last:  # the end of the run: what is still in flight is applied too
            for d in ls.in_flight:
                ls.pending += d
            ls.in_flight.clear()
    else:
        ls.pending += increment
    if (t + 1) % c.t_epoch == 0:
        w = ls.weight + ls.pending
        if c.w_min is not None or c.w_max is not None:
            w = np.clip(w, c.w_min, c.w_max)
        ls.weight = w
        ls.pending = np.zeros_like(w)


def _trace(traces: dict[str, np.ndarray], key: str, decay: float, activity: np.ndarray) -> np.ndarray:
    """``trace = (1 - d) trace + activity`` (a trace starts at 0 before step 0)."""
    old = traces.get(key)
    traces[key] = (1.0 - decay) * (np.zeros_like(activity) if old is None else old) + activity
    return traces[key]


def _pairing(c: Any, traces: dict[str, np.ndarray], x: np.ndarray, z: np.ndarray) -> np.ndarray:
    """STDP's traces updated with this step's spikes, and the step's pairing term
    ``a_plus z_j xbar_i - a_minus ybar_j x_i`` [B, out, in]."""
    xbar = _trace(traces, "x", c.dx, x)
    ybar = _trace(traces, "y", c.dy, z)
    return c.a_plus * z[:, :, None] * xbar[:, None, :] - c.a_minus * ybar[:, :, None] * x[:, None, :]


def _stdp(c: STDPCoefficients, traces: dict, x: np.ndarray, post: _Post, m: None) -> np.ndarray:
    return c.lr * _pairing(c, traces, x, post.z)


def _reward_stdp(c: RewardSTDPCoefficients, traces: dict, x: np.ndarray, post: _Post,
                 m: np.ndarray) -> np.ndarray:
    elig = _trace(traces, "c", c.dc, _pairing(c, traces, x, post.z))
    return c.rate * m[:, :, None] * elig


def _three_factor(c: ThreeFactorCoefficients, traces: dict, x: np.ndarray, post: None,
                  m: np.ndarray) -> np.ndarray:
    xbar = _trace(traces, "x", c.dx, x)
    return c.rate * m[:, :, None] * xbar[:, None, :]


def _eprop(c: EPropCoefficients, traces: dict, x: np.ndarray, post: _Post, m: np.ndarray) -> np.ndarray:
    p: LIFCoefficients = post.coeffs
    n_out = post.z.shape[1]
    dv, gain, v_th = (np.broadcast_to(a, (n_out,))[None, :, None] for a in (p.dv, p.gain, p.v_threshold))
    rho = (1.0 - post.z_prev if p.reset == "value" else np.ones_like(post.z_prev))[:, :, None]
    eps = traces.get("eps", np.zeros((*post.z.shape, x.shape[1])))
    traces["eps"] = (1.0 - dv) * rho * eps + gain * x[:, None, :]
    psi = c.gamma * np.maximum(0.0, 1.0 - np.abs(post.state["u"][:, :, None] - v_th))  # type: ignore[index]
    ebar = _trace(traces, "ebar", c.dk, psi * traces["eps"])
    # L_j = sum_k feedback_jk err_k, summed per sample (a BLAS product could sum a batch differently)
    signal = m if c.feedback is None else (c.feedback[None, :, :] * m[:, None, :]).sum(-1)
    return c.rate * signal[:, :, None] * ebar


INCREMENTS: dict[type, Callable[..., np.ndarray]] = {
    STDPCoefficients: _stdp, RewardSTDPCoefficients: _reward_stdp,
    ThreeFactorCoefficients: _three_factor, EPropCoefficients: _eprop,
}
"""Each rule's increment at the end of a step (docs/semantics.md section 6), [B, out, in]."""


# ------------------------------------------------------------- stateless nodes


def _weighted(rule: Callable[[Any, np.ndarray], np.ndarray]) -> Callable[..., np.ndarray]:
    """A weighted sum, computed one sample at a time: a batched BLAS call may sum in a
    different order, and a sample's spikes must not depend on the batch it is in."""
    def apply(node: Node, out_shape: tuple[int, ...], x: np.ndarray) -> np.ndarray:
        if x.shape[0] == 0:
            return np.zeros((0, *out_shape))
        return np.stack([rule(node, xb[None])[0] for xb in x]).reshape(x.shape[0], *out_shape)
    return apply


def _conv_node(node: Any, x: np.ndarray) -> np.ndarray:
    return conv(x, node.weight, node.bias, node.stride, node.padding, node.dilation, node.groups)


NEURON_STEPS: dict[type[Node], Callable[[Any, dict[str, np.ndarray], np.ndarray], np.ndarray]] = {
    IF: _if_step, LIF: _lif_step, CubaLIF: _cuba_lif_step, ALIF: _alif_step, LI: _li_step,
}
"""One step of a neuron population: updates the state and returns its output."""

STATELESS: dict[type[Node], Callable[[Any, tuple[int, ...], np.ndarray], np.ndarray]] = {
    Output: lambda node, shape, x: x,
    Scale: lambda node, shape, x: node.scale * x,
    Flatten: lambda node, shape, x: x.reshape(x.shape[0], *shape),  # C order, batch kept
    Affine: _weighted(lambda node, x: x @ node.weight.T + node.bias),
    Linear: _weighted(lambda node, x: x @ node.weight.T),
    Conv1d: _weighted(_conv_node),
    Conv2d: _weighted(_conv_node),
    SumPool2d: _weighted(lambda node, x: sum_pool2d(x, node.kernel_size, node.stride, node.padding)),
}
"""Nodes without state or dt: ``rule(node, output shape, x [B, *input_shape])``."""

RULES: dict[type[Node], Any] = {
    Input: "read from the input stream",
    Delay: "y[t] = X[t - k] (its input history)",
    **NEURON_STEPS, **STATELESS,
}
"""What the reference does with each IR node type (neuromorph.rules)."""


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
