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

E-prop (``EProp`` with ``delay=1``, float only) is lowered by :func:`eprop_learning_spec`:
the post population sends y1..y3 from its own membrane and an error Input stream, or an
error Output computed on the chip from a label Input and an LI readout whose membrane
reaches the post through a synapse: ``err(t) = a*label(t - d) + c*v_ro(t - k)``, ``k >=
off_ro - off_post + 1`` (:func:`eprop_readout_lag`; docs/onchip-learning.md, "e-prop on
chip"; ``EPropChip``).

STDP and reward-modulated STDP (``STDP`` / ``RewardSTDP`` with ``delay=1``, float only)
are lowered by :func:`pairing_learning_spec`: the post population sends its spikes on the
synapse's back-propagating action potential port and y1..y3 from its own post trace and
the reward Input stream (docs/onchip-learning.md, "STDP on chip"; ``PairChip``).

Samples. In a learning run the weights carry from one sample to the next (samples are
learnt one after another, as on a chip that keeps learning); the traces start at 0 in
every sample, like the neuron state (the synapse's trace is zeroed at the first step of
each sample window: lava/learning.py). So a run on N samples equals N successive IR
runs, each starting from the weights the previous one ended with.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from neuromorph.discretize import discretize_plasticity
from neuromorph.errors import IRError
from neuromorph.ir import LI, STDP, EProp, Graph, Input, Neuron, Output, RewardSTDP, Scale, ThreeFactor

RULES = ("three_factor", "eprop", "stdp", "reward_stdp")
"""Plasticity rules the Loihi 2 target runs on the chip (stdp, reward_stdp: float only; eprop in
fixed point with an error Input only)."""
RULE_DELAY = {"three_factor": 0, "eprop": 1, "stdp": 1, "reward_stdp": 1}
"""The learning latency (``Plasticity.delay``) each rule has on the chip: the delta
rule's lag is in the graph (its error reads the readout through a delay-1 edge); e-prop's
update of step t, which needs u(t), first acts on the input of step t + 2
(docs/onchip-learning.md, "e-prop on chip"); so do STDP's and reward-STDP's, which need
the post's spikes z(t) ("STDP on chip")."""
LAGGED_RULES = frozenset(r for r, d in RULE_DELAY.items() if d == 1)
"""Rules whose post sends the factors of IR step t one chip step after the synapse's
window step t: a learning run gives every period one idle step for their last update."""
FLOAT_ONLY_RULES = ("stdp", "reward_stdp")
"""Rules lowered in float precision only (their fixed-point engine constants are not derived).
e-prop runs in fixed point with its error an Input or computed on the chip (:class:`FixedEProp`,
:func:`eprop_error_path`)."""


@dataclass(frozen=True, eq=False)
class EPropChip:
    """The e-prop post factors (docs/onchip-learning.md, "e-prop on chip"), per post neuron:
    every chip step the post sends ``y1 = psi * y1_gain``, ``y2 = y2_gain * (feedback @ err)``,
    ``y3 = -dk``; the synapse's presynaptic trace decays by ``keep = 1 - dv``."""

    dk: float  # dt / tau_out
    gamma: float
    feedback: np.ndarray  # [n_out, n_err] (the identity where the rule has none)
    y1_gain: np.ndarray  # gain / (1 - dv)
    y2_gain: np.ndarray  # gain * rate


@dataclass(frozen=True, eq=False)
class PairChip:
    """STDP / reward-STDP post factors (docs/onchip-learning.md, "STDP on chip"), per post
    neuron: every chip step the post, computing its IR step t, sends its spikes ``z(t)``
    (the synapse's ``s_in_bap``), ``y1 = y1_gain * r(t)`` (``r = 1`` without a reward),
    ``y2 = y2_gain * ybar(t)`` with its own post trace ``ybar <- keep_y * ybar + z``, and
    ``y3``. ``keep_x``: the synapse's presynaptic trace decay (1 - dt/tau_plus)."""

    keep_x: float
    keep_y: float  # 1 - dt/tau_minus
    y1_gain: np.ndarray
    y2_gain: np.ndarray
    y3: float  # stdp: 0; reward_stdp: -dt/tau_e
    reward: bool  # y1 carries the reward stream (reward_stdp)
    potentiate: bool = True  # reward_stdp: a_plus != 0 (its rule names the potentiation products)


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
    rule: str = "three_factor"  # the IR rule (RULES)
    eprop: EPropChip | None = None  # rule "eprop": the post's factors (label: the error Input)
    pairing: "PairChip | None" = None  # rules "stdp", "reward_stdp" (label: the reward Input)
    v_source: str | None = None  # the population whose membrane enters the error (None: the post)
    v_delay: int = 1  # err(t) reads c * v(t - v_delay) of that population
    v_path: str = ""  # the IR edge out of that population on the error's path (for messages)

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
    return [t[:3] for t in _terms_with_edges(graph, stream, name)]


def _terms_with_edges(graph: Graph, stream: str, name: str) -> list[tuple[str, int, np.ndarray, str]]:
    """:func:`_terms`, each with the IR edge out of its source ("'a' -> 'b'")."""
    n = int(np.prod(graph.shape(stream)))
    terms = []
    for edge in graph.incoming(stream):
        node, delay, factor, last = edge.source, edge.delay, np.ones(n), edge
        while isinstance(graph.nodes[node], Scale):
            into = graph.incoming(node)
            if len(into) != 1:
                raise IRError(f"its error '{stream}' is computed through Scale '{node}', which has "
                              f"{len(into)} inputs; the chip computes a label Input (through Scales) "
                              "plus the readout (through Scales)", node=name)
            factor = factor * _broadcast(graph.nodes[node].scale, n)  # type: ignore[attr-defined]
            delay += into[0].delay
            node, last = into[0].source, into[0]
        terms.append((node, delay, factor, f"'{last.source}' -> '{last.target}'"))
    return terms


def learning_spec(graph: Graph, name: str, dt: float, gain: np.ndarray, source: str) -> LearningSpec:
    """What plastic connection ``name`` becomes on the chip; refusals are one line naming it."""
    rule = graph.nodes[name].plasticity  # type: ignore[attr-defined]
    src, post, _ = plastic_wiring(graph, name)
    if rule.delay != RULE_DELAY[rule.rule]:
        why = ("its error's delay-1 edge from the readout already holds the chip's one step"
               if rule.rule == "three_factor" else
               "the update of step t needs u(t), which the chip knows only after the synapse transmitted "
               "x(t + 1): it first acts on step t + 2")
        raise IRError(f"plasticity '{rule.rule}' with delay = {rule.delay}: on Loihi 2 this rule runs with a "
                      f"learning delay of {RULE_DELAY[rule.rule]} step(s) ({why}); set "
                      f"delay={RULE_DELAY[rule.rule]}", node=name)
    if isinstance(rule, EProp):
        return eprop_learning_spec(graph, name, dt, gain, source, src, post)
    if isinstance(rule, (STDP, RewardSTDP)):
        return pairing_learning_spec(graph, name, dt, gain, source, src, post)
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


def eprop_checks(graph: Graph, name: str, dt: float) -> tuple[Any, Any, str]:
    """(post LIF coefficients, EProp coefficients, post) of an e-prop connection, or a one-line
    IRError naming it for what Lava's learning engine cannot hold (docs/onchip-learning.md)."""
    from neuromorph.discretize import discretize_graph

    node = graph.nodes[name]
    rule = node.plasticity  # type: ignore[attr-defined]
    post = rule.post_node(graph, name)
    p = discretize_graph(graph, dt)[post]
    c = discretize_plasticity(rule, dt, name)
    if p.reset != "subtract":
        raise IRError(f"plasticity 'eprop' into '{post}' with reset \"{p.reset}\": a reset to a value cuts the "
                      "eligibility per post neuron at its spikes, which Loihi's presynaptic trace x1 cannot "
                      "express; use reset=\"subtract\"", node=name)
    dv = np.unique(np.asarray(p.dv, dtype=np.float64))
    if dv.size != 1:
        raise IRError(f"plasticity 'eprop' into '{post}', whose neurons have {dv.size} different time constants: "
                      "the synapse's one presynaptic trace decays with one dt/tau_mem (split the population)",
                      node=name)
    if not dv[0] < 1.0:
        raise IRError(f"plasticity 'eprop' into '{post}' with dt/tau_mem = 1: the chip recovers the eligibility "
                      "of step t as (x1 - x0)/(1 - dt/tau_mem), which needs tau_mem > dt", node=name)
    if c.t_epoch != 1 or c.w_min is not None or c.w_max is not None:
        raise IRError("plasticity 'eprop' with t_epoch > 1 or weight bounds: the chip runs t_epoch = 1 and does "
                      "not clip weights", node=name)
    gain = np.broadcast_to(np.asarray(p.gain, dtype=np.float64), graph.shape(post))
    if not np.all(np.isfinite(gain)) or np.any(gain <= 0):
        raise IRError(f"plastic connection into '{post}', whose input gain is not > 0 for some neuron", node=name)
    return p, c, post


def eprop_learning_spec(graph: Graph, name: str, dt: float, gain: np.ndarray, source: str, src: str,
                        post: str) -> LearningSpec:
    """What e-prop connection ``name`` becomes on the chip (float): its post sends y1..y3 from
    its own membrane and the error Input the rule names (docs/onchip-learning.md)."""
    p, c, _ = eprop_checks(graph, name, dt)
    rule = graph.nodes[name].plasticity  # type: ignore[attr-defined]
    if not isinstance(graph.nodes[src], Input) and not graph.nodes[src].spiking:  # type: ignore[attr-defined]
        raise IRError(f"plasticity 'eprop' reads '{src}', a non-spiking {graph.nodes[src].type_name}: the "
                      "synapse's presynaptic trace counts spikes", node=name)
    n = int(np.prod(graph.shape(name)))
    gain = np.asarray(gain, dtype=np.float64).copy()
    keep = 1.0 - float(np.unique(np.asarray(p.dv, dtype=np.float64))[0])
    n_err = int(np.prod(graph.shape(rule.error)))
    feedback = np.eye(n) if c.feedback is None else np.asarray(c.feedback, dtype=np.float64).copy()
    chip = EPropChip(dk=float(c.dk), gamma=float(c.gamma), feedback=feedback, y1_gain=gain / keep,
                     y2_gain=gain * c.rate)
    common = dict(name=name, source=source, target=post, keep=keep, rate=c.rate, gain=gain, rule="eprop",
                  eprop=chip)
    if isinstance(graph.nodes[rule.error], Input):
        return LearningSpec(**common, label=rule.error, label_delay=0, label_gain=np.ones(n_err),
                            v_gain=np.zeros(n), error_output=None)
    return LearningSpec(**common, **_eprop_error(graph, name, rule.error, post))


def _eprop_error(graph: Graph, name: str, stream: str, post: str) -> dict[str, Any]:
    """The terms of an e-prop error Output: ``err(t) = a * label(t - d) + c * v_ro(t - k)``,
    one label Input and one LI readout population (each through Scale nodes). Whether the
    chip can deliver ``v_ro(t - k)`` depends on the schedule: :func:`check_eprop_timing`."""
    if not isinstance(graph.nodes[stream], Output):
        raise IRError(f"plasticity 'eprop' with its error '{stream}', a {graph.nodes[stream].type_name}: on Loihi 2 "
                      "the error is an Input stream or an Output summing a label Input and an LI readout "
                      "(each through Scale nodes)", node=name)
    n_err = int(np.prod(graph.shape(stream)))
    label, label_delay, a = None, 0, np.zeros(n_err)
    readout, k, cv, path = None, 0, np.zeros(n_err), ""
    for src, delay, factor, edge in _terms_with_edges(graph, stream, name):
        node = graph.nodes[src]
        if isinstance(node, Input) and (label is None or (label == src and delay == label_delay)):
            label, label_delay, a = src, delay, a + factor
        elif isinstance(node, LI) and src != post and (readout is None or (readout == src and delay == k)):
            readout, k, cv, path = src, delay, cv + factor, edge
        else:
            raise IRError(f"its error '{stream}' reads '{src}' (a {node.type_name}): on Loihi 2 an e-prop error "
                          "may only sum one label Input and one LI readout population, each through Scale nodes "
                          "and with one delay", node=name)
    if readout is None:
        raise IRError(f"its error '{stream}' reads no LI readout: give it as an Input stream instead", node=name)
    if int(np.prod(graph.shape(readout))) != n_err:
        raise IRError(f"its error '{stream}' reads the readout '{readout}' of another size", node=name)
    return dict(label=label, label_delay=label_delay, label_gain=a, v_gain=cv, error_output=stream,
                v_source=readout, v_delay=int(k), v_path=path)


def same_post_factors(a: LearningSpec, b: LearningSpec) -> bool:
    """Whether two e-prop connections into one population take the very factors its
    EPropGroup sends (y1..y3 fan out to both synapses): same error wiring, rate, tau_out,
    gamma and feedback (the post's gain and dt/tau_mem are the population's)."""
    if a.rule != "eprop" or b.rule != "eprop" or a.eprop is None or b.eprop is None:
        return False
    same = (a.label == b.label and a.label_delay == b.label_delay and a.error_output == b.error_output
            and a.v_source == b.v_source and a.v_delay == b.v_delay and a.rate == b.rate
            and a.eprop.dk == b.eprop.dk and a.eprop.gamma == b.eprop.gamma)
    return bool(same and all(np.array_equal(x, y) for x, y in [
        (a.label_gain, b.label_gain), (a.v_gain, b.v_gain), (a.eprop.feedback, b.eprop.feedback)]))


def eprop_readout_lag(spec: LearningSpec, offsets: Any) -> int:
    """The smallest ``k`` for which the chip delivers ``v_ro(t - k)`` to the e-prop post
    at its IR step ``t``: the readout computes its step ``s`` at chip step ``off_ro + s``
    and sends its membrane (a graded message) through a synapse, which delivers one chip
    step later; the post computes its step ``t`` at ``off_post + t``. So
    ``k_min = off_ro - off_post + 1`` (2 for a readout fed by the post population)."""
    return int(offsets[spec.v_source]) - int(offsets[spec.target]) + 1


def check_eprop_timing(spec: LearningSpec, offsets: Any) -> None:
    """Refuse, in one line naming the edge, an e-prop error that reads its readout with
    less delay than the chip's message takes (:func:`eprop_readout_lag`)."""
    if spec.rule != "eprop" or spec.v_source is None:
        return
    k_min = eprop_readout_lag(spec, offsets)
    if spec.v_delay < k_min:
        raise IRError(f"its error '{spec.error_output}' reads the readout '{spec.v_source}' with a delay of "
                      f"{spec.v_delay} step(s) (edge {spec.v_path}): on the chip the readout's membrane reaches "
                      f"'{spec.target}' through a synapse, so the error can read v(t - {k_min}) at the newest "
                      f"(give the path '{spec.v_source}' -> '{spec.error_output}' a delay of {k_min})",
                      node=spec.name)


def pairing_learning_spec(graph: Graph, name: str, dt: float, gain: np.ndarray, source: str, src: str,
                          post: str) -> LearningSpec:
    """What an STDP / reward-STDP connection ``name`` becomes on the chip (float), or a
    one-line IRError naming it (docs/onchip-learning.md, "STDP on chip").

    At the chip step where the post computes IR step t (and sends z(t), ybar(t), r(t)),
    the synapse holds ``x0 = x(t + 1)``, ``x1 = xbar(t + 1)``; the rule keeps ``x(t)`` in
    ``tag_2`` (``x2`` is a trace that holds this step's spikes only) and, for STDP,
    ``xbar(t)`` in ``tag_1``; reward-STDP's ``tag_1`` is the eligibility, and it reads
    ``xbar(t) = (x1 - x2) / keep_x``. The constants ride on y1..y3 (every rule constant is
    +-1): STDP ``y1 = gain lr a_plus``, ``y2 = gain lr a_minus ybar``; reward-STDP with
    ``tag_1 = c / s``, ``s = a_plus / keep_x`` (1 when a_plus = 0): ``y1 = gain rate s r``,
    ``y2 = a_minus ybar / s``, ``y3 = -dt/tau_e``."""
    rule = graph.nodes[name].plasticity  # type: ignore[attr-defined]
    kind = rule.rule
    rule.post_node(graph, name)
    if not isinstance(graph.nodes[src], Input) and not graph.nodes[src].spiking:  # type: ignore[attr-defined]
        raise IRError(f"plasticity '{kind}' reads '{src}', a non-spiking {graph.nodes[src].type_name}: the "
                      "synapse's presynaptic trace counts spikes", node=name)
    if rule.t_epoch != 1:
        raise IRError(f"plasticity '{kind}' with t_epoch = {rule.t_epoch}: Loihi's learning engine evaluates its "
                      "rule once per epoch from the traces at its end, where the IR sums every step's increment; "
                      "only t_epoch = 1 runs on the chip", node=name)
    if rule.w_min is not None or rule.w_max is not None:
        raise IRError(f"plasticity '{kind}' with weight bounds (w_min/w_max): Lava's learning engine does not "
                      "clip weights to bounds; remove them to run it on the chip", node=name)
    gain = np.asarray(gain, dtype=np.float64).copy()
    if np.any(gain == 0) or not np.all(np.isfinite(gain)):
        raise IRError(f"plastic connection into '{post}', whose input gain is 0 for some neuron: the learnt "
                      "weights could not be read back", node=name)
    c = discretize_plasticity(rule, dt, name)
    keep_x, keep_y = 1.0 - float(c.dx), 1.0 - float(c.dy)
    n = int(np.prod(graph.shape(name)))
    if isinstance(rule, STDP):
        chip = PairChip(keep_x=keep_x, keep_y=keep_y, y1_gain=gain * c.lr * c.a_plus,
                        y2_gain=gain * c.lr * c.a_minus, y3=0.0, reward=False)
        return LearningSpec(name=name, source=source, target=post, keep=keep_x, rate=float(c.lr), gain=gain,
                            label=None, label_delay=0, label_gain=np.zeros(0), v_gain=np.zeros(n),
                            error_output=None, rule=kind, pairing=chip)
    stream = rule.reward
    if not isinstance(graph.nodes[stream], Input):
        raise IRError(f"plasticity 'reward_stdp' with its reward '{stream}' computed in the graph: not lowered to "
                      "Loihi 2 yet; give the reward as an Input stream", node=name)
    potentiate = c.a_plus != 0.0
    if potentiate and not keep_x > 0.0:
        raise IRError("plasticity 'reward_stdp' with dt/tau_plus = 1: the chip recovers xbar(t) as "
                      "(x1 - x0)/(1 - dt/tau_plus), which needs tau_plus > dt", node=name)
    s = c.a_plus / keep_x if potentiate else 1.0
    chip = PairChip(keep_x=keep_x, keep_y=keep_y, y1_gain=gain * c.rate * s,
                    y2_gain=np.full(n, c.a_minus / s), y3=-float(c.dc), reward=True, potentiate=potentiate)
    n_r = int(np.prod(graph.shape(stream)))
    return LearningSpec(name=name, source=source, target=post, keep=keep_x, rate=float(c.rate), gain=gain,
                        label=stream, label_delay=0, label_gain=np.ones(n_r), v_gain=np.zeros(n),
                        error_output=None, rule=kind, pairing=chip)


# ---------------------------------------------------------------- streams


def error_stream(error: np.ndarray, n: int, t: int, period: int, offset: int, total: int) -> np.ndarray:
    """An e-prop error Input as its post receives it, [total, n_err]: sample j's ``err(k)``
    at chip step ``offset + j*period + k`` (``offset``: the post population's), 0 elsewhere."""
    data = np.asarray(error, dtype=np.float64).reshape(n, t, -1)
    out = np.zeros((total, data.shape[2]))
    for j in range(n):
        out[offset + j * period: offset + j * period + t] = data[j]
    return out


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


def eprop_label_stream(spec: LearningSpec, label: np.ndarray | None, n: int, t: int, period: int, offset: int,
                       total: int) -> np.ndarray:
    """The label part of an e-prop error Output as its post receives it (a RingBuffer into
    ``err_in``), [total, n_err]: ``a * label(k - d)`` at the post's chip step
    ``offset + j*period + k``; the readout's part arrives through a synapse."""
    return error_stream(_label_term(spec, label, n, t), n, t, period, offset, total)


def _label_term(spec: LearningSpec, label: np.ndarray | None, n: int, t: int) -> np.ndarray:
    """``a * label(k - d)`` of an error computed on the chip, [n, t, n_err] (0 before d)."""
    n_err = spec.label_gain.shape[0]
    data = np.zeros((n, t, n_err))
    if label is not None:
        lab = np.asarray(label, dtype=np.float64).reshape(n, t, n_err)
        d = spec.label_delay
        if d < t:
            data[:, d:] = spec.label_gain * lab[:, :t - d]
    return data


def error_output(spec: LearningSpec, label: np.ndarray | None, v: np.ndarray) -> np.ndarray:
    """The IR error Output (``[N, T, n]``) from the label stream and the readout's
    membrane ``v`` (IR units): ``err(t) = a * label(t - d) + c * v(t - k)`` (``k =
    spec.v_delay``: 1 for the delta rule)."""
    err = np.zeros(v.shape)
    k = spec.v_delay
    if k < v.shape[1]:
        err[:, k:] += spec.v_gain * v[:, :v.shape[1] - k]
    if label is not None:
        lab = np.asarray(label, dtype=np.float64).reshape(v.shape)
        d = spec.label_delay
        if d < v.shape[1]:
            err[:, d:] += spec.label_gain * lab[:, :v.shape[1] - d]
    return err


# ---------------------------------------------------------------- fixed point
#
# Lava's fixed learning engine (lava/magma/core/model/py/connection.py,
# LearningConnectionModelBitApproximate, and learning_rule_applier.py's
# LearningRuleApplierBitApprox), for ``dw = m * 2^e * u0 * x1 * y2`` with t_epoch 1, one
# chip step (``engine_fixed`` below is that arithmetic, step for step):
#
#   x1 <- clip(SR(exp(-1/tau) * x1, r_decay) + I * spike, 0, 127)   7-bit trace, integer tau
#   P   = floor(clip(x1) * clip(y2, -128, 127) * m / 8)              (7 + 7 + 4 - 15 = 3 bits)
#   A   = clip((w << 7) + clip(P << (e + 7), +-2^15), +-2^15)       15-bit accumulator
#   w  <- clip(SR(A / 128, r_w), -256, 255)                          (mixed sign mode)
#
# SR(z, r) = floor(z) + (r < z - floor(z)): stochastic rounding with ONE random number
# per step shared by every synapse: r_w from numpy's default_rng(2) (Lava's ConnVarRandom
# ignores the rule's rng_seed), r_decay from default_rng(rng_seed) (TraceRandom; it is
# advanced twice per step). So the weight change of one step is SR(P * 2^e): exact for
# e >= 0, within one LSB below.

TRACE_MAX = 127
"""Lava's 7-bit traces (W_TRACE) and the 8-bit signed third factor's largest value."""
S_MANT_MAX, S_EXP_MIN, S_EXP_MAX = 7, -7, 8
"""The rule's scaling constant m * 2^e (Lava's product_series: |m| <= 7, -7 <= e <= 8)."""
TAU_MAX = 255
"""Lava's fixed trace tau is an 8-bit integer (x1_tau precision 8)."""
WEIGHT_LO, WEIGHT_HI = -256, 255
"""The engine's weights: 8 bits + sign (W_WEIGHTS_S = 9), saturated after every update."""
Y2_SHIFT_BITS = 24
"""The y2 coefficients are integers with this many significant bits (then >> y2_shift)."""
CONN_VAR_SEED = 2
"""The seed of Lava's ConnVarRandom (the weights' stochastic rounding), whatever rng_seed is."""


@dataclass(frozen=True, eq=False)
class FixedLearning:
    """A plastic connection in Lava's fixed engine (the comment block above).

    The chip computes ``dW_mant = m * 2^e / 8 * x1 * y2`` per step, with the trace
    ``x1 ~= impulse * xbar`` and the third factor ``y2 ~= ky * err``; by construction
    ``ky * impulse * m * 2^e / 8 = rate * G`` (G: mantissas per model weight unit), so the
    float rule's increment ``rate * err * xbar`` is what the engine adds, up to its rounding
    (:func:`fixed_bound`). The post neuron computes ``y2 = clip((y2_label * label_payload
    + y2_v * v_int + y2_bias + 2^(y2_shift-1)) >> y2_shift, -128, 127)`` (``y2_v``,
    ``y2_bias`` only at the window steps where the float rule reads v)."""

    name: str
    impulse: int  # x1 impulse per input spike
    tau: int  # x1 tau in chip steps (0: the trace holds this step's impulse only)
    mant: int  # m
    exp: int  # e
    ky: np.ndarray  # y2 units per unit of error, per post neuron
    y2_label: np.ndarray  # int64, per post neuron
    y2_v: np.ndarray
    y2_bias: np.ndarray
    y2_shift: int
    error_range: np.ndarray  # |err| that maps to y2 = 127 (calibration)

    @property
    def keep(self) -> float:
        """The chip trace's decay factor per step (Lava: exp(-1/tau))."""
        return 0.0 if self.tau == 0 else float(np.exp(-1.0 / self.tau))

    @property
    def scale(self) -> float:
        """m * 2^e."""
        return self.mant * 2.0**self.exp

    def dw(self) -> str:
        """The rule string of Lava's Loihi3FLearningRule."""
        return f"({self.mant}) * 2 ^ {self.exp} * u0 * x1 * y2" if self.exp else f"({self.mant}) * u0 * x1 * y2"

    def y2(self, label: np.ndarray, v_int: np.ndarray | None) -> np.ndarray:
        """The integer third factor from the label payload and the integer membrane
        (None: a step where the rule reads no v)."""
        acc = self.y2_label * np.asarray(label, dtype=np.int64)
        if v_int is not None:
            acc = acc + self.y2_v * np.asarray(v_int, dtype=np.int64) + self.y2_bias
        acc = (acc + (1 << (self.y2_shift - 1))) >> self.y2_shift
        return np.clip(acc, -TRACE_MAX - 1, TRACE_MAX).astype(np.int32)

    def report(self) -> dict[str, Any]:
        return {"connection": self.name, "rule": self.dw(), "x1_impulse": self.impulse, "x1_tau": self.tau,
                "trace_keep": self.keep, "y2_per_error": float(np.max(self.ky)),
                "error_range": float(np.max(self.error_range)), "y2_shift": self.y2_shift}


def trace_tau(keep: float, name: str) -> int:
    """The integer tau of Lava's fixed trace nearest the decay ``keep`` (one line naming
    the connection when the engine cannot hold it)."""
    if keep <= 0.0:
        return 0
    if keep >= 1.0:
        raise IRError("a presynaptic trace that never decays (tau_pre infinite) saturates the engine's 7-bit "
                      "trace", node=name)
    tau = int(round(-1.0 / np.log(keep)))
    if tau > TAU_MAX:
        raise IRError(f"tau_pre of {-1.0 / np.log(keep):.1f} steps: Lava's fixed learning engine holds a trace "
                      f"tau of at most {TAU_MAX} steps (8 bits); shorten tau_pre or raise dt", node=name)
    return max(tau, 1)


def fixed_learning(spec: LearningSpec, mantissa_gain: np.ndarray, v_scale: float, label_scale: float,
                   error_range: np.ndarray) -> FixedLearning:
    """The fixed-point form of ``spec``: ``mantissa_gain`` (G, per post neuron) weight
    mantissas per model weight unit, ``v_scale`` the post's integer membrane per IR unit,
    ``label_scale`` the label port's payload per unit, ``error_range`` (per post neuron)
    the largest |err| the third factor must hold without saturating.

    Choice: y2 uses its 8 bits for ``error_range`` (``ky <= 127 / error_range``); the
    product ``ky * impulse * m * 2^e`` must equal ``c = 8 * rate * G``, so the smallest
    scaling ``m * 2^e`` (the finest weight step) with an impulse ``I <= 127 * (1 - keep)``
    (a trace that cannot saturate) is taken, and ``I`` as small as that allows. A rate
    that needs a scaling outside Lava's ``|m| <= 7, -7 <= e <= 8`` is refused (one line)."""
    name = spec.name
    tau = trace_tau(spec.keep, name)
    keep = 0.0 if tau == 0 else float(np.exp(-1.0 / tau))
    c = 8.0 * spec.rate * np.abs(np.asarray(mantissa_gain, dtype=np.float64))
    err = np.maximum(np.asarray(error_range, dtype=np.float64), 1e-12)
    need = float(np.max(c * err / TRACE_MAX))  # scale * impulse must be at least this
    i_max = max(1, int(np.floor(TRACE_MAX * (1.0 - keep) + 1e-9)))
    scales = sorted((m * 2.0**e, m, e) for m in range(1, S_MANT_MAX + 1) for e in range(S_EXP_MIN, S_EXP_MAX + 1))
    choice = next(((s, m, e) for s, m, e in scales if need <= s * i_max), None)
    if choice is None:
        raise IRError(f"learning rate {spec.rate:g} per step is too large for Lava's fixed learning engine: it "
                      f"needs a rule constant above {S_MANT_MAX} * 2^{S_EXP_MAX} (lower lr)", node=name)
    s, m, e = choice
    impulse = max(1, int(np.ceil(need / s - 1e-12)))
    ky = c / (s * impulse)
    if float(np.min(ky * err)) < 8.0:
        raise IRError(f"learning rate {spec.rate:g} per step is too small for Lava's fixed learning engine: the "
                      f"smallest rule constant (1 * 2^{S_EXP_MIN}) leaves the error only "
                      f"{float(np.min(ky * err)):.2g} third-factor levels (raise lr, or the weights' scale)",
                      node=name)
    # y2 = ky * (a * label + c_v * (v_int / S + v_shift)): integer coefficients >> shift
    fa = ky * spec.label_gain / label_scale
    fv = ky * spec.v_gain / v_scale
    big = float(np.max(np.abs(np.concatenate([fa, fv]))))
    shift = max(1, min(40, Y2_SHIFT_BITS - int(np.ceil(np.log2(big))))) if big > 0 else 1
    v_shift = np.zeros_like(ky)  # the IR membrane is v_int / S + v_shift (added by the caller)
    return FixedLearning(name=name, impulse=impulse, tau=tau, mant=m, exp=e, ky=ky,
                         y2_label=np.rint(fa * 2.0**shift).astype(np.int64),
                         y2_v=np.rint(fv * 2.0**shift).astype(np.int64),
                         y2_bias=np.rint(ky * spec.v_gain * v_shift * 2.0**shift).astype(np.int64),
                         y2_shift=shift, error_range=err)


def with_v_shift(rule: FixedLearning, spec: LearningSpec, v_shift: np.ndarray) -> FixedLearning:
    """``rule`` with the post's membrane shift folded into ``y2_bias`` (err reads the IR
    membrane ``v_int / S + v_shift``)."""
    import dataclasses

    bias = np.rint(rule.ky * spec.v_gain * np.asarray(v_shift, dtype=np.float64) * 2.0**rule.y2_shift)
    return dataclasses.replace(rule, y2_bias=bias.astype(np.int64))


# ---------------------------------------------------------------- the engine, in numpy


def _stochastic(z: np.ndarray, r: float) -> np.ndarray:
    """Lava's stochastic_round of float ``z``: floor, plus one where r < the fraction."""
    whole = np.floor(z)
    return (whole + (r < z - whole)).astype(np.int64)


def engine_fixed(rule: FixedLearning, w0: np.ndarray, pre: np.ndarray, y2: np.ndarray, *, offset: int,
                 steps: int, period: int, samples: int, rng_seed: int) -> np.ndarray:
    """Lava's fixed learning engine on one plastic synapse, chip step by chip step
    (exactly: the same integers and the same random numbers as Lava 0.10.0).

    ``w0`` [out, in] initial mantissas (even: Lava's LearningDense drops the LSB of a
    mixed matrix once, before the first step); ``pre`` [total, in] the 0/1 spikes the
    synapse receives at each chip step; ``y2`` [total, out] the third factor the post
    sends at each chip step; the window schedule of lava/learning.py (trace zeroed at
    the first step of each sample, weights taken after its last). Returns the weights
    after each sample, [samples, out, in] int64."""
    total = len(pre)
    w = (np.asarray(w0, dtype=np.int64) >> 1) << 1
    x1 = np.zeros(pre.shape[1], dtype=np.int64)
    decay_rng = np.random.default_rng(rng_seed)  # TraceRandom: one draw at start, two per step
    decay = decay_rng.random(2 * total + 1)
    w_rand = np.random.default_rng(CONN_VAR_SEED).random(total + 1)  # ConnVarRandom: one at start, one per step
    keep = rule.keep
    out = np.zeros((samples, *w.shape), dtype=np.int64)
    for c in range(total):
        j, k = divmod(c - offset, period) if c >= offset else (-1, -1)
        if 0 <= j < samples and k == 0:
            x1[:] = 0
        if rule.tau == 0:
            x1 = np.zeros_like(x1)
        else:
            x1 = _stochastic(keep * x1, decay[2 * (c + 1)])
        spiked = pre[c] != 0
        x1[spiked] = np.minimum(x1[spiked] + rule.impulse, TRACE_MAX)
        p = (x1[None, :] * np.clip(y2[c], -TRACE_MAX - 1, TRACE_MAX)[:, None] * rule.mant) >> 3
        p = np.clip(p << (rule.exp + 7), -(2**15) - 1, 2**15 - 1)
        acc = np.clip((w << 7) + p, -(2**15) - 1, 2**15 - 1)
        w = np.clip(_stochastic(acc / 128.0, w_rand[c + 1]), WEIGHT_LO, WEIGHT_HI)
        if 0 <= j < samples and k == steps - 1:
            out[j] = w
    return out


def float_engine(rule: FixedLearning, w0: np.ndarray, pre: np.ndarray, y2: np.ndarray, *, offset: int,
                 steps: int, period: int, samples: int) -> np.ndarray:
    """The float rule the engine rounds (:func:`fixed_bound`): the same pre spikes and
    third factor, ``dW_mant = m 2^e / 8 * y2 * impulse * xbar`` with the exact trace
    ``xbar <- keep * xbar + spike`` (keep = exp(-1/tau)). [samples, out, in] float64."""
    w = ((np.asarray(w0, dtype=np.int64) >> 1) << 1).astype(np.float64)
    xbar = np.zeros(pre.shape[1])
    out = np.zeros((samples, *w.shape))
    for c in range(len(pre)):
        j, k = divmod(c - offset, period) if c >= offset else (-1, -1)
        if 0 <= j < samples and k == 0:
            xbar[:] = 0.0
        xbar = rule.keep * xbar + (pre[c] != 0)
        w = w + rule.scale / 8.0 * np.clip(y2[c], -TRACE_MAX - 1, TRACE_MAX)[:, None] * rule.impulse * xbar[None, :]
        if 0 <= j < samples and k == steps - 1:
            out[j] = w
    return out


def fixed_bound(rule: FixedLearning, pre: np.ndarray, y2: np.ndarray, *, offset: int, steps: int, period: int,
                samples: int, delta: float | None = None) -> np.ndarray:
    """A bound on |engine_fixed - float_engine| (weight mantissas, [samples, out, in]),
    from the engine's rounding, for a given third-factor stream ``y2``, valid while no
    weight, trace or accumulator saturates.

    Per chip step and synapse the engine differs from the float rule by:

    - the trace: each decay rounds ``keep * x1`` stochastically, an error ``d`` in
      (-1, 1) of mean 0 that later steps multiply by ``keep``; the impulse is an integer
      (exact). So ``|x1 - impulse * xbar| < E(k) = sum_{i<k} keep^i`` at the k-th step
      of a sample (``E(0) = 0``: the trace starts at 0). Times the product's factor:
      ``m 2^e / 8 * |y2| * E(k)``;
    - the product's floor (3 bits dropped): in ``(-2^e, 0]``, a bias;
    - the stochastic rounding of the accumulator to the weight (only for e < 0): in
      (-1, 1), mean 0.

    ``delta`` None: the worst case, every error at its extreme, summed over every step
    since the start of the run (the weights carry over samples): ``sum_t [m 2^e / 8
    |y2(t)| E(t) + 2^e + (e < 0)]``, where y2 is nonzero. A ``delta`` in (0, 1): the
    zero-mean errors are a martingale (each step's random number is independent of the
    past; y2 given), so by Azuma-Hoeffding the sum of the zero-mean terms exceeds
    ``sqrt(2 ln(2 / delta) sum_i c_i^2)`` with probability below ``delta`` per synapse,
    ``c_i`` the largest effect of step i's rounding (1 for the weight's, ``m 2^e / 8
    sum_{t >= i} |y2(t)| keep^(t-i)`` within the sample for the trace's); plus the floor's
    bias, ``sum_t 2^e``."""
    total = len(pre)
    shape = (y2.shape[1], pre.shape[1])
    y = np.abs(np.clip(y2, -TRACE_MAX - 1, TRACE_MAX)).astype(np.float64)  # [total, out]
    f = rule.scale / 8.0
    sr = 1.0 if rule.exp < 0 else 0.0
    window = np.full(total, -1)
    for c in range(total):
        j, k = divmod(c - offset, period) if c >= offset else (-1, -1)
        window[c] = j * period + k if 0 <= j < samples else -1
    out = np.zeros((samples, *shape))
    bias = np.zeros(shape[0])  # floor: per post neuron (every synapse of a row shares y2)
    worst = np.zeros(shape[0])
    var = np.zeros(shape[0])
    e_trace, tail = 0.0, np.zeros(shape[0])
    for c in range(total):
        j, k = divmod(c - offset, period) if c >= offset else (-1, -1)
        first = 0 <= j < samples and k == 0
        e_trace = 0.0 if first else (rule.keep * e_trace + 1.0 if rule.tau != 0 else 0.0)
        active = y[c] != 0
        bias += 2.0**rule.exp * active
        worst += f * y[c] * e_trace + sr * active
        var += sr * active
        if rule.tau != 0 and not first:  # the decay rounding of this step: its effect until the sample ends
            end = c + 1
            while end < total and not (end >= offset and (end - offset) % period == 0):
                end += 1
            powers = rule.keep ** np.arange(end - c)
            tail = f * (y[c:end] * powers[:, None]).sum(axis=0)
            var += tail**2
        if 0 <= j < samples and k == steps - 1:
            if delta is None:
                out[j] = (worst + bias)[:, None]
            else:
                out[j] = (bias + np.sqrt(2.0 * np.log(2.0 / delta) * var))[:, None]
    return out


def y2_stream(rule: FixedLearning, spec: LearningSpec, label: np.ndarray | None, v_int: np.ndarray, *,
              source_offset: int, post_offset: int, period: int, total: int) -> np.ndarray:
    """The third factor the post sends at each chip step, [total, out] int32, from the
    label payloads (``[N, T, out]`` or None) and its integer membrane ``v_int`` ([N, T,
    out]): v counts at window steps 0..T-2 (lava/learning.py's TeacherGroup)."""
    n, t, _ = v_int.shape
    labels = label_stream(spec, label, n, t, period, source_offset, total)
    out = np.zeros((total, v_int.shape[2]), dtype=np.int32)
    for c in range(total):
        j, k = divmod(c - post_offset, period) if c >= post_offset else (-1, -1)
        inside = 0 <= j < n and k <= t - 2
        out[c] = rule.y2(labels[c], v_int[j, k] if inside else None)
    return out


# ---------------------------------------------------------------- e-prop in fixed point
#
# The same engine (Lava's LearningRuleApplierBitApprox) evaluates every product as
#
#   P = clip(floor(dep * prod(clip(f)) * m / 2^sh) << (e + 7), +-2^15),  sh = max(0, sum widths + 4 - 15)
#
# (widths: x1, y1..y3 7; tag_1 (t) and tag_2 (d) 9; the dependency x0 / u0 counts none),
# sums the products of a target into (var << 7), stochastically rounds to a multiple of 128
# with the step's one random number (the weights, tag_1 and tag_2 share it), shifts back and
# saturates (weights -256..255, tag_1 -257..255, tag_2 0..255). Every product is evaluated
# from the old values of the step (all targets' products first, then the updates). Each
# product has its own shift, so the constants below compensate them: the e-prop rule on the
# chip (docs/onchip-learning.md, "e-prop in fixed point") with y1 = Ky1 psi, y2 = Ky2 L,
# y3 = -Y (Y 2^e3 / 32 = dk), tag_1 = Ke ebar:
#
#   dd = u0 x1 - u0 d                                        (tag_2 <- x1: exact, no bits shifted off)
#   dt = 2^e3 u0 y3 t + 2^ea u0 y1 d
#   dw = 2^ew u0 y2 t + 2^(ew+e3+2) u0 y2 y3 t + 2^(ew+ea+2) u0 y2 y1 d
#
# tag_2 (d) keeps the previous step's trace: at chip step c it holds x1(c-1), so keep * d is
# the decayed previous trace the rule needs (the synapse has already received the pre
# spikes of the step after the post's factors; x1(c) - I x0(c) = SR(keep x1(c-1)) was the
# former, x0-product form of it). dw spells out 2^ew/32 y2 tag_1(new) (the engine reads the
# old tag_1). keep is folded into Ke: 2^(ea-5) y1 d = (2^(ea-5) / keep) y1 (keep d), so
# Ke = 2^(ea-5) Ky1 I / keep and 2^ew / 32 Ky2 Ke = rate G. Each constant is written with
# its largest mantissa (finest: 2^ew as 4 * 2^(ew-2)), which the engine floors 4x finer.

EPROP_EBAR_MAX = 255
"""tag_1's largest value (W_TAG_1_U = 8): the eligibility range maps to it."""
EPROP_DECAY_TOL = 0.1
"""Largest relative error of a decay rate (1 - keep of x1, dk of tag_1) the fixed lowering
accepts (Lava's integer tau and the 7-bit y3)."""


def finest(m: int, e: int) -> tuple[int, int]:
    """The constant ``m 2^e`` with the largest mantissa the engine takes (|m| <= 7) and an
    exponent >= -7. The engine floors a product after multiplying by m and before the
    exponent's shift, so its floor loses less than ``2^e``: 4 * 2^(e-2) loses a quarter of
    what 1 * 2^e does, for the same value."""
    while abs(2 * m) <= S_MANT_MAX and e - 1 >= S_EXP_MIN:
        m, e = 2 * m, e - 1
    return m, e


def product_shift(factors: tuple[str, ...]) -> int:
    """The bits the engine shifts off a product of these factors (tag_1, tag_2: 9 bits, the
    traces 7, the constant's mantissa 4)."""
    return max(0, 4 + sum(9 if f in ("t", "d") else 7 for f in factors) - 15)


@dataclass(frozen=True, eq=False)
class FixedEProp:
    """An e-prop connection in Lava's fixed engine (the comment block above)."""

    name: str
    impulse: int  # I
    tau: int  # x1 tau (Lava: keep = exp(-1/tau))
    ea: int
    e3: int
    ew: int
    y3: int  # the constant -Y the post sends
    ky1: float  # y1 units per unit of psi
    ky2: np.ndarray  # y2 units per unit of L, per post neuron
    ke: float  # tag_1 units per unit of ebar
    y1_gain: np.ndarray  # int64 per neuron: y1 = (y1_gain * max(0, unit - |v - th|) + half) >> y1_shift
    y1_shift: int
    unit: np.ndarray  # int64 per neuron: one IR volt in the integer membrane
    feedback: np.ndarray  # int64 [out, n_err]: y2 = (feedback @ err_payload + half) >> y2_shift
    y2_shift: int
    error_range: np.ndarray  # |L| that maps to 127, per post neuron
    ebar_range: float
    # an error computed on the chip (:func:`eprop_error_path`): err_in receives, per error
    # neuron, E * (a label(t - d)) + v_bias (a RingBuffer, v_bias at the post's steps t >= k)
    # plus (v_weights * v_ro_int(t - k)) shifted by v_exp (Lava's fixed Dense, the readout's
    # 24-bit integer membrane as its graded message)
    err_scale: float = 1.0  # E: err payload per unit of error
    v_weights: Optional[np.ndarray] = None  # int32 [n_err]: the diag(c) mantissas (None: an Input error)
    v_exp: int = 0
    v_bias: Optional[np.ndarray] = None  # int64 [n_err]: rint(E c v_shift_ro)
    v_error: float = 0.0  # the largest relative error of c in the mantissas
    error_terms: Optional[np.ndarray] = None  # calibrated |a| label_max + |c| (v_peak + |v_shift|), per error neuron

    @property
    def keep(self) -> float:
        return float(np.exp(-1.0 / self.tau))

    def _rule(self, target: str) -> str:
        """The rule string of ``target``'s products (Lava's learning-rule syntax)."""
        text = ""
        for dep, factors, m, e in self.products()[target]:
            const = f"({abs(m)}) * 2 ^ {e}" if e else f"({abs(m)})"
            term = " * ".join([const, "u0" if dep == "u" else dep, *factors])
            text += (f" {'-' if m < 0 else '+'} " if text else ("-" if m < 0 else "")) + term
        return text

    def dt_rule(self) -> str:
        return self._rule("tag_1")

    def dw_rule(self) -> str:
        return self._rule("weights")

    def dd_rule(self) -> str:
        return self._rule("tag_2")

    def products(self) -> dict[str, list[tuple[str, tuple[str, ...], int, int]]]:
        """{target: [(dependency, factors, m, e)]}, in Lava's order (dw, dd, dt: every
        product reads the old values, so the order does not matter); the weights' and
        tag_1's constants at their finest mantissa (:func:`finest`), tag_2's as they are
        (``tag_2 <- x1``: no bits shifted off, exact)."""
        ew, ea, e3 = self.ew, self.ea, self.e3
        terms = {"weights": [("u", ("y2", "t"), 1, ew), ("u", ("y2", "y3", "t"), 1, ew + e3 + 2),
                             ("u", ("y2", "y1", "d"), 1, ew + ea + 2)],
                 "tag_1": [("u", ("y3", "t"), 1, e3), ("u", ("y1", "d"), 1, ea)]}
        out = {target: [(dep, factors, *finest(m, e)) for dep, factors, m, e in items]
               for target, items in terms.items()}
        return {"weights": out["weights"], "tag_2": [("u", ("x1",), 1, 0), ("u", ("d",), -1, 0)],
                "tag_1": out["tag_1"]}

    def y1(self, v_pre: np.ndarray, th: np.ndarray) -> np.ndarray:
        """The integer y1 from the integer membrane before the reset and ``vth << 6``."""
        d = np.abs(np.asarray(v_pre, dtype=np.int64) - np.asarray(th, dtype=np.int64))
        acc = self.y1_gain * np.maximum(0, self.unit - d) + (1 << (self.y1_shift - 1))
        return np.clip(acc >> self.y1_shift, 0, TRACE_MAX).astype(np.int32)

    def y2(self, err: np.ndarray) -> np.ndarray:
        """The integer y2 from the error Input's payloads."""
        acc = self.feedback @ np.asarray(err, dtype=np.int64) + (1 << (self.y2_shift - 1))
        return np.clip(acc >> self.y2_shift, -TRACE_MAX - 1, TRACE_MAX).astype(np.int32)

    def report(self) -> dict[str, Any]:
        return {"connection": self.name, "rule": "eprop", "dw": self.dw_rule(), "dt": self.dt_rule(),
                "dd": self.dd_rule(), "ea": self.ea, "ew": self.ew, "e3": self.e3,
                "x1_impulse": self.impulse, "x1_tau": self.tau, "trace_keep": self.keep, "y3": self.y3,
                "y1_per_psi": self.ky1, "y2_per_signal": float(np.max(self.ky2)), "tag_per_eligibility": self.ke,
                "error_range": [float(r) for r in self.error_range], "ebar_range": self.ebar_range,
                **({} if self.v_weights is None else {
                    "err_scale": self.err_scale, "v_message_bits": V_MESSAGE_BITS,
                    "v_weights": [int(m) for m in self.v_weights], "v_weight_exp": self.v_exp,
                    "v_weight_error": self.v_error, "v_bias": [int(b) for b in self.v_bias],
                    "error_terms": [float(r) for r in self.error_terms]})}


def fixed_eprop(spec: LearningSpec, mantissa_gain: np.ndarray, v_scale: float, err_scale: float,
                error_range: np.ndarray, ebar_range: float, error_path: Optional[dict] = None,
                shared_ky1: Optional[float] = None, shared_ky2: Optional[np.ndarray] = None) -> FixedEProp:
    """The fixed-point form of e-prop connection ``spec`` (error an Input, or computed on the
    chip with ``error_path`` from :func:`eprop_error_path`, whose ``err_scale`` E replaces
    ``err_scale``): ``mantissa_gain``
    (G) weight mantissas per model unit, ``v_scale`` the post's integer membrane per volt,
    ``err_scale`` the error port's payload per unit, ``error_range`` the largest |L| per post
    neuron, ``ebar_range`` the largest eligibility (calibration). Chooses, in order: the
    impulse I (the largest <= 7 the 7-bit trace holds), Ky1 = 127/gamma, the largest ``ea``
    with ``Ke * ebar_range <= 255`` (``Ke = 2^(ea-5) Ky1 I / keep``; Ky1 lowered when even
    ea = -7 is too coarse), the smallest ``ew`` with ``Ky2 * error_range <= 127`` and every
    product's exponent (``ew``, ``ew + e3 + 2``, ``ew + ea + 2``) within -7..8; where no ``ew``
    gives y2 its full range at that ``ea`` (a small rate), ``ea`` is lowered while that adds y2
    levels. One line naming the connection for what does not fit. ``shared_ky1`` / ``shared_ky2``: the population's y1 / y2 scales when
    several e-prop connections into it share its factors (quantize._share_eprop_factors):
    then ``ew`` is the power of 2 that makes up this synapse's weight scale."""
    name, chip = spec.name, spec.eprop
    assert chip is not None
    if spec.error_output is not None and error_path is None:
        raise IRError("plasticity 'eprop' in fixed point with its error computed on the chip needs the readout's "
                      "message path (learning_model.eprop_error_path)", node=name)
    if error_path is not None:
        err_scale = float(error_path["err_scale"])
    tau = trace_tau(spec.keep, name)
    keep = float(np.exp(-1.0 / tau))
    if abs((1.0 - keep) - (1.0 - spec.keep)) > EPROP_DECAY_TOL * (1.0 - spec.keep):
        raise IRError(f"plasticity 'eprop': the membrane decay dt/tau_mem = {1.0 - spec.keep:.4g} is not within "
                      f"{EPROP_DECAY_TOL:.0%} of any integer trace tau of Lava's fixed engine (nearest: "
                      f"{1.0 - keep:.4g}); change tau_mem or dt", node=name)
    dk = float(chip.dk)
    e3 = next((e for e in range(S_EXP_MIN, S_EXP_MAX + 1) if dk * 32.0 / 2.0**e <= TRACE_MAX + 0.5), None)
    big_y = 0 if e3 is None else int(round(dk * 32.0 / 2.0**e3))
    if e3 is None or big_y < 1 or abs(big_y * 2.0**e3 / 32.0 - dk) > EPROP_DECAY_TOL * dk:
        raise IRError(f"plasticity 'eprop': the eligibility decay dt/tau_out = {dk:.4g} is not within "
                      f"{EPROP_DECAY_TOL:.0%} of y3 * 2^e / 32 (7-bit y3, -7 <= e <= 8); change tau_out or dt",
                      node=name)
    impulse = max(1, min(S_MANT_MAX, int(np.floor(TRACE_MAX * (1.0 - keep) + 1e-9))))
    gamma = float(chip.gamma)
    if not gamma > 0:
        raise IRError("plasticity 'eprop' with gamma = 0 never learns", node=name)
    ky1 = TRACE_MAX / gamma if shared_ky1 is None else float(shared_ky1)
    ebar_range = max(float(ebar_range), 1e-12)

    def tag_scale(e: int, k1: float) -> float:  # Ke: 2^(ea-5) y1 d, d ~ I xbar(c-1), keep folded in
        return 2.0**(e - 5) * k1 * impulse / keep

    ea_top = next((e for e in range(S_EXP_MAX, S_EXP_MIN - 1, -1)
                   if tag_scale(e, ky1) * ebar_range <= EPROP_EBAR_MAX), S_EXP_MIN)
    if tag_scale(ea_top, ky1) * ebar_range > EPROP_EBAR_MAX * (1 + 1e-9) and shared_ky1 is not None:
        raise IRError(f"plasticity 'eprop' in fixed point: the e-prop connections into '{spec.target}' share y1, "
                      f"whose scale leaves this connection's eligibility range {ebar_range:.3g} above tag_1's 9 bits",
                      node=name)
    if tag_scale(ea_top, ky1) * ebar_range > EPROP_EBAR_MAX:
        ky1 = EPROP_EBAR_MAX / (tag_scale(ea_top, 1.0) * ebar_range)
    if ky1 * gamma < 8.0:
        raise IRError(f"plasticity 'eprop': an eligibility range of {ebar_range:.3g} leaves psi only "
                      f"{ky1 * gamma:.2g} levels in y1 (the engine's tag_1 holds 9 bits)", node=name)
    g = np.abs(np.asarray(mantissa_gain, dtype=np.float64))
    err = np.maximum(np.asarray(error_range, dtype=np.float64), 1e-12)

    def valid(e_w: int, e_a: int) -> bool:  # every product's exponent within the engine's -7..8
        return all(S_EXP_MIN <= x <= S_EXP_MAX for x in (e_w, e_w + e3 + 2, e_w + e_a + 2))

    def need(e_a: int) -> float:  # 2^ew >= this: y2 uses its 7 bits for the calibrated |L|
        return float(np.max(spec.rate * g * 32.0 * err / (TRACE_MAX * tag_scale(e_a, ky1))))

    # per ea, the smallest valid ew with 2^ew >= need (y2 within 127); the largest ea (tag_1's
    # resolution) at which that gives y2 its full range (2^ew < 2 need); else (a rate too small
    # for that at any ea) the ea that leaves y2 the most levels: lowering ea halves Ke and
    # doubles y2 until the exponent ew + ea + 2 >= -7 binds
    options = {}
    for e_a in range(ea_top, S_EXP_MIN - 1, -1):
        e_w = next((e for e in range(S_EXP_MIN, S_EXP_MAX + 1) if 2.0**e >= need(e_a) and valid(e, e_a)), None)
        if e_w is not None:
            options[e_a] = (e_w, need(e_a) / 2.0**e_w)  # (ew, the fraction of y2's range used)
    full = [e_a for e_a, (_, used) in options.items() if used > 0.5]
    if full:
        ea = max(full)
    elif options:
        ea = max(options, key=lambda e_a: (options[e_a][1], e_a))
    else:
        ea = ea_top
    ew = options[ea][0] if ea in options else None
    ke = tag_scale(ea, ky1)
    if shared_ky2 is not None:  # y2 is the population's: this synapse's exponent makes up its weight scale
        x = np.log2(spec.rate * g * 32.0 / (np.asarray(shared_ky2, dtype=np.float64) * ke))
        ew = int(np.rint(x[0]))
        exps = (ew, ew + e3 + 2, ew + ea + 2)
        if np.abs(x - ew).max() > 1e-9 or not all(S_EXP_MIN <= v <= S_EXP_MAX for v in exps):
            raise IRError(f"plasticity 'eprop' in fixed point: the e-prop connections into '{spec.target}' share "
                          "one set of integer factors (y1..y3), and this connection's weight scale would need a rule "
                          f"constant 2^{float(np.mean(x)):.3g} (a power of 2 within 2^{S_EXP_MIN}..2^{S_EXP_MAX} "
                          "for every product); compile with precision=\"float\"", node=name)
        ky2 = np.asarray(shared_ky2, dtype=np.float64)
    elif ew is None:
        raise IRError(f"learning rate {spec.rate:g} per step is too large for Lava's fixed learning engine: e-prop's "
                      f"weight products need a rule constant outside 2^{S_EXP_MIN}..2^{S_EXP_MAX} (lower lr)",
                      node=name)
    else:
        ky2 = spec.rate * g * 32.0 / (2.0**ew * ke)
    if float(np.min(ky2 * err)) < 8.0:
        raise IRError(f"learning rate {spec.rate:g} per step is too small for Lava's fixed learning engine: e-prop's "
                      f"learning signal gets only {float(np.min(ky2 * err)):.2g} y2 levels (raise lr, or the "
                      "weights' scale)", node=name)
    unit = np.full(g.shape, int(round(v_scale)), dtype=np.int64)
    y1_shift = 24
    y1_gain = np.rint(ky1 * gamma / unit * 2.0**y1_shift).astype(np.int64)
    fb = np.asarray(chip.feedback, dtype=np.float64) * (ky2 / err_scale)[:, None]
    top = float(np.max(np.abs(fb)))
    y2_shift = max(1, min(40, Y2_SHIFT_BITS - int(np.ceil(np.log2(top))))) if top > 0 else 1
    return FixedEProp(name=name, impulse=impulse, tau=tau, ea=ea, e3=e3, ew=ew, y3=-big_y, ky1=ky1, ky2=ky2,
                      ke=ke, y1_gain=y1_gain, y1_shift=y1_shift, unit=unit,
                      feedback=np.rint(fb * 2.0**y2_shift).astype(np.int64), y2_shift=y2_shift,
                      error_range=err, ebar_range=ebar_range, **(error_path or {}))


V_MESSAGE_BITS = 24
"""The readout's membrane message to an e-prop post: its integer membrane as it is (Lava's
fixed neurons hold v in 24 signed bits, a Loihi 2 graded spike carries a 24-bit payload)."""
ERR_PAYLOAD_TOP = 2**22
"""The calibrated error range maps to at most this many err payload units (a 24-bit err_in,
with 2x headroom above the calibration)."""
V_MANT_MIN = 32
"""The smallest largest-mantissa of diag(c) accepted (6 bits: c within 1/64)."""


def eprop_error_path(spec: LearningSpec, v_scale_ro: float, v_shift_ro: np.ndarray,
                     error_terms: np.ndarray) -> dict[str, Any]:
    """The integer path of an e-prop error computed on the chip (docs/onchip-learning.md, "e-prop
    in fixed point"): ``err(t) = a label(t - d) + c v_ro(t - k)`` reaches the post's err_in as
    ``E a label(t - d) + rint(E c v_shift_ro)`` (a RingBuffer; the shift only where the readout's
    term counts) plus Lava's fixed Dense ``(m * v_int(t - k)) >> -e`` (``m 2^e ~= E c / S_ro``) of
    the readout's integer membrane, sent as it is (24 bits). ``E`` the largest power of 2 that
    keeps the calibrated ``error_terms`` (``|a| label_max + |c| (v_peak + |v_shift|)`` per error
    neuron) within :data:`ERR_PAYLOAD_TOP`. One line naming the connection where ``c`` does not
    fit the Dense's 8-bit mantissas and weight exponent (-8..7)."""
    from neuromorph.errors import NeuromorphError

    from .quantize import quantize_weights

    name = spec.name
    terms = np.maximum(np.asarray(error_terms, dtype=np.float64), 1e-12)
    err_scale = 2.0**int(np.floor(np.log2(ERR_PAYLOAD_TOP / float(np.max(terms)))))
    c = np.asarray(spec.v_gain, dtype=np.float64)
    c_eff = c * err_scale / float(v_scale_ro)
    try:
        m, e = quantize_weights(np.diag(c_eff), f"{spec.v_source}->{spec.target}")
    except NeuromorphError:
        raise IRError(f"plasticity 'eprop' in fixed point: the readout's factor c = {float(np.max(np.abs(c))):g} "
                      f"of its error '{spec.error_output}' needs a weight above 254 * 2^7 on the membrane message "
                      f"(E c / S = {float(np.max(np.abs(c_eff))):.3g}); scale the readout or the error", node=name)
    m = np.diag(m).astype(np.int32)
    if int(np.max(np.abs(m))) < V_MANT_MIN:
        raise IRError(f"plasticity 'eprop' in fixed point: the readout's factor c = {float(np.max(np.abs(c))):g} of "
                      f"its error '{spec.error_output}' leaves the membrane message's weight only "
                      f"{int(np.max(np.abs(m)))} mantissa levels at exponent {e} (E c / S = "
                      f"{float(np.max(np.abs(c_eff))):.3g}; at least {V_MANT_MIN})", node=name)
    nz = c_eff != 0
    v_error = float(np.max(np.abs(m[nz] * 2.0**e - c_eff[nz]) / np.abs(c_eff[nz]), initial=0.0))
    v_bias = np.rint(err_scale * c * np.broadcast_to(np.asarray(v_shift_ro, dtype=np.float64), c.shape))
    return dict(err_scale=err_scale, v_weights=m, v_exp=int(e), v_bias=v_bias.astype(np.int64), v_error=v_error,
                error_terms=terms)


def eprop_label_payloads(rule: FixedEProp, spec: LearningSpec, label: Optional[np.ndarray], n: int, t: int,
                         period: int, offset: int, total: int) -> np.ndarray:
    """The label part of an e-prop error computed on the chip as the post's RingBuffer plays
    it into ``err_in``, [total, n_err] int64: ``rint(E a label(k - d)) + v_bias [k >= k_ro]``
    (k_ro = spec.v_delay: the readout's term counts from there) at the post's chip step
    ``offset + j*period + k``, 0 elsewhere."""
    pay = np.rint(rule.err_scale * _label_term(spec, label, n, t))
    if rule.v_bias is not None and spec.v_delay < t:
        pay[:, spec.v_delay:] += rule.v_bias
    return error_stream(pay, n, t, period, offset, total).astype(np.int64)


def eprop_message_payloads(rule: FixedEProp, v_int: np.ndarray, *, ro_offset: int, delay: int, period: int,
                           total: int) -> np.ndarray:
    """The readout's part of the error as Lava's fixed Dense delivers it to ``err_in``,
    [total, n_err] int64: the readout sends its integer membrane ``v_int`` ([N, T, n_err]) at
    its chip steps ``ro_offset + j*period + s`` (zeros elsewhere); the synapse delivers
    ``(v_weights * v) >> -v_exp`` (``<< v_exp`` for a positive exponent) ``delay`` chip steps
    later (1, plus a DelayDense's delay)."""
    n, t, n_err = v_int.shape
    out = np.zeros((total, n_err), dtype=np.int64)
    w = np.asarray(rule.v_weights, dtype=np.int64)
    for j in range(n):
        for s in range(t):
            c = ro_offset + j * period + s + delay
            if c < total:
                acc = w * np.asarray(v_int[j, s], dtype=np.int64)
                out[c] = acc << rule.v_exp if rule.v_exp > 0 else acc >> -rule.v_exp
    return out


def eprop_error_payloads(rule: FixedEProp, spec: LearningSpec, label: Optional[np.ndarray], v_int: np.ndarray, *,
                         post_offset: int, ro_offset: int, period: int, total: int) -> np.ndarray:
    """The err payload stream as the e-prop post sees it on ``err_in`` (the sum of its two
    inputs), [total, n_err] int64, from the label (IR units, [N, T, n_err]) and the readout's
    recorded integer membrane: ``rule.y2`` of its rows is the y2 the post sends."""
    n, t, _ = v_int.shape
    labels = eprop_label_payloads(rule, spec, label, n, t, period, post_offset, total)
    delay = spec.v_delay + post_offset - ro_offset  # = 1 + (k - k_min)
    return labels + eprop_message_payloads(rule, v_int, ro_offset=ro_offset, delay=delay, period=period, total=total)


def _factor(name: str, values: dict[str, np.ndarray]) -> np.ndarray:
    width = 9 if name in ("t", "d") else 7
    return np.clip(values[name], -(2**width), 2**width - 1)


def _apply_products(acc: np.ndarray, products: list, values: dict[str, np.ndarray]) -> np.ndarray:
    lim = 2**15
    for dep, factors, m, e in products:
        p = np.broadcast_to(values[dep], acc.shape).astype(np.int64)
        width = 4
        for f in factors:
            p = p * _factor(f, values)
            width += 9 if f in ("t", "d") else 7
        p = (p * m) >> max(0, width - 15)
        p = np.clip(p << (e + 7), -lim - 1, lim - 1)
        acc = np.clip(acc + p, -lim - 1, lim - 1)
    return acc


def engine_eprop_fixed(rule: FixedEProp, w0: np.ndarray, pre: np.ndarray, y1: np.ndarray, y2: np.ndarray,
                       y3: np.ndarray, *, offset: int, steps: int, period: int, samples: int,
                       rng_seed: int) -> np.ndarray:
    """Lava's fixed engine on one e-prop synapse, chip step by chip step (the same integers
    and random numbers as Lava 0.10.0): ``pre`` [total, in] 0/1, ``y1``..``y3`` [total, out]
    what the post sent; ``steps`` the window's learning steps (T + 1: the lagged rule's idle
    step), the window reset zeroing x1, tag_1 and tag_2. Returns the weights after each sample."""
    total = len(pre)
    w = (np.asarray(w0, dtype=np.int64) >> 1) << 1
    tag = np.zeros_like(w)
    d = np.zeros_like(w)  # tag_2: the previous step's x1
    x1 = np.zeros(pre.shape[1], dtype=np.int64)
    decay = np.random.default_rng(rng_seed).random(2 * total + 1)
    w_rand = np.random.default_rng(CONN_VAR_SEED).random(total + 1)
    products = rule.products()
    out = np.zeros((samples, *w.shape), dtype=np.int64)
    for c in range(total):
        j, k = divmod(c - offset, period) if c >= offset else (-1, -1)
        if 0 <= j < samples and k == 0:
            x1[:] = 0
            tag[:] = 0
            d[:] = 0
        x1 = _stochastic(rule.keep * x1, decay[2 * (c + 1)])
        spiked = pre[c] != 0
        x1[spiked] = np.minimum(x1[spiked] + rule.impulse, TRACE_MAX)
        values = {"u": np.ones((1, 1), dtype=np.int64), "x0": spiked.astype(np.int64)[None, :],
                  "x1": x1[None, :], "y1": np.asarray(y1[c], dtype=np.int64)[:, None],
                  "y2": np.asarray(y2[c], dtype=np.int64)[:, None], "y3": np.asarray(y3[c], dtype=np.int64)[:, None],
                  "t": tag, "d": d}
        r = w_rand[c + 1]
        acc_w = _apply_products(w << 7, products["weights"], values)
        acc_t = _apply_products(tag << 7, products["tag_1"], values)
        acc_d = np.maximum(0, _apply_products(d << 7, products["tag_2"], values))  # tag_2 is unsigned
        w = np.clip(_stochastic(acc_w / 128.0, r), WEIGHT_LO, WEIGHT_HI)
        tag = np.clip(_stochastic(acc_t / 128.0, r), -(2**8) - 1, 2**8 - 1)
        d = np.clip(_stochastic(acc_d / 128.0, r), 0, 2**8 - 1)
        if 0 <= j < samples and k == steps - 1:
            out[j] = w
    return out


def eprop_float_engine(rule: FixedEProp, w0: np.ndarray, pre: np.ndarray, y1: np.ndarray, y2: np.ndarray,
                       y3: np.ndarray, *, offset: int, steps: int, period: int, samples: int,
                       peaks: dict[str, float] | None = None) -> np.ndarray:
    """The real-valued rule the fixed engine rounds: the same pre spikes and factors, exact
    trace ``xbar <- keep xbar + I spike`` (impulse I), exact eligibility and weight products
    (no floor, no stochastic rounding, no saturation)::

        tag += 2^e3 / 32 y3 tag + 2^(ea-5) y1 xbar(c-1)     (= Ke psi keep xbar(c-1) / I)
        w   += 2^ew / 32 y2 tag(new)

    the engine's ``d = x1(c-1)`` replaced by the exact previous trace: ``keep xbar(c-1)`` is
    the IR's decayed previous trace exactly (keep folded into Ke), where the former rule's
    ``x1(c) - I x0(c) = SR(keep x1(c-1))`` also rounded the step's decay.
    [samples, out, in] float64 mantissas. ``peaks``
    (a dict, filled in): the largest |weight| and |tag| of any step, to tell whether the
    fixed engine would saturate (:func:`eprop_fixed_bound`)."""
    w = ((np.asarray(w0, dtype=np.int64) >> 1) << 1).astype(np.float64)
    tag = np.zeros_like(w)
    x1 = np.zeros(pre.shape[1])
    out = np.zeros((samples, *w.shape))
    for c in range(len(pre)):
        j, k = divmod(c - offset, period) if c >= offset else (-1, -1)
        if 0 <= j < samples and k == 0:
            x1[:] = 0.0
            tag[:] = 0.0
        prev = x1  # xbar(c-1): 0 at a sample's first step
        x1 = rule.keep * x1 + rule.impulse * (pre[c] != 0).astype(np.float64)
        a, b, d = (np.asarray(v[c], dtype=np.float64)[:, None] for v in (y1, y2, y3))
        tag = tag + 2.0**rule.e3 / 32.0 * d * tag + 2.0**(rule.ea - 5) * a * prev[None, :]
        w = w + 2.0**rule.ew / 32.0 * b * tag
        if peaks is not None:
            peaks["weight"] = max(peaks.get("weight", 0.0), float(np.abs(w).max(initial=0.0)))
            peaks["tag"] = max(peaks.get("tag", 0.0), float(np.abs(tag).max(initial=0.0)))
        if 0 <= j < samples and k == steps - 1:
            out[j] = w
    return out


def eprop_fixed_bound(rule: FixedEProp, pre: np.ndarray, y1: np.ndarray, y2: np.ndarray, y3: np.ndarray, *,
                      offset: int, steps: int, period: int, samples: int) -> tuple[np.ndarray, np.ndarray]:
    """A worst-case bound on ``|engine_eprop_fixed - eprop_float_engine|`` (weight
    mantissas, per post neuron, after each sample) for given factor streams, valid while
    no weight, tag or accumulator saturates; and the bound on the tag's error it carries
    ([samples, out] each; docs/onchip-learning.md, "e-prop in fixed point").

    Per chip step, with ``rho = 1 + 2^e3 y3 / 32`` (the eligibility's decay; y3 = -Y in a
    window, 0 where the post is idle) and ``E(k) = sum_{i<k} keep^i`` the bound on
    ``|x1 - xbar|`` k steps into a sample (as :func:`fixed_bound`: each decay's stochastic
    rounding, less than 1, decayed by later steps; ``E(0) = 0``), the engine's ``d`` at the
    k-th step is ``x1`` of the step before (tag_2 <- x1 is exact: no bits shifted off, no
    rounding), so its error is below ``E(k-1)`` (0 at k = 0: tag_2 zeroed), and the errors of
    the tag and the weight, zeroed with the tag at each sample's start (the weights' error
    carries over samples), satisfy::

        |e_t(c)| <= rho |e_t(c-1)| + 2^(ea-5) |y1| E(k-1) + F_t + 1
        |e_w(c)| <= |e_w(c-1)| + 2^ew / 32 |y2| (rho |e_t(c-1)| + 2^(ea-5) |y1| E(k-1))
                    + [y2 != 0] (F_w + 1)

    The engine evaluates every product from the old tag, so the weight sees the tag's
    error of the step before, decayed; each product's floor loses less than ``2^e`` of its
    constant as written (``FixedEProp.products``, every weight and tag_1 product shifts bits
    off): F_t and F_w are those sums; the stochastic roundings of the tag and of the weight
    lose less than 1 each (the weight's only where a weight product is nonzero)."""
    total = len(pre)
    n_out = np.asarray(y2).shape[1]
    a = np.abs(np.clip(y1, -TRACE_MAX - 1, TRACE_MAX)).astype(np.float64)
    b = np.abs(np.clip(y2, -TRACE_MAX - 1, TRACE_MAX)).astype(np.float64)
    rho = np.abs(1.0 + 2.0**rule.e3 * np.clip(y3, -TRACE_MAX - 1, TRACE_MAX).astype(np.float64) / 32.0)
    products = rule.products()
    # each product's floor loses less than its constant's 2^e where bits are shifted off;
    # then the stochastic rounding, less than 1
    tag_floor = sum(2.0**e for _, factors, _, e in products["tag_1"] if product_shift(factors)) + 1.0
    w_floor = sum(2.0**e for _, factors, _, e in products["weights"] if product_shift(factors)) + 1.0
    e_tag, e_w, e_x = np.zeros(n_out), np.zeros(n_out), 0.0
    out_w, out_t = np.zeros((samples, n_out)), np.zeros((samples, n_out))
    for c in range(total):
        j, k = divmod(c - offset, period) if c >= offset else (-1, -1)
        if 0 <= j < samples and k == 0:
            e_tag[:] = 0.0
            e_d, e_x = 0.0, 0.0  # d = 0 and x1 = I x0: exact
        else:
            e_d = e_x  # d = x1(c-1): E(k-1)
            e_x = rule.keep * e_x + 1.0  # E(k): this step's decay rounding, and the earlier ones decayed
        trace = 2.0**(rule.ea - 5) * a[c] * e_d
        e_w = e_w + 2.0**rule.ew / 32.0 * b[c] * (rho[c] * e_tag + trace) + w_floor * (b[c] != 0)
        e_tag = rho[c] * e_tag + trace + tag_floor
        if 0 <= j < samples and k == steps - 1:
            out_w[j], out_t[j] = e_w, e_tag
    return out_w, out_t
