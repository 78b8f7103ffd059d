"""nir.NIRGraph -> IR graph: flatten subgraphs, fold our delay nodes, apply a convention."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable

import nir
import numpy as np
from nir.ir.graph import Identity

from ...errors import IRError, NIRConversionError
from ...ir import (
    ALIF, IF, LI, LIF, Affine, Conv1d, Conv2d, CubaLIF, Delay, Edge, Flatten, Graph, Input,
    Linear, Node, Output, Plasticity, Scale, SumPool2d,
)
from ...ir import RESET_MODES, check_dt
from ...ir.nodes import as_int_tuple
from ._common import recurrence_edges, decode_meta
from ._conventions import (
    AUTO, CONVENTIONS, NEURON_TYPES, Convention, Recognition, get_convention,
    reads_alike, recognise,
)

DEFAULT_DT = {name: c.dt for name, c in CONVENTIONS.items()}
"""dt (s) when neither the caller nor our metadata gives one, per convention (see
_conventions.CONVENTIONS and docs/nir-conventions.md)."""

Expansion = tuple[list[tuple[str, Node]], str, str]  # IR nodes, entry name, exit name


class NIRImportWarning(UserWarning):
    """Something about a foreign NIR file that may make the import differ from its writer
    (an assumed dt, a convention that disagrees with the recognised producer)."""


@dataclass(frozen=True)
class _Choice:
    """The convention an import uses and why; the dt and where it came from."""

    convention: Convention
    reason: str
    recognised: Recognition | None
    dt: float | None
    dt_source: str
    dt_assumed: bool = False  # the convention's default, a guess (not the writer's constant)


def import_graph(g: Any, dt: float | None, convention: str, reset: str | None = None) -> Graph:
    return import_with_choice(g, dt, convention, reset)[0]


def import_with_choice(
    g: Any, dt: float | None, convention: str, reset: str | None = None
) -> tuple[Graph, _Choice]:
    """The IR graph and the convention/dt choice behind it (for reports such as the CLI's)."""
    if convention != AUTO:
        get_convention(convention)
    if reset is not None and (not isinstance(reset, str) or reset not in RESET_MODES):
        raise NIRConversionError(
            f"unknown reset mode {reset!r} (known: {', '.join(RESET_MODES)})"
        )
    if not isinstance(g, nir.NIRGraph):
        raise NIRConversionError(f"expected a nir.NIRGraph, got {type(g).__name__}")
    if dt is not None:
        dt = check_dt(dt)
    record = decode_meta(g.metadata, "NIR graph")

    leaves, pairs = _flatten(g)
    choice = _choose(g, leaves, convention, dt, record)
    conv, step = choice.convention, choice.dt
    if record is None and reset is None:
        reset = conv.reset
    folded = _fold_edge_delays(leaves, pairs)

    nodes: dict[str, Node] = {}
    entry: dict[str, str] = {}
    exit_: dict[str, str] = {}
    inner: list[tuple[str, str]] = []
    for name, node in leaves.items():
        try:
            made, entry[name], exit_[name] = _import_node(name, node, conv, step, leaves, reset)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, ArithmeticError,
                NIRConversionError) as exc:
            # IRError is a ValueError; the others come from parameters of the wrong kind
            # (a foreign or damaged file): one line, naming the node.
            text = " ".join(str(exc).split())
            if text.startswith(f"node '{name}'"):
                raise
            raise NIRConversionError(f"node '{name}': {text[:200]}") from None
        for new_name, ir_node in made:
            nodes[new_name] = ir_node
        inner += [(a[0], b[0]) for a, b in zip(made, made[1:])]
    ir_pairs = [(exit_[s], entry[t]) for s, t in pairs] + inner
    folded = {(exit_[s], entry[t]): d for (s, t), d in folded.items()}

    stored = {}
    if record is not None:
        stored = {(str(s), str(t)): int(d) for s, t, d in record.get("edges", [])}
    if stored and set(stored) == set(ir_pairs):
        edges = [Edge(s, t, stored[(s, t)]) for s, t in ir_pairs]
    else:  # a foreign graph, or ours edited by another tool: NIR's recurrence rule
        inputs = [n for n, node in nodes.items() if isinstance(node, Input)]
        back = recurrence_edges(ir_pairs, inputs)
        late = _late_spikes(nodes, ir_pairs, back) if conv.delay_spikes and record is None else set()
        edges = [Edge(s, t, folded.get((s, t), int((s, t) in back)) + int((s, t) in late))
                 for s, t in ir_pairs]

    if record is not None:
        order = record.get("nodes", [])
        nodes, edges = _without_added_outputs(nodes, edges, order)
        if sorted(order) == sorted(nodes):  # nir.read sorts nodes by name; restore ours
            nodes = {n: nodes[n] for n in order}
        return _build(nodes, edges, step, dict(record.get("metadata", {})), foreign=False), choice
    _warn(choice, leaves)
    metadata = {"imported_from": "nir", "convention": conv.name, "convention_reason": choice.reason,
                "dt_source": choice.dt_source}
    return _build(nodes, edges, step, metadata, foreign=True), choice


def _without_added_outputs(
    nodes: dict[str, Node], edges: list[Edge], order: list[str]
) -> tuple[dict[str, Node], list[Edge]]:
    """Our graph less the Output nodes nir added (nir gives every leaf an Output; in our
    graphs the one kind of leaf that is not an Output is a plasticity rule's third-factor
    stream, read without an edge). Only when what remains is exactly our node list."""
    added = {n for n, node in nodes.items() if n not in order and isinstance(node, Output)}
    if not added or sorted(n for n in nodes if n not in added) != sorted(order):
        return nodes, edges
    return ({n: node for n, node in nodes.items() if n not in added},
            [e for e in edges if e.target not in added])


# ------------------------------------------------------------------ convention and dt


def _choose(g: Any, leaves: dict[str, Any], name: str, dt: float | None,
            record: dict[str, Any] | None) -> _Choice:
    """The convention (``auto``: the recognised producer's, else nir) and the dt: the
    caller's, else neuromorph's stored one, else read from the file, else the convention's."""
    if record is not None:
        if name not in (AUTO, "nir") and not reads_alike(CONVENTIONS[name], CONVENTIONS["nir"]):
            raise NIRConversionError(
                "this NIR graph was written by neuromorph: its parameters are already in NIR's "
                f"convention, so convention='{name}' does not apply (use 'nir')"
            )
        conv = CONVENTIONS["nir" if name == AUTO else name]
        step = dt if dt is not None else record.get("dt")
        return _Choice(conv, "written by neuromorph (restored from its metadata)", None, step,
                       "given" if dt is not None else "stored by neuromorph")
    recognised = recognise(g, leaves)
    if name == AUTO:
        conv = CONVENTIONS[recognised.convention if recognised else "nir"]
        reason = (f"auto: {recognised.reason}" if recognised
                  else "auto: no producer recognised, NIR's own meaning")
    else:
        conv = CONVENTIONS[name]
        reason = "chosen by the caller" if name != "nir" else "NIR's own meaning (the default)"
    if dt is not None:
        return _Choice(conv, reason, recognised, float(dt), "given")
    inferred = conv.infer_dt(leaves) if conv.infer_dt is not None else None
    if inferred is not None:
        return _Choice(conv, reason, recognised, inferred, f"read from the file ({conv.name})")
    return _Choice(conv, reason, recognised, conv.dt, conv.dt_note, dt_assumed=not conv.dt_known)


def _dt_sensitive(leaves: dict[str, Any], conv: Convention) -> list[str]:
    """Neurons whose step rule depends on the dt chosen, under ``conv``."""
    return [n for n, v in leaves.items()
            if type(v) in NEURON_TYPES and NEURON_TYPES[type(v)] not in conv.per_step]


def _warn(choice: _Choice, leaves: dict[str, Any]) -> None:
    """NIRImportWarning for an assumed dt that matters, and for a convention that
    disagrees with the recognised producer."""
    conv, found = choice.convention, choice.recognised
    other = CONVENTIONS[found.convention] if found is not None else None
    present = {NEURON_TYPES[type(v)] for v in leaves.values() if type(v) in NEURON_TYPES}
    alike = other is not None and reads_alike(conv, other, present)
    sensitive = _dt_sensitive(leaves, conv)
    if choice.dt_assumed and sensitive and not (alike and other.dt_known):
        names = ", ".join(f"'{n}'" for n in sensitive[:3]) + (", ..." if len(sensitive) > 3 else "")
        kinds = "/".join(sorted({type(leaves[n]).__name__ for n in sensitive}))
        warnings.warn(
            f"NIR stores no time step and the step rule of the {kinds} neurons ({names}) depends "
            f"on it: dt = {choice.dt:g} s was assumed (the {conv.name} convention's default); "
            "pass --dt SECONDS (read_nir(..., dt=...)) for the step the model was made for, or "
            "--convention NAME for the framework that wrote it (docs/nir-conventions.md)",
            NIRImportWarning, stacklevel=4)
    if other is not None and not alike and other.name != conv.name:
        warnings.warn(
            f"this NIR graph looks written by {other.name}: {found.reason}. The {conv.name} "
            f"convention reads it differently from {other.name}, whose reading is: {other.summary}. "
            f"Use --convention {other.name} (or --convention auto)",
            NIRImportWarning, stacklevel=4)


def _late_spikes(nodes: dict[str, Node], pairs: list[tuple[str, str]],
                 back: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Edges leaving a spiking neuron that get one more step of delay (Spyx tests for a
    spike before it integrates, so its spikes leave one step late); a loop edge keeps its
    one step, which already reads the previous step's spikes."""
    return {(s, t) for s, t in pairs
            if getattr(nodes[s], "spiking", False) and (s, t) not in back}


# ------------------------------------------------------------------ structure


def _flatten(g: nir.NIRGraph) -> tuple[dict[str, nir.NIRNode], list[tuple[str, str]]]:
    """All leaf nodes (subgraph members named "outer.inner") and the edges between them,
    with Identity nodes and the Input/Output nodes of subgraphs bypassed."""
    leaves: dict[str, Any] = {}
    pairs: list[tuple[str, str]] = []
    bypass: list[str] = []

    def walk(graph: nir.NIRGraph, prefix: str) -> None:
        for key, node in graph.nodes.items():
            if isinstance(node, nir.NIRGraph):
                walk(node, f"{prefix}{key}.")
                continue
            if prefix + key in leaves:
                raise NIRConversionError(f"node '{prefix}{key}': two nodes flatten to this name")
            leaves[prefix + key] = node
            if isinstance(node, Identity) or (prefix and isinstance(node, (nir.Input, nir.Output))):
                bypass.append(prefix + key)
        for edge in graph.edges:
            src, dst = (str(x.decode() if isinstance(x, bytes) else x) for x in edge)
            where = f"edge {prefix}{src} -> {prefix}{dst}"
            pairs.append(
                (_resolve(graph, prefix, src, False, where), _resolve(graph, prefix, dst, True, where))
            )

    walk(g, "")
    for name in bypass:
        succs = [t for s, t in pairs if s == name and t != name]
        rewired: list[tuple[str, str]] = []
        for s, t in pairs:
            if t == name and s != name:
                rewired += [(s, x) for x in succs]
            elif s != name and t != name:
                rewired.append((s, t))
        pairs = list(dict.fromkeys(rewired))
        del leaves[name]
    return leaves, list(dict.fromkeys(pairs))


def _resolve(graph: nir.NIRGraph, prefix: str, end: str, into: bool, where: str) -> str:
    """Full leaf name for an edge end. Real files name a subgraph itself ("sub": its one
    Input or Output), a member ("sub.lif", "sub.input"), or, as nirtorch's flattening
    writes, a top-level node whose name merely contains dots ("1.lif")."""
    node = graph.nodes.get(end)
    if isinstance(node, nir.NIRGraph):
        kind = nir.Input if into else nir.Output
        ports = [k for k, v in node.nodes.items() if isinstance(v, kind)]
        if len(ports) != 1:
            raise NIRConversionError(
                f"{where}: subgraph '{prefix}{end}' has {len(ports)} {kind.__name__} nodes; "
                f"the edge must name one ('{end}.<name>')"
            )
        return _resolve(node, f"{prefix}{end}.", ports[0], into, where)
    if end in graph.nodes:  # (Norse leaves None for a layer it cannot convert)
        return prefix + end
    for i, ch in enumerate(end):
        if ch == "." and isinstance(graph.nodes.get(end[:i]), nir.NIRGraph):
            sub = graph.nodes[end[:i]]
            return _resolve(sub, f"{prefix}{end[:i]}.", end[i + 1 :], into, where)
    raise NIRConversionError(f"{where}: '{prefix}{end}' is not a node of the graph")


def _fold_edge_delays(
    leaves: dict[str, Any], pairs: list[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    """Turn the Delay nodes our exporter inserted back into edge delays (in place)."""
    folded: dict[tuple[str, str], int] = {}
    for name, node in list(leaves.items()):
        if not isinstance(node, nir.Delay):
            continue
        record = decode_meta(node.metadata, f"node '{name}'")
        if record is None or "edge_delay" not in record:
            continue
        ins = [s for s, t in pairs if t == name]
        outs = [t for s, t in pairs if s == name]
        if len(ins) != 1 or len(outs) != 1:
            raise NIRConversionError(
                f"node '{name}': marked as an edge delay but has {len(ins)} inputs and "
                f"{len(outs)} outputs (expected 1 and 1)"
            )
        pairs[pairs.index((ins[0], name))] = (ins[0], outs[0])
        pairs.remove((name, outs[0]))
        folded[(ins[0], outs[0])] = int(record["edge_delay"])
        del leaves[name]
    return folded


def _build(
    nodes: dict[str, Node], edges: list[Edge], dt: float | None, metadata: dict, foreign: bool
) -> Graph:
    try:
        return Graph(nodes, edges, dt, metadata)
    except IRError as exc:
        first = exc
    if foreign:
        # Some exporters (Norse's to_nir via nirtorch) write the sample's batch dim of 1
        # into Input and Output shapes. Drop it only when the graph as written is invalid
        # and becomes valid without it, so a genuine leading dim of 1 is never touched.
        batched = {
            n: v.shape[1:] for n, v in nodes.items()
            if isinstance(v, Input) and len(v.shape) > 1 and v.shape[0] == 1
        }
        declared = {n: v.shape for n, v in nodes.items() if isinstance(v, Output)}
        trial = dict(nodes)
        for n, shape in batched.items():
            trial[n] = Input(shape)
        for n in declared:
            trial[n] = Output()
        try:
            unbatched = Graph(trial, edges, dt, metadata) if batched else None
        except IRError:
            unbatched = None
        if unbatched is not None:
            for n, shape in declared.items():
                got = unbatched.shape(n)
                if shape is not None and tuple(shape) not in (got, (1, *got)):
                    break
                trial[n] = Output(None if shape is None else got)
            else:
                return Graph(trial, edges, dt, {**metadata, "dropped_batch_dim": list(batched)})
    raise NIRConversionError(f"the NIR graph is not a valid neuromorph graph: {first}") from None


# ---------------------------------------------------------------------- nodes


def _array(value: Any, what: str) -> np.ndarray:
    if value is None:
        raise NIRConversionError(f"{what} is missing")
    if hasattr(value, "detach"):  # torch tensors, as Norse's and snnTorch's exporters leave them
        value = value.detach().cpu().numpy()
    try:
        return np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise NIRConversionError(f"{what} is not numeric") from None


def _restore(arr: np.ndarray, shape: Any) -> np.ndarray:
    """Undo the exporter's broadcast: the original (e.g. scalar) parameter, if the full
    array still is exactly its broadcast (another tool may have edited it)."""
    if shape is None or tuple(shape) == arr.shape or len(shape) > arr.ndim:
        return arr
    target = tuple(int(s) for s in shape)
    x = arr[(0,) * (arr.ndim - len(target))]
    x = x[tuple(slice(0, 1) if t == 1 else slice(None) for t in target)]
    if x.shape == target and np.array_equal(np.broadcast_to(x, arr.shape), arr):
        return x
    return arr


def _regrouped(weight: np.ndarray, groups: int) -> tuple[np.ndarray, int]:
    """Undo the exporter's dense form of a grouped conv, unless another tool filled in
    weights outside the diagonal blocks (then the dense conv is what the file means)."""
    c_out, c_in = weight.shape[:2]
    if c_out % groups or c_in % groups:
        return weight, 1
    per_out, per_in = c_out // groups, c_in // groups
    blocks = [weight[g * per_out : (g + 1) * per_out, g * per_in : (g + 1) * per_in] for g in range(groups)]
    grouped = np.concatenate(blocks, axis=0)
    if np.count_nonzero(weight) != np.count_nonzero(grouped):
        return weight, 1
    return grouped, groups


def _conv_padding(name: str, node: Any, weight: np.ndarray, n: int) -> Any:
    """NIR allows torch's padding strings; the IR has symmetric integer padding only."""
    padding = node.padding
    if not isinstance(padding, str):
        return padding
    if padding == "valid":
        return 0
    if padding != "same":
        raise NIRConversionError(f"node '{name}': unknown padding '{padding}'")
    stride = as_int_tuple(node.stride, "stride", n, 1)
    dilation = as_int_tuple(node.dilation, "dilation", n, 1)
    if any(s != 1 for s in stride):
        raise NIRConversionError(f"node '{name}': padding='same' needs stride 1, got {stride}")
    total = [d * (k - 1) for d, k in zip(dilation, weight.shape[2:])]
    if any(t % 2 for t in total):
        raise NIRConversionError(
            f"node '{name}': padding='same' with kernel {weight.shape[2:]} and dilation "
            f"{dilation} pads unevenly ({[t // 2 for t in total]} before, "
            f"{[t - t // 2 for t in total]} after); the IR has symmetric padding only"
        )
    return tuple(t // 2 for t in total)


def _convention(
    kind: type[Node], p: dict[str, np.ndarray], convention: Convention, dt: float | None, reset: str
) -> dict[str, np.ndarray]:
    """Parameters as the IR means them (forward Euler of the NIR ODEs, docs/semantics.md):
    the convention's fix for this neuron type (_conventions.CONVENTIONS), else as written."""
    fix = convention.fixes.get(kind)
    if fix is None:
        return p
    assert dt is not None
    p = dict(p)
    fix(p, dt, reset)
    return p


@dataclass
class _Source:
    """One NIR node being imported, with what its rule needs."""

    name: str
    node: Any
    record: dict[str, Any]  # our metadata on the node ({} for a foreign node)
    convention: Convention
    dt: float | None
    taken: dict[str, Any]  # names in use (for extra IR nodes an expansion adds)
    reset: str | None = None  # the caller's reset mode for every spiking neuron (None: ours, or "value")

    def param(self, attr: str, ir_name: str | None = None) -> np.ndarray:
        """A NIR parameter as an array, un-broadcast to the IR parameter's own shape."""
        arr = _array(getattr(self.node, attr, None), f"node '{self.name}': parameter '{attr}'")
        return _restore(arr, self.record.get("shapes", {}).get(ir_name or attr))

    def single(self, ir_node: Node) -> Expansion:
        return [(self.name, ir_node)], self.name, self.name


ImportRule = Callable[[_Source], Expansion]
"""``rule(source) -> (IR nodes, entry name, exit name)``."""


def _input(src: _Source) -> Expansion:
    node = src.node
    shape = node.input_type.get("input") if isinstance(node.input_type, dict) else None
    if shape is None:
        raise NIRConversionError(f"node '{src.name}': Input has no shape")
    return src.single(Input(tuple(int(s) for s in np.asarray(shape).reshape(-1))))


def _output(src: _Source) -> Expansion:
    node = src.node
    if "shape" in src.record:
        out = src.record["shape"]
    else:
        out = node.output_type.get("output") if isinstance(node.output_type, dict) else None
    return src.single(Output(None if out is None else tuple(int(s) for s in np.asarray(out).reshape(-1))))


def _weights(src: _Source) -> Expansion:
    """nir.Affine and nir.Linear; an Affine without a bias is a Linear."""
    rule = src.record.get("plasticity")  # written by _export.plasticity_record: the rule's name and fields
    plasticity = None if rule is None else Plasticity(rule["rule"], rule.get("params", {}))
    if isinstance(src.node, nir.Affine) and src.node.bias is not None:
        return src.single(Affine(src.param("weight"), src.param("bias"), plasticity=plasticity))
    return src.single(Linear(src.param("weight"), plasticity=plasticity))


def _scale(src: _Source) -> Expansion:
    return src.single(Scale(src.param("scale")))


def _conv(src: _Source) -> Expansion:
    """nir.Conv1d and nir.Conv2d."""
    node, record = src.node, src.record
    kind, n = (Conv1d, 1) if isinstance(node, nir.Conv1d) else (Conv2d, 2)
    weight = src.param("weight")
    bias = src.param("bias") if node.bias is not None else np.zeros(weight.shape[0])
    padding = _conv_padding(src.name, node, weight, n)
    groups = int(np.asarray(node.groups))
    if groups == 1 and int(record.get("groups", 1)) > 1:
        weight, groups = _regrouped(weight, int(record["groups"]))
    return src.single(
        kind(weight, bias, stride=node.stride, padding=padding, dilation=node.dilation, groups=groups)
    )


def _sum_pool(src: _Source) -> Expansion:
    node = src.node
    return src.single(SumPool2d(node.kernel_size, node.stride, node.padding))


def _avg_pool(src: _Source) -> Expansion:
    """AvgPool2d becomes SumPool2d -> Scale: torch's AvgPool2d (count_include_pad=True)
    divides by the full window size."""
    name, node = src.name, src.node
    pool = SumPool2d(node.kernel_size, node.stride, node.padding)
    kh, kw = pool.kernel_size
    scale_name = name + ".scale"
    while scale_name in src.taken:
        scale_name += "_"
    return [(name, pool), (scale_name, Scale(1.0 / (kh * kw)))], name, scale_name


def _flatten_node(src: _Source) -> Expansion:
    # NIR indexes start_dim/end_dim without the batch dim (snnTorch's exporter
    # subtracts 1 from torch's dims), as the IR does.
    return src.single(Flatten(int(src.node.start_dim), int(src.node.end_dim)))


def _delay(src: _Source) -> Expansion:
    return src.single(Delay(src.param("delay")))


def _neuron_rule(kind: type[Node], names: tuple[str, ...]) -> ImportRule:
    """The rule for a NIR neuron type read as the IR's ``kind`` with NIR parameters ``names``."""

    def rule(src: _Source) -> Expansion:
        # The reset mode (NIR cannot say it): the caller's, else our metadata's, else "value".
        extra: dict[str, Any] = {}
        if kind.spiking:
            extra["reset"] = src.reset if src.reset is not None else src.record.get("reset", "value")
        if src.record.get("type") == "ALIF" and kind is LIF:  # our ALIF, written as a NIR LIF
            p = {k: src.param(k, "tau_mem" if k == "tau" else k) for k in names}
            p["tau_mem"] = p.pop("tau")
            p["tau_adapt"] = np.array(src.record["tau_adapt"], dtype=np.float64)
            p["beta"] = np.array(src.record["beta"], dtype=np.float64)
            return src.single(ALIF(**p, **extra))
        p = {k: src.param(k) for k in names}
        if not src.record:  # a foreign node: parameters follow the convention's meaning
            p = _convention(kind, p, src.convention, src.dt, extra.get("reset", "value"))
        return src.single(kind(**p, **extra))

    return rule


IMPORT_RULES: dict[type[nir.NIRNode], ImportRule] = {
    nir.Input: _input,
    nir.Output: _output,
    nir.Affine: _weights,
    nir.Linear: _weights,
    nir.Scale: _scale,
    nir.Conv1d: _conv,
    nir.Conv2d: _conv,
    nir.SumPool2d: _sum_pool,
    nir.AvgPool2d: _avg_pool,
    nir.Flatten: _flatten_node,
    nir.Delay: _delay,
    nir.IF: _neuron_rule(IF, ("r", "v_threshold", "v_reset")),
    nir.LIF: _neuron_rule(LIF, ("tau", "r", "v_leak", "v_threshold", "v_reset")),
    nir.CubaLIF: _neuron_rule(
        CubaLIF, ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in")
    ),
    nir.LI: _neuron_rule(LI, ("tau", "r", "v_leak")),
}
"""What each NIR node type is read as, keyed by NIR type (not an IR table, so not
neuromorph.rules). No key is a subclass of another (nir 1.0.8), so the lookup, which
takes the first key on the node's MRO, resolves as the isinstance chain did. Identity
nodes and subgraphs never get here: _flatten bypasses and flattens them."""


def import_rule(node: Any, name: str) -> ImportRule:
    """The rule for a NIR node; NIRConversionError naming the node for a type we lack."""
    for cls in type(node).__mro__:
        rule = IMPORT_RULES.get(cls)
        if rule is not None:
            return rule
    known = ", ".join(t.__name__ for t in IMPORT_RULES)
    raise NIRConversionError(
        f"node '{name}': NIR node type {type(node).__name__} is not supported (neuromorph "
        f"imports {known}, Identity and subgraphs)"
    )


def _import_node(
    name: str, node: Any, convention: Convention, dt: float | None, taken: dict[str, Any],
    reset: str | None = None,
) -> Expansion:
    """IR node(s) for one NIR node (IMPORT_RULES); AvgPool2d becomes SumPool2d -> Scale.
    IRError (invalid parameters) is turned into NIRConversionError by the caller."""
    if node is None:
        raise NIRConversionError(
            f"node '{name}': the NIR graph holds None here (the exporting tool could not "
            "convert this layer)"
        )
    record = decode_meta(getattr(node, "metadata", None), f"node '{name}'") or {}
    rule = import_rule(node, name)
    return rule(_Source(name, node, record, convention, dt, taken, reset))
