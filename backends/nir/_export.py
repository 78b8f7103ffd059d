"""IR graph -> nir.NIRGraph. What NIR cannot say travels in our metadata (see _common)."""
from __future__ import annotations

from typing import Any, Callable

import nir
import numpy as np

from ...errors import IRError, NIRConversionError
from ...ir import (
    ALIF, IF, LI, LIF, Affine, Conv1d, Conv2d, CubaLIF, Delay, Flatten, Graph, Input, Linear,
    Node, Output, Plasticity, Scale, SumPool2d,
)
from ...rules import Refusal, rule_for
from ._common import FORMAT, recurrence_edges, encode_meta, one_line


def export_graph(graph: Graph) -> tuple[nir.NIRGraph, list[str]]:
    """The NIR graph for ``graph`` and the warnings about what other tools will not see."""
    warnings: list[str] = []
    nodes: dict[str, nir.NIRNode] = {
        name: _export_node(name, node, graph, warnings) for name, node in graph.nodes.items()
    }
    pairs = [(e.source, e.target) for e in graph.edges]
    # Delay nodes inserted below sit on a single path (source -> delay -> target), so they
    # do not change where a DFS enters each loop: decide on the IR edges.
    back = recurrence_edges(pairs, graph.inputs)
    edges: list[tuple[str, str]] = []
    for e in graph.edges:
        is_back = (e.source, e.target) in back  # carries its loop's implicit step
        extra = e.delay - int(is_back)  # steps beyond what NIR's recurrence rule implies
        if extra < 0:
            warnings.append(
                f"edge {e.source} -> {e.target} has delay 0 but is where NIR readers put a loop's "
                "one-step delay (the edge leaving the loop's entry node); other tools will see "
                "one extra step here (neuromorph restores it exactly)"
            )
        if extra <= 0:
            edges.append((e.source, e.target))
            continue
        if graph.dt is None:
            raise NIRConversionError(
                f"edge {e.source} -> {e.target} has a delay of {e.delay} steps; NIR writes it "
                "as a Delay node in seconds, so the graph needs a dt: set Graph(..., dt=...)"
            )
        name = _unique(f"{e.source}.delay_to.{e.target}", nodes)
        nodes[name] = nir.Delay(
            delay=np.full(graph.shape(e.source), extra * graph.dt),
            metadata=encode_meta({"edge_delay": e.delay}),
        )
        edges += [(e.source, name), (name, e.target)]
    record = {
        "format": FORMAT,
        "dt": graph.dt,
        "metadata": dict(graph.metadata),
        "nodes": list(graph.nodes),
        "edges": [[e.source, e.target, e.delay] for e in graph.edges],
    }
    try:
        meta = encode_meta(record)
    except (TypeError, ValueError) as exc:
        raise NIRConversionError(f"graph metadata is not JSON-serialisable ({exc})") from None
    try:
        # type_check=True runs nir's own shape inference and check, as nir.read will.
        out = nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, type_check=True)
    except Exception as exc:  # nir raises ValueError/AssertionError/TypeError here
        raise NIRConversionError(f"nir rejects the exported graph: {one_line(exc)}") from None
    return out, warnings


def _unique(base: str, taken: dict[str, Any]) -> str:
    name, i = base, 1
    while name in taken:
        name, i = f"{base}_{i}", i + 1
    return name


def _full(arr: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """NIR infers a node's type from its parameter shapes: broadcast to the full shape."""
    return np.array(np.broadcast_to(arr, shape), dtype=np.float64)


def _ungrouped(weight: np.ndarray, groups: int) -> np.ndarray:
    """A grouped conv weight (C_out, C_in/groups, *k) as the equal dense one (C_out, C_in, *k)."""
    c_out, c_group = weight.shape[:2]
    dense = np.zeros((c_out, c_group * groups, *weight.shape[2:]))
    per_group = c_out // groups
    for g in range(groups):
        rows = slice(g * per_group, (g + 1) * per_group)
        dense[rows, g * c_group : (g + 1) * c_group] = weight[rows]
    return dense


def _meta(node: Node) -> dict[str, Any]:
    """Our metadata for a node: the IR parameters' own shapes, so the importer can undo
    the broadcast NIR needs (see _full), and a reset mode other than the default "value"
    (NIR has no reset by subtraction; other tools will reset to v_reset)."""
    meta: dict[str, Any] = {"shapes": {k: list(v.shape) for k, v in node.arrays().items()}}
    if getattr(node, "reset", "value") != "value":
        meta["reset"] = node.reset
    return meta


def _neuron(node: Node, names: dict[str, str], shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """NIR keyword -> broadcast IR parameter, for ``names`` = {nir_name: ir_name}."""
    return {k: _full(getattr(node, v), shape) for k, v in names.items()}


_LIF = {"tau": "tau", "r": "r", "v_leak": "v_leak", "v_threshold": "v_threshold", "v_reset": "v_reset"}

ExportRule = Callable[[str, Any, Graph, list[str]], nir.NIRNode]
"""``rule(name, node, graph, warnings) -> NIR node``; a loss other tools would see is
appended to ``warnings``."""


def _input(name: str, node: Input, graph: Graph, warnings: list[str]) -> nir.NIRNode:
    return nir.Input(input_type=np.array(graph.shape(name)))


def _output(name: str, node: Output, graph: Graph, warnings: list[str]) -> nir.NIRNode:
    meta = {"shape": None if node.shape is None else list(node.shape)}
    return nir.Output(output_type=np.array(graph.shape(name)), metadata=encode_meta(meta))


def plasticity_record(p: Plasticity) -> dict[str, Any]:
    """A rule as JSON for our metadata: its name and fields (arrays as nested lists);
    the importer rebuilds the record with ``Plasticity(rule, params)``."""
    return {"rule": p.rule, "params": {k: v.tolist() if isinstance(v, np.ndarray) else v
                                       for k, v in p.params.items()}}


def _weights(name: str, node: Affine | Linear, graph: Graph, warnings: list[str]) -> nir.NIRNode:
    meta = _meta(node)
    if node.plasticity is not None:
        p = node.plasticity
        meta["plasticity"] = plasticity_record(p)
        warnings.append(
            f"node '{name}': plasticity rule '{p.rule}' has no NIR equivalent; it is "
            "kept in metadata, other tools will treat the weights as fixed"
        )
    if isinstance(node, Affine):
        return nir.Affine(weight=node.weight.copy(), bias=node.bias.copy(), metadata=encode_meta(meta))
    return nir.Linear(weight=node.weight.copy(), metadata=encode_meta(meta))


def _scale(name: str, node: Scale, graph: Graph, warnings: list[str]) -> nir.NIRNode:
    return nir.Scale(scale=_full(node.scale, graph.shape(name)), metadata=encode_meta(_meta(node)))


def _conv(name: str, node: Conv1d | Conv2d, graph: Graph, warnings: list[str]) -> nir.NIRNode:
    in_shape = graph.input_shape(name)
    assert in_shape is not None
    meta = _meta(node)
    # nir 1.0.8 takes a Conv's input channels from weight.shape[1], ignoring groups,
    # so a grouped conv fails its type check: write the equivalent dense
    # (block-diagonal) weight with groups=1 and restore the groups on import.
    weight = _ungrouped(node.weight, node.groups)
    if node.groups > 1:
        meta["groups"] = node.groups
    if isinstance(node, Conv1d):
        return nir.Conv1d(
            input_shape=int(in_shape[1]), weight=weight, stride=node.stride[0],
            padding=node.padding[0], dilation=node.dilation[0], groups=1,
            bias=node.bias.copy(), metadata=encode_meta(meta),
        )
    return nir.Conv2d(
        input_shape=tuple(in_shape[1:]), weight=weight, stride=node.stride,
        padding=node.padding, dilation=node.dilation, groups=1,
        bias=node.bias.copy(), metadata=encode_meta(meta),
    )


def _sum_pool(name: str, node: SumPool2d, graph: Graph, warnings: list[str]) -> nir.NIRNode:
    return nir.SumPool2d(
        kernel_size=np.array(node.kernel_size), stride=np.array(node.stride),
        padding=np.array(node.padding),
    )


def _flatten(name: str, node: Flatten, graph: Graph, warnings: list[str]) -> nir.NIRNode:
    in_shape = graph.input_shape(name)
    assert in_shape is not None
    # Both the IR and NIR index Flatten's dims without the batch dim.
    return nir.Flatten(
        input_type={"input": np.array(in_shape)}, start_dim=node.start_dim, end_dim=node.end_dim
    )


def _delay(name: str, node: Delay, graph: Graph, warnings: list[str]) -> nir.NIRNode:
    return nir.Delay(delay=_full(node.delay, graph.shape(name)), metadata=encode_meta(_meta(node)))


def _if(name: str, node: IF, graph: Graph, warnings: list[str]) -> nir.NIRNode:
    names = {"r": "r", "v_threshold": "v_threshold", "v_reset": "v_reset"}
    params = _neuron(node, names, graph.shape(name))
    return nir.IF(**params, metadata=encode_meta(_meta(node)))


def _lif(name: str, node: LIF, graph: Graph, warnings: list[str]) -> nir.NIRNode:
    return nir.LIF(**_neuron(node, _LIF, graph.shape(name)), metadata=encode_meta(_meta(node)))


def _alif(name: str, node: ALIF, graph: Graph, warnings: list[str]) -> nir.NIRNode:
    meta = _meta(node)
    meta.update(type="ALIF", tau_adapt=node.tau_adapt.tolist(), beta=node.beta.tolist())
    warnings.append(
        f"node '{name}': ALIF (adaptive LIF) has no NIR equivalent; it is written as a "
        "NIR LIF with tau_adapt and beta in metadata, other tools will simulate it as a plain LIF"
    )
    params = _neuron(node, {**_LIF, "tau": "tau_mem"}, graph.shape(name))
    return nir.LIF(**params, metadata=encode_meta(meta))


def _cuba_lif(name: str, node: CubaLIF, graph: Graph, warnings: list[str]) -> nir.NIRNode:
    names = {**_LIF, "tau_syn": "tau_syn", "tau_mem": "tau_mem", "w_in": "w_in"}
    del names["tau"]
    return nir.CubaLIF(**_neuron(node, names, graph.shape(name)), metadata=encode_meta(_meta(node)))


def _li(name: str, node: LI, graph: Graph, warnings: list[str]) -> nir.NIRNode:
    params = _neuron(node, {"tau": "tau", "r": "r", "v_leak": "v_leak"}, graph.shape(name))
    return nir.LI(**params, metadata=encode_meta(_meta(node)))


EXPORT_RULES: dict[type[Node], ExportRule | Refusal] = {
    Input: _input, Output: _output,
    Affine: _weights, Linear: _weights,
    Scale: _scale,
    Conv1d: _conv, Conv2d: _conv,
    SumPool2d: _sum_pool, Flatten: _flatten, Delay: _delay,
    IF: _if, LIF: _lif, ALIF: _alif, CubaLIF: _cuba_lif, LI: _li,
}
"""The NIR node each IR node type is written as (neuromorph.rules): ``rule(name, node,
graph, warnings)``. ALIF has no NIR type: it is a NIR LIF plus metadata."""


def _export_node(name: str, node: Node, graph: Graph, warnings: list[str]) -> nir.NIRNode:
    try:
        rule = rule_for(EXPORT_RULES, node, name, "the NIR exporter")
    except IRError as exc:  # a refusal or a missing rule: a conversion error, naming the node
        raise NIRConversionError(str(exc)) from None
    if getattr(node, "reset", "value") != "value":
        warnings.append(
            f"node '{name}': reset by subtraction has no NIR equivalent; it is kept in metadata "
            "(neuromorph restores it), other tools will reset to v_reset"
        )
    return rule(name, node, graph, warnings)
