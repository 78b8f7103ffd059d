"""IR graph -> a batched torch module that runs docs/semantics.md step by step.

The neuron updates are Norse's forward-Euler dynamics (LIFBox, CuBa LIF, IAF, LIBox)
written over the coefficients from :mod:`neuromorph.discretize`, so that dt enters in one
place and the arithmetic follows the same order as the numpy reference; spikes use an
owned surrogate gradient. tests/test_torch_backend.py checks each neuron rule against
Norse's own step functions and the whole module against :mod:`neuromorph.simulate`.

Trainable: the weights and biases of Affine, Linear and convolution nodes. Neuron
parameters are buffers. :meth:`GraphNetwork.to_graph` writes the trained values back into
the IR, so the model that is saved is exactly the one that was trained.
"""
from __future__ import annotations

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
                for f in fields(self._coeffs[name]):
                    value = getattr(self._coeffs[name], f.name)
                    if isinstance(value, np.ndarray):  # not the reset mode (a str)
                        self.register_buffer(f"{key}_{f.name}", _tensor(value, dtype))
        # How far back each node's output must be remembered (delayed edges, Delay nodes).
        self._memory: dict[str, int] = {n: 0 for n in graph.nodes}
        for name in graph.nodes:
            for src, d in self._incoming[name]:
                self._memory[src] = max(self._memory[src], d)

    # ------------------------------------------------------------------ parameters

    def _p(self, name: str, field: str) -> torch.Tensor:
        return getattr(self, f"{self._keys[name]}_{field}")

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
        graph = self.graph
        state = {
            n: self._initial_state(n, batch, ref)
            for n, node in graph.nodes.items()
            if isinstance(node, Neuron)
        }
        # past[n][k] = output of n, k steps ago (k = 1..memory); delay nodes keep inputs
        past: dict[str, list[torch.Tensor]] = {n: [] for n in graph.nodes}
        delay_in: dict[str, list[torch.Tensor]] = {
            n: [] for n, node in graph.nodes.items() if isinstance(node, Delay)
        }
        probes = [p for p in parse_probes(graph, list(record)) if p.text not in graph.outputs]
        wanted = list(graph.outputs) + [p.text for p in probes]
        traces: dict[str, list[torch.Tensor]] = {r: [] for r in wanted}

        for t in range(steps):
            y: dict[str, torch.Tensor] = {}
            for name in self._order:
                node = graph.nodes[name]
                if isinstance(node, Input):
                    y[name] = streams[name][:, t].to(ref.dtype)
                    continue
                total: torch.Tensor | None = None
                for src, d in self._incoming[name]:
                    if d == 0:
                        term = y[src]
                    elif d <= len(past[src]):
                        term = past[src][-d]
                    else:
                        continue  # before the stream started: zero
                    total = term if total is None else total + term
                if total is None:
                    total = torch.zeros(batch, *graph.input_shape(name), dtype=ref.dtype, device=ref.device)  # type: ignore[misc]
                y[name] = self._run_node(name, node, total, state, delay_in)
            for name, mem in self._memory.items():
                if mem:
                    past[name].append(y[name])
                    if len(past[name]) > mem:
                        past[name].pop(0)
            for out in graph.outputs:
                traces[out].append(y[out])
            for p in probes:
                traces[p.text].append(state[p.node][p.var] if p.var else y[p.node])
        return {r: torch.stack(v, dim=1) for r, v in traces.items()}

    def _run_node(
        self,
        name: str,
        node: Node,
        x: torch.Tensor,
        state: dict[str, dict[str, torch.Tensor]],
        delay_in: dict[str, list[torch.Tensor]],
    ) -> torch.Tensor:
        rule = self._rules[name]
        if rule is _delay_rule:
            return self._delay(name, x, delay_in[name])
        if rule is _neuron_rule:
            return self._neuron(name, x, state[name])
        return rule(self, name, node, x)

    def _delay(self, name: str, x: torch.Tensor, history: list[torch.Tensor]) -> torch.Tensor:
        steps = self._coeffs[name].steps  # type: ignore[union-attr]
        history.append(x)
        k = np.broadcast_to(steps, x.shape[1:])
        out = torch.zeros_like(x)
        for lag in np.unique(k):
            if lag < len(history):
                mask = torch.as_tensor(k == lag, device=x.device)
                out = torch.where(mask, history[-1 - int(lag)], out)
        if len(history) > int(k.max()) + 1:
            history.pop(0)
        return out

    def _initial_state(self, name: str, batch: int, ref: torch.Tensor) -> dict[str, torch.Tensor]:
        """v = v_init; every other state variable of the type (i, a) starts at 0."""
        zeros = torch.zeros((batch, *self.graph.shape(name)), dtype=ref.dtype, device=ref.device)
        state = {var: zeros for var in STATE_VARIABLES[type(self.graph.nodes[name])]}
        state["v"] = zeros + self._p(name, "v_init").to(ref.dtype)
        return state

    def _neuron(self, name: str, x: torch.Tensor, s: dict[str, torch.Tensor]) -> torch.Tensor:
        node = self.graph.nodes[name]
        p = lambda f: self._p(name, f)  # noqa: E731
        if not node.spiking:
            return NEURON_STEPS[type(node)](p, s, x, self.surrogate)
        threshold = threshold_of(node, p, s)  # the spike test's threshold (ALIF: a before the step)
        z = NEURON_STEPS[type(node)](p, s, x, self.surrogate)
        reset(node, p, s, z, threshold)
        return z

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


# ------------------------------------------------------------------ node rules
#
# A step function per neuron type: ``step(p, state, x, spike) -> output``, the membrane
# before the reset left in ``state["v"]``. p(name) is a discretised coefficient
# (neuromorph.discretize); the order of operations is neuromorph.simulate's.

P = Callable[[str], torch.Tensor]


def _if_step(p: P, s: dict[str, torch.Tensor], x: torch.Tensor, spike: Surrogate) -> torch.Tensor:
    s["v"] = s["v"] + p("gain") * x
    return spike(s["v"] - p("v_threshold"))


def _lif_step(p: P, s: dict[str, torch.Tensor], x: torch.Tensor, spike: Surrogate) -> torch.Tensor:
    s["v"] = (1.0 - p("dv")) * s["v"] + p("leak") + p("gain") * x
    return spike(s["v"] - p("v_threshold"))


def _cuba_lif_step(p: P, s: dict[str, torch.Tensor], x: torch.Tensor, spike: Surrogate) -> torch.Tensor:
    s["i"] = (1.0 - p("di")) * s["i"] + p("gain_i") * x
    s["v"] = (1.0 - p("dv")) * s["v"] + p("leak") + p("gain_v") * s["i"]
    return spike(s["v"] - p("v_threshold"))


def _alif_step(p: P, s: dict[str, torch.Tensor], x: torch.Tensor, spike: Surrogate) -> torch.Tensor:
    s["v"] = (1.0 - p("dv")) * s["v"] + p("leak") + p("gain") * x
    z = spike(s["v"] - (p("v_threshold") + p("beta") * s["a"]))  # a of the previous step
    s["a"] = (1.0 - p("da")) * s["a"] + z
    return z


def _li_step(p: P, s: dict[str, torch.Tensor], x: torch.Tensor, spike: Surrogate) -> torch.Tensor:
    s["v"] = (1.0 - p("dv")) * s["v"] + p("leak") + p("gain") * x
    return s["v"]


def reset(node: Node, p: P, s: dict[str, torch.Tensor], z: torch.Tensor, threshold: torch.Tensor) -> None:
    """The reset where a spike happened (docs/semantics.md, section 3); it is not
    differentiated: neither the spike that triggers it nor the amount subtracted."""
    if node.reset == "subtract":
        amount = (threshold - p("v_reset")).detach().to(s["v"].dtype)
        s["v"] = s["v"] - torch.where(z > 0, amount, torch.zeros_like(amount))
    else:
        s["v"] = torch.where(z > 0, p("v_reset").to(s["v"].dtype).expand_as(s["v"]), s["v"])


def threshold_of(node: Node, p: P, s: dict[str, torch.Tensor]) -> torch.Tensor:
    """The threshold the step's spike test uses (taken before the step updates ``a``)."""
    if isinstance(node, ALIF):
        return p("v_threshold") + p("beta") * s["a"]
    return p("v_threshold")


NEURON_STEPS: dict[type[Node], Callable[..., torch.Tensor]] = {
    IF: _if_step, LIF: _lif_step, CubaLIF: _cuba_lif_step, ALIF: _alif_step, LI: _li_step,
}


def _conv(net: GraphNetwork, name: str, node: Conv1d | Conv2d, x: torch.Tensor) -> torch.Tensor:
    conv = F.conv1d if isinstance(node, Conv1d) else F.conv2d
    return conv(x, net._p(name, "weight"), net._p(name, "bias"), node.stride, node.padding,
                node.dilation, node.groups)


def _sum_pool(net: GraphNetwork, name: str, node: SumPool2d, x: torch.Tensor) -> torch.Tensor:
    k = node.kernel_size
    return F.avg_pool2d(x, k, node.stride, node.padding, count_include_pad=True) * (k[0] * k[1])


def _input_rule() -> None:
    """Marker: Input nodes are read from the stream (GraphNetwork.forward)."""


def _delay_rule() -> None:
    """Marker: Delay nodes keep their input history (GraphNetwork._delay)."""


def _neuron_rule() -> None:
    """Marker: neuron nodes step their state (NEURON_STEPS)."""


NODE_RULES: dict[type[Node], Any] = {
    Input: _input_rule,
    Output: lambda net, name, node, x: x,
    Affine: lambda net, name, node, x: F.linear(x, net._p(name, "weight"), net._p(name, "bias")),
    Linear: lambda net, name, node, x: F.linear(x, net._p(name, "weight")),
    Conv1d: _conv, Conv2d: _conv, SumPool2d: _sum_pool,
    Flatten: lambda net, name, node, x: x.reshape(x.shape[0], *net.graph.shape(name)),
    Scale: lambda net, name, node, x: x * net._p(name, "scale"),
    Delay: _delay_rule,
    **{t: _neuron_rule for t in NEURON_STEPS},
}
"""What the torch module does with each IR node type: ``rule(net, name, node, x)``."""


def _param(arr: np.ndarray, dtype: torch.dtype) -> torch.nn.Parameter:
    return torch.nn.Parameter(_tensor(arr, dtype))


def _tensor(arr: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    return torch.tensor(np.asarray(arr, dtype=np.float64), dtype=dtype)


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().to(torch.float64).numpy().copy()
