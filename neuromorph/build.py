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
from .ir import ALIF, LI, LIF, Affine, Conv1d, Conv2d, Graph, Input, Linear, Neuron, Node, Output



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


def eprop_rule(
    graph: Graph,
    *,
    lr: float,
    lr_readout: float | None = None,
    target: float = 1.0,
    feedback: str = "random",
    seed: int = 0,
    gamma: float = 0.3,
    label: str = "label",
    error: str = "error",
) -> Graph:
    """``graph``, a spiking network of LIF populations with an LI readout, made learnable
    on chip: e-prop (``EProp``) on every Affine/Linear into a LIF population, the delta
    rule (:func:`delta_rule`, ``lr_readout``, default ``lr``) on the readout connection,
    both errors computed inside the graph from one label Input::

        label (Input, one-hot) -> Scale(target) --+--------------------------> error        (delta rule)
                                                  +--------------------------> error_eprop  (e-prop)
        readout --(delay 1)--> Scale(-1) ---------------------------------------> error
        readout --(delay k)--> Scale(-1) = error_eprop_output -------------------> error_eprop

    Choices (docs/onchip-learning.md, "e-prop on chip"):

    - **Two error Outputs.** A chip delivers the readout's membrane to the readout
      connection's own learning engine with a lag of 1 step, but to another population
      only through a synapse: one step more. So the delta rule reads ``v(t - 1)`` and e-prop
      ``v(t - k)``, ``k = 1 + (the chip steps from the hidden population to the readout)``:
      2 for a readout fed by the population, the largest over the LIF populations (one
      shared e-prop error; a population closer to the readout gets the difference as
      synaptic delay on the chip). ``k`` counts one step per synapse, as Loihi's Dense.
    - **EProp** with ``delay=1`` (its learning latency on the chip), ``tau_out`` the
      readout's tau, ``gamma``; ``lr`` for every e-prop connection (a population's e-prop
      synapses share the factors it sends).
    - **feedback**: ``"random"``, a fixed matrix ``N(0, 1/n_out)`` per population from
      ``seed`` (random e-prop); ``"symmetric"``, the readout's initial weights transposed
      (only for the population the readout connection reads: refused otherwise). Both are
      fixed matrices on the chip.
    - Every LIF population must reset by subtraction (the chip's eligibility needs it: one
      line refuses another reset), and every Affine/Linear into it must read one Input or
      one spiking population and feed only it with no delay (a recurrent connection
      carries its delay on its input edge, as :func:`recurrent` does); CubaLIF/ALIF
      populations are not e-prop's on the chip and are refused. Data Inputs must carry
      0/1 spikes in a learning run (the traces count spikes).
    """
    import dataclasses

    from .ir import EProp, Scale

    if feedback not in ("random", "symmetric"):
        raise IRError(f"feedback must be 'random' or 'symmetric', got {feedback!r}")
    readout_conn = _readout_connection(graph)
    readout = graph.outgoing(readout_conn)[0].target
    hidden = [n for n, node in graph.nodes.items() if isinstance(node, Neuron) and n != readout]
    for n in hidden:
        node = graph.nodes[n]
        if type(node) is not LIF:
            raise IRError(f"e-prop on the chip learns into LIF populations; this one is a {node.type_name}", node=n)
        if node.reset != "subtract":
            raise IRError("e-prop on the chip needs reset=\"subtract\" (a reset to a value cuts the eligibility "
                          "per neuron, which the chip's presynaptic trace cannot hold): build it so", node=n)
    if not hidden:
        raise IRError("eprop_rule needs at least one LIF population before the readout")
    ro_w = np.asarray(graph.nodes[readout_conn].weight, dtype=np.float64)  # type: ignore[attr-defined]
    n_out = ro_w.shape[0]
    reads = graph.incoming(readout_conn)[0].source
    offsets = _chip_offsets(graph)
    k = 1 + max(offsets[readout] - offsets[h] for h in hidden)
    name_err, name_neg = f"{error}_eprop", f"{error}_eprop_output"
    if name_err in graph.nodes or name_neg in graph.nodes:
        raise IRError(f"eprop_rule adds nodes '{name_err}', '{name_neg}', and the graph already has one")
    g = delta_rule(graph, lr=lr if lr_readout is None else lr_readout, target=target, connection=readout_conn,
                   label=label, error=error)
    rng = _rng(seed)
    tau_out = float(graph.nodes[readout].tau)  # type: ignore[attr-defined]
    nodes = dict(g.nodes)
    for h in hidden:
        n_h = int(np.prod(graph.shape(h)))
        if feedback == "symmetric":
            if reads != h:
                raise IRError(f"symmetric feedback is the readout's weights transposed, which reach only '{reads}': "
                              "use feedback='random'", node=h)
            fb = ro_w.T.copy()
        else:
            fb = rng.normal(0.0, 1.0 / np.sqrt(n_out), (n_h, n_out))
        rule = EProp(error=name_err, lr=lr, tau_out=tau_out, feedback=fb, gamma=gamma, delay=1)
        for edge in graph.incoming(h):
            conn = graph.nodes[edge.source]
            if not isinstance(conn, (Affine, Linear)):
                continue
            into, out = graph.incoming(edge.source), graph.outgoing(edge.source)
            src = graph.nodes[into[0].source] if len(into) == 1 else None
            ok_src = isinstance(src, Input) or (isinstance(src, Neuron) and src.spiking)
            if not ok_src or len(out) != 1 or out[0].delay != 0:
                raise IRError(f"e-prop on the chip learns a connection that reads one Input or spiking population "
                              f"and feeds only '{h}' with no delay (put a recurrent delay on its input edge)",
                              node=edge.source)
            nodes[edge.source] = dataclasses.replace(conn, plasticity=rule)
    nodes.update({name_neg: Scale(np.float64(-1.0)), name_err: Output()})
    edges = [*g.edges, (f"{error}_target", name_err), (readout, name_neg, k), (name_neg, name_err)]
    return Graph(nodes, edges, dt=g.dt, metadata=g.metadata)


def _chip_offsets(graph: Graph) -> dict[str, int]:
    """The chip step at which each population computes its step 0 when every synapse
    delivers one step after it sends (Loihi, Lava's Dense): the smallest offsets with
    ``off(v) >= off(u) + 1 - d`` for every path u -> v through non-neuron nodes with IR
    delay d (Inputs at 0)."""
    def sources(v: str) -> list[tuple[str, int]]:
        found, todo = [], [(e.source, e.delay) for e in graph.incoming(v)]
        while todo:
            n, d = todo.pop()
            if isinstance(graph.nodes[n], (Input, Neuron)):
                found.append((n, d))
            else:
                todo += [(e.source, d + e.delay) for e in graph.incoming(n)]
        return found

    pops = [n for n, node in graph.nodes.items() if isinstance(node, Neuron)]
    into = {v: sources(v) for v in pops}
    off = {n: 0 for n, node in graph.nodes.items() if isinstance(node, (Input, Neuron))}
    for _ in range(len(pops) + 1):
        changed = False
        for v in pops:
            for u, d in into[v]:
                if off[u] + 1 - d > off[v]:
                    off[v], changed = off[u] + 1 - d, True
        if not changed:
            return off
    raise IRError("a recurrent loop has less delay than synapse hops: the chip cannot schedule it")


def _readout_connection(graph: Graph) -> str:
    """The Affine/Linear that feeds the LI readout of the graph's first Output."""
    outputs = graph.outputs
    feeds = graph.incoming(outputs[0]) if outputs else []
    readout = feeds[0].source if len(feeds) == 1 else None
    into = graph.incoming(readout) if readout is not None and isinstance(graph.nodes[readout], LI) else []
    if len(into) != 1 or not isinstance(graph.nodes[into[0].source], (Affine, Linear)):
        raise IRError("cannot find the readout connection (one Affine/Linear -> LI -> Output): name it")
    return into[0].source
