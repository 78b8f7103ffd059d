"""IR graph -> a batched torch module that runs docs/semantics.md step by step.

The neuron updates are Norse's forward-Euler dynamics (LIFBox, CuBa LIF, IAF, LIBox)
written over the coefficients from :mod:`neuromorph.discretize`, so that dt enters in one
place and the arithmetic follows the same order as the numpy reference; spikes use an
owned surrogate gradient. tests/test_norse_backend.py checks each neuron rule against
Norse's own step functions and the whole module against :mod:`neuromorph.simulate`.

Trainable: the weights and biases of Affine, Linear and convolution nodes. Neuron
parameters are buffers. :meth:`GraphNetwork.to_graph` writes the trained values back into
the IR, so the model that is saved is exactly the one that was trained.
"""
from __future__ import annotations

from dataclasses import fields
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ...discretize import (
    ALIFCoefficients, CubaLIFCoefficients, DelayCoefficients, IFCoefficients,
    LICoefficients, LIFCoefficients, discretize_graph, resolve_dt,
)
from ...errors import NeuromorphError
from ...ir import (
    Affine, Conv1d, Conv2d, Delay, Flatten, Graph, Input, Linear, Neuron, Node, Output,
    Scale, SumPool2d,
)
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
        wanted = list(graph.outputs) + [r for r in record if r not in graph.outputs]
        for r in wanted:
            base = r.split(".")[0] if r not in graph.nodes else r
            if base not in graph.nodes:
                raise NeuromorphError(f"cannot record '{r}': no such node")
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
            for r in wanted:
                if r in y:
                    traces[r].append(y[r])
                else:
                    n, var = r.rsplit(".", 1)
                    if n not in state or var not in state[n]:
                        raise NeuromorphError(f"cannot record '{r}': node '{n}' has no state '{var}'")
                    traces[r].append(state[n][var])
        return {r: torch.stack(v, dim=1) for r, v in traces.items()}

    def _run_node(
        self,
        name: str,
        node: Node,
        x: torch.Tensor,
        state: dict[str, dict[str, torch.Tensor]],
        delay_in: dict[str, list[torch.Tensor]],
    ) -> torch.Tensor:
        if isinstance(node, Output):
            return x
        if isinstance(node, Affine):
            return F.linear(x, self._p(name, "weight"), self._p(name, "bias"))
        if isinstance(node, Linear):
            return F.linear(x, self._p(name, "weight"))
        if isinstance(node, (Conv1d, Conv2d)):
            conv = F.conv1d if isinstance(node, Conv1d) else F.conv2d
            return conv(x, self._p(name, "weight"), self._p(name, "bias"), node.stride,
                        node.padding, node.dilation, node.groups)
        if isinstance(node, SumPool2d):
            k = node.kernel_size
            pooled = F.avg_pool2d(x, k, node.stride, node.padding, count_include_pad=True)
            return pooled * (k[0] * k[1])
        if isinstance(node, Flatten):
            return x.reshape(x.shape[0], *self.graph.shape(name))
        if isinstance(node, Scale):
            return x * self._p(name, "scale")
        if isinstance(node, Delay):
            return self._delay(name, x, delay_in[name])
        if isinstance(node, Neuron):
            return self._neuron(name, x, state[name])
        raise NeuromorphError(f"node '{name}': the Norse backend has no rule for {node.type_name}")

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
        shape = (batch, *self.graph.shape(name))
        v0 = self._p(name, "v_init").to(ref.dtype)
        s = {"v": torch.zeros(shape, dtype=ref.dtype, device=ref.device) + v0}
        c = self._coeffs[name]
        if isinstance(c, CubaLIFCoefficients):
            s["i"] = torch.zeros(shape, dtype=ref.dtype, device=ref.device)
        if isinstance(c, ALIFCoefficients):
            s["a"] = torch.zeros(shape, dtype=ref.dtype, device=ref.device)
        return s

    def _neuron(self, name: str, x: torch.Tensor, s: dict[str, torch.Tensor]) -> torch.Tensor:
        c = self._coeffs[name]
        p = lambda f: self._p(name, f)  # noqa: E731
        spike = self.surrogate
        if isinstance(c, LICoefficients):
            s["v"] = (1.0 - p("dv")) * s["v"] + p("leak") + p("gain") * x
            return s["v"]
        if isinstance(c, IFCoefficients):
            v = s["v"] + p("gain") * x
            z = spike(v - p("v_threshold"))
        elif isinstance(c, LIFCoefficients):
            v = (1.0 - p("dv")) * s["v"] + p("leak") + p("gain") * x
            z = spike(v - p("v_threshold"))
        elif isinstance(c, CubaLIFCoefficients):
            s["i"] = (1.0 - p("di")) * s["i"] + p("gain_i") * x
            v = (1.0 - p("dv")) * s["v"] + p("leak") + p("gain_v") * s["i"]
            z = spike(v - p("v_threshold"))
        elif isinstance(c, ALIFCoefficients):
            v = (1.0 - p("dv")) * s["v"] + p("leak") + p("gain") * x
            z = spike(v - (p("v_threshold") + p("beta") * s["a"]))
            s["a"] = (1.0 - p("da")) * s["a"] + z
        else:
            raise NeuromorphError(f"node '{name}': no neuron rule for {type(c).__name__}")
        # Reset to v_reset where a spike happened (the reset is not differentiated).
        s["v"] = torch.where(z > 0, p("v_reset").to(v.dtype).expand_as(v), v)
        return z

    # ------------------------------------------------------------------ inputs

    def _check_inputs(self, x: torch.Tensor | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        inputs = self.graph.inputs
        if not isinstance(x, Mapping):
            if len(inputs) != 1:
                raise NeuromorphError(f"the model has {len(inputs)} inputs ({', '.join(inputs)}): pass a dict")
            x = {inputs[0]: x}
        if set(x) != set(inputs):
            raise NeuromorphError(f"inputs must be exactly {sorted(inputs)}, got {sorted(x)}")
        lengths = set()
        for name, arr in x.items():
            want = self.graph.shape(name)
            if arr.ndim != len(want) + 2 or tuple(arr.shape[2:]) != want:
                raise NeuromorphError(
                    f"input '{name}' must have shape [batch, T, {', '.join(map(str, want))}], "
                    f"got {list(arr.shape)}"
                )
            lengths.add((arr.shape[0], arr.shape[1]))
        if len(lengths) != 1:
            raise NeuromorphError(f"all inputs must share batch size and length, got {sorted(lengths)}")
        return dict(x)

    def _reference_tensor(self, first: torch.Tensor) -> torch.Tensor:
        """dtype/device to compute in: the module's parameters' (inputs are cast to it)."""
        for p in self.parameters():
            return p
        for b in self.buffers():
            return b
        return first if first.is_floating_point() else first.float()


def _param(arr: np.ndarray, dtype: torch.dtype) -> torch.nn.Parameter:
    return torch.nn.Parameter(_tensor(arr, dtype))


def _tensor(arr: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    return torch.tensor(np.asarray(arr, dtype=np.float64), dtype=dtype)


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().to(torch.float64).numpy().copy()
