"""Plasticity: the local learning rules an Affine/Linear connection may carry.

One frozen, validated record per rule, with typed fields (no parameter dicts). Time
constants are in seconds like every IR parameter; ``neuromorph.discretize`` turns them
into per-step coefficients. The discrete update of each rule (which trace decays when,
which spikes of a step count, when the weight changes) is written once, in
docs/semantics.md section 6, and executed by ``neuromorph.simulate``.

Every rule shares: ``t_epoch`` (the weights change at the end of every ``t_epoch``-th
step, by the increments summed since the last change, as Loihi's learning epochs),
``w_min``/``w_max`` (optional bounds the weights are clipped to when they change), and
``delay`` (steps of learning latency: the increment computed at the end of step t joins
the pending sum at the end of step t + delay; what a chip whose update needs a step
more than the transmission imposes, e.g. e-prop on Loihi 2 with delay 1).
A three-factor rule names the graph node whose output at each step is its third factor
(``error``, ``reward``): usually an Input carrying a label/error/reward stream.
"""
from __future__ import annotations

import dataclasses
import math
import types
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

import numpy as np

from ..errors import IRError
from .nodes import MAX_ELEMENTS, integral

if TYPE_CHECKING:
    from .graph import Graph

SPIKING_POST = ("IF", "LIF", "CubaLIF", "ALIF")
"""Node types whose spikes a spike-timing rule can read as the postsynaptic activity."""

_KINDS: dict[str, str] = {
    "rate": "a number >= 0",
    "amplitude": "a finite number",
    "tau": "a number > 0 (seconds)",
    "positive": "a number > 0",
    "stream": "the name of a node (its output is the third factor)",
    "matrix": "None or a 2-d array of finite numbers",
    "epoch": f"an int >= 1 (steps, at most {MAX_ELEMENTS})",
    "latency": f"an int >= 0 (steps, at most {MAX_ELEMENTS})",
    "bound": "None or a finite number",
}
"""Field kinds, and what a value of that kind must be (the refusal says it)."""


def _field(kind: str, default: Any = dataclasses.MISSING) -> Any:
    return field(default=default, metadata={"kind": kind})


class _ByName(type):
    """``Plasticity(rule, fields)`` builds the record of that rule by name (what model files
    and NIR metadata store); calling a rule's own class builds it from keywords."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if cls is Plasticity:
            return plasticity_from(*args, **kwargs)
        return super().__call__(*args, **kwargs)


@dataclass(frozen=True, eq=False, repr=False, kw_only=True)
class Plasticity(metaclass=_ByName):
    """Base of the rule records. ``rule`` is the rule's name (``PLASTICITY_RULES``);
    ``post_types`` the node types the rule reads spikes/state from (the one node the
    connection feeds, by a delay-0 edge), empty when it reads none; ``stream_field`` the
    field naming the third-factor stream, if any."""

    t_epoch: int = _field("epoch", 1)
    w_min: float | None = _field("bound", None)
    w_max: float | None = _field("bound", None)
    delay: int = _field("latency", 0)

    rule: ClassVar[str] = ""
    post_types: ClassVar[tuple[str, ...]] = ()
    stream_field: ClassVar[str | None] = None

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, self._checked(f.metadata["kind"], f.name, getattr(self, f.name)))
        if self.w_min is not None and self.w_max is not None and not self.w_min < self.w_max:
            raise IRError(f"plasticity '{self.rule}': w_min must be < w_max, got {self.w_min:g} >= {self.w_max:g}")

    def _checked(self, kind: str, name: str, value: Any) -> Any:
        """``value`` normalised for its kind, or a one-line IRError."""
        if kind in ("bound", "matrix") and value is None:
            return None
        if kind == "stream":
            if isinstance(value, str) and value:
                return value
        elif kind in ("epoch", "latency"):
            n = integral(value)
            if n is not None and (1 if kind == "epoch" else 0) <= n <= MAX_ELEMENTS:
                return n
        elif kind == "matrix":
            arr = _finite_matrix(value)
            if arr is not None:
                return arr
        else:
            x = _finite(value)
            if x is not None and not (kind == "rate" and x < 0) and not (kind in ("tau", "positive") and x <= 0):
                return x
        raise IRError(f"plasticity '{self.rule}': '{name}' must be {_KINDS[kind]}, got {_short(value)}")

    @property
    def third_factor(self) -> str | None:
        """The node whose output is this rule's third factor (None for a two-factor rule)."""
        return getattr(self, self.stream_field) if self.stream_field else None

    @property
    def params(self) -> Mapping[str, Any]:
        """The fields by name, the rule's own first (read-only): what files and metadata
        store, and what ``Plasticity(rule, params)`` takes back."""
        own = [f.name for f in dataclasses.fields(self) if f.name not in _COMMON]
        return types.MappingProxyType({k: getattr(self, k) for k in (*own, *_COMMON)})

    def replace(self, **changes: Any) -> "Plasticity":
        return dataclasses.replace(self, **changes)

    def post_node(self, graph: "Graph", name: str) -> str | None:
        """The population whose spikes/state this rule reads (None if it reads none), or a
        one-line IRError naming the connection. Asked by whatever runs the rule: a graph
        that only carries the rule as data need not be wired to run it."""
        if not self.post_types:
            return None
        out = graph.outgoing(name)
        post = graph.nodes[out[0].target] if len(out) == 1 else None
        if post is None or out[0].delay != 0 or post.type_name not in self.post_types:
            got = ", ".join(f"'{e.target}' ({graph.nodes[e.target].type_name}, delay {e.delay})" for e in out)
            raise IRError(f"plasticity '{self.rule}' reads the population this connection feeds: it needs "
                          f"exactly one outgoing edge, of delay 0, into a node of type "
                          f"{'/'.join(self.post_types)} (got {got})", node=name)
        return out[0].target

    def check_wiring(self, graph: "Graph", name: str) -> None:
        """Refuse (naming the connection ``name``) a third-factor stream that is not a node
        of the graph with the shape the rule needs (checked when the graph is built)."""
        stream = self.third_factor
        if stream is None:
            return
        if stream not in graph.nodes:
            raise IRError(f"plasticity '{self.rule}': its {self.stream_field} stream {_short(stream)} is not a "
                          "node of this graph", node=name)
        n_out = graph.shape(name)[0]
        shape = tuple(graph.shape(stream))
        allowed = self.stream_shapes(n_out)
        if shape not in allowed:
            want = " or ".join(str(s) for s in allowed)
            raise IRError(f"plasticity '{self.rule}': its {self.stream_field} stream '{stream}' has shape "
                          f"{shape}, expected {want}", node=name)

    def stream_shapes(self, n_out: int) -> list[tuple[int, ...]]:
        """Shapes the third-factor stream may have for a connection with ``n_out`` outputs."""
        return [(n_out,)]

    def __eq__(self, other: object) -> bool:
        if type(self) is not type(other):
            return NotImplemented
        mine, theirs = self.params, other.params  # type: ignore[attr-defined]
        return all(_same(mine[k], theirs[k]) for k in mine)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        parts = [f"{k}={_shown(v)}" for k, v in self.params.items()
                 if v is not None and not (k == "t_epoch" and v == 1) and not (k == "delay" and v == 0)]
        return f"{type(self).__name__}({', '.join(parts)})"


_COMMON = ("t_epoch", "w_min", "w_max", "delay")


def _short(value: Any, limit: int = 60) -> str:
    """``repr(value)`` on one line (an array's repr spans several), cut at ``limit``."""
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _finite(value: Any) -> float | None:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    try:
        x = float(value)
    except OverflowError:
        return None
    return x if math.isfinite(x) else None


def _finite_matrix(value: Any) -> np.ndarray | None:
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        return None
    if arr.ndim != 2 or arr.size == 0 or not np.all(np.isfinite(arr)):
        return None
    arr.setflags(write=False)
    return arr


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape == b.shape and bool(
            np.array_equal(a, b))
    return bool(a == b) and type(a) is type(b)


def _shown(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"array{list(value.shape)}"
    return f"{value!r}"


# ------------------------------------------------------------------------ the rules


@dataclass(frozen=True, eq=False, repr=False, kw_only=True)
class STDP(Plasticity):
    """Pair-based additive STDP: a presynaptic trace (``tau_plus``) read at each
    postsynaptic spike potentiates by ``lr*a_plus``; a postsynaptic trace (``tau_minus``)
    read at each presynaptic spike depresses by ``lr*a_minus``. ``lr``, ``a_plus``,
    ``a_minus`` are dimensionless (weight change per spike pairing), as in Lava's
    ``STDPLoihi``. Reads the spikes of the population the connection feeds."""

    lr: float = _field("rate", 1.0)
    a_plus: float = _field("amplitude", 0.01)
    a_minus: float = _field("amplitude", 0.01)
    tau_plus: float = _field("tau", 0.02)
    tau_minus: float = _field("tau", 0.02)
    rule: ClassVar[str] = "stdp"
    post_types: ClassVar[tuple[str, ...]] = SPIKING_POST


@dataclass(frozen=True, eq=False, repr=False, kw_only=True)
class RewardSTDP(Plasticity):
    """Reward-modulated STDP: the STDP pairings of :class:`STDP` (amplitudes ``a_plus``,
    ``a_minus``) accumulate in a per-synapse eligibility that decays with ``tau_e``; the
    weights move at rate ``lr`` (1/s) times the ``reward`` stream times the eligibility.
    ``reward`` names a node of shape (1,) (one reward for all) or (n_out,)."""

    reward: str = _field("stream")
    lr: float = _field("rate")
    a_plus: float = _field("amplitude", 0.01)
    a_minus: float = _field("amplitude", 0.01)
    tau_plus: float = _field("tau", 0.02)
    tau_minus: float = _field("tau", 0.02)
    tau_e: float = _field("tau", 1.0)
    rule: ClassVar[str] = "reward_stdp"
    post_types: ClassVar[tuple[str, ...]] = SPIKING_POST
    stream_field: ClassVar[str | None] = "reward"

    def stream_shapes(self, n_out: int) -> list[tuple[int, ...]]:
        return [(1,), (n_out,)] if n_out != 1 else [(1,)]


@dataclass(frozen=True, eq=False, repr=False, kw_only=True)
class ThreeFactor(Plasticity):
    """Error-modulated three-factor rule, the delta rule for a readout:
    ``dW_ji/dt = lr * err_j * xbar_i``, ``xbar`` the connection's input filtered with
    ``tau_pre``, ``err`` the ``error`` stream (target minus output, shape (n_out,)),
    ``lr`` in 1/s. Reads nothing of the postsynaptic population."""

    error: str = _field("stream")
    lr: float = _field("rate")
    tau_pre: float = _field("tau")
    rule: ClassVar[str] = "three_factor"
    stream_field: ClassVar[str | None] = "error"


@dataclass(frozen=True, eq=False, repr=False, kw_only=True)
class EProp(Plasticity):
    """On-chip (online) e-prop for a LIF population (docs/eprop.md section 3, LIF):
    per-synapse eligibility from the LIF's own update and its pseudo-derivative
    ``gamma*max(0, 1 - |u - v_threshold|)``, filtered with the readout's ``tau_out``;
    learning signal ``L = feedback @ error`` (``feedback`` [n_out, n_err], fixed; None:
    the error stream has shape (n_out,) and is used as it is); ``lr`` in 1/s. ``error``
    is target minus output, like :class:`ThreeFactor`'s."""

    error: str = _field("stream")
    lr: float = _field("rate")
    tau_out: float = _field("tau")
    feedback: np.ndarray | None = _field("matrix", None)
    gamma: float = _field("positive", 0.3)
    rule: ClassVar[str] = "eprop"
    post_types: ClassVar[tuple[str, ...]] = ("LIF",)
    stream_field: ClassVar[str | None] = "error"

    def stream_shapes(self, n_out: int) -> list[tuple[int, ...]]:
        return [(n_out,)] if self.feedback is None else [(self.feedback.shape[1],)]

    def check_wiring(self, graph: "Graph", name: str) -> None:
        n_out = graph.shape(name)[0]
        if self.feedback is not None and self.feedback.shape[0] != n_out:
            raise IRError(f"plasticity 'eprop': feedback has shape {self.feedback.shape}, expected "
                          f"({n_out}, n_error) for {n_out} neurons", node=name)
        super().check_wiring(graph, name)


PLASTICITY_TYPES: dict[str, type[Plasticity]] = {cls.rule: cls for cls in (STDP, RewardSTDP, ThreeFactor, EProp)}
"""Rule name -> its record type."""

PLASTICITY_RULES: tuple[str, ...] = tuple(PLASTICITY_TYPES)


def plasticity_from(rule: Any, params: Mapping[str, Any] | None = None) -> Plasticity:
    """The record of the rule named ``rule`` with the fields ``params`` (the form model
    files and NIR metadata store); an unknown rule or field, or a missing one, is refused."""
    cls = PLASTICITY_TYPES.get(rule) if isinstance(rule, str) else None
    if cls is None:
        raise IRError(f"unknown plasticity rule {_short(rule)} (known: {', '.join(PLASTICITY_RULES)})")
    params = {} if params is None else params
    if not isinstance(params, Mapping):
        raise IRError(f"plasticity '{rule}': params must be a mapping name -> value, got {_short(params)}")
    fields = {f.name: f for f in sorted(dataclasses.fields(cls), key=lambda f: f.name in _COMMON)}
    for key in params:
        if key not in fields:
            raise IRError(f"plasticity '{rule}' has no parameter {_short(key)} (it has: {', '.join(fields)})")
    for key, f in fields.items():
        if key not in params and f.default is dataclasses.MISSING:
            raise IRError(f"plasticity '{rule}' needs '{key}' ({_KINDS[f.metadata['kind']]})")
    return cls(**params)


def check_plasticity_wiring(graph: "Graph") -> None:
    """Every plastic connection's third-factor stream is a node of the right shape
    (Plasticity.check_wiring)."""
    for name, node in graph.nodes.items():
        rule = getattr(node, "plasticity", None)
        if rule is not None:
            rule.check_wiring(graph, name)


def third_factor_streams(nodes: Mapping[str, Any]) -> set[str]:
    """Nodes read as a third factor: such a node needs no outgoing edge."""
    return {p.third_factor for p in (getattr(n, "plasticity", None) for n in nodes.values())
            if p is not None and p.third_factor is not None}


def learning_ports(graph: "Graph") -> tuple[list[str], list[str]]:
    """The graph's label Inputs: those that reach only Scale and Output nodes, at least one
    of which the network feeds as well (a label stream combined with the readout into an
    error), or that are a third factor themselves (a reward stream); and its error
    Outputs: those such an Input reaches, and third-factor Outputs. These are the ports
    of on-chip learning, which a task's data does not fill and its score does not read;
    a frozen copy of the graph (:func:`frozen`) has the same."""
    from .nodes import Input, Output, Scale

    streams = third_factor_streams(graph.nodes)
    labels, errors = [], {n for n in graph.outputs if n in streams}
    for name, node in graph.nodes.items():
        if not isinstance(node, Input):
            continue
        todo, seen, reached = [name], set(), set()
        while todo:
            n = todo.pop()
            if n in seen:
                continue
            seen.add(n)
            if isinstance(graph.nodes[n], Output):
                reached.add(n)
            elif n != name and not isinstance(graph.nodes[n], Scale):
                break
            todo += [e.target for e in graph.outgoing(n)]
        else:
            # an error mixes the label with the network's own output: an Output fed by
            # this Input alone is a plain pass-through, not learning's
            mixed = {o for o in reached if any(e.source not in seen for e in graph.incoming(o))}
            if mixed or name in streams:
                labels.append(name)
                errors |= mixed
    return labels, [n for n in graph.outputs if n in errors]


def frozen(graph: "Graph") -> "Graph":
    """``graph`` with every rule removed: the network as it computes with its current
    weights (what a run without learning executes)."""
    fixed = {n: dataclasses.replace(node, plasticity=None) for n, node in graph.nodes.items()
             if getattr(node, "plasticity", None) is not None}
    return graph.replace_nodes(**fixed) if fixed else graph
