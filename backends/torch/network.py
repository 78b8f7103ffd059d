"""IR graph -> a batched torch module that runs docs/semantics.md step by step.

The neuron updates are Norse's forward-Euler dynamics (LIFBox, CuBa LIF, IAF, LIBox)
written over the coefficients from :mod:`neuromorph.discretize`, so that dt enters in one
place and the arithmetic follows the same order as the numpy reference; spikes use an
owned surrogate gradient. tests/test_torch_backend.py checks each neuron rule against
Norse's own step functions and the whole module against :mod:`neuromorph.simulate`.

Trainable: the weights and biases of Affine, Linear and convolution nodes. Neuron
parameters are buffers. :meth:`GraphNetwork.to_graph` writes the trained values back into
the IR, so the model that is saved is exactly the one that was trained.

Speed: the models are small, so a time step costs Python and per-operation overhead
rather than arithmetic. ``forward`` therefore makes each node's step function once per
call (its rule, with the node's parameters and decay factors already fetched and
computed) and the time loop only calls them; see benchmarks/training_throughput.py.
"""
from __future__ import annotations

from collections import deque
from dataclasses import fields
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from neuromorph.discretize import discretize_graph, resolve_dt
from neuromorph.ir import (
    ALIF, IF, LI, LIF, Affine, Conv1d, Conv2d, CubaLIF, Delay, Flatten, Graph, Input, Linear,
    Neuron, Node, Output, Scale, SumPool2d,
)
from neuromorph.rules import rule_for
from neuromorph.streams import STATE_VARIABLES, input_shapes, match_streams, parse_probes
from .surrogate import Surrogate

_WEIGHTED = (Affine, Linear, Conv1d, Conv2d)

NodeStep = Callable[[torch.Tensor], torch.Tensor]
"""A node's step function for one run: its summed input of the step -> its output."""


class GraphNetwork(torch.nn.Module):
    """Runs an IR graph on ``x`` of shape [batch, T, *input_shape] (one Input) or a dict.

    ``forward`` returns ``{output_name: [batch, T, *shape]}`` plus any recorded nodes
    (``"name"`` for a node's output, ``"name.v"`` / ``".i"`` / ``".a"`` for neuron state).
    """

    def __init__(
        self,
        graph: Graph,
        dt: float | None = None,
        surrogate: Surrogate | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.graph = graph
        self.dt = resolve_dt(graph, dt)
        self.surrogate = surrogate or Surrogate()
        self._order = graph.order()
        self._incoming = {n: [(e.source, e.delay) for e in graph.incoming(n)] for n in graph.nodes}
        self._coeffs = discretize_graph(graph, self.dt)
        # Each node's rule, looked up once (refusals name the node here, not mid-run).
        self._rules = {n: rule_for(NODE_RULES, node, n, "the torch backend") for n, node in graph.nodes.items()}
        self._keys: dict[str, str] = {}  # node name -> attribute prefix (names may hold '.')
        self._fields: dict[str, list[str]] = {}  # neuron name -> its coefficient buffers
        for i, (name, node) in enumerate(graph.nodes.items()):
            key = f"n{i}"
            self._keys[name] = key
            if isinstance(node, _WEIGHTED):
                self.register_parameter(f"{key}_weight", _param(node.weight, dtype))
                if hasattr(node, "bias"):
                    self.register_parameter(f"{key}_bias", _param(node.bias, dtype))
            elif isinstance(node, Scale):
                self.register_buffer(f"{key}_scale", _tensor(node.scale, dtype))
            elif name in self._coeffs and not isinstance(node, Delay):
                self._fields[name] = []
                for f in fields(self._coeffs[name]):
                    value = getattr(self._coeffs[name], f.name)
                    if isinstance(value, np.ndarray):  # not the reset mode (a str)
                        self.register_buffer(f"{key}_{f.name}", _tensor(value, dtype))
                        self._fields[name].append(f.name)
        # How far back each node's output must be remembered (delayed edges).
        self._memory: dict[str, int] = {n: 0 for n in graph.nodes}
        for name in graph.nodes:
            for src, d in self._incoming[name]:
                self._memory[src] = max(self._memory[src], d)

    # ------------------------------------------------------------------ parameters

    def _p(self, name: str, field: str) -> torch.Tensor:
        return getattr(self, f"{self._keys[name]}_{field}")

    def coefficients(self, name: str) -> dict[str, torch.Tensor]:
        """A neuron's discretised coefficients (neuromorph.discretize) for one run, plus
        the factors that keep its state over a step: ``keep = 1 - dv``, and for CubaLIF
        ``keep_i = 1 - di``, for ALIF ``keep_a = 1 - da``."""
        c = {f: self._p(name, f) for f in self._fields[name]}
        for rate, keep in (("dv", "keep"), ("di", "keep_i"), ("da", "keep_a")):
            if rate in c:
                c[keep] = 1.0 - c[rate]
        return c

    def to_graph(self) -> Graph:
        """The IR graph with the module's current weights and biases (float64, exact)."""
        new: dict[str, Node] = {}
        for name, node in self.graph.nodes.items():
            if isinstance(node, _WEIGHTED):
                changes = {"weight": _numpy(self._p(name, "weight"))}
                if hasattr(node, "bias"):
                    changes["bias"] = _numpy(self._p(name, "bias"))
                new[name] = node.replace(**changes)
        return self.graph.replace_nodes(**new)

    # ------------------------------------------------------------------ running

    def forward(
        self,
        x: torch.Tensor | Mapping[str, torch.Tensor],
        record: Sequence[str] = (),
    ) -> dict[str, torch.Tensor]:
        streams = self._check_inputs(x)
        first = next(iter(streams.values()))
        batch, steps = first.shape[0], first.shape[1]
        ref = self._reference_tensor(first)
        inputs = {n: s.to(ref.dtype).unbind(1) for n, s in streams.items()}  # [batch, ...] per step
        graph = self.graph
        state = {
            n: self._initial_state(n, batch, ref)
            for n, node in graph.nodes.items()
            if isinstance(node, Neuron)
        }
        # Every other node's step function for this run, in evaluation order (NODE_RULES).
        run = {n: self._rules[n](self, n, graph.nodes[n], state.get(n)) for n in self._order if n not in inputs}
        # past[n][-k] = output of n, k steps ago (k = 1..memory), for the delayed edges
        past = {n: deque(maxlen=mem) for n, mem in self._memory.items() if mem}
        probes = [p for p in parse_probes(graph, list(record)) if p.text not in graph.outputs]
        traces: dict[str, list[torch.Tensor]] = {r: [] for r in [*graph.outputs, *(p.text for p in probes)]}

        def summed_input(name: str, y: dict[str, torch.Tensor]) -> torch.Tensor:
            """X_n[t] = sum over the edges (s -> n, delay d) of y_s[t - d], 0 before the stream."""
            total: torch.Tensor | None = None
            for src, d in self._incoming[name]:
                if d > 0 and d > len(past[src]):
                    continue  # before the stream started: zero
                term = past[src][-d] if d > 0 else y[src]
                total = term if total is None else total + term
            if total is None:
                return torch.zeros(batch, *graph.input_shape(name), dtype=ref.dtype, device=ref.device)  # type: ignore[misc]
            return total

        for t in range(steps):  # one time step: every node once, in evaluation order
            y = {name: stream[t] for name, stream in inputs.items()}
            for name, step in run.items():
                y[name] = step(summed_input(name, y))
            for name, history in past.items():
                history.append(y[name])
            for out in graph.outputs:
                traces[out].append(y[out])
            for p in probes:
                traces[p.text].append(state[p.node][p.var] if p.var else y[p.node])
        return {r: torch.stack(v, dim=1) for r, v in traces.items()}

    def _initial_state(self, name: str, batch: int, ref: torch.Tensor) -> dict[str, torch.Tensor]:
        """v = v_init; every other state variable of the type (i, a) starts at 0."""
        zeros = torch.zeros((batch, *self.graph.shape(name)), dtype=ref.dtype, device=ref.device)
        state = {var: zeros for var in STATE_VARIABLES[type(self.graph.nodes[name])]}
        state["v"] = zeros + self._p(name, "v_init").to(ref.dtype)
        return state

    # ------------------------------------------------------------------ inputs

    def _check_inputs(self, x: torch.Tensor | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return match_streams(input_shapes(self.graph), x)[0]

    def _reference_tensor(self, first: torch.Tensor) -> torch.Tensor:
        """dtype/device to compute in: the module's parameters' (inputs are cast to it)."""
        for p in self.parameters():
            return p
        for b in self.buffers():
            return b
        return first if first.is_floating_point() else first.float()


# ------------------------------------------------------------------ neuron rules
#
# A step function per neuron type: ``step(c, state, x, spike, threshold) -> output``, the
# membrane before the reset left in ``state["v"]``. ``c`` holds the discretised
# coefficients (GraphNetwork.coefficients); ``threshold`` is threshold_of's (None for LI).
# The order of operations is neuromorph.simulate's.

Tensors = dict[str, torch.Tensor]  # a neuron's coefficients, or its state variables


def _if_step(c: Tensors, s: Tensors, x: torch.Tensor, spike: Surrogate, threshold: torch.Tensor) -> torch.Tensor:
    s["v"] = s["v"] + c["gain"] * x
    return spike(s["v"] - threshold)


def _lif_step(c: Tensors, s: Tensors, x: torch.Tensor, spike: Surrogate, threshold: torch.Tensor) -> torch.Tensor:
    s["v"] = c["keep"] * s["v"] + c["leak"] + c["gain"] * x
    return spike(s["v"] - threshold)


def _cuba_lif_step(c: Tensors, s: Tensors, x: torch.Tensor, spike: Surrogate, threshold: torch.Tensor) -> torch.Tensor:
    s["i"] = c["keep_i"] * s["i"] + c["gain_i"] * x
    s["v"] = c["keep"] * s["v"] + c["leak"] + c["gain_v"] * s["i"]
    return spike(s["v"] - threshold)


def _alif_step(c: Tensors, s: Tensors, x: torch.Tensor, spike: Surrogate, threshold: torch.Tensor) -> torch.Tensor:
    s["v"] = c["keep"] * s["v"] + c["leak"] + c["gain"] * x
    z = spike(s["v"] - threshold)  # threshold = v_threshold + beta * a, a of the previous step
    s["a"] = c["keep_a"] * s["a"] + z
    return z


def _li_step(c: Tensors, s: Tensors, x: torch.Tensor, spike: Surrogate, threshold: None = None) -> torch.Tensor:
    s["v"] = c["keep"] * s["v"] + c["leak"] + c["gain"] * x
    return s["v"]


def threshold_of(node: Node, c: Tensors, s: Tensors) -> torch.Tensor:
    """The threshold the step's spike test uses (ALIF: with ``a`` before the step)."""
    if isinstance(node, ALIF):
        return c["v_threshold"] + c["beta"] * s["a"]
    return c["v_threshold"]


def reset(node: Node, c: Tensors, s: Tensors, z: torch.Tensor, threshold: torch.Tensor) -> None:
    """The reset where a spike happened (docs/semantics.md, section 3); it is not
    differentiated: neither the spike that triggers it nor the amount subtracted."""
    spiked = z.bool()  # z is 0.0 or 1.0
    if node.reset == "subtract":
        s["v"] = s["v"] - torch.where(spiked, (threshold - c["v_reset"]).detach(), 0.0)
    else:
        s["v"] = torch.where(spiked, c["v_reset"], s["v"])


NEURON_STEPS: dict[type[Node], Callable[..., torch.Tensor]] = {
    IF: _if_step, LIF: _lif_step, CubaLIF: _cuba_lif_step, ALIF: _alif_step, LI: _li_step,
}


# ------------------------------------------------------------------ node rules
#
# What the module does with each IR node type: ``rule(net, name, node, state) -> step``,
# called once per run; ``step(x)`` is then called at every time step with the node's
# summed input. ``state`` is the neuron's state variables (None for other nodes).


def _neuron(net: GraphNetwork, name: str, node: Neuron, s: Tensors) -> NodeStep:
    c, spike, update = net.coefficients(name), net.surrogate, NEURON_STEPS[type(node)]
    if not node.spiking:
        return lambda x: update(c, s, x, spike)

    def step(x: torch.Tensor) -> torch.Tensor:
        threshold = threshold_of(node, c, s)
        z = update(c, s, x, spike, threshold)
        reset(node, c, s, z, threshold)
        return z

    return step


def _delay(net: GraphNetwork, name: str, node: Delay, state: None) -> NodeStep:
    """y[t] = X[t - k] elementwise (k per element), 0 before the stream reaches it."""
    k = np.broadcast_to(net._coeffs[name].steps, net.graph.shape(name))  # type: ignore[union-attr]
    history: deque[torch.Tensor] = deque(maxlen=int(k.max()) + 1)
    lags = [(int(lag), k == lag) for lag in np.unique(k)]

    def step(x: torch.Tensor) -> torch.Tensor:
        history.append(x)
        out = torch.zeros_like(x)
        for lag, mask in lags:
            if lag < len(history):
                out = torch.where(torch.as_tensor(mask, device=x.device), history[-1 - lag], out)
        return out

    return step


def _affine(net: GraphNetwork, name: str, node: Affine, state: None) -> NodeStep:
    # F.linear(x, W, b) on [batch, in] is addmm(b, x, W.t()): transpose once per run.
    weight_t, bias = net._p(name, "weight").t(), net._p(name, "bias")
    return lambda x: torch.addmm(bias, x, weight_t)


def _linear(net: GraphNetwork, name: str, node: Linear, state: None) -> NodeStep:
    weight_t = net._p(name, "weight").t()  # F.linear(x, W) on [batch, in] is x @ W.t()
    return lambda x: torch.mm(x, weight_t)


def _conv(net: GraphNetwork, name: str, node: Conv1d | Conv2d, state: None) -> NodeStep:
    conv = F.conv1d if isinstance(node, Conv1d) else F.conv2d
    weight, bias = net._p(name, "weight"), net._p(name, "bias")
    return lambda x: conv(x, weight, bias, node.stride, node.padding, node.dilation, node.groups)


def _sum_pool(net: GraphNetwork, name: str, node: SumPool2d, state: None) -> NodeStep:
    k = node.kernel_size
    return lambda x: F.avg_pool2d(x, k, node.stride, node.padding, count_include_pad=True) * (k[0] * k[1])


def _flatten(net: GraphNetwork, name: str, node: Flatten, state: None) -> NodeStep:
    shape = net.graph.shape(name)
    return lambda x: x.reshape(x.shape[0], *shape)


def _scale(net: GraphNetwork, name: str, node: Scale, state: None) -> NodeStep:
    scale = net._p(name, "scale")
    return lambda x: x * scale


def _input_rule() -> None:
    """Marker: Input nodes are read from the stream (GraphNetwork.forward)."""


NODE_RULES: dict[type[Node], Any] = {
    Input: _input_rule,
    Output: lambda net, name, node, state: lambda x: x,
    Affine: _affine, Linear: _linear, Conv1d: _conv, Conv2d: _conv, SumPool2d: _sum_pool,
    Flatten: _flatten, Scale: _scale, Delay: _delay,
    **{t: _neuron for t in NEURON_STEPS},
}
"""What the torch module does with each IR node type: ``rule(net, name, node, state) -> step``."""


def _param(arr: np.ndarray, dtype: torch.dtype) -> torch.nn.Parameter:
    return torch.nn.Parameter(_tensor(arr, dtype))


def _tensor(arr: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    return torch.tensor(np.asarray(arr, dtype=np.float64), dtype=dtype)


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().to(torch.float64).numpy().copy()
