"""On-chip learning in Lava: a plastic connection as Lava's ``LearningDense`` and its
post population as a ``TeacherGroup`` that sends the third factor (docs/onchip-learning.md).

- :func:`learning_rule`: the ``Loihi3FLearningRule`` of a ``LearningSpec``
  (backends/loihi2/learning_model.py): ``dw = u0 * x1 * y2``, ``x1`` with impulse 1 and
  the decay ``1 - dt/tau_pre``; the post traces y1..y3 are not decayed (Lava's 3F rule
  decays them with tau 65535, a relative change of 1.5e-5 per step: we set tau 2^62,
  whose decay factor is exactly 1.0), since the neuron overwrites them every step.
- ``LearningDense`` runs Lava's own learning engine (``PyLearningDenseModelFloat``),
  with two additions of ours (:class:`PlasticDenseFloat`): the presynaptic traces are
  zeroed at the first step of every sample window (so that each sample learns from
  fresh traces, as the neuron state restarts), and the weights after the last learning
  step of each sample are written into a ``[N, out, in]`` ``.npy`` file the host reads.
- :class:`TeacherGroup`: a ``NeuronGroup`` (process.py) with a label input port
  ``label_in`` (a RingBuffer playing learning_model.label_stream) and an output port
  ``y2_out`` connected to the synapse's ``s_in_y2``: every chip step it sends
  ``y2 = y2_label * label + y2_v * v`` where ``v`` (IR units) is its membrane of the step,
  counted only at the window steps 0..T-2 (the step T-1 pairs with no input of the
  sample). Lava's ``LearningLIF`` never sends y2 and an unconnected port receives zeros,
  so a rule would silently never learn: this process is why it does.
- e-prop (docs/onchip-learning.md, "e-prop on chip"): :func:`eprop_rule` (``dt`` updates
  the eligibility ``tag_1``, ``dw`` the weights from it) and :class:`EPropGroup`, a LIF
  ``NeuronGroup`` (reset by subtraction) that also receives the error stream ``err_in``
  and sends ``y1 = psi * gain / (1 - dv)``, ``y2 = gain * rate * (feedback @ err)``,
  ``y3 = -dk`` to the synapse's ``s_in_y1..3`` (of every e-prop synapse into it); the
  window reset zeroes ``tag_1`` too (and ``tag_2``, which the fixed rule uses to keep the
  previous step's trace x1). An error computed in the graph arrives on ``err_in``
  as the sum of a label RingBuffer and the readout's membrane: the readout (a
  TeacherGroup, or a :class:`ReadoutGroup` when its connection does not learn) sends it
  on ``v_out`` through a Dense of weights ``diag(c)`` (fixed point: its 24-bit integer
  membrane through Lava's fixed Dense, :class:`_SendsVFixed`).
- STDP and reward-STDP (docs/onchip-learning.md, "STDP on chip"): :func:`pairing_rule`
  and :class:`PairGroup`, a spiking ``NeuronGroup`` that sends its spikes to the
  synapse's ``s_in_bap`` (the back-propagating action potential: the engine's ``y0``)
  and y1..y3 from its own post trace ``ybar`` and (reward-STDP) the reward stream
  ``r_in``; the window reset zeroes ``tag_2`` too (it holds the previous step's spikes).

Numpy only inside the models; every module of this package imports on its own (Lava
executes them as top-level modules when it searches for models).
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from neuromorph.backends.loihi2.lava.compat import import_lava

import_lava()

from lava.magma.core.decorator import implements, requires, tag  # noqa: E402
from lava.magma.core.learning.learning_rule import Loihi3FLearningRule  # noqa: E402
from lava.magma.core.model.py.ports import PyInPort, PyOutPort  # noqa: E402
from lava.magma.core.model.py.type import LavaPyType  # noqa: E402
from lava.magma.core.process.ports.ports import InPort, OutPort  # noqa: E402
from lava.magma.core.process.variable import Var  # noqa: E402
from lava.magma.core.resources import CPU  # noqa: E402
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol  # noqa: E402
from lava.proc.dense.models import PyLearningDenseModelBitApproximate, PyLearningDenseModelFloat  # noqa: E402
from lava.proc.dense.process import LearningDense  # noqa: E402

from neuromorph.backends.loihi2.lava.process import (  # noqa: E402
    FLOAT_PARAMS, PARAMS, NeuronGroup, _declare, _FixedTypes, _FloatTypes, _NeuronGroupModel,
)
from neuromorph.backends.loihi2.learning_model import FixedLearning  # noqa: E402
from neuromorph.backends.loihi2 import neuron_step  # noqa: E402
from neuromorph.backends.loihi2.neuron_step import FloatNeurons  # noqa: E402

NO_DECAY_TAU = 2**62
"""A trace tau whose decay factor ``exp(-1/tau)`` is exactly 1.0 in float64."""
VANISH_TAU = 1e-300
"""A float trace tau whose decay factor is exactly 0.0 (a trace that keeps this step only;
Lava's float engine leaves a tau of 0 undefined: NaN)."""
DW = "u0 * x1 * y2"
EPROP_DT = "u0 * y3 * t + u0 * y1 * x1 - x0 * y1"
"""e-prop: tag_1 <- (1 - dk) tag_1 + psi gain xbar(t)   (docs/onchip-learning.md)"""
EPROP_DW = "u0 * y2 * t + u0 * y2 * y3 * t + u0 * y2 * y1 * x1 - x0 * y2 * y1"
"""e-prop: weights += y2 * tag_1(new) (the engine evaluates dw from the old tag_1)."""
PAIR_DD = "u0 * x2 - u0 * d"
"""STDP / reward-STDP: tag_2 <- x2, this step's presynaptic spikes x(t + 1) (x2: impulse 1,
no memory), so that the next step reads x(t) from the old tag_2."""
STDP_DT = "u0 * x1 - u0 * t"
"""STDP: tag_1 <- x1 = xbar(t + 1), read as xbar(t) at the next step."""
STDP_DW = "y0 * y1 * t - u0 * y2 * d"
"""STDP: weights += gain lr (a_plus z(t) xbar(t) - a_minus ybar(t) x(t)) (y1 = gain lr a_plus,
y2 = gain lr a_minus ybar(t), t = xbar(t), d = x(t): the old tags)."""
RSTDP_DT = "u0 * y3 * t + y0 * x1 - y0 * x2 - u0 * y2 * d"
"""reward-STDP: tag_1 = c/s <- (1 - dc) tag_1 + z(t) (x1 - x2) - (a_minus/s) ybar(t) x(t),
with x1 - x2 = keep_x xbar(t) and s = a_plus/keep_x."""
RSTDP_DW = "u0 * y1 * t + u0 * y1 * y3 * t + y0 * y1 * x1 - y0 * y1 * x2 - u0 * y1 * y2 * d"
"""reward-STDP: weights += y1 * tag_1(new) = gain rate r(t) c(t), spelled out (the engine
evaluates dw from the old tag_1)."""


def _without_potentiation(rule: str) -> str:
    """The reward-STDP rule string without its ``y0`` products (a_plus = 0)."""
    return " ".join(rule.replace(" + y0 * x1 - y0 * x2", "").replace(" + y0 * y1 * x1 - y0 * y1 * x2", "").split())


def float_tau(keep: float) -> float:
    """Lava's float trace decays by ``exp(-1/tau)``: the tau of the decay factor ``keep``."""
    return VANISH_TAU if keep <= 0.0 else float(-1.0 / np.log(keep))


def learning_rule(keep: float, rng_seed: int = 1) -> Loihi3FLearningRule:
    """The float rule of a three-factor connection, with the exact trace decay ``keep``
    (the weight change per step is ``x1 * y2``: the neuron folds the rate into y2)."""
    rule = Loihi3FLearningRule(dw=DW, x1_impulse=1.0, x1_tau=float_tau(keep), t_epoch=1, rng_seed=int(rng_seed))
    rule.y1_tau = rule.y2_tau = rule.y3_tau = NO_DECAY_TAU
    return rule


def eprop_rule(keep: float, rng_seed: int = 1) -> Loihi3FLearningRule:
    """The float e-prop rule (:data:`EPROP_DT`, :data:`EPROP_DW`), the presynaptic trace
    ``x1`` decaying by ``keep = 1 - dt/tau_mem`` of the post, y1..y3 undecayed."""
    rule = Loihi3FLearningRule(dw=EPROP_DW, dt=EPROP_DT, x1_impulse=1.0, x1_tau=float_tau(keep), t_epoch=1,
                               rng_seed=int(rng_seed))
    rule.y1_tau = rule.y2_tau = rule.y3_tau = NO_DECAY_TAU
    return rule


def pairing_rule(chip: Any, rng_seed: int = 1) -> Loihi3FLearningRule:
    """The float STDP / reward-STDP rule of a ``learning_model.PairChip``: ``x1`` decays by
    ``keep_x`` (impulse 1), ``x2`` holds this step's spikes only, y1..y3 (sent by the post)
    are undecayed and take no impulse from the post's spikes (those are ``y0``)."""
    if chip.reward:
        dt, dw = RSTDP_DT, RSTDP_DW
        if not chip.potentiate:
            dt, dw = _without_potentiation(dt), _without_potentiation(dw)
    else:
        dt, dw = STDP_DT, STDP_DW
    rule = Loihi3FLearningRule(dw=dw, dt=dt, dd=PAIR_DD, x1_impulse=1.0, x1_tau=float_tau(chip.keep_x),
                               x2_impulse=1.0, x2_tau=VANISH_TAU, t_epoch=1, rng_seed=int(rng_seed))
    rule.y1_tau = rule.y2_tau = rule.y3_tau = NO_DECAY_TAU
    return rule


def fixed_learning_rule(rule: FixedLearning, rng_seed: int = 1) -> Loihi3FLearningRule:
    """The fixed-point rule (learning_model.FixedLearning): ``m * 2^e * u0 * x1 * y2``,
    integer impulse and tau, undecayed post traces (exp(-1/2^62) is 1.0: y2 is used as sent)."""
    lava_rule = Loihi3FLearningRule(dw=rule.dw(), x1_impulse=float(rule.impulse), x1_tau=int(rule.tau), t_epoch=1,
                                    rng_seed=int(rng_seed))
    lava_rule.y1_tau = lava_rule.y2_tau = lava_rule.y3_tau = NO_DECAY_TAU
    return lava_rule


def fixed_eprop_rule(rule: Any, rng_seed: int = 1) -> Loihi3FLearningRule:
    """The fixed-point e-prop rule (learning_model.FixedEProp: dw, dt with per-product
    constants; dd = u0 * x1 - u0 * d, tag_2 keeping the previous step's trace, which dt and dw
    read as d), integer impulse and tau, undecayed post traces."""
    lava_rule = Loihi3FLearningRule(dw=rule.dw_rule(), dd=rule.dd_rule(), dt=rule.dt_rule(),
                                    x1_impulse=float(rule.impulse),
                                    x1_tau=int(rule.tau), t_epoch=1, rng_seed=int(rng_seed))
    lava_rule.y1_tau = lava_rule.y2_tau = lava_rule.y3_tau = NO_DECAY_TAU
    return lava_rule


def plastic_dense(weights: np.ndarray, rule: Loihi3FLearningRule, *, offset: int, steps: int, period: int,
                  samples: int, record: str, name: str, **kwargs: Any) -> LearningDense:
    """Lava's LearningDense with the window schedule of its source (offset, T, P, N) and
    the path of the ``[N, out, in]`` file that receives its weights after each sample."""
    return LearningDense(weights=weights, learning_rule=rule, name=name, window_offset=int(offset),
                         window_steps=int(steps), window_period=int(period), window_samples=int(samples),
                         weight_record=record, **kwargs)


class _Windows:
    """Trace reset at window starts and weight snapshots at window ends (module docstring)."""

    def _setup_windows(self, proc_params: Any) -> None:
        self._w_offset = int(proc_params["window_offset"])
        self._w_steps = int(proc_params["window_steps"])
        self._w_period = int(proc_params["window_period"])
        self._w_samples = int(proc_params["window_samples"])
        self._w_path: str = proc_params["weight_record"]
        self._w_record: Optional[np.ndarray] = None

    def _window(self) -> tuple[int, int]:
        rel = self.time_step - 1 - self._w_offset  # type: ignore[attr-defined]
        if rel < 0:
            return -1, -1
        j, k = divmod(rel, self._w_period)
        return (j, k) if j < self._w_samples else (-1, -1)

    def run_spk(self) -> None:
        j, k = self._window()
        if j >= 0 and k == 0:  # a new sample: its traces (and the tags: e-prop's eligibility and
            # previous trace, STDP's previous spikes) start at 0
            self.x1 = np.zeros_like(self.x1)  # type: ignore[has-type]
            self.x2 = np.zeros_like(self.x2)  # type: ignore[has-type]
            self.tag_1 = np.zeros_like(self.tag_1)  # type: ignore[has-type]
            self.tag_2 = np.zeros_like(self.tag_2)  # type: ignore[has-type]
        super().run_spk()  # type: ignore[misc]

    def run_lrn(self) -> None:
        super().run_lrn()  # type: ignore[misc]
        j, k = self._window()
        if j >= 0 and k == self._w_steps - 1:
            if self._w_record is None:  # mapped on first use, inside Lava's worker process
                self._w_record = np.load(self._w_path, mmap_mode="r+")
            self._w_record[j] = self.weights  # type: ignore[attr-defined]


@implements(proc=LearningDense, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PlasticDenseFloat(_Windows, PyLearningDenseModelFloat):
    """Lava's float learning engine, windowed."""

    def __init__(self, proc_params: Any) -> None:
        super().__init__(proc_params)
        self._setup_windows(proc_params)


@implements(proc=LearningDense, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PlasticDenseFixed(_Windows, PyLearningDenseModelBitApproximate):
    """Lava's fixed (bit-approximate) learning engine, windowed; learning_model.engine_fixed
    is its arithmetic."""

    def __init__(self, proc_params: Any) -> None:
        super().__init__(proc_params)
        self._setup_windows(proc_params)


# ---------------------------------------------------------------- the post population


class TeacherGroup(NeuronGroup):
    """A NeuronGroup (one sample at a time, float) that also sends the third factor
    ``y2 = y2_label * label + y2_v * (v + v_shift)`` (module docstring); ``y2_label``,
    ``y2_v``: per neuron (learning_model.LearningSpec.y2_label / y2_v). ``y2_shift`` is
    kept for an integer form (``>> y2_shift``); 0 in float."""

    def __init__(self, *, y2_label: np.ndarray, y2_v: np.ndarray, v_shift: np.ndarray,
                 y2_shift: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        size = int(kwargs["size"])
        self.label_in = InPort(shape=(size,))
        self.y2_out = OutPort(shape=(size,))
        self.v_out = OutPort(shape=(size,))  # the membrane for an e-prop error (_SendsV, _SendsVFixed)
        self.y2_label = Var(shape=(size,), init=np.broadcast_to(y2_label, (size,)).copy())
        self.y2_v = Var(shape=(size,), init=np.broadcast_to(y2_v, (size,)).copy())
        self.v_shift = Var(shape=(size,), init=np.broadcast_to(v_shift, (size,)).copy())
        self.y2_shift = Var(shape=(1,), init=int(y2_shift))


class _PostLogic(_NeuronGroupModel):
    """One chip step of a post population that also sends its rule's factors, written
    once for every rule: outside a sample window it sends zero spikes and the rule's
    idle factors; a step that fails sends zeros on every port before it raises, so that
    no process downstream waits for it. A rule names the ports of its factors
    (``factor_ports``) and says what it receives besides ``a_in`` (:meth:`_receive`),
    its factors at idle steps (:meth:`_idle`, zeros by default) and after the
    population's step (:meth:`_factors`)."""

    factor_ports: tuple[str, ...] = ()

    def _receive(self) -> Any:
        return None

    def _idle(self, extra: Any) -> tuple[np.ndarray, ...]:
        return self._zero_factors()

    def _factors(self, s: np.ndarray, extra: Any, k: int) -> tuple[np.ndarray, ...]:
        raise NotImplementedError

    def _zero_factors(self) -> tuple[np.ndarray, ...]:
        return tuple(np.zeros(getattr(self, port).shape, self._dtype) for port in self.factor_ports)

    def _send_factors(self, factors: tuple[np.ndarray, ...]) -> None:
        for port, y in zip(self.factor_ports, factors):
            getattr(self, port).send(y)

    def _chip_step(self, time_step: int) -> None:
        a_in = self.a_in.recv()
        extra = self._receive()
        rel = time_step - 1 - self.offset
        j, k = divmod(rel, self.period)
        if rel < 0 or j >= self.samples or k >= self.steps:
            self.s_out.send(np.zeros(self.s_out.shape, self._dtype))
            self._send_factors(self._idle(extra))
            self._report(time_step)
            return
        try:
            s = self._update(a_in[None], j, k)[0]
            factors = self._factors(s, extra, k)
        except Exception as exc:
            self.s_out.send(np.zeros(self.s_out.shape, self._dtype))
            self._send_factors(self._zero_factors())
            raise RuntimeError(f"population '{self.population}', chip step {time_step - 1}: "
                               f"{type(exc).__name__}: {exc}") from None
        self.s_out.send(s)
        self._send_factors(factors)
        self._report(time_step)


class _TeacherLogic(_PostLogic):
    """The readout's step, then its third factor y2 from the label and its membrane (the
    label alone at idle steps and the window's last step)."""

    factor_ports = ("y2_out",)

    def _receive(self) -> np.ndarray:
        return self.label_in.recv()

    def _idle(self, label: np.ndarray) -> tuple[np.ndarray, ...]:
        return (self._y2(label, None),)

    def _factors(self, s: np.ndarray, label: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
        return (self._y2(label, self._state["v"][0] if k <= self.steps - 2 else None),)

    def _y2(self, label: np.ndarray, v: Optional[np.ndarray]) -> np.ndarray:
        raise NotImplementedError


class _SendsV:
    """Every chip step, the membrane of the step in IR units (``v + v_shift``) on ``v_out``
    at window steps, zeros at idle steps: the readout's part of an e-prop error Output,
    which a synapse (Lava's Dense, weights ``diag(c)``) carries to the hidden population's
    ``err_in`` one chip step later (lava/runner.py; docs/onchip-learning.md). An
    unconnected ``v_out`` sends nothing."""

    _v_now: Optional[np.ndarray] = None

    def _update(self, a_in: np.ndarray, j: int, k: int) -> np.ndarray:
        try:
            s = super()._update(a_in, j, k)  # type: ignore[misc]
        except Exception:
            self.v_out.send(np.zeros(self.v_out.shape))  # type: ignore[attr-defined]  # nobody blocks on it
            raise
        self._v_now = self._state["v"][0] + self.v_shift  # type: ignore[attr-defined]
        return s

    def _report(self, time_step: int) -> None:
        v, self._v_now = self._v_now, None
        self.v_out.send(v if v is not None else np.zeros(self.v_out.shape))  # type: ignore[attr-defined]
        super()._report(time_step)  # type: ignore[misc]


class _SendsVFixed(_SendsV):
    """Fixed point: the integer membrane of the step (``v_int``, 24 bits, as Lava's fixed
    neurons hold it) on ``v_out`` at window steps, zeros at idle steps: a graded spike whose
    payload Lava's fixed Dense (weights ``diag(c)`` as 8-bit mantissas and an exponent)
    carries to the e-prop post's ``err_in`` (learning_model.eprop_error_path)."""

    def _update(self, a_in: np.ndarray, j: int, k: int) -> np.ndarray:
        try:
            s = super(_SendsV, self)._update(a_in, j, k)  # type: ignore[misc]  # the step, not _SendsV's
        except Exception:
            self.v_out.send(np.zeros(self.v_out.shape, np.int32))  # type: ignore[attr-defined]
            raise
        self._v_now = np.asarray(self._state["v"][0], dtype=np.int32).copy()
        return s

    def _report(self, time_step: int) -> None:
        v, self._v_now = self._v_now, None
        self.v_out.send(v if v is not None else np.zeros(self.v_out.shape, np.int32))  # type: ignore[attr-defined]
        super(_SendsV, self)._report(time_step)  # type: ignore[misc]


@implements(proc=TeacherGroup, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
@_declare(FLOAT_PARAMS, lambda: LavaPyType(np.ndarray, float))
class PyTeacherGroupFloat(_SendsV, _FloatTypes, _TeacherLogic):
    """Float64: ``y2 = y2_label * label + y2_v * (v + v_shift)``; the membrane on ``v_out``."""

    label_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    y2_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    v_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    y2_label: np.ndarray = LavaPyType(np.ndarray, float)
    y2_v: np.ndarray = LavaPyType(np.ndarray, float)
    v_shift: np.ndarray = LavaPyType(np.ndarray, float)
    y2_shift: np.ndarray = LavaPyType(np.ndarray, np.int64)

    def _y2(self, label: np.ndarray, v: Optional[np.ndarray]) -> np.ndarray:
        y2 = self.y2_label * label
        if v is not None:
            y2 = y2 + self.y2_v * (v + self.v_shift)
        return y2


@implements(proc=TeacherGroup, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
@_declare(PARAMS["fixed"], lambda: LavaPyType(np.ndarray, np.int64))
class PyTeacherGroupFixed(_SendsVFixed, _FixedTypes, _TeacherLogic):
    """Integers: ``y2 = clip((y2_label * label + y2_v * v + v_shift + 2^(s-1)) >> s,
    -128, 127)``, ``s = y2_shift`` (learning_model.FixedLearning.y2; ``v_shift`` holds its
    ``y2_bias``): the 8-bit third factor from the integer membrane and label payload; the
    integer membrane on ``v_out`` (:class:`_SendsVFixed`)."""

    label_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    y2_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=8)
    v_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    y2_label: np.ndarray = LavaPyType(np.ndarray, np.int64)
    y2_v: np.ndarray = LavaPyType(np.ndarray, np.int64)
    v_shift: np.ndarray = LavaPyType(np.ndarray, np.int64)
    y2_shift: np.ndarray = LavaPyType(np.ndarray, np.int64)

    def _y2(self, label: np.ndarray, v: Optional[np.ndarray]) -> np.ndarray:
        acc = self.y2_label * np.asarray(label, dtype=np.int64)
        if v is not None:
            acc = acc + self.y2_v * np.asarray(v, dtype=np.int64) + self.v_shift
        shift = int(self.y2_shift[0])
        return np.clip((acc + (1 << (shift - 1))) >> shift, -128, 127).astype(np.int32)


class ReadoutGroup(NeuronGroup):
    """A NeuronGroup (one sample at a time) that also sends its membrane on ``v_out``, in IR
    units (float, :class:`_SendsV`) or as its integer membrane (fixed, :class:`_SendsVFixed`):
    an LI readout whose connection does not learn, read by an e-prop error Output."""

    def __init__(self, *, v_shift: np.ndarray, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        size = int(kwargs["size"])
        self.v_out = OutPort(shape=(size,))
        self.v_shift = Var(shape=(size,), init=np.broadcast_to(v_shift, (size,)).copy())


@implements(proc=ReadoutGroup, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
@_declare(FLOAT_PARAMS, lambda: LavaPyType(np.ndarray, float))
class PyReadoutGroupFloat(_SendsV, _FloatTypes, _NeuronGroupModel):
    """Float64: the population's step; its membrane on ``v_out``."""

    v_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    v_shift: np.ndarray = LavaPyType(np.ndarray, float)


@implements(proc=ReadoutGroup, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
@_declare(PARAMS["fixed"], lambda: LavaPyType(np.ndarray, np.int64))
class PyReadoutGroupFixed(_SendsVFixed, _FixedTypes, _NeuronGroupModel):
    """Integers: the population's step; its integer membrane on ``v_out`` (``v_shift`` unused:
    the error's shift term rides on the post's label stream, learning_model.eprop_error_path)."""

    v_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    v_shift: np.ndarray = LavaPyType(np.ndarray, float)


# ---------------------------------------------------------------- e-prop's post population


class EPropGroup(NeuronGroup):
    """A LIF NeuronGroup (one sample at a time, float, reset by subtraction) that also
    sends e-prop's post factors (module docstring): ``err_in`` receives the error stream
    (a RingBuffer playing learning_model.error_stream); ``y1_out``..``y3_out`` go to the
    synapse's ``s_in_y1``..``s_in_y3``. Idle steps send zeros (y3 too: the eligibility
    stays). ``y_sums``: the sums of |y1| and |y2| sent (a guard: a factor that stays 0
    never learns)."""

    def __init__(self, *, y1_gain: np.ndarray, y2_gain: np.ndarray, feedback: np.ndarray, dk: Any,
                 gamma: Any, shifts: tuple = (0, 0), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        size = int(kwargs["size"])
        if not isinstance(dk, (int, np.integer)):
            dk, gamma = float(dk), float(gamma)
        fb = np.asarray(feedback)
        if not np.issubdtype(fb.dtype, np.integer):  # float; fixed point: integers (learning_model.FixedEProp)
            fb = fb.astype(np.float64)
        self.err_in = InPort(shape=(fb.shape[1],))
        self.y1_out = OutPort(shape=(size,))
        self.y2_out = OutPort(shape=(size,))
        self.y3_out = OutPort(shape=(size,))
        self.y1_gain = Var(shape=(size,), init=np.broadcast_to(y1_gain, (size,)).copy())
        self.y2_gain = Var(shape=(size,), init=np.broadcast_to(y2_gain, (size,)).copy())
        self.feedback = Var(shape=fb.shape, init=fb.copy())
        self.neg_dk = Var(shape=(1,), init=np.array([-dk]))
        self.gamma = Var(shape=(1,), init=np.array([gamma]))
        self.y_sums = Var(shape=(2,), init=np.zeros(2))
        self.shifts = Var(shape=(2,), init=np.asarray(shifts, dtype=np.int64))  # fixed: y1_shift, y2_shift


class _EPropPorts:
    factor_ports = ("y1_out", "y2_out", "y3_out")


def _eprop_step(neurons: Any, state: dict, a_in: np.ndarray) -> np.ndarray:
    """The float neuron step, keeping the membrane before the reset (``v_pre``, shifted
    coordinates) with the very arithmetic of the step."""
    v_old = state["v"]
    s = FloatNeurons.step(neurons, state, a_in)
    state["v_pre"] = v_old * neurons.keep_v + state["u"] + neurons.bias_v
    return s


@implements(proc=EPropGroup, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
@_declare(FLOAT_PARAMS, lambda: LavaPyType(np.ndarray, float))
class PyEPropGroupFloat(_FloatTypes, _EPropPorts, _PostLogic):
    """Float64: the population's step, then ``psi = gamma max(0, 1 - |v_pre - vth|)``
    (shifted coordinates: the IR's ``u - v_threshold``) and the three factors."""

    step = staticmethod(_eprop_step)
    err_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    y1_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    y2_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    y3_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    y1_gain: np.ndarray = LavaPyType(np.ndarray, float)
    y2_gain: np.ndarray = LavaPyType(np.ndarray, float)
    feedback: np.ndarray = LavaPyType(np.ndarray, float)
    neg_dk: np.ndarray = LavaPyType(np.ndarray, float)
    gamma: np.ndarray = LavaPyType(np.ndarray, float)
    y_sums: np.ndarray = LavaPyType(np.ndarray, float)
    shifts: np.ndarray = LavaPyType(np.ndarray, np.int64)  # unused in float

    def _receive(self) -> np.ndarray:
        return self.err_in.recv()

    def _factors(self, s: np.ndarray, err: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
        v_pre = self._state["v_pre"][0]
        psi = self.gamma[0] * np.maximum(0.0, 1.0 - np.abs(v_pre - self.vth))
        y1 = psi * self.y1_gain
        y2 = self.y2_gain * (self.feedback * err[None, :]).sum(1)  # L = feedback @ err, summed as simulate
        self.y_sums[0] += np.abs(y1).sum()
        self.y_sums[1] += np.abs(y2).sum()
        return y1, y2, np.full(s.shape[0], self.neg_dk[0])


def _eprop_step_fixed(neurons: Any, state: dict, a_in: np.ndarray) -> np.ndarray:
    """The integer neuron step, keeping the membrane before the reset by subtraction
    (``v_pre = v + s * (vth << 6)``: exact, the reset's clip cannot act after a spike)."""
    s = neuron_step.FixedNeurons.step(neurons, state, a_in)
    state["v_pre"] = state["v"].astype(np.int64) + s.astype(np.int64) * np.asarray(neurons.vth, dtype=np.int64)
    return s


@implements(proc=EPropGroup, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
@_declare(PARAMS["fixed"], lambda: LavaPyType(np.ndarray, np.int64))
class PyEPropGroupFixed(_FixedTypes, _EPropPorts, _PostLogic):
    """Integers (learning_model.FixedEProp): the population's step, then
    ``y1 = clip((y1_gain * max(0, unit - |v_pre - (vth << 6)|) + half) >> y1_shift, 0, 127)``
    (``y2_gain`` holds ``unit``, one IR volt of the membrane), ``y2 = clip((feedback @ err
    + half) >> y2_shift, -128, 127)`` from the error payloads, ``y3 = neg_dk`` (the
    constant -Y). Idle steps send zeros."""

    step = staticmethod(_eprop_step_fixed)
    err_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    y1_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=8)
    y2_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=8)
    y3_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=8)
    y1_gain: np.ndarray = LavaPyType(np.ndarray, np.int64)
    y2_gain: np.ndarray = LavaPyType(np.ndarray, np.int64)
    feedback: np.ndarray = LavaPyType(np.ndarray, np.int64)
    neg_dk: np.ndarray = LavaPyType(np.ndarray, np.int64)
    gamma: np.ndarray = LavaPyType(np.ndarray, np.int64)
    y_sums: np.ndarray = LavaPyType(np.ndarray, float)
    shifts: np.ndarray = LavaPyType(np.ndarray, np.int64)

    def _receive(self) -> np.ndarray:
        return self.err_in.recv()

    def _factors(self, s: np.ndarray, err: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
        v_pre = self._state["v_pre"][0]
        th = np.asarray(self._neurons.vth, dtype=np.int64).reshape(-1)
        d = np.abs(v_pre - th)
        s1, s2 = int(self.shifts[0]), int(self.shifts[1])
        y1 = np.clip((self.y1_gain * np.maximum(0, self.y2_gain - d) + (1 << (s1 - 1))) >> s1, 0, 127)
        y2 = np.clip((self.feedback @ np.asarray(err, dtype=np.int64) + (1 << (s2 - 1))) >> s2, -128, 127)
        self.y_sums[0] += np.abs(y1).sum()
        self.y_sums[1] += np.abs(y2).sum()
        return y1.astype(np.int32), y2.astype(np.int32), np.full(s.shape[0], int(self.neg_dk[0]), np.int32)


# ---------------------------------------------------------------- STDP's post population


class PairGroup(NeuronGroup):
    """A spiking NeuronGroup (one sample at a time, float) that also sends the STDP /
    reward-STDP post factors (module docstring; learning_model.PairChip): its spikes on
    ``bap_out`` (to the synapse's ``s_in_bap``), ``y1 = y1_gain * r`` (``r`` from ``r_in``,
    a RingBuffer playing learning_model.error_stream, when ``reward``; else 1),
    ``y2 = y2_gain * ybar`` with ``ybar <- keep_y * ybar + z`` (zeroed at each sample's
    first step), ``y3``. Idle steps send zeros. ``sums``: the spikes sent on ``bap_out``
    and the sum of |y1| (a guard: a factor that stays 0 never learns)."""

    def __init__(self, *, y1_gain: np.ndarray, y2_gain: np.ndarray, y3: float, keep_y: float, reward: bool,
                 n_reward: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        size = int(kwargs["size"])
        self.r_in = InPort(shape=(int(n_reward),))
        self.bap_out = OutPort(shape=(size,))
        self.y1_out = OutPort(shape=(size,))
        self.y2_out = OutPort(shape=(size,))
        self.y3_out = OutPort(shape=(size,))
        self.y1_gain = Var(shape=(size,), init=np.broadcast_to(y1_gain, (size,)).copy())
        self.y2_gain = Var(shape=(size,), init=np.broadcast_to(y2_gain, (size,)).copy())
        self.y3 = Var(shape=(1,), init=np.array([float(y3)]))
        self.keep_y = Var(shape=(1,), init=np.array([float(keep_y)]))
        self.reward = Var(shape=(1,), init=np.array([1.0 if reward else 0.0]))
        self.sums = Var(shape=(2,), init=np.zeros(2))


@implements(proc=PairGroup, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
@_declare(FLOAT_PARAMS, lambda: LavaPyType(np.ndarray, float))
class PyPairGroupFloat(_FloatTypes, _PostLogic):
    """Float64: the population's step, then its post trace (as neuromorph.simulate:
    ``(1 - dy) * ybar + z``) and the factors."""

    r_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    bap_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    y1_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    y2_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    y3_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    y1_gain: np.ndarray = LavaPyType(np.ndarray, float)
    y2_gain: np.ndarray = LavaPyType(np.ndarray, float)
    y3: np.ndarray = LavaPyType(np.ndarray, float)
    keep_y: np.ndarray = LavaPyType(np.ndarray, float)
    reward: np.ndarray = LavaPyType(np.ndarray, float)
    sums: np.ndarray = LavaPyType(np.ndarray, float)

    factor_ports = ("bap_out", "y1_out", "y2_out", "y3_out")

    def _receive(self) -> Optional[np.ndarray]:
        return self.r_in.recv() if self.reward[0] else None

    def _factors(self, z: np.ndarray, r: Optional[np.ndarray], k: int) -> tuple[np.ndarray, ...]:
        old = np.zeros(z.shape[0]) if k == 0 else self._ybar
        self._ybar = self.keep_y[0] * old + z  # keep_y = 1 - dy: simulate's (1 - dy) * ybar + z
        y1 = self.y1_gain * r if r is not None else self.y1_gain.copy()
        y2 = self.y2_gain * self._ybar
        self.sums[0] += np.count_nonzero(z)
        self.sums[1] += np.abs(y1).sum()
        return z, y1, y2, np.full(z.shape[0], self.y3[0])


MODELS = {(LearningDense, "float"): PlasticDenseFloat, (TeacherGroup, "float"): PyTeacherGroupFloat,
          (LearningDense, "fixed"): PlasticDenseFixed, (TeacherGroup, "fixed"): PyTeacherGroupFixed,
          (EPropGroup, "float"): PyEPropGroupFloat, (EPropGroup, "fixed"): PyEPropGroupFixed, (PairGroup, "float"): PyPairGroupFloat,
          (ReadoutGroup, "float"): PyReadoutGroupFloat, (ReadoutGroup, "fixed"): PyReadoutGroupFixed}
"""(process class, precision) -> the ProcessModel the runner maps it to (one sample at a
time)."""
