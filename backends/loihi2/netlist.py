"""Lowering an IR graph to a netlist: neuron populations joined by weight matrices.

This is the shape of a network on Loihi: every neuron population is a compartment group
with Lava-style state ``u`` (synaptic current) and ``v`` (membrane); every connection is a
synapse matrix whose spikes arrive one step after they are sent (Lava's Dense), plus
an optional extra delay. Linear IR nodes between two populations (Affine, Linear, convs,
sum pooling, Flatten, Scale) are composed into one matrix per (source, target, delay).

Neuron update of a population, in *shifted* coordinates ``v' = v - v_shift`` so that the
reset is to 0 as on Loihi (float; the fixed-point form is in neuron_step.py)::

    at the first step of every sample window:  u = 0, v = v_init, a = 0
    u = u * (1 - du) + a_in + bias_u
    v = v * (1 - dv) + u + bias_v
    s = v > vth + beta * a            (never for LI: it has no threshold)
    v = 0 where s
    a = a * (1 - da) + s

``a_in`` is the sum over incoming connections of ``W @ x`` where ``x`` is the source's
output sent one step earlier (plus the connection's extra delay). The matrices already
contain each population's input gain (docs/semantics.md, "How the targets map").

Timing: a population has an ``offset``: IR step t of a sample happens at chip step
``offset + t`` of that sample's window. Inputs have offset 0; a connection from u to v
with IR delay d has ``extra_delay = offset(v) - offset(u) - 1 + d >= 0``. Offsets are the
smallest that satisfy every connection; a loop whose IR delay is shorter than its number
of synapse hops cannot be deployed and is refused.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from neuromorph.discretize import (
    ALIFCoefficients, CubaLIFCoefficients, IFCoefficients, LICoefficients, LIFCoefficients,
    discretize_graph, resolve_dt,
)
from neuromorph.errors import IRError
from neuromorph.rules import rule_for
from neuromorph.ir import (
    ALIF, IF, LI, LIF, Affine, Conv1d, Conv2d, CubaLIF, Delay, Flatten, Graph, Input, Linear,
    Neuron, Node, Output, Scale, SumPool2d,
)
from neuromorph.simulate import conv as conv_numpy
from neuromorph.simulate import sum_pool2d

KINDS = ("lif", "cuba", "alif", "li", "if")


@dataclass(frozen=True, eq=False)
class Population:
    """A neuron group; per-neuron float arrays of length ``size`` (flattened C order)."""

    name: str
    kind: str
    shape: tuple[int, ...]
    du: np.ndarray
    dv: np.ndarray
    bias_u: np.ndarray
    bias_v: np.ndarray
    vth: np.ndarray  # +inf for LI
    v_init: np.ndarray
    v_shift: np.ndarray  # IR membrane = v + v_shift
    da: np.ndarray
    beta: np.ndarray
    offset: int = 0

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def spiking(self) -> bool:
        return self.kind != "li"


@dataclass(frozen=True, eq=False)
class InputPort:
    name: str
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


@dataclass(frozen=True, eq=False)
class Connection:
    """``target.a_in += weight @ source_output`` one step (+ extra_delay) after it is sent."""

    source: str  # a population or an input port
    target: str  # a population
    weight: np.ndarray  # [target.size, source.size], gains folded in
    ir_delay: int  # delay along the IR path, in steps
    extra_delay: int = 0  # chip delay beyond the synapse's inherent step


@dataclass(frozen=True, eq=False)
class OutputPort:
    """An IR Output read from a population: its spikes, or (LI) its membrane."""

    name: str
    population: str
    signal: str  # "spikes" or "v"
    shape: tuple[int, ...]


@dataclass(frozen=True, eq=False)
class Netlist:
    dt: float
    inputs: list[InputPort]
    populations: list[Population]
    connections: list[Connection]
    outputs: list[OutputPort]
    source_nodes: dict[str, list[str]] = field(default_factory=dict)  # population -> IR nodes folded into it

    def population(self, name: str) -> Population:
        for p in self.populations:
            if p.name == name:
                return p
        raise KeyError(name)

    def size_of(self, name: str) -> int:
        for item in (*self.inputs, *self.populations):
            if item.name == name:
                return item.size
        raise KeyError(name)

    @property
    def latency(self) -> int:
        """Chip steps between an input at IR step t and the outputs of IR step t."""
        return max((self.population(o.population).offset for o in self.outputs), default=0)


# ---------------------------------------------------------------- linear algebra


Matrix = tuple[np.ndarray, np.ndarray]  # (M, c): node(x) = M @ x.flatten() + c


def _affine(node: Affine, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> Matrix:
    return node.weight.copy(), node.bias.copy()


def _linear(node: Linear, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> Matrix:
    return node.weight.copy(), np.zeros(node.weight.shape[0])


def _flatten(node: Flatten, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> Matrix:
    n_in = int(np.prod(in_shape))
    return np.eye(n_in), np.zeros(n_in)


def _scale(node: Scale, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> Matrix:
    s = np.broadcast_to(node.scale, in_shape).reshape(-1)
    return np.diag(s), np.zeros(s.size)


def _columns(op: Any, in_shape: tuple[int, ...]) -> np.ndarray:
    """The matrix of a linear map given as a batched function (one column per basis vector)."""
    n_in = int(np.prod(in_shape))
    cols = op(np.eye(n_in).reshape(n_in, *in_shape))
    return cols.reshape(n_in, -1).T.copy()


def _conv(node: Conv1d | Conv2d, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> Matrix:
    zero = np.zeros_like(node.bias)
    m = _columns(lambda x: conv_numpy(x, node.weight, zero, node.stride, node.padding,
                                      node.dilation, node.groups), in_shape)
    bias = np.broadcast_to(node.bias.reshape(-1, *([1] * (len(out_shape) - 1))), out_shape)
    return m, bias.reshape(-1).copy()


def _sum_pool(node: SumPool2d, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> Matrix:
    m = _columns(lambda x: sum_pool2d(x, node.kernel_size, node.stride, node.padding), in_shape)
    return m, np.zeros(int(np.prod(out_shape)))


LINEAR_RULES: dict[type[Node], Callable[..., Matrix]] = {
    Affine: _affine, Linear: _linear, Flatten: _flatten, Scale: _scale,
    Conv1d: _conv, Conv2d: _conv, SumPool2d: _sum_pool,
}
"""Nodes folded into synapse matrices: ``rule(node, in_shape, out_shape) -> (M, c)``."""


_Paths = dict[str, list[tuple[np.ndarray | None, int]]]  # source -> [(matrix or None = identity, IR delay)]


def _paths_into(graph: Graph, target: str, dt: float, memo: dict[str, tuple[_Paths, np.ndarray]]) -> tuple[_Paths, np.ndarray]:
    """Linear maps from every source (population or input) to ``target``'s summed input,
    and the constant part of that input (Affine biases)."""
    paths: _Paths = {}
    bias = np.zeros(int(np.prod(graph.input_shape(target))))  # type: ignore[arg-type]
    for e in graph.incoming(target):
        src = graph.nodes[e.source]
        if isinstance(src, (Input, Neuron)):
            paths.setdefault(e.source, []).append((None, e.delay))  # identity, built only if needed
            continue
        up_paths, up_bias = _through(graph, e.source, dt, memo)
        if e.delay and np.any(up_bias):
            raise IRError(f"a bias reaches it through the delayed edge {e}: not supported by "
                          "the compiler (move the bias after the delay)", node=target)
        bias = bias + up_bias
        for s, ps in up_paths.items():
            paths.setdefault(s, []).extend((m, d + e.delay) for m, d in ps)
    return paths, bias


def _through(graph: Graph, name: str, dt: float, memo: dict[str, tuple[_Paths, np.ndarray]]) -> tuple[_Paths, np.ndarray]:
    """Paths from sources to the output of linear node ``name``."""
    if name in memo:
        return memo[name]
    node = graph.nodes[name]
    inner, bias_in = _paths_into(graph, name, dt, memo)
    if isinstance(node, Delay):
        steps = np.unique(np.round(node.delay / dt).astype(int))
        if len(steps) != 1:
            raise IRError("per-element Delay values are not supported by the compiler yet", node=name)
        if np.any(bias_in):
            raise IRError("a bias passes through this Delay: not supported by the compiler", node=name)
        result = ({s: [(m, d + int(steps[0])) for m, d in ps] for s, ps in inner.items()}, bias_in)
    elif isinstance(node, Output):
        raise IRError("an Output cannot feed other nodes", node=name)
    else:
        rule = rule_for(LINEAR_RULES, node, name, "the Loihi 2 lowering")
        m, c = rule(node, graph.input_shape(name), graph.shape(name))
        result = ({s: [(m if a is None else m @ a, d) for a, d in ps] for s, ps in inner.items()},
                  m @ bias_in + c)
    memo[name] = result
    return result


# ---------------------------------------------------------------- populations


Full = Callable[[Any], np.ndarray]  # broadcast a parameter to one value per neuron


def _reset_coordinates(c: Any, full: Full) -> dict[str, np.ndarray]:
    """Threshold, initial value and shift of a spiking neuron whose reset goes to 0."""
    reset = full(c.v_reset)
    return {"v_shift": reset, "vth": full(c.v_threshold) - reset, "v_init": full(c.v_init) - reset}


def _if(c: IFCoefficients, full: Full) -> dict[str, Any]:
    return {"kind": "if", "gain": full(c.gain), "dv": full(0.0), **_reset_coordinates(c, full)}


def _lif(c: LIFCoefficients, full: Full) -> dict[str, Any]:
    shifted = _reset_coordinates(c, full)
    return {"kind": "lif", "gain": full(c.gain), "dv": full(c.dv),
            "bias_v": full(c.leak) - full(c.dv) * shifted["v_shift"], **shifted}


def _cuba_lif(c: CubaLIFCoefficients, full: Full) -> dict[str, Any]:
    shifted = _reset_coordinates(c, full)
    return {"kind": "cuba", "du": full(c.di), "dv": full(c.dv), "gain": full(c.gain_i) * full(c.gain_v),
            "bias_v": full(c.leak) - full(c.dv) * shifted["v_shift"], **shifted}


def _alif(c: ALIFCoefficients, full: Full) -> dict[str, Any]:
    return {**_lif(c, full), "kind": "alif", "da": full(c.da), "beta": full(c.beta)}  # type: ignore[arg-type]


def _li(c: LICoefficients, full: Full) -> dict[str, Any]:
    return {"kind": "li", "gain": full(c.gain), "dv": full(c.dv), "bias_v": full(c.leak),
            "v_init": full(c.v_init), "vth": full(np.inf)}


POPULATION_RULES: dict[type[Node], Callable[[Any, Full], dict[str, Any]]] = {
    IF: _if, LIF: _lif, CubaLIF: _cuba_lif, ALIF: _alif, LI: _li,
}
"""Neuron nodes -> a population: ``rule(coefficients, full)`` gives the kind, the input
gain and the parameters that differ from a plain current-free, non-adaptive neuron."""


def _population(name: str, node: Neuron, coeff: Any, shape: tuple[int, ...]) -> tuple[Population, np.ndarray]:
    """The population's parameters in shifted coordinates, and its input gain (the
    factor folded into every incoming matrix)."""
    n = int(np.prod(shape))
    full = lambda a: np.broadcast_to(np.asarray(a, dtype=np.float64), shape).reshape(n).copy()  # noqa: E731
    p = {"du": np.ones(n), "bias_u": np.zeros(n), "bias_v": np.zeros(n), "v_shift": np.zeros(n),
         "da": np.zeros(n), "beta": np.zeros(n)}
    p.update(rule_for(POPULATION_RULES, node, name, "the Loihi 2 lowering")(coeff, full))
    gain = p.pop("gain")
    return Population(name=name, shape=tuple(shape), **p), gain


LOWERING_RULES: dict[type[Node], Any] = {
    Input: "an input port (off-chip spike source)",
    Output: "read from the population that feeds it",
    Delay: "an extra synaptic delay on the connections through it",
    **LINEAR_RULES, **POPULATION_RULES,
}
"""What the Loihi 2 lowering does with each IR node type (neuromorph.rules)."""


def lower(graph: Graph, dt: float | None = None) -> Netlist:
    """IR graph -> netlist with offsets. Refusals name the node and the reason."""
    step = resolve_dt(graph, dt)
    coeffs = discretize_graph(graph, step)
    for name, node in graph.nodes.items():
        if getattr(node, "plasticity", None) is not None:
            raise IRError("plasticity is carried in the IR but no backend executes it yet", node=name)
    inputs = [InputPort(n, graph.shape(n)) for n in graph.inputs]
    pops: dict[str, Population] = {}
    gains: dict[str, np.ndarray] = {}
    for name, node in graph.nodes.items():
        if isinstance(node, Neuron):
            pops[name], gains[name] = _population(name, node, coeffs[name], graph.shape(name))

    memo: dict[str, tuple[_Paths, np.ndarray]] = {}
    connections: list[Connection] = []
    for name, pop in pops.items():
        paths, bias = _paths_into(graph, name, step, memo)
        gain = gains[name]
        by_key: dict[tuple[str, int], np.ndarray] = {}
        for src, ps in paths.items():
            for m, d in ps:
                if m is None:  # a population fed directly, one to one
                    m = np.eye(pop.size)
                by_key[(src, d)] = by_key.get((src, d), 0) + m
        for (src, d), m in by_key.items():
            connections.append(Connection(src, name, gain[:, None] * m, d))
        pops[name] = _replace(pop, bias_u=gain * bias)

    outputs = []
    for out in graph.outputs:
        (edge,) = graph.incoming(out) if len(graph.incoming(out)) == 1 else (None,)
        src = graph.nodes[edge.source] if edge else None
        if edge is None or not isinstance(src, Neuron) or edge.delay:
            raise IRError("the Lava compiler needs each Output fed directly (no delay) by one neuron "
                          "population (add an LI readout)", node=out)
        outputs.append(OutputPort(out, edge.source, "spikes" if src.spiking else "v", graph.shape(out)))

    offsets = _offsets(list(pops), [p.name for p in inputs], connections)
    pops = {n: _replace(p, offset=offsets[n]) for n, p in pops.items()}
    final = [
        Connection(c.source, c.target, c.weight, c.ir_delay,
                   offsets[c.target] - offsets[c.source] - 1 + c.ir_delay)
        for c in connections
    ]
    for name in pops:
        if not any(c.target == name for c in final):
            raise IRError("neuron population receives no input", node=name)
    return Netlist(step, inputs, list(pops.values()), final, outputs)


def _replace(pop: Population, **changes: Any) -> Population:
    from dataclasses import replace

    return replace(pop, **changes)


def _offsets(pops: list[str], inputs: list[str], conns: list[Connection]) -> dict[str, int]:
    """Smallest offsets >= 0 with offset(v) >= offset(u) + 1 - d for every connection
    (Bellman-Ford on longest paths; a loop that keeps growing is refused)."""
    offset = {n: 0 for n in [*inputs, *pops]}
    pred: dict[str, str] = {}
    last = None
    for _ in range(len(pops) + 1):
        last = None
        for c in conns:
            want = offset[c.source] + 1 - c.ir_delay
            if want > offset[c.target]:
                offset[c.target] = want
                pred[c.target] = c.source
                last = c.target
        if last is None:
            return offset
    for _ in range(len(pops)):  # walk back into the growing loop
        last = pred[last]
    loop, node = [last], pred[last]
    while node != last:
        loop.append(node)
        node = pred[node]
    names = sorted(loop)
    raise IRError(
        "a recurrent loop through populations " + ", ".join(names) + " has less delay in the "
        "model than synapse hops on the chip (each synapse adds one step): give the loop at "
        "least one step of delay per population in it",
        node=names[0],
    )
