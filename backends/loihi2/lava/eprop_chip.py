"""On-chip e-prop for a LIF population in Lava's learning engine (float), standalone.

The Loihi 2 target runs the same mapping (learning_model.py: ``eprop_learning_spec``;
lava/learning.py: ``eprop_rule``, ``EPropGroup``; docs/onchip-learning.md, "e-prop on
chip"), with the one-step lag below written in the IR as ``EProp(delay=1)``:
``reference(lag=1)`` is ``simulate`` of that rule. This module keeps the one-layer form
for the tests that compare it with torch's e-prop gradient.

The IR rule (docs/semantics.md section 6, ``EProp``; docs/eprop.md sections 3 and 5), for a
connection ``W`` [n_out, n_in] into a LIF population with reset by subtraction (rho = 1)::

    eps_ji(t)  = (1 - dv) eps_ji(t-1) + gain_j x_i(t)
    psi_j(t)   = gamma * max(0, 1 - |u_j(t) - v_threshold_j|)        u: membrane before the reset
    ebar_ji(t) = (1 - dk) ebar_ji(t-1) + psi_j(t) eps_ji(t)           dk = dt/tau_out
    L_j(t)     = sum_k feedback_jk err_k(t)                           (feedback None: L = err)
    D_ji(t)    = rate L_j(t) ebar_ji(t)                               rate = dt*lr
    W(t+1)     = W(t) + D(t)                                          (t_epoch = 1)

How it maps onto Lava 0.10.0's engine (lava/magma/core/learning, ``LearningConnectionModelFloat``)
=================================================================================================

1. **eps factorises.** With rho = 1 and one ``dv`` for the whole population,
   ``eps_ji(t) = gain_j xbar_i(t)``, ``xbar_i(t) = (1 - dv) xbar_i(t-1) + x_i(t)``: a
   *presynaptic* trace, i.e. the synapse's ``x1`` (impulse 1, Lava tau ``-1/ln(1 - dv)``;
   the float engine decays by ``exp(-1/tau)``, the same factor). With a reset to a value the
   trace is cut per *post* neuron at its spikes (rho_j = 1 - z_j(t-1)), which a per-pre trace
   cannot hold: refused. A per-neuron ``dv`` would need one ``x1`` per post neuron: refused
   (split the population by ``dv``). ``dv = 1`` is refused too (see 3.).

2. **Timing on the chip.** Lava chip steps ``c = 1, 2, ...`` (``time_step``). Phases of one
   chip step: every process's ``run_spk`` (the synapse first *sends* what it accumulated at
   ``c - 1``, then receives its input spikes, accumulates them with the weights it has now,
   then receives y1..y3 from the post neuron's ``run_spk`` of the *same* chip step), then
   the synapse's ``run_lrn`` (``t_epoch = 1``: every step): ``x1`` decays and takes this
   chip step's impulses, ``x0`` = this chip step's input spikes, then ``dw``, ``dd``, ``dt``
   are evaluated **all from the old tag_1, tag_2, weights** (the applier arguments are
   gathered before any target is written) and the new values written.

   The synapse receives the IR input ``x(t)`` at chip step ``c_x(t)``; the post neuron
   computes IR step ``t`` at ``c_x(t) + 1`` (Lava's Dense delivers one step late). So at the
   chip step where the post sends ``psi(t)``, the synapse's ``x1`` already holds
   ``xbar(t + 1) = (1 - dv) xbar(t) + x(t + 1)`` and ``x0 = x(t + 1)``:

       xbar(t) = (x1 - x0) / (1 - dv)          (exact; needs dv < 1)

3. **The rule.** The post sends every chip step, for its IR step ``t``:

       y1_j = psi_j(t) gain_j / (1 - dv)       (pseudo-derivative, from its own u before reset)
       y2_j = gain_j rate L_j(t)               (learning signal; gain_j because the chip's
                                                 weights are gain_j W_ji, as netlist.py does)
       y3_j = -dk                              (the filter's decay as a trace: a rule constant
                                                 is m*2^e with |m| <= 7, so 1 - dk is not
                                                 exact as a literal, even in float)

   and the synapse runs ``Loihi3FLearningRule`` with

       dt = u0*y3*t + u0*y1*x1 - x0*y1                          tag_1 <- ebar(t)
       dw = u0*y2*t + u0*y2*y3*t + u0*y2*y1*x1 - x0*y2*y1       weights += gain*rate*L(t)*ebar(t)

   ``dw`` spells out ``y2 * tag_1(new)`` because the engine evaluates ``dw`` from the *old*
   tag_1 (= ebar(t-1)): ``y2 * ((1 - dk) t + y1 (x1 - x0))``. y1..y3 get tau ``2**62``
   (decay factor exactly 1.0; Loihi3FLearningRule's 65535 would shrink them by 1.5e-5).
   ``tag_2``, ``x2``, ``y0`` are unused; every constant of the rule is +-1 (exact).

4. **The one-step learning lag (not an offset).** The update ``D(t)`` needs ``u(t)``, which the
   chip knows at chip step ``c_x(t) + 1``; but the synapse has already accumulated
   ``x(t + 1)`` with its weights in ``run_spk`` of that very step, before ``run_lrn``. So the
   chip transmits ``x(t + 1)`` with ``W(t) = W(t+1) - D(t)``: the increment of step ``t``
   first acts on the input of step ``t + 2``. This is a causal loop (u(t+1) depends on
   W(t+1) x(t+1), which depends on u(t)), so no shift of streams removes it; a chip whose
   synapse delivers one step late cannot run the IR's schedule. The chip computes exactly

       W_chip(t + 1) = W(t + 1) - D(t)     for transmission, W_chip(T) = W(T) at the end,

   which :func:`reference` implements (``lag=1``; ``lag=0`` is the IR's rule, equal to
   ``neuromorph.simulate``). The two runs coincide exactly whenever ``D(t) x(t + 1) = 0``
   for every step, e.g. when the connection's input is silent in the step after each
   step with a nonzero error (the tests build this case), or when the error is nonzero
   only in a window where the input is silent (a decision window after the cue, as in
   torch's e-prop, which holds the weights for the whole window anyway). Otherwise they
   differ at second order in the rate (measured: see tests/test_onchip_eprop.py).

5. **Schedule.** From a RingBuffer input, ``c_x(t) = t + 1``; the post computes step ``t``
   at chip step ``t + 2`` (``start = 2``: at chip step 1 it is idle, sends zeros, keeps
   ``v = v_init``), receives ``err(t)`` at that chip step (the error RingBuffer is shifted by
   one step), and a run of ``T`` IR steps takes ``T + 1`` chip steps (the input gets one
   zero column: ``x(T) = 0``, so ``x1 - x0`` stays exact at the last step).

Numpy only inside the models; this module imports on its own (Lava executes the modules
of this package as top-level modules when it searches for models): no dataclasses, and
it defines no model for Lava's own processes (the synapse is Lava's
``PyLearningDenseModelFloat``, unchanged).
"""
from typing import Any, Optional

import numpy as np

from neuromorph.backends.loihi2.lava.compat import import_lava

import_lava()

from lava.magma.core.decorator import implements, requires, tag  # noqa: E402
from lava.magma.core.learning.learning_rule import Loihi3FLearningRule  # noqa: E402
from lava.magma.core.model.py.model import PyLoihiProcessModel  # noqa: E402
from lava.magma.core.model.py.ports import PyInPort, PyOutPort  # noqa: E402
from lava.magma.core.model.py.type import LavaPyType  # noqa: E402
from lava.magma.core.process.ports.ports import InPort, OutPort  # noqa: E402
from lava.magma.core.process.process import AbstractProcess  # noqa: E402
from lava.magma.core.process.variable import Var  # noqa: E402
from lava.magma.core.resources import CPU  # noqa: E402
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol  # noqa: E402

from neuromorph.backends.loihi2.lava.learning import EPROP_DT, EPROP_DW  # noqa: E402

NO_DECAY_TAU = 2**62
"""A trace tau whose float decay factor ``exp(-1/tau)`` is exactly 1.0."""
DT_RULE = EPROP_DT
"""tag_1 <- (1 - dk) tag_1 + psi gain xbar(t)   (module docstring, 3.)"""
DW_RULE = EPROP_DW
"""weights += y2 * tag_1(new)   (module docstring, 3.)"""
START = 2
"""Chip step (Lava numbering) at which the post computes IR step 0, fed from a RingBuffer."""


class EPropChipSpec:
    """What one e-prop connection becomes on the chip; arrays are per post neuron."""

    def __init__(self, *, weight: np.ndarray, dv: float, gain: np.ndarray, leak: np.ndarray,
                 v_threshold: np.ndarray, v_reset: np.ndarray, v_init: np.ndarray, rate: float, dk: float,
                 gamma: float, feedback: Optional[np.ndarray], n_err: int) -> None:
        n = weight.shape[0]
        b = lambda a: np.broadcast_to(np.asarray(a, dtype=np.float64), (n,)).copy()  # noqa: E731
        self.weight = np.asarray(weight, dtype=np.float64).copy()  # model units [n_out, n_in]
        self.dv, self.rate, self.dk, self.gamma = float(dv), float(rate), float(dk), float(gamma)
        self.gain, self.leak, self.v_threshold = b(gain), b(leak), b(v_threshold)
        self.v_reset, self.v_init = b(v_reset), b(v_init)
        self.feedback = np.eye(n) if feedback is None else np.asarray(feedback, dtype=np.float64).copy()
        self.n_err = int(n_err)

    @property
    def keep(self) -> float:
        return 1.0 - self.dv

    @property
    def chip_weight(self) -> np.ndarray:
        """The synapse's weights: the model's times the post's input gain (netlist.py's convention)."""
        return self.gain[:, None] * self.weight


def eprop_spec(graph: Any, name: str, dt: Optional[float] = None) -> EPropChipSpec:
    """The chip form of plastic connection ``name`` (an EProp rule into a LIF population),
    or a one-line IRError naming it for what the engine cannot hold."""
    from neuromorph.backends.loihi2.learning_model import eprop_checks
    from neuromorph.discretize import resolve_dt
    from neuromorph.errors import IRError
    from neuromorph.ir import EProp, Linear

    node = graph.nodes[name]
    rule = getattr(node, "plasticity", None)
    if not isinstance(rule, EProp):
        raise IRError("on-chip e-prop lowers connections that carry an 'eprop' rule", node=name)
    p, c, post = eprop_checks(graph, name, resolve_dt(graph, dt))  # the target's refusals, one line each
    dv = np.unique(np.asarray(p.dv, dtype=np.float64))
    gain = np.broadcast_to(np.asarray(p.gain, dtype=np.float64), graph.shape(post))
    bias = 0.0 if isinstance(node, Linear) else np.asarray(node.bias, dtype=np.float64)
    n_err = graph.shape(rule.error)[0]
    return EPropChipSpec(weight=node.weight, dv=float(dv[0]), gain=gain, leak=p.leak + p.gain * bias,
                         v_threshold=p.v_threshold, v_reset=p.v_reset, v_init=p.v_init, rate=c.rate, dk=c.dk,
                         gamma=c.gamma, feedback=c.feedback, n_err=n_err)


def eprop_rule(spec: EPropChipSpec, rng_seed: int = 1) -> Loihi3FLearningRule:
    """The float Loihi3FLearningRule of the mapping (module docstring, 3.)."""
    rule = Loihi3FLearningRule(dw=DW_RULE, dt=DT_RULE, x1_impulse=1.0, x1_tau=float(-1.0 / np.log(spec.keep)),
                               t_epoch=1, rng_seed=int(rng_seed))
    rule.y1_tau = rule.y2_tau = rule.y3_tau = NO_DECAY_TAU
    return rule


# ---------------------------------------------------------------- the post population


class EPropLIF(AbstractProcess):
    """A LIF population in IR units (reset by subtraction) that also sends e-prop's post
    factors to its plastic synapse: ``y1 = psi*gain/(1-dv)``, ``y2 = gain*rate*(feedback @ err)``,
    ``y3 = -dk`` (module docstring, 3.). ``a_in`` carries the chip weights' sum (gain folded),
    ``err_in`` the error stream; idle (sends zeros, y3 included, keeps ``v``) before chip step
    ``start``. ``y1_sum``/``y2_sum``: sums of |y1|, |y2| sent (a guard: a rule whose factor
    stays 0 never learns)."""

    def __init__(self, *, spec: EPropChipSpec, start: int = START, name: Optional[str] = None) -> None:
        n, m = spec.weight.shape[0], spec.n_err
        super().__init__(shape=(n,), name=name)
        self.a_in = InPort(shape=(n,))
        self.err_in = InPort(shape=(m,))
        self.s_out = OutPort(shape=(n,))
        self.y1_out = OutPort(shape=(n,))
        self.y2_out = OutPort(shape=(n,))
        self.y3_out = OutPort(shape=(n,))
        self.v = Var(shape=(n,), init=spec.v_init.copy())
        self.keep = Var(shape=(1,), init=np.array([spec.keep]))
        self.leak = Var(shape=(n,), init=spec.leak.copy())
        self.v_threshold = Var(shape=(n,), init=spec.v_threshold.copy())
        self.v_sub = Var(shape=(n,), init=(spec.v_threshold - spec.v_reset).copy())
        self.gamma = Var(shape=(1,), init=np.array([spec.gamma]))
        self.y1_gain = Var(shape=(n,), init=spec.gain / spec.keep)
        self.y2_gain = Var(shape=(n,), init=spec.gain * spec.rate)
        self.feedback = Var(shape=(n, m), init=spec.feedback.copy())
        self.neg_dk = Var(shape=(1,), init=np.array([-spec.dk]))
        self.first_step = Var(shape=(1,), init=np.array([int(start)]))
        self.y1_sum = Var(shape=(1,), init=np.zeros(1))
        self.y2_sum = Var(shape=(1,), init=np.zeros(1))
        self.spike_count = Var(shape=(1,), init=np.zeros(1))


@implements(proc=EPropLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyEPropLIFFloat(PyLoihiProcessModel):
    """Float64, the IR's LIF step (docs/semantics.md section 3) and e-prop's post factors."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    err_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    y1_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    y2_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    y3_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    v: np.ndarray = LavaPyType(np.ndarray, float)
    keep: np.ndarray = LavaPyType(np.ndarray, float)
    leak: np.ndarray = LavaPyType(np.ndarray, float)
    v_threshold: np.ndarray = LavaPyType(np.ndarray, float)
    v_sub: np.ndarray = LavaPyType(np.ndarray, float)
    gamma: np.ndarray = LavaPyType(np.ndarray, float)
    y1_gain: np.ndarray = LavaPyType(np.ndarray, float)
    y2_gain: np.ndarray = LavaPyType(np.ndarray, float)
    feedback: np.ndarray = LavaPyType(np.ndarray, float)
    neg_dk: np.ndarray = LavaPyType(np.ndarray, float)
    first_step: np.ndarray = LavaPyType(np.ndarray, int)
    y1_sum: np.ndarray = LavaPyType(np.ndarray, float)
    y2_sum: np.ndarray = LavaPyType(np.ndarray, float)
    spike_count: np.ndarray = LavaPyType(np.ndarray, float)

    def run_spk(self) -> None:
        a = self.a_in.recv()
        err = self.err_in.recv()
        n = self.v.shape[0]
        if self.time_step < int(self.first_step[0]):
            zero = np.zeros(n)
            for port in (self.s_out, self.y1_out, self.y2_out, self.y3_out):
                port.send(zero)
            return
        u = self.keep[0] * self.v + self.leak + a  # the IR's (1 - dv) v + leak + gain X
        z = u > self.v_threshold
        self.v = np.where(z, u - self.v_sub, u)
        psi = self.gamma[0] * np.maximum(0.0, 1.0 - np.abs(u - self.v_threshold))
        y1 = psi * self.y1_gain
        signal = (self.feedback * err[None, :]).sum(1)  # L_j = sum_k feedback_jk err_k (as simulate sums it)
        y2 = self.y2_gain * signal
        self.s_out.send(z.astype(float))
        self.y1_out.send(y1)
        self.y2_out.send(y2)
        self.y3_out.send(np.full(n, self.neg_dk[0]))
        self.y1_sum[0] += np.abs(y1).sum()
        self.y2_sum[0] += np.abs(y2).sum()
        self.spike_count[0] += z.sum()


def connect_eprop(dense: Any, post: EPropLIF, traces: bool = True) -> None:
    """Wire a LearningDense to its e-prop post population: activation in, y1..y3 out
    (``traces=False`` leaves y1..y3 unconnected: Lava then reads zeros and nothing is learnt;
    for the guard test only)."""
    dense.a_out.connect(post.a_in)
    if traces:
        post.y1_out.connect(dense.s_in_y1)
        post.y2_out.connect(dense.s_in_y2)
        post.y3_out.connect(dense.s_in_y3)


# ---------------------------------------------------------------- one layer in Lava


class ChipResult:
    """A Lava run of one e-prop layer: the weights after it (model units), the synapse's
    tag_1 (ebar of the last step, chip units), the post's spike count and y sums."""

    def __init__(self, weight: np.ndarray, tag_1: np.ndarray, spikes: float, y1_sum: float, y2_sum: float) -> None:
        self.weight, self.tag_1, self.spikes, self.y1_sum, self.y2_sum = weight, tag_1, spikes, y1_sum, y2_sum


def run_layer(spec: EPropChipSpec, x: np.ndarray, err: np.ndarray, *, traces: bool = True) -> ChipResult:
    """Run ``RingBuffer(x) -> LearningDense (e-prop) -> EPropLIF`` in Lava float for the ``T``
    IR steps of ``x`` [T, n_in] (0/1) with the error stream ``err`` [T, n_err]; ``T + 1`` chip
    steps (module docstring, 5.). Lava is stopped whatever happens."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.models import PyLearningDenseModelFloat
    from lava.proc.dense.process import LearningDense
    from lava.proc.io.source import PySendModelFloat, RingBuffer

    x = np.asarray(x, dtype=np.float64)
    err = np.asarray(err, dtype=np.float64).reshape(x.shape[0], -1)
    if not np.all((x == 0) | (x == 1)):
        raise ValueError("the presynaptic trace counts spikes: the input of an e-prop synapse must be 0/1")
    steps = x.shape[0]
    src_data = np.concatenate([x, np.zeros((1, x.shape[1]))]).T  # x(t) at chip step t + 1; x(T) = 0
    err_data = np.concatenate([np.zeros((START - 1, err.shape[1])), err]).T  # err(t) at chip step t + START
    src = RingBuffer(data=np.ascontiguousarray(src_data))
    errs = RingBuffer(data=np.ascontiguousarray(err_data))
    dense = LearningDense(weights=spec.chip_weight, learning_rule=eprop_rule(spec), name="eprop_synapse")
    post = EPropLIF(spec=spec, name="eprop_post")
    src.s_out.connect(dense.s_in)
    errs.s_out.connect(post.err_in)
    connect_eprop(dense, post, traces)
    models = {RingBuffer: PySendModelFloat, LearningDense: PyLearningDenseModelFloat, EPropLIF: PyEPropLIFFloat}
    cfg = Loihi2SimCfg(select_tag="floating_pt", exception_proc_model_map=models)
    from neuromorph.backends.loihi2.lava import lifecycle

    # RunGuard: Lava's workers die with this process and are killed when the block is left;
    # a run that failed or was interrupted (a test's timeout) is not asked to stop (a dead
    # worker would never answer), the guard ends it.
    with lifecycle.RunGuard():
        ran = False
        try:
            post.run(condition=RunSteps(num_steps=steps + START - 1), run_cfg=cfg)
            ran = True
            w = np.asarray(dense.weights.get(), dtype=np.float64) / spec.gain[:, None]
            tag_1 = np.asarray(dense.tag_1.get(), dtype=np.float64)
            out = ChipResult(w, tag_1, float(post.spike_count.get()[0]), float(post.y1_sum.get()[0]),
                             float(post.y2_sum.get()[0]))
        finally:
            if ran:
                post.stop()
            elif post.runtime is not None:
                post.runtime._is_running = post.runtime._is_started = False  # no stop() from __del__
    return out


# ---------------------------------------------------------------- numpy reference


def reference(spec: EPropChipSpec, x: np.ndarray, err: np.ndarray, lag: int = 0) -> dict:
    """The layer's e-prop in float64 numpy: ``lag=0`` is the IR's rule (docs/semantics.md
    section 6, as ``simulate`` runs it); ``lag=1`` what the chip computes (module docstring,
    4.): the increment of step t first transmits the input of step t + 2. Returns the
    final weights, the per-step weights used for transmission, and ``sum_t L(t) ebar(t)``
    (the raw eligibility-times-signal sum, model units)."""
    x = np.asarray(x, dtype=np.float64)
    err = np.asarray(err, dtype=np.float64).reshape(x.shape[0], -1)
    n, n_in = spec.weight.shape
    W, pending = spec.weight.copy(), np.zeros_like(spec.weight)
    v = spec.v_init.copy()
    eps, ebar, raw = np.zeros((n, n_in)), np.zeros((n, n_in)), np.zeros((n, n_in))
    used = []
    for t in range(x.shape[0]):
        W_t = W - pending if lag else W
        used.append(W_t)
        u = spec.keep * v + spec.leak + spec.gain * (W_t @ x[t])
        z = u > spec.v_threshold
        v = np.where(z, u - (spec.v_threshold - spec.v_reset), u)
        eps = spec.keep * eps + spec.gain[:, None] * x[t][None, :]
        psi = spec.gamma * np.maximum(0.0, 1.0 - np.abs(u - spec.v_threshold))
        ebar = (1.0 - spec.dk) * ebar + psi[:, None] * eps
        signal = (spec.feedback * err[t][None, :]).sum(1)
        raw += signal[:, None] * ebar
        pending = spec.rate * signal[:, None] * ebar
        W = W + pending
    return {"weight": W, "used": np.array(used), "raw": raw}
