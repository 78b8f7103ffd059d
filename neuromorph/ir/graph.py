"""The IR graph: named nodes plus edges, validated and shape-inferred at construction.

Edges carry an integer synaptic delay in time steps (default 0: the target sees the
source's output of the same step). Several edges into one node are summed. Cycles are
allowed as long as every cycle has at least one edge with delay >= 1; that is how
recurrence is written (``lif -> w_rec -> lif`` with the ``lif -> w_rec`` edge delayed by
one step). The exact discrete semantics are in docs/semantics.md.
"""
from __future__ import annotations

import heapq
import math
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, NamedTuple

import numpy as np

from ..errors import IRError
from .nodes import MAX_ELEMENTS, Input, Node, Output, Shape
from .plasticity import check_plasticity_wiring, third_factor_streams

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")  # the whole name: re.fullmatch
NAME_RULE = "letters, digits, '_', '.', '-'; not starting with '.' or '-'"


def check_name(name: object) -> str:
    """A node name, or IRError: letters, digits, '_', '.' and '-', not starting with '.'
    or '-' (so no control character, not even a trailing newline)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        shown = repr(name) if len(repr(name)) <= 60 else repr(name)[:57] + "..."
        raise IRError(f"invalid node name {shown} ({NAME_RULE})")
    return name


class Edge(NamedTuple):
    source: str
    target: str
    delay: int = 0  # synaptic delay in time steps

    def __str__(self) -> str:
        d = f" (delay {self.delay})" if self.delay else ""
        return f"{self.source} -> {self.target}{d}"


def check_dt(dt: object) -> float:
    """``dt`` as a float, refusing anything but a finite number > 0 (seconds). The one dt
    check: graphs, discretisation, NIR import and the CLI all call it."""
    if isinstance(dt, bool) or not isinstance(dt, (int, float, np.integer, np.floating)):
        raise IRError(f"dt must be a positive number of seconds, got {dt!r}")
    value = float(dt)
    if not math.isfinite(value) or value <= 0:
        raise IRError(f"dt must be a positive number of seconds, got {dt!r}")
    return value


@dataclass(frozen=True, eq=False, repr=False)
class Graph:
    """A spiking network: ``nodes`` by name, ``edges`` between them.

    ``dt`` (seconds) is the time step the model was made for (for instance an imported
    snnTorch model's 1e-4 s), used by backends unless told otherwise; ``None`` means
    ``neuromorph.discretize.DEFAULT_DT`` (1 ms) everywhere. ``metadata`` is free-form JSON-able data (names, provenance).
    """

    nodes: Mapping[str, Node]
    edges: tuple[Edge, ...]
    dt: float | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", dict(self.nodes))
        object.__setattr__(self, "edges", tuple(_as_edge(e) for e in self.edges))
        object.__setattr__(self, "metadata", dict(self.metadata))
        if self.dt is not None:
            object.__setattr__(self, "dt", check_dt(self.dt))
        incoming: dict[str, list[Edge]] = {n: [] for n in self.nodes}
        outgoing: dict[str, list[Edge]] = {n: [] for n in self.nodes}
        for e in self.edges:
            incoming.setdefault(e.target, []).append(e)
            outgoing.setdefault(e.source, []).append(e)
        object.__setattr__(self, "_in", incoming)
        object.__setattr__(self, "_out", outgoing)
        self._validate_structure()
        object.__setattr__(self, "_order", self._zero_delay_order())
        object.__setattr__(self, "_shapes", self._infer_shapes())
        check_plasticity_wiring(self)

    # ------------------------------------------------------------------ queries

    @property
    def inputs(self) -> list[str]:
        return [n for n, node in self.nodes.items() if isinstance(node, Input)]

    @property
    def outputs(self) -> list[str]:
        return [n for n, node in self.nodes.items() if isinstance(node, Output)]

    def shape(self, name: str) -> Shape:
        """Output shape of a node (for neurons: the population's shape)."""
        return self._shapes[name]  # type: ignore[attr-defined]

    def input_shape(self, name: str) -> Shape | None:
        incoming = self.incoming(name)
        return self.shape(incoming[0].source) if incoming else None

    def incoming(self, name: str) -> list[Edge]:
        """Edges into ``name``, in edge order."""
        return list(self._in.get(name, ()))  # type: ignore[attr-defined]

    def outgoing(self, name: str) -> list[Edge]:
        """Edges out of ``name``, in edge order."""
        return list(self._out.get(name, ()))  # type: ignore[attr-defined]

    def order(self) -> list[str]:
        """Evaluation order within one time step (topological over delay-0 edges)."""
        return list(self._order)  # type: ignore[attr-defined]

    def cycles(self) -> list[list[str]]:
        """Strongly connected components that contain a cycle (recurrent loops)."""
        return _cycles(self.nodes, self.edges)

    def parameter_count(self) -> int:
        return sum(node.parameter_count() for node in self.nodes.values())

    def replace_nodes(self, **new_nodes: Node) -> "Graph":
        """A copy with some nodes replaced (e.g. trained weights); re-validated."""
        unknown = set(new_nodes) - set(self.nodes)
        if unknown:
            raise IRError(f"cannot replace unknown node(s): {', '.join(sorted(unknown))}")
        nodes = {n: new_nodes.get(n, node) for n, node in self.nodes.items()}
        return Graph(nodes, self.edges, self.dt, self.metadata)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Graph):
            return NotImplemented
        return (
            list(self.nodes) == list(other.nodes)
            and all(self.nodes[n] == other.nodes[n] for n in self.nodes)
            and sorted(self.edges) == sorted(other.edges)
            and self.dt == other.dt
            and self.metadata == other.metadata
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        lines = [f"Graph(dt={self.dt}, {len(self.nodes)} nodes, {len(self.edges)} edges)"]
        for name, node in self.nodes.items():
            lines.append(f"  {name}: {node!r} -> {self.shape(name)}")
        for e in self.edges:
            lines.append(f"  {e}")
        return "\n".join(lines)

    # ------------------------------------------------------------------ validation

    def _validate_structure(self) -> None:
        if not self.nodes:
            raise IRError("graph has no nodes")
        for name, node in self.nodes.items():
            check_name(name)
            if not isinstance(node, Node) or type(node) is Node:
                raise IRError(f"unknown node type {type(node).__name__}", node=name)
        seen: set[tuple[str, str]] = set()
        for e in self.edges:
            for end in (e.source, e.target):
                if end not in self.nodes:
                    raise IRError(f"edge {_label(e.source)} -> {_label(e.target)}{_delay_text(e)} "
                                  "refers to a node that does not exist", node=_label(end))
            if (e.source, e.target) in seen:
                raise IRError(f"duplicate edge {e.source} -> {e.target}", node=e.target)
            seen.add((e.source, e.target))
        if not self.inputs:
            raise IRError("graph has no Input node")
        if not self.outputs:
            raise IRError("graph has no Output node")
        streams = third_factor_streams(self.nodes)  # read by a learning rule: used without an edge
        for name, node in self.nodes.items():
            n_in, n_out = len(self._in[name]), len(self._out[name])  # type: ignore[attr-defined]
            if isinstance(node, Input) and n_in:
                raise IRError("an Input node cannot have incoming edges", node=name)
            if isinstance(node, Output) and n_out:
                raise IRError("an Output node cannot have outgoing edges", node=name)
            if not isinstance(node, Input) and not n_in:
                raise IRError("dangling node: no incoming edge", node=name)
            if not isinstance(node, Output) and not n_out and name not in streams:
                raise IRError("dangling node: its output goes nowhere", node=name)

    def _zero_delay_order(self) -> list[str]:
        """Kahn's algorithm over the delay-0 edges: O(nodes + edges)."""
        out: dict[str, list[Edge]] = self._out  # type: ignore[attr-defined]
        indegree = {n: 0 for n in self.nodes}
        for e in self.edges:
            if e.delay == 0:
                indegree[e.target] += 1
        ready = deque(n for n in self.nodes if indegree[n] == 0)
        order: list[str] = []
        while ready:
            n = ready.popleft()
            order.append(n)
            for e in out[n]:
                if e.delay == 0:
                    indegree[e.target] -= 1
                    if indegree[e.target] == 0:
                        ready.append(e.target)
        if len(order) != len(self.nodes):
            placed = set(order)
            stuck = [n for n in self.nodes if n not in placed]
            zero = tuple(e for e in self.edges if e.delay == 0)
            loop = _cycles(stuck, zero, restrict=set(stuck))[0]
            raise IRError(
                f"cycle with no delay: {' -> '.join(loop + [loop[0]])}; "
                "give one of its edges a delay of at least 1 step",
                node=loop[0],
            )
        return order

    def _infer_shapes(self) -> dict[str, Shape]:
        """Shapes from the Inputs along the edges, in O((nodes + edges) log nodes).

        The result is that of sweeping the evaluation order until nothing changes (a node
        takes the shape its first incoming edge, in edge order, with a known source gives
        it; delayed edges may come from later in the order), computed without repeating
        the sweeps: a node is visited once, at the (sweep, position) where the sweep
        would first find one of its sources known.
        """
        incoming: dict[str, list[Edge]] = self._in  # type: ignore[attr-defined]
        out: dict[str, list[Edge]] = self._out  # type: ignore[attr-defined]
        position = {n: i for i, n in enumerate(self._order)}  # type: ignore[attr-defined]
        shapes: dict[str, Shape] = {}
        queue = [(0, position[n], n) for n, node in self.nodes.items() if isinstance(node, Input)]
        heapq.heapify(queue)
        while queue:
            sweep, pos, name = heapq.heappop(queue)
            if name in shapes:
                continue
            node = self.nodes[name]
            if isinstance(node, Input):
                shapes[name] = self._node_output(name, ())
            else:
                first = next(e for e in incoming[name] if e.source in shapes)
                shapes[name] = self._node_output(name, shapes[first.source])
            for e in out[name]:
                if e.target not in shapes:
                    later = position[e.target] > pos
                    heapq.heappush(queue, (sweep if later else sweep + 1, position[e.target], e.target))
        for name in self.nodes:
            if name not in shapes:
                raise IRError("cannot infer shape: not reachable from any Input", node=name)
        for name in self.nodes:
            sources = {e.source: shapes[e.source] for e in incoming[name]}
            if len(set(sources.values())) > 1:
                desc = ", ".join(f"{s} {shape}" for s, shape in sources.items())
                raise IRError(f"inputs have different shapes: {desc}", node=name)
        return shapes

    def _node_output(self, name: str, input_shape: Shape) -> Shape:
        try:
            shape = tuple(self.nodes[name].output_shape(tuple(input_shape)))
        except IRError as exc:
            if exc.node is None:
                raise IRError(str(exc), node=name) from None
            raise
        if any(s < 1 for s in shape):
            raise IRError(f"output shape {shape} has an empty dimension", node=name)
        if math.prod(shape) > MAX_ELEMENTS:
            raise IRError(f"output shape {shape} has more than {MAX_ELEMENTS} elements", node=name)
        return shape


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _label(name: str) -> str:
    """A node name for a message: as it is if valid, else its (short, one-line) repr."""
    return name if isinstance(name, str) and _NAME.fullmatch(name) else _short(name)


def _delay_text(e: Edge) -> str:
    return f" (delay {e.delay})" if e.delay else ""


def _as_edge(e: Any) -> Edge:
    if isinstance(e, Edge):
        edge = e
    else:
        try:
            if not isinstance(e, (tuple, list)):
                raise TypeError
            edge = Edge(*e)
        except TypeError:
            raise IRError(f"an edge must be (source, target[, delay]), got {_short(e)}") from None
    if not isinstance(edge.source, str) or not isinstance(edge.target, str):
        raise IRError(f"an edge must join two node names, got {_short(tuple(edge))}")
    delay = edge.delay
    if not isinstance(delay, (int, np.integer)) or isinstance(delay, (bool, np.bool_)) or delay < 0:
        raise IRError(f"edge {_label(edge.source)} -> {_label(edge.target)}: delay must be an int "
                      f">= 0 steps, got {_short(delay)}")
    return Edge(str(edge.source), str(edge.target), int(edge.delay))


def _cycles(
    nodes: Iterable[str], edges: Iterable[Edge], restrict: set[str] | None = None
) -> list[list[str]]:
    """Tarjan's SCCs; returns each cyclic component as a loop of node names."""
    names = list(nodes)
    succ: dict[str, list[str]] = {n: [] for n in names}
    for e in edges:
        if e.source in succ and e.target in succ:
            if restrict is None or (e.source in restrict and e.target in restrict):
                succ[e.source].append(e.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    comps: list[list[str]] = []
    # Tarjan's algorithm with an explicit stack of (node, next successor to look at), so
    # a long chain cannot exhaust Python's recursion limit.
    for root in names:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            v, i = work.pop()
            if i == 0:
                index[v] = low[v] = len(index)
                stack.append(v)
                on_stack.add(v)
            successors = succ[v]
            while i < len(successors):
                w = successors[i]
                i += 1
                if w not in index:
                    work.append((v, i))
                    work.append((w, 0))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1 or v in succ[v]:
                        comps.append(_loop_through(comp, succ))
                if work:  # back in the caller: take the child's low link
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[v])
    return comps


def _loop_through(comp: list[str], succ: dict[str, list[str]]) -> list[str]:
    """A shortest loop through the component's first node (by name), for messages."""
    members = set(comp)
    start = min(comp)
    parent: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        v = queue.popleft()
        for w in succ[v]:
            if w == start:
                path = [v]
                while parent[path[-1]] is not None:
                    path.append(parent[path[-1]])  # type: ignore[arg-type]
                return path[::-1]
            if w in members and w not in parent:
                parent[w] = v
                queue.append(w)
    return sorted(comp)  # unreachable for a true cycle
