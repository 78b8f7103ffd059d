"""Lowering an IR graph to a netlist: neuron populations joined by synapses.

This is the shape of a network on Loihi: every neuron population is a compartment group
with Lava-style state ``u`` (synaptic current) and ``v`` (membrane); every connection is a
synapse whose spikes arrive one step after they are sent (Lava's Dense), plus an
optional extra delay. Linear IR nodes between two populations (Affine, Linear, convs,
sum pooling, Flatten, Scale) are composed into one synapse per (source, target, delay):
a weight matrix, or a convolution kept as its shared kernel (linear.py says which).

Neuron update of a population, in *shifted* coordinates ``v' = v - v_shift`` so that the
reset is to 0 as on Loihi (float; the fixed-point form is in neuron_step.py)::

    at the first step of every sample window:  u = 0, v = v_init, a = 0
    u = u * (1 - du) + a_in + bias_u
    v = v * (1 - dv) + u + bias_v
    s = v > vth + beta * a            (never for LI: it has no threshold)
    v = 0 where s                     (reset "value"; "subtract": v = v - (vth + beta*a) where s)
    a = a * (1 - da) + s

``a_in`` is the sum over incoming connections of ``W @ x`` (or the convolution of ``x``)
where ``x`` is the source's output sent one step earlier (plus the connection's extra
delay). The weights already contain each population's input gain (docs/semantics.md,
"How the targets map").

Timing: a population has an ``offset``: IR step t of a sample happens at chip step
``offset + t`` of that sample's window. Inputs have offset 0; a connection from u to v
with IR delay d has ``extra_delay = offset(v) - offset(u) - 1 + d >= 0``. Offsets are the
smallest that satisfy every connection; a loop whose IR delay is shorter than its number
of synapse hops cannot be deployed and is refused.

Lowering is iterative (linear nodes are composed in dependency order, so a chain of
thousands of nodes needs no recursion), and the matrices, kernels and per-neuron arrays
it would build are estimated first: above ``neuromorph.streams.MEMORY_BOUND`` the
lowering is refused, naming the node that needs the most (:func:`estimate_lowering`).
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
from neuromorph.ir import ALIF, IF, LI, LIF, Affine, CubaLIF, Delay, Edge, Graph, Input, Neuron, Node, Output
from neuromorph.streams import check_memory, format_bytes
from .conv import ConvGeometry
from .learning_model import (
    LearningSpec, check_eprop_timing, learning_spec, plastic_nodes, plastic_wiring, same_post_factors,
)
from .linear import (
    CONV_NODES, LINEAR_RULES, Kind, Map, Own, channel_gain, compose, next_kind, node_bias, own_bytes,
    step_bytes, synapse, synapse_bytes,
)

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
    reset: str = "value"  # the IR neuron's reset mode: "value" (v = 0) or "subtract"

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
    """``target.a_in += weight @ source_output`` one step (+ extra_delay) after it is sent;
    for a convolutional connection (``conv`` set) ``weight`` is the shared kernel
    ``[C_out, C_in/groups, *K]`` and the product is the convolution (conv.py)."""

    source: str  # a population or an input port
    target: str  # a population
    weight: np.ndarray  # [target.size, source.size] (dense) or the kernel (conv); gains folded in
    ir_delay: int  # delay along the IR path, in steps
    extra_delay: int = 0  # chip delay beyond the synapse's inherent step
    conv: ConvGeometry | None = None  # a convolutional connection's geometry
    plastic: str | None = None  # the IR node of a plastic connection (Netlist.learning[plastic])

    @property
    def kind(self) -> str:
        return "dense" if self.conv is None else "conv"


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
    learning: dict[str, LearningSpec] = field(default_factory=dict)  # plastic IR node -> its chip form

    def plastic(self, name: str) -> tuple[int, Connection]:
        """(index, connection) of plastic IR connection ``name``."""
        for i, c in enumerate(self.connections):
            if c.plastic == name:
                return i, c
        raise KeyError(name)

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


# ---------------------------------------------------------------- linear nodes


_Paths = dict[str, list[tuple[Map, int]]]  # source -> [(matrix, ConvMap or None = identity, IR delay)]
_Memo = dict[str, tuple[_Paths, np.ndarray]]
_Incoming = dict[str, list[Edge]]


def _is_source(node: Node) -> bool:
    """Inputs and neuron populations end a path; every other node is composed into it."""
    return isinstance(node, (Input, Neuron))


def _linear_order(graph: Graph, incoming: _Incoming, targets: list[str]) -> list[str]:
    """The non-source nodes whose maps feed ``targets``, each after the nodes it reads:
    a depth-first post-order, iterative (a chain of thousands of nodes is fine), in the
    order a recursion from each target's incoming edges would finish them. A loop made
    of such nodes alone (no population in it) cannot be composed and is refused."""
    done: set[str] = set()
    open_: set[str] = set()  # expanded, not finished: the current path
    order: list[str] = []
    for target in targets:
        stack = [(e.source, False) for e in reversed(incoming[target])
                 if not _is_source(graph.nodes[e.source])]
        while stack:
            name, finished = stack.pop()
            if finished:
                open_.discard(name)
                done.add(name)
                order.append(name)
                continue
            if name in done:
                continue
            if name in open_:
                raise IRError("a loop through linear nodes with no neuron population in it: the "
                              "Loihi 2 lowering composes linear nodes into synapse matrices and "
                              "cannot unroll a loop (put a population in it)", node=name)
            open_.add(name)
            stack.append((name, True))
            stack.extend((e.source, False) for e in reversed(incoming[name])
                         if not _is_source(graph.nodes[e.source]) and e.source not in done)
    return order


def _paths_into(graph: Graph, target: str, memo: _Memo, incoming: _Incoming) -> tuple[_Paths, np.ndarray]:
    """Linear maps from every source (population or input) to ``target``'s summed input,
    and the constant part of that input (Affine biases). The non-source nodes it reads
    must be in ``memo`` already (:func:`_linear_order`)."""
    paths: _Paths = {}
    bias = np.zeros(int(np.prod(graph.input_shape(target))))  # type: ignore[arg-type]
    for e in incoming[target]:
        if _is_source(graph.nodes[e.source]):
            paths.setdefault(e.source, []).append((None, e.delay))  # identity, built only if needed
            continue
        up_paths, up_bias = memo[e.source]
        if e.delay and np.any(up_bias):
            raise IRError(f"a bias reaches it through the delayed edge {e}: not supported by "
                          "the compiler (move the bias after the delay)", node=target)
        bias = bias + up_bias
        for s, ps in up_paths.items():
            paths.setdefault(s, []).extend((m, d + e.delay) for m, d in ps)
    return paths, bias


def _through(graph: Graph, name: str, dt: float, memo: _Memo, incoming: _Incoming) -> tuple[_Paths, np.ndarray]:
    """Paths from sources to the output of linear node ``name`` (the nodes it reads are in
    ``memo``); stored in ``memo``."""
    node = graph.nodes[name]
    inner, bias_in = _paths_into(graph, name, memo, incoming)
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
        in_shape, out_shape = graph.input_shape(name), graph.shape(name)
        own = Own(lambda: rule(node, in_shape, out_shape))
        paths = {s: [(compose(node, in_shape, out_shape, a, own), d) for a, d in ps] for s, ps in inner.items()}
        result = (paths, node_bias(node, in_shape, out_shape, bias_in, own))
    memo[name] = result
    return result


# ---------------------------------------------------------------- memory estimate


POPULATION_ARRAYS = 16
"""float64 arrays of one value per neuron that lowering a population holds at its peak
(its parameters, its input gain and their temporaries)."""


def _size(shape: Any) -> int:
    return int(np.prod(shape, dtype=object)) if shape is not None else 0


Foldable = Callable[[str, ConvGeometry], bool]  # (population, geometry) -> its gain is per channel


def estimate_lowering(graph: Graph, order: list[str], pops: list[str], incoming: _Incoming,
                      foldable: Foldable = lambda pop, geom: True) -> dict[str, int]:
    """Bytes that :func:`lower` allocates, per node, before it allocates any: each linear
    node's own map and what each path through it becomes (linear.next_kind: a product
    matrix, an expanded or a composed convolution), each population's parameters and
    its connections (summed, gain-scaled, the identity a one-to-one input needs, or a
    kernel). Follows the paths as :func:`_through` builds them."""
    kinds: dict[str, dict[str, dict[Kind, int]]] = {}  # node -> source -> {kind: paths}

    def into(name: str) -> dict[str, dict[Kind, int]]:
        out: dict[str, dict[Kind, int]] = {}
        for e in incoming[name]:
            ups = {e.source: {None: 1}} if _is_source(graph.nodes[e.source]) else kinds[e.source]
            for s, counts in ups.items():
                mine = out.setdefault(s, {})
                for kind, count in counts.items():
                    mine[kind] = mine.get(kind, 0) + count
        return out

    share: dict[str, int] = {}
    for name in order:
        node = graph.nodes[name]
        paths = into(name)
        if isinstance(node, Delay):  # the same maps, later
            kinds[name], share[name] = paths, 0
            continue
        in_shape, out_shape = graph.input_shape(name), graph.shape(name)
        n_in, n_out = _size(in_shape), _size(out_shape)
        kinds[name], total, own = {}, 0, False
        for s, counts in paths.items():
            mine = kinds[name].setdefault(s, {})
            for kind, count in counts.items():
                new = next_kind(node, in_shape, out_shape, kind)
                mine[new] = mine.get(new, 0) + count
                total += count * step_bytes(kind, new, n_out, _size(graph.shape(s)), n_in)
                own = own or not isinstance(kind, ConvGeometry) or isinstance(node, CONV_NODES)
        share[name] = total + (own_bytes(node, n_in, n_out) if own else 0)
    for name in pops:
        n = _size(graph.shape(name))
        matrices = sum(synapse_bytes(counts, n, _size(graph.shape(s)), lambda g: foldable(name, g))
                       for s, counts in into(name).items())
        share[name] = 8 * POPULATION_ARRAYS * n + matrices
    return share


def _check_lowering_memory(graph: Graph, order: list[str], pops: list[str], incoming: _Incoming,
                           foldable: Foldable) -> None:
    share = estimate_lowering(graph, order, pops, incoming, foldable)
    if not share:
        return
    worst = max(share, key=lambda n: share[n])
    check_memory(sum(share.values()),
                 f"lowering for Loihi 2 (synapse matrices and kernels, per-neuron parameters; "
                 f"{format_bytes(share[worst])} of it for this node)", node=worst)


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


def _gain_per_channel(graph: Graph, name: str, coeff: Any, geom: ConvGeometry) -> bool:
    """Whether population ``name``'s input gain is one factor per channel of ``geom``,
    from its parameters as given (nothing per neuron is built for it)."""
    node = graph.nodes[name]
    gain = rule_for(POPULATION_RULES, node, name, "the Loihi 2 lowering")(
        coeff, lambda a: np.asarray(a, dtype=np.float64))["gain"]
    return channel_gain(gain, graph.shape(name), geom) is not None


def _population(name: str, node: Neuron, coeff: Any, shape: tuple[int, ...]) -> tuple[Population, np.ndarray]:
    """The population's parameters in shifted coordinates, and its input gain (the
    factor folded into every incoming matrix)."""
    n = int(np.prod(shape))
    full = lambda a: np.broadcast_to(np.asarray(a, dtype=np.float64), shape).reshape(n).copy()  # noqa: E731
    p = {"du": np.ones(n), "bias_u": np.zeros(n), "bias_v": np.zeros(n), "v_shift": np.zeros(n),
         "da": np.zeros(n), "beta": np.zeros(n)}
    p.update(rule_for(POPULATION_RULES, node, name, "the Loihi 2 lowering")(coeff, full))
    gain = p.pop("gain")
    return Population(name=name, shape=tuple(shape), reset=getattr(node, "reset", "value"), **p), gain


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
    incoming: _Incoming = {n: graph.incoming(n) for n in graph.nodes}
    # A plastic connection stays a synapse of its own (learning_model.py): its edge into
    # the population it feeds is taken out of the composition.
    plastic = {name: plastic_wiring(graph, name) for name in plastic_nodes(graph)}
    for name, (_, post, _) in plastic.items():
        incoming[post] = [e for e in incoming[post] if e.source != name]
    errors = {getattr(graph.nodes[p].plasticity, "error", None) for p in plastic}  # type: ignore[attr-defined]
    # Populations in evaluation order (the resource map lists them so), not file order.
    neurons = [name for name in graph.order() if isinstance(graph.nodes[name], Neuron)]
    order = _linear_order(graph, incoming, neurons)
    _check_lowering_memory(graph, order, neurons, incoming,  # before allocating anything
                           lambda pop, geom: _gain_per_channel(graph, pop, coeffs[pop], geom))
    inputs = [InputPort(n, graph.shape(n)) for n in graph.inputs]
    pops: dict[str, Population] = {}
    gains: dict[str, np.ndarray] = {}
    for name in neurons:
        pops[name], gains[name] = _population(name, graph.nodes[name], coeffs[name], graph.shape(name))

    memo: _Memo = {}
    for name in order:  # every node a population reads before it: no recursion
        _through(graph, name, step, memo, incoming)
    connections: list[Connection] = []
    for name, pop in pops.items():
        paths, bias = _paths_into(graph, name, memo, incoming)
        gain = gains[name]
        by_key: dict[tuple[str, int], list[Map]] = {}
        for src, ps in paths.items():
            for m, d in ps:
                by_key.setdefault((src, d), []).append(m)
        for (src, d), maps in by_key.items():
            weight, geom = synapse(maps, gain, pop.shape)
            connections.append(Connection(src, name, weight, d, conv=geom))
        for p, (src, post, d) in plastic.items():
            if post == name:
                node = graph.nodes[p]
                weight = gain[:, None] * np.asarray(node.weight, dtype=np.float64)  # type: ignore[attr-defined]
                connections.append(Connection(src, name, weight, d, plastic=p))
                if isinstance(node, Affine):
                    bias = bias + node.bias
        pops[name] = _replace(pop, bias_u=gain * bias)

    outputs = []
    for out in graph.outputs:
        if out in errors:  # an error stream: computed on the chip by the post (learning_model.py)
            continue
        into = graph.incoming(out)
        (edge,) = into if len(into) == 1 else (None,)
        src = graph.nodes[edge.source] if edge else None
        if edge is None or not isinstance(src, Neuron) or edge.delay:
            raise IRError("the Lava compiler needs each Output fed directly (no delay) by one neuron "
                          "population (add an LI readout)", node=out)
        outputs.append(OutputPort(out, edge.source, "spikes" if src.spiking else "v", graph.shape(out)))

    offsets = _offsets(list(pops), [p.name for p in inputs], connections)
    pops = {n: _replace(p, offset=offsets[n]) for n, p in pops.items()}
    final = [
        Connection(c.source, c.target, c.weight, c.ir_delay,
                   offsets[c.target] - offsets[c.source] - 1 + c.ir_delay, c.conv, c.plastic)
        for c in connections
    ]
    for name in pops:
        if not any(c.target == name for c in final):
            raise IRError("neuron population receives no input", node=name)
    return Netlist(step, inputs, list(pops.values()), final, outputs,
                   learning=learning_specs(graph, step, final, gains, offsets))


def plastic_learning(graph: Graph, dt: float, connections: list[Connection],
                     populations: list[Population]) -> dict[str, LearningSpec]:
    """:func:`learning_specs` of a netlist read back (payload.py): the post populations'
    gains recomputed from the model."""
    coeffs = discretize_graph(graph, dt)
    gains = {}
    for p in populations:
        if any(c.plastic is not None and c.target == p.name for c in connections):
            gains[p.name] = _population(p.name, graph.nodes[p.name], coeffs[p.name], p.shape)[1]  # type: ignore[arg-type]
    return learning_specs(graph, dt, connections, gains, {p.name: p.offset for p in populations})


def learning_specs(graph: Graph, dt: float, connections: list[Connection],
                   gains: dict[str, np.ndarray], offsets: dict[str, int]) -> dict[str, LearningSpec]:
    """The chip form of every plastic connection (learning_model.py); refuses, naming the
    connection, one that needs a synaptic delay (Lava's LearningDense has none), one whose
    population already takes another plastic connection (it sends one set of learning
    factors: only e-prop connections with the same factors may share it), and an e-prop
    error that reads its readout sooner than the chip's message arrives."""
    specs: dict[str, LearningSpec] = {}
    for c in connections:
        if c.plastic is None:
            continue
        if c.extra_delay:
            raise IRError(f"a plastic connection must reach '{c.target}' one chip step after it is sent "
                          f"(Lava's LearningDense has no delay), but the schedule needs {c.extra_delay} "
                          "more step(s) here: other paths into that population are longer", node=c.plastic)
        spec = learning_spec(graph, c.plastic, dt, gains[c.target], c.source)
        check_eprop_timing(spec, offsets)
        other = next((s for s in specs.values() if s.target == c.target), None)
        if other is not None and not same_post_factors(other, spec):
            why = ("e-prop connections into one population must share their error, lr, tau_out, gamma and "
                   "feedback" if spec.rule == other.rule == "eprop" else "it sends one third factor on the chip")
            raise IRError(f"population '{c.target}' is fed by two plastic connections ('{other.name}' too): "
                          f"{why}", node=c.plastic)
        specs[c.plastic] = spec
    return specs


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
