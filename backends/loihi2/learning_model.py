"""On-chip learning for the Loihi 2 target: what a plastic connection becomes, and its
numpy reference (docs/onchip-learning.md).

A connection that carries ``ThreeFactor`` (the delta rule, docs/semantics.md section 6)
is lowered to its own synapse, Lava's ``LearningDense`` with a ``Loihi3FLearningRule``
``dw = u0 * x1 * y2``: ``x1`` is the synapse's presynaptic trace (decay ``1 - dx``,
impulse 1 per input spike), ``y2`` the third factor that the population the connection
feeds (the "post") sends every chip step. The post computes it on the chip::

    y2(t) = gain * rate * (a * label(t - d) + c * v(t - 1))

``label`` an input stream (the Input the rule names, or the label Input of the error
Output), ``v`` the post's own membrane (an LI readout), ``a``/``c`` the Scale factors on
the error's edges, ``gain`` the post's input gain (folded into the chip's weights, so
the chip's weights are ``gain * W``), ``rate = dt * lr``.

Timing. A synapse delivers at chip step ``c + 1`` what it receives at ``c``, so the post
computes its step ``t - 1`` at the chip step where the synapse receives the input of IR
step ``t``. That is the step where the engine must pair the trace ``xbar(t)`` with
``err(t)``, and the post can then add only ``v(t - 1)``: the error must read the readout
through a delay of one step (an IR edge of delay 1 on the path readout -> error). A label
stream is played by the host at any alignment, so its delay ``d`` is free. With that
wiring the chip computes exactly section 6 of docs/semantics.md (t_epoch = 1): the
update of step ``t`` is applied after the synapse transmitted the input of step ``t``
and before it transmits that of step ``t + 1``.

Samples. In a learning run the weights carry from one sample to the next (samples are
learnt one after another, as on a chip that keeps learning); the traces start at 0 in
every sample, like the neuron state (the synapse's trace is zeroed at the first step of
each sample window: lava/learning.py). So a run on N samples equals N successive IR
runs, each starting from the weights the previous one ended with.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from neuromorph.discretize import discretize_plasticity
from neuromorph.errors import IRError
from neuromorph.ir import LI, Graph, Input, Neuron, Output, Scale, ThreeFactor

RULES = ("three_factor",)
"""Plasticity rules the Loihi 2 target runs on the chip."""


@dataclass(frozen=True, eq=False)
class LearningSpec:
    """A plastic connection on the chip (module docstring). Arrays are per post neuron."""

    name: str  # the IR connection node
    source: str  # netlist source (input port or population)
    target: str  # the post population
    keep: float  # the presynaptic trace's decay per step, 1 - dt/tau_pre
    rate: float  # dt * lr
    gain: np.ndarray  # the post's input gain: chip weights = gain[:, None] * W
    label: str | None  # the input port whose stream enters the error
    label_delay: int  # err(t) reads label(t - label_delay)
    label_gain: np.ndarray  # a
    v_gain: np.ndarray  # c: err(t) reads c * v(t - 1) of the post
    error_output: str | None  # the IR Output node that is the error stream, if any

    @property
    def y2_label(self) -> np.ndarray:
        """Factor of the label in the y2 the post sends (gain * rate * a)."""
        return self.gain * self.rate * self.label_gain

    @property
    def y2_v(self) -> np.ndarray:
        """Factor of the post's v(t - 1) in the y2 it sends (gain * rate * c)."""
        return self.gain * self.rate * self.v_gain


def plastic_nodes(graph: Graph) -> list[str]:
    """The connections of ``graph`` that carry a learning rule, in file order."""
    return [n for n, node in graph.nodes.items() if getattr(node, "plasticity", None) is not None]


def plastic_wiring(graph: Graph, name: str) -> tuple[str, str, int]:
    """(source, post, IR delay) of plastic connection ``name``: it must read one Input
    or population and feed one population, so that it stays a synapse of its own (it is
    never composed with another linear node); otherwise a one-line IRError."""
    rule = graph.nodes[name].plasticity  # type: ignore[attr-defined]
    if rule.rule not in RULES:
        raise IRError(f"plasticity is carried in the IR but the Loihi 2 lowering cannot run rule "
                      f"'{rule.rule}' on the chip (it runs: {', '.join(RULES)})", node=name)
    into, out = graph.incoming(name), graph.outgoing(name)
    src = graph.nodes[into[0].source] if len(into) == 1 else None
    post = graph.nodes[out[0].target] if len(out) == 1 else None
    if not isinstance(src, (Input, Neuron)) or not isinstance(post, Neuron):
        raise IRError("a plastic connection is its own synapse on Loihi 2 (the learning engine "
                      "updates one weight matrix): it must read exactly one Input or neuron "
                      "population and feed exactly one neuron population, with no other linear "
                      "node composed with it", node=name)
    return into[0].source, out[0].target, into[0].delay + out[0].delay


def _broadcast(value: Any, n: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(value, dtype=np.float64), (n,)).astype(np.float64)


def _terms(graph: Graph, stream: str, name: str) -> list[tuple[str, int, np.ndarray]]:
    """The error Output's input as (Input or population, delay, factor) terms, following
    each edge back through Scale nodes."""
    n = int(np.prod(graph.shape(stream)))
    terms = []
    for edge in graph.incoming(stream):
        node, delay, factor = edge.source, edge.delay, np.ones(n)
        while isinstance(graph.nodes[node], Scale):
            into = graph.incoming(node)
            if len(into) != 1:
                raise IRError(f"its error '{stream}' is computed through Scale '{node}', which has "
                              f"{len(into)} inputs; the chip computes a label Input (through Scales) "
                              "plus the readout (through Scales)", node=name)
            factor = factor * _broadcast(graph.nodes[node].scale, n)  # type: ignore[attr-defined]
            delay += into[0].delay
            node = into[0].source
        terms.append((node, delay, factor))
    return terms


def learning_spec(graph: Graph, name: str, dt: float, gain: np.ndarray, source: str) -> LearningSpec:
    """What plastic connection ``name`` becomes on the chip; refusals are one line naming it."""
    rule = graph.nodes[name].plasticity  # type: ignore[attr-defined]
    _, post, _ = plastic_wiring(graph, name)
    assert isinstance(rule, ThreeFactor)
    if rule.t_epoch != 1:
        raise IRError(f"plasticity 'three_factor' with t_epoch = {rule.t_epoch}: Loihi's learning engine "
                      "evaluates its rule once per epoch from the traces at its end, where the IR sums "
                      "every step's increment; only t_epoch = 1 runs on the chip", node=name)
    if rule.w_min is not None or rule.w_max is not None:
        raise IRError("plasticity 'three_factor' with weight bounds (w_min/w_max): Lava's learning engine "
                      "does not clip weights to bounds; remove them to run it on the chip", node=name)
    if np.any(gain == 0) or not np.all(np.isfinite(gain)):
        raise IRError(f"plastic connection into '{post}', whose input gain is 0 for some neuron: the "
                      "learnt weights could not be read back", node=name)
    c = discretize_plasticity(rule, dt, name)
    n = int(np.prod(graph.shape(name)))
    stream, node = rule.error, graph.nodes[rule.error]
    zero = np.zeros(n)
    common = dict(name=name, source=source, target=post, keep=1.0 - c.dx, rate=c.rate,  # type: ignore[attr-defined]
                  gain=np.asarray(gain, dtype=np.float64).copy())
    if isinstance(node, Input):
        return LearningSpec(**common, label=stream, label_delay=0, label_gain=np.ones(n), v_gain=zero,
                            error_output=None)
    if not isinstance(node, Output):
        raise IRError(f"its error '{stream}' is a {node.type_name}: on Loihi 2 the error is an Input stream "
                      "or an Output summing a label Input and the readout this connection feeds "
                      "(each through Scale nodes)", node=name)
    label, label_delay, a, cv = None, 0, zero, zero
    for src, delay, factor in _terms(graph, stream, name):
        if isinstance(graph.nodes[src], Input) and (label is None or (label == src and delay == label_delay)):
            label, label_delay, a = src, delay, a + factor
        elif src == post:
            if not isinstance(graph.nodes[post], LI):
                raise IRError(f"its error '{stream}' reads '{post}', a {graph.nodes[post].type_name}: the chip "
                              "computes the error from an LI readout's membrane", node=name)
            if delay != 1:
                raise IRError(f"its error '{stream}' reads the readout '{post}' with a delay of {delay} "
                              "step(s): on the chip the readout's step t is computed one step after the "
                              f"synapse takes the input of step t, so the error can only read v(t - 1) "
                              f"(give the path '{post}' -> '{stream}' a delay of 1 step)", node=name)
            cv = cv + factor
        else:
            raise IRError(f"its error '{stream}' reads '{src}': on Loihi 2 the error may only sum one label "
                          f"Input and the readout '{post}' this connection feeds (each through Scale "
                          "nodes)", node=name)
    return LearningSpec(**common, label=label, label_delay=label_delay, label_gain=a, v_gain=cv,
                        error_output=stream)


# ---------------------------------------------------------------- streams


def label_stream(spec: LearningSpec, label: np.ndarray | None, n: int, t: int, period: int,
                 offset: int, total: int) -> np.ndarray:
    """The label as the post receives it, [total, size]: sample j's ``label(k - d)`` at chip
    step ``offset + j*period + k`` (``offset``: the synapse's source offset), 0 elsewhere."""
    size = spec.gain.shape[0]
    out = np.zeros((total, size))
    if label is None:
        return out
    data = np.asarray(label, dtype=np.float64).reshape(n, t, size)
    d = spec.label_delay
    for j in range(n):
        first = offset + j * period + d
        out[first:offset + j * period + t] = data[j, :t - d] if t > d else 0.0
    return out


def error_output(spec: LearningSpec, label: np.ndarray | None, v: np.ndarray) -> np.ndarray:
    """The IR error Output (``[N, T, n]``) from the label stream and the readout's
    membrane ``v`` (IR units): ``err(t) = a * label(t - d) + c * v(t - 1)``."""
    err = np.zeros(v.shape)
    err[:, 1:] += spec.v_gain * v[:, :-1]
    if label is not None:
        lab = np.asarray(label, dtype=np.float64).reshape(v.shape)
        d = spec.label_delay
        if d < v.shape[1]:
            err[:, d:] += spec.label_gain * lab[:, :v.shape[1] - d]
    return err
