"""Defining models in Python: one line for the common cases, a Graph for the rest.

    import neuromorph as nm
    net = nm.feedforward(64, [128], 10)                       # Input -> Affine -> LIF -> Affine -> LI
    lsnn = nm.recurrent(40, 100, 2, n_adaptive=50)            # LSNN: ALIF with a delayed recurrent loop
    chain = nm.sequential((1, 8, 8), nm.conv2d(1, 4, 3, padding=1), nm.LIF(tau=0.01),
                          nm.SumPool2d(2), nm.Flatten(), nm.dense(64, 10), nm.LI(tau=0.02))
    general = nm.Graph(nodes={...}, edges=[("a", "b"), ("c", "a", 1)])

Weights are initialised from a seeded generator so that a model is reproducible.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from .discretize import DEFAULT_DT
from .errors import IRError
from .ir import ALIF, LI, LIF, Affine, Conv1d, Conv2d, Graph, Input, Linear, Node, Output



def _rng(seed: int | np.random.Generator) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def dense(
    n_in: int,
    n_out: int,
    *,
    bias: bool = True,
    scale: float = 1.0,
    seed: int | np.random.Generator = 0,
) -> Affine | Linear:
    """A dense connection with weights ~ N(0, (scale / sqrt(n_in))^2) and zero bias."""
    w = _rng(seed).normal(0.0, scale / np.sqrt(n_in), size=(n_out, n_in))
    return Affine(w, np.zeros(n_out)) if bias else Linear(w)


def _conv(
    cls: type[Conv1d] | type[Conv2d],
    c_in: int,
    c_out: int,
    kernel: int | tuple[int, ...],
    scale: float,
    seed: int | np.random.Generator,
    **kw: Any,
) -> Conv1d | Conv2d:
    ks = (kernel,) * cls.ndim if isinstance(kernel, int) else tuple(kernel)
    groups = kw.get("groups", 1)
    fan_in = c_in // groups * int(np.prod(ks))
    w = _rng(seed).normal(0.0, scale / np.sqrt(fan_in), size=(c_out, c_in // groups, *ks))
    return cls(w, np.zeros(c_out), **kw)


def conv1d(c_in: int, c_out: int, kernel: int, *, scale: float = 1.0,
           seed: int | np.random.Generator = 0, **kw: Any) -> Conv1d:
    """A Conv1d with He-like random weights; kw: stride, padding, dilation, groups."""
    return _conv(Conv1d, c_in, c_out, kernel, scale, seed, **kw)  # type: ignore[return-value]


def conv2d(c_in: int, c_out: int, kernel: int | tuple[int, int], *, scale: float = 1.0,
           seed: int | np.random.Generator = 0, **kw: Any) -> Conv2d:
    """A Conv2d with He-like random weights; kw: stride, padding, dilation, groups."""
    return _conv(Conv2d, c_in, c_out, kernel, scale, seed, **kw)  # type: ignore[return-value]


def sequential(
    input_shape: int | Sequence[int],
    *layers: Node | tuple[str, Node],
    dt: float | None = DEFAULT_DT,
    metadata: Mapping[str, Any] | None = None,
) -> Graph:
    """A chain Input -> layers -> Output. Layers are nodes or (name, node) pairs;
    unnamed ones are called after their type (``lif1``, ``affine2``, ...)."""
    shape = (input_shape,) if isinstance(input_shape, int) else tuple(input_shape)
    nodes: dict[str, Node] = {"input": Input(shape)}
    counts: dict[str, int] = {}
    for layer in layers:
        if isinstance(layer, tuple):
            name, node = layer
        else:
            node = layer
            kind = node.type_name.lower()
            counts[kind] = counts.get(kind, 0) + 1
            name = f"{kind}{counts[kind]}"
        if name in nodes:
            raise IRError("duplicate layer name", node=name)
        if not isinstance(node, Node):
            raise IRError(f"a layer must be an IR node, got {type(node).__name__}", node=name)
        nodes[name] = node
    nodes["output"] = Output()
    names = list(nodes)
    return Graph(nodes, list(zip(names, names[1:])), dt=dt, metadata=metadata or {})


def feedforward(
    n_inputs: int,
    hidden: Sequence[int],
    n_outputs: int,
    *,
    neuron: Node | None = None,
    readout: Node | None = None,
    weight_scale: float = 1.0,
    dt: float | None = DEFAULT_DT,
    seed: int = 0,
    metadata: Mapping[str, Any] | None = None,
) -> Graph:
    """Input -> [Affine -> neuron] * len(hidden) -> Affine -> readout -> Output.

    ``neuron`` defaults to LIF(tau=10 ms) and ``readout`` to LI(tau=20 ms), each with
    ``r = tau / dt`` so that an input of 1 moves the membrane by 1 per step (snnTorch's
    scaling; it keeps the weights of order 1). A LIF readout makes a spiking output layer.
    """
    step = dt if dt is not None else DEFAULT_DT
    neuron = neuron if neuron is not None else LIF(tau=10e-3, r=10e-3 / step)
    readout = readout if readout is not None else LI(tau=20e-3, r=20e-3 / step)
    rng = _rng(seed)
    layers: list[tuple[str, Node]] = []
    sizes = [n_inputs, *hidden]
    for i, (a, b) in enumerate(zip(sizes, sizes[1:]), start=1):
        layers += [(f"fc{i}", dense(a, b, scale=weight_scale, seed=rng)), (f"{neuron.type_name.lower()}{i}", neuron)]
    layers += [("fc_out", dense(sizes[-1], n_outputs, scale=weight_scale, seed=rng)), ("readout", readout)]
    return sequential(n_inputs, *layers, dt=dt, metadata=metadata)


def recurrent(
    n_inputs: int,
    n_hidden: int,
    n_outputs: int,
    *,
    n_adaptive: int = 0,
    tau_mem: float = 20e-3,
    tau_adapt: float = 2.0,
    beta: float = 1.8,
    v_threshold: float = 1.0,
    tau_readout: float = 20e-3,
    weight_scale: float = 1.0,
    dt: float | None = DEFAULT_DT,
    seed: int = 0,
    metadata: Mapping[str, Any] | None = None,
) -> Graph:
    """A recurrent spiking layer with a leaky readout (an LSNN when n_adaptive > 0).

    The hidden population is one ALIF node; its last ``n_adaptive`` neurons adapt
    (beta > 0), the others are plain LIF neurons (beta = 0), as in Bellec et al. (2018).
    The recurrent loop ``hidden -> w_rec -> hidden`` carries a one-step delay on its
    ``hidden -> w_rec`` edge (last step's spikes, weighted now: NIR's recurrence reading). Self-connections are zero. Membranes use ``r = tau / dt``
    (see :func:`feedforward`).
    """
    step = dt if dt is not None else DEFAULT_DT
    if not 0 <= n_adaptive <= n_hidden:
        raise IRError(f"n_adaptive must be in 0..{n_hidden}, got {n_adaptive}", node="hidden")
    rng = _rng(seed)
    w_rec = dense(n_hidden, n_hidden, bias=False, scale=weight_scale, seed=rng).weight.copy()
    np.fill_diagonal(w_rec, 0.0)
    betas = np.zeros(n_hidden)
    betas[n_hidden - n_adaptive :] = beta
    nodes: dict[str, Node] = {
        "input": Input((n_inputs,)),
        "w_in": dense(n_inputs, n_hidden, bias=False, scale=weight_scale, seed=rng),
        "hidden": ALIF(tau_mem=tau_mem, tau_adapt=tau_adapt, beta=betas, r=tau_mem / step,
                       v_threshold=v_threshold),
        "w_rec": Linear(w_rec),
        "w_out": dense(n_hidden, n_outputs, bias=False, scale=weight_scale, seed=rng),
        "readout": LI(tau=tau_readout, r=tau_readout / step),
        "output": Output(),
    }
    edges = [
        ("input", "w_in"), ("w_in", "hidden"), ("hidden", "w_rec", 1), ("w_rec", "hidden"),
        ("hidden", "w_out"), ("w_out", "readout"), ("readout", "output"),
    ]
    return Graph(nodes, edges, dt=dt, metadata=metadata or {})


def delta_rule(
    graph: Graph,
    *,
    lr: float,
    target: float = 1.0,
    connection: str | None = None,
    label: str = "label",
    error: str = "error",
    zero_rows: Sequence[int] = (),
) -> Graph:
    """``graph`` with its readout connection learning by the delta rule (ThreeFactor),
    the error computed inside the graph so that a chip computes it too::

        label (Input, one-hot) -> Scale(target) -------------+
                                                             +-> error (Output)
        readout (LI) --(delay 1)--> Scale(-1)               -+

    ``error(t) = target*label(t) - v(t-1)``: the readout of the step before, the newest a
    chip can have (its synapse delivers one step after it receives, so while it takes
    the input of step t the readout is still at t-1; docs/onchip-learning.md).

    ``connection``: the Affine/Linear feeding the LI readout of the first Output (found
    when None); the rule's presynaptic trace has the readout's ``tau``, so each step is a
    descent step on that step's squared error. ``zero_rows``: readout units (classes)
    whose weights and bias start at zero, e.g. classes the off-chip training never saw.
    A sample played with an all-zero label still drives every unit towards 0: play
    unlabelled data through a frozen copy (``neuromorph run`` without ``--learn``).
    """
    import dataclasses

    from .ir import Scale, ThreeFactor

    if connection is None:
        connection = _readout_connection(graph)
    node = graph.nodes.get(connection)
    if not isinstance(node, (Affine, Linear)):
        raise IRError("the delta rule needs an Affine or Linear connection", node=connection)
    out = graph.outgoing(connection)
    readout = out[0].target if len(out) == 1 else None
    if readout is None or not isinstance(graph.nodes[readout], LI) or graph.nodes[readout].tau.size != 1:
        raise IRError("the delta rule's connection must feed exactly one LI readout with one tau", node=connection)
    for name in (label, error, f"{error}_target", f"{error}_output"):
        if name in graph.nodes:
            raise IRError(f"the delta rule adds a node '{name}', and the graph already has one", node=name)
    rows = sorted({int(r) for r in zero_rows})
    weight, changes = np.array(node.weight, dtype=np.float64), {}
    if rows:
        if rows[0] < 0 or rows[-1] >= weight.shape[0]:
            raise IRError(f"zero_rows must lie in 0..{weight.shape[0] - 1}, got {rows}", node=connection)
        weight[rows] = 0.0
        if isinstance(node, Affine):
            bias = np.array(node.bias, dtype=np.float64)
            bias[rows] = 0.0
            changes["bias"] = bias
    tau = float(graph.nodes[readout].tau)
    rule = ThreeFactor(error=error, lr=lr, tau_pre=tau)
    nodes = dict(graph.nodes)
    nodes[connection] = dataclasses.replace(node, weight=weight, plasticity=rule, **changes)
    n_out = weight.shape[0]
    nodes.update({label: Input((n_out,)), f"{error}_target": Scale(np.float64(target)),
                  f"{error}_output": Scale(np.float64(-1.0)), error: Output()})
    edges = [*graph.edges, (label, f"{error}_target"), (f"{error}_target", error),
             (readout, f"{error}_output", 1), (f"{error}_output", error)]
    return Graph(nodes, edges, dt=graph.dt, metadata=graph.metadata)


def _readout_connection(graph: Graph) -> str:
    """The Affine/Linear that feeds the LI readout of the graph's first Output."""
    outputs = graph.outputs
    feeds = graph.incoming(outputs[0]) if outputs else []
    readout = feeds[0].source if len(feeds) == 1 else None
    into = graph.incoming(readout) if readout is not None and isinstance(graph.nodes[readout], LI) else []
    if len(into) != 1 or not isinstance(graph.nodes[into[0].source], (Affine, Linear)):
        raise IRError("cannot find the readout connection (one Affine/Linear -> LI -> Output): name it")
    return into[0].source
