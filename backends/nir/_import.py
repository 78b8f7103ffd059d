"""nir.NIRGraph -> IR graph: flatten subgraphs, fold our delay nodes, apply a convention."""
from __future__ import annotations

import math
import numbers
from typing import Any

import nir
import numpy as np
from nir.ir.graph import Identity

from ...errors import IRError, NIRConversionError
from ...ir import (
    ALIF, IF, LI, LIF, Affine, Conv1d, Conv2d, CubaLIF, Delay, Edge, Flatten, Graph, Input,
    Linear, Node, Output, Plasticity, Scale, SumPool2d,
)
from ...ir.nodes import as_int_tuple
from ._common import recurrence_edges, decode_meta, one_line

CONVENTIONS = ("nir", "snntorch", "norse")
DEFAULT_DT = {"nir": 1e-4, "snntorch": 1e-4, "norse": 1e-3}
"""dt (s) when neither the caller nor our metadata gives one: snnTorch's export_to_nir
writes its taus for dt = 1e-4; Norse's to_nir and its neurons default to 1e-3."""

Expansion = tuple[list[tuple[str, Node]], str, str]  # IR nodes, entry name, exit name


def import_graph(g: Any, dt: float | None, convention: str) -> Graph:
    if convention not in CONVENTIONS:
        raise NIRConversionError(
            f"unknown convention '{convention}' (known: {', '.join(CONVENTIONS)})"
        )
    if not isinstance(g, nir.NIRGraph):
        raise NIRConversionError(f"expected a nir.NIRGraph, got {type(g).__name__}")
    if dt is not None and (
        isinstance(dt, bool) or not isinstance(dt, numbers.Real) or not math.isfinite(dt) or dt <= 0
    ):
        raise NIRConversionError(f"dt must be a positive number of seconds, got {dt!r}")
    record = decode_meta(g.metadata, "NIR graph")
    if record is not None and convention == "norse":
        raise NIRConversionError(
            "this NIR graph was written by neuromorph: its parameters are already in NIR's "
            "convention, so convention='norse' does not apply (use 'nir')"
        )
    if dt is not None:
        step: float | None = float(dt)
    elif record is not None:
        step = record.get("dt")  # the graph's own dt, None included
    else:
        step = DEFAULT_DT[convention]

    leaves, pairs = _flatten(g)
    folded = _fold_edge_delays(leaves, pairs)

    nodes: dict[str, Node] = {}
    entry: dict[str, str] = {}
    exit_: dict[str, str] = {}
    inner: list[tuple[str, str]] = []
    for name, node in leaves.items():
        try:
            made, entry[name], exit_[name] = _import_node(name, node, convention, step, leaves)
        except (ValueError, TypeError, KeyError) as exc:  # IRError is a ValueError
            raise NIRConversionError(f"node '{name}': {exc}") from None
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
        edges = [Edge(s, t, folded.get((s, t), int((s, t) in back))) for s, t in ir_pairs]

    if record is not None:
        order = record.get("nodes", [])
        if sorted(order) == sorted(nodes):  # nir.read sorts nodes by name; restore ours
            nodes = {n: nodes[n] for n in order}
        return _build(nodes, edges, step, dict(record.get("metadata", {})), foreign=False)
    return _build(nodes, edges, step, {"imported_from": "nir", "convention": convention}, foreign=True)


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
    kind: type[Node], p: dict[str, np.ndarray], convention: str, dt: float | None
) -> dict[str, np.ndarray]:
    """Parameters as the IR means them (forward Euler of the NIR ODEs, docs/semantics.md).

    "nir"/"snntorch": as written. "norse": what Norse 1.1.0's to_nir writes, corrected:
    it writes tau = dt / tau_inv = tau * dt (norse#411); its CuBa LIF adds the input to
    the current unscaled (i += x), which is w_in = tau_syn / dt here, but it writes
    w_in = 1; its IAF adds the input to v unscaled (v += x), which is r = 1 / dt here.
    """
    if convention != "norse":
        return p
    assert dt is not None
    p = dict(p)
    if kind in (LIF, LI):
        p["tau"] = p["tau"] / dt
    elif kind is CubaLIF:
        p["tau_mem"] = p["tau_mem"] / dt
        p["tau_syn"] = p["tau_syn"] / dt
        p["w_in"] = p["w_in"] * p["tau_syn"] / dt
    elif kind is IF:
        p["r"] = p["r"] / dt
    return p


_NEURONS: dict[type, tuple[type[Node], tuple[str, ...]]] = {
    nir.IF: (IF, ("r", "v_threshold", "v_reset")),
    nir.LIF: (LIF, ("tau", "r", "v_leak", "v_threshold", "v_reset")),
    nir.CubaLIF: (CubaLIF, ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in")),
    nir.LI: (LI, ("tau", "r", "v_leak")),
}


def _import_node(
    name: str, node: Any, convention: str, dt: float | None, taken: dict[str, Any]
) -> Expansion:
    """IR node(s) for one NIR node; AvgPool2d becomes SumPool2d -> Scale.
    IRError (invalid parameters) is turned into NIRConversionError by the caller."""
    if node is None:
        raise NIRConversionError(
            f"node '{name}': the NIR graph holds None here (the exporting tool could not "
            "convert this layer)"
        )
    record = decode_meta(getattr(node, "metadata", None), f"node '{name}'") or {}
    shapes = record.get("shapes", {})

    def param(attr: str, ir_name: str | None = None) -> np.ndarray:
        arr = _array(getattr(node, attr, None), f"node '{name}': parameter '{attr}'")
        return _restore(arr, shapes.get(ir_name or attr))

    def single(ir_node: Node) -> Expansion:
        return [(name, ir_node)], name, name

    if isinstance(node, nir.Input):
        shape = node.input_type.get("input") if isinstance(node.input_type, dict) else None
        if shape is None:
            raise NIRConversionError(f"node '{name}': Input has no shape")
        return single(Input(tuple(int(s) for s in np.asarray(shape).reshape(-1))))
    if isinstance(node, nir.Output):
        if "shape" in record:
            out = record["shape"]
        else:
            out = node.output_type.get("output") if isinstance(node.output_type, dict) else None
        return single(Output(None if out is None else tuple(int(s) for s in np.asarray(out).reshape(-1))))
    if isinstance(node, (nir.Affine, nir.Linear)):
        rule = record.get("plasticity")
        plasticity = None if rule is None else Plasticity(rule["rule"], rule.get("params", {}))
        if isinstance(node, nir.Affine) and node.bias is not None:
            return single(Affine(param("weight"), param("bias"), plasticity=plasticity))
        return single(Linear(param("weight"), plasticity=plasticity))
    if isinstance(node, nir.Scale):
        return single(Scale(param("scale")))
    if isinstance(node, (nir.Conv1d, nir.Conv2d)):
        kind, n = (Conv1d, 1) if isinstance(node, nir.Conv1d) else (Conv2d, 2)
        weight = param("weight")
        bias = param("bias") if node.bias is not None else np.zeros(weight.shape[0])
        padding = _conv_padding(name, node, weight, n)
        groups = int(np.asarray(node.groups))
        if groups == 1 and int(record.get("groups", 1)) > 1:
            weight, groups = _regrouped(weight, int(record["groups"]))
        return single(
            kind(weight, bias, stride=node.stride, padding=padding, dilation=node.dilation, groups=groups)
        )
    if isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
        pool = SumPool2d(node.kernel_size, node.stride, node.padding)
        if isinstance(node, nir.SumPool2d):
            return [(name, pool)], name, name
        # torch's AvgPool2d (count_include_pad=True) divides by the full window size.
        kh, kw = pool.kernel_size
        scale_name = name + ".scale"
        while scale_name in taken:
            scale_name += "_"
        return [(name, pool), (scale_name, Scale(1.0 / (kh * kw)))], name, scale_name
    if isinstance(node, nir.Flatten):
        # NIR indexes start_dim/end_dim without the batch dim (snnTorch's exporter
        # subtracts 1 from torch's dims), as the IR does.
        return single(Flatten(int(node.start_dim), int(node.end_dim)))
    if isinstance(node, nir.Delay):
        return single(Delay(param("delay")))
    if type(node) in _NEURONS:
        kind, names = _NEURONS[type(node)]
        if record.get("type") == "ALIF" and kind is LIF:
            p = {k: param(k, "tau_mem" if k == "tau" else k) for k in names}
            p["tau_mem"] = p.pop("tau")
            p["tau_adapt"] = np.array(record["tau_adapt"], dtype=np.float64)
            p["beta"] = np.array(record["beta"], dtype=np.float64)
            return single(ALIF(**p))
        p = {k: param(k) for k in names}
        if not record:  # a foreign node: parameters follow the convention's meaning
            p = _convention(kind, p, convention, dt)
        return single(kind(**p))
    raise NIRConversionError(
        f"node '{name}': NIR node type {type(node).__name__} is not supported (neuromorph "
        "imports Input, Output, Affine, Linear, Scale, Conv1d, Conv2d, SumPool2d, AvgPool2d, "
        "Flatten, Delay, IF, LIF, CubaLIF, LI, Identity and subgraphs)"
    )
